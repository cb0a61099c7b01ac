//! `heartbeat = { ... }` of a feed, resolved: how a silent connection is
//! noticed. Either protocol pings (WebSocket ping frames, answered by pongs)
//! or an application message and the reply that acknowledges it, for
//! upstreams that ignore protocol pings.

use std::time::Duration;

/// A feed's heartbeat; `None` on the feed when `interval = "0s"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for the answer to a ping before the connection
    /// counts as dead; shorter than `interval`.
    pub timeout: Duration,
    /// What is sent, and what counts as the answer.
    pub kind: HeartbeatKind,
}

impl Default for HeartbeatConfig {
    /// Protocol pings every 30s, answered within 10s.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            kind: HeartbeatKind::Protocol,
        }
    }
}

/// What a heartbeat sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HeartbeatKind {
    /// WebSocket ping frames; any pong answers.
    #[default]
    Protocol,
    /// A text message of the upstream's own protocol (`message`), answered by
    /// an incoming message that matches `reply`.
    Application {
        /// Sent every `interval`, `${VAR}` expanded.
        message: String,
        /// Which incoming message is the answer.
        reply: ReplyMatch,
    },
}

/// How an incoming message is recognised as the answer to an application heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyMatch {
    /// `reply = "pong"` alone: the payload contains these bytes.
    Substring(String),
    /// `reply` with `reply_pointer`: the payload is JSON and the value at
    /// `pointer` equals `value`.
    Pointer {
        /// A JSON pointer, such as `/op`.
        pointer: String,
        /// The expected value, compared with a string (or a number's or a
        /// boolean's JSON text: `"1"`, `"true"`).
        value: String,
    },
}

impl ReplyMatch {
    /// Whether `payload` is the heartbeat's answer.
    pub fn matches(&self, payload: &[u8]) -> bool {
        match self {
            Self::Substring(needle) => contains(payload, needle.as_bytes()),
            Self::Pointer { pointer, value } => {
                let Ok(document) = serde_json::from_slice::<serde_json::Value>(payload) else {
                    return false;
                };
                match document.pointer(pointer) {
                    Some(serde_json::Value::String(found)) => found == value,
                    Some(serde_json::Value::Number(found)) => found.to_string() == *value,
                    Some(serde_json::Value::Bool(found)) => found.to_string() == *value,
                    _ => false,
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window == needle)
}

/// `heartbeat` with an application message shown as written (`${VAR}`
/// unexpanded) when `message_as_written` is given: for `Debug` and `Serialize`.
pub(super) fn as_written(
    heartbeat: Option<&HeartbeatConfig>,
    message_as_written: Option<&str>,
) -> Option<HeartbeatConfig> {
    let mut shown = heartbeat?.clone();
    if let (HeartbeatKind::Application { message, .. }, Some(written)) =
        (&mut shown.kind, message_as_written)
    {
        written.clone_into(message);
    }
    Some(shown)
}
