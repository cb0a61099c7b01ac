//! Operating the sidecar while it runs: the admin API's changes, reload,
//! supervision of panicking actors, and graceful shutdown of the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpServer};
use actix_web_actors::ws;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{FeedMessage, FeedState, Sidecar, SubscriptionSpec};
use feedvisor_transport_api::{ConnectFuture, ConnectRequest, Transport};
use feedvisor_transport_memory::{MemoryHub, MemoryTransport};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::{
    answer_control, sample, wait_for_line, with_memory, ChildGuard, Collector, DEADLINE,
};

/// An upstream session that streams `{"conn": K, "seq": n}` every few milliseconds.
struct StreamSession {
    conn: u64,
    seq: u64,
}

impl Actor for StreamSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(5), |session, ctx| {
            ctx.text(json!({ "conn": session.conn, "seq": session.seq }).to_string());
            session.seq += 1;
        });
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for StreamSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        answer_control(message, ctx);
    }
}

/// A streaming upstream on 127.0.0.1 that numbers its connections.
struct StreamingUpstream {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicU64>,
    handle: ServerHandle,
}

impl StreamingUpstream {
    fn start() -> Self {
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let server = HttpServer::new(move || {
            let counter = counter.clone();
            App::new().default_service(web::get().to(
                move |request: HttpRequest, stream: web::Payload| {
                    let conn = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    async move { ws::start(StreamSession { conn, seq: 0 }, &request, stream) }
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a free loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        StreamingUpstream { addr, connections, handle }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}/{path}", self.addr)
    }
}

/// Waits until `check` holds, polling; fails the test at the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let probe = || {
        let check = check();
        async move { check.await.then_some(()) }
    };
    crate::support::eventually(DEADLINE, what, probe).await
}

async fn state_of(sidecar: &Sidecar, feed: &str) -> Option<FeedState> {
    sidecar.feeds().await.into_iter().find(|status| status.name == feed).map(|status| status.state)
}

/// One HTTP request to the admin server: status and JSON body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let client = awc::Client::default();
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut builder = client.request(method, format!("http://{addr}{path}"));
    if let Some(token) = token {
        builder = builder.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let sent = match body {
        Some(body) => {
            builder.insert_header(("Content-Type", "application/json")).send_body(body.to_owned())
        }
        None => builder.send(),
    };
    let mut response =
        tokio::time::timeout(DEADLINE, sent).await.expect("answer in time").expect("request sent");
    let bytes = response.body().limit(1 << 20).await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (response.status().as_u16(), value)
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("feedvisor-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("written");
    path
}

#[actix::test]
async fn every_admin_endpoint_answers_with_the_right_status() {
    let upstream = StreamingUpstream::start();
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"let-me-in\"\n\
         [[feeds]]\nname = \"first\"\nurl = \"{}\"\nheartbeat = {{ interval = \"0s\" }}\n",
        upstream.url("first")
    );
    let config =
        Config::from_toml_str(&text, Path::new("admin.toml"), &TransportRegistry::with_defaults())
            .expect("valid");
    let sidecar = Sidecar::builder(config).start().await.expect("started");
    let addr = sidecar.http_addr().expect("http");
    let token = Some("let-me-in");

    assert_eq!(request(addr, "GET", "/healthz", None, None).await.0, 200);
    eventually("the feed to open", || async {
        state_of(&sidecar, "first").await == Some(FeedState::Open)
    })
    .await;
    assert_eq!(request(addr, "GET", "/readyz", None, None).await.0, 200);
    assert_eq!(request(addr, "GET", "/feeds/first", None, None).await.0, 200);
    assert_eq!(request(addr, "GET", "/feeds/none", None, None).await.0, 404);

    // Changes need the token; reads do not.
    let second =
        json!({ "name": "second", "url": upstream.url("second"), "required": false }).to_string();
    let (status, body) = request(addr, "POST", "/feeds", None, Some(&second)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(request(addr, "POST", "/feeds", Some("wrong"), Some(&second)).await.0, 401);
    let (status, body) = request(addr, "POST", "/feeds", token, Some(&second)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "second");
    assert_eq!(request(addr, "POST", "/feeds", token, Some(&second)).await.0, 409);
    let bad = json!({ "name": "bad", "url": "http://example.com/" }).to_string();
    let (status, body) = request(addr, "POST", "/feeds", token, Some(&bad)).await;
    assert_eq!(status, 400);
    assert_eq!(body["fields"][0]["path"], "url", "{body}");
    let (status, body) = request(addr, "POST", "/feeds", token, Some("{not json")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|error| error.contains("JSON")), "{body}");
    eventually("the added feed to open", || async {
        state_of(&sidecar, "second").await == Some(FeedState::Open)
    })
    .await;

    // Replace: unknown, mismatched name, invalid, then a real change.
    let replacement = json!({ "url": upstream.url("second-v2"), "required": false }).to_string();
    assert_eq!(request(addr, "PUT", "/feeds/nope", token, Some(&replacement)).await.0, 404);
    let mismatch = json!({ "name": "other", "url": upstream.url("x") }).to_string();
    assert_eq!(request(addr, "PUT", "/feeds/second", token, Some(&mismatch)).await.0, 400);
    let invalid = json!({ "url": "ws://127.0.0.1:1/", "mode": "sideways" }).to_string();
    assert_eq!(request(addr, "PUT", "/feeds/second", token, Some(&invalid)).await.0, 400);
    let (status, body) = request(addr, "PUT", "/feeds/second", token, Some(&replacement)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().is_some_and(|url| url.ends_with("/second-v2")), "{body}");

    // Reconnect: the feed opens a new upstream connection.
    let before = upstream.connections.load(Ordering::SeqCst);
    assert_eq!(request(addr, "POST", "/feeds/first/reconnect", token, None).await.0, 202);
    assert_eq!(request(addr, "POST", "/feeds/nope/reconnect", token, None).await.0, 404);
    eventually("a new upstream connection", || async {
        upstream.connections.load(Ordering::SeqCst) > before
            && state_of(&sidecar, "first").await == Some(FeedState::Open)
    })
    .await;

    // Remove, then it is gone, from /metrics too.
    assert_eq!(request(addr, "DELETE", "/feeds/second", token, None).await.0, 200);
    assert_eq!(request(addr, "DELETE", "/feeds/second", token, None).await.0, 404);
    assert_eq!(request(addr, "GET", "/feeds/second", None, None).await.0, 404);
    let metrics = sidecar.render_metrics();
    let left: Vec<&str> =
        metrics.lines().filter(|line| line.contains(r#"feed="second""#)).collect();
    assert!(left.is_empty(), "the removed feed's series are still there: {left:?}");

    // Reload needs a config file; this sidecar was started from a value.
    assert_eq!(request(addr, "POST", "/reload", token, None).await.0, 409);
    assert_eq!(request(addr, "POST", "/reload", None, None).await.0, 401);

    sidecar.stop().await;
    upstream.handle.stop(false).await;
}

#[actix::test]
async fn a_feed_given_over_the_api_cannot_read_the_sidecars_files_or_environment() {
    let upstream = StreamingUpstream::start();
    let secret = temp_file("api-secret.txt", "never-sent");
    let text = "[http]\nlisten = \"127.0.0.1:0\"\n";
    let config =
        Config::from_toml_str(text, Path::new("api.toml"), &TransportRegistry::with_defaults())
            .expect("valid");
    let sidecar = Sidecar::builder(config).start().await.expect("started");
    let addr = sidecar.http_addr().expect("http");
    let reference = format!("${{file:{}}}", secret.display());
    let attempts = [
        (
            "POST",
            "/feeds",
            json!({ "name": "leak", "url": upstream.url("leak"), "headers": { "X-Leak": reference } }),
        ),
        (
            "POST",
            "/feeds",
            json!({ "name": "leak", "url": format!("{}?k=${{HOME}}", upstream.url("leak")) }),
        ),
        (
            "POST",
            "/feeds",
            json!({ "name": "leak", "url": upstream.url("leak"), "on_open": [reference] }),
        ),
    ];
    for (method, path, feed) in &attempts {
        let (status, body) = request(addr, method, path, None, Some(&feed.to_string())).await;
        assert_eq!(status, 400, "{body}");
        let message = body["fields"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not expanded in a feed added over the API"), "{body}");
        assert!(!body.to_string().contains("never-sent"), "{body}");
    }
    assert_eq!(request(addr, "GET", "/feeds/leak", None, None).await.0, 404, "never added");
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
    // The same for a replacement of a running feed.
    let plain = json!({ "name": "plain", "url": upstream.url("plain"), "required": false });
    assert_eq!(request(addr, "POST", "/feeds", None, Some(&plain.to_string())).await.0, 201);
    let changed = json!({ "url": upstream.url("plain"), "headers": { "X-Leak": reference } });
    let (status, body) =
        request(addr, "PUT", "/feeds/plain", None, Some(&changed.to_string())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["fields"][0]["path"], "headers.X-Leak", "{body}");
    let (_, shown) = request(addr, "GET", "/feeds/plain", None, None).await;
    assert!(shown.get("headers").is_none_or(|headers| headers.get("X-Leak").is_none()), "{shown}");
    sidecar.stop().await;
    upstream.handle.stop(false).await;
}

fn three_feeds(upstream: &StreamingUpstream, changed: bool) -> String {
    let feed = |name: &str, path: &str| {
        format!(
            "[[feeds]]\nname = \"{name}\"\nurl = \"{}\"\nsequence = \"/seq\"\nheartbeat = {{ interval = \"0s\" }}\n",
            upstream.url(path)
        )
    };
    let subscriber =
        "[[subscribers]]\nname = \"print\"\nfeeds = [\"nothing-*\"]\nsink = \"stdout\"\n";
    if changed {
        // kept: untouched; dropped: gone; changed: new path; added: new.
        [feed("kept", "kept"), feed("changed", "changed-v2"), feed("added", "added")].concat()
            + "[http]\nlisten = \"127.0.0.1:0\"\n"
            + subscriber
    } else {
        [feed("kept", "kept"), feed("dropped", "dropped"), feed("changed", "changed")].concat()
            + "[http]\nlisten = \"127.0.0.1:0\"\n"
            + subscriber
    }
}

#[actix::test]
async fn reload_applies_the_difference_and_leaves_untouched_feeds_alone() {
    let upstream = StreamingUpstream::start();
    let path = temp_file("reload.toml", &three_feeds(&upstream, false));
    let config = Config::load(&path, &TransportRegistry::with_defaults()).expect("valid");
    let (sender, mut receiver) = mpsc::unbounded_channel::<FeedMessage>();
    let sidecar = Sidecar::builder(config)
        .config_path(&path)
        .subscriber(SubscriptionSpec::new("watch", ["kept"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("started");
    for feed in ["kept", "dropped", "changed"] {
        eventually(feed, || async { state_of(&sidecar, feed).await == Some(FeedState::Open) })
            .await;
    }
    let first =
        tokio::time::timeout(DEADLINE, receiver.recv()).await.expect("in time").expect("open");
    let first: Value = serde_json::from_slice(&first.payload).expect("json");
    let kept_connection = first["conn"].clone();

    // An invalid file changes nothing.
    std::fs::write(&path, "[[feeds]]\nname = \"kept\"\nurl = \"gopher://nowhere\"\n")
        .expect("written");
    let error = sidecar.reload().await.expect_err("invalid file refused");
    assert!(error.to_string().contains("url"), "{error}");
    assert_eq!(sidecar.feeds().await.len(), 3);
    let metrics = sidecar.render_metrics();
    assert!(sample(&metrics, "feedvisor_config_reloads_total", r#"result="invalid""#) >= Some(1.0));

    std::fs::write(&path, three_feeds(&upstream, true)).expect("written");
    let report = sidecar.reload().await.expect("reloaded");
    assert_eq!(report.feeds_added, ["added"]);
    assert_eq!(report.feeds_removed, ["dropped"]);
    assert_eq!(report.feeds_changed, ["changed"]);
    assert_eq!(report.feeds_unchanged, ["kept"]);
    eventually("the new feeds to open", || async {
        state_of(&sidecar, "added").await == Some(FeedState::Open)
            && state_of(&sidecar, "changed").await == Some(FeedState::Open)
    })
    .await;
    let names: Vec<String> = sidecar.feeds().await.into_iter().map(|feed| feed.name).collect();
    assert_eq!(names, ["added", "changed", "kept"]);

    // The untouched feed: same upstream connection, numbers without a gap, counters kept.
    let first_seq = first["seq"].as_u64().expect("seq");
    for expected in first_seq + 1..=first_seq + 50 {
        let message =
            tokio::time::timeout(DEADLINE, receiver.recv()).await.expect("in time").expect("open");
        let value: Value = serde_json::from_slice(&message.payload).expect("json");
        assert_eq!(value["conn"], kept_connection, "the kept feed reconnected");
        assert_eq!(value["seq"].as_u64(), Some(expected), "a message was lost");
    }
    let metrics = sidecar.render_metrics();
    assert_eq!(sample(&metrics, "feedvisor_sequence_gaps_total", r#"feed="kept""#), Some(0.0));
    let kept = sidecar.feeds().await.into_iter().find(|feed| feed.name == "kept").expect("kept");
    assert_eq!(kept.reconnects, 0);
    assert!(kept.messages_in > 50);
    sidecar.stop().await;
    upstream.handle.stop(false).await;
}

/// A transport that panics on its first connects, then hands over to the memory transport.
struct PanicsFirst {
    panics_left: AtomicU32,
    inner: MemoryTransport,
}

impl Transport for PanicsFirst {
    fn name(&self) -> &'static str {
        "panics-first"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["memory"]
    }

    fn connect(&self, request: ConnectRequest) -> ConnectFuture {
        if self
            .panics_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("a bug in a transport, on purpose");
        }
        self.inner.connect(request)
    }
}

#[actix::test]
async fn a_panicking_connection_is_restarted_and_other_feeds_keep_flowing() {
    let upstream = StreamingUpstream::start();
    let hub = MemoryHub::new();
    let mut listener = hub.listen("fragile");
    let text = format!(
        "workers = 1\n[[feeds]]\nname = \"steady\"\nurl = \"{}\"\nheartbeat = {{ interval = \"0s\" }}\n\
         [[feeds]]\nname = \"fragile\"\nurl = \"memory://fragile\"\nheartbeat = {{ interval = \"0s\" }}\n",
        upstream.url("steady")
    );
    let config =
        Config::from_toml_str(&text, Path::new("panic.toml"), &with_memory(&hub)).expect("valid");
    let (sender, mut receiver) = mpsc::unbounded_channel::<FeedMessage>();
    let transport =
        PanicsFirst { panics_left: AtomicU32::new(2), inner: MemoryTransport::new(hub.clone()) };
    let sidecar = Sidecar::builder(config)
        .without_http()
        .transport(Arc::new(transport))
        .subscriber(SubscriptionSpec::new("all", ["*"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("started");
    // Two panics, two restarts; the third actor connects.
    let peer =
        tokio::time::timeout(DEADLINE, listener.accept()).await.expect("in time").expect("peer");
    assert!(peer.send_text("after the panics"));
    let mut fragile_seen = false;
    let mut steady_after = 0;
    while !(fragile_seen && steady_after > 10) {
        let message =
            tokio::time::timeout(DEADLINE, receiver.recv()).await.expect("in time").expect("open");
        match &*message.feed {
            "fragile" => fragile_seen = true,
            _ if fragile_seen => steady_after += 1,
            _ => {}
        }
    }
    let metrics = sidecar.render_metrics();
    let restarts = sample(&metrics, "feedvisor_actor_restarts_total", r#"actor="connection""#);
    assert!(restarts >= Some(2.0), "{restarts:?}");
    let feeds = sidecar.feeds().await;
    assert!(feeds.iter().all(|feed| feed.state == FeedState::Open), "{feeds:?}");
    sidecar.stop().await;
    upstream.handle.stop(false).await;
}

#[test]
fn sigterm_closes_every_feed_with_1001_and_exits_0() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_close_recorder.py");
    let mut peer = ChildGuard::spawn(Command::new("python3").arg(script));
    let peer_lines = peer.stdout_lines();
    let port_line = wait_for_line(&peer_lines, |line| line.starts_with("port "));
    let port = port_line.trim_start_matches("port ").trim();
    let config = temp_file(
        "shutdown.toml",
        &format!(
            "shutdown_timeout = \"3s\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [[feeds]]\nname = \"a\"\nurl = \"ws://127.0.0.1:{port}/a\"\n\
             [[feeds]]\nname = \"b\"\nurl = \"ws://127.0.0.1:{port}/b\"\n\
             [[subscribers]]\nname = \"print\"\nfeeds = [\"*\"]\nsink = \"stdout\"\n"
        ),
    );
    let mut sidecar = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_feedvisor")).arg("run").arg("--config").arg(&config),
    );
    let lines = sidecar.stdout_lines();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let line = wait_for_line(&lines, |_| true);
        let value: Value = serde_json::from_str(&line).expect("a JSON line");
        seen.insert(value["feed"].as_str().unwrap_or_default().to_owned());
    }
    let pid = sidecar.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill ran").success());
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = sidecar.child.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    for _ in 0..2 {
        let closed = wait_for_line(&peer_lines, |line| line.starts_with("closed "));
        assert!(closed.starts_with("closed 1001"), "{closed}");
    }
    drop(peer.child.stdin.take());
}
