//! What subscribers receive: routed messages in batches.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering};

use ::metrics::{Gauge, Histogram};
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
    pub(crate) fn new(
        messages: Vec<FeedMessage>,
        latency: Histogram,
        in_flight: Arc<InFlight>,
    ) -> Self {
        in_flight.add(messages.len() as u64);
        let receipt = DeliveryReceipt {
            latency,
            arrivals: arrivals(&messages),
            in_flight,
            count: messages.len() as u64,
        };
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

/// Messages handed to one subscriber and not yet handled.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicU64,
    gauge: Gauge,
}

impl InFlight {
    /// A counter at zero, mirrored into `gauge`.
    pub fn new(gauge: Gauge) -> Self {
        gauge.set(0.0);
        InFlight { count: AtomicU64::new(0), gauge }
    }

    /// Messages in flight now.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn add(&self, messages: u64) {
        self.count.fetch_add(messages, Ordering::Relaxed);
        self.gauge.increment(messages as f64);
    }

    fn done(&self, messages: u64) {
        self.count.fetch_sub(messages, Ordering::Relaxed);
        self.gauge.decrement(messages as f64);
    }
}

/// Records delivery latency, and the end of the messages' flight, when the
/// subscriber has finished with a batch.
struct DeliveryReceipt {
    latency: Histogram,
    arrivals: Vec<(Instant, usize)>,
    in_flight: Arc<InFlight>,
    count: u64,
}

impl Drop for DeliveryReceipt {
    fn drop(&mut self) {
        self.in_flight.done(self.count);
        let now = Instant::now();
        for (at, count) in self.arrivals.drain(..) {
            self.latency.record_many(now.saturating_duration_since(at).as_secs_f64(), count);
        }
    }
}
