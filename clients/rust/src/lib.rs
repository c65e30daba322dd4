//! A client for dedupd's HTTP API: claim a message id
//! before acting on it, so that at-least-once deliveries take effect once.
//!
//! The whole protocol in one call, [`Client::run_once`]: claim the key, run
//! the work while the lease is extended in the background, store the work's
//! result; or, when an earlier run completed, hand back its stored result.
//!
//! ```no_run
//! use std::time::Duration;
//! use dedupd_client::{ClaimOptions, Client, Once, RunError};
//!
//! # async fn charge(order: &str) -> Result<String, std::io::Error> { Ok(order.into()) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("http://127.0.0.1:8080")
//!     .bearer_token("s3cr3t")
//!     .request_timeout(Duration::from_secs(5))
//!     .build()?;
//! let options = ClaimOptions::new()
//!     .lease(Duration::from_secs(30))
//!     .wait(Duration::from_secs(10))
//!     .wait_budget(Duration::from_secs(60));
//! match client
//!     .run_once("orders", "msg-42", &options, |_lease| async { charge("msg-42").await })
//!     .await
//! {
//!     Ok(Once::Ran(charge)) => println!("charged: {charge}"),
//!     Ok(Once::AlreadyDone(charge)) => println!("charged before: {charge}"),
//!     Err(RunError::InProgress { retry_after }) => println!("busy; redeliver after {retry_after:?}"),
//!     Err(error) => return Err(error.into()),
//! }
//! # Ok(()) }
//! ```
//!
//! The low-level calls, when you drive the protocol yourself:
//!
//! ```no_run
//! use dedupd_client::{ClaimAnswer, ClaimOptions, Client, State};
//!
//! # async fn example() -> Result<(), dedupd_client::Error> {
//! let client = Client::builder("http://127.0.0.1:8080").build()?;
//! match client.claim("orders", "msg-42", &ClaimOptions::new()).await? {
//!     ClaimAnswer::Acquired(lease) => {
//!         // ... do the work ...
//!         let result = serde_json::json!({"charge": "ch_1"});
//!         client.complete("orders", "msg-42", &lease.token, Some(&result)).await?;
//!     }
//!     ClaimAnswer::Duplicate(duplicate) if duplicate.state == State::Completed => {
//!         println!("done before: {:?}", duplicate.result);
//!     }
//!     ClaimAnswer::Duplicate(duplicate) => {
//!         println!("someone else is on it; retry after {:?}", duplicate.retry_after);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Protocol discipline
//!
//! What this crate does so that callers do not have to get it right:
//!
//! - Every claim carries a claimant. When [`ClaimOptions::claimant`] is not
//!   set, each logical claim (one [`Client::claim`], one [`Client::run_once`])
//!   gets a fresh random one, and every retry of that claim reuses it: a
//!   claim whose answer was lost is recovered (the server hands the same
//!   claimant its own token back), never granted twice.
//! - 503 answers (and 502/504 from a proxy in front) and transport failures
//!   (connect errors, timeouts, a connection closed before the answer) are
//!   retried with the same claimant, honouring `Retry-After` (capped by
//!   [`ClientBuilder::max_retry_delay`]), within the [`RetryBudget`]. A 503 is
//!   never reported as a duplicate: it is not an answer.
//! - 4xx answers are never retried: they say the request must change.
//! - complete, release and extend are retried the same way: a second
//!   complete with the same token answers 200 again, so a retry is safe.
//!
//! # Keys
//!
//! Namespaces and keys are percent-encoded byte by byte of their UTF-8
//! (everything outside `A-Z a-z 0-9 - . _ ~`), which is what the server
//! decodes, exactly once. The keys `.` and `..` cannot be sent in a path
//! (reqwest, like every WHATWG-URL client, removes dot segments): use the
//! batch API or another id for them.
//!
//! # Bearer tokens
//!
//! The token given to [`ClientBuilder::bearer_token`] is sent as a sensitive
//! header and appears in no `Debug` output and no error message.

mod answers;
mod batch;
mod client;
mod encode;
mod error;
mod operations;
mod options;
mod run;
mod sequences;

pub use answers::{ClaimAnswer, ClaimView, Duplicate, Lease, State, Transition, holder_label};
pub use batch::{BatchClaim, BatchResult, MAX_BATCH_KEYS};
pub use client::{Client, ClientBuilder, RetryBudget};
pub use encode::encode_segment;
pub use error::Error;
pub use operations::Readiness;
pub use options::ClaimOptions;
pub use run::{Once, RunError};
pub use sequences::Advance;

/// The README's example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
