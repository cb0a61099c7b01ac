//! The cells the scenarios' tables share: a row's case (marked `*` when
//! invalid), each system's rate and CPU, the ratio, and the blaster's share
//! and lateness.

use crate::format::{format_rate, format_share};
use crate::result::{Figures, Row};

/// The row's case, marked `*` when a run was invalid.
pub fn case(row: &Row) -> String {
    if row.is_valid() {
        row.case.clone()
    } else {
        format!("{} *", row.case)
    }
}

/// Median msg/s with the range over the runs (`3.21M (3.10M-3.30M)`).
pub fn rate_cell(figures: &Option<Figures>) -> String {
    figures.as_ref().map_or_else(
        || "-".to_owned(),
        |f| {
            let s = f.msgs_per_s;
            format!("{} ({}-{})", format_rate(s.median), format_rate(s.min), format_rate(s.max))
        },
    )
}

/// Median client CPU per message, ns.
pub fn cpu_cell(figures: &Option<Figures>) -> String {
    figures.as_ref().map_or_else(|| "-".to_owned(), |f| format!("{:.0}", f.cpu_ns_per_msg.median))
}

/// Sidecar over B1, two decimals.
pub fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"))
}

/// Nanoseconds with a sign (`+240`).
pub fn signed_ns_cell(ns: Option<f64>) -> String {
    ns.map_or_else(|| "-".to_owned(), |ns| format!("{ns:+.0}"))
}

/// The most of its core the blaster used in any run.
pub fn blaster_cell(row: &Row) -> String {
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
