//! The contract between feedvisor's connection actors and its transport plugins.
//!
//! A transport (WebSocket, raw TCP, in-memory, ...) turns a [`ConnectRequest`]
//! into a [`Connection`]: a stream of inbound [`Event`] batches and an
//! [`OutboundSender`] for what goes upstream. The connection actor knows only
//! this crate; plugins depend on it and nothing here depends back on them.
//!
//! Duties split as follows:
//! - a transport states what its feeds' settings may be in
//!   [`Transport::check`] (URL shape, options it uses or has no use for),
//!   pure, so that a config naming its scheme is judged before anything
//!   connects; the caller resolves paths and checks that files exist;
//! - a transport answers the peer's pings and close frames itself, validates
//!   UTF-8 in text data (incrementally, across fragments), and refuses a
//!   frame whose announced length exceeds [`ConnectRequest::max_frame_size`]
//!   before buffering any of it;
//! - the connection actor turns frames into whole messages with a
//!   [`MessageAssembler`] (message mode) and enforces the message size limit.
//!
//! This crate is the contract only: it has no runtime, TLS or actix
//! dependency. What plugins share to fulfil it (the session's close and
//! drain, TLS client setup, URL redaction, the UTF-8 validator) lives in
//! `feedvisor-transport-kit`. The [`MessageAssembler`] stays here because the
//! connection actor, not a plugin, uses it.

mod assemble;
mod compression;
mod error;
mod frame;
mod network;
mod transport;

pub use assemble::{AssembleError, MessageAssembler};
pub use compression::{CompressedBytes, Compression, DeflateParams, InflateFailure};
pub use error::{ErrorKind, TransportError};
pub use frame::{close_code, CloseFrame, DataFrame, DataKind, Event, Message, Opcode, Outbound};
pub use network::{HttpProxy, ProxyOptions, TrustRoots};
pub use transport::{
    outbound_channel, ConnectFuture, ConnectRequest, Connection, DeliveryMode, FeedOptions,
    Framing, Inbound, OptionProblem, OutboundReceiver, OutboundSender, TlsOptions, Transport,
};
