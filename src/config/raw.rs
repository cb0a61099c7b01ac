//! The config as written: serde structs that mirror the TOML (and the JSON of
//! one feed) field for field, before defaults, `${VAR}` expansion and checks.
//!
//! Every struct denies unknown fields. Fields that the validation step can
//! judge on its own are `Option`s or strings, so that a missing name or a bad
//! duration is reported together with every other error, in words of ours,
//! instead of stopping serde at the first one.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Unexpected};
use serde::Deserialize;

use feedvisor_transport_api::{Framing, TrustRoots};

use super::checks::label;
use super::{FieldError, Location, Overflow, SinkKind, SubscriberOverflow};
use crate::backoff::{Jitter, PolicyKind};

/// A whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// `[http]`: the admin server.
    #[serde(default)]
    pub http: RawHttp,
    /// `[defaults]`: per-feed settings that feeds inherit.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// `[[feeds]]`.
    #[serde(default)]
    pub feeds: Vec<RawFeed>,
    /// `[[subscribers]]`.
    #[serde(default)]
    pub subscribers: Vec<RawSubscriber>,
    /// How long shutdown waits for subscribers to drain.
    pub shutdown_timeout: Option<RawDuration>,
    /// Worker threads (arbiters) that connection actors are spread over.
    pub workers: Option<usize>,
    /// `[metrics]`: histogram buckets.
    pub metrics: Option<RawMetrics>,
    /// `[cluster]`: replicas sharing the feed list through NATS.
    pub cluster: Option<RawCluster>,
    /// `[[hosts]]`: connect budgets and cool-downs shared by the feeds to one host.
    #[serde(default)]
    pub hosts: Vec<RawHost>,
}

/// `[cluster]`, checked in `cluster.rs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    /// NATS server URLs; `${VAR}` expanded (credentials).
    #[serde(default)]
    pub nats: Vec<String>,
    /// This replica's name; default the host name.
    pub replica: Option<String>,
    /// How long a lease and an announcement live without renewal.
    pub lease_ttl: Option<RawDuration>,
    /// Prefix of the KV buckets' names.
    pub bucket_prefix: Option<String>,
    /// `"stop_feeds"` or `"keep_feeds"` while NATS cannot be reached.
    pub nats_unreachable: Option<String>,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    /// `IP:PORT` to listen on.
    pub listen: Option<String>,
    /// Bearer token that changes (POST, PUT, DELETE) and `/subscribe` must carry.
    pub token: Option<String>,
    /// Allows a non-loopback `listen` without a token (refused otherwise).
    pub allow_public: Option<bool>,
    /// `[http.subscribe]`.
    pub subscribe: Option<RawSubscribeEndpoint>,
    /// `[http.tls]`: serve https.
    pub tls: Option<RawHttpTls>,
    /// Connections held at once (more wait in the backlog).
    pub max_connections: Option<usize>,
    /// Connections the kernel queues before they are accepted.
    pub backlog: Option<u32>,
}

/// `[http.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpTls {
    /// Certificate chain file (PEM).
    pub cert: String,
    /// Private key file (PEM).
    pub key: String,
}

/// `[defaults]`: the per-feed fields that have a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    /// Default `mode`.
    pub mode: Option<RawMode>,
    /// Default `max_message_size`.
    pub max_message_size: Option<RawSize>,
    /// Default `chunk_size`.
    pub chunk_size: Option<RawSize>,
    /// Default `handshake_timeout`.
    pub handshake_timeout: Option<RawDuration>,
    /// `[defaults.reconnect]`: feeds override it field by field.
    pub reconnect: Option<RawReconnect>,
    /// `[defaults.heartbeat]`: feeds override it field by field.
    pub heartbeat: Option<RawHeartbeat>,
    /// Default `idle_timeout`; `"0s"` is off.
    pub idle_timeout: Option<RawDuration>,
    /// `[defaults.outbound_queue]`: feeds override it field by field.
    pub outbound_queue: Option<RawOutboundQueue>,
    /// Default `required`.
    pub required: Option<bool>,
    /// `[defaults.tls]`: feeds override it field by field.
    pub tls: Option<RawTls>,
    /// Default `proxy`.
    pub proxy: Option<String>,
    /// `[defaults.credentials]`: feeds override it field by field.
    pub credentials: Option<RawCredentials>,
    /// Default `outbound_rate`.
    pub outbound_rate: Option<RawOutboundRate>,
}

/// One `[[feeds]]` entry, or the JSON body that adds a feed at run time.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFeed {
    /// Required.
    pub name: Option<String>,
    /// Required; `${VAR}` expanded.
    pub url: Option<String>,
    /// Falls back to `[defaults]`.
    pub mode: Option<RawMode>,
    /// JSON pointer to the topic.
    pub topic: Option<String>,
    /// Handshake headers; values `${VAR}` expanded.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `Sec-WebSocket-Protocol` offers.
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// Text messages sent after every (re)connect; `${VAR}` expanded.
    #[serde(default)]
    pub on_open: Vec<String>,
    /// Falls back to `[defaults]`.
    pub max_message_size: Option<RawSize>,
    /// Falls back to `[defaults]`; stream mode only.
    pub chunk_size: Option<RawSize>,
    /// Byte-stream feeds in message mode: how messages are delimited.
    pub framing: Option<RawFraming>,
    /// Falls back to `[defaults]`.
    pub handshake_timeout: Option<RawDuration>,
    /// TLS settings; override `[defaults.tls]` field by field.
    pub tls: Option<RawTls>,
    /// `http://[user:password@]host:port` or `none`; `${VAR}` expanded.
    pub proxy: Option<String>,
    /// Overrides `[defaults.reconnect]` field by field.
    pub reconnect: Option<RawReconnect>,
    /// Overrides `[defaults.heartbeat]` field by field.
    pub heartbeat: Option<RawHeartbeat>,
    /// Falls back to `[defaults]`; `"0s"` is off.
    pub idle_timeout: Option<RawDuration>,
    /// Overrides `[defaults.outbound_queue]` field by field.
    pub outbound_queue: Option<RawOutboundQueue>,
    /// JSON pointer to each message's sequence number.
    pub sequence: Option<String>,
    /// Falls back to `[defaults]`.
    pub required: Option<bool>,
    /// Where each message carries its event time.
    pub timestamp: Option<RawTimestamp>,
    /// Report the feed `stale` after this long open without a data message; `"0s"` is off.
    pub stale_after: Option<RawDuration>,
    /// WebSocket permessage-deflate: `"deflate"` (the default) or `"off"`.
    pub compression: Option<RawCompression>,
    /// permessage-deflate: the largest window our compressor may use (9 to 15).
    pub client_max_window_bits: Option<u8>,
    /// permessage-deflate: the largest window the server may use (8 to 15).
    pub server_max_window_bits: Option<u8>,
    /// permessage-deflate: we reset our compressor after each message.
    pub client_no_context_takeover: Option<bool>,
    /// permessage-deflate: the server must reset its compressor after each message.
    pub server_no_context_takeover: Option<bool>,
    /// Each binary message's payload is inflated from this encoding.
    pub decode: Option<RawDecode>,
    /// Subscribe messages generated from a topic list, sent after `on_open`.
    pub subscribe: Option<RawSubscribe>,
    /// Spreads `subscribe.topics` over connections of at most this many topics each.
    pub max_topics_per_connection: Option<u64>,
    /// The credential provider run before every connect; overrides
    /// `[defaults.credentials]` field by field, or `"none"`.
    pub credentials: Option<RawCredentials>,
    /// At most this many messages upstream per rolling window.
    pub outbound_rate: Option<RawOutboundRate>,
    /// Redundant legs, one URL each (exclusive with `url`); `${VAR}` expanded.
    pub urls: Option<Vec<String>>,
    /// How the legs are used: `"all"`.
    pub redundancy: Option<RawRedundancy>,
    /// Without `sequence`: how long (or how many messages) payload hashes are remembered.
    pub dedup_window: Option<RawDedupWindow>,
    /// How long a leg that runs ahead waits for another to fill the gap.
    pub gap_fill_wait: Option<RawDuration>,
    /// How many messages are held at most while a gap waits to be filled.
    pub gap_fill_max: Option<u64>,
    /// Replace the connection make-before-break this often; `"0s"` is off.
    pub rotate_every: Option<RawDuration>,
}

/// `subscribe = { template, topics, per_message, ack, stale_after, replay_rejected }`,
/// checked in `subscribe.rs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscribe {
    /// The message text, with `{{topics}}` (and `{{id}}` with `ack`).
    pub template: Option<String>,
    /// The topics to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topics per subscribe message.
    pub per_message: Option<u64>,
    /// How the server's replies acknowledge or refuse a subscribe message.
    pub ack: Option<RawSubscribeAck>,
    /// A subscribed topic without a message for this long is reported stale.
    pub stale_after: Option<RawDuration>,
    /// Whether topics the server rejected are subscribed to again after a reconnect.
    pub replay_rejected: Option<bool>,
}

/// `subscribe.ack = { id, error, success, success_value, reason, timeout }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscribeAck {
    /// JSON pointer to the id a reply echoes.
    pub id: Option<String>,
    /// JSON pointer whose presence marks a rejection.
    pub error: Option<String>,
    /// JSON pointer whose presence (or value) marks success.
    pub success: Option<String>,
    /// The value `success` must hold.
    pub success_value: Option<String>,
    /// JSON pointer to the server's reason for a rejection.
    pub reason: Option<String>,
    /// How long a subscribe message waits for its reply.
    pub timeout: Option<RawDuration>,
}

/// `redundancy = "all"`: the only way legs are used today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawRedundancy {
    /// Every leg connected and subscribed; the first copy of each message wins.
    All,
}

/// `dedup_window = "5s"` or `dedup_window = 10000` (messages).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDedupWindow {
    /// The last this many messages.
    Count(u64),
    /// Messages that arrived within this long.
    Time(RawDuration),
}

/// `compression = "deflate" | "off"`, mapped onto the transport API's `Compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawCompression {
    /// Offer permessage-deflate (the default).
    Deflate,
    /// Offer nothing.
    Off,
}

/// `decode = "gzip" | "zlib" | "deflate-raw"`, mapped onto `PayloadDecoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawDecode {
    /// A gzip member.
    Gzip,
    /// A zlib stream.
    Zlib,
    /// Bare deflate blocks.
    DeflateRaw,
}

/// `mode = "message" | "stream"`, mapped onto the transport API's
/// `DeliveryMode` by the validation step (stream mode takes `chunk_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawMode {
    /// Whole messages, bounded by `max_message_size`.
    Message,
    /// Ordered chunks of at most `chunk_size`, message boundaries marked.
    Stream,
}

/// `framing = "lines" | "length_prefixed"`: the names of the transport API's `Framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawFraming {
    /// One message per line.
    Lines,
    /// Each message preceded by its length, a big-endian u32.
    LengthPrefixed,
}

impl From<RawFraming> for Framing {
    fn from(raw: RawFraming) -> Framing {
        match raw {
            RawFraming::Lines => Framing::Lines,
            RawFraming::LengthPrefixed => Framing::LengthPrefixed,
        }
    }
}

/// `reconnect = { ... }`: every field optional, so that a feed's table
/// overrides only what it sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReconnect {
    /// `exponential`, `fixed` or `none`.
    pub policy: Option<PolicyKind>,
    /// The first delay's ceiling.
    pub initial: Option<RawDuration>,
    /// The largest ceiling.
    pub max: Option<RawDuration>,
    /// Growth per failed attempt.
    pub multiplier: Option<f64>,
    /// `none`, `full`, `equal` or `decorrelated`.
    pub jitter: Option<Jitter>,
    /// Retries before giving up; 0 is forever.
    pub max_attempts: Option<u32>,
    /// How long a connection must stay open for the attempts to start over.
    pub reset_after: Option<RawDuration>,
    /// The longest wait a server's `Retry-After` may impose.
    pub max_retry_after: Option<RawDuration>,
}

/// `heartbeat = { ... }`: every field optional, like [`RawReconnect`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeartbeat {
    /// Time between pings; `"0s"` turns the heartbeat off.
    pub interval: Option<RawDuration>,
    /// How long an answer may take.
    pub timeout: Option<RawDuration>,
    /// An application ping, `${VAR}` expanded; comes with `reply`.
    pub message: Option<String>,
    /// What the answer contains, or equals at `reply_pointer`.
    pub reply: Option<String>,
    /// JSON pointer at which the answer holds `reply`.
    pub reply_pointer: Option<String>,
}

/// `outbound_queue = { ... }`: every field optional, like [`RawReconnect`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutboundQueue {
    /// Most messages held.
    pub max_messages: Option<usize>,
    /// Most payload bytes held.
    pub max_bytes: Option<RawSize>,
    /// `drop_oldest`, `drop_newest` or `reject`.
    pub overflow: Option<Overflow>,
}

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    /// `feedvisor_delivery_latency_seconds`, in seconds.
    pub delivery_buckets: Option<Vec<f64>>,
    /// `feedvisor_upstream_latency_seconds`, in seconds.
    pub freshness_buckets: Option<Vec<f64>>,
    /// `feedvisor_handshake_duration_seconds` and `feedvisor_ping_rtt_seconds`, in seconds.
    pub network_buckets: Option<Vec<f64>>,
}

/// A feed's `timestamp = { pointer = "/ts", unit = "ms" }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimestamp {
    /// JSON pointer to the message's event time.
    pub pointer: Option<String>,
    /// `s`, `ms`, `us`, `ns` (numbers since the Unix epoch) or `rfc3339` (strings).
    pub unit: Option<String>,
}

/// `tls = { ... }` of a feed or `[defaults.tls]`: every field optional, so
/// that a feed's table overrides only what it sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// `webpki`, `system` or `none`.
    pub roots: Option<RawRoots>,
    /// Extra CA certificates (PEM), relative to the config file's directory.
    pub ca_file: Option<String>,
    /// The client certificate chain (PEM), for mutual TLS.
    pub client_cert: Option<String>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<String>,
    /// The name sent as SNI and checked, instead of the URL's host.
    pub server_name: Option<String>,
    /// Base64 SHA-256 digests of the server's SubjectPublicKeyInfo.
    pub pin_sha256: Option<Vec<String>>,
    /// Accepts any certificate (warned at every connect, counted).
    pub insecure_skip_verify: Option<bool>,
}

/// `roots = "webpki" | "system" | "none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawRoots {
    /// The compiled-in Mozilla roots.
    Webpki,
    /// The operating system's store.
    System,
    /// Only `ca_file` (or the pins).
    None,
}

impl From<RawRoots> for TrustRoots {
    fn from(raw: RawRoots) -> TrustRoots {
        match raw {
            RawRoots::Webpki => TrustRoots::Webpki,
            RawRoots::System => TrustRoots::System,
            RawRoots::None => TrustRoots::None,
        }
    }
}

/// One `[[subscribers]]` entry: the fields every subscriber shares, and
/// the rest of its table, which is the sink's own settings. Unknown fields
/// are refused by the sink's settings type (serde cannot deny them here,
/// beside `flatten`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSubscriber {
    /// Required.
    pub name: Option<String>,
    /// Required: feed names or glob patterns.
    pub feeds: Option<Vec<String>>,
    /// Topic glob patterns; absent means every topic.
    pub topics: Option<Vec<String>>,
    /// Where messages go; the first sink of the list (`stdout`) when absent.
    pub sink: Option<SinkKind>,
    /// Messages the subscriber's queue holds.
    pub queue: Option<usize>,
    /// What happens when the queue is full.
    pub overflow: Option<SubscriberOverflow>,
    /// Every other field: the sink's settings, read by its own type.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl RawSubscriber {
    /// The fields every subscriber shares, whatever its sink.
    pub(crate) const SHARED_FIELDS: [&'static str; 6] =
        ["name", "feeds", "topics", "sink", "queue", "overflow"];
}

/// `[http.subscribe]`: the local WebSocket endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscribeEndpoint {
    /// Clients connected at once.
    pub max_clients: Option<usize>,
    /// How long a client may stay too slow before it is closed (1008).
    pub slow_client_timeout: Option<RawDuration>,
    /// `Origin` values allowed; `["*"]` for any.
    pub allowed_origins: Option<Vec<String>>,
    /// Each client's queue, in messages.
    pub queue: Option<usize>,
    /// Each client's overflow policy.
    pub overflow: Option<SubscriberOverflow>,
}

/// A size as written: `"64KiB"`, or a plain number of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawSize {
    /// Human form, parsed by the validation step.
    Text(String),
    /// A bare integer: bytes.
    Bytes(u64),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64KiB\" or \"1MiB\", or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(value.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawSize, E> {
                u64::try_from(value)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration as written, such as `"10s"`; a unit is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl de::Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"10s\" or \"500ms\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(value.to_owned()))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// Parses a TOML document; a syntax error carries its line and column, a
/// serde error (unknown field, wrong type, bad variant) its field path.
pub(crate) fn from_toml(text: &str) -> Result<RawConfig, FieldError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|error| FieldError {
        path: String::new(),
        message: format!("invalid TOML: {}", error.message()),
        location: error.span().map(|span| Location::of(text, span.start)),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = name_sections(&error.path().to_string(), text);
        let inner = error.into_inner();
        FieldError {
            path,
            message: inner.message().to_owned(),
            location: inner.span().map(|span| Location::of(text, span.start)),
        }
    })
}

/// Deserializes one feed in the config's shape from JSON; errors carry the
/// path inside that feed (`headers.X-Api-Key`, `mode`).
pub(crate) fn from_json(value: serde_json::Value) -> Result<RawFeed, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|error| FieldError {
        path: root_as_empty(error.path().to_string()),
        message: error.into_inner().to_string(),
        location: None,
    })
}

/// `feeds[1].mode` becomes `feeds[1] (weather).mode` when the document gives
/// that entry a valid name; serde reports paths without names.
fn name_sections(path: &str, text: &str) -> String {
    let path = root_as_empty(path.to_owned());
    for section in ["feeds", "subscribers"] {
        let Some(rest) = path.strip_prefix(section).and_then(|rest| rest.strip_prefix('[')) else {
            continue;
        };
        let Some((index, tail)) = rest.split_once(']') else { continue };
        let Ok(index) = index.parse::<usize>() else { continue };
        let Ok(document) = text.parse::<toml::Table>() else { continue };
        let name = document
            .get(section)
            .and_then(|entries| entries.get(index))
            .and_then(|entry| entry.get("name"))
            .and_then(|name| name.as_str());
        return format!("{}{tail}", label(section, index, name));
    }
    path
}

/// serde_path_to_error renders an empty path as `.`.
fn root_as_empty(path: String) -> String {
    if path == "." {
        String::new()
    } else {
        path
    }
}

/// `credentials = { ... }` of a feed or `[defaults.credentials]`, or
/// `credentials = "none"` (a feed that takes none from `[defaults]`).
#[derive(Debug)]
pub(crate) enum RawCredentials {
    /// `"none"`, or another string (refused by the validation step).
    Named(String),
    /// The provider's table (boxed: most feeds have none, and a feed's raw struct stays small).
    Table(Box<RawCredentialsTable>),
}

impl<'de> Deserialize<'de> for RawCredentials {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CredentialsVisitor;
        impl<'de> de::Visitor<'de> for CredentialsVisitor {
            type Value = RawCredentials;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table such as { exec = [\"./get-token.sh\"] }, or \"none\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawCredentials, E> {
                Ok(RawCredentials::Named(value.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawCredentials, A::Error> {
                let deserializer = de::value::MapAccessDeserializer::new(map);
                RawCredentialsTable::deserialize(deserializer)
                    .map(|table| RawCredentials::Table(Box::new(table)))
            }
        }
        deserializer.deserialize_any(CredentialsVisitor)
    }
}

/// The credential provider's table as written: every field optional, so
/// that a feed's table overrides only what it sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentialsTable {
    /// A program and its arguments, run without a shell.
    pub exec: Option<Vec<String>>,
    /// An HTTP request.
    pub http: Option<RawCredentialsHttp>,
    /// `"20m"` (a period) or `"80%"` (a share of the remaining life).
    pub refresh: Option<RawDuration>,
    /// How long one run may take.
    pub timeout: Option<RawDuration>,
    /// The most output read from one run.
    pub max_output: Option<RawSize>,
    /// What counts as the upstream refusing the credentials.
    pub rejected: Option<RawRejected>,
}

/// `credentials.http = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentialsHttp {
    /// Required; `${VAR}` expanded.
    pub url: Option<String>,
    /// `GET` (the default), `POST` or `PUT`.
    pub method: Option<String>,
    /// Request headers; values `${VAR}` expanded.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body; `${VAR}` expanded.
    pub body: Option<String>,
}

/// `credentials.rejected = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRejected {
    /// Handshake HTTP statuses.
    pub statuses: Option<Vec<u16>>,
    /// Close codes from the peer.
    pub close_codes: Option<Vec<u16>>,
    /// A message from the peer.
    pub reply: Option<RawRejectedReply>,
}

/// `credentials.rejected.reply = { pointer = "/error", contains = "expired" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRejectedReply {
    /// JSON pointer to the text to look in; absent: the whole message.
    pub pointer: Option<String>,
    /// What that text contains.
    pub contains: Option<String>,
}

/// `outbound_rate = { messages, per, count_pings }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutboundRate {
    /// Messages allowed per window; required.
    pub messages: Option<u64>,
    /// The rolling window; required.
    pub per: Option<RawDuration>,
    /// Whether heartbeat pings count (and wait) too; default false.
    pub count_pings: Option<bool>,
}

/// One `[[hosts]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    /// `"api.example.com"` (any port) or `"api.example.com:443"`; required.
    #[serde(rename = "match")]
    pub host: Option<String>,
    /// Connect attempts allowed per `per`, shared by every feed to the host.
    pub connects: Option<u64>,
    /// The rolling window of `connects`.
    pub per: Option<RawDuration>,
    /// The cool-down when the host refuses without `Retry-After`.
    pub cooldown: Option<RawDuration>,
    /// The longest cool-down, whatever `Retry-After` asks; default each feed's `reconnect.max_retry_after`.
    pub max_cooldown: Option<RawDuration>,
    /// Handshake statuses that start a cool-down; default 429 and 503.
    pub cooldown_statuses: Option<Vec<u16>>,
    /// Close codes from the host that start a cool-down; default none.
    #[serde(default)]
    pub cooldown_close_codes: Vec<u16>,
    /// Default `outbound_rate` of each connection to the host.
    pub outbound_rate: Option<RawOutboundRate>,
}
