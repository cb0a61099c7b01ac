//! feedvisor's byte-stream transport: `tcp://host:port` and `tls://host:port`.
//!
//! A URL names a host and a port and nothing else (an empty path or `/` is
//! fine); a missing port, a path, query, fragment or credentials are
//! [`TransportError::InvalidUrl`], since nothing on a byte stream would use
//! them. `tls` verifies the server against the webpki roots plus the feed's
//! CA file, with the host as the server name (SNI), and offers no ALPN. The
//! connect and the TLS handshake together are bounded by `handshake_timeout`.
//!
//! A TCP connection has no messages of its own, so this transport makes them
//! (see [`Framing`](feedvisor_transport_api::Framing) and
//! [`DeliveryMode`]):
//! - message mode, `Lines`: one text message per line, split at `\n` with an
//!   optional `\r` before it dropped (empty lines are empty messages); a line
//!   that is not valid UTF-8 ends the connection with a protocol error
//!   (close code 1007);
//! - message mode, `LengthPrefixed`: each binary message preceded by its
//!   length as a big-endian u32;
//! - stream mode: the whole connection is one binary message, handed over in
//!   pieces of at most `chunk_size` bytes as they arrive (the first piece
//!   `Binary`, the others `Continuation`); only the peer closing the
//!   connection cleanly (for `tls`, with a `close_notify`) ends it: a last
//!   piece with `fin` (possibly empty), then `Event::Close(None)`. Any other
//!   end is an error, after the bytes that came before it.
//!
//! A message longer than `max_frame_size` is refused
//! ([`TransportError::FrameTooLarge`]) as soon as that is known (from the
//! length prefix, or once a line passes the limit without a newline), never
//! buffered past the limit plus one read. In message mode, the peer closing
//! the connection is an error (`Io`, "connection closed by peer"), so that the
//! connection actor reconnects; a message left unfinished at that moment is
//! dropped, never delivered cut short.
//!
//! Outbound messages are framed the same way (stream mode: raw bytes); see
//! `encoder.rs` for messages sent in pieces and what cannot be framed.
//!
//! What WebSocket has and TCP has not: headers and subprotocols are refused
//! by [`Transport::check`] and ignored at connect (there is no handshake to
//! carry them), protocol pings are refused too, and `protocol` is always `None`;
//! outbound pings and pongs are dropped (TCP has none: a dead peer is noticed
//! by the feed's idle timeout only); our close sends no code or reason: it
//! writes what is queued, shuts our write half down, and ends once the peer
//! closes its side or the close timeout passes.
//!
//! Code map:
//! - `lib.rs`: [`TcpTransport`], the URL checks and the rules of `check`;
//! - `dial.rs`: name resolution, the TCP connect and the TLS handshake, with
//!   their errors classified into [`TransportError`] kinds, and the TLS
//!   client settings (the kit's, with no ALPN);
//! - `framing.rs`: inbound bytes to events, bounded by the frame size limit;
//! - `encoder.rs`: outbound messages (and messages sent in pieces) to bytes;
//! - `session.rs`: what a session does with the socket (buffers, framing,
//!   half-close); its life (close, drain, close timeout) is the kit's `Session`.

mod dial;
mod encoder;
mod framing;
#[doc(hidden)]
pub mod fuzzing;
mod session;

use std::time::Duration;

use feedvisor_transport_api::{
    outbound_channel, ConnectFuture, ConnectRequest, Connection, DeliveryMode, FeedOptions,
    OptionProblem, Outbound, Transport, TransportError,
};
use feedvisor_transport_kit::{proxy, redacted_url, session_inbound, tls};
use url::Url;

use crate::dial::{Attempt, TLS};
use crate::encoder::Encoder;
use crate::framing::{Decoder, Wire};

/// Opens TCP and TLS connections for the `tcp` and `tls` schemes.
///
/// The value is cheap and `Send + Sync`; each connection's socket lives on
/// the arbiter that connected it, polled by the connection that reads it.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    /// How long a closing connection waits for the peer to close its side
    /// after ours, and for its last bytes to be written.
    close_timeout: Duration,
}

impl TcpTransport {
    /// The close timeout of [`TcpTransport::new`].
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

    /// A transport with the default close timeout.
    pub fn new() -> Self {
        TcpTransport { close_timeout: Self::DEFAULT_CLOSE_TIMEOUT }
    }

    /// Sets how long a closing connection waits for the peer to close its
    /// side, and for the final flush, before it ends anyway.
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["tcp", "tls"]
    }

    fn check(&self, feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
        check(feed)
    }

    fn connect(&self, request: ConnectRequest) -> ConnectFuture {
        let close_timeout = self.close_timeout;
        Box::pin(async move { connect(request, close_timeout).await })
    }
}

/// The rules of a byte-stream feed: the URL is a host and a port (the same
/// check as at connect), framing only in message mode, nothing that needs a
/// handshake (headers, subprotocols, compression) or protocol pings, a CA
/// file only for `tls`.
fn check(feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
    let mut problems = Vec::new();
    let scheme = feed.url.scheme();
    if let Err(error) = Target::from_url(feed.url) {
        let reason = match error {
            TransportError::InvalidUrl { reason, .. } => reason,
            other => other.to_string(),
        };
        let message = format!(
            "{reason}: a {scheme}:// URL needs a host and a port and nothing else, \
             such as \"{scheme}://127.0.0.1:7000\""
        );
        problems.push(OptionProblem::new("url", message));
    }
    let no_handshake = "not used by tcp:// and tls:// feeds: there is no handshake to carry them";
    for name in feed.header_names {
        problems.push(OptionProblem::new(format!("headers.{name}"), no_handshake));
    }
    if !feed.subprotocols.is_empty() {
        problems.push(OptionProblem::new("subprotocols", no_handshake));
    }
    if feed.framing.is_some() && matches!(feed.mode, DeliveryMode::Stream { .. }) {
        problems.push(OptionProblem::new(
            "framing",
            "only used in message mode: stream mode passes bytes through",
        ));
    }
    if feed.protocol_pings {
        problems.push(OptionProblem::new(
            "heartbeat",
            "tcp:// and tls:// have no protocol pings: set heartbeat.message and \
             heartbeat.reply, or use idle_timeout",
        ));
    }
    problems.extend(tls::check_feed(feed.tls, scheme == "tls", "tls:// feeds"));
    if feed.compression.is_some() {
        problems.push(OptionProblem::new(
            "compression",
            "permessage-deflate is WebSocket's (ws:// and wss://); for compressed \
             payloads on tcp:// and tls:// use decode = \"gzip\", \"zlib\" or \"deflate-raw\"",
        ));
    }
    problems
}

/// Where to connect, as checked from the request's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The URL for messages.
    shown: String,
    /// The host as written in the URL, without IPv6 brackets.
    host: String,
    /// The port; URLs of these schemes must name one.
    port: u16,
    /// True for `tls`.
    secure: bool,
}

impl Target {
    /// Checks that `url` is `tcp://host:port` or `tls://host:port`, with
    /// nothing else but an optional `/` path.
    ///
    /// A path, query, fragment or credentials would have to mean something
    /// on a byte stream, and nothing here would use them; they are refused
    /// rather than silently ignored.
    fn from_url(url: &Url) -> Result<Target, TransportError> {
        let shown = redacted_url(url);
        let invalid = |reason: &str| TransportError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        let secure = match url.scheme() {
            "tcp" => false,
            "tls" => true,
            _ => return Err(invalid("the tcp transport serves only tcp and tls")),
        };
        let host = match url.host() {
            None | Some(url::Host::Domain("")) => return Err(invalid("no host")),
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Ipv6(address)) => address.to_string(),
        };
        let port = match url.port() {
            None => return Err(invalid("no port (tcp and tls URLs have no default port)")),
            Some(0) => return Err(invalid("port 0")),
            Some(port) => port,
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials in the URL are not supported"));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(invalid("a path has no meaning on a tcp or tls connection"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment has no meaning on a tcp or tls connection"));
        }
        Ok(Target { shown, host, port, secure })
    }
}

/// Connects (and, for `tls`, shakes hands) within the handshake timeout, then
/// starts the session.
async fn connect(
    request: ConnectRequest,
    close_timeout: Duration,
) -> Result<Connection, TransportError> {
    let target = Target::from_url(&request.url)?;
    // Build the TLS config first: a bad CA file fails before any connect.
    let tls = if target.secure { Some(TLS.config(&request.tls)?) } else { None };
    let proxy = proxy::choose(&request.proxy, &target.host, target.secure, &proxy::process_env)?;
    let attempt = Attempt {
        url: &target.shown,
        host: &target.host,
        port: target.port,
        timeout: request.handshake_timeout,
        server_name: request.tls.server_name.as_deref(),
        proxy: proxy.as_ref(),
    };
    let socket = match tokio::time::timeout(request.handshake_timeout, attempt.dial(tls)).await {
        Err(_elapsed) => return Err(attempt.timed_out()),
        Ok(result) => result?,
    };
    let wire = Wire::new(request.mode, request.framing);
    let decoder = Decoder::new(wire, request.max_frame_size);
    let (outbound, receiver) = outbound_channel();
    let session = session::session(socket, Encoder::new(wire), decoder, receiver, close_timeout);
    tracing::debug!(url = %target.shown, ?wire, "tcp connected");
    let inbound = session_inbound(session, outbound.clone(), Outbound::Close(None));
    Ok(Connection { inbound, outbound, protocol: None })
}

#[cfg(test)]
mod tests;
