//! The one executor: drives a `Machine` against the store.
//!
//! Two rules carry the guarantee here, for every lifecycle alike:
//! - an outcome we did not hear (timeout, broken connection) is never
//!   guessed: a serial read, which runs Paxos itself and so settles any
//!   half-finished proposal, says what the row holds, and the machine
//!   decides from that;
//! - when even that read fails, or the budget runs out, the answer is 503
//!   with `Retry-After`, never "acquired" and never "duplicate".

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{Action, DecideError, Io, Machine, Observation, rejected};
use crate::domain::now_millis;
use crate::metrics::Metrics;
use crate::store::{FailureKind, StoreError};

/// Bounds on how hard one request tries before answering 503.
#[derive(Debug, Clone, Copy)]
pub struct RetryBudget {
    /// The most writes one request may run.
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

/// Runs `machine` to its answer.
///
/// Writes count against `budget.max_steps`; reads are bounded by the
/// deadline (and, against a machine that would only ever read, by a cap of
/// a few reads per write). An answer the machine reaches is returned even
/// past the deadline; no new statement starts after it.
pub async fn run<M, S>(
    mut machine: M,
    io: &S,
    budget: RetryBudget,
    metrics: &Metrics,
) -> Result<M::Answer, DecideError>
where
    M: Machine,
    S: Io<M::Table>,
{
    let started = Instant::now();
    let mut writes = 0;
    let mut actions = 0;
    let mut action = machine.start(now_millis());
    loop {
        if matches!(
            action,
            Action::Write(_) | Action::ReadSerial | Action::ReadQuorum
        ) {
            actions += 1;
            let out_of_time = actions > 1 && started.elapsed() > budget.deadline;
            if out_of_time || actions > 4 * budget.max_steps + 4 {
                return Err(DecideError::Undecided {
                    detail: machine.undecided(),
                });
            }
        }
        action = match action {
            Action::Answer(answer) => return Ok(answer),
            Action::Undecided(detail) => return Err(DecideError::Undecided { detail }),
            Action::Write(write) => {
                writes += 1;
                if writes > budget.max_steps {
                    return Err(DecideError::Undecided {
                        detail: machine.undecided(),
                    });
                }
                match io.write(&write, now_millis()).await {
                    Ok(written) => machine.observe(Observation::Written(written), now_millis()),
                    Err(error) if error.kind == FailureKind::Rejected => {
                        return Err(rejected(error));
                    }
                    Err(error) => {
                        tracing::warn!(
                            statement = error.statement,
                            namespace = io.namespace(),
                            error = %error,
                            "conditional write outcome unknown, resolving with a serial read"
                        );
                        let resolved =
                            read_with_retries(budget, started, || io.read_serial(now_millis()))
                                .await;
                        let label = match &resolved {
                            Ok(view) => machine.resolution(view).as_str(),
                            Err(_) => "unresolved",
                        };
                        metrics.record_unknown_outcome(error.statement, label);
                        machine.observe(Observation::Resolved(resolved?), now_millis())
                    }
                }
            }
            Action::ReadSerial => {
                let view =
                    read_with_retries(budget, started, || io.read_serial(now_millis())).await?;
                machine.observe(Observation::Read(view), now_millis())
            }
            Action::ReadQuorum => {
                let view = io.read_quorum(now_millis()).await.ok();
                machine.observe(Observation::QuorumRead(view), now_millis())
            }
        };
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
