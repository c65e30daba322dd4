//! A fault seam for tests: make chosen statements fail the way a network or
//! a Paxos round can, against the real database.
//!
//! The two faults are the two halves of an unknown outcome: the request was
//! lost before it ran, or it ran and its answer was lost. The service must
//! resolve both with a serial read and give the same answer it would have
//! given without the fault.
//!
//! Tests arm a plan in code. For chaos runs of whole processes (the fault
//! checker, `dedupd check`), `DEDUPD_FAILPOINTS` arms random faults, e.g.
//! `claim_insert=after:0.05,claim_read_serial=before:0.01`; the service
//! logs a warning at start when it is set. Nothing else turns faults on.
//!
//! All of it exists only with the `failpoints` cargo feature, which the
//! tests and the fault checker's build turn on. Without it (the default,
//! and every release image) `FaultPlan` is an empty stub whose `next` is
//! always `None`: the statement path takes no lock, and the binary holds no
//! parser and does not read the variable.

use std::time::Duration;

use scylla::errors::ExecutionError;

#[cfg(feature = "failpoints")]
pub use armed::FaultPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Report a client-side timeout without sending the statement.
    TimeoutBeforeSend,
    /// Send the statement, let it apply, then report a timeout instead of
    /// its result.
    TimeoutAfterApply,
}

/// What a faulted statement reports instead of its result.
pub(crate) fn injected_error() -> ExecutionError {
    ExecutionError::RequestTimeout(Duration::ZERO)
}

/// Without the `failpoints` feature: no plan, ever.
#[cfg(not(feature = "failpoints"))]
#[derive(Debug, Default)]
pub struct FaultPlan {
    _none: (),
}

#[cfg(not(feature = "failpoints"))]
impl FaultPlan {
    /// No faults: the variable is not even read.
    pub fn from_env() -> Result<Self, String> {
        Ok(Self::default())
    }

    #[inline(always)]
    pub(crate) fn next(&self, _statement: &'static str, _partition: &str) -> Option<Fault> {
        None
    }
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::Fault;

    #[derive(Debug)]
    struct Rule {
        statement: &'static str,
        /// Only this partition (key or stream), or any when `None`.
        partition: Option<String>,
        fault: Fault,
        remaining: usize,
    }

    /// A fault that strikes each execution of a statement with a probability.
    #[derive(Debug, Clone, PartialEq)]
    struct RandomRule {
        statement: String,
        fault: Fault,
        probability: f64,
    }

    /// Faults to inject, each for the next `times` executions of a statement,
    /// or at random.
    #[derive(Debug, Default)]
    pub struct FaultPlan {
        rules: Mutex<Vec<Rule>>,
        /// Whether a rule was ever pushed. Every statement asks `next`; with no
        /// plan armed (production) it answers without taking the lock.
        armed: AtomicBool,
        random: Vec<RandomRule>,
        /// xorshift state for the random rules; any nonzero seed will do.
        dice: AtomicU64,
    }

    impl FaultPlan {
        pub fn inject(&self, statement: &'static str, fault: Fault, times: usize) {
            self.push(statement, None, fault, times);
        }

        /// As `inject`, for one partition (a claim key or a stream name) only.
        pub fn inject_for(
            &self,
            statement: &'static str,
            partition: &str,
            fault: Fault,
            times: usize,
        ) {
            self.push(statement, Some(partition.to_owned()), fault, times);
        }

        fn push(
            &self,
            statement: &'static str,
            partition: Option<String>,
            fault: Fault,
            times: usize,
        ) {
            self.armed.store(true, Ordering::Release);
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

        /// Parses a `DEDUPD_FAILPOINTS` value: comma-separated
        /// `statement=before|after:probability`.
        pub fn from_spec(spec: &str) -> Result<Self, String> {
            let mut random = Vec::new();
            for part in spec
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
            {
                let parsed = part.split_once('=').and_then(|(statement, rest)| {
                    let (fault, probability) = rest.split_once(':')?;
                    let fault = match fault {
                        "before" => Fault::TimeoutBeforeSend,
                        "after" => Fault::TimeoutAfterApply,
                        _ => return None,
                    };
                    let probability: f64 = probability.parse().ok()?;
                    (0.0..=1.0).contains(&probability).then(|| RandomRule {
                        statement: statement.to_owned(),
                        fault,
                        probability,
                    })
                });
                random.push(parsed.ok_or_else(|| {
                    format!(
                        "invalid failpoint {part:?}: expected statement=before|after:probability"
                    )
                })?);
            }
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9E37_79B9_7F4A_7C15, |elapsed| elapsed.as_nanos() as u64)
                | 1;
            Ok(Self {
                rules: Mutex::new(Vec::new()),
                armed: AtomicBool::new(false),
                random,
                dice: AtomicU64::new(seed),
            })
        }

        /// Whether any random failpoint is armed.
        pub fn has_random_faults(&self) -> bool {
            !self.random.is_empty()
        }

        /// A uniform number in [0, 1) from a shared xorshift generator.
        fn roll(&self) -> f64 {
            let mut state = self.dice.load(Ordering::Relaxed).max(1);
            loop {
                let mut next = state;
                next ^= next << 13;
                next ^= next >> 7;
                next ^= next << 17;
                match self.dice.compare_exchange_weak(
                    state,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return (next >> 11) as f64 / (1u64 << 53) as f64,
                    Err(current) => state = current.max(1),
                }
            }
        }

        /// Takes the next fault planned for `statement`, if any.
        pub(crate) fn next(&self, statement: &'static str, partition: &str) -> Option<Fault> {
            if self.random.is_empty() && !self.armed.load(Ordering::Acquire) {
                return None;
            }
            {
                let mut rules = self.rules.lock().expect("fault plan lock");
                let planned = rules.iter_mut().find(|rule| {
                    rule.statement == statement
                        && rule.remaining > 0
                        && rule
                            .partition
                            .as_deref()
                            .is_none_or(|only| only == partition)
                });
                if let Some(rule) = planned {
                    rule.remaining -= 1;
                    return Some(rule.fault);
                }
            }
            self.random
                .iter()
                .find(|rule| rule.statement == statement && self.roll() < rule.probability)
                .map(|rule| rule.fault)
        }

        /// The plan `DEDUPD_FAILPOINTS` asks for (none when it is unset).
        pub fn from_env() -> Result<Self, String> {
            let Ok(spec) = std::env::var("DEDUPD_FAILPOINTS") else {
                return Ok(Self::default());
            };
            let plan = Self::from_spec(&spec)?;
            tracing::warn!(failpoints = %spec, "DEDUPD_FAILPOINTS is set: injecting faults on purpose");
            Ok(plan)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn failpoint_specs_parse_or_say_why_not() {
            let plan =
                FaultPlan::from_spec("claim_insert=after:1, claim_read_serial=before:0").unwrap();
            assert!(plan.has_random_faults());
            assert_eq!(
                plan.next("claim_insert", "k"),
                Some(Fault::TimeoutAfterApply)
            );
            assert_eq!(plan.next("claim_read_serial", "k"), None);
            assert_eq!(plan.next("claim_complete", "k"), None);
            for bad in [
                "claim_insert",
                "claim_insert=during:0.1",
                "claim_insert=after:2",
                "x=after:y",
            ] {
                assert!(FaultPlan::from_spec(bad).is_err(), "{bad}");
            }
            assert!(!FaultPlan::from_spec("").unwrap().has_random_faults());
        }

        #[test]
        fn random_faults_strike_at_about_their_rate() {
            let plan = FaultPlan::from_spec("claim_insert=before:0.25").unwrap();
            let struck = (0..10_000)
                .filter(|_| plan.next("claim_insert", "k").is_some())
                .count();
            assert!((2_000..3_000).contains(&struck), "{struck}");
        }

        #[test]
        fn planned_faults_come_first_and_run_out() {
            let plan = FaultPlan::default();
            plan.inject_for("claim_insert", "a", Fault::TimeoutBeforeSend, 1);
            assert_eq!(plan.next("claim_insert", "b"), None);
            assert_eq!(
                plan.next("claim_insert", "a"),
                Some(Fault::TimeoutBeforeSend)
            );
            assert_eq!(plan.next("claim_insert", "a"), None);
        }
    }
}
