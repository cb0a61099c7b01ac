//! What a benchmark prints: one row per case, as a table or as JSON lines,
//! with the machine, kernel, compiler and crate versions they come from.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::capacity::CapacityFigures;
use super::feeds::FeedsFigures;
use super::soak::SoakFigures;
use super::stats::{Percentiles, Summary};
use super::stream::StreamFigures;
use super::table;
use super::{blaster, capacity, Load, RunResult, Scenario, SystemKind};
use super::{feeds, soak, stream};
use super::{MAX_BLASTER_SHARE, MAX_LATE_SHARE};

/// The crates whose versions a report names (from the `Cargo.lock` built in).
const CRATES: &[&str] = &[
    "actix",
    "actix-rt",
    "awc",
    "actix-http",
    "tokio",
    "tokio-tungstenite",
    "metrics",
    "metrics-exporter-prometheus",
];

/// The lock file this binary was built with.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

/// Where the figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The CPU model.
    pub machine: String,
    /// Cores this process could use at the start.
    pub cores: usize,
    /// Total memory.
    pub memory: String,
    /// The kernel release.
    pub kernel: String,
    /// The compiler that built this binary.
    pub rustc: String,
    /// feedvisor's version and those of the crates it is built on (actix, awc, tokio, ...).
    pub crates: Vec<(String, String)>,
    /// Which thread ran on which core.
    pub pinning: String,
    /// The command line.
    pub command: String,
}

impl Env {
    /// Reads the machine's description from `/proc` and this binary.
    pub fn gather(cores: usize, pinning: String) -> Env {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let machine = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown CPU")
            .to_owned();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|line| {
                line.strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or_else(
                || "unknown memory".to_owned(),
                |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
            );
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
        let mut crates = vec![("feedvisor".to_owned(), env!("CARGO_PKG_VERSION").to_owned())];
        crates.extend(locked_versions(CARGO_LOCK, CRATES));
        let mut args = std::env::args().skip(1).collect::<Vec<_>>();
        args.insert(0, "feedvisor".to_owned());
        Env {
            machine,
            cores,
            memory,
            kernel: if kernel.is_empty() { "unknown".to_owned() } else { kernel },
            rustc: rustc_version().unwrap_or_else(|| "unknown".to_owned()),
            crates,
            pinning,
            command: args.join(" "),
        }
    }

    fn to_json(&self) -> Value {
        let crates: Map<String, Value> = self
            .crates
            .iter()
            .map(|(name, version)| (name.clone(), Value::from(version.clone())))
            .collect();
        json!({
            "machine": self.machine,
            "cores": self.cores,
            "memory": self.memory,
            "kernel": self.kernel,
            "rustc": self.rustc,
            "crates": crates,
            "pinning": self.pinning,
        })
    }
}

/// The versions of `names` in a `Cargo.lock` (several, comma-separated, when
/// the lock holds more than one).
pub fn locked_versions(lock: &str, names: &[&str]) -> Vec<(String, String)> {
    let mut found: Vec<(String, Vec<String>)> =
        names.iter().map(|name| (name.to_string(), Vec::new())).collect();
    let mut current: Option<&str> = None;
    for line in lock.lines() {
        if let Some(name) = line.strip_prefix("name = ") {
            current = Some(name.trim_matches('"'));
        } else if let (Some(version), Some(name)) =
            (line.strip_prefix("version = "), current.take())
        {
            if let Some((_, versions)) = found.iter_mut().find(|(wanted, _)| wanted == name) {
                versions.push(version.trim_matches('"').to_owned());
            }
        }
    }
    found
        .into_iter()
        .filter(|(_, versions)| !versions.is_empty())
        .map(|(name, versions)| (name, versions.join(", ")))
        .collect()
}

/// The compiler version rustc writes into every binary's `.comment` section.
fn rustc_version() -> Option<String> {
    let binary = std::fs::read("/proc/self/exe").ok()?;
    find_rustc_version(&binary)
}

/// `rustc version X (hash date)` from a binary, without the prefix.
pub fn find_rustc_version(binary: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"rustc version ";
    let found = binary.split(|byte| *byte == 0).find(|string| string.starts_with(MARK))?;
    std::str::from_utf8(&found[MARK.len()..]).ok().map(str::to_owned)
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
    /// A case that could not run here, and why.
    Skipped(String),
}

impl Extra {
    /// The figures as JSON keys of the row.
    fn to_json(&self) -> Map<String, Value> {
        let value = match self {
            Extra::Feeds(figures) => serde_json::to_value(figures),
            Extra::Stream(figures) => serde_json::to_value(figures),
            Extra::Soak(figures) => serde_json::to_value(figures),
            Extra::Capacity(figures) => serde_json::to_value(figures),
            Extra::Skipped(reason) => {
                return Map::from_iter([("skipped".to_owned(), reason.clone().into())])
            }
        };
        match value {
            Ok(Value::Object(object)) => object,
            _ => Map::new(),
        }
    }
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

    /// The row as one JSON object; `baseline_*` is B1.
    pub fn to_json(&self, env: &Env) -> Value {
        let mut object = Map::new();
        let mut put = |key: &str, value: Value| {
            object.insert(key.to_owned(), value);
        };
        put("scenario", self.scenario.name().into());
        put("case", self.case.clone().into());
        put("conns", self.conns.into());
        put("size", self.size.into());
        put("subscribers", self.subscribers.into());
        if let Some(offered) = self.offered_msgs_per_s {
            put("offered_msgs_per_s", round(offered).into());
        }
        for (prefix, figures) in
            [("baseline", &self.b1), ("b0", &self.b0), ("sidecar", &self.sidecar)]
        {
            let summary = |pick: fn(&Figures) -> Summary| figures.as_ref().map(pick);
            let median = |s: Option<Summary>| s.map_or(Value::Null, |s| round(s.median).into());
            let range =
                |s: Option<Summary>| s.map_or(Value::Null, |s| json!([round(s.min), round(s.max)]));
            put(&format!("{prefix}_msgs_per_s"), median(summary(|f| f.msgs_per_s)));
            put(&format!("{prefix}_msgs_per_s_range"), range(summary(|f| f.msgs_per_s)));
            put(&format!("{prefix}_cpu_ns_per_msg"), median(summary(|f| f.cpu_ns_per_msg)));
            if matches!(self.scenario, Scenario::Latency | Scenario::Capacity) && prefix != "b0" {
                let latency = figures.as_ref().and_then(|f| f.latency);
                put(
                    &format!("{prefix}_p50_us"),
                    latency.map_or(Value::Null, |l| micros(l.p50).into()),
                );
                put(
                    &format!("{prefix}_p99_us"),
                    latency.map_or(Value::Null, |l| micros(l.p99).into()),
                );
                put(
                    &format!("{prefix}_p999_us"),
                    latency.map_or(Value::Null, |l| micros(l.p999).into()),
                );
                put(
                    &format!("{prefix}_latency_samples"),
                    latency.map_or(Value::Null, |l| l.samples.into()),
                );
            }
        }
        put(
            "ratio",
            self.ratio().map_or(Value::Null, |ratio| ((ratio * 1000.0).round() / 1000.0).into()),
        );
        put("added_cpu_ns_per_msg", self.added_cpu_ns().map_or(Value::Null, |ns| round(ns).into()));
        if self.scenario == Scenario::Latency {
            let added = self.added_latency();
            for (index, key) in
                ["added_p50_us", "added_p99_us", "added_p999_us"].into_iter().enumerate()
            {
                put(key, added.map_or(Value::Null, |added| signed_micros(added[index]).into()));
            }
        }
        if self.scenario == Scenario::Fanout {
            let sidecar = self.sidecar.as_ref();
            let deliveries = sidecar.map(|f| f.msgs_per_s.median * self.subscribers as f64);
            let per_delivery = sidecar.map(|f| f.cpu_ns_per_msg.median / self.subscribers as f64);
            put("sidecar_deliveries_per_s", deliveries.map_or(Value::Null, |d| round(d).into()));
            put(
                "sidecar_cpu_ns_per_delivery",
                per_delivery.map_or(Value::Null, |ns| round(ns).into()),
            );
        }
        if let Some(extra) = &self.extra {
            for (key, value) in extra.to_json() {
                put(&key, value);
            }
        }
        put("runs", self.runs.into());
        put("blaster_cpu_share_max", ((self.blaster_share_max * 1000.0).round() / 1000.0).into());
        put("blaster_late_share", self.late_share.map_or(Value::Null, |s| share(s).into()));
        put("blaster_late_share_max", self.late_share_max.map_or(Value::Null, |s| share(s).into()));
        put("invalid_runs", self.invalid_runs.into());
        put("valid", self.is_valid().into());
        put("env", env.to_json());
        Value::Object(object)
    }
}

/// A scenario's rows with where they were measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine and versions.
    pub env: Env,
    /// The scenario run.
    pub scenario: Scenario,
    /// One per case.
    pub rows: Vec<Row>,
}

impl Report {
    /// One JSON object per row.
    pub fn json_lines(&self) -> Vec<String> {
        self.rows.iter().map(|row| row.to_json(&self.env).to_string()).collect()
    }

    /// The header and the scenario's table, as Markdown.
    pub fn render(&self) -> String {
        let env = &self.env;
        let crates: Vec<String> =
            env.crates.iter().map(|(name, version)| format!("{name} {version}")).collect();
        let mut text = format!("feedvisor bench {}\n", self.scenario.name());
        let _ = writeln!(
            text,
            "machine: {}, {} cores, {}; kernel {}; rustc {}",
            env.machine, env.cores, env.memory, env.kernel, env.rustc
        );
        let _ = writeln!(text, "crates: {}", crates.join(", "));
        let _ = writeln!(text, "pinning: {}", env.pinning);
        let _ = writeln!(text, "command: {}\n", env.command);
        text.push_str(&table::for_scenario(self.scenario, &self.rows).render());
        if self.scenario == Scenario::Capacity {
            text.push('\n');
            text.push_str(&table::capacity_steps(&self.rows).render());
        }
        let runs: usize = self.rows.iter().map(|row| row.runs).sum();
        let invalid: usize = self.rows.iter().map(|row| row.invalid_runs).sum();
        let invalid_rows = self.rows.iter().filter(|row| !row.is_valid()).count();
        let note = match self.scenario {
            Scenario::Feeds => feeds::NOTE,
            Scenario::Stream => stream::NOTE,
            Scenario::Soak => soak::NOTE,
            Scenario::Capacity => capacity::NOTE,
            Scenario::Latency => {
                "msg/s: median (min-max) over the runs; ns/msg: client CPU (every thread but the blaster's) per message; \
                 blaster: the most of its core the blaster used in a run; late: the share of the messages \
                 that the blaster sent more than 1 ms after they were due, over all the runs / in the worst run."
            }
            Scenario::Throughput | Scenario::Fanout => {
                "msg/s: median (min-max) over the runs; ns/msg: client CPU (every thread but the blaster's) per message; \
                 blaster: the most of its core the blaster used in a run."
            }
        };
        let _ = writeln!(text, "\n{note}");
        let late_share = table::format_share(MAX_LATE_SHARE);
        let late_after = blaster::LATE_AFTER;
        let _ = match self.scenario {
            Scenario::Capacity if invalid_rows > 0 => writeln!(
                text,
                "INVALID: {invalid} search(es) ended below a rate at which the blaster sent more than {late_share} of the \
                 messages more than {late_after:?} after they were due (twice): the figure is only a lower bound (rows marked *)."
            ),
            Scenario::Latency | Scenario::Soak if invalid_rows > 0 => writeln!(
                text,
                "INVALID: over the runs of {invalid_rows} row(s) the blaster sent more than {late_share} of the messages \
                 more than {late_after:?} after they were due, so the client was not offered the load named (rows marked *)."
            ),
            Scenario::Latency | Scenario::Soak if invalid > 0 => writeln!(
                text,
                "In {invalid} of {runs} runs the blaster was late for more than {late_share} of the messages, \
                 but not over all the runs of their rows."
            ),
            Scenario::Throughput | Scenario::Fanout if invalid > 0 => writeln!(
                text,
                "INVALID: in {invalid} of {runs} runs the blaster used more than {:.0}% of its core, so the upstream may have set the pace (rows marked *).",
                MAX_BLASTER_SHARE * 100.0
            ),
            _ => Ok(()),
        };
        text
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

/// A whole number for JSON (rates and nanoseconds need no fraction).
fn round(value: f64) -> i64 {
    value.round() as i64
}

/// A share with five decimals (0.1% is 0.001).
fn share(value: f64) -> f64 {
    (value * 100_000.0).round() / 100_000.0
}

fn micros(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn signed_micros(ns: i128) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::blaster::{BlastReport, Pace};

    fn run(system: SystemKind, micros_per_msg: u64, cpu_ns: u64, blaster_ms: u64) -> RunResult {
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

    fn env() -> Env {
        Env {
            machine: "test CPU".to_owned(),
            cores: 2,
            memory: "1.0 GiB".to_owned(),
            kernel: "6.0".to_owned(),
            rustc: "1.95.0".to_owned(),
            crates: vec![("feedvisor".to_owned(), "0.1.0".to_owned())],
            pinning: "not pinned".to_owned(),
            command: "feedvisor bench throughput".to_owned(),
        }
    }

    fn row(scenario: Scenario) -> Row {
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
        let at_rate = |late: u64| RunResult {
            pace: Pace::Rate { per_conn: 100.0 },
            blaster: BlastReport { late, ..run(SystemKind::B1, 1, 100, 0).blaster },
            ..run(SystemKind::B1, 1, 100, 0)
        };
        let load = Load {
            conns: 1,
            size: 64,
            per_conn: 1000,
            pace: Pace::Rate { per_conn: 100.0 },
            subscribers: 1,
        };
        let row = |lates: &[u64]| {
            let results: Vec<RunResult> = lates.iter().map(|late| at_rate(*late)).collect();
            Row::from_runs(Scenario::Latency, "1 × 100/s".to_owned(), &load, Some(100.0), &results)
        };
        // One run 3% late of four: 1.2% over all of them, a valid row.
        let mostly = row(&[30, 6, 6, 6]);
        assert_eq!(mostly.invalid_runs, 1);
        assert_eq!(mostly.late_share, Some(0.012));
        assert_eq!(mostly.late_share_max, Some(0.03));
        assert!(mostly.is_valid());
        let json = mostly.to_json(&env());
        assert_eq!(
            (json["blaster_late_share"].as_f64(), json["valid"].as_bool()),
            (Some(0.012), Some(true))
        );
        let late = row(&[30, 30, 30, 6]);
        assert!(!late.is_valid());
        let report = Report { env: env(), scenario: Scenario::Latency, rows: vec![mostly, late] };
        let text = report.render();
        assert!(text.contains("INVALID: over the runs of 1 row(s)"), "{text}");
        assert!(text.contains(" 1.2% / 3.0% |"), "{text}");
    }

    #[test]
    fn json_rows_have_the_documented_keys() {
        let json = row(Scenario::Throughput).to_json(&env());
        assert_eq!(json["scenario"], "throughput");
        assert_eq!(json["conns"], 1);
        assert_eq!(json["size"], 64);
        assert_eq!(json["baseline_msgs_per_s"], 1e6);
        assert_eq!(json["sidecar_msgs_per_s"], 375e3);
        assert_eq!(json["ratio"], 0.375);
        assert_eq!(json["b0_msgs_per_s"], Value::Null);
        assert_eq!(json["valid"], false);
        assert_eq!(json["env"]["rustc"], "1.95.0");
        assert!(json.get("sidecar_p99_us").is_none(), "latency only in the latency scenario");
        let latency = row(Scenario::Latency).to_json(&env());
        assert_eq!(latency["sidecar_p50_us"], 2.0);
        assert_eq!(latency["added_p99_us"], 0.0);
    }

    #[test]
    fn tables_align_and_mark_invalid_rows() {
        let report = Report {
            env: env(),
            scenario: Scenario::Throughput,
            rows: vec![row(Scenario::Throughput)],
        };
        let text = report.render();
        assert!(text.starts_with("feedvisor bench throughput\nmachine: test CPU, 2 cores"));
        assert!(text.contains("| 1 × 64 B * "), "{text}");
        assert!(text.contains("1.00M (1.00M-1.00M)"), "{text}");
        assert!(text.contains("INVALID: in 1 of 4 runs"), "{text}");
        let table_lines: Vec<&str> = text.lines().filter(|line| line.starts_with('|')).collect();
        assert_eq!(table_lines.len(), 3);
        let width = table_lines[0].chars().count();
        assert!(table_lines.iter().all(|line| line.chars().count() == width), "{text}");
    }

    #[test]
    fn latencies_are_in_microseconds_with_one_decimal() {
        assert_eq!(micros(1_250), 1.3);
        assert_eq!(signed_micros(-2_500), -2.5);
    }

    #[test]
    fn versions_come_from_the_lock_file() {
        let lock = "[[package]]\nname = \"awc\"\nversion = \"3.11.0\"\n\n[[package]]\nname = \"tokio\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"tokio\"\nversion = \"1.2.0\"\n";
        let found = locked_versions(lock, &["awc", "tokio", "missing"]);
        assert_eq!(
            found,
            [
                ("awc".to_owned(), "3.11.0".to_owned()),
                ("tokio".to_owned(), "1.0.0, 1.2.0".to_owned())
            ]
        );
        assert!(locked_versions(CARGO_LOCK, &["awc"]).len() == 1);
    }

    #[test]
    fn the_rustc_version_is_read_from_the_comment_section() {
        let binary =
            b"\x7fELF...\0GCC: (Debian)\0rustc version 1.95.0 (59807616e 2026-04-14)\0more";
        assert_eq!(find_rustc_version(binary).as_deref(), Some("1.95.0 (59807616e 2026-04-14)"));
        assert_eq!(find_rustc_version(b"nothing here"), None);
    }
}
