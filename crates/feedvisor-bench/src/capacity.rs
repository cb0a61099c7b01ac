//! `capacity`: the highest total rate that B1 and the sidecar each sustain
//! on one client core, over many connections of 64-byte messages
//! (`--many-conns`, 1000 by default), and the ratio of the two.
//!
//! A rate is *sustained* when, in one step (one run of `--duration`, 2 s by
//! default, the blaster sending open loop at that rate), the client handled
//! at least [`MIN_HANDLED_SHARE`] of the offered rate (messages over the time
//! from the go to the last one handled) with a p99 send-to-handled latency
//! under [`MAX_P99`]. A step in which the blaster sent more than
//! [`MAX_LATE_SHARE`](crate::scenario::MAX_LATE_SHARE) of the messages late says
//! nothing about the client: it is run once more (the blaster's core may
//! have been busy for a moment) and, late again, takes the place of a rate
//! not sustained as the top of the search's bracket. If the search ends
//! below such a rate, its figure is only a lower bound (what one blaster
//! core can offer on this machine), and the row is marked invalid.
//!
//! Each search starts at [`START_RATE`] per connection and doubles while the
//! rate is sustained (up to [`MAX_RATE`] per connection), then bisects
//! between the highest rate sustained and the lowest not sustained (or late),
//! [`BISECTIONS`] times at most or until the two are within
//! [`RESOLUTION`]. B1's and the sidecar's steps alternate, so that a change
//! in the machine's state hits both alike. The figures are the offered rates
//! of the highest steps sustained.

use std::time::Duration;

use crate::blaster::Pace;
use crate::figures::{CapacityFigures, Ending, SearchEnd, Step, Verdict};
use crate::format::{format_latency, format_rate, format_share, Table};
use crate::options::BenchArgs;
use crate::result::{Extra, Figures, Load, Row, RunResult};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario, SystemKind};
use crate::stats::{Percentiles, Summary};
use crate::table::{blaster_cell, case, cpu_cell, late_cell, ratio_cell};

/// Payload bytes per message.
const SIZE: usize = 64;

/// Messages per second on each connection in the first step.
pub const START_RATE: f64 = 25.0;

/// The highest rate per connection tried.
pub const MAX_RATE: f64 = 1000.0;

/// A step is sustained only if the client handled at least this share of the offered rate.
pub const MIN_HANDLED_SHARE: f64 = 0.99;

/// A step is sustained only if its p99 latency is under this.
pub const MAX_P99: Duration = Duration::from_millis(10);

/// Bisection steps after the first step not sustained, at most.
pub const BISECTIONS: usize = 3;

/// The search ends when the lowest rate not sustained is within this share
/// above the highest rate sustained.
pub const RESOLUTION: f64 = 0.05;

/// What the report says under the table.
pub const NOTE: &str = "sustains: the highest total rate offered (open loop, one step of --duration each) at which the client \
handled at least 99% of it, from the go to the last message, with p99 send-to-handled under 10 ms; \
found by doubling from 25 msg/s per connection, then bisecting (\"not X\": X was not sustained). \
A step in which the blaster sent more than 2% of the messages more than 1 ms late is invalid: it is run once more, \
and if late again bounds the search from above like a rate not sustained; a search that ends below such a rate \
gives only a lower bound (\"≥\", \"blaster late at X\"). p50/p99 and ns/msg (client CPU per message) are those of the step sustained; \
blaster: the most of its core the blaster used in a step; late: the largest share of a step's messages the blaster sent late.";

/// The verdict of a finished step at `offered` messages per second.
fn verdict(result: &RunResult, offered: f64, p99: Option<u64>) -> Verdict {
    if !result.is_valid() {
        Verdict::BlasterLate
    } else if result.msgs_per_s() < MIN_HANDLED_SHARE * offered {
        Verdict::Behind
    } else if p99.is_none_or(|p99| p99 >= MAX_P99.as_nanos() as u64) {
        Verdict::SlowP99
    } else {
        Verdict::Sustained
    }
}

/// One system's search, as it goes.
struct Search {
    system: SystemKind,
    /// The rate per connection of the next step; `None` once the search is over.
    next: Option<f64>,
    /// The highest rate per connection sustained.
    sustained: Option<f64>,
    /// The run of that rate.
    best: Option<RunResult>,
    /// The lowest rate per connection not sustained.
    failed: Option<f64>,
    /// The lowest rate per connection at which the blaster was late twice.
    late: Option<f64>,
    bisections: usize,
    /// Whether the step at `next` repeats one in which the blaster was late.
    retrying: bool,
    ended: Ending,
}

impl Search {
    fn new(system: SystemKind) -> Search {
        Search {
            system,
            next: Some(START_RATE),
            sustained: None,
            best: None,
            failed: None,
            late: None,
            bisections: 0,
            retrying: false,
            ended: Ending::BelowStart,
        }
    }

    /// Takes a step's verdict at `rate` per connection and picks the next rate, if any.
    fn record(&mut self, rate: f64, verdict: Verdict) {
        let retried = std::mem::take(&mut self.retrying);
        match verdict {
            Verdict::BlasterLate if !retried => {
                self.retrying = true;
                self.next = Some(rate);
                return;
            }
            // No verdict at this rate: it bounds what this search can measure.
            Verdict::BlasterLate => self.late = Some(rate),
            Verdict::Sustained => self.sustained = Some(rate),
            Verdict::Behind | Verdict::SlowP99 | Verdict::TimedOut => self.failed = Some(rate),
        }
        // The rates tried only go down once one was not sustained, so the
        // latest of `failed` and `late` is the lower.
        let upper = match (self.failed, self.late) {
            (Some(failed), Some(late)) => Some(failed.min(late)),
            (failed, late) => failed.or(late),
        };
        let upper_is_late = upper.is_some() && upper == self.late;
        self.next = match (self.sustained, upper) {
            (Some(low), None) if low >= MAX_RATE => {
                self.ended = Ending::Ceiling;
                None
            }
            (Some(low), None) => Some((low * 2.0).min(MAX_RATE)),
            (Some(low), Some(high))
                if self.bisections < BISECTIONS && high > low * (1.0 + RESOLUTION) =>
            {
                self.bisections += 1;
                Some((low + high) / 2.0)
            }
            (Some(_), Some(_)) | (None, Some(_)) if upper_is_late => {
                self.ended = Ending::BlasterLate;
                None
            }
            (Some(_), Some(_)) => {
                self.ended = Ending::Bracketed;
                None
            }
            (None, _) => {
                self.ended = Ending::BelowStart;
                None
            }
        };
    }

    fn end(&self, conns: f64) -> SearchEnd {
        SearchEnd {
            sustained_msgs_per_s: self.sustained.map(|rate| rate * conns),
            not_sustained_msgs_per_s: self.failed.map(|rate| rate * conns),
            blaster_late_msgs_per_s: self.late.map(|rate| rate * conns),
            ended: self.ended,
        }
    }

    /// The row's figures: the offered rate of the highest step sustained,
    /// with that step's CPU and latencies.
    fn figures(&self, conns: f64) -> Option<Figures> {
        let (rate, result) = (self.sustained?, self.best.as_ref()?);
        let offered = rate * conns;
        let mut latencies = result.latencies.clone();
        Some(Figures {
            msgs_per_s: Summary { median: offered, min: offered, max: offered },
            cpu_ns_per_msg: Summary::of(&[result.cpu_ns_per_msg()])?,
            latency: Percentiles::of(&mut latencies),
        })
    }
}

/// Runs both searches (those of `--systems`), their steps alternating, until both are over.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let conns = args.many_conns;
    let mut searches = [SystemKind::B1, SystemKind::Sidecar].map(|system| {
        let mut search = Search::new(system);
        if !args.systems.contains(&system) {
            search.next = None;
        }
        search
    });
    let ran = searches.each_ref().map(|search| search.next.is_some());
    let mut steps = Vec::new();
    let (mut blaster_share_max, mut late_share_max) = (0.0f64, None::<f64>);
    while searches.iter().any(|search| search.next.is_some()) {
        for search in &mut searches {
            let Some(rate) = search.next else { continue };
            let (verdict, step, result) = step(bench, args, search.system, rate).await?;
            eprintln!(
                "capacity {:<7} {:>7} msg/s offered: {:>7} handled, p99 {}, late {}: {}",
                search.system.to_string(),
                format_rate(step.offered_msgs_per_s),
                step.handled_msgs_per_s.map_or_else(|| "-".to_owned(), format_rate),
                step.p99_us.map_or_else(|| "-".to_owned(), |us| format_latency(us * 1e3)),
                step.late_share.map_or_else(|| "-".to_owned(), format_share),
                verdict.describe(),
            );
            if let Some(result) = &result {
                blaster_share_max = blaster_share_max.max(result.blaster_share());
                late_share_max = match (late_share_max, result.late_share()) {
                    (Some(max), Some(late)) => Some(max.max(late)),
                    (max, late) => max.or(late),
                };
            }
            steps.push(step);
            search.record(rate, verdict);
            if verdict == Verdict::Sustained {
                search.best = result;
            }
        }
    }
    let [b1, sidecar] = &searches;
    let total = conns as f64;
    // The row is invalid when a figure is only a lower bound for want of a blaster on time.
    let invalid = searches.iter().filter(|search| search.ended == Ending::BlasterLate).count();
    let figures = CapacityFigures {
        step_s: args.duration.as_secs_f64(),
        baseline_search: ran[0].then(|| b1.end(total)),
        sidecar_search: ran[1].then(|| sidecar.end(total)),
        steps,
    };
    Ok(vec![Row {
        scenario: Scenario::Capacity,
        case: format!("{conns} × {SIZE} B"),
        conns,
        size: SIZE,
        subscribers: 1,
        offered_msgs_per_s: None,
        b1: b1.figures(total),
        b0: None,
        sidecar: sidecar.figures(total),
        runs: figures.steps.len(),
        invalid_runs: invalid,
        blaster_share_max,
        // Steps at different rates: validity is the searches' (`invalid`).
        late_share: None,
        late_share_max,
        extra: Some(Extra::Capacity(figures)),
    }])
}

/// One step: `system` at `rate` per connection for `--duration`.
async fn step(
    bench: &Bench,
    args: &BenchArgs,
    system: SystemKind,
    rate: f64,
) -> Result<(Verdict, Step, Option<RunResult>), BenchError> {
    let conns = args.many_conns;
    let per_conn = (rate * args.duration.as_secs_f64()).ceil().max(1.0) as u64;
    let load =
        Load { conns, size: SIZE, per_conn, pace: Pace::Rate { per_conn: rate }, subscribers: 1 };
    let offered = rate * conns as f64;
    let mut step = Step {
        system: system.to_string(),
        offered_msgs_per_s: offered,
        handled_msgs_per_s: None,
        p50_us: None,
        p99_us: None,
        cpu_ns_per_msg: None,
        blaster_cpu_share: None,
        late_share: None,
        blaster_max_lag_ms: None,
        verdict: Verdict::TimedOut,
    };
    let mut result = match bench.run_once(system, load).await {
        Ok(result) => result,
        Err(BenchError::Timeout { .. }) => return Ok((Verdict::TimedOut, step, None)),
        Err(error) => return Err(error),
    };
    let percentiles = Percentiles::of(&mut result.latencies);
    let verdict = verdict(&result, offered, percentiles.map(|p| p.p99));
    let micros = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    step.handled_msgs_per_s = Some(result.msgs_per_s().round());
    step.p50_us = percentiles.map(|p| micros(p.p50));
    step.p99_us = percentiles.map(|p| micros(p.p99));
    step.cpu_ns_per_msg = Some(result.cpu_ns_per_msg().round());
    step.blaster_cpu_share = Some((result.blaster_share() * 1000.0).round() / 1000.0);
    step.late_share = result.late_share().map(|late| (late * 100_000.0).round() / 100_000.0);
    let max_lag_ms = result.blaster.max_lag.as_secs_f64() * 1e3;
    step.blaster_max_lag_ms = Some((max_lag_ms * 100.0).round() / 100.0);
    step.verdict = verdict;
    Ok((verdict, step, Some(result)))
}

/// The capacity table: each system's highest rate sustained.
pub fn table(rows: &[Row]) -> Table {
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
pub fn steps_table(rows: &[Row]) -> Table {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rates a search tries when its steps go as `verdicts` say, and where it ends.
    fn walk(verdicts: &[Verdict]) -> (Vec<f64>, SearchEnd) {
        let mut search = Search::new(SystemKind::B1);
        let mut rates = Vec::new();
        let mut verdicts = verdicts.iter();
        while let (Some(rate), Some(verdict)) = (search.next, verdicts.next()) {
            rates.push(rate);
            search.record(rate, *verdict);
        }
        assert!(search.next.is_none(), "the search is over after {rates:?}");
        (rates, search.end(1000.0))
    }

    use Verdict::{Behind, BlasterLate, SlowP99, Sustained, TimedOut};

    #[test]
    fn the_search_doubles_then_bisects() {
        let (rates, end) =
            walk(&[Sustained, Sustained, Sustained, Behind, Sustained, SlowP99, Sustained]);
        assert_eq!(rates, [25.0, 50.0, 100.0, 200.0, 150.0, 175.0, 162.5]);
        assert_eq!(end.sustained_msgs_per_s, Some(162_500.0));
        assert_eq!(end.not_sustained_msgs_per_s, Some(175_000.0));
        assert_eq!(end.ended, Ending::Bracketed);
        assert_eq!(end.describe(), "162k (not 175k)");
    }

    #[test]
    fn the_search_stops_at_the_ceiling_below_the_start_and_when_the_blaster_is_late() {
        let all = [Sustained; 12];
        let (rates, end) = walk(&all);
        assert_eq!(rates.last(), Some(&MAX_RATE));
        assert_eq!(rates.len(), 7, "{rates:?}");
        assert_eq!(end.ended, Ending::Ceiling);
        let (rates, end) = walk(&[TimedOut]);
        assert_eq!(
            (rates.len(), end.ended, end.sustained_msgs_per_s),
            (1, Ending::BelowStart, None)
        );
        let (rates, end) = walk(&[BlasterLate, BlasterLate]);
        assert_eq!(rates, [25.0, 25.0], "a late step is run once more");
        assert_eq!((end.ended, end.sustained_msgs_per_s), (Ending::BlasterLate, None));
        assert_eq!(end.describe(), "- (blaster late at 25.0k)");
    }

    #[test]
    fn a_rate_the_blaster_cannot_keep_to_bounds_the_search() {
        let late_twice = [BlasterLate, BlasterLate];
        let verdicts = [&[Sustained, Sustained][..], &late_twice, &[Sustained], &late_twice];
        let (rates, end) = walk(&[&verdicts.concat()[..], &[Sustained]].concat());
        assert_eq!(rates, [25.0, 50.0, 100.0, 100.0, 75.0, 87.5, 87.5, 81.25]);
        assert_eq!(end.ended, Ending::BlasterLate);
        assert_eq!(end.sustained_msgs_per_s, Some(81_250.0));
        assert_eq!(end.blaster_late_msgs_per_s, Some(87_500.0));
        assert_eq!(end.not_sustained_msgs_per_s, None);
        assert_eq!(end.describe(), "≥ 81.2k (blaster late at 87.5k)");
        // A client failure below the blaster's limit makes it a bracket again.
        let verdicts = [&[Sustained, Sustained][..], &late_twice, &[Behind, Sustained, Behind]];
        let (rates, end) = walk(&verdicts.concat());
        assert_eq!(rates, [25.0, 50.0, 100.0, 100.0, 75.0, 62.5, 68.75]);
        assert_eq!(end.ended, Ending::Bracketed);
        assert_eq!(end.describe(), "62.5k (not 68.8k)");
    }

    #[test]
    fn a_late_step_that_goes_well_the_second_time_counts() {
        let verdicts = [Sustained, BlasterLate, Sustained, BlasterLate, Behind, Sustained];
        let (rates, end) = walk(&[&verdicts[..], &[Sustained, Behind]].concat());
        assert_eq!(end.blaster_late_msgs_per_s, None);
        assert_eq!(rates, [25.0, 50.0, 50.0, 100.0, 100.0, 75.0, 87.5, 93.75]);
        assert_eq!(end.ended, Ending::Bracketed);
        assert_eq!(end.sustained_msgs_per_s, Some(87_500.0));
    }

    #[test]
    fn steps_serialise_with_snake_case_verdicts() {
        let end = SearchEnd {
            sustained_msgs_per_s: None,
            not_sustained_msgs_per_s: Some(25_000.0),
            blaster_late_msgs_per_s: None,
            ended: Ending::BelowStart,
        };
        let json = serde_json::to_value(end).expect("json");
        assert_eq!(json["ended"], "below_start");
        assert_eq!(serde_json::to_value(Verdict::SlowP99).expect("json"), "slow_p99");
    }
}
