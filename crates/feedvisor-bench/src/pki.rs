//! The TLS material of the `feeds` scenario's `wss` upstream, made at run
//! time: a CA that the feeds trust (through `tls.ca_file`) and a server
//! certificate it signed for `localhost` and `127.0.0.1`. Nothing is
//! committed and no private key is built into a binary: each case makes its
//! own, which nobody outside its process ever trusts.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the test certificates or the upstream's TLS config could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed to make a key or a certificate.
    #[error("cannot make the test certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or the key.
    #[error("cannot build the upstream's TLS config: {0}")]
    Config(#[from] rustls::Error),
}

/// A fresh CA and the server certificate it signed.
pub struct TestPki {
    /// The CA's certificate, PEM: what the feeds trust.
    pub ca_pem: String,
    /// The server's certificate (the leaf alone: the feeds have the CA).
    server_certificate: CertificateDer<'static>,
    /// The server's key pair, serialised as PKCS#8.
    server_key: Vec<u8>,
}

impl TestPki {
    /// Makes a CA (ECDSA P-256) and a server certificate for `localhost`
    /// and `127.0.0.1` signed by it.
    pub fn generate() -> Result<TestPki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "feedvisor-bench test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params.distinguished_name.push(DnType::CommonName, "localhost");
        let server_certificate = server_params.signed_by(&server_key, &ca)?;
        Ok(TestPki {
            ca_pem: ca.pem(),
            server_certificate: server_certificate.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// A server config with the server certificate (ring, like the client).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(self.server_key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.server_certificate.clone()], key)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::ServerName;

    use super::*;

    /// Moves what one side wrote to the other, until neither has anything to say.
    fn exchange(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        for _ in 0..10 {
            let mut moved = 0;
            let mut bytes = Vec::new();
            while client.wants_write() {
                moved += client.write_tls(&mut bytes).expect("client writes");
            }
            server.read_tls(&mut bytes.as_slice()).expect("server reads");
            server.process_new_packets().expect("the server accepts the client");
            let mut bytes = Vec::new();
            while server.wants_write() {
                moved += server.write_tls(&mut bytes).expect("server writes");
            }
            client.read_tls(&mut bytes.as_slice()).expect("client reads");
            client.process_new_packets().expect("the client accepts the server");
            if moved == 0 {
                return;
            }
        }
    }

    /// A client that trusts only the generated CA completes a handshake
    /// with the server config, for 127.0.0.1 and localhost; a client
    /// trusting another run's CA does not.
    #[test]
    fn a_client_trusting_the_ca_accepts_the_server() {
        let pki = TestPki::generate().expect("certificates");
        let server_config = Arc::new(pki.server_config().expect("server config"));
        let client_config = |ca_pem: &str| {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(certificate.expect("CA PEM")).expect("CA certificate");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        };
        for name in ["127.0.0.1", "localhost"] {
            let server_name = ServerName::try_from(name).expect("name");
            let mut client = rustls::ClientConnection::new(client_config(&pki.ca_pem), server_name)
                .expect("client");
            let mut server = rustls::ServerConnection::new(server_config.clone()).expect("server");
            exchange(&mut client, &mut server);
            assert!(!client.is_handshaking() && !server.is_handshaking(), "{name}");
        }
        let other = TestPki::generate().expect("certificates");
        let server_name = ServerName::try_from("127.0.0.1").expect("name");
        let mut client = rustls::ClientConnection::new(client_config(&other.ca_pem), server_name)
            .expect("client");
        let mut server = rustls::ServerConnection::new(server_config).expect("server");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("client hello");
        server.read_tls(&mut hello.as_slice()).expect("server reads");
        server.process_new_packets().expect("server answers");
        let mut answer = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut answer).expect("server writes");
        }
        client.read_tls(&mut answer.as_slice()).expect("client reads");
        assert!(client.process_new_packets().is_err(), "another CA's server is refused");
    }
}
