//! Network tests: the transport against hand-written peers on loopback.
//!
//! A "raw" peer is a tokio `TcpListener` on 127.0.0.1 port 0 that performs the
//! HTTP upgrade by hand and then reads and writes frame bytes, so that it can
//! misbehave in ways no WebSocket library allows. Each test runs the peer and
//! the client side by side in one future (nothing is spawned) under a deadline.

mod check;
mod echo;
mod handshake;
mod session;
mod stream;
mod tls;

use std::future::Future;
use std::time::Duration;

use feedvisor_transport_api::{ConnectRequest, TlsOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// The longest any network test may take.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `future` to completion or fails the test after [`TEST_DEADLINE`].
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, future).await.expect("test deadline passed")
}

/// A listener on 127.0.0.1 port 0 and its `ws://` URL.
async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    (listener, format!("ws://127.0.0.1:{port}/feed"))
}

/// A connect request with test defaults: 64 KiB frames, 2 s handshake.
fn request(url: &str) -> ConnectRequest {
    ConnectRequest {
        url: Url::parse(url).expect("test url"),
        headers: Vec::new(),
        subprotocols: Vec::new(),
        max_frame_size: 64 * 1024,
        handshake_timeout: Duration::from_secs(2),
        tls: TlsOptions::default(),
        mode: Default::default(),
        framing: Default::default(),
    }
}

/// Reads an HTTP request head (up to the blank line) and returns it as text.
async fn read_request_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).await.expect("read request");
        assert_eq!(read, 1, "client closed during its request");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("request head is text")
}

/// The value of header `name` (case-insensitive) in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Accepts one connection and upgrades it (see [`upgrade`]).
async fn accept_upgrade(
    listener: &TcpListener,
    extra_headers: &str,
    then: &[u8],
) -> (TcpStream, String) {
    let (mut stream, _) = listener.accept().await.expect("accept");
    let head = upgrade(&mut stream, extra_headers, then).await;
    (stream, head)
}

/// Reads an upgrade request and answers 101 plus `extra_headers` (each ending
/// in CRLF), followed by `then` in the same write; returns the request head.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    extra_headers: &str,
    then: &[u8],
) -> String {
    let head = read_request_head(stream).await;
    let key = header(&head, "sec-websocket-key").expect("a websocket key");
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).expect("base64 is ascii");
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra_headers}\r\n"
    )
    .into_bytes();
    answer.extend_from_slice(then);
    stream.write_all(&answer).await.expect("write upgrade answer");
    head
}

/// An unmasked frame as a server sends it.
fn server_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first_byte];
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// A close frame's payload: the code, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Reads one client frame; checks it is masked and returns its first byte and
/// unmasked payload.
async fn read_client_frame<S: AsyncRead + Unpin>(stream: &mut S) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.expect("frame header");
    assert!(head[1] & 0x80 != 0, "client frames must be masked");
    let len = match head[1] & 0x7F {
        126 => u64::from(stream.read_u16().await.expect("16-bit length")),
        127 => stream.read_u64().await.expect("64-bit length"),
        short => u64::from(short),
    };
    let mut key = [0u8; 4];
    stream.read_exact(&mut key).await.expect("mask key");
    let mut payload = vec![0u8; usize::try_from(len).expect("length fits")];
    stream.read_exact(&mut payload).await.expect("payload");
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
    (head[0], payload)
}

/// Reads one client frame and returns the close code if it is a close frame.
async fn read_client_close_code<S: AsyncRead + Unpin>(stream: &mut S) -> Option<u16> {
    let (first_byte, payload) = read_client_frame(stream).await;
    assert_eq!(first_byte, 0x88, "expected a close frame");
    payload.get(..2).map(|code| u16::from_be_bytes([code[0], code[1]]))
}
