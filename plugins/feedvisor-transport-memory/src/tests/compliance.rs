//! The transport compliance suite against the memory transport: the peer
//! is a [`MemoryPeer`] that sends events and reads what the connection sent.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use bytes::Bytes;
use feedvisor_test_support::compliance::network::varied_slices;
use feedvisor_test_support::compliance::{Expressible, Harness, Listener, Peer, PeerEnd, Setup};
use feedvisor_test_support::transport_compliance_suite;
use feedvisor_transport_api::{
    ConnectRequest, DataFrame, DataKind, Event, Opcode, Outbound, TlsOptions, Transport,
};
use tokio::net::TcpListener;
use url::Url;

use crate::{MemoryHub, MemoryListener, MemoryPeer, MemoryTransport};

/// A hub, the transport on it, and fresh names to listen on.
struct MemoryHarness {
    hub: MemoryHub,
    transport: MemoryTransport,
}

impl MemoryHarness {
    fn new() -> MemoryHarness {
        let hub = MemoryHub::new();
        MemoryHarness { transport: MemoryTransport::new(hub.clone()), hub }
    }
}

/// A request for `memory://NAME` shaped by `setup`.
fn request(name: &str, setup: Setup) -> ConnectRequest {
    ConnectRequest {
        url: Url::parse(&format!("memory://{name}")).expect("a memory url"),
        headers: Vec::new(),
        subprotocols: Vec::new(),
        max_frame_size: setup.max_frame_size,
        handshake_timeout: feedvisor_test_support::TEST_DEADLINE,
        tls: TlsOptions::default(),
        proxy: feedvisor_transport_api::ProxyOptions::default(),
        mode: setup.mode,
        framing: Default::default(),
        compression: Default::default(),
        compressed: Default::default(),
    }
}

impl Harness for MemoryHarness {
    type Peer = CompliancePeer;
    type Listener = ComplianceListener;

    fn transport(&self) -> &dyn Transport {
        &self.transport
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn listen(&self, setup: Setup) -> (Self::Listener, ConnectRequest) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("compliance-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        (
            ComplianceListener { listener: self.hub.listen(&name), kind: setup.kind },
            request(&name, setup),
        )
    }

    fn refused(&self) -> ConnectRequest {
        request(
            "nobody-listens",
            Setup { kind: DataKind::Text, mode: Default::default(), max_frame_size: 1024 },
        )
    }

    async fn silent(&self) -> Result<(ConnectRequest, TcpListener), &'static str> {
        Err("the memory transport has no handshake: a connect that never finishes \
             (`MemoryHub::stall_next`) is bounded by the connection actor, not the transport")
    }

    fn close_codes(&self) -> Expressible {
        Expressible::Yes
    }

    fn socket_buffers(&self) -> Expressible {
        Expressible::No { reason: "memory has no socket buffers: a peer's sends are queued without bound and never block" }
    }

    fn stream_mode(&self) -> Expressible {
        Expressible::Yes
    }
}

/// A [`MemoryListener`] and the kind of the messages its peers send.
struct ComplianceListener {
    listener: MemoryListener,
    kind: DataKind,
}

impl Listener for ComplianceListener {
    type Peer = CompliancePeer;

    async fn accept(mut self) -> CompliancePeer {
        let peer = self.listener.accept().await.expect("a connection");
        CompliancePeer { peer, kind: self.kind }
    }
}

/// A [`MemoryPeer`] and the kind of the messages it sends.
struct CompliancePeer {
    peer: MemoryPeer,
    kind: DataKind,
}

impl CompliancePeer {
    fn event(&self, message: &Bytes) -> Event {
        match self.kind {
            DataKind::Text => Event::Data(DataFrame::text(message.clone())),
            DataKind::Binary => Event::Data(DataFrame::binary(message.clone())),
        }
    }
}

impl Peer for CompliancePeer {
    async fn send_each(&mut self, messages: &[Bytes]) {
        for message in messages {
            self.peer.send(self.event(message));
        }
    }

    async fn send_at_once(&mut self, messages: &[Bytes]) {
        self.peer.send_batch(messages.iter().map(|message| self.event(message)).collect());
    }

    async fn send_invalid_text(&mut self) {
        self.peer.send_frame(Opcode::Text, true, Bytes::from_static(b"no\xC3\x28"));
    }

    async fn announce(&mut self, len: u64) {
        let len = usize::try_from(len).expect("a length that fits in memory");
        self.peer.send_frame(Opcode::Binary, true, vec![0u8; len]);
    }

    /// A frame has no header to write ahead of its payload here, so "writes
    /// of many sizes" are frames: one over the frame size limit in a batch
    /// of its own, then the rest of the message as frames of many sizes in
    /// one batch, so that frames and pieces do not line up.
    async fn send_stream(&mut self, data: &[u8]) {
        let first = (self.peer.request().max_frame_size + 1).min(data.len());
        let (first, rest) = data.split_at(first);
        let opcode = match self.kind {
            DataKind::Text => Opcode::Text,
            DataKind::Binary => Opcode::Binary,
        };
        self.peer.send_frame(opcode, rest.is_empty(), Bytes::copy_from_slice(first));
        let mut frames: Vec<Event> = varied_slices(rest)
            .map(|slice| {
                let payload = Bytes::copy_from_slice(slice);
                Event::Data(DataFrame { opcode: Opcode::Continuation, fin: false, payload })
            })
            .collect();
        if let Some(Event::Data(last)) = frames.last_mut() {
            last.fin = true;
        }
        self.peer.send_batch(frames);
    }

    async fn close(&mut self, code: u16, reason: &str) {
        self.peer.close(code, reason);
    }

    async fn read_to_end(&mut self) -> PeerEnd {
        // What the connection sent, and what the transport answered on its own.
        let (mut sent_done, mut replies_done) = (false, false);
        while !(sent_done && replies_done) {
            // Both are polled in turn each time: `MemoryPeer` reads them through `&mut self`.
            let (message, from_connection) = std::future::poll_fn(|cx| {
                if !sent_done {
                    if let Poll::Ready(message) = pin!(self.peer.next_outbound()).poll(cx) {
                        return Poll::Ready((message, true));
                    }
                }
                if !replies_done {
                    if let Poll::Ready(message) = pin!(self.peer.next_reply()).poll(cx) {
                        return Poll::Ready((message, false));
                    }
                }
                Poll::Pending
            })
            .await;
            match message {
                Some(Outbound::Close(frame)) => {
                    let code = frame.map(|frame| frame.code);
                    if from_connection {
                        self.peer.close(code.unwrap_or(1000), "");
                    }
                    return PeerEnd::Close(code);
                }
                Some(_) => {}
                None if from_connection => sent_done = true,
                None => replies_done = true,
            }
        }
        PeerEnd::Eof
    }

    fn hang_up(self) {
        drop(self.peer);
    }
}

transport_compliance_suite!(MemoryHarness::new());
