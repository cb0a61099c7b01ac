//! TLS client settings shared by the plugins (and the webhook sink): rustls
//! with the ring provider named explicitly, safe protocol versions, the
//! webpki roots plus an optional PEM file of extra CA certificates.
//!
//! Every config names its crypto provider, so nothing depends on a
//! process-wide default; [`install_default_provider`] still installs ring as
//! that default once, for awc, whose own defaults call
//! `ClientConfig::builder()` (which panics when no default is installed).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};

use feedvisor_transport_api::TransportError;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Why a TLS client config could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read, holds no certificate or holds a broken one.
    #[error("cannot use CA file {}: {reason}; check that it is a readable PEM file of certificates", path.display())]
    CaFile {
        /// The file as configured.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the settings (a provider without the protocol versions).
    #[error("cannot build the TLS config: {0}")]
    Config(String),
}

/// A transport sees a TLS setup failure as [`TransportError::Tls`], the
/// `tls` error kind.
impl From<TlsError> for TransportError {
    fn from(error: TlsError) -> Self {
        TransportError::Tls(error.to_string())
    }
}

/// A client config trusting the webpki roots and, with `ca_file`, every
/// certificate in that PEM file; offering `alpn` (none when empty).
pub fn client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let fail = |reason: String| TlsError::CaFile { path: path.to_owned(), reason };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|error| fail(error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| fail(error.to_string()))?;
    if certificates.is_empty() {
        return Err(fail("no PEM certificate in it".to_owned()));
    }
    for certificate in certificates {
        roots.add(certificate).map_err(|error| fail(format!("bad certificate: {error}")))?;
    }
    Ok(())
}

/// One plugin's TLS client settings: the application protocols it offers,
/// and its config for feeds without a CA file, built once per process.
///
/// Meant for a `static`: `static TLS: ClientTls = ClientTls::new(&[b"http/1.1"]);`.
/// A CA file is read at every call, so a replaced file takes effect at the
/// next connect and a broken one fails that connect (callers that cache a
/// client per CA file cache only what loaded).
pub struct ClientTls {
    /// The ALPN protocols offered, most preferred first (none when empty).
    alpn: &'static [&'static [u8]],
    /// The config without a CA file, or why it could not be built.
    default: OnceLock<Result<Arc<ClientConfig>, TlsError>>,
}

impl ClientTls {
    /// Settings offering `alpn`.
    pub const fn new(alpn: &'static [&'static [u8]]) -> Self {
        ClientTls { alpn, default: OnceLock::new() }
    }

    /// The config for `ca_file` (the shared default when `None`).
    pub fn config(&self, ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
        match ca_file {
            None => self.default.get_or_init(|| client_config(None, self.alpn)).clone(),
            Some(path) => client_config(Some(path), self.alpn),
        }
    }
}

/// Installs ring as the process-wide rustls crypto provider, once.
///
/// Our configs name their provider, but awc's own defaults call
/// `ClientConfig::builder()`, which panics when no default is installed.
/// Keeps whichever provider was installed first.
pub fn install_default_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_ALPN: ClientTls = ClientTls::new(&[]);

    /// A scratch file under the system temp dir, removed on drop.
    struct ScratchFile(PathBuf);

    impl ScratchFile {
        fn with_contents(name: &str, contents: &[u8]) -> Self {
            let path = std::env::temp_dir()
                .join(format!("feedvisor-transport-kit-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).expect("write scratch file");
            ScratchFile(path)
        }
    }

    impl Drop for ScratchFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The transport error a plugin reports for `ca_file`, as text.
    fn transport_message(ca_file: &Path) -> String {
        match NO_ALPN.config(Some(ca_file)).map_err(TransportError::from) {
            Err(TransportError::Tls(message)) => message,
            Err(other) => panic!("expected a tls error, got {other:?}"),
            Ok(_) => panic!("expected a tls error, got a config"),
        }
    }

    #[test]
    fn the_default_config_is_built_once_and_offers_the_alpn_asked_for() {
        static HTTP: ClientTls = ClientTls::new(&[b"http/1.1"]);
        let first = HTTP.config(None).expect("default config");
        let second = HTTP.config(None).expect("default config");
        assert!(Arc::ptr_eq(&first, &second), "shared, not rebuilt");
        assert_eq!(first.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(NO_ALPN.config(None).expect("default config").alpn_protocols.is_empty());
    }

    #[test]
    fn missing_ca_file_is_a_tls_error_naming_the_file() {
        let message = transport_message(Path::new("/nonexistent/feedvisor/ca.pem"));
        assert!(message.contains("/nonexistent/feedvisor/ca.pem"), "{message}");
    }

    #[test]
    fn ca_file_without_certificates_is_a_tls_error_naming_the_file() {
        let file = ScratchFile::with_contents("empty.pem", b"not a certificate\n");
        let message = transport_message(&file.0);
        assert!(message.contains(&file.0.display().to_string()), "{message}");
        assert!(message.contains("no PEM certificate"), "{message}");
    }

    #[test]
    fn ca_file_with_a_broken_certificate_is_a_tls_error_naming_the_file() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let file = ScratchFile::with_contents("broken.pem", pem);
        let message = transport_message(&file.0);
        assert!(message.contains(&file.0.display().to_string()), "{message}");
    }

    #[test]
    fn installing_the_provider_twice_does_not_panic() {
        install_default_provider();
        install_default_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
