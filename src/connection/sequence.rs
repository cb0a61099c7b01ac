//! Gap and duplicate detection for feeds whose messages carry a sequence number,
//! and the hand-over between the connection actors of a feed being replaced.
//!
//! The number must grow by one per message. The state outlives connections,
//! so a reconnect that resumes past what was missed shows as a gap, and one
//! that replays what was already seen shows as duplicates (delivered and
//! counted, as an actor alone has always done).
//!
//! It also outlives connection actors: every actor of a feed holds a
//! [`SequenceSeat`] in the feed's one [`FeedSequence`]. While a replacement
//! runs beside the actor it replaces, exactly one of them (the *owner*)
//! delivers, and no number at or below the last one delivered is delivered
//! again. The replacement becomes the owner once it proves continuity, a
//! number at most one past the last delivered, or at once if the owner's
//! connection is not open; the supervisor then stops the actors it replaces.
//! If it cannot prove continuity within the supervisor's bounded wait,
//! [`FeedSequence::settle`] makes it the owner anyway and the numbers that
//! never reached subscribers are counted as a gap.
//!
//! Subscribers see each number at most once and in order only if the
//! owner's batches reach the subscribers' inboxes in the order their
//! numbers were checked: the supervisor runs every actor of a feed on one
//! worker thread, and an actor pushes a batch into the inboxes in the same
//! handler call that checked its numbers.

use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use super::watch::ConnectionEvent;
use super::FeedConnection;
use crate::status::StatusCell;

/// What one sequence number says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// The first number seen, or the one after the last.
    InOrder,
    /// Numbers were skipped: `missed` messages never arrived.
    Gap {
        /// How many numbers were skipped.
        missed: u64,
    },
    /// A number at or below the last one seen again (delivered all the same).
    Duplicate,
    /// The numbering started again (far below the last one, or back at 0 or 1):
    /// delivered, and the count goes on from here.
    Reset {
        /// The last number before it.
        last: u64,
    },
    /// Not to be delivered: while a feed is being replaced another actor of
    /// the feed delivers this number, or already has (`duplicate`). Only a
    /// [`SequenceSeat`] answers this, never a [`SequenceTracker`].
    Suppressed {
        /// True when the number is at or below the last one delivered.
        duplicate: bool,
    },
}

/// The last sequence number seen on a feed.
#[derive(Debug, Clone, Default)]
pub(crate) struct SequenceTracker {
    last: Option<u64>,
}

impl SequenceTracker {
    /// The highest number seen so far (for `{{last_seq}}`).
    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }

    /// Checks the next number and remembers it when it moves forward.
    pub(crate) fn observe(&mut self, seq: u64) -> SequenceCheck {
        let check = match self.last {
            None => SequenceCheck::InOrder,
            Some(last) if super::legs::is_reset(last, seq) => SequenceCheck::Reset { last },
            Some(last) if seq <= last => return SequenceCheck::Duplicate,
            Some(last) if seq == last + 1 => SequenceCheck::InOrder,
            Some(last) => SequenceCheck::Gap { missed: seq - last - 1 },
        };
        self.last = Some(seq);
        check
    }
}

/// One connection actor of a feed, as its feed's sequence state knows it.
#[derive(Debug)]
struct Member {
    /// The actor's incarnation (the supervisor's count: a later actor has a larger one).
    incarnation: u64,
    /// Its status, to tell whether its connection is open; `None` counts as open.
    status: Option<Arc<StatusCell>>,
}

impl Member {
    fn is_open(&self) -> bool {
        self.status.as_ref().is_none_or(|status| status.state().is_connected())
    }
}

/// What [`FeedSequence`] guards.
#[derive(Debug, Default)]
struct Handover {
    /// The last number delivered to subscribers.
    tracker: SequenceTracker,
    /// The live actors of the feed, oldest first.
    members: Vec<Member>,
    /// The incarnation of the actor whose messages are delivered.
    owner: u64,
    /// Set when ownership changed hands without the new owner having delivered
    /// yet: until it does, it may still be behind, so repeats are withheld
    /// even once it is alone.
    catching_up: bool,
}

impl Handover {
    fn member(&self, incarnation: u64) -> Option<&Member> {
        self.members.iter().find(|member| member.incarnation == incarnation)
    }

    fn is_repeat(&self, seq: u64) -> bool {
        self.tracker.last().is_some_and(|last| seq <= last)
    }

    /// Checks `seq` from actor `me`; returns the check and whether `me` just took over.
    fn observe(&mut self, me: u64, seq: u64) -> (SequenceCheck, bool) {
        if me == self.owner {
            if self.members.len() == 1 && !self.catching_up {
                // Alone: exactly what a single actor has always done.
                return (self.tracker.observe(seq), false);
            }
            return (self.deliver_once(seq), false);
        }
        if me < self.owner || self.member(me).is_none() {
            // Replaced: whatever this actor still receives, the owner delivers.
            return (SequenceCheck::Suppressed { duplicate: self.is_repeat(seq) }, false);
        }
        // A replacement: it takes over once its stream is known to reach back
        // to the next number, or when the owner cannot deliver it.
        let continuous = self.tracker.last().is_none_or(|last| seq <= last.saturating_add(1));
        if !continuous && self.owner_is_open() {
            // Ahead of the owner: the owner delivers the numbers in between, then this one.
            return (SequenceCheck::Suppressed { duplicate: false }, false);
        }
        self.take_over(me);
        (self.deliver_once(seq), true)
    }

    /// Whether a message without a number from actor `me` is delivered: the
    /// owner's are; a replacement's only once the owner's connection is down,
    /// when it takes over. Returns that and whether `me` just took over.
    fn observe_unnumbered(&mut self, me: u64) -> (bool, bool) {
        if me == self.owner {
            return (true, false);
        }
        if me < self.owner || self.member(me).is_none() || self.owner_is_open() {
            return (false, false);
        }
        self.take_over(me);
        (true, true)
    }

    fn owner_is_open(&self) -> bool {
        self.member(self.owner).is_some_and(Member::is_open)
    }

    fn take_over(&mut self, me: u64) {
        self.owner = me;
        self.catching_up = true;
    }

    /// Delivers `seq` unless it was delivered already.
    fn deliver_once(&mut self, seq: u64) -> SequenceCheck {
        if self.is_repeat(seq) {
            return SequenceCheck::Suppressed { duplicate: true };
        }
        self.catching_up = false;
        self.tracker.observe(seq)
    }
}

/// The sequence state of one feed, shared by every connection actor the feed
/// has (one, or more while it is being replaced). See the module docs.
#[derive(Debug)]
pub(crate) struct FeedSequence {
    /// The feed's name, for the supervisor's events.
    feed: String,
    /// Told when a replacement takes over, so that it stops the actors before it.
    supervisor: Option<Recipient<ConnectionEvent>>,
    state: Mutex<Handover>,
}

impl FeedSequence {
    /// A feed's sequence state; `supervisor` hears [`ConnectionEvent::TookOver`].
    pub(crate) fn new(feed: &str, supervisor: Option<Recipient<ConnectionEvent>>) -> Arc<Self> {
        Arc::new(FeedSequence {
            feed: feed.to_owned(),
            supervisor,
            state: Mutex::new(Handover::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, Handover> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Seats actor `incarnation` (larger than any before it), whose status is
    /// `status`. The first actor of an empty feed delivers at once; a later one
    /// waits for its turn.
    pub(crate) fn join(
        self: &Arc<Self>,
        incarnation: u64,
        status: Option<Arc<StatusCell>>,
    ) -> SequenceSeat {
        let mut state = self.state();
        if state.members.is_empty() {
            state.owner = incarnation;
            state.catching_up = false;
        }
        state.members.push(Member { incarnation, status });
        SequenceSeat { feed: self.clone(), incarnation }
    }

    /// The supervisor's wait for actor `incarnation` to prove continuity is
    /// over: it delivers from now on (unless a later actor took over already),
    /// and a number it has not caught up to is no longer withheld.
    pub(crate) fn settle(&self, incarnation: u64) {
        let mut state = self.state();
        if incarnation >= state.owner && state.member(incarnation).is_some() {
            state.owner = incarnation;
            state.catching_up = false;
        }
    }

    fn took_over(&self, incarnation: u64) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.do_send(ConnectionEvent::TookOver { feed: self.feed.clone(), incarnation });
        }
    }
}

/// A connection actor's place in its feed's [`FeedSequence`]; dropping it
/// (the actor is gone) hands delivery to the newest actor left.
#[derive(Debug)]
pub(crate) struct SequenceSeat {
    feed: Arc<FeedSequence>,
    incarnation: u64,
}

impl SequenceSeat {
    /// The seat of an actor that is its feed's only one (no supervisor).
    pub(crate) fn alone(feed: &str) -> Self {
        FeedSequence::new(feed, None).join(0, None)
    }

    /// The last number delivered on the feed (for `{{last_seq}}`).
    pub(crate) fn last(&self) -> Option<u64> {
        self.feed.state().tracker.last()
    }

    /// Checks the next number this actor received and remembers it when it is delivered.
    pub(crate) fn observe(&self, seq: u64) -> SequenceCheck {
        let (check, took_over) = self.feed.state().observe(self.incarnation, seq);
        if took_over {
            self.feed.took_over(self.incarnation);
        }
        check
    }

    /// Whether a message without a number that this actor received is
    /// delivered: only the owner's are (a replacement takes over for it when
    /// the owner's connection is down).
    pub(crate) fn delivers_unnumbered(&self) -> bool {
        let (delivers, took_over) = self.feed.state().observe_unnumbered(self.incarnation);
        if took_over {
            self.feed.took_over(self.incarnation);
        }
        delivers
    }
}

impl Drop for SequenceSeat {
    fn drop(&mut self) {
        let mut state = self.feed.state();
        state.members.retain(|member| member.incarnation != self.incarnation);
        if state.owner != self.incarnation {
            return;
        }
        let Some(newest) = state.members.last().map(|member| member.incarnation) else { return };
        state.owner = newest;
        state.catching_up = true;
        drop(state);
        self.feed.took_over(newest);
    }
}

impl FeedConnection {
    /// Makes this actor one of the actors of its feed's shared sequence state
    /// (instead of its own), before it is started.
    pub(crate) fn sharing_sequence(mut self, seat: SequenceSeat) -> Self {
        self.sequence = seat;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_numbers_are_in_order() {
        let mut tracker = SequenceTracker::default();
        for seq in 5..10 {
            assert_eq!(tracker.observe(seq), SequenceCheck::InOrder);
        }
        assert_eq!(tracker.last(), Some(9));
    }

    #[test]
    fn a_skip_is_a_gap_counted_to_the_message() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(1);
        assert_eq!(tracker.observe(5), SequenceCheck::Gap { missed: 3 });
        assert_eq!(tracker.observe(6), SequenceCheck::InOrder);
    }

    #[test]
    fn repeats_and_going_back_are_duplicates_and_do_not_move_the_mark() {
        let mut tracker = SequenceTracker::default();
        tracker.observe(10);
        assert_eq!(tracker.observe(10), SequenceCheck::Duplicate);
        assert_eq!(tracker.observe(3), SequenceCheck::Duplicate);
        assert_eq!(tracker.last(), Some(10));
        assert_eq!(tracker.observe(11), SequenceCheck::InOrder);
    }

    // Shared between actors while a feed is replaced.

    use crate::status::{FeedState, StatusCell};

    fn open_status() -> Arc<StatusCell> {
        let status = StatusCell::new();
        status.set_state(FeedState::Open);
        status
    }

    fn suppressed(duplicate: bool) -> SequenceCheck {
        SequenceCheck::Suppressed { duplicate }
    }

    #[test]
    fn an_actor_alone_delivers_repeats_as_it_always_has() {
        let seat = SequenceSeat::alone("alone");
        assert_eq!(seat.observe(1), SequenceCheck::InOrder);
        assert_eq!(seat.observe(1), SequenceCheck::Duplicate);
        assert_eq!(seat.observe(4), SequenceCheck::Gap { missed: 2 });
        assert_eq!(seat.last(), Some(4));
        assert!(seat.delivers_unnumbered());
    }

    #[test]
    fn a_replacement_behind_the_owner_takes_over_without_repeating_a_number() {
        let feed = FeedSequence::new("behind", None);
        let old = feed.join(1, Some(open_status()));
        for seq in 1..=5 {
            assert_eq!(old.observe(seq), SequenceCheck::InOrder);
        }
        let new = feed.join(2, Some(open_status()));
        // 4 proves that the new stream reaches back past 5: it takes over.
        assert_eq!(new.observe(4), suppressed(true));
        assert!(new.delivers_unnumbered());
        assert!(!old.delivers_unnumbered());
        assert_eq!(old.observe(6), suppressed(false), "the replaced actor no longer delivers");
        assert_eq!(new.observe(5), suppressed(true));
        assert_eq!(new.observe(6), SequenceCheck::InOrder);
        assert_eq!(old.observe(7), suppressed(false));
        drop(old);
        // Alone again: a replay after a reconnect is delivered and counted, as always.
        assert_eq!(new.observe(7), SequenceCheck::InOrder);
        assert_eq!(new.observe(7), SequenceCheck::Duplicate);
    }

    #[test]
    fn a_replacement_ahead_of_an_open_owner_waits_for_the_numbers_in_between() {
        let feed = FeedSequence::new("ahead", None);
        let old = feed.join(1, Some(open_status()));
        assert_eq!(old.observe(10), SequenceCheck::InOrder);
        let new = feed.join(2, Some(open_status()));
        assert_eq!(new.observe(12), suppressed(false), "the owner delivers 11 and 12 first");
        assert_eq!(old.observe(11), SequenceCheck::InOrder);
        assert_eq!(old.observe(12), SequenceCheck::InOrder);
        assert_eq!(new.observe(13), SequenceCheck::InOrder);
        assert!(new.delivers_unnumbered());
        assert_eq!(old.observe(13), suppressed(true));
    }

    #[test]
    fn a_replacement_takes_over_at_once_with_a_gap_when_the_owner_is_not_open() {
        let feed = FeedSequence::new("down", None);
        let status = open_status();
        let old = feed.join(1, Some(status.clone()));
        assert_eq!(old.observe(3), SequenceCheck::InOrder);
        status.set_state(FeedState::BackingOff);
        let new = feed.join(2, Some(open_status()));
        assert_eq!(new.observe(9), SequenceCheck::Gap { missed: 5 });
        assert_eq!(feed.state().owner, 2);
    }

    #[test]
    fn a_message_without_a_number_comes_from_the_owner_or_from_a_replacement_of_one_that_is_down() {
        let feed = FeedSequence::new("unnumbered", None);
        let status = open_status();
        let old = feed.join(1, Some(status.clone()));
        let new = feed.join(2, Some(open_status()));
        assert!(old.delivers_unnumbered());
        assert!(!new.delivers_unnumbered());
        status.set_state(FeedState::BackingOff);
        assert!(new.delivers_unnumbered());
        assert!(!old.delivers_unnumbered());
        assert_eq!(feed.state().owner, 2);
    }

    #[test]
    fn settle_ends_the_wait_and_the_numbers_never_delivered_count_as_a_gap() {
        let feed = FeedSequence::new("settle", None);
        let old = feed.join(1, Some(open_status()));
        assert_eq!(old.observe(1), SequenceCheck::InOrder);
        let new = feed.join(2, Some(open_status()));
        assert_eq!(new.observe(50), suppressed(false));
        feed.settle(2);
        assert_eq!(old.observe(2), suppressed(false));
        assert_eq!(new.observe(51), SequenceCheck::Gap { missed: 49 });
    }

    #[test]
    fn when_the_owner_goes_the_newest_catches_up_without_repeats_until_settled() {
        let feed = FeedSequence::new("gone", None);
        let old = feed.join(1, Some(open_status()));
        assert_eq!(old.observe(20), SequenceCheck::InOrder);
        let middle = feed.join(2, Some(open_status()));
        let newest = feed.join(3, Some(open_status()));
        drop(old);
        assert!(newest.delivers_unnumbered());
        assert_eq!(middle.observe(21), suppressed(false));
        drop(middle);
        // Alone, but it has not delivered yet: what it replays is withheld.
        assert_eq!(newest.observe(19), suppressed(true));
        feed.settle(3);
        assert_eq!(newest.observe(19), SequenceCheck::Duplicate);
        assert_eq!(newest.observe(21), SequenceCheck::InOrder);
    }

    #[test]
    fn in_a_chain_the_latest_to_prove_continuity_delivers_and_earlier_ones_stop() {
        let feed = FeedSequence::new("chain", None);
        let first = feed.join(1, Some(open_status()));
        assert_eq!(first.observe(1), SequenceCheck::InOrder);
        let second = feed.join(2, Some(open_status()));
        let third = feed.join(3, Some(open_status()));
        assert_eq!(third.observe(2), SequenceCheck::InOrder);
        assert_eq!(second.observe(2), suppressed(true));
        assert_eq!(second.observe(3), suppressed(false), "replaced by a later actor");
        assert_eq!(first.observe(3), suppressed(false));
        assert_eq!(third.observe(3), SequenceCheck::InOrder);
        feed.settle(2);
        assert_eq!(feed.state().owner, 3, "settling an earlier actor does not take back delivery");
    }

    #[test]
    fn the_first_actor_of_a_feed_delivers_and_a_replacement_of_a_silent_one_takes_over() {
        let feed = FeedSequence::new("silent", None);
        let old = feed.join(1, Some(open_status()));
        let new = feed.join(2, Some(open_status()));
        assert_eq!(
            new.observe(7),
            SequenceCheck::InOrder,
            "nothing delivered yet: nothing to prove"
        );
        assert_eq!(old.observe(7), suppressed(true));
    }
}
