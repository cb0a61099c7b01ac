//! Helpers shared by the integration tests: a real upstream, a collecting
//! subscriber, HTTP requests and child processes that are always cleaned up.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpServer};
use actix_web_actors::ws;
use feedvisor::{Deliver, FeedMessage};
use tokio::sync::mpsc;

/// How long any single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// An upstream session that sends `count` numbered JSON messages as soon as it opens.
struct SequenceSession {
    count: usize,
}

impl Actor for SequenceSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for seq in 0..self.count {
            ctx.text(format!(r#"{{"seq":{seq},"symbol":"SYM{}"}}"#, seq % 3));
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for SequenceSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
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
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::new(count)).route(
                "/sequence",
                web::get().to(
                    |request: HttpRequest, stream: web::Payload, count: web::Data<usize>| async move {
                        ws::start(SequenceSession { count: **count }, &request, stream)
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
