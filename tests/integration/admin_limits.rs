//! The admin side's own TLS and its limits, through the `feedvisor` binary:
//! https and wss with `[http.tls]`, `/subscribe` over its client limit
//! answered 503 while `/healthz` stays reachable, `max_connections` keeping a
//! reserve, and the open-file limit checked at start.

use std::process::Command;
use std::sync::Arc;

use awc::http::Method;
use feedvisor_test_support::TestCertificates;
use futures_util::StreamExt;

use crate::lockdown::{admin_request, subscribe_status};
use crate::support::{http_get, sample, wait_for_line, ChildGuard, DEADLINE};
use crate::tls::{admin_addr, config_file, feedvisor, WssUpstream};

/// An awc client that trusts only the test CA.
fn client_trusting(certificates: &TestCertificates) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificates.ca_certificate()).expect("the test CA is a valid root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    awc::Client::builder().connector(awc::Connector::new().rustls_0_23(Arc::new(config))).finish()
}

#[test]
fn the_admin_side_serves_https_and_wss_with_its_own_certificate() {
    let certificates = TestCertificates::generate();
    let upstream = WssUpstream::start_plain();
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[http.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [[feeds]]\nname = \"quotes\"\nurl = \"ws://{}/\"\n",
        certificates.server_cert_file().display(),
        certificates.server_key_file().display(),
        upstream.addr
    );
    let config = config_file("https.toml", &text);
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&config));
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let port = addr.port();
    actix_rt::System::new().block_on(async move {
        let client = client_trusting(&certificates);
        let url = format!("https://localhost:{port}/healthz");
        let mut response = tokio::time::timeout(DEADLINE, client.get(&url).send())
            .await
            .expect("answer in time")
            .expect("https request");
        assert_eq!(response.status().as_u16(), 200);
        let body = response.body().await.expect("body");
        assert!(String::from_utf8_lossy(&body).contains("ok"), "{body:?}");

        // Plain HTTP gets no answer from a TLS port.
        let plain = awc::Client::default().get(format!("http://127.0.0.1:{port}/healthz")).send();
        let plain = tokio::time::timeout(DEADLINE, plain).await.expect("refused in time");
        assert!(plain.is_err(), "plain HTTP answered on the https port");

        // wss /subscribe: the feed's next "hello" arrives through it.
        let url = format!("wss://localhost:{port}/subscribe?feed=quotes");
        let (_, mut socket) = tokio::time::timeout(DEADLINE, client.ws(url).connect())
            .await
            .expect("upgrade in time")
            .expect("wss upgrade");
        let reconnect =
            client.post(format!("https://localhost:{port}/feeds/quotes/reconnect")).send();
        let status =
            tokio::time::timeout(DEADLINE, reconnect).await.expect("in time").expect("sent");
        assert!(status.status().is_success(), "{}", status.status());
        let frame = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a message in time")
            .expect("a frame")
            .expect("a valid frame");
        let awc::ws::Frame::Text(text) = frame else { panic!("not text: {frame:?}") };
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(text.contains("hello") && text.contains("quotes"), "{text}");
    });
}

#[test]
fn check_refuses_http_tls_files_that_do_not_make_a_server_identity() {
    let certificates = TestCertificates::generate();
    // The CA's certificate with the server's key: a pair that does not match.
    let config = config_file(
        "https-mismatch.toml",
        &format!(
            "[http.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            certificates.ca_file().display(),
            certificates.server_key_file().display()
        ),
    );
    let output = feedvisor("info").arg("check").arg(&config).output().expect("check ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check accepted a mismatched pair: {stderr}");
    assert!(stderr.contains("http.tls"), "{stderr}");
    assert!(stderr.contains("is the key the certificate's?"), "{stderr}");

    let missing = config_file(
        "https-missing.toml",
        "[http.tls]\ncert = \"/nonexistent/admin.pem\"\nkey = \"/nonexistent/admin.key\"\n",
    );
    let output = feedvisor("info").arg("check").arg(&missing).output().expect("check ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot read certificates from /nonexistent/admin.pem"), "{stderr}");
}

#[test]
fn subscribe_over_its_limit_is_answered_503_and_healthz_still_answers() {
    let text = "[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 19\n\n\
                [http.subscribe]\nmax_clients = 3\n";
    let config = config_file("subscribe-full.toml", text);
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&config));
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let system = actix_rt::System::new();
    let statuses = system.block_on(async move {
        // The three clients that fit stay connected while forty more try.
        let mut held = Vec::new();
        for _ in 0..3 {
            let url = format!("ws://{addr}/subscribe");
            let (_, socket) = awc::Client::default().ws(url).connect().await.expect("a place");
            held.push(socket);
        }
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let url = format!("ws://{addr}/subscribe");
            let attempt = tokio::time::timeout(DEADLINE, awc::Client::default().ws(url).connect());
            statuses.push(match attempt.await.expect("an answer in time") {
                Ok(_) => 101,
                Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
                Err(error) => panic!("{error}"),
            });
        }
        let (health, _) = http_get(addr, "/healthz").await;
        let (_, metrics) = http_get(addr, "/metrics").await;
        drop(held);
        (statuses, health, metrics)
    });
    let (statuses, health, metrics) = statuses;
    assert!(statuses.iter().all(|status| *status == 503), "{statuses:?}");
    assert_eq!(health, 200, "/healthz while /subscribe is full");
    let refused = sample(&metrics, "feedvisor_subscribe_refused_total", "reason=\"max_clients\"");
    assert_eq!(refused, Some(40.0), "{metrics}");
    assert!(metrics.contains("feedvisor_http_connections_max 19"), "{metrics}");
    let open = metrics.lines().find_map(|line| line.strip_prefix("feedvisor_http_connections "));
    let open: f64 = open.and_then(|value| value.trim().parse().ok()).expect("the gauge");
    assert!((4.0..=19.0).contains(&open), "the three clients and this scrape at least: {open}");
    // The clients gone, a fourth fits.
    let deadline = std::time::Instant::now() + DEADLINE;
    while subscribe_status(addr, "/subscribe", None) != 101 {
        assert!(std::time::Instant::now() < deadline, "no place freed by the clients that left");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(admin_request(addr, Method::GET, "/healthz", None, ""), 200);
}

#[test]
fn max_connections_without_a_reserve_beside_subscribe_is_refused_at_load() {
    let config = config_file(
        "no-reserve.toml",
        "[http]\nmax_connections = 10\n\n[http.subscribe]\nmax_clients = 10\n",
    );
    let output = feedvisor("info").arg("check").arg(&config).output().expect("check ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("http.max_connections"), "{stderr}");
    assert!(stderr.contains("set at least 26"), "{stderr}");
}

/// The binary under `ulimit` settings `limits` (for `sh`), running `config`.
fn feedvisor_with_ulimit(limits: &str, config: &std::path::Path) -> Command {
    let binary = env!("CARGO_BIN_EXE_feedvisor");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" run --config \"$1\""))
        .arg(binary)
        .arg(config)
        .env("RUST_LOG", "info");
    command
}

#[test]
fn an_open_file_limit_too_low_for_max_connections_is_refused_with_what_to_do() {
    let config =
        config_file("fd-limit.toml", "[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 400\n");
    // Hard and soft at 300: 400 connections need 64 + 800 files.
    let output = feedvisor_with_ulimit("ulimit -n 300", &config).output().expect("ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with too few files: {stderr}");
    assert!(stderr.contains("may need 864 open files"), "{stderr}");
    assert!(stderr.contains("ulimit -n 864"), "{stderr}");

    // Only the soft limit low: it is raised, and the sidecar serves.
    let mut sidecar = ChildGuard::spawn(&mut feedvisor_with_ulimit("ulimit -Sn 300", &config));
    let stderr = sidecar.stderr_lines();
    let raised = wait_for_line(&stderr, |line| line.contains("raised the open-file limit"));
    assert!(raised.contains("from=300"), "{raised}");
    let addr = admin_addr(&stderr);
    assert_eq!(admin_request(addr, Method::GET, "/healthz", None, ""), 200);
}
