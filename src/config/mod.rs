//! The TOML config: what feeds to keep alive and who receives their messages.
//!
//! Loading runs in three steps:
//! 1. `raw.rs`: serde parses the text into structs that mirror it exactly
//!    (unknown fields are errors; a TOML syntax error names line and column;
//!    a type error names the field path, such as `feeds[0].mode`).
//! 2. `validate.rs`: a pure function checks every field, applies
//!    `[defaults]`, expands `${VAR}` (`env.rs`) and collects *every* error
//!    with its path, such as `feeds[1] (weather).url`.
//! 3. The result is a resolved [`Config`] that the rest of the program uses
//!    without further checks.
//!
//! A feed added at run time goes through the same raw struct and the same
//! checks (`parse_feed_json`, behind [`Sidecar::add_feed`](crate::Sidecar::add_feed)
//! and `POST /feeds`).
//!
//! What a feed's URL may look like and which options it may use is the
//! business of the transport serving its scheme: validation asks the
//! [`TransportRegistry`] it is given (`Transport::check`), so that a scheme
//! is accepted exactly where a transport serves it. The resolved feed holds
//! the transport API's own types (`DeliveryMode`, `Framing`, `TlsOptions`);
//! the TOML names (`mode = "stream"`, `chunk_size`, `framing = "lines"`) are
//! mapped in `raw.rs`/`validate.rs` and back in `show.rs`.
//!
//! Secrets: header values are never printed (`Debug` and `Serialize` show
//! `***`, see `show.rs`), and a URL, `on_open` message or heartbeat message
//! that uses `${VAR}` is shown as written, with the reference unexpanded
//! (one that writes a literal `${` as `$${` too, so that it reads back); a
//! URL password is masked.
//!
//! The session settings (`reconnect`, `heartbeat`, `outbound_queue`) are
//! tables that `[defaults]` and each feed may set; a feed's table overrides
//! only the fields it sets (`session.rs`).
//!
//! Not `Eq`: [`ReconnectPolicy::multiplier`] is a float.

mod admin;
mod checks;
mod cluster;
mod compression;
mod conflate;
mod credentials;
mod env;
mod heartbeat;
mod legs;
mod limits;
mod metrics;
mod network;
mod queue;
mod raw;
#[cfg(test)]
mod roundtrip_tests;
mod scope;
mod session;
mod show;
mod subscribe;
mod subscriber;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use feedvisor_transport_api::{Compression, DeliveryMode, Framing, ProxyOptions, TlsOptions};
use serde::Serialize;
use url::Url;

pub use admin::{HttpTls, DEFAULT_BACKLOG, DEFAULT_MAX_CONNECTIONS, RESERVED_CONNECTIONS};
pub use checks::parse_duration;
pub(crate) use cluster::{is_kv_key, shown_nats_url};
pub use cluster::{ClusterConfig, NatsUnreachable, DEFAULT_BUCKET_PREFIX, DEFAULT_LEASE_TTL};
pub use compression::PayloadDecoding;
pub(crate) use credentials::refuse_exec_credentials;
pub use credentials::{
    placeholders, CredentialSource, CredentialsConfig, HttpSource, Refresh, RejectedReply,
    Rejections, PLACEHOLDER_PREFIX,
};
pub(crate) use env::refuse_references;
pub use heartbeat::{HeartbeatConfig, HeartbeatKind, ReplyMatch};
pub use legs::{DedupWindow, Redundancy, MAX_DEDUP_ENTRIES, MAX_LEGS};
pub use limits::{
    ConnectBudget, HostLimits, OutboundRate, DEFAULT_COOLDOWN, DEFAULT_COOLDOWN_STATUSES,
    MAX_LIMIT_DURATION,
};
pub use metrics::{HistogramBuckets, MetricsConfig, TimestampConfig, TimestampUnit};
pub use queue::{OutboundQueueConfig, Overflow};
pub(crate) use show::{format_duration, format_size, mode_name};
pub use subscribe::{AckConfig, SubscribeConfig};
pub(crate) use subscribe::{ID_PLACEHOLDER, TOPICS_PLACEHOLDER};
pub use subscriber::SubscriberConfig;

pub use crate::backoff::{Jitter, PolicyKind, ReconnectPolicy};
pub use crate::inbox::{KeyPointer, KeyPointerError, SubscriberOverflow, DEFAULT_QUEUE};
pub use crate::secret::Secret;
pub use crate::sink::{
    ExecSinkConfig, FileLayout, FileSinkConfig, NatsSinkConfig, SinkConfig, SinkKind,
    StdoutSinkConfig, SubscribeEndpointConfig, WebhookSinkConfig,
};

use crate::transports::TransportRegistry;
use show::{mask_literal_query, mask_password, mask_query};

/// A whole, valid, resolved config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The admin HTTP server (`/metrics`, `/feeds`, ...).
    pub http: HttpConfig,
    /// `[defaults]`, kept so that feeds added at run time inherit them too.
    pub defaults: FeedDefaults,
    /// The feeds to connect to, in file order; names are unique.
    pub feeds: Vec<FeedConfig>,
    /// Who receives what; names are unique and every plain feed name exists.
    pub subscribers: Vec<SubscriberConfig>,
    /// How long shutdown lets subscribers drain what they hold (default 5s).
    #[serde(serialize_with = "crate::sink::serialize_duration")]
    pub shutdown_timeout: Duration,
    /// Worker threads for connection actors; `None`: one per core.
    pub workers: Option<usize>,
    /// `[metrics]`: histogram buckets.
    pub metrics: MetricsConfig,
    /// `[cluster]`: the feed list shared with other replicas through NATS;
    /// `None`: this process runs the feeds of its file alone.
    pub cluster: Option<ClusterConfig>,
    /// `[[hosts]]`: connect budgets and cool-downs, each shared by every feed to its host.
    pub hosts: Vec<HostLimits>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: HttpConfig::default(),
            defaults: FeedDefaults::default(),
            feeds: Vec::new(),
            subscribers: Vec::new(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            workers: None,
            metrics: MetricsConfig::default(),
            cluster: None,
            hosts: Vec::new(),
        }
    }
}

/// The default `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// `[http]`: the admin HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpConfig {
    /// Address to listen on; loopback by default so nothing is exposed.
    pub listen: SocketAddr,
    /// When set, requests that change anything, and `/subscribe`, need
    /// `Authorization: Bearer <token>` (`/subscribe` also takes `?token=`).
    pub token: Option<Secret>,
    /// Serve on a non-loopback address without a token (warned at start).
    pub allow_public: bool,
    /// `[http.subscribe]`: the local WebSocket endpoint `/subscribe`.
    pub subscribe: SubscribeEndpointConfig,
    /// `[http.tls]`: serve https (and `/subscribe` as wss) when set.
    pub tls: Option<HttpTls>,
    /// Connections held at once; at least `subscribe.max_clients` plus
    /// [`RESERVED_CONNECTIONS`]. More wait in the backlog.
    pub max_connections: usize,
    /// Connections the kernel queues before they are accepted.
    pub backlog: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9900)),
            token: None,
            allow_public: false,
            subscribe: SubscribeEndpointConfig::default(),
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// `[defaults]`: values a feed gets for the fields it leaves out.
///
/// `Debug` and `Serialize` (in `show.rs`) show the heartbeat message as written.
#[derive(Clone, PartialEq)]
pub struct FeedDefaults {
    /// Default [`FeedConfig::mode`]: stream mode (`mode = "stream"`) or message mode.
    pub stream: bool,
    /// Default [`FeedConfig::max_message_size`], in bytes.
    pub max_message_size: u64,
    /// Default chunk size of a feed in stream mode, in bytes (kept whatever
    /// the default mode, for feeds that choose stream mode themselves).
    pub chunk_size: u64,
    /// Default [`FeedConfig::handshake_timeout`].
    pub handshake_timeout: Duration,
    /// Default [`FeedConfig::reconnect`]; a feed's `reconnect` table overrides
    /// it field by field.
    pub reconnect: ReconnectPolicy,
    /// Default [`FeedConfig::heartbeat`]; a feed's `heartbeat` table overrides
    /// it field by field (`message`, `reply` and `reply_pointer` as one).
    pub heartbeat: Option<HeartbeatConfig>,
    /// Default [`FeedConfig::idle_timeout`].
    pub idle_timeout: Option<Duration>,
    /// Default [`FeedConfig::outbound_queue`]; overridden field by field.
    pub outbound_queue: OutboundQueueConfig,
    /// Default [`FeedConfig::required`].
    pub required: bool,
    /// Default [`FeedConfig::tls`] (`[defaults.tls]`); a feed's `tls` table
    /// overrides it field by field.
    pub tls: TlsOptions,
    /// Default [`FeedConfig::proxy`].
    pub proxy: ProxyOptions,
    /// The heartbeat message as written, when it uses `${VAR}`: for display,
    /// and for feeds that inherit it.
    pub unexpanded_heartbeat_message: Option<String>,
    /// Default [`FeedConfig::credentials`]; a feed's table overrides it field by field.
    pub credentials: Option<CredentialsConfig>,
    /// Default pacing of a feed's messages upstream, for feeds that set none
    /// and whose `[[hosts]]` entry sets none; `None`: not paced.
    pub outbound_rate: Option<OutboundRate>,
}

impl FeedDefaults {
    /// The default [`FeedConfig::mode`], with the default chunk size in stream mode.
    pub fn mode(&self) -> DeliveryMode {
        if self.stream {
            DeliveryMode::Stream {
                chunk_size: usize::try_from(self.chunk_size).unwrap_or(usize::MAX),
            }
        } else {
            DeliveryMode::Message
        }
    }
}

impl Default for FeedDefaults {
    fn default() -> Self {
        Self {
            stream: false,
            max_message_size: 1 << 20,
            chunk_size: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            heartbeat: Some(HeartbeatConfig::default()),
            idle_timeout: None,
            outbound_queue: OutboundQueueConfig::default(),
            required: true,
            tls: TlsOptions::default(),
            proxy: ProxyOptions::default(),
            unexpanded_heartbeat_message: None,
            credentials: None,
            outbound_rate: None,
        }
    }
}

/// One upstream connection, resolved: defaults applied, `${VAR}` expanded.
///
/// `Debug` and `Serialize` redact secrets (see the module docs), so both are
/// safe to log and to return from the status API.
#[derive(Clone, PartialEq)]
pub struct FeedConfig {
    /// Unique; used in metric labels and subscriber patterns.
    pub name: String,
    /// Upstream address; its scheme picks the transport (see [`TransportRegistry`]).
    pub url: Url,
    /// Whole messages (`mode = "message"`), or chunks of at most `chunk_size`
    /// bytes (`mode = "stream"`).
    pub mode: DeliveryMode,
    /// JSON pointer to each message's topic (`/symbol`); `None`: no topic.
    pub topic: Option<String>,
    /// Extra handshake headers; the values may be secrets.
    pub headers: Vec<(String, String)>,
    /// `Sec-WebSocket-Protocol` offers, in order of preference.
    pub subprotocols: Vec<String>,
    /// Text messages sent after every (re)connect, such as a subscription.
    pub on_open: Vec<String>,
    /// Largest message accepted in message mode, in bytes; larger closes with 1009.
    pub max_message_size: u64,
    /// How a byte-stream transport (`tcp://`, `tls://`) delimits messages in
    /// message mode (default lines); other transports have no use for it.
    pub framing: Framing,
    /// Whether the feed's transport uses `framing` in its mode (asked of the
    /// transport when the feed was checked): then `framing` is shown even at
    /// its default, as `feedvisor check` has always shown it.
    pub framing_used: bool,
    /// How long the opening handshake may take.
    pub handshake_timeout: Duration,
    /// TLS settings for secure schemes; `ca_file` resolved against the config
    /// file's directory.
    pub tls: TlsOptions,
    /// Directly, through a proxy, or as the environment says at connect time.
    pub proxy: ProxyOptions,
    /// When and how fast to reconnect after a failure.
    pub reconnect: ReconnectPolicy,
    /// Pings that detect a dead connection; `None`: off (`interval = "0s"`).
    pub heartbeat: Option<HeartbeatConfig>,
    /// Reconnect when nothing at all arrives for this long; `None`: off.
    pub idle_timeout: Option<Duration>,
    /// Messages to the upstream that wait while the feed is down.
    pub outbound_queue: OutboundQueueConfig,
    /// JSON pointer to each message's sequence number, for gap detection and
    /// the `{{last_seq}}` placeholder of `on_open`; `None`: not tracked.
    pub sequence: Option<String>,
    /// Whether `/readyz` waits for this feed to be open.
    pub required: bool,
    /// Where each message carries its own event time, for
    /// `feedvisor_upstream_latency_seconds`; `None`: not read.
    pub timestamp: Option<TimestampConfig>,
    /// An open feed without a data message for this long is `stale`; `None`: off.
    pub stale_after: Option<Duration>,
    /// WebSocket permessage-deflate as the feed set it (`None`: not set, so
    /// the transport's default, offering deflate).
    pub compression: Option<Compression>,
    /// How each binary message's payload is encoded, inflated before
    /// anything else looks at it; `None`: delivered as received.
    pub decode: Option<PayloadDecoding>,
    /// Subscribe messages generated from a topic list, sent after `on_open`
    /// on every connect, and the connections the topics are spread over;
    /// `None`: none.
    pub subscribe: Option<SubscribeConfig>,
    /// At most this many messages upstream per rolling window, as the feed
    /// set it; `None`: its `[[hosts]]` entry's, else `[defaults]`'s, else not paced.
    pub outbound_rate: Option<OutboundRate>,
    /// The fields that used `${VAR}`, as written: for display.
    pub unexpanded: Unexpanded,
    /// The credential provider run before every connect attempt; `None`: none.
    pub credentials: Option<CredentialsConfig>,
    /// Redundant legs (`urls`); `None`: one connection to `url`. With legs,
    /// `url` is the first leg's.
    pub redundancy: Option<Redundancy>,
    /// Replace the connection make-before-break this often; `None`: never.
    pub rotate_every: Option<Duration>,
}

/// The text of fields that used `${VAR}`, before expansion, so that `Debug`
/// and `Serialize` show `${STOCKS_TOKEN}` instead of the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unexpanded {
    /// The URL as written, if it uses `${VAR}` (or `$${`).
    pub url: Option<String>,
    /// All `on_open` messages as written, if any uses `${VAR}` (or `$${`); else empty.
    pub on_open: Vec<String>,
    /// The application heartbeat message as written, if it uses `${VAR}` (or `$${`).
    pub heartbeat_message: Option<String>,
}

impl FeedConfig {
    /// A feed with the built-in defaults, for code and tests that build feeds directly.
    pub fn new(name: impl Into<String>, url: Url) -> Self {
        let defaults = FeedDefaults::default();
        Self {
            name: name.into(),
            url,
            mode: defaults.mode(),
            topic: None,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            on_open: Vec::new(),
            max_message_size: defaults.max_message_size,
            framing: Framing::default(),
            framing_used: false,
            handshake_timeout: defaults.handshake_timeout,
            tls: defaults.tls,
            proxy: defaults.proxy,
            reconnect: defaults.reconnect,
            heartbeat: defaults.heartbeat,
            idle_timeout: defaults.idle_timeout,
            outbound_queue: defaults.outbound_queue,
            sequence: None,
            required: defaults.required,
            timestamp: None,
            stale_after: None,
            compression: None,
            decode: None,
            subscribe: None,
            outbound_rate: None,
            unexpanded: Unexpanded::default(),
            credentials: None,
            redundancy: None,
            rotate_every: None,
        }
    }

    /// The URL safe to show: as written if it used `${VAR}`, password masked.
    pub(crate) fn display_url(&self) -> String {
        match self.unexpanded.url.as_deref() {
            // As written: `${VAR}` placeholders show where secrets go, not the secrets.
            Some(written) if env::has_reference(written) => {
                mask_literal_query(&mask_password(written))
            }
            // Written with a `$${` escape only: as written (so it reads back),
            // and masked as a literal URL is.
            Some(written) => mask_query(&mask_password(written)),
            None => mask_query(&mask_password(self.url.as_str())),
        }
    }

    /// `text` (a transport's error) as it may be shown: a transport names the
    /// expanded URL (without credentials and query), whose path may hold a
    /// `${VAR}`'s value, so that URL is replaced by the one written.
    pub(crate) fn shown_error(&self, text: &str) -> String {
        let Some(written) = self.unexpanded.url.as_deref() else { return text.to_owned() };
        let mut expanded = self.url.clone();
        // Only cannot-be-a-base URLs refuse these, and they have no credentials to hide.
        let _ = expanded.set_username("");
        let _ = expanded.set_password(None);
        expanded.set_query(None);
        expanded.set_fragment(None);
        let shown = mask_password(written);
        let shown = shown.split(['?', '#']).next().unwrap_or_default();
        text.replace(expanded.as_str(), shown)
    }

    /// The `on_open` messages safe to show: as written if any used `${VAR}`.
    pub(crate) fn display_on_open(&self) -> &[String] {
        if self.unexpanded.on_open.len() == self.on_open.len() && !self.on_open.is_empty() {
            &self.unexpanded.on_open
        } else {
            &self.on_open
        }
    }

    /// The framing as a config file would write it: when the feed's transport
    /// uses it, or when it is not the default; else `None`.
    pub(crate) fn written_framing(&self) -> Option<Framing> {
        (self.framing_used || self.framing != Framing::default()).then_some(self.framing)
    }

    /// The heartbeat safe to show: an application message as written if it used `${VAR}`.
    pub(crate) fn display_heartbeat(&self) -> Option<HeartbeatConfig> {
        heartbeat::as_written(self.heartbeat.as_ref(), self.unexpanded.heartbeat_message.as_deref())
    }
}

/// Every problem found in one config file (or one feed definition).
///
/// Displays one line per error, such as
/// `config/bad.toml: feeds[1] (weather).url: unsupported scheme "htp": use ws://, wss://, tcp:// or tls://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given), or `feed` for a feed defined on its own.
    pub origin: String,
    /// At least one error, in the order found.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {error}", self.origin)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One problem, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `feeds[1] (weather).url`, `http.listen`; empty for the whole document.
    pub path: String,
    /// What is wrong, lower case; never contains a secret.
    pub message: String,
    /// Line and column in the file, when the parser knows them.
    pub location: Option<Location>,
}

impl FieldError {
    /// An error at `path` without a known location.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), location: None }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, self.path.is_empty()) {
            (Some(at), true) => {
                write!(f, "line {}, column {}: {}", at.line, at.column, self.message)
            }
            (Some(at), false) => {
                write!(
                    f,
                    "{}: {} (line {}, column {})",
                    self.path, self.message, at.line, at.column
                )
            }
            (None, true) => f.write_str(&self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A position in a file, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` in `text`.
    fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl Config {
    /// Reads and validates a config file; `${VAR}` comes from the process
    /// environment, relative paths are resolved against the file's directory.
    /// A feed's scheme must be served by one of `transports`, whose rules its
    /// settings must pass.
    pub fn load(path: &Path, transports: &TransportRegistry) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            origin: origin.clone(),
            errors: vec![FieldError::new("", format!("cannot read the file: {error}"))],
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = absolute.parent().unwrap_or(Path::new(""));
        let env = |name: &str| std::env::var(name).ok();
        parse_toml(&text, origin, base_dir, &env, transports)
    }

    /// Validates config text as if read from `origin` (which names it in
    /// errors and anchors relative paths); `${VAR}` from the process environment.
    pub fn from_toml_str(
        text: &str,
        origin: &Path,
        transports: &TransportRegistry,
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        Self::from_toml_str_with_env(text, origin, &env, transports)
    }

    /// Like [`Config::from_toml_str`], with `${VAR}` looked up in `env`.
    pub fn from_toml_str_with_env(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        transports: &TransportRegistry,
    ) -> Result<Config, ConfigError> {
        let base_dir = origin.parent().unwrap_or(Path::new(""));
        parse_toml(text, origin.display().to_string(), base_dir, env, transports)
    }

    /// Checks every feed against `transports` again: for a config resolved
    /// with another registry than the one it will run with. Problems are
    /// reported under `origin`, at each feed's path.
    pub(crate) fn check_transports(
        &self,
        origin: &str,
        transports: &TransportRegistry,
    ) -> Result<(), ConfigError> {
        let errors = validate::resolved_feeds(&self.feeds, transports);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { origin: origin.to_owned(), errors })
        }
    }
}

fn parse_toml(
    text: &str,
    origin: String,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    transports: &TransportRegistry,
) -> Result<Config, ConfigError> {
    let raw = raw::from_toml(text)
        .map_err(|error| ConfigError { origin: origin.clone(), errors: vec![error] })?;
    let context = scope::Context { base_dir, env, file_exists: &Path::is_file, transports };
    let mut config =
        validate::config(&raw, &context).map_err(|errors| ConfigError { origin, errors })?;
    if let Some(cluster) = &mut config.cluster {
        cluster.seed_feeds = cluster::seed_feeds(text);
    }
    Ok(config)
}

/// Validates one feed given as JSON in the config's `[[feeds]]` shape (the
/// body of `POST /feeds`), with the same checks as a file. Unset fields take
/// `defaults`; relative paths are resolved against `base_dir`; the scheme
/// must be served by one of `transports`.
///
/// `env` resolves `${VAR}`. A caller taking feeds from the network should
/// pass `&|_| None` unless it trusts the sender: a client could otherwise
/// send any variable's value to a server of its choosing. Checking that the
/// name is not already in use is the caller's job.
pub(crate) fn parse_feed_json(
    value: serde_json::Value,
    defaults: &FeedDefaults,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    transports: &TransportRegistry,
) -> Result<FeedConfig, ConfigError> {
    let origin = "feed".to_owned();
    let raw = raw::from_json(value)
        .map_err(|error| ConfigError { origin: origin.clone(), errors: vec![error] })?;
    let context = scope::Context { base_dir, env, file_exists: &Path::is_file, transports };
    let mut errors = Vec::new();
    match validate::feed(&raw, defaults, "", &context, &mut errors) {
        Some(feed) if errors.is_empty() => Ok(feed),
        _ => Err(ConfigError { origin, errors }),
    }
}
