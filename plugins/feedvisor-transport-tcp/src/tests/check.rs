//! The rules `check` applies to a feed's settings before anything connects.

use std::path::PathBuf;

use feedvisor_transport_api::Transport;
use feedvisor_transport_api::{
    Compression, DeliveryMode, FeedOptions, Framing, OptionProblem, TlsOptions,
};
use url::Url;

use crate::TcpTransport;

/// A feed's settings, owned, for [`Feed::problems`].
#[derive(Default)]
struct Feed {
    header_names: Vec<&'static str>,
    subprotocols: Vec<String>,
    stream: bool,
    framing: Option<Framing>,
    ca_file: Option<&'static str>,
    protocol_pings: bool,
    compression: Option<Compression>,
}

impl Feed {
    /// What the TCP transport finds wrong with this feed at `url`.
    fn problems(&self, url: &str) -> Vec<OptionProblem> {
        let url = Url::parse(url).expect("test url");
        let tls = TlsOptions { ca_file: self.ca_file.map(PathBuf::from), ..TlsOptions::default() };
        let mode = if self.stream {
            DeliveryMode::Stream { chunk_size: 1024 }
        } else {
            DeliveryMode::Message
        };
        TcpTransport::new().check(&FeedOptions {
            url: &url,
            header_names: &self.header_names,
            subprotocols: &self.subprotocols,
            mode,
            framing: self.framing,
            tls: &tls,
            protocol_pings: self.protocol_pings,
            compression: self.compression,
        })
    }

    /// The fields of [`Feed::problems`].
    fn fields(&self, url: &str) -> Vec<String> {
        self.problems(url).into_iter().map(|problem| problem.field).collect()
    }
}

#[test]
fn a_host_and_a_port_with_framing_in_message_mode_pass() {
    let framed = Feed { framing: Some(Framing::LengthPrefixed), ..Feed::default() };
    assert_eq!(framed.problems("tcp://127.0.0.1:7000"), []);
    // The CA file is read and parsed at load.
    let certificates = feedvisor_test_support::TestCertificates::generate();
    let ca_file: &'static str = certificates.ca_file().display().to_string().leak();
    let secure = Feed { ca_file: Some(ca_file), ..Feed::default() };
    assert_eq!(secure.problems("tls://feed.example:7000/"), []);
}

#[test]
fn a_url_without_a_port_or_with_a_path_is_refused_as_at_connect() {
    let missing = Feed::default().problems("tcp://127.0.0.1");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].field, "url");
    assert!(missing[0].message.contains("needs a host and a port"), "{missing:?}");
    assert_eq!(Feed::default().fields("tls://h.example:7000/path"), ["url"]);
}

#[test]
fn handshake_options_protocol_pings_and_framing_in_stream_mode_are_refused() {
    let feed = Feed {
        header_names: vec!["Authorization"],
        subprotocols: vec!["v1".to_owned()],
        stream: true,
        framing: Some(Framing::Lines),
        protocol_pings: true,
        ca_file: None,
        compression: Some(Compression::Off),
    };
    assert_eq!(
        feed.fields("tcp://127.0.0.1:7000"),
        ["headers.Authorization", "subprotocols", "framing", "heartbeat", "compression"]
    );
}

#[test]
fn a_ca_file_is_for_tls_only() {
    let feed = Feed { ca_file: Some("ca.pem"), ..Feed::default() };
    assert_eq!(feed.fields("tcp://127.0.0.1:7000"), ["tls.ca_file"]);
}
