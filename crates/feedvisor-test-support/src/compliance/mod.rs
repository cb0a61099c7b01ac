//! The transport compliance suite: one set of cases every transport runs.
//!
//! A transport's tests implement [`Harness`] (how to listen for a
//! connection and build the [`ConnectRequest`] that reaches it) and
//! [`Peer`] (how the far end sends, closes and reads in that transport's
//! terms), then call [`transport_compliance_suite!`](crate::transport_compliance_suite)
//! once, which writes one `#[actix_rt::test]` per case. The cases use only
//! the API crate's `Transport`, `ConnectRequest`, `Connection`, `Event` and
//! `Outbound`, so they hold every transport to the same contract:
//!
//! | case | what it proves |
//! |---|---|
//! | [`messages_arrive_in_order`] | messages written one by one arrive whole and in order |
//! | [`messages_written_at_once_arrive_batched`] | one read is one batch: fewer batches than messages |
//! | [`the_peers_close_code_reaches_the_consumer`] | the peer's close code arrives as `Event::Close`, is answered with it, and ends the stream |
//! | [`our_close_code_reaches_the_peer_and_ends_the_stream`] | `Outbound::Close` reaches the peer with its code, and the stream ends without an error |
//! | [`a_frame_over_the_limit_is_refused_before_its_payload`] | a frame announcing more than `max_frame_size` is refused on its header alone |
//! | [`stream_mode_pieces_stay_within_the_chunk_size`] | stream mode hands a frame over in pieces of at most `chunk_size` that concatenate to it |
//! | [`a_consumer_that_does_not_poll_stops_the_peer`] | not polling `inbound` stops reading, so the peer's writes block; polling again resumes them |
//! | [`dropping_the_connection_closes_it`] | a dropped `Connection` reaches the peer as a close or the end of the stream |
//! | [`a_refused_connect_is_classified_refused`] | nothing listening is `ErrorKind::Refused` |
//! | [`a_silent_handshake_times_out`] | a peer that never answers the handshake is `ErrorKind::Timeout` after `handshake_timeout` |
//! | [`a_hang_up_without_a_close_is_an_io_error`] | a peer gone without a close is `ErrorKind::Io` |
//! | [`invalid_utf8_text_is_a_protocol_error`] | text that is not UTF-8 is `ErrorKind::Protocol` with close code 1007 |
//!
//! A case that a transport cannot express (a byte stream carries no close
//! code; memory has no socket buffers) is declared so by the harness with
//! its reason ([`Expressible::No`]); the case then says so on stderr and
//! checks nothing else, rather than being left out in silence.

mod cases;
pub mod network;

use std::future::Future;

use bytes::Bytes;
use feedvisor_transport_api::{ConnectRequest, DataKind, DeliveryMode, Transport};
use tokio::net::TcpListener;

pub use cases::*;

/// Whether a transport can express what a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expressible {
    /// It can: the case runs.
    Yes,
    /// It cannot, for this reason (shown when the case runs).
    No {
        /// Why the transport has no way to express it.
        reason: &'static str,
    },
}

/// What a case needs of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The kind of the messages the peer sends: byte-stream transports pick
    /// their framing by it (lines carry text, length prefixes binary).
    pub kind: DataKind,
    /// Whole frames or pieces.
    pub mode: DeliveryMode,
    /// The request's `max_frame_size`.
    pub max_frame_size: usize,
}

impl Setup {
    /// Text messages, in message mode, limited to [`LIMIT`].
    pub const TEXT: Setup =
        Setup { kind: DataKind::Text, mode: DeliveryMode::Message, max_frame_size: LIMIT };

    /// Binary messages, in message mode, limited to [`LIMIT`].
    pub const BINARY: Setup = Setup { kind: DataKind::Binary, ..Setup::TEXT };
}

/// How a case reaches one transport: listeners, requests and its limits.
pub trait Harness {
    /// The far end of one connection.
    type Peer: Peer;
    /// Where connections made with a request from [`Harness::listen`] arrive.
    type Listener: Listener<Peer = Self::Peer>;

    /// The transport under test.
    fn transport(&self) -> &dyn Transport;

    /// A short name for messages ("websocket", "tls", "memory").
    fn name(&self) -> &'static str;

    /// A listener and a request that reaches it, shaped by `setup`.
    fn listen(&self, setup: Setup) -> impl Future<Output = (Self::Listener, ConnectRequest)>;

    /// A request to a place where nothing listens.
    fn refused(&self) -> ConnectRequest;

    /// A request to a peer that accepts the connection and never answers
    /// its handshake, and the listener that must stay open meanwhile; or why
    /// the transport has no handshake to stay silent in.
    fn silent(&self) -> impl Future<Output = Result<(ConnectRequest, TcpListener), &'static str>>;

    /// Whether a close carries a code both ways.
    fn close_codes(&self) -> Expressible;

    /// Whether the peer's writes can block on full buffers.
    fn socket_buffers(&self) -> Expressible;

    /// Whether the transport implements `DeliveryMode::Stream`.
    fn stream_mode(&self) -> Expressible;
}

/// Accepts the one connection a case makes.
pub trait Listener {
    /// What an accepted connection is.
    type Peer: Peer;

    /// Waits for the connection (and completes the server's handshake).
    fn accept(self) -> impl Future<Output = Self::Peer>;
}

/// How the peer ended its reading in [`Peer::read_to_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEnd {
    /// A close arrived, with its code if it had one (the peer answered it).
    Close(Option<u16>),
    /// The connection ended without a close.
    Eof,
}

/// The far end of one connection, in its transport's terms. Messages are of
/// the [`Setup::kind`] the connection was made with.
pub trait Peer {
    /// Sends each message with a write of its own.
    fn send_each(&mut self, messages: &[Bytes]) -> impl Future<Output = ()>;

    /// Sends every message in one write.
    fn send_at_once(&mut self, messages: &[Bytes]) -> impl Future<Output = ()>;

    /// Sends one text message that is not UTF-8.
    fn send_invalid_text(&mut self) -> impl Future<Output = ()>;

    /// Announces a message of `len` bytes and sends none of its payload
    /// (where a transport has no header, as memory, the message whole).
    fn announce(&mut self, len: u64) -> impl Future<Output = ()>;

    /// Sends `data` as one message, in writes of many sizes, and ends the message.
    fn send_stream(&mut self, data: &[u8]) -> impl Future<Output = ()>;

    /// Closes with `code` and `reason`.
    fn close(&mut self, code: u16, reason: &str) -> impl Future<Output = ()>;

    /// Reads until a close (answered with its code) or the end of the connection.
    fn read_to_end(&mut self) -> impl Future<Output = PeerEnd>;

    /// Goes away without a close.
    fn hang_up(self);
}

/// Writes one `#[actix_rt::test]` per compliance case, each running it
/// against the harness `$harness` evaluates to (evaluated anew in every
/// test). The calling crate needs `actix-rt` among its dependencies.
#[macro_export]
macro_rules! transport_compliance_suite {
    ($harness:expr) => {
        $crate::transport_compliance_suite!(@cases $harness;
            messages_arrive_in_order,
            messages_written_at_once_arrive_batched,
            the_peers_close_code_reaches_the_consumer,
            our_close_code_reaches_the_peer_and_ends_the_stream,
            a_frame_over_the_limit_is_refused_before_its_payload,
            stream_mode_pieces_stay_within_the_chunk_size,
            a_consumer_that_does_not_poll_stops_the_peer,
            dropping_the_connection_closes_it,
            a_refused_connect_is_classified_refused,
            a_silent_handshake_times_out,
            a_hang_up_without_a_close_is_an_io_error,
            invalid_utf8_text_is_a_protocol_error
        );
    };
    (@cases $harness:expr; $($case:ident),+) => {
        $(
            #[::actix_rt::test]
            async fn $case() {
                $crate::compliance::$case(&$harness).await;
            }
        )+
    };
}
