//! Session tests: a real router and a session whose response body the test
//! polls by hand, standing in for the HTTP layer (and for a client that
//! reads, or does not).

use std::pin::Pin;
use std::task::Context;
use std::time::{Instant as StdInstant, SystemTime};

use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
use actix_web::App;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::*;
use crate::config::SubscriberOverflow;
use crate::flow::FlowGate;
use crate::inbox::delivery::DataKind;
use crate::router::{FeedRoutes, GetInFlight, Routes};

const WAIT: Duration = Duration::from_secs(5);

fn config() -> SubscribeEndpointConfig {
    SubscribeEndpointConfig {
        max_clients: 2,
        slow_client_timeout: Duration::from_millis(500),
        allowed_origins: vec!["http://good.example".to_owned()],
        queue: 1024,
        overflow: SubscriberOverflow::DropOldest,
    }
}

/// The router and the table the feeds read.
struct TestRouter {
    addr: Addr<Router>,
    routes: Arc<Routes>,
}

fn endpoint() -> (SubscribeEndpoint, TestRouter) {
    let router = Router::new();
    let routes = router.routes();
    let addr = router.start();
    (SubscribeEndpoint::new(&config(), addr.clone()), TestRouter { addr, routes })
}

fn message(topic: &str, seq: usize) -> FeedMessage {
    FeedMessage {
        feed: "stocks".into(),
        topic: Some(topic.into()),
        kind: DataKind::Text,
        payload: Bytes::from(format!(r#"{{"seq":{seq},"symbol":"{topic}"}}"#)),
        received_at: SystemTime::now(),
        received: StdInstant::now(),
        gap_before: None,
        sequence: None,
        chunk: None,
        discontinuity: None,
    }
}

/// Publishes a batch of feed `stocks` as its connection actor would.
fn route(router: &TestRouter, messages: Vec<FeedMessage>) {
    FeedRoutes::new(router.routes.clone(), "stocks".into()).publish(messages, &FlowGate::new());
}

/// The client's side of the socket: frames it sends, as the session reads them.
fn client(
) -> (mpsc::UnboundedSender<Bytes>, impl Stream<Item = Result<Bytes, PayloadError>> + 'static) {
    let (sender, receiver) = mpsc::unbounded_channel::<Bytes>();
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok(bytes), receiver))
    });
    (sender, frames)
}

/// A masked client frame (short payloads only).
fn masked(opcode: u8, payload: &[u8]) -> Bytes {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    Bytes::from(frame)
}

/// Server frames parsed out of what the session wrote.
#[derive(Default)]
struct Frames {
    buffer: Vec<u8>,
    /// (opcode, payload), in order.
    parsed: Vec<(u8, Vec<u8>)>,
}

impl Frames {
    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
        while self.buffer.len() >= 2 {
            let opcode = self.buffer[0] & 0x0F;
            let (len, at) = match self.buffer[1] & 0x7F {
                126 => (usize::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]])), 4),
                127 => panic!("no frame this large in these tests"),
                len => (usize::from(len), 2),
            };
            if self.buffer.len() < at + len {
                return;
            }
            let payload = self.buffer[at..at + len].to_vec();
            self.buffer.drain(..at + len);
            self.parsed.push((opcode, payload));
        }
    }

    fn texts(&self) -> Vec<serde_json::Value> {
        self.parsed
            .iter()
            .filter(|(opcode, _)| *opcode == 1)
            .map(|(_, payload)| serde_json::from_slice(payload).expect("a JSON object"))
            .collect()
    }

    fn close_code(&self) -> Option<u16> {
        self.parsed
            .iter()
            .find(|(opcode, _)| *opcode == 8)
            .map(|(_, payload)| u16::from_be_bytes([payload[0], payload[1]]))
    }
}

/// The next chunk the HTTP layer would take; `None` when the session ended.
async fn next_chunk<S>(body: &mut MeteredBody<S>) -> Option<Bytes>
where
    S: Stream<Item = Result<Bytes, actix_web::Error>>,
{
    let chunk = actix_rt::time::timeout(WAIT, body.next()).await.expect("a chunk in time");
    chunk.map(|chunk| chunk.expect("no error"))
}

/// Polls once, as the HTTP layer does right after the upgrade answer: the session starts.
fn poll_once<S: Stream>(body: &mut MeteredBody<S>)
where
    MeteredBody<S>: Stream + Unpin,
{
    let waker = futures_util::task::noop_waker();
    let _ = Pin::new(body).poll_next(&mut Context::from_waker(&waker));
}

/// Waits until the session's subscription is in the table.
async fn subscribed(router: &TestRouter) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while in_flight(router).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::task::yield_now().await;
    }
}

async fn in_flight(router: &TestRouter) -> Vec<(String, u64)> {
    router.addr.send(GetInFlight).await.expect("router alive")
}

#[actix::test]
async fn a_held_batch_goes_out_as_the_client_takes_it_and_the_router_waits() {
    const BOUND: usize = 400;
    let (endpoint, router) = endpoint();
    let slot = ClientSlot::claim(&endpoint.shared).expect("a free slot");
    let query = parse_query("feed=sto*&topic=A").expect("valid");
    let (_client, frames) = client();
    let mut body = endpoint.start_session(query, slot, Connection::default(), BOUND, frames);
    poll_once(&mut body);
    subscribed(&router).await;
    route(&router, (0..20).map(|seq| message(if seq % 2 == 0 { "A" } else { "B" }, seq)).collect());

    let mut frames = Frames::default();
    let first = next_chunk(&mut body).await.expect("a chunk");
    frames.push(&first);
    assert!(frames.texts().len() < 10, "stopped at the bound: {} written", frames.texts().len());
    assert_eq!(in_flight(&router).await, [("ws#1".to_owned(), 10)], "the batch is held");

    while frames.texts().len() < 10 {
        let chunk = next_chunk(&mut body).await.expect("a chunk");
        // The bound, plus the one frame that crossed it.
        assert!(chunk.len() < BOUND + 200, "a chunk of {} bytes", chunk.len());
        frames.push(&chunk);
    }
    let texts = frames.texts();
    let seqs: Vec<String> = texts.iter().map(|text| text["payload"].to_string()).collect();
    assert_eq!(texts.len(), 10, "{seqs:?}");
    for (index, text) in texts.iter().enumerate() {
        assert_eq!(text["feed"], "stocks");
        assert_eq!(text["topic"], "A");
        assert_eq!(text["kind"], "text");
        let payload = format!(r#"{{"seq":{},"symbol":"A"}}"#, index * 2);
        assert_eq!(text["payload"], payload.as_str());
    }
    // The last frame handed over is confirmed at the next poll, which ends the batch.
    poll_once(&mut body);
    assert_eq!(in_flight(&router).await, [("ws#1".to_owned(), 0)]);
    assert_eq!(endpoint.clients(), 1);
}

#[actix::test]
async fn a_client_that_stays_behind_is_closed_with_1008() {
    tokio::time::pause();
    let (endpoint, router) = endpoint();
    let slot = ClientSlot::claim(&endpoint.shared).expect("a free slot");
    let (_client, frames) = client();
    let query = parse_query("").expect("valid");
    let mut body = endpoint.start_session(query, slot, Connection::default(), 100, frames);
    poll_once(&mut body);
    subscribed(&router).await;
    route(&router, (0..5).map(|seq| message("A", seq)).collect());
    let mut frames = Frames::default();
    frames.push(&next_chunk(&mut body).await.expect("a chunk"));
    let written = frames.texts().len();
    assert!(written < 5);

    // The HTTP layer does not come back (the client reads nothing) past the timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    while let Some(chunk) = next_chunk(&mut body).await {
        frames.push(&chunk);
    }
    assert_eq!(frames.close_code(), Some(1008));
    assert_eq!(frames.parsed.last().map(|(opcode, _)| *opcode), Some(8), "nothing after the close");
    assert_eq!(frames.texts().len(), written, "nothing more was written");
    assert_eq!(endpoint.clients(), 0, "the slot is back");
    assert_eq!(in_flight(&router).await, [], "unsubscribed");
}

#[actix::test]
async fn a_client_that_catches_up_in_time_stays() {
    tokio::time::pause();
    let (endpoint, router) = endpoint();
    let slot = ClientSlot::claim(&endpoint.shared).expect("a free slot");
    let (_client, frames) = client();
    let query = parse_query("").expect("valid");
    let mut body = endpoint.start_session(query, slot, Connection::default(), 100, frames);
    poll_once(&mut body);
    subscribed(&router).await;
    route(&router, (0..5).map(|seq| message("A", seq)).collect());
    let mut frames = Frames::default();
    frames.push(&next_chunk(&mut body).await.expect("a chunk"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    while frames.texts().len() < 5 {
        frames.push(&next_chunk(&mut body).await.expect("a chunk"));
    }
    poll_once(&mut body);
    // Well past the timeout of the episode that ended: still open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    poll_once(&mut body);
    route(&router, vec![message("A", 5)]);
    frames.push(&next_chunk(&mut body).await.expect("a chunk"));
    assert_eq!(frames.texts().len(), 6);
    assert_eq!(frames.close_code(), None);
}

#[actix::test]
async fn pings_are_answered_and_a_close_ends_the_session() {
    let (endpoint, router) = endpoint();
    let slot = ClientSlot::claim(&endpoint.shared).expect("a free slot");
    let (client, frames) = client();
    let query = parse_query("").expect("valid");
    let mut body = endpoint.start_session(query, slot, Connection::default(), MAX_BACKLOG, frames);
    poll_once(&mut body);
    let mut frames = Frames::default();
    client.send(masked(0x1, b"ignored")).expect("session reads");
    client.send(masked(0x9, b"hi")).expect("session reads");
    frames.push(&next_chunk(&mut body).await.expect("a pong"));
    assert_eq!(frames.parsed, [(0xA, b"hi".to_vec())]);
    client.send(masked(0x8, &1000u16.to_be_bytes())).expect("session reads");
    while let Some(chunk) = next_chunk(&mut body).await {
        frames.push(&chunk);
    }
    assert_eq!(frames.close_code(), Some(1000));
    assert_eq!(endpoint.clients(), 0);
    assert_eq!(in_flight(&router).await, []);
}

#[actix::test]
async fn shutdown_closes_every_client_with_1001() {
    let (endpoint, _router) = endpoint();
    let slot = ClientSlot::claim(&endpoint.shared).expect("a free slot");
    let (_client, frames) = client();
    let query = parse_query("").expect("valid");
    let mut body = endpoint.start_session(query, slot, Connection::default(), MAX_BACKLOG, frames);
    poll_once(&mut body);
    endpoint.close_all();
    let mut frames = Frames::default();
    while let Some(chunk) = next_chunk(&mut body).await {
        frames.push(&chunk);
    }
    assert_eq!(frames.close_code(), Some(1001));
}

fn upgrade_request(uri: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri)
        .insert_header((header::UPGRADE, "websocket"))
        .insert_header((header::CONNECTION, "Upgrade"))
        .insert_header((header::SEC_WEBSOCKET_VERSION, "13"))
        .insert_header((header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="))
}

#[actix::test]
async fn requests_are_checked_before_the_upgrade() {
    let (endpoint, _router) = endpoint();
    let app = init_service(
        App::new()
            .app_data(web::Data::new(endpoint.clone()))
            .route("/subscribe", web::get().to(subscribe)),
    )
    .await;
    let refused = |request: TestRequest, status: u16, needle: &'static str| {
        let app = &app;
        async move {
            let response = call_service(app, request.to_request()).await;
            assert_eq!(response.status().as_u16(), status);
            let body: serde_json::Value = read_body_json(response).await;
            let error = body["error"].as_str().expect("an error message");
            assert!(error.contains(needle), "{error}");
        }
    };
    let evil = upgrade_request("/subscribe").insert_header((header::ORIGIN, "http://evil.example"));
    refused(evil, 403, "allowed_origins").await;
    refused(upgrade_request("/subscribe?feeds=x"), 400, "unknown query parameter").await;
    refused(TestRequest::get().uri("/subscribe"), 400, "not a WebSocket upgrade").await;

    let held: Vec<ClientSlot> =
        (0..2).map(|_| ClientSlot::claim(&endpoint.shared).expect("a free slot")).collect();
    refused(upgrade_request("/subscribe"), 503, "max_clients").await;
    drop(held);
    assert_eq!(endpoint.clients(), 0);
    let good = upgrade_request("/subscribe?feed=stocks")
        .insert_header((header::ORIGIN, "http://good.example"));
    let response = call_service(&app, good.to_request()).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(endpoint.clients(), 1, "the session holds a slot");
}
