//! Actor-level tests of the connection actor over the in-memory transport, with paused time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use feedvisor_transport_api::{close_code, CloseFrame, DataKind, Event, Opcode, Outbound};
use feedvisor_transport_api::{DataFrame, TransportError};
use feedvisor_transport_memory::{MemoryHub, MemoryListener, MemoryPeer, MemoryTransport};
use tokio::sync::mpsc;

use super::{ConnectionSetup, Disconnect, FeedConnection, SendError, SendMessage, SendOutcome};
use crate::config::{Config, SubscriberOverflow};
use crate::inbox::delivery::{Deliver, FeedMessage};
use crate::router::{Router, Subscribe, SubscriptionSpec};
use crate::status::{FeedState, StatusCell};
use crate::transports::TransportRegistry;

/// One batch as the subscriber received it.
pub(super) struct Route {
    pub(super) messages: Vec<FeedMessage>,
}

/// A subscriber to every feed that forwards each batch to the test.
struct RouteCollector(mpsc::UnboundedSender<Route>);

impl Actor for RouteCollector {
    type Context = Context<Self>;
}

impl Handler<Deliver> for RouteCollector {
    type Result = ();
    fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
        let _ = self.0.send(Route { messages: deliver.take() });
    }
}

/// A routing table with one subscriber to every feed, which forwards each batch to `sender`.
async fn collecting_table(sender: mpsc::UnboundedSender<Route>) -> Arc<crate::router::Routes> {
    let router = Router::new();
    let table = router.routes();
    let router = router.start();
    let spec = SubscriptionSpec::new("collector", ["*"])
        .with_queue(1 << 20, SubscriberOverflow::DropNewest);
    let recipient = RouteCollector(sender).start().recipient();
    router.send(Subscribe { spec, recipient }).await.expect("router alive");
    table
}

/// A connection actor on a memory feed, and the test's handles on it.
pub(super) struct Harness {
    pub(super) hub: MemoryHub,
    name: String,
    listener: MemoryListener,
    routes: mpsc::UnboundedReceiver<Route>,
    pub(super) shared: Arc<StatusCell>,
    pub(super) actor: Addr<FeedConnection>,
}

const WAIT: Duration = Duration::from_secs(60);

/// Starts a connection actor for a feed named `name` with extra TOML lines for the feed.
pub(super) async fn start(name: &str, extra: &str) -> Harness {
    start_with(name, extra, |actor| actor).await
}

/// Like [`start`], with the actor changed by `customize` before it starts.
pub(super) async fn start_with(
    name: &str,
    extra: &str,
    customize: impl FnOnce(FeedConnection) -> FeedConnection,
) -> Harness {
    tokio::time::pause();
    // Install the recorder before the actor resolves its metric handles.
    crate::metrics::install().expect("recorder");
    // Heartbeats are off unless a test asks for them, so pings do not mix with what tests read.
    let heartbeat =
        if extra.contains("heartbeat") { "" } else { "heartbeat = { interval = \"0s\" }\n" };
    let text =
        format!("[[feeds]]\nname = \"{name}\"\nurl = \"memory://{name}\"\n{heartbeat}{extra}\n");
    let config =
        Config::from_toml_str(&text, Path::new("test.toml"), &TransportRegistry::with_memory())
            .expect("valid config");
    let feed = config.feeds.into_iter().next().expect("one feed");
    let hub = MemoryHub::new();
    let listener = hub.listen(name);
    let (sender, routes) = mpsc::unbounded_channel();
    let table = collecting_table(sender).await;
    let shared = StatusCell::new();
    let setup = ConnectionSetup {
        feed: Arc::new(feed),
        transport: Arc::new(MemoryTransport::new(hub.clone())),
        routes: table,
        shared: shared.clone(),
        watch: None,
        hosts: Default::default(),
    };
    let actor = customize(FeedConnection::new(setup)).start();
    tokio::task::yield_now().await;
    Harness { hub, name: name.to_owned(), listener, routes, shared, actor }
}

impl Harness {
    pub(super) async fn accept(&mut self) -> MemoryPeer {
        let peer = tokio::time::timeout(WAIT, self.listener.accept()).await;
        let peer = peer.expect("a connection in time").expect("listener open");
        self.settle().await;
        peer
    }

    pub(super) async fn route(&mut self) -> Route {
        let route = tokio::time::timeout(WAIT, self.routes.recv()).await;
        route.expect("a batch in time").expect("router open")
    }

    /// The next `count` messages, whatever batches they came in.
    async fn messages(&mut self, count: usize) -> Vec<FeedMessage> {
        let mut messages = Vec::new();
        while messages.len() < count {
            messages.extend(self.route().await.messages);
        }
        messages
    }

    /// Lets the actor handle what is queued for it.
    pub(super) async fn settle(&self) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    pub(super) fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let rendered = crate::metrics::install().expect("recorder").render();
        let prefix = format!("{name}{{feed=\"{}\"{labels}}} ", self.name);
        rendered.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }
}

pub(super) async fn next_outbound(peer: &mut MemoryPeer) -> Outbound {
    let next = tokio::time::timeout(WAIT, peer.next_outbound()).await;
    next.expect("outbound in time").expect("connection open")
}

async fn next_reply(peer: &mut MemoryPeer) -> Outbound {
    let next = tokio::time::timeout(WAIT, peer.next_reply()).await;
    next.expect("reply in time").expect("connection open")
}

fn texts(route: &Route) -> Vec<&str> {
    route.messages.iter().filter_map(|message| message.text()).collect()
}

/// The reasons of the discontinuity events in a batch, in order.
fn discontinuities(route: &Route) -> Vec<&'static str> {
    let events = route.messages.iter().filter_map(|message| message.discontinuity.as_deref());
    events.map(|event| event.reason.as_str()).collect()
}

/// The batch without its discontinuity events.
fn data_only(mut route: Route) -> Route {
    route.messages.retain(|message| message.discontinuity.is_none());
    route
}

#[actix::test]
async fn opens_and_delivers_text_and_binary_messages() {
    let mut h = start("open-deliver", "").await;
    let peer = h.accept().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    assert_eq!(h.metric(crate::metrics::FEED_UP, ""), Some(1.0));
    assert!(peer.send_text("hello"));
    assert!(peer.send(Event::Data(DataFrame::binary(Bytes::from_static(&[1, 2, 3])))));
    let messages = h.messages(2).await;
    assert_eq!(&*messages[0].feed, "open-deliver");
    assert_eq!(messages[0].text(), Some("hello"));
    assert_eq!(messages[1].kind, DataKind::Binary);
    assert_eq!(messages[1].payload, Bytes::from_static(&[1, 2, 3]));
    assert_eq!(h.shared.messages_in(), 2);
    assert_eq!(h.shared.bytes_in(), 8);
    assert_eq!(h.metric(crate::metrics::MESSAGES_RECEIVED, ",kind=\"text\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::MESSAGES_RECEIVED, ",kind=\"binary\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::CONNECT_ATTEMPTS, ",result=\"ok\""), Some(1.0));
}

#[actix::test]
async fn a_read_batch_becomes_one_routed_batch_in_order() {
    let mut h = start("batch", "").await;
    let peer = h.accept().await;
    let batch = (0..5).map(|i| Event::Data(DataFrame::text(format!("m{i}")))).collect();
    assert!(peer.send_batch(batch));
    let route = h.route().await;
    assert_eq!(texts(&route), ["m0", "m1", "m2", "m3", "m4"]);
}

#[actix::test]
async fn on_open_messages_are_sent_after_connect() {
    let mut h = start("on-open", "on_open = ['{\"op\":\"subscribe\"}', 'second']").await;
    let mut peer = h.accept().await;
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("{\"op\":\"subscribe\"}"));
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("second"));
}

#[actix::test]
async fn topic_is_taken_by_json_pointer() {
    let mut h = start("topic", "topic = \"/symbol\"").await;
    let peer = h.accept().await;
    assert!(peer.send_batch(vec![
        Event::Data(DataFrame::text(r#"{"symbol":"AAPL","price":1}"#)),
        Event::Data(DataFrame::text(r#"{"price":2}"#)),
        Event::Data(DataFrame::text("not json")),
    ]));
    let route = h.route().await;
    let topics: Vec<Option<&str>> = route.messages.iter().map(|m| m.topic.as_deref()).collect();
    assert_eq!(topics, [Some("AAPL"), None, None]);
}

#[actix::test]
async fn fragmented_message_is_reassembled() {
    let mut h = start("fragments", "").await;
    let peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Text, false, "hel"));
    assert!(peer.send_frame(Opcode::Continuation, false, "lo "));
    assert!(peer.send_frame(Opcode::Continuation, true, "world"));
    let route = h.route().await;
    assert_eq!(texts(&route), ["hello world"]);
    assert_eq!(h.shared.messages_in(), 1);
}

#[actix::test]
async fn oversized_message_is_refused_with_1009_counted_and_reconnected() {
    let mut h = start("oversize", "max_message_size = \"8B\"").await;
    let mut peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Binary, false, "12345"));
    assert!(peer.send_frame(Opcode::Continuation, true, "6789"));
    match next_outbound(&mut peer).await {
        Outbound::Close(Some(CloseFrame { code, .. })) => {
            assert_eq!(code, close_code::MESSAGE_TOO_BIG)
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::BackingOff);
    assert_eq!(h.shared.last_close().map(|c| (c.by, c.code)), Some(("local", 1009)));
    assert_eq!(h.metric(crate::metrics::MESSAGES_REJECTED, ",reason=\"too_large\""), Some(1.0));
    assert_eq!(h.shared.messages_in(), 0);
    // The backoff delay passes and the feed comes back.
    let peer = h.accept().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    assert!(peer.send_text("small"));
    let route = h.route().await;
    assert_eq!(discontinuities(&route), ["reconnect"], "nothing proves that nothing was lost");
    assert_eq!(texts(&data_only(route)), ["small"]);
}

#[actix::test]
async fn frame_over_the_limit_is_refused_by_the_transport() {
    let mut h = start("frame-too-large", "max_message_size = \"4B\"").await;
    let mut peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Text, true, "too long"));
    assert_eq!(
        next_reply(&mut peer).await,
        Outbound::Close(Some(CloseFrame::new(close_code::MESSAGE_TOO_BIG, "")))
    );
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::BackingOff);
    assert_eq!(h.metric(crate::metrics::MESSAGES_REJECTED, ",reason=\"too_large\""), Some(1.0));
    let error = h.shared.last_error().expect("error recorded");
    assert!(error.contains("exceeds the limit of 4 bytes"), "{error}");
}

#[actix::test]
async fn invalid_utf8_is_refused_with_1007_and_counted() {
    let mut h = start("bad-utf8", "").await;
    let mut peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Text, true, Bytes::from_static(&[b'a', 0xFF])));
    assert_eq!(
        next_reply(&mut peer).await,
        Outbound::Close(Some(CloseFrame::new(close_code::INVALID_PAYLOAD, "")))
    );
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::BackingOff);
    assert_eq!(h.metric(crate::metrics::MESSAGES_REJECTED, ",reason=\"invalid_utf8\""), Some(1.0));
    h.accept().await;
}

#[actix::test]
async fn continuation_without_a_message_is_a_protocol_error() {
    let mut h = start("bad-continuation", "").await;
    let mut peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Continuation, true, "orphan"));
    match next_outbound(&mut peer).await {
        Outbound::Close(Some(frame)) => assert_eq!(frame.code, close_code::PROTOCOL_ERROR),
        other => panic!("expected close 1002, got {other:?}"),
    }
    h.settle().await;
    assert_eq!(h.metric(crate::metrics::MESSAGES_REJECTED, ",reason=\"protocol\""), Some(1.0));
}

#[actix::test]
async fn close_from_the_peer_is_recorded_and_the_feed_reconnects() {
    let mut h = start("peer-close", "").await;
    let mut peer = h.accept().await;
    assert!(peer.close(4000, "maintenance"));
    assert_eq!(next_reply(&mut peer).await, Outbound::Close(Some(CloseFrame::new(4000, ""))));
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::BackingOff);
    assert_eq!(h.metric(crate::metrics::FEED_UP, ""), Some(0.0));
    let close = h.shared.last_close().expect("close recorded");
    assert_eq!((close.by, close.code, close.reason.as_str()), ("peer", 4000, "maintenance"));
    h.accept().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    assert_eq!(h.hub.attempts("peer-close"), 2);
}

#[actix::test]
async fn transport_error_is_recorded_and_the_feed_reconnects() {
    let mut h = start("transport-error", "").await;
    let peer = h.accept().await;
    assert!(peer.fail(TransportError::Io("connection reset by peer".into())));
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::BackingOff);
    assert_eq!(h.shared.last_error().as_deref(), Some("i/o error: connection reset by peer"));
    h.accept().await;
}

#[actix::test]
async fn peer_that_vanishes_is_a_lost_connection() {
    let mut h = start("vanish", "").await;
    let peer = h.accept().await;
    drop(peer);
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::BackingOff);
    h.accept().await;
}

#[actix::test]
async fn refused_connect_backs_off_counts_and_retries() {
    let mut h = start("refused", "").await;
    // The first attempt ran at start; script the next two to fail too.
    h.accept().await.fail(TransportError::Closed);
    let refused = TransportError::Refused { addr: "memory://refused".into() };
    h.hub.fail_next("refused", refused.clone());
    h.hub.fail_next("refused", refused);
    h.accept().await;
    assert_eq!(h.hub.attempts("refused"), 4);
    assert_eq!(h.metric(crate::metrics::CONNECT_ATTEMPTS, ",result=\"refused\""), Some(2.0));
    assert_eq!(h.metric(crate::metrics::CONNECT_ATTEMPTS, ",result=\"ok\""), Some(2.0));
}

#[actix::test]
async fn handshake_that_never_finishes_times_out_and_retries() {
    let mut h = start("stall", "handshake_timeout = \"2s\"").await;
    h.accept().await.fail(TransportError::Closed);
    h.hub.stall_next("stall");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Within the backoff ceiling and the handshake timeout: still connecting.
    assert_eq!(h.shared.state(), FeedState::Connecting);
    h.accept().await;
    assert_eq!(h.hub.attempts("stall"), 3);
    let error = h.shared.last_error().expect("error recorded");
    assert!(error.contains("timed out after 2s"), "{error}");
    assert_eq!(h.metric(crate::metrics::CONNECT_ATTEMPTS, ",result=\"timeout\""), Some(1.0));
}

#[actix::test]
async fn refused_while_nobody_listens_keeps_backing_off() {
    let mut h = start("nobody", "").await;
    h.accept().await.fail(TransportError::Closed);
    drop(std::mem::replace(&mut h.listener, h.hub.listen("somebody-else")));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(h.hub.attempts("nobody") >= 3, "attempts {}", h.hub.attempts("nobody"));
    assert_ne!(h.shared.state(), FeedState::Open);
    let error = h.shared.last_error().expect("error recorded");
    assert!(error.contains("refused"), "{error}");
}

#[actix::test]
async fn disconnect_sends_a_close_frame_and_stops() {
    let mut h = start("disconnect", "").await;
    let mut peer = h.accept().await;
    h.actor
        .send(Disconnect { code: close_code::GOING_AWAY, retire: false })
        .await
        .expect("actor alive");
    assert_eq!(
        next_outbound(&mut peer).await,
        Outbound::Close(Some(CloseFrame::new(close_code::GOING_AWAY, "")))
    );
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Closed);
    assert!(!h.actor.connected());
}

// Reconnect policy, liveness, outbound queue and sequence numbers.

/// Virtual time since `start`, to the millisecond: tokio's timer wheel rounds
/// each deadline up to the next millisecond, so a chain of timers drifts by a
/// few of them.
pub(super) fn since(start: tokio::time::Instant) -> Duration {
    let elapsed = tokio::time::Instant::now() - start;
    let whole_seconds = Duration::from_secs(elapsed.as_secs());
    if elapsed - whole_seconds < Duration::from_millis(20) {
        whole_seconds
    } else {
        elapsed
    }
}

const FIXED_1S: &str = "reconnect = { policy = \"fixed\", initial = \"1s\", jitter = \"none\" }";

#[actix::test]
async fn a_fixed_policy_retries_on_its_schedule() {
    let mut h = start("fixed-schedule", FIXED_1S).await;
    let refused = TransportError::Refused { addr: "memory://fixed-schedule".into() };
    h.accept().await.fail(TransportError::Closed);
    let lost = tokio::time::Instant::now();
    for _ in 0..3 {
        h.hub.fail_next("fixed-schedule", refused.clone());
    }
    h.accept().await;
    // Four delays of exactly one second each: three refused attempts, then the open one.
    assert_eq!(since(lost), Duration::from_secs(4));
    assert_eq!(h.hub.attempts("fixed-schedule"), 5);
}

#[actix::test]
async fn exponential_backoff_grows_and_resets_only_after_a_stable_period() {
    let policy = "reconnect = { policy = \"exponential\", initial = \"1s\", max = \"60s\", \
                  multiplier = 2.0, jitter = \"none\", reset_after = \"10s\" }";
    let mut h = start("reset-after", policy).await;
    let first = h.accept().await;
    // Dropped at once: 1s; dropped again at once: 2s (no reset, the link was not stable).
    first.fail(TransportError::Closed);
    let lost = tokio::time::Instant::now();
    let second = h.accept().await;
    assert_eq!(since(lost), Duration::from_secs(1));
    second.fail(TransportError::Closed);
    let lost = tokio::time::Instant::now();
    let third = h.accept().await;
    assert_eq!(since(lost), Duration::from_secs(2));
    // Open longer than reset_after: the next delay is the initial one again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    third.fail(TransportError::Closed);
    let lost = tokio::time::Instant::now();
    h.accept().await;
    assert_eq!(since(lost), Duration::from_secs(1));
    assert_eq!(h.shared.reconnects(), 3);
    assert_eq!(h.metric(crate::metrics::RECONNECTS, ""), Some(3.0));
}

#[actix::test]
async fn retry_after_from_the_handshake_is_waited_out() {
    let mut h = start("retry-after", FIXED_1S).await;
    h.accept().await.fail(TransportError::Closed);
    let busy =
        TransportError::HandshakeStatus { status: 503, retry_after: Some(Duration::from_secs(20)) };
    h.hub.fail_next("retry-after", busy);
    let lost = tokio::time::Instant::now();
    h.accept().await;
    // One second to the refused attempt, then at least the twenty the server asked for.
    assert!(since(lost) >= Duration::from_secs(21), "{:?}", since(lost));
    assert_eq!(h.metric(crate::metrics::CONNECT_ATTEMPTS, ",result=\"http_status\""), Some(1.0));
}

#[actix::test]
async fn max_attempts_reached_fails_the_feed_loudly() {
    let policy =
        "reconnect = { policy = \"fixed\", initial = \"1s\", jitter = \"none\", max_attempts = 2 }";
    let mut h = start("give-up", policy).await;
    let refused = TransportError::Refused { addr: "memory://give-up".into() };
    for _ in 0..5 {
        h.hub.fail_next("give-up", refused.clone());
    }
    h.accept().await.fail(TransportError::Closed);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.shared.state(), FeedState::Failed);
    assert_eq!(h.hub.attempts("give-up"), 3, "the open one and two retries");
    assert_eq!(h.metric(crate::metrics::FEED_STATE, ",state=\"failed\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::FEED_STATE, ",state=\"backing_off\""), Some(0.0));
    let refused = h.actor.send(SendMessage { message: Outbound::text("x") }).await;
    assert_eq!(refused.expect("actor alive"), Err(SendError::FeedFailed));
}

#[actix::test]
async fn policy_none_fails_at_the_first_loss() {
    let mut h = start("no-retry", "reconnect = { policy = \"none\" }").await;
    h.accept().await.close(1000, "done");
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Failed);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.hub.attempts("no-retry"), 1);
}

#[actix::test]
async fn protocol_heartbeat_answered_keeps_the_feed_and_measures_rtt() {
    let mut h = start("ping-ok", "heartbeat = { interval = \"5s\", timeout = \"2s\" }").await;
    let mut peer = h.accept().await;
    for _ in 0..3 {
        let Outbound::Ping(payload) = next_outbound(&mut peer).await else { panic!("a ping") };
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(peer.send(Event::Pong(payload)));
    }
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    let rendered = crate::metrics::install().expect("recorder").render();
    let count = format!("{}_count{{feed=\"ping-ok\"}} 3", crate::metrics::PING_RTT);
    assert!(rendered.contains(&count), "no three RTT samples in:\n{rendered}");
}

#[actix::test]
async fn protocol_heartbeat_unanswered_closes_and_reconnects() {
    let mut h = start("ping-lost", "heartbeat = { interval = \"5s\", timeout = \"2s\" }").await;
    let mut peer = h.accept().await;
    let opened = tokio::time::Instant::now();
    assert!(matches!(next_outbound(&mut peer).await, Outbound::Ping(_)));
    match next_outbound(&mut peer).await {
        Outbound::Close(Some(frame)) => assert_eq!(frame.code, close_code::GOING_AWAY),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(since(opened), Duration::from_secs(7));
    h.settle().await;
    let error = h.shared.last_error().expect("error recorded");
    assert!(error.contains("heartbeat") && error.contains("2s"), "{error}");
    h.accept().await;
}

#[actix::test]
async fn application_heartbeat_replies_are_matched_and_not_delivered() {
    let heartbeat = "heartbeat = { interval = \"5s\", timeout = \"2s\", \
                     message = '{\"op\":\"ping\"}', reply = \"pong\", reply_pointer = \"/op\" }";
    let mut h = start("app-ping", heartbeat).await;
    let mut peer = h.accept().await;
    assert_eq!(next_outbound(&mut peer).await, Outbound::text(r#"{"op":"ping"}"#));
    assert!(peer.send_batch(vec![
        Event::Data(DataFrame::text(r#"{"op":"pong"}"#)),
        Event::Data(DataFrame::text(r#"{"op":"data","v":1}"#)),
    ]));
    assert_eq!(texts(&h.route().await), [r#"{"op":"data","v":1}"#]);
    // Answered: the next ping comes at the next interval, not a close.
    assert_eq!(next_outbound(&mut peer).await, Outbound::text(r#"{"op":"ping"}"#));
    assert_eq!(h.shared.state(), FeedState::Open);
    // Unanswered this time: closed after the timeout.
    assert!(matches!(next_outbound(&mut peer).await, Outbound::Close(_)));
}

#[actix::test]
async fn idle_timeout_closes_a_quiet_feed_but_not_a_talking_one() {
    let mut h = start("idle", "idle_timeout = \"10s\"").await;
    let mut peer = h.accept().await;
    let opened = tokio::time::Instant::now();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(peer.send_text("still here"));
    }
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Open, "traffic every 6s keeps a 10s idle timeout");
    match next_outbound(&mut peer).await {
        Outbound::Close(Some(frame)) => assert_eq!(frame.code, close_code::GOING_AWAY),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(since(opened), Duration::from_secs(34));
    h.settle().await;
    let error = h.shared.last_error().expect("error recorded");
    assert!(error.contains("idle"), "{error}");
}

#[actix::test]
async fn queued_messages_go_out_in_order_after_on_open_on_reconnect() {
    let mut h = start("queue-flush", "on_open = ['hello']").await;
    let mut peer = h.accept().await;
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("hello"));
    let sent = h.actor.send(SendMessage { message: Outbound::text("live") }).await;
    assert_eq!(sent.expect("actor alive"), Ok(SendOutcome::Sent));
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("live"));
    peer.fail(TransportError::Closed);
    h.settle().await;
    for text in ["q1", "q2", "q3"] {
        let queued = h.actor.send(SendMessage { message: Outbound::text(text) }).await;
        assert_eq!(queued.expect("actor alive"), Ok(SendOutcome::Queued { dropped_oldest: 0 }));
    }
    assert_eq!(h.shared.outbound_queued(), 3);
    assert_eq!(h.metric(crate::metrics::OUTBOUND_QUEUE_DEPTH, ""), Some(3.0));
    let mut peer = h.accept().await;
    for expected in ["hello", "q1", "q2", "q3"] {
        assert_eq!(next_outbound(&mut peer).await, Outbound::text(expected));
    }
    assert_eq!(h.shared.outbound_queued(), 0);
    assert_eq!(h.metric(crate::metrics::MESSAGES_SENT, ""), Some(6.0));
}

#[actix::test]
async fn queue_overflow_is_counted_and_reject_reported() {
    let config = "outbound_queue = { max_messages = 2, overflow = \"reject\" }";
    let mut h = start("queue-reject", config).await;
    h.accept().await.fail(TransportError::Closed);
    h.settle().await;
    for text in ["a", "b"] {
        let queued = h.actor.send(SendMessage { message: Outbound::text(text) }).await;
        assert!(matches!(queued.expect("actor alive"), Ok(SendOutcome::Queued { .. })));
    }
    let refused = h.actor.send(SendMessage { message: Outbound::text("c") }).await;
    assert!(matches!(refused.expect("actor alive"), Err(SendError::Queue(_))));
    assert_eq!(h.metric(crate::metrics::OUTBOUND_DROPPED, ",reason=\"queue_full\""), Some(1.0));
    let mut peer = h.accept().await;
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("a"));
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("b"));
}

#[actix::test]
async fn drop_oldest_keeps_the_newest_and_counts_what_it_dropped() {
    let config = "outbound_queue = { max_messages = 2, overflow = \"drop_oldest\" }";
    let mut h = start("queue-drop-oldest", config).await;
    h.accept().await.fail(TransportError::Closed);
    h.settle().await;
    for text in ["a", "b", "c"] {
        let _ = h.actor.send(SendMessage { message: Outbound::text(text) }).await;
    }
    assert_eq!(h.metric(crate::metrics::OUTBOUND_DROPPED, ",reason=\"drop_oldest\""), Some(1.0));
    let mut peer = h.accept().await;
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("b"));
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("c"));
}

#[actix::test]
async fn gaps_and_duplicates_are_counted_across_a_reconnect() {
    let config = "sequence = \"/seq\"\non_open = ['{\"resume_from\":{{last_seq}}}']";
    let mut h = start("sequenced", config).await;
    let mut peer = h.accept().await;
    assert_eq!(next_outbound(&mut peer).await, Outbound::text(r#"{"resume_from":0}"#));
    let seq = |n: u64| Event::Data(DataFrame::text(format!(r#"{{"seq":{n}}}"#)));
    assert!(peer.send_batch(vec![seq(1), seq(2), seq(3)]));
    let route = h.route().await;
    assert!(route.messages.iter().all(|message| message.gap_before.is_none()));
    peer.fail(TransportError::Closed);
    let mut peer = h.accept().await;
    // The feed is asked to resume after the last number seen.
    assert_eq!(next_outbound(&mut peer).await, Outbound::text(r#"{"resume_from":3}"#));
    assert!(peer.send_batch(vec![seq(7), seq(7), seq(8), seq(2)]));
    let route = h.route().await;
    assert_eq!(discontinuities(&route), ["gap"]);
    let event = route.messages[0].discontinuity.as_deref().expect("the event comes first");
    assert_eq!((event.last_before, event.first_after, event.missed), (Some(3), Some(7), Some(3)));
    let route = data_only(route);
    let gaps: Vec<Option<u64>> = route.messages.iter().map(|message| message.gap_before).collect();
    assert_eq!(gaps, [Some(3), None, None, None], "every message is still delivered");
    assert_eq!(h.metric(crate::metrics::SEQUENCE_GAPS, ""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::SEQUENCE_MISSED, ""), Some(3.0));
    assert_eq!(h.metric(crate::metrics::SEQUENCE_DUPLICATES, ""), Some(2.0));
    assert!(peer.send_text("no number here"));
    h.route().await;
    assert_eq!(h.metric(crate::metrics::SEQUENCE_MISSING, ""), Some(1.0));
}

// Stream mode.

fn chunk_of(message: &crate::inbox::delivery::FeedMessage) -> crate::inbox::delivery::Chunk {
    message.chunk.expect("a chunk in stream mode")
}

const STREAM: &str = "mode = \"stream\"\nchunk_size = \"4B\"";

#[actix::test]
async fn stream_mode_cuts_pieces_into_ordered_chunks_with_boundaries() {
    let mut h = start("stream-chunks", STREAM).await;
    let peer = h.accept().await;
    assert!(peer.send_batch(vec![
        Event::Data(DataFrame {
            opcode: Opcode::Binary,
            fin: false,
            payload: Bytes::from_static(b"abcdef")
        }),
        Event::Data(DataFrame {
            opcode: Opcode::Continuation,
            fin: true,
            payload: Bytes::from_static(b"ghij")
        }),
        Event::Data(DataFrame::binary(Bytes::from_static(b"xy"))),
    ]));
    let route = h.route().await;
    let pieces: Vec<(u64, u64, bool, &[u8])> = route
        .messages
        .iter()
        .map(|m| {
            let chunk = chunk_of(m);
            (chunk.message, chunk.offset, chunk.last, &m.payload[..])
        })
        .collect();
    assert_eq!(
        pieces,
        [
            (1, 0, false, &b"abcd"[..]),
            (1, 4, false, &b"ef"[..]),
            (1, 6, true, &b"ghij"[..]),
            (2, 0, true, &b"xy"[..]),
        ]
    );
    assert!(route.messages.iter().all(|m| m.kind == DataKind::Binary && m.topic.is_none()));
    assert_eq!(h.shared.messages_in(), 2, "two whole messages");
    assert_eq!(h.shared.bytes_in(), 12);
}

#[actix::test]
async fn stream_mode_pings_between_pieces_do_not_disturb_the_message() {
    let mut h = start("stream-ping", STREAM).await;
    let mut peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Binary, false, "1234"));
    assert!(peer.send(Event::Ping(Bytes::from_static(b"p"))));
    assert!(peer.send_frame(Opcode::Continuation, true, "5678"));
    assert_eq!(next_reply(&mut peer).await, Outbound::Pong(Bytes::from_static(b"p")));
    let mut chunks = Vec::new();
    while chunks.len() < 2 {
        chunks.extend(h.route().await.messages.iter().map(chunk_of));
    }
    assert_eq!(
        chunks.iter().map(|c| (c.offset, c.last)).collect::<Vec<_>>(),
        [(0, false), (4, true)]
    );
}

#[actix::test]
async fn a_streamed_message_cut_short_is_marked_aborted() {
    let mut h = start("stream-cut", STREAM).await;
    let peer = h.accept().await;
    assert!(peer.send_frame(Opcode::Binary, false, "abc"));
    assert_eq!(chunk_of(&h.route().await.messages[0]).offset, 0);
    assert!(peer.close(1001, "going away"));
    let marker = h.route().await;
    let chunk = chunk_of(&marker.messages[0]);
    assert_eq!((chunk.message, chunk.offset, chunk.last, chunk.aborted), (1, 3, true, true));
    assert!(marker.messages[0].payload.is_empty());
    assert_eq!(h.shared.messages_in(), 0, "an aborted message is not counted as received");
    // The next connection's message gets the next number.
    let peer = h.accept().await;
    assert!(peer.send(Event::Data(DataFrame::binary(Bytes::from_static(b"z")))));
    assert_eq!(chunk_of(&h.route().await.messages[0]).message, 2);
}

#[actix::test]
async fn a_closed_gate_pauses_reading_until_it_opens() {
    let mut h = start("gated", "").await;
    let peer = h.accept().await;
    assert!(peer.send_text("first"));
    h.route().await;
    let gate = h.actor.send(GetGate).await.expect("alive");
    gate.close();
    assert!(peer.send_text("held back"));
    h.settle().await;
    assert!(h.routes.try_recv().is_err(), "read while the gate was closed");
    gate.open();
    assert_eq!(texts(&h.route().await), ["held back"]);
}

/// Hands the test the connection's flow gate.
#[derive(Message)]
#[rtype(result = "Arc<crate::flow::FlowGate>")]
struct GetGate;

impl Handler<GetGate> for FeedConnection {
    type Result = Arc<crate::flow::FlowGate>;
    fn handle(&mut self, _: GetGate, _: &mut Context<Self>) -> Self::Result {
        self.gate.clone()
    }
}

// Messages sent in pieces.

use super::outbound::{PiecesOwner, SendPiece};

fn piece(owner: PiecesOwner, opcode: Opcode, fin: bool, payload: &'static str) -> SendPiece {
    SendPiece {
        owner,
        frame: DataFrame { opcode, fin, payload: Bytes::from_static(payload.as_bytes()) },
    }
}

#[actix::test]
async fn pieces_go_out_as_fragments_and_other_sends_wait_behind_them() {
    let mut h = start("pieces", "").await;
    let mut peer = h.accept().await;
    let owner = PiecesOwner::unique();
    h.actor
        .send(piece(owner, Opcode::Binary, false, "ab"))
        .await
        .expect("alive")
        .expect("first piece");
    // A message sent meanwhile must not land inside the fragmented one.
    let queued = h.actor.send(SendMessage { message: Outbound::text("later") }).await;
    assert_eq!(queued.expect("alive"), Ok(SendOutcome::Queued { dropped_oldest: 0 }));
    let busy = h.actor.send(piece(owner, Opcode::Binary, false, "x")).await.expect("alive");
    assert_eq!(busy.err(), Some(SendError::Busy));
    h.actor
        .send(piece(owner, Opcode::Continuation, false, "cd"))
        .await
        .expect("alive")
        .expect("middle");
    h.actor.send(piece(owner, Opcode::Continuation, true, "")).await.expect("alive").expect("last");
    let fragments: Vec<Outbound> = vec![
        next_outbound(&mut peer).await,
        next_outbound(&mut peer).await,
        next_outbound(&mut peer).await,
    ];
    let shapes: Vec<(Opcode, bool, &[u8])> = fragments
        .iter()
        .map(|out| match out {
            Outbound::Fragment(frame) => (frame.opcode, frame.fin, &frame.payload[..]),
            other => panic!("expected a fragment, got {other:?}"),
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (Opcode::Binary, false, &b"ab"[..]),
            (Opcode::Continuation, false, &b"cd"[..]),
            (Opcode::Continuation, true, &b""[..])
        ]
    );
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("later"));
}

#[actix::test]
async fn pieces_need_an_open_connection_and_an_orderly_start() {
    let mut h = start("pieces-rules", "").await;
    let peer = h.accept().await;
    let owner = PiecesOwner::unique();
    let orphan = h.actor.send(piece(owner, Opcode::Continuation, true, "x")).await.expect("alive");
    assert!(matches!(orphan, Err(SendError::OutOfOrder(_))));
    h.actor.send(piece(owner, Opcode::Binary, false, "a")).await.expect("alive").expect("started");
    peer.fail(TransportError::Closed);
    h.settle().await;
    let lost = h.actor.send(piece(owner, Opcode::Continuation, true, "b")).await.expect("alive");
    assert_eq!(lost.err(), Some(SendError::Interrupted));
    let down = h.actor.send(piece(owner, Opcode::Binary, true, "c")).await.expect("alive");
    assert_eq!(down.err(), Some(SendError::NotConnected));
}

#[actix::test]
async fn abandoned_pieces_close_the_connection_and_it_comes_back() {
    let mut h = start("pieces-abandoned", "").await;
    let mut peer = h.accept().await;
    let owner = PiecesOwner::unique();
    h.actor
        .send(piece(owner, Opcode::Binary, false, "half"))
        .await
        .expect("alive")
        .expect("started");
    assert!(matches!(next_outbound(&mut peer).await, Outbound::Fragment(_)));
    h.actor.do_send(super::outbound::AbandonPieces { owner });
    match next_outbound(&mut peer).await {
        Outbound::Close(Some(frame)) => assert_eq!(frame.code, close_code::INTERNAL_ERROR),
        other => panic!("expected a close, got {other:?}"),
    }
    let mut peer = h.accept().await;
    let sent = h.actor.send(SendMessage { message: Outbound::text("fresh") }).await;
    assert_eq!(sent.expect("alive"), Ok(SendOutcome::Sent));
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("fresh"));
}

#[actix::test]
async fn a_refused_start_cannot_abandon_the_message_under_way() {
    let mut h = start("pieces-owned", "").await;
    let mut peer = h.accept().await;
    let (first, second) = (PiecesOwner::unique(), PiecesOwner::unique());
    h.actor.send(piece(first, Opcode::Binary, false, "ab")).await.expect("alive").expect("started");
    let busy = h.actor.send(piece(second, Opcode::Binary, false, "x")).await.expect("alive");
    assert_eq!(busy.err(), Some(SendError::Busy));
    // The refused sender gives up, as its guard does when its request ends.
    h.actor.do_send(super::outbound::AbandonPieces { owner: second });
    let stray = h.actor.send(piece(second, Opcode::Continuation, true, "y")).await.expect("alive");
    assert!(matches!(stray, Err(SendError::OutOfOrder(_))), "{stray:?}");
    h.actor
        .send(piece(first, Opcode::Continuation, true, "cd"))
        .await
        .expect("alive")
        .expect("end");
    let payloads: Vec<Outbound> =
        vec![next_outbound(&mut peer).await, next_outbound(&mut peer).await];
    let payloads: Vec<&[u8]> = payloads
        .iter()
        .map(|out| match out {
            Outbound::Fragment(frame) => &frame.payload[..],
            other => panic!("expected a fragment, got {other:?}"),
        })
        .collect();
    assert_eq!(payloads, [&b"ab"[..], &b"cd"[..]]);
    assert_eq!(h.shared.state(), FeedState::Open);
    assert_eq!(h.shared.reconnects(), 0);
}

#[actix::test]
async fn messages_queued_behind_a_lost_message_in_pieces_go_out_once_it_is_given_up() {
    let mut h = start(
        "pieces-lost",
        "reconnect = { policy = \"fixed\", initial = \"1s\", jitter = \"none\" }",
    )
    .await;
    let peer = h.accept().await;
    let owner = PiecesOwner::unique();
    h.actor.send(piece(owner, Opcode::Binary, false, "a")).await.expect("alive").expect("started");
    let queued = h.actor.send(SendMessage { message: Outbound::text("behind") }).await;
    assert_eq!(queued.expect("alive"), Ok(SendOutcome::Queued { dropped_oldest: 0 }));
    peer.fail(TransportError::Closed);
    let mut peer = h.accept().await;
    // The owner's body fails (its client went away): its guard gives the message up.
    h.actor.do_send(super::outbound::AbandonPieces { owner });
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("behind"));
    assert_eq!(h.shared.outbound_queued(), 0);
    let sent = h.actor.send(SendMessage { message: Outbound::text("next") }).await;
    assert_eq!(sent.expect("alive"), Ok(SendOutcome::Sent));
    assert_eq!(next_outbound(&mut peer).await, Outbound::text("next"));
}

// What waits for the writer of an open connection.

use super::queue::{OutboundFill, OutboundQueueError};

fn text_of(size: usize) -> Outbound {
    Outbound::text("x".repeat(size))
}

#[actix::test]
async fn an_open_feed_whose_peer_stops_reading_refuses_sends_at_the_queue_bound() {
    // drop_oldest applies to the queue held while the feed is down, not to
    // messages already answered "sent".
    let queue =
        "outbound_queue = { max_messages = 4, max_bytes = \"1KiB\", overflow = \"drop_oldest\" }";
    let mut h = start("backlog", queue).await;
    let mut peer = h.accept().await;
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        outcomes.push(h.actor.send(SendMessage { message: text_of(100) }).await.expect("alive"));
    }
    let at_the_bound = OutboundFill { messages: 4, bytes: 400, max_messages: 4, max_bytes: 1024 };
    assert!(outcomes[..4].iter().all(|outcome| *outcome == Ok(SendOutcome::Sent)), "{outcomes:?}");
    assert!(
        outcomes[4..].iter().all(|outcome| *outcome == Err(SendError::Backlog(at_the_bound))),
        "{:?}",
        &outcomes[4..]
    );
    assert_eq!(h.metric(crate::metrics::MESSAGES_SENT, ""), Some(4.0));
    assert_eq!(h.metric(crate::metrics::OUTBOUND_DROPPED, ",reason=\"backlog_full\""), Some(96.0));
    assert_eq!(h.metric(crate::metrics::OUTBOUND_DROPPED, ",reason=\"drop_oldest\""), Some(0.0));

    // The peer takes one: there is room for one more, and no more.
    assert_eq!(next_outbound(&mut peer).await, text_of(100));
    let sent = h.actor.send(SendMessage { message: text_of(100) }).await.expect("alive");
    assert_eq!(sent, Ok(SendOutcome::Sent));
    let refused = h.actor.send(SendMessage { message: text_of(100) }).await.expect("alive");
    assert_eq!(refused, Err(SendError::Backlog(at_the_bound)));
    assert_eq!(h.metric(crate::metrics::MESSAGES_SENT, ""), Some(5.0));
    assert_eq!(h.shared.state(), FeedState::Open);
}

#[actix::test]
async fn the_backlog_bound_counts_bytes_and_refuses_a_message_larger_than_the_queue() {
    let queue = "outbound_queue = { max_messages = 100, max_bytes = \"1KiB\" }";
    let mut h = start("backlog-bytes", queue).await;
    let _peer = h.accept().await;
    for _ in 0..3 {
        let sent = h.actor.send(SendMessage { message: text_of(300) }).await.expect("alive");
        assert_eq!(sent, Ok(SendOutcome::Sent));
    }
    let refused = h.actor.send(SendMessage { message: text_of(300) }).await.expect("alive");
    let fill = OutboundFill { messages: 3, bytes: 900, max_messages: 100, max_bytes: 1024 };
    assert_eq!(refused, Err(SendError::Backlog(fill)));
    // What still fits goes.
    let sent = h.actor.send(SendMessage { message: text_of(124) }).await.expect("alive");
    assert_eq!(sent, Ok(SendOutcome::Sent));
    let huge = h.actor.send(SendMessage { message: text_of(2000) }).await.expect("alive");
    let too_large = OutboundQueueError::TooLarge { size: 2000, max_bytes: 1024 };
    assert_eq!(huge, Err(SendError::Queue(too_large)));
    assert_eq!(h.metric(crate::metrics::OUTBOUND_DROPPED, ",reason=\"backlog_full\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::OUTBOUND_DROPPED, ",reason=\"too_large\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::MESSAGES_SENT, ""), Some(4.0));
}

// Two actors of one feed sharing its sequence state, as during a replacement.

/// A connection actor on memory feed `name` that shares `sequence` as actor `incarnation`.
fn sequenced_actor(
    hub: &MemoryHub,
    name: &str,
    sequence: &Arc<super::sequence::FeedSequence>,
    incarnation: u64,
    routes: Arc<crate::router::Routes>,
) -> (Addr<FeedConnection>, Arc<StatusCell>) {
    let text = format!(
        "[[feeds]]\nname = \"{name}\"\nurl = \"memory://{name}\"\nsequence = \"/seq\"\n\
         heartbeat = {{ interval = \"0s\" }}\n"
    );
    let config =
        Config::from_toml_str(&text, Path::new("test.toml"), &TransportRegistry::with_memory())
            .expect("valid config");
    let shared = StatusCell::new();
    let seat = sequence.join(incarnation, Some(shared.clone()));
    let setup = ConnectionSetup {
        feed: Arc::new(config.feeds.into_iter().next().expect("one feed")),
        transport: Arc::new(MemoryTransport::new(hub.clone())),
        routes,
        shared: shared.clone(),
        watch: None,
        hosts: Default::default(),
    };
    (FeedConnection::new(setup).sharing_sequence(seat).start(), shared)
}

#[actix::test]
async fn a_replacement_delivers_only_what_the_actor_it_replaces_has_not() {
    tokio::time::pause();
    crate::metrics::install().expect("recorder");
    let name = "replaced-sequence";
    let hub = MemoryHub::new();
    let listener = hub.listen(name);
    let (sender, routes) = mpsc::unbounded_channel();
    let table = collecting_table(sender).await;
    let sequence = super::sequence::FeedSequence::new(name, None);
    let (actor, shared) = sequenced_actor(&hub, name, &sequence, 1, table.clone());
    let mut h = Harness { hub, name: name.to_owned(), listener, routes, shared, actor };
    let seq = |n: u64| Event::Data(DataFrame::text(format!(r#"{{"seq":{n}}}"#)));
    let unnumbered = || Event::Data(DataFrame::text("no number"));
    let old_peer = h.accept().await;
    assert!(old_peer.send_batch(vec![seq(1), seq(2), seq(3)]));
    assert_eq!(texts(&h.route().await).len(), 3);

    let _new = sequenced_actor(&h.hub, name, &sequence, 2, table);
    let new_peer = h.accept().await;
    // 2 proves that the new stream reaches back far enough: it takes over;
    // 2 and 3 were delivered already.
    assert!(new_peer.send_batch(vec![seq(2), seq(3), unnumbered(), seq(4), seq(6)]));
    let route = h.route().await;
    assert_eq!(discontinuities(&route), ["gap"], "5 never arrived");
    let route = data_only(route);
    assert_eq!(texts(&route), ["no number", r#"{"seq":4}"#, r#"{"seq":6}"#]);
    let gaps: Vec<Option<u64>> = route.messages.iter().map(|message| message.gap_before).collect();
    assert_eq!(gaps, [None, None, Some(1)]);
    // What the replaced actor still receives is not delivered.
    assert!(old_peer.send_batch(vec![seq(4), seq(5), unnumbered(), seq(7)]));
    h.settle().await;
    assert!(new_peer.send_batch(vec![seq(7)]));
    assert_eq!(texts(&h.route().await), [r#"{"seq":7}"#]);
    assert_eq!(h.metric(crate::metrics::SEQUENCE_DUPLICATES, ""), Some(4.0));
    assert_eq!(h.metric(crate::metrics::SEQUENCE_GAPS, ""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::SEQUENCE_MISSED, ""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::SEQUENCE_MISSING, ""), Some(1.0));
}

#[actix::test]
async fn a_silent_open_feed_turns_stale_without_reconnecting_and_data_makes_it_open() {
    let heartbeat =
        "heartbeat = { interval = \"1h\", timeout = \"10s\", message = '{\"op\":\"ping\"}', \
                     reply = \"pong\", reply_pointer = \"/op\" }\nstale_after = \"5s\"";
    let mut h = start("stale", heartbeat).await;
    let peer = h.accept().await;
    let opened = tokio::time::Instant::now();
    // Heartbeat replies are not data: they do not keep the feed fresh.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(peer.send_text(r#"{"op":"pong"}"#));
    }
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    tokio::time::sleep(Duration::from_secs(5) - since(opened)).await;
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Stale, "stale 5s after the open, pongs or not");
    assert_eq!(h.metric("feedvisor_feed_state", ",state=\"stale\""), Some(1.0));
    assert_eq!(h.metric("feedvisor_feed_state", ",state=\"open\""), Some(0.0));
    assert_eq!(h.metric("feedvisor_feed_up", ""), Some(1.0), "still connected");
    assert_eq!(h.metric("feedvisor_connect_attempts_total", ",result=\"ok\""), Some(1.0));

    assert!(peer.send_text(r#"{"op":"data"}"#));
    assert_eq!(texts(&h.route().await), [r#"{"op":"data"}"#]);
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    assert_eq!(h.metric("feedvisor_feed_state", ",state=\"stale\""), Some(0.0));
    // And stale again after another silence, counted from that message.
    let data_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(4999)).await;
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Open);
    tokio::time::sleep(Duration::from_secs(5) - since(data_at)).await;
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Stale);
}

fn unix_millis_from_now(offset_ms: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.expect("after 1970").as_millis() as i64 + offset_ms
}

#[actix::test]
async fn event_times_give_latency_skew_and_offset_and_every_message_is_still_delivered() {
    let mut h = start("fresh", "timestamp = { pointer = \"/ts\", unit = \"ms\" }").await;
    let peer = h.accept().await;
    let behind = format!(r#"{{"ts":{}}}"#, unix_millis_from_now(-1500));
    let ahead = format!(r#"{{"ts":{}}}"#, unix_millis_from_now(60_000));
    assert!(peer.send_batch(vec![
        Event::Data(DataFrame::text(behind.clone())),
        Event::Data(DataFrame::text(ahead.clone())),
        Event::Data(DataFrame::text(r#"{"ts":"soon"}"#)),
        Event::Data(DataFrame::text("not json")),
    ]));
    let delivered = h.messages(4).await;
    assert_eq!(delivered.len(), 4);
    h.settle().await;
    assert_eq!(h.metric("feedvisor_messages_received_total", ",kind=\"text\""), Some(4.0));
    assert_eq!(h.metric("feedvisor_upstream_latency_seconds_count", ""), Some(1.0));
    let sum = h.metric("feedvisor_upstream_latency_seconds_sum", "").expect("a sum");
    assert!(sum >= 1.5, "the message was sent 1.5 s after its event time: {sum}");
    assert_eq!(h.metric("feedvisor_clock_skew_total", ""), Some(1.0));
    assert_eq!(h.metric("feedvisor_timestamp_invalid_total", ""), Some(2.0));
    let offset = h.metric("feedvisor_clock_offset_seconds", "").expect("an offset");
    assert!(offset <= -59.0, "the upstream clock a minute ahead shows: {offset}");
}

#[actix::test]
async fn a_stream_mode_message_in_one_chunk_has_its_timestamp_read() {
    let extra = "mode = \"stream\"\ntimestamp = { pointer = \"/ts\", unit = \"ms\" }";
    let mut h = start("fresh-stream", extra).await;
    let peer = h.accept().await;
    let whole = format!(r#"{{"ts":{}}}"#, unix_millis_from_now(-10));
    assert!(peer.send_batch(vec![Event::Data(DataFrame::text(whole))]));
    h.messages(1).await;
    h.settle().await;
    assert_eq!(h.metric("feedvisor_upstream_latency_seconds_count", ""), Some(1.0));
}

// Compressed feeds: payloads decoded on the connection side, wire bytes,
// inflate errors.

fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("in memory");
    Bytes::from(encoder.finish().expect("in memory"))
}

#[actix::test]
async fn decoded_payloads_route_by_topic_and_a_bomb_is_dropped_not_the_connection() {
    let mut h =
        start("decoded", "decode = \"gzip\"\ntopic = \"/s\"\nmax_message_size = \"64KiB\"").await;
    let peer = h.accept().await;
    let tick = gzip(br#"{"s":"AAPL","p":1}"#);
    let bomb = gzip(&vec![b' '; 1 << 20]);
    let wire = (tick.len() * 2 + bomb.len() + 4) as f64;
    assert!(peer.send_batch(vec![
        Event::Data(DataFrame::binary(tick.clone())),
        Event::Data(DataFrame::binary(bomb)),
        Event::Data(DataFrame::binary(Bytes::from_static(b"junk"))),
        Event::Data(DataFrame::binary(tick)),
    ]));
    let messages = h.messages(2).await;
    for message in &messages {
        assert_eq!(message.kind, DataKind::Text);
        assert_eq!(message.topic.as_deref(), Some("AAPL"));
        assert_eq!(&message.payload[..], br#"{"s":"AAPL","p":1}"#);
    }
    h.settle().await;
    assert_eq!(h.shared.state(), FeedState::Open, "the connection stays");
    assert_eq!(h.metric(crate::metrics::INFLATE_ERRORS, ",reason=\"too_large\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::INFLATE_ERRORS, ",reason=\"corrupt\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::WIRE_BYTES_RECEIVED, ""), Some(wire));
    assert_eq!(h.metric(crate::metrics::BYTES_RECEIVED, ""), Some(36.0));
}

#[actix::test]
async fn what_the_transport_inflated_counts_at_its_wire_size() {
    let mut h = start("inflated", "").await;
    let peer = h.accept().await;
    // As the WebSocket transport does: 20 compressed bytes became this 131-byte message.
    let message = "x".repeat(131);
    peer.request().compressed.record(20, 131);
    assert!(peer.send_text(&message));
    assert_eq!(h.messages(1).await.len(), 1);
    assert_eq!(h.metric(crate::metrics::WIRE_BYTES_RECEIVED, ""), Some(20.0));
    assert_eq!(h.metric(crate::metrics::BYTES_RECEIVED, ""), Some(131.0));
}

#[actix::test]
async fn an_inflate_error_of_the_transport_is_counted_by_reason_and_reconnects() {
    let mut h = start("broken", "").await;
    let peer = h.accept().await;
    let failure = feedvisor_transport_api::InflateFailure::Corrupt;
    assert!(peer.fail(TransportError::Inflate { failure, reason: "bad".to_owned() }));
    let _again = h.accept().await;
    assert_eq!(h.metric(crate::metrics::INFLATE_ERRORS, ",reason=\"corrupt\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::MESSAGES_REJECTED, ",reason=\"protocol\""), Some(1.0));
    assert_eq!(h.metric(crate::metrics::MESSAGES_REJECTED, ",reason=\"invalid_utf8\""), Some(0.0));
}

#[path = "legs_tests.rs"]
mod legs_tests;
/// Pacing and host budgets driven through the actor (`paced.rs`).
mod venue;
