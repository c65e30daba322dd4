//! A fault seam for tests: make chosen statements fail the way a network or
//! a Paxos round can, against the real database.
//!
//! The two faults are the two halves of an unknown outcome: the request was
//! lost before it ran, or it ran and its answer was lost. The service must
//! resolve both with a serial read and give the same answer it would have
//! given without the fault. Nothing in the service's configuration turns a
//! plan on; only code that builds the application (the tests) can.

use std::sync::Mutex;
use std::time::Duration;

use scylla::errors::ExecutionError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Report a client-side timeout without sending the statement.
    TimeoutBeforeSend,
    /// Send the statement, let it apply, then report a timeout instead of
    /// its result.
    TimeoutAfterApply,
}

#[derive(Debug)]
struct Rule {
    statement: &'static str,
    /// Only this partition (key or stream), or any when `None`.
    partition: Option<String>,
    fault: Fault,
    remaining: usize,
}

/// Faults to inject, each for the next `times` executions of a statement.
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Mutex<Vec<Rule>>,
}

impl FaultPlan {
    pub fn inject(&self, statement: &'static str, fault: Fault, times: usize) {
        self.push(statement, None, fault, times);
    }

    /// As `inject`, for one partition (a claim key or a stream name) only.
    pub fn inject_for(&self, statement: &'static str, partition: &str, fault: Fault, times: usize) {
        self.push(statement, Some(partition.to_owned()), fault, times);
    }

    fn push(&self, statement: &'static str, partition: Option<String>, fault: Fault, times: usize) {
        self.rules.lock().expect("fault plan lock").push(Rule {
            statement,
            partition,
            fault,
            remaining: times,
        });
    }

    pub fn clear(&self) {
        self.rules.lock().expect("fault plan lock").clear();
    }

    /// Takes the next fault planned for `statement`, if any.
    pub(crate) fn next(&self, statement: &'static str, partition: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("fault plan lock");
        let rule = rules.iter_mut().find(|rule| {
            rule.statement == statement
                && rule.remaining > 0
                && rule
                    .partition
                    .as_deref()
                    .is_none_or(|only| only == partition)
        })?;
        rule.remaining -= 1;
        Some(rule.fault)
    }

    pub(crate) fn injected_error() -> ExecutionError {
        ExecutionError::RequestTimeout(Duration::ZERO)
    }
}
