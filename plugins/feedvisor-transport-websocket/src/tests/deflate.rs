//! permessage-deflate against hand-written peers: what is offered, answers
//! that fail the handshake, compressed frames in and out, and frames that
//! break RFC 7692 (RSV1 where it may not be, corrupt data, bombs).

use bytes::Bytes;
use feedvisor_test_support::connection::{read_events, read_to_end};
use feedvisor_transport_api::{
    close_code, Compression, Connection, DataFrame, DeflateParams, DeliveryMode, Event,
    InflateFailure, Opcode, Outbound, Transport, TransportError,
};
use flate2::{Compress, FlushCompress};

use super::*;
use crate::WebSocketTransport;

/// The tail a sender strips from each compressed message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A server-side compressor: raw deflate, sync-flushed per call.
struct Deflater(Compress);

impl Deflater {
    fn new(window_bits: u8) -> Self {
        Deflater(Compress::new_with_window_bits(flate2::Compression::default(), false, window_bits))
    }

    /// `data` compressed and sync-flushed, its tail kept.
    fn flushed(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut position = 0;
        loop {
            out.reserve(out.capacity().max(1024));
            let before = self.0.total_in();
            self.0
                .compress_vec(&data[position..], &mut out, FlushCompress::Sync)
                .expect("in memory");
            position += (self.0.total_in() - before) as usize;
            if position == data.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// One whole compressed message, as a sender puts it in frames.
    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = self.flushed(data);
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }
}

/// Connects `request` to a raw peer answering `answer` (header lines, each
/// ending in CRLF) and then writing `then`; returns both ends and the request head.
async fn open_deflate(
    request: ConnectRequest,
    answer: &str,
    then: &[u8],
) -> (RawWs, Result<Connection, TransportError>, String) {
    let (listener, _) = listen().await;
    let mut request = request;
    request.url = Url::parse(&format!("ws://{}/feed", listener.local_addr().expect("bound")))
        .expect("test url");
    let server = accept_upgrade(&listener, answer, then);
    let client = WebSocketTransport::new().connect(request);
    let ((stream, head), connection) = tokio::join!(server, client);
    (stream, connection, head)
}

const ACCEPT: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

fn base() -> ConnectRequest {
    request("ws://127.0.0.1:1/feed")
}

#[actix_rt::test]
async fn deflate_is_offered_by_default_with_the_parameters_set_and_not_when_off() {
    within(async {
        let (_s, connection, head) = open_deflate(base(), "", b"").await;
        connection.expect("an unanswered offer runs uncompressed");
        assert_eq!(
            header_value(&head, "sec-websocket-extensions"),
            Some("permessage-deflate; client_max_window_bits")
        );
        let mut limited = base();
        limited.compression = Compression::Deflate(DeflateParams {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(9),
            client_no_context_takeover: true,
            server_no_context_takeover: true,
        });
        let (_s, _connection, head) = open_deflate(limited, "", b"").await;
        assert_eq!(
            header_value(&head, "sec-websocket-extensions"),
            Some(
                "permessage-deflate; client_max_window_bits=10; server_max_window_bits=9; \
                 client_no_context_takeover; server_no_context_takeover"
            )
        );
        let mut off = base();
        off.compression = Compression::Off;
        let (_s, _connection, head) = open_deflate(off, "", b"").await;
        assert_eq!(header_value(&head, "sec-websocket-extensions"), None);
    })
    .await;
}

#[actix_rt::test]
async fn an_answer_beyond_the_offer_fails_the_handshake() {
    let mut off = base();
    off.compression = Compression::Off;
    let cases = [
        (base(), "Sec-WebSocket-Extensions: permessage-deflate; mystery=1\r\n", "mystery"),
        (
            base(),
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n",
            "8 to 15",
        ),
        (base(), "Sec-WebSocket-Extensions: x-unknown-extension\r\n", "not offered"),
        (off, ACCEPT, "not offered"),
    ];
    for (request, answer, expected) in cases {
        let error = within(async {
            let (_s, connection, _) = open_deflate(request, answer, b"").await;
            connection.err().expect("the handshake fails")
        })
        .await;
        assert!(
            matches!(&error, TransportError::Handshake(message) if message.contains(expected)),
            "{answer:?}: {error:?}"
        );
    }
}

#[actix_rt::test]
async fn compressed_messages_are_inflated_with_context_takeover_and_fragments() {
    let mut deflater = Deflater::new(15);
    let first = br#"{"symbol":"AAPL","price":189.9,"note":"the same words again"}"#;
    let second = br#"{"symbol":"AAPL","price":190.1,"note":"the same words again"}"#;
    let mut frames = encode_frame(0xC1, &deflater.message(first));
    // The second refers back into the first (context takeover), split over three frames.
    let compressed = deflater.message(second);
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    frames.extend(encode_frame(0x41, a));
    frames.extend(encode_frame(0x00, b));
    frames.extend(encode_frame(0x80, c));
    // An uncompressed message between compressed ones is fine too.
    frames.extend(encode_frame(0x82, b"plain"));
    let request = base();
    let counts = request.compressed.clone();
    within(async {
        let (_s, connection, _) = open_deflate(request, ACCEPT, &frames).await;
        let mut connection = connection.expect("connected");
        let (events, _) = read_events(&mut connection, 5).await;
        let data: Vec<DataFrame> = events
            .into_iter()
            .filter_map(|event| match event {
                Event::Data(frame) => Some(frame),
                _ => None,
            })
            .collect();
        assert_eq!(data[0], DataFrame::text(&first[..]));
        let mut second_message = Vec::new();
        for frame in &data[1..data.len() - 1] {
            second_message.extend_from_slice(&frame.payload);
        }
        assert_eq!(data[1].opcode, Opcode::Text);
        assert!(data[data.len() - 2].fin);
        assert_eq!(second_message, second);
        assert_eq!(data[data.len() - 1], DataFrame::binary(&b"plain"[..]));
        let (wire, inflated) = counts.take();
        assert_eq!(inflated, (first.len() + second.len()) as u64);
        assert_eq!(wire, (frames.len() - 4 * 2 - (2 + 5)) as u64, "compressed payload bytes");
    })
    .await;
}

#[actix_rt::test]
async fn rsv1_where_rfc_7692_forbids_it_closes_with_1002() {
    let mut deflater = Deflater::new(15);
    let compressed = deflater.message(b"hello");
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not negotiated", "", encode_frame(0xC1, &compressed)),
        ("on a ping", ACCEPT, encode_frame(0xC9, b"ping")),
        ("on a continuation", ACCEPT, {
            let mut frames = encode_frame(0x01, b"hel");
            frames.extend(encode_frame(0xC0, b"lo"));
            frames
        }),
        ("rsv2", ACCEPT, encode_frame(0xA1, b"x")),
    ];
    for (what, answer, frames) in cases {
        within(async {
            let (mut stream, connection, _) = open_deflate(base(), answer, &frames).await;
            let mut connection = connection.expect("connected");
            let (_, error) = read_to_end(&mut connection).await;
            let error = error.expect("a protocol error");
            assert_eq!(error.close_code(), Some(close_code::PROTOCOL_ERROR), "{what}: {error:?}");
            assert_eq!(
                read_client_close_code(&mut stream).await,
                Some(close_code::PROTOCOL_ERROR),
                "{what}"
            );
        })
        .await;
    }
}

#[actix_rt::test]
async fn a_corrupt_stream_closes_with_1007_and_is_told_apart() {
    within(async {
        let frames = encode_frame(0xC2, &[0xff; 32]);
        let (mut stream, connection, _) = open_deflate(base(), ACCEPT, &frames).await;
        let mut connection = connection.expect("connected");
        let (_, error) = read_to_end(&mut connection).await;
        assert!(
            matches!(error, Some(TransportError::Inflate { failure: InflateFailure::Corrupt, .. })),
            "{error:?}"
        );
        assert_eq!(read_client_close_code(&mut stream).await, Some(close_code::INVALID_PAYLOAD));
    })
    .await;
}

/// A compressed message that inflates to `mebibytes` MiB of zeros, cheaply:
/// every further MiB of zeros after a sync flush compresses to the same bytes.
fn zeros_bomb(mebibytes: usize) -> Vec<u8> {
    let mut deflater = Deflater::new(15);
    let zeros = vec![0u8; 1 << 20];
    let mut message = deflater.flushed(&zeros);
    let repeat = deflater.flushed(&zeros);
    assert_eq!(deflater.flushed(&zeros), repeat, "a MiB of zeros compresses the same each time");
    for _ in 1..mebibytes {
        message.extend_from_slice(&repeat);
    }
    message.truncate(message.len() - TAIL.len());
    message
}

#[actix_rt::test]
async fn a_message_inflating_to_1_gib_is_refused_at_the_limit_with_1009() {
    let bomb = zeros_bomb(1024);
    // Sent as 1 KiB frames: the first would already inflate past the 1 MiB limit.
    let mut frames = Vec::new();
    let pieces: Vec<&[u8]> = bomb.chunks(1024).collect();
    for (index, piece) in pieces.iter().enumerate() {
        let first = index == 0;
        let last = index == pieces.len() - 1;
        let byte = if last { 0x80 } else { 0 } | if first { 0x42 } else { 0x00 };
        frames.extend(encode_frame(byte, piece));
    }
    assert!(bomb.len() < 1100 << 10, "1 GiB of zeros in {} compressed bytes", bomb.len());
    let mut request = base();
    request.max_frame_size = 1 << 20;
    let counts = request.compressed.clone();
    within(async {
        let (mut stream, connection, _) = open_deflate(request, ACCEPT, &frames[..64 << 10]).await;
        let mut connection = connection.expect("connected");
        let (events, error) = read_to_end(&mut connection).await;
        let handed_over: usize = events
            .iter()
            .map(|event| match event {
                Event::Data(frame) => frame.payload.len(),
                _ => 0,
            })
            .sum();
        assert!(handed_over <= 1 << 20, "{handed_over} bytes handed over for a 1 MiB limit");
        assert!(
            matches!(
                error,
                Some(TransportError::Inflate { failure: InflateFailure::TooLarge, .. })
            ),
            "{error:?}"
        );
        assert_eq!(read_client_close_code(&mut stream).await, Some(close_code::MESSAGE_TOO_BIG));
    })
    .await;
    let (_, inflated) = counts.take();
    assert!(inflated <= (1 << 20) + 1, "{inflated} bytes inflated for a 1 MiB limit");
}

#[actix_rt::test]
async fn stream_mode_hands_a_bomb_over_in_pieces_of_at_most_chunk_size() {
    let bomb = zeros_bomb(8);
    let frames = encode_frame(0xC2, &bomb);
    let mut request = base();
    request.mode = DeliveryMode::Stream { chunk_size: 16 << 10 };
    within(async {
        let (_s, connection, _) = open_deflate(request, ACCEPT, &frames).await;
        let mut connection = connection.expect("connected");
        let mut total = 0usize;
        loop {
            let (events, _) = read_events(&mut connection, 1).await;
            for event in events {
                let Event::Data(frame) = event else { continue };
                assert!(frame.payload.len() <= 16 << 10, "a piece of {}", frame.payload.len());
                assert!(frame.payload.iter().all(|byte| *byte == 0));
                total += frame.payload.len();
                if frame.fin {
                    assert_eq!(total, 8 << 20);
                    return;
                }
            }
        }
    })
    .await;
}

/// Reads one client frame off the socket by hand: its first byte (with the
/// reserved bits, which `RawFrame` does not keep) and its unmasked payload.
async fn read_raw_frame(stream: &mut RawWs) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    stream.socket.read_exact(&mut head).await.expect("a frame header");
    let len = match head[1] & 0x7F {
        126 => {
            let mut bytes = [0u8; 2];
            stream.socket.read_exact(&mut bytes).await.expect("a length");
            usize::from(u16::from_be_bytes(bytes))
        }
        127 => panic!("no test frame is that long"),
        len => usize::from(len),
    };
    let mut mask = [0u8; 4];
    stream.socket.read_exact(&mut mask).await.expect("a mask");
    let mut payload = vec![0u8; len];
    stream.socket.read_exact(&mut payload).await.expect("a payload");
    for (index, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
    (head[0], payload)
}

#[actix_rt::test]
async fn what_we_send_is_compressed_and_control_frames_are_not() {
    within(async {
        let answer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";
        let (mut stream, connection, _) = open_deflate(base(), answer, b"").await;
        let Connection { mut inbound, outbound, .. } = connection.expect("connected");
        // The session writes while its reader is polled, as the connection actor does.
        let reader = actix_rt::spawn(async move {
            use futures_util::StreamExt;
            while inbound.next().await.is_some() {}
        });
        let text = r#"{"op":"subscribe","symbols":["AAPL","AAPL","AAPL","AAPL"]}"#;
        for _ in 0..2 {
            outbound.send(Outbound::text(text)).expect("open");
            let (first_byte, payload) = read_raw_frame(&mut stream).await;
            assert_eq!(first_byte, 0xC1, "FIN, RSV1, text");
            assert!(payload.len() < text.len());
            // No context takeover: each message inflates on its own, from a fresh
            // inflater (closed with an empty final block, 03 00).
            let input = [payload.as_slice(), &TAIL, &[0x03, 0x00]].concat();
            let inflated = feedvisor_transport_kit::inflate_whole(
                feedvisor_transport_kit::InflateFormat::Raw { window_bits: 15 },
                &input,
                1 << 20,
            )
            .expect("a valid deflate stream");
            assert_eq!(inflated, text.as_bytes());
        }
        outbound.send(Outbound::Ping(Bytes::from_static(b"p"))).expect("open");
        assert_eq!(read_raw_frame(&mut stream).await, (0x89, b"p".to_vec()));
        reader.abort();
    })
    .await;
}

#[actix_rt::test]
async fn a_message_sent_in_pieces_is_one_compressed_message() {
    within(async {
        let (mut stream, connection, _) = open_deflate(base(), ACCEPT, b"").await;
        let Connection { mut inbound, outbound, .. } = connection.expect("connected");
        let reader = actix_rt::spawn(async move {
            use futures_util::StreamExt;
            while inbound.next().await.is_some() {}
        });
        let pieces = [b"first piece, ".repeat(50), b"second piece, ".repeat(50), b"end".to_vec()];
        for (index, piece) in pieces.iter().enumerate() {
            let opcode = if index == 0 { Opcode::Binary } else { Opcode::Continuation };
            let fin = index == pieces.len() - 1;
            let frame = DataFrame { opcode, fin, payload: Bytes::from(piece.clone()) };
            outbound.send(Outbound::Fragment(frame)).expect("open");
        }
        let mut compressed = Vec::new();
        for index in 0..pieces.len() {
            let (first_byte, payload) = read_raw_frame(&mut stream).await;
            let expected = match index {
                0 => 0x42, // RSV1, binary, not final
                2 => 0x80, // final continuation, no RSV1
                _ => 0x00,
            };
            assert_eq!(first_byte, expected, "frame {index}");
            compressed.extend(payload);
        }
        let input = [compressed.as_slice(), &TAIL, &[0x03, 0x00]].concat();
        let inflated = feedvisor_transport_kit::inflate_whole(
            feedvisor_transport_kit::InflateFormat::Raw { window_bits: 15 },
            &input,
            1 << 20,
        )
        .expect("one valid deflate stream");
        assert_eq!(inflated, pieces.concat());
        reader.abort();
    })
    .await;
}

#[actix_rt::test]
async fn inflated_text_split_inside_a_character_is_still_valid_utf8() {
    let text = "héllo wörld ✓ ".repeat(200);
    let mut deflater = Deflater::new(15);
    let frames = encode_frame(0xC1, &deflater.message(text.as_bytes()));
    let mut request = base();
    // Pieces of 5 bytes cut most of the two- and three-byte characters in two.
    request.mode = DeliveryMode::Stream { chunk_size: 5 };
    within(async {
        let (_s, connection, _) = open_deflate(request, ACCEPT, &frames).await;
        let mut connection = connection.expect("connected");
        let mut received = Vec::new();
        loop {
            let (events, _) = read_events(&mut connection, 1).await;
            for event in events {
                let Event::Data(frame) = event else { continue };
                assert!(frame.payload.len() <= 5);
                received.extend_from_slice(&frame.payload);
                if frame.fin {
                    assert_eq!(String::from_utf8(received).expect("UTF-8"), text);
                    return;
                }
            }
        }
    })
    .await;
}
