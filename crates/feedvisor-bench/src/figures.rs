//! What the scenarios that measure more than message rates found: the
//! figures a row carries besides (or instead of) B1's and the sidecar's
//! rates, shared by the scenario that fills them in and the report that
//! prints them. Plain data with its JSON form (`--json`, and the feeds
//! scenario's case processes).

use serde::{Deserialize, Serialize};

use crate::format::format_rate;

/// What one case measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedsFigures {
    /// `ws` or `wss`.
    pub transport: String,
    /// The ceiling of the first reconnect delay, seconds.
    pub reconnect_initial_s: f64,
    /// Feeds.
    pub feeds: usize,
    /// Seconds from the sidecar's start until every feed was open.
    pub open_s: f64,
    /// VmRSS before the sidecar started, KiB.
    pub rss_before_kib: u64,
    /// VmRSS once every feed was open, KiB.
    pub rss_open_kib: u64,
    /// The difference per feed, KiB.
    pub rss_per_feed_kib: f64,
    /// Seconds from the upstream's drop until every feed was open again.
    pub back_s: f64,
    /// Connections the upstream accepted after the restart.
    pub reconnects: usize,
    /// Seconds from the first of them to the last.
    pub reconnect_spread_s: f64,
    /// The most of them in any 100 ms.
    pub busiest_100ms_connects: usize,
    /// That as a share of all of them.
    pub busiest_100ms_share: f64,
    /// The most of one core the client used in any 100 ms of the reconnects.
    pub peak_cpu_share: f64,
    /// The client's CPU from the drop until all were back, per reconnect, µs.
    pub cpu_us_per_reconnect: f64,
    /// True when the case had a process of its own.
    pub fresh_process: bool,
}

/// What the run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamFigures {
    /// The message's length.
    pub bytes: u64,
    /// The feed's `chunk_size`.
    pub chunk_size: u64,
    /// The subscriber's queue, in batches.
    pub queue: usize,
    /// `chunk_size` × `queue`, KiB.
    pub chunk_queue_kib: u64,
    /// VmRSS with the feed open and idle, KiB.
    pub idle_rss_kib: u64,
    /// The most resident while the message passed, KiB.
    pub peak_rss_kib: u64,
    /// The peak minus the idle figure, KiB.
    pub peak_minus_idle_kib: u64,
    /// Megabytes (10^6) a second, from the go to the last chunk handled.
    pub mb_per_s: f64,
    /// Chunks the subscriber handled.
    pub chunks: u64,
    /// The upstream's hash of what it sent (hex).
    pub sent_hash: String,
    /// The subscriber's hash of what arrived (hex).
    pub received_hash: String,
    /// True when the hashes and lengths are equal and the chunks came in order.
    pub intact: bool,
    /// False when VmHWM could not be reset (the peak is then sampled only).
    pub hwm_reset: bool,
    /// The share of its core the upstream used while sending.
    pub upstream_cpu_share: f64,
}

/// What the soak measured besides the rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakFigures {
    /// Seconds from the go to the last message handled.
    pub duration_s: f64,
    /// RSS samples taken.
    pub rss_samples: usize,
    /// VmRSS at the go, KiB.
    pub rss_start_kib: u64,
    /// VmRSS at the last sample, KiB.
    pub rss_end_kib: u64,
    /// The highest sample, KiB.
    pub rss_max_kib: u64,
    /// Seconds left out of the fit at the start.
    pub warm_up_s: f64,
    /// The fitted slope, KiB per minute.
    pub slope_kib_per_min: f64,
    /// Its standard error (none with fewer than 3 samples fitted).
    pub slope_stderr_kib_per_min: Option<f64>,
    /// The slope over the second half of the run alone, KiB per minute: a
    /// leak keeps its slope, growth that levels off does not.
    pub last_half_slope_kib_per_min: Option<f64>,
}

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Handled in time.
    Sustained,
    /// The client handled less than `capacity::MIN_HANDLED_SHARE` of the offered rate.
    Behind,
    /// The p99 latency was `capacity::MAX_P99` or more.
    SlowP99,
    /// The run did not finish within `--timeout`.
    TimedOut,
    /// The blaster was late for more than [`MAX_LATE_SHARE`](crate::scenario::MAX_LATE_SHARE)
    /// of the messages: no verdict on the client.
    BlasterLate,
}

impl Verdict {
    /// For the steps table.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Sustained => "sustained",
            Verdict::Behind => "behind (< 99% handled)",
            Verdict::SlowP99 => "p99 ≥ 10 ms",
            Verdict::TimedOut => "timed out",
            Verdict::BlasterLate => "invalid: blaster late",
        }
    }
}

/// Why a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Between a rate sustained and one not sustained, within the search's resolution.
    Bracketed,
    /// The highest rate tried was sustained: the figure is a lower bound.
    Ceiling,
    /// Above the highest rate sustained, the lowest rate tried was one the
    /// blaster could not keep to: the figure is a lower bound.
    BlasterLate,
    /// The first step was not sustained: no figure.
    BelowStart,
}

/// One step of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `b1` or `sidecar`.
    pub system: String,
    /// Messages per second offered, over all connections.
    pub offered_msgs_per_s: f64,
    /// Messages per second handled, from the go to the last one (none if timed out).
    pub handled_msgs_per_s: Option<f64>,
    /// Send-to-handled p50, µs.
    pub p50_us: Option<f64>,
    /// Send-to-handled p99, µs.
    pub p99_us: Option<f64>,
    /// Client CPU per message, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// The share of its core the blaster used.
    pub blaster_cpu_share: Option<f64>,
    /// The share of messages the blaster sent late.
    pub late_share: Option<f64>,
    /// The longest any message waited past its due time in the blaster, ms.
    pub blaster_max_lag_ms: Option<f64>,
    /// How it went.
    pub verdict: Verdict,
}

/// Where one system's search ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchEnd {
    /// The highest total rate sustained.
    pub sustained_msgs_per_s: Option<f64>,
    /// The lowest total rate tried and not sustained (the blaster on time).
    pub not_sustained_msgs_per_s: Option<f64>,
    /// The lowest total rate at which the blaster was late, twice: no verdict.
    pub blaster_late_msgs_per_s: Option<f64>,
    /// Why the search ended.
    pub ended: Ending,
}

impl SearchEnd {
    /// `180k (not 200k)`, `≥ 200k (blaster late at 250k)`, `≥ 1.00M (highest tried)`, `< 25.0k`.
    pub fn describe(&self) -> String {
        let rate = |rate: Option<f64>| rate.map_or_else(|| "-".to_owned(), format_rate);
        let sustained = rate(self.sustained_msgs_per_s);
        let failed = rate(self.not_sustained_msgs_per_s);
        let late = rate(self.blaster_late_msgs_per_s);
        match (self.ended, self.sustained_msgs_per_s) {
            (Ending::Bracketed, _) => format!("{sustained} (not {failed})"),
            (Ending::Ceiling, _) => format!("≥ {sustained} (highest tried)"),
            (Ending::BlasterLate, None) => format!("- (blaster late at {late})"),
            (Ending::BlasterLate, Some(_)) => format!("≥ {sustained} (blaster late at {late})"),
            (Ending::BelowStart, _) => format!("< {failed}"),
        }
    }
}

/// What the capacity scenario found, besides the row's rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityFigures {
    /// Seconds each step sends for.
    pub step_s: f64,
    /// B1's search (none when `--systems` leaves B1 out).
    pub baseline_search: Option<SearchEnd>,
    /// The sidecar's search (none when `--systems` leaves it out).
    pub sidecar_search: Option<SearchEnd>,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
}

/// What redundant legs cost, one case of the doubled scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoubledFigures {
    /// The case: one leg, or two deduplicated by sequence or payload hash.
    pub case: String,
    /// Legs connected to the upstream.
    pub legs: usize,
    /// Messages delivered (each arrived once per leg).
    pub messages: u64,
    /// CPU nanoseconds per delivered message.
    pub cpu_ns_per_msg: f64,
    /// `cpu_ns_per_msg` over the single leg's.
    pub ratio_to_single: f64,
}

/// What permessage-deflate costs, one case of the compressed scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompressedFigures {
    /// `plain` or `deflate` (with `server_max_window_bits` when set).
    pub compression: String,
    /// Messages handled in the CPU case (0 in an idle case).
    pub messages: u64,
    /// CPU nanoseconds per message in the CPU case.
    pub cpu_ns_per_msg: Option<f64>,
    /// Wire payload bytes per message in the CPU case.
    pub wire_bytes_per_msg: Option<f64>,
    /// Payload bytes per message.
    pub payload_bytes_per_msg: f64,
    /// Feeds of the idle case.
    pub idle_feeds: usize,
    /// VmRSS growth per idle feed, KiB.
    pub rss_per_feed_kib: Option<f64>,
}
