//! Codec tests against raw frame bytes; no network.

use feedvisor_test_support::websocket::encode_frame;

use super::*;

/// A frame as the client encoded it, unmasked on the test side.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    first_byte: u8,
    key: [u8; 4],
    payload: Vec<u8>,
}

/// Parses one masked client frame from the front of `bytes` (independently of the codec).
fn unmask_client_frame(bytes: &[u8]) -> (Decoded, usize) {
    assert!(bytes[1] & 0x80 != 0, "client frames must be masked");
    let (len, mut offset) = match bytes[1] & 0x7F {
        126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 => (u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")) as usize, 10),
        short => (short as usize, 2),
    };
    let key: [u8; 4] = bytes[offset..offset + 4].try_into().expect("4 bytes");
    offset += 4;
    let payload =
        bytes[offset..offset + len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    (Decoded { first_byte: bytes[0], key, payload }, offset + len)
}

fn encode(frame: ClientFrame) -> Vec<u8> {
    let mut dst = BytesMut::new();
    FrameCodec::new(1024).encode(frame, &mut dst).expect("encode");
    dst.to_vec()
}

fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Event>, TransportError> {
    let mut src = BytesMut::from(bytes);
    let mut events = Vec::new();
    while let Some(event) = codec.decode(&mut src)? {
        events.push(event);
    }
    assert!(src.is_empty(), "left over: {src:?}");
    Ok(events)
}

fn close_code_of(result: Result<Vec<Event>, TransportError>) -> u16 {
    let error = result.expect_err("expected a protocol error");
    error.close_code().unwrap_or_else(|| panic!("no close code in {error:?}"))
}

#[test]
fn encoded_frames_are_masked_and_round_trip() {
    for len in [0usize, 1, 5, 125, 126, 127, 0xFFFF, 0x1_0000, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let bytes = encode(ClientFrame::Binary(Bytes::from(payload.clone())));
        let (decoded, used) = unmask_client_frame(&bytes);
        assert_eq!(used, bytes.len(), "one frame, nothing else (len {len})");
        assert_eq!(decoded.first_byte, 0x82, "fin + binary (len {len})");
        assert_eq!(decoded.payload, payload, "payload (len {len})");
        let expected_header = match len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        assert_eq!(bytes.len(), expected_header + 4 + len, "minimal length encoding (len {len})");
    }
}

#[test]
fn every_frame_gets_its_own_mask_key() {
    let keys: Vec<[u8; 4]> = (0..8)
        .map(|_| unmask_client_frame(&encode(ClientFrame::Text(Bytes::from("x")))).0.key)
        .collect();
    assert!(keys.windows(2).any(|pair| pair[0] != pair[1]), "keys: {keys:?}");
}

#[test]
fn control_frames_are_encoded_with_their_opcodes_and_limits() {
    let (ping, _) = unmask_client_frame(&encode(ClientFrame::Ping(Bytes::from(vec![7u8; 200]))));
    assert_eq!(ping.first_byte, 0x89);
    assert_eq!(ping.payload, vec![7u8; 125], "cut to 125 bytes");

    let (pong, _) = unmask_client_frame(&encode(ClientFrame::Pong(Bytes::from("abc"))));
    assert_eq!((pong.first_byte, pong.payload.as_slice()), (0x8A, &b"abc"[..]));

    let (close, _) = unmask_client_frame(&encode(ClientFrame::Close(None)));
    assert_eq!((close.first_byte, close.payload.len()), (0x88, 0));

    let reason = "é".repeat(100); // 200 bytes; 123 would split a character
    let frame = CloseFrame::new(1001, reason);
    let (close, _) = unmask_client_frame(&encode(ClientFrame::Close(Some(frame))));
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
    let sent_reason = std::str::from_utf8(&close.payload[2..]).expect("cut on a char boundary");
    assert_eq!(sent_reason.len(), 122);
}

#[test]
fn server_frames_decode_one_by_one_and_several_per_buffer() {
    let mut bytes = encode_frame(0x81, b"hello");
    bytes.extend(encode_frame(0x82, &[1, 2, 3]));
    bytes.extend(encode_frame(0x89, b"are you there"));
    bytes.extend(encode_frame(0x8A, b""));
    let events = decode_all(&mut FrameCodec::new(1024), &bytes).expect("valid");
    assert_eq!(
        events,
        vec![
            Event::Data(DataFrame::text("hello")),
            Event::Data(DataFrame::binary(vec![1u8, 2, 3])),
            Event::Ping(Bytes::from("are you there")),
            Event::Pong(Bytes::new()),
        ]
    );
}

#[test]
fn a_frame_fed_byte_by_byte_decodes_once_complete() {
    let payload = vec![b'a'; 300];
    let bytes = encode_frame(0x81, &payload);
    let mut codec = FrameCodec::new(1024);
    let mut src = BytesMut::new();
    for (i, byte) in bytes.iter().enumerate() {
        src.put_u8(*byte);
        let decoded = codec.decode(&mut src).expect("valid so far");
        if i + 1 < bytes.len() {
            assert_eq!(decoded, None, "incomplete at byte {i}");
        } else {
            assert_eq!(decoded, Some(Event::Data(DataFrame::text(payload.clone()))));
        }
    }
}

#[test]
fn payload_is_split_off_the_read_buffer_without_a_copy() {
    let mut src = BytesMut::from(&encode_frame(0x82, &[9u8; 64])[..]);
    let buffer = src.as_ptr_range();
    let Some(Event::Data(frame)) = FrameCodec::new(1024).decode(&mut src).expect("valid") else {
        panic!("expected a data frame");
    };
    assert!(buffer.contains(&frame.payload.as_ptr()), "payload points into the read buffer");
}

#[test]
fn fragments_are_yielded_unassembled_and_utf8_is_checked_across_them() {
    let euro = "€".as_bytes();
    let mut bytes = encode_frame(0x01, &[b'a', euro[0]]); // text, not fin
    bytes.extend(encode_frame(0x89, b"p")); // a ping between fragments is allowed
    bytes.extend(encode_frame(0x00, &euro[1..2])); // continuation
    bytes.extend(encode_frame(0x80, &euro[2..])); // final continuation
    let events = decode_all(&mut FrameCodec::new(1024), &bytes).expect("valid");
    let fragments: Vec<(Opcode, bool, usize)> = events
        .iter()
        .filter_map(|event| match event {
            Event::Data(frame) => Some((frame.opcode, frame.fin, frame.payload.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        fragments,
        vec![
            (Opcode::Text, false, 2),
            (Opcode::Continuation, false, 1),
            (Opcode::Continuation, true, 1)
        ]
    );
    assert_eq!(events[1], Event::Ping(Bytes::from("p")));
}

#[test]
fn binary_fragments_are_not_utf8_checked() {
    let mut bytes = encode_frame(0x02, &[0xFF]);
    bytes.extend(encode_frame(0x80, &[0xFE]));
    assert_eq!(decode_all(&mut FrameCodec::new(1024), &bytes).expect("valid").len(), 2);
}

#[test]
fn invalid_utf8_is_refused_with_1007() {
    let bytes = encode_frame(0x81, &[b'o', b'k', 0xFF]);
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(1024), &bytes)), 1007);

    let mut bytes = encode_frame(0x01, &[0xE2, 0x82]); // first two bytes of "€"
    bytes.extend(encode_frame(0x80, b"x")); // ... not continued correctly
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(1024), &bytes)), 1007);
}

#[test]
fn bad_fragment_sequences_are_refused_with_1002() {
    let continuation_first = encode_frame(0x80, b"x");
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &continuation_first)), 1002);

    let mut interrupted = encode_frame(0x01, b"a");
    interrupted.extend(encode_frame(0x81, b"b"));
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &interrupted)), 1002);
}

#[test]
fn reserved_bits_are_refused_with_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        let bytes = encode_frame(0x81 | rsv, b"x");
        assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &bytes)), 1002, "{rsv:#x}");
    }
}

#[test]
fn masked_server_frames_and_unknown_opcodes_are_refused_with_1002() {
    let masked = [0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1];
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &masked)), 1002);
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        let bytes = encode_frame(0x80 | opcode, b"");
        assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &bytes)), 1002, "{opcode}");
    }
}

#[test]
fn bad_control_frames_are_refused_with_1002() {
    let fragmented_ping = encode_frame(0x09, b"x");
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(1024), &fragmented_ping)), 1002);
    let long_ping = encode_frame(0x89, &[0u8; 126]);
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(1024), &long_ping)), 1002);
}

#[test]
fn close_frames_are_parsed_and_checked() {
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let events = decode_all(&mut FrameCodec::new(64), &encode_frame(0x88, &payload)).expect("ok");
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1001, "bye")))]);

    let events = decode_all(&mut FrameCodec::new(64), &encode_frame(0x88, b"")).expect("ok");
    assert_eq!(events, vec![Event::Close(None)]);

    let one_byte = encode_frame(0x88, &[3]);
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &one_byte)), 1002);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
        let bytes = encode_frame(0x88, &code.to_be_bytes());
        assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &bytes)), 1002, "{code}");
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.push(0xFF);
    let bytes = encode_frame(0x88, &bad_reason);
    assert_eq!(close_code_of(decode_all(&mut FrameCodec::new(64), &bytes)), 1007);
}

#[test]
fn a_frame_at_the_limit_is_accepted_and_one_byte_more_refused() {
    let at_limit = encode_frame(0x82, &[0u8; 100]);
    assert_eq!(decode_all(&mut FrameCodec::new(100), &at_limit).expect("fits").len(), 1);
    let over = encode_frame(0x82, &[0u8; 101]);
    let error = decode_all(&mut FrameCodec::new(100), &over).expect_err("too large");
    assert_eq!(error, TransportError::FrameTooLarge { announced: 101, limit: 100 });
}

#[test]
fn a_256_mib_frame_is_refused_from_its_header_without_buffering() {
    let announced: u64 = 256 << 20;
    let mut src = BytesMut::with_capacity(64);
    src.put_slice(&[0x82, 127]);
    src.put_u64(announced);
    let capacity = src.capacity();
    let mut codec = FrameCodec::new(64 * 1024);
    let error = codec.decode(&mut src).expect_err("refused");
    assert_eq!(error, TransportError::FrameTooLarge { announced, limit: 64 * 1024 });
    assert_eq!(error.close_code(), Some(1009));
    assert_eq!(src.capacity(), capacity, "no room was reserved for the payload");
}

#[test]
fn an_incomplete_frame_reserves_only_what_it_needs() {
    let mut src = BytesMut::new();
    src.put_slice(&[0x82, 126]);
    src.put_u16(1000);
    src.put_slice(&[0u8; 10]);
    assert_eq!(FrameCodec::new(64 * 1024).decode(&mut src).expect("valid so far"), None);
    assert!(src.capacity() >= 1004, "room for the whole frame");
    assert!(src.capacity() < 4096, "no more than about the frame: {}", src.capacity());
}

#[test]
fn eof_inside_a_frame_is_an_io_error_and_clean_eof_ends() {
    let mut codec = FrameCodec::new(64);
    let mut partial = BytesMut::from(&encode_frame(0x81, b"hello")[..4]);
    assert!(matches!(codec.decode_eof(&mut partial), Err(TransportError::Io(_))));
    assert_eq!(codec.decode_eof(&mut BytesMut::new()).expect("clean"), None);
}

#[test]
fn control_frames_up_to_125_bytes_pass_a_smaller_max_frame_size() {
    let mut codec = FrameCodec::new(10);
    let ping = vec![b'p'; 125];
    let mut wire = encode_frame(0x89, &ping);
    wire.extend(encode_frame(
        0x88,
        &[0x03, 0xE8, b'b', b'y', b'e', b' ', b'n', b'o', b'w', b'!', b'!'],
    ));
    let events = decode_all(&mut codec, &wire).expect("control frames are within their own limit");
    assert_eq!(
        events,
        [Event::Ping(Bytes::from(ping)), Event::Close(Some(CloseFrame::new(1000, "bye now!!")))]
    );
    // Data frames still meet the configured limit.
    let error = decode_all(&mut codec, &encode_frame(0x82, &[0; 11])).expect_err("over the limit");
    assert_eq!(error, TransportError::FrameTooLarge { announced: 11, limit: 10 });
}
