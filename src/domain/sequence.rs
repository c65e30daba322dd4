//! Sequence numbers: producers number a stream's messages 1, 2, 3…

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Cas, ParseError};

/// The largest number a stream can hold: CQL's bigint is signed.
pub const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// A message's number in its stream: 1 to 2^63−1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SequenceNumber(u64);

impl SequenceNumber {
    pub fn parse(raw: u64) -> Result<Self, ParseError> {
        if raw == 0 || raw > MAX_SEQUENCE {
            return Err(ParseError(format!(
                "seq must be between 1 and {MAX_SEQUENCE}, got {raw}"
            )));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// A watermark set by hand: 0 (nothing accepted yet) to 2^63−1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkValue(u64);

impl WatermarkValue {
    pub fn parse(raw: u64) -> Result<Self, ParseError> {
        if raw > MAX_SEQUENCE {
            return Err(ParseError(format!(
                "last must be between 0 and {MAX_SEQUENCE}, got {raw}"
            )));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// How many recent acceptances a stream's row remembers (see the CQL).
pub const RECENT_SLOTS: u64 = 64;

/// A stream's row: its watermark, who wrote it last, and the ring of the
/// last `RECENT_SLOTS` acceptances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    pub last: u64,
    pub writer: Option<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
    /// (seq, token of the request that accepted it), one per ring slot.
    pub recent: Vec<(u64, Uuid)>,
}

/// Who accepted a number, as far as the ring remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptedBy {
    /// The request with this token.
    Token(Uuid),
    /// The ring has moved past the number: it cannot say.
    Forgotten,
    /// No acceptance of this number is recorded (and none could have been
    /// overwritten yet).
    Nobody,
}

impl StreamRow {
    /// Who accepted `seq`: slot `seq % RECENT_SLOTS` holds the last number
    /// accepted into it, so a later number there means `seq` is forgotten.
    pub fn accepted_by(&self, seq: u64) -> AcceptedBy {
        if let Some((_, token)) = self.recent.iter().find(|(number, _)| *number == seq) {
            return AcceptedBy::Token(*token);
        }
        let slot = seq % RECENT_SLOTS;
        let overwritten = self
            .recent
            .iter()
            .any(|(number, _)| number % RECENT_SLOTS == slot && *number > seq);
        if overwritten {
            AcceptedBy::Forgotten
        } else {
            AcceptedBy::Nobody
        }
    }
}

/// One conditional write on a stream's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceWrite {
    /// Create the stream at `last`, if it does not exist.
    Insert { last: u64, writer: Uuid },
    /// Move the stream from `expected` to `last`.
    Advance {
        expected: u64,
        last: u64,
        writer: Uuid,
    },
    /// Delete the stream, if it exists.
    Delete,
}

impl SequenceWrite {
    /// The write that moves a stream from `current` (`None`: no stream yet)
    /// to `last`.
    pub fn moving(current: Option<u64>, last: u64, writer: Uuid) -> Self {
        match current {
            None => SequenceWrite::Insert { last, writer },
            Some(expected) => SequenceWrite::Advance {
                expected,
                last,
                writer,
            },
        }
    }
}

/// The answer to a conditional write on a stream. A refusal carries the
/// stream as the Paxos round saw it (`None` when the stream does not
/// exist); a refused UPDATE returns only `last` on Cassandra: the ring then
/// reads empty.
pub type SequenceCas = Cas<Option<StreamRow>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(recent: Vec<(u64, Uuid)>) -> StreamRow {
        StreamRow {
            last: 200,
            writer: None,
            updated_at: None,
            recent,
        }
    }

    #[test]
    fn the_ring_names_who_accepted_a_recent_number() {
        let ours = Uuid::new_v4();
        let theirs = Uuid::new_v4();
        let ring = row(vec![(130, ours), (131, theirs)]);
        assert_eq!(ring.accepted_by(130), AcceptedBy::Token(ours));
        assert_eq!(ring.accepted_by(131), AcceptedBy::Token(theirs));
        assert_eq!(ring.accepted_by(132), AcceptedBy::Nobody);
        // 194 = 130 + 64 took the slot of 130: 130 is forgotten.
        let overwritten = row(vec![(194, theirs)]);
        assert_eq!(overwritten.accepted_by(130), AcceptedBy::Forgotten);
    }

    #[test]
    fn sequence_numbers_start_at_one_and_fit_a_bigint() {
        assert!(SequenceNumber::parse(0).is_err());
        assert!(SequenceNumber::parse(1).is_ok());
        assert!(SequenceNumber::parse(MAX_SEQUENCE).is_ok());
        assert!(SequenceNumber::parse(MAX_SEQUENCE + 1).is_err());
        assert!(WatermarkValue::parse(0).is_ok());
        assert!(WatermarkValue::parse(MAX_SEQUENCE + 1).is_err());
    }
}
