//! Deciding under uncertainty: how hard one request tries, and the error it
//! ends with when the database cannot tell what happened.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{FailureKind, StoreError};

/// Bounds on how hard one request tries before answering 503.
#[derive(Debug, Clone, Copy)]
pub struct RetryBudget {
    /// The most steps (writes and reads) one request may take.
    pub max_steps: usize,
    /// How long one request may spend deciding.
    pub deadline: Duration,
    /// The first pause between serial-read attempts; it doubles.
    pub first_backoff: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            max_steps: 8,
            deadline: Duration::from_secs(10),
            first_backoff: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The outcome could not be decided in time: 503 with `Retry-After`.
    #[error("{detail}")]
    Undecided { detail: String },
    /// Cassandra refused the TTL (its storage format cannot hold the expiry).
    #[error("the database refused this TTL: {0}")]
    TtlRejected(String),
    /// The database refused a statement: a bug or a broken schema.
    #[error(transparent)]
    Store(StoreError),
}

/// The error for a statement the database refused outright.
pub fn rejected(error: StoreError) -> DecideError {
    if error.is_ttl_rejected() {
        DecideError::TtlRejected(error.message)
    } else {
        DecideError::Store(error)
    }
}

/// Runs a serial read until it answers, with capped exponential backoff,
/// inside the request's budget. A read that keeps failing ends in
/// `Undecided`: the caller answers 503, never a guess.
pub async fn read_with_retries<T, F, Fut>(
    budget: RetryBudget,
    started: Instant,
    mut read: F,
) -> Result<T, DecideError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = budget.first_backoff;
    let mut last_error = None;
    for _ in 0..budget.max_steps {
        match read().await {
            Ok(value) => return Ok(value),
            Err(error) if error.kind == FailureKind::Rejected => return Err(rejected(error)),
            Err(error) => {
                tracing::warn!(statement = error.statement, error = %error, "serial read failed");
                last_error = Some(error);
            }
        }
        if started.elapsed() + backoff > budget.deadline {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    Err(DecideError::Undecided {
        detail: format!(
            "the database could not be read at the serial consistency level ({}); the outcome is \
             unknown, so nothing is claimed or refused: retry",
            last_error
                .map(|error| error.to_string())
                .unwrap_or_else(|| "deadline reached".into())
        ),
    })
}
