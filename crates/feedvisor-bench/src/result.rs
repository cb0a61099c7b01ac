//! What runs produce, and what the report and the tables are made of: one
//! run's result ([`RunResult`]), and one row per case of a scenario
//! ([`Row`]) with each system's [`Figures`] over its runs, and the
//! scenario's own figures ([`Extra`]).

use std::time::Duration;

use crate::blaster::{BlastReport, Pace};
use crate::figures::{
    CapacityFigures, CompressedFigures, DoubledFigures, FeedsFigures, SoakFigures, StreamFigures,
};
use crate::scenario::{Scenario, SystemKind, MAX_BLASTER_SHARE, MAX_LATE_SHARE};
use crate::stats::{Percentiles, Summary};

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

/// One system's figures over the runs of a case.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Messages per second received.
    pub msgs_per_s: Summary,
    /// Client CPU nanoseconds per message.
    pub cpu_ns_per_msg: Summary,
    /// Send-to-handled latency over the stamped messages of every run.
    pub latency: Option<Percentiles>,
}

impl Figures {
    /// The figures of `runs`; `None` when there are none.
    pub fn of(runs: &[&RunResult]) -> Option<Figures> {
        let rates: Vec<f64> = runs.iter().map(|run| run.msgs_per_s()).collect();
        let cpu: Vec<f64> = runs.iter().map(|run| run.cpu_ns_per_msg()).collect();
        let mut latencies: Vec<u64> =
            runs.iter().flat_map(|run| run.latencies.iter().copied()).collect();
        Some(Figures {
            msgs_per_s: Summary::of(&rates)?,
            cpu_ns_per_msg: Summary::of(&cpu)?,
            latency: Percentiles::of(&mut latencies),
        })
    }
}

/// One case of a scenario: what was sent, and each system's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// The case, in the scenario's terms ("100 × 64 B", "50% of B1", "10 subscribers").
    pub case: String,
    /// Connections.
    pub conns: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Sidecar subscribers per message.
    pub subscribers: usize,
    /// At a fixed rate: the messages per second offered, over all connections.
    pub offered_msgs_per_s: Option<f64>,
    /// B1, the yardstick.
    pub b1: Option<Figures>,
    /// B0, for context.
    pub b0: Option<Figures>,
    /// The sidecar.
    pub sidecar: Option<Figures>,
    /// Runs, over all systems.
    pub runs: usize,
    /// Runs in which the blaster, not the client, may have set the pace
    /// ([`RunResult::is_valid`]).
    pub invalid_runs: usize,
    /// The largest share of its core the blaster used in any run.
    pub blaster_share_max: f64,
    /// At a fixed rate: the share of late messages over all the runs
    /// ([`RunResult::late_share`]), which decides whether the row is valid.
    pub late_share: Option<f64>,
    /// At a fixed rate: the largest share of late messages in any run.
    pub late_share_max: Option<f64>,
    /// What the feeds, stream and soak scenarios measure besides (or instead of) rates.
    pub extra: Option<Extra>,
}

/// The figures of a scenario about memory and connects rather than message rates.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra {
    /// Idle feeds and an upstream restart.
    Feeds(FeedsFigures),
    /// One large message through stream mode.
    Stream(StreamFigures),
    /// RSS over a fixed-rate run.
    Soak(SoakFigures),
    /// The highest rates sustained, and the steps that found them.
    Capacity(CapacityFigures),
    /// What permessage-deflate costs.
    Compressed(CompressedFigures),
    /// What redundant legs cost.
    Doubled(DoubledFigures),
    /// A case that could not run here, and why.
    Skipped(String),
}

impl Row {
    /// The row of `results`, the runs of one case.
    pub fn from_runs(
        scenario: Scenario,
        case: String,
        load: &Load,
        offered_msgs_per_s: Option<f64>,
        results: &[RunResult],
    ) -> Row {
        let of = |system: SystemKind| {
            let runs: Vec<&RunResult> = results.iter().filter(|run| run.system == system).collect();
            Figures::of(&runs)
        };
        Row {
            scenario,
            case,
            conns: load.conns,
            size: load.size,
            subscribers: load.subscribers.max(1),
            offered_msgs_per_s,
            b1: of(SystemKind::B1),
            b0: of(SystemKind::B0),
            sidecar: of(SystemKind::Sidecar),
            runs: results.len(),
            invalid_runs: results.iter().filter(|run| !run.is_valid()).count(),
            blaster_share_max: results.iter().map(RunResult::blaster_share).fold(0.0, f64::max),
            late_share: pooled_late_share(results),
            late_share_max: results.iter().filter_map(RunResult::late_share).reduce(f64::max),
            extra: None,
        }
    }

    /// A row with no message rates: only `extra`'s figures.
    pub fn measured(
        scenario: Scenario,
        case: String,
        conns: usize,
        size: usize,
        subscribers: usize,
        extra: Extra,
    ) -> Row {
        Row {
            scenario,
            case,
            conns,
            size,
            subscribers,
            offered_msgs_per_s: None,
            b1: None,
            b0: None,
            sidecar: None,
            runs: 1,
            invalid_runs: 0,
            blaster_share_max: 0.0,
            late_share: None,
            late_share_max: None,
            extra: Some(extra),
        }
    }

    /// Sidecar msg/s over B1 msg/s (medians).
    pub fn ratio(&self) -> Option<f64> {
        Some(self.sidecar.as_ref()?.msgs_per_s.median / self.b1.as_ref()?.msgs_per_s.median)
    }

    /// Sidecar CPU per message minus B1's (medians).
    pub fn added_cpu_ns(&self) -> Option<f64> {
        Some(self.sidecar.as_ref()?.cpu_ns_per_msg.median - self.b1.as_ref()?.cpu_ns_per_msg.median)
    }

    /// Sidecar latency percentiles minus B1's, in nanoseconds.
    pub fn added_latency(&self) -> Option<[i128; 3]> {
        let sidecar = self.sidecar.as_ref()?.latency?;
        let b1 = self.b1.as_ref()?.latency?;
        let minus = |a: u64, b: u64| i128::from(a) - i128::from(b);
        Some([minus(sidecar.p50, b1.p50), minus(sidecar.p99, b1.p99), minus(sidecar.p999, b1.p999)])
    }

    /// True when the client, not the blaster, set the pace: at a fixed
    /// rate, when at most [`MAX_LATE_SHARE`] of the messages of all the
    /// row's runs were late (the latency percentiles are pooled over the
    /// runs too, and a short stall of the blaster's core can put one short
    /// run over on its own); otherwise, when no run was invalid.
    pub fn is_valid(&self) -> bool {
        match self.late_share {
            Some(late) => late <= MAX_LATE_SHARE,
            None => self.invalid_runs == 0,
        }
    }
}

/// At a fixed rate: the late messages of all `runs` over all they sent.
fn pooled_late_share(runs: &[RunResult]) -> Option<f64> {
    let fixed: Vec<&RunResult> = runs.iter().filter(|run| run.late_share().is_some()).collect();
    if fixed.is_empty() {
        return None;
    }
    let late: u64 = fixed.iter().map(|run| run.blaster.late).sum();
    let sent: u64 = fixed.iter().map(|run| run.blaster.sent).sum();
    Some(late as f64 / sent.max(1) as f64)
}

/// Runs and rows with known figures, for the tests of the modules that print them.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A saturation run of 1000 messages.
    pub(crate) fn run(
        system: SystemKind,
        micros_per_msg: u64,
        cpu_ns: u64,
        blaster_ms: u64,
    ) -> RunResult {
        RunResult {
            system,
            messages: 1000,
            subscribers: 1,
            pace: Pace::Saturate,
            elapsed: Duration::from_micros(micros_per_msg * 1000),
            client_cpu: Duration::from_nanos(cpu_ns * 1000),
            blaster: BlastReport {
                sent: 1000,
                cpu: Duration::from_millis(blaster_ms),
                wall: Duration::from_millis(1),
                max_lag: Duration::ZERO,
                late: 0,
            },
            latencies: vec![1_000, 2_000, 3_000],
        }
    }

    /// Two runs each of B1 and the sidecar at 1 × 64 B; the last run is
    /// invalid (the blaster used half its core).
    pub(crate) fn row(scenario: Scenario) -> Row {
        let load =
            Load { conns: 1, size: 64, per_conn: 1000, pace: Pace::Saturate, subscribers: 1 };
        let results = [
            run(SystemKind::B1, 1, 100, 0),
            run(SystemKind::Sidecar, 4, 400, 0),
            run(SystemKind::B1, 1, 120, 0),
            run(SystemKind::Sidecar, 2, 300, 1),
        ];
        Row::from_runs(scenario, "1 × 64 B".to_owned(), &load, None, &results)
    }

    /// A latency row of B1 runs at 100 msg/s, each with `lates[i]` of its
    /// 1000 messages late.
    pub(crate) fn fixed_rate_row(lates: &[u64]) -> Row {
        let pace = Pace::Rate { per_conn: 100.0 };
        let at_rate = |late: u64| {
            let saturated = run(SystemKind::B1, 1, 100, 0);
            RunResult { pace, blaster: BlastReport { late, ..saturated.blaster }, ..saturated }
        };
        let load = Load { conns: 1, size: 64, per_conn: 1000, pace, subscribers: 1 };
        let results: Vec<RunResult> = lates.iter().map(|late| at_rate(*late)).collect();
        Row::from_runs(Scenario::Latency, "1 × 100/s".to_owned(), &load, Some(100.0), &results)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{fixed_rate_row, row};
    use super::*;

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

    #[test]
    fn rows_summarise_each_system_and_flag_invalid_runs() {
        let row = row(Scenario::Throughput);
        let b1 = row.b1.as_ref().expect("b1");
        assert_eq!(b1.msgs_per_s.median, 1e6);
        assert_eq!(b1.cpu_ns_per_msg.median, 110.0);
        let sidecar = row.sidecar.as_ref().expect("sidecar");
        assert_eq!((sidecar.msgs_per_s.min, sidecar.msgs_per_s.max), (250e3, 500e3));
        assert!(row.b0.is_none());
        assert_eq!(row.ratio(), Some(0.375));
        assert_eq!(row.added_cpu_ns(), Some(240.0));
        // 1 ms of blaster CPU over a 2 ms run: half its core.
        assert_eq!((row.invalid_runs, row.blaster_share_max), (1, 0.5));
        assert!(!row.is_valid());
    }

    #[test]
    fn a_fixed_rate_row_is_judged_by_its_late_share_over_all_runs() {
        // One run 3% late of four: 1.2% over all of them, a valid row.
        let mostly = fixed_rate_row(&[30, 6, 6, 6]);
        assert_eq!(mostly.invalid_runs, 1);
        assert_eq!(mostly.late_share, Some(0.012));
        assert_eq!(mostly.late_share_max, Some(0.03));
        assert!(mostly.is_valid());
        assert!(!fixed_rate_row(&[30, 30, 30, 6]).is_valid());
    }
}
