//! The transport compliance suite against `tcp://` and `tls://`: the peer
//! is a socket on loopback (TLS with certificates made for the test) that
//! writes lines (text) or length-prefixed messages (binary), or raw bytes
//! in stream mode.

use bytes::Bytes;
use feedvisor_test_support::compliance::network::{varied_slices, LoopbackListener};
use feedvisor_test_support::compliance::{Expressible, Harness, Listener, Peer, PeerEnd, Setup};
use feedvisor_test_support::net::{listen_loopback, refused_addr, ByteStream};
use feedvisor_test_support::TestCertificates;
use feedvisor_transport_api::DataKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The TCP transport, plain or over TLS.
struct TcpHarness {
    transport: TcpTransport,
    /// Set for `tls://`: the server's certificates.
    tls: Option<TestCertificates>,
}

impl TcpHarness {
    fn plain() -> TcpHarness {
        TcpHarness { transport: TcpTransport::new(), tls: None }
    }

    fn tls() -> TcpHarness {
        TcpHarness { transport: TcpTransport::new(), tls: Some(TestCertificates::generate()) }
    }

    /// A request for `addr` shaped by `setup`, with the framing its kind needs.
    fn request(&self, addr: std::net::SocketAddr, setup: Setup) -> ConnectRequest {
        let url = match &self.tls {
            None => format!("tcp://{addr}"),
            Some(_) => format!("tls://localhost:{}", addr.port()),
        };
        let mut request = request(&url);
        request.tls.ca_file = self.tls.as_ref().map(TestCertificates::ca_file);
        request.max_frame_size = setup.max_frame_size;
        request.mode = setup.mode;
        request.framing = match setup.kind {
            DataKind::Text => Framing::Lines,
            DataKind::Binary => Framing::LengthPrefixed,
        };
        request
    }
}

impl Harness for TcpHarness {
    type Peer = TcpPeer;
    type Listener = TcpPeerListener;

    fn transport(&self) -> &dyn Transport {
        &self.transport
    }

    fn name(&self) -> &'static str {
        if self.tls.is_some() {
            "tls"
        } else {
            "tcp"
        }
    }

    async fn listen(&self, setup: Setup) -> (TcpPeerListener, ConnectRequest) {
        let (listener, addr) = LoopbackListener::bind(self.tls.as_ref(), setup).await;
        (TcpPeerListener(listener), self.request(addr, setup))
    }

    fn refused(&self) -> ConnectRequest {
        self.request(refused_addr(), Setup::TEXT)
    }

    async fn silent(&self) -> Result<(ConnectRequest, TcpListener), &'static str> {
        if self.tls.is_none() {
            return Err("tcp:// has no handshake after the kernel's: a peer that accepts and \
                        stays silent is connected");
        }
        let (listener, addr) = listen_loopback().await;
        Ok((self.request(addr, Setup::TEXT), listener))
    }

    fn close_codes(&self) -> Expressible {
        Expressible::No {
            reason: "a byte stream carries no close code: a close is the end of the stream",
        }
    }

    fn socket_buffers(&self) -> Expressible {
        Expressible::Yes
    }

    fn stream_mode(&self) -> Expressible {
        Expressible::Yes
    }
}

/// A loopback listener, with TLS for `tls://`.
struct TcpPeerListener(LoopbackListener);

impl Listener for TcpPeerListener {
    type Peer = TcpPeer;

    async fn accept(self) -> TcpPeer {
        let (stream, setup) = self.0.accept().await;
        TcpPeer { stream, kind: setup.kind }
    }
}

/// The server's end: lines for text, length prefixes for binary.
struct TcpPeer {
    stream: Box<dyn ByteStream>,
    kind: DataKind,
}

impl TcpPeer {
    fn encode(&self, message: &[u8]) -> Vec<u8> {
        match self.kind {
            DataKind::Text => [message, b"\n"].concat(),
            DataKind::Binary => {
                let len = u32::try_from(message.len()).expect("a message under 4 GiB");
                [&len.to_be_bytes()[..], message].concat()
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }
}

impl Peer for TcpPeer {
    async fn send_each(&mut self, messages: &[Bytes]) {
        for message in messages {
            self.write(&self.encode(message)).await;
        }
    }

    async fn send_at_once(&mut self, messages: &[Bytes]) {
        let bytes: Vec<u8> = messages.iter().flat_map(|message| self.encode(message)).collect();
        self.write(&bytes).await;
    }

    async fn send_invalid_text(&mut self) {
        assert_eq!(self.kind, DataKind::Text, "text goes in lines");
        self.write(b"no\xC3\x28\n").await;
    }

    async fn announce(&mut self, len: u64) {
        assert_eq!(self.kind, DataKind::Binary, "only a length prefix announces a length");
        let len = u32::try_from(len).expect("a length prefix holds 32 bits");
        self.write(&len.to_be_bytes()).await;
    }

    async fn send_stream(&mut self, data: &[u8]) {
        for slice in varied_slices(data) {
            self.write(slice).await;
        }
        // The connection is the message: its end is the end of the stream.
        self.stream.shutdown().await.expect("shut down our side");
    }

    async fn close(&mut self, _code: u16, _reason: &str) {
        panic!("a byte stream has no close code (see `TcpHarness::close_codes`)");
    }

    async fn read_to_end(&mut self) -> PeerEnd {
        let mut piece = [0u8; 4096];
        while let Ok(read @ 1..) = self.stream.read(&mut piece).await {
            let _ = read;
        }
        // Answer the end with ours.
        let _ = self.stream.shutdown().await;
        PeerEnd::Eof
    }

    fn hang_up(self) {
        drop(self.stream);
    }
}

mod tcp {
    use super::*;

    feedvisor_test_support::transport_compliance_suite!(TcpHarness::plain());
}

mod tls {
    use super::*;

    feedvisor_test_support::transport_compliance_suite!(TcpHarness::tls());
}
