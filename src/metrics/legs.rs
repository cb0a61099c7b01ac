//! The zero-gap metrics: discontinuity events by reason, what each redundant
//! leg of a feed wins, how far it lags the fastest leg, the gaps it saw and
//! its reconnects, and rotations. Labels: `feed` (a configured name),
//! `reason` (a fixed set) and `leg` (the leg's index, at most
//! [`crate::config::MAX_LEGS`] values).

use ::metrics::{
    counter, describe_counter, describe_histogram, histogram, Counter, Histogram, Unit,
};

/// Discontinuity events sent to subscribers, by `feed` and `reason`.
pub(crate) const DISCONTINUITIES: &str = "feedvisor_discontinuities_total";
/// Messages a leg delivered first (the copies of other legs were dropped), by `feed` and `leg`.
pub(crate) const LEG_MESSAGES_WON: &str = "feedvisor_leg_messages_won_total";
/// How long after the fastest leg a leg's copy of a message arrived (0 for
/// the copies it won), by `feed` and `leg`.
pub(crate) const LEG_LAG: &str = "feedvisor_leg_lag_seconds";
/// Gaps in a leg's own stream of sequence numbers (whether or not another leg filled them).
pub(crate) const LEG_GAPS: &str = "feedvisor_leg_gaps_total";
/// Connections a leg opened after its first one.
pub(crate) const LEG_RECONNECTS: &str = "feedvisor_leg_reconnects_total";
/// Make-before-break rotations started, by `feed` (scheduled or asked for).
pub(crate) const ROTATIONS: &str = "feedvisor_rotations_total";

pub(super) fn describe() {
    describe_counter!(DISCONTINUITIES, "Discontinuity events sent to subscribers, by reason.");
    describe_counter!(LEG_MESSAGES_WON, "Messages a redundant leg delivered first, by leg.");
    describe_histogram!(
        LEG_LAG,
        Unit::Seconds,
        "How long after the fastest leg a leg's copy of a message arrived, by leg."
    );
    describe_counter!(LEG_GAPS, "Gaps in a redundant leg's own sequence numbers, by leg.");
    describe_counter!(LEG_RECONNECTS, "Connections a redundant leg opened after its first.");
    describe_counter!(ROTATIONS, "Make-before-break rotations started.");
}

/// One feed's discontinuity counters, one per reason (in the order of the
/// names it was made with), resolved once per connection actor.
pub(crate) struct ContinuityMetrics {
    discontinuities: Vec<Counter>,
}

impl ContinuityMetrics {
    /// The counters of `feed`, one per reason in `reasons` (a fixed set).
    pub(crate) fn new(feed: &str, reasons: &[&'static str]) -> Self {
        let counter = |reason: &&'static str| counter!(DISCONTINUITIES, "feed" => feed.to_owned(), "reason" => *reason);
        ContinuityMetrics { discontinuities: reasons.iter().map(counter).collect() }
    }

    /// Counts one event of the reason at `index` in the names it was made with.
    pub(crate) fn discontinuity(&self, index: usize) {
        if let Some(counter) = self.discontinuities.get(index) {
            counter.increment(1);
        }
    }
}

/// One leg's handles, resolved once per connection actor of the leg.
pub(crate) struct LegMetrics {
    /// See [`LEG_MESSAGES_WON`].
    pub won: Counter,
    /// See [`LEG_LAG`].
    pub lag: Histogram,
    /// See [`LEG_GAPS`].
    pub gaps: Counter,
    /// See [`LEG_RECONNECTS`].
    pub reconnects: Counter,
}

impl LegMetrics {
    /// The handles of leg `leg` of `feed`.
    pub(crate) fn new(feed: &str, leg: usize) -> Self {
        let (feed, leg) = (feed.to_owned(), leg.to_string());
        LegMetrics {
            won: counter!(LEG_MESSAGES_WON, "feed" => feed.clone(), "leg" => leg.clone()),
            lag: histogram!(LEG_LAG, "feed" => feed.clone(), "leg" => leg.clone()),
            gaps: counter!(LEG_GAPS, "feed" => feed.clone(), "leg" => leg.clone()),
            reconnects: counter!(LEG_RECONNECTS, "feed" => feed, "leg" => leg),
        }
    }
}

/// Counts a rotation of `feed`.
pub(crate) fn rotation_started(feed: &str) {
    counter!(ROTATIONS, "feed" => feed.to_owned()).increment(1);
}
