//! Helpers shared by the integration tests: a real upstream, a collecting
//! subscriber, HTTP requests and child processes that are always cleaned up.
//! The hand-made TCP/WebSocket server ([`RawServer`], [`RawWs`]) of the
//! fault tests and waits that poll a condition under a deadline
//! ([`eventually`]) come from `feedvisor-test-support`, re-exported here.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, App, HttpRequest, HttpServer};
use actix_web_actors::ws;
use bytes::Bytes;
use feedvisor::transports::TransportRegistry;
use feedvisor::{Deliver, FeedMessage, FeedStatus, Sidecar};
use feedvisor_transport_memory::{MemoryHub, MemoryTransport};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub(crate) use feedvisor_test_support::eventually;
pub(crate) use feedvisor_test_support::net::{refused_addr, RawServer};
pub(crate) use feedvisor_test_support::websocket::{
    encode_frame, header_value, opcode, read_request_head, RawFrame, RawWs, FIN,
};

/// The built-in transports plus the in-memory one on `hub`: what a config
/// naming `memory://` feeds must be checked with (production has no memory
/// transport).
pub(crate) fn with_memory(hub: &MemoryHub) -> TransportRegistry {
    let mut transports = TransportRegistry::with_defaults();
    transports.register(Arc::new(MemoryTransport::new(hub.clone())));
    transports
}

/// How long any single wait in these tests may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// What an [`Upstream`] session does: the messages it sends on open and
/// where the messages it receives go.
#[derive(Clone, Default)]
struct SessionSpec {
    /// How many numbered messages to send as soon as the session opens.
    count: usize,
    /// Added to every message as `"incarnation"` when set, so a test can tell
    /// which run of a restarted upstream sent it.
    incarnation: Option<u32>,
    /// Receives every text message the feed sends, in order.
    inbound: Option<mpsc::UnboundedSender<String>>,
}

/// An upstream session that sends `count` numbered JSON messages as soon as it opens.
struct SequenceSession {
    spec: SessionSpec,
}

impl Actor for SequenceSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for seq in 0..self.spec.count {
            let symbol = seq % 3;
            match self.spec.incarnation {
                None => ctx.text(format!(r#"{{"seq":{seq},"symbol":"SYM{symbol}"}}"#)),
                Some(run) => ctx
                    .text(format!(r#"{{"incarnation":{run},"seq":{seq},"symbol":"SYM{symbol}"}}"#)),
            }
        }
    }
}

/// What a test upstream that only sends does with a client's frame: answers
/// pings, echoes a close and stops, stops on a protocol error.
pub(crate) fn answer_control<A>(
    message: Result<ws::Message, ws::ProtocolError>,
    ctx: &mut ws::WebsocketContext<A>,
) where
    A: Actor<Context = ws::WebsocketContext<A>>,
{
    match message {
        Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
        Ok(ws::Message::Close(reason)) => {
            ctx.close(reason);
            ctx.stop();
        }
        Ok(_) => {}
        Err(_) => ctx.stop(),
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for SequenceSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Text(text)) => {
                if let Some(inbound) = &self.spec.inbound {
                    let _ = inbound.send(text.to_string());
                }
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}

/// A real WebSocket upstream on 127.0.0.1: `/sequence` sends `count` messages.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl Upstream {
    pub(crate) fn start(count: usize) -> Upstream {
        Upstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), count)
    }

    /// Starts on a given address (to bring an upstream back on the port it had).
    pub(crate) fn start_on(addr: SocketAddr, count: usize) -> Upstream {
        Upstream::start_with(addr, SessionSpec { count, ..SessionSpec::default() })
    }

    /// Like [`Upstream::start_on`], every message tagged `"incarnation": incarnation`.
    pub(crate) fn start_tagged(addr: SocketAddr, count: usize, incarnation: u32) -> Upstream {
        let spec = SessionSpec { count, incarnation: Some(incarnation), inbound: None };
        Upstream::start_with(addr, spec)
    }

    /// An upstream that sends nothing and hands every text message it receives to `inbound`.
    pub(crate) fn start_recording(
        addr: SocketAddr,
        inbound: mpsc::UnboundedSender<String>,
    ) -> Upstream {
        Upstream::start_with(addr, SessionSpec { inbound: Some(inbound), ..SessionSpec::default() })
    }

    fn start_with(addr: SocketAddr, spec: SessionSpec) -> Upstream {
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::new(spec.clone())).route(
                    "/sequence",
                    web::get().to(
                        |request: HttpRequest,
                         stream: web::Payload,
                         spec: web::Data<SessionSpec>| async move {
                            let spec = SessionSpec::clone(&spec);
                            ws::start(SequenceSession { spec }, &request, stream)
                        },
                    ),
                )
        })
        .workers(1)
        .disable_signals()
        .bind(addr)
        .expect("bind the upstream to a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Upstream { addr, handle }
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A subscriber actor that hands every message to the test.
pub(crate) struct Collector(pub mpsc::UnboundedSender<FeedMessage>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Collector {
    type Result = ();

    fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
        for message in deliver.take() {
            let _ = self.0.send(message);
        }
    }
}

/// Receives `count` data messages, failing the test if they do not come in
/// time; discontinuity events are passed over ([`collect_all`] keeps them).
pub(crate) async fn collect(
    receiver: &mut mpsc::UnboundedReceiver<FeedMessage>,
    count: usize,
) -> Vec<FeedMessage> {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        let batch = collect_all(receiver, count - messages.len()).await;
        messages.extend(batch.into_iter().filter(|message| message.discontinuity.is_none()));
    }
    messages
}

/// Receives `count` messages, discontinuity events included, failing the
/// test if they do not come in time.
pub(crate) async fn collect_all(
    receiver: &mut mpsc::UnboundedReceiver<FeedMessage>,
    count: usize,
) -> Vec<FeedMessage> {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        let next = tokio::time::timeout(DEADLINE, receiver.recv()).await;
        let message = next
            .unwrap_or_else(|_| {
                panic!("only {} of {count} messages arrived in time", messages.len())
            })
            .expect("collector alive");
        messages.push(message);
    }
    messages
}

/// GETs `path` from the admin server and returns status and body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = awc::Client::default();
    let mut response =
        tokio::time::timeout(DEADLINE, client.get(format!("http://{addr}{path}")).send())
            .await
            .expect("answer in time")
            .expect("request sent");
    let body = response.body().limit(16 * 1024 * 1024).await.expect("body read");
    (response.status().as_u16(), String::from_utf8(body.to_vec()).expect("utf-8 body"))
}

/// The value of the sample `name{labels}` in a Prometheus text rendering.
pub(crate) fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

/// `feedvisor demo` on free loopback ports, one tick per `interval` (such as `"20ms"`).
pub(crate) fn spawn_demo(interval: &str) -> ChildGuard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedvisor"));
    command.env("RUST_LOG", "info");
    ChildGuard::spawn(command.args(["demo", "--listen", "127.0.0.1:0", "--interval", interval]))
}

/// A child process that is killed when the test ends, however it ends.
pub(crate) struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub(crate) fn spawn(command: &mut Command) -> ChildGuard {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {command:?}: {error}"));
        ChildGuard { child }
    }

    /// The child's standard output as lines, read on a thread and handed over a channel.
    pub(crate) fn stdout_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        let stdout: ChildStdout = self.child.stdout.take().expect("stdout piped");
        lines_of(stdout)
    }

    /// The child's standard error as lines.
    pub(crate) fn stderr_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        let stderr = self.child.stderr.take().expect("stderr piped");
        lines_of(stderr)
    }
}

fn lines_of(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, `Threads:`), in its own unit.
pub(crate) fn proc_status_field(pid: u32, name: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the child's status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// Waits until the sidecar whose admin server is at `admin` has every
/// required feed open (`/readyz` answers 200).
pub(crate) async fn until_ready(admin: SocketAddr) {
    eventually(DEADLINE, "every required feed open", || async move {
        // The admin server may not listen yet: a refused request is a "not yet".
        let request = awc::Client::default().get(format!("http://{admin}/readyz")).send();
        let answer = tokio::time::timeout(DEADLINE, request).await.ok()?.ok()?;
        (answer.status().as_u16() == 200).then_some(())
    })
    .await;
}

/// The next line from `lines` that satisfies `want`, within the deadline.
pub(crate) fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    mut want: impl FnMut(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if want(&line) => return line,
            Ok(_) => {}
            Err(error) => panic!("no matching line in time: {error}"),
        }
    }
}

/// POSTs `body` to the admin server, with `content_type` when given; returns status and body.
pub(crate) async fn http_post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> (u16, String) {
    let client = awc::Client::default();
    let mut request = client.post(format!("http://{addr}{path}"));
    if let Some(content_type) = content_type {
        request = request.insert_header((CONTENT_TYPE, content_type));
    }
    let mut response = tokio::time::timeout(DEADLINE, request.send_body(body.into()))
        .await
        .expect("answer in time")
        .expect("request sent");
    let body = response.body().limit(16 * 1024 * 1024).await.expect("body read");
    (response.status().as_u16(), String::from_utf8(body.to_vec()).expect("utf-8 body"))
}

/// The status of feed `name`.
pub(crate) async fn feed_status(sidecar: &Sidecar, name: &str) -> FeedStatus {
    let feeds = sidecar.feeds().await;
    feeds.into_iter().find(|feed| feed.name == name).unwrap_or_else(|| panic!("no feed {name}"))
}

/// Waits until feed `name`'s status satisfies `want`, and returns that status.
pub(crate) async fn wait_for_feed(
    sidecar: &Sidecar,
    name: &str,
    what: &str,
    want: impl Fn(&FeedStatus) -> bool,
) -> FeedStatus {
    let what = format!("feed {name}: {what}");
    let want = &want;
    eventually(DEADLINE, &what, || async move {
        let status = feed_status(sidecar, name).await;
        want(&status).then_some(status)
    })
    .await
}

/// The sample `name{labels}` of the sidecar's metrics; 0 when the series does not exist yet.
pub(crate) fn metric(sidecar: &Sidecar, name: &str, labels: &str) -> f64 {
    sample(&sidecar.render_metrics(), name, labels).unwrap_or(0.0)
}

/// Waits until the sample `name{labels}` satisfies `want`, and returns its value.
pub(crate) async fn wait_for_metric(
    sidecar: &Sidecar,
    name: &str,
    labels: &str,
    want: impl Fn(f64) -> bool,
) -> f64 {
    let what = format!("{name}{{{labels}}}");
    let want = &want;
    eventually(DEADLINE, &what, || async move {
        let value = metric(sidecar, name, labels);
        want(value).then_some(value)
    })
    .await
}

/// Answers the HTTP request on `socket` with `status_line` (e.g. "429 Too Many Requests")
/// and `headers`, then closes.
pub(crate) async fn answer_status(
    socket: &mut TcpStream,
    status_line: &str,
    headers: &[(&str, &str)],
) {
    let mut answer = format!("HTTP/1.1 {status_line}\r\n");
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}
