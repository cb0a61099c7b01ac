//! Transport errors, classified into a small fixed set of kinds.

use std::time::Duration;

use crate::compression::InflateFailure;
use crate::frame::close_code;

/// Why a connect attempt or an open connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The URL cannot be used by this transport.
    #[error("invalid url {url}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name could not be resolved.
    #[error("could not resolve {host}: {reason}")]
    Dns {
        /// The host that failed to resolve.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// The peer refused the TCP connection.
    #[error("connection to {addr} refused")]
    Refused {
        /// Host and port tried.
        addr: String,
    },
    /// Something did not happen in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out ("connect to ws://...", "handshake", ...).
        what: String,
        /// The limit that passed.
        after: Duration,
    },
    /// TLS setup or the TLS handshake failed (bad certificate, name mismatch, ...).
    #[error("tls: {0}")]
    Tls(String),
    /// The server answered the upgrade request with a non-101 status.
    #[error("handshake rejected with HTTP status {status}")]
    HandshakeStatus {
        /// The HTTP status code.
        status: u16,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The upgrade failed for another reason (bad accept key, unoffered subprotocol, ...).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer broke the protocol; the transport has sent a close frame with `close_code`.
    #[error("protocol error: {reason}")]
    Protocol {
        /// The close code sent (1002 protocol error, 1007 invalid UTF-8).
        close_code: u16,
        /// What the peer did wrong.
        reason: String,
    },
    /// A frame announced more bytes than allowed; none of it was buffered.
    #[error("frame of {announced} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The length the frame header announced.
        announced: u64,
        /// The limit in force.
        limit: usize,
    },
    /// A compressed message could not be inflated, or inflated past the
    /// size limit (checked while inflating: nothing past it was kept).
    #[error("inflating a compressed message failed: {reason}")]
    Inflate {
        /// The class of failure (a metric label).
        failure: InflateFailure,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP proxy could not be reached or would not open the tunnel
    /// (refused, 407, a bad answer); never carries its credentials.
    #[error("proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy's host and port.
        proxy: String,
        /// What went wrong, with the proxy's answer when it gave one.
        reason: String,
    },
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The connection is closed; nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
}

/// A small fixed set of error classes, used as metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`TransportError::InvalidUrl`].
    InvalidUrl,
    /// See [`TransportError::Dns`].
    Dns,
    /// See [`TransportError::Refused`].
    Refused,
    /// See [`TransportError::Timeout`].
    Timeout,
    /// See [`TransportError::Tls`].
    Tls,
    /// See [`TransportError::HandshakeStatus`].
    HttpStatus,
    /// See [`TransportError::Handshake`].
    Handshake,
    /// See [`TransportError::Protocol`].
    Protocol,
    /// See [`TransportError::FrameTooLarge`].
    TooLarge,
    /// See [`TransportError::Proxy`].
    Proxy,
    /// See [`TransportError::Io`].
    Io,
    /// See [`TransportError::Closed`].
    Closed,
}

impl ErrorKind {
    /// The snake_case label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid_url",
            ErrorKind::Dns => "dns",
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Protocol => "protocol",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Proxy => "proxy",
            ErrorKind::Io => "io",
            ErrorKind::Closed => "closed",
        }
    }
}

impl TransportError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransportError::InvalidUrl { .. } => ErrorKind::InvalidUrl,
            TransportError::Dns { .. } => ErrorKind::Dns,
            TransportError::Refused { .. } => ErrorKind::Refused,
            TransportError::Timeout { .. } => ErrorKind::Timeout,
            TransportError::Tls(_) => ErrorKind::Tls,
            TransportError::HandshakeStatus { .. } => ErrorKind::HttpStatus,
            TransportError::Handshake(_) => ErrorKind::Handshake,
            TransportError::Protocol { .. } => ErrorKind::Protocol,
            TransportError::FrameTooLarge { .. } => ErrorKind::TooLarge,
            TransportError::Inflate { failure: InflateFailure::TooLarge, .. } => {
                ErrorKind::TooLarge
            }
            TransportError::Inflate { .. } => ErrorKind::Protocol,
            TransportError::Proxy { .. } => ErrorKind::Proxy,
            TransportError::Io(_) => ErrorKind::Io,
            TransportError::Closed => ErrorKind::Closed,
        }
    }

    /// The close code this error sent (or would send) to the peer, if any.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            TransportError::Protocol { close_code, .. } => Some(*close_code),
            TransportError::FrameTooLarge { .. } => Some(close_code::MESSAGE_TOO_BIG),
            TransportError::Inflate { failure: InflateFailure::TooLarge, .. } => {
                Some(close_code::MESSAGE_TOO_BIG)
            }
            TransportError::Inflate { .. } => Some(close_code::INVALID_PAYLOAD),
            _ => None,
        }
    }
}

impl From<std::io::Error> for TransportError {
    fn from(error: std::io::Error) -> Self {
        TransportError::Io(error.to_string())
    }
}
