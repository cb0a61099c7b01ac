//! The rules `check` applies to a feed's settings before anything connects.

use std::path::PathBuf;

use feedvisor_transport_api::{
    DeliveryMode, FeedOptions, Framing, OptionProblem, TlsOptions, Transport,
};
use url::Url;

use crate::WebSocketTransport;

/// What the WebSocket transport finds wrong with a feed at `url` with these
/// header names, framing and CA file.
fn problems(
    url: &str,
    header_names: &[&str],
    framing: Option<Framing>,
    ca_file: Option<&str>,
) -> Vec<OptionProblem> {
    let url = Url::parse(url).expect("test url");
    let tls = TlsOptions { ca_file: ca_file.map(PathBuf::from), ..TlsOptions::default() };
    WebSocketTransport::new().check(&FeedOptions {
        url: &url,
        header_names,
        subprotocols: &["v1".to_owned()],
        mode: DeliveryMode::Message,
        framing,
        tls: &tls,
        protocol_pings: true,
        compression: None,
    })
}

fn fields(problems: Vec<OptionProblem>) -> Vec<String> {
    problems.into_iter().map(|problem| problem.field).collect()
}

#[test]
fn own_headers_subprotocols_pings_and_a_wss_ca_file_pass() {
    let headers = ["Authorization", "X-Api-Key"];
    // The CA file is read and parsed at load.
    let certificates = feedvisor_test_support::TestCertificates::generate();
    let ca_file = certificates.ca_file().display().to_string();
    assert_eq!(problems("wss://feed.example/ticks", &headers, None, Some(&ca_file)), []);
}

#[test]
fn headers_the_handshake_sets_itself_are_refused_in_any_case() {
    let refused =
        problems("ws://127.0.0.1:8080/", &["upgrade", "Sec-WebSocket-Protocol"], None, None);
    assert_eq!(
        refused.iter().map(|problem| problem.field.as_str()).collect::<Vec<_>>(),
        ["headers.upgrade", "headers.Sec-WebSocket-Protocol"]
    );
    assert!(refused[0].message.contains("handshake"), "{refused:?}");
    assert!(refused[1].message.contains("`subprotocols`"), "{refused:?}");
}

#[test]
fn framing_and_a_ca_file_on_plain_ws_are_refused() {
    let refused = problems("ws://127.0.0.1:8080/", &[], Some(Framing::Lines), Some("ca.pem"));
    assert_eq!(fields(refused), ["framing", "tls.ca_file"]);
}
