//! `latency`: open loop at fixed rates. The blaster sends on schedule
//! whether or not the client keeps up, at 25%, 50% and 80% of B1's
//! saturation rate on one connection of 64-byte messages, and at 25 msg/s
//! on each of many connections (1000 by default, `--many-conns`,
//! `--many-rate`: the realistic case, where wake-ups and system calls cost
//! more than the messages). For B1 and the sidecar: send-to-handled p50, p99
//! and p99.9 over the stamped messages (the first of every write), CPU per
//! message, and the differences. A run in which the blaster did not keep its
//! schedule is invalid ([`MAX_LATE_SHARE`](super::MAX_LATE_SHARE)).
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

use super::blaster::Pace;
use super::report::Row;
use super::stats::Summary;
use super::throughput::runs;
use super::{Bench, BenchArgs, BenchError, Load, Scenario, SystemKind};

/// The message size of every latency case.
const SIZE: usize = 64;

/// The loads, as percentages of B1's saturation rate.
const LOADS: [u32; 3] = [25, 50, 80];

/// Messages per second on each connection of the many-connections case,
/// unless `--many-rate` says otherwise (see the module's note).
pub const MANY_RATE: f64 = 25.0;

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
    let rates: Vec<f64> = results.iter().map(super::RunResult::msgs_per_s).collect();
    Summary::of(&rates)
        .map(|summary| summary.median)
        .ok_or_else(|| BenchError::Options("no saturation run".to_owned()))
}
