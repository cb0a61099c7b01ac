//! TLS client settings: rustls with the ring provider, the webpki roots plus
//! an optional PEM file of extra CA certificates, and no ALPN (the bytes
//! inside are the feed's own protocol, which has no registered name).
//!
//! Every config names its crypto provider explicitly, so nothing depends on a
//! process-wide default. The default config is built once per process; a CA
//! file is read at every connect, so a replaced file takes effect at the next
//! reconnect and a broken one fails that connect with a [`TransportError::Tls`].

use std::path::Path;
use std::sync::{Arc, OnceLock};

use feedvisor_transport_api::{tls, TransportError};
use rustls::ClientConfig;

/// The config for feeds without a CA file, built once per process.
pub(crate) fn default_config() -> Result<Arc<ClientConfig>, TransportError> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, TransportError>> = OnceLock::new();
    DEFAULT.get_or_init(|| tls::client_config(None, &[])).clone()
}

/// A config trusting the webpki roots and every certificate in the PEM file `path`.
pub(crate) fn config_with_ca_file(path: &Path) -> Result<Arc<ClientConfig>, TransportError> {
    tls::client_config(Some(path), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch file under the system temp dir, removed on drop.
    struct ScratchFile(std::path::PathBuf);

    impl ScratchFile {
        fn with_contents(name: &str, contents: &[u8]) -> Self {
            let path = std::env::temp_dir()
                .join(format!("feedvisor-transport-tcp-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).expect("write scratch file");
            ScratchFile(path)
        }
    }

    impl Drop for ScratchFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn tls_message(result: Result<Arc<ClientConfig>, TransportError>) -> String {
        match result {
            Err(TransportError::Tls(message)) => message,
            Err(other) => panic!("expected a tls error, got {other:?}"),
            Ok(_) => panic!("expected a tls error, got a config"),
        }
    }

    #[test]
    fn default_config_offers_no_application_protocol() {
        let config = default_config().expect("default config");
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn the_test_ca_file_loads() {
        let certificates = feedvisor_test_support::TestCertificates::generate();
        config_with_ca_file(&certificates.ca_file()).expect("config with the test CA");
    }

    #[test]
    fn missing_ca_file_is_a_tls_error_naming_the_file() {
        let path = Path::new("/nonexistent/feedvisor/ca.pem");
        let message = tls_message(config_with_ca_file(path));
        assert!(message.contains("/nonexistent/feedvisor/ca.pem"), "{message}");
    }

    #[test]
    fn ca_file_without_certificates_is_a_tls_error_naming_the_file() {
        let file = ScratchFile::with_contents("empty.pem", b"not a certificate\n");
        let message = tls_message(config_with_ca_file(&file.0));
        assert!(message.contains(&file.0.display().to_string()), "{message}");
    }

    #[test]
    fn ca_file_with_a_broken_certificate_is_a_tls_error_naming_the_file() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let file = ScratchFile::with_contents("broken.pem", pem);
        let message = tls_message(config_with_ca_file(&file.0));
        assert!(message.contains(&file.0.display().to_string()), "{message}");
    }
}
