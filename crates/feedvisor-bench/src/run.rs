//! One run: a blaster job, one client, and what the client did with it.

use std::time::{Duration, Instant};

use crate::baseline::BaselineClient;
use crate::blaster::{Blaster, JobSpec};
use crate::cpu::ProcessCpu;
use crate::format::{format_latency, format_rate, format_share};
use crate::result::{Load, RunResult};
use crate::scenario::{BenchError, BenchSink, SystemKind};
use crate::sidecar::SidecarClient;
use crate::tally::Tally;

/// What every scenario runs with: the blaster, the clock, the limits.
pub struct Bench {
    /// The upstream, on its own thread.
    pub(crate) blaster: Blaster,
    /// The instant stamps count from.
    pub(crate) base: Instant,
    /// The longest a run may take to connect, or to finish.
    pub(crate) timeout: Duration,
    /// What the sidecar's subscribers do with each batch.
    pub(crate) sink: BenchSink,
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
                let received = tally.borrow().received();
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
        let latencies = tally.borrow_mut().take_latencies();
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
pub(crate) fn progress(label: &str, run: usize, runs: usize, result: &RunResult) {
    let late = result.late_share().map_or_else(String::new, |late| {
        let worst = format_latency(result.blaster.max_lag.as_nanos() as f64);
        format!(", late {} (worst {worst})", format_share(late))
    });
    eprintln!(
        "{label} run {}/{runs} {:<7} {:>10} msg/s {:>8.0} ns/msg  blaster {:>3.0}%{late}{}",
        run + 1,
        result.system.to_string(),
        format_rate(result.msgs_per_s()),
        result.cpu_ns_per_msg(),
        result.blaster_share() * 100.0,
        if result.is_valid() { "" } else { " (invalid)" },
    );
}
