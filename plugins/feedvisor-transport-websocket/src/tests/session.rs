//! An open connection against a raw peer: batches, replies, closes and errors.

use std::time::{Duration, Instant};

use bytes::Bytes;
use feedvisor_transport_api::{
    CloseFrame, Connection, DataFrame, Event, Outbound, Transport, TransportError,
};
use futures_util::StreamExt;

use super::*;
use crate::WebSocketTransport;

/// Connects to a raw peer that upgrades and then writes `then`; returns both ends.
async fn open(then: &[u8]) -> (RawWs, Connection) {
    open_with(WebSocketTransport::new(), then).await
}

async fn open_with(transport: WebSocketTransport, then: &[u8]) -> (RawWs, Connection) {
    let (listener, url) = listen().await;
    let server = accept_upgrade(&listener, "", then);
    let client = transport.connect(request(&url));
    let ((stream, _), connection) = tokio::join!(server, client);
    (stream, connection.expect("connected"))
}

/// Reads batches until `count` events arrived; returns them and the number of batches.
async fn read_events(connection: &mut Connection, count: usize) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut batches = 0;
    while events.len() < count {
        let batch = connection.inbound.next().await.expect("stream open").expect("no error");
        batches += 1;
        events.extend(batch);
    }
    (events, batches)
}

#[actix_rt::test]
async fn frames_that_came_with_the_upgrade_answer_arrive_in_one_batch() {
    let mut frames = Vec::new();
    for i in 0..200 {
        frames.extend(encode_frame(0x81, format!("message {i}").as_bytes()));
    }
    within(async {
        let (_stream, mut connection) = open(&frames).await;
        let (events, batches) = read_events(&mut connection, 200).await;
        assert_eq!(events[199], Event::Data(DataFrame::text("message 199")));
        assert!(batches <= 2, "200 small frames read at once came in {batches} batches");
    })
    .await;
}

#[actix_rt::test]
async fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
    within(async {
        let (mut stream, mut connection) = open(&encode_frame(0x89, b"are you there?")).await;
        let (events, _) = read_events(&mut connection, 1).await;
        assert_eq!(events, vec![Event::Ping(Bytes::from("are you there?"))]);
        assert_eq!(read_client_frame(&mut stream).await, (0x8A, b"are you there?".to_vec()));
    })
    .await;
}

#[actix_rt::test]
async fn the_peers_close_is_answered_with_its_code_and_ends_the_stream() {
    let close = encode_frame(0x88, &close_payload(1001, "going away"));
    within(async {
        let (mut stream, mut connection) = open(&close).await;
        let (events, _) = read_events(&mut connection, 1).await;
        assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1001, "going away")))]);
        assert_eq!(read_client_close_code(&mut stream).await, Some(1001));
        assert!(connection.inbound.next().await.is_none(), "no more after the close");
        assert!(connection.outbound.is_closed());
    })
    .await;
}

#[actix_rt::test]
async fn invalid_utf8_is_a_protocol_error_and_the_client_closes_with_1007() {
    let frames =
        [encode_frame(0x81, b"fine"), encode_frame(0x81, &[b'n', b'o', 0xC3, 0x28])].concat();
    within(async {
        let (mut stream, mut connection) = open(&frames).await;
        let mut events = Vec::new();
        let error = loop {
            match connection.inbound.next().await.expect("stream open") {
                Ok(batch) => events.extend(batch),
                Err(error) => break error,
            }
        };
        assert_eq!(events, vec![Event::Data(DataFrame::text("fine"))]);
        assert!(matches!(error, TransportError::Protocol { close_code: 1007, .. }), "{error:?}");
        assert_eq!(read_client_close_code(&mut stream).await, Some(1007));
        assert!(connection.inbound.next().await.is_none(), "the stream ends after an error");
    })
    .await;
}

#[actix_rt::test]
async fn a_frame_announcing_256_mib_is_refused_and_the_client_closes_with_1009() {
    let mut header = vec![0x82, 127];
    header.extend_from_slice(&(256u64 << 20).to_be_bytes());
    within(async {
        let (mut stream, mut connection) = open(&header).await;
        let error = connection.inbound.next().await.expect("an item").expect_err("refused");
        assert_eq!(error, TransportError::FrameTooLarge { announced: 256 << 20, limit: 64 * 1024 });
        assert_eq!(read_client_close_code(&mut stream).await, Some(1009));
        assert!(connection.inbound.next().await.is_none());
    })
    .await;
}

#[actix_rt::test]
async fn a_peer_that_hangs_up_without_a_close_frame_is_an_io_error() {
    within(async {
        let (stream, mut connection) = open(&encode_frame(0x82, &[1, 2, 3])).await;
        drop(stream);
        let (events, _) = read_events(&mut connection, 1).await;
        assert_eq!(events, vec![Event::Data(DataFrame::binary(vec![1u8, 2, 3]))]);
        let error = connection.inbound.next().await.expect("an item").expect_err("closed");
        assert!(matches!(error, TransportError::Io(_)), "{error:?}");
        assert!(connection.inbound.next().await.is_none());
    })
    .await;
}

#[actix_rt::test]
async fn outbound_messages_are_sent_masked_and_our_close_waits_for_the_peers() {
    within(async {
        let (mut stream, mut connection) = open(b"").await;
        let outbound = connection.outbound.clone();
        outbound.send(Outbound::text("hello")).expect("queued");
        outbound.send(Outbound::Binary(Bytes::from_static(&[0, 1, 2]))).expect("queued");
        outbound.send(Outbound::Ping(Bytes::from_static(b"p"))).expect("queued");
        outbound.send(Outbound::Close(Some(CloseFrame::new(1000, "done")))).expect("queued");
        let peer = async {
            assert_eq!(read_client_frame(&mut stream).await, (0x81, b"hello".to_vec()));
            assert_eq!(read_client_frame(&mut stream).await, (0x82, vec![0, 1, 2]));
            assert_eq!(read_client_frame(&mut stream).await, (0x89, b"p".to_vec()));
            assert_eq!(read_client_frame(&mut stream).await, (0x88, close_payload(1000, "done")));
            let close = encode_frame(0x88, &close_payload(1000, ""));
            stream.write_raw(&close).await.expect("answer the close");
        };
        let (_, events) = tokio::join!(peer, async {
            let mut events = Vec::new();
            while let Some(batch) = connection.inbound.next().await {
                events.extend(batch.expect("no error"));
            }
            events
        });
        assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1000, "")))]);
        assert!(outbound.send(Outbound::text("late")).is_err(), "closed after the close");
    })
    .await;
}

#[actix_rt::test]
async fn our_close_ends_the_stream_after_the_close_timeout_if_the_peer_stays_silent() {
    within(async {
        let transport = WebSocketTransport::new().with_close_timeout(Duration::from_millis(200));
        let (mut stream, mut connection) = open_with(transport, b"").await;
        connection.outbound.send(Outbound::Close(None)).expect("queued");
        let started = Instant::now();
        let (close, end) = tokio::join!(read_client_frame(&mut stream), connection.inbound.next());
        assert_eq!(close, (0x88, Vec::new()));
        assert!(end.is_none(), "the stream ends quietly: {end:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    })
    .await;
}

#[actix_rt::test]
async fn a_close_frame_followed_by_a_hang_up_ends_the_stream_without_an_error() {
    let close = encode_frame(0x88, &close_payload(1000, ""));
    within(async {
        let (stream, mut connection) = open(&close).await;
        drop(stream);
        let mut items = Vec::new();
        while let Some(item) = connection.inbound.next().await {
            items.push(item);
        }
        assert_eq!(items, vec![Ok(vec![Event::Close(Some(CloseFrame::new(1000, "")))])]);
    })
    .await;
}

#[actix_rt::test]
async fn a_close_queued_just_before_the_consumer_lets_go_still_reaches_the_peer() {
    within(async {
        let (mut stream, connection) = open(&[]).await;
        let Connection { inbound, outbound, .. } = connection;
        let close = CloseFrame::new(1009, "message too big");
        outbound.send(Outbound::Close(Some(close))).expect("queued");
        drop(inbound);
        drop(outbound);
        assert_eq!(read_client_close_code(&mut stream).await, Some(1009));
    })
    .await;
}

#[actix_rt::test]
async fn a_consumer_that_lets_go_without_a_close_gets_one_sent_for_it() {
    within(async {
        let (mut stream, connection) = open(&[]).await;
        drop(connection);
        // Nothing arrives for the session to notice with: it notices by itself.
        assert_eq!(read_client_close_code(&mut stream).await, Some(1001));
    })
    .await;
}
