//! Name resolution, the TCP connect (or a CONNECT tunnel through the feed's
//! HTTP proxy) and the TLS handshake, with their errors classified into
//! [`TransportError`] kinds.
//!
//! The caller bounds the whole of [`Attempt::dial`] by the handshake timeout.
//! The resolved addresses are tried one after the other, in the resolver's
//! order; the first that accepts wins, and when none does, the last error is
//! the one reported. There is no "happy eyeballs": an address that swallows
//! the connect uses up the timeout.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use feedvisor_transport_api::{HttpProxy, TransportError};
use feedvisor_transport_kit::proxy;
use feedvisor_transport_kit::tls::{self, ClientTls};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// TLS client settings (built by the kit from the feed's options): no ALPN,
/// since the bytes inside are the feed's own protocol, which has no
/// registered name.
pub(crate) static TLS: ClientTls = ClientTls::new(&[]);

/// What a session reads and writes: a TCP stream, or a TLS stream over one.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin + ?Sized> Socket for T {}

/// An open socket of either kind.
pub(crate) type BoxedSocket = Box<dyn Socket>;

/// One connect attempt: where to, and what messages should say.
pub(crate) struct Attempt<'a> {
    /// The URL without credentials or query, for messages.
    pub(crate) url: &'a str,
    /// The host as written in the URL (no IPv6 brackets).
    pub(crate) host: &'a str,
    /// The port.
    pub(crate) port: u16,
    /// The handshake timeout, for [`TransportError::Timeout`].
    pub(crate) timeout: Duration,
    /// The name to send and check instead of the host (`tls.server_name`).
    pub(crate) server_name: Option<&'a str>,
    /// The HTTP proxy to tunnel through, if any.
    pub(crate) proxy: Option<&'a HttpProxy>,
}

impl Attempt<'_> {
    /// Resolves, connects and, given a TLS config, shakes hands with the host
    /// as the server name (SNI and certificate check).
    pub(crate) async fn dial(
        &self,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<BoxedSocket, TransportError> {
        // A host that cannot be a server name fails before any connect.
        let server_name = tls.as_ref().map(|_| self.server_name()).transpose()?;
        let stream = match self.proxy {
            Some(proxy) => proxy::tunnel(proxy, self.host, self.port).await?,
            None => {
                let addresses = self.resolve().await?;
                self.connect_any(&addresses).await?
            }
        };
        // Outbound messages are small and should leave at once.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        match (tls, server_name) {
            (Some(config), Some(name)) => {
                let stream = TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(|error| self.tls_failed(error))?;
                Ok(Box::new(stream))
            }
            _ => Ok(Box::new(stream)),
        }
    }

    /// The error for a connect or handshake that did not finish in time.
    pub(crate) fn timed_out(&self) -> TransportError {
        TransportError::Timeout { what: format!("connect to {}", self.url), after: self.timeout }
    }

    /// `host:port`, with brackets around an IPv6 address.
    fn addr(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The name the server's certificate must carry: `tls.server_name`, or
    /// the host, as a DNS name or an IP address.
    fn server_name(&self) -> Result<ServerName<'static>, TransportError> {
        let name = self.server_name.unwrap_or(self.host);
        if let Ok(address) = name.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(address.into()));
        }
        ServerName::try_from(name.to_owned()).map_err(|error| {
            TransportError::Tls(format!("cannot use {name:?} as a TLS server name: {error}"))
        })
    }

    /// The host's addresses: itself if it is an IP address, else the resolver's answer.
    async fn resolve(&self) -> Result<Vec<SocketAddr>, TransportError> {
        if let Ok(address) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(address, self.port)]);
        }
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((self.host, self.port))
            .await
            .map_err(|error| self.dns(error.to_string()))?
            .collect();
        if addresses.is_empty() {
            return Err(self.dns("no address records".to_owned()));
        }
        Ok(addresses)
    }

    /// Connects to the first address that accepts.
    async fn connect_any(&self, addresses: &[SocketAddr]) -> Result<TcpStream, TransportError> {
        let mut last_error = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    tracing::debug!(%address, %error, "tcp connect failed");
                    last_error = Some(error);
                }
            }
        }
        Err(match last_error {
            Some(error) => self.connect_failed(error),
            None => self.dns("no address records".to_owned()),
        })
    }

    /// Classifies an error of the TCP connect.
    fn connect_failed(&self, error: io::Error) -> TransportError {
        if error.kind() == io::ErrorKind::ConnectionRefused {
            return TransportError::Refused { addr: self.addr() };
        }
        TransportError::Io(format!("connect to {}: {error}", self.addr()))
    }

    /// Classifies an error of the TLS handshake: what rustls refused, and a
    /// peer that hangs up or answers with something that is not TLS, is a
    /// [`TransportError::Tls`]; other I/O failures stay [`TransportError::Io`].
    fn tls_failed(&self, error: io::Error) -> TransportError {
        tls::handshake_failure(&self.addr(), &error).unwrap_or_else(|| {
            TransportError::Io(format!("tls handshake with {}: {error}", self.addr()))
        })
    }

    fn dns(&self, reason: String) -> TransportError {
        TransportError::Dns { host: self.host.to_owned(), reason }
    }
}

#[cfg(test)]
mod tests {
    use feedvisor_transport_api::TlsOptions;

    use super::*;

    fn attempt(host: &str) -> Attempt<'_> {
        Attempt {
            url: "tls://example.test:7000",
            host,
            port: 7000,
            timeout: Duration::from_secs(3),
            server_name: None,
            proxy: None,
        }
    }

    #[test]
    fn the_tls_config_offers_no_application_protocol() {
        let config = TLS.config(&TlsOptions::default()).expect("default config");
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn the_test_ca_file_loads() {
        let certificates = feedvisor_test_support::TestCertificates::generate();
        let options = TlsOptions { ca_file: Some(certificates.ca_file()), ..TlsOptions::default() };
        TLS.config(&options).expect("config with the test CA");
    }

    #[test]
    fn refused_names_host_and_port() {
        let error = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            attempt("example.test").connect_failed(error),
            TransportError::Refused { addr: "example.test:7000".to_owned() }
        );
        let error = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            attempt("::1").connect_failed(error),
            TransportError::Refused { addr: "[::1]:7000".to_owned() }
        );
    }

    #[test]
    fn other_connect_errors_are_io() {
        let error = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let classified = attempt("example.test").connect_failed(error);
        assert!(matches!(classified, TransportError::Io(_)), "{classified:?}");
    }

    #[test]
    fn rustls_errors_and_hang_ups_during_the_handshake_are_tls() {
        let rejected = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        let hung_up = io::Error::from(io::ErrorKind::UnexpectedEof);
        for error in [rejected, hung_up] {
            let classified = attempt("example.test").tls_failed(error);
            assert!(matches!(classified, TransportError::Tls(_)), "{classified:?}");
        }
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let classified = attempt("example.test").tls_failed(reset);
        assert!(matches!(classified, TransportError::Io(_)), "{classified:?}");
    }

    #[test]
    fn timeout_names_the_url_and_the_limit() {
        assert_eq!(
            attempt("example.test").timed_out().to_string(),
            "connect to tls://example.test:7000 timed out after 3s"
        );
    }

    #[test]
    fn server_names_are_dns_names_or_ip_addresses() {
        assert!(matches!(attempt("localhost").server_name(), Ok(ServerName::DnsName(_))));
        assert!(matches!(attempt("127.0.0.1").server_name(), Ok(ServerName::IpAddress(_))));
        assert!(matches!(attempt("::1").server_name(), Ok(ServerName::IpAddress(_))));
        assert!(matches!(attempt("bad name!").server_name(), Err(TransportError::Tls(_))));
    }
}
