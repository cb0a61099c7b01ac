//! What subscribers receive: routed messages in batches.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ::metrics::Histogram;
use actix::Message as ActixMessage;
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
/// with the batch (the value is dropped at the end of its handler), the
/// delivery latency of every message is recorded.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The messages, oldest first.
    pub messages: Vec<FeedMessage>,
    /// Records latency on drop.
    _receipt: DeliveryReceipt,
}

impl Deliver {
    pub(crate) fn new(messages: Vec<FeedMessage>, latency: Histogram) -> Self {
        let receipt = DeliveryReceipt { latency, arrivals: arrivals(&messages) };
        Deliver { messages, _receipt: receipt }
    }

    /// Takes the messages out (the latency is still recorded when `self` is dropped).
    pub fn take(&mut self) -> Vec<FeedMessage> {
        std::mem::take(&mut self.messages)
    }
}

/// Arrival instants with their message counts (a batch usually shares one).
fn arrivals(messages: &[FeedMessage]) -> Vec<(Instant, usize)> {
    let mut arrivals: Vec<(Instant, usize)> = Vec::with_capacity(1);
    for message in messages {
        match arrivals.last_mut() {
            Some((at, count)) if *at == message.received => *count += 1,
            _ => arrivals.push((message.received, 1)),
        }
    }
    arrivals
}

/// Records delivery latency when the subscriber has finished with a batch.
struct DeliveryReceipt {
    latency: Histogram,
    arrivals: Vec<(Instant, usize)>,
}

impl Drop for DeliveryReceipt {
    fn drop(&mut self) {
        let now = Instant::now();
        for (at, count) in self.arrivals.drain(..) {
            self.latency.record_many(now.saturating_duration_since(at).as_secs_f64(), count);
        }
    }
}
