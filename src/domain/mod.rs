//! Types that are valid by construction.
//!
//! Handlers parse raw input into these types once, at the edge; everything
//! behind the edge can then rely on the invariants without checking again
//! ("parse, don't validate").

mod claim;
mod names;
mod namespaces;
mod row;
mod sequence;

pub use claim::{
    CASSANDRA_MAX_TTL_SECS, ClaimRecord, ClaimState, ClaimToken, LeaseRequest, MAX_RESULT_BYTES,
    Retention, RetentionPolicy, StoredResult, now_millis, secs,
};
pub use names::{
    ClaimKey, Claimant, Fingerprint, KeyspaceName, Namespace, Offerer, ParseError, Principal,
    StreamName, holder_label,
};
pub use namespaces::Namespaces;
pub use row::{Cas, CasOutcome, ClaimWrite, Refusal, RowView, began_window};
pub use sequence::{
    AcceptedBy, MAX_SEQUENCE, RECENT_SLOTS, SequenceCas, SequenceNumber, SequenceWrite, StreamRow,
    WatermarkValue,
};
