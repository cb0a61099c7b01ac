//! `throughput`: saturation. The blaster sends as fast as each client reads;
//! msg/s and client CPU per message for B1, B0 and the sidecar at each
//! message size and connection count, and the ratio sidecar / B1.

use crate::blaster::Pace;
use crate::format::Table;
use crate::options::BenchArgs;
use crate::result::{Load, Row, RunResult};
use crate::run::{progress, Bench};
use crate::scenario::{BenchError, Scenario, SystemKind};
use crate::table::{blaster_cell, case, cpu_cell, rate_cell, ratio_cell, signed_ns_cell};

/// What the report says under the table.
pub const NOTE: &str = "msg/s: median (min-max) over the runs; ns/msg: client CPU (every thread but the blaster's) per message; \
blaster: the most of its core the blaster used in a run.";

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
pub(crate) async fn runs(
    bench: &Bench,
    label: &str,
    runs: usize,
    systems: &[SystemKind],
    load: Load,
) -> Result<Vec<RunResult>, BenchError> {
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

/// The throughput table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "conns × size",
        "B1 msg/s",
        "B0 msg/s",
        "sidecar msg/s",
        "ratio",
        "B1 ns/msg",
        "B0 ns/msg",
        "sidecar ns/msg",
        "added ns/msg",
        "blaster",
    ]);
    for row in rows {
        table.rows.push(vec![
            case(row),
            rate_cell(&row.b1),
            rate_cell(&row.b0),
            rate_cell(&row.sidecar),
            ratio_cell(row.ratio()),
            cpu_cell(&row.b1),
            cpu_cell(&row.b0),
            cpu_cell(&row.sidecar),
            signed_ns_cell(row.added_cpu_ns()),
            blaster_cell(row),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{test_env, Report};
    use crate::result::fixtures::row;

    #[test]
    fn tables_align_and_mark_invalid_rows() {
        let rows = vec![row(Scenario::Throughput)];
        let report = Report { env: test_env(), scenario: Scenario::Throughput, rows };
        let text = report.render(&[table(&report.rows)], NOTE);
        assert!(text.starts_with("feedvisor-bench throughput\nmachine: test CPU, 2 cores"));
        assert!(text.contains("| 1 × 64 B * "), "{text}");
        assert!(text.contains("1.00M (1.00M-1.00M)"), "{text}");
        assert!(text.contains("INVALID: in 1 of 4 runs"), "{text}");
        let table_lines: Vec<&str> = text.lines().filter(|line| line.starts_with('|')).collect();
        assert_eq!(table_lines.len(), 3);
        let width = table_lines[0].chars().count();
        assert!(table_lines.iter().all(|line| line.chars().count() == width), "{text}");
    }
}
