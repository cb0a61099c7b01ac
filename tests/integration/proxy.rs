//! Feeds through a real HTTP proxy no one here wrote: Debian's `tinyproxy`
//! (installed by `.ci/run`), started on a free port with basic auth. A ws://
//! and a wss:// feed (mutual TLS, pinned) go through it from a config file;
//! wrong credentials show the proxy's refusal (401 from tinyproxy, 407 elsewhere) without the password anywhere.

use std::process::Command;

use feedvisor_test_support::TestCertificates;

use crate::support::{http_get, sample, wait_for_line, ChildGuard};
use crate::tls::{admin_addr, config_file, feeds_until, feedvisor, WssUpstream};

/// tinyproxy on a free loopback port, allowing `user:password`.
struct Tinyproxy {
    port: u16,
    _child: ChildGuard,
}

impl Tinyproxy {
    fn start(user: &str, password: &str) -> Tinyproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let config = config_file(
            &format!("tinyproxy-{port}.conf"),
            &format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.1\n\
                 BasicAuth {user} {password}\nLogLevel Info\n"
            ),
        );
        let mut child =
            ChildGuard::spawn(Command::new("tinyproxy").arg("-d").arg("-c").arg(&config));
        let stderr = child.stderr_lines();
        // tinyproxy logs to stderr in the foreground; wait until it listens.
        let deadline = std::time::Instant::now() + crate::support::DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.child.try_wait() {
                let log: Vec<String> = stderr.try_iter().collect();
                panic!(
                    "tinyproxy exited ({status}); it needs `apt-get install tinyproxy`, which .ci/run does:\n{}",
                    log.join("\n")
                );
            }
            assert!(std::time::Instant::now() < deadline, "tinyproxy did not listen in time");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Tinyproxy { port, _child: child }
    }
}

#[test]
fn ws_and_wss_feeds_go_through_an_authenticating_proxy_and_a_wrong_password_shows_407() {
    if Command::new("tinyproxy").arg("-v").output().is_err() {
        panic!("tinyproxy is missing: `apt-get install -y tinyproxy` (.ci/run installs it)");
    }
    let proxy = Tinyproxy::start("alice", "pr0xy-s3cret");
    let certificates = TestCertificates::generate();
    let wss = WssUpstream::start(certificates.server_config_requiring_client(&[b"http/1.1"]));
    let system = actix_rt::System::new();
    let ws = WssUpstream::start_plain();
    let ca = certificates.ca_file().display().to_string();
    let cert = certificates.client_cert_file().display().to_string();
    let key = certificates.client_key_file().display().to_string();
    let pin = certificates.server_pin();
    let port = proxy.port;
    let text = format!(
        r#"[http]
listen = "127.0.0.1:0"

[defaults]
proxy = "http://alice:${{PROXY_PASSWORD}}@127.0.0.1:{port}"
reconnect = {{ initial = "50ms", max = "200ms" }}

[[feeds]]
name = "plain"
url = "ws://{ws_addr}/"

[[feeds]]
name = "secure"
url = "wss://localhost:{wss_port}/"
tls = {{ ca_file = "{ca}", client_cert = "{cert}", client_key = "{key}", pin_sha256 = ["{pin}"] }}

[[feeds]]
name = "wrong-password"
url = "ws://{ws_addr}/"
proxy = "http://alice:not-the-password@127.0.0.1:{port}"

[[subscribers]]
name = "print"
feeds = ["*"]
sink = "stdout"
"#,
        ws_addr = ws.addr,
        wss_port = wss.addr.port(),
    );
    let config = config_file("through-proxy.toml", &text);
    let mut sidecar = ChildGuard::spawn(
        feedvisor("trace")
            .env("PROXY_PASSWORD", "pr0xy-s3cret")
            .arg("run")
            .arg("--config")
            .arg(&config),
    );
    let stdout = sidecar.stdout_lines();
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let feeds = feeds_until(addr, |feeds| {
        let by_name = |name: &str| {
            feeds.as_array().and_then(|all| all.iter().find(|feed| feed["name"] == name)).cloned()
        };
        let open = |name: &str| by_name(name).is_some_and(|feed| feed["state"] == "open");
        let refused = by_name("wrong-password").is_some_and(|feed| feed["last_error"].is_string());
        open("plain") && open("secure") && refused
    });
    // The wss feed's "hello" came through the tunnel, TLS and all.
    wait_for_line(&stdout, |line| line.contains("\"feed\":\"secure\"") && line.contains("hello"));
    let refused = feeds
        .as_array()
        .and_then(|all| all.iter().find(|feed| feed["name"] == "wrong-password"))
        .map(|feed| feed["last_error"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    // tinyproxy 1.11 refuses a CONNECT's credentials with 401, not 407.
    assert!(refused.contains("407") || refused.contains("401 Unauthorized"), "{refused}");
    assert!(refused.contains("user name and password"), "{refused}");

    let metrics = system.block_on(http_get(addr, "/metrics")).1;
    let labels = "feed=\"wrong-password\",result=\"proxy\"";
    assert!(
        sample(&metrics, "feedvisor_connect_attempts_total", labels).is_some_and(|n| n >= 1.0),
        "{labels} in\n{metrics}"
    );
    let shown =
        format!("{feeds}\n{metrics}\n{}", system.block_on(http_get(addr, "/feeds/secure")).1);
    for secret in ["pr0xy-s3cret", "not-the-password"] {
        assert!(!shown.contains(secret), "{secret} shown in /feeds or /metrics");
    }
    drop(sidecar);
    let logs: Vec<String> = stderr.try_iter().collect();
    assert!(!logs.is_empty(), "trace logs were read");
    for secret in ["pr0xy-s3cret", "not-the-password", "cHIweHktczNjcmV0"] {
        assert!(!logs.iter().any(|line| line.contains(secret)), "{secret} in a trace log line");
    }
}
