//! awc clients, built lazily per thread and kept for the thread's life.
//!
//! `awc::Client` is not `Send` (its config holds `Rc`), so each arbiter
//! thread builds its own: one per distinct pair of TLS options and proxy.
//! TLS options whose files fail to load are not cached: the next connect
//! reads them again, so fixing a file needs no restart (files that loaded
//! once are not re-read).
//!
//! TLS: rustls built by the kit from the feed's [`TlsOptions`] (roots, CA
//! file, client certificate, pins), ALPN `http/1.1` only.
//!
//! A feed with a proxy or a `tls.server_name` gets [`TunnelConnector`], our
//! own TCP connector under awc: it opens the socket (directly, or through an
//! HTTP CONNECT tunnel) and hands awc a URI naming the server name, so that
//! awc's TLS step sends and checks that name. TLS and the WebSocket
//! handshake then run through the tunnel unchanged. Other feeds use awc's
//! own connector, with its resolver.
//!
//! Every client has no connection limit (awc's default of 100 makes the
//! 101st WebSocket connect wait and time out), no request timeout and no
//! redirects (the transport bounds the whole handshake itself), and the
//! [`UpgradeStatusCheck`] middleware.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{StatusCode, Uri};
use actix_service::Service;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
};
use awc::error::SendRequestError;
use awc::http::header::RETRY_AFTER;
use awc::middleware::Transform;
use awc::{Client, ConnectRequest as AwcRequest, ConnectResponse};
use feedvisor_transport_api::{HttpProxy, TlsOptions, TransportError};
use feedvisor_transport_kit::proxy;
use feedvisor_transport_kit::tls::{self, ClientTls};
use futures_util::future::LocalBoxFuture;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::error::{parse_retry_after, TunnelFailure, UpgradeRejected};

/// The only application protocol offered: a WebSocket upgrade needs HTTP/1.1.
static TLS: ClientTls = ClientTls::new(&[b"http/1.1"]);

/// awc's own connect and TLS timeouts; long, because every connect is bounded
/// by the request's `handshake_timeout`, which must be the one that fires.
const AWC_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

thread_local! {
    /// This thread's clients, by TLS options and proxy, each with the fingerprint of the TLS files it was built from.
    static CLIENTS: RefCell<HashMap<ClientKey, (u64, Client)>> = RefCell::new(HashMap::new());
}

/// What makes two feeds need different clients.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    /// The feed's TLS options.
    tls: TlsOptions,
    /// The proxy chosen for this connect, if any.
    proxy: Option<HttpProxy>,
}

/// This thread's client for the given TLS options and proxy, built on first use.
pub(crate) fn client_for(
    options: &TlsOptions,
    proxy: Option<&HttpProxy>,
) -> Result<Client, TransportError> {
    let key = ClientKey { tls: options.clone(), proxy: proxy.cloned() };
    let fingerprint = tls::files_fingerprint(options);
    CLIENTS.with(|clients| {
        if let Some((built_from, client)) = clients.borrow().get(&key) {
            if *built_from == fingerprint {
                return Ok(client.clone());
            }
        }
        let config = TLS.config(options)?;
        let connector = TunnelConnector {
            direct: actix_tls::connect::ConnectorService::default(),
            proxy: key.proxy.clone(),
            server_name: key.tls.server_name.clone(),
        };
        let client = build_client(config, connector);
        clients.borrow_mut().insert(key, (fingerprint, client.clone()));
        Ok(client)
    })
}

/// A client with our TLS config and connector, no connection limit and no
/// timeouts of its own.
fn build_client(config: Arc<ClientConfig>, tunnel: TunnelConnector) -> Client {
    tls::install_default_provider();
    let connector = awc::Connector::new()
        .rustls_0_23(config)
        .limit(0)
        .timeout(AWC_TIMEOUT)
        .handshake_timeout(AWC_TIMEOUT)
        .connector(tunnel);
    Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        // No `max_http_version` here: it replaces the connector's TLS config with
        // awc's default (none, with our features), and wss fails with "SSL is not
        // supported". ALPN offering only http/1.1 keeps connections on HTTP/1.1.
        .wrap(UpgradeStatusCheck)
        .finish()
}

/// awc's TCP step, our way: through the feed's proxy when it has one (else
/// actix-tls's resolver and connector, as awc's default), and naming
/// `tls.server_name` to awc's TLS step when set.
#[derive(Clone)]
pub(crate) struct TunnelConnector {
    /// awc's default TCP connector, for feeds without a proxy.
    direct: actix_tls::connect::ConnectorService,
    /// The proxy to tunnel through; `None` connects directly.
    proxy: Option<HttpProxy>,
    /// The name TLS sends and checks instead of the URL's host.
    server_name: Option<String>,
}

impl Service<ConnectInfo<Uri>> for TunnelConnector {
    type Response = TcpConnection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, request: ConnectInfo<Uri>) -> Self::Future {
        let host = request.hostname().to_owned();
        let port = request.port();
        let uri = self.tls_uri(request.request(), port);
        let Some(proxy) = self.proxy.clone() else {
            let direct = self.direct.call(request);
            return Box::pin(async move {
                let (stream, _) = direct.await?.into_parts();
                Ok(TcpConnection::new(uri, stream))
            });
        };
        Box::pin(async move {
            let stream = proxy::tunnel(&proxy, &host, port).await.map_err(|error| {
                TcpConnectError::Io(std::io::Error::other(TunnelFailure(error)))
            })?;
            Ok(TcpConnection::new(uri, stream))
        })
    }
}

impl TunnelConnector {
    /// The URI awc's TLS step takes its server name from: the request's,
    /// or one naming `server_name` when set.
    fn tls_uri(&self, request: &Uri, port: u16) -> Uri {
        let Some(name) = &self.server_name else { return request.clone() };
        let host = if name.contains(':') { format!("[{name}]") } else { name.clone() };
        Uri::builder()
            .scheme("https")
            .authority(format!("{host}:{port}"))
            .path_and_query("/")
            .build()
            // The name passed the config check; a URI it cannot make keeps the request's.
            .unwrap_or_else(|_| request.clone())
    }
}

/// awc middleware that turns a non-101 answer to an upgrade request into an
/// [`UpgradeRejected`] error carrying the `Retry-After` header, which awc
/// itself drops.
pub(crate) struct UpgradeStatusCheck;

impl<S> Transform<S, AwcRequest> for UpgradeStatusCheck
where
    S: Service<AwcRequest, Response = ConnectResponse, Error = SendRequestError>,
    S::Future: 'static,
{
    type Transform = UpgradeStatusService<S>;

    fn new_transform(self, service: S) -> Self::Transform {
        UpgradeStatusService { service }
    }
}

/// The service [`UpgradeStatusCheck`] wraps around awc's connector.
pub(crate) struct UpgradeStatusService<S> {
    /// awc's connector (or the next middleware).
    service: S,
}

impl<S> Service<AwcRequest> for UpgradeStatusService<S>
where
    S: Service<AwcRequest, Response = ConnectResponse, Error = SendRequestError>,
    S::Future: 'static,
{
    type Response = ConnectResponse;
    type Error = SendRequestError;
    type Future = LocalBoxFuture<'static, Result<ConnectResponse, SendRequestError>>;

    actix_service::forward_ready!(service);

    fn call(&self, request: AwcRequest) -> Self::Future {
        let response = self.service.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let ConnectResponse::Tunnel(head, _) = &response {
                if head.status != StatusCode::SWITCHING_PROTOCOLS {
                    let retry_after = head
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(parse_retry_after);
                    let rejected = UpgradeRejected { status: head.status.as_u16(), retry_after };
                    return Err(SendRequestError::Custom(
                        Box::new(rejected),
                        Box::new("websocket upgrade rejected"),
                    ));
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_tls_config_offers_only_http_1_1() {
        let config = TLS.config(&TlsOptions::default()).expect("default config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[actix_rt::test]
    async fn clients_are_cached_per_thread_and_broken_ca_files_are_not() {
        let first = client_for(&TlsOptions::default(), None).expect("default client");
        drop(first);
        let cached = |options: &TlsOptions| {
            let key = ClientKey { tls: options.clone(), proxy: None };
            CLIENTS.with(|clients| clients.borrow().contains_key(&key))
        };
        assert!(cached(&TlsOptions::default()));

        let broken = TlsOptions {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsOptions::default()
        };
        let error = client_for(&broken, None).err().expect("unreadable CA file");
        assert!(
            matches!(error, TransportError::Tls(message) if message.contains("/nonexistent/ca.pem"))
        );
        assert!(!cached(&broken));
    }

    #[test]
    fn the_server_name_replaces_the_host_awc_gives_to_tls() {
        let request: Uri = "https://127.0.0.1:8443/feed".parse().expect("a uri");
        let connector = |server_name: Option<&str>| TunnelConnector {
            direct: actix_tls::connect::ConnectorService::default(),
            proxy: None,
            server_name: server_name.map(str::to_owned),
        };
        let named = connector(Some("feed.example"));
        assert_eq!(named.tls_uri(&request, 8443).host(), Some("feed.example"));
        let plain = connector(None);
        assert_eq!(plain.tls_uri(&request, 8443), request);
    }
}
