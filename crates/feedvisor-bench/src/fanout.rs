//! `fanout`: one feed of 64-byte messages at saturation, delivered to 1, 10
//! and 100 subscriber actors. Rows show the feed's msg/s against B1 on the
//! same connection, and what each delivery costs. The sidecar's runs send
//! `--messages` divided by the number of subscribers, so that every run
//! makes about the same number of deliveries; B1's runs send `--messages`.

use crate::blaster::Pace;
use crate::format::{format_rate, Table};
use crate::options::BenchArgs;
use crate::result::{Load, Row};
use crate::run::{progress, Bench};
use crate::scenario::{BenchError, Scenario, SystemKind};
use crate::table::{blaster_cell, case, cpu_cell, rate_cell, ratio_cell};

/// What the report says under the table (as for throughput).
pub const NOTE: &str = crate::throughput::NOTE;

/// The message size.
const SIZE: usize = 64;

/// Runs each subscriber count, B1 and the sidecar alternating.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    for &subscribers in &args.subscribers {
        let messages = args.messages_for(SIZE);
        let b1 =
            Load { conns: 1, size: SIZE, per_conn: messages, pace: Pace::Saturate, subscribers: 1 };
        let per_conn = (messages / subscribers as u64).max(1);
        let sidecar = Load { per_conn, subscribers, ..b1 };
        let label = format!("fanout {subscribers} subscribers");
        let mut results = Vec::with_capacity(2 * args.runs);
        for run in 0..args.runs {
            for (system, load) in [(SystemKind::B1, b1), (SystemKind::Sidecar, sidecar)] {
                let result = bench.run_once(system, load).await?;
                progress(&label, run, args.runs, &result);
                results.push(result);
            }
        }
        rows.push(Row::from_runs(
            Scenario::Fanout,
            subscribers.to_string(),
            &sidecar,
            None,
            &results,
        ));
    }
    Ok(rows)
}

/// The fanout table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "subscribers",
        "B1 msg/s",
        "sidecar msg/s",
        "ratio",
        "deliveries/s",
        "sidecar ns/msg",
        "ns/delivery",
        "blaster",
    ]);
    for row in rows {
        let sidecar = row.sidecar.as_ref();
        let subscribers = row.subscribers as f64;
        table.rows.push(vec![
            case(row),
            rate_cell(&row.b1),
            rate_cell(&row.sidecar),
            ratio_cell(row.ratio()),
            sidecar
                .map_or_else(|| "-".to_owned(), |f| format_rate(f.msgs_per_s.median * subscribers)),
            cpu_cell(&row.sidecar),
            sidecar.map_or_else(
                || "-".to_owned(),
                |f| format!("{:.0}", f.cpu_ns_per_msg.median / subscribers),
            ),
            blaster_cell(row),
        ]);
    }
    table
}
