//! The connection actor's side of `src/venue/`: before every connect
//! attempt it asks the host registry for a place in its host's connect
//! budget (waiting, shown in `/feeds`, when there is none), tells the
//! registry of refusals that cool the host down, and paces what it hands
//! to the connection by the feed's `outbound_rate`.
//!
//! Pacing happens where messages are handed to the connection: on_open
//! messages go through [`FeedConnection::send_paced`], queued messages and
//! held ones through [`FeedConnection::pump`], sends take a place or are
//! queued (answered `queued`), pings (`count_pings`) through
//! [`FeedConnection::send_ping`], and a message sent in pieces waits for its
//! place before its first piece ([`wait_for_place`]). A held message is
//! handed over by a wake-up at the moment its place frees.

use actix::prelude::*;
use actix::WeakAddr;
use actix_rt::time::Instant;
use std::sync::Arc;

use feedvisor_transport_api::{Outbound, TransportError};

use super::{FeedConnection, SendError};
use crate::config::FeedConfig;
use crate::status::FeedState;
use crate::venue::hosts::{Admission, HostRegistry, Notify, Refusal, Ticket};
use crate::venue::pacing::{Next, Pacer};

/// What a connection actor holds of `src/venue/`.
pub(super) struct VenueState {
    /// The process's host registry.
    hosts: std::sync::Arc<HostRegistry>,
    /// The feed's pacing; `None`: not paced.
    pacer: Option<Pacer>,
    /// The place held ahead in the host's connect budget, while waiting for it.
    ticket: Option<Ticket>,
    /// The actor's own address, for wake-ups of the pacing (weak: it does not keep the actor alive).
    me: Option<WeakAddr<FeedConnection>>,
}

/// The feed's host changed while it waited (a cool-down began, a reload):
/// its place was given back, so it asks again at once.
#[derive(Message)]
#[rtype(result = "()")]
struct HostChanged;

impl VenueState {
    /// The state of `feed`'s actor, paced as the registry says.
    pub(super) fn new(feed: &FeedConfig, hosts: std::sync::Arc<HostRegistry>) -> Self {
        let pacer = hosts.outbound_rate(feed).map(|rate| Pacer::new(&feed.name, rate));
        VenueState { hosts, pacer, ticket: None, me: None }
    }
}

/// Hands over what the pacing held, now that a place may have freed.
#[derive(Message)]
#[rtype(result = "()")]
struct Pump;

/// Reserves the next place for a message sent in pieces; answers its time
/// (`None` when the feed is not paced).
#[derive(Message)]
#[rtype(result = "Option<Instant>")]
struct ReservePlace;

/// Waits for a place in `actor`'s pacing before a message sent in pieces starts.
pub(super) async fn wait_for_place(actor: &Addr<FeedConnection>) -> Result<(), SendError> {
    let place = actor.send(ReservePlace).await.map_err(|_| SendError::Unavailable)?;
    if let Some(at) = place {
        actix_rt::time::sleep_until(at).await;
    }
    Ok(())
}

impl FeedConnection {
    /// Remembers the actor's address for wake-ups; shows the pacing.
    pub(super) fn venue_started(&mut self, ctx: &mut Context<Self>) {
        self.venue.me = Some(ctx.address().downgrade());
        self.publish_pacing();
    }

    /// The actor stops: a place it held ahead goes back to the host.
    pub(super) fn venue_stopped(&mut self) {
        let ticket = self.venue.ticket.take();
        self.venue.hosts.leave(&self.feed.name, &self.feed.url, ticket);
        self.shared.set_host_wait(None);
    }

    /// Before a connect attempt: true when the host's budget or cool-down
    /// makes the feed wait (the attempt is then made when the wait ends).
    pub(super) fn wait_for_host(&mut self, ctx: &mut Context<Self>) -> bool {
        let now = Instant::now();
        // A place held ahead and not due yet (a reconnect was asked
        // meanwhile): it is still the earliest the host allows.
        if let Some(ticket) = self.venue.ticket.filter(|ticket| ticket.at > now) {
            self.wake_for_host(ticket.at, ctx);
            return true;
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "the caller picks the random source that the host registry takes as an argument"
        )]
        let mut rng = rand::rng();
        let (name, url) = (&self.feed.name, &self.feed.url);
        let notify = self.venue.me.clone().map(|me| -> Notify {
            Arc::new(move || {
                if let Some(actor) = me.upgrade() {
                    actor.do_send(HostChanged);
                }
            })
        });
        let ticket = self.venue.ticket.take();
        let admission = self.venue.hosts.admit(name, url, ticket, now, (&mut rng, notify));
        match admission {
            Admission::Go => {
                self.shared.set_host_wait(None);
                self.follow_rate_changes();
                false
            }
            Admission::Wait { ticket, shown } => {
                tracing::debug!(feed = %self.name, host = %shown.host, reason = ?shown.reason, until = %shown.until, "waiting for the host before connecting");
                self.venue.ticket = Some(ticket);
                self.shared.set_retry(None);
                self.shared.set_host_wait(Some(shown));
                self.set_state(FeedState::BackingOff);
                self.wake_for_host(ticket.at, ctx);
                true
            }
        }
    }

    fn wake_for_host(&mut self, at: Instant, ctx: &mut Context<Self>) {
        let generation = self.generation;
        ctx.run_later(at.saturating_duration_since(Instant::now()), move |actor, ctx| {
            if actor.generation == generation {
                actor.connect(ctx);
            }
        });
    }

    /// A reload may have changed the rate of the feed's host entry or
    /// `[defaults]`: taken at the next connect.
    fn follow_rate_changes(&mut self) {
        let rate = self.venue.hosts.outbound_rate(&self.feed);
        if rate != self.venue.pacer.as_ref().map(Pacer::rate) {
            self.venue.pacer = rate.map(|rate| Pacer::new(&self.feed.name, rate));
            self.publish_pacing();
        }
    }

    /// A connect attempt failed: a handshake status the host's entry lists cools the host down.
    pub(super) fn host_refused(&mut self, error: &TransportError) {
        if let TransportError::HandshakeStatus { status, retry_after, .. } = error {
            self.cool_host(Refusal::Status(*status), *retry_after);
        }
    }

    /// The peer closed with `code`: a close code the host's entry lists cools the host down.
    pub(super) fn host_closed(&mut self, code: u16) {
        self.cool_host(Refusal::Close(code), None);
    }

    fn cool_host(&mut self, refusal: Refusal, retry_after: Option<std::time::Duration>) {
        let cap = self.feed.reconnect.max_retry_after;
        let cooled =
            self.venue.hosts.refused(&self.feed.url, refusal, retry_after, cap, Instant::now());
        if let Some((host, length)) = cooled {
            tracing::warn!(feed = %self.name, %host, ?refusal, cooldown = ?length, "host refused: every feed to it waits");
        }
    }

    /// Hands `message` to the connection if the pacing has a place for it
    /// now; otherwise holds it, in order, until one frees. For on_open.
    pub(super) fn send_paced(&mut self, message: Outbound) -> bool {
        let now = Instant::now();
        let Some(pacer) = self.venue.pacer.as_mut() else { return self.send_now(message) };
        if pacer.take(now) {
            return self.send_now(message);
        }
        pacer.hold_opening([message], now);
        pacer.count_paced(1);
        self.pump();
        true
    }

    /// About how long the last message held goes out after now: one window
    /// for every `messages` held (zero when nothing is held or not paced).
    /// A reply timeout armed for a held message starts that much later.
    pub(super) fn pacing_delay(&self) -> std::time::Duration {
        let Some(pacer) = self.venue.pacer.as_ref() else { return std::time::Duration::ZERO };
        let held = u32::try_from(pacer.held()).unwrap_or(u32::MAX);
        if held == 0 {
            return std::time::Duration::ZERO;
        }
        let rate = pacer.rate();
        rate.per.saturating_mul(held.div_ceil(rate.messages.max(1)))
    }

    /// Sends a heartbeat ping; with `count_pings` it takes a place (or is
    /// held, first in line, until one frees).
    pub(super) fn send_ping(&mut self, message: Outbound) -> bool {
        let now = Instant::now();
        let Some(pacer) = self.venue.pacer.as_mut().filter(|pacer| pacer.counts_pings()) else {
            return self.send_now(message);
        };
        if pacer.take(now) {
            return self.send_now(message);
        }
        pacer.hold_ping(message, now);
        pacer.count_paced(1);
        self.pump();
        self.link.is_some()
    }

    /// Takes a place for a send that nothing waits ahead of; false when the
    /// pacing has none now (the send is then queued). True when not paced.
    pub(super) fn take_place(&mut self) -> bool {
        self.venue.pacer.as_mut().is_none_or(|pacer| pacer.take(Instant::now()))
    }

    /// True when the feed is paced: what waits in the queue goes through [`Self::pump`].
    pub(super) fn paced(&self) -> bool {
        self.venue.pacer.is_some()
    }

    /// A send was queued: if the rate held it (the feed is open), counts it
    /// and makes sure a wake-up hands it over.
    pub(super) fn queued_by_pacing(&mut self) {
        if self.link.is_some() && self.pieces.is_none() {
            if let Some(pacer) = self.venue.pacer.as_ref() {
                pacer.count_paced(1);
            }
            self.pump();
        }
    }

    /// Hands over what is held, then what the outbound queue holds, as
    /// places allow; schedules a wake-up for the next place if more waits.
    pub(super) fn pump(&mut self) {
        if self.venue.pacer.is_none() || self.link.is_none() {
            return;
        }
        let mut from_queue = false;
        loop {
            let queue_waits = !self.queue.is_empty() && self.pieces.is_none();
            let Some(pacer) = self.venue.pacer.as_mut() else { return };
            match pacer.next(Instant::now(), queue_waits) {
                Ok(None) => break,
                Ok(Some(Next::Held(message))) => {
                    if !self.send_now(message) {
                        break;
                    }
                }
                Ok(Some(Next::Queue)) => {
                    let Some(message) = self.queue.pop() else { break };
                    from_queue = true;
                    if !self.send_now(message.clone()) {
                        // The connection went away: it waits again, first.
                        self.queue.unpop(message);
                        break;
                    }
                }
                Err(free) => {
                    self.wake_pacing_at(free);
                    break;
                }
            }
        }
        if from_queue {
            self.queue_changed();
        }
        self.publish_pacing();
    }

    fn wake_pacing_at(&mut self, at: Instant) {
        let Some(pacer) = self.venue.pacer.as_mut() else { return };
        let Some(me) = self.venue.me.clone() else { return };
        if !pacer.wake_needed(at) {
            return;
        }
        actix_rt::spawn(async move {
            actix_rt::time::sleep_until(at).await;
            if let Some(actor) = me.upgrade() {
                actor.do_send(Pump);
            }
        });
    }

    /// The connection is gone: what the pacing held for it goes too.
    pub(super) fn pacing_connection_lost(&mut self) {
        if let Some(pacer) = self.venue.pacer.as_mut() {
            pacer.connection_lost();
            self.publish_pacing();
        }
    }

    fn publish_pacing(&mut self) {
        let queued = self.queue.len();
        let status = self.venue.pacer.as_mut().map(|pacer| pacer.status(Instant::now(), queued));
        self.shared.set_pacing(status);
    }
}

impl Handler<Pump> for FeedConnection {
    type Result = ();

    fn handle(&mut self, _: Pump, _: &mut Context<Self>) {
        if let Some(pacer) = self.venue.pacer.as_mut() {
            pacer.woke();
        }
        self.pump();
    }
}

impl Handler<HostChanged> for FeedConnection {
    type Result = ();

    fn handle(&mut self, _: HostChanged, ctx: &mut Context<Self>) {
        // Only a feed still waiting for its host asks again; its old wake-up is void.
        if self.link.is_none() && self.venue.ticket.take().is_some() {
            self.generation += 1;
            self.connect(ctx);
        }
    }
}

impl Handler<ReservePlace> for FeedConnection {
    type Result = MessageResult<ReservePlace>;

    fn handle(&mut self, _: ReservePlace, _: &mut Context<Self>) -> Self::Result {
        let place = self.venue.pacer.as_mut().map(|pacer| pacer.reserve(Instant::now()));
        MessageResult(place)
    }
}
