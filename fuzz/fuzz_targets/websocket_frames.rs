//! The WebSocket frame decoder, its size guard and reassembly: server bytes
//! read in pieces, decoded in message mode (frames checked against the limit
//! on their header, then gathered by the `MessageAssembler` as the
//! connection actor does) or in stream mode (pieces of `chunk_size`).
#![no_main]

use actix_codec::Decoder;
use bytes::BytesMut;
use feedvisor_transport_api::{DeliveryMode, Event, MessageAssembler};
use feedvisor_transport_websocket::codec::{FrameCodec, MAX_CONTROL_PAYLOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [mode, limit, read, bytes @ ..] = input else { return };
    let limit = usize::from(*limit) * 64;
    let stream = mode & 1 == 1;
    let delivery = if stream { DeliveryMode::Stream { chunk_size: limit } } else { DeliveryMode::Message };
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
                    assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Between reads the buffer holds the start of one frame at most:
        // a header (14 bytes), a control frame, or a data frame under the limit.
        assert!(src.len() <= 14 + limit.max(MAX_CONTROL_PAYLOAD) + piece.len());
    }
    let _ = codec.decode_eof(&mut src);
});
