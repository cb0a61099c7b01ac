//! Built-in sinks: the subscribers a config names (`sink = "stdout"`,
//! `"file"`, `"exec"`, `"webhook"`, `"nats"`), and the `/subscribe` endpoint's clients.
//!
//! Every sink writes the same JSON object per message (see [`write_json_line`]).
//!
//! Each sink owns its config type beside its actor ([`StdoutSinkConfig`],
//! [`FileSinkConfig`], [`ExecSinkConfig`], [`WebhookSinkConfig`]), which
//! implements [`Sink`]: its name, its settings as written (read with
//! `deny_unknown_fields`), how they become the typed config, a pure
//! `validate()` returning [`SinkConfigError`]s, and its actor. The `sinks!`
//! list below registers them and generates [`SinkKind`] and [`SinkConfig`]
//! with their dispatch: adding a sink is its module and one entry there.
//! Sinks import nothing from `config/`, which reads the fields every
//! subscriber shares, hands the rest of the entry to [`SinkKind::config`],
//! and lends it the config's `${VAR}` expansion and durations through
//! [`SettingsContext`].
//!
//! A config sink runs under the supervisor: [`start`] hands it a
//! [`SinkWatch`], which tells the supervisor when the actor stops, so that
//! one that stops unasked is started again (see `supervisor/sinks.rs`).
//!
//! Files: stdout here; `file.rs` (config) with `file/json_lines.rs` and
//! `file/per_message.rs`; `exec.rs`; `webhook.rs`; `nats.rs`; `subscribe.rs` (the
//! `/subscribe` clients); `watch.rs`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use base64::Engine;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::backoff::{Jitter, PolicyKind, ReconnectPolicy};
use crate::inbox::delivery::{Chunk, DataKind, Deliver, FeedMessage};

mod exec;
mod file;
mod nats;
pub(crate) mod subscribe;
mod watch;
pub(crate) mod webhook;

pub use exec::ExecSinkConfig;
pub use file::{FileLayout, FileSinkConfig};
pub use nats::NatsSinkConfig;
pub use subscribe::SubscribeEndpointConfig;
pub(crate) use watch::{SinkStopped, SinkWatch};
pub use webhook::WebhookSinkConfig;

/// The sink list and the shared steps of sink settings.
#[cfg(test)]
#[path = "tests/registry.rs"]
mod registry_tests;

/// Helpers for the tests of every sink (file, exec, webhook), declared once, here.
#[cfg(test)]
#[path = "tests/support.rs"]
mod test_support;

/// When something local that stopped is started again: a sink actor (by
/// the supervisor) or an exec sink's child (by the sink). 500 ms, doubling
/// on each quick stop up to 30 s, never giving up; one that ran for
/// `reset_after` (a minute) was healthy, and the next delay is the first
/// again. No jitter: nothing remote to spare from a crowd of retries.
pub(crate) const RESTART_POLICY: ReconnectPolicy = ReconnectPolicy {
    kind: PolicyKind::Exponential,
    initial: std::time::Duration::from_millis(500),
    max: std::time::Duration::from_secs(30),
    multiplier: 2.0,
    jitter: Jitter::None,
    max_attempts: 0,
    reset_after: std::time::Duration::from_secs(60),
    // Nothing local answers with Retry-After.
    max_retry_after: crate::backoff::DEFAULT_MAX_RETRY_AFTER,
};

/// A sink setting that is not valid: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct SinkConfigError {
    /// The field under the subscriber's entry, such as `path` or `headers.X-Token`.
    pub field: String,
    /// What is wrong, and what to write instead.
    pub message: String,
}

impl SinkConfigError {
    /// An error of `field`.
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SinkConfigError { field: field.into(), message: message.into() }
    }
}

/// A built-in sink, implemented by its config type: its name in
/// `sink = "..."`, its settings as written, how they become its typed
/// config, its pure checks, and its actor (and, as every config type,
/// `Clone`, `Eq`, `Debug` and a `Serialize` that hides secrets). A type that implements it and
/// one entry in the `sinks!` list make a sink a config can name.
pub(crate) trait Sink: Clone + Eq + std::fmt::Debug + Serialize {
    /// The name written in `sink = "..."`, also the `sink` label of its metrics.
    const NAME: &'static str;
    /// The sink's settings as written: the subscriber's table without the
    /// fields every subscriber shares. A struct with `deny_unknown_fields`.
    type Settings: DeserializeOwned;

    /// The typed config: `${VAR}`s expanded, durations and URLs parsed
    /// (through `context`, which also collects the errors). Not yet checked.
    fn from_settings(settings: Self::Settings, context: &mut dyn SettingsContext) -> Option<Self>;

    /// Checks the settings without touching the system; every problem is named with its field.
    fn validate(&self) -> Vec<SinkConfigError> {
        Vec::new()
    }

    /// The checked config with relative paths resolved against `base_dir`.
    fn resolved_against(self, _base_dir: &Path) -> Self {
        self
    }

    /// A one-line description for `feedvisor check`.
    fn describe(&self) -> String;

    /// Starts the actor of subscriber `name`; `watch` is dropped with it.
    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver>;

    /// Whether the sink needs the `[cluster]` NATS connection (it names no server of its own).
    fn uses_cluster_connection(&self) -> bool {
        false
    }
}

/// What a sink's settings are turned into typed values with: the config's
/// `${VAR}` expansion and duration syntax, and its error list (errors are
/// reported under the subscriber, such as `subscribers[0] (out).url`).
pub(crate) trait SettingsContext {
    /// Records that `field` is wrong.
    fn error(&mut self, field: &str, message: String);
    /// `text` with its `${VAR}`s expanded; `None` after reporting a missing variable.
    fn expand(&mut self, field: &str, text: &str) -> Option<String>;
    /// A duration above 0 as the config writes it (`"10s"`); `default` when absent.
    fn duration(&mut self, field: &str, text: Option<&str>, default: Duration) -> Option<Duration>;
    /// Reports a field that neither the subscriber nor its sink takes;
    /// `sink_fields` are the sink's own.
    fn unknown_field(&mut self, field: &str, sink_fields: &[&str]);
}

/// Lists the built-in sinks, each as `Variant(ConfigType)` with its doc,
/// the type implementing [`Sink`]; the first is the one a subscriber gets
/// without `sink = "..."`. Generates [`SinkKind`], [`SinkConfig`] and
/// their dispatch, so that nothing else names a sink.
macro_rules! sinks {
    ($(#[doc = $first_doc:literal])* $first:ident($first_config:ty),
     $($(#[doc = $doc:literal])* $variant:ident($config:ty),)*) => {
        /// The built-in sinks a config can name.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub enum SinkKind {
            $(#[doc = $first_doc])*
            #[default]
            $first,
            $($(#[doc = $doc])* $variant,)*
        }

        impl SinkKind {
            /// Every sink's name, in the order of the list.
            const NAMES: &'static [&'static str] =
                &[<$first_config as Sink>::NAME, $(<$config as Sink>::NAME,)*];

            /// Every built-in sink, in the order of the list.
            pub(crate) const ALL: &'static [SinkKind] = &[SinkKind::$first, $(SinkKind::$variant,)*];

            /// The name used in the config and in metric labels.
            pub fn as_str(self) -> &'static str {
                match self {
                    Self::$first => <$first_config as Sink>::NAME,
                    $(Self::$variant => <$config as Sink>::NAME,)*
                }
            }

            /// The names of the sink's own settings.
            pub(crate) fn fields(self) -> &'static [&'static str] {
                match self {
                    Self::$first => settings_fields::<$first_config>(),
                    $(Self::$variant => settings_fields::<$config>(),)*
                }
            }

            /// Turns the sink's settings into its checked config, reporting
            /// every problem through `context`.
            pub(crate) fn config(
                self,
                settings: toml::Table,
                base_dir: &Path,
                context: &mut dyn SettingsContext,
            ) -> Option<SinkConfig> {
                match self {
                    Self::$first => config_of::<$first_config>(settings, base_dir, context)
                        .map(SinkConfig::$first),
                    $(Self::$variant => config_of::<$config>(settings, base_dir, context)
                        .map(SinkConfig::$variant),)*
                }
            }
        }

        /// A sink with its settings, each sink's own config type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum SinkConfig {
            $(#[doc = $first_doc])*
            $first($first_config),
            $($(#[doc = $doc])* $variant($config),)*
        }

        impl SinkConfig {
            /// Which sink this is.
            pub fn kind(&self) -> SinkKind {
                match self {
                    Self::$first(_) => SinkKind::$first,
                    $(Self::$variant(_) => SinkKind::$variant,)*
                }
            }

            /// Whether the sink needs the `[cluster]` NATS connection.
            pub(crate) fn uses_cluster_connection(&self) -> bool {
                match self {
                    Self::$first(config) => config.uses_cluster_connection(),
                    $(Self::$variant(config) => config.uses_cluster_connection(),)*
                }
            }

            /// A one-line description of the sink, for `feedvisor check`.
            pub fn describe(&self) -> String {
                match self {
                    Self::$first(config) => config.describe(),
                    $(Self::$variant(config) => config.describe(),)*
                }
            }

            /// Starts the sink of subscriber `name`; returns where its
            /// batches go. `watch` is dropped with the actor.
            pub(crate) fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
                match self {
                    Self::$first(config) => config.start(name, watch),
                    $(Self::$variant(config) => config.start(name, watch),)*
                }
            }
        }

        /// `sink = "<name>"` next to the sink's own settings, as written.
        impl Serialize for SinkConfig {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    Self::$first(config) => Tagged::new(config).serialize(serializer),
                    $(Self::$variant(config) => Tagged::new(config).serialize(serializer),)*
                }
            }
        }
    };
}

// The built-in sinks, one entry each: adding a sink is its module, whose
// config type implements `Sink`, and a line here. The first is the default.
sinks! {
    /// JSON lines on standard output.
    Stdout(StdoutSinkConfig),
    /// JSON lines appended to a file (`layout = "lines"`), or one file per
    /// message in a directory (`layout = "per_message"`).
    File(FileSinkConfig),
    /// JSON lines to a child's standard input; the child is restarted with backoff if it exits.
    Exec(ExecSinkConfig),
    /// POST to `url`: one JSON object per request, or a JSON array of up to `batch`.
    Webhook(WebhookSinkConfig),
    /// Publish to NATS subjects `<subject_prefix>.<feed>.<topic>`, optionally through JetStream.
    Nats(NatsSinkConfig),
}

/// One message as a JSON line.
#[derive(Serialize)]
struct JsonLine<'a> {
    feed: &'a str,
    topic: Option<&'a str>,
    kind: &'static str,
    payload: String,
    received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gap_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunk: Option<Chunk>,
}

impl<'a> JsonLine<'a> {
    fn new(message: &'a FeedMessage) -> Self {
        let payload = match message.kind {
            // Text payloads are valid UTF-8 (checked by the transport); lossless either way.
            DataKind::Text => String::from_utf8_lossy(&message.payload).into_owned(),
            DataKind::Binary => base64::engine::general_purpose::STANDARD.encode(&message.payload),
        };
        JsonLine {
            feed: &message.feed,
            topic: message.topic.as_deref(),
            kind: message.kind.as_str(),
            payload,
            received_at: humantime::format_rfc3339_micros(message.received_at).to_string(),
            gap_before: message.gap_before,
            chunk: message.chunk,
        }
    }
}

/// `sink = "stdout"`: JSON lines on standard output; no settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StdoutSinkConfig;

/// A sink that takes no settings: any field is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoSettings {}

impl Sink for StdoutSinkConfig {
    const NAME: &'static str = "stdout";
    type Settings = NoSettings;

    fn from_settings(_: NoSettings, _: &mut dyn SettingsContext) -> Option<Self> {
        Some(StdoutSinkConfig)
    }

    fn describe(&self) -> String {
        Self::NAME.to_owned()
    }

    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
        JsonLinesSink::stdout(name).watched(watch).start().recipient()
    }
}

/// Starts the sink of subscriber `name` with its settings; returns where
/// its batches go. `watch` is dropped with the actor.
pub(crate) fn start(name: &str, sink: &SinkConfig, watch: SinkWatch) -> Recipient<Deliver> {
    sink.start(name, watch)
}

impl Serialize for SinkKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A sink's name, one of those in the `sinks!` list.
impl<'de> Deserialize<'de> for SinkKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = SinkKind;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the name of a sink")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<SinkKind, E> {
                SinkKind::ALL
                    .iter()
                    .copied()
                    .find(|kind| kind.as_str() == name)
                    .ok_or_else(|| E::unknown_variant(name, SinkKind::NAMES))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// A sink's config serialized with its name first, as the TOML writes it.
#[derive(Serialize)]
struct Tagged<'a, C> {
    /// The sink's name.
    sink: &'static str,
    /// Its settings, beside the name.
    #[serde(flatten)]
    config: &'a C,
}

impl<'a, C: Sink> Tagged<'a, C> {
    fn new(config: &'a C) -> Self {
        Tagged { sink: C::NAME, config }
    }
}

/// Sink `S`'s checked config from its table: fields it does not take are
/// reported (naming the sink that takes them, if one does), then its
/// settings are read, made typed, checked and resolved.
fn config_of<S: Sink>(
    mut settings: toml::Table,
    base_dir: &Path,
    context: &mut dyn SettingsContext,
) -> Option<S> {
    let fields = settings_fields::<S>();
    let before = settings.len();
    settings.retain(|field, _| {
        if fields.contains(&field) {
            return true;
        }
        let owners: Vec<&str> = SinkKind::ALL
            .iter()
            .filter(|other| other.fields().contains(&field))
            .map(|other| other.as_str())
            .collect();
        if owners.is_empty() {
            context.unknown_field(field, fields);
        } else {
            let owners = owners.join(", ");
            context.error(field, format!("only used by sink = \"{owners}\", not \"{}\"", S::NAME));
        }
        false
    });
    let refused = settings.len() != before;
    let settings = match serde_path_to_error::deserialize(toml::Value::Table(settings)) {
        Ok(settings) => settings,
        Err(error) => {
            let path = error.path().to_string();
            let field = if path == "." { "" } else { path.as_str() };
            context.error(field, error.into_inner().message().to_owned());
            return None;
        }
    };
    let config = S::from_settings(settings, context)?;
    let errors = config.validate();
    let valid = errors.is_empty() && !refused;
    for error in errors {
        context.error(&error.field, error.message);
    }
    valid.then(|| config.resolved_against(base_dir))
}

/// The fields of sink `S`'s settings, as its `Deserialize` declares them.
fn settings_fields<S: Sink>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe only records the names it is asked for; its error is expected.
    let _ = S::Settings::deserialize(FieldProbe { fields: &mut fields });
    fields
}

/// A deserializer that records the field names a struct asks for, and gives nothing.
struct FieldProbe<'a> {
    /// Where the names go.
    fields: &'a mut &'static [&'static str],
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.fields = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Appends one message as a JSON object and a newline: `feed`, `topic`,
/// `kind`, `payload` (text verbatim, binary as base64), `received_at`
/// (RFC 3339), and `gap_before` when a gap preceded it. A discontinuity
/// event is its own JSON object instead, `{"type": "discontinuity", ...}`.
pub(crate) fn write_json_line(buffer: &mut Vec<u8>, message: &FeedMessage) {
    if message.discontinuity.is_some() {
        // Its payload is the event as JSON already.
        buffer.extend_from_slice(&message.payload);
        buffer.push(b'\n');
        return;
    }
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buffer, &JsonLine::new(message));
    buffer.push(b'\n');
}

/// Writes one JSON object per message and line to a writer (standard output by default).
pub struct JsonLinesSink<W: Write + Unpin + 'static> {
    /// The subscriber's name, for logs.
    name: String,
    /// Where the lines go.
    writer: W,
    /// Tells the supervisor when this actor stops (config sinks only).
    watch: Option<SinkWatch>,
}

impl JsonLinesSink<std::io::Stdout> {
    /// A sink writing to standard output.
    pub fn stdout(name: impl Into<String>) -> Self {
        JsonLinesSink::new(name, std::io::stdout())
    }
}

impl<W: Write + Unpin + 'static> JsonLinesSink<W> {
    /// A sink writing to `writer`.
    pub fn new(name: impl Into<String>, writer: W) -> Self {
        JsonLinesSink { name: name.into(), writer, watch: None }
    }

    /// Reports the actor's stop to the supervisor through `watch`.
    pub(crate) fn watched(mut self, watch: SinkWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Writes a batch as JSON lines in one write.
    pub fn write_batch(&mut self, messages: &[FeedMessage]) -> std::io::Result<()> {
        let mut buffer = Vec::with_capacity(messages.len() * 128);
        for message in messages {
            write_json_line(&mut buffer, message);
        }
        self.writer.write_all(&buffer)?;
        self.writer.flush()
    }
}

impl<W: Write + Unpin + 'static> Actor for JsonLinesSink<W> {
    type Context = Context<Self>;
}

impl<W: Write + Unpin + 'static> Handler<Deliver> for JsonLinesSink<W> {
    type Result = ();

    fn handle(&mut self, mut deliver: Deliver, ctx: &mut Context<Self>) {
        let messages = deliver.messages();
        if let Err(error) = self.write_batch(messages) {
            tracing::error!(subscriber = %self.name, %error, lost = messages.len(), "sink write failed; sink stopped");
            ctx.stop();
        }
    }
}

/// Serializes a duration of a sink's config (or of the config's own
/// settings) in its human form (`"1m 30s"`).
pub(crate) fn serialize_duration<S: serde::Serializer>(
    duration: &std::time::Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    use bytes::Bytes;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_text_verbatim_and_binary_as_base64() {
        let out = Shared::default();
        let mut sink = JsonLinesSink::new("test", out.clone());
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let text = FeedMessage {
            feed: "stocks".into(),
            topic: Some("AAPL".into()),
            kind: DataKind::Text,
            payload: Bytes::from_static(br#"{"symbol":"AAPL","price":1.5}"#),
            received_at: at,
            received: Instant::now(),
            gap_before: None,
            sequence: None,
            chunk: None,
            discontinuity: None,
        };
        let binary = FeedMessage {
            topic: None,
            gap_before: Some(3),
            kind: DataKind::Binary,
            payload: Bytes::from_static(&[0, 1, 2, 255]),
            ..text.clone()
        };
        sink.write_batch(&[text, binary]).expect("written");
        let written = String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf8");
        let lines: Vec<serde_json::Value> =
            written.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["feed"], "stocks");
        assert_eq!(lines[0]["topic"], "AAPL");
        assert_eq!(lines[0]["kind"], "text");
        assert_eq!(lines[0]["payload"], r#"{"symbol":"AAPL","price":1.5}"#);
        assert_eq!(lines[0]["received_at"], "2023-11-14T22:13:20.123000Z");
        assert_eq!(lines[1]["topic"], serde_json::Value::Null);
        assert_eq!(lines[1]["kind"], "binary");
        assert_eq!(lines[1]["payload"], "AAEC/w==");
        assert_eq!(lines[0].get("gap_before"), None);
        assert_eq!(lines[1]["gap_before"], 3);
    }

    #[test]
    fn a_discontinuity_event_is_written_as_its_own_object() {
        let event = crate::Discontinuity {
            feed: "stocks".to_owned(),
            reason: crate::DiscontinuityReason::Reconnect,
            last_before: None,
            first_after: None,
            missed: None,
        };
        let mut line = Vec::new();
        write_json_line(&mut line, &event.into_message("stocks".into(), SystemTime::now()));
        assert_eq!(line.last(), Some(&b'\n'));
        let written: serde_json::Value = serde_json::from_slice(&line).expect("one JSON object");
        assert_eq!(
            written,
            serde_json::json!({"type": "discontinuity", "feed": "stocks", "reason": "reconnect",
                "last_before": null, "first_after": null, "missed": null})
        );
    }
}
