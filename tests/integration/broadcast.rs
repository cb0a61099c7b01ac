//! A sequenced WebSocket upstream for tests: every connection gets the same
//! numbers, `{"seq": n}`, at a steady rate, as a market data feed sends
//! them; it can cut each connection a fixed time after it opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpServer};
use actix_web_actors::ws;
use serde_json::json;
use tokio::sync::broadcast;

use crate::support::answer_control;

/// The paths of the sessions open now, one entry per session.
pub(crate) type OpenPaths = Arc<Mutex<Vec<String>>>;

/// An upstream session that forwards the broadcast numbers as `{"seq": n}`.
struct BroadcastSession {
    numbers: Option<broadcast::Receiver<u64>>,
    path: String,
    open: OpenPaths,
    /// Cut the connection (no close frame) this long after it opened.
    cut_after: Option<Duration>,
}

impl Actor for BroadcastSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.open.lock().expect("open paths").push(self.path.clone());
        if let Some(after) = self.cut_after {
            ctx.run_later(after, |_, ctx| ctx.stop());
        }
        let Some(numbers) = self.numbers.take() else { return };
        let stream = futures_util::stream::unfold(numbers, |mut numbers| async move {
            loop {
                match numbers.recv().await {
                    Ok(seq) => return Some((seq, numbers)),
                    // A slow connection misses numbers, as a real one would.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        ctx.add_stream(stream);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let mut open = self.open.lock().expect("open paths");
        if let Some(at) = open.iter().position(|path| *path == self.path) {
            open.remove(at);
        }
    }
}

impl StreamHandler<u64> for BroadcastSession {
    fn handle(&mut self, seq: u64, ctx: &mut Self::Context) {
        ctx.text(json!({ "seq": seq }).to_string());
    }

    /// The broadcast ended: the session stays open, quiet.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for BroadcastSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        answer_control(message, ctx);
    }
}

/// A WebSocket upstream that sends every connection the same numbers at a
/// steady rate, as a market data feed does: a connection opened later joins
/// the stream where it stands.
pub(crate) struct BroadcastUpstream {
    pub(crate) addr: std::net::SocketAddr,
    /// The paths of the sessions open now.
    pub(crate) open: OpenPaths,
    /// The next number to broadcast.
    next: Arc<AtomicU64>,
    /// Cleared to stop broadcasting.
    /// Held while a number is sent: once it is false, no number is sent again.
    running: Arc<Mutex<bool>>,
    pub(crate) handle: ServerHandle,
}

impl BroadcastUpstream {
    /// Broadcasts a number every `every`.
    pub(crate) fn start(every: Duration) -> Self {
        Self::cutting(every, None)
    }

    /// Broadcasts a number every `every`, and cuts each connection `cut_after` after it opened.
    pub(crate) fn cutting(every: Duration, cut_after: Option<Duration>) -> Self {
        let (numbers, _) = broadcast::channel::<u64>(1 << 16);
        let open = OpenPaths::default();
        let (sessions, sender) = (open.clone(), numbers.clone());
        let server = HttpServer::new(move || {
            let (sessions, sender) = (sessions.clone(), sender.clone());
            App::new().default_service(web::get().to(
                move |request: HttpRequest, stream: web::Payload| {
                    let session = BroadcastSession {
                        numbers: Some(sender.subscribe()),
                        path: request.path().to_owned(),
                        open: sessions.clone(),
                        cut_after,
                    };
                    async move { ws::start(session, &request, stream) }
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
        let next = Arc::new(AtomicU64::new(1));
        let running = Arc::new(Mutex::new(true));
        let (counter, run) = (next.clone(), running.clone());
        actix_rt::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                // Checked and sent under the lock, so that a stop between the
                // tick and the send cannot let a number past the last one out.
                let running = run.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if !*running {
                    return;
                }
                let _ = numbers.send(counter.fetch_add(1, Ordering::SeqCst));
            }
        });
        BroadcastUpstream { addr, open, next, running, handle }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://{}/{path}", self.addr)
    }

    /// The number the upstream sends next.
    pub(crate) fn next_number(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Stops broadcasting; returns the last number sent.
    pub(crate) fn stop_broadcasting(&self) -> u64 {
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *running = false;
        // No send is under way (it holds the lock) and none follows.
        self.next.load(Ordering::SeqCst) - 1
    }
}
