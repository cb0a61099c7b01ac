//! Turns awc's connect and handshake errors into [`TransportError`] kinds.
//!
//! awc reports a rejected upgrade only by its status code; the middleware in
//! `client.rs` turns a non-101 answer into an [`UpgradeRejected`] first, so
//! that the server's `Retry-After` survives.

use std::time::{Duration, SystemTime};

use actix_http::header::HttpDate;
use awc::error::{ConnectError, SendRequestError, WsClientError};
use feedvisor_transport_api::TransportError;
use feedvisor_transport_kit::tls;

/// A non-101 answer to the upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upgrade rejected with HTTP status {status}")]
pub(crate) struct UpgradeRejected {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The server's `Retry-After`, if it sent a usable one.
    pub(crate) retry_after: Option<Duration>,
}

impl From<UpgradeRejected> for TransportError {
    fn from(rejected: UpgradeRejected) -> Self {
        TransportError::HandshakeStatus {
            status: rejected.status,
            retry_after: rejected.retry_after,
        }
    }
}

/// A failure of the client's `TunnelConnector`, already classified; carried
/// through awc's I/O error and taken out again by [`Attempt::classify`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TunnelFailure(pub(crate) TransportError);

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (a past date is no delay).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date: SystemTime = value.parse::<HttpDate>().ok()?.into();
    Some(date.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// What the classification needs to know about the attempt.
pub(crate) struct Attempt<'a> {
    /// The URL without credentials or query, for messages.
    pub(crate) url: &'a str,
    /// Host and port, for [`TransportError::Refused`].
    pub(crate) addr: &'a str,
    /// The host name, for [`TransportError::Dns`].
    pub(crate) host: &'a str,
    /// True for `wss`: I/O errors during connect may come from the TLS handshake.
    pub(crate) secure: bool,
    /// The handshake timeout, for [`TransportError::Timeout`].
    pub(crate) timeout: Duration,
}

impl Attempt<'_> {
    /// The error for a connect or handshake that did not finish in time.
    pub(crate) fn timed_out(&self) -> TransportError {
        TransportError::Timeout { what: format!("connect to {}", self.url), after: self.timeout }
    }

    /// Classifies an error from `awc::ws::WebsocketsRequest::connect`.
    pub(crate) fn classify(&self, error: WsClientError) -> TransportError {
        match error {
            WsClientError::InvalidResponseStatus(status) => {
                TransportError::HandshakeStatus { status: status.as_u16(), retry_after: None }
            }
            WsClientError::SendRequest(error) => self.classify_send(error),
            other => TransportError::Handshake(lower_first(&other.to_string())),
        }
    }

    fn classify_send(&self, error: SendRequestError) -> TransportError {
        match error {
            SendRequestError::Url(error) => self.invalid_url(error.to_string()),
            SendRequestError::Http(error) => self.invalid_url(error.to_string()),
            SendRequestError::Connect(error) => self.classify_connect(error),
            SendRequestError::Timeout => self.timed_out(),
            SendRequestError::Send(error) => {
                TransportError::Io(format!("sending the upgrade request failed: {error}"))
            }
            // With TLS 1.3 a server's refusal of our client certificate
            // arrives as an alert at the first read, after the handshake.
            SendRequestError::Response(actix_http::error::ParseError::Io(error))
                if error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                tls::handshake_failure(self.addr, &error)
                    .unwrap_or_else(|| TransportError::Tls(error.to_string()))
            }
            SendRequestError::Response(error) => {
                TransportError::Handshake(format!("bad answer to the upgrade request: {error}"))
            }
            SendRequestError::Custom(error, _) => match error.downcast_ref::<UpgradeRejected>() {
                Some(rejected) => (*rejected).into(),
                None => TransportError::Handshake(error.to_string()),
            },
            other => TransportError::Handshake(lower_first(&other.to_string())),
        }
    }

    fn classify_connect(&self, error: ConnectError) -> TransportError {
        match error {
            ConnectError::Resolver(error) => self.dns(error.to_string()),
            ConnectError::NoRecords => self.dns("no address records".to_owned()),
            ConnectError::Unresolved => self.dns("host was not resolved".to_owned()),
            ConnectError::Timeout => self.timed_out(),
            ConnectError::Io(error) => self.classify_io(error),
            ConnectError::SslIsNotSupported => {
                TransportError::Tls("TLS is not supported by this build".to_owned())
            }
            other => TransportError::Io(lower_first(&other.to_string())),
        }
    }

    fn classify_io(&self, error: std::io::Error) -> TransportError {
        use std::io::ErrorKind;
        if let Some(TunnelFailure(failure)) =
            error.get_ref().and_then(|inner| inner.downcast_ref::<TunnelFailure>())
        {
            return failure.clone();
        }
        if error.kind() == ErrorKind::ConnectionRefused {
            return TransportError::Refused { addr: self.addr.to_owned() };
        }
        let from_rustls = error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
        if from_rustls || self.secure {
            if let Some(failure) = tls::handshake_failure(self.addr, &error) {
                return failure;
            }
        }
        TransportError::Io(format!("connect to {}: {error}", self.addr))
    }

    fn dns(&self, reason: String) -> TransportError {
        TransportError::Dns { host: self.host.to_owned(), reason }
    }

    fn invalid_url(&self, reason: String) -> TransportError {
        TransportError::InvalidUrl { url: self.url.to_owned(), reason: lower_first(&reason) }
    }
}

/// awc's messages start with a capital; ours are lower-case.
fn lower_first(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt<'static> {
        Attempt {
            url: "wss://example.test/feed",
            addr: "example.test:443",
            host: "example.test",
            secure: true,
            timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = HttpDate::from(SystemTime::now() + Duration::from_secs(120)).to_string();
        let delay = parse_retry_after(&later).expect("a date");
        assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120), "{delay:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn rejected_upgrade_keeps_status_and_retry_after() {
        let rejected = UpgradeRejected { status: 503, retry_after: Some(Duration::from_secs(7)) };
        let error = SendRequestError::Custom(Box::new(rejected), Box::new("rejected"));
        assert_eq!(
            attempt().classify(WsClientError::SendRequest(error)),
            TransportError::HandshakeStatus {
                status: 503,
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn io_errors_are_classified() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            attempt().classify_io(refused),
            TransportError::Refused { addr: "example.test:443".to_owned() }
        );
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(attempt().classify_io(bad_cert), TransportError::Tls(_)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(attempt().classify_io(reset), TransportError::Io(_)));
    }

    #[test]
    fn connect_errors_are_classified() {
        assert!(matches!(
            attempt().classify_connect(ConnectError::NoRecords),
            TransportError::Dns { host, .. } if host == "example.test"
        ));
        assert_eq!(
            attempt().classify_connect(ConnectError::Timeout),
            TransportError::Timeout {
                what: "connect to wss://example.test/feed".to_owned(),
                after: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn handshake_failures_are_classified() {
        assert!(matches!(
            attempt().classify(WsClientError::MissingWebSocketAcceptHeader),
            TransportError::Handshake(message) if message.starts_with("missing")
        ));
    }
}
