//! The transport trait and the connection it hands back.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{LocalBoxStream, Stream};
use futures_util::task::AtomicWaker;

use crate::compression::{CompressedBytes, Compression};
use crate::error::TransportError;
use crate::frame::{Event, Outbound};
use crate::network::{ProxyOptions, TrustRoots};

/// TLS settings of one feed, as plain data: the kit builds rustls from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Which certificate authorities are trusted besides `ca_file`.
    pub roots: TrustRoots,
    /// A PEM file of extra CA certificates trusted besides the roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM file of the client certificate chain, for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// The PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// The name sent as SNI and checked in the server's certificate, instead
    /// of the URL's host (when connecting by IP address or through a tunnel).
    pub server_name: Option<String>,
    /// Base64 SHA-256 digests of the server's SubjectPublicKeyInfo: when not
    /// empty, only a server key among them is accepted.
    pub pin_sha256: Vec<String>,
    /// Accepts any certificate: for tests against throwaway servers only.
    pub insecure_skip_verify: bool,
}

/// How the feed wants its data: whole frames, or pieces as bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// Whole frames; a frame announcing more than `max_frame_size` is refused.
    #[default]
    Message,
    /// Frames of any length, handed over in pieces of at most `chunk_size`
    /// bytes as they arrive (never buffered whole). A piece is a
    /// [`DataFrame`](crate::DataFrame): the first piece of a frame carries
    /// the frame's opcode, later pieces are `Continuation`s, and only the
    /// last piece of a frame carries the frame's `fin`. Batches then hold
    /// about `chunk_size` bytes of data at most, so that what a transport
    /// holds stays bounded.
    Stream {
        /// The largest piece, in bytes.
        chunk_size: usize,
    },
}

/// How a byte-stream transport (TCP, TLS) splits bytes into messages in message mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// One message per line (`\n`, an optional `\r` before it is dropped).
    #[default]
    Lines,
    /// Each message preceded by its length as a big-endian u32.
    LengthPrefixed,
}

/// Everything a transport needs to open one connection.
#[derive(Clone)]
pub struct ConnectRequest {
    /// Where to connect; its scheme picked the transport.
    pub url: url::Url,
    /// Extra request headers (may hold secrets: never log the values).
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: Vec<String>,
    /// Frames announcing more payload than this are refused before any of it is buffered.
    pub max_frame_size: usize,
    /// How long the connect and handshake may take together.
    pub handshake_timeout: Duration,
    /// TLS settings for secure schemes.
    pub tls: TlsOptions,
    /// How to reach the host: directly, or through an HTTP CONNECT proxy.
    pub proxy: ProxyOptions,
    /// Whole frames or pieces.
    pub mode: DeliveryMode,
    /// Message boundaries for byte-stream transports (ignored by WebSocket).
    pub framing: Framing,
    /// permessage-deflate to offer (ignored by transports without it).
    pub compression: Compression,
    /// Where a transport that inflates counts compressed bytes and what they became.
    pub compressed: CompressedBytes,
}

impl std::fmt::Debug for ConnectRequest {
    /// Header values are secrets: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ConnectRequest")
            .field("url", &self.url.as_str())
            .field("headers", &header_names)
            .field("subprotocols", &self.subprotocols)
            .field("max_frame_size", &self.max_frame_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("mode", &self.mode)
            .field("framing", &self.framing)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// A feed's settings as a transport sees them before anything connects: what
/// [`Transport::check`] may have rules about.
///
/// Header values are left out on purpose: they are secrets, and no rule of a
/// transport needs them.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions<'a> {
    /// Where to connect, `${VAR}` already expanded: it may hold a token, so a
    /// problem never quotes it.
    pub url: &'a url::Url,
    /// The names of the extra request headers, as written.
    pub header_names: &'a [&'a str],
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: &'a [String],
    /// Whole frames or pieces.
    pub mode: DeliveryMode,
    /// The framing, when the feed sets one (`None`: left to the default).
    pub framing: Option<Framing>,
    /// TLS settings (`ca_file` already resolved to a path).
    pub tls: &'a TlsOptions,
    /// Whether the feed's heartbeat asks for protocol pings (such as WebSocket
    /// ping frames) rather than an application message and reply.
    pub protocol_pings: bool,
    /// permessage-deflate, when the feed sets any of its options (`None`: left
    /// to the transport's default).
    pub compression: Option<Compression>,
}

/// Something a transport refuses in a feed's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OptionProblem {
    /// The setting, named as the config names it: `url`, `headers.Upgrade`,
    /// `subprotocols`, `framing`, `tls.ca_file`, `heartbeat`.
    pub field: String,
    /// What is wrong and what to do instead, lower case; never quotes the
    /// URL or a header value.
    pub message: String,
}

impl OptionProblem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A batch of events read from the peer in one go, or the error that ended the connection.
///
/// A transport yields every event it can decode from what it has read, so
/// that one wake-up of the connection actor handles many messages. After an
/// error or a [`Event::Close`], the stream ends.
pub type Inbound = LocalBoxStream<'static, Result<Vec<Event>, TransportError>>;

/// An open connection.
pub struct Connection {
    /// What the peer sends, in batches.
    pub inbound: Inbound,
    /// Where to put what goes to the peer.
    pub outbound: OutboundSender,
    /// The subprotocol the server picked (one of those offered), if any.
    pub protocol: Option<String>,
}

/// The future a [`Transport::connect`] returns; it runs on the caller's arbiter.
pub type ConnectFuture = LocalBoxFuture<'static, Result<Connection, TransportError>>;

/// A way to reach peers: WebSocket, raw TCP, in-memory, ...
///
/// A transport value is shared by every arbiter (hence `Send + Sync`), while
/// the connections it opens live on the arbiter that asked for them (hence
/// the local future and stream): clients that are not `Send` are built per
/// thread inside the plugin.
pub trait Transport: Send + Sync + 'static {
    /// A short name for logs ("websocket", "memory").
    fn name(&self) -> &'static str;

    /// The URL schemes this transport serves ("ws", "wss").
    fn schemes(&self) -> &'static [&'static str];

    /// Checks a feed's settings before anything connects: the shape of the URL
    /// for this transport's schemes, and the options it uses or has no use
    /// for. Returns every problem found; an empty list accepts the feed.
    ///
    /// Pure: no I/O, so that a config can be checked anywhere (a CA file's
    /// existence is checked by whoever resolves its path). The default
    /// accepts everything.
    fn check(&self, feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
        let _ = feed;
        Vec::new()
    }

    /// Opens a connection; must be called from within an actix/tokio local context.
    fn connect(&self, request: ConnectRequest) -> ConnectFuture;
}

/// What was handed to a writer and not yet taken by it.
#[derive(Debug, Default)]
struct Pending {
    /// Messages (whole, pieces, control frames alike).
    messages: AtomicUsize,
    /// Their payload bytes.
    bytes: AtomicUsize,
    /// A sender waiting for the writer to catch up.
    waker: AtomicWaker,
}

/// The payload size a message adds to what waits for the writer.
fn payload_len(message: &Outbound) -> usize {
    match message {
        Outbound::Text(bytes) | Outbound::Binary(bytes) => bytes.len(),
        Outbound::Ping(bytes) | Outbound::Pong(bytes) => bytes.len(),
        Outbound::Fragment(frame) => frame.payload.len(),
        Outbound::Close(_) => 0,
    }
}

/// Sends outbound messages to a connection's writer.
///
/// Cheap to clone; sending never blocks and never refuses while the writer
/// is there: the bound is the caller's. The connection actor checks
/// [`OutboundSender::pending_messages`] and [`OutboundSender::pending_bytes`]
/// against its feed's outbound queue limits before it hands over a message,
/// and a sender of something large waits with [`OutboundSender::drained_below`]
/// between pieces, so that what waits for the writer stays bounded.
#[derive(Debug, Clone)]
pub struct OutboundSender {
    sender: mpsc::UnboundedSender<Outbound>,
    pending: Arc<Pending>,
}

impl OutboundSender {
    /// Queues a message for the peer; fails once the connection is gone.
    pub fn send(&self, message: Outbound) -> Result<(), TransportError> {
        let size = payload_len(&message);
        self.pending.messages.fetch_add(1, Ordering::AcqRel);
        self.pending.bytes.fetch_add(size, Ordering::AcqRel);
        self.sender.unbounded_send(message).map_err(|_| {
            self.pending.messages.fetch_sub(1, Ordering::AcqRel);
            self.pending.bytes.fetch_sub(size, Ordering::AcqRel);
            TransportError::Closed
        })
    }

    /// True once the transport stopped reading outbound messages.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Messages queued for the writer and not yet taken.
    pub fn pending_messages(&self) -> usize {
        self.pending.messages.load(Ordering::Acquire)
    }

    /// Payload bytes queued for the writer and not yet taken.
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes.load(Ordering::Acquire)
    }

    /// Resolves once at most `limit` payload bytes wait for the writer (or it is gone).
    pub async fn drained_below(&self, limit: usize) {
        futures_util::future::poll_fn(|cx| {
            if self.pending_bytes() <= limit || self.is_closed() {
                return Poll::Ready(());
            }
            self.pending.waker.register(cx.waker());
            if self.pending_bytes() <= limit || self.is_closed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// The transport's end of the outbound channel.
#[derive(Debug)]
pub struct OutboundReceiver {
    receiver: mpsc::UnboundedReceiver<Outbound>,
    pending: Arc<Pending>,
}

impl Stream for OutboundReceiver {
    type Item = Outbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        let polled = Pin::new(&mut self.receiver).poll_next(cx);
        if let Poll::Ready(Some(message)) = &polled {
            self.pending.messages.fetch_sub(1, Ordering::AcqRel);
            self.pending.bytes.fetch_sub(payload_len(message), Ordering::AcqRel);
            self.pending.waker.wake();
        }
        polled
    }
}

impl Drop for OutboundReceiver {
    /// A sender waiting for room must not wait for a writer that is gone.
    fn drop(&mut self) {
        self.receiver.close();
        self.pending.waker.wake();
    }
}

impl OutboundReceiver {
    /// Stops accepting messages; those already queued can still be read.
    pub fn close(&mut self) {
        self.receiver.close();
    }
}

/// A connected sender and receiver pair for outbound messages.
pub fn outbound_channel() -> (OutboundSender, OutboundReceiver) {
    let (sender, receiver) = mpsc::unbounded();
    let pending = Arc::new(Pending::default());
    (OutboundSender { sender, pending: pending.clone() }, OutboundReceiver { receiver, pending })
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;

    #[actix_rt::test]
    async fn a_sender_waits_until_the_writer_has_taken_enough() {
        let (sender, mut receiver) = outbound_channel();
        sender.send(Outbound::Binary(bytes::Bytes::from(vec![0u8; 100]))).expect("open");
        sender.send(Outbound::Binary(bytes::Bytes::from(vec![0u8; 50]))).expect("open");
        assert_eq!((sender.pending_messages(), sender.pending_bytes()), (2, 150));
        assert!(sender.drained_below(100).now_or_never().is_none(), "150 bytes still wait");
        let waiting = sender.clone();
        let wait = actix_rt::spawn(async move { waiting.drained_below(100).await });
        receiver.next().await.expect("first message");
        wait.await.expect("woken once 50 bytes wait");
        assert_eq!((sender.pending_messages(), sender.pending_bytes()), (1, 50));
        drop(receiver);
        assert!(sender.drained_below(0).now_or_never().is_some(), "a gone writer ends the wait");
    }
}
