//! A feed's outbound pacing: the state behind `outbound_rate`, pure.
//!
//! Messages are paced where they are handed to the connection: on_open
//! (including resubscribes after every reconnect), what waited in the
//! outbound queue, sends, and heartbeat pings when `count_pings` is set.
//! What cannot go yet waits, in order: a held ping first, then the
//! connection's on_open messages (held here, dropped with the connection:
//! the next connection sends its own), then the outbound queue (bounded, with
//! its overflow policy). A send that finds no place is answered `queued`, so
//! a message answered `sent` is still never dropped.
//!
//! The window lives as long as the connection actor, across reconnects: a
//! venue that counts per connection is never sent more, and one that counts
//! per client is not flooded by a reconnect either.

use std::collections::VecDeque;

use actix_rt::time::Instant;
use feedvisor_transport_api::Outbound;

use super::window::RollingWindow;
use crate::config::{format_duration, OutboundRate};
use crate::metrics::venue::PacingMetrics;
use crate::status::PacingStatus;

/// A message held by the rate, and since when.
#[derive(Debug)]
struct Held {
    message: Outbound,
    since: Instant,
}

/// The pacing of one feed.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: OutboundRate,
    window: RollingWindow,
    /// A heartbeat ping held (`count_pings`): it goes before anything else.
    ping: Option<Held>,
    /// The current connection's on_open messages not sent yet.
    opening: VecDeque<Held>,
    /// When a wake-up is scheduled, if one is.
    wake_at: Option<Instant>,
    metrics: PacingMetrics,
}

/// Where the next message to hand over comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A held ping or on_open message.
    Held(Outbound),
    /// The outbound queue's oldest, if any waits.
    Queue,
}

impl Pacer {
    /// Pacing at `rate` for `feed`.
    pub(crate) fn new(feed: &str, rate: OutboundRate) -> Self {
        Pacer {
            window: RollingWindow::new(rate.messages, rate.per),
            rate,
            ping: None,
            opening: VecDeque::new(),
            wake_at: None,
            metrics: PacingMetrics::new(feed),
        }
    }

    /// The rate it paces at.
    pub(crate) fn rate(&self) -> OutboundRate {
        self.rate
    }

    /// Whether heartbeat pings count.
    pub(crate) fn counts_pings(&self) -> bool {
        self.rate.count_pings
    }

    /// Whether nothing is held here.
    pub(crate) fn nothing_held(&self) -> bool {
        self.ping.is_none() && self.opening.is_empty()
    }

    /// How many messages are held here (a ping and on_open messages).
    pub(crate) fn held(&self) -> usize {
        usize::from(self.ping.is_some()) + self.opening.len()
    }

    /// Takes a place at `now` for a message that nothing held is ahead of.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.nothing_held() && self.window.try_take(now).is_ok()
    }

    /// Reserves the next place for a message that cannot be held (one sent
    /// in pieces, whose sender waits instead); returns its time.
    pub(crate) fn reserve(&mut self, now: Instant) -> Instant {
        self.window.reserve(now, now, std::time::Duration::ZERO)
    }

    /// Holds the on_open messages of a new connection.
    pub(crate) fn hold_opening(
        &mut self,
        messages: impl IntoIterator<Item = Outbound>,
        now: Instant,
    ) {
        self.opening.extend(messages.into_iter().map(|message| Held { message, since: now }));
    }

    /// Holds a heartbeat ping (replacing one still held: only the latest matters).
    pub(crate) fn hold_ping(&mut self, message: Outbound, now: Instant) {
        self.ping = Some(Held { message, since: now });
    }

    /// The next message to hand over at `now` if a place is free (the place
    /// is taken), or when one frees. `queue_waits`: the outbound queue has
    /// something that may go (it comes after what is held here).
    pub(crate) fn next(
        &mut self,
        now: Instant,
        queue_waits: bool,
    ) -> Result<Option<Next>, Instant> {
        if self.nothing_held() && !queue_waits {
            return Ok(None);
        }
        self.window.try_take(now)?;
        let held = self.ping.take().or_else(|| self.opening.pop_front());
        Ok(Some(match held {
            Some(Held { message, since }) => {
                let waited = now.saturating_duration_since(since);
                if !waited.is_zero() {
                    self.metrics.wait.record(waited.as_secs_f64());
                }
                Next::Held(message)
            }
            None => Next::Queue,
        }))
    }

    /// Counts messages that had to wait for a place.
    pub(crate) fn count_paced(&self, messages: usize) {
        self.metrics.paced.increment(messages as u64);
    }

    /// The connection is gone: its pings and on_open messages go with it.
    pub(crate) fn connection_lost(&mut self) {
        self.ping = None;
        self.opening.clear();
        self.wake_at = None;
    }

    /// Whether a wake-up at `at` is needed (none is scheduled at or before it); records it.
    pub(crate) fn wake_needed(&mut self, at: Instant) -> bool {
        if self.wake_at.is_some_and(|scheduled| scheduled <= at) {
            return false;
        }
        self.wake_at = Some(at);
        true
    }

    /// A wake-up arrived.
    pub(crate) fn woke(&mut self) {
        self.wake_at = None;
    }

    /// The status at `now`, with `queued` sends waiting behind; the gauge follows it.
    pub(crate) fn status(&mut self, now: Instant, queued: usize) -> PacingStatus {
        let held = usize::from(self.ping.is_some()) + self.opening.len();
        self.metrics.waiting.set((held + queued) as f64);
        let next_place_in_ms = (held + queued > 0).then(|| {
            let free = self.window.next_free(now);
            u64::try_from(free.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
        });
        PacingStatus {
            messages: self.rate.messages,
            per: format_duration(self.rate.per),
            count_pings: self.rate.count_pings,
            held,
            next_place_in_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rate(messages: u32) -> OutboundRate {
        OutboundRate { messages, per: Duration::from_secs(1), count_pings: false }
    }

    #[test]
    fn a_held_ping_goes_before_on_open_and_on_open_before_the_queue() {
        let start = Instant::now();
        let mut pacer = Pacer::new("pacing-order", rate(10));
        pacer.hold_opening([Outbound::text("sub-1"), Outbound::text("sub-2")], start);
        pacer.hold_ping(Outbound::text("ping"), start);
        assert!(!pacer.take(start), "a send may not pass what is held");
        assert_eq!(pacer.next(start, true), Ok(Some(Next::Held(Outbound::text("ping")))));
        assert_eq!(pacer.next(start, true), Ok(Some(Next::Held(Outbound::text("sub-1")))));
        assert_eq!(pacer.next(start, true), Ok(Some(Next::Held(Outbound::text("sub-2")))));
        assert_eq!(pacer.next(start, true), Ok(Some(Next::Queue)));
        assert_eq!(pacer.next(start, false), Ok(None));
        assert!(pacer.take(start));
    }

    #[test]
    fn what_is_held_waits_for_its_place_and_leaves_with_the_connection() {
        let start = Instant::now();
        let mut pacer = Pacer::new("pacing-held", rate(2));
        pacer.hold_opening((0..4).map(|n| Outbound::text(n.to_string())), start);
        assert!(matches!(pacer.next(start, false), Ok(Some(Next::Held(_)))));
        assert!(matches!(pacer.next(start, false), Ok(Some(Next::Held(_)))));
        assert_eq!(pacer.next(start, false), Err(start + Duration::from_secs(1)));
        assert_eq!(pacer.status(start, 3).held, 2);
        assert_eq!(pacer.status(start, 3).next_place_in_ms, Some(1000));
        pacer.connection_lost();
        assert!(pacer.nothing_held());
        assert_eq!(pacer.status(start, 0).next_place_in_ms, None);
    }

    #[test]
    fn a_reserved_place_is_taken_from_everyone_else() {
        let start = Instant::now();
        let mut pacer = Pacer::new("pacing-reserve", rate(1));
        assert_eq!(pacer.reserve(start), start);
        assert_eq!(pacer.reserve(start), start + Duration::from_secs(1));
        assert!(!pacer.take(start + Duration::from_millis(1500)));
        assert!(pacer.take(start + Duration::from_secs(2)));
    }

    #[test]
    fn one_wake_up_at_a_time_the_earliest() {
        let start = Instant::now();
        let mut pacer = Pacer::new("pacing-wake", rate(1));
        assert!(pacer.wake_needed(start + Duration::from_secs(2)));
        assert!(!pacer.wake_needed(start + Duration::from_secs(3)));
        assert!(pacer.wake_needed(start + Duration::from_secs(1)));
        pacer.woke();
        assert!(pacer.wake_needed(start + Duration::from_secs(3)));
    }
}
