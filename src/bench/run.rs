//! One run: a blaster job, one client, and what the client did with it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::baseline::BaselineClient;
use super::blaster::{BlastReport, Blaster, JobSpec, Pace};
use super::cpu::ProcessCpu;
use super::sidecar::SidecarClient;
use super::{frames, table, BenchError, SystemKind, MAX_BLASTER_SHARE, MAX_LATE_SHARE};

/// What a client has handled in one run: the count, and the latency of
/// each stamped message.
pub struct Tally {
    /// Messages (deliveries, with several subscribers) that end the run.
    expected: u64,
    /// Handled so far.
    received: u64,
    /// The instant the blaster's stamps count from.
    base: Instant,
    /// Send-to-handled nanoseconds of the stamped messages.
    latencies: Vec<u64>,
    /// Told the instant the last expected message was handled.
    finished: Option<oneshot::Sender<Instant>>,
}

impl Tally {
    /// A tally that expects `expected` messages; the receiver gets the instant it is complete.
    pub fn new(expected: u64, base: Instant) -> (Rc<RefCell<Tally>>, oneshot::Receiver<Instant>) {
        let (finished, complete) = oneshot::channel();
        let tally =
            Tally { expected, received: 0, base, latencies: Vec::new(), finished: Some(finished) };
        (Rc::new(RefCell::new(tally)), complete)
    }

    /// Records the latency of a stamped payload (others are ignored).
    pub fn observe(&mut self, payload: &[u8]) {
        if let Some(sent) = frames::parse_stamp(payload) {
            self.latencies.push(frames::nanos_since(self.base).saturating_sub(sent));
        }
    }

    /// Counts `count` handled messages.
    pub fn handled(&mut self, count: u64) {
        self.received += count;
        if self.received >= self.expected {
            if let Some(finished) = self.finished.take() {
                let _ = finished.send(Instant::now());
            }
        }
    }
}

/// What one client does in a run: how much, how fast, at what cost.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Which client.
    pub system: SystemKind,
    /// Messages the blaster sent.
    pub messages: u64,
    /// Subscribers each message went to (1 for the baselines).
    pub subscribers: usize,
    /// Full speed, or a fixed rate.
    pub pace: Pace,
    /// From the go to the last message handled.
    pub elapsed: Duration,
    /// CPU time of every thread but the blaster's, over the same span.
    pub client_cpu: Duration,
    /// The blaster's own account.
    pub blaster: BlastReport,
    /// Send-to-handled nanoseconds of the stamped messages.
    pub latencies: Vec<u64>,
}

impl RunResult {
    /// Messages per second received.
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Client CPU nanoseconds per message received.
    pub fn cpu_ns_per_msg(&self) -> f64 {
        self.client_cpu.as_nanos() as f64 / self.messages.max(1) as f64
    }

    /// The share of its core the blaster used over the run.
    pub fn blaster_share(&self) -> f64 {
        self.blaster.cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// At a fixed rate: the share of the messages that the blaster handed
    /// over more than [`LATE_AFTER`](super::blaster::LATE_AFTER) after they were due.
    pub fn late_share(&self) -> Option<f64> {
        match self.pace {
            Pace::Saturate => None,
            Pace::Rate { .. } => Some(self.blaster.late as f64 / self.blaster.sent.max(1) as f64),
        }
    }

    /// Whether the client, not the blaster, set the pace: at a fixed rate,
    /// the blaster was late for at most [`MAX_LATE_SHARE`] of the messages;
    /// at saturation, it used at most [`MAX_BLASTER_SHARE`] of its core.
    pub fn is_valid(&self) -> bool {
        match self.late_share() {
            Some(late) => late <= MAX_LATE_SHARE,
            None => self.blaster_share() <= MAX_BLASTER_SHARE,
        }
    }
}

/// What a run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Connections (feeds, for the sidecar).
    pub conns: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages per connection.
    pub per_conn: u64,
    /// Full speed, or a fixed rate.
    pub pace: Pace,
    /// Sidecar subscribers (the baselines have none).
    pub subscribers: usize,
}

/// What every scenario runs with: the blaster, the clock, the limits.
pub struct Bench {
    /// The upstream, on its own thread.
    pub(super) blaster: Blaster,
    /// The instant stamps count from.
    pub(super) base: Instant,
    /// The longest a run may take to connect, or to finish.
    pub(super) timeout: Duration,
    /// What the sidecar's subscribers do with each batch.
    pub(super) sink: super::BenchSink,
}

impl Bench {
    /// Runs `load` once against `system`.
    pub async fn run_once(&self, system: SystemKind, load: Load) -> Result<RunResult, BenchError> {
        let spec = JobSpec {
            conns: load.conns,
            size: load.size,
            per_conn: load.per_conn,
            pace: load.pace,
        };
        let mut job = self.blaster.prepare(spec).await?;
        let messages = load.per_conn * load.conns as u64;
        let subscribers = if system == SystemKind::Sidecar { load.subscribers.max(1) } else { 1 };
        let expected = messages * subscribers as u64;
        let (tally, complete) = Tally::new(expected, self.base);
        let client = match system {
            SystemKind::Sidecar => Client::Sidecar(
                SidecarClient::start(job.addr, load.conns, subscribers, self.sink, &tally).await?,
            ),
            baseline => Client::Baseline(
                BaselineClient::connect(baseline, job.addr, load.conns, &tally).await?,
            ),
        };
        job.ready(self.timeout).await?;
        let cpu_before =
            ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
        let started = Instant::now();
        job.go();
        let finished = match tokio::time::timeout(self.timeout, complete).await {
            Ok(Ok(finished)) => finished,
            Ok(Err(_)) | Err(_) => {
                let received = tally.borrow().received;
                client.abort().await;
                return Err(BenchError::Timeout {
                    system,
                    timeout: self.timeout,
                    received,
                    expected,
                });
            }
        };
        let cpu_after =
            ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
        let blaster = job.report(self.timeout).await?;
        client.stop().await;
        let latencies = std::mem::take(&mut tally.borrow_mut().latencies);
        Ok(RunResult {
            system,
            messages,
            subscribers,
            pace: load.pace,
            elapsed: finished.saturating_duration_since(started),
            client_cpu: cpu_after.used_since(&cpu_before, &[self.blaster.thread_id()]),
            blaster,
            latencies,
        })
    }
}

/// A client of one run, to be stopped when the run is over.
enum Client {
    Baseline(BaselineClient),
    Sidecar(SidecarClient),
}

impl Client {
    async fn stop(self) {
        match self {
            // The read loops end at the blaster's close frame; an error now
            // (after every message arrived) changes nothing measured.
            Client::Baseline(client) => {
                let _ = client.finish().await;
            }
            Client::Sidecar(client) => client.stop().await,
        }
    }

    /// Gives up on a run that did not finish.
    async fn abort(self) {
        match self {
            Client::Baseline(client) => client.abort(),
            Client::Sidecar(client) => client.stop().await,
        }
    }
}

/// Prints one run's figures on standard error, as the bench goes.
pub(super) fn progress(label: &str, run: usize, runs: usize, result: &RunResult) {
    let late = result.late_share().map_or_else(String::new, |late| {
        let worst = table::format_latency(result.blaster.max_lag.as_nanos() as f64);
        format!(", late {} (worst {worst})", table::format_share(late))
    });
    eprintln!(
        "{label} run {}/{runs} {:<7} {:>10} msg/s {:>8.0} ns/msg  blaster {:>3.0}%{late}{}",
        run + 1,
        result.system.to_string(),
        table::format_rate(result.msgs_per_s()),
        result.cpu_ns_per_msg(),
        result.blaster_share() * 100.0,
        if result.is_valid() { "" } else { " (invalid)" },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_completes_once_and_reads_stamps() {
        let base = Instant::now();
        let (tally, mut complete) = Tally::new(3, base);
        let mut stamped = b"T0000000000000000".to_vec();
        stamped.extend_from_slice(b"xxxx");
        tally.borrow_mut().observe(&stamped);
        tally.borrow_mut().observe(b"xxxxxxxxxxxxxxxxxxxxx");
        tally.borrow_mut().handled(2);
        assert!(complete.try_recv().is_err());
        tally.borrow_mut().handled(1);
        assert!(complete.try_recv().is_ok());
        assert_eq!(tally.borrow().latencies.len(), 1);
    }

    fn run(pace: Pace, blaster_cpu_ms: u64, late: u64) -> RunResult {
        RunResult {
            system: SystemKind::B1,
            messages: 1000,
            subscribers: 1,
            pace,
            elapsed: Duration::from_millis(100),
            client_cpu: Duration::from_millis(50),
            blaster: BlastReport {
                sent: 1000,
                cpu: Duration::from_millis(blaster_cpu_ms),
                wall: Duration::from_millis(100),
                max_lag: Duration::ZERO,
                late,
            },
            latencies: Vec::new(),
        }
    }

    #[test]
    fn a_fixed_rate_run_is_judged_by_the_blasters_lateness() {
        let rate = Pace::Rate { per_conn: 100.0 };
        // Half its core, on schedule: valid.
        assert!(run(rate, 50, 10).is_valid());
        assert_eq!(run(rate, 50, 10).late_share(), Some(0.01));
        // Idle, but 3% late: invalid.
        assert!(!run(rate, 1, 30).is_valid());
        // At saturation, the CPU share decides, and there is no lateness.
        assert!(!run(Pace::Saturate, 50, 0).is_valid());
        assert!(run(Pace::Saturate, 10, 0).is_valid());
        assert_eq!(run(Pace::Saturate, 10, 0).late_share(), None);
    }
}
