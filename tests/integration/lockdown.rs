//! The admin HTTP side locked down, through the `feedvisor` binary: the token
//! on every change and on `/subscribe`, a public `listen` refused without a
//! token, `${file:}` secrets read again on reload, and no secret anywhere the
//! sidecar writes (logs at trace, `/feeds`, `/metrics`, `check`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use awc::error::WsClientError;
use awc::http::Method;

use crate::support::{wait_for_line, ChildGuard, DEADLINE};
use crate::tls::{admin_addr, config_file, feeds_until, feedvisor, WssUpstream};

/// Sends `method path` to the admin server, with `token` as a bearer token
/// when given; returns the status.
pub(crate) fn admin_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> u16 {
    let body = body.to_owned();
    let url = format!("http://{addr}{path}");
    actix_rt::System::new().block_on(async move {
        let mut request = awc::Client::default().request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let request = request.insert_header(("content-type", "application/json"));
        let response = tokio::time::timeout(DEADLINE, request.send_body(body))
            .await
            .expect("answer in time")
            .expect("request sent");
        response.status().as_u16()
    })
}

/// Opens `/subscribe` at `path` (with a bearer token when given): the
/// handshake's status (101 when it opened).
pub(crate) fn subscribe_status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let url = format!("ws://{addr}{path}");
    actix_rt::System::new().block_on(async move {
        let mut request = awc::Client::default().ws(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match tokio::time::timeout(DEADLINE, request.connect()).await.expect("answer in time") {
            Ok((response, _socket)) => response.status().as_u16(),
            Err(WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
            Err(error) => panic!("subscribe handshake to {path} failed: {error}"),
        }
    })
}

#[test]
fn the_token_guards_subscribe_and_every_change_and_reads_stay_open() {
    let upstream = WssUpstream::start_plain();
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"${{ADMIN_TOKEN}}\"\n\n\
         [[feeds]]\nname = \"quotes\"\nurl = \"ws://{}/\"\n",
        upstream.addr
    );
    let config = config_file("token.toml", &text);
    let mut sidecar = ChildGuard::spawn(
        feedvisor("info").env("ADMIN_TOKEN", "t0ken-right").arg("run").arg("--config").arg(&config),
    );
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    feeds_until(addr, |feeds| feeds[0]["state"] == "open");

    // /subscribe: refused without the token, with a wrong one, accepted with it (header or query).
    assert_eq!(subscribe_status(addr, "/subscribe", None), 401);
    assert_eq!(subscribe_status(addr, "/subscribe?token=t0ken-wrong", None), 401);
    assert_eq!(subscribe_status(addr, "/subscribe", Some("t0ken-wrong")), 401);
    assert_eq!(subscribe_status(addr, "/subscribe?token=t0ken-right", None), 101);
    assert_eq!(subscribe_status(addr, "/subscribe?feed=quotes", Some("t0ken-right")), 101);

    // Every changing endpoint: 401 without the token, or with it only in the query.
    let feed = r#"{"name":"extra","url":"ws://127.0.0.1:1/"}"#;
    let changes = [
        (Method::POST, "/reload", ""),
        (Method::POST, "/feeds", feed),
        (Method::PUT, "/feeds/quotes", feed),
        (Method::DELETE, "/feeds/quotes", ""),
        (Method::POST, "/feeds/quotes/reconnect", ""),
        (Method::POST, "/feeds/quotes/send", "{}"),
    ];
    for (method, path, body) in &changes {
        let refused = admin_request(addr, method.clone(), path, None, body);
        assert_eq!(refused, 401, "{method} {path} without a token");
        let query = format!("{path}?token=t0ken-right");
        let refused = admin_request(addr, method.clone(), &query, None, body);
        assert_eq!(refused, 401, "{method} {path} with the token in the query");
        let wrong = admin_request(addr, method.clone(), path, Some("t0ken-wrong"), body);
        assert_eq!(wrong, 401, "{method} {path} with a wrong token");
    }
    // Nothing changed: the feed is still there, open. Reads need no token.
    for path in ["/feeds", "/feeds/quotes", "/metrics", "/healthz", "/readyz"] {
        assert_eq!(admin_request(addr, Method::GET, path, None, ""), 200, "GET {path}");
    }
    // With the token, changes go through.
    let reconnect = "/feeds/quotes/reconnect";
    let accepted = admin_request(addr, Method::POST, reconnect, Some("t0ken-right"), "");
    assert!((200..300).contains(&accepted), "reconnect with the token: {accepted}");
    let removed = admin_request(addr, Method::DELETE, "/feeds/quotes", Some("t0ken-right"), "");
    assert!((200..300).contains(&removed), "delete with the token: {removed}");
    feeds_until(addr, |feeds| feeds.as_array().is_some_and(Vec::is_empty));
}

#[test]
fn a_public_listen_without_a_token_is_refused_at_load_and_allowed_with_a_warning() {
    let refused = config_file(
        "public-no-token.toml",
        "[http]\nlisten = \"0.0.0.0:0\"\n\n[[feeds]]\nname = \"a\"\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    for subcommand in ["check", "run"] {
        let mut command = feedvisor("info");
        if subcommand == "check" {
            command.arg("check").arg(&refused);
        } else {
            command.arg("run").arg("--config").arg(&refused);
        }
        let output = command.output().expect("feedvisor ran");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{subcommand} accepted 0.0.0.0 without a token");
        assert!(stderr.contains("http.listen"), "{subcommand}: {stderr}");
        assert!(stderr.contains("allow_public = true"), "{subcommand}: {stderr}");
    }

    let allowed = config_file(
        "public-allowed.toml",
        "[http]\nlisten = \"0.0.0.0:0\"\nallow_public = true\n\n\
         [[feeds]]\nname = \"a\"\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&allowed));
    let stderr = sidecar.stderr_lines();
    let warned = wait_for_line(&stderr, |line| line.contains("admin HTTP server listening"));
    assert!(warned.contains("WARN"), "{warned}");
    assert!(warned.contains("without a token"), "{warned}");
}

#[test]
fn a_file_secret_is_read_again_on_reload() {
    let upstream = WssUpstream::start_plain();
    let secret = config_file("api-key", "first-key\n");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n\
         [[feeds]]\nname = \"keyed\"\nurl = \"ws://{}/\"\nheaders = {{ X-Api-Key = \"${{file:{}}}\" }}\n",
        upstream.addr,
        secret.display()
    );
    let config = config_file("file-secret.toml", &text);
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&config));
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let first = upstream.heads.recv_timeout(DEADLINE).expect("the feed connected");
    assert!(first.contains("x-api-key: first-key\r\n"), "{first}");

    std::fs::write(&secret, "second-key\n").expect("secret rotated");
    let reloaded = admin_request(addr, Method::POST, "/reload", None, "");
    assert_eq!(reloaded, 200, "reload");
    let second = upstream.heads.recv_timeout(DEADLINE).expect("the feed connected again");
    assert!(second.contains("x-api-key: second-key\r\n"), "{second}");
    feeds_until(addr, |feeds| feeds[0]["state"] == "open");
}

/// A proxy that refuses every CONNECT with 407, on its own thread; stops when
/// its listener's last connection is served and it is dropped.
struct RefusingProxy {
    addr: SocketAddr,
}

impl RefusingProxy {
    fn start() -> RefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("an address");
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { break };
                let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = socket.write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"feeds\"\r\nContent-Length: 0\r\n\r\n",
                );
            }
        });
        RefusingProxy { addr }
    }
}

#[test]
fn no_secret_appears_in_logs_feeds_metrics_or_check_at_trace() {
    let upstream = WssUpstream::start_plain();
    let proxy = RefusingProxy::start();
    let refused = crate::support::refused_addr();
    // Accepts connections (the kernel does) and never answers: the handshake times out.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let silent_addr = silent.local_addr().expect("an address");
    let secrets = [
        ("HEADER_SECRET", "hdr-s3cret-value"),
        ("QUERY_SECRET", "qry-s3cret-value"),
        ("PATH_SECRET", "path-s3cret-value"),
        ("PROXY_PASSWORD", "pxy-s3cret-value"),
        ("ADMIN_TOKEN", "adm-s3cret-value"),
    ];
    let literal = "lit-s3cret-value";
    let text = format!(
        r#"[http]
listen = "127.0.0.1:0"
token = "${{ADMIN_TOKEN}}"

[defaults]
reconnect = {{ initial = "50ms", max = "200ms" }}

[[feeds]]
name = "served"
url = "ws://{up}/feed/${{PATH_SECRET}}?key={literal}&token=${{QUERY_SECRET}}"
headers = {{ X-Api-Key = "${{HEADER_SECRET}}" }}

[[feeds]]
name = "unreachable"
url = "ws://{refused}/feed/${{PATH_SECRET}}?token=${{QUERY_SECRET}}"
headers = {{ X-Api-Key = "${{HEADER_SECRET}}" }}

[[feeds]]
name = "silent"
url = "ws://{silent_addr}/feed/${{PATH_SECRET}}?token=${{QUERY_SECRET}}"
handshake_timeout = "200ms"

[[feeds]]
name = "proxied"
url = "ws://{up}/feed/${{PATH_SECRET}}"
proxy = "http://bob:${{PROXY_PASSWORD}}@{proxy}"

[[subscribers]]
name = "print"
feeds = ["*"]
sink = "stdout"
"#,
        up = upstream.addr,
        proxy = proxy.addr,
    );
    let config = config_file("secrets.toml", &text);
    let with_secrets = |command: &mut Command| {
        for (name, value) in secrets {
            command.env(name, value);
        }
    };

    let mut check = feedvisor("trace");
    with_secrets(&mut check);
    let checked = check.arg("check").arg(&config).output().expect("check ran");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    let mut written = String::from_utf8_lossy(&checked.stdout).into_owned();
    written.push_str(&String::from_utf8_lossy(&checked.stderr));

    let mut run = feedvisor("trace");
    with_secrets(&mut run);
    let mut sidecar = ChildGuard::spawn(run.arg("run").arg("--config").arg(&config));
    let stdout = sidecar.stdout_lines();
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let feeds = feeds_until(addr, |feeds| {
        let by_name = |name: &str| {
            feeds.as_array().and_then(|all| all.iter().find(|feed| feed["name"] == name)).cloned()
        };
        let served = by_name("served").is_some_and(|feed| feed["state"] == "open");
        let failed = ["unreachable", "silent", "proxied"]
            .iter()
            .all(|name| by_name(name).is_some_and(|feed| feed["last_error"].is_string()));
        served && failed
    });
    let head = upstream.heads.recv_timeout(DEADLINE).expect("the served feed connected");
    assert!(head.contains("x-api-key: hdr-s3cret-value"), "the header was sent: {head}");
    wait_for_line(&stdout, |line| line.contains("\"feed\":\"served\"") && line.contains("hello"));
    // A /subscribe client with the token in its query, and a failed one.
    assert_eq!(subscribe_status(addr, "/subscribe?token=adm-s3cret-value", None), 101);
    assert_eq!(subscribe_status(addr, "/subscribe?token=adm-s3cret-valuX", None), 401);
    let reconnect =
        admin_request(addr, Method::POST, "/feeds/served/reconnect", Some("adm-s3cret-value"), "");
    assert!((200..300).contains(&reconnect), "reconnect: {reconnect}");
    upstream.heads.recv_timeout(DEADLINE).expect("the served feed connected again");

    let (_, metrics) = actix_rt::System::new().block_on(crate::support::http_get(addr, "/metrics"));
    written.push_str(&format!("{feeds}\n{metrics}\n"));
    for name in ["served", "unreachable", "silent", "proxied"] {
        let path = format!("/feeds/{name}");
        written
            .push_str(&actix_rt::System::new().block_on(crate::support::http_get(addr, &path)).1);
    }
    let proxied =
        feeds.as_array().and_then(|all| all.iter().find(|feed| feed["name"] == "proxied"));
    let silent_error = feeds
        .as_array()
        .and_then(|all| all.iter().find(|feed| feed["name"] == "silent"))
        .map(|feed| feed["last_error"].to_string())
        .unwrap_or_default();
    assert!(silent_error.contains("/feed/${PATH_SECRET}"), "the URL as written: {silent_error}");
    let proxy_error = proxied.map(|feed| feed["last_error"].to_string()).unwrap_or_default();
    assert!(proxy_error.contains("407"), "the proxy's answer is shown: {proxy_error}");
    drop(sidecar);
    let logs: Vec<String> = stderr.try_iter().chain(stdout.try_iter()).collect();
    assert!(logs.iter().any(|line| line.contains("TRACE")), "trace logs were read");
    written.push_str(&logs.join("\n"));

    // The proxy's credentials travel as base64 in Proxy-Authorization: look for that too.
    let basic = "Ym9iOnB4eS1zM2NyZXQtdmFsdWU";
    for secret in secrets.iter().map(|(_, value)| *value).chain([literal, basic]) {
        let found: Vec<&str> = written.lines().filter(|line| line.contains(secret)).collect();
        assert!(found.is_empty(), "{secret} written:\n{}", found.join("\n"));
    }
}
