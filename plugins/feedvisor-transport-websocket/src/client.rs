//! awc clients, built lazily per thread and kept for the thread's life.
//!
//! `awc::Client` is not `Send` (its config holds `Rc`), so each arbiter
//! thread builds its own: one with the default TLS roots, and one per
//! distinct CA file. A CA file that fails to load is not cached: the next
//! connect reads it again, so fixing the file needs no restart (a file that
//! loaded once is not re-read).
//!
//! TLS: rustls with the ring provider, the webpki roots plus an optional
//! per-feed CA file (the kit's [`tls`]), and
//! ALPN `http/1.1` only.
//!
//! Every client has no connection limit (awc's default of 100 makes the
//! 101st WebSocket connect wait and time out), no request timeout and no
//! redirects (the transport bounds the whole handshake itself), and the
//! [`UpgradeStatusCheck`] middleware.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_http::StatusCode;
use actix_service::Service;
use awc::error::SendRequestError;
use awc::http::header::RETRY_AFTER;
use awc::middleware::Transform;
use awc::{Client, ConnectRequest as AwcRequest, ConnectResponse};
use feedvisor_transport_api::{TlsOptions, TransportError};
use feedvisor_transport_kit::tls::{self, ClientTls};
use futures_util::future::LocalBoxFuture;
use rustls::ClientConfig;

use crate::error::{parse_retry_after, UpgradeRejected};

/// The only application protocol offered: a WebSocket upgrade needs HTTP/1.1.
static TLS: ClientTls = ClientTls::new(&[b"http/1.1"]);

/// awc's own connect and TLS timeouts; long, because every connect is bounded
/// by the request's `handshake_timeout`, which must be the one that fires.
const AWC_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

thread_local! {
    /// This thread's clients.
    static CLIENTS: RefCell<Clients> = RefCell::new(Clients::default());
}

/// The clients of one thread.
#[derive(Default)]
struct Clients {
    /// For feeds without a CA file.
    default: Option<Client>,
    /// For feeds with a CA file, by its path as configured.
    by_ca_file: HashMap<PathBuf, Client>,
}

/// This thread's client for the given TLS options, built on first use.
pub(crate) fn client_for(options: &TlsOptions) -> Result<Client, TransportError> {
    CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        match &options.ca_file {
            None => {
                if let Some(client) = &clients.default {
                    return Ok(client.clone());
                }
                let client = build_client(TLS.config(None)?);
                clients.default = Some(client.clone());
                Ok(client)
            }
            Some(path) => {
                if let Some(client) = clients.by_ca_file.get(path) {
                    return Ok(client.clone());
                }
                let client = build_client(TLS.config(Some(path))?);
                clients.by_ca_file.insert(path.clone(), client.clone());
                Ok(client)
            }
        }
    })
}

/// A client with our TLS config, no connection limit and no timeouts of its own.
fn build_client(config: Arc<ClientConfig>) -> Client {
    tls::install_default_provider();
    let connector = awc::Connector::new()
        .rustls_0_23(config)
        .limit(0)
        .timeout(AWC_TIMEOUT)
        .handshake_timeout(AWC_TIMEOUT);
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
    use super::*;

    #[test]
    fn the_tls_config_offers_only_http_1_1() {
        let config = TLS.config(None).expect("default config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[actix_rt::test]
    async fn clients_are_cached_per_thread_and_broken_ca_files_are_not() {
        let first = client_for(&TlsOptions::default()).expect("default client");
        drop(first);
        CLIENTS.with(|clients| assert!(clients.borrow().default.is_some()));

        let broken = TlsOptions { ca_file: Some(PathBuf::from("/nonexistent/ca.pem")) };
        let error = client_for(&broken).err().expect("unreadable CA file");
        assert!(
            matches!(error, TransportError::Tls(message) if message.contains("/nonexistent/ca.pem"))
        );
        CLIENTS.with(|clients| assert!(clients.borrow().by_ca_file.is_empty()));
    }
}
