//! What subscribers receive: routed messages in batches taken from their inbox.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering};

use ::metrics::Histogram;
use actix::Message as ActixMessage;
use bytes::Bytes;

use crate::inbox::{Inbox, Timing};

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
    /// On a sequenced feed, the message's sequence number.
    pub sequence: Option<u64>,
    /// In stream mode: where this piece belongs. `None` in message mode.
    pub chunk: Option<Chunk>,
    /// Set on a discontinuity event, which carries it as a JSON payload too
    /// ([`FeedMessage::event`]); `None` on every data message.
    pub discontinuity: Option<Arc<crate::Discontinuity>>,
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
    /// A text message of feed `feed` that arrived now, for tests.
    #[cfg(test)]
    pub(crate) fn text_for_test(feed: &str, payload: &str) -> Self {
        FeedMessage {
            feed: feed.into(),
            topic: None,
            kind: DataKind::Text,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            received_at: SystemTime::now(),
            received: Instant::now(),
            gap_before: None,
            sequence: None,
            chunk: None,
            discontinuity: None,
        }
    }

    /// The payload as text, for text messages.
    pub fn text(&self) -> Option<&str> {
        match self.kind {
            DataKind::Text => std::str::from_utf8(&self.payload).ok(),
            DataKind::Binary => None,
        }
    }
}

/// A batch of messages for one subscriber: everything that arrived for it
/// since its last batch (up to 1024 messages, `MAX_DELIVER_BATCH` in `inbox.rs`), from any number of feeds, each feed's messages in the order
/// the feed sent them.
///
/// A `Deliver` is a doorbell first: the messages are taken out of the
/// subscriber's inbox when the handler first asks for them
/// ([`Deliver::messages`] or [`Deliver::take`]), so that what arrived while
/// the `Deliver` waited in the mailbox comes along. A batch may then be empty
/// (the subscription ended meanwhile). When the subscriber is done with the
/// batch (the value is dropped, usually at the end of its handler), the
/// delivery latency of each feed's oldest message in it is recorded and the
/// inbox rings again if more has arrived: a subscriber holds at most one
/// batch at a time, and what arrives meanwhile waits in its bounded inbox. A
/// subscriber that keeps the value (until its output is written, say) slows
/// its own deliveries, never anyone else's.
pub struct Deliver {
    /// The inbox the messages come from and the count goes back to.
    inbox: Arc<Inbox>,
    /// The messages, once taken from the inbox.
    messages: Vec<FeedMessage>,
    /// Each feed segment's latency sampler and oldest arrival.
    timings: Vec<Timing>,
    /// Where the batch stands.
    stage: Stage,
    /// Sink tests: told when the batch is settled.
    #[cfg(test)]
    settled: Option<Box<dyn FnOnce() + Send>>,
}

/// Where a [`Deliver`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Rung, messages not taken yet.
    Ringing,
    /// Messages taken from the inbox.
    Taken,
    /// Never reached the subscriber: nothing to settle.
    Disarmed,
}

impl ActixMessage for Deliver {
    type Result = ();
}

impl Deliver {
    pub(crate) fn new(inbox: Arc<Inbox>) -> Self {
        Deliver {
            inbox,
            messages: Vec::new(),
            timings: Vec::new(),
            stage: Stage::Ringing,
            #[cfg(test)]
            settled: None,
        }
    }

    /// A batch already taken, for sink tests: `settled` runs when it is dropped.
    #[cfg(test)]
    pub(crate) fn taken_for_test(
        inbox: Arc<Inbox>,
        messages: Vec<FeedMessage>,
        settled: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Deliver {
            inbox,
            messages,
            timings: Vec::new(),
            stage: Stage::Taken,
            settled: Some(settled),
        }
    }

    fn fill(&mut self) {
        if self.stage == Stage::Ringing {
            self.stage = Stage::Taken;
            self.inbox.take_batch(&mut self.messages, &mut self.timings);
        }
    }

    /// The messages, oldest first per feed.
    pub fn messages(&mut self) -> &[FeedMessage] {
        self.fill();
        &self.messages
    }

    /// Takes the messages out (the batch is still settled when `self` is dropped).
    pub fn take(&mut self) -> Vec<FeedMessage> {
        self.fill();
        std::mem::take(&mut self.messages)
    }

    /// A `Deliver` that never reached its subscriber: nothing to settle.
    pub(crate) fn disarm(mut self) {
        self.stage = Stage::Disarmed;
    }
}

impl std::fmt::Debug for Deliver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliver")
            .field("subscriber", &self.inbox.name())
            .field("messages", &self.messages.len())
            .field("stage", &self.stage)
            .finish()
    }
}

impl Drop for Deliver {
    /// Settles the batch: records latency, counts it delivered, rings again if more waits.
    fn drop(&mut self) {
        match self.stage {
            Stage::Disarmed => return,
            // Dropped with its mailbox: the subscriber is gone.
            Stage::Ringing if !self.inbox.subscriber_alive() => {
                self.inbox.subscriber_gone();
                return;
            }
            // The handler never looked: the batch is handed over all the same.
            Stage::Ringing => self.fill(),
            Stage::Taken => {}
        }
        if !self.timings.is_empty() {
            let now = Instant::now();
            let due = self.inbox.sample_clock().due(now);
            for (sampler, oldest) in self.timings.drain(..) {
                sampler.note(now.saturating_duration_since(oldest));
                if due {
                    sampler.record();
                }
            }
        }
        self.inbox.finished(std::mem::take(&mut self.timings));
        recycle(std::mem::take(&mut self.messages));
        #[cfg(test)]
        if let Some(settled) = self.settled.take() {
            settled();
        }
    }
}

/// Batch vectors kept for reuse per thread, at most.
const SPARE_BATCHES: usize = 32;

thread_local! {
    /// Emptied batch vectors of this thread, for the next batch. A batch of
    /// a thousand messages is over a hundred KiB: allocating and freeing one
    /// per batch and subscriber made the allocator hand memory back to the
    /// kernel and fault it in again, which cost more than the copy.
    static SPARE: std::cell::RefCell<Vec<Vec<FeedMessage>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty vector for a batch of about `capacity` messages, reused when one is spare.
pub(crate) fn batch_vec(capacity: usize) -> Vec<FeedMessage> {
    let spare = SPARE.try_with(|spare| spare.borrow_mut().pop()).ok().flatten();
    match spare {
        Some(mut batch) => {
            batch.reserve(capacity);
            batch
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Empties a batch vector and keeps it for reuse (up to [`SPARE_BATCHES`]
/// per thread, none larger than a full batch); small ones are just freed.
pub(crate) fn recycle(mut batch: Vec<FeedMessage>) {
    batch.clear();
    let capacity = batch.capacity();
    if !(64..=crate::inbox::MAX_DELIVER_BATCH).contains(&capacity) {
        return;
    }
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_BATCHES {
            spare.push(batch);
        }
    });
}

/// When a subscriber's delivery latency is due for a sample: at most once
/// per [`SampleClock::INTERVAL`] for the whole subscriber, whatever the
/// number of feeds. At millions of messages a second a sample per batch (let
/// alone per message) would cost more than the delivery itself, and the
/// exporter keeps every sample until its upkeep folds them in; with a
/// thousand quiet feeds, a clock per feed would still sample nearly every
/// batch.
#[derive(Debug)]
pub(crate) struct SampleClock {
    /// When the last sample was taken, in nanoseconds since `epoch` (0: never).
    last_sample: AtomicU64,
    epoch: Instant,
}

impl Default for SampleClock {
    fn default() -> Self {
        SampleClock { last_sample: AtomicU64::new(0), epoch: Instant::now() }
    }
}

impl SampleClock {
    /// The shortest time between two samples of one subscriber.
    pub(crate) const INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

    /// True (to one caller) once the interval since the last sample has passed.
    pub(crate) fn due(&self, now: Instant) -> bool {
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_sample.load(Ordering::Relaxed);
        let due = elapsed.saturating_sub(last) >= Self::INTERVAL.as_nanos() as u64 || last == 0;
        due && self
            .last_sample
            .compare_exchange(last, elapsed.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The delivery latency of one feed to one subscriber: the slowest batch
/// seen since the last sample, recorded into the histogram when the
/// subscriber's [`SampleClock`] says a sample is due.
#[derive(Debug)]
pub(crate) struct LatencySampler {
    histogram: Histogram,
    /// The slowest batch since the last sample, in nanoseconds (0: none).
    slowest: AtomicU64,
}

impl LatencySampler {
    /// A sampler feeding `histogram`.
    pub(crate) fn new(histogram: Histogram) -> Self {
        LatencySampler { histogram, slowest: AtomicU64::new(0) }
    }

    /// Notes one batch's latency.
    pub(crate) fn note(&self, latency: std::time::Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.slowest.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Records the slowest batch noted since the last sample, if any.
    pub(crate) fn record(&self) {
        let slowest = self.slowest.swap(0, Ordering::Relaxed);
        if slowest > 0 {
            self.histogram.record(slowest as f64 / 1e9);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rendered_value(suffix: &str, feed: &str) -> Option<f64> {
        let rendered = crate::metrics::install().expect("recorder").render();
        let name = format!("feedvisor_delivery_latency_seconds_{suffix}");
        rendered
            .lines()
            .find(|line| line.starts_with(&name) && line.contains(feed))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
    }

    #[test]
    fn a_subscriber_samples_the_slowest_batch_of_each_feed_once_per_interval() {
        crate::metrics::install().expect("recorder");
        let clock = SampleClock::default();
        let a = LatencySampler::new(crate::metrics::delivery_latency("sampler-a", "sampler-sub"));
        let b = LatencySampler::new(crate::metrics::delivery_latency("sampler-b", "sampler-sub"));
        let start = Instant::now();
        // The first batch is sampled.
        a.note(Duration::from_micros(5));
        assert!(clock.due(start));
        a.record();
        // Within the interval: noted, not recorded, whichever feed.
        a.note(Duration::from_micros(900));
        b.note(Duration::from_micros(20));
        assert!(!clock.due(start + Duration::from_micros(100)));
        a.note(Duration::from_micros(20));
        assert!(!clock.due(start + Duration::from_micros(200)));
        // The next interval records the slowest of each feed.
        assert!(clock.due(start + Duration::from_millis(2)));
        a.record();
        b.record();
        // Nothing noted since: nothing recorded.
        b.record();
        assert_eq!(rendered_value("count", "sampler-a"), Some(2.0));
        assert_eq!(rendered_value("count", "sampler-b"), Some(1.0));
        let sum = rendered_value("sum", "sampler-a").expect("a sum");
        assert!((sum - 0.000_905).abs() < 1e-9, "first 5 µs, then the slowest 900 µs: {sum}");
    }
}
