//! `throughput`: saturation. The blaster sends as fast as each client reads;
//! msg/s and client CPU per message for B1, B0 and the sidecar at each
//! message size and connection count, and the ratio sidecar / B1.

use super::blaster::Pace;
use super::report::Row;
use super::{progress, Bench, BenchArgs, BenchError, Load, Scenario, SystemKind};

/// One warm-up run per system, this share of `--messages`, before anything is recorded.
const WARM_UP_SHARE: u64 = 10;

/// Runs every size × connection count, the systems alternating run by run.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    if !args.no_warm_up {
        let size = args.sizes.first().copied().unwrap_or(64);
        let per_conn = (args.messages_for(size) / WARM_UP_SHARE).max(1);
        let warm_up = Load { conns: 1, size, per_conn, pace: Pace::Saturate, subscribers: 1 };
        for &system in &args.systems {
            bench.run_once(system, warm_up).await?;
        }
    }
    let mut rows = Vec::new();
    for &size in &args.sizes {
        for &conns in &args.conns {
            let per_conn = (args.messages_for(size) / conns as u64).max(1);
            let load = Load { conns, size, per_conn, pace: Pace::Saturate, subscribers: 1 };
            let case = format!("{conns} × {size} B");
            let results = runs(bench, &case, args.runs, &args.systems, load).await?;
            rows.push(Row::from_runs(Scenario::Throughput, case, &load, None, &results));
        }
    }
    Ok(rows)
}

/// `runs` rounds of `load`, each running every system once, in order.
pub(super) async fn runs(
    bench: &Bench,
    label: &str,
    runs: usize,
    systems: &[SystemKind],
    load: Load,
) -> Result<Vec<super::RunResult>, BenchError> {
    let mut results = Vec::with_capacity(runs * systems.len());
    for run in 0..runs {
        for &system in systems {
            let result = bench.run_once(system, load).await?;
            progress(label, run, runs, &result);
            results.push(result);
        }
    }
    Ok(results)
}
