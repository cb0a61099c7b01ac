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
