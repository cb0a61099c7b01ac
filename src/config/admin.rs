//! `[http]`'s own TLS and connection limits: the admin server's certificate
//! and key (`[http.tls]`), how many connections it holds at once
//! (`max_connections`, with a reserve beyond `/subscribe`'s clients so
//! `/healthz` and `/metrics` stay reachable when `/subscribe` is full), and
//! its listen backlog.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde::Serialize;

use super::raw::{RawHttp, RawHttpTls};
use super::scope::{Context, Scope};

/// Connections kept beyond `[http.subscribe].max_clients`, so that health
/// checks, scrapes and changes still get through when `/subscribe` is full.
pub const RESERVED_CONNECTIONS: usize = 16;

/// The default `max_connections` floor: an admin API needs few more.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The default listen backlog: connections the kernel holds before the
/// server accepts them.
pub const DEFAULT_BACKLOG: u32 = 256;

/// `[http.tls]`: the admin server serves https (and `/subscribe` wss).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpTls {
    /// The certificate chain, PEM, the server's own first.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl HttpTls {
    /// Reads the files and builds the server's TLS config; the error names
    /// the file and what to do, never key material.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let cert = &self.cert;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).and_then(Iterator::collect).map_err(|error| {
                format!("cannot read certificates from {}: {error}", cert.display())
            })?;
        if chain.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (BEGIN CERTIFICATE): give the server's certificate chain",
                cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|error| {
            format!(
                "cannot read a private key from {}: {error} (a PEM PKCS#8, PKCS#1 or SEC1 key)",
                self.key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS versions: {error}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| {
                format!(
                    "{} and {} do not make a server identity: {error} (is the key the certificate's?)",
                    cert.display(),
                    self.key.display()
                )
            })?;
        Ok(Arc::new(config))
    }
}

/// `[http.tls]` resolved against the config's directory and loaded once, so
/// that a bad file fails `check`, not the start.
pub(crate) fn tls(
    raw: &RawHttpTls,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<HttpTls> {
    let tls =
        HttpTls { cert: context.base_dir.join(&raw.cert), key: context.base_dir.join(&raw.key) };
    match tls.server_config() {
        Ok(_) => Some(tls),
        Err(error) => scope.fail("tls", error),
    }
}

/// `max_connections` and `backlog`: at least `max_clients` plus the
/// reserve, so a full `/subscribe` never locks health checks out.
pub(crate) fn limits(raw: &RawHttp, max_clients: usize, scope: &mut Scope<'_>) -> (usize, u32) {
    let least = max_clients.saturating_add(RESERVED_CONNECTIONS);
    let max_connections = match raw.max_connections {
        None => least.max(DEFAULT_MAX_CONNECTIONS),
        Some(wanted) if wanted < least => scope
            .fail(
                "max_connections",
                format!(
                    "{wanted} leaves no room beside [http.subscribe].max_clients = {max_clients}: \
                     set at least {least}, so /healthz and /metrics stay reachable when /subscribe is full"
                ),
            )
            .unwrap_or(least),
        Some(wanted) => wanted,
    };
    let backlog = match raw.backlog {
        Some(0) => scope.fail("backlog", "must be at least 1").unwrap_or(DEFAULT_BACKLOG),
        Some(backlog) => backlog,
        None => DEFAULT_BACKLOG,
    };
    (max_connections, backlog)
}
