//! A subscriber's inbox: the bounded queue that every feed it wants pushes into.
//!
//! Connection actors push their batches straight into the inboxes of the
//! subscribers that want them (found in the router's published table, see
//! [`crate::router::FeedRoutes`]); the router is not on this path. An inbox
//! rings its subscriber (sends it one [`Deliver`]) only when it is idle: while
//! a `Deliver` is on its way or held, what arrives from any feed waits here,
//! and the next `Deliver` takes all of it at once. So a subscriber is woken
//! once for everything that arrived since it last ran, whatever the number of
//! feeds, and a sink writes all of it in one go.
//!
//! The bound is `capacity` messages waiting (the batch the subscriber holds,
//! or the one rung for and on its way to it, is not counted), with the
//! subscriber's overflow policy: drop the oldest,
//! drop the newest (each drop counted), or backpressure, which closes the
//! [`FlowGate`] of every feed that pushes into a full inbox until it has
//! drained to half; or conflate (`conflate.rs`): while the subscriber is
//! behind, only the latest message per key waits. Completion needs no
//! message back: the `Deliver` settles its count here when the subscriber
//! drops it.

mod conflate;
pub(crate) mod delivery;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use serde::Serialize;

use crate::flow::FlowGate;
use crate::metrics::{self, SubscriberMetrics};
pub use conflate::{KeyPointer, KeyPointerError};
use delivery::{Deliver, FeedMessage, LatencySampler, SampleClock};

/// Messages a subscriber's queue holds by default.
pub const DEFAULT_QUEUE: usize = 1024;
/// What happens when a subscriber's queue is full.
///
/// Read from `"drop_oldest"`, `"drop_newest"`, `"backpressure"` or
/// `{ conflate = "/pointer" }` (see `inbox/conflate.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberOverflow {
    /// Drop the oldest queued message to make room (counted).
    #[default]
    DropOldest,
    /// Drop the message that does not fit (counted).
    DropNewest,
    /// Pause reading from the feeds that fill the queue until it drains. A
    /// feed shared with other subscribers then slows for all of them.
    Backpressure,
    /// While the queue is full, keep only the latest message per key (the
    /// scalar at this JSON pointer, per feed), keys in the order they first
    /// became pending; each message replaced is counted. Key-less messages
    /// wait as their own entries, and more keys than the queue holds push
    /// out the oldest (counted). Written `overflow = { conflate = "/symbol" }`.
    Conflate(KeyPointer),
}

impl SubscriberOverflow {
    /// The name used in the config and in metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
            Self::Backpressure => "backpressure",
            Self::Conflate(_) => "conflate",
        }
    }
}

/// The most messages one [`Deliver`] takes out of an inbox.
pub(crate) const MAX_DELIVER_BATCH: usize = 1024;

/// The router's note that an inbox found its subscriber's actor gone.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct InboxGone {
    /// The subscription the inbox belongs to.
    pub subscription: u64,
}

/// A feed segment's latency sampler and its oldest message's arrival.
pub(crate) type Timing = (Arc<LatencySampler>, std::time::Instant);

/// Messages that one push of one feed left waiting, and how to time them.
pub(crate) struct Segment {
    /// The delivery latency of this feed to this subscriber.
    pub latency: Arc<LatencySampler>,
    /// The messages, oldest first.
    pub messages: Vec<FeedMessage>,
}

/// What changes under the inbox's lock.
#[derive(Default)]
struct InboxState {
    /// Waiting messages, oldest first, in segments as they were pushed.
    queue: VecDeque<Segment>,
    /// Messages in `queue`.
    queued: usize,
    /// True while a `Deliver` is on its way to the subscriber or held by it:
    /// pushes then only queue, and the `Deliver`'s drop rings again.
    ringing: bool,
    /// Messages in the batch the subscriber holds (0 when it holds none).
    outstanding: usize,
    /// Gates this inbox holds closed (backpressure), one entry each.
    closed_gates: Vec<Arc<FlowGate>>,
    /// What this inbox last added to its depth gauge, which inboxes with a
    /// shared label add up.
    reported_depth: usize,
    /// Conflation only: the entries waiting while the subscriber is behind
    /// (then `queue` is empty); `None` while it keeps up.
    pending: Option<conflate::Pending>,
    /// Set once the subscription ended (unsubscribed, or its actor gone):
    /// nothing is queued any more.
    closed: bool,
    /// Set with `closed` when the subscriber's actor was found gone (not unsubscribed).
    gone: bool,
    /// The emptied timings vector of the last `Deliver`, for the next one
    /// (only one `Deliver` is out at a time, so one spare is enough).
    spare_timings: Vec<Timing>,
    /// Where `Deliver`s go; let go of when the inbox closes, so that a feed
    /// still holding the inbox (until it next reads the table) does not
    /// keep the subscriber's actor alive.
    recipient: Option<Recipient<Deliver>>,
}

impl InboxState {
    /// Messages that count against the bound: those queued, less the batch
    /// already rung for and not yet taken (up to [`MAX_DELIVER_BATCH`]), which is on
    /// its way to the subscriber as a held batch would be.
    fn waiting(&self) -> usize {
        if self.ringing && self.outstanding == 0 {
            self.queued.saturating_sub(MAX_DELIVER_BATCH)
        } else {
            self.queued
        }
    }
}

/// The bounded queue of one subscriber, shared by the feeds that fill it.
pub(crate) struct Inbox {
    /// The subscription's number in the router.
    id: u64,
    /// The subscriber's name, for logs.
    name: String,
    /// Messages that may wait.
    capacity: usize,
    /// What a full inbox does.
    overflow: SubscriberOverflow,
    /// Told once when the subscriber's actor is found gone, so that the
    /// table stops naming this inbox.
    router: Option<Recipient<InboxGone>>,
    metrics: SubscriberMetrics,
    /// Delivery latency per feed, resolved on first use, with the count of
    /// metric removals when they were: after a removal (a feed's series
    /// left `/metrics`) they are resolved again, so that a feed added anew
    /// under the same name is counted where `/metrics` shows it.
    latency: Mutex<(u64, LatencySamplers)>,
    /// When the next latency sample is due, for all feeds at once.
    sample_clock: SampleClock,
    state: Mutex<InboxState>,
}

/// The delivery-latency samplers of one subscriber, by feed.
type LatencySamplers = HashMap<Arc<str>, Arc<LatencySampler>>;

impl Inbox {
    /// An empty inbox for subscription `id`.
    pub(crate) fn new(
        id: u64,
        name: String,
        label: String,
        capacity: usize,
        overflow: SubscriberOverflow,
        recipient: Recipient<Deliver>,
        router: Option<Recipient<InboxGone>>,
    ) -> Arc<Self> {
        Arc::new(Inbox {
            id,
            name,
            capacity: capacity.max(1),
            overflow,
            router,
            metrics: SubscriberMetrics::new(label),
            latency: Mutex::new((metrics::removals(), HashMap::new())),
            sample_clock: SampleClock::default(),
            state: Mutex::new(InboxState { recipient: Some(recipient), ..InboxState::default() }),
        })
    }

    /// The subscriber's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Removes this subscriber's series from `/metrics`, unless its label is
    /// shared (every `/subscribe` client reports as `websocket`).
    pub(crate) fn forget_metrics(&self) {
        if self.metrics.label == self.name {
            metrics::remove_subscriber(&self.name);
        }
    }

    /// The delivery-latency sampler of `feed` for this subscriber.
    pub(crate) fn latency_for(&self, feed: &Arc<str>) -> Arc<LatencySampler> {
        let mut guard = lock(&self.latency);
        let (resolved_at, samplers) = &mut *guard;
        let removals = metrics::removals();
        if *resolved_at != removals {
            samplers.clear();
            *resolved_at = removals;
        }
        samplers
            .entry(feed.clone())
            .or_insert_with(|| {
                Arc::new(LatencySampler::new(metrics::delivery_latency(feed, &self.metrics.label)))
            })
            .clone()
    }

    /// When this subscriber's next latency sample is due.
    pub(crate) fn sample_clock(&self) -> &SampleClock {
        &self.sample_clock
    }

    /// Messages queued or held by the subscriber, not yet handled.
    pub(crate) fn in_flight(&self) -> usize {
        let state = lock(&self.state);
        state.queued + state.outstanding
    }

    /// Queues a batch of one feed by the overflow policy and rings the
    /// subscriber if it is idle; a backpressure inbox over its bound closes `gate`.
    pub(crate) fn push(
        self: &Arc<Self>,
        mut batch: Vec<FeedMessage>,
        latency: &Arc<LatencySampler>,
        gate: &Arc<FlowGate>,
    ) {
        if batch.is_empty() {
            return;
        }
        let ring = {
            let mut state = lock(&self.state);
            if state.closed {
                // A table published before the subscription ended: its loss is counted.
                let counter = if state.gone {
                    &self.metrics.dropped_gone
                } else {
                    &self.metrics.dropped_unsubscribed
                };
                counter.increment(batch.len() as u64);
                return;
            }
            self.make_room(&mut state, &mut batch, latency, gate);
            if !batch.is_empty() {
                state.queued += batch.len();
                state.queue.push_back(Segment { latency: latency.clone(), messages: batch });
            }
            self.report_depth(&mut state);
            let ring = !state.ringing && state.queued > 0;
            state.ringing |= ring;
            ring
        };
        if ring {
            self.ring();
        }
    }

    /// Applies the overflow policy to a batch about to be queued.
    fn make_room(
        &self,
        state: &mut InboxState,
        batch: &mut Vec<FeedMessage>,
        latency: &Arc<LatencySampler>,
        gate: &Arc<FlowGate>,
    ) {
        match &self.overflow {
            SubscriberOverflow::DropNewest => {
                let room = self.capacity.saturating_sub(state.waiting());
                if batch.len() > room {
                    self.metrics.dropped_newest.increment((batch.len() - room) as u64);
                    batch.truncate(room);
                }
            }
            SubscriberOverflow::DropOldest => {
                if batch.len() > self.capacity {
                    let excess = batch.len() - self.capacity;
                    self.metrics.dropped_oldest.increment(excess as u64);
                    batch.drain(..excess);
                }
                let excess = (state.waiting() + batch.len()).saturating_sub(self.capacity);
                if excess > 0 {
                    self.metrics.dropped_oldest.increment(excess as u64);
                    drop_front(state, excess);
                }
            }
            SubscriberOverflow::Backpressure => {
                // What is in flight still arrives after the gate closes: none of it is dropped.
                let over = state.waiting() + batch.len() > self.capacity;
                if over && !state.closed_gates.iter().any(|closed| Arc::ptr_eq(closed, gate)) {
                    gate.close();
                    state.closed_gates.push(gate.clone());
                }
            }
            SubscriberOverflow::Conflate(pointer) => {
                conflate::make_room(state, batch, latency, pointer, self.capacity, &self.metrics);
            }
        }
    }

    /// Sends the subscriber a `Deliver` (it must hold none and none be on its way).
    fn ring(self: &Arc<Self>) {
        let gone = {
            let state = lock(&self.state);
            let Some(recipient) = &state.recipient else { return };
            match recipient.try_send(Deliver::new(self.clone())) {
                Ok(()) => false,
                // Its mailbox is busy with other messages: queue behind them.
                Err(SendError::Full(deliver)) => {
                    recipient.do_send(deliver);
                    false
                }
                Err(SendError::Closed(deliver)) => {
                    deliver.disarm();
                    true
                }
            }
        };
        if gone {
            self.subscriber_gone();
        }
    }

    /// Takes the next batch for a `Deliver`: the oldest waiting segments, from
    /// any feeds, as long as they fit whole in [`MAX_DELIVER_BATCH`] messages (a
    /// larger first one is cut), with each segment's sampler and oldest arrival.
    pub(crate) fn take_batch(&self, messages: &mut Vec<FeedMessage>, timings: &mut Vec<Timing>) {
        let mut state = lock(&self.state);
        if timings.capacity() == 0 {
            *timings = std::mem::take(&mut state.spare_timings);
        }
        conflate::take(&mut state, messages, timings, MAX_DELIVER_BATCH);
        while messages.len() < MAX_DELIVER_BATCH {
            let room = MAX_DELIVER_BATCH - messages.len();
            let Some(front) = state.queue.front() else { break };
            if front.messages.len() > room && !messages.is_empty() {
                // Segments are taken whole (splitting one would copy it again
                // for every batch that follows); this one starts the next batch.
                break;
            }
            let Some(Segment { latency, messages: mut taken }) = state.queue.pop_front() else {
                break;
            };
            if taken.len() > room {
                let rest = taken.split_off(room);
                state.queue.push_front(Segment { latency: latency.clone(), messages: rest });
            }
            if let Some(first) = taken.first() {
                timings.push((latency, first.received));
            }
            if messages.is_empty() {
                *messages = taken;
            } else {
                messages.append(&mut taken);
                delivery::recycle(taken);
            }
        }
        state.queued -= messages.len();
        state.outstanding = messages.len();
        if state.queued <= self.capacity / 2 {
            for gate in state.closed_gates.drain(..) {
                gate.open();
            }
        }
        self.report_depth(&mut state);
    }

    /// The subscriber is done with the batch it held: counts it, keeps the
    /// emptied `timings` for the next batch, and rings again if more is waiting.
    pub(crate) fn finished(self: &Arc<Self>, mut timings: Vec<Timing>) {
        let ring = {
            let mut state = lock(&self.state);
            timings.clear();
            state.spare_timings = timings;
            self.metrics.delivered.increment(state.outstanding as u64);
            state.outstanding = 0;
            let ring = !state.closed && state.queued > 0;
            state.ringing = ring;
            ring
        };
        if ring {
            self.ring();
        }
    }

    /// The subscriber's actor is gone: what waits is lost and counted, the
    /// gates it held open, and the router is told to forget the inbox.
    pub(crate) fn subscriber_gone(&self) {
        let lost = self.close(true);
        if let Some(lost) = lost {
            tracing::warn!(subscriber = %self.name, lost, "subscriber stopped; removed");
            if let Some(router) = &self.router {
                router.do_send(InboxGone { subscription: self.id });
            }
        }
    }

    /// The subscriber asked to go: what waits is dropped and counted, the gates it held open.
    pub(crate) fn unsubscribed(&self) {
        self.close(false);
    }

    /// Ends the inbox once; returns how many waiting messages were lost (None if it had ended).
    fn close(&self, gone: bool) -> Option<usize> {
        let mut state = lock(&self.state);
        if state.closed {
            return None;
        }
        state.closed = true;
        state.gone = gone;
        let counter =
            if gone { &self.metrics.dropped_gone } else { &self.metrics.dropped_unsubscribed };
        state.recipient = None;
        // The batch the subscriber holds is its own: counted when it lets go.
        let lost = state.queued;
        counter.increment(lost as u64);
        state.queue.clear();
        state.pending = None;
        state.queued = 0;
        state.ringing = false;
        for gate in state.closed_gates.drain(..) {
            gate.open();
        }
        self.report_depth(&mut state);
        Some(lost)
    }

    /// True while the subscriber's actor can still receive.
    pub(crate) fn subscriber_alive(&self) -> bool {
        lock(&self.state).recipient.as_ref().is_some_and(Recipient::connected)
    }

    /// Brings the depth gauge up to date by the change since the last report,
    /// so that inboxes sharing a label add up instead of overwriting.
    fn report_depth(&self, state: &mut InboxState) {
        let depth = state.queued;
        if depth > state.reported_depth {
            self.metrics.depth.increment((depth - state.reported_depth) as f64);
        } else if depth < state.reported_depth {
            self.metrics.depth.decrement((state.reported_depth - depth) as f64);
        }
        state.reported_depth = depth;
    }
}

/// Drops the `count` oldest queued messages.
fn drop_front(state: &mut InboxState, mut count: usize) {
    while count > 0 {
        let Some(front) = state.queue.front_mut() else { break };
        let taken = count.min(front.messages.len());
        if taken == front.messages.len() {
            state.queue.pop_front();
        } else {
            front.messages.drain(..taken);
        }
        state.queued -= taken;
        count -= taken;
    }
}

/// Locks `mutex`, through poisoning: every critical section here leaves the
/// state consistent before anything that can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
