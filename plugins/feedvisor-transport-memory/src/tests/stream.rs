//! How the memory transport hands over what its peer sends: pieces and
//! byte-bounded batches in stream mode, whole frames in message mode, and
//! the events before an error. Everything here is synchronous (the peer's
//! sends are queued before the connection is polled), so each poll is
//! checked with `now_or_never` and nothing waits.

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};

use feedvisor_transport_api::{
    close_code, CloseFrame, ConnectRequest, Connection, DataFrame, DeliveryMode, Event, Opcode,
    Outbound, TlsOptions, TransportError,
};

use crate::{MemoryHub, MemoryPeer, MemoryTransport, Transport};

/// The `max_frame_size` of every connection here.
const LIMIT: usize = 16;

/// A connection to a fresh listener in `mode`, and the peer at its far end.
fn open(mode: DeliveryMode) -> (MemoryPeer, Connection) {
    let hub = MemoryHub::new();
    let mut listener = hub.listen("stream");
    let request = ConnectRequest {
        url: url::Url::parse("memory://stream").expect("a memory url"),
        headers: Vec::new(),
        subprotocols: Vec::new(),
        max_frame_size: LIMIT,
        handshake_timeout: feedvisor_test_support::TEST_DEADLINE,
        tls: TlsOptions::default(),
        proxy: feedvisor_transport_api::ProxyOptions::default(),
        mode,
        framing: Default::default(),
        compression: Default::default(),
        compressed: Default::default(),
    };
    let connection = MemoryTransport::new(hub).connect(request).now_or_never();
    let connection = connection.expect("a memory connect is immediate").expect("someone listens");
    let peer = listener.accept().now_or_never().flatten().expect("the peer is handed over");
    (peer, connection)
}

/// Everything the connection yields without waiting, up to the end of its stream.
fn drain(connection: &mut Connection) -> Vec<Result<Vec<Event>, TransportError>> {
    let mut items = Vec::new();
    while let Some(Some(item)) = connection.inbound.next().now_or_never() {
        items.push(item);
    }
    items
}

/// A data event.
fn data(opcode: Opcode, fin: bool, payload: &'static [u8]) -> Event {
    Event::Data(DataFrame { opcode, fin, payload: Bytes::from_static(payload) })
}

/// Stream mode with pieces of at most `chunk_size` bytes.
fn stream(chunk_size: usize) -> DeliveryMode {
    DeliveryMode::Stream { chunk_size }
}

#[test]
fn stream_mode_cuts_frames_into_pieces_and_batches_into_at_most_chunk_size_bytes() {
    let (peer, mut connection) = open(stream(4));
    assert!(peer.send_batch(vec![
        data(Opcode::Binary, true, b"ab"),
        Event::Ping(Bytes::from_static(b"p")),
        data(Opcode::Binary, true, b"cdefghij"),
        data(Opcode::Text, true, b"k"),
    ]));
    let batches: Vec<Vec<Event>> =
        drain(&mut connection).into_iter().map(|batch| batch.expect("no error")).collect();
    assert_eq!(
        batches,
        [
            // A ping carries no data: it joins the batch, the next piece does not fit.
            vec![data(Opcode::Binary, true, b"ab"), Event::Ping(Bytes::from_static(b"p"))],
            vec![data(Opcode::Binary, false, b"cdef")],
            vec![data(Opcode::Continuation, true, b"ghij")],
            vec![data(Opcode::Text, true, b"k")],
        ]
    );
}

#[test]
fn stream_mode_accepts_a_frame_over_the_frame_size_limit() {
    let (peer, mut connection) = open(stream(LIMIT));
    let frame: Vec<u8> = (0..=u8::MAX).collect();
    assert!(peer.send_frame(Opcode::Binary, true, frame.clone()));
    let pieces: Vec<Event> =
        drain(&mut connection).into_iter().flat_map(|batch| batch.expect("no error")).collect();
    assert_eq!(pieces.len(), frame.len() / LIMIT);
    let mut received = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let Event::Data(piece) = piece else { panic!("piece {i} is not data: {piece:?}") };
        let opcode = if i == 0 { Opcode::Binary } else { Opcode::Continuation };
        assert_eq!((piece.opcode, piece.fin), (opcode, i == pieces.len() - 1), "piece {i}");
        received.extend_from_slice(&piece.payload);
    }
    assert_eq!(received, frame);
}

#[test]
fn a_character_cut_between_pieces_is_still_valid_text() {
    let (peer, mut connection) = open(stream(3));
    let text = "héllo wörld: ✓";
    assert!(peer.send_text(text));
    let mut received = Vec::new();
    let mut cut = false;
    for batch in drain(&mut connection) {
        for event in batch.expect("valid UTF-8 across pieces") {
            let Event::Data(piece) = event else { panic!("not data: {event:?}") };
            assert!(piece.payload.len() <= 3);
            cut |= std::str::from_utf8(&piece.payload).is_err();
            received.extend_from_slice(&piece.payload);
        }
    }
    assert!(cut, "some piece ends or starts inside a character");
    assert_eq!(received, text.as_bytes());
}

#[test]
fn invalid_text_in_a_later_piece_ends_the_stream_after_the_pieces_before_it() {
    let (mut peer, mut connection) = open(stream(2));
    assert!(peer.send_frame(Opcode::Text, true, Bytes::from_static(b"okno\xC3\x28")));
    let items = drain(&mut connection);
    let protocol = TransportError::Protocol {
        close_code: close_code::INVALID_PAYLOAD,
        reason: "invalid UTF-8 in a text message".to_owned(),
    };
    assert_eq!(
        items,
        [
            Ok(vec![data(Opcode::Text, false, b"ok")]),
            Ok(vec![data(Opcode::Continuation, false, b"no")]),
            Err(protocol),
        ]
    );
    let reply = peer.next_reply().now_or_never().flatten();
    assert_eq!(
        reply,
        Some(Outbound::Close(Some(CloseFrame::new(close_code::INVALID_PAYLOAD, ""))))
    );
}

#[test]
fn the_peers_close_ends_the_batch_and_what_follows_it_is_not_read() {
    let (peer, mut connection) = open(stream(4));
    let close = Event::Close(Some(CloseFrame::new(close_code::GOING_AWAY, "bye")));
    assert!(peer.send_batch(vec![
        data(Opcode::Binary, false, b"abcdef"),
        close.clone(),
        data(Opcode::Continuation, true, b"never"),
    ]));
    let items = drain(&mut connection);
    assert_eq!(
        items,
        [
            Ok(vec![data(Opcode::Binary, false, b"abcd")]),
            Ok(vec![data(Opcode::Continuation, false, b"ef"), close])
        ]
    );
    assert!(connection.inbound.next().now_or_never().is_some_and(|end| end.is_none()));
}

#[test]
fn message_mode_hands_the_peers_batch_over_whole_up_to_a_refused_frame() {
    let (peer, mut connection) = open(DeliveryMode::Message);
    let whole = data(Opcode::Binary, true, b"a frame of 16 B.");
    assert!(peer.send_batch(vec![whole.clone(), whole.clone()]));
    assert!(peer.send_batch(vec![whole.clone(), data(Opcode::Binary, true, b"one byte too many")]));
    let items = drain(&mut connection);
    let too_large = TransportError::FrameTooLarge { announced: LIMIT as u64 + 1, limit: LIMIT };
    assert_eq!(items, [Ok(vec![whole.clone(), whole.clone()]), Ok(vec![whole]), Err(too_large)]);
}
