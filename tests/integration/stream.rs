//! Stream mode end to end: one 256 MiB binary message, sent as a single
//! frame by a real upstream, reaches a file intact through a stream-mode
//! feed and the file sink, in bounded memory.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::Sidecar;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::support::{eventually, RawServer, RawWs};

const SIZE: u64 = 256 << 20;
const SLICE: usize = 1 << 20;

/// A repeatable pseudo-random byte pattern (xorshift), so the test does not
/// hold the message: slice `n` is computed when it is written.
fn fill(slice: &mut [u8], state: &mut u64) {
    for chunk in slice.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[actix::test]
async fn a_256_mib_single_frame_message_reaches_the_file_sink_intact() {
    let sent_digest: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let digest_slot = sent_digest.clone();
    let upstream = RawServer::start(move |_, socket| {
        let digest_slot = digest_slot.clone();
        async move {
            let Ok(mut ws) = RawWs::accept(socket).await else { return };
            let mut header = vec![0x82, 127];
            header.extend_from_slice(&SIZE.to_be_bytes());
            if ws.socket.write_all(&header).await.is_err() {
                return;
            }
            let mut hasher = Sha256::new();
            let mut state = 0x2545_f491_4f6c_dd1d_u64;
            let mut slice = vec![0u8; SLICE];
            for _ in 0..SIZE / SLICE as u64 {
                fill(&mut slice, &mut state);
                hasher.update(&slice);
                if ws.socket.write_all(&slice).await.is_err() {
                    return;
                }
            }
            *digest_slot.lock().expect("digest") = Some(hasher.finalize().to_vec());
            // Keep the connection open: the message is complete without a close.
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
    })
    .await;
    let dir = std::env::temp_dir().join(format!("feedvisor-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("output directory");
    let config = format!(
        r#"
[[feeds]]
name = "bulk"
url = "ws://{addr}/"
mode = "stream"
chunk_size = "64KiB"
heartbeat = {{ interval = "0s" }}

[[subscribers]]
name = "disk"
feeds = ["bulk"]
sink = "file"
layout = "per_message"
path = "{dir}"
queue = 16
overflow = "backpressure"
"#,
        addr = upstream.addr,
        dir = dir.display()
    );
    let config = Config::from_toml_str(
        &config,
        Path::new("stream.toml"),
        &TransportRegistry::with_defaults(),
    )
    .expect("valid config");
    let sidecar = Sidecar::builder(config).without_http().start().await.expect("started");

    let finished = eventually(Duration::from_secs(300), "the message file", || {
        let dir = dir.clone();
        async move {
            let entries = std::fs::read_dir(&dir).ok()?;
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| path.extension().is_some_and(|ext| ext == "bin"))
        }
    })
    .await;
    assert_eq!(std::fs::metadata(&finished).expect("file").len(), SIZE);
    let mut file = std::fs::File::open(&finished).expect("readable");
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).expect("hashed");
    let received = hasher.finalize().to_vec();
    let sent = sent_digest.lock().expect("digest").clone().expect("the upstream sent everything");
    assert_eq!(received, sent, "the file differs from what was sent");
    let name = finished.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with("bulk-1-"), "{name}");

    sidecar.stop().await;
    upstream.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one whole binary message from the client side, frame by frame; returns
/// its fragments' sizes and the SHA-256 of its bytes.
async fn read_fragmented_message(ws: &mut RawWs) -> Option<(Vec<usize>, Vec<u8>)> {
    let mut sizes = Vec::new();
    let mut hasher = Sha256::new();
    loop {
        let frame = ws.read_frame().await.ok()??;
        match frame.opcode {
            0x2 | 0x0 => {
                sizes.push(frame.payload.len());
                hasher.update(&frame.payload);
                if frame.fin {
                    return Some((sizes, hasher.finalize().to_vec()));
                }
            }
            // Pings and the like may come between fragments.
            _ => {}
        }
    }
}

#[actix::test]
async fn a_large_binary_body_goes_upstream_in_fragments_as_it_arrives() {
    const BODY: usize = 8 << 20;
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let upstream = RawServer::start(move |_, socket| {
        let sender = sender.clone();
        async move {
            let Ok(mut ws) = RawWs::accept(socket).await else { return };
            if let Some(message) = read_fragmented_message(&mut ws).await {
                let _ = sender.send(message);
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    })
    .await;
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[[feeds]]\nname = \"out\"\nurl = \"ws://{}/\"\nheartbeat = {{ interval = \"0s\" }}\n",
        upstream.addr
    );
    let config =
        Config::from_toml_str(&config, Path::new("send.toml"), &TransportRegistry::with_defaults())
            .expect("valid config");
    let sidecar = Sidecar::builder(config).start().await.expect("started");
    let addr = sidecar.http_addr().expect("http");
    eventually(Duration::from_secs(30), "the feed to open", || async {
        let feeds = sidecar.feeds().await;
        (feeds[0].state == feedvisor::FeedState::Open).then_some(())
    })
    .await;

    // The body is streamed by the client in 1 MiB pieces, never whole in the sidecar.
    let mut state = 7u64;
    let mut expected = Sha256::new();
    let mut pieces = Vec::new();
    for _ in 0..BODY / SLICE {
        let mut slice = vec![0u8; SLICE];
        fill(&mut slice, &mut state);
        expected.update(&slice);
        pieces.push(Ok::<_, std::io::Error>(bytes::Bytes::from(slice)));
    }
    let body = futures_util::stream::iter(pieces);
    let client = awc::Client::default();
    let mut response = client
        .post(format!("http://{addr}/feeds/out/send"))
        .insert_header(("Content-Type", "application/octet-stream"))
        .send_stream(body)
        .await
        .expect("request sent");
    assert_eq!(response.status().as_u16(), 200);
    let answer: serde_json::Value =
        serde_json::from_slice(&response.body().await.expect("body")).expect("json");
    assert_eq!(answer["bytes"], BODY as u64);

    let (sizes, digest) = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .expect("in time")
        .expect("the upstream read a message");
    assert_eq!(digest, expected.finalize().to_vec(), "the bytes arrived intact");
    assert!(sizes.len() > 100, "sent as many fragments, not one frame: {}", sizes.len());
    assert!(sizes.iter().all(|size| *size <= 64 << 10), "fragments of at most 64 KiB");
    sidecar.stop().await;
    upstream.stop().await;
}
