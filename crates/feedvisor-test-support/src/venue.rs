//! A WebSocket upstream that enforces what venues enforce, on a thread of
//! its own (so that the test's own work does not skew the times it
//! measures): at most so many messages per rolling window on each
//! connection (above that it closes with 1008, a policy close), and at most
//! so many handshakes per rolling window for the whole server (above that it
//! answers 429). It can also refuse the next handshakes with a given status
//! and `Retry-After`, and drop every connection at once.
//!
//! It counts what a test asserts on: handshakes accepted and when,
//! handshakes refused for rate, policy closes, messages, and the topics
//! each connection subscribed (occurrences of `topic-` in its messages).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::websocket::{
    accept_key, close_payload, encode_frame, header_value, opcode, parse_client_frame,
    read_request_head, FIN,
};

/// What the venue allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct VenueRules {
    /// At most this many messages per window on one connection; above: close 1008.
    pub messages: Option<(usize, Duration)>,
    /// At most this many handshakes per window on the whole server; above: 429.
    pub connects: Option<(usize, Duration)>,
}

/// What the venue saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct VenueStats {
    /// When each handshake request arrived (accepted or not), in order.
    pub requests: Vec<Instant>,
    /// When each accepted handshake was answered 101, in order.
    pub handshakes: Vec<Instant>,
    /// Handshakes answered 429 because of the connect rule.
    pub refused_for_rate: usize,
    /// Handshakes refused because the test asked, and when.
    pub refused_on_request: Vec<Instant>,
    /// Connections closed with 1008 because of the message rule.
    pub policy_closes: usize,
    /// Text messages received, on every connection.
    pub messages: usize,
    /// Topics subscribed on each accepted connection, by its number.
    pub topics: Vec<usize>,
    /// Connections open now.
    pub open: usize,
}

#[derive(Debug, Default)]
struct Shared {
    stats: VenueStats,
    /// Statuses and `Retry-After` seconds to answer the next handshakes with.
    refusals: VecDeque<(u16, Option<u64>)>,
}

/// The venue, running on its own thread until dropped.
pub struct VenueServer {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// Bumped to drop every connection; closed to stop the server.
    drops: watch::Sender<u64>,
    thread: Option<JoinHandle<()>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many of `times` fall within `per` before `now`, after forgetting older ones.
fn in_window(times: &mut VecDeque<Instant>, now: Instant, per: Duration) -> usize {
    while times.front().is_some_and(|&time| now.duration_since(time) >= per) {
        times.pop_front();
    }
    times.len()
}

impl VenueServer {
    /// Starts the venue on a free loopback port.
    ///
    /// # Panics
    /// When no port can be bound or the thread cannot start.
    pub fn start(rules: VenueRules) -> VenueServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (drops, watcher) = watch::channel(0u64);
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("venue-server".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the venue");
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, serve(listener, rules, state, watcher));
            })
            .expect("start the venue's thread");
        VenueServer { addr, shared, drops, thread: Some(thread) }
    }

    /// What it saw so far.
    pub fn stats(&self) -> VenueStats {
        lock(&self.shared).stats.clone()
    }

    /// Answers the next handshake with `status` (and `Retry-After: secs`).
    pub fn refuse_next(&self, status: u16, retry_after_secs: Option<u64>) {
        lock(&self.shared).refusals.push_back((status, retry_after_secs));
    }

    /// Drops every open connection at once (no close frame: the network went).
    pub fn drop_all(&self) {
        self.drops.send_modify(|round| *round += 1);
    }
}

impl Drop for VenueServer {
    fn drop(&mut self) {
        // Closing the channel stops the accept loop and every connection.
        let (closed, _) = watch::channel(0);
        drop(std::mem::replace(&mut self.drops, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    rules: VenueRules,
    shared: Arc<Mutex<Shared>>,
    mut drops: watch::Receiver<u64>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    let handshakes = Arc::new(Mutex::new(VecDeque::new()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let connection = Connection {
                    rules,
                    shared: shared.clone(),
                    handshakes: handshakes.clone(),
                    drops: drops.clone(),
                };
                tokio::task::spawn_local(connection.run(socket));
            }
            changed = drops.changed() => if changed.is_err() { return },
        }
    }
}

struct Connection {
    rules: VenueRules,
    shared: Arc<Mutex<Shared>>,
    /// Accepted handshakes within the connect window, shared by all connections.
    handshakes: Arc<Mutex<VecDeque<Instant>>>,
    drops: watch::Receiver<u64>,
}

/// What becomes of a handshake request.
enum Answer {
    Accept(usize),
    Refuse(u16, Option<u64>),
}

impl Connection {
    async fn run(mut self, mut socket: TcpStream) {
        let Ok((head, rest)) = read_request_head(&mut socket).await else { return };
        let Some(key) = header_value(&head, "sec-websocket-key").map(accept_key) else { return };
        let answer = self.judge(Instant::now());
        let number = match answer {
            Answer::Refuse(status, retry_after) => {
                let retry =
                    retry_after.map(|secs| format!("Retry-After: {secs}\r\n")).unwrap_or_default();
                let refusal = format!(
                    "HTTP/1.1 {status} Refused\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(refusal.as_bytes()).await;
                let _ = socket.shutdown().await;
                return;
            }
            Answer::Accept(number) => number,
        };
        let upgrade = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {key}\r\n\r\n"
        );
        if socket.write_all(upgrade.as_bytes()).await.is_err() {
            return;
        }
        let mut drops = self.drops.clone();
        drops.mark_unchanged();
        tokio::select! {
            _ = self.frames(&mut socket, rest, number) => {}
            _ = drops.changed() => {}
        }
        lock(&self.shared).stats.open -= 1;
    }

    /// Decides on a handshake at `now`, and counts it.
    fn judge(&mut self, now: Instant) -> Answer {
        let mut shared = lock(&self.shared);
        shared.stats.requests.push(now);
        if let Some((status, retry_after)) = shared.refusals.pop_front() {
            shared.stats.refused_on_request.push(now);
            return Answer::Refuse(status, retry_after);
        }
        if let Some((limit, per)) = self.rules.connects {
            let mut handshakes = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
            if in_window(&mut handshakes, now, per) >= limit {
                shared.stats.refused_for_rate += 1;
                return Answer::Refuse(429, None);
            }
            handshakes.push_back(now);
        }
        shared.stats.handshakes.push(now);
        shared.stats.topics.push(0);
        shared.stats.open += 1;
        Answer::Accept(shared.stats.topics.len() - 1)
    }

    /// Reads frames until the connection ends or breaks the message rule.
    async fn frames(
        &self,
        socket: &mut TcpStream,
        mut buffer: Vec<u8>,
        number: usize,
    ) -> io::Result<()> {
        let mut arrivals = VecDeque::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some((frame, taken)) = parse_client_frame(&buffer)? {
                buffer.drain(..taken);
                match frame.opcode {
                    opcode::PING => {
                        socket.write_all(&encode_frame(FIN | opcode::PONG, &frame.payload)).await?;
                    }
                    opcode::CLOSE => {
                        let code = frame.payload.get(..2).unwrap_or_default().to_vec();
                        socket.write_all(&encode_frame(FIN | opcode::CLOSE, &code)).await?;
                        return Ok(());
                    }
                    opcode::TEXT => {
                        let now = Instant::now();
                        let text = String::from_utf8_lossy(&frame.payload);
                        let over = {
                            let mut shared = lock(&self.shared);
                            shared.stats.messages += 1;
                            shared.stats.topics[number] += text.matches("topic-").count();
                            self.rules.messages.is_some_and(|(limit, per)| {
                                arrivals.push_back(now);
                                in_window(&mut arrivals, now, per) > limit
                            })
                        };
                        if over {
                            lock(&self.shared).stats.policy_closes += 1;
                            let close = close_payload(1008, "rate limit exceeded");
                            socket.write_all(&encode_frame(FIN | opcode::CLOSE, &close)).await?;
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            let read = socket.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
    }
}
