//! What subscribers receive: routed messages in batches.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering};

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
    pub(crate) fn new(
        messages: Vec<FeedMessage>,
        latency: Arc<LatencySampler>,
        done: DoneNotice,
    ) -> Self {
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

/// Samples delivery latency into a histogram at most once per
/// [`LatencySampler::INTERVAL`]: each sample is the slowest batch seen since
/// the last one. At millions of messages a second a sample per batch (let
/// alone per message) would cost more than the delivery itself, and the
/// exporter keeps every sample until its upkeep folds them in.
#[derive(Debug)]
pub struct LatencySampler {
    histogram: Histogram,
    /// The slowest batch since the last sample, in nanoseconds.
    slowest: AtomicU64,
    /// When the last sample was taken, in nanoseconds since `epoch`.
    last_sample: AtomicU64,
    epoch: Instant,
}

impl LatencySampler {
    /// The shortest time between two samples.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

    /// A sampler feeding `histogram`.
    pub fn new(histogram: Histogram) -> Self {
        LatencySampler {
            histogram,
            slowest: AtomicU64::new(0),
            last_sample: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Notes one batch's latency; records the slowest so far when the interval has passed.
    pub fn observe(&self, latency: std::time::Duration, now: Instant) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.slowest.fetch_max(nanos, Ordering::Relaxed);
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_sample.load(Ordering::Relaxed);
        let due = elapsed.saturating_sub(last) >= Self::INTERVAL.as_nanos() as u64 || last == 0;
        if due
            && self
                .last_sample
                .compare_exchange(last, elapsed.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let slowest = self.slowest.swap(0, Ordering::Relaxed);
            self.histogram.record(slowest as f64 / 1e9);
        }
    }
}

/// Records delivery latency, and tells the router, when the subscriber has
/// finished with a batch.
struct DeliveryReceipt {
    latency: Arc<LatencySampler>,
    /// When the batch's first (oldest) message arrived.
    oldest: Option<Instant>,
    done: Option<DoneNotice>,
}

impl Drop for DeliveryReceipt {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.router.do_send(Delivered { subscription: done.subscription });
        }
        // The batch's latency is its oldest message's, the worst in it.
        if let Some(oldest) = self.oldest {
            let now = Instant::now();
            self.latency.observe(now.saturating_duration_since(oldest), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_sampler_records_the_slowest_batch_once_per_interval() {
        crate::metrics::install().expect("recorder");
        let histogram = crate::metrics::delivery_latency("sampler-feed", "sampler-sub");
        let sampler = LatencySampler::new(histogram);
        let start = Instant::now();
        sampler.observe(Duration::from_micros(5), start);
        // Within the interval: noted, not recorded.
        sampler.observe(Duration::from_micros(900), start + Duration::from_micros(100));
        sampler.observe(Duration::from_micros(20), start + Duration::from_micros(200));
        // The next interval records the slowest of those.
        sampler.observe(Duration::from_micros(30), start + Duration::from_millis(2));
        let rendered = crate::metrics::install().expect("recorder").render();
        let count = rendered
            .lines()
            .find(|line| {
                line.starts_with("feedvisor_delivery_latency_seconds_count")
                    && line.contains("sampler-feed")
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok());
        assert_eq!(count, Some(2.0), "{rendered}");
        let sum = rendered
            .lines()
            .find(|line| {
                line.starts_with("feedvisor_delivery_latency_seconds_sum")
                    && line.contains("sampler-feed")
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .expect("a sum");
        assert!(
            (sum - 0.000_905).abs() < 1e-9,
            "first sample 5 µs, then the slowest 900 µs: {sum}"
        );
    }
}
