//! The client against the real dedupd (in-process, on a free loopback
//! port) over the real test database: one binary, one module per concern.

mod batch;
mod keys;
mod lost_answer;
mod low_level;
mod operations;
mod run_once;
mod secrets;
mod sequences;
mod waiting;

use std::time::Duration;

use dedupd_client::{ClaimAnswer, Client, Duplicate, Lease, RetryBudget};
use dedupd_test_support::TestApp;

/// A client of `app` with the default retry discipline, a little quicker.
pub fn client_of(app: &TestApp) -> Client {
    client_at(&app.address)
}

pub fn client_at(address: &str) -> Client {
    Client::builder(address)
        .request_timeout(Duration::from_secs(10))
        .retry_budget(RetryBudget::new(10, Duration::from_secs(30)))
        .max_retry_delay(Duration::from_secs(1))
        .build()
        .expect("a client")
}

pub fn acquired(answer: ClaimAnswer) -> Lease {
    match answer {
        ClaimAnswer::Acquired(lease) => lease,
        ClaimAnswer::Duplicate(duplicate) => panic!("expected acquired, got {duplicate:?}"),
    }
}

pub fn duplicate(answer: ClaimAnswer) -> Duplicate {
    match answer {
        ClaimAnswer::Duplicate(duplicate) => duplicate,
        ClaimAnswer::Acquired(lease) => panic!("expected a duplicate, got {lease:?}"),
    }
}
