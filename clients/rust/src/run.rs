//! `run_once`: the whole protocol in one call.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::answers::{ClaimAnswer, Lease, State};
use crate::client::{Client, new_claimant};
use crate::error::Error;
use crate::options::{ClaimOptions, whole_secs};

/// What [`Client::run_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Once<T> {
    /// This call won the key, ran the work and stored its result.
    Ran(T),
    /// An earlier run completed the key: its stored result.
    AlreadyDone(T),
}

impl<T> Once<T> {
    /// The value, whoever produced it.
    pub fn into_inner(self) -> T {
        match self {
            Once::Ran(value) | Once::AlreadyDone(value) => value,
        }
    }
}

/// Why [`Client::run_once`] has no value to give.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// The work failed; its claim was released, so the next delivery runs
    /// it again.
    #[error("the work failed, and its claim was released for the next delivery: {0}")]
    Work(E),
    /// The lease passed to another claimant (or the claim vanished) while
    /// the work ran: the work was not cancelled, but its completion was
    /// refused, and the key's outcome is the new holder's.
    #[error(
        "the lease was lost while the work ran ({0}); its result was not stored: the key's outcome \
         is another run's. Use longer leases, or make the work's effects idempotent on their own"
    )]
    LeaseLost(Error),
    /// Another claimant still has the key in progress after the options'
    /// wait budget: redeliver the message later.
    #[error(
        "another claimant still has the key in progress after the wait budget; redeliver it later{}",
        match retry_after { Some(after) => format!(" (after {after:?})"), None => String::new() }
    )]
    InProgress { retry_after: Option<Duration> },
    /// The stored result of an earlier run is not a `T`.
    #[error(
        "the key was completed before, with a result that does not read as the expected type ({0}): \
         another program, or another version, completed it"
    )]
    Decode(serde_json::Error),
    /// The work's value does not serialise to JSON; its claim was released.
    #[error("the work's value cannot be serialised to JSON ({0}); its claim was released")]
    Encode(serde_json::Error),
    /// A call failed (see [`Error`]); when it was the completion, the work
    /// ran but its result was not confirmed stored.
    #[error(transparent)]
    Client(Error),
}

/// How often the lease is extended: every third of it.
fn extension_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(200))
}

impl Client {
    /// Runs `work` at most once (in effect) for `key`: claims the key; when
    /// acquired, runs `work` with the lease, extending the lease in the
    /// background every third of its length, then completes the claim with
    /// the work's value serialised as JSON ([`Once::Ran`]). When the key was
    /// completed before, returns that stored value ([`Once::AlreadyDone`]).
    ///
    /// When another claimant has it in progress, claims again, each time
    /// letting the server wait up to [`ClaimOptions::wait`], until
    /// [`ClaimOptions::wait_budget`] is spent: then
    /// [`RunError::InProgress`]. Every claim of one `run_once` uses one
    /// claimant (the options', or a random one).
    ///
    /// When the work fails, the claim is released and the error returned
    /// ([`RunError::Work`]). When an extension or the completion hears that
    /// the token no longer owns the claim, [`RunError::LeaseLost`].
    ///
    /// ```no_run
    /// # async fn example(client: dedupd_client::Client) {
    /// use dedupd_client::{ClaimOptions, Once};
    /// let outcome = client
    ///     .run_once("mail", "welcome-user-7", &ClaimOptions::new(), |lease| async move {
    ///         // send the mail...
    ///         Ok::<_, std::io::Error>(format!("sent under {}", lease.token))
    ///     })
    ///     .await;
    /// if let Ok(Once::AlreadyDone(receipt)) = outcome {
    ///     println!("sent before: {receipt}");
    /// }
    /// # }
    /// ```
    pub async fn run_once<T, E, F, Fut>(
        &self,
        namespace: &str,
        key: &str,
        options: &ClaimOptions,
        work: F,
    ) -> Result<Once<T>, RunError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut options = options.clone();
        options.complete = false;
        let claimant = options.claimant.clone().unwrap_or_else(new_claimant);
        let deadline = Instant::now() + options.wait_budget;
        let lease = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait = options.wait.min(remaining);
            let answer = self
                .claim_as(namespace, key, &options, claimant.clone(), wait)
                .await
                .map_err(RunError::Client)?;
            let duplicate = match answer {
                ClaimAnswer::Acquired(lease) => break lease,
                ClaimAnswer::Duplicate(duplicate) => duplicate,
            };
            if duplicate.state == State::Completed {
                let stored = duplicate.result.unwrap_or(serde_json::Value::Null);
                return serde_json::from_value(stored)
                    .map(Once::AlreadyDone)
                    .map_err(RunError::Decode);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RunError::InProgress {
                    retry_after: duplicate.retry_after,
                });
            }
            // The server waited already when asked to; without a wait, pause
            // as the answer says. Either way at least a little, so that the
            // loop never spins.
            let pause = if wait.is_zero() {
                duplicate
                    .retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(self.max_retry_delay())
            } else {
                Duration::from_millis(50)
            };
            tokio::time::sleep(pause.min(remaining)).await;
        };
        self.run_acquired(namespace, key, &options, lease, work)
            .await
    }

    async fn run_acquired<T, E, F, Fut>(
        &self,
        namespace: &str,
        key: &str,
        options: &ClaimOptions,
        lease: Lease,
        work: F,
    ) -> Result<Once<T>, RunError<E>>
    where
        T: Serialize,
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let token = lease.token.clone();
        let length = options.lease.unwrap_or_else(|| {
            let left = lease
                .lease_expires_at
                .map(|end| (end - chrono::Utc::now()).num_milliseconds().max(0) as u64)
                .unwrap_or(30_000);
            Duration::from_millis(left)
        });
        let length = Duration::from_secs(whole_secs(length));
        let work = work(lease);
        let keep_alive = self.keep_alive(namespace, key, &token, length);
        tokio::pin!(work, keep_alive);
        let (outcome, lost) = tokio::select! {
            outcome = &mut work => (outcome, None),
            lost = &mut keep_alive => (work.await, Some(lost)),
        };
        if let Some(lost) = lost {
            // The work's value goes nowhere: the claim is someone else's.
            return Err(RunError::LeaseLost(lost));
        }
        let value = match outcome {
            Ok(value) => value,
            Err(error) => {
                // Best effort: if the release is lost, the lease runs out.
                let _ = self.release(namespace, key, &token).await;
                return Err(RunError::Work(error));
            }
        };
        let result = match serde_json::to_value(&value) {
            Ok(result) => result,
            Err(error) => {
                let _ = self.release(namespace, key, &token).await;
                return Err(RunError::Encode(error));
            }
        };
        match self.complete(namespace, key, &token, Some(&result)).await {
            Ok(_) => Ok(Once::Ran(value)),
            Err(error @ (Error::NotOwner { .. } | Error::NotFound { .. })) => {
                Err(RunError::LeaseLost(error))
            }
            Err(error @ Error::Problem { .. }) => {
                // Refused outright (a result over 16 KiB, say): free the key.
                let _ = self.release(namespace, key, &token).await;
                Err(RunError::Client(error))
            }
            Err(error) => Err(RunError::Client(error)),
        }
    }

    /// Extends the lease every third of its length, for as long as it is
    /// polled; returns only when the lease is lost.
    async fn keep_alive(&self, namespace: &str, key: &str, token: &str, length: Duration) -> Error {
        let period = extension_period(length);
        loop {
            tokio::time::sleep(period).await;
            // Extended, or not heard: try again at the next period (the
            // completion tells whether the lease held).
            if let Err(
                error @ (Error::NotOwner { .. }
                | Error::NotFound { .. }
                | Error::AlreadyCompleted { .. }),
            ) = self.extend(namespace, key, token, length).await
            {
                return error;
            }
        }
    }
}
