//! What redundancy costs: CPU per delivered message of one feed receiving a
//! stream of ticks on one leg, and the same stream on two legs (`urls`,
//! both connected to the same upstream) whose copies are deduplicated, by
//! sequence number and by payload hash. Each delivered message arrived
//! twice in the doubled cases; the ratio is to the single leg's figure.
//!
//! The upstream is the compressed scenario's (`compressed.rs`), serving
//! its stream uncompressed: every connection gets every message at the go.

use std::net::SocketAddr;

use crate::compressed::{cpu_of_stream, encode_stream};
use crate::figures::DoubledFigures;
use crate::format::Table;
use crate::options::BenchArgs;
use crate::result::{Extra, Row};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario};

/// Messages delivered per case, at most (`--messages` when fewer).
pub const MESSAGES: u64 = 200_000;

/// The note under the table.
pub const NOTE: &str = "cpu/msg: CPU time of the whole process but the upstream's thread, \
from the go until the last message was handled by a subscriber that counts and the process \
was quiet again (the slower leg done with its copies), per delivered message; in the doubled \
cases every message arrived on both legs and one copy was dropped; ratio: to the single leg's \
cpu/msg.";

/// One case: its name, its legs, and how copies are told apart.
struct Case {
    name: &'static str,
    legs: usize,
    sequenced: bool,
}

const CASES: [Case; 3] = [
    Case { name: "single leg", legs: 1, sequenced: true },
    Case { name: "two legs, by sequence", legs: 2, sequenced: true },
    Case { name: "two legs, by payload hash", legs: 2, sequenced: false },
];

/// Runs the cases in order.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let messages = args.messages.clamp(1, MESSAGES);
    let core = bench.blaster.core();
    let mut rows = Vec::new();
    let mut single = None;
    for case in &CASES {
        let (plain, payload, _) = encode_stream(false, messages, 15);
        let feeds = |addr: SocketAddr| feed_toml(case, addr);
        let timeout = bench.timeout;
        let used = cpu_of_stream(&feeds, plain, Vec::new(), messages, core, timeout, true).await?;
        let cpu = used.as_nanos() as f64 / messages as f64;
        let base = *single.get_or_insert(cpu);
        let figures = DoubledFigures {
            case: case.name.to_owned(),
            legs: case.legs,
            messages,
            cpu_ns_per_msg: cpu,
            ratio_to_single: cpu / base,
        };
        let size = (payload / messages) as usize;
        rows.push(Row::measured(
            Scenario::Doubled,
            format!("{} × {messages} msgs", case.name),
            case.legs,
            size,
            1,
            Extra::Doubled(figures),
        ));
    }
    Ok(rows)
}

/// The case's feed on `addr`: one leg, or two legs to the same upstream.
fn feed_toml(case: &Case, addr: SocketAddr) -> String {
    let urls = vec![format!("\"ws://{addr}/\""); case.legs].join(", ");
    let sequence = if case.sequenced { "sequence = \"/seq\"\n" } else { "" };
    // A window that holds the whole stream: the copies of a leg that falls
    // behind by the stream's length are still recognised.
    let window =
        if case.sequenced { String::new() } else { format!("dedup_window = {MESSAGES}\n") };
    format!(
        "\n[[feeds]]\nname = \"bench-doubled\"\nurls = [{urls}]\ncompression = \"off\"\n\
         {sequence}{window}"
    )
}

/// The table of the rows.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&["case", "legs", "cpu/msg", "ratio"]);
    for row in rows {
        let Some(Extra::Doubled(f)) = &row.extra else { continue };
        table.rows.push(vec![
            row.case.clone(),
            f.legs.to_string(),
            format!("{:.0} ns", f.cpu_ns_per_msg),
            format!("{:.2}", f.ratio_to_single),
        ]);
    }
    table
}
