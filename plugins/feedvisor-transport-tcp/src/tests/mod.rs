//! URL checks, and network tests of the transport against hand-written peers
//! on loopback.
//!
//! A peer is a tokio `TcpListener` on 127.0.0.1 port 0 that writes and reads
//! raw bytes, so that it can split, stall and misbehave at will. Each test
//! runs the peer and the client side by side in one future (nothing is
//! spawned but the session itself) under a deadline.

mod check;
mod compliance;
mod connect;
mod messages;
mod outbound;
mod stream;
mod tls;

use std::time::Duration;

use feedvisor_test_support::connection::{read_events, read_to_end};
use feedvisor_test_support::net::listen_loopback;
use feedvisor_test_support::within;
use feedvisor_transport_api::{
    ConnectRequest, Connection, DeliveryMode, Event, Framing, TlsOptions, Transport, TransportError,
};
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::{Target, TcpTransport};

/// The frame size limit of [`request`].
const LIMIT: usize = 64 * 1024;

/// A listener on 127.0.0.1 port 0 and its `tcp://` URL.
async fn listen() -> (TcpListener, String) {
    let (listener, addr) = listen_loopback().await;
    (listener, format!("tcp://{addr}"))
}

/// A connect request with test defaults: lines, message mode, 64 KiB frames, 2 s handshake.
fn request(url: &str) -> ConnectRequest {
    ConnectRequest {
        url: Url::parse(url).expect("test url"),
        headers: Vec::new(),
        subprotocols: Vec::new(),
        max_frame_size: LIMIT,
        handshake_timeout: Duration::from_secs(2),
        tls: TlsOptions::default(),
        proxy: feedvisor_transport_api::ProxyOptions::default(),
        mode: DeliveryMode::Message,
        framing: Framing::Lines,
        compression: Default::default(),
        compressed: Default::default(),
    }
}

/// Connects to a fresh listener with `request` adjusted by `adjust`; returns
/// the peer's end and the connection.
async fn open(adjust: impl FnOnce(&mut ConnectRequest)) -> (TcpStream, Connection) {
    open_with(TcpTransport::new(), adjust).await
}

async fn open_with(
    transport: TcpTransport,
    adjust: impl FnOnce(&mut ConnectRequest),
) -> (TcpStream, Connection) {
    let (listener, url) = listen().await;
    let mut request = request(&url);
    adjust(&mut request);
    let server = async { listener.accept().await.expect("accept").0 };
    let (stream, connection) = tokio::join!(server, transport.connect(request));
    stream.set_nodelay(true).expect("nodelay");
    (stream, connection.expect("connected"))
}

fn target(url: &str) -> Result<Target, TransportError> {
    Target::from_url(&Url::parse(url).expect("parses"))
}

fn invalid_reason(url: &str) -> String {
    match target(url) {
        Err(TransportError::InvalidUrl { reason, .. }) => reason,
        other => panic!("{url}: expected an invalid url, got {other:?}"),
    }
}

#[test]
fn tcp_and_tls_urls_name_a_host_and_a_port() {
    let plain = target("tcp://feed.example:7000").expect("valid");
    assert_eq!((plain.host.as_str(), plain.port, plain.secure), ("feed.example", 7000, false));
    let secure = target("tls://127.0.0.1:7001/").expect("valid with a bare slash");
    assert_eq!((secure.host.as_str(), secure.port, secure.secure), ("127.0.0.1", 7001, true));
    let ipv6 = target("tcp://[::1]:7002").expect("valid");
    assert_eq!(ipv6.host, "::1");
}

#[test]
fn urls_without_a_port_or_with_parts_a_byte_stream_cannot_use_are_refused() {
    assert!(invalid_reason("tcp://feed.example").contains("no port"));
    assert!(invalid_reason("tls://feed.example:0").contains("port 0"));
    assert!(invalid_reason("tcp://feed.example:7000/path").contains("path"));
    assert!(invalid_reason("tcp://feed.example:7000?token=x").contains("query"));
    assert!(invalid_reason("tcp://feed.example:7000#part").contains("fragment"));
    assert!(invalid_reason("tcp://user:secret@feed.example:7000").contains("credentials"));
    assert!(invalid_reason("ws://feed.example:7000").contains("only tcp and tls"));
    assert!(invalid_reason("tcp:feed.example").contains("no host"));
}

#[test]
fn an_invalid_url_is_shown_without_its_secrets() {
    match target("tcp://user:secret@feed.example:7000/?token=hunter2") {
        Err(TransportError::InvalidUrl { url, .. }) => {
            assert!(!url.contains("secret") && !url.contains("hunter2"), "{url}");
        }
        other => panic!("expected an invalid url, got {other:?}"),
    }
}

#[test]
fn the_transport_serves_tcp_and_tls() {
    let transport = TcpTransport::default();
    assert_eq!(transport.name(), "tcp");
    assert_eq!(transport.schemes(), &["tcp", "tls"]);
}
