//! Metric names, help texts, the Prometheus recorder and per-feed handles.
//!
//! Every metric feedvisor exports is named here, once. Handles are resolved
//! once per feed or subscriber ([`FeedMetrics`], [`DeliveryMetrics`]) so the
//! per-message path touches only cached atomics.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, Unit};
use ::metrics::{gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// 1 when the feed's connection is open, 0 otherwise.
pub const FEED_UP: &str = "feedvisor_feed_up";
/// Whole messages received, by `kind` (text, binary).
pub const MESSAGES_RECEIVED: &str = "feedvisor_messages_received_total";
/// Payload bytes of the messages received.
pub const BYTES_RECEIVED: &str = "feedvisor_bytes_received_total";
/// Messages refused, by `reason` (too_large, invalid_utf8, protocol).
pub const MESSAGES_REJECTED: &str = "feedvisor_messages_rejected_total";
/// Connect attempts, by `result` (ok or an error kind).
pub const CONNECT_ATTEMPTS: &str = "feedvisor_connect_attempts_total";
/// Time from a message's arrival to the end of its handling by a subscriber.
pub const DELIVERY_LATENCY: &str = "feedvisor_delivery_latency_seconds";

/// Latency buckets from 1 µs to 10 s, three per decade.
const LATENCY_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded in when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
///
/// Later calls return the same handle, so several sidecars in one process
/// (tests, embedders) share one registry; their feed names keep series apart.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.to_owned()), LATENCY_BUCKETS)
                .map_err(|error| error.to_string())?
                .install_recorder()
                .map_err(|error| error.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(MetricsError)
}

/// The recorder could not be installed (another recorder was installed first).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct MetricsError(String);

fn describe() {
    describe_gauge!(FEED_UP, "1 when the feed's connection is open, 0 otherwise.");
    describe_counter!(MESSAGES_RECEIVED, "Whole messages received from the feed, by kind.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Payload bytes received from the feed.");
    describe_counter!(MESSAGES_REJECTED, "Messages refused (too large, invalid), by reason.");
    describe_counter!(CONNECT_ATTEMPTS, "Connect attempts, by result.");
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from a message's arrival to the end of its handling by a subscriber."
    );
}

/// Why a message was refused; the label values of [`MESSAGES_REJECTED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Larger than `max_message_size` (close 1009).
    TooLarge,
    /// Text that is not UTF-8 (close 1007).
    InvalidUtf8,
    /// Another protocol violation (close 1002).
    Protocol,
}

impl RejectReason {
    /// Every reason, in declaration order (the index of each is its discriminant).
    pub const ALL: [RejectReason; 3] =
        [RejectReason::TooLarge, RejectReason::InvalidUtf8, RejectReason::Protocol];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::Protocol => "protocol",
        }
    }
}

/// The handles of one feed's metrics, resolved once.
#[derive(Clone)]
pub struct FeedMetrics {
    feed: String,
    /// See [`FEED_UP`].
    pub up: Gauge,
    /// See [`MESSAGES_RECEIVED`] with `kind="text"`.
    pub text_messages: Counter,
    /// See [`MESSAGES_RECEIVED`] with `kind="binary"`.
    pub binary_messages: Counter,
    /// See [`BYTES_RECEIVED`].
    pub bytes: Counter,
    /// See [`MESSAGES_REJECTED`], one per [`RejectReason`] (so every series exists from the start).
    rejected: [Counter; 3],
}

impl FeedMetrics {
    /// Resolves the handles for `feed` (a configured name: bounded cardinality).
    pub fn new(feed: &str) -> Self {
        let label = feed.to_owned();
        FeedMetrics {
            feed: label.clone(),
            up: gauge!(FEED_UP, "feed" => label.clone()),
            text_messages: counter!(MESSAGES_RECEIVED, "feed" => label.clone(), "kind" => "text"),
            binary_messages: counter!(MESSAGES_RECEIVED, "feed" => label.clone(), "kind" => "binary"),
            bytes: counter!(BYTES_RECEIVED, "feed" => label.clone()),
            rejected: RejectReason::ALL.map(|reason| {
                counter!(MESSAGES_REJECTED, "feed" => label.clone(), "reason" => reason.as_str())
            }),
        }
    }

    /// Counts a refused message.
    pub fn rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].increment(1);
    }

    /// Counts a connect attempt with its result ("ok" or an error kind).
    pub fn connect_attempt(&self, result: &'static str) {
        counter!(CONNECT_ATTEMPTS, "feed" => self.feed.clone(), "result" => result).increment(1);
    }
}

/// The delivery latency histogram of one feed and subscriber pair.
pub fn delivery_latency(feed: &str, subscriber: &str) -> Histogram {
    histogram!(DELIVERY_LATENCY, "feed" => feed.to_owned(), "subscriber" => subscriber.to_owned())
}
