//! The decoder and encoder on byte strings, split at every position.

use bytes::{BufMut, Bytes};

use super::*;

const LIMIT: usize = 64;

/// Feeds `pieces` one after the other into a fresh decoder, decoding after
/// each, as the session does after each read; returns the events and the
/// first error.
fn decode_pieces(wire: Wire, pieces: &[&[u8]]) -> (Vec<Event>, Option<TransportError>) {
    let mut decoder = Decoder::new(wire, LIMIT);
    let mut buffer = BytesMut::new();
    let mut events = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (events, Some(error)),
            }
        }
    }
    (events, None)
}

/// Decodes `bytes` whole, split in two at every position, and byte by byte;
/// checks all give the same events and no error, and returns them.
fn decode_every_split(wire: Wire, bytes: &[u8]) -> Vec<Event> {
    let (whole, error) = decode_pieces(wire, &[bytes]);
    assert_eq!(error, None);
    for split in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(split);
        assert_eq!(decode_pieces(wire, &[head, tail]), (whole.clone(), None), "split at {split}");
    }
    let bytes_one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_pieces(wire, &bytes_one_by_one), (whole.clone(), None), "byte by byte");
    whole
}

fn text(payload: &str) -> Event {
    Event::Data(DataFrame::text(Bytes::copy_from_slice(payload.as_bytes())))
}

fn binary(payload: &[u8]) -> Event {
    Event::Data(DataFrame::binary(Bytes::copy_from_slice(payload)))
}

fn prefixed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn lines_split_anywhere_decode_the_same() {
    let events = decode_every_split(Wire::Lines, "first\r\nsecond\nthird é\r\n\n".as_bytes());
    assert_eq!(events, vec![text("first"), text("second"), text("third é"), text("")]);
}

#[test]
fn only_one_carriage_return_right_before_the_newline_is_dropped() {
    let events = decode_every_split(Wire::Lines, b"a\r\r\nb\rc\n\r\n\rd\n");
    assert_eq!(events, vec![text("a\r"), text("b\rc"), text(""), text("\rd")]);
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted_with_or_without_a_carriage_return() {
    let line = "x".repeat(LIMIT);
    let bytes = format!("{line}\n{line}\r\n");
    assert_eq!(decode_every_split(Wire::Lines, bytes.as_bytes()), vec![text(&line), text(&line)]);
}

#[test]
fn a_whole_line_over_the_limit_is_refused() {
    let bytes = format!("{}\n", "x".repeat(LIMIT + 1));
    let (events, error) = decode_pieces(Wire::Lines, &[bytes.as_bytes()]);
    assert!(events.is_empty());
    assert_eq!(error, Some(TransportError::FrameTooLarge { announced: 65, limit: LIMIT }));
}

#[test]
fn an_endless_line_is_refused_once_it_passes_the_limit_and_its_carriage_return() {
    let mut decoder = Decoder::new(Wire::Lines, LIMIT);
    let mut buffer = BytesMut::new();
    for _ in 0..=LIMIT {
        buffer.put_u8(b'x');
        assert_eq!(decoder.decode(&mut buffer), Ok(None), "at {} bytes", buffer.len());
    }
    buffer.put_u8(b'x');
    assert_eq!(
        decoder.decode(&mut buffer),
        Err(TransportError::FrameTooLarge { announced: LIMIT as u64 + 2, limit: LIMIT })
    );
}

#[test]
fn a_line_that_is_not_utf8_is_a_protocol_error_with_close_code_1007() {
    let (events, error) = decode_pieces(Wire::Lines, &[b"fine\nno\xC3\x28\nnever\n"]);
    assert_eq!(events, vec![text("fine")]);
    match error {
        Some(TransportError::Protocol { close_code: 1007, reason }) => {
            assert!(reason.contains("UTF-8"), "{reason}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn length_prefixed_messages_split_anywhere_decode_the_same() {
    let bytes = [prefixed(b"one"), prefixed(b""), prefixed(&[0, b'\n', 0xFF]), prefixed(b"x")];
    let events = decode_every_split(Wire::LengthPrefixed, &bytes.concat());
    assert_eq!(events, vec![binary(b"one"), binary(b""), binary(&[0, b'\n', 0xFF]), binary(b"x")]);
}

#[test]
fn a_length_prefix_over_the_limit_is_refused_from_the_prefix_alone() {
    for announced in [LIMIT as u32 + 1, 256 << 20, u32::MAX] {
        let (events, error) = decode_pieces(Wire::LengthPrefixed, &[&announced.to_be_bytes()]);
        assert!(events.is_empty());
        assert_eq!(
            error,
            Some(TransportError::FrameTooLarge { announced: u64::from(announced), limit: LIMIT })
        );
    }
    let at_limit = prefixed(&[7; LIMIT]);
    assert_eq!(decode_every_split(Wire::LengthPrefixed, &at_limit), vec![binary(&[7; LIMIT])]);
}

#[test]
fn a_long_length_prefixed_message_is_read_in_reads_as_long_as_it_needs() {
    let mut decoder = Decoder::new(Wire::LengthPrefixed, 1 << 20);
    let mut buffer = BytesMut::from(&(1u32 << 20).to_be_bytes()[..]);
    assert_eq!(decoder.read_size(buffer.len()), READ_SIZE, "nothing announced yet");
    assert_eq!(decoder.decode(&mut buffer), Ok(None));
    assert_eq!(decoder.read_size(buffer.len()), 1 << 20);
    buffer.extend_from_slice(&vec![1; 1 << 20]);
    assert!(matches!(decoder.decode(&mut buffer), Ok(Some(_))));
    assert_eq!(decoder.read_size(buffer.len()), READ_SIZE, "back to the usual read size");
}

#[test]
fn stream_mode_cuts_pieces_of_the_chunk_size_and_ends_with_fin_and_close() {
    let wire = Wire::Raw { chunk_size: 4 };
    let mut decoder = Decoder::new(wire, LIMIT);
    assert_eq!(decoder.read_size(0), 4);
    assert_eq!(decoder.read_size(3), 1);
    let mut buffer = BytesMut::from(&b"abcdefghij"[..]);
    let mut events = Vec::new();
    while let Some(event) = decoder.decode(&mut buffer).expect("no error") {
        events.push(event);
    }
    events.extend(decoder.flush(&mut buffer));
    assert_eq!(decoder.flush(&mut buffer), None, "nothing left to flush");
    events.extend(decoder.finish(&mut buffer).expect("a clean end"));
    let piece = |opcode, fin, payload: &'static [u8]| {
        Event::Data(DataFrame { opcode, fin, payload: Bytes::from_static(payload) })
    };
    assert_eq!(
        events,
        vec![
            piece(Opcode::Binary, false, b"abcd"),
            piece(Opcode::Continuation, false, b"efgh"),
            piece(Opcode::Continuation, false, b"ij"),
            piece(Opcode::Continuation, true, b""),
            Event::Close(None),
        ]
    );
}

#[test]
fn stream_mode_with_nothing_received_is_one_empty_binary_message() {
    let mut decoder = Decoder::new(Wire::Raw { chunk_size: 4 }, LIMIT);
    let events = decoder.finish(&mut BytesMut::new()).expect("a clean end");
    assert_eq!(events, vec![Event::Data(DataFrame::binary(Bytes::new())), Event::Close(None)]);
}

#[test]
fn in_message_mode_the_peers_close_is_an_io_error_that_drops_an_unfinished_message() {
    for wire in [Wire::Lines, Wire::LengthPrefixed] {
        let mut decoder = Decoder::new(wire, LIMIT);
        let error = decoder.finish(&mut BytesMut::new()).expect_err("an error");
        assert_eq!(error, TransportError::Io("connection closed by peer".to_owned()));
        let mut buffer = BytesMut::from(&b"\0\0\0\x09unfin"[..]);
        assert_eq!(decoder.decode(&mut buffer), Ok(None));
        let error = decoder.finish(&mut buffer).expect_err("an error");
        assert_eq!(
            error,
            TransportError::Io(
                "connection closed by peer; an unfinished message of 9 bytes was dropped"
                    .to_owned()
            )
        );
        assert!(buffer.is_empty());
    }
}

#[test]
fn stream_mode_ignores_the_framing_and_a_zero_chunk_size_becomes_one() {
    let stream = DeliveryMode::Stream { chunk_size: 0 };
    assert_eq!(Wire::new(stream, Framing::LengthPrefixed), Wire::Raw { chunk_size: 1 });
    assert_eq!(Wire::new(DeliveryMode::Message, Framing::Lines), Wire::Lines);
    assert_eq!(Wire::new(DeliveryMode::Message, Framing::LengthPrefixed), Wire::LengthPrefixed);
}
