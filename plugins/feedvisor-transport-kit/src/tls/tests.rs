use feedvisor_test_support::TestCertificates;

use super::*;

static NO_ALPN: ClientTls = ClientTls::new(&[]);

/// The certificate verifier of the config built for `options`.
fn verify(options: &TlsOptions, certificates: &TestCertificates, name: &str) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = verifier(options, &provider).map_err(|error| error.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).expect("a server name");
    verifier
        .verify_server_cert(
            &certificates.server_chain()[0],
            &[],
            &server_name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|error| describe(&error))
}

fn with_ca(certificates: &TestCertificates) -> TlsOptions {
    TlsOptions { ca_file: Some(certificates.ca_file()), ..TlsOptions::default() }
}

fn problems(options: &TlsOptions) -> Vec<String> {
    check(options).iter().map(ToString::to_string).collect()
}

#[test]
fn configs_are_built_once_per_options_and_offer_the_alpn_asked_for() {
    static HTTP: ClientTls = ClientTls::new(&[b"http/1.1"]);
    let first = HTTP.config(&TlsOptions::default()).expect("default config");
    let second = HTTP.config(&TlsOptions::default()).expect("default config");
    assert!(Arc::ptr_eq(&first, &second), "shared, not rebuilt");
    assert_eq!(first.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(NO_ALPN.config(&TlsOptions::default()).expect("config").alpn_protocols.is_empty());
}

#[test]
fn the_private_ca_is_trusted_and_names_are_checked() {
    let certificates = TestCertificates::generate();
    assert_eq!(verify(&with_ca(&certificates), &certificates, "localhost"), Ok(()));
    let unknown = verify(&TlsOptions::default(), &certificates, "localhost").expect_err("webpki");
    assert!(unknown.contains("unknown issuer") && unknown.contains("tls.ca_file"), "{unknown}");
    let wrong = verify(&with_ca(&certificates), &certificates, "example.com").expect_err("name");
    assert!(wrong.contains("not valid for the name") && wrong.contains("server_name"), "{wrong}");
}

#[test]
fn pins_accept_only_the_keys_listed() {
    let certificates = TestCertificates::generate();
    let pin = spki_sha256(&certificates.server_chain()[0]).expect("a digest");
    let pinned = TlsOptions { pin_sha256: vec![pin.clone()], ..with_ca(&certificates) };
    assert_eq!(verify(&pinned, &certificates, "localhost"), Ok(()));

    let other = TlsOptions { pin_sha256: vec![base64_of([7; 32])], ..with_ca(&certificates) };
    let refused = verify(&other, &certificates, "localhost").expect_err("pin mismatch");
    assert!(refused.contains("pin mismatch") && refused.contains(&pin), "{refused}");

    // roots = "none" and pins alone: no chain to check, the key decides.
    let pins_only =
        TlsOptions { roots: TrustRoots::None, pin_sha256: vec![pin], ..TlsOptions::default() };
    assert_eq!(verify(&pins_only, &certificates, "localhost"), Ok(()));
}

#[test]
fn insecure_skip_verify_accepts_an_unknown_issuer_and_a_wrong_name() {
    let certificates = TestCertificates::generate();
    let skip = TlsOptions { insecure_skip_verify: true, ..TlsOptions::default() };
    assert_eq!(verify(&skip, &certificates, "example.com"), Ok(()));
}

#[test]
fn roots_none_without_a_ca_file_or_pins_trusts_nothing_and_says_so() {
    let nothing = TlsOptions { roots: TrustRoots::None, ..TlsOptions::default() };
    assert_eq!(
        problems(&nothing),
        vec!["tls.roots: roots = \"none\" trusts nothing by itself: set ca_file or pin_sha256"]
    );
    let certificates = TestCertificates::generate();
    let with_file = TlsOptions { roots: TrustRoots::None, ..with_ca(&certificates) };
    assert_eq!(verify(&with_file, &certificates, "127.0.0.1"), Ok(()));
}

#[test]
fn a_ca_file_holding_a_key_is_refused_at_load_with_the_reason() {
    let certificates = TestCertificates::generate();
    let key_as_ca =
        TlsOptions { ca_file: Some(certificates.client_key_file()), ..TlsOptions::default() };
    let found = problems(&key_as_ca);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("tls.ca_file: "), "{found:?}");
    assert!(found[0].contains("holds a private key, not a certificate"), "{found:?}");
    assert!(!found[0].contains("PRIVATE KEY-----"), "no key material: {found:?}");
}

#[test]
fn missing_and_broken_files_name_the_field_and_the_file() {
    let missing = TlsOptions {
        ca_file: Some(PathBuf::from("/nonexistent/feedvisor/ca.pem")),
        ..TlsOptions::default()
    };
    let found = problems(&missing);
    assert!(
        found[0].starts_with("tls.ca_file: ") && found[0].contains("/nonexistent/feedvisor/ca.pem")
    );

    let certificates = TestCertificates::generate();
    let cert_as_key = TlsOptions {
        client_cert: Some(certificates.client_cert_file()),
        client_key: Some(certificates.client_cert_file()),
        ..TlsOptions::default()
    };
    let found = problems(&cert_as_key);
    assert!(found[0].starts_with("tls.client_key: "), "{found:?}");

    let half =
        TlsOptions { client_cert: Some(certificates.client_cert_file()), ..TlsOptions::default() };
    assert_eq!(
        problems(&half),
        vec!["tls.client_key: client_cert and client_key go together: set both or neither"]
    );
}

#[test]
fn a_client_identity_that_loads_passes_the_check() {
    let certificates = TestCertificates::generate();
    let identity = TlsOptions {
        client_cert: Some(certificates.client_cert_file()),
        client_key: Some(certificates.client_key_file()),
        ..with_ca(&certificates)
    };
    assert_eq!(problems(&identity), Vec::<String>::new());
    assert!(NO_ALPN.config(&identity).expect("a config").client_auth_cert_resolver.has_certs());
}

#[test]
fn bad_pins_and_server_names_are_refused_at_load() {
    let options = TlsOptions {
        pin_sha256: vec![base64_of([1; 32]), "not base64!".to_owned(), base64_of([1; 16])],
        server_name: Some("bad name!".to_owned()),
        ..TlsOptions::default()
    };
    let found = problems(&options);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("tls.server_name: "), "{found:?}");
    assert!(found[1].starts_with("tls.pin_sha256: pin_sha256 entry 1 "), "{found:?}");
}

#[test]
fn handshake_alerts_are_explained() {
    let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
    assert!(describe(&required).contains("requires a client certificate"));
    let failure = handshake_failure(
        "localhost:1",
        &std::io::Error::new(std::io::ErrorKind::InvalidData, required),
    );
    assert!(
        matches!(failure, Some(TransportError::Tls(message)) if message.contains("client_cert"))
    );
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert_eq!(handshake_failure("localhost:1", &reset), None);
}

#[test]
fn installing_the_provider_twice_does_not_panic() {
    install_default_provider();
    install_default_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

fn base64_of<const N: usize>(bytes: [u8; N]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
