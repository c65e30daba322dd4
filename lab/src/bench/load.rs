//! Load drivers: open loop at a fixed rate, and closed loop with N workers.
//!
//! Open loop is how latency is measured: requests leave on a fixed
//! schedule whatever the previous ones did, and each latency counts from
//! the moment the request was *meant* to leave. A stall therefore shows in
//! every request it delayed, instead of hiding behind a sender that waited
//! (coordinated omission). Closed loop, N workers each sending its next
//! request when the last returns, measures throughput at a given
//! concurrency.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What one operation reports: success, or the kind of its failure.
pub type OpResult = Result<(), String>;
pub type OpFuture = Pin<Box<dyn Future<Output = OpResult> + Send>>;
/// An operation; its argument is the operation's index, for unique keys.
pub type Operation = Arc<dyn Fn(u64) -> OpFuture + Send + Sync>;

/// The operation that runs `run` on the `index`th key: `key_of(index)`.
/// `shared` (a driver, a client) is cloned into every call, and the key is
/// made before the call's future starts, as the load generator asks for it.
pub fn on_keys<Shared, Fut>(
    shared: Shared,
    key_of: impl Fn(u64) -> String + Send + Sync + 'static,
    run: impl Fn(Shared, String) -> Fut + Send + Sync + 'static,
) -> Operation
where
    Shared: Clone + Send + Sync + 'static,
    Fut: Future<Output = OpResult> + Send + 'static,
{
    Arc::new(move |index| Box::pin(run(shared.clone(), key_of(index))))
}

/// Latencies in microseconds, up to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What one run (or several merged) measured.
#[derive(Clone)]
pub struct Measurement {
    pub latency: Histogram<u64>,
    pub errors: u64,
    /// Error kinds with counts, for the report.
    pub error_kinds: Vec<(String, u64)>,
    /// Time spent sending and waiting, summed over merged runs.
    pub elapsed: Duration,
}

impl Default for Measurement {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            errors: 0,
            error_kinds: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

impl Measurement {
    pub fn merge(&mut self, other: &Measurement) {
        let _ = self.latency.add(&other.latency);
        self.errors += other.errors;
        for (kind, count) in &other.error_kinds {
            self.count_error_kind(kind, *count);
        }
        self.elapsed += other.elapsed;
    }

    fn count_error_kind(&mut self, kind: &str, count: u64) {
        match self.error_kinds.iter_mut().find(|(known, _)| known == kind) {
            Some((_, total)) => *total += count,
            None => self.error_kinds.push((kind.to_owned(), count)),
        }
    }

    fn record(&mut self, latency: Duration, result: &OpResult) {
        match result {
            Ok(()) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(micros.max(1));
            }
            Err(kind) => {
                self.errors += 1;
                self.count_error_kind(kind, 1);
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    pub fn throughput_per_s(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds == 0.0 {
            return 0.0;
        }
        self.count() as f64 / seconds
    }
}

/// Sends `count` operations at `rate_per_s`, starting with index `first`.
pub async fn open_loop(
    operation: &Operation,
    first: u64,
    count: u64,
    rate_per_s: f64,
    max_in_flight: u64,
) -> Measurement {
    let mut measured = open_loop_in_turn(
        std::slice::from_ref(operation),
        first,
        count,
        rate_per_s,
        max_in_flight,
    )
    .await;
    measured.pop().unwrap_or_default()
}

/// Sends `count_each` calls of every operation of `operations`, in turn on
/// one schedule of `rate_per_s` sends (a, b, a, b, …; the `k`th call of
/// each has index `first + k`), and measures each operation apart.
///
/// Two scenarios whose ratio is a headline figure are sent this way: each
/// request of one has a request of the other a few milliseconds away, so
/// whatever the machine does meanwhile (a compaction, a garbage collection,
/// another build) lands on both alike instead of on whichever ran at the
/// time.
///
/// The schedule runs on a thread of its own with `std::thread::sleep`
/// (about 0.1 ms late on Linux) rather than on tokio timers, whose 1 ms
/// granularity would add up to a millisecond of the generator's own delay to
/// every latency. At most `max_in_flight` may be outstanding; a send that
/// finds the cap reached is counted as an `overrun` error, not delayed,
/// because delaying it would hide the stall.
pub async fn open_loop_in_turn(
    operations: &[Operation],
    first: u64,
    count_each: u64,
    rate_per_s: f64,
    max_in_flight: u64,
) -> Vec<Measurement> {
    let turns = operations.len() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate_per_s);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(usize, Duration, OpResult)>();
    let in_flight = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Handle::current();
    let scheduled = operations.to_vec();
    let start = std::time::Instant::now();
    let scheduler = std::thread::spawn(move || {
        let mut overruns = vec![0u64; scheduled.len()];
        for offset in 0..count_each * turns {
            let turn = (offset % turns) as usize;
            let intended = start + interval.mul_f64(offset as f64);
            let now = std::time::Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                overruns[turn] += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let future = scheduled[turn](first + offset / turns);
            let done_tx = done_tx.clone();
            let in_flight = in_flight.clone();
            runtime.spawn(async move {
                let result = future.await;
                // From the intended send time, not the actual one.
                let latency = intended.elapsed();
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let _ = done_tx.send((turn, latency, result));
            });
        }
        overruns
    });
    let mut measured = vec![Measurement::default(); operations.len()];
    // Ends when the scheduler and every request it started are done.
    while let Some((turn, latency, result)) = done_rx.recv().await {
        measured[turn].record(latency, &result);
    }
    let overruns = scheduler
        .join()
        .unwrap_or_else(|_| vec![0; operations.len()]);
    let elapsed = start.elapsed();
    for (measurement, overruns) in measured.iter_mut().zip(overruns) {
        for _ in 0..overruns {
            measurement.record(Duration::ZERO, &Err("overrun".into()));
        }
        measurement.elapsed = elapsed;
    }
    measured
}

/// Runs `count` operations on `workers` concurrent workers, each sending
/// its next as soon as its last returns; stops early at `deadline`.
pub async fn closed_loop(
    operation: &Operation,
    first: u64,
    count: u64,
    workers: usize,
    deadline: Duration,
) -> Measurement {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let operation = operation.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut measurement = Measurement::default();
            loop {
                let offset = next.fetch_add(1, Ordering::Relaxed);
                if offset >= count || start.elapsed() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let result = operation(first + offset).await;
                measurement.record(sent.elapsed(), &result);
            }
            measurement
        }));
    }
    let mut total = Measurement::default();
    for task in tasks {
        if let Ok(measurement) = task.await {
            total.merge(&measurement);
        }
    }
    total.elapsed = start.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeping(millis: u64) -> Operation {
        Arc::new(move |_| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                Ok(())
            })
        })
    }

    #[tokio::test]
    async fn open_loop_sends_on_schedule_whatever_the_answers_take() {
        // Each operation takes 50 ms; at 100/s they overlap, so a sender
        // that waited for answers could not keep the rate. Every operation
        // is still sent and measured.
        let measurement = open_loop(&sleeping(50), 0, 20, 100.0, 1000).await;
        assert_eq!(measurement.count(), 20);
        assert_eq!(measurement.errors, 0);
        assert!(measurement.latency.value_at_quantile(0.5) >= 50_000);
    }

    #[tokio::test]
    async fn open_loop_overruns_are_errors_not_waits() {
        let measurement = open_loop(&sleeping(1000), 0, 10, 100.0, 2).await;
        assert_eq!(measurement.count(), 2);
        assert_eq!(measurement.errors, 8);
        assert_eq!(measurement.error_kinds, vec![("overrun".to_owned(), 8)]);
    }

    #[tokio::test]
    async fn operations_in_turn_are_sent_alternately_and_measured_apart() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recording = |tag: char, answer: OpResult| -> Operation {
            let seen = seen.clone();
            Arc::new(move |index| {
                seen.lock().unwrap().push((tag, index));
                let answer = answer.clone();
                Box::pin(async move { answer })
            })
        };
        let operations = [
            recording('a', Ok(())),
            recording('b', Err("refused".into())),
        ];
        let measured = open_loop_in_turn(&operations, 10, 5, 200.0, 1000).await;
        let expected: Vec<(char, u64)> = (10..15).flat_map(|i| [('a', i), ('b', i)]).collect();
        assert_eq!(*seen.lock().unwrap(), expected);
        // Each operation's answers are its own: a's five successes, b's
        // five refusals.
        assert_eq!(measured.len(), 2);
        assert_eq!((measured[0].count(), measured[0].errors), (5, 0));
        assert_eq!((measured[1].count(), measured[1].errors), (0, 5));
        assert_eq!(measured[1].error_kinds, vec![("refused".to_owned(), 5)]);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_throughput_scales_with_workers() {
        let one = closed_loop(&sleeping(10), 0, 40, 1, Duration::from_secs(60)).await;
        let four = closed_loop(&sleeping(10), 0, 40, 4, Duration::from_secs(60)).await;
        assert_eq!(one.count(), 40);
        assert_eq!(four.count(), 40);
        let ratio = four.throughput_per_s() / one.throughput_per_s();
        assert!((3.5..=4.5).contains(&ratio), "{ratio}");
    }
}
