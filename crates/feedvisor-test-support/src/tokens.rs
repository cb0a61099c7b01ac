//! An upstream that enforces short-lived tokens, as venues do: it issues
//! tokens (`POST /token`, answered in the shape of a credential provider's
//! output) that expire after a set lifetime, refuses a WebSocket handshake
//! whose `Authorization: Bearer` token is unknown or expired with 401, and
//! ends an open connection when its token expires, with a close code or an
//! error reply. It records every issue, handshake and expiry in order, so
//! that tests can check what a client did between them.
//!
//! One port serves both: a request for `/token` is answered as HTTP, any
//! other as a WebSocket upgrade. Runs on a thread of its own until dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::websocket::{
    close_payload, encode_frame, header_value, opcode, read_request_head, Answered, RawWs, FIN,
};

/// What the upstream does when an open connection's token expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnExpiry {
    /// Closes with this code (and reason `token expired`).
    Close(u16),
    /// Sends this text and waits for the client to close (closing with 1008
    /// after two seconds if it does not).
    Reply(String),
}

/// How a handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The token was valid: 101.
    Accepted,
    /// No bearer token: 401.
    Missing,
    /// A token this upstream never issued (or spoiled): 401.
    Unknown,
    /// A token it issued that had expired: 401. A client must never cause one.
    Expired,
}

/// One thing the upstream saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    /// A token was issued (one run of a client's provider).
    Issued,
    /// A handshake arrived.
    Handshake(Handshake),
    /// An open connection's token expired and the upstream ended it.
    ExpiredWhileOpen,
    /// A text message on an open connection that named a token other than its own.
    WrongTokenInMessage,
    /// The test intervened (a kill, or a reconnect it asked the client
    /// for): what follows is not the client's doing alone.
    Intervention,
}

struct State {
    /// Issued tokens and when each expires (spoiled ones are not here).
    tokens: HashMap<String, Instant>,
    /// Every token issued, spoiled or not.
    issued: Vec<String>,
    events: Vec<TokenEvent>,
    /// Tokens still to issue unregistered (refused at the handshake).
    spoil: usize,
    lifetime: Duration,
    on_expiry: OnExpiry,
    /// Text messages received on open connections.
    received: Vec<String>,
    /// Whether issued tokens come with a URL that carries the token in its path.
    token_in_url: bool,
    /// Where the upstream listens, for the URLs it issues.
    addr: Option<SocketAddr>,
}

/// See the module docs.
pub struct TokenUpstream {
    /// Where it listens: `http://{addr}/token` issues, `ws://{addr}/feed` serves.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Bumped to drop every open connection at once.
    kill: watch::Sender<u64>,
    /// Dropping it stops the server.
    _stop: oneshot::Sender<()>,
}

impl TokenUpstream {
    /// Starts an upstream whose tokens live `lifetime`.
    pub fn start(lifetime: Duration, on_expiry: OnExpiry) -> TokenUpstream {
        let state = Arc::new(Mutex::new(State {
            tokens: HashMap::new(),
            issued: Vec::new(),
            events: Vec::new(),
            spoil: 0,
            lifetime,
            on_expiry,
            received: Vec::new(),
            token_in_url: false,
            addr: None,
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let (kill, killed) = watch::channel(0u64);
        let (ready, addr) = std::sync::mpsc::channel();
        let served = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the token upstream");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let (listener, addr) = crate::net::listen_loopback().await;
                ready.send(addr).expect("the test waits for the address");
                let accept_loop = async move {
                    while let Ok((socket, _)) = listener.accept().await {
                        let state = served.clone();
                        let killed = killed.clone();
                        tokio::task::spawn_local(serve(socket, state, killed));
                    }
                };
                tokio::select! {
                    _ = accept_loop => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = addr.recv_timeout(crate::TEST_DEADLINE).expect("the token upstream started");
        lock(&state).addr = Some(addr);
        TokenUpstream { addr, state, kill, _stop: stop }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Everything seen so far, in order.
    pub fn events(&self) -> Vec<TokenEvent> {
        self.state().events.clone()
    }

    /// Every token issued so far (to look for in logs).
    pub fn issued(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    /// Text messages received on open connections.
    pub fn received(&self) -> Vec<String> {
        self.state().received.clone()
    }

    /// From now on, a token is issued with a URL to use, `ws://ADDR/feed/TOKEN`,
    /// as venues that put a listen key in the path do; a handshake may then
    /// carry its token there instead of in `Authorization`.
    pub fn put_token_in_url(&self) {
        self.state().token_in_url = true;
    }

    /// The next `count` tokens are issued but not honoured: their handshakes get 401.
    pub fn spoil_next(&self, count: usize) {
        self.state().spoil += count;
    }

    /// Drops every open connection without a close frame (a server-side kill).
    pub fn kill_connections(&self) {
        self.mark_intervention();
        self.kill.send_modify(|generation| *generation += 1);
    }

    /// Records [`TokenEvent::Intervention`]: the test is about to disturb the client.
    pub fn mark_intervention(&self) {
        self.state().events.push(TokenEvent::Intervention);
    }

    /// Handshakes with the given outcome so far.
    pub fn handshakes(&self, outcome: Handshake) -> usize {
        self.events().iter().filter(|event| **event == TokenEvent::Handshake(outcome)).count()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A token nobody can guess, and that no log line has by chance.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("tok-{hex}")
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>, killed: watch::Receiver<u64>) {
    let Ok((head, rest)) = read_request_head(&mut socket).await else { return };
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    if path.starts_with("/token") {
        issue(socket, &state).await;
        return;
    }
    let in_path = path.strip_prefix("/feed/").filter(|token| token.starts_with("tok-"));
    let bearer = header_value(&head, "authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .or(in_path)
        .map(str::to_owned);
    let (_, expires) = {
        let mut state = lock(&state);
        let found = bearer.as_ref().map(|token| state.tokens.get(token).copied());
        let outcome = match found {
            None => (Handshake::Missing, None),
            Some(None) => (Handshake::Unknown, None),
            Some(Some(expires)) if expires <= Instant::now() => (Handshake::Expired, None),
            Some(Some(expires)) => (Handshake::Accepted, Some(expires)),
        };
        state.events.push(TokenEvent::Handshake(outcome.0));
        outcome
    };
    let (Some(expires), Some(token)) = (expires, bearer) else {
        let refusal = "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = socket.write_all(refusal.as_bytes()).await;
        let _ = socket.shutdown().await;
        return;
    };
    // Reassemble the request for the WebSocket accept: it reads the head itself.
    let replay = Replay { head: Some([head.into_bytes(), rest].concat()), socket };
    let Ok(ws) = RawWs::accept(replay).await else { return };
    open(ws, &token, expires, state, killed).await;
}

/// Answers `POST /token` (any method) with a fresh token in a provider's shape.
async fn issue(mut socket: TcpStream, state: &Mutex<State>) {
    let body = {
        let mut state = lock(state);
        let token = new_token();
        let lifetime = state.lifetime;
        if state.spoil > 0 {
            state.spoil -= 1;
        } else {
            state.tokens.insert(token.clone(), Instant::now() + lifetime);
        }
        state.issued.push(token.clone());
        state.events.push(TokenEvent::Issued);
        let expires_at = humantime::format_rfc3339_millis(SystemTime::now() + lifetime);
        match state.addr.filter(|_| state.token_in_url) {
            Some(addr) => format!(
                r#"{{"url":"ws://{addr}/feed/{token}","values":{{"token":"{token}"}},"expires_at":"{expires_at}"}}"#
            ),
            None => format!(
                r#"{{"headers":{{"Authorization":"Bearer {token}"}},"values":{{"token":"{token}"}},"expires_at":"{expires_at}"}}"#
            ),
        }
    };
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Serves an open connection: a tick every 200 ms, pings answered, text
/// messages checked for the connection's own token, and the token's expiry enforced.
async fn open(
    mut ws: RawWs<Replay>,
    token: &str,
    expires: Instant,
    state: Arc<Mutex<State>>,
    mut killed: watch::Receiver<u64>,
) {
    killed.mark_unchanged();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let expiry = tokio::time::sleep_until(expires.into());
    tokio::pin!(expiry);
    let mut expired = false;
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = killed.changed() => return,
            _ = &mut expiry => {
                if expired {
                    // The reply went unheeded for two seconds.
                    let close = encode_frame(FIN | opcode::CLOSE, &close_payload(1008, "token expired"));
                    let _ = ws.write_raw(&close).await;
                    return;
                }
                expired = true;
                let on_expiry = {
                    let mut state = lock(&state);
                    state.events.push(TokenEvent::ExpiredWhileOpen);
                    state.on_expiry.clone()
                };
                match on_expiry {
                    OnExpiry::Close(code) => {
                        let close = encode_frame(FIN | opcode::CLOSE, &close_payload(code, "token expired"));
                        let _ = ws.write_raw(&close).await;
                        let _ = ws.socket.socket.shutdown().await;
                        return;
                    }
                    OnExpiry::Reply(text) => {
                        if ws.send_text(&text).await.is_err() {
                            return;
                        }
                        expiry.as_mut().reset((Instant::now() + Duration::from_secs(2)).into());
                    }
                }
            }
            _ = ticks.tick() => {
                tick += 1;
                if !expired && ws.send_text(&format!("{{\"tick\":{tick}}}")).await.is_err() {
                    return;
                }
            }
            frame = ws.read_frame() => {
                let Ok(Some(frame)) = frame else { return };
                match ws.answer(frame).await {
                    Answered::Done => return,
                    Answered::Text(text) => {
                        let mut state = lock(&state);
                        if text.contains("tok-") && !text.contains(token) {
                            state.events.push(TokenEvent::WrongTokenInMessage);
                        }
                        state.received.push(text);
                    }
                    Answered::Other => {}
                }
            }
        }
    }
}

/// A socket whose first read gives back the request head already read.
struct Replay {
    head: Option<Vec<u8>>,
    socket: TcpStream,
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(mut head) = self.head.take() {
            let taken = head.len().min(buf.remaining());
            buf.put_slice(&head[..taken]);
            if taken < head.len() {
                self.head = Some(head.split_off(taken));
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}
