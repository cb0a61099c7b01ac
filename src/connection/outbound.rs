//! Messages for the peer: on_open after every connect, then what waited in
//! the outbound queue, then sends as they come (queued while the feed is down).

use actix::prelude::*;
use serde::Serialize;

use feedvisor_transport_api::Outbound;

use super::queue::{payload_len, QueueError, Queued};
use super::FeedConnection;
use crate::status::FeedState;

/// Sends a text or binary message to the feed's peer (queued while it is down).
#[derive(Debug, Message)]
#[rtype(result = "Result<SendOutcome, SendError>")]
pub struct SendMessage {
    /// `Outbound::Text` or `Outbound::Binary`.
    pub message: Outbound,
}

/// What became of a message handed to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SendOutcome {
    /// Handed to the open connection.
    Sent,
    /// Waiting for the connection to come back; older messages were dropped to make room.
    Queued {
        /// How many older messages were dropped (`drop_oldest`), usually 0.
        dropped_oldest: usize,
    },
    /// Dropped: the queue was full and its policy is `drop_newest`.
    Dropped,
}

/// Why a message could not be sent or queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The outbound queue refused it.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The feed gave up reconnecting; nothing will be sent.
    #[error("the feed has failed and will not reconnect: nothing can be sent")]
    FeedFailed,
    /// Only text and binary messages can be sent.
    #[error("only text and binary messages can be sent")]
    NotData,
    /// No feed has that name.
    #[error("no feed named {0:?}")]
    UnknownFeed(String),
    /// The feed's actor is gone (the sidecar is shutting down).
    #[error("the feed is shutting down")]
    Unavailable,
}

impl FeedConnection {
    /// Hands a message to the open connection; false when there is none or it is gone.
    pub(super) fn send_now(&mut self, message: Outbound) -> bool {
        let Some(link) = &self.link else { return false };
        let counted = matches!(message, Outbound::Text(_) | Outbound::Binary(_));
        let size = payload_len(&message);
        if link.outbound.send(message).is_err() {
            return false;
        }
        if counted {
            self.metrics.messages_sent.increment(1);
            self.metrics.bytes_sent.increment(size);
        }
        true
    }

    /// Sends the on_open messages, `{{last_seq}}` filled in (0 before any was seen).
    pub(super) fn send_on_open(&mut self) {
        let last_seq = self.sequence.last().unwrap_or(0).to_string();
        for template in self.feed.on_open.clone() {
            let text = template.replace("{{last_seq}}", &last_seq);
            self.send_now(Outbound::text(text));
        }
    }

    /// Sends what waited in the queue, in order; whatever cannot go now waits again.
    pub(super) fn flush_queue(&mut self) {
        let waiting: Vec<Outbound> = self.queue.drain().collect();
        let mut waiting = waiting.into_iter();
        for message in waiting.by_ref() {
            if !self.send_now(message.clone()) {
                // The connection went away mid-flush: this one and the rest wait again.
                // They were all in the queue a moment ago, so they all fit.
                for message in std::iter::once(message).chain(waiting.by_ref()) {
                    let _ = self.queue.push(message);
                }
                break;
            }
        }
        self.queue_changed();
    }

    fn queue_changed(&self) {
        self.metrics.outbound_queue_depth.set(self.queue.len() as f64);
        self.shared.set_outbound_queued(self.queue.len());
    }

    fn enqueue(&mut self, message: Outbound) -> Result<SendOutcome, SendError> {
        let outcome = match self.queue.push(message) {
            Ok(Queued::Ok) => SendOutcome::Queued { dropped_oldest: 0 },
            Ok(Queued::DroppedOldest(dropped)) => {
                self.metrics.outbound_dropped.increment(dropped as u64);
                SendOutcome::Queued { dropped_oldest: dropped }
            }
            Ok(Queued::DroppedNewest) => {
                self.metrics.outbound_dropped.increment(1);
                SendOutcome::Dropped
            }
            Err(error) => {
                self.metrics.outbound_dropped.increment(1);
                tracing::warn!(feed = %self.name, %error, "outbound message refused");
                return Err(error.into());
            }
        };
        self.queue_changed();
        Ok(outcome)
    }
}

impl Handler<SendMessage> for FeedConnection {
    type Result = Result<SendOutcome, SendError>;

    fn handle(&mut self, send: SendMessage, _: &mut Context<Self>) -> Self::Result {
        if !matches!(send.message, Outbound::Text(_) | Outbound::Binary(_)) {
            return Err(SendError::NotData);
        }
        if self.shared.state() == FeedState::Failed {
            return Err(SendError::FeedFailed);
        }
        // Behind anything still queued, order is kept by queueing too.
        if self.queue.is_empty() && self.send_now(send.message.clone()) {
            return Ok(SendOutcome::Sent);
        }
        self.enqueue(send.message)
    }
}
