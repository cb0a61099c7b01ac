//! Stream mode: the connection is one binary message, handed over in pieces.

use std::cell::Cell;
use std::pin::pin;

use bytes::Bytes;
use feedvisor_test_support::compliance::pseudo_random;
use feedvisor_transport_api::{DataFrame, Opcode, Outbound};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn stream_mode(chunk_size: usize) -> impl FnOnce(&mut ConnectRequest) {
    move |request| {
        request.mode = DeliveryMode::Stream { chunk_size };
        // Stream mode has no frame size limit and ignores the framing.
        request.max_frame_size = 16;
        request.framing = Framing::LengthPrefixed;
    }
}

#[actix_rt::test]
async fn several_mib_pass_through_in_order_in_pieces_of_at_most_the_chunk_size() {
    const CHUNK: usize = 10_000;
    let data = pseudo_random(6 << 20);
    within(async {
        let (mut stream, mut connection) = open(stream_mode(CHUNK)).await;
        let peer = async {
            // Writes of many sizes, so that pieces and writes do not line up.
            let mut rest = &data[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(size.min(rest.len()));
                stream.write_all(now).await.expect("write");
                rest = later;
                size = size * 7 % 65_521 + 1;
            }
            stream.shutdown().await.expect("shut down our side");
            stream
        };
        let client = async {
            let mut pieces = Vec::new();
            let mut batch_count = 0;
            while let Some(batch) = connection.inbound.next().await {
                let batch = batch.expect("no error");
                let data_len: usize = batch
                    .iter()
                    .map(|event| match event {
                        Event::Data(frame) => frame.payload.len(),
                        _ => 0,
                    })
                    .sum();
                assert!(data_len <= CHUNK, "a batch of {data_len} bytes");
                batch_count += 1;
                pieces.extend(batch);
            }
            (pieces, batch_count)
        };
        let (_stream, (mut events, batches)) = tokio::join!(peer, client);
        assert!(batches >= data.len() / CHUNK, "{batches} batches");
        assert_eq!(events.pop(), Some(Event::Close(None)), "a clean close ends it");
        let mut received = Vec::with_capacity(data.len());
        for (i, event) in events.iter().enumerate() {
            let Event::Data(frame) = event else { panic!("piece {i} is {event:?}") };
            let opcode = if i == 0 { Opcode::Binary } else { Opcode::Continuation };
            assert_eq!(frame.opcode, opcode, "piece {i}");
            assert_eq!(frame.fin, i == events.len() - 1, "only the last piece is fin");
            assert!(frame.payload.len() <= CHUNK, "piece {i} of {}", frame.payload.len());
            received.extend_from_slice(&frame.payload);
        }
        assert_eq!(received.len(), data.len());
        assert!(received == data, "the bytes arrived changed or out of order");
    })
    .await;
}

#[actix_rt::test]
async fn a_peer_that_sends_nothing_and_closes_is_one_empty_message() {
    within(async {
        let (stream, mut connection) = open(stream_mode(1024)).await;
        drop(stream);
        let (events, error) = read_to_end(&mut connection).await;
        assert_eq!(error, None);
        assert_eq!(events, vec![Event::Data(DataFrame::binary(Bytes::new())), Event::Close(None)]);
    })
    .await;
}

#[actix_rt::test]
async fn outbound_bytes_pass_through_raw() {
    within(async {
        let (mut stream, mut connection) = open(stream_mode(1024)).await;
        let outbound = connection.outbound.clone();
        outbound.send(Outbound::text("no\nframing")).expect("queued");
        outbound.send(Outbound::Binary(Bytes::from_static(&[0, 1, 2]))).expect("queued");
        outbound.send(Outbound::Close(None)).expect("queued");
        let peer = async {
            let mut received = Vec::new();
            stream.read_to_end(&mut received).await.expect("read to our shutdown");
            drop(stream);
            received
        };
        let (received, (events, error)) = tokio::join!(peer, read_to_end(&mut connection));
        assert_eq!(received, b"no\nframing\x00\x01\x02");
        assert_eq!(error, None);
        assert_eq!(events.last(), Some(&Event::Close(None)));
    })
    .await;
}

#[actix_rt::test]
async fn a_consumer_that_does_not_read_pauses_reading_and_so_the_peer() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 16 * 1024;
    within(async {
        let (mut stream, mut connection) = open(stream_mode(CHUNK)).await;
        let written = Cell::new(0);
        let mut peer = pin!(async {
            let piece = vec![5u8; 64 * 1024];
            while written.get() < TOTAL {
                stream.write_all(&piece).await.expect("write");
                written.set(written.get() + piece.len());
            }
            stream.shutdown().await.expect("shut down");
        });
        // Nobody reads: the peer gets stuck once the socket buffers and the
        // inbound queue are full.
        let stalled = tokio::time::timeout(Duration::from_millis(500), peer.as_mut()).await;
        assert!(stalled.is_err(), "64 MiB were written while nobody read");
        let stuck_at = written.get();
        assert!(stuck_at < TOTAL / 2, "{stuck_at} bytes written while nobody read");
        let client = async {
            let mut received = 0;
            while let Some(batch) = connection.inbound.next().await {
                for event in batch.expect("no error") {
                    if let Event::Data(frame) = event {
                        received += frame.payload.len();
                    }
                }
            }
            received
        };
        let ((), received) = tokio::join!(peer, client);
        assert_eq!(received, TOTAL);
    })
    .await;
}
