//! The compliance cases; see the table in the module above.

use std::cell::Cell;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use feedvisor_transport_api::{
    close_code, CloseFrame, Connection, DataFrame, DataKind, DeliveryMode, ErrorKind, Event,
    Opcode, Outbound, TransportError,
};
use futures_util::StreamExt;

use super::{Expressible, Harness, Listener, Peer, PeerEnd, Setup};
use crate::connection::{read_events, read_to_end};
use crate::wait::within;

/// The `max_frame_size` of every case.
pub const LIMIT: usize = 64 * 1024;

const TEXT: Setup = Setup::TEXT;
const BINARY: Setup = Setup::BINARY;

/// The close code the cases send both ways (application range, RFC 6455 section 7.4.2).
const CODE: u16 = 4000;

/// Connects to a fresh listener of `harness`; returns the peer and the connection.
async fn open<H: Harness>(harness: &H, setup: Setup) -> (H::Peer, Connection) {
    let (listener, request) = harness.listen(setup).await;
    let (peer, connection) = tokio::join!(listener.accept(), harness.transport().connect(request));
    match connection {
        Ok(connection) => (peer, connection),
        Err(error) => panic!("{}: connect failed: {error}", harness.name()),
    }
}

/// True when the case can run; otherwise says why it does not, on stderr.
fn expressible<H: Harness>(harness: &H, case: &str, expressible: Expressible) -> bool {
    match expressible {
        Expressible::Yes => true,
        Expressible::No { reason } => {
            eprintln!("{}: `{case}` is not expressible: {reason}", harness.name());
            false
        }
    }
}

/// A data event as a whole message of `kind` arrives.
fn data(kind: DataKind, payload: &Bytes) -> Event {
    match kind {
        DataKind::Text => Event::Data(DataFrame::text(payload.clone())),
        DataKind::Binary => Event::Data(DataFrame::binary(payload.clone())),
    }
}

/// `count` short numbered messages.
fn numbered(count: usize) -> Vec<Bytes> {
    (0..count).map(|i| Bytes::from(format!("message {i}"))).collect()
}

/// Bytes that are not all alike (xorshift), so that a reordering shows.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// Messages written one by one arrive whole and in order.
pub async fn messages_arrive_in_order<H: Harness>(harness: &H) {
    let messages = numbered(50);
    within(async {
        let (mut peer, mut connection) = open(harness, TEXT).await;
        let ((), (events, _)) =
            tokio::join!(peer.send_each(&messages), read_events(&mut connection, messages.len()));
        let expected: Vec<Event> = messages.iter().map(|m| data(DataKind::Text, m)).collect();
        assert_eq!(events, expected, "{}", harness.name());
    })
    .await;
}

/// Messages written at once arrive batched: fewer batches than messages.
pub async fn messages_written_at_once_arrive_batched<H: Harness>(harness: &H) {
    let messages = numbered(200);
    within(async {
        let (mut peer, mut connection) = open(harness, TEXT).await;
        peer.send_at_once(&messages).await;
        let (events, batches) = read_events(&mut connection, messages.len()).await;
        let expected: Vec<Event> = messages.iter().map(|m| data(DataKind::Text, m)).collect();
        assert_eq!(events, expected, "{}", harness.name());
        assert!(
            batches < messages.len(),
            "{}: {} messages written at once came in {batches} batches",
            harness.name(),
            messages.len()
        );
    })
    .await;
}

/// The peer's close code arrives as `Event::Close`, is answered with the
/// same code, and ends the stream.
pub async fn the_peers_close_code_reaches_the_consumer<H: Harness>(harness: &H) {
    if !expressible(harness, "the_peers_close_code_reaches_the_consumer", harness.close_codes()) {
        return;
    }
    within(async {
        let (mut peer, mut connection) = open(harness, TEXT).await;
        peer.close(CODE, "done").await;
        let ((events, error), answer) =
            tokio::join!(read_to_end(&mut connection), peer.read_to_end());
        assert_eq!(
            events,
            vec![Event::Close(Some(CloseFrame::new(CODE, "done")))],
            "{}",
            harness.name()
        );
        assert_eq!(error, None, "{}: the peer's close is no error", harness.name());
        assert_eq!(
            answer,
            PeerEnd::Close(Some(CODE)),
            "{}: the close is answered with its code",
            harness.name()
        );
    })
    .await;
}

/// `Outbound::Close` reaches the peer with its code (or, where closes carry
/// no code, as the end of the stream), and the stream ends without an error.
pub async fn our_close_code_reaches_the_peer_and_ends_the_stream<H: Harness>(harness: &H) {
    within(async {
        let (mut peer, mut connection) = open(harness, TEXT).await;
        let close = Outbound::Close(Some(CloseFrame::new(CODE, "bye")));
        connection.outbound.send(close).expect("the connection is open");
        let (seen, (events, error)) =
            tokio::join!(peer.read_to_end(), read_to_end(&mut connection));
        let expected = match harness.close_codes() {
            Expressible::Yes => PeerEnd::Close(Some(CODE)),
            Expressible::No { .. } => PeerEnd::Eof,
        };
        assert_eq!(seen, expected, "{}", harness.name());
        assert_eq!(error, None, "{}: ended by our close, not an error", harness.name());
        assert!(
            events.iter().all(|event| matches!(event, Event::Close(_))),
            "{}: only the peer's answer may follow our close: {events:?}",
            harness.name()
        );
    })
    .await;
}

/// A frame announcing more than `max_frame_size` is refused as soon as its
/// header is read: the peer never sends the payload, so a transport that
/// waited for it would never answer.
pub async fn a_frame_over_the_limit_is_refused_before_its_payload<H: Harness>(harness: &H) {
    let announced = LIMIT as u64 + 1;
    within(async {
        let (mut peer, mut connection) = open(harness, BINARY).await;
        peer.announce(announced).await;
        let ((events, error), seen) =
            tokio::join!(read_to_end(&mut connection), peer.read_to_end());
        assert_eq!(events, Vec::new(), "{}", harness.name());
        assert_eq!(
            error,
            Some(TransportError::FrameTooLarge { announced, limit: LIMIT }),
            "{}",
            harness.name()
        );
        let expected = match harness.close_codes() {
            Expressible::Yes => PeerEnd::Close(Some(close_code::MESSAGE_TOO_BIG)),
            Expressible::No { .. } => PeerEnd::Eof,
        };
        assert_eq!(seen, expected, "{}: the peer is told", harness.name());
    })
    .await;
}

/// In stream mode a message longer than `max_frame_size` arrives in pieces
/// of at most `chunk_size`: the first with the message's opcode, the rest
/// continuations, only the last final; together the bytes sent, in order.
pub async fn stream_mode_pieces_stay_within_the_chunk_size<H: Harness>(harness: &H) {
    if !expressible(harness, "stream_mode_pieces_stay_within_the_chunk_size", harness.stream_mode())
    {
        return;
    }
    const CHUNK: usize = 1000;
    let sent = pseudo_random(3 * LIMIT + 17);
    let setup = Setup { mode: DeliveryMode::Stream { chunk_size: CHUNK }, ..BINARY };
    within(async {
        let (mut peer, mut connection) = open(harness, setup).await;
        let client = async {
            let mut pieces = Vec::new();
            while !pieces.last().is_some_and(|piece: &DataFrame| piece.fin) {
                match connection.inbound.next().await {
                    Some(Ok(batch)) => {
                        pieces.extend(batch.into_iter().filter_map(|event| match event {
                            Event::Data(frame) => Some(frame),
                            _ => None,
                        }))
                    }
                    other => panic!("{}: ended before the last piece: {other:?}", harness.name()),
                }
            }
            pieces
        };
        let ((), pieces) = tokio::join!(peer.send_stream(&sent), client);
        let mut received = Vec::with_capacity(sent.len());
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { Opcode::Binary } else { Opcode::Continuation };
            assert_eq!(piece.opcode, opcode, "{}: piece {i}", harness.name());
            assert_eq!(
                piece.fin,
                i == pieces.len() - 1,
                "{}: only the last piece is final",
                harness.name()
            );
            assert!(
                piece.payload.len() <= CHUNK,
                "{}: piece {i} of {} bytes",
                harness.name(),
                piece.payload.len()
            );
            received.extend_from_slice(&piece.payload);
        }
        assert!(pieces.len() >= sent.len() / CHUNK, "{}: {} pieces", harness.name(), pieces.len());
        assert!(received == sent, "{}: the bytes arrived changed or out of order", harness.name());
    })
    .await;
}

/// While the consumer does not poll `inbound`, nothing reads the socket:
/// the peer's writes block once the buffers are full, long before all it
/// has to send is out. Once the consumer polls again they resume, and
/// every message arrives.
pub async fn a_consumer_that_does_not_poll_stops_the_peer<H: Harness>(harness: &H) {
    if !expressible(
        harness,
        "a_consumer_that_does_not_poll_stops_the_peer",
        harness.socket_buffers(),
    ) {
        return;
    }
    /// Far more than socket buffers hold: the peer may never get all of it out unread.
    const MOST: usize = 2048;
    /// A write that has not finished after this long counts as blocked.
    const STALL: Duration = Duration::from_millis(200);
    let message = Bytes::from(pseudo_random(LIMIT / 2));
    within(async {
        let (mut peer, mut connection) = open(harness, BINARY).await;
        let written = Cell::new(0usize);
        let target = Cell::new(MOST);
        let mut writer = pin!(async {
            while written.get() < target.get() {
                peer.send_each(std::slice::from_ref(&message)).await;
                written.set(written.get() + 1);
            }
        });
        // Nobody polls the connection: wait until a write stays blocked.
        loop {
            let before = written.get();
            let finished = tokio::time::timeout(STALL, writer.as_mut()).await.is_ok();
            assert!(!finished, "{}: {MOST} messages went out while nobody read", harness.name());
            if written.get() == before {
                break;
            }
        }
        let stalled_at = written.get();
        assert!(stalled_at < MOST, "{}: every message went out while nobody read", harness.name());
        // The consumer polls again: the blocked write and a few more go through.
        target.set(stalled_at + 16);
        let reader = async {
            let mut received = 0;
            while received < target.get() {
                let batch = match connection.inbound.next().await {
                    Some(Ok(batch)) => batch,
                    other => {
                        panic!("{}: ended after {received} messages: {other:?}", harness.name())
                    }
                };
                for event in batch {
                    assert_eq!(
                        event,
                        data(DataKind::Binary, &message),
                        "{}: message {received}",
                        harness.name()
                    );
                    received += 1;
                }
            }
            received
        };
        let ((), received) = tokio::join!(writer, reader);
        assert_eq!(
            (written.get(), received),
            (stalled_at + 16, stalled_at + 16),
            "{}",
            harness.name()
        );
    })
    .await;
}

/// A `Connection` dropped without a close reaches the peer as a close or
/// as the end of the stream, without anything more from either side.
pub async fn dropping_the_connection_closes_it<H: Harness>(harness: &H) {
    within(async {
        let (mut peer, connection) = open(harness, TEXT).await;
        drop(connection);
        let seen = peer.read_to_end().await;
        eprintln!("{}: a dropped connection reached the peer as {seen:?}", harness.name());
    })
    .await;
}

/// Connecting where nothing listens is `ErrorKind::Refused`.
pub async fn a_refused_connect_is_classified_refused<H: Harness>(harness: &H) {
    let result = within(harness.transport().connect(harness.refused())).await;
    match result {
        Err(error) => assert_eq!(error.kind(), ErrorKind::Refused, "{}: {error}", harness.name()),
        Ok(_) => panic!("{}: connected where nothing listens", harness.name()),
    }
}

/// A peer that accepts and never answers the handshake is
/// `ErrorKind::Timeout` once `handshake_timeout` has passed.
pub async fn a_silent_handshake_times_out<H: Harness>(harness: &H) {
    let (mut request, _listener) = match harness.silent().await {
        Ok(silent) => silent,
        Err(reason) => {
            expressible(harness, "a_silent_handshake_times_out", Expressible::No { reason });
            return;
        }
    };
    request.handshake_timeout = Duration::from_millis(100);
    match within(harness.transport().connect(request)).await {
        Err(error) => assert_eq!(error.kind(), ErrorKind::Timeout, "{}: {error}", harness.name()),
        Ok(_) => panic!("{}: a silent peer completed the handshake", harness.name()),
    }
}

/// A peer that goes away without a close ends the stream with `ErrorKind::Io`.
pub async fn a_hang_up_without_a_close_is_an_io_error<H: Harness>(harness: &H) {
    within(async {
        let (peer, mut connection) = open(harness, TEXT).await;
        peer.hang_up();
        let (events, error) = read_to_end(&mut connection).await;
        assert_eq!(events, Vec::new(), "{}", harness.name());
        let kind = error.as_ref().map(TransportError::kind);
        assert_eq!(kind, Some(ErrorKind::Io), "{}: {error:?}", harness.name());
    })
    .await;
}

/// Text that is not UTF-8 ends the stream with `ErrorKind::Protocol` and
/// close code 1007, after the valid message before it.
pub async fn invalid_utf8_text_is_a_protocol_error<H: Harness>(harness: &H) {
    let fine = Bytes::from_static(b"fine");
    within(async {
        let (mut peer, mut connection) = open(harness, TEXT).await;
        peer.send_each(std::slice::from_ref(&fine)).await;
        peer.send_invalid_text().await;
        let ((events, error), _) = tokio::join!(read_to_end(&mut connection), peer.read_to_end());
        assert_eq!(events, vec![data(DataKind::Text, &fine)], "{}", harness.name());
        let error =
            error.unwrap_or_else(|| panic!("{}: invalid UTF-8 was accepted", harness.name()));
        assert_eq!(error.kind(), ErrorKind::Protocol, "{}: {error}", harness.name());
        assert_eq!(
            error.close_code(),
            Some(close_code::INVALID_PAYLOAD),
            "{}: {error}",
            harness.name()
        );
    })
    .await;
}
