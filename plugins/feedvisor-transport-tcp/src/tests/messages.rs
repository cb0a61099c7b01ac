//! Message mode over a real socket: lines and length-prefixed messages,
//! however the peer's writes split them, in batches, and the limits.

use std::time::Instant;

use bytes::Bytes;
use feedvisor_transport_api::DataFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::framing::READ_SIZE;
use feedvisor_transport_kit::MAX_READ_BATCH;

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

fn length_prefixed(request: &mut ConnectRequest) {
    request.framing = Framing::LengthPrefixed;
}

/// Writes `bytes` one at a time, each its own write (and TCP segment, with nodelay).
async fn write_byte_by_byte(stream: &mut TcpStream, bytes: &[u8]) {
    for byte in bytes {
        stream.write_all(&[*byte]).await.expect("write a byte");
    }
}

#[actix_rt::test]
async fn lines_written_at_once_arrive_in_one_batch() {
    let lines: String = (0..200).map(|i| format!("message {i}\n")).collect();
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        stream.write_all(lines.as_bytes()).await.expect("write");
        let (events, batches) = read_events(&mut connection, 200).await;
        assert_eq!(events[0], text("message 0"));
        assert_eq!(events[199], text("message 199"));
        assert!(batches <= 2, "200 lines written at once came in {batches} batches");
    })
    .await;
}

#[actix_rt::test]
async fn a_batch_holds_at_most_max_batch_events() {
    let count = 2 * MAX_READ_BATCH + 10;
    let lines = "x\n".repeat(count);
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        stream.write_all(lines.as_bytes()).await.expect("write");
        let mut received = 0;
        while received < count {
            let batch = connection.inbound.next().await.expect("open").expect("no error");
            assert!(batch.len() <= MAX_READ_BATCH, "a batch of {}", batch.len());
            received += batch.len();
        }
        assert_eq!(received, count);
    })
    .await;
}

#[actix_rt::test]
async fn lines_written_byte_by_byte_arrive_whole_with_crlf_dropped() {
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        let (_, (events, _)) = tokio::join!(
            write_byte_by_byte(&mut stream, "one\r\ntwo é\n\r\nfour\r\r\n".as_bytes()),
            read_events(&mut connection, 4)
        );
        assert_eq!(events, vec![text("one"), text("two é"), text(""), text("four\r")]);
    })
    .await;
}

#[actix_rt::test]
async fn length_prefixed_messages_written_byte_by_byte_arrive_whole() {
    let bytes = [prefixed(b"first"), prefixed(b""), prefixed(&[0, b'\n', 0xFF])].concat();
    within(async {
        let (mut stream, mut connection) = open(length_prefixed).await;
        let (_, (events, _)) =
            tokio::join!(write_byte_by_byte(&mut stream, &bytes), read_events(&mut connection, 3));
        assert_eq!(events, vec![binary(b"first"), binary(b""), binary(&[0, b'\n', 0xFF])]);
    })
    .await;
}

#[actix_rt::test]
async fn a_length_prefixed_message_of_exactly_the_limit_is_accepted() {
    let payload = vec![7u8; LIMIT];
    within(async {
        let (mut stream, mut connection) = open(length_prefixed).await;
        stream.write_all(&prefixed(&payload)).await.expect("write");
        let (events, _) = read_events(&mut connection, 1).await;
        assert_eq!(events, vec![binary(&payload)]);
    })
    .await;
}

#[actix_rt::test]
async fn a_length_prefix_announcing_256_mib_is_refused_at_once() {
    within(async {
        let (mut stream, mut connection) = open(length_prefixed).await;
        stream
            .write_all(&[prefixed(b"fine"), (256u32 << 20).to_be_bytes().to_vec()].concat())
            .await
            .expect("write");
        let started = Instant::now();
        let (events, error) = read_to_end(&mut connection).await;
        assert_eq!(events, vec![binary(b"fine")]);
        assert_eq!(
            error,
            Some(TransportError::FrameTooLarge { announced: 256 << 20, limit: LIMIT })
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        // The client let go of the socket: the peer reads the end of it.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read to the end");
        assert!(rest.is_empty());
    })
    .await;
}

#[actix_rt::test]
async fn an_endless_line_is_refused_once_it_passes_the_limit() {
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        let peer = async {
            // Far more than the limit, in small writes, until the client hangs up.
            let piece = [b'x'; 1024];
            let mut written = 0;
            while written < 64 * LIMIT && stream.write_all(&piece).await.is_ok() {
                written += piece.len();
            }
        };
        let ((), (events, error)) = tokio::join!(peer, read_to_end(&mut connection));
        assert!(events.is_empty(), "{events:?}");
        match error {
            Some(TransportError::FrameTooLarge { announced, limit: LIMIT }) => {
                let announced = usize::try_from(announced).expect("fits");
                assert!(announced > LIMIT + 1, "refused too early at {announced}");
                assert!(announced <= LIMIT + 1 + READ_SIZE, "buffered {announced} bytes");
            }
            other => panic!("expected a frame too large, got {other:?}"),
        }
    })
    .await;
}

#[actix_rt::test]
async fn a_line_that_is_not_utf8_ends_the_connection_with_a_protocol_error() {
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        stream.write_all(b"fine\nno\xC3\x28\nnever\n").await.expect("write");
        let (events, error) = read_to_end(&mut connection).await;
        assert_eq!(events, vec![text("fine")]);
        assert!(
            matches!(error, Some(TransportError::Protocol { close_code: 1007, .. })),
            "{error:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_peer_that_hangs_up_mid_line_has_the_line_dropped_and_the_connection_fails() {
    within(async {
        let (mut stream, mut connection) = open(|_| {}).await;
        stream.write_all(b"whole\npart").await.expect("write");
        drop(stream);
        let (events, error) = read_to_end(&mut connection).await;
        assert_eq!(events, vec![text("whole")]);
        assert_eq!(
            error,
            Some(TransportError::Io(
                "connection closed by peer; an unfinished message of 4 bytes was dropped"
                    .to_owned()
            ))
        );
    })
    .await;
}
