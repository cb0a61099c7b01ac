//! What goes to the peer: framing, our close, and a consumer that lets go.

use std::time::Instant;

use bytes::Bytes;
use feedvisor_transport_api::{CloseFrame, DataFrame, Opcode, Outbound};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Reads what the client writes until it shuts its side down.
async fn read_until_shutdown(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await.expect("read to the client's shutdown");
    received
}

#[actix_rt::test]
async fn lines_go_out_newline_terminated_and_our_close_shuts_our_side_down() {
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        let outbound = connection.outbound.clone();
        outbound.send(Outbound::text("hello")).expect("queued");
        outbound.send(Outbound::Binary(Bytes::from_static(b"bytes"))).expect("queued");
        outbound.send(Outbound::Ping(Bytes::from_static(b"ignored"))).expect("queued");
        outbound.send(Outbound::text("two\nlines are dropped")).expect("queued");
        outbound.send(Outbound::text("")).expect("queued");
        outbound.send(Outbound::Close(Some(CloseFrame::new(1000, "not sent")))).expect("queued");
        let peer = async {
            let received = read_until_shutdown(&mut stream).await;
            // Lines sent after the client's close still arrive, then we close too.
            stream.write_all(b"late\n").await.expect("write");
            drop(stream);
            received
        };
        let (received, (events, error)) = tokio::join!(peer, read_to_end(&mut connection));
        assert_eq!(received, b"hello\nbytes\n\n");
        assert_eq!(events, vec![Event::Data(DataFrame::text("late"))]);
        assert_eq!(error, None, "the peer's close after ours is no error");
        assert!(outbound.send(Outbound::text("too late")).is_err(), "closed after the close");
    })
    .await;
}

#[actix_rt::test]
async fn length_prefixed_messages_go_out_after_their_length() {
    within(async {
        let (mut stream, mut connection) = open(|request| {
            request.framing = Framing::LengthPrefixed;
        })
        .await;
        let outbound = connection.outbound.clone();
        outbound.send(Outbound::text("hi")).expect("queued");
        outbound.send(Outbound::Binary(Bytes::from_static(b"a\nb"))).expect("queued");
        outbound.send(Outbound::Binary(Bytes::new())).expect("queued");
        outbound.send(Outbound::Close(None)).expect("queued");
        let peer = async {
            let received = read_until_shutdown(&mut stream).await;
            drop(stream);
            received
        };
        let (received, (_, error)) = tokio::join!(peer, read_to_end(&mut connection));
        assert_eq!(received, b"\0\0\0\x02hi\0\0\0\x03a\nb\0\0\0\0");
        assert_eq!(error, None);
    })
    .await;
}

#[actix_rt::test]
async fn a_long_outbound_message_is_written_whole_while_the_peer_reads_slowly() {
    let line = "y".repeat(3 << 20);
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        connection.outbound.send(Outbound::text(line.clone())).expect("queued");
        connection.outbound.send(Outbound::Close(None)).expect("queued");
        let peer = async {
            let mut received = Vec::new();
            let mut piece = [0u8; 4096];
            loop {
                let read = stream.read(&mut piece).await.expect("read");
                if read == 0 {
                    break;
                }
                received.extend_from_slice(&piece[..read]);
            }
            drop(stream);
            received
        };
        let (received, (_, error)) = tokio::join!(peer, read_to_end(&mut connection));
        assert_eq!(received.len(), line.len() + 1);
        assert!(received.starts_with(line.as_bytes()) && received.ends_with(b"y\n"));
        assert_eq!(error, None);
    })
    .await;
}

#[actix_rt::test]
async fn our_close_ends_the_stream_after_the_close_timeout_if_the_peer_keeps_its_side_open() {
    within(async {
        let transport = TcpTransport::new().with_close_timeout(Duration::from_millis(200));
        let (mut stream, mut connection) = open_with(transport, |_| {}).await;
        connection.outbound.send(Outbound::Close(None)).expect("queued");
        let started = Instant::now();
        let (received, (events, error)) =
            tokio::join!(read_until_shutdown(&mut stream), read_to_end(&mut connection));
        assert!(received.is_empty());
        assert_eq!((events, error), (Vec::new(), None), "the stream ends quietly");
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    })
    .await;
}

#[actix_rt::test]
async fn a_close_queued_just_before_the_consumer_lets_go_still_writes_what_was_queued() {
    within(async {
        let (mut stream, connection) = open(|_| {}).await;
        let Connection { inbound, outbound, .. } = connection;
        outbound.send(Outbound::text("bye")).expect("queued");
        outbound.send(Outbound::Close(None)).expect("queued");
        drop(inbound);
        drop(outbound);
        assert_eq!(read_until_shutdown(&mut stream).await, b"bye\n");
    })
    .await;
}

#[actix_rt::test]
async fn a_consumer_that_lets_go_without_a_close_has_the_socket_shut_down_at_once() {
    within(async {
        let (mut stream, connection) = open(|_| {}).await;
        drop(connection);
        // Nothing arrives for the session to notice with: it notices by itself.
        assert_eq!(read_until_shutdown(&mut stream).await, b"");
    })
    .await;
}

fn piece(first: bool, fin: bool, payload: &'static [u8]) -> Outbound {
    let opcode = if first { Opcode::Text } else { Opcode::Continuation };
    Outbound::Fragment(DataFrame { opcode, fin, payload: Bytes::from_static(payload) })
}

#[actix_rt::test]
async fn messages_sent_in_pieces_go_out_framed_like_whole_ones() {
    for (framing, expected) in [
        (Framing::Lines, &b"first\nin pieces\n"[..]),
        (Framing::LengthPrefixed, &b"\0\0\0\x05first\0\0\0\x09in pieces"[..]),
    ] {
        within(async {
            let (mut stream, mut connection) = open(|request| request.framing = framing).await;
            let outbound = connection.outbound.clone();
            outbound.send(Outbound::text("first")).expect("queued");
            outbound.send(piece(true, false, b"in ")).expect("queued");
            outbound.send(piece(false, false, b"")).expect("queued");
            outbound.send(piece(false, true, b"pieces")).expect("queued");
            outbound.send(Outbound::Close(None)).expect("queued");
            let peer = async {
                let received = read_until_shutdown(&mut stream).await;
                drop(stream);
                received
            };
            let (received, (_, error)) = tokio::join!(peer, read_to_end(&mut connection));
            assert_eq!(received, expected, "{framing:?}");
            assert_eq!(error, None);
        })
        .await;
    }
}

#[actix_rt::test]
async fn a_newline_in_a_later_piece_of_a_line_ends_the_connection() {
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        let outbound = connection.outbound.clone();
        outbound.send(piece(true, false, b"half")).expect("queued");
        outbound.send(piece(false, true, b"a\nb")).expect("queued");
        let (received, (events, error)) =
            tokio::join!(read_until_shutdown(&mut stream), read_to_end(&mut connection));
        assert_eq!(received, b"half", "the peer sees an unfinished line, then the end");
        assert!(events.is_empty());
        assert!(
            matches!(error, Some(TransportError::Protocol { close_code: 1002, .. })),
            "{error:?}"
        );
    })
    .await;
}
