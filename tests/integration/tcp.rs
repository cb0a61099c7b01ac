//! `tcp://` feeds through the same core as WebSocket ones: message mode split
//! by lines, and stream mode passing raw bytes through as chunks.

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{DataKind, Sidecar, SubscriptionSpec};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::support::{collect, Collector, RawServer};

async fn start(feed: &str) -> (Sidecar, mpsc::UnboundedReceiver<feedvisor::FeedMessage>) {
    let config =
        Config::from_toml_str(feed, Path::new("tcp.toml"), &TransportRegistry::with_defaults())
            .expect("valid config");
    let (sender, receiver) = mpsc::unbounded_channel();
    let sidecar = Sidecar::builder(config)
        .without_http()
        .subscriber(SubscriptionSpec::new("c", ["*"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("started");
    (sidecar, receiver)
}

#[actix::test]
async fn a_tcp_feed_in_message_mode_delivers_lines_in_order() {
    let upstream = RawServer::start(|_, mut socket| async move {
        let _ = socket.write_all(b"{\"n\":1}\n{\"n\":2}\r\n").await;
        let _ = socket.write_all(b"{\"n\":3}\n").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let feed = format!(
        "[[feeds]]\nname = \"lines\"\nurl = \"tcp://{}\"\nframing = \"lines\"\ntopic = \"/n\"\n",
        upstream.addr
    );
    let (sidecar, mut receiver) = start(&feed).await;
    let messages = collect(&mut receiver, 3).await;
    let texts: Vec<&str> = messages.iter().filter_map(|m| m.text()).collect();
    assert_eq!(texts, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    let topics: Vec<Option<&str>> = messages.iter().map(|m| m.topic.as_deref()).collect();
    assert_eq!(topics, [Some("1"), Some("2"), Some("3")]);
    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn a_tcp_feed_in_stream_mode_passes_bytes_through_as_chunks() {
    const SIZE: usize = 1 << 20;
    let upstream = RawServer::start(|index, mut socket| async move {
        if index == 0 {
            let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
            let _ = socket.write_all(&data).await;
            let _ = socket.shutdown().await;
        } else {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let feed = format!(
        "[[feeds]]\nname = \"raw\"\nurl = \"tcp://{}\"\nmode = \"stream\"\nchunk_size = \"16KiB\"\n\
         reconnect = {{ policy = \"fixed\", initial = \"50ms\", jitter = \"none\" }}\n",
        upstream.addr
    );
    let (sidecar, mut receiver) = start(&feed).await;
    let mut bytes = Vec::with_capacity(SIZE);
    let last = loop {
        let message = collect(&mut receiver, 1).await.remove(0);
        let chunk = message.chunk.expect("stream mode chunks");
        assert_eq!(message.kind, DataKind::Binary);
        assert!(message.payload.len() <= 16 << 10);
        assert_eq!(chunk.offset, bytes.len() as u64, "chunks in order");
        bytes.extend_from_slice(&message.payload);
        if chunk.last {
            break chunk;
        }
    };
    assert!(!last.aborted, "a clean close ends the message");
    assert_eq!(bytes.len(), SIZE);
    assert!(bytes.iter().enumerate().all(|(i, byte)| *byte == (i % 251) as u8), "bytes intact");
    // The closed connection is followed by a reconnect, as for any feed.
    crate::support::eventually(Duration::from_secs(30), "a reconnect", || async {
        (upstream.accepted() >= 2).then_some(())
    })
    .await;
    sidecar.stop().await;
    upstream.stop().await;
}
