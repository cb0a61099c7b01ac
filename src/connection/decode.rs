//! `decode = "gzip" | "zlib" | "deflate-raw"`: a binary message's payload
//! inflated before anything else looks at it (topic, sequence, heartbeat
//! reply, subscribers), whatever the transport.
//!
//! The inflated size is held to `max_message_size` while inflating (the
//! kit's [`inflate_whole`] never reserves more than the limit and one byte),
//! so a payload of a few KiB that would inflate to gigabytes costs at most
//! the limit. The result is text when it is valid UTF-8, binary otherwise.
//! Text messages are passed through: a compressed payload is never text.

use bytes::Bytes;
use feedvisor_transport_api::{DataKind, Message};
use feedvisor_transport_kit::{inflate_whole, InflateError, InflateFormat};

use crate::config::PayloadDecoding;

/// The message with its payload inflated from `decoding`, or why it could not be.
pub(super) fn decode(
    decoding: PayloadDecoding,
    message: Message,
    limit: usize,
) -> Result<Message, InflateError> {
    if message.kind == DataKind::Text {
        return Ok(message);
    }
    let format = match decoding {
        PayloadDecoding::Gzip => InflateFormat::Gzip,
        PayloadDecoding::Zlib => InflateFormat::Zlib,
        PayloadDecoding::DeflateRaw => InflateFormat::Raw { window_bits: 15 },
    };
    let inflated = inflate_whole(format, &message.payload, limit)?;
    let kind = match std::str::from_utf8(&inflated) {
        Ok(_) => DataKind::Text,
        Err(_) => DataKind::Binary,
    };
    Ok(Message { kind, payload: Bytes::from(inflated) })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use feedvisor_transport_api::InflateFailure;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    fn binary(payload: Vec<u8>) -> Message {
        Message { kind: DataKind::Binary, payload: Bytes::from(payload) }
    }

    #[test]
    fn each_encoding_inflates_and_utf8_becomes_text() {
        let text = br#"{"symbol":"AAPL","price":189.9}"#;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(text).expect("in memory");
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(text).expect("in memory");
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(text).expect("in memory");
        for (decoding, compressed) in [
            (PayloadDecoding::Gzip, gzip.finish().expect("in memory")),
            (PayloadDecoding::Zlib, zlib.finish().expect("in memory")),
            (PayloadDecoding::DeflateRaw, raw.finish().expect("in memory")),
        ] {
            let decoded = decode(decoding, binary(compressed), 1024).expect("valid");
            assert_eq!(
                decoded,
                Message { kind: DataKind::Text, payload: Bytes::from_static(text) }
            );
        }
    }

    #[test]
    fn binary_results_stay_binary_and_text_messages_pass_through() {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&[0xff, 0xfe, 0x00]).expect("in memory");
        let decoded = decode(PayloadDecoding::Gzip, binary(gzip.finish().expect("gz")), 16);
        assert_eq!(decoded.map(|m| m.kind), Ok(DataKind::Binary));
        let text = Message { kind: DataKind::Text, payload: Bytes::from_static(b"plain") };
        assert_eq!(decode(PayloadDecoding::Gzip, text.clone(), 16), Ok(text));
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
        gzip.write_all(&vec![b'a'; 8 << 20]).expect("in memory");
        let bomb = gzip.finish().expect("in memory");
        let error = decode(PayloadDecoding::Gzip, binary(bomb), 1 << 20).expect_err("bomb");
        assert_eq!(error.failure, InflateFailure::TooLarge);
    }
}
