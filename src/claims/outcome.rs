//! What a claim asks for and what the claim lifecycles answer.

use crate::domain::{ClaimKey, ClaimRecord, Claimant, Fingerprint, Namespace, Retention};

/// A claim as asked for, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub namespace: Namespace,
    pub key: ClaimKey,
    pub retention: Retention,
    pub complete: bool,
    pub fingerprint: Option<Fingerprint>,
    pub claimant: Option<Claimant>,
}

/// How a claim was won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// An empty or expired slot.
    New,
    /// An in-progress claim whose lease had passed.
    Takeover,
    /// The same claimant's own in-progress claim, handed back.
    Reentrant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Acquired {
        record: ClaimRecord,
        how: Acquisition,
    },
    Duplicate {
        record: ClaimRecord,
    },
    FingerprintMismatch {
        record: ClaimRecord,
    },
}

/// The answer to complete, release and extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// Done (or already done by this same token: completing twice is fine).
    Done(ClaimRecord),
    /// Released: the row is gone.
    Released,
    /// The token does not own the claim (never did, or was taken over).
    NotOwner,
    /// The claim is completed: it can no longer be released or extended.
    AlreadyCompleted(ClaimRecord),
    /// No live claim for this key.
    NotFound,
}
