//! Built-in sinks: the subscribers a config names (`sink = "stdout"`,
//! `"file"`, `"exec"`, `"webhook"`), and the `/subscribe` endpoint's clients.
//!
//! Every sink writes the same JSON object per message (see [`write_json_line`]).
//!
//! Each configurable sink owns its config type and its checks, beside its
//! actor: [`FileSinkConfig`], [`ExecSinkConfig`], [`WebhookSinkConfig`],
//! each with a pure `validate()` returning [`SinkConfigError`]s. Those files
//! import nothing from `config/`, which parses the TOML, dispatches on
//! `sink = "..."` ([`crate::config::SinkConfig`]) and asks them.
//!
//! A config sink runs under the supervisor: [`start`] hands it a
//! [`SinkWatch`], which tells the supervisor when the actor stops, so that
//! one that stops unasked is started again (see `supervisor/sinks.rs`).
//!
//! Files: stdout here; `file.rs` (config) with `file/json_lines.rs` and
//! `file/per_message.rs`; `exec.rs`; `webhook.rs`; `subscribe.rs` (the
//! `/subscribe` clients); `watch.rs`.

use std::io::Write;

use actix::prelude::*;
use base64::Engine;
use serde::Serialize;

use crate::backoff::{Jitter, PolicyKind, ReconnectPolicy};
use crate::config::SinkConfig;
use crate::delivery::{Chunk, DataKind, Deliver, FeedMessage};

mod exec;
mod file;
pub(crate) mod subscribe;
mod watch;
mod webhook;

pub use exec::ExecSinkConfig;
pub use file::{FileLayout, FileSinkConfig};
pub(crate) use watch::{SinkStopped, SinkWatch};
pub use webhook::WebhookSinkConfig;

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

/// Starts the sink of subscriber `name` with its settings; returns where
/// its batches go. `watch` is dropped with the actor.
pub(crate) fn start(name: &str, sink: &SinkConfig, watch: SinkWatch) -> Recipient<Deliver> {
    match sink {
        SinkConfig::Stdout => JsonLinesSink::stdout(name).watched(watch).start().recipient(),
        SinkConfig::File(config) => file::start(name, config, watch),
        SinkConfig::Exec(config) => {
            exec::ExecSink::new(name, config.command.clone()).watched(watch).start().recipient()
        }
        SinkConfig::Webhook(config) => {
            webhook::WebhookSink::new(name, config.clone()).watched(watch).start().recipient()
        }
    }
}

/// Appends one message as a JSON object and a newline: `feed`, `topic`,
/// `kind`, `payload` (text verbatim, binary as base64), `received_at`
/// (RFC 3339), and `gap_before` when a gap preceded it.
pub(crate) fn write_json_line(buffer: &mut Vec<u8>, message: &FeedMessage) {
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
            chunk: None,
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
}
