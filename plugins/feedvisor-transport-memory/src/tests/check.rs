//! The memory transport's rules for a feed's URL and options.

use std::path::PathBuf;

use feedvisor_transport_api::{DeliveryMode, Framing, TlsOptions};

use crate::{FeedOptions, MemoryHub, MemoryTransport, Transport};

/// The fields `check` refuses for a feed at `url`, with or without framing and a CA file.
fn refused(url: &str, framing: Option<Framing>, ca_file: Option<&str>) -> Vec<String> {
    let url = url::Url::parse(url).expect("test url");
    let tls = TlsOptions { ca_file: ca_file.map(PathBuf::from), ..TlsOptions::default() };
    let feed = FeedOptions {
        url: &url,
        header_names: &["X-Test"],
        subprotocols: &[],
        mode: DeliveryMode::Message,
        framing,
        tls: &tls,
        protocol_pings: true,
        compression: None,
    };
    let transport = MemoryTransport::new(MemoryHub::new());
    transport.check(&feed).into_iter().map(|problem| problem.field).collect()
}

#[test]
fn a_named_listener_passes_and_framing_or_tls_are_refused() {
    assert_eq!(refused("memory://ticks", None, None), Vec::<String>::new());
    assert_eq!(refused("memory://", None, None), ["url"]);
    assert_eq!(
        refused("memory://ticks", Some(Framing::Lines), Some("ca.pem")),
        ["framing", "tls.ca_file"]
    );
}
