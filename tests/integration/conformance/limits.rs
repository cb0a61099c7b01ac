//! The limits cases measured: the `feedvisor` binary, run from a TOML file
//! as a user runs it, with one `ws://` feed to a hostile upstream that
//! announces a 256 MiB frame, then one of 2^63-1 bytes, and keeps writing
//! payload (up to [`PAYLOAD_SENT`]) until the feed closes. The feed must
//! refuse each frame from its header (close 1009) and the process's peak
//! resident memory (`VmHWM`, reset before each case) must stay under
//! [`GROWTH_LIMIT_KIB`] above its resident memory before the case. A client
//! that buffered the frame before checking its length would hold the
//! payload it read: tens of MiB.
//!
//! How long the refusal took is printed, not asserted (`--nocapture`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use feedvisor_test_support::net::listen_loopback;
use feedvisor_test_support::websocket::{frame_header, parse_client_frame, RawFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

use crate::support::{
    encode_frame, opcode, proc_status_field, refused_addr, until_ready, ChildGuard, RawWs,
    DEADLINE, FIN,
};

/// Growth of peak resident memory allowed per case (the bound).
const GROWTH_LIMIT_KIB: u64 = 8 * 1024;
/// Payload the upstream writes after the header unless the feed closes first.
const PAYLOAD_SENT: usize = 48 << 20;
/// Size of each payload write.
const WRITE: usize = 64 << 10;
/// `Message Too Big` (RFC 6455 section 7.4.1).
const MESSAGE_TOO_BIG: u16 = 1009;

fn config_file(upstream: SocketAddr, admin: SocketAddr) -> PathBuf {
    let text = format!(
        "[http]\nlisten = \"{admin}\"\n\n[[feeds]]\nname = \"limits\"\nurl = \"ws://{upstream}/limits\"\n\
         max_message_size = \"1MiB\"\nreconnect = {{ policy = \"fixed\", initial = \"50ms\", jitter = \"none\" }}\n"
    );
    let dir = std::env::temp_dir().join(format!("feedvisor-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("limits.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

/// Empties the kernel's peak resident set (`VmHWM`) of `pid`, so that the
/// next reading is the peak of what follows.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the child's VmHWM");
}

/// Reads client frames until a close frame (returned), the end of the
/// stream or an error (`None`).
async fn next_close(reader: &mut OwnedReadHalf) -> Option<RawFrame> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((frame, taken)) = parse_client_frame(&buffer).ok()? {
            buffer.drain(..taken);
            if frame.opcode == opcode::CLOSE {
                return Some(frame);
            }
        }
        let read = reader.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

#[actix::test]
async fn frames_announcing_256_mib_and_2_pow_63_are_refused_without_memory_growth() {
    let (listener, upstream) = listen_loopback().await;
    let admin = refused_addr();
    let mut sidecar = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_feedvisor"))
            .args(["run", "--config"])
            .arg(config_file(upstream, admin))
            .env("RUST_LOG", "error"),
    );
    let pid = sidecar.child.id();
    // Drained so that the child never blocks on a full pipe.
    let (_out, _err) = (sidecar.stdout_lines(), sidecar.stderr_lines());

    for (case, announced) in [("256 MiB", 256u64 << 20), ("2^63-1 bytes", (1u64 << 63) - 1)] {
        let (socket, _) = tokio::time::timeout(DEADLINE, listener.accept())
            .await
            .expect("the feed connects in time")
            .expect("accepted");
        let ws = RawWs::accept(socket).await.expect("handshake answered");
        until_ready(admin).await;
        let before_kib = proc_status_field(pid, "VmRSS:");
        reset_peak(pid);

        let (mut reader, mut writer) = ws.socket.into_split();
        let started = Instant::now();
        writer.write_all(&frame_header(FIN | opcode::BINARY, announced)).await.expect("header");
        // The payload follows as a peer would send it, until the feed
        // closes or stops reading; its close ends the writing.
        let writing = tokio::spawn(async move {
            let chunk = vec![0x5a; WRITE];
            let mut sent = 0;
            while sent < PAYLOAD_SENT && writer.write_all(&chunk).await.is_ok() {
                sent += WRITE;
            }
            writer
        });
        let close = tokio::time::timeout(DEADLINE, next_close(&mut reader))
            .await
            .unwrap_or_else(|_| panic!("{case}: no close frame in time"));
        let refused_after = started.elapsed();
        writing.abort();
        let close = close.unwrap_or_else(|| panic!("{case}: the connection ended without a close"));
        assert_eq!(close.close_code(), Some(MESSAGE_TOO_BIG), "{case}: close code");
        // Answer the close as a peer does when the writing had ended
        // (else the aborted writer's half closes, which ends it too).
        if let Ok(mut writer) = writing.await {
            let _ = writer.write_all(&encode_frame(FIN | opcode::CLOSE, &close.payload)).await;
        }
        drop(reader);

        let peak_kib = proc_status_field(pid, "VmHWM:");
        let growth_kib = peak_kib.saturating_sub(before_kib);
        eprintln!(
            "limits: a header announcing {case}: close {MESSAGE_TOO_BIG} after {refused_after:?}, \
             peak RSS {before_kib} KiB -> {peak_kib} KiB (+{growth_kib} KiB)"
        );
        assert!(
            growth_kib < GROWTH_LIMIT_KIB,
            "{case}: peak RSS grew by {growth_kib} KiB (from {before_kib} KiB), \
             over the {GROWTH_LIMIT_KIB} KiB allowed"
        );
    }
}
