//! `[[subscribers]]` (built-in sinks and what they receive) and
//! `[http.subscribe]` (the local WebSocket endpoint's limits).
//!
//! This file checks what every subscriber shares (name, feeds, topics,
//! queue) and dispatches on `sink = "..."`: each sink's settings are a
//! config type of the sink's own (`sink/file.rs`, `sink/exec.rs`,
//! `sink/webhook.rs`), which checks itself. Here the TOML's strings become
//! typed values first: `${VAR}`s expanded, durations and URLs parsed,
//! paths resolved against the config file's directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::checks::{check_name, closest};
use super::raw::{RawSubscribeEndpoint, RawSubscriber};
use super::validate::{Context, Scope};
use super::Secret;
use crate::sink::{ExecSinkConfig, FileSinkConfig, SinkConfigError, WebhookSinkConfig};

/// Messages a subscriber's queue holds by default.
pub const DEFAULT_QUEUE: usize = 1024;
/// The largest queue a subscriber may ask for.
const MAX_QUEUE: usize = 1 << 24;

/// What happens when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberOverflow {
    /// Drop the oldest queued message to make room (counted).
    #[default]
    DropOldest,
    /// Drop the message that does not fit (counted).
    DropNewest,
    /// Pause reading from the feeds that fill the queue until it drains. A
    /// feed shared with other subscribers then slows for all of them.
    Backpressure,
}

impl SubscriberOverflow {
    /// The name used in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
            Self::Backpressure => "backpressure",
        }
    }
}

/// The built-in sinks a config can name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON lines on standard output.
    #[default]
    Stdout,
    /// JSON lines appended to a file, or one file per message in a directory.
    File,
    /// JSON lines written to a child process's standard input.
    Exec,
    /// Each message (or a batch) POSTed to a URL.
    Webhook,
}

impl SinkKind {
    /// The name used in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::File => "file",
            Self::Exec => "exec",
            Self::Webhook => "webhook",
        }
    }
}

/// A sink with its settings, each sink's own config type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "sink", rename_all = "snake_case")]
pub enum SinkConfig {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to a file (`layout = "lines"`), or one file per
    /// message in a directory (`layout = "per_message"`).
    File(FileSinkConfig),
    /// JSON lines to a child's standard input; the child is restarted with backoff if it exits.
    Exec(ExecSinkConfig),
    /// POST to `url`: one JSON object per request, or a JSON array of up to `batch`.
    Webhook(WebhookSinkConfig),
}

impl SinkConfig {
    /// Which sink this is.
    pub fn kind(&self) -> SinkKind {
        match self {
            Self::Stdout => SinkKind::Stdout,
            Self::File(_) => SinkKind::File,
            Self::Exec(_) => SinkKind::Exec,
            Self::Webhook(_) => SinkKind::Webhook,
        }
    }

    /// The sink's own checks (pure).
    pub(crate) fn validate(&self) -> Vec<SinkConfigError> {
        match self {
            Self::Stdout => Vec::new(),
            Self::File(config) => config.validate(),
            Self::Exec(config) => config.validate(),
            Self::Webhook(config) => config.validate(),
        }
    }

    /// A one-line description of the sink, for `feedvisor check`.
    pub fn describe(&self) -> String {
        match self {
            Self::Stdout => "stdout".to_owned(),
            Self::File(config) => config.describe(),
            Self::Exec(config) => config.describe(),
            Self::Webhook(config) => config.describe(),
        }
    }
}

/// `[[subscribers]]`: a built-in sink and what it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberConfig {
    /// Unique; used in metric labels.
    pub name: String,
    /// Feed names or glob patterns (`*`, `?`); plain names are known feeds.
    pub feeds: Vec<String>,
    /// Topic glob patterns; `None` receives every message, with or without topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Messages its queue holds (default 1024).
    pub queue: usize,
    /// What happens when the queue is full (default drop_oldest).
    pub overflow: SubscriberOverflow,
    /// Where the messages go.
    #[serde(flatten)]
    pub sink: SinkConfig,
}

/// `[http.subscribe]`: limits of the local WebSocket endpoint `/subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeEndpointConfig {
    /// Clients connected at once (default 64); more are refused with 503.
    pub max_clients: usize,
    /// A client that takes nothing for this long while data waits for it is closed with 1008 (default 10s).
    #[serde(serialize_with = "super::show::serialize_duration")]
    pub slow_client_timeout: Duration,
    /// `Origin` values allowed (`"*"` for any). Requests without `Origin`
    /// (programs, not browsers) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Each client's queue, in messages (default 1024).
    pub queue: usize,
    /// Each client's overflow policy (default drop_oldest).
    pub overflow: SubscriberOverflow,
}

impl Default for SubscribeEndpointConfig {
    fn default() -> Self {
        SubscribeEndpointConfig {
            max_clients: 64,
            slow_client_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            queue: DEFAULT_QUEUE,
            overflow: SubscriberOverflow::DropOldest,
        }
    }
}

fn queue(scope: &mut Scope<'_>, raw: Option<usize>) -> usize {
    match raw {
        None => DEFAULT_QUEUE,
        Some(0) => scope.fail("queue", "must be at least 1").unwrap_or(DEFAULT_QUEUE),
        Some(size) if size > MAX_QUEUE => {
            scope.fail("queue", format!("must be at most {MAX_QUEUE}")).unwrap_or(DEFAULT_QUEUE)
        }
        Some(size) => size,
    }
}

/// Checks `[http.subscribe]`.
pub(super) fn endpoint(
    raw: &RawSubscribeEndpoint,
    scope: &mut Scope<'_>,
) -> SubscribeEndpointConfig {
    let defaults = SubscribeEndpointConfig::default();
    let max_clients = match raw.max_clients {
        Some(0) => scope.fail("max_clients", "must be at least 1").unwrap_or(defaults.max_clients),
        Some(clients) => clients,
        None => defaults.max_clients,
    };
    let slow_client_timeout = scope
        .duration(
            "slow_client_timeout",
            raw.slow_client_timeout.as_ref(),
            defaults.slow_client_timeout,
        )
        .unwrap_or(defaults.slow_client_timeout);
    let allowed_origins = raw.allowed_origins.clone().unwrap_or_default();
    for (index, origin) in allowed_origins.iter().enumerate() {
        let valid = origin == "*" || Url::parse(origin).is_ok_and(|url| url.has_host());
        if !valid {
            let message =
                format!("{origin:?} is not an origin: use scheme://host[:port], or \"*\"");
            scope.error(&format!("allowed_origins[{index}]"), message);
        }
    }
    SubscribeEndpointConfig {
        max_clients,
        slow_client_timeout,
        allowed_origins,
        queue: queue(scope, raw.queue),
        overflow: raw.overflow.unwrap_or_default(),
    }
}

/// Checks one `[[subscribers]]` entry.
pub(super) fn subscriber(
    raw: &RawSubscriber,
    feed_index: &HashMap<&str, usize>,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<SubscriberConfig> {
    let before = scope.errors.len();
    match raw.name.as_deref().map(check_name) {
        None => scope.error("name", "required"),
        Some(Err(message)) => scope.error("name", message),
        Some(Ok(())) => {}
    }
    match raw.feeds.as_deref() {
        None => scope.error("feeds", "required: feed names or patterns, such as [\"*\"]"),
        Some([]) => scope.error("feeds", "empty: list at least one feed name or pattern"),
        Some(patterns) => {
            for (index, pattern) in patterns.iter().enumerate() {
                check_feed_pattern(pattern, &format!("feeds[{index}]"), feed_index, scope);
            }
        }
    }
    if let Some(topics) = &raw.topics {
        if topics.is_empty() {
            scope.error(
                "topics",
                "empty list matches no topic: leave `topics` out to receive every topic",
            );
        }
        for (index, topic) in topics.iter().enumerate() {
            if topic.is_empty() {
                scope.error(&format!("topics[{index}]"), "must not be empty");
            }
        }
    }
    let queue = queue(scope, raw.queue);
    let sink = sink(raw, context, scope);
    if scope.errors.len() != before {
        return None;
    }
    Some(SubscriberConfig {
        name: raw.name.clone()?,
        feeds: raw.feeds.clone()?,
        topics: raw.topics.clone(),
        queue,
        overflow: raw.overflow.unwrap_or_default(),
        sink: sink?,
    })
}

fn check_feed_pattern(
    pattern: &str,
    field: &str,
    feed_index: &HashMap<&str, usize>,
    scope: &mut Scope<'_>,
) {
    let is_glob = pattern.contains(['*', '?']);
    if pattern.is_empty() {
        scope.error(field, "must not be empty");
    } else if is_glob && check_name(&pattern.replace(['*', '?'], "_")).is_err() {
        let message = format!(
            "pattern {pattern:?} can never match: \
             feed names use only letters, digits, '_', '.' and '-'"
        );
        scope.error(field, message);
    } else if !is_glob && !feed_index.contains_key(pattern) {
        let mut message = format!("no feed named {pattern:?}");
        if let Some(close) = closest(pattern, feed_index.keys().copied()) {
            message.push_str(&format!(" (did you mean {close:?}?)"));
        }
        scope.error(field, message);
    }
}

/// The sink's own settings, checked by the sink's config type; fields of
/// other sinks are errors.
fn sink(raw: &RawSubscriber, context: &Context<'_>, scope: &mut Scope<'_>) -> Option<SinkConfig> {
    let kind = raw.sink.unwrap_or_default();
    let present: [(&str, bool, &[SinkKind]); 8] = [
        ("path", raw.path.is_some(), &[SinkKind::File]),
        ("layout", raw.layout.is_some(), &[SinkKind::File]),
        ("command", raw.command.is_some(), &[SinkKind::Exec]),
        ("url", raw.url.is_some(), &[SinkKind::Webhook]),
        ("batch", raw.batch.is_some(), &[SinkKind::Webhook]),
        ("max_in_flight", raw.max_in_flight.is_some(), &[SinkKind::Webhook]),
        ("timeout", raw.timeout.is_some(), &[SinkKind::Webhook]),
        ("headers", raw.headers.is_some(), &[SinkKind::Webhook]),
    ];
    for (field, set, kinds) in present {
        if set && !kinds.contains(&kind) {
            let owner = kinds.iter().map(|kind| kind.as_str()).collect::<Vec<_>>().join(", ");
            scope.error(
                field,
                format!("only used by sink = \"{owner}\", not \"{}\"", kind.as_str()),
            );
        }
    }
    let config = match kind {
        SinkKind::Stdout => SinkConfig::Stdout,
        SinkKind::File => SinkConfig::File(FileSinkConfig {
            path: PathBuf::from(raw.path.as_deref().unwrap_or_default()),
            layout: raw.layout.unwrap_or_default(),
        }),
        SinkKind::Exec => {
            SinkConfig::Exec(ExecSinkConfig { command: raw.command.clone().unwrap_or_default() })
        }
        SinkKind::Webhook => SinkConfig::Webhook(webhook(raw, context, scope)?),
    };
    let errors = config.validate();
    for error in &errors {
        scope.error(&error.field, error.message.clone());
    }
    if !errors.is_empty() {
        return None;
    }
    Some(match config {
        SinkConfig::File(file) => SinkConfig::File(file.resolved_against(context.base_dir)),
        other => other,
    })
}

/// The webhook's settings as typed values: the URL and header values with
/// their `${VAR}`s expanded, the timeout parsed.
fn webhook(
    raw: &RawSubscriber,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<WebhookSinkConfig> {
    let url = match raw.url.as_deref() {
        None => scope.fail("url", "required for sink = \"webhook\": where to POST"),
        Some(text) => {
            let expanded = scope.expand("url", text, context.env)?;
            match Url::parse(&expanded) {
                Ok(url) => Some(url),
                Err(error) => scope.fail("url", format!("invalid URL: {error}")),
            }
        }
    };
    let timeout =
        scope.duration("timeout", raw.timeout.as_ref(), WebhookSinkConfig::DEFAULT_TIMEOUT);
    let mut headers = Vec::new();
    for (name, template) in raw.headers.iter().flatten() {
        let field = format!("headers.{name}");
        if let Some(value) = scope.expand(&field, template, context.env) {
            headers.push((name.clone(), Secret::new(value)));
        }
    }
    Some(WebhookSinkConfig {
        batch: raw.batch.unwrap_or(WebhookSinkConfig::DEFAULT_BATCH),
        max_in_flight: raw.max_in_flight.unwrap_or(WebhookSinkConfig::DEFAULT_MAX_IN_FLIGHT),
        timeout: timeout?,
        headers,
        ..WebhookSinkConfig::new(url?)
    })
}

/// Shown in `feedvisor check`.
impl SubscriberConfig {
    /// A one-line description of the sink and its limits.
    pub fn describe(&self) -> String {
        let sink = self.sink.describe();
        format!("{sink}, queue {} ({})", self.queue, self.overflow.as_str())
    }
}
