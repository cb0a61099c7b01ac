//! The entry point of the `tcp_framing` fuzz target in `fuzz/` and of the
//! replay of its regressions (`fuzz/regressions/tcp_framing/`, run by
//! `cargo test`): the framing decoders on bytes read in pieces. Hidden from
//! the docs; not an API.

use bytes::BytesMut;
use feedvisor_transport_api::{DeliveryMode, Framing};

use crate::framing::{Decoder, Wire};

/// The fuzz input: its first four bytes choose the framing, the limit and
/// the chunk size (each in units of 16 bytes) and the read size; the rest
/// is what the peer sends.
pub fn framing(input: &[u8]) {
    let [format, limit, chunk, read, bytes @ ..] = input else { return };
    let (limit, chunk) = (usize::from(*limit) * 16, usize::from(*chunk) * 16);
    decode(*format, limit, chunk, usize::from(*read), bytes);
}

/// Decodes `bytes` as read in pieces of `read` bytes (at least 1) with the
/// framing `format` picks (0: lines, 1: length-prefixed, else stream mode
/// with `chunk_size`), then finishes as at the peer's close.
pub fn decode(format: u8, max_frame_size: usize, chunk_size: usize, read: usize, bytes: &[u8]) {
    let (mode, framing) = match format % 3 {
        0 => (DeliveryMode::Message, Framing::Lines),
        1 => (DeliveryMode::Message, Framing::LengthPrefixed),
        _ => (DeliveryMode::Stream { chunk_size }, Framing::Lines),
    };
    let mut decoder = Decoder::new(Wire::new(mode, framing), max_frame_size);
    let mut buffer = BytesMut::new();
    for piece in bytes.chunks(read.max(1)) {
        let room = decoder.read_size(buffer.len());
        assert!(room >= 1, "a read of no bytes");
        buffer.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let _ = decoder.flush(&mut buffer);
    }
    let _ = decoder.finish(&mut buffer);
}
