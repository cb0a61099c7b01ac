//! The text form of a report: one Markdown table per scenario, numbers
//! kept short (`3.21M`, `45.6 µs`), and rows with invalid runs marked `*`.

use std::fmt::Write as _;

use super::report::{Extra, Figures, Row};
use super::{feeds, soak, stream, Scenario};

/// The table of `rows`, with the columns of `scenario`.
pub fn for_scenario(scenario: Scenario, rows: &[Row]) -> Table {
    match scenario {
        Scenario::Throughput => throughput_table(rows),
        Scenario::Latency => latency_table(rows),
        Scenario::Capacity => capacity_table(rows),
        Scenario::Fanout => fanout_table(rows),
        Scenario::Feeds => feeds::table(rows),
        Scenario::Stream => stream::table(rows),
        Scenario::Soak => soak::table(rows),
    }
}

/// A Markdown table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Column titles.
    pub headers: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns and no rows yet.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|header| header.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Columns padded to their widest cell; numbers are right-aligned.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let width = |column: usize| {
            std::iter::once(&self.headers[column])
                .chain(self.rows.iter().filter_map(|row| row.get(column)))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String], text: &mut String| {
            text.push('|');
            for (column, width) in widths.iter().enumerate() {
                let cell = cells.get(column).map_or("", String::as_str);
                let pad = width - cell.chars().count();
                if column == 0 {
                    let _ = write!(text, " {cell}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(text, " {}{cell} |", " ".repeat(pad));
                }
            }
            text.push('\n');
        };
        let mut text = String::new();
        line(&self.headers, &mut text);
        text.push('|');
        for (column, width) in widths.iter().enumerate() {
            let dashes = "-".repeat(*width);
            let _ = write!(
                text,
                "{}",
                if column == 0 { format!(" {dashes} |") } else { format!(" {dashes}:|") }
            );
        }
        text.push('\n');
        for row in &self.rows {
            line(row, &mut text);
        }
        text
    }
}

fn throughput_table(rows: &[Row]) -> Table {
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

fn latency_table(rows: &[Row]) -> Table {
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

fn capacity_table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "conns × size",
        "B1 sustains",
        "sidecar sustains",
        "ratio",
        "B1 p50/p99",
        "sidecar p50/p99",
        "B1 ns/msg",
        "sidecar ns/msg",
        "steps",
        "blaster",
        "late (worst)",
    ]);
    let percentiles = |figures: &Option<Figures>| {
        figures.as_ref().and_then(|f| f.latency).map_or_else(
            || "-".to_owned(),
            |l| format!("{} / {}", format_latency(l.p50 as f64), format_latency(l.p99 as f64)),
        )
    };
    for row in rows {
        let Some(Extra::Capacity(figures)) = &row.extra else { continue };
        table.rows.push(vec![
            case(row),
            figures.baseline_search.map_or_else(|| "-".to_owned(), |end| end.describe()),
            figures.sidecar_search.map_or_else(|| "-".to_owned(), |end| end.describe()),
            ratio_cell(row.ratio()),
            percentiles(&row.b1),
            percentiles(&row.sidecar),
            cpu_cell(&row.b1),
            cpu_cell(&row.sidecar),
            figures.steps.len().to_string(),
            blaster_cell(row),
            late_cell(row),
        ]);
    }
    table
}

/// Every step of the capacity searches, in the order run.
pub fn capacity_steps(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "step",
        "system",
        "offered msg/s",
        "handled msg/s",
        "p50/p99",
        "ns/msg",
        "blaster",
        "late",
        "verdict",
    ]);
    let dash = || "-".to_owned();
    let steps = rows.iter().filter_map(|row| match &row.extra {
        Some(Extra::Capacity(figures)) => Some(&figures.steps),
        _ => None,
    });
    for (index, step) in steps.flatten().enumerate() {
        let latency = match (step.p50_us, step.p99_us) {
            (Some(p50), Some(p99)) => {
                format!("{} / {}", format_latency(p50 * 1e3), format_latency(p99 * 1e3))
            }
            _ => dash(),
        };
        table.rows.push(vec![
            (index + 1).to_string(),
            step.system.clone(),
            format_rate(step.offered_msgs_per_s),
            step.handled_msgs_per_s.map_or_else(dash, format_rate),
            latency,
            step.cpu_ns_per_msg.map_or_else(dash, |ns| format!("{ns:.0}")),
            step.blaster_cpu_share.map_or_else(dash, |share| format!("{:.0}%", share * 100.0)),
            step.late_share.map_or_else(dash, format_share),
            step.verdict.describe().to_owned(),
        ]);
    }
    table
}

fn fanout_table(rows: &[Row]) -> Table {
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

/// The row's case, marked `*` when a run was invalid.
pub fn case(row: &Row) -> String {
    if row.is_valid() {
        row.case.clone()
    } else {
        format!("{} *", row.case)
    }
}

fn rate_cell(figures: &Option<Figures>) -> String {
    figures.as_ref().map_or_else(
        || "-".to_owned(),
        |f| {
            let s = f.msgs_per_s;
            format!("{} ({}-{})", format_rate(s.median), format_rate(s.min), format_rate(s.max))
        },
    )
}

fn cpu_cell(figures: &Option<Figures>) -> String {
    figures.as_ref().map_or_else(|| "-".to_owned(), |f| format!("{:.0}", f.cpu_ns_per_msg.median))
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"))
}

fn signed_ns_cell(ns: Option<f64>) -> String {
    ns.map_or_else(|| "-".to_owned(), |ns| format!("{ns:+.0}"))
}

fn blaster_cell(row: &Row) -> String {
    format!("{:.0}%", row.blaster_share_max * 100.0)
}

/// At a fixed rate, the share of late messages over the runs and in the
/// worst one (`0.40% / 0.89%`), or the worst alone; `-` at saturation.
pub fn late_cell(row: &Row) -> String {
    match (row.late_share, row.late_share_max) {
        (Some(all), Some(worst)) if row.runs > 1 => {
            format!("{} / {}", format_share(all), format_share(worst))
        }
        (_, Some(worst)) => format_share(worst),
        _ => "-".to_owned(),
    }
}

/// A share as a percentage, two significant digits or so (`0%`, `0.03%`, `1.2%`, `35%`).
pub fn format_share(share: f64) -> String {
    let percent = share * 100.0;
    match percent {
        0.0 => "0%".to_owned(),
        p if p >= 10.0 => format!("{p:.0}%"),
        p if p >= 1.0 => format!("{p:.1}%"),
        p => format!("{p:.2}%"),
    }
}

/// A rate with a k or M suffix and three significant digits.
pub fn format_rate(per_s: f64) -> String {
    let (value, suffix) = match per_s {
        r if r >= 1e6 => (r / 1e6, "M"),
        r if r >= 1e3 => (r / 1e3, "k"),
        r => (r, ""),
    };
    let decimals = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.decimals$}{suffix}")
}

/// Nanoseconds as µs or ms, three significant digits or so.
pub fn format_latency(ns: f64) -> String {
    let micros = ns / 1e3;
    match micros {
        m if m >= 1000.0 => format!("{:.2} ms", m / 1000.0),
        m if m >= 100.0 => format!("{m:.0} µs"),
        m if m >= 10.0 => format!("{m:.1} µs"),
        m => format!("{m:.2} µs"),
    }
}

fn signed_latency(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "+" };
    format!("{sign}{}", format_latency(ns.unsigned_abs() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(format_rate(3_214_000.0), "3.21M");
        assert_eq!(format_rate(512_300.0), "512k");
        assert_eq!(format_rate(45_600.0), "45.6k");
        assert_eq!(format_rate(980.0), "980");
        assert_eq!(format_latency(3_210.0), "3.21 µs");
        assert_eq!(format_latency(45_600.0), "45.6 µs");
        assert_eq!(format_latency(1_234_000.0), "1.23 ms");
        assert_eq!(signed_latency(-2_500), "-2.50 µs");
        assert_eq!(format_share(0.0), "0%");
        assert_eq!(format_share(0.000_25), "0.03%");
        assert_eq!(format_share(0.012), "1.2%");
        assert_eq!(format_share(0.35), "35%");
    }

    #[test]
    fn columns_are_padded_and_numbers_right_aligned() {
        let mut table = Table::new(&["case", "msg/s"]);
        table.rows.push(vec!["1 × 64 B".to_owned(), "3.21M".to_owned()]);
        table.rows.push(vec!["100 × 512 B".to_owned(), "980".to_owned()]);
        assert_eq!(
            table.render(),
            "| case        | msg/s |\n\
             | ----------- | -----:|\n\
             | 1 × 64 B    | 3.21M |\n\
             | 100 × 512 B |   980 |\n"
        );
    }
}
