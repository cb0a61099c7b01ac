//! Sending upstream through `POST /feeds/{name}/send`: streamed bodies that
//! overlap or are cut short, and an open feed whose peer stops reading.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{FeedState, SendError, Sidecar};
use feedvisor_transport_api::Outbound;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use crate::support::{
    encode_frame, eventually, header_value, http_post, metric, opcode, wait_for_feed, RawFrame,
    RawServer, RawWs, DEADLINE, FIN,
};

/// What the recording upstream saw: a frame on connection `conn`, or its end.
#[derive(Debug)]
enum Seen {
    Frame { conn: usize, frame: RawFrame },
    Ended { conn: usize },
}

/// An upstream that reports every frame it reads, answers pings, and echoes a close.
async fn recording_upstream() -> (RawServer, mpsc::UnboundedReceiver<Seen>) {
    upstream_reading_from(0).await
}

/// Like [`recording_upstream`], but connections before `first_read` accept
/// the handshake and then never read.
async fn upstream_reading_from(first_read: usize) -> (RawServer, mpsc::UnboundedReceiver<Seen>) {
    let (seen, frames) = mpsc::unbounded_channel();
    let server = RawServer::start(move |conn, socket| {
        let seen = seen.clone();
        async move {
            let Ok(mut ws) = RawWs::accept(socket).await else { return };
            if conn < first_read {
                std::future::pending::<()>().await;
            }
            while let Ok(Some(frame)) = ws.read_frame().await {
                match frame.opcode {
                    opcode::PING => {
                        let _ =
                            ws.write_raw(&encode_frame(FIN | opcode::PONG, &frame.payload)).await;
                    }
                    opcode::CLOSE => {
                        let _ =
                            ws.write_raw(&encode_frame(FIN | opcode::CLOSE, &frame.payload)).await;
                        let _ = seen.send(Seen::Frame { conn, frame });
                        let _ = ws.socket.shutdown().await;
                        break;
                    }
                    _ => {
                        let _ = seen.send(Seen::Frame { conn, frame });
                    }
                }
            }
            let _ = seen.send(Seen::Ended { conn });
        }
    })
    .await;
    (server, frames)
}

async fn next_seen(frames: &mut mpsc::UnboundedReceiver<Seen>, what: &str) -> Seen {
    let next = tokio::time::timeout(DEADLINE, frames.recv()).await;
    next.unwrap_or_else(|_| panic!("gave up waiting for {what}")).expect("upstream running")
}

/// A sidecar with one feed `feed` on `upstream`, its admin server on port 0, once the feed
/// is open. Metrics are shared by the tests of one process: each test names its own feed.
async fn sidecar_for(feed: &str, upstream: SocketAddr, extra: &str) -> (Sidecar, SocketAddr) {
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[[feeds]]\nname = \"{feed}\"\nurl = \"ws://{upstream}/\"\nheartbeat = {{ interval = \"0s\" }}\nreconnect = {{ policy = \"fixed\", initial = \"50ms\", jitter = \"none\" }}\n{extra}\n"
    );
    let config =
        Config::from_toml_str(&config, Path::new("send.toml"), &TransportRegistry::with_defaults())
            .expect("valid config");
    let sidecar = Sidecar::builder(config).start().await.expect("started");
    let http = sidecar.http_addr().expect("admin server");
    wait_for_feed(&sidecar, feed, "open", |feed| feed.state == FeedState::Open).await;
    (sidecar, http)
}

/// A streamed binary send whose body the test writes piece by piece, as a
/// chunked request over a socket of its own (a client library may hold
/// small pieces back).
struct StreamingSend {
    socket: TcpStream,
}

impl StreamingSend {
    /// Sends the request head.
    async fn start(http: SocketAddr, feed: &str) -> StreamingSend {
        let mut socket = TcpStream::connect(http).await.expect("connect to the admin server");
        let head = format!(
            "POST /feeds/{feed}/send HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.expect("head written");
        StreamingSend { socket }
    }

    /// Sends one piece of the body.
    async fn piece(&mut self, bytes: &[u8]) {
        let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
        chunk.extend_from_slice(bytes);
        chunk.extend_from_slice(b"\r\n");
        self.socket.write_all(&chunk).await.expect("piece written");
    }

    /// Ends the body and reads the answer: its status and body.
    async fn finish(mut self) -> (u16, String) {
        self.socket.write_all(b"0\r\n\r\n").await.expect("end written");
        let read = tokio::time::timeout(DEADLINE, read_response(&mut self.socket)).await;
        read.expect("answer in time").expect("answer read")
    }
}

/// Reads an HTTP response with a `Content-Length` body.
async fn read_response(socket: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let (head, mut body) = crate::support::read_request_head(socket).await?;
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let length: usize =
        header_value(&head, "content-length").and_then(|len| len.parse().ok()).unwrap_or(0);
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends `body` whole as one streamed binary message.
async fn send_binary(http: SocketAddr, feed: &str, body: &[u8]) -> (u16, String) {
    let mut send = StreamingSend::start(http, feed).await;
    send.piece(body).await;
    send.finish().await
}

/// Reads frames of connection `conn` until a binary message is whole; fails on a close.
async fn whole_binary_message(frames: &mut mpsc::UnboundedReceiver<Seen>, conn: usize) -> Vec<u8> {
    let mut message = Vec::new();
    loop {
        match next_seen(frames, "a binary message").await {
            Seen::Frame { conn: on, frame } if on == conn => {
                assert!(
                    frame.opcode == opcode::BINARY || frame.opcode == opcode::CONTINUATION,
                    "expected a piece of a binary message, got {frame:?}"
                );
                message.extend_from_slice(&frame.payload);
                if frame.fin {
                    return message;
                }
            }
            other => panic!("expected a piece on connection {conn}, got {other:?}"),
        }
    }
}

/// Sends 64 KiB texts to `feed` until its writer's backlog is full; returns
/// how many were taken and the answer to the first one refused.
async fn fill_the_backlog(http: SocketAddr, feed: &str) -> (u32, String) {
    let message = "x".repeat(64 << 10);
    let path = format!("/feeds/{feed}/send");
    let mut sent = 0;
    loop {
        let (status, answer) = http_post(http, &path, Some("text/plain"), message.clone()).await;
        match status {
            200 => sent += 1,
            429 => return (sent, answer),
            _ => panic!("expected 200 or 429, got {status}: {answer}"),
        }
        assert!(sent < 1500, "1500 sends of 64 KiB to a peer that reads nothing were all taken");
    }
}

#[actix::test]
async fn a_refused_second_streamed_send_does_not_abort_the_first() {
    let (upstream, mut frames) = recording_upstream().await;
    let (sidecar, http) = sidecar_for("send-overlap", upstream.addr, "").await;

    let mut first = StreamingSend::start(http, "send-overlap").await;
    first.piece(b"first half, ").await;
    let Seen::Frame { conn: 0, frame } = next_seen(&mut frames, "the first piece").await else {
        panic!("expected the first piece on the first connection");
    };
    assert_eq!((frame.opcode, frame.fin), (opcode::BINARY, false));
    assert_eq!(frame.payload, b"first half, ");

    let (status, answer) = send_binary(http, "send-overlap", b"intruder").await;
    assert_eq!(status, 409, "{answer}");

    first.piece(b"second half").await;
    let (status, answer) = first.finish().await;
    assert_eq!(status, 200, "{answer}");
    let mut message = b"first half, ".to_vec();
    message.extend(whole_binary_message(&mut frames, 0).await);
    assert_eq!(message, b"first half, second half");
    let feed = crate::support::feed_status(&sidecar, "send-overlap").await;
    assert_eq!((feed.state, feed.reconnects), (FeedState::Open, 0), "{feed:?}");
    assert!(frames.try_recv().is_err(), "nothing else reached the upstream");

    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn a_streamed_send_cut_short_by_its_client_is_abandoned_and_the_next_one_goes_out() {
    let (upstream, mut frames) = recording_upstream().await;
    let (sidecar, http) = sidecar_for("send-cut-short", upstream.addr, "").await;

    let mut client = StreamingSend::start(http, "send-cut-short").await;
    client.piece(&[7u8; 1000]).await;
    let Seen::Frame { conn: 0, frame } = next_seen(&mut frames, "the first piece").await else {
        panic!("expected the first piece on the first connection");
    };
    assert_eq!((frame.opcode, frame.fin), (opcode::BINARY, false));
    drop(client);

    // The half-sent message cannot be taken back: the connection closes with 1011.
    loop {
        match next_seen(&mut frames, "the close of the abandoned message").await {
            Seen::Frame { conn: 0, frame } if frame.opcode == opcode::CLOSE => {
                assert_eq!(frame.close_code(), Some(1011));
                break;
            }
            Seen::Frame { conn: 0, frame } => assert_eq!(frame.opcode, opcode::CONTINUATION),
            other => panic!("expected the first connection's close, got {other:?}"),
        }
    }
    assert!(matches!(next_seen(&mut frames, "the end").await, Seen::Ended { conn: 0 }));
    wait_for_feed(&sidecar, "send-cut-short", "open again", |feed| {
        feed.state == FeedState::Open && feed.reconnects == 1
    })
    .await;

    let (status, answer) = send_binary(http, "send-cut-short", b"next").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(whole_binary_message(&mut frames, 1).await, b"next");

    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn an_open_feed_whose_peer_stops_reading_answers_429_at_the_queue_bound() {
    const MAX_BYTES: u64 = 1 << 20;
    let read_again = Arc::new(Notify::new());
    let start_reading = read_again.clone();
    let upstream = RawServer::start(move |_, socket| {
        let start_reading = start_reading.clone();
        async move {
            let Ok(mut ws) = RawWs::accept(socket).await else { return };
            start_reading.notified().await;
            ws.serve(None).await;
        }
    })
    .await;
    let queue = format!("outbound_queue = {{ max_messages = 1000, max_bytes = {MAX_BYTES} }}");
    let (sidecar, http) = sidecar_for("send-stalled", upstream.addr, &queue).await;
    let message = "x".repeat(64 << 10);
    let send = "/feeds/send-stalled/send";

    // Taken until the socket's buffers and then the writer's backlog are full,
    // refused from then on, the backlog staying at the bound.
    let (sent, mut answer) = fill_the_backlog(http, "send-stalled").await;
    let mut refused = 1u32;
    for _ in 0..20 {
        let parsed: Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert_eq!(parsed["full"], "backlog", "{parsed}");
        assert_eq!(
            (parsed["max_messages"].as_u64(), parsed["max_bytes"].as_u64()),
            (Some(1000), Some(MAX_BYTES))
        );
        let bytes = parsed["bytes"].as_u64().expect("bytes waiting");
        assert!(bytes <= MAX_BYTES && bytes + (64 << 10) > MAX_BYTES, "{parsed}");
        let error = parsed["error"].as_str().expect("error text");
        assert!(error.contains("retry later"), "{error}");
        let (status, next) = http_post(http, send, Some("text/plain"), message.clone()).await;
        assert_eq!(status, 429, "{next}");
        answer = next;
        refused += 1;
    }
    let library = sidecar.send("send-stalled", Outbound::text(message.clone())).await;
    assert!(
        matches!(library, Err(SendError::Backlog(fill)) if fill.bytes <= MAX_BYTES),
        "{library:?}"
    );
    refused += 1;
    let feed = r#"feed="send-stalled""#;
    assert_eq!(metric(&sidecar, "feedvisor_messages_sent_total", feed), f64::from(sent));
    let backlog_full = r#"feed="send-stalled",reason="backlog_full""#;
    assert_eq!(
        metric(&sidecar, "feedvisor_outbound_dropped_total", backlog_full),
        f64::from(refused)
    );

    // Once the peer reads again, sends are taken again.
    read_again.notify_one();
    eventually(DEADLINE, "a send taken after the peer read again", || {
        let message = message.clone();
        async move {
            let (status, _) = http_post(http, send, Some("text/plain"), message).await;
            (status == 200).then_some(())
        }
    })
    .await;
    let feed = crate::support::feed_status(&sidecar, "send-stalled").await;
    assert_eq!((feed.state, feed.reconnects), (FeedState::Open, 0), "{feed:?}");

    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn a_streamed_send_whose_client_leaves_while_the_writer_is_behind_is_abandoned() {
    let (upstream, mut frames) = upstream_reading_from(1).await;
    // A backlog larger than what a message in pieces waits for.
    let queue = "outbound_queue = { max_messages = 1000, max_bytes = \"2MiB\" }";
    let (sidecar, http) = sidecar_for("send-left-behind", upstream.addr, queue).await;
    fill_the_backlog(http, "send-left-behind").await;

    let mut client = StreamingSend::start(http, "send-left-behind").await;
    client.piece(b"never finished").await;
    drop(client);

    wait_for_feed(&sidecar, "send-left-behind", "open again", |feed| {
        feed.state == FeedState::Open && feed.reconnects == 1
    })
    .await;
    let feed = crate::support::feed_status(&sidecar, "send-left-behind").await;
    let close = feed.last_close.expect("the abandoned message closed the connection");
    assert_eq!(close.code, 1011, "{close:?}");
    let (status, answer) = send_binary(http, "send-left-behind", b"next").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(whole_binary_message(&mut frames, 1).await, b"next");

    sidecar.stop().await;
    upstream.stop().await;
}
