//! Stream-mode decoding against raw frame bytes: pieces, bounded buffering,
//! UTF-8 across pieces and control frames between frames; no network.

use feedvisor_test_support::websocket::{encode_frame, frame_header};

use super::*;

/// A data piece as `(opcode, fin, payload)`, for comparisons.
fn piece(opcode: Opcode, fin: bool, payload: &[u8]) -> Event {
    Event::Data(DataFrame { opcode, fin, payload: Bytes::copy_from_slice(payload) })
}

/// Decodes everything in `bytes` at once; the buffer must end empty.
fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Event>, TransportError> {
    let mut src = BytesMut::from(bytes);
    let mut events = Vec::new();
    while let Some(event) = codec.decode(&mut src)? {
        events.push(event);
    }
    assert!(src.is_empty(), "left over: {src:?}");
    Ok(events)
}

/// Feeds `bytes` in slices of `slice` bytes, decoding after each one as
/// `Framed` does after each read; returns the events each slice produced.
fn decode_in_slices(
    codec: &mut FrameCodec,
    bytes: &[u8],
    slice: usize,
) -> Result<Vec<Vec<Event>>, TransportError> {
    let mut src = BytesMut::new();
    let mut per_slice = Vec::new();
    for part in bytes.chunks(slice) {
        src.extend_from_slice(part);
        let mut events = Vec::new();
        while let Some(event) = codec.decode(&mut src)? {
            events.push(event);
        }
        per_slice.push(events);
    }
    Ok(per_slice)
}

#[test]
fn a_buffered_frame_is_cut_into_pieces_of_chunk_size_and_a_smaller_last_one() {
    let payload: Vec<u8> = (0..10u8).collect();
    let events = decode_all(&mut FrameCodec::streaming(4), &encode_frame(0x82, &payload));
    assert_eq!(
        events.expect("valid"),
        vec![
            piece(Opcode::Binary, false, &payload[..4]),
            piece(Opcode::Continuation, false, &payload[4..8]),
            piece(Opcode::Continuation, true, &payload[8..]),
        ]
    );
}

#[test]
fn a_frame_of_exactly_chunk_size_is_one_final_piece() {
    let events = decode_all(&mut FrameCodec::streaming(5), &encode_frame(0x81, b"hello"));
    assert_eq!(events.expect("valid"), vec![Event::Data(DataFrame::text("hello"))]);
}

#[test]
fn a_non_final_frame_keeps_fin_false_on_its_last_piece() {
    let mut bytes = encode_frame(0x02, b"abcde"); // binary, not fin
    bytes.extend(encode_frame(0x80, b"fgh")); // final continuation
    let events = decode_all(&mut FrameCodec::streaming(3), &bytes).expect("valid");
    assert_eq!(
        events,
        vec![
            piece(Opcode::Binary, false, b"abc"),
            piece(Opcode::Continuation, false, b"de"),
            piece(Opcode::Continuation, true, b"fgh"),
        ]
    );
}

#[test]
fn empty_frames_are_one_empty_piece_each() {
    let mut bytes = encode_frame(0x01, b""); // text, not fin
    bytes.extend(encode_frame(0x80, b"")); // final continuation
    bytes.extend(encode_frame(0x82, b""));
    let events = decode_all(&mut FrameCodec::streaming(8), &bytes).expect("valid");
    assert_eq!(
        events,
        vec![
            piece(Opcode::Text, false, b""),
            piece(Opcode::Continuation, true, b""),
            piece(Opcode::Binary, true, b""),
        ]
    );
}

#[test]
fn a_frame_arriving_byte_by_byte_yields_each_byte_as_it_arrives() {
    let payload = b"streamed";
    let bytes = encode_frame(0x82, payload);
    let per_byte = decode_in_slices(&mut FrameCodec::streaming(4), &bytes, 1).expect("valid");
    let header_len = bytes.len() - payload.len();
    for (i, events) in per_byte.iter().enumerate() {
        if i < header_len {
            assert_eq!(events, &Vec::new(), "nothing while the header arrives (byte {i})");
            continue;
        }
        let index = i - header_len;
        let opcode = if index == 0 { Opcode::Binary } else { Opcode::Continuation };
        let fin = index + 1 == payload.len();
        assert_eq!(events, &vec![piece(opcode, fin, &payload[index..=index])], "byte {i}");
    }
}

#[test]
fn each_read_is_handed_over_at_once_in_pieces_of_at_most_chunk_size() {
    let payload: Vec<u8> = (0..20u8).collect();
    let mut bytes = encode_frame(0x82, &payload);
    bytes.extend(encode_frame(0x81, b"next"));
    // Reads of 7 bytes, pieces of at most 3: first the header (2 bytes) and 5 payload bytes.
    let per_read = decode_in_slices(&mut FrameCodec::streaming(3), &bytes, 7).expect("valid");
    let sizes: Vec<Vec<usize>> = per_read
        .iter()
        .map(|events| {
            events
                .iter()
                .map(|event| match event {
                    Event::Data(frame) => frame.payload.len(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        })
        .collect();
    assert_eq!(sizes, vec![vec![3, 2], vec![3, 3, 1], vec![3, 3, 1], vec![1, 3, 1]]);
    let data: Vec<u8> = per_read
        .iter()
        .flatten()
        .take(9)
        .flat_map(|event| match event {
            Event::Data(frame) => frame.payload.to_vec(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(data, payload, "pieces in order, nothing lost or repeated");
}

#[test]
fn a_256_mib_frame_streams_through_a_small_buffer() {
    const CHUNK: usize = 64 * 1024;
    const SLICE: usize = 64 * 1024;
    let announced: u64 = 256 << 20;
    let mut codec = FrameCodec::streaming(CHUNK);
    let mut src = BytesMut::new();
    src.extend_from_slice(&frame_header(0x82, announced));
    assert_eq!(codec.decode(&mut src).expect("accepted, no FrameTooLarge"), None);
    assert!(src.capacity() <= 2 * CHUNK, "room for one piece: {}", src.capacity());

    let mut slice = vec![0u8; SLICE];
    let (mut received, mut pieces, mut peak_capacity, mut fins) = (0u64, 0u64, 0usize, 0);
    for index in 0..announced / SLICE as u64 {
        slice.fill(index as u8);
        src.extend_from_slice(&slice);
        peak_capacity = peak_capacity.max(src.capacity());
        while let Some(event) = codec.decode(&mut src).expect("valid") {
            let Event::Data(frame) = event else { panic!("unexpected {event:?}") };
            assert!(frame.payload.len() <= CHUNK, "piece of {} bytes", frame.payload.len());
            assert_eq!(frame.payload.first(), Some(&(index as u8)), "pieces in order");
            assert_eq!(frame.opcode == Opcode::Binary, received == 0, "opcode at {received}");
            received += frame.payload.len() as u64;
            pieces += 1;
            fins += usize::from(frame.fin);
        }
        assert!(src.len() < CHUNK, "at most one piece buffered: {}", src.len());
    }
    assert_eq!((received, pieces, fins), (announced, announced / CHUNK as u64, 1));
    assert!(peak_capacity <= 3 * CHUNK, "buffer stayed small: {peak_capacity} bytes");
    assert!(src.is_empty());
}

#[test]
fn lengths_with_the_top_bit_set_are_still_refused() {
    let mut src = BytesMut::from(&frame_header(0x82, 1 << 63)[..]);
    let error = FrameCodec::streaming(1024).decode(&mut src).expect_err("refused");
    assert_eq!(error.close_code(), Some(1002));
}

#[test]
fn text_split_inside_multi_byte_characters_validates() {
    let text = "a€😀é€x".repeat(5);
    for chunk_size in 1..=5 {
        let bytes = encode_frame(0x81, text.as_bytes());
        let events = decode_all(&mut FrameCodec::streaming(chunk_size), &bytes).expect("valid");
        let joined: Vec<u8> = events
            .iter()
            .flat_map(|event| match event {
                Event::Data(frame) => frame.payload.to_vec(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(joined, text.as_bytes(), "chunk size {chunk_size}");
        assert!(events.len() >= text.len() / chunk_size, "cut into pieces ({chunk_size})");
    }
}

#[test]
fn invalid_utf8_in_a_later_piece_fails_with_1007() {
    let mut payload = b"fine text, then ".to_vec();
    payload.extend_from_slice(&[0xE2, 0x82, 0x28]); // a broken "€"
    let mut src = BytesMut::from(&encode_frame(0x81, &payload)[..]);
    let mut codec = FrameCodec::streaming(8);
    assert_eq!(
        codec.decode(&mut src).expect("valid"),
        Some(piece(Opcode::Text, false, b"fine tex"))
    );
    let second = codec.decode(&mut src).expect("valid");
    assert_eq!(second, Some(piece(Opcode::Continuation, false, b"t, then ")));
    let error = codec.decode(&mut src).expect_err("invalid");
    assert_eq!(error.close_code(), Some(1007), "{error:?}");
}

#[test]
fn a_character_cut_off_at_the_end_of_a_streamed_message_fails_with_1007() {
    let euro = "€".as_bytes();
    let bytes = encode_frame(0x81, &[b'a', b'b', euro[0], euro[1]]);
    let error = decode_all(&mut FrameCodec::streaming(2), &bytes).expect_err("cut off");
    assert_eq!(error.close_code(), Some(1007));
}

#[test]
fn a_ping_between_two_fragmented_frames_is_decoded_and_the_message_continues() {
    let text = "héllo wörld";
    let (first, second) = text.as_bytes().split_at(2); // inside "é"
    let mut bytes = encode_frame(0x01, first); // text, not fin
    bytes.extend(encode_frame(0x89, b"ping"));
    bytes.extend(encode_frame(0x80, second)); // final continuation
    let events = decode_all(&mut FrameCodec::streaming(4), &bytes).expect("valid");
    assert_eq!(events[0], piece(Opcode::Text, false, first));
    assert_eq!(events[1], Event::Ping(Bytes::from("ping")));
    let rest: Vec<&Event> = events[2..].iter().collect();
    assert_eq!(rest.len(), second.len().div_ceil(4));
    for (i, event) in rest.iter().enumerate() {
        let Event::Data(frame) = event else { panic!("unexpected {event:?}") };
        assert_eq!(frame.opcode, Opcode::Continuation);
        assert_eq!(frame.fin, i + 1 == rest.len(), "only the last piece is final");
        assert_eq!(frame.payload, second[i * 4..second.len().min(i * 4 + 4)]);
    }
}

#[test]
fn frame_rules_still_hold_in_stream_mode() {
    let continuation_first = encode_frame(0x80, b"x");
    let codes = |bytes: &[u8]| {
        let error = decode_all(&mut FrameCodec::streaming(4), bytes).expect_err("refused");
        error.close_code()
    };
    assert_eq!(codes(&continuation_first), Some(1002));
    let mut interrupted = encode_frame(0x01, b"abcdef");
    interrupted.extend(encode_frame(0x82, b"b"));
    assert_eq!(codes(&interrupted), Some(1002));
    assert_eq!(codes(&encode_frame(0xC1, b"x")), Some(1002), "reserved bit");
    assert_eq!(codes(&[0x82, 0x81, 1, 2, 3, 4, 5]), Some(1002), "masked");
    assert_eq!(codes(&encode_frame(0x83, b"")), Some(1002), "unknown opcode");
    assert_eq!(codes(&encode_frame(0x09, b"")), Some(1002), "fragmented ping");
    assert_eq!(codes(&encode_frame(0x89, &[0; 126])), Some(1002), "long ping");
}

#[test]
fn a_close_frame_is_decoded_whole_in_stream_mode() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"a reason longer than the chunk size");
    let events = decode_all(&mut FrameCodec::streaming(2), &encode_frame(0x88, &payload));
    let close = CloseFrame::new(1000, "a reason longer than the chunk size");
    assert_eq!(events.expect("valid"), vec![Event::Close(Some(close))]);
}

#[test]
fn eof_inside_a_streamed_frame_is_an_io_error() {
    let mut codec = FrameCodec::streaming(4);
    let mut src = BytesMut::from(&encode_frame(0x82, b"abcdef")[..5]);
    assert_eq!(codec.decode(&mut src).expect("valid"), Some(piece(Opcode::Binary, false, b"abc")));
    assert_eq!(codec.decode(&mut src).expect("valid"), None);
    assert!(src.is_empty(), "every byte that came was handed over");
    assert!(matches!(codec.decode_eof(&mut src), Err(TransportError::Io(_))));
}

#[test]
fn for_mode_picks_the_codec_and_chunk_size_zero_is_one() {
    assert_eq!(FrameCodec::for_mode(DeliveryMode::Message, 10).chunk_size(), None);
    let stream = FrameCodec::for_mode(DeliveryMode::Stream { chunk_size: 7 }, 10);
    assert_eq!(stream.chunk_size(), Some(7));
    let events = decode_all(&mut FrameCodec::streaming(0), &encode_frame(0x82, b"ab"));
    assert_eq!(events.expect("valid").len(), 2, "pieces of one byte");
}
