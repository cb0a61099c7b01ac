//! The `/subscribe` sink: every client of the admin server's local
//! WebSocket endpoint is a subscriber actor.
//!
//! actix-web-actors (deprecated upstream in favour of actix-ws) is used only
//! here and in the demo's upstream session (`demo.rs`), so that replacing it
//! touches two files.
//!
//! A `/subscribe` client is checked before the upgrade (`Origin`, query,
//! client limit), then becomes a [`SubscribeSession`]: a subscriber actor
//! registered with the router under a unique name, sending each message as
//! one text frame holding the JSON object the sinks write. A session writes
//! to its client only up to [`MAX_BACKLOG`] bytes ahead of the socket (see
//! `backlog.rs`); past that it keeps the batch it is writing, so the rest
//! waits in the client's bounded inbox, which counts what its overflow
//! policy drops. A client that takes nothing for `slow_client_timeout`
//! while data waits for it (the HTTP layer holds a chunk its socket will not
//! take) is closed with 1008 and counted; one that reads nothing at all
//! cannot receive that close frame, so its connection is then reset.
//!
//! The HTTP route (`http/mod.rs`) calls [`subscribe`] and installs
//! [`remember_socket`] on every connection.

mod backlog;
mod query;

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix::WeakRecipient;
use actix_rt::time::Instant;
use actix_web::dev::Extensions;
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, WebsocketContext};
use bytes::Bytes;
use futures_util::stream::Stream;
use serde_json::json;

use super::write_json_line;
use crate::inbox::delivery::{Deliver, FeedMessage};
use crate::inbox::{SubscriberOverflow, DEFAULT_QUEUE};
use crate::metrics::{subscribe_metrics, SubscribeMetrics};
use crate::router::{Router, Subscribe, SubscriptionSpec, Unsubscribe};
use serde::Serialize;

pub(crate) use backlog::MAX_BACKLOG;
use backlog::{frame_len, Backlog, MeteredBody};
pub(crate) use query::{origin_allowed, parse_query, SubscribeQuery};

/// `[http.subscribe]`: limits of the local WebSocket endpoint `/subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeEndpointConfig {
    /// Clients connected at once (default 64); more are refused with 503.
    pub max_clients: usize,
    /// A client that takes nothing for this long while data waits for it is closed with 1008 (default 10s).
    #[serde(serialize_with = "super::serialize_duration")]
    pub slow_client_timeout: Duration,
    /// `Origin` values allowed (`"*"` for any). Requests without `Origin`
    /// (programs, not browsers) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Each client's queue, in messages (default 1024).
    pub queue: usize,
    /// Each client's overflow policy (default drop_oldest).
    pub overflow: SubscriberOverflow,
}

impl Default for SubscribeEndpointConfig {
    fn default() -> Self {
        SubscribeEndpointConfig {
            max_clients: 64,
            slow_client_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            queue: DEFAULT_QUEUE,
            overflow: SubscriberOverflow::DropOldest,
        }
    }
}

/// The `subscriber` label every `/subscribe` client reports its metrics under.
pub(crate) const METRIC_LABEL: &str = "websocket";

/// How long a slow client closed with 1008 has to take the close frame
/// before its connection is cut (it reads nothing at all, so the close
/// frame cannot reach it).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The `/subscribe` endpoint: what its sessions share.
#[derive(Clone)]
pub(crate) struct SubscribeEndpoint {
    shared: Arc<EndpointShared>,
}

struct EndpointShared {
    /// `[http.subscribe]`: the limits every client is held to.
    config: SubscribeEndpointConfig,
    /// Where clients subscribe and unsubscribe.
    router: Addr<Router>,
    /// Clients connected now: a slot is claimed before the upgrade and given
    /// back when the session ends, so `max_clients` holds at every moment.
    clients: AtomicUsize,
    /// Numbers the clients, for their unique subscriber names.
    next_client: AtomicU64,
    /// The running sessions, told to close (1001) when the server stops.
    sessions: Mutex<HashMap<u64, WeakRecipient<GoingAway>>>,
    /// Handles resolved once, shared by every session.
    metrics: SubscribeMetrics,
}

impl SubscribeEndpoint {
    /// An endpoint with the limits of `[http.subscribe]` whose clients subscribe with `router`.
    pub(crate) fn new(config: &SubscribeEndpointConfig, router: Addr<Router>) -> Self {
        let shared = EndpointShared {
            config: config.clone(),
            router,
            clients: AtomicUsize::new(0),
            next_client: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            metrics: subscribe_metrics(),
        };
        SubscribeEndpoint { shared: Arc::new(shared) }
    }

    /// Clients connected now.
    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.shared.clients.load(Ordering::Acquire)
    }

    /// Tells every session to close with 1001 (going away), for shutdown.
    pub(crate) fn close_all(&self) {
        let sessions = self.shared.sessions.lock().map(|sessions| sessions.clone());
        for session in sessions.unwrap_or_default().into_values() {
            if let Some(session) = session.upgrade() {
                session.do_send(GoingAway);
            }
        }
    }

    /// Checks a request and upgrades it into a session, or answers why not.
    fn accept(&self, request: &HttpRequest, payload: web::Payload) -> HttpResponse {
        let shared = &self.shared;
        let origin =
            request.headers().get(header::ORIGIN).map(|value| value.to_str().unwrap_or(""));
        if !origin_allowed(origin, &shared.config.allowed_origins) {
            shared.metrics.refused_origin.increment(1);
            let message = format!(
                "origin {:?} may not subscribe: list it in [http.subscribe].allowed_origins",
                origin.unwrap_or_default()
            );
            return refuse(StatusCode::FORBIDDEN, message);
        }
        let query = match parse_query(request.query_string()) {
            Ok(query) => query,
            Err(error) => {
                shared.metrics.refused_bad_request.increment(1);
                return refuse(StatusCode::BAD_REQUEST, error);
            }
        };
        let mut response = match ws::handshake(request) {
            Ok(response) => response,
            Err(error) => {
                shared.metrics.refused_bad_request.increment(1);
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("not a WebSocket upgrade: {error}"),
                );
            }
        };
        let Some(slot) = ClientSlot::claim(shared) else {
            shared.metrics.refused_max_clients.increment(1);
            let message = format!(
                "too many subscribe clients: {} connected ([http.subscribe].max_clients)",
                shared.config.max_clients
            );
            return refuse(StatusCode::SERVICE_UNAVAILABLE, message);
        };
        let connection = Connection {
            socket: request.conn_data::<Rc<ConnectionSocket>>().cloned(),
            peer: request.peer_addr(),
        };
        let body = self.start_session(query, slot, connection, MAX_BACKLOG, payload);
        response.streaming(body)
    }

    /// Starts a session on the client's frames (`payload`); returns the
    /// response body, which runs it.
    fn start_session<S>(
        &self,
        query: SubscribeQuery,
        slot: ClientSlot,
        connection: Connection,
        bound: usize,
        payload: S,
    ) -> MeteredBody<impl Stream<Item = Result<Bytes, actix_web::Error>>>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
    {
        let id = self.shared.next_client.fetch_add(1, Ordering::Relaxed) + 1;
        let backlog = Backlog::new(bound);
        let session = SubscribeSession {
            id,
            // `#` is in no configured subscriber's name: a client never replaces a sink.
            name: format!("ws#{id}"),
            query: Some(query),
            shared: self.shared.clone(),
            backlog: backlog.clone(),
            held: VecDeque::new(),
            closing: false,
            watchdog: None,
            connection,
            slot: Some(slot),
        };
        let (session, frames) = WebsocketContext::create_with_addr(session, payload);
        let session = session.downgrade();
        MeteredBody::new(frames, backlog, move || {
            if let Some(session) = session.upgrade() {
                session.do_send(Drained);
            }
        })
    }
}

/// Where a client is connected from.
#[derive(Default)]
struct Connection {
    /// The connection's socket, to cut a client that reads nothing.
    socket: Option<Rc<ConnectionSocket>>,
    /// The client's address, for the logs.
    peer: Option<std::net::SocketAddr>,
}

/// `GET /subscribe?feed=PATTERN&topic=PATTERN`: the actix-web handler.
pub(crate) async fn subscribe(
    request: HttpRequest,
    payload: web::Payload,
    endpoint: web::Data<SubscribeEndpoint>,
) -> HttpResponse {
    endpoint.accept(&request, payload)
}

/// A refusal before the upgrade: `{"error": "..."}`.
fn refuse(status: StatusCode, message: impl ToString) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.to_string() }))
}

/// One of the `max_clients` places, held by a session for as long as it runs.
struct ClientSlot {
    shared: Arc<EndpointShared>,
}

impl ClientSlot {
    fn claim(shared: &Arc<EndpointShared>) -> Option<ClientSlot> {
        let max = shared.config.max_clients;
        shared
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| (now < max).then_some(now + 1))
            .ok()?;
        shared.metrics.clients.increment(1.0);
        Some(ClientSlot { shared: shared.clone() })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.shared.clients.fetch_sub(1, Ordering::AcqRel);
        self.shared.metrics.clients.decrement(1.0);
    }
}

/// A duplicate of a connection's socket, taken when it was accepted.
///
/// The HTTP layer runs a session only while the client takes what was sent
/// before, so a client that reads nothing freezes its session, timers and
/// all; cutting the socket is then the one way to end it.
pub(crate) struct ConnectionSocket(socket2::Socket);

impl ConnectionSocket {
    /// Resets the connection, discarding what the client never read.
    fn abort(&self) {
        // Linger 0: the last close sends a reset instead of waiting on a reader.
        let _ = self.0.set_linger(Some(Duration::ZERO));
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// For `HttpServer::on_connect`: keeps a [`ConnectionSocket`] with each TCP
/// connection, where a `/subscribe` session finds it (`conn_data`).
pub(crate) fn remember_socket(connection: &dyn Any, data: &mut Extensions) {
    type Tcp = actix_web::rt::net::TcpStream;
    let stream = match connection.downcast_ref::<Tcp>() {
        Some(stream) => stream,
        None => match connection.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<Tcp>>() {
            Some(tls) => tls.get_ref().0,
            None => return,
        },
    };
    match socket2::SockRef::from(stream).try_clone() {
        Ok(socket) => {
            data.insert(Rc::new(ConnectionSocket(socket)));
        }
        Err(error) => {
            tracing::debug!(%error, "no socket handle: a client that reads nothing cannot be cut off");
        }
    }
}

/// A `/subscribe` client: a subscriber actor that writes each message as one text frame.
pub(crate) struct SubscribeSession {
    /// Its number, the key of its entry in the endpoint's session list.
    id: u64,
    /// Its subscriber name with the router (`ws#<n>`).
    name: String,
    /// What it subscribes to, until it has subscribed.
    query: Option<SubscribeQuery>,
    /// The endpoint's limits, router, session list and metrics.
    shared: Arc<EndpointShared>,
    /// Bytes written to the client and not yet taken by its connection.
    backlog: Rc<Backlog>,
    /// Batches being written, oldest first, each with the index of its next
    /// message. Keeping a `Deliver` (not dropping it) is what keeps the next
    /// batch in the client's inbox while the client is behind.
    held: VecDeque<(Deliver, usize)>,
    /// True once a close frame is written: nothing may follow it.
    closing: bool,
    /// Closes the client if it stops taking what is sent to it.
    watchdog: Option<actix_rt::task::JoinHandle<()>>,
    connection: Connection,
    /// Its place among `max_clients`, given back when it stops.
    slot: Option<ClientSlot>,
}

impl SubscribeSession {
    /// Writes held messages while the client keeps up; drops each batch
    /// once written, which lets the inbox ring with the next one.
    fn write_held(&mut self, ctx: &mut WebsocketContext<Self>) {
        loop {
            let Some((deliver, next)) = self.held.front_mut() else { return };
            let Some(message) = deliver.messages().get(*next) else {
                self.held.pop_front();
                continue;
            };
            if self.backlog.is_over() || self.closing {
                return;
            }
            *next += 1;
            let text = json_text(message);
            self.count_frame(text.len());
            ctx.text(text);
        }
    }

    /// Counts a frame with `payload` bytes.
    fn count_frame(&self, payload: usize) {
        self.backlog.add(frame_len(payload));
    }

    /// Writes a close frame (unless one was written) and stops.
    fn close(&mut self, reason: Option<CloseReason>, ctx: &mut WebsocketContext<Self>) {
        if !std::mem::replace(&mut self.closing, true) {
            let payload = reason
                .as_ref()
                .map_or(0, |reason| 2 + reason.description.as_ref().map_or(0, String::len));
            self.count_frame(payload);
            ctx.close(reason);
        }
        ctx.stop();
    }

    /// Watches the connection from outside the session, which does not run
    /// while its client reads nothing: once the HTTP layer has held a chunk
    /// for `slow_client_timeout`, the session is told to close (1008), and
    /// the connection is cut if the session still runs `CLOSE_GRACE` later.
    /// Wakes once per timeout while the client keeps up.
    fn start_watchdog(&mut self, ctx: &mut WebsocketContext<Self>) {
        let timeout = self.shared.config.slow_client_timeout;
        let backlog = self.backlog.clone();
        let session = ctx.address().downgrade();
        let socket = self.connection.socket.clone();
        let closed = self.shared.metrics.closed_slow.clone();
        let name = self.name.clone();
        self.watchdog = Some(actix_rt::spawn(async move {
            loop {
                let since = backlog.stalled_since().unwrap_or_else(Instant::now);
                actix_rt::time::sleep_until(since + timeout).await;
                if backlog.stuck(timeout) {
                    break;
                }
            }
            closed.increment(1);
            tracing::warn!(
                client = %name, unsent = backlog.unsent(), ?timeout,
                "subscribe client too slow: closing it (1008)"
            );
            if let Some(session) = session.upgrade() {
                session.do_send(CloseSlow);
            }
            actix_rt::time::sleep(CLOSE_GRACE).await;
            if let Some(socket) = socket {
                tracing::warn!(client = %name, "subscribe client reads nothing: connection reset");
                socket.abort();
            }
        }));
    }
}

/// One message as the JSON object every sink writes, without the newline.
fn json_text(message: &FeedMessage) -> String {
    let mut line = Vec::with_capacity(message.payload.len() + 128);
    write_json_line(&mut line, message);
    line.pop();
    // serde_json writes UTF-8; the fallback is never taken.
    String::from_utf8(line).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into())
}

impl Actor for SubscribeSession {
    type Context = WebsocketContext<Self>;

    /// Subscribes (before the upgrade answer reaches the client, so it
    /// misses nothing that arrives after it connected) and registers for shutdown.
    fn started(&mut self, ctx: &mut Self::Context) {
        let query = self
            .query
            .take()
            .unwrap_or_else(|| SubscribeQuery { feeds: vec!["*".to_owned()], topics: None });
        tracing::info!(
            client = %self.name, peer = ?self.connection.peer, feeds = ?query.feeds, topics = ?query.topics,
            "subscribe client connected"
        );
        let config = &self.shared.config;
        let mut spec = SubscriptionSpec::new(self.name.clone(), query.feeds)
            .with_queue(config.queue, config.overflow.clone())
            .with_metric_label(METRIC_LABEL);
        if let Some(topics) = query.topics {
            spec = spec.with_topics(topics);
        }
        self.shared.router.do_send(Subscribe { spec, recipient: ctx.address().recipient() });
        if let Ok(mut sessions) = self.shared.sessions.lock() {
            sessions.insert(self.id, ctx.address().recipient::<GoingAway>().downgrade());
        }
        self.start_watchdog(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.shared.router.do_send(Unsubscribe { name: self.name.clone() });
        // Dropping them settles them with the inbox; what still waits there
        // is counted when the subscription ends.
        self.held.clear();
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        if let Ok(mut sessions) = self.shared.sessions.lock() {
            sessions.remove(&self.id);
        }
        self.slot = None;
        tracing::info!(client = %self.name, "subscribe client disconnected");
    }
}

impl Handler<Deliver> for SubscribeSession {
    type Result = ();

    fn handle(&mut self, deliver: Deliver, ctx: &mut Self::Context) {
        self.held.push_back((deliver, 0));
        self.write_held(ctx);
    }
}

/// The backlog fell below its bound: write what is held.
#[derive(Message)]
#[rtype(result = "()")]
struct Drained;

impl Handler<Drained> for SubscribeSession {
    type Result = ();

    fn handle(&mut self, _: Drained, ctx: &mut Self::Context) {
        self.write_held(ctx);
    }
}

/// The client took nothing for too long: close with 1008.
#[derive(Message)]
#[rtype(result = "()")]
struct CloseSlow;

impl Handler<CloseSlow> for SubscribeSession {
    type Result = ();

    fn handle(&mut self, _: CloseSlow, ctx: &mut Self::Context) {
        let description = "client too slow: it took nothing for too long".to_owned();
        let reason = CloseReason { code: CloseCode::Policy, description: Some(description) };
        self.close(Some(reason), ctx);
    }
}

/// The server is stopping: close with 1001.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct GoingAway;

impl Handler<GoingAway> for SubscribeSession {
    type Result = ();

    fn handle(&mut self, _: GoingAway, ctx: &mut Self::Context) {
        self.shared.metrics.closed_shutdown.increment(1);
        let reason = CloseReason {
            code: CloseCode::Away,
            description: Some("feedvisor is shutting down".to_owned()),
        };
        self.close(Some(reason), ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for SubscribeSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Ping(payload)) if !self.closing => {
                self.count_frame(payload.len());
                ctx.pong(&payload);
            }
            Ok(ws::Message::Close(reason)) => self.close(reason, ctx),
            // Subscribers only listen: text, binary and pongs are ignored.
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(client = %self.name, %error, "subscribe client broke the protocol");
                let code = match error {
                    ws::ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                self.close(Some(code.into()), ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests;
