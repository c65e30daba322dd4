//! What can go wrong talking to Cassandra, sorted by what the caller may
//! conclude from it.

use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};

/// The kinds of failure that change what the service may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The database or the driver gave up waiting (write/read/CAS timeout,
    /// client-side timeout). For a conditional write the outcome is unknown.
    Timeout,
    /// The connection broke with the request in flight: also unknown.
    Connection,
    /// Not enough replicas alive, no connection at all, or the node is
    /// overloaded or bootstrapping: the request did not run, or (for an LWT
    /// whose learn phase failed) may have; treated as unknown for writes.
    Unavailable,
    /// The database refused the statement itself (invalid, unauthorized,
    /// syntax). Retrying cannot help and nothing was written.
    Rejected,
    /// An answer arrived that could not be decoded: for a conditional write
    /// the outcome is unknown.
    BadResponse,
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Timeout,
        FailureKind::Connection,
        FailureKind::Unavailable,
        FailureKind::Rejected,
        FailureKind::BadResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Rejected => "rejected",
            FailureKind::BadResponse => "bad_response",
        }
    }
}

/// A failed statement, named so that logs and metrics say which one.
#[derive(Debug, thiserror::Error)]
#[error("{statement} failed ({kind}): {message}", kind = .kind.as_str())]
pub struct StoreError {
    pub statement: &'static str,
    pub kind: FailureKind,
    pub message: String,
    #[source]
    pub source: Option<Box<ExecutionError>>,
}

impl StoreError {
    pub fn new(statement: &'static str, source: ExecutionError) -> Self {
        Self {
            statement,
            kind: classify(&source),
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    pub fn unexpected_response(statement: &'static str, message: String) -> Self {
        Self {
            statement,
            kind: FailureKind::BadResponse,
            message,
            source: None,
        }
    }

    /// Whether Cassandra refused a TTL whose expiry lies beyond what its
    /// storage format can hold (2038-01-19 unless `storage_compatibility_mode`
    /// is NONE). The caller asked for too long a TTL: a 4xx, not a 5xx.
    pub fn is_ttl_rejected(&self) -> bool {
        if self.kind != FailureKind::Rejected {
            return false;
        }
        let message = self.message.to_lowercase();
        message.contains("ttl") || message.contains("expiration")
    }
}

/// What a failed statement means for the caller; see [`FailureKind`].
pub fn classify(error: &ExecutionError) -> FailureKind {
    match error {
        ExecutionError::RequestTimeout(_) => FailureKind::Timeout,
        ExecutionError::LastAttemptError(attempt) => classify_attempt(attempt),
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => {
            FailureKind::Unavailable
        }
        ExecutionError::PrepareError(_) => FailureKind::Unavailable,
        ExecutionError::BadQuery(_) => FailureKind::Rejected,
        // Unknown future variants are treated as the worst case.
        _ => FailureKind::Connection,
    }
}

fn classify_attempt(error: &RequestAttemptError) -> FailureKind {
    match error {
        RequestAttemptError::DbError(db_error, _) => classify_db_error(db_error),
        RequestAttemptError::BrokenConnectionError(_) => FailureKind::Connection,
        RequestAttemptError::UnableToAllocStreamId => FailureKind::Unavailable,
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => FailureKind::Rejected,
        _ => FailureKind::Connection,
    }
}

fn classify_db_error(error: &DbError) -> FailureKind {
    match error {
        DbError::WriteTimeout { .. }
        | DbError::ReadTimeout { .. }
        | DbError::WriteFailure { .. }
        | DbError::ReadFailure { .. } => FailureKind::Timeout,
        DbError::Unavailable { .. }
        | DbError::Overloaded
        | DbError::IsBootstrapping
        | DbError::RateLimitReached { .. }
        | DbError::Unprepared { .. } => FailureKind::Unavailable,
        DbError::SyntaxError
        | DbError::Invalid
        | DbError::AlreadyExists { .. }
        | DbError::FunctionFailure { .. }
        | DbError::AuthenticationError
        | DbError::Unauthorized
        | DbError::ConfigError
        | DbError::TruncateError => FailureKind::Rejected,
        _ => FailureKind::Connection,
    }
}

/// Whether the error is a CAS timeout in the narrow sense (Paxos contention
/// or a minority accept). Kept for logging: every non-rejected failure of a
/// conditional write is resolved the same way.
pub fn is_cas_timeout(error: &ExecutionError) -> bool {
    matches!(
        error,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            } | DbError::WriteFailure {
                write_type: WriteType::Cas,
                ..
            },
            _
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::statement::Consistency;
    use std::time::Duration;

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "msg".into()))
    }

    #[test]
    fn cas_timeouts_are_timeouts() {
        let error = db(DbError::WriteTimeout {
            consistency: Consistency::LocalSerial,
            received: 0,
            required: 1,
            write_type: WriteType::Cas,
        });
        assert_eq!(classify(&error), FailureKind::Timeout);
        assert!(is_cas_timeout(&error));
    }

    #[test]
    fn client_timeouts_and_unavailable_and_invalid() {
        assert_eq!(
            classify(&ExecutionError::RequestTimeout(Duration::from_secs(1))),
            FailureKind::Timeout
        );
        assert_eq!(
            classify(&db(DbError::Unavailable {
                consistency: Consistency::Quorum,
                required: 2,
                alive: 1
            })),
            FailureKind::Unavailable
        );
        assert_eq!(classify(&db(DbError::Invalid)), FailureKind::Rejected);
        assert!(!is_cas_timeout(&db(DbError::Invalid)));
    }
}
