//! `[[subscribers]]` (built-in sinks and what they receive) and
//! `[http.subscribe]` (the local WebSocket endpoint's limits).
//!
//! This file checks what every subscriber shares (name, feeds, topics,
//! queue, overflow) and hands the rest of the entry to the sink named by
//! `sink = "..."` (`SinkKind::config`, from the list in `sink/mod.rs`),
//! which reads it into its own settings type, turns it into its config
//! type and checks it. It lends the sink the config's `${VAR}` expansion
//! and duration syntax, and its error paths ([`SinkSettings`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use super::checks::{check_name, closest};
use super::raw::{RawDuration, RawSubscribeEndpoint, RawSubscriber};
use super::scope::{Context, Scope};
use crate::inbox::{SubscriberOverflow, DEFAULT_QUEUE};
use crate::sink::{SettingsContext, SinkConfig, SubscribeEndpointConfig};

/// The largest queue a subscriber may ask for.
const MAX_QUEUE: usize = 1 << 24;

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
        overflow: raw.overflow.clone().unwrap_or_default(),
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
        overflow: raw.overflow.clone().unwrap_or_default(),
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

/// The sink's own settings: the rest of the subscriber's table, handed to
/// the sink named by `sink = "..."`, which reads, types and checks them.
fn sink(raw: &RawSubscriber, context: &Context<'_>, scope: &mut Scope<'_>) -> Option<SinkConfig> {
    let kind = raw.sink.unwrap_or_default();
    let mut settings = SinkSettings { scope, env: context.env };
    kind.config(raw.settings.clone(), context.base_dir, &mut settings)
}

/// What a sink's settings are resolved with: the config's `${VAR}`s and
/// durations, errors under the subscriber's path.
struct SinkSettings<'s, 'a> {
    /// The subscriber's errors.
    scope: &'s mut Scope<'a>,
    /// Looks up `${VAR}` references.
    env: &'s dyn Fn(&str) -> Option<String>,
}

impl SettingsContext for SinkSettings<'_, '_> {
    fn error(&mut self, field: &str, message: String) {
        self.scope.error(field, message);
    }

    fn expand(&mut self, field: &str, text: &str) -> Option<String> {
        self.scope.expand(field, text, self.env)
    }

    fn duration(&mut self, field: &str, text: Option<&str>, default: Duration) -> Option<Duration> {
        let raw = text.map(|text| RawDuration(text.to_owned()));
        self.scope.duration(field, raw.as_ref(), default)
    }

    fn unknown_field(&mut self, field: &str, sink_fields: &[&str]) {
        let known = || RawSubscriber::SHARED_FIELDS.iter().chain(sink_fields).copied();
        let expected: Vec<String> = known().map(|name| format!("`{name}`")).collect();
        let mut message =
            format!("unknown field `{field}`, expected one of {}", expected.join(", "));
        if let Some(close) = closest(field, known()) {
            message.push_str(&format!(" (did you mean {close:?}?)"));
        }
        self.scope.error(field, message);
    }
}

/// Shown in `feedvisor check`.
impl SubscriberConfig {
    /// A one-line description of the sink and its limits.
    pub fn describe(&self) -> String {
        let sink = self.sink.describe();
        format!("{sink}, queue {} ({})", self.queue, self.overflow.as_str())
    }
}
