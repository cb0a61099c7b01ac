//! TLS client settings shared by the plugins: rustls with the ring provider
//! named explicitly and safe protocol versions, built from a feed's
//! [`TlsOptions`]: the trusted roots (webpki, the system store, or none),
//! an extra CA file, a client certificate for mutual TLS, public-key pins and
//! the explicit `insecure_skip_verify`. Also the words a person can act on
//! for what rustls refused ([`describe`]), and the load-time checks of the
//! files and pins ([`check`]).
//!
//! Every config names its crypto provider, so nothing depends on a
//! process-wide default; [`install_default_provider`] still installs ring as
//! that default once, for awc, whose own defaults call
//! `ClientConfig::builder()` (which panics when no default is installed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};

use base64::Engine as _;
use feedvisor_transport_api::{OptionProblem, TlsOptions, TransportError, TrustRoots};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Why a TLS client config could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read, holds nothing of the kind wanted or holds a broken one.
    #[error("cannot use {what} {}: {reason}; check that it is a readable PEM file of {wants}", path.display())]
    File {
        /// Which setting: `CA file`, `client certificate`, `client key`.
        what: &'static str,
        /// What the file should hold.
        wants: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `pin_sha256` entry is not the base64 of 32 bytes.
    #[error("pin_sha256 entry {index} is not the base64 of a SHA-256 digest (32 bytes)")]
    Pin {
        /// Its position in the list, from 0.
        index: usize,
    },
    /// Nothing would be trusted.
    #[error("roots = \"none\" trusts nothing by itself: set ca_file or pin_sha256")]
    NothingTrusted,
    /// The system store could not be read.
    #[error("cannot read the system's CA certificates: {0}; use roots = \"webpki\" or a ca_file")]
    SystemRoots(String),
    /// A client certificate without its key, or the other way round.
    #[error("client_cert and client_key go together: set both or neither")]
    HalfClientIdentity,
    /// rustls refused the settings (a key that does not match the certificate, ...).
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

impl TlsError {
    /// The config field at fault, for a load-time [`OptionProblem`].
    fn field(&self) -> &'static str {
        match self {
            TlsError::File { what: "CA file", .. } => "tls.ca_file",
            TlsError::File { what: "client certificate", .. } => "tls.client_cert",
            TlsError::File { .. } | TlsError::HalfClientIdentity | TlsError::Config(_) => {
                "tls.client_key"
            }
            TlsError::Pin { .. } => "tls.pin_sha256",
            TlsError::NothingTrusted | TlsError::SystemRoots(_) => "tls.roots",
        }
    }
}

/// A client config for `options`, offering `alpn` (none when empty).
pub fn client_config(options: &TlsOptions, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = verifier(options, &provider)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&options.client_cert, &options.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| TlsError::Config(describe(&error)))?
        }
        _ => return Err(TlsError::HalfClientIdentity),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The load-time check of a secure feed's TLS settings: every file read and
/// parsed, the pins decoded, the client key matched to its certificate.
/// Problems name the field and never a secret (a key's bytes are never shown).
pub fn check(options: &TlsOptions) -> Vec<OptionProblem> {
    let mut problems = Vec::new();
    if let Some(name) = &options.server_name {
        if ServerName::try_from(name.as_str()).is_err() {
            problems.push(OptionProblem::new(
                "tls.server_name",
                format!("{name:?} is not a DNS name or an IP address"),
            ));
        }
    }
    if let Err(error) = decode_pins(&options.pin_sha256) {
        problems.push(OptionProblem::new(error.field(), error.to_string()));
    }
    if options.roots == TrustRoots::System {
        // Read when connecting; an unreadable store is a connect failure, not a load error.
    } else if let Err(error) = client_config(options, &[]) {
        if !matches!(error, TlsError::Pin { .. }) {
            problems.push(OptionProblem::new(error.field(), error.to_string()));
        }
    }
    problems
}

/// A transport's check of a feed's TLS settings: [`check`] for a secure
/// scheme; for a plain one, every field that is set is refused as
/// `only used by {secure_feeds}` (such as `"wss:// feeds"`).
pub fn check_feed(options: &TlsOptions, secure: bool, secure_feeds: &str) -> Vec<OptionProblem> {
    if secure {
        return check(options);
    }
    let set = [
        ("tls.roots", options.roots != TrustRoots::default()),
        ("tls.ca_file", options.ca_file.is_some()),
        ("tls.client_cert", options.client_cert.is_some()),
        ("tls.client_key", options.client_key.is_some()),
        ("tls.server_name", options.server_name.is_some()),
        ("tls.pin_sha256", !options.pin_sha256.is_empty()),
        ("tls.insecure_skip_verify", options.insecure_skip_verify),
    ];
    set.into_iter()
        .filter(|(_, is_set)| *is_set)
        .map(|(field, _)| OptionProblem::new(field, format!("only used by {secure_feeds}")))
        .collect()
}

/// The verifier for `options`: webpki chain validation against the chosen
/// roots, then the pins; or, with `insecure_skip_verify`, signatures only.
fn verifier(
    options: &TlsOptions,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<PinningVerifier>, TlsError> {
    let pins = decode_pins(&options.pin_sha256)?;
    let algorithms = provider.signature_verification_algorithms;
    if options.insecure_skip_verify {
        return Ok(Arc::new(PinningVerifier { chain: None, pins: Vec::new(), algorithms }));
    }
    let mut roots = match options.roots {
        TrustRoots::Webpki => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        TrustRoots::System => system_roots()?,
        TrustRoots::None => RootCertStore::empty(),
    };
    if let Some(path) = &options.ca_file {
        for certificate in certificates(path, "CA file")? {
            roots.add(certificate).map_err(|error| TlsError::File {
                what: "CA file",
                wants: "certificates",
                path: path.clone(),
                reason: format!("bad certificate: {}", describe(&error)),
            })?;
        }
    }
    let chain = if roots.is_empty() {
        if pins.is_empty() {
            return Err(TlsError::NothingTrusted);
        }
        // roots = "none" with pins and no CA file: the pins alone decide.
        None
    } else {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
        Some(verifier)
    };
    Ok(Arc::new(PinningVerifier { chain, pins, algorithms }))
}

/// The system store, read once per process (it is large, and rarely changes).
fn system_roots() -> Result<RootCertStore, TlsError> {
    static SYSTEM: OnceLock<Result<Vec<CertificateDer<'static>>, String>> = OnceLock::new();
    let loaded = SYSTEM.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        if result.certs.is_empty() {
            let reasons: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
            return Err(if reasons.is_empty() {
                "the store holds no certificate".to_owned()
            } else {
                reasons.join("; ")
            });
        }
        Ok(result.certs)
    });
    let certificates = loaded.as_ref().map_err(|reason| TlsError::SystemRoots(reason.clone()))?;
    let mut roots = RootCertStore::empty();
    // A store holds some certificates webpki cannot parse; the rest are enough.
    let _ = roots.add_parsable_certificates(certificates.iter().cloned());
    Ok(roots)
}

/// Every certificate in a PEM file; none is an error.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File {
        what,
        wants: "certificates",
        path: path.to_owned(),
        reason,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|error| fail(error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| fail(error.to_string()))?;
    if certificates.is_empty() {
        let hint = if PrivateKeyDer::from_pem_file(path).is_ok() {
            "it holds a private key, not a certificate"
        } else {
            "no PEM certificate in it"
        };
        return Err(fail(hint.to_owned()));
    }
    Ok(certificates)
}

/// The client certificate chain and its key.
fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(cert, "client certificate")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::File {
        what: "client key",
        wants: "one private key (PKCS#8, PKCS#1 or SEC1)",
        path: key.to_owned(),
        // The parser's message names the section it missed, never key bytes.
        reason: error.to_string(),
    })?;
    Ok((chain, key))
}

/// The pins as digests.
fn decode_pins(pins: &[String]) -> Result<Vec<[u8; 32]>, TlsError> {
    pins.iter()
        .enumerate()
        .map(|(index, pin)| {
            base64::engine::general_purpose::STANDARD
                .decode(pin.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or(TlsError::Pin { index })
        })
        .collect()
}

/// The base64 SHA-256 of a certificate's SubjectPublicKeyInfo: what
/// `pin_sha256` lists (`openssl x509 -pubkey | openssl pkey -pubin -outform
/// der | openssl dgst -sha256 -binary | base64`).
pub fn spki_sha256(certificate: &CertificateDer<'_>) -> Result<String, TransportError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(spki_digest(certificate)?))
}

fn spki_digest(certificate: &CertificateDer<'_>) -> Result<[u8; 32], TransportError> {
    let parsed = webpki::EndEntityCert::try_from(certificate)
        .map_err(|error| TransportError::Tls(format!("cannot parse the certificate: {error}")))?;
    let spki = parsed.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// The server key was not among the pins.
#[derive(Debug, thiserror::Error)]
#[error("the server's public key (sha256 {presented}) is not among pin_sha256")]
pub struct PinMismatch {
    /// The base64 digest the server presented, so that a rotated key can be pinned.
    pub presented: String,
}

/// Chain validation (when there are roots), then the pins (when there are any).
#[derive(Debug)]
struct PinningVerifier {
    /// The webpki verifier over the chosen roots; `None` checks no chain.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The accepted SPKI digests; empty accepts any key the chain allows.
    pins: Vec<[u8; 32]>,
    /// The handshake signatures are always checked, whatever else is skipped.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if !self.pins.is_empty() {
            let digest = spki_digest(end_entity)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if !self.pins.contains(&digest) {
                let presented = base64::engine::general_purpose::STANDARD.encode(digest);
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(PinMismatch { presented })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What rustls refused, in words a person can act on.
pub fn describe(error: &rustls::Error) -> String {
    use rustls::Error as E;
    match error {
        E::InvalidCertificate(certificate) => describe_certificate(certificate),
        E::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate: set tls.client_cert and tls.client_key"
                .to_owned()
        }
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError,
        ) => format!(
            "the server refused our client certificate ({error}): check that its CA trusts tls.client_cert"
        ),
        E::AlertReceived(AlertDescription::ProtocolVersion) | E::PeerIncompatible(_) => format!(
            "no protocol version or cipher in common with the server ({error}): it may speak only TLS 1.0/1.1"
        ),
        E::AlertReceived(AlertDescription::HandshakeFailure) => format!(
            "the server ended the handshake ({error}): it may require a client certificate or a protocol version we do not offer"
        ),
        other => other.to_string(),
    }
}

fn describe_certificate(error: &CertificateError) -> String {
    use CertificateError as C;
    match error {
        C::UnknownIssuer => "the server's certificate is signed by an unknown issuer: \
            add its CA to tls.ca_file (or use roots = \"system\")"
            .to_owned(),
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "the server's certificate is not valid for the name connected to ({error}): \
             set tls.server_name to a name it carries"
        ),
        C::Expired | C::ExpiredContext { .. } => {
            format!("the server's certificate has expired ({error})")
        }
        // Found by trying: a CA rotated under the same name (or two test
        // CAs with one name) showed only "BadSignature".
        C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => format!(
            "the server's certificate names a trusted CA as its issuer but that CA's key did \
             not sign it ({error:?}): tls.ca_file may hold an old or another CA of the same \
             name; put the CA that issued the server's certificate in it"
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            format!("the server's certificate is not valid yet ({error}): check the clocks")
        }
        C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "the server presents a CA certificate (basicConstraints CA:TRUE) as its own, \
             which TLS forbids: give the server a certificate signed by that CA \
             (such as one made by `openssl req -x509` is not usable as a server certificate)"
                .to_owned()
        }
        C::Other(other) => match other.0.downcast_ref::<PinMismatch>() {
            Some(mismatch) => format!("pin mismatch: {mismatch}"),
            None => format!("the server's certificate was refused: {other}"),
        },
        other => format!("the server's certificate was refused: {other:?}"),
    }
}

/// Classifies an I/O error of a TLS handshake with `addr`: what rustls
/// refused, and a peer that hangs up or answers with something that is not
/// TLS, is [`TransportError::Tls`] in the words of [`describe`]; other I/O
/// failures are `None`, for the caller to classify.
pub fn handshake_failure(addr: &str, error: &std::io::Error) -> Option<TransportError> {
    use std::io::ErrorKind;
    if let Some(refused) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return Some(TransportError::Tls(format!(
            "handshake with {addr} failed: {}",
            describe(refused)
        )));
    }
    let tls_kind = matches!(
        error.kind(),
        ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof
    );
    tls_kind.then(|| TransportError::Tls(format!("handshake with {addr} failed: {error}")))
}

/// One plugin's TLS client settings: the application protocols it offers,
/// and its configs, built once per distinct [`TlsOptions`].
///
/// Meant for a `static`: `static TLS: ClientTls = ClientTls::new(&[b"http/1.1"]);`.
/// A config whose files fail to load is not kept: the next connect reads
/// them again, so fixing a file needs no restart. One that loaded is kept
/// while its files hold the same bytes ([`files_fingerprint`]): a rotated
/// CA or client certificate is picked up at the next connect.
pub struct ClientTls {
    /// The ALPN protocols offered, most preferred first (none when empty).
    alpn: &'static [&'static [u8]],
    /// The configs that loaded, by their options, with the fingerprint of
    /// the files they were built from.
    built: OnceLock<Mutex<HashMap<TlsOptions, Fingerprinted>>>,
}

/// A config with the fingerprint of the files it was built from.
type Fingerprinted = (u64, Arc<ClientConfig>);

/// A fingerprint of the contents of the files `options` names (CA, client
/// certificate and key): it changes when one of them is rewritten. An
/// unreadable file counts as empty (loading it will say why).
pub fn files_fingerprint(options: &TlsOptions) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in [&options.ca_file, &options.client_cert, &options.client_key] {
        path.as_ref().and_then(|path| std::fs::read(path).ok()).hash(&mut hasher);
    }
    hasher.finish()
}

impl ClientTls {
    /// Settings offering `alpn`.
    pub const fn new(alpn: &'static [&'static [u8]]) -> Self {
        ClientTls { alpn, built: OnceLock::new() }
    }

    /// The config for `options` and its files as they are now (see
    /// [`files_fingerprint`]), built on first use and again after a file changed.
    pub fn config(&self, options: &TlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
        let fingerprint = files_fingerprint(options);
        let built = self.built.get_or_init(Mutex::default);
        // A panic elsewhere while holding the lock leaves a usable map.
        let mut built = built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((built_from, config)) = built.get(options) {
            if *built_from == fingerprint {
                return Ok(config.clone());
            }
        }
        let config = client_config(options, self.alpn)?;
        built.insert(options.clone(), (fingerprint, config.clone()));
        Ok(config)
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
mod tests;
