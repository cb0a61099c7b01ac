//! The supervisor: owns one connection actor per feed and answers status queries.
//!
//! Connection actors are spread over a small pool of worker arbiters (one per
//! core), so thousands of feeds share a few threads and transports that are
//! not `Send` (awc) are built on the thread that uses them.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::config::FeedConfig;
use crate::connection::{
    ConnectionSetup, Disconnect, FeedConnection, SendError, SendMessage, SendOutcome,
};
use crate::router::Route;
use crate::status::{FeedShared, FeedState, FeedStatus};
use crate::transports::TransportRegistry;

/// One supervised feed.
struct FeedEntry {
    config: Arc<FeedConfig>,
    shared: Arc<FeedShared>,
    /// The connection actor; `None` when the feed could not be started (unknown scheme).
    actor: Option<Addr<FeedConnection>>,
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

/// Owns the connection actors.
pub struct Supervisor {
    feeds: BTreeMap<String, FeedEntry>,
    transports: TransportRegistry,
    router: Recipient<Route>,
    workers: Vec<ArbiterHandle>,
    /// Keeps the worker arbiters' threads alive.
    _arbiters: Vec<Arbiter>,
    /// Which worker the next feed goes to.
    next_worker: usize,
}

impl Supervisor {
    /// A supervisor for `feeds`, started with [`Actor::start`].
    pub fn new(
        feeds: Vec<FeedConfig>,
        transports: TransportRegistry,
        router: Recipient<Route>,
    ) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let mut supervisor = Supervisor {
            feeds: BTreeMap::new(),
            transports,
            router,
            workers: arbiters.iter().map(Arbiter::handle).collect(),
            _arbiters: arbiters,
            next_worker: 0,
        };
        for feed in feeds {
            supervisor.add_feed(feed);
        }
        supervisor
    }

    fn add_feed(&mut self, feed: FeedConfig) {
        let config = Arc::new(feed);
        let shared = FeedShared::new();
        let actor = match self.transports.get(config.url.scheme()) {
            Ok(transport) => {
                let setup = ConnectionSetup {
                    feed: config.clone(),
                    transport,
                    router: self.router.clone(),
                    shared: shared.clone(),
                };
                let worker = &self.workers[self.next_worker % self.workers.len()];
                self.next_worker += 1;
                Some(FeedConnection::start_in_arbiter(worker, move |_| FeedConnection::new(setup)))
            }
            Err(error) => {
                tracing::error!(feed = %config.name, %error, "feed cannot start");
                shared.set_error(&error);
                shared.set_state(FeedState::Failed);
                None
            }
        };
        self.feeds.insert(config.name.clone(), FeedEntry { config, shared, actor });
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        for arbiter in &self._arbiters {
            arbiter.stop();
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
        MessageResult(Readiness { ready: waiting_for.is_empty(), waiting_for })
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

/// Closes every feed with a close frame (1001, going away) and stops the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let code = feedvisor_transport_api::close_code::GOING_AWAY;
        let closing: Vec<_> = self
            .feeds
            .values()
            .filter_map(|entry| entry.actor.as_ref())
            .map(|actor| actor.send(Disconnect { code }))
            .collect();
        Box::pin(
            async move {
                // Every actor has queued its close frame once its reply is in; the
                // grace period lets the transports put those frames on the wire.
                futures_util::future::join_all(closing).await;
                actix_rt::time::sleep(CLOSE_GRACE).await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// How long shutdown waits for close frames to be written after the actors queued them.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);
