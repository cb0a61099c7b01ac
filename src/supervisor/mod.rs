//! The supervisor: owns one connection actor per feed and the config's sinks;
//! everything that changes the set of feeds goes through it.
//!
//! Connection actors are spread over a pool of worker arbiters (`workers`,
//! one per core by default, the first being the router's own), so thousands
//! of feeds use every core, and
//! transports that are not `Send` (awc) are built on the thread that uses
//! them. Each actor carries a [`DeathNotice`]: one that panics or stops
//! unasked is restarted here and counted in `feedvisor_actor_restarts_total`.

mod changes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use changes::{
    AddFeed, ChangeError, ReconnectFeed, Reload, ReloadReport, RemoveFeed, ReplaceFeed,
};

use crate::config::{Config, FeedConfig, SubscriberConfig};
use crate::connection::{
    ConnectionEvent, ConnectionSetup, DeathNotice, Disconnect, FeedConnection, SendError,
    SendMessage, SendOutcome,
};
use crate::metrics;
use crate::router::{Router, Routes, Subscribe, SubscriptionSpec, Unsubscribe};
use crate::sink;
use crate::status::{FeedShared, FeedState, FeedStatus};
use crate::transports::TransportRegistry;

/// One supervised feed.
struct FeedEntry {
    config: Arc<FeedConfig>,
    shared: Arc<FeedShared>,
    /// The connection actor; `None` when the feed could not be started (unknown scheme).
    actor: Option<Addr<FeedConnection>>,
    /// Which actor of this feed is current; events from others are stale.
    incarnation: u64,
}

impl FeedEntry {
    fn status(&self) -> FeedStatus {
        FeedStatus {
            name: self.config.name.clone(),
            url: self.config.display_url(),
            mode: self.config.mode.as_str(),
            state: self.shared.state(),
            messages_in: self.shared.messages_in(),
            bytes_in: self.shared.bytes_in(),
            reconnects: self.shared.reconnects(),
            outbound_queued: self.shared.outbound_queued(),
            required: self.config.required,
            last_error: self.shared.last_error(),
            last_close: self.shared.last_close(),
        }
    }
}

/// A connection actor being replaced: it keeps delivering until its successor opens.
struct Retiring {
    feed: String,
    /// The successor whose opening retires this one.
    successor: u64,
    actor: Addr<FeedConnection>,
}

/// Owns the connection actors and the config's sinks.
pub struct Supervisor {
    /// The config as last applied (defaults for feeds added at run time, sinks, path).
    config: Config,
    /// Where `Reload` reads the config from; `None` for a config given as a value.
    config_path: Option<PathBuf>,
    feeds: BTreeMap<String, FeedEntry>,
    /// Replaced actors still running until their successors open.
    retiring: Vec<Retiring>,
    /// The config's sinks by subscriber name, with the config they were made from.
    sinks: BTreeMap<String, SubscriberConfig>,
    transports: TransportRegistry,
    router: Addr<Router>,
    /// The router's published table, handed to every connection actor.
    routes: Arc<Routes>,
    workers: Vec<ArbiterHandle>,
    /// Keeps the worker arbiters' threads alive.
    arbiters: Vec<Arbiter>,
    /// Which worker the next feed goes to.
    next_worker: usize,
    /// Numbers connection actors, so that events from replaced ones are recognised.
    incarnations: u64,
    /// False once shutdown began: changes are refused.
    accepting_changes: bool,
}

impl Supervisor {
    /// A supervisor for `config`, started with [`Actor::start`]; `config_path` enables `Reload`.
    pub fn new(
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
        Supervisor {
            config,
            config_path,
            feeds: BTreeMap::new(),
            retiring: Vec::new(),
            sinks: BTreeMap::new(),
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

    /// Starts a connection actor for `config` on the next worker; returns its incarnation.
    fn spawn_connection(
        &mut self,
        config: &Arc<FeedConfig>,
        shared: &Arc<FeedShared>,
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
        let watch = DeathNotice::new(ctx.address().recipient(), config.name.clone(), incarnation);
        let setup = ConnectionSetup {
            feed: config.clone(),
            transport,
            routes: self.routes.clone(),
            shared: shared.clone(),
            watch: Some(watch),
        };
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker += 1;
        let actor = FeedConnection::start_in_arbiter(worker, move |_| FeedConnection::new(setup));
        (Some(actor), incarnation)
    }

    fn add_feed(&mut self, feed: FeedConfig, ctx: &mut Context<Self>) {
        let config = Arc::new(feed);
        let shared = FeedShared::new();
        let (actor, incarnation) = self.spawn_connection(&config, &shared, ctx);
        self.feeds.insert(config.name.clone(), FeedEntry { config, shared, actor, incarnation });
    }

    /// Closes a feed's connection (1000) and forgets it; its gauges show it `closed`.
    fn remove_feed(&mut self, name: &str) -> bool {
        let Some(entry) = self.feeds.remove(name) else { return false };
        if let Some(actor) = entry.actor {
            actor.do_send(Disconnect {
                code: feedvisor_transport_api::close_code::NORMAL,
                retire: false,
            });
        } else {
            metrics::FeedMetrics::new(name).set_state(FeedState::Closed);
        }
        self.retire_all_of(name);
        true
    }

    /// Starts a new actor for a changed feed; the old one keeps running until the new one opens.
    fn replace_feed(&mut self, feed: FeedConfig, ctx: &mut Context<Self>) {
        let name = feed.name.clone();
        let config = Arc::new(feed);
        let shared = FeedShared::new();
        let (actor, incarnation) = self.spawn_connection(&config, &shared, ctx);
        let entry = FeedEntry { config: config.clone(), shared, actor, incarnation };
        let Some(old) = self.feeds.insert(name.clone(), entry) else { return };
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
            successor: incarnation,
            actor: old_actor,
        });
        // Do not wait forever for a successor that cannot connect.
        let patience = config.handshake_timeout * 2 + Duration::from_secs(1);
        ctx.run_later(patience, move |supervisor, _| supervisor.retire(&name, incarnation));
    }

    /// Stops the actors that `successor` replaces.
    fn retire(&mut self, feed: &str, successor: u64) {
        let code = feedvisor_transport_api::close_code::NORMAL;
        self.retiring.retain(|retiring| {
            let done = retiring.feed == feed && retiring.successor == successor;
            if done {
                retiring.actor.do_send(Disconnect { code, retire: true });
            }
            !done
        });
    }

    fn retire_all_of(&mut self, feed: &str) {
        let code = feedvisor_transport_api::close_code::NORMAL;
        self.retiring.retain(|retiring| {
            let mine = retiring.feed == feed;
            if mine {
                retiring.actor.do_send(Disconnect { code, retire: true });
            }
            !mine
        });
    }

    /// Subscribes a config sink (replacing one of the same name).
    fn start_sink(&mut self, subscriber: SubscriberConfig) {
        let recipient = sink::start(&subscriber);
        let spec = SubscriptionSpec::from_config(&subscriber);
        self.router.do_send(Subscribe { spec, recipient });
        self.sinks.insert(subscriber.name.clone(), subscriber);
    }

    fn stop_sink(&mut self, name: &str) {
        if self.sinks.remove(name).is_some() {
            self.router.do_send(Unsubscribe { name: name.to_owned() });
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    /// Sinks first, so that they see the feeds' first messages.
    fn started(&mut self, ctx: &mut Context<Self>) {
        for subscriber in self.config.subscribers.clone() {
            self.start_sink(subscriber);
        }
        for feed in self.config.feeds.clone() {
            self.add_feed(feed, ctx);
        }
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
            ConnectionEvent::Opened { feed, incarnation } => self.retire(&feed, incarnation),
            ConnectionEvent::Died { feed, incarnation } => {
                let Some(entry) = self.feeds.get(&feed).filter(|e| e.incarnation == incarnation)
                else {
                    return;
                };
                if !self.accepting_changes {
                    return;
                }
                tracing::error!(feed = %feed, "connection actor died unexpectedly; restarting it");
                metrics::actor_restarted("connection");
                let (config, shared) = (entry.config.clone(), entry.shared.clone());
                shared.set_state(FeedState::Connecting);
                shared.set_error("the connection actor died unexpectedly and was restarted");
                let (actor, incarnation) = self.spawn_connection(&config, &shared, ctx);
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
pub struct GetStatus;

impl Handler<GetStatus> for Supervisor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.feeds.values().map(FeedEntry::status).collect())
    }
}

/// Asks for the status of one feed.
#[derive(Message)]
#[rtype(result = "Option<FeedStatus>")]
pub struct GetFeedStatus {
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
pub struct GetReadiness;

/// The answer to [`GetReadiness`].
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
            .map(|entry| FeedReadiness {
                name: entry.config.name.clone(),
                state: entry.shared.state(),
            })
            .filter(|feed| feed.state != FeedState::Open)
            .collect();
        let ready = self.accepting_changes && waiting_for.is_empty();
        MessageResult(Readiness { ready, waiting_for })
    }
}

/// Sends a message to a feed's peer by the feed's name.
#[derive(Message)]
#[rtype(result = "Result<SendOutcome, SendError>")]
pub struct SendToFeed {
    /// The feed's name.
    pub feed: String,
    /// A text or binary message.
    pub message: feedvisor_transport_api::Outbound,
}

impl Handler<SendToFeed> for Supervisor {
    type Result = ResponseFuture<Result<SendOutcome, SendError>>;

    fn handle(&mut self, send: SendToFeed, _: &mut Context<Self>) -> Self::Result {
        let actor = match self.feeds.get(&send.feed) {
            None => return Box::pin(async move { Err(SendError::UnknownFeed(send.feed)) }),
            Some(FeedEntry { actor: None, .. }) => {
                return Box::pin(async { Err(SendError::FeedFailed) });
            }
            Some(FeedEntry { actor: Some(actor), .. }) => actor.clone(),
        };
        Box::pin(async move {
            actor
                .send(SendMessage { message: send.message })
                .await
                .unwrap_or(Err(SendError::Unavailable))
        })
    }
}

/// Asks for a feed's connection actor (for messages sent in pieces).
#[derive(Message)]
#[rtype(result = "Result<Addr<FeedConnection>, SendError>")]
pub struct GetConnection {
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
pub struct CloseFeeds;

impl Handler<CloseFeeds> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: CloseFeeds, _: &mut Context<Self>) -> Self::Result {
        self.accepting_changes = false;
        let code = feedvisor_transport_api::close_code::GOING_AWAY;
        let actors = self.feeds.values().filter_map(|entry| entry.actor.clone());
        let retiring = self.retiring.drain(..).map(|retiring| retiring.actor);
        let closing: Vec<_> = actors
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
pub struct Shutdown;

/// How long the transports get to write close frames before the workers stop.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.accepting_changes = false;
        Box::pin(actix_rt::time::sleep(CLOSE_GRACE).into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}
