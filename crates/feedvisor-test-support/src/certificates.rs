//! TLS material made at test time: a CA, a server certificate it signed
//! for `localhost` and `127.0.0.1` and a client certificate it signed, as PEM
//! files (what a feed's `ca_file`, `client_cert` and `client_key` name) and
//! as rustls types (what a test server needs, with or without client auth).
//!
//! Nothing here is committed: every [`TestCertificates::generate`] makes new
//! keys, so no private key lives in the repository and no certificate expires.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A CA and a server certificate it signed, with the files they were written to.
pub struct TestCertificates {
    /// Holds the PEM files; removed when the certificates are dropped.
    dir: TempDir,
    /// The CA's certificate.
    ca: CertificateDer<'static>,
    /// The server's certificate (the chain a server presents; the CA is not in it).
    server: CertificateDer<'static>,
    /// The server certificate's private key, PKCS#8.
    server_key: PrivatePkcs8KeyDer<'static>,
    /// The CA's private key, PKCS#8 (for a server that presents the CA itself).
    ca_key: PrivatePkcs8KeyDer<'static>,
}

/// The CN of the client certificate.
pub const CLIENT_NAME: &str = "feedvisor test client";

impl TestCertificates {
    /// Makes a new CA ("feedvisor test CA", P-256) and a server certificate
    /// for [`SERVER_NAMES`] signed by it, and writes both as PEM files.
    ///
    /// # Panics
    /// When key generation, signing or writing the files fails: a test
    /// cannot go on without them.
    pub fn generate() -> TestCertificates {
        let ca_key = KeyPair::generate().expect("generate the test CA's key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        ca_params.distinguished_name.push(DnType::CommonName, "feedvisor test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the test CA");
        let ca_key_der = PrivatePkcs8KeyDer::from(ca_key.serialize_der());
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate the test server's key");
        let names: Vec<String> = SERVER_NAMES.iter().map(|name| (*name).to_owned()).collect();
        let mut server_params = CertificateParams::new(names).expect("valid server names");
        server_params.distinguished_name.push(DnType::CommonName, "localhost");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server = server_params.signed_by(&server_key, &issuer).expect("sign the server cert");

        let client_key = KeyPair::generate().expect("generate the test client's key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        client_params.distinguished_name.push(DnType::CommonName, CLIENT_NAME);
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client_params.use_authority_key_identifier_extension = true;
        let client = client_params.signed_by(&client_key, &issuer).expect("sign the client cert");

        let dir =
            TempDir::new("feedvisor-test-certificates").expect("create a temporary directory");
        for (name, pem) in [
            (CA_FILE, ca.pem()),
            (SERVER_CERT_FILE, server.pem()),
            (SERVER_KEY_FILE, server_key.serialize_pem()),
            (CLIENT_CERT_FILE, client.pem()),
            (CLIENT_KEY_FILE, client_key.serialize_pem()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)
                .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        }
        TestCertificates {
            dir,
            ca: ca.der().clone(),
            server: server.der().clone(),
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
            ca_key: ca_key_der,
        }
    }

    /// The CA certificate's PEM file, as a feed's `ca_file` names it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join(CA_FILE)
    }

    /// The server certificate's PEM file.
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.path().join(SERVER_CERT_FILE)
    }

    /// The server key's PEM file (PKCS#8).
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join(SERVER_KEY_FILE)
    }

    /// The client certificate's PEM file, as a feed's `client_cert` names it.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join(CLIENT_CERT_FILE)
    }

    /// The client key's PEM file (PKCS#8), as a feed's `client_key` names it.
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join(CLIENT_KEY_FILE)
    }

    /// A rustls server config like [`TestCertificates::server_config`] that
    /// requires a client certificate signed by the CA.
    pub fn server_config_requiring_client(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_certificate()).expect("the generated CA is valid");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("a client verifier over the test CA");
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain(), self.server_key())
            .expect("the generated key matches its certificate");
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls server config presenting the CA certificate itself as the
    /// server's (what `openssl req -x509` makes and people try first).
    pub fn server_config_presenting_the_ca(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = PrivateKeyDer::Pkcs8(self.ca_key.clone_key());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.ca_certificate()], ca_key)
            .expect("the CA key matches its certificate");
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// The CA certificate, for a client's root store.
    pub fn ca_certificate(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// The chain a server presents: its certificate alone.
    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.server.clone()]
    }

    /// The server certificate's private key.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.server_key.clone_key())
    }

    /// A rustls server config with the server certificate (ring, safe
    /// defaults, no client auth), offering `alpn` in that order.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.server_chain(), self.server_key())
            .expect("the generated key matches its certificate");
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// The base64 SHA-256 of the server certificate's SubjectPublicKeyInfo,
    /// as a feed's `pin_sha256` lists it.
    pub fn server_pin(&self) -> String {
        use base64::Engine as _;
        let parsed = webpki::EndEntityCert::try_from(&self.server).expect("a parsable certificate");
        let digest =
            ring::digest::digest(&ring::digest::SHA256, parsed.subject_public_key_info().as_ref());
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }

    /// A TLS acceptor (tokio-rustls) for [`TestCertificates::server_config`].
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config(alpn))
    }
}

/// A TLS acceptor (tokio-rustls) for any server config.
pub fn acceptor_for(config: Arc<ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

const CA_FILE: &str = "ca.pem";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";
const CLIENT_CERT_FILE: &str = "client.pem";
const CLIENT_KEY_FILE: &str = "client.key";

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(prefix: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique =
            format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(unique);
        // A directory left by an earlier process with the same id is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)?;
        Ok(TempDir { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::ServerName;

    use super::*;

    #[test]
    fn the_files_hold_what_the_rustls_types_hold_and_go_away_on_drop() {
        let certificates = TestCertificates::generate();
        let ca = CertificateDer::from_pem_file(certificates.ca_file()).expect("ca.pem");
        assert_eq!(ca, certificates.ca_certificate());
        let server = CertificateDer::from_pem_file(certificates.server_cert_file()).expect("pem");
        assert_eq!(vec![server], certificates.server_chain());
        let key = PrivateKeyDer::from_pem_file(certificates.server_key_file()).expect("key");
        assert_eq!(key.secret_der(), certificates.server_key().secret_der());
        let dir = certificates.ca_file().parent().expect("a directory").to_owned();
        drop(certificates);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }

    #[test]
    fn the_server_certificate_verifies_against_the_ca_for_both_names() {
        let certificates = TestCertificates::generate();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificates.ca_certificate()).expect("a valid CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a verifier");
        let now = rustls_pki_types::UnixTime::now();
        for name in SERVER_NAMES.into_iter().chain(["127.0.0.2"]) {
            let server_name = ServerName::try_from(name).expect("a server name");
            let verified = verifier.verify_server_cert(
                &certificates.server_chain()[0],
                &[],
                &server_name,
                &[],
                now,
            );
            assert_eq!(verified.is_ok(), name != "127.0.0.2", "{name}: {verified:?}");
        }
    }
}
