//! How fresh a feed's data is: the age of each message by its own event
//! time (`timestamp = { pointer, unit }`), the clock offset against the
//! upstream, and `stale_after` (an open feed that delivers no data message
//! for that long is reported `stale`, without reconnecting).
//!
//! Event time and arrival are both wall-clock times (the upstream's and
//! ours), so their difference holds any offset between the two clocks. A
//! negative difference cannot be latency: it is counted as clock skew, not
//! put in the histogram. The offset is estimated as the least difference
//! over a sliding window (the freshest message of the window had almost no
//! latency, so what is left is mostly the clocks' offset), exported as a
//! gauge beside the latency so that a skewed host clock is not read as a
//! slow feed.
//!
//! In stream mode a timestamp is read only from a message that arrives in a
//! single chunk (one message, one timestamp); the chunks of a larger
//! message are not JSON on their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use actix_rt::time::Instant;

use super::pointer::{lookup, Scalar};
use super::FeedConnection;
use crate::config::{TimestampConfig, TimestampUnit};
use crate::metrics::FeedMetrics;
use crate::status::FeedState;

/// Width of one slot of the offset window.
const OFFSET_SLOT_SECONDS: u64 = 10;
/// Slots in the offset window: the estimate covers the last minute.
const OFFSET_SLOTS: usize = 6;

/// The event time at `timestamp.pointer` in a JSON message, in seconds
/// since the Unix epoch; `None` when there is none or it cannot be read.
pub(crate) fn event_time(payload: &[u8], timestamp: &TimestampConfig) -> Option<f64> {
    let scalar = lookup(payload, &timestamp.pointer)?;
    let seconds = match (timestamp.unit, scalar) {
        (TimestampUnit::Rfc3339, Scalar::Str(text)) => rfc3339_seconds(&text)?,
        (TimestampUnit::Rfc3339, _) => return None,
        (unit, Scalar::Number(text)) => text.parse::<f64>().ok()? / per_second(unit),
        // Numbers sent as strings ("1700000000123") are common enough to accept.
        (unit, Scalar::Str(text)) => text.trim().parse::<f64>().ok()? / per_second(unit),
        (_, Scalar::Bool(_)) => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

fn per_second(unit: TimestampUnit) -> f64 {
    match unit {
        TimestampUnit::Seconds | TimestampUnit::Rfc3339 => 1.0,
        TimestampUnit::Millis => 1e3,
        TimestampUnit::Micros => 1e6,
        TimestampUnit::Nanos => 1e9,
    }
}

/// An RFC 3339 time (`2026-01-02T03:04:05.678Z`, or with an offset such as
/// `+02:00`) in seconds since the Unix epoch.
fn rfc3339_seconds(text: &str) -> Option<f64> {
    let text = text.trim().to_ascii_uppercase();
    // RFC 3339 is ASCII: anything else is not a time (and the slicing below
    // may then assume one byte per character).
    if !text.is_ascii() {
        return None;
    }
    let (utc, offset_seconds) = match text.len().checked_sub(6).map(|at| text.split_at(at)) {
        Some((time, zone))
            if (zone.starts_with('+') || zone.starts_with('-')) && zone.as_bytes()[3] == b':' =>
        {
            let hours: i64 = zone[1..3].parse().ok()?;
            let minutes: i64 = zone[4..6].parse().ok()?;
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            (format!("{time}Z"), sign * (hours * 3600 + minutes * 60))
        }
        _ => (text, 0),
    };
    let time = humantime::parse_rfc3339(&utc).ok()?;
    let seconds = time.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(seconds - offset_seconds as f64)
}

/// The least arrival-minus-event time per slot of the last minute.
#[derive(Debug, Clone)]
pub(crate) struct OffsetWindow {
    /// Per slot: its number (arrival seconds / slot width) and its least difference.
    slots: [Option<(u64, f64)>; OFFSET_SLOTS],
}

impl Default for OffsetWindow {
    fn default() -> Self {
        OffsetWindow { slots: [None; OFFSET_SLOTS] }
    }
}

impl OffsetWindow {
    /// Adds a difference seen at `arrival` (seconds since the epoch); returns the estimate.
    pub(crate) fn observe(&mut self, arrival: f64, difference: f64) -> f64 {
        let slot = (arrival.max(0.0) as u64) / OFFSET_SLOT_SECONDS;
        let entry = &mut self.slots[(slot % OFFSET_SLOTS as u64) as usize];
        match entry {
            Some((number, least)) if *number == slot => *least = least.min(difference),
            _ => *entry = Some((slot, difference)),
        }
        self.estimate(slot)
    }

    /// The least difference over the slots of the window ending at `slot`.
    fn estimate(&self, slot: u64) -> f64 {
        let oldest = slot.saturating_sub(OFFSET_SLOTS as u64 - 1);
        self.slots
            .iter()
            .flatten()
            .filter(|(number, _)| (oldest..=slot).contains(number))
            .map(|(_, least)| *least)
            .fold(f64::INFINITY, f64::min)
    }
}

/// A feed's freshness bookkeeping.
#[derive(Debug)]
pub(crate) struct Freshness {
    /// Where messages carry their event time; `None`: not read.
    timestamp: Option<TimestampConfig>,
    /// The clock offset estimate.
    offset: OffsetWindow,
    /// When the last data message arrived (or the connection opened).
    last_data: Instant,
    /// Whether the feed is reported `stale` now.
    pub stale: bool,
}

impl Freshness {
    pub(crate) fn new(timestamp: Option<TimestampConfig>) -> Self {
        Freshness {
            timestamp,
            offset: OffsetWindow::default(),
            last_data: Instant::now(),
            stale: false,
        }
    }

    /// Whether messages carry a timestamp to read.
    pub(crate) fn reads_timestamps(&self) -> bool {
        self.timestamp.is_some()
    }

    /// Reads a message's event time and records its age at `arrival`: in
    /// the latency histogram, or as clock skew when it is negative.
    /// Inlined, so that a feed without `timestamp` pays one check a message.
    #[inline]
    pub(crate) fn observe(&mut self, payload: &[u8], arrival: SystemTime, metrics: &FeedMetrics) {
        if self.timestamp.is_some() {
            self.record(payload, arrival, metrics);
        }
    }

    fn record(&mut self, payload: &[u8], arrival: SystemTime, metrics: &FeedMetrics) {
        let Some(timestamp) = &self.timestamp else { return };
        let Some(event) = event_time(payload, timestamp) else {
            metrics.timestamp_invalid.increment(1);
            return;
        };
        let arrival = arrival.duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64());
        let difference = arrival - event;
        if difference < 0.0 {
            metrics.clock_skew.increment(1);
        } else {
            metrics.upstream_latency.record(difference);
        }
        metrics.clock_offset.set(self.offset.observe(arrival, difference));
    }
}

impl FeedConnection {
    /// A data message arrived: the feed is fresh again if it was stale.
    pub(super) fn data_arrived(&mut self, ctx: &mut Context<Self>) {
        self.freshness.last_data = Instant::now();
        if self.freshness.stale {
            self.freshness.stale = false;
            tracing::info!(feed = %self.name, "data again: no longer stale");
            self.set_state(FeedState::Open);
            if let Some(after) = self.feed.stale_after {
                self.check_stale_after(after, ctx);
            }
        }
    }

    /// Starts watching for silence on a connection that just opened.
    pub(super) fn start_staleness(&mut self, ctx: &mut Context<Self>) {
        self.freshness.last_data = Instant::now();
        self.freshness.stale = false;
        if let Some(after) = self.feed.stale_after {
            self.check_stale_after(after, ctx);
        }
    }

    /// Looks for silence when `delay` has passed: past `stale_after`, the
    /// feed is `stale` until its next data message; else it looks again.
    fn check_stale_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let generation = self.generation;
        ctx.run_later(delay, move |actor, ctx| {
            if actor.generation != generation || actor.link.is_none() || actor.freshness.stale {
                return;
            }
            let Some(after) = actor.feed.stale_after else { return };
            let quiet = actor.freshness.last_data.elapsed();
            if quiet < after {
                actor.check_stale_after(after - quiet, ctx);
                return;
            }
            tracing::warn!(feed = %actor.name, ?after, "open but no data: stale");
            actor.freshness.stale = true;
            actor.set_state(FeedState::Stale);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(unit: TimestampUnit) -> TimestampConfig {
        TimestampConfig { pointer: "/ts".to_owned(), unit }
    }

    #[test]
    fn every_unit_reads_the_same_instant() {
        let cases: [(TimestampUnit, &str); 7] = [
            (TimestampUnit::Seconds, r#"{"ts":1700000000.25}"#),
            (TimestampUnit::Millis, r#"{"ts":1700000000250}"#),
            (TimestampUnit::Micros, r#"{"ts":1700000000250000}"#),
            (TimestampUnit::Nanos, r#"{"ts":1700000000250000000}"#),
            (TimestampUnit::Millis, r#"{"ts":"1700000000250"}"#),
            (TimestampUnit::Rfc3339, r#"{"ts":"2023-11-14T22:13:20.25Z"}"#),
            (TimestampUnit::Rfc3339, r#"{"ts":"2023-11-15T00:13:20.250+02:00"}"#),
        ];
        for (unit, payload) in cases {
            let seconds = event_time(payload.as_bytes(), &config(unit)).expect(payload);
            assert!((seconds - 1_700_000_000.25).abs() < 1e-6, "{payload}: {seconds}");
        }
    }

    #[test]
    fn unreadable_timestamps_find_nothing() {
        let rfc = config(TimestampUnit::Rfc3339);
        let ms = config(TimestampUnit::Millis);
        for (payload, timestamp) in [
            (&br#"{"ts":"yesterday"}"#[..], &rfc),
            (br#"{"ts":1700000000}"#, &rfc),
            (br#"{"ts":-5}"#, &ms),
            (br#"{"ts":true}"#, &ms),
            (br#"{"other":1}"#, &ms),
            (b"not json", &ms),
            (br#"{"ts":"2023-11-14T22:13:20+2:00"}"#, &rfc),
            ("{\"ts\":\"2023-11-14T22:13:2\u{e9}:00\"}".as_bytes(), &rfc),
            ("{\"ts\":\"2023-11-14T22:13:20\u{e9}\u{e9}\u{e9}\"}".as_bytes(), &rfc),
            (br#"{"ts":1e400}"#, &ms),
            (br#"{"ts":"+00:00"}"#, &rfc),
        ] {
            assert_eq!(
                event_time(payload, timestamp),
                None,
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn the_offset_is_the_least_difference_of_the_last_minute() {
        let mut window = OffsetWindow::default();
        assert_eq!(window.observe(1000.0, 0.5), 0.5);
        assert_eq!(window.observe(1005.0, 0.2), 0.2);
        assert_eq!(window.observe(1030.0, 0.9), 0.2, "the earlier slot still counts");
        // 1000 and 1005 fall in slot 100; at 1060 the window holds slots 101..=106.
        assert_eq!(window.observe(1060.0, 0.7), 0.7, "slot 100 has left the window");
        assert_eq!(window.observe(1061.0, -2.0), -2.0, "a clock ahead of ours shows negative");
    }
}
