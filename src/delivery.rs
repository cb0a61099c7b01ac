//! What subscribers receive: routed messages in batches.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ::metrics::Histogram;
use actix::{Message as ActixMessage, Recipient};
use bytes::Bytes;

pub use feedvisor_transport_api::DataKind;

/// One inbound message, with where it came from and when.
///
/// Cloning is cheap: the payload and names are shared, not copied.
#[derive(Debug, Clone)]
pub struct FeedMessage {
    /// The feed that delivered it.
    pub feed: Arc<str>,
    /// The topic taken from the message by the feed's JSON pointer, if any.
    pub topic: Option<Arc<str>>,
    /// Text or binary.
    pub kind: DataKind,
    /// The whole message; valid UTF-8 when `kind` is text.
    pub payload: Bytes,
    /// Wall-clock time of arrival.
    pub received_at: SystemTime,
    /// Monotonic time of arrival, for latency.
    pub received: Instant,
    /// On a sequenced feed, the first message after a gap: how many were missed.
    pub gap_before: Option<u64>,
    /// In stream mode: where this piece belongs. `None` in message mode.
    pub chunk: Option<Chunk>,
}

/// A piece of a message delivered in stream mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Chunk {
    /// The message it belongs to, numbered from 1 for the feed's life.
    pub message: u64,
    /// Where its bytes start within the message.
    pub offset: u64,
    /// True on the message's last piece.
    pub last: bool,
    /// True when the message was cut short (the connection ended mid-message):
    /// an empty last piece that says the message is incomplete.
    pub aborted: bool,
}

impl FeedMessage {
    /// The payload as text, for text messages.
    pub fn text(&self) -> Option<&str> {
        match self.kind {
            DataKind::Text => std::str::from_utf8(&self.payload).ok(),
            DataKind::Binary => None,
        }
    }
}

/// A batch of messages for one subscriber, in the order the feed sent them.
///
/// All messages of a batch come from one feed. When the subscriber is done
/// with the batch (the value is dropped, usually at the end of its handler),
/// the delivery latency of the batch (of its oldest message) is recorded and the router is told,
/// so it sends the next batch: a subscriber holds at most one batch at a
/// time, and what arrives meanwhile waits in its bounded queue. A subscriber
/// that keeps the value (until its output is written, say) slows its own
/// deliveries, never anyone else's.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The messages, oldest first.
    pub messages: Vec<FeedMessage>,
    /// Records latency and tells the router, on drop.
    receipt: DeliveryReceipt,
}

impl Deliver {
    pub(crate) fn new(messages: Vec<FeedMessage>, latency: Histogram, done: DoneNotice) -> Self {
        let oldest = messages.first().map(|message| message.received);
        let receipt = DeliveryReceipt { latency, oldest, done: Some(done) };
        Deliver { messages, receipt }
    }

    /// Takes the messages out (the latency is still recorded when `self` is dropped).
    pub fn take(&mut self) -> Vec<FeedMessage> {
        std::mem::take(&mut self.messages)
    }

    /// A batch that never reached its subscriber: nothing to record, no one to tell.
    pub(crate) fn disarm(mut self) -> Vec<FeedMessage> {
        self.receipt.done = None;
        self.receipt.oldest = None;
        self.take()
    }
}

/// The router's note that a subscriber finished a batch.
#[derive(ActixMessage, Debug)]
#[rtype(result = "()")]
pub(crate) struct Delivered {
    /// Which subscription.
    pub subscription: u64,
}

/// Who to tell when a batch is done.
pub(crate) struct DoneNotice {
    pub router: Recipient<Delivered>,
    pub subscription: u64,
}

/// Records delivery latency, and tells the router, when the subscriber has
/// finished with a batch.
struct DeliveryReceipt {
    latency: Histogram,
    /// When the batch's first (oldest) message arrived.
    oldest: Option<Instant>,
    done: Option<DoneNotice>,
}

impl Drop for DeliveryReceipt {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.router.do_send(Delivered { subscription: done.subscription });
        }
        // One sample per batch: the latency of its oldest message, the worst
        // in it. A sample per message would cost more than the rest of the
        // delivery path (the exporter stores each one until upkeep).
        if let Some(oldest) = self.oldest {
            self.latency.record(Instant::now().saturating_duration_since(oldest).as_secs_f64());
        }
    }
}
