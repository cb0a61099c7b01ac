//! A strict rolling window: at most `limit` events in any span of `per`.
//!
//! Each event's time is remembered until it leaves the window, so the next
//! free place is exactly known: when the window is full, it is the time of
//! the `limit`-th latest event plus `per`. Unlike a token bucket that
//! refills at a steady rate, this never lets through a second burst of
//! `limit` right after a first one, which a venue that counts in a rolling
//! window (or in fixed windows) would refuse. Events may also be reserved
//! for a time to come (the connect budget hands out places ahead), always in
//! order, so the rule holds for every reservation as well.
//!
//! Pure: the caller passes the time; the window never reads a clock.

use std::collections::VecDeque;
use std::time::Duration;

use actix_rt::time::Instant;

/// Where the next place frees (see [`RollingWindow::free_place`]).
struct FreePlace {
    at: Instant,
    carried: Duration,
    last: Instant,
}

/// At most `limit` events in any span of `per`.
#[derive(Debug, Clone)]
pub(crate) struct RollingWindow {
    limit: usize,
    per: Duration,
    /// Times of the events still inside the window, and of places reserved
    /// ahead, in order (never decreasing), each with how much later it is
    /// than its chain of places would be without jitter.
    events: VecDeque<(Instant, Duration)>,
}

impl RollingWindow {
    /// An empty window; a `limit` of 0 is taken as 1.
    pub(crate) fn new(limit: u32, per: Duration) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        RollingWindow { limit, per, events: VecDeque::with_capacity(limit.min(1024)) }
    }

    /// The window's length.
    pub(crate) fn per(&self) -> Duration {
        self.per
    }

    /// The events allowed per window.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Forgets events that have left the window at `now`.
    fn forget(&mut self, now: Instant) {
        while self.events.front().is_some_and(|&(event, _)| event + self.per <= now) {
            self.events.pop_front();
        }
    }

    /// The earliest time, at or after `now`, at which one more event fits.
    pub(crate) fn next_free(&mut self, now: Instant) -> Instant {
        let free = self.free_place(now);
        free.at.max(free.last)
    }

    /// Where the next place frees: by the window alone, with the jitter the
    /// event leaving it carries (zero when the window is not full), and the
    /// last place handed out (which no new one may precede).
    fn free_place(&mut self, now: Instant) -> FreePlace {
        self.forget(now);
        let (at, carried) = match self.events.len().checked_sub(self.limit) {
            Some(index) => {
                let (event, carried) = self.events[index];
                ((event + self.per).max(now), carried)
            }
            None => (now, Duration::ZERO),
        };
        let last = self.events.back().map_or(now, |&(event, _)| event);
        FreePlace { at, carried, last }
    }

    /// Takes a place at `now` if one is free; otherwise says when one will be.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let free = self.next_free(now);
        if free > now {
            return Err(free);
        }
        self.events.push_back((now, Duration::ZERO));
        Ok(())
    }

    /// Reserves the earliest place at or after both `now` and `not_before`,
    /// pushed back by `jitter`; returns its time. The place is taken: later
    /// reservations count it.
    ///
    /// A place that frees when an earlier reservation leaves the window
    /// already carries that one's jitter: only the part of `jitter` beyond
    /// it is added, so that jitter spreads each wave of places without
    /// adding up over the waves.
    pub(crate) fn reserve(
        &mut self,
        now: Instant,
        not_before: Instant,
        jitter: Duration,
    ) -> Instant {
        let free = self.free_place(now);
        let carried = if free.at >= not_before { free.carried } else { Duration::ZERO };
        // Where the chain of places would be without any jitter.
        let base = free.at.max(not_before) - carried;
        // Jitter moves the place before order is kept, so that it spreads a
        // wave of places rather than adding up along it.
        let at = (base + carried.max(jitter)).max(free.last);
        self.events.push_back((at, at - base));
        at
    }

    /// Gives back every place reserved after `now` (a cool-down moved them).
    pub(crate) fn cancel_reserved(&mut self, now: Instant) {
        while self.events.back().is_some_and(|&(event, _)| event > now) {
            self.events.pop_back();
        }
    }

    /// Gives back one place reserved for `at`, if it is still ahead of `now`.
    pub(crate) fn give_back(&mut self, at: Instant, now: Instant) {
        if at <= now {
            return;
        }
        if let Some(index) = self.events.iter().rposition(|&(event, _)| event == at) {
            self.events.remove(index);
        }
    }

    /// Events in the window at `now` (places reserved ahead included).
    pub(crate) fn used(&mut self, now: Instant) -> usize {
        self.forget(now);
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs_f(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    /// Checks the rule itself: no span of `per` holds more than `limit` events.
    fn assert_never_more_than(events: &[Instant], limit: usize, per: Duration) {
        for (index, &first) in events.iter().enumerate() {
            let inside = events[index..].iter().take_while(|&&event| event < first + per).count();
            assert!(inside <= limit, "{inside} events within {per:?} of {first:?}");
        }
    }

    #[test]
    fn the_sixth_message_in_a_second_waits_for_the_first_to_leave() {
        let start = Instant::now();
        let mut window = RollingWindow::new(5, Duration::from_secs(1));
        for millis in [0, 10, 20, 30, 40] {
            assert_eq!(window.try_take(at(start, millis)), Ok(()));
        }
        assert_eq!(window.try_take(at(start, 50)), Err(at(start, 1000)));
        assert_eq!(window.try_take(at(start, 999)), Err(at(start, 1000)));
        assert_eq!(window.try_take(at(start, 1000)), Ok(()));
        // The second place frees 10 ms later, not a whole new burst.
        assert_eq!(window.try_take(at(start, 1000)), Err(at(start, 1010)));
    }

    #[test]
    fn no_burst_after_a_quiet_spell_beyond_the_limit() {
        let start = Instant::now();
        let mut window = RollingWindow::new(3, Duration::from_secs(1));
        let mut sent = Vec::new();
        let mut now = start;
        // A sender that always has something to send, sending as soon as allowed.
        while sent.len() < 30 {
            match window.try_take(now) {
                Ok(()) => sent.push(now),
                Err(free) => now = free,
            }
        }
        assert_never_more_than(&sent, 3, Duration::from_secs(1));
        // Strict: exactly 3 per second, each at the earliest moment.
        assert_eq!(sent.len(), 30);
        assert_eq!(sent[29], at(start, 9000));
    }

    #[test]
    fn reservations_hand_out_places_in_waves_one_window_apart() {
        let start = Instant::now();
        let per = Duration::from_secs(10);
        let mut window = RollingWindow::new(20, per);
        let places: Vec<Instant> =
            (0..200).map(|_| window.reserve(start, start, Duration::ZERO)).collect();
        assert_never_more_than(&places, 20, per);
        assert_eq!(places[19], start);
        assert_eq!(places[20], at(start, 10_000));
        assert_eq!(places[199], at(start, 90_000));
    }

    #[test]
    fn jitter_pushes_places_back_without_breaking_the_rule() {
        let start = Instant::now();
        let per = Duration::from_secs(10);
        let mut window = RollingWindow::new(20, per);
        // As the host registry asks: no jitter for a place free now, some for the rest.
        let jitter =
            |index: u64| Duration::from_millis(if index < 20 { 0 } else { (index * 37) % 500 });
        let places: Vec<Instant> =
            (0..100u64).map(|index| window.reserve(start, start, jitter(index))).collect();
        assert_never_more_than(&places, 20, per);
        assert!(places.windows(2).all(|pair| pair[0] <= pair[1]), "out of order");
        // Each wave stays within the largest jitter (and a little order) of its
        // start: jitters add up neither along a wave nor across waves.
        for (wave, places) in places.chunks(20).enumerate() {
            let start_of_wave = at(start, 10_000 * wave as u64);
            assert!(
                places[0] >= start_of_wave && places[19] < start_of_wave + secs_f(0.6),
                "wave {wave}: {places:?}"
            );
        }
    }

    #[test]
    fn jitter_does_not_add_up_over_waves() {
        let start = Instant::now();
        let per = Duration::from_secs(10);
        let mut window = RollingWindow::new(2, per);
        let jitter = Duration::from_millis(400);
        // Places free now take no jitter (as the host registry asks); the rest do.
        let mut places = vec![window.reserve(start, start, Duration::ZERO)];
        places.push(window.reserve(start, start, Duration::ZERO));
        places.extend((2..10).map(|_| window.reserve(start, start, jitter)));
        assert_never_more_than(&places, 2, per);
        // The second wave is pushed back once; later waves keep that spread, no more.
        assert_eq!(places[1], start);
        assert_eq!((places[2], places[3]), (at(start, 10_400), at(start, 10_400)));
        assert_eq!((places[8], places[9]), (at(start, 40_400), at(start, 40_400)));
    }

    #[test]
    fn a_cool_down_gives_back_future_places_and_starts_after_it() {
        let start = Instant::now();
        let per = Duration::from_secs(10);
        let mut window = RollingWindow::new(2, per);
        for _ in 0..6 {
            window.reserve(start, start, Duration::ZERO);
        }
        assert_eq!(window.used(start), 6);
        window.cancel_reserved(start);
        assert_eq!(window.used(start), 2);
        let cool_down_end = at(start, 5000);
        assert_eq!(window.reserve(start, cool_down_end, Duration::ZERO), at(start, 10_000));
        let mut fresh = RollingWindow::new(2, per);
        assert_eq!(fresh.reserve(start, cool_down_end, Duration::ZERO), cool_down_end);
    }
}
