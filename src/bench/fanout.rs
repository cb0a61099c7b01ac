//! `fanout`: one feed of 64-byte messages at saturation, delivered to 1, 10
//! and 100 subscriber actors. Rows show the feed's msg/s against B1 on the
//! same connection, and what each delivery costs. The sidecar's runs send
//! `--messages` divided by the number of subscribers, so that every run
//! makes about the same number of deliveries; B1's runs send `--messages`.

use super::blaster::Pace;
use super::report::Row;
use super::{progress, Bench, BenchArgs, BenchError, Load, Scenario, SystemKind};

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
