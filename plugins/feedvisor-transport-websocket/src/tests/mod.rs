//! Network tests: the transport against hand-written peers on loopback.
//!
//! A "raw" peer is a tokio `TcpListener` on 127.0.0.1 port 0 that performs the
//! HTTP upgrade by hand and then reads and writes frame bytes, so that it can
//! misbehave in ways no WebSocket library allows. Each test runs the peer and
//! the client side by side in one future (nothing is spawned) under a deadline.

mod check;
mod compliance;
mod deflate;
mod echo;
mod handshake;
mod session;
mod stream;
mod tls;

use std::time::Duration;

use feedvisor_test_support::net::listen_loopback;
use feedvisor_test_support::websocket::{
    close_payload, encode_frame, header_value, opcode, read_request_head, RawWs,
};
use feedvisor_test_support::within;
use feedvisor_transport_api::{ConnectRequest, TlsOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// A listener on 127.0.0.1 port 0 and its `ws://` URL.
async fn listen() -> (TcpListener, String) {
    let (listener, addr) = listen_loopback().await;
    (listener, format!("ws://{addr}/feed"))
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
        proxy: feedvisor_transport_api::ProxyOptions::default(),
        mode: Default::default(),
        framing: Default::default(),
        compression: Default::default(),
        compressed: Default::default(),
    }
}

/// Accepts one connection and upgrades it, answering 101 plus
/// `extra_headers` (each ending in CRLF) followed by `then`; returns the raw
/// peer and the request head.
async fn accept_upgrade(
    listener: &TcpListener,
    extra_headers: &str,
    then: &[u8],
) -> (RawWs<TcpStream>, String) {
    let (stream, _) = listener.accept().await.expect("accept");
    RawWs::accept_with(stream, extra_headers, then).await.expect("upgrade")
}

/// Reads one client frame (which must be masked) as its first byte and payload.
async fn read_client_frame<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut RawWs<S>) -> (u8, Vec<u8>) {
    let frame = ws.read_frame().await.expect("a masked frame").expect("a frame before the end");
    (frame.first_byte(), frame.payload)
}

/// Reads one client frame, which must be a close, and returns its code.
async fn read_client_close_code<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut RawWs<S>,
) -> Option<u16> {
    let frame = ws.read_frame().await.expect("a masked frame").expect("a frame before the end");
    assert_eq!(frame.opcode, opcode::CLOSE, "expected a close frame: {frame:?}");
    frame.close_code()
}
