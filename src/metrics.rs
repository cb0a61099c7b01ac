//! Metric names, help texts, the Prometheus recorder and per-feed and
//! per-subscriber handles.
//!
//! Every metric feedvisor exports is named and described here, once: the
//! feeds', the subscribers' (`feedvisor_subscriber_*`, every inbox), the
//! built-in sinks' (`feedvisor_sink_*`) and the `/subscribe` endpoint's
//! (`feedvisor_subscribe_*`). Handles are resolved once per feed or
//! subscriber ([`FeedMetrics`], [`SubscriberMetrics`], [`SinkMetrics`]) so
//! the per-message path touches only cached atomics.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, Unit};
use ::metrics::{gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::status::FeedState;

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
/// Actors restarted after dying unexpectedly, by `actor` (connection).
pub(crate) const ACTOR_RESTARTS: &str = "feedvisor_actor_restarts_total";
/// Config reloads, by `result` (ok, invalid).
pub(crate) const CONFIG_RELOADS: &str = "feedvisor_config_reloads_total";
/// Messages waiting in a subscriber's queue, by `subscriber`.
pub(crate) const SUBSCRIBER_QUEUE_DEPTH: &str = "feedvisor_subscriber_queue_depth";
/// Messages a subscriber finished handling, by `subscriber`.
pub(crate) const SUBSCRIBER_DELIVERED: &str = "feedvisor_subscriber_delivered_total";
/// Messages a subscriber never got, by `subscriber` and `reason`
/// (drop_oldest, drop_newest, subscriber_gone, unsubscribed).
pub(crate) const SUBSCRIBER_DROPPED: &str = "feedvisor_subscriber_dropped_total";
/// Config sinks started again after their actor stopped unasked, by `subscriber`.
pub(crate) const SUBSCRIBER_RESTARTS: &str = "feedvisor_subscriber_restarts_total";
/// Messages of a sequenced feed with no readable sequence number.
pub(crate) const SEQUENCE_MISSING: &str = "feedvisor_sequence_missing_total";

/// Latency buckets from 1 µs to 10 s, three per decade.
const LATENCY_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded in when nobody scrapes.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
///
/// Later calls return the same handle, so several sidecars in one process
/// (tests, embedders) share one registry; their feed names keep series apart.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
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
    // Present from the start, so that dashboards and alerts see zeros, not gaps.
    for result in ["ok", "invalid"] {
        counter!(CONFIG_RELOADS, "result" => result).absolute(0);
    }
    counter!(ACTOR_RESTARTS, "actor" => "connection").absolute(0);
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
    state: [Gauge; 5],
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
            sequence_missing: counter!(SEQUENCE_MISSING, "feed" => label),
        }
    }

    /// Sets `feedvisor_feed_up` and the one-hot `feedvisor_feed_state`.
    pub(crate) fn set_state(&self, state: FeedState) {
        self.up.set(if state == FeedState::Open { 1.0 } else { 0.0 });
        for (gauge, candidate) in self.state.iter().zip(FeedState::ALL) {
            gauge.set(if candidate == state { 1.0 } else { 0.0 });
        }
    }

    /// Counts a refused message.
    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].increment(1);
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

/// The delivery latency histogram of one feed and subscriber pair.
pub(crate) fn delivery_latency(feed: &str, subscriber: &str) -> Histogram {
    histogram!(DELIVERY_LATENCY, "feed" => feed.to_owned(), "subscriber" => subscriber.to_owned())
}

/// Why a subscriber never got a message: the `reason` label values of [`SUBSCRIBER_DROPPED`].
pub(crate) const SUBSCRIBER_DROP_REASONS: [&str; 4] =
    ["drop_oldest", "drop_newest", "subscriber_gone", "unsubscribed"];

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
}

impl SubscriberMetrics {
    /// Resolves the handles of the subscriber labelled `label`.
    pub(crate) fn new(label: String) -> Self {
        let [oldest, newest, gone, unsubscribed] = SUBSCRIBER_DROP_REASONS.map(|reason| {
            counter!(SUBSCRIBER_DROPPED, "subscriber" => label.clone(), "reason" => reason)
        });
        SubscriberMetrics {
            depth: gauge!(SUBSCRIBER_QUEUE_DEPTH, "subscriber" => label.clone()),
            delivered: counter!(SUBSCRIBER_DELIVERED, "subscriber" => label.clone()),
            dropped_oldest: oldest,
            dropped_newest: newest,
            dropped_gone: gone,
            dropped_unsubscribed: unsubscribed,
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

/// Connections the admin server holds now.
pub(crate) const HTTP_CONNECTIONS: &str = "feedvisor_http_connections";
/// `[http].max_connections`: past it, connections wait in the backlog.
pub(crate) const HTTP_CONNECTIONS_MAX: &str = "feedvisor_http_connections_max";
/// Upstream `Retry-After` waits longer than the feed's `max_retry_after`, cut to it, by `feed`.
pub(crate) const RETRY_AFTER_CAPPED: &str = "feedvisor_retry_after_capped_total";

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
