//! Frames, events and messages: what crosses the transport boundary.

use bytes::Bytes;

/// WebSocket close codes feedvisor sends or interprets (RFC 6455 section 7.4.1).
pub mod close_code {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol (bad frame, bad continuation).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message or frame exceeded the configured size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Something unexpected went wrong on our side.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether a message carries UTF-8 text or opaque bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// Valid UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

impl DataKind {
    /// The lower-case name used in logs, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Text => "text",
            DataKind::Binary => "binary",
        }
    }
}

/// The opcode of a data frame as it came off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// First frame of a text message.
    Text,
    /// First frame of a binary message.
    Binary,
    /// A later frame of a fragmented message.
    Continuation,
}

/// One data frame (or fragment) received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    /// Text, binary or continuation.
    pub opcode: Opcode,
    /// True on the last frame of a message.
    pub fin: bool,
    /// The frame's payload, unmasked.
    pub payload: Bytes,
}

impl DataFrame {
    /// A complete text message in one frame.
    pub fn text(payload: impl Into<Bytes>) -> Self {
        DataFrame { opcode: Opcode::Text, fin: true, payload: payload.into() }
    }

    /// A complete binary message in one frame.
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        DataFrame { opcode: Opcode::Binary, fin: true, payload: payload.into() }
    }
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code (1000 normal, 1009 too big, ...).
    pub code: u16,
    /// A short human-readable reason (at most 123 bytes on the wire).
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with the given code and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        CloseFrame { code, reason: reason.into() }
    }
}

/// Something the transport received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A data frame or fragment; text payloads have been checked for UTF-8.
    Data(DataFrame),
    /// The peer pinged; the transport has already answered.
    Ping(Bytes),
    /// The peer answered a ping of ours.
    Pong(Bytes),
    /// The peer sent a close frame (the transport has answered it); no more events follow.
    Close(Option<CloseFrame>),
}

/// What the connection actor asks the transport to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text message; the bytes must be valid UTF-8 (use [`Outbound::text`]).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A protocol ping.
    Ping(Bytes),
    /// A protocol pong (transports send these on their own in answer to pings).
    Pong(Bytes),
    /// One frame of a message sent in pieces, for payloads too large to hold:
    /// the first carries `Text` or `Binary`, the rest `Continuation`, the last
    /// `fin`. Nothing but control frames may go out between the first and the
    /// last (the connection actor sees to it).
    Fragment(DataFrame),
    /// Close the connection with this frame, then stop.
    Close(Option<CloseFrame>),
}

impl Outbound {
    /// A text message from a string (which is UTF-8 by construction).
    pub fn text(text: impl Into<String>) -> Self {
        Outbound::Text(Bytes::from(text.into()))
    }
}

/// A whole message, as reassembled from its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Text or binary.
    pub kind: DataKind,
    /// The complete payload; for text, valid UTF-8.
    pub payload: Bytes,
}
