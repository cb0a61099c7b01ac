//! TLS client settings shared by the plugins (and the webhook sink): rustls
//! with the ring provider named explicitly, safe protocol versions, the
//! webpki roots plus an optional PEM file of extra CA certificates.

use std::path::Path;
use std::sync::{Arc, Once};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::TransportError;

/// A client config trusting the webpki roots and, with `ca_file`, every
/// certificate in that PEM file; offering `alpn` (none when empty).
///
/// A CA file that cannot be read, holds no certificate or holds a broken one
/// is a [`TransportError::Tls`] that names the file.
pub fn client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TransportError::Tls(format!("cannot build the TLS config: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TransportError> {
    let fail = |reason: String| {
        TransportError::Tls(format!("cannot use CA file {}: {reason}", path.display()))
    };
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
