//! The connection actor: one per feed, it owns the feed's transport connection and timers.
//!
//! Life cycle: `connecting` (transport connect and handshake, bounded by
//! `handshake_timeout`) → `open` (on_open messages sent, then the outbound
//! queue flushed in order; inbound batches assembled into messages and
//! pushed to the subscribers that want them; heartbeat and idle timers running) → on any loss,
//! `backing_off` for the delay the reconnect policy gives → `connecting`
//! again, or `failed` when the policy gives up. [`Disconnect`] sends a close
//! frame and stops the actor (`closed`).
//!
//! Timers and durations here use tokio's clock (`actix_rt::time::Instant`),
//! so tests that pause time see every timeout exactly.
//!
//! Invariant: this actor never touches a socket; it speaks to the transport
//! only through [`feedvisor_transport_api`]. Every connection gets a new
//! generation number, and events and timers from an older generation are
//! ignored, so nothing from a dropped connection can disturb the current one.
//!
//! `clippy.toml` holds this module (and its submodules) to that: no
//! `std::time::Instant` (but for the arrival stamp of messages, see
//! `inbound.rs`), no blocking sleep, and no random source but the one it
//! hands to `backoff.rs`.

#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

mod credentials;
mod decode;
mod freshness;
pub(crate) mod inbound;
pub(crate) mod legs;
mod liveness;
mod outbound;
mod paced;
pub(crate) mod queue;
pub(crate) mod sequence;
mod subscriptions;
pub(crate) mod watch;

/// The one-scan JSON pointer walk, shared with the inboxes' conflation.
use crate::pointer;

use std::sync::Arc;
use std::time::Duration;

use actix_rt::time::Instant;

use actix::prelude::*;
use futures_util::stream::{self, StreamExt};

use feedvisor_transport_api::{
    CloseFrame, CompressedBytes, ConnectRequest, Connection, MessageAssembler, Outbound,
    OutboundSender, Transport, TransportError,
};

use crate::backoff::Backoff;
use crate::config::{format_duration, FeedConfig};
use crate::flow::{FlowGate, Gated};
use crate::metrics::FeedMetrics;
use crate::router::{FeedRoutes, Routes};
use crate::status::{CloseRecord, FeedState, RetryWait, StatusCell};

pub(crate) use outbound::{send_in_pieces, SendMessage};
pub use outbound::{SendError, SendOutcome};
use queue::OutboundQueue;
pub use queue::{OutboundFill, OutboundQueueError};
use sequence::SequenceSeat;
pub(crate) use watch::{ConnectionEvent, SupervisorLink};

/// Everything a connection actor is started with.
pub(crate) struct ConnectionSetup {
    /// The feed as configured (defaults applied).
    pub feed: Arc<FeedConfig>,
    /// The transport its URL scheme picked.
    pub transport: Arc<dyn Transport>,
    /// The subscription table inbound batches are routed by.
    pub routes: Arc<Routes>,
    /// Where its status is published.
    pub shared: Arc<StatusCell>,
    /// Tells the supervisor when it opens and if it dies unasked; `None` when unsupervised.
    pub watch: Option<SupervisorLink>,
    /// The process's `[[hosts]]` registry: connect budgets, cool-downs, pacing defaults.
    pub hosts: Arc<crate::venue::hosts::HostRegistry>,
}

/// The open connection and what belongs to it alone.
struct Link {
    /// Where messages for the peer go.
    outbound: OutboundSender,
    /// The reader of the connection's inbound stream, cancelled when the link drops.
    reader: SpawnHandle,
    /// The heartbeat timer, cancelled when the link drops.
    heartbeat: Option<SpawnHandle>,
    /// When the connection opened (a stable connection resets the backoff).
    opened_at: Instant,
    /// When anything last arrived (for the idle timeout).
    last_inbound: Instant,
    /// The heartbeat ping awaiting its answer, if one is.
    ping: Option<liveness::PendingPing>,
}

/// Stream mode's bookkeeping.
#[derive(Debug, Default)]
struct StreamState {
    /// Messages begun so far (the number of the current or last one).
    messages: u64,
    /// The message being streamed and the offset of its next byte.
    current: Option<(u64, u64)>,
}

/// The connection actor of one feed.
pub(crate) struct FeedConnection {
    /// The feed as configured.
    feed: Arc<FeedConfig>,
    /// The feed's name, shared by every message it produces.
    name: Arc<str>,
    transport: Arc<dyn Transport>,
    /// This feed's subscribers, from the router's published table.
    routes: FeedRoutes,
    shared: Arc<StatusCell>,
    metrics: FeedMetrics,
    /// The reconnect policy and how many attempts it has handed out.
    backoff: Backoff,
    /// Gathers fragments into whole messages, bounded by `max_message_size`.
    assembler: MessageAssembler,
    /// The topics seen so far, shared by the messages that carry them.
    topics: inbound::Topics,
    /// Counts connections; events and timers tagged with an older one are stale.
    generation: u64,
    /// The open connection, while there is one.
    link: Option<Link>,
    /// Messages for the peer that wait while the feed is down.
    queue: OutboundQueue,
    /// The last sequence number seen, across connections (and across actors, when shared).
    sequence: SequenceSeat,
    /// True once a connection has opened (later opens are reconnects).
    opened_before: bool,
    /// Heartbeat pings sent, to tell their answers apart.
    pings_sent: u64,
    /// Closed by subscribers that cannot keep up (backpressure): reading pauses.
    gate: Arc<FlowGate>,
    /// Stream mode: message numbering and the message being streamed.
    stream: StreamState,
    /// The message being sent in pieces: its owner and the generation it started on.
    pieces: Option<outbound::Pieces>,
    /// The supervisor's watch on this actor.
    watch: Option<SupervisorLink>,
    /// Set when the actor is being replaced: its states no longer reach the
    /// feed's gauges, which belong to the replacement.
    retired: bool,
    /// Event-time latency, the clock offset estimate, and staleness.
    freshness: freshness::Freshness,
    /// What the transport inflated (compressed bytes, and what they became),
    /// taken after each batch to count wire bytes.
    compressed: CompressedBytes,
    /// The generated subscriptions (`subscribe`), if the feed has any.
    subscriptions: Option<subscriptions::Subscriptions>,
    /// Which shard of its feed this actor is (`max_topics_per_connection`); `None`: the only one.
    shard: Option<usize>,
    /// The credential provider and what it last gave (empty without one).
    credentials: credentials::CredentialState,
    /// Outbound pacing and the host's connect budget (`paced.rs`).
    venue: paced::VenueState,
    /// Redundant legs, discontinuity events owed to subscribers, rotation.
    zero_gap: legs::ZeroGap,
}

impl FeedConnection {
    /// A connection actor, not yet started.
    pub(crate) fn new(setup: ConnectionSetup) -> Self {
        let ConnectionSetup { feed, transport, routes, shared, watch, hosts } = setup;
        let max_message_size = usize::try_from(feed.max_message_size).unwrap_or(usize::MAX);
        let name: Arc<str> = Arc::from(feed.name.as_str());
        let zero_gap = legs::ZeroGap::new(&feed.name);
        FeedConnection {
            routes: FeedRoutes::new(routes, name.clone()),
            name,
            metrics: FeedMetrics::new(&feed.name),
            assembler: MessageAssembler::new(max_message_size),
            topics: inbound::Topics::default(),
            backoff: Backoff::new(feed.reconnect),
            queue: OutboundQueue::new(feed.outbound_queue),
            sequence: SequenceSeat::alone(&feed.name),
            freshness: freshness::Freshness::new(feed.timestamp.clone()),
            subscriptions: subscriptions::Subscriptions::for_feed(&feed, &shared),
            shard: feed.subscribe.as_ref().and_then(|subscribe| subscribe.shard),
            credentials: credentials::CredentialState::new(&feed),
            venue: paced::VenueState::new(&feed, hosts),
            feed,
            transport,
            shared,
            generation: 0,
            link: None,
            opened_before: false,
            pings_sent: 0,
            gate: FlowGate::new(),
            stream: StreamState::default(),
            pieces: None,
            watch,
            retired: false,
            compressed: CompressedBytes::default(),
            zero_gap,
        }
    }

    fn set_state(&self, state: FeedState) {
        self.shared.set_state(state);
        if let Some(subscriptions) = &self.subscriptions {
            subscriptions.set_up(state.is_connected());
        }
        // A feed's gauges follow its first shard (the others have their
        // own) and the best of its legs.
        if !self.retired && self.shard.unwrap_or(0) == 0 {
            self.metrics.set_state(self.zero_gap.feed_state(state));
        }
    }

    fn connect_request(&self) -> ConnectRequest {
        ConnectRequest {
            url: self.credentials.url(&self.feed.url).clone(),
            headers: self.credentials.headers(&self.feed.headers),
            subprotocols: self.feed.subprotocols.clone(),
            // A frame larger than the largest message can never be accepted.
            max_frame_size: self.assembler.max_message_size(),
            handshake_timeout: self.feed.handshake_timeout,
            tls: self.feed.tls.clone(),
            proxy: self.feed.proxy.clone(),
            mode: self.feed.mode,
            framing: self.feed.framing,
            compression: self.feed.compression.unwrap_or_default(),
            compressed: self.compressed.clone(),
        }
    }

    /// Starts a connect attempt, bounded by `handshake_timeout` whatever the transport does.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.wait_for_host(ctx) {
            return;
        }
        self.generation += 1;
        self.set_state(FeedState::Connecting);
        self.shared.set_retry(None);
        tracing::debug!(feed = %self.name, url = %self.feed.display_url(), "connecting");
        if !self.fetch_credentials_then_dial(ctx) {
            self.dial(ctx);
        }
    }

    /// Dials the transport: the connect attempt itself, after any credentials were fetched.
    fn dial(&mut self, ctx: &mut Context<Self>) {
        let generation = self.generation;
        let timeout = self.feed.handshake_timeout;
        if self.feed.tls.insecure_skip_verify {
            tracing::warn!(
                feed = %self.feed.name,
                "connecting with tls.insecure_skip_verify = true: any server certificate is accepted"
            );
            self.metrics.insecure_connect();
        }
        let attempt = self.transport.connect(self.connect_request());
        let url = self.feed.display_url();
        let started = Instant::now();
        let bounded = async move {
            match actix_rt::time::timeout(timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(TransportError::Timeout {
                    what: format!("connect to {url}"),
                    after: timeout,
                }),
            }
        };
        ctx.spawn(bounded.into_actor(self).map(move |result, actor, ctx| {
            if actor.generation == generation {
                actor.connected(result, started, ctx);
            }
        }));
    }

    fn connected(
        &mut self,
        result: Result<Connection, TransportError>,
        started: Instant,
        ctx: &mut Context<Self>,
    ) {
        let connection = match result {
            Ok(connection) => connection,
            Err(error) => {
                self.metrics.connect_attempt(error.kind().as_str());
                self.credentials_refused_handshake(&error);
                let shown = self.credentials.hide(self.feed.shown_error(&error.to_string()));
                tracing::warn!(feed = %self.name, error = %shown, attempt = self.backoff.attempts() + 1, "connect failed");
                self.shared.set_error(shown);
                let retry_after = match &error {
                    TransportError::HandshakeStatus { retry_after, .. } => *retry_after,
                    _ => None,
                };
                self.host_refused(&error);
                self.schedule_retry(retry_after, ctx);
                return;
            }
        };
        self.metrics.connect_attempt("ok");
        self.metrics.handshake_duration.record(started.elapsed().as_secs_f64());
        if self.opened_before {
            self.metrics.reconnects.increment(1);
            self.shared.add_reconnect();
        }
        self.zero_gap_opened(ctx);
        self.opened_before = true;
        tracing::info!(feed = %self.name, protocol = ?connection.protocol, "connected");
        self.assembler.reset();
        let generation = self.generation;
        let inbound = Gated::new(connection.inbound, self.gate.clone())
            .map(move |item| InboundItem { generation, item: Some(item) })
            .chain(stream::once(async move { InboundItem { generation, item: None } }));
        let reader = ctx.add_stream(inbound);
        let now = Instant::now();
        self.link = Some(Link {
            outbound: connection.outbound,
            reader,
            heartbeat: None,
            opened_at: now,
            last_inbound: now,
            ping: None,
        });
        self.set_state(FeedState::Open);
        self.send_on_open();
        self.send_subscriptions(ctx);
        self.flush_queue();
        self.start_liveness(ctx);
        self.start_staleness(ctx);
    }

    /// Drops the current connection (if any) and schedules the next attempt.
    fn connection_lost(&mut self, ctx: &mut Context<Self>) {
        self.drop_link(ctx);
        self.schedule_retry(None, ctx);
    }

    /// Forgets the open connection, cancelling its reader and timers.
    fn drop_link(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        if let Some(link) = self.link.take() {
            ctx.cancel_future(link.reader);
            if let Some(heartbeat) = link.heartbeat {
                ctx.cancel_future(heartbeat);
            }
            self.backoff.connection_ended(link.opened_at.elapsed());
        }
        self.assembler.reset();
        self.abort_stream_message();
        self.subscriptions_ended();
        self.pacing_connection_lost();
    }

    /// Waits as the policy says, then connects again; or gives up.
    fn schedule_retry(&mut self, retry_after: Option<Duration>, ctx: &mut Context<Self>) {
        #[allow(
            clippy::disallowed_methods,
            reason = "the caller picks the random source that backoff.rs takes as an argument"
        )]
        let Some(delay) = self.backoff.next_delay(&mut rand::rng(), retry_after) else {
            self.give_up();
            return;
        };
        let cap = self.feed.reconnect.max_retry_after;
        let capped = retry_after.is_some_and(|asked| asked > cap);
        if capped {
            self.metrics.retry_after_capped();
            tracing::warn!(
                feed = %self.name,
                retry_after = ?retry_after,
                max_retry_after = ?cap,
                "the server's Retry-After is longer than reconnect.max_retry_after: waiting that long instead"
            );
        }
        self.shared.set_retry(Some(RetryWait {
            delay: format_duration(delay),
            retry_after_secs: retry_after.map(|asked| asked.as_secs()),
            capped,
        }));
        self.set_state(FeedState::BackingOff);
        tracing::debug!(feed = %self.name, ?delay, attempt = self.backoff.attempts(), "reconnecting after delay");
        let generation = self.generation;
        ctx.run_later(delay, move |actor, ctx| {
            if actor.generation == generation {
                actor.connect(ctx);
            }
        });
    }

    /// The policy allows no more attempts: the feed is `failed`, loudly.
    fn give_up(&mut self) {
        self.set_state(FeedState::Failed);
        let last_error = self.shared.last_error().unwrap_or_default();
        tracing::error!(
            feed = %self.name,
            attempts = self.backoff.attempts(),
            policy = self.feed.reconnect.kind.as_str(),
            %last_error,
            "feed failed: the reconnect policy allows no more attempts"
        );
    }

    /// Closes the connection with `code` (what the peer sent was refused, or it
    /// stopped answering), records why, and reconnects.
    fn close_and_reconnect(&mut self, code: u16, reason: String, ctx: &mut Context<Self>) {
        if let Some(link) = &self.link {
            let _ =
                link.outbound.send(Outbound::Close(Some(CloseFrame::new(code, reason.clone()))));
        }
        self.shared.set_close(CloseRecord::local(code, reason.clone()));
        self.shared.set_error(reason);
        self.connection_lost(ctx);
    }

    fn transport_failed(&mut self, error: TransportError, ctx: &mut Context<Self>) {
        self.count_refusal(&error);
        if let Some(code) = error.close_code() {
            self.shared.set_close(CloseRecord::local(code, error.to_string()));
        }
        let shown = self.credentials.hide(self.feed.shown_error(&error.to_string()));
        tracing::warn!(feed = %self.name, error = %shown, "connection lost");
        self.shared.set_error(shown);
        self.connection_lost(ctx);
    }
}

impl Actor for FeedConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.venue_started(ctx);
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.venue_stopped();
        self.set_state(FeedState::Closed);
    }
}

/// One item of a connection's inbound stream; `item: None` marks its end.
struct InboundItem {
    generation: u64,
    item: Option<Result<Vec<feedvisor_transport_api::Event>, TransportError>>,
}

impl StreamHandler<InboundItem> for FeedConnection {
    fn handle(&mut self, inbound: InboundItem, ctx: &mut Context<Self>) {
        if inbound.generation != self.generation {
            return;
        }
        match inbound.item {
            Some(Ok(events)) => self.handle_events(events, ctx),
            Some(Err(error)) => self.transport_failed(error, ctx),
            None => self.transport_failed(TransportError::Closed, ctx),
        }
    }

    /// A finished stream is a lost connection, handled above: the actor stays.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// Closes the feed's connection with a close frame and stops the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect {
    /// The close code to send (1000 removed, 1001 shutting down).
    pub code: u16,
    /// True when a replacement has taken over the feed: the feed's gauges are left to it.
    pub retire: bool,
}

impl Handler<Disconnect> for FeedConnection {
    type Result = ();

    fn handle(&mut self, message: Disconnect, ctx: &mut Context<Self>) {
        self.retired |= message.retire;
        if let Some(watch) = self.watch.as_mut() {
            watch.expect_stop();
        }
        if let Some(link) = &self.link {
            let _ = link.outbound.send(Outbound::Close(Some(CloseFrame::new(message.code, ""))));
            self.shared.set_close(CloseRecord::local(message.code, ""));
        }
        if !self.queue.is_empty() {
            tracing::warn!(feed = %self.name, unsent = self.queue.len(), "closing with outbound messages unsent");
        }
        self.drop_link(ctx);
        ctx.stop();
    }
}

/// Drops the current connection (close 1000) and connects again at once,
/// with the backoff reset; revives a feed that had failed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Reconnect;

impl Handler<Reconnect> for FeedConnection {
    type Result = ();

    fn handle(&mut self, _: Reconnect, ctx: &mut Context<Self>) {
        tracing::info!(feed = %self.name, "reconnect requested");
        if let Some(link) = &self.link {
            let close =
                CloseFrame::new(feedvisor_transport_api::close_code::NORMAL, "reconnecting");
            let _ = link.outbound.send(Outbound::Close(Some(close)));
            self.shared.set_close(CloseRecord::local(1000, "reconnecting"));
        }
        self.drop_link(ctx);
        self.backoff = Backoff::new(self.feed.reconnect);
        self.connect(ctx);
    }
}

#[cfg(test)]
mod tests;
