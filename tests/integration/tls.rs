//! TLS control from a config file, through the `feedvisor` binary: a private
//! CA, names, `server_name`, pins, mutual TLS, `roots = "none"`,
//! `insecure_skip_verify`, and a CA certificate used as a server's own. Each
//! failure must explain itself in `/feeds` and count as
//! `feedvisor_connect_attempts_total{result="tls"}`.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use feedvisor_test_support::certificates::acceptor_for;
use feedvisor_test_support::websocket::RawWs;
use feedvisor_test_support::TestCertificates;
use rustls::ServerConfig;

use crate::support::{http_get, sample, wait_for_line, ChildGuard};

/// A wss (or, without a TLS config, ws) upstream on its own thread: each
/// connection gets "hello", then is served until the peer leaves. Stops when
/// dropped.
pub(crate) struct WssUpstream {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The head of every upgrade request, in order of arrival.
    pub(crate) heads: std::sync::mpsc::Receiver<String>,
    /// Dropping it ends the accept loop.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WssUpstream {
    pub(crate) fn start(config: Arc<ServerConfig>) -> WssUpstream {
        WssUpstream::start_with(Some(config))
    }

    /// A plain ws upstream.
    pub(crate) fn start_plain() -> WssUpstream {
        WssUpstream::start_with(None)
    }

    fn start_with(config: Option<Arc<ServerConfig>>) -> WssUpstream {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let (seen, heads) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let listener =
                    tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
                ready.send(listener.local_addr().expect("an address")).expect("test waits");
                let acceptor = config.map(acceptor_for);
                let accept_loop = async move {
                    while let Ok((socket, _)) = listener.accept().await {
                        let acceptor = acceptor.clone();
                        let seen = seen.clone();
                        actix_rt::spawn(async move {
                            match acceptor {
                                Some(acceptor) => {
                                    if let Ok(tls) = acceptor.accept(socket).await {
                                        greet(tls, seen).await;
                                    }
                                }
                                None => greet(socket, seen).await,
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept_loop => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = addr.recv_timeout(crate::support::DEADLINE).expect("the upstream started");
        WssUpstream { addr, heads, _stop: stop }
    }
}

/// Accepts the upgrade (handing its request head to `seen`), sends "hello"
/// and serves until the peer leaves.
async fn greet<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    socket: S,
    seen: std::sync::mpsc::Sender<String>,
) {
    let Ok((mut ws, head)) = RawWs::accept_with(socket, "", b"").await else { return };
    let _ = seen.send(head);
    if ws.send_text("hello").await.is_ok() {
        ws.serve(None).await;
    }
}

/// The `feedvisor` binary at `RUST_LOG=level`.
pub(crate) fn feedvisor(level: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedvisor"));
    command.env("RUST_LOG", level);
    for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"] {
        command.env_remove(name);
    }
    command
}

/// Writes `text` as a config file in a directory of the test's own.
pub(crate) fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("feedvisor-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config written");
    path
}

/// The admin address the sidecar logged.
pub(crate) fn admin_addr(stderr: &std::sync::mpsc::Receiver<String>) -> SocketAddr {
    let listening = wait_for_line(stderr, |line| line.contains("admin HTTP server listening"));
    listening
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"))
}

/// Polls `/feeds` until `done` holds for the feeds' JSON, within the deadline.
pub(crate) fn feeds_until(
    addr: SocketAddr,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    actix_rt::System::new().block_on(async move {
        let deadline = tokio::time::Instant::now() + crate::support::DEADLINE;
        loop {
            let (status, body) = http_get(addr, "/feeds").await;
            assert_eq!(status, 200, "{body}");
            let feeds: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if done(&feeds) {
                return feeds;
            }
            assert!(tokio::time::Instant::now() < deadline, "feeds never settled: {feeds:#}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
}

fn feed_status<'a>(feeds: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    feeds
        .as_array()
        .and_then(|feeds| feeds.iter().find(|feed| feed["name"] == name))
        .unwrap_or_else(|| panic!("no feed {name} in {feeds:#}"))
}

#[test]
fn every_tls_setting_connects_or_explains_its_refusal() {
    let certificates = TestCertificates::generate();
    let plain = WssUpstream::start(certificates.server_config(&[b"http/1.1"]));
    let mutual = WssUpstream::start(certificates.server_config_requiring_client(&[b"http/1.1"]));
    let ca_as_server =
        WssUpstream::start(certificates.server_config_presenting_the_ca(&[b"http/1.1"]));
    let ca = certificates.ca_file().display().to_string();
    let cert = certificates.client_cert_file().display().to_string();
    let key = certificates.client_key_file().display().to_string();
    let pin = certificates.server_pin();
    let other_pin = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (p, m, c) = (plain.addr.port(), mutual.addr.port(), ca_as_server.addr.port());
    let entry = |name: &str, url: String, tls: String| {
        format!(
            "[[feeds]]\nname = \"{name}\"\nurl = \"{url}\"\ntls = {{ {tls} }}\n\
             reconnect = {{ initial = \"50ms\", max = \"200ms\" }}\n"
        )
    };
    let opening = [
        entry("private-ca", format!("wss://localhost:{p}/"), format!("ca_file = \"{ca}\"")),
        entry(
            "server-name",
            format!("wss://127.0.0.1:{p}/"),
            format!("ca_file = \"{ca}\", server_name = \"localhost\""),
        ),
        entry(
            "pinned",
            format!("wss://localhost:{p}/"),
            format!("ca_file = \"{ca}\", pin_sha256 = [\"{pin}\"]"),
        ),
        entry(
            "mutual",
            format!("wss://localhost:{m}/"),
            format!("ca_file = \"{ca}\", client_cert = \"{cert}\", client_key = \"{key}\""),
        ),
        entry(
            "roots-none",
            format!("wss://localhost:{p}/"),
            format!("roots = \"none\", ca_file = \"{ca}\""),
        ),
        entry(
            "insecure",
            format!("wss://localhost:{p}/"),
            "insecure_skip_verify = true".to_owned(),
        ),
    ];
    let failing = [
        (entry("unknown-ca", format!("wss://localhost:{p}/"), String::new()), "unknown issuer"),
        (
            entry(
                "wrong-name",
                format!("wss://127.0.0.1:{p}/"),
                format!("ca_file = \"{ca}\", server_name = \"feed.example.com\""),
            ),
            "not valid for the name",
        ),
        (
            entry(
                "pin-mismatch",
                format!("wss://localhost:{p}/"),
                format!("ca_file = \"{ca}\", pin_sha256 = [\"{other_pin}\"]"),
            ),
            "pin mismatch",
        ),
        (
            entry("no-client-cert", format!("wss://localhost:{m}/"), format!("ca_file = \"{ca}\"")),
            "client certificate",
        ),
        (
            entry("ca-as-server", format!("wss://localhost:{c}/"), format!("ca_file = \"{ca}\"")),
            "CA certificate (basicConstraints CA:TRUE) as its own",
        ),
    ];
    let mut text = String::from("[http]\nlisten = \"127.0.0.1:0\"\n\n");
    for entry in &opening {
        text.push_str(entry);
    }
    for (entry, _) in &failing {
        text.push_str(entry);
    }
    text.push_str("[[subscribers]]\nname = \"print\"\nfeeds = [\"*\"]\nsink = \"stdout\"\n");
    let config = config_file("tls-cases.toml", &text);

    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&config));
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let feeds = feeds_until(addr, |feeds| {
        let opened = ["private-ca", "server-name", "pinned", "mutual", "roots-none", "insecure"]
            .iter()
            .all(|name| feed_status(feeds, name)["state"] == "open");
        let failed = failing.iter().all(|(entry, _)| {
            let name = entry.split('"').nth(1).unwrap_or_default();
            feed_status(feeds, name)["last_error"].is_string()
        });
        opened && failed
    });
    for (entry, words) in &failing {
        let name = entry.split('"').nth(1).unwrap_or_default();
        let status = feed_status(&feeds, name);
        assert_ne!(status["state"], "open", "{name}: {status:#}");
        let error = status["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{name}: {error:?} should say {words:?}");
    }
    let metrics = actix_rt::System::new().block_on(http_get(addr, "/metrics")).1;
    for (entry, _) in &failing {
        let name = entry.split('"').nth(1).unwrap_or_default();
        let labels = format!("feed=\"{name}\",result=\"tls\"");
        let count = sample(&metrics, "feedvisor_connect_attempts_total", &labels);
        assert!(count.is_some_and(|count| count >= 1.0), "{name}: {labels} in\n{metrics}");
    }
    let insecure = sample(&metrics, "feedvisor_tls_insecure_connects_total", "feed=\"insecure\"");
    assert!(insecure.is_some_and(|count| count >= 1.0), "insecure connects counted:\n{metrics}");
    wait_for_line(&stderr, |line| {
        line.contains("insecure_skip_verify = true") && line.contains("WARN")
    });
}

#[test]
fn check_refuses_a_key_given_as_ca_file_and_explains_it() {
    let certificates = TestCertificates::generate();
    let key = certificates.client_key_file().display().to_string();
    let config = config_file(
        "key-as-ca.toml",
        &format!(
            "[[feeds]]\nname = \"wrong-file\"\nurl = \"wss://localhost:1/\"\ntls = {{ ca_file = \"{key}\" }}\n"
        ),
    );
    let output = feedvisor("info").arg("check").arg(&config).output().expect("check ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check passed a key as ca_file: {stderr}");
    assert!(stderr.contains("feeds[0] (wrong-file).tls.ca_file"), "{stderr}");
    assert!(stderr.contains("holds a private key, not a certificate"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

#[test]
fn a_rotated_ca_file_is_picked_up_without_a_restart() {
    let certificates = TestCertificates::generate();
    let stranger = TestCertificates::generate();
    let upstream = WssUpstream::start(certificates.server_config(&[b"http/1.1"]));
    // The file first holds a CA that did not sign the server's certificate.
    let ca_copy = config_file("rotated-ca.pem", "");
    std::fs::copy(stranger.ca_file(), &ca_copy).expect("CA copied");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[[feeds]]\nname = \"rotating\"\n\
         url = \"wss://localhost:{}/\"\ntls = {{ ca_file = \"{}\" }}\n\
         reconnect = {{ initial = \"50ms\", max = \"200ms\" }}\n",
        upstream.addr.port(),
        ca_copy.display()
    );
    let config = config_file("rotated-ca.toml", &text);
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&config));
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    // Both test CAs carry one name: the issuer is found, its signature fails.
    let refused = feeds_until(addr, |feeds| {
        feeds[0]["last_error"].as_str().is_some_and(|error| error.contains("did not sign it"))
    });
    assert_ne!(refused[0]["state"], "open", "{refused:#}");

    // The right CA written over it: the next attempt trusts it, no reload asked.
    std::fs::copy(certificates.ca_file(), &ca_copy).expect("CA rotated");
    feeds_until(addr, |feeds| feeds[0]["state"] == "open");
    assert!(upstream.heads.recv_timeout(crate::support::DEADLINE).is_ok(), "the upgrade arrived");
}
