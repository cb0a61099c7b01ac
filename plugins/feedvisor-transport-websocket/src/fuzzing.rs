//! The entry point of the `websocket_frames` fuzz target in `fuzz/` and of
//! the replay of its regressions (`fuzz/regressions/websocket_frames/`, run
//! by `cargo test`). Hidden from the docs; not an API.

use actix_codec::Decoder;
use bytes::BytesMut;
use feedvisor_transport_api::{DeliveryMode, Event, MessageAssembler};

use crate::codec::{FrameCodec, MAX_CONTROL_PAYLOAD};

/// The largest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Server bytes read in pieces and decoded as the connection actor does:
/// in message mode frames are checked against the limit on their header,
/// then gathered by a [`MessageAssembler`]; in stream mode data leaves in
/// pieces of at most `chunk_size`. The input's first three bytes choose the
/// mode (low bit: stream), the limit (in units of 64 bytes) and the read size.
///
/// # Panics
/// When the decoder breaks one of its bounds: a piece over `chunk_size`, a
/// message over the limit, a control payload over 125 bytes, or more
/// buffered between reads than the start of one frame.
pub fn frames(input: &[u8]) {
    let [mode, limit, read, bytes @ ..] = input else { return };
    let limit = usize::from(*limit) * 64;
    let stream = mode & 1 == 1;
    let delivery =
        if stream { DeliveryMode::Stream { chunk_size: limit } } else { DeliveryMode::Message };
    let mut codec = FrameCodec::for_mode(delivery, limit);
    let mut assembler = MessageAssembler::new(limit);
    let mut src = BytesMut::new();
    for piece in bytes.chunks(usize::from(*read).max(1)) {
        src.extend_from_slice(piece);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(Event::Data(frame))) => {
                    if stream {
                        assert!(frame.payload.len() <= limit.max(1), "a piece over chunk_size");
                    } else if let Ok(Some(message)) = assembler.push(frame) {
                        assert!(message.payload.len() <= limit, "a message over the limit");
                    }
                }
                Ok(Some(Event::Ping(payload) | Event::Pong(payload))) => {
                    assert!(
                        payload.len() <= MAX_CONTROL_PAYLOAD,
                        "a control payload over 125 bytes"
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Between reads the buffer holds the start of one frame at most:
        // a header, a control frame, or a data frame under the limit.
        assert!(
            src.len() <= MAX_HEADER + limit.max(MAX_CONTROL_PAYLOAD) + piece.len(),
            "{} bytes buffered between reads under a limit of {limit}",
            src.len()
        );
    }
    let _ = codec.decode_eof(&mut src);
}
