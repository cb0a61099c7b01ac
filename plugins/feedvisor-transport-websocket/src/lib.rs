//! feedvisor's WebSocket transport: `ws://` and `wss://` over awc and rustls.
//!
//! awc does the connect, the TLS handshake and the HTTP upgrade; then its
//! codec is swapped for [`codec::FrameCodec`] (keeping awc's read buffer), and
//! a session (`session.rs`) runs the connection as a stream of event batches.
//!
//! Code map:
//! - `lib.rs`: [`WebSocketTransport`], request checks, the handshake;
//! - `client.rs`: per-thread awc clients and the middleware that keeps `Retry-After`;
//! - `error.rs`: awc errors to [`TransportError`] kinds;
//! - [`codec`]: the frame codec;
//! - `extension.rs`: permessage-deflate's offer and the server's answer, held
//!   to the offer (RFC 7692 section 7.1);
//! - `deflate.rs`: inflating and compressing messages once it is negotiated;
//! - `fuzzing.rs`: the hidden entry point of the `websocket_frames` fuzz target;
//! - `session.rs`: what a session does with the socket (framing, pongs, close
//!   replies); its life (close, drain, close timeout) is the kit's `Session`.
//!
//! Invariants: header values never reach a log or an error message; URLs in
//! messages are shown without credentials or query; in message mode a frame
//! over the limit is refused from its header, before any of its payload is
//! buffered; in stream mode no data frame is buffered whole: its payload
//! leaves in pieces of at most `chunk_size` bytes as it arrives, and the
//! socket is not read while the consumer is a few batches behind.

mod client;
pub mod codec;
mod deflate;
mod error;
mod extension;
#[doc(hidden)]
pub mod fuzzing;
mod session;

use std::time::Duration;

use awc::http::header::{
    HeaderName, HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, USER_AGENT,
};
use awc::ClientResponse;
use feedvisor_transport_api::{
    close_code, outbound_channel, CloseFrame, Compression, ConnectFuture, ConnectRequest,
    Connection, FeedOptions, OptionProblem, Outbound, Transport, TransportError,
};
use feedvisor_transport_kit::{proxy, redacted_url, session_inbound, tls};
use url::Url;

use crate::codec::FrameCodec;
use crate::error::Attempt;

/// The `User-Agent` sent unless the request sets one.
const USER_AGENT_VALUE: &str = concat!("feedvisor/", env!("CARGO_PKG_VERSION"));

/// Opens WebSocket connections for the `ws` and `wss` schemes.
///
/// The value is cheap and `Send + Sync`; the awc clients it uses are built per
/// thread on first use (see `client.rs`).
#[derive(Debug, Clone)]
pub struct WebSocketTransport {
    /// How long a closing connection waits for the peer's close frame after
    /// ours, and for its last bytes to be written.
    close_timeout: Duration,
}

impl WebSocketTransport {
    /// The close timeout of [`WebSocketTransport::new`].
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

    /// A transport with the default close timeout.
    pub fn new() -> Self {
        WebSocketTransport { close_timeout: Self::DEFAULT_CLOSE_TIMEOUT }
    }

    /// Sets how long a closing connection waits for the peer's close frame and
    /// for its final flush before it ends anyway.
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }
}

impl Default for WebSocketTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for WebSocketTransport {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["ws", "wss"]
    }

    fn check(&self, feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
        check(feed)
    }

    fn connect(&self, request: ConnectRequest) -> ConnectFuture {
        let close_timeout = self.close_timeout;
        Box::pin(async move { connect(request, close_timeout).await })
    }
}

/// Headers the handshake sets itself; a feed may not override them.
const HANDSHAKE_HEADERS: [&str; 7] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

/// The rules of a WebSocket feed: no handshake header set by hand, no
/// framing (frames are the messages), a CA file only for `wss`.
fn check(feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
    let mut problems = Vec::new();
    for name in feed.header_names {
        let field = format!("headers.{name}");
        if name.eq_ignore_ascii_case(SEC_WEBSOCKET_PROTOCOL.as_str()) {
            problems.push(OptionProblem::new(
                field,
                "set subprotocols with `subprotocols`, not as a header",
            ));
        } else if HANDSHAKE_HEADERS.iter().any(|header| name.eq_ignore_ascii_case(header)) {
            let message = format!("{name} is set by the WebSocket handshake itself");
            problems.push(OptionProblem::new(field, message));
        }
    }
    if feed.framing.is_some() {
        problems.push(OptionProblem::new(
            "framing",
            "not used by ws:// and wss:// feeds: each WebSocket message is one message",
        ));
    }
    problems.extend(tls::check_feed(feed.tls, feed.url.scheme() == "wss", "wss:// feeds"));
    if let Some(Compression::Deflate(params)) = feed.compression {
        // zlib cannot compress with a window of 8 (RFC 7692 allows it): 9 is the least we can keep to.
        if params.client_max_window_bits.is_some_and(|bits| !(9..=15).contains(&bits)) {
            problems.push(OptionProblem::new(
                "client_max_window_bits",
                "must be from 9 to 15 (the base-2 logarithm of our compressor's window)",
            ));
        }
        if params.server_max_window_bits.is_some_and(|bits| !(8..=15).contains(&bits)) {
            problems.push(OptionProblem::new(
                "server_max_window_bits",
                "must be from 8 to 15 (the base-2 logarithm of the server's window)",
            ));
        }
    }
    problems
}

/// Where to connect, as checked from the request's URL.
struct Target {
    /// The URL for messages: no credentials, query or fragment.
    shown: String,
    /// The URL sent to awc: no fragment.
    request_uri: String,
    /// `host:port`.
    addr: String,
    /// The host alone.
    host: String,
    /// True for `wss`.
    secure: bool,
}

impl Target {
    fn from_url(url: &Url) -> Result<Target, TransportError> {
        let shown = redacted_url(url);
        let invalid = |reason: &str| TransportError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        let secure = match url.scheme() {
            "ws" => false,
            "wss" => true,
            _ => return Err(invalid("the websocket transport serves only ws and wss")),
        };
        let host = url.host_str().ok_or_else(|| invalid("no host"))?.to_owned();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials in the URL are not supported; use a header"));
        }
        let port = url.port_or_known_default().ok_or_else(|| invalid("no port"))?;
        let mut request_uri = url.clone();
        request_uri.set_fragment(None);
        Ok(Target {
            addr: format!("{host}:{port}"),
            host,
            request_uri: request_uri.into(),
            shown,
            secure,
        })
    }
}

/// Connects, upgrades, checks the subprotocol and starts the session.
async fn connect(
    request: ConnectRequest,
    close_timeout: Duration,
) -> Result<Connection, TransportError> {
    let target = Target::from_url(&request.url)?;
    let headers = request_headers(&request, &target)?;
    let attempt = Attempt {
        url: &target.shown,
        addr: &target.addr,
        host: &target.host,
        secure: target.secure,
        timeout: request.handshake_timeout,
    };
    let proxy = proxy::choose(&request.proxy, &target.host, target.secure, &proxy::process_env)?;
    let client = client::client_for(&request.tls, proxy.as_ref())?;
    let mut upgrade = client.ws(target.request_uri.as_str()).max_frame_size(request.max_frame_size);
    for (name, value) in headers {
        upgrade = upgrade.header(name, value);
    }
    upgrade = upgrade.set_header_if_none(USER_AGENT, USER_AGENT_VALUE);
    if !request.subprotocols.is_empty() {
        upgrade = upgrade.protocols(&request.subprotocols);
    }
    let offered = match &request.compression {
        Compression::Deflate(params) => Some(params),
        Compression::Off => None,
    };
    if let Some(params) = offered {
        upgrade = upgrade.header(SEC_WEBSOCKET_EXTENSIONS, extension::offer(params));
    }
    let (response, framed) =
        match actix_rt::time::timeout(request.handshake_timeout, upgrade.connect()).await {
            Err(_elapsed) => return Err(attempt.timed_out()),
            Ok(Err(error)) => return Err(attempt.classify(error)),
            Ok(Ok(upgraded)) => upgraded,
        };
    let protocol = picked_subprotocol(&response, &request.subprotocols)?;
    let answers: Vec<&str> = response
        .headers()
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .map(|value| value.to_str().unwrap_or("\u{fffd}"))
        .collect();
    let deflate = extension::accept(offered, &answers).map_err(TransportError::Handshake)?;
    let (mode, max_frame_size) = (request.mode, request.max_frame_size);
    let counts = request.compressed.clone();
    let framed = framed.into_map_codec(|_| {
        let codec = FrameCodec::for_mode(mode, max_frame_size);
        match &deflate {
            Some(agreed) => codec.with_deflate(agreed, counts.clone()),
            None => codec,
        }
    });
    let (outbound, receiver) = outbound_channel();
    let session = session::session(framed, receiver, close_timeout);
    // The address only: a path may hold an expanded `${VAR}`.
    tracing::debug!(addr = %target.addr, protocol = ?protocol, deflate = ?deflate, "websocket connected");
    let inbound = session_inbound(
        session,
        outbound.clone(),
        Outbound::Close(Some(CloseFrame::new(close_code::GOING_AWAY, ""))),
    );
    Ok(Connection { inbound, outbound, protocol })
}

/// The request's headers, checked; an error names the header, never its value.
fn request_headers(
    request: &ConnectRequest,
    target: &Target,
) -> Result<Vec<(HeaderName, HeaderValue)>, TransportError> {
    let invalid = |reason: String| TransportError::InvalidUrl { url: target.shown.clone(), reason };
    for subprotocol in &request.subprotocols {
        if !is_token(subprotocol) {
            return Err(invalid(format!("subprotocol {subprotocol:?} is not a valid token")));
        }
    }
    request
        .headers
        .iter()
        .map(|(name, value)| {
            let header_name = HeaderName::try_from(name.as_str())
                .map_err(|_| invalid(format!("invalid request header name {name:?}")))?;
            let header_value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                invalid(format!("request header {header_name} has an invalid value"))
            })?;
            Ok((header_name, header_value))
        })
        .collect()
}

/// True for an HTTP token (RFC 9110 section 5.6.2), which a subprotocol name must be.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// The subprotocol the server picked; it must be one that was offered.
fn picked_subprotocol(
    response: &ClientResponse,
    offered: &[String],
) -> Result<Option<String>, TransportError> {
    let mut answers = response.headers().get_all(SEC_WEBSOCKET_PROTOCOL);
    let Some(answer) = answers.next() else {
        return Ok(None);
    };
    let picked = String::from_utf8_lossy(answer.as_bytes());
    let picked = picked.trim();
    if answers.next().is_none() && offered.iter().any(|protocol| protocol == picked) {
        return Ok(Some(picked.to_owned()));
    }
    let shown: String = picked.chars().take(64).collect();
    Err(TransportError::Handshake(format!(
        "server picked subprotocol {shown:?} which was not offered"
    )))
}

#[cfg(test)]
mod tests;
