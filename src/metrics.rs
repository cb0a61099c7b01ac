//! Metric names, help texts, the registry and per-feed and per-subscriber
//! handles.
//!
//! Every metric feedvisor exports is named and described here, once: the
//! feeds', the subscribers' (`feedvisor_subscriber_*`, every inbox), the
//! built-in sinks' (`feedvisor_sink_*`) and the `/subscribe` endpoint's
//! (`feedvisor_subscribe_*`). Handles are resolved once per feed or
//! subscriber ([`FeedMetrics`], [`SubscriberMetrics`], [`SinkMetrics`]) so
//! the per-message path touches only cached atomics.
//!
//! The series live in our own registry (`registry.rs`, which says why),
//! rendered with the process's own metrics (`process.rs`) at each scrape.
//! A removed feed's or subscriber's series leave it ([`remove_feed`],
//! [`remove_subscriber`]).

pub(crate) mod legs;
mod process;
mod registry;
pub(crate) mod venue;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, Unit};
use ::metrics::{gauge, histogram, Counter, Gauge, Histogram};

use feedvisor_transport_api::InflateFailure;

use crate::status::FeedState;
use registry::{BucketTable, Registry, RegistryRecorder};

/// 1 when the feed's connection is open, 0 otherwise.
pub(crate) const FEED_UP: &str = "feedvisor_feed_up";
/// Whole messages received, by `kind` (text, binary).
pub(crate) const MESSAGES_RECEIVED: &str = "feedvisor_messages_received_total";
/// Payload bytes of the messages received.
pub(crate) const BYTES_RECEIVED: &str = "feedvisor_bytes_received_total";
/// Messages refused, by `reason` (too_large, invalid_utf8, protocol).
pub(crate) const MESSAGES_REJECTED: &str = "feedvisor_messages_rejected_total";
/// Connect attempts, by `result` (ok or an error kind).
pub(crate) const CONNECT_ATTEMPTS: &str = "feedvisor_connect_attempts_total";
/// Connect attempts of feeds with `tls.insecure_skip_verify = true`.
pub(crate) const TLS_INSECURE_CONNECTS: &str = "feedvisor_tls_insecure_connects_total";
/// Time from a message's arrival to the end of its handling by a subscriber:
/// sampled at most once a millisecond per subscriber (for every feed in the
/// batch then handled), each sample the slowest batch of its feed (by its
/// oldest message) since the feed's last sample.
pub(crate) const DELIVERY_LATENCY: &str = "feedvisor_delivery_latency_seconds";
/// Connections opened after the first one (successful reconnects).
pub(crate) const RECONNECTS: &str = "feedvisor_reconnects_total";
/// The feed's state, one-hot by `state`.
pub(crate) const FEED_STATE: &str = "feedvisor_feed_state";
/// Time from the start of a connect attempt to the open connection.
pub(crate) const HANDSHAKE_DURATION: &str = "feedvisor_handshake_duration_seconds";
/// Round-trip time of heartbeat pings.
pub(crate) const PING_RTT: &str = "feedvisor_ping_rtt_seconds";
/// Messages waiting in the outbound queue.
pub(crate) const OUTBOUND_QUEUE_DEPTH: &str = "feedvisor_outbound_queue_depth";
/// Outbound messages dropped or refused, by `reason` (see [`OutboundDropReason`]).
pub(crate) const OUTBOUND_DROPPED: &str = "feedvisor_outbound_dropped_total";
/// Messages sent upstream (on_open, heartbeats and sends).
pub(crate) const MESSAGES_SENT: &str = "feedvisor_messages_sent_total";
/// Payload bytes sent upstream.
pub(crate) const BYTES_SENT: &str = "feedvisor_bytes_sent_total";
/// Gaps in a sequenced feed (each gap counted once).
pub(crate) const SEQUENCE_GAPS: &str = "feedvisor_sequence_gaps_total";
/// Messages a sequenced feed skipped, summed over its gaps.
pub(crate) const SEQUENCE_MISSED: &str = "feedvisor_sequence_missed_total";
/// Messages whose sequence number was at or below one already seen.
pub(crate) const SEQUENCE_DUPLICATES: &str = "feedvisor_sequence_duplicates_total";
/// Data payload bytes as they arrived, before permessage-deflate or `decode`
/// inflated them (beside [`BYTES_RECEIVED`], what they became).
pub(crate) const WIRE_BYTES_RECEIVED: &str = "feedvisor_wire_bytes_received_total";
/// Compressed messages that could not be inflated, by `reason` ([`InflateFailure`]).
pub(crate) const INFLATE_ERRORS: &str = "feedvisor_inflate_errors_total";
/// Actors restarted after dying unexpectedly, by `actor` (connection).
pub(crate) const ACTOR_RESTARTS: &str = "feedvisor_actor_restarts_total";
/// Config reloads, by `result` (ok, invalid).
pub(crate) const CONFIG_RELOADS: &str = "feedvisor_config_reloads_total";
/// Messages waiting in a subscriber's queue, by `subscriber`.
pub(crate) const SUBSCRIBER_QUEUE_DEPTH: &str = "feedvisor_subscriber_queue_depth";
/// Messages a subscriber finished handling, by `subscriber`.
pub(crate) const SUBSCRIBER_DELIVERED: &str = "feedvisor_subscriber_delivered_total";
/// Messages a subscriber never got, by `subscriber` and `reason`
/// (drop_oldest, drop_newest, subscriber_gone, unsubscribed; conflated:
/// replaced by a later message of its key, conflate_overflow: pushed out by
/// more keys than the queue holds).
pub(crate) const SUBSCRIBER_DROPPED: &str = "feedvisor_subscriber_dropped_total";
/// Config sinks started again after their actor stopped unasked, by `subscriber`.
pub(crate) const SUBSCRIBER_RESTARTS: &str = "feedvisor_subscriber_restarts_total";
/// Messages of a sequenced feed with no readable sequence number.
pub(crate) const SEQUENCE_MISSING: &str = "feedvisor_sequence_missing_total";
/// Arrival minus the message's own timestamp (`timestamp = { pointer, unit }`):
/// how old the data is when it arrives, by the upstream's clock.
pub(crate) const UPSTREAM_LATENCY: &str = "feedvisor_upstream_latency_seconds";
/// Messages whose timestamp was ahead of our clock (the upstream's clock is
/// ahead): counted here, not put in [`UPSTREAM_LATENCY`].
pub(crate) const CLOCK_SKEW: &str = "feedvisor_clock_skew_total";
/// The estimated offset of our clock against the upstream's: the smallest
/// arrival minus event time over the last window, in seconds (negative: the
/// upstream's clock is ahead). Subtract it from the latency for the part
/// that is not clock difference.
pub(crate) const CLOCK_OFFSET: &str = "feedvisor_clock_offset_seconds";
/// Messages of a feed with `timestamp` in which no timestamp could be read.
pub(crate) const TIMESTAMP_INVALID: &str = "feedvisor_timestamp_invalid_total";

/// Default buckets of `feedvisor_delivery_latency_seconds`: 1 µs to 10 s,
/// three per decade (delivery inside the process is microseconds).
pub(crate) const DEFAULT_DELIVERY_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Default buckets of `feedvisor_upstream_latency_seconds`: 1 ms to 10 min
/// (an upstream's own timestamps are milliseconds at best; a feed that
/// replays or lags is minutes behind).
pub(crate) const DEFAULT_FRESHNESS_BUCKETS: &[f64] = &[
    1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0,
];

/// Default buckets of the network histograms (`feedvisor_handshake_duration_seconds`,
/// `feedvisor_ping_rtt_seconds`): 100 µs to 30 s.
pub(crate) const DEFAULT_NETWORK_BUCKETS: &[f64] = &[
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// The bucket bounds of feedvisor's histograms (`[metrics]` in the config).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistogramBuckets {
    /// `feedvisor_delivery_latency_seconds` (and any histogram not named below).
    #[serde(rename = "delivery_buckets")]
    pub delivery: Vec<f64>,
    /// `feedvisor_upstream_latency_seconds`.
    #[serde(rename = "freshness_buckets")]
    pub freshness: Vec<f64>,
    /// `feedvisor_handshake_duration_seconds` and `feedvisor_ping_rtt_seconds`.
    #[serde(rename = "network_buckets")]
    pub network: Vec<f64>,
}

impl Default for HistogramBuckets {
    fn default() -> Self {
        HistogramBuckets {
            delivery: DEFAULT_DELIVERY_BUCKETS.to_vec(),
            freshness: DEFAULT_FRESHNESS_BUCKETS.to_vec(),
            network: DEFAULT_NETWORK_BUCKETS.to_vec(),
        }
    }
}

impl HistogramBuckets {
    fn table(&self) -> BucketTable {
        let delivery: Arc<[f64]> = Arc::from(self.delivery.as_slice());
        let network: Arc<[f64]> = Arc::from(self.network.as_slice());
        let mut by_name = HashMap::new();
        by_name.insert(DELIVERY_LATENCY, delivery.clone());
        by_name.insert(UPSTREAM_LATENCY, Arc::from(self.freshness.as_slice()));
        by_name.insert(HANDSHAKE_DURATION, network.clone());
        by_name.insert(PING_RTT, network.clone());
        by_name.insert(venue::OUTBOUND_PACING_WAIT, network);
        BucketTable { by_name, fallback: delivery }
    }
}

/// The process-wide registry: what `/metrics` shows.
#[derive(Clone)]
pub struct MetricsHandle {
    registry: Arc<Registry>,
}

impl MetricsHandle {
    /// Every series, then the process's own metrics, in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = self.registry.render();
        text.push_str(&process::render());
        text
    }

    /// Sets the buckets of histograms created from now on; those that exist
    /// keep theirs (Prometheus cannot compare a series with itself across a
    /// change of buckets).
    pub fn set_buckets(&self, buckets: &HistogramBuckets) {
        self.registry.set_buckets(buckets.table());
    }
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

static HANDLE: OnceLock<Result<MetricsHandle, String>> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
///
/// Later calls return the same handle, so several sidecars in one process
/// (tests, embedders) share one registry; their feed names keep series apart.
pub fn install() -> Result<MetricsHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let registry = Arc::new(Registry::new(HistogramBuckets::default().table()));
            ::metrics::set_global_recorder(RegistryRecorder(registry.clone()))
                .map_err(|error| error.to_string())?;
            describe();
            Ok(MetricsHandle { registry })
        })
        .clone()
        .map_err(MetricsError)
}

/// Removes every series of feed `name` (labelled `feed="name"`): a removed
/// feed leaves `/metrics`. Its handles still held (by an actor that is
/// stopping) count into nothing from then on.
pub(crate) fn remove_feed(name: &str) {
    if let Some(Ok(handle)) = HANDLE.get() {
        let removed = handle.registry.remove_labelled("feed", name);
        tracing::debug!(feed = name, series = removed, "metrics of the removed feed dropped");
    }
}

/// Removes every series of subscriber `label` (labelled `subscriber="label"`).
pub(crate) fn remove_subscriber(label: &str) {
    if let Some(Ok(handle)) = HANDLE.get() {
        let removed = handle.registry.remove_labelled("subscriber", label);
        tracing::debug!(
            subscriber = label,
            series = removed,
            "metrics of the removed subscriber dropped"
        );
    }
}

/// How many removals there have been: a handle cached outside a feed's or
/// subscriber's own metrics is resolved again when this changes.
pub(crate) fn removals() -> u64 {
    match HANDLE.get() {
        Some(Ok(handle)) => handle.registry.removals(),
        _ => 0,
    }
}

/// The recorder could not be installed (another recorder was installed first).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

fn describe() {
    legs::describe();
    describe_gauge!(FEED_UP, "1 when the feed's connection is open, 0 otherwise.");
    describe_counter!(MESSAGES_RECEIVED, "Whole messages received from the feed, by kind.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Payload bytes received from the feed.");
    describe_counter!(MESSAGES_REJECTED, "Messages refused (too large, invalid), by reason.");
    describe_counter!(CONNECT_ATTEMPTS, "Connect attempts, by result.");
    describe_counter!(
        TLS_INSECURE_CONNECTS,
        "Connect attempts that accept any server certificate (tls.insecure_skip_verify)."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from a message's arrival to the end of its handling by a subscriber."
    );
    describe_counter!(RECONNECTS, "Connections opened after the first one.");
    describe_gauge!(FEED_STATE, "The feed's state, one-hot by state.");
    describe_histogram!(HANDSHAKE_DURATION, Unit::Seconds, "Connect attempt start to open.");
    describe_histogram!(PING_RTT, Unit::Seconds, "Round-trip time of heartbeat pings.");
    describe_gauge!(OUTBOUND_QUEUE_DEPTH, "Messages waiting in the outbound queue.");
    describe_counter!(OUTBOUND_DROPPED, "Outbound messages dropped or refused, by reason.");
    describe_counter!(MESSAGES_SENT, "Messages sent upstream.");
    describe_counter!(BYTES_SENT, Unit::Bytes, "Payload bytes sent upstream.");
    describe_counter!(SEQUENCE_GAPS, "Gaps in the feed's sequence numbers.");
    describe_counter!(SEQUENCE_MISSED, "Messages skipped by the feed's sequence numbers.");
    describe_counter!(SEQUENCE_DUPLICATES, "Messages with a sequence number already seen.");
    describe_counter!(SEQUENCE_MISSING, "Messages without a readable sequence number.");
    describe_histogram!(UPSTREAM_LATENCY, Unit::Seconds, "Arrival minus the message's timestamp.");
    describe_counter!(CLOCK_SKEW, "Messages whose timestamp was ahead of our clock.");
    describe_gauge!(CLOCK_OFFSET, Unit::Seconds, "Least arrival minus event time, last minute.");
    describe_counter!(TIMESTAMP_INVALID, "Messages in which no timestamp could be read.");
    describe_counter!(
        WIRE_BYTES_RECEIVED,
        Unit::Bytes,
        "Data bytes received as they came off the wire, before any inflating."
    );
    describe_counter!(INFLATE_ERRORS, "Compressed messages that could not be inflated, by reason.");
    describe_counter!(ACTOR_RESTARTS, "Actors restarted after dying unexpectedly, by actor.");
    describe_counter!(CONFIG_RELOADS, "Config reloads, by result.");
    describe_gauge!(SUBSCRIBER_QUEUE_DEPTH, "Messages waiting in a subscriber's queue.");
    describe_counter!(SUBSCRIBER_DELIVERED, "Messages a subscriber finished handling.");
    describe_counter!(SUBSCRIBER_DROPPED, "Messages a subscriber never got, by reason.");
    describe_counter!(SUBSCRIBER_RESTARTS, "Config sinks restarted after stopping unasked.");
    describe_counter!(SINK_MESSAGES_WRITTEN, "Messages a built-in sink wrote out.");
    describe_counter!(SINK_MESSAGES_DROPPED, "Messages a built-in sink gave up on, by reason.");
    describe_counter!(SINK_ERRORS, "Failed operations of a built-in sink, by kind.");
    describe_counter!(SINK_RESTARTS, "Starts of an exec sink's child after the first.");
    describe_gauge!(SUBSCRIBE_CLIENTS, "WebSocket clients connected to /subscribe.");
    describe_counter!(
        SUBSCRIBE_CLIENTS_CLOSED,
        "/subscribe clients the sidecar closed, by reason."
    );
    describe_counter!(
        SUBSCRIBE_REFUSED,
        "/subscribe requests refused before the upgrade, by reason."
    );
    describe_limits();
    describe_credentials();
    // Present from the start, so that dashboards and alerts see zeros, not gaps.
    for result in ["ok", "invalid"] {
        counter!(CONFIG_RELOADS, "result" => result).absolute(0);
    }
    counter!(ACTOR_RESTARTS, "actor" => "connection").absolute(0);
    describe_cluster();
    describe_subscriptions();
    venue::describe();
}

/// Counts an actor restarted after an unexpected death.
pub(crate) fn actor_restarted(actor: &'static str) {
    counter!(ACTOR_RESTARTS, "actor" => actor).increment(1);
}

/// Counts a config reload with its result ("ok" or "invalid").
pub(crate) fn config_reloaded(result: &'static str) {
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

/// Why a message was refused; the label values of [`MESSAGES_REJECTED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectReason {
    /// Larger than `max_message_size` (close 1009).
    TooLarge,
    /// Text that is not UTF-8 (close 1007).
    InvalidUtf8,
    /// Another protocol violation (close 1002).
    Protocol,
}

impl RejectReason {
    /// Every reason, in declaration order (the index of each is its discriminant).
    pub(crate) const ALL: [RejectReason; 3] =
        [RejectReason::TooLarge, RejectReason::InvalidUtf8, RejectReason::Protocol];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::Protocol => "protocol",
        }
    }
}

/// Why an outbound message never went out; the label values of [`OUTBOUND_DROPPED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboundDropReason {
    /// Dropped from the queue to make room (`overflow = "drop_oldest"`).
    DropOldest,
    /// Dropped on arrival at a full queue (`overflow = "drop_newest"`).
    DropNewest,
    /// Refused by a full queue (`overflow = "reject"`).
    QueueFull,
    /// Refused on an open feed: its writer's backlog was at the queue's limits.
    BacklogFull,
    /// Refused: larger than the queue's `max_bytes` alone.
    TooLarge,
}

impl OutboundDropReason {
    /// Every reason, in declaration order (the index of each is its discriminant).
    pub(crate) const ALL: [OutboundDropReason; 5] = [
        OutboundDropReason::DropOldest,
        OutboundDropReason::DropNewest,
        OutboundDropReason::QueueFull,
        OutboundDropReason::BacklogFull,
        OutboundDropReason::TooLarge,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OutboundDropReason::DropOldest => "drop_oldest",
            OutboundDropReason::DropNewest => "drop_newest",
            OutboundDropReason::QueueFull => "queue_full",
            OutboundDropReason::BacklogFull => "backlog_full",
            OutboundDropReason::TooLarge => "too_large",
        }
    }
}

/// The handles of one feed's metrics, resolved once.
#[derive(Clone)]
pub(crate) struct FeedMetrics {
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
    /// See [`FEED_STATE`], one per [`FeedState`] in [`FeedState::ALL`] order.
    state: [Gauge; FeedState::ALL.len()],
    /// See [`RECONNECTS`].
    pub reconnects: Counter,
    /// See [`HANDSHAKE_DURATION`].
    pub handshake_duration: Histogram,
    /// See [`PING_RTT`].
    pub ping_rtt: Histogram,
    /// See [`OUTBOUND_QUEUE_DEPTH`].
    pub outbound_queue_depth: Gauge,
    /// See [`OUTBOUND_DROPPED`], one per [`OutboundDropReason`] (so every series exists from the start).
    outbound_dropped: [Counter; 5],
    /// See [`MESSAGES_SENT`].
    pub messages_sent: Counter,
    /// See [`BYTES_SENT`].
    pub bytes_sent: Counter,
    /// See [`SEQUENCE_GAPS`].
    pub sequence_gaps: Counter,
    /// See [`SEQUENCE_MISSED`].
    pub sequence_missed: Counter,
    /// See [`SEQUENCE_DUPLICATES`].
    pub sequence_duplicates: Counter,
    /// See [`SEQUENCE_MISSING`].
    pub sequence_missing: Counter,
    /// See [`UPSTREAM_LATENCY`].
    pub upstream_latency: Histogram,
    /// See [`CLOCK_SKEW`].
    pub clock_skew: Counter,
    /// See [`CLOCK_OFFSET`].
    pub clock_offset: Gauge,
    /// See [`TIMESTAMP_INVALID`].
    pub timestamp_invalid: Counter,
    /// See [`WIRE_BYTES_RECEIVED`].
    pub wire_bytes: Counter,
    /// See [`INFLATE_ERRORS`], one per [`InflateFailure`] (every series exists from the start).
    inflate_errors: [Counter; 3],
}

impl FeedMetrics {
    /// Resolves the handles for `feed` (a configured name: bounded cardinality).
    pub(crate) fn new(feed: &str) -> Self {
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
            state: FeedState::ALL
                .map(|state| gauge!(FEED_STATE, "feed" => label.clone(), "state" => state.as_str())),
            reconnects: counter!(RECONNECTS, "feed" => label.clone()),
            handshake_duration: histogram!(HANDSHAKE_DURATION, "feed" => label.clone()),
            ping_rtt: histogram!(PING_RTT, "feed" => label.clone()),
            outbound_queue_depth: gauge!(OUTBOUND_QUEUE_DEPTH, "feed" => label.clone()),
            outbound_dropped: OutboundDropReason::ALL.map(|reason| {
                counter!(OUTBOUND_DROPPED, "feed" => label.clone(), "reason" => reason.as_str())
            }),
            messages_sent: counter!(MESSAGES_SENT, "feed" => label.clone()),
            bytes_sent: counter!(BYTES_SENT, "feed" => label.clone()),
            sequence_gaps: counter!(SEQUENCE_GAPS, "feed" => label.clone()),
            sequence_missed: counter!(SEQUENCE_MISSED, "feed" => label.clone()),
            sequence_duplicates: counter!(SEQUENCE_DUPLICATES, "feed" => label.clone()),
            sequence_missing: counter!(SEQUENCE_MISSING, "feed" => label.clone()),
            wire_bytes: counter!(WIRE_BYTES_RECEIVED, "feed" => label.clone()),
            inflate_errors: INFLATE_FAILURES.map(|failure| {
                counter!(INFLATE_ERRORS, "feed" => label.clone(), "reason" => failure.as_str())
            }),
            upstream_latency: histogram!(UPSTREAM_LATENCY, "feed" => label.clone()),
            clock_skew: counter!(CLOCK_SKEW, "feed" => label.clone()),
            clock_offset: gauge!(CLOCK_OFFSET, "feed" => label.clone()),
            timestamp_invalid: counter!(TIMESTAMP_INVALID, "feed" => label),
        }
    }

    /// Sets `feedvisor_feed_up` (1 while connected, stale or not) and the
    /// one-hot `feedvisor_feed_state`.
    pub(crate) fn set_state(&self, state: FeedState) {
        self.up.set(if state.is_connected() { 1.0 } else { 0.0 });
        for (gauge, candidate) in self.state.iter().zip(FeedState::ALL) {
            gauge.set(if candidate == state { 1.0 } else { 0.0 });
        }
    }

    /// Counts a refused message.
    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].increment(1);
    }

    /// Counts a compressed message that could not be inflated.
    pub(crate) fn inflate_error(&self, failure: InflateFailure) {
        let index = INFLATE_FAILURES.iter().position(|known| *known == failure).unwrap_or(0);
        self.inflate_errors[index].increment(1);
    }

    /// Counts `count` outbound messages that never went out.
    pub(crate) fn outbound_dropped(&self, reason: OutboundDropReason, count: u64) {
        self.outbound_dropped[reason as usize].increment(count);
    }

    /// Counts a server's `Retry-After` cut to `reconnect.max_retry_after`.
    pub(crate) fn retry_after_capped(&self) {
        counter!(RETRY_AFTER_CAPPED, "feed" => self.feed.clone()).increment(1);
    }

    /// Counts a connect attempt that skips certificate verification.
    pub(crate) fn insecure_connect(&self) {
        counter!(TLS_INSECURE_CONNECTS, "feed" => self.feed.clone()).increment(1);
    }

    /// Counts a connect attempt with its result ("ok" or an error kind).
    pub(crate) fn connect_attempt(&self, result: &'static str) {
        counter!(CONNECT_ATTEMPTS, "feed" => self.feed.clone(), "result" => result).increment(1);
    }
}

/// The `reason` label values of [`INFLATE_ERRORS`].
const INFLATE_FAILURES: [InflateFailure; 3] =
    [InflateFailure::TooLarge, InflateFailure::Corrupt, InflateFailure::Truncated];

/// The delivery latency histogram of one feed and subscriber pair.
pub(crate) fn delivery_latency(feed: &str, subscriber: &str) -> Histogram {
    histogram!(DELIVERY_LATENCY, "feed" => feed.to_owned(), "subscriber" => subscriber.to_owned())
}

/// Why a subscriber never got a message: the `reason` label values of [`SUBSCRIBER_DROPPED`].
pub(crate) const SUBSCRIBER_DROP_REASONS: [&str; 6] = [
    "drop_oldest",
    "drop_newest",
    "subscriber_gone",
    "unsubscribed",
    "conflated",
    "conflate_overflow",
];

/// The handles of one subscriber's metrics (its inbox's), resolved once.
pub(crate) struct SubscriberMetrics {
    /// The `subscriber` label: the subscriber's name, or a shared label
    /// (`/subscribe` clients all report as `websocket`).
    pub label: String,
    /// See [`SUBSCRIBER_QUEUE_DEPTH`].
    pub depth: Gauge,
    /// See [`SUBSCRIBER_DELIVERED`].
    pub delivered: Counter,
    /// See [`SUBSCRIBER_DROPPED`] with `reason="drop_oldest"`.
    pub dropped_oldest: Counter,
    /// See [`SUBSCRIBER_DROPPED`] with `reason="drop_newest"`.
    pub dropped_newest: Counter,
    /// See [`SUBSCRIBER_DROPPED`] with `reason="subscriber_gone"`.
    pub dropped_gone: Counter,
    /// See [`SUBSCRIBER_DROPPED`] with `reason="unsubscribed"`.
    pub dropped_unsubscribed: Counter,
    /// See [`SUBSCRIBER_DROPPED`] with `reason="conflated"`.
    pub dropped_conflated: Counter,
    /// See [`SUBSCRIBER_DROPPED`] with `reason="conflate_overflow"`.
    pub dropped_conflate_overflow: Counter,
}

impl SubscriberMetrics {
    /// Resolves the handles of the subscriber labelled `label`.
    pub(crate) fn new(label: String) -> Self {
        let [oldest, newest, gone, unsubscribed, conflated, conflate_overflow] =
            SUBSCRIBER_DROP_REASONS.map(|reason| {
            counter!(SUBSCRIBER_DROPPED, "subscriber" => label.clone(), "reason" => reason)
        });
        SubscriberMetrics {
            depth: gauge!(SUBSCRIBER_QUEUE_DEPTH, "subscriber" => label.clone()),
            delivered: counter!(SUBSCRIBER_DELIVERED, "subscriber" => label.clone()),
            dropped_oldest: oldest,
            dropped_newest: newest,
            dropped_gone: gone,
            dropped_unsubscribed: unsubscribed,
            dropped_conflated: conflated,
            dropped_conflate_overflow: conflate_overflow,
            label,
        }
    }
}

/// The restart counter of one config sink.
pub(crate) fn subscriber_restarts(subscriber: &str) -> Counter {
    counter!(SUBSCRIBER_RESTARTS, "subscriber" => subscriber.to_owned())
}

// ---- Sinks (file, exec, webhook): names, help texts and per-subscriber handles. ----

/// Messages a built-in sink wrote out, by `subscriber` and `sink` (file, exec, webhook).
pub(crate) const SINK_MESSAGES_WRITTEN: &str = "feedvisor_sink_messages_written_total";
/// Messages a built-in sink gave up on, by `subscriber`, `sink` and `reason`
/// (file: open, write; exec: child_down, shutdown; webhook: http_status,
/// timeout, connect, request).
pub(crate) const SINK_MESSAGES_DROPPED: &str = "feedvisor_sink_messages_dropped_total";
/// Failed operations of a built-in sink, by `subscriber`, `sink` and `kind`
/// (file: open, write; exec: spawn, write; webhook: http_status, timeout,
/// connect, request). A webhook request retried five times counts five.
pub(crate) const SINK_ERRORS: &str = "feedvisor_sink_errors_total";
/// Starts of an exec sink's child process after the first (once it exited,
/// broke, or could not be started), by `subscriber` and `sink`.
pub(crate) const SINK_RESTARTS: &str = "feedvisor_sink_restarts_total";

/// The metrics of one built-in sink, resolved once when the sink starts.
///
/// Errors and drops are rare, so their series are looked up when they
/// happen; [`SinkMetrics::new`] creates the ones the sink can produce, at
/// zero, so that dashboards and alerts see zeros rather than gaps.
pub(crate) struct SinkMetrics {
    /// The subscriber's configured name (a label).
    subscriber: String,
    /// The sink kind (a label): file, exec or webhook.
    sink: &'static str,
    /// See [`SINK_MESSAGES_WRITTEN`].
    written: Counter,
}

impl SinkMetrics {
    /// Resolves the handles of subscriber `subscriber`, a `sink` sink, and
    /// creates its error series (`error_kinds`) and drop series
    /// (`drop_reasons`) at zero.
    pub(crate) fn new(
        subscriber: &str,
        sink: &'static str,
        error_kinds: &[&'static str],
        drop_reasons: &[&'static str],
    ) -> Self {
        let metrics = SinkMetrics {
            subscriber: subscriber.to_owned(),
            sink,
            written: counter!(
                SINK_MESSAGES_WRITTEN,
                "subscriber" => subscriber.to_owned(),
                "sink" => sink
            ),
        };
        for kind in error_kinds {
            metrics.error_counter(kind).increment(0);
        }
        for reason in drop_reasons {
            metrics.dropped_counter(reason).increment(0);
        }
        metrics
    }

    /// Counts messages written out.
    pub(crate) fn written(&self, messages: usize) {
        self.written.increment(messages as u64);
    }

    /// Counts one failed operation of `kind`.
    pub(crate) fn error(&self, kind: &'static str) {
        self.error_counter(kind).increment(1);
    }

    /// Counts messages given up on for `reason`.
    pub(crate) fn dropped(&self, reason: &'static str, messages: usize) {
        self.dropped_counter(reason).increment(messages as u64);
    }

    /// The restart counter (see [`SINK_RESTARTS`]), for sinks that restart something (exec).
    pub(crate) fn restarts(&self) -> Counter {
        counter!(SINK_RESTARTS, "subscriber" => self.subscriber.clone(), "sink" => self.sink)
    }

    fn error_counter(&self, kind: &'static str) -> Counter {
        let subscriber = self.subscriber.clone();
        counter!(SINK_ERRORS, "subscriber" => subscriber, "sink" => self.sink, "kind" => kind)
    }

    fn dropped_counter(&self, reason: &'static str) -> Counter {
        let subscriber = self.subscriber.clone();
        counter!(
            SINK_MESSAGES_DROPPED,
            "subscriber" => subscriber,
            "sink" => self.sink,
            "reason" => reason
        )
    }
}

// The local WebSocket endpoint `/subscribe` (src/sink/subscribe.rs). Its clients
// also report as subscriber `websocket` in the subscriber metrics above.

/// WebSocket clients connected to `/subscribe`.
pub(crate) const SUBSCRIBE_CLIENTS: &str = "feedvisor_subscribe_clients";
/// `/subscribe` clients the sidecar closed, by `reason` (slow, shutdown).
pub(crate) const SUBSCRIBE_CLIENTS_CLOSED: &str = "feedvisor_subscribe_clients_closed_total";
/// `/subscribe` requests refused before the upgrade, by `reason` (origin, max_clients, bad_request).
pub(crate) const SUBSCRIBE_REFUSED: &str = "feedvisor_subscribe_refused_total";

/// The handles of the `/subscribe` endpoint's metrics.
#[derive(Clone)]
pub(crate) struct SubscribeMetrics {
    /// See [`SUBSCRIBE_CLIENTS`].
    pub clients: Gauge,
    /// See [`SUBSCRIBE_CLIENTS_CLOSED`] with `reason="slow"` (1008: too far behind too long).
    pub closed_slow: Counter,
    /// See [`SUBSCRIBE_CLIENTS_CLOSED`] with `reason="shutdown"` (1001).
    pub closed_shutdown: Counter,
    /// See [`SUBSCRIBE_REFUSED`] with `reason="origin"` (403).
    pub refused_origin: Counter,
    /// See [`SUBSCRIBE_REFUSED`] with `reason="max_clients"` (503).
    pub refused_max_clients: Counter,
    /// See [`SUBSCRIBE_REFUSED`] with `reason="bad_request"` (400: query or handshake).
    pub refused_bad_request: Counter,
}

/// Resolves the `/subscribe` metrics' handles; every series exists from
/// then on (at zero), without resetting one that counts.
pub(crate) fn subscribe_metrics() -> SubscribeMetrics {
    let closed =
        |reason: &'static str| ::metrics::counter!(SUBSCRIBE_CLIENTS_CLOSED, "reason" => reason);
    let refused = |reason: &'static str| ::metrics::counter!(SUBSCRIBE_REFUSED, "reason" => reason);
    let handles = SubscribeMetrics {
        clients: ::metrics::gauge!(SUBSCRIBE_CLIENTS),
        closed_slow: closed("slow"),
        closed_shutdown: closed("shutdown"),
        refused_origin: refused("origin"),
        refused_max_clients: refused("max_clients"),
        refused_bad_request: refused("bad_request"),
    };
    handles.clients.increment(0.0);
    for counter in [
        &handles.closed_slow,
        &handles.closed_shutdown,
        &handles.refused_origin,
        &handles.refused_max_clients,
        &handles.refused_bad_request,
    ] {
        counter.increment(0);
    }
    handles
}

// ---- The cluster (src/cluster/) and NATS connections (src/nats.rs, the nats sink). ----

/// Feeds whose lease this replica holds, by `replica`.
pub(crate) const CLUSTER_FEEDS_OWNED: &str = "feedvisor_cluster_feeds_owned";
/// Replicas this replica sees alive (itself included).
pub(crate) const CLUSTER_REPLICAS: &str = "feedvisor_cluster_replicas";
/// Attempts to take a feed's lease, by `result` (acquired, conflict, error).
pub(crate) const CLUSTER_LEASE_ACQUISITIONS: &str = "feedvisor_cluster_lease_acquisitions_total";
/// Renewals of a held lease, by `result` (ok, lost, error).
pub(crate) const CLUSTER_LEASE_RENEWALS: &str = "feedvisor_cluster_lease_renewals_total";
/// Leases this replica stopped holding unasked, by `reason` (taken: another
/// replica holds it now; unrenewed: renewals failed too long, feed stopped).
pub(crate) const CLUSTER_LEASE_LOSSES: &str = "feedvisor_cluster_lease_losses_total";
/// Feeds handed over make-before-break, by `direction` (in, out).
pub(crate) const CLUSTER_HANDOVERS: &str = "feedvisor_cluster_handovers_total";
/// 1 while a NATS connection is up, by `connection` (cluster, or a nats sink's subscriber).
pub(crate) const NATS_CONNECTED: &str = "feedvisor_nats_connected";
/// Messages a JetStream-publishing nats sink sent that the stream already
/// held (same `Nats-Msg-Id`), by `subscriber`.
pub(crate) const NATS_DUPLICATES: &str = "feedvisor_nats_duplicates_total";

/// The `result` labels of [`CLUSTER_LEASE_ACQUISITIONS`].
pub(crate) const LEASE_ACQUISITION_RESULTS: [&str; 3] = ["acquired", "conflict", "error"];
/// The `result` labels of [`CLUSTER_LEASE_RENEWALS`].
pub(crate) const LEASE_RENEWAL_RESULTS: [&str; 3] = ["ok", "lost", "error"];
/// The `reason` labels of [`CLUSTER_LEASE_LOSSES`].
pub(crate) const LEASE_LOSS_REASONS: [&str; 2] = ["taken", "unrenewed"];
/// The `direction` labels of [`CLUSTER_HANDOVERS`].
pub(crate) const HANDOVER_DIRECTIONS: [&str; 2] = ["in", "out"];

fn describe_cluster() {
    describe_gauge!(CLUSTER_FEEDS_OWNED, "Feeds whose lease this replica holds.");
    describe_gauge!(CLUSTER_REPLICAS, "Replicas seen alive, this one included.");
    describe_counter!(CLUSTER_LEASE_ACQUISITIONS, "Attempts to take a feed's lease, by result.");
    describe_counter!(CLUSTER_LEASE_RENEWALS, "Renewals of held leases, by result.");
    describe_counter!(CLUSTER_LEASE_LOSSES, "Leases lost unasked, by reason.");
    describe_counter!(CLUSTER_HANDOVERS, "Feeds handed over make-before-break, by direction.");
    describe_gauge!(NATS_CONNECTED, "1 while the NATS connection is up.");
    describe_counter!(NATS_DUPLICATES, "Messages JetStream already held (same Nats-Msg-Id).");
}

/// The handles of the cluster's metrics, resolved once for `replica`.
pub(crate) struct ClusterMetrics {
    /// See [`CLUSTER_FEEDS_OWNED`].
    pub feeds_owned: Gauge,
    /// See [`CLUSTER_REPLICAS`].
    pub replicas: Gauge,
}

impl ClusterMetrics {
    /// Resolves the gauges and creates every counter series at zero.
    pub(crate) fn new(replica: &str) -> Self {
        for result in LEASE_ACQUISITION_RESULTS {
            counter!(CLUSTER_LEASE_ACQUISITIONS, "result" => result).increment(0);
        }
        for result in LEASE_RENEWAL_RESULTS {
            counter!(CLUSTER_LEASE_RENEWALS, "result" => result).increment(0);
        }
        for reason in LEASE_LOSS_REASONS {
            counter!(CLUSTER_LEASE_LOSSES, "reason" => reason).increment(0);
        }
        for direction in HANDOVER_DIRECTIONS {
            counter!(CLUSTER_HANDOVERS, "direction" => direction).increment(0);
        }
        ClusterMetrics {
            feeds_owned: gauge!(CLUSTER_FEEDS_OWNED, "replica" => replica.to_owned()),
            replicas: gauge!(CLUSTER_REPLICAS),
        }
    }

    /// Counts an attempt to take a lease.
    pub(crate) fn acquisition(&self, result: &'static str) {
        counter!(CLUSTER_LEASE_ACQUISITIONS, "result" => result).increment(1);
    }

    /// Counts a renewal.
    pub(crate) fn renewal(&self, result: &'static str) {
        counter!(CLUSTER_LEASE_RENEWALS, "result" => result).increment(1);
    }

    /// Counts a lease lost unasked.
    pub(crate) fn loss(&self, reason: &'static str) {
        counter!(CLUSTER_LEASE_LOSSES, "reason" => reason).increment(1);
    }

    /// Counts a handover.
    pub(crate) fn handover(&self, direction: &'static str) {
        counter!(CLUSTER_HANDOVERS, "direction" => direction).increment(1);
    }
}

/// The connection gauge of NATS connection `label`.
pub(crate) fn nats_connected(label: &str) -> Gauge {
    gauge!(NATS_CONNECTED, "connection" => label.to_owned())
}

/// The duplicate counter of nats sink `subscriber`, created at zero.
pub(crate) fn nats_duplicates(subscriber: &str) -> Counter {
    let counter = counter!(NATS_DUPLICATES, "subscriber" => subscriber.to_owned());
    counter.increment(0);
    counter
}

/// Connections the admin server holds now.
pub(crate) const HTTP_CONNECTIONS: &str = "feedvisor_http_connections";
/// `[http].max_connections`: past it, connections wait in the backlog.
pub(crate) const HTTP_CONNECTIONS_MAX: &str = "feedvisor_http_connections_max";
/// Upstream `Retry-After` waits longer than the feed's `max_retry_after`, cut to it, by `feed`.
pub(crate) const RETRY_AFTER_CAPPED: &str = "feedvisor_retry_after_capped_total";

/// Runs of a feed's credential provider, by `feed` and `result` (`ok` or what failed).
pub(crate) const CREDENTIALS_FETCHES: &str = "feedvisor_credentials_fetches_total";
/// Credentials the upstream refused, by `feed` and `reason` (`status`, `close_code`, `reply`).
pub(crate) const CREDENTIALS_REJECTIONS: &str = "feedvisor_credentials_rejections_total";
/// Seconds until the feed's current credentials expire, when the provider said.
pub(crate) const CREDENTIALS_EXPIRES_IN: &str = "feedvisor_credentials_expires_in_seconds";

/// Describes the credential providers' metrics.
fn describe_credentials() {
    describe_counter!(CREDENTIALS_FETCHES, "Runs of the feed's credential provider, by result.");
    describe_counter!(CREDENTIALS_REJECTIONS, "Credentials the upstream refused, by reason.");
    describe_gauge!(
        CREDENTIALS_EXPIRES_IN,
        Unit::Seconds,
        "Time until the feed's current credentials expire, when the provider gives expires_at."
    );
}

/// Describes the metrics of the limits that guard the sidecar.
fn describe_limits() {
    describe_gauge!(HTTP_CONNECTIONS, "Connections the admin HTTP server holds now.");
    describe_gauge!(
        HTTP_CONNECTIONS_MAX,
        "[http].max_connections: past it, connections wait in the backlog."
    );
    describe_counter!(
        RETRY_AFTER_CAPPED,
        "Retry-After waits longer than the feed's max_retry_after, cut to it."
    );
}

/// Topics of a feed's generated subscriptions, by `state` (pending, active,
/// rejected, timed_out), every shard's together.
pub(crate) const SUBSCRIPTION_TOPICS: &str = "feedvisor_subscription_topics";
/// Active topics without a message for `subscribe.stale_after`.
pub(crate) const SUBSCRIPTION_STALE_TOPICS: &str = "feedvisor_subscription_stale_topics";
/// Times an active topic went stale.
pub(crate) const SUBSCRIPTION_STALE: &str = "feedvisor_subscription_stale_total";
/// Generated subscribe messages handed to the connection.
pub(crate) const SUBSCRIPTION_REQUESTS: &str = "feedvisor_subscription_requests_total";
/// Replies matched to a subscribe message, by `result` (ack, rejected).
pub(crate) const SUBSCRIPTION_REPLIES: &str = "feedvisor_subscription_replies_total";
/// Subscribe messages whose reply did not come within `subscribe.ack.timeout`.
pub(crate) const SUBSCRIPTION_TIMEOUTS: &str = "feedvisor_subscription_timeouts_total";
/// Connections a feed's topics are spread over (`max_topics_per_connection`).
pub(crate) const FEED_SHARDS: &str = "feedvisor_feed_shards";
/// 1 while a shard's connection is open, by `shard` (its index).
pub(crate) const SHARD_UP: &str = "feedvisor_shard_up";

fn describe_subscriptions() {
    describe_gauge!(SUBSCRIPTION_TOPICS, "Topics of the feed's generated subscriptions, by state.");
    describe_gauge!(SUBSCRIPTION_STALE_TOPICS, "Active topics without a message for stale_after.");
    describe_counter!(SUBSCRIPTION_STALE, "Times an active topic went stale.");
    describe_counter!(SUBSCRIPTION_REQUESTS, "Generated subscribe messages sent.");
    describe_counter!(SUBSCRIPTION_REPLIES, "Replies matched to a subscribe message, by result.");
    describe_counter!(SUBSCRIPTION_TIMEOUTS, "Subscribe messages without a reply in time.");
    describe_gauge!(FEED_SHARDS, "Connections the feed's topics are spread over.");
    describe_gauge!(SHARD_UP, "1 while a shard's connection is open, by shard.");
}

/// The handles of one connection's generated subscriptions. The topic
/// gauges are per feed and every shard adds its own part to them
/// ([`SubscriptionMetrics::add`]), so a sharded feed counts every topic once.
pub(crate) struct SubscriptionMetrics {
    /// See [`SUBSCRIPTION_TOPICS`], one per state in `TopicState::ALL` order.
    pub topics: [Gauge; 4],
    /// See [`SUBSCRIPTION_STALE_TOPICS`].
    pub stale_topics: Gauge,
    /// See [`SUBSCRIPTION_STALE`].
    pub went_stale: Counter,
    /// See [`SUBSCRIPTION_REQUESTS`].
    pub requests: Counter,
    /// See [`SUBSCRIPTION_REPLIES`] with `result="ack"`.
    pub acks: Counter,
    /// See [`SUBSCRIPTION_REPLIES`] with `result="rejected"`.
    pub rejections: Counter,
    /// See [`SUBSCRIPTION_TIMEOUTS`].
    pub timeouts: Counter,
    /// See [`SHARD_UP`]; `None` for a feed on one connection.
    pub shard_up: Option<Gauge>,
}

impl SubscriptionMetrics {
    /// Resolves the handles for `feed`; `states` are the `state` label values in order.
    pub(crate) fn new(feed: &str, states: [&'static str; 4]) -> Self {
        let label = feed.to_owned();
        SubscriptionMetrics {
            topics: states.map(
                |state| gauge!(SUBSCRIPTION_TOPICS, "feed" => label.clone(), "state" => state),
            ),
            stale_topics: gauge!(SUBSCRIPTION_STALE_TOPICS, "feed" => label.clone()),
            went_stale: counter!(SUBSCRIPTION_STALE, "feed" => label.clone()),
            requests: counter!(SUBSCRIPTION_REQUESTS, "feed" => label.clone()),
            acks: counter!(SUBSCRIPTION_REPLIES, "feed" => label.clone(), "result" => "ack"),
            rejections: counter!(SUBSCRIPTION_REPLIES, "feed" => label.clone(), "result" => "rejected"),
            timeouts: counter!(SUBSCRIPTION_TIMEOUTS, "feed" => label),
            shard_up: None,
        }
    }

    /// Adds the handle of shard `index` of the feed.
    pub(crate) fn in_shard(&mut self, feed: &str, index: usize) {
        self.shard_up =
            Some(gauge!(SHARD_UP, "feed" => feed.to_owned(), "shard" => index.to_string()));
    }

    /// Adds this connection's change to the feed's topic gauges.
    pub(crate) fn add(&self, topics: [f64; 4], stale: f64) {
        for (gauge, delta) in self.topics.iter().zip(topics) {
            if delta != 0.0 {
                gauge.increment(delta);
            }
        }
        if stale != 0.0 {
            self.stale_topics.increment(stale);
        }
    }
}

/// Sets how many connections feed `feed`'s topics are spread over.
pub(crate) fn feed_shards(feed: &str, shards: usize) {
    gauge!(FEED_SHARDS, "feed" => feed.to_owned()).set(shards as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_sink_and_subscribe_metrics_are_described_with_the_others() {
        let handle = install().expect("recorder");
        let _subscriber = SubscriberMetrics::new("described".to_owned());
        let _sink = SinkMetrics::new("described", "file", &["write"], &["write"]);
        let _subscribe = subscribe_metrics();
        subscriber_restarts("described").increment(0);
        let rendered = handle.render();
        let names = [
            SUBSCRIBER_QUEUE_DEPTH,
            SUBSCRIBER_DELIVERED,
            SUBSCRIBER_DROPPED,
            SUBSCRIBER_RESTARTS,
            SINK_MESSAGES_WRITTEN,
            SINK_MESSAGES_DROPPED,
            SINK_ERRORS,
            SUBSCRIBE_CLIENTS,
            SUBSCRIBE_CLIENTS_CLOSED,
            SUBSCRIBE_REFUSED,
        ];
        for name in names {
            assert!(rendered.contains(&format!("# HELP {name} ")), "{name} has no help text");
        }
        for reason in SUBSCRIBER_DROP_REASONS {
            let series =
                format!(r#"{SUBSCRIBER_DROPPED}{{subscriber="described",reason="{reason}"}} 0"#);
            assert!(rendered.contains(&series), "{series} missing");
        }
    }
}
