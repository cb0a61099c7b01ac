//! The local WebSocket endpoint `/subscribe` against real clients: Python's
//! `websockets` and Node's `ws` (tests/peers), awc, a raw TCP client that
//! never reads, and `feedvisor tail`.
//!
//! A client must be subscribed before the feed delivers, so each test
//! starts the sidecar without feeds, connects its clients, and only then
//! adds the feed (`POST /feeds`) on an upstream that sends on connect.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use actix_web::http::header;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::Sidecar;

use crate::support::{
    eventually, http_post, metric, read_request_head, wait_for_metric, ChildGuard, RawServer,
    RawWs, Upstream, DEADLINE,
};

/// Messages the upstream sends; seq 1, 4, ..., 301 have topic SYM1 (the
/// last one too, so a leak of other topics would show before it).
const COUNT: usize = 302;
/// How many of them have topic SYM1.
const MATCHING: usize = COUNT / 3 + 1;

/// Starts a sidecar with no feeds, its admin server on a free loopback port,
/// `[http.subscribe]` as given.
async fn start_sidecar(subscribe: &str) -> (Sidecar, SocketAddr) {
    let text = format!("[http]\nlisten = \"127.0.0.1:0\"\n[http.subscribe]\n{subscribe}\n");
    let config = Config::from_toml_str(
        &text,
        Path::new("subscribe.toml"),
        &TransportRegistry::with_defaults(),
    )
    .expect("valid config");
    let sidecar = Sidecar::builder(config).start().await.expect("sidecar started");
    let addr = sidecar.http_addr().expect("admin server");
    (sidecar, addr)
}

/// Adds feed `name` on `url` with the topic at `/symbol`.
async fn add_feed(addr: SocketAddr, name: &str, url: &str) {
    let feed = json!({
        "name": name, "url": url, "topic": "/symbol", "required": false,
        "heartbeat": { "interval": "0s" },
    });
    let (status, body) =
        http_post(addr, "/feeds", Some("application/json"), feed.to_string()).await;
    assert_eq!(status, 201, "{body}");
}

/// A child's output lines, read on a thread, awaited without blocking the actors.
fn async_lines(output: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The next line, failing the test after the deadline or at the end of the output.
async fn next_line(lines: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    tokio::time::timeout(DEADLINE, lines.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: no line within {DEADLINE:?}"))
        .unwrap_or_else(|| panic!("{what}: the output ended"))
}

/// Checks that `lines` are the SYM1 messages of feed `feed`, in order, as JSON objects.
fn assert_matching_messages(lines: &[String], feed: &str) {
    assert_eq!(lines.len(), MATCHING);
    for (line, seq) in lines.iter().zip((1..COUNT).step_by(3)) {
        let message: Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
        assert_eq!(message["feed"], feed, "{line}");
        assert_eq!(message["topic"], "SYM1", "{line}");
        assert_eq!(message["kind"], "text", "{line}");
        let payload = format!(r#"{{"seq":{seq},"symbol":"SYM1"}}"#);
        assert_eq!(message["payload"], payload.as_str(), "{line}");
        assert!(message["received_at"].is_string(), "{line}");
    }
}

/// Runs a peer client (`command` plus URL and count) against a fresh
/// sidecar and checks it receives exactly the SYM1 messages of its feed.
async fn peer_receives_exactly_the_matching_messages(mut command: Command, feed: &str) {
    let upstream = Upstream::start(COUNT);
    let (sidecar, addr) = start_sidecar("").await;
    let url = format!("ws://{addr}/subscribe?feed={feed}&topic=SYM1");
    let mut peer = ChildGuard::spawn(command.arg(&url).arg(MATCHING.to_string()));
    let mut lines = async_lines(peer.child.stdout.take().expect("stdout piped"));
    let mut errors = async_lines(peer.child.stderr.take().expect("stderr piped"));
    let first = tokio::time::timeout(DEADLINE, lines.recv()).await.ok().flatten();
    if first.as_deref() != Some("open") {
        let mut stderr = Vec::new();
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(500), errors.recv()).await
        {
            stderr.push(line);
        }
        panic!("the peer did not connect: {first:?}\n{}", stderr.join("\n"));
    }

    add_feed(addr, feed, &format!("ws://{}/sequence", upstream.addr)).await;
    let mut received = Vec::new();
    for _ in 0..MATCHING {
        received.push(next_line(&mut lines, "a message").await);
    }
    assert_matching_messages(&received, feed);
    assert_eq!(next_line(&mut lines, "the end").await, "done");
    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn a_python_websockets_client_receives_exactly_the_matching_messages() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_subscribe_client.py");
    let mut python = Command::new("python3");
    python.arg(script);
    peer_receives_exactly_the_matching_messages(python, "sub_python").await;
}

#[actix::test]
async fn a_node_ws_client_receives_exactly_the_matching_messages() {
    let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");
    assert!(
        Path::new(peers).join("node_modules/ws").is_dir(),
        "the Node peer needs `npm ci --prefix tests/peers` (which .ci/run does)"
    );
    let mut node = Command::new("node");
    node.arg(format!("{peers}/ws_subscribe_client.js"));
    peer_receives_exactly_the_matching_messages(node, "sub_node").await;
}

/// Opens a WebSocket to `/subscribe` with awc; the refusal status if refused.
async fn connect(
    addr: SocketAddr,
    query: &str,
    origin: Option<&str>,
) -> Result<
    impl Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin,
    u16,
> {
    let client = awc::Client::default();
    let mut request = client.ws(format!("ws://{addr}/subscribe?{query}"));
    if let Some(origin) = origin {
        request = request.origin(origin);
    }
    match tokio::time::timeout(DEADLINE, request.connect()).await.expect("an answer in time") {
        Ok((_, framed)) => Ok(framed),
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
        Err(error) => panic!("connect to /subscribe: {error}"),
    }
}

/// GETs `/subscribe` as a plain request with `Origin`; status and JSON body.
async fn plain_get(addr: SocketAddr, query: &str, origin: &str) -> (u16, Value) {
    let client = awc::Client::default();
    let request = client
        .get(format!("http://{addr}/subscribe?{query}"))
        .insert_header((header::ORIGIN, origin));
    let mut response =
        tokio::time::timeout(DEADLINE, request.send()).await.expect("in time").expect("sent");
    let body = response.body().await.expect("body");
    (response.status().as_u16(), serde_json::from_slice(&body).expect("a JSON body"))
}

#[actix::test]
async fn an_origin_not_listed_is_refused_with_403() {
    let (sidecar, addr) = start_sidecar(r#"allowed_origins = ["http://dash.example:8080"]"#).await;
    let before = metric(&sidecar, "feedvisor_subscribe_refused_total", r#"reason="origin""#);

    assert_eq!(connect(addr, "feed=x", Some("http://evil.example")).await.err(), Some(403));
    let (status, body) = plain_get(addr, "feed=x", "http://evil.example").await;
    assert_eq!(status, 403);
    let error = body["error"].as_str().expect("an error message");
    assert!(error.contains("allowed_origins"), "{error}");
    let after = metric(&sidecar, "feedvisor_subscribe_refused_total", r#"reason="origin""#);
    assert!(after >= before + 2.0, "{before} -> {after}");

    // A listed origin, and a program that sends none, may subscribe.
    assert!(connect(addr, "feed=x", Some("http://dash.example:8080")).await.is_ok());
    assert!(connect(addr, "feed=x", None).await.is_ok());
    let (status, body) = plain_get(addr, "feed=x&colour=red", "http://dash.example:8080").await;
    assert_eq!(status, 400, "a bad query: {body}");
    sidecar.stop().await;
}

#[actix::test]
async fn clients_beyond_max_clients_get_503_until_one_leaves() {
    let (sidecar, addr) = start_sidecar("max_clients = 1").await;
    let mut first = connect(addr, "feed=*", None).await.expect("the first client is let in");
    assert_eq!(connect(addr, "feed=*", None).await.err(), Some(503));

    // The first one leaves: its place is given back when its session ends.
    first.send(Message::Close(Some(awc::ws::CloseCode::Normal.into()))).await.expect("sent");
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(DEADLINE, first.next()).await {
        if matches!(frame, Frame::Close(_)) {
            break;
        }
    }
    let mut third =
        eventually(DEADLINE, "a free place", || async { connect(addr, "feed=*", None).await.ok() })
            .await;

    // Shutdown tells connected clients it is going away.
    sidecar.stop().await;
    let code = loop {
        match tokio::time::timeout(DEADLINE, third.next()).await.expect("a close in time") {
            Some(Ok(Frame::Close(reason))) => break reason.map(|reason| u16::from(reason.code)),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
}

/// An upstream that sends `count` messages of about `size` bytes as fast as
/// it can to each connection, then serves it (pings, close).
async fn bulk_upstream(count: usize, size: usize) -> RawServer {
    RawServer::start(move |_, socket| async move {
        let Ok(mut ws) = RawWs::accept(socket).await else { return };
        let pad = "x".repeat(size);
        for seq in 0..count {
            let text = format!(r#"{{"seq":{seq},"symbol":"SYM{}","pad":"{pad}"}}"#, seq % 3);
            if ws.send_text(&text).await.is_err() {
                return;
            }
        }
        ws.serve(None).await;
    })
    .await
}

/// A client that completes the upgrade and then reads nothing.
async fn never_reading_client(addr: SocketAddr, query: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /subscribe?{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("request sent");
    let (head, _) = tokio::time::timeout(DEADLINE, read_request_head(&mut socket))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    socket
}

#[actix::test]
async fn a_client_that_reads_nothing_is_closed_and_the_others_get_everything() {
    // 16 MiB: far more than the socket buffers, the HTTP write buffer and the
    // 1 MiB a session may write ahead of its socket.
    const MESSAGES: usize = 2048;
    const SIZE: usize = 8 * 1024;
    let upstream = bulk_upstream(MESSAGES, SIZE).await;
    let (sidecar, addr) = start_sidecar("slow_client_timeout = \"1s\"\nqueue = 100000").await;
    let closed = r#"reason="slow""#;
    let before = metric(&sidecar, "feedvisor_subscribe_clients_closed_total", closed);

    let mut stuck = never_reading_client(addr, "feed=sub_bulk").await;
    let mut healthy = connect(addr, "feed=sub_bulk", None).await.expect("connected");
    add_feed(addr, "sub_bulk", &format!("ws://{}/", upstream.addr)).await;

    let mut next_seq = 0;
    while next_seq < MESSAGES {
        let frame = tokio::time::timeout(DEADLINE, healthy.next())
            .await
            .unwrap_or_else(|_| panic!("only {next_seq} of {MESSAGES} messages in time"))
            .expect("the connection stays open")
            .expect("a valid frame");
        match frame {
            Frame::Text(text) => {
                let message: Value = serde_json::from_slice(&text).expect("JSON");
                let payload: Value =
                    serde_json::from_str(message["payload"].as_str().expect("text")).expect("JSON");
                assert_eq!(payload["seq"], next_seq, "every message, in order");
                next_seq += 1;
            }
            Frame::Ping(payload) => healthy.send(Message::Pong(payload)).await.expect("pong"),
            other => panic!("unexpected {other:?}"),
        }
    }

    wait_for_metric(&sidecar, "feedvisor_subscribe_clients_closed_total", closed, |now| {
        now >= before + 1.0
    })
    .await;
    // The stuck client's connection ends (reset, or closed once what it holds is read).
    let mut buffer = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match stuck.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stuck client's connection is still open");
    sidecar.stop().await;
    upstream.stop().await;
}

fn feedvisor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedvisor"));
    command.env("RUST_LOG", "info");
    command
}

#[actix::test]
async fn feedvisor_tail_prints_the_matching_messages_until_the_sidecar_goes() {
    let upstream = Upstream::start(COUNT);
    let (sidecar, addr) = start_sidecar("").await;
    let mut tail = ChildGuard::spawn(feedvisor().args([
        "tail",
        "sub_tail",
        "--topic",
        "SYM1",
        "--url",
        &format!("http://{addr}"),
    ]));
    let mut lines = async_lines(tail.child.stdout.take().expect("stdout piped"));
    let mut logs = async_lines(tail.child.stderr.take().expect("stderr piped"));
    while !next_line(&mut logs, "tail connecting").await.contains("connected") {}

    add_feed(addr, "sub_tail", &format!("ws://{}/sequence", upstream.addr)).await;
    let mut received = Vec::new();
    for _ in 0..MATCHING {
        received.push(next_line(&mut lines, "a message").await);
    }
    assert_matching_messages(&received, "sub_tail");

    // The sidecar goes away (1001): tail ends, successfully.
    sidecar.stop().await;
    let status = eventually(DEADLINE, "tail to exit", || {
        let status = tail.child.try_wait().expect("wait");
        async move { status }
    })
    .await;
    assert!(status.success(), "{status}");
    upstream.stop().await;
}

#[test]
fn feedvisor_tail_without_a_sidecar_says_where_it_looked_and_what_to_start() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let output = feedvisor()
        .args(["tail", "stocks", "--url", &format!("http://{addr}")])
        .stdin(Stdio::null())
        .output()
        .expect("ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot connect to ws://{addr}/subscribe")), "{stderr}");
    assert!(stderr.contains("feedvisor run"), "{stderr}");
    assert!(output.stdout.is_empty());
}
