//! The connection actor: one per feed, it owns the feed's transport connection and timers.
//!
//! Life cycle: `connecting` (transport connect and handshake, bounded by
//! `handshake_timeout`) → `open` (on_open messages sent, inbound batches
//! assembled into messages and handed to the router) → on any loss,
//! `backing_off` for a jittered delay → `connecting` again. [`Disconnect`]
//! sends a close frame and stops the actor (`closed`).
//!
//! Invariant: this actor never touches a socket; it speaks to the transport
//! only through [`feedvisor_transport_api`]. Every connection gets a new
//! generation number, and events from an older generation are ignored, so a
//! late event from a dropped connection can never disturb the current one.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use feedvisor_transport_api::{
    close_code, AssembleError, CloseFrame, ConnectRequest, Connection, DataKind, ErrorKind, Event,
    MessageAssembler, Outbound, OutboundSender, TlsOptions, Transport, TransportError,
};

use crate::backoff::Backoff;
use crate::config::FeedConfig;
use crate::delivery::FeedMessage;
use crate::metrics::{FeedMetrics, RejectReason};
use crate::router::Route;
use crate::status::{CloseRecord, FeedShared, FeedState};

/// Everything a connection actor is started with.
pub struct ConnectionSetup {
    /// The feed as configured (defaults applied).
    pub feed: Arc<FeedConfig>,
    /// The transport its URL scheme picked.
    pub transport: Arc<dyn Transport>,
    /// Where inbound batches go.
    pub router: Recipient<Route>,
    /// Where its status is published.
    pub shared: Arc<FeedShared>,
    /// How long to wait between attempts.
    pub backoff: Backoff,
}

/// The connection actor of one feed.
pub struct FeedConnection {
    /// The feed as configured.
    feed: Arc<FeedConfig>,
    /// The feed's name, shared by every message it produces.
    name: Arc<str>,
    transport: Arc<dyn Transport>,
    router: Recipient<Route>,
    shared: Arc<FeedShared>,
    metrics: FeedMetrics,
    backoff: Backoff,
    /// Gathers fragments into whole messages, bounded by `max_message_size`.
    assembler: MessageAssembler,
    /// Counts connections; events tagged with an older one are stale.
    generation: u64,
    /// Failed attempts since the last successful open (drives the backoff).
    failures: u32,
    /// The open connection's writer, while open.
    outbound: Option<OutboundSender>,
    /// The open connection's reader, to cancel it when the connection is dropped.
    reader: Option<SpawnHandle>,
}

impl FeedConnection {
    /// A connection actor, not yet started.
    pub fn new(setup: ConnectionSetup) -> Self {
        let ConnectionSetup { feed, transport, router, shared, backoff } = setup;
        let max_message_size = usize::try_from(feed.max_message_size).unwrap_or(usize::MAX);
        FeedConnection {
            name: Arc::from(feed.name.as_str()),
            metrics: FeedMetrics::new(&feed.name),
            assembler: MessageAssembler::new(max_message_size),
            feed,
            transport,
            router,
            shared,
            backoff,
            generation: 0,
            failures: 0,
            outbound: None,
            reader: None,
        }
    }

    fn set_state(&self, state: FeedState) {
        self.shared.set_state(state);
        self.metrics.up.set(if state == FeedState::Open { 1.0 } else { 0.0 });
    }

    fn connect_request(&self) -> ConnectRequest {
        ConnectRequest {
            url: self.feed.url.clone(),
            headers: self.feed.headers.clone(),
            subprotocols: self.feed.subprotocols.clone(),
            // A frame larger than the largest message can never be accepted.
            max_frame_size: self.assembler.max_message_size(),
            handshake_timeout: self.feed.handshake_timeout,
            tls: TlsOptions { ca_file: self.feed.tls.ca_file.clone() },
        }
    }

    /// Starts a connect attempt.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        self.set_state(FeedState::Connecting);
        tracing::debug!(feed = %self.name, url = %self.feed.display_url(), "connecting");
        let timeout = self.feed.handshake_timeout;
        let attempt = self.transport.connect(self.connect_request());
        let url = self.feed.display_url();
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
                actor.connected(result, ctx);
            }
        }));
    }

    fn connected(&mut self, result: Result<Connection, TransportError>, ctx: &mut Context<Self>) {
        let connection = match result {
            Ok(connection) => connection,
            Err(error) => {
                self.metrics.connect_attempt(error.kind().as_str());
                tracing::warn!(feed = %self.name, %error, "connect failed");
                self.shared.set_error(&error);
                self.schedule_reconnect(ctx);
                return;
            }
        };
        self.metrics.connect_attempt("ok");
        tracing::info!(feed = %self.name, protocol = ?connection.protocol, "connected");
        self.failures = 0;
        self.assembler.reset();
        for text in &self.feed.on_open {
            // The transport queues these ahead of anything sent later.
            let _ = connection.outbound.send(Outbound::text(text.clone()));
        }
        let generation = self.generation;
        let inbound = connection
            .inbound
            .map(move |item| InboundItem { generation, item: Some(item) })
            .chain(stream::once(async move { InboundItem { generation, item: None } }));
        self.reader = Some(ctx.add_stream(inbound));
        self.outbound = Some(connection.outbound);
        self.set_state(FeedState::Open);
    }

    /// Drops the current connection (if any) and schedules the next attempt.
    fn connection_lost(&mut self, ctx: &mut Context<Self>) {
        self.drop_connection(ctx);
        self.schedule_reconnect(ctx);
    }

    fn drop_connection(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        self.outbound = None;
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        self.assembler.reset();
    }

    fn schedule_reconnect(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff.delay(self.failures, &mut rand::rng());
        self.failures = self.failures.saturating_add(1);
        self.set_state(FeedState::BackingOff);
        tracing::debug!(feed = %self.name, ?delay, "reconnecting after delay");
        let generation = self.generation;
        ctx.run_later(delay, move |actor, ctx| {
            if actor.generation == generation {
                actor.connect(ctx);
            }
        });
    }

    /// Closes the connection with `code` because of what the peer sent, then reconnects.
    fn refuse(&mut self, code: u16, reason: String, ctx: &mut Context<Self>) {
        if let Some(outbound) = &self.outbound {
            let _ = outbound.send(Outbound::Close(Some(CloseFrame::new(code, reason.clone()))));
        }
        self.shared.set_close(CloseRecord::local(code, reason.clone()));
        self.shared.set_error(reason);
        self.connection_lost(ctx);
    }

    /// Handles one inbound batch; returns false when the connection ended.
    fn handle_events(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) -> bool {
        let received = Instant::now();
        let received_at = SystemTime::now();
        let mut messages = Vec::with_capacity(events.len());
        let mut open = true;
        for event in events {
            match event {
                Event::Data(frame) => match self.assembler.push(frame) {
                    Ok(Some(message)) => messages.push(FeedMessage {
                        feed: self.name.clone(),
                        topic: self.topic_of(&message.payload),
                        kind: message.kind,
                        payload: message.payload,
                        received_at,
                        received,
                    }),
                    Ok(None) => {}
                    Err(error) => {
                        self.metrics.rejected(match error {
                            AssembleError::TooLarge { .. } => RejectReason::TooLarge,
                            _ => RejectReason::Protocol,
                        });
                        tracing::warn!(feed = %self.name, %error, "message refused");
                        self.refuse(error.close_code(), error.to_string(), ctx);
                        open = false;
                        break;
                    }
                },
                Event::Ping(_) | Event::Pong(_) => {}
                Event::Close(frame) => {
                    let frame = frame.unwrap_or_else(|| CloseFrame::new(close_code::NORMAL, ""));
                    tracing::info!(feed = %self.name, code = frame.code, reason = %frame.reason, "closed by peer");
                    self.shared.set_close(CloseRecord::peer(&frame));
                    self.shared.set_error(format!("closed by peer with code {}", frame.code));
                    self.connection_lost(ctx);
                    open = false;
                    break;
                }
            }
        }
        self.publish(messages);
        open
    }

    /// Counts a batch and hands it to the router.
    fn publish(&mut self, messages: Vec<FeedMessage>) {
        if messages.is_empty() {
            return;
        }
        let (mut text, mut binary, mut bytes) = (0u64, 0u64, 0u64);
        for message in &messages {
            match message.kind {
                DataKind::Text => text += 1,
                DataKind::Binary => binary += 1,
            }
            bytes += message.payload.len() as u64;
        }
        self.metrics.text_messages.increment(text);
        self.metrics.binary_messages.increment(binary);
        self.metrics.bytes.increment(bytes);
        self.shared.add_received(text + binary, bytes);
        self.router.do_send(Route { feed: self.name.clone(), messages });
    }

    fn topic_of(&self, payload: &Bytes) -> Option<Arc<str>> {
        let pointer = self.feed.topic.as_deref()?;
        topic_at(payload, pointer)
    }

    fn transport_failed(&mut self, error: TransportError, ctx: &mut Context<Self>) {
        match error.kind() {
            ErrorKind::TooLarge => self.metrics.rejected(RejectReason::TooLarge),
            ErrorKind::Protocol if error.close_code() == Some(close_code::INVALID_PAYLOAD) => {
                self.metrics.rejected(RejectReason::InvalidUtf8)
            }
            ErrorKind::Protocol => self.metrics.rejected(RejectReason::Protocol),
            _ => {}
        }
        if let Some(code) = error.close_code() {
            self.shared.set_close(CloseRecord::local(code, error.to_string()));
        }
        tracing::warn!(feed = %self.name, %error, "connection lost");
        self.shared.set_error(&error);
        self.connection_lost(ctx);
    }
}

/// The topic of a JSON message: the string or number at `pointer`, if any.
pub fn topic_at(payload: &[u8], pointer: &str) -> Option<Arc<str>> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match value.pointer(pointer)? {
        serde_json::Value::String(text) => Some(Arc::from(text.as_str())),
        serde_json::Value::Number(number) => Some(Arc::from(number.to_string())),
        serde_json::Value::Bool(flag) => Some(Arc::from(flag.to_string())),
        _ => None,
    }
}

impl Actor for FeedConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.set_state(FeedState::Closed);
    }
}

/// One item of a connection's inbound stream; `item: None` marks its end.
struct InboundItem {
    generation: u64,
    item: Option<Result<Vec<Event>, TransportError>>,
}

impl StreamHandler<InboundItem> for FeedConnection {
    fn handle(&mut self, inbound: InboundItem, ctx: &mut Context<Self>) {
        if inbound.generation != self.generation {
            return;
        }
        match inbound.item {
            Some(Ok(events)) => {
                self.handle_events(events, ctx);
            }
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
pub struct Disconnect {
    /// The close code to send (1000 removed, 1001 shutting down).
    pub code: u16,
}

impl Handler<Disconnect> for FeedConnection {
    type Result = ();

    fn handle(&mut self, message: Disconnect, ctx: &mut Context<Self>) {
        if let Some(outbound) = &self.outbound {
            let _ = outbound.send(Outbound::Close(Some(CloseFrame::new(message.code, ""))));
            self.shared.set_close(CloseRecord::local(message.code, ""));
        }
        self.drop_connection(ctx);
        ctx.stop();
    }
}

#[cfg(test)]
mod tests;
