//! Redundant legs: one feed, several connection actors (`urls`, each leg its
//! own actor with its own reconnects), one stream for subscribers.
//!
//! Every actor of a feed with legs holds a [`LegSeat`] in the feed's one
//! [`FeedLegs`]; all of them run on the feed's worker thread, and an actor
//! pushes what its seat hands it into the inboxes in the same handler call,
//! so subscribers see the order the seat decided.
//!
//! With `sequence`, the first copy of each number wins and later copies are
//! dropped. A leg that runs ahead of what was delivered does not deliver out
//! of order while another open leg can still fill the gap (its own last
//! number is at or below the last one delivered): its messages are held,
//! at most `gap_fill_max` of them and for at most `gap_fill_wait`, and
//! released in order as soon as the gap is filled. When no leg can fill it
//! or the bound is reached, they are delivered with the gap announced (a
//! `gap` discontinuity event and `gap_before`).
//!
//! Without `sequence`, a copy is recognised by a hash of its payload within
//! `dedup_window` (a time or a count, and at most [`MAX_DEDUP_ENTRIES`]
//! hashes): the n-th arrival of a payload on any one member is delivered
//! once, so a payload the upstream really sends twice is delivered twice.
//! When a leg opens while no other is open and something was delivered
//! before, the next message is preceded by a `reconnect` discontinuity.
//!
//! A leg being rotated has two members for a while, the old connection and
//! the new: both are deduplicated like any two legs, so the switch loses
//! and repeats nothing that either of them received.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use metrics::Counter;

use super::FeedConnection;
use crate::config::{DedupWindow, FeedConfig, MAX_DEDUP_ENTRIES};
use crate::continuity::{Discontinuity, DiscontinuityReason};
use crate::inbox::delivery::FeedMessage;
use crate::metrics::legs::{ContinuityMetrics, LegMetrics};
use crate::status::{FeedState, StatusCell};

/// Most members a feed's legs have at once (legs and the replacements of
/// legs being rotated); a member beyond shares the last slot's counts.
const MEMBER_SLOTS: usize = 16;
/// Delivered numbers remembered with their arrival, to measure how far a
/// later copy lags behind.
const RECENT_ARRIVALS: usize = 8192;
/// A number this far below the last one delivered is a sequence reset, not a late copy.
pub(crate) const RESET_DISTANCE: u64 = 100_000;

/// Whether `seq`, seen after `previous` on the same stream, starts the numbering again:
/// far below it, or back at 0 or 1 from above.
pub(crate) fn is_reset(previous: u64, seq: u64) -> bool {
    seq < previous && (previous - seq > RESET_DISTANCE || (seq <= 1 && previous > seq + 1))
}

/// One member (a connection actor of one leg).
#[derive(Debug)]
struct Member {
    incarnation: u64,
    /// Where its counts are kept in [`Seen::per_member`].
    slot: usize,
    /// Its status, to tell whether its connection is open; `None` counts as open.
    status: Option<Arc<StatusCell>>,
    /// The last number on its own stream.
    last_seen: Option<u64>,
}

impl Member {
    fn is_open(&self) -> bool {
        self.status.as_ref().is_none_or(|status| status.state().is_connected())
    }
}

/// A message held while a gap may still be filled.
#[derive(Debug)]
struct Held {
    message: FeedMessage,
    arrived: Instant,
    /// The leg that received it, credited when it is delivered.
    won: Counter,
}

/// A payload hash within the window.
#[derive(Debug)]
struct Seen {
    arrived: Instant,
    /// How many times it was delivered.
    delivered: u32,
    /// How many times each member received it.
    per_member: [u32; MEMBER_SLOTS],
}

/// What [`FeedLegs`] guards.
#[derive(Debug, Default)]
struct LegsState {
    members: Vec<Member>,
    /// The last number delivered.
    last: Option<u64>,
    /// Numbers ahead of `last + 1`, waiting for the gap before them.
    held: BTreeMap<u64, Held>,
    /// When the current hold began.
    held_since: Option<Instant>,
    /// Delivered numbers and their arrival, oldest first.
    recent: VecDeque<(u64, Instant)>,
    /// Without sequence numbers: payload hashes within the window.
    hashes: HashMap<u64, Seen>,
    /// The same hashes in arrival order, for eviction.
    order: VecDeque<(u64, Instant)>,
    /// True once anything was delivered.
    delivered_any: bool,
    /// Announced before the next message delivered.
    pending: Option<Discontinuity>,
    /// The last number delivered before the latest sequence reset: a
    /// member's own stream going back from at most this far is that reset
    /// reaching it, not a new one.
    reset_from: Option<u64>,
}

impl LegsState {
    /// `seq`, which arrived at `arrived`, is delivered: it is the last number
    /// now, and its arrival is remembered for the lag of later copies.
    fn mark_delivered(&mut self, seq: u64, arrived: Instant) {
        self.last = Some(seq);
        if self.recent.len() == RECENT_ARRIVALS {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, arrived));
    }
}

/// What a leg's actor counts into, handed to its seat with each message.
pub(crate) struct Counters<'a> {
    /// The leg's own series.
    pub leg: &'a LegMetrics,
    /// The feed's discontinuity counters.
    pub continuity: &'a ContinuityMetrics,
    /// `feedvisor_sequence_gaps_total`.
    pub gaps: &'a Counter,
    /// `feedvisor_sequence_missed_total`.
    pub missed: &'a Counter,
}

/// The shared state of one feed's legs. See the module docs.
#[derive(Debug)]
pub(crate) struct FeedLegs {
    feed: String,
    sequenced: bool,
    window: DedupWindow,
    gap_fill_wait: Duration,
    gap_fill_max: usize,
    state: Mutex<LegsState>,
}

impl FeedLegs {
    /// The legs of `config`, which has `urls`; `None` for a feed without legs.
    pub(crate) fn for_feed(config: &FeedConfig) -> Option<Arc<Self>> {
        let legs = config.redundancy.as_ref()?;
        Some(Arc::new(FeedLegs {
            feed: config.name.clone(),
            sequenced: config.sequence.is_some(),
            window: legs.dedup_window,
            gap_fill_wait: legs.gap_fill_wait,
            gap_fill_max: legs.gap_fill_max,
            state: Mutex::new(LegsState::default()),
        }))
    }

    fn state(&self) -> MutexGuard<'_, LegsState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether these legs can carry on for `config` (a replacement with the
    /// same way of telling copies apart joins them; others start afresh).
    pub(crate) fn continues(&self, config: &FeedConfig) -> bool {
        config.redundancy.as_ref().is_some_and(|legs| {
            (config.sequence.is_some(), legs.dedup_window, legs.gap_fill_wait, legs.gap_fill_max)
                == (self.sequenced, self.window, self.gap_fill_wait, self.gap_fill_max)
        })
    }

    /// Seats actor `incarnation` of leg `leg`, whose status is `status`.
    pub(crate) fn join(
        self: &Arc<Self>,
        incarnation: u64,
        leg: usize,
        status: Option<Arc<StatusCell>>,
    ) -> LegSeat {
        let mut state = self.state();
        let slot = (0..MEMBER_SLOTS)
            .find(|slot| state.members.iter().all(|member| member.slot != *slot))
            .unwrap_or(MEMBER_SLOTS - 1);
        // A new member starts counting from what is in the window now.
        for seen in state.hashes.values_mut() {
            seen.per_member[slot] = 0;
        }
        state.members.push(Member { incarnation, slot, status, last_seen: None });
        LegSeat { legs: self.clone(), incarnation, leg }
    }
}

/// What [`LegSeat::offer`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Delivered (with whatever it released).
    Delivered,
    /// A copy of what was delivered already: dropped.
    Duplicate,
    /// Held for a gap before it; the hold began now: release it when the wait is over.
    HoldStarted(Duration),
    /// Held, behind messages held before it.
    Held,
}

/// A connection actor's place in its feed's [`FeedLegs`]; dropping it leaves.
#[derive(Debug)]
pub(crate) struct LegSeat {
    legs: Arc<FeedLegs>,
    incarnation: u64,
    /// The leg's index (its `leg` label).
    leg: usize,
}

impl LegSeat {
    /// The leg's index.
    pub(crate) fn leg(&self) -> usize {
        self.leg
    }

    /// The last number delivered on the feed (for `{{last_seq}}`).
    pub(crate) fn last(&self) -> Option<u64> {
        self.legs.state().last
    }

    /// The feed's state over every member with a status, given this
    /// member's `own` (see [`FeedState::best_of`]).
    pub(crate) fn feed_state(&self, own: FeedState) -> FeedState {
        let state = self.legs.state();
        let others = state
            .members
            .iter()
            .filter(|member| member.incarnation != self.incarnation)
            .filter_map(|member| member.status.as_ref().map(|status| status.state()));
        FeedState::best_of(own, others)
    }

    /// This member's connection opened: without sequence numbers, if no other
    /// member is open and something was delivered before, continuity is lost.
    pub(crate) fn opened(&self) {
        let mut state = self.legs.state();
        let others_open =
            state.members.iter().any(|m| m.incarnation != self.incarnation && m.is_open());
        if !self.legs.sequenced && state.delivered_any && !others_open {
            state.pending = Some(self.event(DiscontinuityReason::Reconnect, None, None, None));
        }
    }

    fn event(
        &self,
        reason: DiscontinuityReason,
        last_before: Option<u64>,
        first_after: Option<u64>,
        missed: Option<u64>,
    ) -> Discontinuity {
        Discontinuity { feed: self.legs.feed.clone(), reason, last_before, first_after, missed }
    }

    /// Offers a message this member received (with its sequence number, if
    /// the feed has them): what is delivered, in order, goes to `out`.
    pub(crate) fn offer(
        &self,
        message: FeedMessage,
        now: Instant,
        out: &mut Vec<FeedMessage>,
        counters: &Counters<'_>,
    ) -> Offered {
        let mut state = self.legs.state();
        let slot = state
            .members
            .iter()
            .position(|member| member.incarnation == self.incarnation)
            .map_or(MEMBER_SLOTS - 1, |at| state.members[at].slot);
        let offered = match (self.legs.sequenced, message.sequence) {
            (true, Some(seq)) => self.offer_numbered(&mut state, seq, message, now, out, counters),
            // A message without a number on a sequenced feed is told apart by its payload too.
            _ => self.offer_by_payload(&mut state, slot, message, now, out, counters),
        };
        if state
            .held_since
            .is_some_and(|since| now.duration_since(since) >= self.legs.gap_fill_wait)
        {
            self.flush(&mut state, out, counters);
        }
        offered
    }

    /// Releases what is held once the wait is over (or no member can fill the gap).
    pub(crate) fn release_due(
        &self,
        now: Instant,
        out: &mut Vec<FeedMessage>,
        counters: &Counters<'_>,
    ) {
        let mut state = self.legs.state();
        let Some(since) = state.held_since else { return };
        if now.duration_since(since) >= self.legs.gap_fill_wait || !self.can_fill(&state) {
            self.flush(&mut state, out, counters);
        }
    }

    fn offer_numbered(
        &self,
        state: &mut LegsState,
        seq: u64,
        message: FeedMessage,
        now: Instant,
        out: &mut Vec<FeedMessage>,
        counters: &Counters<'_>,
    ) -> Offered {
        let (mut own_reset, mut previous) = (false, 0);
        if let Some(member) = state.members.iter_mut().find(|m| m.incarnation == self.incarnation) {
            match member.last_seen {
                Some(before) if seq > before.saturating_add(1) => counters.leg.gaps.increment(1),
                Some(before) => (own_reset, previous) = (is_reset(before, seq), before),
                None => {}
            }
            if member.last_seen.is_none_or(|before| seq > before) || own_reset {
                member.last_seen = Some(seq);
            }
        }
        let Some(last) = state.last else {
            self.deliver(state, seq, message, now, out, counters);
            return Offered::Delivered;
        };
        if seq <= last {
            let new_reset = own_reset && state.reset_from.is_none_or(|from| previous > from);
            if seq < last && (new_reset || last - seq > RESET_DISTANCE) {
                self.flush(state, out, counters);
                let before = state.last;
                state.reset_from = before;
                let reset = self.event(DiscontinuityReason::SequenceReset, before, Some(seq), None);
                state.pending = Some(reset);
                state.recent.clear();
                self.deliver(state, seq, message, now, out, counters);
                return Offered::Delivered;
            }
            let first = state.recent.binary_search_by_key(&seq, |(number, _)| *number);
            if let Ok(at) = first {
                counters.leg.lag.record(now.duration_since(state.recent[at].1).as_secs_f64());
            }
            return Offered::Duplicate;
        }
        if seq == last + 1 {
            self.deliver(state, seq, message, now, out, counters);
            self.drain(state, out, counters);
            return Offered::Delivered;
        }
        if let Some(held) = state.held.get(&seq) {
            counters.leg.lag.record(now.duration_since(held.arrived).as_secs_f64());
            return Offered::Duplicate;
        }
        state.held.insert(seq, Held { message, arrived: now, won: counters.leg.won.clone() });
        if !self.can_fill(state) || state.held.len() > self.legs.gap_fill_max {
            self.flush(state, out, counters);
            return Offered::Delivered;
        }
        if state.held_since.is_none() {
            state.held_since = Some(now);
            return Offered::HoldStarted(self.legs.gap_fill_wait);
        }
        Offered::Held
    }

    /// Whether another open member may still deliver the number after the last one delivered.
    fn can_fill(&self, state: &LegsState) -> bool {
        let last = state.last.unwrap_or(0);
        state.members.iter().any(|member| {
            member.incarnation != self.incarnation
                && member.is_open()
                && member.last_seen.is_none_or(|seen| seen <= last)
        })
    }

    fn deliver(
        &self,
        state: &mut LegsState,
        seq: u64,
        message: FeedMessage,
        now: Instant,
        out: &mut Vec<FeedMessage>,
        counters: &Counters<'_>,
    ) {
        state.mark_delivered(seq, now);
        self.push(state, message, &counters.leg.won, out, counters);
    }

    /// Delivers, after any pending event, and counts the win of the leg `won` counts.
    fn push(
        &self,
        state: &mut LegsState,
        message: FeedMessage,
        won: &Counter,
        out: &mut Vec<FeedMessage>,
        counters: &Counters<'_>,
    ) {
        if let Some(event) = state.pending.take() {
            counters.continuity.discontinuity(event.reason.index());
            out.push(event.into_message(message.feed.clone(), message.received_at));
        }
        state.delivered_any = true;
        won.increment(1);
        out.push(message);
    }

    /// Delivers the held messages that follow on from the last one delivered.
    fn drain(&self, state: &mut LegsState, out: &mut Vec<FeedMessage>, counters: &Counters<'_>) {
        while let Some(entry) = state.held.first_entry() {
            if state.last.is_some_and(|last| *entry.key() > last + 1) {
                break;
            }
            let (seq, held) = entry.remove_entry();
            if state.last.is_some_and(|last| seq <= last) {
                continue;
            }
            state.mark_delivered(seq, held.arrived);
            self.push(state, held.message, &held.won, out, counters);
        }
        if state.held.is_empty() {
            state.held_since = None;
        }
    }

    /// Delivers everything held, in order, announcing each gap no leg filled.
    fn flush(&self, state: &mut LegsState, out: &mut Vec<FeedMessage>, counters: &Counters<'_>) {
        while let Some((seq, mut held)) = state.held.pop_first() {
            let last = state.last.unwrap_or(0);
            if seq <= last {
                continue;
            }
            if seq > last + 1 && state.last.is_some() {
                let missed = seq - last - 1;
                counters.gaps.increment(1);
                counters.missed.increment(missed);
                counters.continuity.discontinuity(DiscontinuityReason::Gap.index());
                tracing::warn!(feed = %self.legs.feed, seq, missed, "gap that no leg filled");
                let gap = self.event(DiscontinuityReason::Gap, Some(last), Some(seq), Some(missed));
                out.push(gap.into_message(held.message.feed.clone(), held.message.received_at));
                held.message.gap_before = Some(missed);
            }
            state.mark_delivered(seq, held.arrived);
            self.push(state, held.message, &held.won, out, counters);
        }
        state.held_since = None;
    }

    fn offer_by_payload(
        &self,
        state: &mut LegsState,
        slot: usize,
        message: FeedMessage,
        now: Instant,
        out: &mut Vec<FeedMessage>,
        counters: &Counters<'_>,
    ) -> Offered {
        let (cap, window) = match self.legs.window {
            DedupWindow::Count(count) => (count.min(MAX_DEDUP_ENTRIES), None),
            DedupWindow::Time(window) => (MAX_DEDUP_ENTRIES, Some(window)),
        };
        while let Some(&(hash, arrived)) = state.order.front() {
            let expired = window.is_some_and(|window| now.duration_since(arrived) > window);
            if !expired && state.order.len() < cap {
                break;
            }
            state.order.pop_front();
            if let Entry::Occupied(seen) = state.hashes.entry(hash) {
                if seen.get().arrived == arrived {
                    seen.remove();
                }
            }
        }
        let mut hasher = DefaultHasher::new();
        message.payload.hash(&mut hasher);
        let hash = hasher.finish();
        let seen = match state.hashes.entry(hash) {
            Entry::Occupied(seen) => seen.into_mut(),
            Entry::Vacant(vacant) => {
                state.order.push_back((hash, now));
                vacant.insert(Seen { arrived: now, delivered: 0, per_member: [0; MEMBER_SLOTS] })
            }
        };
        seen.per_member[slot] = seen.per_member[slot].saturating_add(1);
        if seen.per_member[slot] <= seen.delivered {
            counters.leg.lag.record(now.duration_since(seen.arrived).as_secs_f64());
            return Offered::Duplicate;
        }
        seen.delivered += 1;
        self.push(state, message, &counters.leg.won, out, counters);
        Offered::Delivered
    }
}

impl Drop for LegSeat {
    fn drop(&mut self) {
        let mut state = self.legs.state();
        state.members.retain(|member| member.incarnation != self.incarnation);
    }
}

/// What a connection actor keeps for zero-gap delivery: its seat among the
/// feed's legs, the event owed to subscribers, and its counters.
pub(crate) struct ZeroGap {
    /// Its seat, on a feed with legs.
    seat: Option<LegSeat>,
    /// Announced before the next message delivered (feeds without legs).
    pending: Option<Discontinuity>,
    /// The feed's discontinuity counters.
    continuity: ContinuityMetrics,
    /// The leg's series, on a feed with legs.
    leg_metrics: Option<LegMetrics>,
    /// True until the current connection's first data message.
    awaiting_first_data: bool,
    /// Set on a replacement of a feed without sequence numbers or legs: its
    /// first message is preceded by a `switch` discontinuity.
    replacing: bool,
    /// Events put in the batch being built, and their bytes: not messages
    /// from the feed, so `publish` leaves them out of its counts (taken
    /// once per batch rather than looked for in every message).
    events_in_batch: (u64, u64),
}

impl ZeroGap {
    /// The state of an actor of `feed` without a seat (yet).
    pub(crate) fn new(feed: &str) -> Self {
        ZeroGap {
            seat: None,
            pending: None,
            continuity: ContinuityMetrics::new(feed, &DiscontinuityReason::NAMES),
            leg_metrics: None,
            awaiting_first_data: false,
            replacing: false,
            events_in_batch: (0, 0),
        }
    }

    /// The events put in the batch since the last call, and their bytes.
    #[inline(always)]
    pub(crate) fn take_events(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.events_in_batch)
    }

    /// Counts the events among `messages[from..]`.
    fn count_events(&mut self, messages: &[FeedMessage], from: usize) {
        for event in messages.iter().skip(from).filter(|m| m.discontinuity.is_some()) {
            self.events_in_batch.0 += 1;
            self.events_in_batch.1 += event.payload.len() as u64;
        }
    }

    /// The feed's state given this actor's `own`: on a feed with legs, the
    /// best of them, so that losing one leg leaves the feed up.
    pub(crate) fn feed_state(&self, own: FeedState) -> FeedState {
        self.seat.as_ref().map_or(own, |seat| seat.feed_state(own))
    }

    /// Whether the actor is a leg of a feed with legs.
    #[inline]
    pub(crate) fn has_legs(&self) -> bool {
        self.seat.is_some()
    }
}

impl FeedConnection {
    /// Makes this actor a leg of its feed's legs, before it is started.
    pub(crate) fn on_leg(mut self, seat: LegSeat) -> Self {
        self.zero_gap.leg_metrics = Some(LegMetrics::new(&self.feed.name, seat.leg()));
        self.zero_gap.seat = Some(seat);
        self
    }

    /// Marks this actor as replacing another of its feed (rotation or a
    /// changed feed): without sequence numbers or legs, its first message
    /// is announced as a `switch`.
    pub(crate) fn replacing(mut self) -> Self {
        self.zero_gap.replacing = true;
        self
    }

    /// The last number delivered on the feed (for `{{last_seq}}`).
    pub(super) fn last_delivered(&self) -> Option<u64> {
        match &self.zero_gap.seat {
            Some(seat) => seat.last(),
            None => self.sequence.last(),
        }
    }

    /// The connection opened: count a leg's reconnect, owe the subscribers
    /// an event where continuity cannot be proven, and start the rotation clock.
    pub(super) fn zero_gap_opened(&mut self, ctx: &mut Context<Self>) {
        self.zero_gap.awaiting_first_data = true;
        if let (true, Some(metrics)) = (self.opened_before, &self.zero_gap.leg_metrics) {
            metrics.reconnects.increment(1);
        }
        match &self.zero_gap.seat {
            Some(seat) => seat.opened(),
            // In stream mode an aborted chunk already tells a cut short message.
            None if self.feed.sequence.is_none()
                && self.feed.mode == feedvisor_transport_api::DeliveryMode::Message =>
            {
                let reason = match (self.zero_gap.replacing, self.opened_before) {
                    (true, false) => Some(DiscontinuityReason::Switch),
                    (_, true) => Some(DiscontinuityReason::Reconnect),
                    (false, false) => None,
                };
                self.zero_gap.pending = reason.map(|reason| Discontinuity {
                    feed: self.feed.name.clone(),
                    reason,
                    last_before: None,
                    first_after: None,
                    missed: None,
                });
            }
            None => {}
        }
        if let Some(every) = self.feed.rotate_every {
            let generation = self.generation;
            ctx.run_later(every, move |actor, _| {
                if actor.generation == generation {
                    if let Some(watch) = &actor.watch {
                        watch.rotate_due();
                    }
                }
            });
        }
    }

    /// A batch arrived: on the connection's first data message, the
    /// connection is subscribed and delivering, and the supervisor may close
    /// the one it replaces. A feed whose subscriptions are acknowledged
    /// (`subscribe.ack`) waits for the first acknowledgement instead
    /// ([`FeedConnection::acknowledged`]): a greeting is no proof of a subscription.
    #[inline]
    pub(super) fn first_data(&mut self, events: &[feedvisor_transport_api::Event]) {
        if self.zero_gap.awaiting_first_data
            && self.feed.subscribe.as_ref().is_none_or(|subscribe| subscribe.ack.is_none())
            && events.iter().any(|event| matches!(event, feedvisor_transport_api::Event::Data(_)))
        {
            self.subscribed();
        }
    }

    /// A subscribe message of this connection was acknowledged: with
    /// `subscribe.ack`, the proof that it is subscribed.
    pub(super) fn acknowledged(&mut self) {
        if self.zero_gap.awaiting_first_data {
            self.subscribed();
        }
    }

    /// The connection is subscribed and delivering: a connection it replaces can go.
    pub(super) fn subscribed(&mut self) {
        self.zero_gap.awaiting_first_data = false;
        if let Some(watch) = &self.watch {
            watch.delivering();
        }
    }

    /// A gap before `seq` that no other actor fills: announced before the message.
    pub(super) fn announce_gap(&mut self, seq: u64, missed: u64) {
        self.announce(DiscontinuityReason::Gap, Some(seq - missed - 1), Some(seq), Some(missed));
    }

    /// The numbering started again at `seq` after `last`.
    pub(super) fn announce_reset(&mut self, last: Option<u64>, seq: u64) {
        self.announce(DiscontinuityReason::SequenceReset, last, Some(seq), None);
    }

    fn announce(
        &mut self,
        reason: DiscontinuityReason,
        last_before: Option<u64>,
        first_after: Option<u64>,
        missed: Option<u64>,
    ) {
        let feed = self.feed.name.clone();
        self.zero_gap.pending =
            Some(Discontinuity { feed, reason, last_before, first_after, missed });
    }

    /// True when a message read goes straight into the batch: no legs to
    /// offer it to and no event owed to subscribers (the plain path, kept
    /// as cheap as it was: two loads).
    #[inline(always)]
    pub(super) fn delivers_plainly(&self) -> bool {
        self.zero_gap.seat.is_none() && self.zero_gap.pending.is_none()
    }

    /// Where a data message goes when it does not go plainly: to the legs,
    /// or into `messages` after the event owed to subscribers.
    #[cold]
    pub(super) fn push_message(
        &mut self,
        message: FeedMessage,
        messages: &mut Vec<FeedMessage>,
        ctx: &mut Context<Self>,
    ) {
        if self.zero_gap.seat.is_some() {
            self.offer_to_legs(message, messages, ctx);
            return;
        }
        if let Some(event) = self.zero_gap.pending.take() {
            self.zero_gap.continuity.discontinuity(event.reason.index());
            let from = messages.len();
            messages.push(event.into_message(self.name.clone(), message.received_at));
            self.zero_gap.count_events(messages, from);
        }
        messages.push(message);
    }

    fn offer_to_legs(
        &mut self,
        message: FeedMessage,
        messages: &mut Vec<FeedMessage>,
        ctx: &mut Context<Self>,
    ) {
        let from = messages.len();
        let now = Instant::now();
        let offered = self.with_seat(|seat, counters| seat.offer(message, now, messages, counters));
        self.zero_gap.count_events(messages, from);
        if let Some(Offered::HoldStarted(wait)) = offered {
            ctx.run_later(wait, |actor, _| actor.release_held());
        }
    }

    /// The wait for a gap to be filled is over: deliver what is held.
    fn release_held(&mut self) {
        let mut messages = crate::inbox::delivery::batch_vec(0);
        let now = Instant::now();
        self.with_seat(|seat, counters| seat.release_due(now, &mut messages, counters));
        self.zero_gap.count_events(&messages, 0);
        self.publish(messages);
    }

    /// Runs `f` with this leg's seat and what it counts into; `None` without legs.
    fn with_seat<R>(&self, f: impl FnOnce(&LegSeat, &Counters<'_>) -> R) -> Option<R> {
        let (Some(seat), Some(leg)) = (&self.zero_gap.seat, &self.zero_gap.leg_metrics) else {
            return None;
        };
        let counters = Counters {
            leg,
            continuity: &self.zero_gap.continuity,
            gaps: &self.metrics.sequence_gaps,
            missed: &self.metrics.sequence_missed,
        };
        Some(f(seat, &counters))
    }
}
