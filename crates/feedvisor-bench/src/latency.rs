//! `latency`: open loop at fixed rates. The blaster sends on schedule
//! whether or not the client keeps up, at 25%, 50% and 80% of B1's
//! saturation rate on one connection of 64-byte messages, and at 25 msg/s
//! on each of many connections (1000 by default, `--many-conns`,
//! `--many-rate`: the realistic case, where wake-ups and system calls cost
//! more than the messages). For B1 and the sidecar: send-to-handled p50, p99
//! and p99.9 over the stamped messages (the first of every write), CPU per
//! message, and the differences. A run in which the blaster did not keep its
//! schedule is invalid ([`MAX_LATE_SHARE`](crate::scenario::MAX_LATE_SHARE)).
//!
//! Why 25 msg/s: at 1000 connections every message is a write of its own,
//! and on loopback the blaster's thread also pays for most of the receiving
//! TCP stack and for waking the client: 8 to 13 µs a message on a 2-vCPU
//! virtual machine. At 25,000 msg/s it then uses about a third of its core
//! and about 0.5% of the messages are late, from the stalls of a few
//! milliseconds that such a machine's cores see now and then. At 50,000 it
//! uses half, and with the catching up after each stall about 1% are; at
//! 100,000 it needs three quarters and falls behind.
//! The `capacity` scenario finds how far each client goes.

use crate::blaster::Pace;
use crate::format::{format_latency, format_rate, signed_latency, Table};
use crate::options::BenchArgs;
use crate::result::{Figures, Load, Row, RunResult};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario, SystemKind};
use crate::stats::Summary;
use crate::table::{blaster_cell, case, cpu_cell, late_cell, signed_ns_cell};
use crate::throughput::runs;

/// What the report says under the table.
pub const NOTE: &str = "msg/s: median (min-max) over the runs; ns/msg: client CPU (every thread but the blaster's) per message; \
blaster: the most of its core the blaster used in a run; late: the share of the messages \
that the blaster sent more than 1 ms after they were due, over all the runs / in the worst run.";

/// The message size of every latency case.
const SIZE: usize = 64;

/// The loads, as percentages of B1's saturation rate.
const LOADS: [u32; 3] = [25, 50, 80];

/// Runs of B1 at saturation, at most, to find its rate.
const SATURATION_RUNS: usize = 3;

/// Finds B1's saturation (unless given), then runs each load.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let systems: Vec<SystemKind> =
        args.systems.iter().copied().filter(|system| *system != SystemKind::B0).collect();
    let saturation = match args.b1_rate {
        Some(rate) => rate,
        None => b1_saturation(bench, args).await?,
    };
    eprintln!("latency: B1 saturation at 1 × {SIZE} B is {:.0} msg/s", saturation);
    let mut rows = Vec::new();
    for percent in LOADS {
        let rate = saturation * f64::from(percent) / 100.0;
        let load = fixed_rate(1, rate, args);
        let case = format!("{percent}% of B1");
        let results = runs(bench, &case, args.runs, &systems, load).await?;
        rows.push(Row::from_runs(Scenario::Latency, case, &load, Some(rate), &results));
    }
    if args.many_conns > 0 {
        let rate = args.many_rate;
        let load = fixed_rate(args.many_conns, rate, args);
        let case = format!("{} × {rate:.0}/s", args.many_conns);
        let results = runs(bench, &case, args.runs, &systems, load).await?;
        let offered = rate * args.many_conns as f64;
        rows.push(Row::from_runs(Scenario::Latency, case, &load, Some(offered), &results));
    }
    Ok(rows)
}

/// `conns` connections at `rate` messages per second each, for `--duration`.
fn fixed_rate(conns: usize, rate: f64, args: &BenchArgs) -> Load {
    let per_conn = (rate * args.duration.as_secs_f64()).ceil().max(1.0) as u64;
    Load { conns, size: SIZE, per_conn, pace: Pace::Rate { per_conn: rate }, subscribers: 1 }
}

/// The median msg/s of B1 at saturation, one connection of 64-byte messages.
async fn b1_saturation(bench: &Bench, args: &BenchArgs) -> Result<f64, BenchError> {
    let load = Load {
        conns: 1,
        size: SIZE,
        per_conn: args.messages_for(SIZE),
        pace: Pace::Saturate,
        subscribers: 1,
    };
    let results =
        runs(bench, "B1 saturation", args.runs.min(SATURATION_RUNS), &[SystemKind::B1], load)
            .await?;
    let rates: Vec<f64> = results.iter().map(RunResult::msgs_per_s).collect();
    Summary::of(&rates)
        .map(|summary| summary.median)
        .ok_or_else(|| BenchError::Options("no saturation run".to_owned()))
}

/// The latency table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "load",
        "offered msg/s",
        "sidecar msg/s",
        "B1 p50/p99/p99.9",
        "sidecar p50/p99/p99.9",
        "added p50/p99/p99.9",
        "B1 ns/msg",
        "sidecar ns/msg",
        "added ns/msg",
        "blaster",
        "late (all / worst)",
    ]);
    for row in rows {
        let percentiles = |figures: &Option<Figures>| {
            figures.as_ref().and_then(|f| f.latency).map_or_else(
                || "-".to_owned(),
                |l| {
                    format!(
                        "{} / {} / {}",
                        format_latency(l.p50 as f64),
                        format_latency(l.p99 as f64),
                        format_latency(l.p999 as f64)
                    )
                },
            )
        };
        let added = row.added_latency().map_or_else(
            || "-".to_owned(),
            |[p50, p99, p999]| {
                format!(
                    "{} / {} / {}",
                    signed_latency(p50),
                    signed_latency(p99),
                    signed_latency(p999)
                )
            },
        );
        table.rows.push(vec![
            case(row),
            row.offered_msgs_per_s.map_or_else(|| "-".to_owned(), format_rate),
            row.sidecar
                .as_ref()
                .map_or_else(|| "-".to_owned(), |f| format_rate(f.msgs_per_s.median)),
            percentiles(&row.b1),
            percentiles(&row.sidecar),
            added,
            cpu_cell(&row.b1),
            cpu_cell(&row.sidecar),
            signed_ns_cell(row.added_cpu_ns()),
            blaster_cell(row),
            late_cell(row),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::fixtures::fixed_rate_row;

    #[test]
    fn the_table_shows_the_late_share_over_all_runs_and_in_the_worst() {
        let text = table(&[fixed_rate_row(&[30, 6, 6, 6])]).render();
        assert!(text.contains(" 1.2% / 3.0% |"), "{text}");
    }
}
