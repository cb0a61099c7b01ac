//! Numbers and tables as text: rates, latencies and shares kept short
//! (`3.21M`, `45.6 µs`, `1.2%`), and Markdown tables with aligned columns.

use std::fmt::Write as _;

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

/// Nanoseconds with a sign, as µs or ms (`+3.21 µs`, `-2.50 µs`).
pub fn signed_latency(ns: i128) -> String {
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
