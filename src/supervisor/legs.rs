//! A feed's redundant legs and make-before-break rotation, as the supervisor
//! runs them.
//!
//! Leg 0 is the feed entry's own actor; legs 1 and up are [`Leg`]s beside
//! it, each an actor of its own on the feed's worker with its own status
//! and reconnects, all seated in the feed's [`FeedLegs`].
//!
//! A rotation (`rotate_every`, `POST /feeds/{name}/rotate`) starts a new
//! actor for a leg beside the old one and closes the old one once the new
//! one is subscribed and delivering ([`ConnectionEvent::Delivering`]), or
//! after the supervisor's bounded wait. On a feed with legs the two
//! connections are deduplicated like two legs; on a sequenced feed without
//! legs the rotation is a replacement, whose hand-over proves continuity
//! (see `connection/sequence.rs`); a feed with neither announces the switch
//! to subscribers.
//!
//! [`ConnectionEvent::Delivering`]: crate::connection::ConnectionEvent::Delivering

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{ChangeError, FeedEntry, Home, Retiring, Supervisor};
use crate::config::FeedConfig;
use crate::connection::legs::FeedLegs;
use crate::connection::{FeedConnection, SendError, SendOutcome};
use crate::metrics;
use crate::status::{FeedState, LegStatus, StatusCell};

/// One leg beyond the first.
pub(super) struct Leg {
    /// The feed's config with this leg's URL.
    config: Arc<FeedConfig>,
    shared: Arc<StatusCell>,
    actor: Option<Addr<FeedConnection>>,
    incarnation: u64,
}

/// Feed `config` with leg `leg`'s URL.
fn leg_config(config: &Arc<FeedConfig>, leg: usize) -> Arc<FeedConfig> {
    let url = config.redundancy.as_ref().and_then(|legs| legs.urls.get(leg));
    match url {
        Some(url) if leg > 0 => Arc::new(FeedConfig { url: url.clone(), ..(**config).clone() }),
        _ => config.clone(),
    }
}

/// The fresh legs of a feed (`None` without `urls`), or `current` when they carry on for it.
pub(super) fn legs_for(
    config: &FeedConfig,
    current: Option<&Arc<FeedLegs>>,
) -> Option<Arc<FeedLegs>> {
    match current {
        Some(legs) if legs.continues(config) => Some(legs.clone()),
        _ => FeedLegs::for_feed(config),
    }
}

impl FeedEntry {
    /// The feed's state: with legs, the best of them (open if any leg is).
    pub(super) fn feed_state(&self) -> FeedState {
        let others = self.extra_legs.iter().map(|leg| leg.shared.state());
        FeedState::best_of(self.shared.state(), others)
    }

    /// Each leg's state, when the feed has legs.
    pub(super) fn leg_statuses(&self) -> Vec<LegStatus> {
        let Some(legs) = self.config.redundancy.as_ref() else { return Vec::new() };
        let cells = std::iter::once(&self.shared).chain(self.extra_legs.iter().map(|l| &l.shared));
        cells
            .enumerate()
            .map(|(leg, shared)| LegStatus {
                leg,
                url: legs.display_url(leg),
                state: shared.state(),
                reconnects: shared.reconnects(),
                last_error: shared.last_error(),
            })
            .collect()
    }

    /// Every live actor of the feed, leg 0 first, then its other legs or shards.
    pub(super) fn actors(&self) -> impl Iterator<Item = Addr<FeedConnection>> + '_ {
        self.leg_actors().chain(self.shards.actors())
    }

    /// The live actors of the feed's legs, leg 0 first (only leg 0's without `urls`).
    pub(super) fn leg_actors(&self) -> impl Iterator<Item = Addr<FeedConnection>> + '_ {
        self.actor
            .iter()
            .chain(self.extra_legs.iter().filter_map(|leg| leg.actor.as_ref()))
            .cloned()
    }

    /// Which leg's current actor is `incarnation`.
    fn leg_of(&self, incarnation: u64) -> Option<usize> {
        if self.incarnation == incarnation {
            return Some(0);
        }
        self.extra_legs.iter().position(|leg| leg.incarnation == incarnation).map(|at| at + 1)
    }
}

impl Supervisor {
    /// Starts legs 1 and up of a feed with `urls`, in `home` (leg 0 is started by the caller).
    pub(super) fn spawn_extra_legs(
        &mut self,
        config: &Arc<FeedConfig>,
        home: &Home,
        ctx: &mut Context<Self>,
    ) -> Vec<Leg> {
        let count = config.redundancy.as_ref().map_or(0, |legs| legs.urls.len());
        (1..count)
            .map(|leg| {
                let config = leg_config(config, leg);
                let shared = StatusCell::new();
                let home = Home { leg, ..home.clone() };
                let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
                Leg { config, shared, actor, incarnation }
            })
            .collect()
    }

    /// Hands the old legs 1 and up of a replaced feed to the retiring, for
    /// the first actor of the new feed that delivers to close.
    pub(super) fn retire_legs(&mut self, feed: &str, old: Vec<Leg>, home: &Home) {
        for leg in old {
            let Some(actor) = leg.actor else { continue };
            self.retiring.push(Retiring {
                feed: feed.to_owned(),
                incarnation: leg.incarnation,
                sequence: home.sequence.clone(),
                leg: None,
                actor,
            });
        }
    }

    /// A leg's actor (1 and up) died unasked: it is started again. False when
    /// `incarnation` is no current leg of `feed`.
    pub(super) fn leg_died(&mut self, feed: &str, incarnation: u64, ctx: &mut Context<Self>) {
        let Some(entry) = self.feeds.get(feed) else { return };
        let Some(leg) = entry.leg_of(incarnation).filter(|leg| *leg > 0) else { return };
        if !self.accepting_changes {
            return;
        }
        tracing::error!(feed, leg, "connection actor of a leg died unexpectedly; restarting it");
        metrics::actor_restarted("connection");
        let home = Home { leg, ..entry.home.clone() };
        let current = &entry.extra_legs[leg - 1];
        let (config, shared) = (current.config.clone(), current.shared.clone());
        shared.set_state(FeedState::Connecting);
        shared.set_error("the connection actor died unexpectedly and was restarted");
        let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
        if let Some(current) = self.feeds.get_mut(feed).and_then(|e| e.extra_legs.get_mut(leg - 1))
        {
            current.actor = actor;
            current.incarnation = incarnation;
        }
    }

    /// Actor `incarnation` of `feed` is subscribed and delivering: the older
    /// actors it replaces close (those of its own leg, on a rotated leg).
    pub(super) fn delivering(&mut self, feed: &str, incarnation: u64) {
        let leg = self.feeds.get(feed).and_then(|entry| entry.leg_of(incarnation));
        self.opened(feed, incarnation, leg);
    }

    /// `rotate_every` passed for actor `incarnation` of `feed`: if it is still
    /// a current leg, that leg rotates.
    pub(super) fn rotate_due(&mut self, feed: &str, incarnation: u64, ctx: &mut Context<Self>) {
        let leg = self.feeds.get(feed).and_then(|entry| entry.leg_of(incarnation));
        if let Some(leg) = leg.filter(|_| self.accepting_changes) {
            tracing::info!(feed, leg, "rotate_every passed: rotating the connection");
            let _ = self.rotate(feed, Some(leg), ctx);
        }
    }

    /// Rotates one leg of `feed` (`None`: every leg) make-before-break.
    pub(super) fn rotate(
        &mut self,
        feed: &str,
        leg: Option<usize>,
        ctx: &mut Context<Self>,
    ) -> Result<(), ChangeError> {
        self.check_accepting()?;
        let entry =
            self.feeds.get(feed).ok_or_else(|| ChangeError::UnknownFeed(feed.to_owned()))?;
        let count = 1 + entry.extra_legs.len();
        if let Some(leg) = leg.filter(|leg| *leg >= count) {
            return Err(ChangeError::UnknownLeg { feed: feed.to_owned(), leg, legs: count });
        }
        metrics::legs::rotation_started(feed);
        if entry.home.legs.is_none() {
            // One connection: a replacement by the same config, the one path
            // a changed feed takes too.
            let config = (*entry.config).clone();
            self.replace_feed(config, ctx);
            return Ok(());
        }
        for leg in leg.map_or(0..count, |leg| leg..leg + 1) {
            self.rotate_leg(feed, leg, ctx);
        }
        Ok(())
    }

    fn rotate_leg(&mut self, feed: &str, leg: usize, ctx: &mut Context<Self>) {
        let Some(entry) = self.feeds.get(feed) else { return };
        let home = Home { leg, ..entry.home.clone() };
        let config = match leg {
            0 => entry.config.clone(),
            _ => entry.extra_legs[leg - 1].config.clone(),
        };
        let shared = StatusCell::new();
        let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
        let Some(entry) = self.feeds.get_mut(feed) else { return };
        let old = match leg {
            0 => {
                let old = (entry.actor.take(), entry.incarnation);
                (entry.actor, entry.incarnation, entry.shared) = (actor, incarnation, shared);
                old
            }
            _ => {
                let current = &mut entry.extra_legs[leg - 1];
                let old = (current.actor.take(), current.incarnation);
                (current.actor, current.incarnation, current.shared) = (actor, incarnation, shared);
                old
            }
        };
        if let (Some(actor), old_incarnation) = old {
            self.retiring.push(Retiring {
                feed: feed.to_owned(),
                incarnation: old_incarnation,
                sequence: None,
                leg: Some(leg),
                actor,
            });
        }
        let patience = patience(&config);
        let feed = feed.to_owned();
        ctx.run_later(patience, move |supervisor, _| {
            supervisor.retire_before(&feed, incarnation, |retiring| retiring.leg == Some(leg));
        });
    }
}

/// What a send to every leg of a feed did: sent if any leg sent it, else
/// queued if any queued it, else dropped if any dropped it, else the first
/// leg's error (legs are alike, so one refusal stands for all).
pub(super) fn best_outcome(
    outcomes: impl IntoIterator<Item = Result<SendOutcome, SendError>>,
) -> Result<SendOutcome, SendError> {
    let rank = |outcome: &Result<SendOutcome, SendError>| match outcome {
        Ok(SendOutcome::Sent) => 3,
        Ok(SendOutcome::Queued { .. }) => 2,
        Ok(SendOutcome::Dropped) => 1,
        Err(_) => 0,
    };
    let mut best: Option<Result<SendOutcome, SendError>> = None;
    for outcome in outcomes {
        if best.as_ref().is_none_or(|best| rank(&outcome) > rank(best)) {
            best = Some(outcome);
        }
    }
    best.unwrap_or(Err(SendError::Unavailable))
}

/// How long a replacement gets to open and deliver before the connection
/// it replaces closes anyway.
pub(super) fn patience(config: &FeedConfig) -> Duration {
    config.handshake_timeout * 2 + Duration::from_secs(1)
}

/// Rotates a feed's connection make-before-break (`POST /feeds/{name}/rotate`).
#[derive(Message)]
#[rtype(result = "Result<(), ChangeError>")]
pub(crate) struct RotateFeed {
    /// The feed's name.
    pub name: String,
    /// One leg (`?leg=N`), or every leg.
    pub leg: Option<usize>,
}

impl Handler<RotateFeed> for Supervisor {
    type Result = Result<(), ChangeError>;

    fn handle(&mut self, rotate: RotateFeed, ctx: &mut Context<Self>) -> Self::Result {
        self.rotate(&rotate.name, rotate.leg, ctx)?;
        tracing::info!(feed = %rotate.name, leg = ?rotate.leg, "rotation requested");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_to_every_leg_reports_the_best_that_became_of_it() {
        let queued = || Ok(SendOutcome::Queued { dropped_oldest: 0 });
        let best = |outcomes: Vec<Result<SendOutcome, SendError>>| best_outcome(outcomes);
        assert_eq!(best(vec![queued(), Ok(SendOutcome::Sent)]), Ok(SendOutcome::Sent));
        assert_eq!(best(vec![Err(SendError::FeedFailed), queued()]), queued());
        assert_eq!(
            best(vec![Ok(SendOutcome::Dropped), Err(SendError::Unavailable)]),
            Ok(SendOutcome::Dropped)
        );
        assert_eq!(
            best(vec![Err(SendError::FeedFailed), Err(SendError::Unavailable)]),
            Err(SendError::FeedFailed)
        );
        assert_eq!(best(vec![]), Err(SendError::Unavailable));
    }
}
