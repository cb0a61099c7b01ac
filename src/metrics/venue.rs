//! The metrics of what venues limit: outbound pacing per feed, and the
//! connect budgets and cool-downs of `[[hosts]]` entries. The `host` label
//! is an entry's `match` as configured (bounded by the config); `reason` is
//! a status or close code the entry lists.

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, Unit};
use ::metrics::{gauge, histogram, Counter, Gauge, Histogram};

use super::HANDLE;

/// Messages that could not go upstream at once because of the feed's
/// `outbound_rate` and waited for a place in its window.
pub(crate) const OUTBOUND_PACED: &str = "feedvisor_outbound_paced_total";
/// Messages held by the feed's `outbound_rate` now (on_open, sends, pings).
pub(crate) const OUTBOUND_PACED_WAITING: &str = "feedvisor_outbound_paced_waiting";
/// How long a message held by `outbound_rate` waited for its place.
pub(crate) const OUTBOUND_PACING_WAIT: &str = "feedvisor_outbound_pacing_wait_seconds";
/// Feeds waiting for a place in their host's connect budget (or for its cool-down to end).
pub(crate) const HOST_CONNECT_WAITING: &str = "feedvisor_host_connect_waiting";
/// Connect attempts the host's budget let through.
pub(crate) const HOST_CONNECTS: &str = "feedvisor_host_connects_total";
/// Cool-downs the host started, by `reason` (`status_429`, `close_1008`, ...).
pub(crate) const HOST_COOLDOWNS: &str = "feedvisor_host_cooldowns_total";
/// Seconds left of the host's cool-down (0 when none), as of the last scrape or change.
pub(crate) const HOST_COOLDOWN_REMAINING: &str = "feedvisor_host_cooldown_remaining_seconds";

/// Describes the metrics above; called once with the others.
pub(super) fn describe() {
    describe_counter!(OUTBOUND_PACED, "Messages upstream that waited for outbound_rate.");
    describe_gauge!(OUTBOUND_PACED_WAITING, "Messages upstream held by outbound_rate now.");
    describe_histogram!(
        OUTBOUND_PACING_WAIT,
        Unit::Seconds,
        "How long a message held by outbound_rate waited."
    );
    describe_gauge!(HOST_CONNECT_WAITING, "Feeds waiting for their host's connect budget.");
    describe_counter!(HOST_CONNECTS, "Connect attempts the host's budget let through.");
    describe_counter!(HOST_COOLDOWNS, "Cool-downs of the host, by reason.");
    describe_gauge!(
        HOST_COOLDOWN_REMAINING,
        Unit::Seconds,
        "Seconds left of the host's cool-down."
    );
}

/// A feed's pacing handles, resolved once per feed with pacing.
#[derive(Debug, Clone)]
pub(crate) struct PacingMetrics {
    /// See [`OUTBOUND_PACED`].
    pub paced: Counter,
    /// See [`OUTBOUND_PACED_WAITING`].
    pub waiting: Gauge,
    /// See [`OUTBOUND_PACING_WAIT`].
    pub wait: Histogram,
}

impl PacingMetrics {
    /// The handles of `feed` (a configured name).
    pub(crate) fn new(feed: &str) -> Self {
        let label = feed.to_owned();
        PacingMetrics {
            paced: counter!(OUTBOUND_PACED, "feed" => label.clone()),
            waiting: gauge!(OUTBOUND_PACED_WAITING, "feed" => label.clone()),
            wait: histogram!(OUTBOUND_PACING_WAIT, "feed" => label),
        }
    }
}

/// A host entry's handles, resolved when the entry is built.
#[derive(Debug, Clone)]
pub(crate) struct HostMetrics {
    host: String,
    /// See [`HOST_CONNECT_WAITING`].
    pub waiting: Gauge,
    /// See [`HOST_CONNECTS`].
    pub connects: Counter,
    /// See [`HOST_COOLDOWN_REMAINING`].
    pub cooldown_remaining: Gauge,
}

impl HostMetrics {
    /// The handles of the entry whose `match` is `host`.
    pub(crate) fn new(host: &str) -> Self {
        let label = host.to_owned();
        let metrics = HostMetrics {
            waiting: gauge!(HOST_CONNECT_WAITING, "host" => label.clone()),
            connects: counter!(HOST_CONNECTS, "host" => label.clone()),
            cooldown_remaining: gauge!(HOST_COOLDOWN_REMAINING, "host" => label.clone()),
            host: label,
        };
        metrics.waiting.set(0.0);
        metrics.cooldown_remaining.set(0.0);
        metrics.connects.increment(0);
        metrics
    }

    /// Counts a cool-down started for `reason`.
    pub(crate) fn cooldown(&self, reason: &str) {
        counter!(HOST_COOLDOWNS, "host" => self.host.clone(), "reason" => reason.to_owned())
            .increment(1);
    }
}

/// Removes every series of the host entry `host` (dropped by a reload).
pub(crate) fn remove_host(host: &str) {
    if let Some(Ok(handle)) = HANDLE.get() {
        handle.registry.remove_labelled("host", host);
    }
}
