//! A feed's generated subscriptions: `subscribe = { template, topics,
//! per_message, ack, stale_after, replay_rejected }` and
//! `max_topics_per_connection`, checked purely.
//!
//! The template is sent once per batch of `per_message` topics after
//! `on_open`, on every connect, with `{{topics}}` replaced by the batch as a
//! JSON array of strings and `{{id}}` by a number unique on the connection.
//! `ack` says how a reply is matched to its subscribe message (by that id)
//! and whether it acknowledges or rejects it; `max_topics_per_connection`
//! spreads the topics over as many connections as it takes.

use std::collections::HashSet;
use std::time::Duration;

use super::checks::check_pointer;
use super::raw::{RawFeed, RawSubscribe, RawSubscribeAck};
use super::scope::Scope;
use super::session::optional_duration;

/// The placeholder for a batch of topics, as a JSON array of strings.
pub(crate) const TOPICS_PLACEHOLDER: &str = "{{topics}}";
/// The placeholder for a subscribe message's id, a number unique on its connection.
pub(crate) const ID_PLACEHOLDER: &str = "{{id}}";
/// The longest topic accepted, in bytes.
pub(super) const MAX_TOPIC_LENGTH: usize = 512;
/// The most topics one feed may list.
pub(super) const MAX_TOPICS: usize = 100_000;
/// The most connections one feed may be spread over.
pub(super) const MAX_SHARDS: usize = 256;
/// How long a subscribe message waits for its reply unless `ack.timeout` says otherwise.
pub(super) const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Subscribe messages generated from a topic list (`subscribe = { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeConfig {
    /// The message text: `{{topics}}` is replaced by a batch of topics as a
    /// JSON array of strings, `{{id}}` by the message's id.
    pub template: String,
    /// The topics, in the order they are sent (each once).
    pub topics: Vec<String>,
    /// Topics per subscribe message (at least 1; the last one may hold fewer).
    pub per_message: usize,
    /// How replies acknowledge or reject subscribe messages; `None`: a topic
    /// counts as `active` once its subscribe message is handed to the connection.
    pub ack: Option<AckConfig>,
    /// A subscribed topic without a message (by the feed's `topic` pointer)
    /// for this long is reported stale; `None`: not watched.
    pub stale_after: Option<Duration>,
    /// Whether topics the server rejected are sent again after a reconnect.
    pub replay_rejected: bool,
    /// The feed's `max_topics_per_connection`: the topics are spread over
    /// connections of at most this many each; `None`: one connection.
    pub max_topics_per_connection: Option<usize>,
    /// Set on the copy of the feed each shard's connection runs with: its
    /// index, and `topics` holds its topics only. `None` as configured.
    pub shard: Option<usize>,
}

/// `subscribe.ack`: how a reply is matched to its subscribe message, and
/// what it says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckConfig {
    /// JSON pointer to the id a reply echoes; a message whose value there is
    /// the id of a subscribe message waiting for its reply is that reply.
    pub id: String,
    /// JSON pointer whose presence in a reply means "rejected".
    pub error: Option<String>,
    /// JSON pointer that must hold a value (`success_value`, when set) in an
    /// acknowledging reply; a reply without it is a rejection.
    pub success: Option<String>,
    /// The value `success` must hold: a string, or a number's or boolean's
    /// JSON text (`"0"`, `"true"`).
    pub success_value: Option<String>,
    /// JSON pointer to the server's reason for a rejection (default: the
    /// value at `error`).
    pub reason: Option<String>,
    /// How long a subscribe message waits for its reply before its topics are `timed_out`.
    pub timeout: Duration,
}

impl SubscribeConfig {
    /// How many connections the topics are spread over (1 without `max_topics_per_connection`).
    pub fn shard_count(&self) -> usize {
        match self.max_topics_per_connection {
            Some(max) if max > 0 => self.topics.len().div_ceil(max).max(1),
            _ => 1,
        }
    }

    /// The copy of `self` shard `index` runs with: its topics only, and its index.
    pub(crate) fn for_shard(&self, index: usize) -> SubscribeConfig {
        SubscribeConfig {
            topics: self.shard_topics(index).to_vec(),
            shard: Some(index),
            max_topics_per_connection: None,
            ..self.clone()
        }
    }

    /// The topics of shard `index` of [`Self::shard_count`]: contiguous runs
    /// whose sizes differ by at most one (1000 topics at most 300 a
    /// connection: four of 250).
    pub fn shard_topics(&self, index: usize) -> &[String] {
        let count = self.shard_count();
        let (base, extra) = (self.topics.len() / count, self.topics.len() % count);
        let start = index * base + index.min(extra);
        let len = base + usize::from(index < extra);
        self.topics.get(start..start + len).unwrap_or_default()
    }
}

/// The feed's `subscribe` and `max_topics_per_connection`; `None` inside when
/// absent, `None` outside after an error.
pub(super) fn subscribe(
    raw: &RawFeed,
    stream: bool,
    scope: &mut Scope<'_>,
) -> Option<Option<SubscribeConfig>> {
    let Some(subscribe) = raw.subscribe.as_ref() else {
        if raw.max_topics_per_connection.is_some() {
            return scope.fail(
                "max_topics_per_connection",
                "needs subscribe.topics: the topic list to spread over connections",
            );
        }
        return Some(None);
    };
    let before = scope.errors.len();
    if stream {
        scope.error(
            "subscribe",
            "only in mode = \"message\": replies and topics are read from whole messages",
        );
    }
    let ack = ack(subscribe.ack.as_ref(), scope);
    let template = template(subscribe, subscribe.ack.is_some(), scope);
    topics(&subscribe.topics, scope);
    let per_message = match subscribe.per_message {
        None => 1,
        Some(0) => scope.fail("subscribe.per_message", "must be at least 1")?,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let stale_after =
        optional_duration("subscribe.stale_after", subscribe.stale_after.as_ref(), None, scope);
    if subscribe.stale_after.is_some() && raw.topic.is_none() {
        scope.error(
            "subscribe.stale_after",
            "needs `topic`: the JSON pointer to each message's topic, which says which subscription it belongs to",
        );
    }
    let max_topics_per_connection = match raw.max_topics_per_connection {
        None => None,
        Some(0) => scope.fail("max_topics_per_connection", "must be at least 1")?,
        Some(max) => {
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            let shards = subscribe.topics.len().div_ceil(max);
            if raw.sequence.is_some() {
                scope.error(
                    "max_topics_per_connection",
                    "cannot be used with `sequence`: each connection numbers its own messages",
                );
            }
            if subscribe.topics.is_empty() {
                scope.error(
                    "max_topics_per_connection",
                    "needs subscribe.topics: the topic list to spread over connections",
                );
            } else if shards > MAX_SHARDS {
                scope.error(
                    "max_topics_per_connection",
                    format!(
                        "{} topics at most {max} a connection take {shards} connections: \
                         at most {MAX_SHARDS} per feed (raise it, or split the feed)",
                        subscribe.topics.len()
                    ),
                );
            }
            Some(max)
        }
    };
    if scope.errors.len() != before {
        return None;
    }
    Some(Some(SubscribeConfig {
        template: template?,
        topics: subscribe.topics.clone(),
        per_message,
        ack: ack?,
        stale_after: stale_after?,
        replay_rejected: subscribe.replay_rejected.unwrap_or(false),
        max_topics_per_connection,
        shard: None,
    }))
}

/// The template: required, with `{{topics}}`, and `{{id}}` when replies are matched.
fn template(raw: &RawSubscribe, acked: bool, scope: &mut Scope<'_>) -> Option<String> {
    let Some(template) = raw.template.as_deref() else {
        return scope.fail(
            "subscribe.template",
            format!("required: the subscribe message, with {TOPICS_PLACEHOLDER} where a batch of topics goes, such as '{{\"op\":\"subscribe\",\"args\":{TOPICS_PLACEHOLDER}}}'"),
        );
    };
    if !template.contains(TOPICS_PLACEHOLDER) {
        return scope.fail(
            "subscribe.template",
            format!("has no {TOPICS_PLACEHOLDER}: write it where the batch of topics goes (a JSON array of strings)"),
        );
    }
    if template.contains("${") {
        return scope.fail(
            "subscribe.template",
            "`${VAR}` is not expanded here, and the template is shown by `check`: \
             put credentials in a header or an on_open message",
        );
    }
    if acked && !template.contains(ID_PLACEHOLDER) {
        return scope.fail(
            "subscribe.template",
            format!("has no {ID_PLACEHOLDER}, which subscribe.ack needs to match replies: write it where the server expects the request id"),
        );
    }
    Some(template.to_owned())
}

/// The topic list: at least one, none empty, too long or repeated.
fn topics(topics: &[String], scope: &mut Scope<'_>) {
    if topics.is_empty() {
        scope.error("subscribe.topics", "must list at least one topic");
    }
    if topics.len() > MAX_TOPICS {
        scope.error(
            "subscribe.topics",
            format!("lists {} topics: at most {MAX_TOPICS} per feed", topics.len()),
        );
    }
    let mut seen = HashSet::with_capacity(topics.len());
    for (index, topic) in topics.iter().enumerate() {
        let field = format!("subscribe.topics[{index}]");
        if topic.is_empty() {
            scope.error(&field, "must not be empty");
        } else if topic.len() > MAX_TOPIC_LENGTH {
            scope.error(
                &field,
                format!("is {} bytes long: at most {MAX_TOPIC_LENGTH}", topic.len()),
            );
        } else if !seen.insert(topic.as_str()) {
            scope.error(&field, format!("{topic:?} is listed twice"));
        }
    }
}

/// `subscribe.ack`; `None` inside when absent.
fn ack(raw: Option<&RawSubscribeAck>, scope: &mut Scope<'_>) -> Option<Option<AckConfig>> {
    let Some(raw) = raw else { return Some(None) };
    let before = scope.errors.len();
    let id = match raw.id.as_deref() {
        None => scope.fail(
            "subscribe.ack.id",
            "required: the JSON pointer to the id a reply echoes, such as \"/id\"",
        ),
        Some(pointer) => Some(pointer.to_owned()),
    };
    let pointers = [
        ("subscribe.ack.id", raw.id.as_deref()),
        ("subscribe.ack.error", raw.error.as_deref()),
        ("subscribe.ack.success", raw.success.as_deref()),
        ("subscribe.ack.reason", raw.reason.as_deref()),
    ];
    for (field, pointer) in pointers {
        if let Some(Err(message)) = pointer.map(check_pointer) {
            scope.error(field, message);
        }
    }
    if raw.success_value.is_some() && raw.success.is_none() {
        scope.error(
            "subscribe.ack.success_value",
            "needs subscribe.ack.success: the JSON pointer at which a reply holds it",
        );
    }
    let timeout =
        scope.duration("subscribe.ack.timeout", raw.timeout.as_ref(), DEFAULT_ACK_TIMEOUT);
    if scope.errors.len() != before {
        return None;
    }
    Some(Some(AckConfig {
        id: id?,
        error: raw.error.clone(),
        success: raw.success.clone(),
        success_value: raw.success_value.clone(),
        reason: raw.reason.clone(),
        timeout: timeout?,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{parse_feed_json, Config, ConfigError, FeedDefaults};
    use crate::transports::TransportRegistry;

    const FEED: &str = "[[feeds]]\nname = \"a\"\nurl = \"ws://127.0.0.1:1/\"\ntopic = \"/t\"\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        let transports = TransportRegistry::with_defaults();
        Config::from_toml_str(&format!("{FEED}{extra}"), Path::new("t.toml"), &transports)
    }

    fn errors_of(extra: &str) -> Vec<(String, String)> {
        let error = parse(extra).expect_err("invalid");
        error.errors.into_iter().map(|error| (error.path, error.message)).collect()
    }

    #[test]
    fn a_thousand_topics_at_most_300_a_connection_make_four_shards_of_250() {
        let topics: Vec<String> = (0..1000).map(|n| format!("\"T{n}\"")).collect();
        let extra = format!(
            "max_topics_per_connection = 300\nsubscribe = {{ template = '{{{{topics}}}}', topics = [{}] }}\n",
            topics.join(",")
        );
        let config = parse(&extra).expect("valid");
        let subscribe = config.feeds[0].subscribe.as_ref().expect("subscribe");
        assert_eq!(subscribe.shard_count(), 4);
        let mut all = Vec::new();
        for index in 0..4 {
            let shard = subscribe.for_shard(index);
            assert_eq!((shard.topics.len(), shard.shard), (250, Some(index)));
            all.extend(shard.topics);
        }
        assert_eq!(all, subscribe.topics, "every topic in one shard, in order");
    }

    #[test]
    fn uneven_lists_split_into_runs_that_differ_by_one_at_most() {
        let config = super::SubscribeConfig {
            template: "{{topics}}".into(),
            topics: (0..10).map(|n| n.to_string()).collect(),
            per_message: 1,
            ack: None,
            stale_after: None,
            replay_rejected: false,
            max_topics_per_connection: Some(3),
            shard: None,
        };
        let sizes: Vec<usize> =
            (0..config.shard_count()).map(|i| config.shard_topics(i).len()).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        let unsharded = super::SubscribeConfig { max_topics_per_connection: None, ..config };
        assert_eq!((unsharded.shard_count(), unsharded.shard_topics(0).len()), (1, 10));
    }

    #[test]
    fn bad_subscriptions_are_refused_with_their_paths() {
        let cases = [
            ("subscribe = { template = 'x', topics = ['A'] }", "feeds[0] (a).subscribe.template", "has no {{topics}}"),
            ("subscribe = { topics = ['A'] }", "feeds[0] (a).subscribe.template", "required"),
            ("subscribe = { template = '{\"key\":\"${KEY}\",\"args\":{{topics}}}', topics = ['A'] }", "feeds[0] (a).subscribe.template", "not expanded"),
            ("subscribe = { template = '{{topics}}', topics = ['A'], per_message = 0 }", "feeds[0] (a).subscribe.per_message", "at least 1"),
            ("max_topics_per_connection = 300", "feeds[0] (a).max_topics_per_connection", "needs subscribe.topics"),
            ("max_topics_per_connection = 0\nsubscribe = { template = '{{topics}}', topics = ['A'] }", "feeds[0] (a).max_topics_per_connection", "at least 1"),
            ("max_topics_per_connection = 1\nsubscribe = { template = '{{topics}}', topics = [] }", "feeds[0] (a).subscribe.topics", "at least one topic"),
            ("subscribe = { template = '{{topics}}', topics = ['A', 'A'] }", "feeds[0] (a).subscribe.topics[1]", "listed twice"),
            ("subscribe = { template = '{{topics}}', topics = [''] }", "feeds[0] (a).subscribe.topics[0]", "must not be empty"),
            ("subscribe = { template = '{{topics}}', topics = ['A'], ack = { id = '/id' } }", "feeds[0] (a).subscribe.template", "has no {{id}}"),
            ("subscribe = { template = '{{topics}}{{id}}', topics = ['A'], ack = { error = 'e' } }", "feeds[0] (a).subscribe.ack.id", "required"),
            ("subscribe = { template = '{{topics}}{{id}}', topics = ['A'], ack = { id = '/id', error = 'e' } }", "feeds[0] (a).subscribe.ack.error", "not a JSON pointer"),
            ("subscribe = { template = '{{topics}}{{id}}', topics = ['A'], ack = { id = '/id', success_value = 'ok' } }", "feeds[0] (a).subscribe.ack.success_value", "needs subscribe.ack.success"),
            ("subscribe = { template = '{{topics}}{{id}}', topics = ['A'], ack = { id = '/id', timeout = '0s' } }", "feeds[0] (a).subscribe.ack.timeout", "greater than 0"),
            ("sequence = '/seq'\nmax_topics_per_connection = 1\nsubscribe = { template = '{{topics}}', topics = ['A', 'B'] }", "feeds[0] (a).max_topics_per_connection", "sequence"),
            ("mode = 'stream'\nsubscribe = { template = '{{topics}}', topics = ['A'] }", "feeds[0] (a).subscribe", "message"),
        ];
        for (extra, path, words) in cases {
            let errors = errors_of(extra);
            assert!(
                errors.iter().any(|(at, message)| at == path && message.contains(words)),
                "{extra}: {errors:?}"
            );
        }
        let many: String = (0..=256).map(|n| format!("'T{n}',")).collect();
        let extra = format!("max_topics_per_connection = 1\nsubscribe = {{ template = '{{{{topics}}}}', topics = [{many}] }}");
        let errors = errors_of(&extra);
        assert!(errors.iter().any(|(_, message)| message.contains("at most 256")), "{errors:?}");
    }

    #[test]
    fn stale_after_needs_the_feeds_topic_pointer() {
        let transports = TransportRegistry::with_defaults();
        let text = "[[feeds]]\nname = \"a\"\nurl = \"ws://127.0.0.1:1/\"\n\
                    subscribe = { template = '{{topics}}', topics = ['A'], stale_after = '5s' }\n";
        let error =
            Config::from_toml_str(text, Path::new("t.toml"), &transports).expect_err("no topic");
        assert_eq!(error.errors[0].path, "feeds[0] (a).subscribe.stale_after", "{error}");
        assert!(error.errors[0].message.contains("needs `topic`"), "{error}");
    }

    #[test]
    fn a_shown_feed_reads_back_as_the_same_feed() {
        let extra = "max_topics_per_connection = 2\nsubscribe = { template = '{\"op\":\"sub\",\"id\":{{id}},\"args\":{{topics}}}', \
                     topics = ['A', 'B', 'C'], per_message = 2, replay_rejected = true, stale_after = '30s', \
                     ack = { id = '/id', error = '/error', success = '/ok', success_value = 'true', reason = '/msg', timeout = '3s' } }\n";
        let config = parse(extra).expect("valid");
        let feed = &config.feeds[0];
        let shown = serde_json::to_value(feed).expect("serializable");
        assert_eq!(shown["max_topics_per_connection"], 2);
        assert_eq!(shown["subscribe"]["ack"]["timeout"], "3s");
        let transports = TransportRegistry::with_defaults();
        let back = parse_feed_json(
            shown,
            &FeedDefaults::default(),
            Path::new("."),
            &|_| None,
            &transports,
        )
        .expect("reads back");
        assert_eq!(back.subscribe, feed.subscribe);
    }
}
