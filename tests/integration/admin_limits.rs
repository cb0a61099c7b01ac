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
        let mut next_text = async || {
            let frame = tokio::time::timeout(DEADLINE, socket.next())
                .await
                .expect("a message in time")
                .expect("a frame")
                .expect("a valid frame");
            let awc::ws::Frame::Text(text) = frame else { panic!("not text: {frame:?}") };
            String::from_utf8_lossy(&text).into_owned()
        };
        // The reconnect is announced first: the feed has no sequence numbers.
        let event = next_text().await;
        assert!(event.contains(r#""type":"discontinuity""#), "{event}");
        assert!(event.contains(r#""reason":"reconnect""#), "{event}");
        let text = next_text().await;
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

/// An upstream that answers every upgrade with 503 and `Retry-After:
/// retry_after`, on its own thread; counts the requests it answered.
fn unavailable_upstream(
    retry_after: &'static str,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("an address");
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { break };
            let _ = socket.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes());
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, answered)
}

#[test]
fn a_retry_after_of_years_is_capped_shown_in_feeds_and_counted() {
    let (years, _) = unavailable_upstream("99999999999");
    let (short, answered) = unavailable_upstream("99999999999");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n\
         [[feeds]]\nname = \"default-cap\"\nurl = \"ws://{years}/\"\n\n\
         [[feeds]]\nname = \"short-cap\"\nurl = \"ws://{short}/\"\n\
         reconnect = {{ initial = \"10ms\", max = \"20ms\", max_retry_after = \"100ms\" }}\n"
    );
    let config = config_file("retry-after.toml", &text);
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&config));
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let feeds = crate::tls::feeds_until(addr, |feeds| {
        feeds.as_array().is_some_and(|all| all.iter().all(|feed| feed["retry"]["capped"] == true))
    });
    let by_name = |name: &str| {
        feeds.as_array().and_then(|all| all.iter().find(|feed| feed["name"] == name)).cloned()
    };
    let default_cap = by_name("default-cap").expect("the feed");
    assert_eq!(default_cap["state"], "backing_off", "{default_cap:#}");
    assert_eq!(default_cap["retry"]["delay"], "5m", "{default_cap:#}");
    assert_eq!(default_cap["retry"]["retry_after_secs"], 99_999_999_999u64, "{default_cap:#}");
    assert!(default_cap["last_error"].as_str().is_some_and(|error| error.contains("503")));
    let short_cap = by_name("short-cap").expect("the feed");
    assert_eq!(short_cap["retry"]["delay"], "100ms", "{short_cap:#}");
    // Not parked: the short cap lets it try again, and again.
    let deadline = std::time::Instant::now() + DEADLINE;
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(std::time::Instant::now() < deadline, "the feed stopped trying");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let metrics = actix_rt::System::new().block_on(http_get(addr, "/metrics")).1;
    for feed in ["default-cap", "short-cap"] {
        let labels = format!("feed=\"{feed}\"");
        let capped = sample(&metrics, "feedvisor_retry_after_capped_total", &labels);
        assert!(capped.is_some_and(|count| count >= 1.0), "{labels} in\n{metrics}");
    }
    wait_for_line(&stderr, |line| line.contains("longer than reconnect.max_retry_after"));
}
