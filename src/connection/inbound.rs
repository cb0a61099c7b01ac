//! What the connection actor does with an inbound batch: assemble messages,
//! answer heartbeats, read topics and sequence numbers, hand the batch on.
//!
//! Each message carries its arrival on the real clock (`std::time::Instant`,
//! see [`arrival`]): not a timer, but the start of the delivery latency that
//! subscribers measure on their own threads. Timers here (`last_inbound`)
//! use tokio's clock like the rest of the connection actor.

#![allow(
    clippy::disallowed_types,
    reason = "messages carry their arrival on the real clock (see the module docs)"
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;

use bytes::Bytes;
use feedvisor_transport_api::{
    close_code, AssembleError, CloseFrame, DataFrame, DataKind, DeliveryMode, ErrorKind, Event,
    InflateFailure, Message, Opcode, TransportError,
};

use super::credentials::Rejection;
use super::pointer::{lookup_pair, Scalar};
use super::sequence::SequenceCheck;
use super::FeedConnection;
use crate::inbox::delivery::{Chunk, FeedMessage};
use crate::metrics::RejectReason;
use crate::status::CloseRecord;

/// What the feed's JSON pointers found in a message.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Inspection {
    pub topic: Option<Arc<str>>,
    pub sequence: Option<u64>,
}

/// The topics a feed has seen, shared by the messages that carry them, so
/// that a message's topic costs a lookup rather than an allocation.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    known: HashSet<Arc<str>>,
}

impl Topics {
    /// Distinct topics kept per feed; past that, a new topic is allocated per
    /// message (a feed whose "topics" are all distinct gains nothing from a cache).
    const MAX: usize = 4096;

    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.known.get(text) {
            return known.clone();
        }
        let topic: Arc<str> = Arc::from(text);
        if self.known.len() < Self::MAX {
            self.known.insert(topic.clone());
        }
        topic
    }
}

/// Reads the topic and sequence number out of a JSON message in one scan,
/// without parsing it into a tree (see [`super::pointer`]).
#[inline]
pub(crate) fn inspect(
    topics: &mut Topics,
    payload: &[u8],
    topic: Option<&str>,
    sequence: Option<&str>,
) -> Inspection {
    if topic.is_none() && sequence.is_none() {
        return Inspection::default();
    }
    scan(topics, payload, topic, sequence)
}

fn scan(
    topics: &mut Topics,
    payload: &[u8],
    topic: Option<&str>,
    sequence: Option<&str>,
) -> Inspection {
    let (found_topic, found_sequence) = lookup_pair(payload, topic, sequence);
    Inspection {
        topic: found_topic.map(|scalar| match scalar {
            Scalar::Str(text) => topics.intern(&text),
            Scalar::Number(text) => topics.intern(text),
            Scalar::Bool(true) => topics.intern("true"),
            Scalar::Bool(false) => topics.intern("false"),
        }),
        sequence: found_sequence.and_then(|scalar| scalar.as_u64()),
    }
}

/// Now, as a message's arrival: the real clock, against which delivery
/// latency is measured when a subscriber drops its batch, and the wall clock
/// subscribers see as `received_at`.
#[allow(
    clippy::disallowed_methods,
    reason = "delivery latency is measured on the real clock across threads, not by a timer"
)]
fn arrival() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

impl FeedConnection {
    /// Handles one inbound batch.
    pub(super) fn handle_events(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        let (received, received_at) = arrival();
        if let Some(link) = self.link.as_mut() {
            link.last_inbound = actix_rt::time::Instant::now();
        }
        self.count_wire_bytes(&events);
        self.first_data(&events);
        let mut messages = crate::inbox::delivery::batch_vec(events.len());
        for event in events {
            match event {
                Event::Data(frame) if matches!(self.feed.mode, DeliveryMode::Stream { .. }) => {
                    if let Err(reason) =
                        self.stream_piece(frame, &mut messages, received, received_at)
                    {
                        self.metrics.rejected(RejectReason::Protocol);
                        tracing::warn!(feed = %self.name, %reason, "stream refused");
                        self.publish(messages);
                        self.close_and_reconnect(close_code::PROTOCOL_ERROR, reason, ctx);
                        return;
                    }
                }
                Event::Data(frame) => match self.assembler.push(frame) {
                    Ok(Some(message)) => {
                        let Some(message) = self.decoded(message) else { continue };
                        if self.credentials_rejected(Rejection::Reply, &message.payload) {
                            self.publish(messages);
                            let reason = "credentials rejected by the upstream's reply".to_owned();
                            self.close_and_reconnect(close_code::NORMAL, reason, ctx);
                            return;
                        }
                        if self.is_heartbeat_reply(&message.payload)
                            || self.subscription_reply(&message.payload)
                        {
                            continue;
                        }
                        let found = inspect(
                            &mut self.topics,
                            &message.payload,
                            self.feed.topic.as_deref(),
                            self.feed.sequence.as_deref(),
                        );
                        self.subscription_data(found.topic.as_ref());
                        let checked = match self.zero_gap.has_legs() {
                            // The legs check numbers themselves, across the feed's actors.
                            true => Some(None),
                            false => self.check_sequence(found.sequence),
                        };
                        let Some(gap_before) = checked else { continue };
                        self.freshness.observe(&message.payload, received_at, &self.metrics);
                        let message = FeedMessage {
                            feed: self.name.clone(),
                            topic: found.topic,
                            kind: message.kind,
                            payload: message.payload,
                            received_at,
                            received,
                            gap_before,
                            sequence: found.sequence.filter(|_| self.feed.sequence.is_some()),
                            chunk: None,
                            discontinuity: None,
                        };
                        if self.delivers_plainly() {
                            messages.push(message);
                        } else {
                            self.push_message(message, &mut messages, ctx);
                        }
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
                    self.credentials_rejected(Rejection::CloseCode(frame.code), &[]);
                    tracing::info!(feed = %self.name, code = frame.code, reason = %frame.reason, "closed by peer");
                    self.shared.set_close(CloseRecord::peer(&frame));
                    self.host_closed(frame.code);
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
        if !messages.is_empty() {
            self.data_arrived(ctx);
        }
        self.publish(messages);
    }

    /// Counts the data bytes of a batch as they came off the wire: what the
    /// transport handed over, with what it inflated counted at its compressed size.
    fn count_wire_bytes(&self, events: &[Event]) {
        let handed_over: u64 = events
            .iter()
            .map(|event| match event {
                Event::Data(frame) => frame.payload.len() as u64,
                _ => 0,
            })
            .sum();
        let (wire, inflated) = self.compressed.take();
        let bytes = handed_over.saturating_sub(inflated).saturating_add(wire);
        if bytes > 0 {
            self.metrics.wire_bytes.increment(bytes);
        }
    }

    /// The message with its payload decoded as the feed's `decode` says; a
    /// payload that fails to decode is dropped, logged and counted (the
    /// connection stays open: the transport itself did nothing wrong).
    fn decoded(&self, message: Message) -> Option<Message> {
        let Some(decoding) = self.feed.decode else { return Some(message) };
        match super::decode::decode(decoding, message, self.assembler.max_message_size()) {
            Ok(message) => Some(message),
            Err(error) => {
                self.metrics.inflate_error(error.failure);
                tracing::warn!(feed = %self.name, decode = decoding.name(), %error, "payload dropped");
                None
            }
        }
    }

    /// Turns one piece of a frame into chunks of at most `chunk_size` (stream mode).
    fn stream_piece(
        &mut self,
        frame: DataFrame,
        out: &mut Vec<FeedMessage>,
        received: Instant,
        received_at: SystemTime,
    ) -> Result<(), String> {
        let DataFrame { opcode, fin, mut payload } = frame;
        match (opcode, self.stream.current) {
            (Opcode::Continuation, None) => {
                return Err("continuation without a message to continue".to_owned())
            }
            (Opcode::Text | Opcode::Binary, Some(_)) => {
                return Err("new message started before the one before it ended".to_owned())
            }
            (Opcode::Text | Opcode::Binary, None) => {
                self.stream.messages += 1;
                self.stream.current = Some((self.stream.messages, 0));
            }
            (Opcode::Continuation, Some(_)) => {}
        }
        let chunk_size = match self.feed.mode {
            DeliveryMode::Stream { chunk_size } => chunk_size.max(1),
            DeliveryMode::Message => usize::MAX,
        };
        loop {
            let piece = payload.split_to(payload.len().min(chunk_size));
            let last = fin && payload.is_empty();
            let Some((message, offset)) = self.stream.current.as_mut() else { break };
            let chunk = Chunk { message: *message, offset: *offset, last, aborted: false };
            if chunk.offset == 0 && last && self.freshness.reads_timestamps() {
                // A message in one chunk has one timestamp (see freshness.rs).
                self.freshness.observe(&piece, received_at, &self.metrics);
            }
            *offset += piece.len() as u64;
            out.push(self.chunk_message(piece, chunk, received, received_at));
            if payload.is_empty() {
                break;
            }
        }
        if fin {
            self.stream.current = None;
        }
        Ok(())
    }

    fn chunk_message(
        &self,
        payload: Bytes,
        chunk: Chunk,
        received: Instant,
        received_at: SystemTime,
    ) -> FeedMessage {
        FeedMessage {
            feed: self.name.clone(),
            topic: None,
            kind: DataKind::Binary,
            payload,
            received_at,
            received,
            gap_before: None,
            sequence: None,
            chunk: Some(chunk),
            discontinuity: None,
        }
    }

    /// Tells subscribers that the message being streamed will not be finished.
    pub(super) fn abort_stream_message(&mut self) {
        let Some((message, offset)) = self.stream.current.take() else { return };
        tracing::warn!(feed = %self.name, message, bytes = offset, "streamed message cut short");
        let chunk = Chunk { message, offset, last: true, aborted: true };
        let (received, received_at) = arrival();
        let marker = self.chunk_message(Bytes::new(), chunk, received, received_at);
        self.publish(vec![marker]);
    }

    /// Counts a sequence number; returns how many were missed right before it,
    /// or `None` when the message is not delivered (while the feed is being
    /// replaced, another of its actors delivers that number or already has).
    fn check_sequence(&mut self, sequence: Option<u64>) -> Option<Option<u64>> {
        if self.feed.sequence.is_none() {
            return Some(None);
        }
        let Some(seq) = sequence else {
            if !self.sequence.delivers_unnumbered() {
                return None;
            }
            self.metrics.sequence_missing.increment(1);
            return Some(None);
        };
        match self.sequence.observe(seq) {
            SequenceCheck::InOrder => Some(None),
            SequenceCheck::Duplicate => {
                self.metrics.sequence_duplicates.increment(1);
                Some(None)
            }
            SequenceCheck::Suppressed { duplicate } => {
                if duplicate {
                    self.metrics.sequence_duplicates.increment(1);
                }
                None
            }
            SequenceCheck::Gap { missed } => {
                tracing::warn!(feed = %self.name, seq, missed, "gap in sequence numbers");
                self.metrics.sequence_gaps.increment(1);
                self.metrics.sequence_missed.increment(missed);
                self.announce_gap(seq, missed);
                Some(Some(missed))
            }
            SequenceCheck::Reset { last } => {
                tracing::warn!(feed = %self.name, seq, last, "sequence numbers started again");
                self.announce_reset(Some(last), seq);
                Some(None)
            }
        }
    }

    /// Counts a batch and pushes it into the inboxes of the subscribers that want it.
    pub(super) fn publish(&mut self, messages: Vec<FeedMessage>) {
        if messages.is_empty() {
            return;
        }
        let (mut text, mut binary, mut bytes) = (0u64, 0u64, 0u64);
        for message in &messages {
            bytes += message.payload.len() as u64;
            // In stream mode a message counts once, when its last piece arrives.
            if message.chunk.is_some_and(|chunk| !chunk.last || chunk.aborted) {
                continue;
            }
            match message.kind {
                DataKind::Text => text += 1,
                DataKind::Binary => binary += 1,
            }
        }
        // Discontinuity events (text) are not messages from the feed.
        let (events, event_bytes) = self.zero_gap.take_events();
        text = text.saturating_sub(events);
        bytes = bytes.saturating_sub(event_bytes);
        // A counter update is an atomic write shared with the exporter: skip the zero ones.
        if text > 0 {
            self.metrics.text_messages.increment(text);
        }
        if binary > 0 {
            self.metrics.binary_messages.increment(binary);
        }
        self.metrics.bytes.increment(bytes);
        self.shared.add_received(text + binary, bytes);
        self.routes.publish(messages, &self.gate);
    }

    /// Counts a connection-ending error that refused what the peer sent.
    pub(super) fn count_refusal(&self, error: &TransportError) {
        if let TransportError::Inflate { failure, .. } = error {
            self.metrics.inflate_error(*failure);
            self.metrics.rejected(match failure {
                InflateFailure::TooLarge => RejectReason::TooLarge,
                _ => RejectReason::Protocol,
            });
            return;
        }
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
        let found = inspect(
            &mut Topics::default(),
            br#"{"s":"AAPL","n":{"seq":7}}"#,
            Some("/s"),
            Some("/n/seq"),
        );
        assert_eq!(found, Inspection { topic: Some("AAPL".into()), sequence: Some(7) });
    }

    #[test]
    fn numbers_and_booleans_are_topics_but_objects_are_not() {
        let topics = &mut Topics::default();
        assert_eq!(inspect(topics, br#"{"t":42}"#, Some("/t"), None).topic.as_deref(), Some("42"));
        let flag = inspect(topics, br#"{"t":true}"#, Some("/t"), None);
        assert_eq!(flag.topic.as_deref(), Some("true"));
        assert_eq!(inspect(topics, br#"{"t":{}}"#, Some("/t"), None).topic, None);
    }

    #[test]
    fn non_json_or_negative_sequence_finds_nothing() {
        let topics = &mut Topics::default();
        assert_eq!(inspect(topics, b"not json", Some("/t"), Some("/seq")), Inspection::default());
        assert_eq!(inspect(topics, br#"{"seq":-1}"#, None, Some("/seq")).sequence, None);
    }

    #[test]
    fn a_repeated_topic_is_shared_not_allocated_again() {
        let topics = &mut Topics::default();
        let first = inspect(topics, br#"{"s":"AAPL"}"#, Some("/s"), None).topic.expect("a topic");
        let second = inspect(topics, br#"{"s":"AAPL"}"#, Some("/s"), None).topic.expect("a topic");
        assert!(Arc::ptr_eq(&first, &second));
    }
}
