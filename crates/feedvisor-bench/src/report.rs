//! What a benchmark prints: its rows as JSON lines, or as text (a header
//! naming the machine, kernel, compiler and crate versions they come from,
//! the scenario's tables and the note that explains them).
//!
//! The report knows no scenario module: the tables and the note of a
//! scenario are handed to [`Report::render`] by the crate's root.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::blaster;
use crate::format::{format_share, Table};
use crate::result::{Extra, Figures, Row};
use crate::scenario::{Scenario, MAX_BLASTER_SHARE, MAX_LATE_SHARE};
use crate::stats::Summary;

/// The crates whose versions a report names (from the workspace's
/// `Cargo.lock`, which `build.rs` copies into `OUT_DIR`).
const CRATES: &[&str] =
    &["actix", "actix-rt", "awc", "actix-http", "tokio", "tokio-tungstenite", "metrics"];

/// The lock file this binary was built with.
const CARGO_LOCK: &str = include_str!(concat!(env!("OUT_DIR"), "/Cargo.lock"));

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
    /// feedvisor's version (the bench's, the same workspace version) and those
    /// of the crates it is built on (actix, awc, tokio, ...).
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
        args.insert(0, "feedvisor-bench".to_owned());
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

impl Extra {
    /// The figures as JSON keys of the row.
    fn to_json(&self) -> Map<String, Value> {
        let value = match self {
            Extra::Feeds(figures) => serde_json::to_value(figures),
            Extra::Stream(figures) => serde_json::to_value(figures),
            Extra::Soak(figures) => serde_json::to_value(figures),
            Extra::Capacity(figures) => serde_json::to_value(figures),
            Extra::Compressed(figures) => serde_json::to_value(figures),
            Extra::Doubled(figures) => serde_json::to_value(figures),
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

    /// The header, the scenario's `tables` (Markdown, one after the other)
    /// and the `note` that explains them, and what makes rows invalid.
    pub fn render(&self, tables: &[Table], note: &str) -> String {
        let env = &self.env;
        let crates: Vec<String> =
            env.crates.iter().map(|(name, version)| format!("{name} {version}")).collect();
        let mut text = format!("feedvisor-bench {}\n", self.scenario.name());
        let _ = writeln!(
            text,
            "machine: {}, {} cores, {}; kernel {}; rustc {}",
            env.machine, env.cores, env.memory, env.kernel, env.rustc
        );
        let _ = writeln!(text, "crates: {}", crates.join(", "));
        let _ = writeln!(text, "pinning: {}", env.pinning);
        let _ = writeln!(text, "command: {}\n", env.command);
        let rendered: Vec<String> = tables.iter().map(Table::render).collect();
        text.push_str(&rendered.join("\n"));
        let runs: usize = self.rows.iter().map(|row| row.runs).sum();
        let invalid: usize = self.rows.iter().map(|row| row.invalid_runs).sum();
        let invalid_rows = self.rows.iter().filter(|row| !row.is_valid()).count();
        let _ = writeln!(text, "\n{note}");
        let late_share = format_share(MAX_LATE_SHARE);
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

/// A machine description for tests: fixed, so that rendered text is too.
#[cfg(test)]
pub(crate) fn test_env() -> Env {
    Env {
        machine: "test CPU".to_owned(),
        cores: 2,
        memory: "1.0 GiB".to_owned(),
        kernel: "6.0".to_owned(),
        rustc: "1.95.0".to_owned(),
        crates: vec![("feedvisor".to_owned(), "0.1.0".to_owned())],
        pinning: "not pinned".to_owned(),
        command: "feedvisor-bench throughput".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::fixtures::{fixed_rate_row, row};

    #[test]
    fn a_fixed_rate_row_is_judged_in_json_and_text_by_its_late_share_over_all_runs() {
        // One run 3% late of four: 1.2% over all of them, a valid row.
        let mostly = fixed_rate_row(&[30, 6, 6, 6]);
        let json = mostly.to_json(&test_env());
        assert_eq!(
            (json["blaster_late_share"].as_f64(), json["valid"].as_bool()),
            (Some(0.012), Some(true))
        );
        let late = fixed_rate_row(&[30, 30, 30, 6]);
        let report =
            Report { env: test_env(), scenario: Scenario::Latency, rows: vec![mostly, late] };
        let text = report.render(&[], "the note");
        assert!(text.contains("\nthe note\n"), "{text}");
        assert!(text.contains("INVALID: over the runs of 1 row(s)"), "{text}");
    }

    #[test]
    fn json_rows_have_the_documented_keys() {
        let json = row(Scenario::Throughput).to_json(&test_env());
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
        let latency = row(Scenario::Latency).to_json(&test_env());
        assert_eq!(latency["sidecar_p50_us"], 2.0);
        assert_eq!(latency["added_p99_us"], 0.0);
    }

    #[test]
    fn the_header_names_the_machine_and_the_tables_follow_it() {
        let report = Report {
            env: test_env(),
            scenario: Scenario::Throughput,
            rows: vec![row(Scenario::Throughput)],
        };
        let mut first = Table::new(&["a"]);
        first.rows.push(vec!["1".to_owned()]);
        let second = Table::new(&["b"]);
        let text = report.render(&[first, second], "the note");
        assert!(text.starts_with("feedvisor-bench throughput\nmachine: test CPU, 2 cores"));
        assert!(
            text.contains("command: feedvisor-bench throughput\n\n| a |\n| - |\n| 1 |\n\n| b |\n"),
            "{text}"
        );
        assert!(text.contains("INVALID: in 1 of 4 runs"), "{text}");
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
