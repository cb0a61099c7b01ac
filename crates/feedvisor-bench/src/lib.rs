//! `feedvisor-bench`: what the feedvisor sidecar costs over a hand-written
//! client. A crate of its own, outside the shipped library and binary: it
//! uses the library only through its public API (`Sidecar`, `config::Config`,
//! `SubscriptionSpec`, `Deliver`, `metrics::install`, `sink::JsonLinesSink`).
//!
//! Every scenario runs in this one process. The upstream is the
//! [`blaster`], on a thread of its own; the client side is, in turn, a
//! [`baseline`] (B1, a bare awc read loop, the yardstick; B0,
//! tokio-tungstenite, for context) or the whole [`sidecar`] path. When the
//! machine has two cores or more, the blaster is pinned to one and the
//! client (this thread and every thread it starts, the sidecar's workers
//! included) to another. Runs alternate between the systems, so that a
//! change in the machine's state hits them all alike.
//!
//! A run is valid when the client, not the blaster, set the pace: at
//! saturation, when the blaster used at most [`MAX_BLASTER_SHARE`] of its
//! core; at a fixed rate, when it kept its schedule, sending at most
//! [`MAX_LATE_SHARE`] of the messages more than [`blaster::LATE_AFTER`]
//! after they were due.
//!
//! Code map, lowest layer first (a module imports only from those above it):
//! - `scenario.rs`: the scenarios, the systems, validity thresholds, [`BenchError`];
//!   `options.rs`: the command line's options ([`BenchArgs`]) and their checks;
//! - `cpu.rs`: CPU time per thread from `/proc`; `memory.rs`: RSS and limits from `/proc`;
//!   `stats.rs`: medians and percentiles; `format.rs`: short numbers and Markdown tables;
//!   `frames.rs`: frames and stamps; `tally.rs`: what a client counts in a run;
//!   `pki.rs`: the `wss` upstream's CA and certificate, made at run time;
//! - `blaster.rs`: the upstream; `baseline.rs`: B1 and B0; `sidecar.rs`: the system under test;
//! - `figures.rs`: what the memory, connect and capacity scenarios measure; `result.rs`:
//!   one run's result and the rows of a report; `table.rs`: the cells tables share;
//! - `run.rs`: one run of one system ([`Bench::run_once`]); `report.rs`: `--json`, the
//!   header with the machine the figures come from, and the text layout;
//! - one module per scenario, each with its table and note: `throughput.rs`, `latency.rs`,
//!   `fanout.rs`, `capacity.rs`, and `feeds.rs`, `stream.rs`, `soak.rs` (memory and
//!   connects rather than message rates);
//! - this root: runs a scenario and hands its tables and note to the report.
//!
//! A new scenario is a variant of [`Scenario`], a module with a
//! `run(&Bench, &BenchArgs) -> Result<Vec<Row>, BenchError>`, a `table` and
//! a `NOTE`, an arm in `run_scenario` and one in [`render`]; figures beyond
//! message rates go in `figures.rs`, as a variant of [`Extra`](result::Extra).

pub mod baseline;
pub mod blaster;
pub mod capacity;
pub mod compressed;
pub mod cpu;
pub mod doubled;
pub mod fanout;
pub mod feeds;
pub mod figures;
pub mod format;
pub mod frames;
pub mod latency;
pub mod memory;
pub mod nats;
pub mod options;
pub mod pki;
pub mod report;
pub mod result;
pub mod run;
pub mod scenario;
pub mod sidecar;
pub mod soak;
pub mod stats;
pub mod stream;
pub mod table;
pub mod tally;
pub mod throughput;

use std::time::Instant;

use crate::blaster::Blaster;
use crate::format::Table;
use crate::report::{Env, Report};
use crate::result::Row;
use crate::run::Bench;

pub use crate::options::{BenchArgs, ResourceArgs};
pub use crate::scenario::{
    BenchError, BenchSink, Scenario, SystemKind, Wire, MAX_BLASTER_SHARE, MAX_LATE_SHARE,
};

/// Runs one scenario; `args.no_pin` aside, pins this thread to the client's core.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let args = &args.resolved();
    args.check()?;
    if args.scenario == Scenario::Feeds && !args.resources.in_process {
        // Each case in a process of its own, which pins itself: not this one.
        return feeds::run_isolated(args);
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (client_core, blaster_core) = match cores.as_slice() {
        [client, blaster, ..] if !args.no_pin => (Some(*client), Some(*blaster)),
        _ => (None, None),
    };
    let client_pinned = client_core.is_some_and(core_affinity::set_for_current);
    let base = Instant::now();
    let blaster = Blaster::start(blaster_core.filter(|_| client_pinned), base)?;
    let pinning = match (client_pinned, blaster.core(), client_core) {
        (true, Some(blaster_core), Some(client)) => {
            format!("blaster on core {blaster_core}, client on core {}", client.id)
        }
        _ => "not pinned".to_owned(),
    };
    let timeout = match args.scenario {
        Scenario::Soak => args.timeout + args.duration,
        _ => args.timeout,
    };
    let bench = Bench { blaster, base, timeout, sink: args.sink };
    let rows = actix::System::new().block_on(run_scenario(&bench, args))?;
    let core_count = if cores.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cores.len()
    };
    Ok(Report { env: Env::gather(core_count, pinning), scenario: args.scenario, rows })
}

/// The scenario's rows.
async fn run_scenario(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    match args.scenario {
        Scenario::Throughput => throughput::run(bench, args).await,
        Scenario::Latency => latency::run(bench, args).await,
        Scenario::Capacity => capacity::run(bench, args).await,
        Scenario::Fanout => fanout::run(bench, args).await,
        Scenario::Feeds => feeds::run(bench, args).await,
        Scenario::Stream => stream::run(bench, args).await,
        Scenario::Soak => soak::run(bench, args).await,
        Scenario::Nats => nats::run(bench, args).await,
        Scenario::Compressed => compressed::run(bench, args).await,
        Scenario::Doubled => doubled::run(bench, args).await,
    }
}

/// The report as text: the header, the scenario's tables and the note under them.
pub fn render(report: &Report) -> String {
    let rows = &report.rows;
    let (tables, note): (Vec<Table>, &str) = match report.scenario {
        Scenario::Throughput => (vec![throughput::table(rows)], throughput::NOTE),
        Scenario::Latency => (vec![latency::table(rows)], latency::NOTE),
        Scenario::Capacity => {
            (vec![capacity::table(rows), capacity::steps_table(rows)], capacity::NOTE)
        }
        Scenario::Fanout => (vec![fanout::table(rows)], fanout::NOTE),
        Scenario::Feeds => (vec![feeds::table(rows)], feeds::NOTE),
        Scenario::Stream => (vec![stream::table(rows)], stream::NOTE),
        Scenario::Soak => (vec![soak::table(rows)], soak::NOTE),
        Scenario::Nats => (vec![nats::table(rows)], nats::NOTE),
        Scenario::Compressed => (vec![compressed::table(rows)], compressed::NOTE),
        Scenario::Doubled => (vec![doubled::table(rows)], doubled::NOTE),
    };
    report.render(&tables, note)
}

/// Runs a scenario and prints its report: tables, or JSON lines with `--json`.
pub fn main(args: &BenchArgs) -> Result<(), BenchError> {
    let report = run(args)?;
    if args.json {
        for line in report.json_lines() {
            println!("{line}");
        }
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Tiny counts, every scenario: rows come out, with positive figures.
    /// No timing is checked: only that everything ran and was counted.
    #[test]
    fn every_scenario_runs_with_tiny_counts() {
        let tiny = |scenario| BenchArgs {
            runs: 2,
            messages: 2_000,
            duration: Duration::from_millis(100),
            conns: vec![1, 3],
            sizes: vec![64],
            subscribers: vec![1, 3],
            many_conns: 20,
            no_pin: true,
            timeout: Duration::from_secs(30),
            ..BenchArgs::defaults(scenario).expect("defaults")
        };
        for scenario in
            [Scenario::Throughput, Scenario::Latency, Scenario::Fanout, Scenario::Capacity]
        {
            let report =
                run(&tiny(scenario)).unwrap_or_else(|error| panic!("{scenario:?}: {error}"));
            assert!(!report.rows.is_empty(), "{scenario:?} has rows");
            for row in &report.rows {
                let json = row.to_json(&report.env);
                if scenario == Scenario::Capacity {
                    a_capacity_row_has_its_keys(&json);
                    continue;
                }
                for key in ["baseline_msgs_per_s", "sidecar_msgs_per_s", "ratio"] {
                    let value = json[key].as_f64().unwrap_or(0.0);
                    assert!(value > 0.0, "{scenario:?} {}: {key} = {}", row.case, json[key]);
                }
                assert_eq!(json["scenario"], scenario.name());
            }
            assert!(render(&report).contains(scenario.name()));
        }
    }

    /// The capacity row's contract: `baseline_msgs_per_s`, `sidecar_msgs_per_s`
    /// and `ratio` (each a number, or null when a search found no rate), and
    /// the steps they come from. Whether a step was sustained depends on the
    /// machine, so only the row's consistency with its steps is checked.
    fn a_capacity_row_has_its_keys(json: &serde_json::Value) {
        assert_eq!(json["scenario"], "capacity");
        assert_eq!(json["conns"], 20);
        for key in ["baseline_msgs_per_s", "sidecar_msgs_per_s", "ratio"] {
            let value = json.get(key).unwrap_or_else(|| panic!("no {key}: {json}"));
            assert!(value.is_number() || value.is_null(), "{key}: {json}");
        }
        if json["baseline_msgs_per_s"].is_number() && json["sidecar_msgs_per_s"].is_number() {
            assert!(json["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{json}");
        }
        let steps = json["steps"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!steps.is_empty(), "{json}");
        for (system, prefix) in [("b1", "baseline"), ("sidecar", "sidecar")] {
            let ours = steps.iter().filter(|step| step["system"] == system);
            assert!(ours.clone().count() >= 1, "{system} ran: {json}");
            assert!(ours.clone().all(|step| step["offered_msgs_per_s"].as_f64() > Some(0.0)));
            assert!(ours.clone().all(|step| step["verdict"].is_string()), "{json}");
            // The figure is the highest offered rate among the steps sustained.
            let sustained = ours
                .filter(|step| step["verdict"] == "sustained")
                .filter_map(|step| step["offered_msgs_per_s"].as_f64())
                .reduce(f64::max);
            assert_eq!(json[format!("{prefix}_msgs_per_s")].as_f64(), sustained.map(f64::round));
            assert!(json[format!("{prefix}_search")]["ended"].is_string(), "{json}");
        }
        assert!(json["blaster_late_share_max"].is_number(), "{json}");
    }

    /// Tiny versions of the memory scenarios: 20 idle feeds (ws and wss, with
    /// the restart), a 4 MiB message through stream mode, a 2-second soak.
    /// No figure is held to a threshold: only that each ran and reported.
    #[test]
    fn memory_scenarios_run_with_tiny_counts() {
        let tiny = |scenario| {
            let defaults = BenchArgs::defaults(scenario).expect("defaults");
            let resources = ResourceArgs {
                feeds: vec![20],
                in_process: true,
                stream_size: 4 << 20,
                soak_conns: 2,
                soak_rate: 100.0,
                ..(*defaults.resources).clone()
            };
            BenchArgs {
                duration: Duration::from_secs(2),
                no_pin: true,
                timeout: Duration::from_secs(30),
                resources: Box::new(resources),
                ..defaults
            }
        };
        for scenario in [Scenario::Feeds, Scenario::Stream, Scenario::Soak] {
            let report =
                run(&tiny(scenario)).unwrap_or_else(|error| panic!("{scenario:?}: {error}"));
            let positive = |json: &serde_json::Value, key: &str| {
                assert!(
                    json[key].as_f64().unwrap_or(0.0) > 0.0,
                    "{scenario:?}: {key} = {}",
                    json[key]
                );
            };
            for row in &report.rows {
                let json = row.to_json(&report.env);
                assert_eq!(json["scenario"], scenario.name());
                match scenario {
                    Scenario::Feeds => {
                        assert!(json["skipped"].is_null(), "{json}");
                        assert_eq!(json["feeds"], 20);
                        assert!(json["reconnects"].as_u64().unwrap_or(0) >= 20, "{json}");
                        for key in ["open_s", "back_s", "rss_open_kib", "busiest_100ms_share"] {
                            positive(&json, key);
                        }
                    }
                    Scenario::Stream => {
                        assert_eq!(json["bytes"], 4 << 20);
                        assert_eq!(json["intact"], true, "{json}");
                        // Pieces go as bytes arrive: at least 64 of at most 64 KiB.
                        assert!(json["chunks"].as_u64().unwrap_or(0) >= 64, "{json}");
                        for key in ["idle_rss_kib", "peak_rss_kib", "mb_per_s"] {
                            positive(&json, key);
                        }
                    }
                    _ => {
                        assert!(json["rss_samples"].as_u64().unwrap_or(0) >= 2, "{json}");
                        for key in ["sidecar_msgs_per_s", "rss_end_kib"] {
                            positive(&json, key);
                        }
                        assert!(json["slope_kib_per_min"].is_number(), "{json}");
                    }
                }
            }
            assert_eq!(report.rows.len(), if scenario == Scenario::Feeds { 2 } else { 1 });
            assert!(render(&report).contains(scenario.name()));
        }
    }

    #[test]
    fn the_compressed_scenario_runs_with_tiny_counts() {
        let args = BenchArgs {
            messages: 500,
            no_pin: true,
            timeout: Duration::from_secs(30),
            ..BenchArgs::defaults(Scenario::Compressed).expect("defaults")
        };
        let report = run(&args).expect("the compressed scenario runs");
        let rows: Vec<serde_json::Value> =
            report.rows.iter().map(|row| row.to_json(&report.env)).collect();
        assert_eq!(rows.len(), 4, "plain, deflate, two inflater rows: {rows:?}");
        for json in &rows[..2] {
            assert_eq!(json["messages"], 500, "{json}");
            assert!(json["cpu_ns_per_msg"].as_f64().unwrap_or(0.0) > 0.0, "{json}");
        }
        let wire = |json: &serde_json::Value| json["wire_bytes_per_msg"].as_f64().unwrap_or(0.0);
        assert!(wire(&rows[1]) < wire(&rows[0]) / 2.0, "ticks compress: {rows:?}");
        for json in &rows[2..] {
            assert!(json["rss_per_feed_kib"].as_f64().unwrap_or(0.0) > 0.0, "{json}");
        }
        assert!(render(&report).contains("compressed"));
    }

    #[test]
    fn the_doubled_scenario_runs_with_tiny_counts() {
        let args = BenchArgs {
            messages: 500,
            no_pin: true,
            timeout: Duration::from_secs(30),
            ..BenchArgs::defaults(Scenario::Doubled).expect("defaults")
        };
        let report = run(&args).expect("the doubled scenario runs");
        let rows: Vec<serde_json::Value> =
            report.rows.iter().map(|row| row.to_json(&report.env)).collect();
        assert_eq!(rows.len(), 3, "one leg, two by sequence, two by hash: {rows:?}");
        for json in &rows {
            assert_eq!(json["messages"], 500, "{json}");
            assert!(json["cpu_ns_per_msg"].as_f64().unwrap_or(0.0) > 0.0, "{json}");
        }
        assert_eq!(rows[0]["ratio_to_single"], 1.0);
        assert_eq!(rows[1]["legs"], 2);
        assert!(render(&report).contains("doubled"));
    }
}
