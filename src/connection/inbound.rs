//! What the connection actor does with an inbound batch: assemble messages,
//! answer heartbeats, read topics and sequence numbers, hand the batch on.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;

use feedvisor_transport_api::TransportError;
use feedvisor_transport_api::{close_code, AssembleError, CloseFrame, DataKind, ErrorKind, Event};

use super::sequence::SequenceCheck;
use super::FeedConnection;
use crate::delivery::FeedMessage;
use crate::metrics::RejectReason;
use crate::router::Route;
use crate::status::CloseRecord;

/// What the feed's JSON pointers found in a message.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Inspection {
    pub topic: Option<Arc<str>>,
    pub sequence: Option<u64>,
}

/// Reads the topic and sequence number out of a JSON message (one parse for both).
pub(crate) fn inspect(payload: &[u8], topic: Option<&str>, sequence: Option<&str>) -> Inspection {
    if topic.is_none() && sequence.is_none() {
        return Inspection::default();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Inspection::default();
    };
    Inspection {
        topic: topic.and_then(|pointer| topic_text(value.pointer(pointer)?)),
        sequence: sequence.and_then(|pointer| value.pointer(pointer)?.as_u64()),
    }
}

fn topic_text(value: &serde_json::Value) -> Option<Arc<str>> {
    match value {
        serde_json::Value::String(text) => Some(Arc::from(text.as_str())),
        serde_json::Value::Number(number) => Some(Arc::from(number.to_string())),
        serde_json::Value::Bool(flag) => Some(Arc::from(flag.to_string())),
        _ => None,
    }
}

impl FeedConnection {
    /// Handles one inbound batch.
    pub(super) fn handle_events(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        let received = Instant::now();
        let received_at = SystemTime::now();
        if let Some(link) = self.link.as_mut() {
            link.last_inbound = actix_rt::time::Instant::now();
        }
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            match event {
                Event::Data(frame) => match self.assembler.push(frame) {
                    Ok(Some(message)) => {
                        if self.is_heartbeat_reply(&message.payload) {
                            continue;
                        }
                        let found = inspect(
                            &message.payload,
                            self.feed.topic.as_deref(),
                            self.feed.sequence.as_deref(),
                        );
                        let gap_before = self.check_sequence(found.sequence);
                        messages.push(FeedMessage {
                            feed: self.name.clone(),
                            topic: found.topic,
                            kind: message.kind,
                            payload: message.payload,
                            received_at,
                            received,
                            gap_before,
                        });
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.metrics.rejected(match error {
                            AssembleError::TooLarge { .. } => RejectReason::TooLarge,
                            _ => RejectReason::Protocol,
                        });
                        tracing::warn!(feed = %self.name, %error, "message refused");
                        self.publish(messages);
                        self.close_and_reconnect(error.close_code(), error.to_string(), ctx);
                        return;
                    }
                },
                Event::Ping(_) => {}
                Event::Pong(payload) => self.pong_received(&payload),
                Event::Close(frame) => {
                    let frame = frame.unwrap_or_else(|| CloseFrame::new(close_code::NORMAL, ""));
                    tracing::info!(feed = %self.name, code = frame.code, reason = %frame.reason, "closed by peer");
                    self.shared.set_close(CloseRecord::peer(&frame));
                    self.shared.set_error(format!(
                        "closed by peer with code {} ({})",
                        frame.code, frame.reason
                    ));
                    self.publish(messages);
                    self.connection_lost(ctx);
                    return;
                }
            }
        }
        self.publish(messages);
    }

    /// Counts a sequence number; returns how many were missed right before it.
    fn check_sequence(&mut self, sequence: Option<u64>) -> Option<u64> {
        self.feed.sequence.as_ref()?;
        let Some(seq) = sequence else {
            self.metrics.sequence_missing.increment(1);
            return None;
        };
        match self.sequence.observe(seq) {
            SequenceCheck::InOrder => None,
            SequenceCheck::Duplicate => {
                self.metrics.sequence_duplicates.increment(1);
                None
            }
            SequenceCheck::Gap { missed } => {
                tracing::warn!(feed = %self.name, seq, missed, "gap in sequence numbers");
                self.metrics.sequence_gaps.increment(1);
                self.metrics.sequence_missed.increment(missed);
                Some(missed)
            }
        }
    }

    /// Counts a batch and hands it to the router.
    fn publish(&mut self, messages: Vec<FeedMessage>) {
        if messages.is_empty() {
            return;
        }
        let (mut text, mut binary, mut bytes) = (0u64, 0u64, 0u64);
        for message in &messages {
            match message.kind {
                DataKind::Text => text += 1,
                DataKind::Binary => binary += 1,
            }
            bytes += message.payload.len() as u64;
        }
        self.metrics.text_messages.increment(text);
        self.metrics.binary_messages.increment(binary);
        self.metrics.bytes.increment(bytes);
        self.shared.add_received(text + binary, bytes);
        self.router.do_send(Route { feed: self.name.clone(), messages, gate: self.gate.clone() });
    }

    /// Counts a connection-ending error that refused what the peer sent.
    pub(super) fn count_refusal(&self, error: &TransportError) {
        match error.kind() {
            ErrorKind::TooLarge => self.metrics.rejected(RejectReason::TooLarge),
            ErrorKind::Protocol if error.close_code() == Some(close_code::INVALID_PAYLOAD) => {
                self.metrics.rejected(RejectReason::InvalidUtf8)
            }
            ErrorKind::Protocol => self.metrics.rejected(RejectReason::Protocol),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parse_finds_topic_and_sequence() {
        let found = inspect(br#"{"s":"AAPL","n":{"seq":7}}"#, Some("/s"), Some("/n/seq"));
        assert_eq!(found, Inspection { topic: Some("AAPL".into()), sequence: Some(7) });
    }

    #[test]
    fn numbers_and_booleans_are_topics_but_objects_are_not() {
        assert_eq!(inspect(br#"{"t":42}"#, Some("/t"), None).topic.as_deref(), Some("42"));
        assert_eq!(inspect(br#"{"t":true}"#, Some("/t"), None).topic.as_deref(), Some("true"));
        assert_eq!(inspect(br#"{"t":{}}"#, Some("/t"), None).topic, None);
    }

    #[test]
    fn non_json_or_negative_sequence_finds_nothing() {
        assert_eq!(inspect(b"not json", Some("/t"), Some("/seq")), Inspection::default());
        assert_eq!(inspect(br#"{"seq":-1}"#, None, Some("/seq")).sequence, None);
    }
}
