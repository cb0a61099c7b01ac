//! The `feedvisor` command as a user runs it: `run` against a third-party
//! WebSocket server, `check` on good and bad files, and the offline `demo`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine;

use crate::support::{http_get, sample, spawn_demo, wait_for_line, ChildGuard, DEADLINE};

/// The `feedvisor` binary under test, logging at `info`.
pub(crate) fn feedvisor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedvisor"));
    command.env("RUST_LOG", "info");
    command
}

/// Writes `text` to a file `name` in this test run's temporary directory.
pub(crate) fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("feedvisor-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config written");
    path
}

/// The payload of a stdout sink line as text (binary payloads are base64).
fn payload_text(line: &serde_json::Value) -> String {
    let payload = line["payload"].as_str().expect("payload string");
    match line["kind"].as_str() {
        Some("text") => payload.to_owned(),
        Some("binary") => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(payload).expect("base64");
            String::from_utf8(bytes).expect("utf-8 inside binary")
        }
        other => panic!("unexpected kind {other:?}"),
    }
}

#[test]
fn run_against_python_websockets_delivers_every_message_in_order_to_stdout() {
    const COUNT: usize = 300;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_sequence_server.py");
    let mut peer = ChildGuard::spawn(Command::new("python3").arg(script).arg(COUNT.to_string()));
    let peer_stderr = peer.stderr_lines();
    let port_line = peer.stdout_lines().recv_timeout(DEADLINE).unwrap_or_else(|_| {
        let errors: Vec<String> = peer_stderr.try_iter().collect();
        panic!(
            "the Python peer did not start (it needs `pip install websockets`, which .ci/run does): {}",
            errors.join("\n")
        )
    });
    let port: u16 = port_line.trim().parse().expect("port number");
    let config = temp_config(
        "python-peer.toml",
        &format!(
            r#"
[http]
listen = "127.0.0.1:0"

[[feeds]]
name = "python"
url = "ws://127.0.0.1:{port}/"
topic = "/symbol"

[[subscribers]]
name = "print"
feeds = ["python"]
sink = "stdout"
"#
        ),
    );
    let mut sidecar = ChildGuard::spawn(feedvisor().arg("run").arg("--config").arg(&config));
    let lines = sidecar.stdout_lines();
    for seq in 0..COUNT {
        let line = wait_for_line(&lines, |_| true);
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(value["feed"], "python");
        assert_eq!(value["topic"], format!("SYM{}", seq % 3));
        let expected_kind = if seq % 5 == 4 { "binary" } else { "text" };
        assert_eq!(value["kind"], expected_kind, "message {seq}");
        let inner: serde_json::Value = serde_json::from_str(&payload_text(&value)).expect("JSON");
        assert_eq!(inner["seq"], seq, "message {seq} out of order");
        assert!(value["received_at"].as_str().is_some_and(|at| at.ends_with('Z')));
    }
    // Closing the peer's stdin stops it.
    drop(peer.child.stdin.take());
}

#[test]
fn check_prints_what_it_understood() {
    let config = temp_config(
        "good.toml",
        r#"
[[feeds]]
name = "stocks"
url = "ws://127.0.0.1:8080/ticks"
headers = { "X-Api-Key" = "${FEEDVISOR_TEST_SECRET}" }

[[subscribers]]
name = "print"
feeds = ["stocks"]
topics = ["AAPL"]
sink = "stdout"
"#,
    );
    let output = feedvisor()
        .arg("check")
        .arg(&config)
        .env("FEEDVISOR_TEST_SECRET", "hunter2-secret")
        .output()
        .expect("check ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("stocks") && stdout.contains("ws://127.0.0.1:8080/ticks"), "{stdout}");
    assert!(stdout.contains("print") && stdout.contains("AAPL"), "{stdout}");
    assert!(stdout.contains("X-Api-Key"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "a secret was printed: {stdout}");
}

#[test]
fn check_on_a_bad_file_names_the_field_and_fails() {
    let config = temp_config(
        "bad.toml",
        r#"
[[feeds]]
name = "weather"
url = "http://127.0.0.1/x"
mode = "message"
"#,
    );
    let output = feedvisor().arg("check").arg(&config).output().expect("check ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("feeds[0]") && stderr.contains("url"), "{stderr}");
}

#[test]
fn demo_prints_ticks_from_both_feeds_and_serves_metrics_and_feeds() {
    let mut demo = spawn_demo("20ms");
    let stdout = demo.stdout_lines();
    let stderr = demo.stderr_lines();
    let mut feeds_seen = HashSet::new();
    while feeds_seen.len() < 2 {
        let line = wait_for_line(&stdout, |_| true);
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let inner: serde_json::Value =
            serde_json::from_str(value["payload"].as_str().expect("text")).expect("JSON tick");
        match value["feed"].as_str() {
            Some("stocks") => assert!(inner["symbol"].is_string() && inner["price"].is_number()),
            Some("weather") => assert!(inner["city"].is_string() && inner["temp_c"].is_number()),
            other => panic!("unexpected feed {other:?}"),
        }
        assert!(inner["ts"].is_u64());
        feeds_seen.insert(value["feed"].as_str().unwrap_or_default().to_owned());
    }
    let listening = wait_for_line(&stderr, |line| line.contains("admin HTTP server listening"));
    let addr: std::net::SocketAddr = listening
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"));
    actix_rt::System::new().block_on(async move {
        let (status, feeds) = http_get(addr, "/feeds").await;
        assert_eq!(status, 200);
        let feeds: serde_json::Value = serde_json::from_str(&feeds).expect("JSON");
        for feed in feeds.as_array().expect("array") {
            assert_eq!(feed["state"], "open", "{feed}");
        }
        let (status, metrics) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        for feed in ["stocks", "weather"] {
            let labels = format!(r#"feed="{feed}",kind="text""#);
            let count = sample(&metrics, "feedvisor_messages_received_total", &labels);
            assert!(count.is_some_and(|count| count >= 1.0), "{feed}: {count:?}");
        }
    });
    // SIGTERM: the demo shuts down cleanly and exits 0.
    let pid = demo.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill ran");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(status) = demo.child.try_wait().expect("wait") {
            assert!(status.success(), "demo exited with {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "demo did not exit after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
