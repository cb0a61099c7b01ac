//! The supervisor: owns one connection actor per feed and the config's sinks;
//! everything that changes the set of feeds goes through it.
//!
//! Sinks are supervised too (`sinks.rs`): one that stops unasked is started
//! again with backoff and counted in `feedvisor_subscriber_restarts_total`.
//!
//! Connection actors are spread over a pool of worker arbiters (`workers`,
//! one per core by default, the first being the router's own), so thousands
//! of feeds use every core, and
//! transports that are not `Send` (awc) are built on the thread that uses
//! them. Each actor carries a [`SupervisorLink`], which reports that it
//! opened and, when dropped unasked, that it died: one that panics or stops
//! unasked is restarted here and counted in `feedvisor_actor_restarts_total`.
//!
//! Every actor of a feed (replacements and restarts included) runs on the
//! worker its feed was given, and on a sequenced feed they share one
//! [`FeedSequence`]: one thread, so the batches of two actors reach the
//! subscribers' inboxes in the order their numbers were checked.
//!
//! `clippy.toml` holds it, as actor code with timers, to tokio's clock and
//! to sleeps that do not block its thread.

#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

mod changes;
mod cluster;
mod legs;
mod shards;
mod sinks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use feedvisor_transport_api::DeliveryMode;

pub(crate) use changes::{AddFeed, ReconnectFeed, Reload, RemoveFeed, ReplaceFeed};
pub use changes::{ChangeError, ReloadReport};
pub(crate) use cluster::{CheckFeed, RunFeed, StopFeed};
pub(crate) use legs::RotateFeed;

use crate::config::{self, Config, FeedConfig};
use crate::connection::legs::FeedLegs;
use crate::connection::sequence::FeedSequence;
use crate::connection::{
    ConnectionEvent, ConnectionSetup, Disconnect, FeedConnection, SendError, SendMessage,
    SendOutcome, SupervisorLink,
};
use crate::metrics;
use crate::router::{GetInFlight, Router, Routes};
use crate::sink;
use crate::status::{FeedState, FeedStatus, StatusCell};
use crate::transports::TransportRegistry;
use crate::venue::hosts::HostRegistry;

/// Where a feed's connection actors run and what they share; kept across replacements.
#[derive(Clone)]
struct Home {
    /// The worker every actor of the feed runs on.
    worker: usize,
    /// The sequence state the feed's actors share; `None` for a feed without sequence numbers.
    sequence: Option<Arc<FeedSequence>>,
    /// The redundant legs the feed's actors share; `None` for a feed without `urls`.
    legs: Option<Arc<FeedLegs>>,
    /// Which leg an actor started in this home serves (0 without legs).
    leg: usize,
    /// False only for the feed's first actor: later ones continue a stream
    /// that cannot be proven continuous without sequence numbers or legs.
    replacing: bool,
}

/// One supervised feed.
struct FeedEntry {
    config: Arc<FeedConfig>,
    shared: Arc<StatusCell>,
    home: Home,
    /// The connection actor; `None` when the feed could not be started (unknown scheme).
    actor: Option<Addr<FeedConnection>>,
    /// Which actor of this feed is current; events from others are stale.
    incarnation: u64,
    /// Its connections beyond the first, when `max_topics_per_connection` spreads its topics.
    shards: shards::Shards,
    /// Legs 1 and up of a feed with `urls` (the actor above is leg 0).
    extra_legs: Vec<legs::Leg>,
}

impl FeedEntry {
    fn status(&self) -> FeedStatus {
        let mut status = FeedStatus {
            name: self.config.name.clone(),
            url: self.config.display_url(),
            mode: config::mode_name(self.config.mode),
            state: self.feed_state(),
            messages_in: self.shared.messages_in(),
            bytes_in: self.shared.bytes_in(),
            reconnects: self.shared.reconnects(),
            outbound_queued: self.shared.outbound_queued(),
            required: self.config.required,
            last_error: self.shared.last_error(),
            last_close: self.shared.last_close(),
            retry: self.shared.retry(),
            credentials: self.shared.credentials(),
            legs: self.leg_statuses(),
            subscriptions: None,
            shards: None,
            host_wait: self.shared.host_wait(),
            pacing: self.shared.pacing(),
        };
        self.add_shards(&mut status);
        status
    }
}

/// A connection actor being replaced: it keeps delivering until a later actor
/// of its feed opens (no sequence numbers) or takes over delivery (sequenced).
struct Retiring {
    feed: String,
    /// This actor's incarnation: any later one of the feed can retire it.
    incarnation: u64,
    /// The sequence state it shares, if any: a later actor sharing it retires
    /// it by taking over, not by opening.
    sequence: Option<Arc<FeedSequence>>,
    /// On a rotated leg, that leg: only a later actor of the same leg retires it.
    leg: Option<usize>,
    actor: Addr<FeedConnection>,
}

/// A fresh sequence state for a feed that reads sequence numbers (message mode only).
fn new_sequence(config: &FeedConfig, ctx: &mut Context<Supervisor>) -> Option<Arc<FeedSequence>> {
    let sequenced = config.sequence.is_some() && config.mode == DeliveryMode::Message;
    sequenced.then(|| FeedSequence::new(&config.name, Some(ctx.address().recipient())))
}

/// Owns the connection actors and the config's sinks.
pub(crate) struct Supervisor {
    /// The config as last applied (defaults for feeds added at run time, sinks, path).
    config: Config,
    /// Where `Reload` reads the config from; `None` for a config given as a value.
    config_path: Option<PathBuf>,
    feeds: BTreeMap<String, FeedEntry>,
    /// Replaced actors still running until their successors open or take over.
    retiring: Vec<Retiring>,
    /// The config's sinks by subscriber name, with the config they were made
    /// from and their current actor.
    sinks: BTreeMap<String, sinks::SinkEntry>,
    /// Starts a sink actor ([`sink::start`]; a test sink in tests).
    start_sink_actor: sinks::SinkStarter,
    transports: TransportRegistry,
    router: Addr<Router>,
    /// The router's published table, handed to every connection actor.
    routes: Arc<Routes>,
    workers: Vec<ArbiterHandle>,
    /// Keeps the worker arbiters' threads alive.
    arbiters: Vec<Arbiter>,
    /// Which worker the next feed goes to.
    next_worker: usize,
    /// Numbers connection and sink actors, so that events from replaced ones are recognised.
    incarnations: u64,
    /// False once shutdown began: changes are refused.
    accepting_changes: bool,
    /// In a `[cluster]`, feeds run here only while this replica holds their
    /// lease: the file's feeds are not started, nor reloaded, by the supervisor.
    clustered: bool,
    /// The `[[hosts]]` registry every connection actor consults; reloaded with the config.
    hosts: Arc<HostRegistry>,
}

impl Supervisor {
    /// A supervisor for `config`, started with [`Actor::start`]; `config_path` enables `Reload`.
    pub(crate) fn new(
        config: Config,
        config_path: Option<PathBuf>,
        transports: TransportRegistry,
        router: Addr<Router>,
        routes: Arc<Routes>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = config.workers.unwrap_or(cores).max(1);
        // The caller's arbiter (the router's) is the first worker: `threads`
        // threads in all, and with one core nothing crosses threads.
        let arbiters: Vec<Arbiter> = (1..threads).map(|_| Arbiter::new()).collect();
        let mut workers = vec![Arbiter::current()];
        workers.extend(arbiters.iter().map(Arbiter::handle));
        let clustered = config.cluster.is_some();
        Supervisor {
            hosts: HostRegistry::new(&config),
            clustered,
            config,
            config_path,
            feeds: BTreeMap::new(),
            retiring: Vec::new(),
            sinks: BTreeMap::new(),
            start_sink_actor: Box::new(sink::start),
            transports,
            router,
            routes,
            workers,
            arbiters,
            next_worker: 0,
            incarnations: 0,
            accepting_changes: true,
        }
    }

    /// The `[[hosts]]` registry, for the admin server (`GET /hosts`, `/metrics`).
    pub(crate) fn hosts(&self) -> Arc<HostRegistry> {
        self.hosts.clone()
    }

    /// A home for a new feed: the next worker, and a fresh sequence state if it is sequenced.
    fn new_home(&mut self, config: &FeedConfig, ctx: &mut Context<Self>) -> Home {
        let worker = self.next_worker % self.workers.len();
        self.next_worker += 1;
        // Legs check numbers themselves (see `connection/legs.rs`).
        let legs = FeedLegs::for_feed(config);
        let sequence = if legs.is_some() { None } else { new_sequence(config, ctx) };
        Home { worker, sequence, legs, leg: 0, replacing: false }
    }

    /// Starts a connection actor for `config` in its `home`; returns its incarnation.
    fn spawn_connection(
        &mut self,
        config: &Arc<FeedConfig>,
        shared: &Arc<StatusCell>,
        home: &Home,
        ctx: &mut Context<Self>,
    ) -> (Option<Addr<FeedConnection>>, u64) {
        self.incarnations += 1;
        let incarnation = self.incarnations;
        let transport = match self.transports.get(config.url.scheme()) {
            Ok(transport) => transport,
            Err(error) => {
                tracing::error!(feed = %config.name, %error, "feed cannot start");
                shared.set_error(&error);
                shared.set_state(FeedState::Failed);
                return (None, incarnation);
            }
        };
        let watch =
            SupervisorLink::new(ctx.address().recipient(), config.name.clone(), incarnation);
        let setup = ConnectionSetup {
            feed: shards::shard_config(config, 0),
            transport,
            routes: self.routes.clone(),
            shared: shared.clone(),
            watch: Some(watch),
            hosts: self.hosts.clone(),
        };
        let seat =
            home.sequence.as_ref().map(|sequence| sequence.join(incarnation, Some(shared.clone())));
        let leg_seat =
            home.legs.as_ref().map(|legs| legs.join(incarnation, home.leg, Some(shared.clone())));
        let replacing = home.replacing;
        let worker = &self.workers[home.worker % self.workers.len()];
        let actor = FeedConnection::start_in_arbiter(worker, move |_| {
            let actor = FeedConnection::new(setup);
            let actor = if replacing { actor.replacing() } else { actor };
            let actor = match leg_seat {
                Some(seat) => actor.on_leg(seat),
                None => actor,
            };
            match seat {
                Some(seat) => actor.sharing_sequence(seat),
                None => actor,
            }
        });
        (Some(actor), incarnation)
    }

    fn add_feed(&mut self, feed: FeedConfig, ctx: &mut Context<Self>) {
        let config = Arc::new(feed);
        let shared = StatusCell::new();
        let mut home = self.new_home(&config, ctx);
        let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
        let shards = self.start_shards(&config, &home, ctx);
        let extra_legs = self.spawn_extra_legs(&config, &home, ctx);
        home.replacing = true;
        let entry = FeedEntry { config, shared, home, actor, incarnation, shards, extra_legs };
        self.feeds.insert(entry.config.name.clone(), entry);
    }

    /// Closes a feed's connection (1000) and forgets it; its series leave `/metrics`.
    /// Stops every actor of feed `name` (its legs, shards and those being
    /// retired) and, once each has handled its `Disconnect` (so none pushes
    /// a message again, which would bring a series back), removes the feed's
    /// series from `/metrics`, unless a feed of that name was added meanwhile.
    fn remove_feed(&mut self, name: &str, ctx: &mut Context<Self>) -> bool {
        let Some(entry) = self.feeds.remove(name) else { return false };
        let code = feedvisor_transport_api::close_code::NORMAL;
        let mut stopping: Vec<_> =
            entry.actors().map(|actor| actor.send(Disconnect { code, retire: false })).collect();
        self.retiring.retain(|retiring| {
            let mine = retiring.feed == name;
            if mine {
                stopping.push(retiring.actor.send(Disconnect { code, retire: true }));
            }
            !mine
        });
        let name = name.to_owned();
        let stopped = futures_util::future::join_all(stopping);
        ctx.spawn(stopped.into_actor(self).map(move |_, supervisor, _| {
            if !supervisor.feeds.contains_key(&name) {
                metrics::remove_feed(&name);
            }
        }));
        true
    }

    /// Starts a new actor for a changed feed beside the old one. Without
    /// sequence numbers the old one goes once the new one opens; with them,
    /// once the new one takes over delivery (see [`FeedSequence`]). Either
    /// way, not later than a bounded wait.
    fn replace_feed(&mut self, feed: FeedConfig, ctx: &mut Context<Self>) {
        let name = feed.name.clone();
        let config = Arc::new(feed);
        let shared = StatusCell::new();
        // Numbers read by the same pointer continue the old actor's; others start afresh.
        let continues = |old: &FeedEntry| {
            old.config.sequence == config.sequence && old.config.mode == config.mode
        };
        let old = self.feeds.get(&name).map(|old| (old.home.clone(), continues(old)));
        let legs = legs::legs_for(&config, old.as_ref().and_then(|(home, _)| home.legs.as_ref()));
        let home = match old {
            // Legs check numbers themselves; a feed without them continues
            // the sequence state of the actors it replaces, if they had one.
            Some((home, true)) if legs.is_some() || home.sequence.is_some() => home,
            Some((home, _)) => Home { sequence: new_sequence(&config, ctx), ..home },
            None => self.new_home(&config, ctx),
        };
        let sequence = if legs.is_some() { None } else { home.sequence };
        let home = Home { sequence, legs, leg: 0, replacing: true, ..home };
        let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
        let shards = self.start_shards(&config, &home, ctx);
        let extra_legs = self.spawn_extra_legs(&config, &home, ctx);
        let sequence = home.sequence.clone();
        let entry = FeedEntry {
            config: config.clone(),
            shared,
            home,
            actor,
            incarnation,
            shards,
            extra_legs,
        };
        let Some(mut old) = self.feeds.insert(name.clone(), entry) else { return };
        self.retire_shards(&name, std::mem::take(&mut old.shards));
        self.retire_legs(&name, old.extra_legs, &old.home);
        let Some(old_actor) = old.actor else { return };
        if self.feeds.get(&name).is_some_and(|entry| entry.actor.is_none()) {
            // The new one cannot start: nothing to wait for.
            old_actor.do_send(Disconnect {
                code: feedvisor_transport_api::close_code::NORMAL,
                retire: true,
            });
            return;
        }
        self.retiring.push(Retiring {
            feed: name.clone(),
            incarnation: old.incarnation,
            sequence: old.home.sequence,
            leg: None,
            actor: old_actor,
        });
        // Do not wait forever for a successor that cannot connect or prove continuity.
        let patience = legs::patience(&config);
        ctx.run_later(patience, move |supervisor, _| {
            supervisor.retire_before(&name, incarnation, |_| true);
            if let Some(sequence) = sequence {
                sequence.settle(incarnation);
            }
        });
    }

    /// Stops the actors of `feed` older than `successor` that `pick` picks.
    fn retire_before(&mut self, feed: &str, successor: u64, pick: impl Fn(&Retiring) -> bool) {
        let code = feedvisor_transport_api::close_code::NORMAL;
        self.retiring.retain(|retiring| {
            let done = retiring.feed == feed && retiring.incarnation < successor && pick(retiring);
            if done {
                retiring.actor.do_send(Disconnect { code, retire: true });
            }
            !done
        });
    }

    /// Actor `incarnation` of `feed` (of leg `leg`, if current) is subscribed
    /// and delivering: the older actors it does not share a sequence state
    /// with go (those it shares one with wait for it to take over), but for
    /// a rotated leg's, which only a later actor of that leg retires.
    fn opened(&mut self, feed: &str, incarnation: u64, leg: Option<usize>) {
        let current = self.feeds.get(feed).filter(|entry| entry.incarnation == incarnation);
        let sequence = match current {
            Some(entry) => entry.home.sequence.clone(),
            None => self
                .retiring
                .iter()
                .find(|retiring| retiring.feed == feed && retiring.incarnation == incarnation)
                .and_then(|retiring| retiring.sequence.clone()),
        };
        self.retire_before(feed, incarnation, |retiring| {
            let same_leg = retiring.leg.is_none_or(|retired| Some(retired) == leg);
            same_leg
                && match (&sequence, &retiring.sequence) {
                    (Some(mine), Some(theirs)) => !Arc::ptr_eq(mine, theirs),
                    _ => true,
                }
        });
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    /// Sinks first, so that they see the feeds' first messages: the router
    /// takes messages in the order they were sent, so once it has answered
    /// the question sent after the sinks' subscriptions, every sink is in its
    /// table. Until then the supervisor handles nothing else.
    fn started(&mut self, ctx: &mut Context<Self>) {
        for subscriber in self.config.subscribers.clone() {
            self.start_sink(subscriber, ctx);
        }
        let subscribed = self.router.send(GetInFlight).into_actor(self);
        ctx.wait(subscribed.map(|_, supervisor, ctx| {
            if !supervisor.clustered {
                for feed in supervisor.config.feeds.clone() {
                    supervisor.add_feed(feed, ctx);
                }
            }
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl Handler<ConnectionEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, event: ConnectionEvent, ctx: &mut Context<Self>) {
        match event {
            ConnectionEvent::Delivering { feed, incarnation } => {
                self.delivering(&feed, incarnation);
            }
            ConnectionEvent::RotateDue { feed, incarnation } => {
                self.rotate_due(&feed, incarnation, ctx);
            }
            ConnectionEvent::TookOver { feed, incarnation } => {
                self.retire_before(&feed, incarnation, |_| true);
            }
            ConnectionEvent::Died { feed, incarnation } => {
                if self.shard_died(&feed, incarnation, ctx) {
                    return;
                }
                let Some(entry) = self.feeds.get(&feed).filter(|e| e.incarnation == incarnation)
                else {
                    self.leg_died(&feed, incarnation, ctx);
                    return;
                };
                if !self.accepting_changes {
                    return;
                }
                tracing::error!(feed = %feed, "connection actor died unexpectedly; restarting it");
                metrics::actor_restarted("connection");
                let (config, shared) = (entry.config.clone(), entry.shared.clone());
                let home = entry.home.clone();
                shared.set_state(FeedState::Connecting);
                shared.set_error("the connection actor died unexpectedly and was restarted");
                let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
                if let Some(entry) = self.feeds.get_mut(&feed) {
                    entry.actor = actor;
                    entry.incarnation = incarnation;
                }
            }
        }
    }
}

/// Asks for the status of every feed, sorted by name.
#[derive(Message)]
#[rtype(result = "Vec<FeedStatus>")]
pub(crate) struct GetStatus;

impl Handler<GetStatus> for Supervisor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.feeds.values().map(FeedEntry::status).collect())
    }
}

/// Asks for the status of one feed.
#[derive(Message)]
#[rtype(result = "Option<FeedStatus>")]
pub(crate) struct GetFeedStatus {
    /// The feed's name.
    pub name: String,
}

impl Handler<GetFeedStatus> for Supervisor {
    type Result = Option<FeedStatus>;

    fn handle(&mut self, message: GetFeedStatus, _: &mut Context<Self>) -> Self::Result {
        self.feeds.get(&message.name).map(FeedEntry::status)
    }
}

/// Asks whether every required feed is open; the answer lists those that are not.
#[derive(Message)]
#[rtype(result = "Readiness")]
pub(crate) struct GetReadiness;

/// Whether every required feed is open: what
/// [`Sidecar::readiness`](crate::Sidecar::readiness) and `/readyz` answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    /// True when every required feed is open.
    pub ready: bool,
    /// Required feeds that are not open, with their states.
    pub waiting_for: Vec<FeedReadiness>,
}

/// A required feed that is not open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeedReadiness {
    /// The feed's name.
    pub name: String,
    /// Its state.
    pub state: FeedState,
}

impl Handler<GetReadiness> for Supervisor {
    type Result = MessageResult<GetReadiness>;

    fn handle(&mut self, _: GetReadiness, _: &mut Context<Self>) -> Self::Result {
        let waiting_for: Vec<FeedReadiness> = self
            .feeds
            .values()
            .filter(|entry| entry.config.required)
            .map(|entry| FeedReadiness { name: entry.config.name.clone(), state: entry.state() })
            .filter(|feed| feed.state != FeedState::Open)
            .collect();
        let ready = self.accepting_changes && waiting_for.is_empty();
        MessageResult(Readiness { ready, waiting_for })
    }
}

/// Sends a message to a feed's peer by the feed's name.
#[derive(Message)]
#[rtype(result = "Result<SendOutcome, SendError>")]
pub(crate) struct SendToFeed {
    /// The feed's name.
    pub feed: String,
    /// A text or binary message.
    pub message: feedvisor_transport_api::Outbound,
}

impl Handler<SendToFeed> for Supervisor {
    type Result = ResponseFuture<Result<SendOutcome, SendError>>;

    fn handle(&mut self, send: SendToFeed, _: &mut Context<Self>) -> Self::Result {
        let actors: Vec<_> = match self.feeds.get(&send.feed) {
            None => return Box::pin(async move { Err(SendError::UnknownFeed(send.feed)) }),
            Some(FeedEntry { actor: None, .. }) => {
                return Box::pin(async { Err(SendError::FeedFailed) });
            }
            // Every leg of a feed with legs gets it, so that they stay alike.
            Some(entry) => entry.leg_actors().collect(),
        };
        Box::pin(async move {
            let sends = actors
                .iter()
                .map(|actor| actor.send(SendMessage { message: send.message.clone() }));
            let outcomes = futures_util::future::join_all(sends).await;
            legs::best_outcome(
                outcomes.into_iter().map(|sent| sent.unwrap_or(Err(SendError::Unavailable))),
            )
        })
    }
}

/// Asks for a feed's connection actor (for messages sent in pieces).
#[derive(Message)]
#[rtype(result = "Result<Addr<FeedConnection>, SendError>")]
pub(crate) struct GetConnection {
    /// The feed's name.
    pub name: String,
}

impl Handler<GetConnection> for Supervisor {
    type Result = Result<Addr<FeedConnection>, SendError>;

    fn handle(&mut self, get: GetConnection, _: &mut Context<Self>) -> Self::Result {
        match self.feeds.get(&get.name) {
            None => Err(SendError::UnknownFeed(get.name)),
            Some(FeedEntry { actor: None, .. }) => Err(SendError::FeedFailed),
            Some(FeedEntry { actor: Some(actor), .. }) => Ok(actor.clone()),
        }
    }
}

/// Refuses further changes and closes every feed with a close frame (1001,
/// going away); answers once every connection actor has queued its close.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseFeeds;

impl Handler<CloseFeeds> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: CloseFeeds, _: &mut Context<Self>) -> Self::Result {
        self.accepting_changes = false;
        let code = feedvisor_transport_api::close_code::GOING_AWAY;
        let actors: Vec<_> = self.feeds.values().flat_map(FeedEntry::actors).collect();
        let retiring = self.retiring.drain(..).map(|retiring| retiring.actor);
        let closing: Vec<_> = actors
            .into_iter()
            .chain(retiring)
            .map(|actor| actor.send(Disconnect { code, retire: false }))
            .collect();
        Box::pin(
            async move {
                futures_util::future::join_all(closing).await;
            }
            .into_actor(self),
        )
    }
}

/// Stops the supervisor and its worker threads, after a grace period in which
/// the transports put the close frames queued by [`CloseFeeds`] on the wire.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// How long the transports get to write close frames before the workers stop.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.accepting_changes = false;
        Box::pin(actix_rt::time::sleep(CLOSE_GRACE).into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}
