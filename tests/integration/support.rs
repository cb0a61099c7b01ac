//! Helpers shared by the integration tests: a real upstream, a collecting
//! subscriber, HTTP requests and child processes that are always cleaned up;
//! for the fault tests, a hand-made TCP/WebSocket server ([`RawServer`],
//! [`RawWs`]) and waits that poll a condition under a deadline ([`eventually`]).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::http::header::{self, CONTENT_TYPE};
use actix_web::{web, App, HttpRequest, HttpServer};
use actix_web_actors::ws;
use bytes::Bytes;
use feedvisor::transports::TransportRegistry;
use feedvisor::{Deliver, FeedMessage, FeedStatus, Sidecar};
use feedvisor_transport_memory::{MemoryHub, MemoryTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The built-in transports plus the in-memory one on `hub`: what a config
/// naming `memory://` feeds must be checked with (production has no memory
/// transport).
pub fn with_memory(hub: &MemoryHub) -> TransportRegistry {
    let mut transports = TransportRegistry::with_defaults();
    transports.register(Arc::new(MemoryTransport::new(hub.clone())));
    transports
}

/// How long any single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

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
pub fn answer_control<A>(
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
pub struct Upstream {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl Upstream {
    pub fn start(count: usize) -> Upstream {
        Upstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), count)
    }

    /// Starts on a given address (to bring an upstream back on the port it had).
    pub fn start_on(addr: SocketAddr, count: usize) -> Upstream {
        Upstream::start_with(addr, SessionSpec { count, ..SessionSpec::default() })
    }

    /// Like [`Upstream::start_on`], every message tagged `"incarnation": incarnation`.
    pub fn start_tagged(addr: SocketAddr, count: usize, incarnation: u32) -> Upstream {
        let spec = SessionSpec { count, incarnation: Some(incarnation), inbound: None };
        Upstream::start_with(addr, spec)
    }

    /// An upstream that sends nothing and hands every text message it receives to `inbound`.
    pub fn start_recording(addr: SocketAddr, inbound: mpsc::UnboundedSender<String>) -> Upstream {
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

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A subscriber actor that hands every message to the test.
pub struct Collector(pub mpsc::UnboundedSender<FeedMessage>);

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

/// Receives `count` messages, failing the test if they do not come in time.
pub async fn collect(
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
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
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
pub fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

/// A child process that is killed when the test ends, however it ends.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> ChildGuard {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {command:?}: {error}"));
        ChildGuard { child }
    }

    /// The child's standard output as lines, read on a thread and handed over a channel.
    pub fn stdout_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        let stdout: ChildStdout = self.child.stdout.take().expect("stdout piped");
        lines_of(stdout)
    }

    /// The child's standard error as lines.
    pub fn stderr_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
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

/// The next line from `lines` that satisfies `want`, within the deadline.
pub fn wait_for_line(
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

/// How often [`eventually`] probes its condition.
const POLL: Duration = Duration::from_millis(20);

/// Probes until `probe` gives a value, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < give_up, "gave up after {deadline:?} waiting for {what}");
        actix_rt::time::sleep(POLL).await;
    }
}

/// POSTs `body` to the admin server, with `content_type` when given; returns status and body.
pub async fn http_post(
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
pub async fn feed_status(sidecar: &Sidecar, name: &str) -> FeedStatus {
    let feeds = sidecar.feeds().await;
    feeds.into_iter().find(|feed| feed.name == name).unwrap_or_else(|| panic!("no feed {name}"))
}

/// Waits until feed `name`'s status satisfies `want`, and returns that status.
pub async fn wait_for_feed(
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
pub fn metric(sidecar: &Sidecar, name: &str, labels: &str) -> f64 {
    sample(&sidecar.render_metrics(), name, labels).unwrap_or(0.0)
}

/// Waits until the sample `name{labels}` satisfies `want`, and returns its value.
pub async fn wait_for_metric(
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

/// A loopback address nothing listens on: bound to learn a free port, then released.
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

/// A hand-made TCP server on 127.0.0.1 for the faults a real WebSocket server
/// never commits: it records when each connection was accepted and runs
/// `handler(index, socket)` for it (index 0 for the first connection).
/// Stopping it (or dropping it) closes the listener and every connection.
pub struct RawServer {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Instant>>>,
    task: actix_rt::task::JoinHandle<()>,
}

impl RawServer {
    /// Listens on a free loopback port.
    pub async fn start<H, F>(handler: H) -> RawServer
    where
        H: Fn(usize, TcpStream) -> F + 'static,
        F: Future<Output = ()> + 'static,
    {
        RawServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), handler).await
    }

    /// Listens on `addr` (to come back on the port a stopped server had).
    pub async fn start_on<H, F>(addr: SocketAddr, handler: H) -> RawServer
    where
        H: Fn(usize, TcpStream) -> F + 'static,
        F: Future<Output = ()> + 'static,
    {
        let listener = TcpListener::bind(addr).await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let log = accepted.clone();
        let task = actix_rt::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection task.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    next = listener.accept() => {
                        let Ok((socket, _)) = next else { continue };
                        let index = {
                            let mut log = log.lock().expect("accept log");
                            log.push(Instant::now());
                            log.len() - 1
                        };
                        connections.spawn_local(handler(index, socket));
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        RawServer { addr, accepted, task }
    }

    /// When each connection so far was accepted, in order.
    pub fn accept_times(&self) -> Vec<Instant> {
        self.accepted.lock().expect("accept log").clone()
    }

    /// How many connections were accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().expect("accept log").len()
    }

    /// Closes the listener and every connection.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads an HTTP request head (up to the blank line); returns it and any bytes read past it.
pub async fn read_request_head(socket: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The value of header `name` in a request head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`, computed by actix-web-actors' handshake.
pub fn websocket_accept(key: &str) -> String {
    let request = actix_web::test::TestRequest::get()
        .insert_header((header::UPGRADE, "websocket"))
        .insert_header((header::CONNECTION, "Upgrade"))
        .insert_header((header::SEC_WEBSOCKET_VERSION, "13"))
        .insert_header((header::SEC_WEBSOCKET_KEY, key))
        .to_http_request();
    let response = ws::handshake(&request).expect("a valid upgrade request").finish();
    let accept = response.headers().get(header::SEC_WEBSOCKET_ACCEPT).expect("accept header");
    accept.to_str().expect("ASCII").to_owned()
}

/// Answers the HTTP request on `socket` with `status_line` (e.g. "429 Too Many Requests")
/// and `headers`, then closes.
pub async fn answer_status(socket: &mut TcpStream, status_line: &str, headers: &[(&str, &str)]) {
    let mut answer = format!("HTTP/1.1 {status_line}\r\n");
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// WebSocket opcodes.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// One frame as a [`RawWs`] read it (unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        let code = self.payload.get(..2)?;
        (self.opcode == opcode::CLOSE).then(|| u16::from_be_bytes([code[0], code[1]]))
    }
}

/// The server side of a WebSocket connection, framed by hand, so a test can
/// send what a real server library never would.
pub struct RawWs {
    pub socket: TcpStream,
    /// Bytes read but not yet parsed.
    buffer: Vec<u8>,
}

impl RawWs {
    /// Reads the upgrade request and answers 101 with the right accept key.
    pub async fn accept(mut socket: TcpStream) -> std::io::Result<RawWs> {
        let (head, rest) = read_request_head(&mut socket).await?;
        let key = header_value(&head, "sec-websocket-key").ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no Sec-WebSocket-Key")
        })?;
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            websocket_accept(key)
        );
        socket.write_all(answer.as_bytes()).await?;
        Ok(RawWs { socket, buffer: rest })
    }

    /// A whole unmasked server frame: header and payload, as sent on the wire.
    pub fn encode(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(len as u8),
            len @ 126..=0xFFFF => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    /// Writes bytes as they are (one or several encoded frames).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.write_all(bytes).await
    }

    /// Sends one final text frame.
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.write_raw(&RawWs::encode(true, opcode::TEXT, text.as_bytes())).await
    }

    /// Reads the next frame (unmasking it); `None` at the end of the stream.
    pub async fn read_frame(&mut self) -> std::io::Result<Option<RawFrame>> {
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 4096];
            let read = self.socket.read(&mut chunk).await?;
            if read == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn parse_frame(&mut self) -> std::io::Result<Option<RawFrame>> {
        let buffer = &self.buffer;
        if buffer.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode, masked) =
            (buffer[0] & 0x80 != 0, buffer[0] & 0x0F, buffer[1] & 0x80 != 0);
        let (len, mut at) = match buffer[1] & 0x7F {
            126 if buffer.len() >= 4 => (u64::from(u16::from_be_bytes([buffer[2], buffer[3]])), 4),
            127 if buffer.len() >= 10 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&buffer[2..10]);
                (u64::from_be_bytes(bytes), 10)
            }
            126 | 127 => return Ok(None),
            len => (u64::from(len), 2),
        };
        if !masked {
            let error = "a client frame without a mask";
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
        }
        let len = usize::try_from(len).expect("frame length fits");
        if buffer.len() < at + 4 + len {
            return Ok(None);
        }
        let mask = [buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]];
        at += 4;
        let payload =
            buffer[at..at + len].iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]).collect();
        self.buffer.drain(..at + len);
        Ok(Some(RawFrame { fin, opcode, payload }))
    }

    /// Serves like a healthy peer until the connection ends: answers pings
    /// with pongs and a close with a close, and hands text messages to `inbound`.
    pub async fn serve(&mut self, inbound: Option<&mpsc::UnboundedSender<String>>) {
        while let Ok(Some(frame)) = self.read_frame().await {
            match frame.opcode {
                opcode::PING => {
                    let pong = RawWs::encode(true, opcode::PONG, &frame.payload);
                    if self.write_raw(&pong).await.is_err() {
                        return;
                    }
                }
                opcode::CLOSE => {
                    let code = frame.payload.get(..2).unwrap_or_default().to_vec();
                    let _ = self.write_raw(&RawWs::encode(true, opcode::CLOSE, &code)).await;
                    let _ = self.socket.shutdown().await;
                    return;
                }
                opcode::TEXT => {
                    if let Some(inbound) = inbound {
                        let _ = inbound.send(String::from_utf8_lossy(&frame.payload).into_owned());
                    }
                }
                _ => {}
            }
        }
    }
}
