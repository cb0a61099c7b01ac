//! The transport compliance suite against `ws://` and `wss://`: the peer is
//! a [`RawWs`] on loopback (TLS with certificates made for the test) that
//! upgrades by hand and writes frames byte by byte as a case asks.

use bytes::Bytes;
use feedvisor_test_support::compliance::network::{varied_slices, LoopbackListener};
use feedvisor_test_support::compliance::{Expressible, Harness, Listener, Peer, PeerEnd, Setup};
use feedvisor_test_support::net::{listen_loopback, refused_addr, ByteStream};
use feedvisor_test_support::websocket::{frame_header, FIN};
use feedvisor_test_support::TestCertificates;
use feedvisor_transport_api::{DataKind, Transport};
use tokio::io::AsyncWriteExt;

use super::*;
use crate::WebSocketTransport;

/// The WebSocket transport, plain or over TLS.
struct WebSocketHarness {
    transport: WebSocketTransport,
    /// Set for `wss://`: the server's certificates.
    tls: Option<TestCertificates>,
}

impl WebSocketHarness {
    fn plain() -> WebSocketHarness {
        WebSocketHarness { transport: WebSocketTransport::new(), tls: None }
    }

    fn tls() -> WebSocketHarness {
        WebSocketHarness {
            transport: WebSocketTransport::new(),
            tls: Some(TestCertificates::generate()),
        }
    }

    /// A request for `addr` shaped by `setup`.
    fn request(&self, addr: std::net::SocketAddr, setup: Setup) -> ConnectRequest {
        let url = match &self.tls {
            None => format!("ws://{addr}/feed"),
            Some(_) => format!("wss://localhost:{}/feed", addr.port()),
        };
        let mut request = request(&url);
        request.tls.ca_file = self.tls.as_ref().map(TestCertificates::ca_file);
        request.max_frame_size = setup.max_frame_size;
        request.mode = setup.mode;
        request
    }
}

impl Harness for WebSocketHarness {
    type Peer = WebSocketPeer;
    type Listener = WebSocketListener;

    fn transport(&self) -> &dyn Transport {
        &self.transport
    }

    fn name(&self) -> &'static str {
        if self.tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }

    async fn listen(&self, setup: Setup) -> (WebSocketListener, ConnectRequest) {
        let (listener, addr) = LoopbackListener::bind(self.tls.as_ref(), setup).await;
        (WebSocketListener(listener), self.request(addr, setup))
    }

    fn refused(&self) -> ConnectRequest {
        self.request(refused_addr(), Setup::TEXT)
    }

    async fn silent(&self) -> Result<(ConnectRequest, TcpListener), &'static str> {
        let (listener, addr) = listen_loopback().await;
        Ok((self.request(addr, Setup::TEXT), listener))
    }

    fn close_codes(&self) -> Expressible {
        Expressible::Yes
    }

    fn socket_buffers(&self) -> Expressible {
        Expressible::Yes
    }

    fn stream_mode(&self) -> Expressible {
        Expressible::Yes
    }
}

/// A loopback listener, with TLS for `wss://`, that upgrades what it accepts.
struct WebSocketListener(LoopbackListener);

impl Listener for WebSocketListener {
    type Peer = WebSocketPeer;

    async fn accept(self) -> WebSocketPeer {
        let (stream, setup) = self.0.accept().await;
        let ws = RawWs::accept(stream).await.expect("upgrade");
        let opcode = match setup.kind {
            DataKind::Text => opcode::TEXT,
            DataKind::Binary => opcode::BINARY,
        };
        WebSocketPeer { ws, opcode }
    }
}

/// The server's end, framed by hand.
struct WebSocketPeer {
    ws: RawWs<Box<dyn ByteStream>>,
    /// The opcode of the messages it sends.
    opcode: u8,
}

impl WebSocketPeer {
    async fn write(&mut self, bytes: &[u8]) {
        self.ws.write_raw(bytes).await.expect("write");
        self.ws.socket.flush().await.expect("flush");
    }
}

impl Peer for WebSocketPeer {
    async fn send_each(&mut self, messages: &[Bytes]) {
        for message in messages {
            self.write(&encode_frame(FIN | self.opcode, message)).await;
        }
    }

    async fn send_at_once(&mut self, messages: &[Bytes]) {
        let bytes: Vec<u8> =
            messages.iter().flat_map(|message| encode_frame(FIN | self.opcode, message)).collect();
        self.write(&bytes).await;
    }

    async fn send_invalid_text(&mut self) {
        self.write(&encode_frame(FIN | opcode::TEXT, b"no\xC3\x28")).await;
    }

    async fn announce(&mut self, len: u64) {
        self.write(&frame_header(FIN | self.opcode, len)).await;
    }

    async fn send_stream(&mut self, data: &[u8]) {
        self.write(&frame_header(FIN | self.opcode, data.len() as u64)).await;
        for slice in varied_slices(data) {
            self.write(slice).await;
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        self.write(&encode_frame(FIN | opcode::CLOSE, &close_payload(code, reason))).await;
    }

    async fn read_to_end(&mut self) -> PeerEnd {
        loop {
            let frame = match self.ws.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => return PeerEnd::Eof,
            };
            match frame.opcode {
                opcode::CLOSE => {
                    let code = frame.close_code();
                    let answer = code.map(|code| close_payload(code, "")).unwrap_or_default();
                    let _ = self.ws.write_raw(&encode_frame(FIN | opcode::CLOSE, &answer)).await;
                    let _ = self.ws.socket.shutdown().await;
                    return PeerEnd::Close(code);
                }
                opcode::PING => {
                    let _ =
                        self.ws.write_raw(&encode_frame(FIN | opcode::PONG, &frame.payload)).await;
                }
                _ => {}
            }
        }
    }

    fn hang_up(self) {
        drop(self.ws);
    }
}

mod ws {
    use super::*;

    feedvisor_test_support::transport_compliance_suite!(WebSocketHarness::plain());
}

mod wss {
    use super::*;

    feedvisor_test_support::transport_compliance_suite!(WebSocketHarness::tls());
}
