//! Sequence numbers: producers number a stream's messages 1, 2, 3…

use super::ParseError;

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
pub struct Watermark(u64);

impl Watermark {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_start_at_one_and_fit_a_bigint() {
        assert!(SequenceNumber::parse(0).is_err());
        assert!(SequenceNumber::parse(1).is_ok());
        assert!(SequenceNumber::parse(MAX_SEQUENCE).is_ok());
        assert!(SequenceNumber::parse(MAX_SEQUENCE + 1).is_err());
        assert!(Watermark::parse(0).is_ok());
        assert!(Watermark::parse(MAX_SEQUENCE + 1).is_err());
    }
}
