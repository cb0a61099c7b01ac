//! The nats sink (`sink = "nats"`): each message published to NATS.
//!
//! A message goes to `<subject_prefix>.<feed>.<topic>`, feed and topic made
//! subject-safe (every character other than letters, digits, `-` and `_`
//! becomes `_`; a message without a topic goes to `_`), with the payload as
//! received and these headers: `Feedvisor-Feed`, `Feedvisor-Topic` (when
//! there is one), `Feedvisor-Kind` (text, binary), `Feedvisor-Received-At`
//! (RFC 3339), `Feedvisor-Epoch` (in a cluster: the revision of the lease
//! under which this replica owns the feed, growing with each new owner),
//! `Feedvisor-Sequence` (on a sequenced feed) and, in stream mode,
//! `Feedvisor-Chunk` (`message/offset/last`). A discontinuity event goes to
//! `<subject_prefix>.<feed>._` with `Feedvisor-Event: discontinuity` and the
//! event as its JSON payload.
//!
//! It uses the `[cluster]` connection unless it lists servers of its own
//! (`nats = [...]`). With `jetstream = true` it publishes through JetStream
//! and waits for each acknowledgement; a message of a sequenced feed carries
//! `Nats-Msg-Id: <feed>:<sequence>`, so that the stream drops what a new
//! owner sends again after a failover (within the stream's duplicate
//! window). The stream is made if none exists under the name
//! `<SUBJECT_PREFIX>` with subjects `<subject_prefix>.>`; a stream of the
//! operator's own covering those subjects works as well.
//!
//! Like the webhook sink, it holds each [`Deliver`] until its messages are
//! published, so a slow or absent NATS fills the subscriber's bounded inbox,
//! where its overflow policy applies. A failed publish is counted in
//! `feedvisor_sink_errors_total` (`publish`, or `ack` for JetStream) and,
//! for JetStream, tried again up to [`PUBLISH_TRIES`] times (safe with
//! `Nats-Msg-Id`); then the message is dropped and counted in
//! `feedvisor_sink_messages_dropped_total`.

use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream;
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize, Serializer};

use super::watch::SinkWatch;
use super::{SettingsContext, Sink, SinkConfigError};
use crate::inbox::delivery::{Deliver, FeedMessage};
use crate::metrics::SinkMetrics;
use crate::nats::ClusterLink;
use crate::secret::Secret;

/// The `sink` label of the nats sink's metrics.
const SINK: &str = NatsSinkConfig::NAME;
/// Failure kinds (metric labels): publishing failed.
const PUBLISH: &str = "publish";
/// A JetStream publish was not acknowledged.
const ACK: &str = "ack";
/// How often a JetStream publish is tried before its message is dropped.
const PUBLISH_TRIES: u32 = 5;
/// The wait between two tries, and between looks for the cluster's connection.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// `sink = "nats"`: where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatsSinkConfig {
    /// NATS servers of its own; empty: the `[cluster]` connection. Shown without credentials.
    #[serde(serialize_with = "serialize_urls")]
    pub nats: Vec<Secret>,
    /// The first token(s) of every subject (default `feedvisor`).
    pub subject_prefix: String,
    /// Publish through JetStream, with acknowledgements and `Nats-Msg-Id`.
    pub jetstream: bool,
}

impl NatsSinkConfig {
    /// The default `subject_prefix`.
    pub const DEFAULT_SUBJECT_PREFIX: &'static str = "feedvisor";
}

/// `sink = "nats"`'s settings as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NatsSettings {
    /// Servers of its own; `${VAR}` expanded.
    nats: Option<Vec<String>>,
    /// The subjects' prefix.
    subject_prefix: Option<String>,
    /// JetStream publishing.
    jetstream: Option<bool>,
}

impl Sink for NatsSinkConfig {
    const NAME: &'static str = "nats";
    type Settings = NatsSettings;

    fn from_settings(settings: NatsSettings, context: &mut dyn SettingsContext) -> Option<Self> {
        let mut nats = Vec::new();
        for (index, template) in settings.nats.into_iter().flatten().enumerate() {
            nats.push(Secret::new(context.expand(&format!("nats[{index}]"), &template)?));
        }
        Some(NatsSinkConfig {
            nats,
            subject_prefix: settings
                .subject_prefix
                .unwrap_or_else(|| Self::DEFAULT_SUBJECT_PREFIX.to_owned()),
            jetstream: settings.jetstream.unwrap_or(false),
        })
    }

    fn validate(&self) -> Vec<SinkConfigError> {
        let mut errors = Vec::new();
        for (index, url) in self.nats.iter().enumerate() {
            let field = format!("nats[{index}]");
            if let Err(problem) = crate::nats::check_url(url.expose()) {
                errors.push(SinkConfigError::new(field, problem));
            }
        }
        let tokens_ok = self.subject_prefix.split('.').all(|token| {
            !token.is_empty()
                && token.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '*' | '>'))
        });
        if !tokens_ok {
            errors.push(SinkConfigError::new(
                "subject_prefix",
                format!(
                    "{:?} is not a subject prefix: dot-separated tokens without spaces, '*' or '>'",
                    self.subject_prefix
                ),
            ));
        }
        errors
    }

    fn describe(&self) -> String {
        let via = if self.nats.is_empty() { "the cluster's connection" } else { "its own servers" };
        let mode = if self.jetstream { "JetStream" } else { "core NATS" };
        format!("nats: {}.<feed>.<topic> through {via} ({mode})", self.subject_prefix)
    }

    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
        NatsSink::new(name, self.clone(), watch).start().recipient()
    }

    fn uses_cluster_connection(&self) -> bool {
        self.nats.is_empty()
    }
}

fn serialize_urls<S: Serializer>(urls: &[Secret], serializer: S) -> Result<S::Ok, S::Error> {
    let shown: Vec<String> = urls.iter().map(|url| crate::nats::shown_url(url.expose())).collect();
    shown.serialize(serializer)
}

/// `text` as one subject token: other characters than letters, digits, `-`
/// and `_` become `_`; empty becomes `_`.
pub(crate) fn subject_token(text: &str) -> String {
    if text.is_empty() {
        return "_".to_owned();
    }
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' })
        .collect()
}

/// The JetStream stream name for `subject_prefix`.
fn stream_name(subject_prefix: &str) -> String {
    subject_prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_uppercase() } else { '_' })
        .collect()
}

/// One message ready to publish.
struct Outgoing {
    subject: String,
    headers: HeaderMap,
    payload: bytes::Bytes,
}

fn outgoing(prefix: &str, message: &FeedMessage, link: &ClusterLink) -> Outgoing {
    let topic = message.topic.as_deref().unwrap_or("");
    let subject = format!("{prefix}.{}.{}", subject_token(&message.feed), subject_token(topic));
    let mut headers = HeaderMap::new();
    headers.insert("Feedvisor-Feed", &*message.feed);
    if let Some(topic) = message.topic.as_deref() {
        headers.insert("Feedvisor-Topic", topic);
    }
    headers.insert("Feedvisor-Kind", message.kind.as_str());
    let received_at = humantime::format_rfc3339_micros(message.received_at).to_string();
    headers.insert("Feedvisor-Received-At", received_at.as_str());
    if let Some(epoch) = link.epoch(&message.feed) {
        headers.insert("Feedvisor-Epoch", epoch.to_string().as_str());
    }
    if let Some(sequence) = message.sequence {
        headers.insert("Feedvisor-Sequence", sequence.to_string().as_str());
        let id = format!("{}:{sequence}", message.feed);
        headers.insert("Nats-Msg-Id", id.as_str());
    }
    if message.discontinuity.is_some() {
        // The payload is the event as JSON; the subject's topic token is `_`.
        headers.insert("Feedvisor-Event", "discontinuity");
    }
    if let Some(chunk) = message.chunk {
        let chunk = format!("{}/{}/{}", chunk.message, chunk.offset, chunk.last);
        headers.insert("Feedvisor-Chunk", chunk.as_str());
    }
    Outgoing { subject, headers, payload: message.payload.clone() }
}

/// The nats sink's actor.
struct NatsSink {
    name: String,
    config: NatsSinkConfig,
    metrics: std::rc::Rc<SinkMetrics>,
    duplicates: ::metrics::Counter,
    /// Its own connection, when it lists servers.
    own: Option<async_nats::Client>,
    /// Whether the JetStream stream was found or made.
    stream_ready: bool,
    _watch: SinkWatch,
}

impl NatsSink {
    fn new(name: &str, config: NatsSinkConfig, watch: SinkWatch) -> Self {
        NatsSink {
            name: name.to_owned(),
            config,
            metrics: std::rc::Rc::new(SinkMetrics::new(name, SINK, &[PUBLISH, ACK], &[PUBLISH])),
            duplicates: crate::metrics::nats_duplicates(name),
            own: None,
            stream_ready: false,
            _watch: watch,
        }
    }

    fn client(&self) -> Option<async_nats::Client> {
        if self.config.nats.is_empty() {
            ClusterLink::get().client()
        } else {
            self.own.clone()
        }
    }
}

impl Actor for NatsSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.config.nats.is_empty() {
            return;
        }
        let urls: Vec<String> =
            self.config.nats.iter().map(|url| url.expose().to_owned()).collect();
        let label = self.name.clone();
        // No batch is taken before the connection is made.
        ctx.wait(
            async move { crate::nats::connect(&urls, &label).await }.into_actor(self).map(
                |result, sink, ctx| match result {
                    Ok(client) => sink.own = Some(client),
                    Err(error) => {
                        tracing::error!(subscriber = %sink.name, %error, "nats sink cannot connect; stopping (restarted with backoff)");
                        ctx.stop();
                    }
                },
            ),
        );
    }
}

impl Handler<Deliver> for NatsSink {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) -> Self::Result {
        let link = ClusterLink::get();
        let prefix = self.config.subject_prefix.clone();
        let messages: Vec<Outgoing> =
            deliver.messages().iter().map(|message| outgoing(&prefix, message, link)).collect();
        let own = self.client();
        let from_cluster = self.config.nats.is_empty();
        let jetstream = self.config.jetstream;
        let ensure_stream = jetstream && !self.stream_ready;
        let metrics = self.metrics.clone();
        let duplicates = self.duplicates.clone();
        let name = self.name.clone();
        let work = async move {
            // The cluster's connection may not be made yet: wait for it, holding the batch.
            let mut client = own;
            while client.is_none() && from_cluster {
                actix_rt::time::sleep(RETRY_DELAY).await;
                client = ClusterLink::get().client();
            }
            let Some(client) = client else { return false };
            let count = messages.len();
            if !jetstream {
                let mut failed = 0;
                for message in messages {
                    let Outgoing { subject, headers, payload } = message;
                    if let Err(error) = client.publish_with_headers(subject, headers, payload).await
                    {
                        failed += 1;
                        metrics.error(PUBLISH);
                        tracing::warn!(subscriber = %name, %error, "nats publish failed");
                    }
                }
                metrics.written(count - failed);
                metrics.dropped(PUBLISH, failed);
                return false;
            }
            let context = jetstream::new(client);
            let mut ready = !ensure_stream;
            if ensure_stream {
                ready = make_stream(&context, &prefix).await;
            }
            let (published, dropped, duplicate) = publish_acked(&context, messages, &metrics).await;
            metrics.written(published);
            metrics.dropped(PUBLISH, dropped);
            duplicates.increment(duplicate);
            ready
        };
        Box::pin(work.into_actor(self).map(move |stream_ready, sink, _| {
            sink.stream_ready |= stream_ready;
            drop(deliver);
        }))
    }
}

/// Finds or makes the stream for `<prefix>.>`; false if neither worked
/// (publishing still works if another stream covers the subjects).
async fn make_stream(context: &jetstream::Context, prefix: &str) -> bool {
    let config = jetstream::stream::Config {
        name: stream_name(prefix),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    };
    match context.get_or_create_stream(config).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, "nats sink: cannot make the JetStream stream; publishing to whatever stream covers {prefix}.>");
            false
        }
    }
}

/// Publishes through JetStream, tries again those not acknowledged:
/// (published, dropped, duplicates).
async fn publish_acked(
    context: &jetstream::Context,
    messages: Vec<Outgoing>,
    metrics: &SinkMetrics,
) -> (usize, usize, u64) {
    let (mut published, mut duplicates) = (0, 0);
    let mut pending = messages;
    for attempt in 1..=PUBLISH_TRIES {
        let mut acks = Vec::with_capacity(pending.len());
        let mut failed = Vec::new();
        for message in pending {
            let sent = context
                .publish_with_headers(
                    message.subject.clone(),
                    message.headers.clone(),
                    message.payload.clone(),
                )
                .await;
            match sent {
                Ok(ack) => acks.push((ack, message)),
                Err(_) => {
                    metrics.error(PUBLISH);
                    failed.push(message);
                }
            }
        }
        for (ack, message) in acks {
            match ack.await {
                Ok(ack) => {
                    published += 1;
                    duplicates += u64::from(ack.duplicate);
                }
                Err(_) => {
                    metrics.error(ACK);
                    failed.push(message);
                }
            }
        }
        if failed.is_empty() {
            return (published, 0, duplicates);
        }
        pending = failed;
        if attempt < PUBLISH_TRIES {
            actix_rt::time::sleep(RETRY_DELAY * attempt).await;
        }
    }
    tracing::warn!(
        dropped = pending.len(),
        "nats sink: messages not acknowledged after {PUBLISH_TRIES} tries; dropped"
    );
    (published, pending.len(), duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_safe() {
        assert_eq!(subject_token("eu.stocks"), "eu_stocks");
        assert_eq!(subject_token("BTC/USD *>"), "BTC_USD___");
        assert_eq!(subject_token(""), "_");
        assert_eq!(stream_name("feedvisor.prod"), "FEEDVISOR_PROD");
    }

    #[test]
    fn a_sequenced_message_carries_its_id_and_headers() {
        let message = crate::sink::test_support::text("eu.stocks", "{}");
        let message = FeedMessage { sequence: Some(42), topic: Some("A.B".into()), ..message };
        let link = ClusterLink::default();
        link.set_epoch("eu.stocks", Some(7));
        let out = outgoing("fv", &message, &link);
        assert_eq!(out.subject, "fv.eu_stocks.A_B");
        let header = |name: &str| out.headers.get(name).map(|value| value.as_str().to_owned());
        assert_eq!(header("Nats-Msg-Id").as_deref(), Some("eu.stocks:42"));
        assert_eq!(header("Feedvisor-Sequence").as_deref(), Some("42"));
        assert_eq!(header("Feedvisor-Epoch").as_deref(), Some("7"));
        assert_eq!(header("Feedvisor-Topic").as_deref(), Some("A.B"));
        assert_eq!(header("Feedvisor-Kind").as_deref(), Some("text"));
    }

    #[test]
    fn a_discontinuity_event_goes_to_the_feeds_untopical_subject_marked_as_one() {
        let event = crate::Discontinuity {
            feed: "eu.stocks".to_owned(),
            reason: crate::DiscontinuityReason::Gap,
            last_before: Some(1),
            first_after: Some(5),
            missed: Some(3),
        };
        let message = event.into_message("eu.stocks".into(), std::time::SystemTime::now());
        let out = outgoing("fv", &message, &ClusterLink::default());
        assert_eq!(out.subject, "fv.eu_stocks._");
        let header = out.headers.get("Feedvisor-Event").map(|value| value.as_str().to_owned());
        assert_eq!(header.as_deref(), Some("discontinuity"));
        let payload: serde_json::Value = serde_json::from_slice(&out.payload).expect("JSON");
        assert_eq!(payload["type"], "discontinuity");
        assert_eq!(payload["missed"], 3);
    }

    #[test]
    fn bad_settings_are_named() {
        let config = NatsSinkConfig {
            nats: vec![Secret::new("http://x:1".to_owned())],
            subject_prefix: "a..b".to_owned(),
            jetstream: false,
        };
        let fields: Vec<String> = config.validate().into_iter().map(|error| error.field).collect();
        assert_eq!(fields, ["nats[0]", "subject_prefix"]);
    }
}
