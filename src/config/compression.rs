//! A feed's compression settings: permessage-deflate on WebSocket feeds
//! (`compression = "deflate" | "off"` and the four RFC 7692 parameters,
//! which the WebSocket transport's `check` judges further), and
//! `decode = "gzip" | "zlib" | "deflate-raw"`, payloads inflated on the
//! connection side whatever the transport.

use super::raw::{RawCompression, RawDecode, RawFeed};
use super::scope::Scope;
use feedvisor_transport_api::{Compression, DeflateParams};

/// How each binary message's payload is encoded: inflated before topics are
/// read and before anything is delivered (`decode = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadDecoding {
    /// A gzip member (RFC 1952).
    Gzip,
    /// A zlib stream (RFC 1950).
    Zlib,
    /// Bare deflate blocks (RFC 1951), with a 32 KiB window.
    DeflateRaw,
}

impl PayloadDecoding {
    /// The name in the config.
    pub fn name(self) -> &'static str {
        match self {
            PayloadDecoding::Gzip => "gzip",
            PayloadDecoding::Zlib => "zlib",
            PayloadDecoding::DeflateRaw => "deflate-raw",
        }
    }
}

/// The feed's permessage-deflate settings, or `None` when it sets none of
/// them (the transport's default then applies).
pub(super) fn compression(raw: &RawFeed, scope: &mut Scope<'_>) -> Option<Compression> {
    let params = DeflateParams {
        client_max_window_bits: raw.client_max_window_bits,
        server_max_window_bits: raw.server_max_window_bits,
        client_no_context_takeover: raw.client_no_context_takeover.unwrap_or(false),
        server_no_context_takeover: raw.server_no_context_takeover.unwrap_or(false),
    };
    let parameters = [
        ("client_max_window_bits", raw.client_max_window_bits.is_some()),
        ("server_max_window_bits", raw.server_max_window_bits.is_some()),
        ("client_no_context_takeover", raw.client_no_context_takeover.is_some()),
        ("server_no_context_takeover", raw.server_no_context_takeover.is_some()),
    ];
    match raw.compression {
        Some(RawCompression::Off) => {
            for (field, set) in parameters {
                if set {
                    scope.error(
                        field,
                        "has no effect with compression = \"off\": remove one of them",
                    );
                }
            }
            Some(Compression::Off)
        }
        Some(RawCompression::Deflate) => Some(Compression::Deflate(params)),
        None if parameters.iter().any(|(_, set)| *set) => Some(Compression::Deflate(params)),
        None => None,
    }
}

/// The feed's payload decoding; stream mode has no whole payload to decode.
pub(super) fn decode(
    raw: &RawFeed,
    stream: bool,
    scope: &mut Scope<'_>,
) -> Option<PayloadDecoding> {
    if stream && raw.decode.is_some() {
        scope.error(
            "decode",
            "needs mode = \"message\": stream mode delivers pieces, not whole payloads to inflate",
        );
    }
    raw.decode.map(|decode| match decode {
        RawDecode::Gzip => PayloadDecoding::Gzip,
        RawDecode::Zlib => PayloadDecoding::Zlib,
        RawDecode::DeflateRaw => PayloadDecoding::DeflateRaw,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use feedvisor_transport_api::{Compression, DeflateParams};

    use crate::config::{Config, PayloadDecoding};
    use crate::transports::TransportRegistry;

    fn load(feed: &str) -> Result<Config, Vec<String>> {
        let text = format!("[[feeds]]\nname = \"f\"\n{feed}\n");
        Config::from_toml_str(&text, Path::new("test.toml"), &TransportRegistry::with_defaults())
            .map_err(|error| error.errors.iter().map(ToString::to_string).collect())
    }

    fn errors(feed: &str) -> String {
        load(feed).expect_err("refused").join("\n")
    }

    #[test]
    fn unset_compression_is_left_to_the_transport_and_parameters_imply_deflate() {
        let plain = load("url = \"ws://h/\"").expect("valid");
        assert_eq!(plain.feeds[0].compression, None);
        let window = load("url = \"ws://h/\"\nserver_max_window_bits = 9").expect("valid");
        assert_eq!(
            window.feeds[0].compression,
            Some(Compression::Deflate(DeflateParams {
                server_max_window_bits: Some(9),
                ..DeflateParams::default()
            }))
        );
        let off = load("url = \"wss://h/\"\ncompression = \"off\"").expect("valid");
        assert_eq!(off.feeds[0].compression, Some(Compression::Off));
    }

    #[test]
    fn parameters_with_compression_off_are_refused_by_name() {
        let error = errors(
            "url = \"ws://h/\"\ncompression = \"off\"\nclient_no_context_takeover = true\nserver_max_window_bits = 10",
        );
        assert!(error.contains("feeds[0] (f).client_no_context_takeover"), "{error}");
        assert!(error.contains("feeds[0] (f).server_max_window_bits"), "{error}");
        assert!(error.contains("compression = \"off\""), "{error}");
    }

    #[test]
    fn window_sizes_out_of_range_are_refused_by_the_websocket_transport() {
        let error =
            errors("url = \"ws://h/\"\nclient_max_window_bits = 8\nserver_max_window_bits = 16");
        assert!(error.contains("client_max_window_bits: must be from 9 to 15"), "{error}");
        assert!(error.contains("server_max_window_bits: must be from 8 to 15"), "{error}");
        assert!(load("url = \"ws://h/\"\nserver_max_window_bits = 8").is_ok());
        let huge = errors("url = \"ws://h/\"\nserver_max_window_bits = 300");
        assert!(huge.contains("server_max_window_bits"), "{huge}");
        assert!(errors("url = \"ws://h/\"\ncompression = \"gzip\"").contains("compression"));
    }

    #[test]
    fn tcp_feeds_refuse_compression_but_decode() {
        let error = errors("url = \"tcp://127.0.0.1:7000\"\ncompression = \"deflate\"");
        assert!(error.contains("compression") && error.contains("decode"), "{error}");
        let decoded =
            load("url = \"tcp://127.0.0.1:7000\"\ndecode = \"deflate-raw\"").expect("valid");
        assert_eq!(decoded.feeds[0].decode, Some(PayloadDecoding::DeflateRaw));
    }

    #[test]
    fn decode_needs_message_mode_and_a_known_encoding() {
        let error = errors("url = \"ws://h/\"\nmode = \"stream\"\ndecode = \"gzip\"");
        assert!(error.contains("decode: needs mode = \"message\""), "{error}");
        assert!(errors("url = \"ws://h/\"\ndecode = \"brotli\"").contains("decode"));
    }

    #[test]
    fn shown_settings_load_back_the_same() {
        let feed = "url = \"ws://h/\"\nserver_max_window_bits = 10\nclient_no_context_takeover = true\ndecode = \"zlib\"";
        let config = load(feed).expect("valid");
        let shown = serde_json::to_value(&config.feeds[0]).expect("serializes");
        let reparsed = crate::config::parse_feed_json(
            shown,
            &config.defaults,
            Path::new("."),
            &|_| None,
            &TransportRegistry::with_defaults(),
        )
        .expect("what is shown loads");
        assert_eq!(reparsed.compression, config.feeds[0].compression);
        assert_eq!(reparsed.decode, config.feeds[0].decode);
    }
}
