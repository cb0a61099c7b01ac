//! Raw TCP on loopback: listeners on a free port, an address nothing listens
//! on, and [`RawServer`], a server whose every connection a test handles by hand.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A listener on 127.0.0.1, on a port the system picked, and its address.
pub async fn listen_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    (listener, addr)
}

/// A byte stream a peer reads and writes: plain TCP or TLS over it.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> ByteStream for T {}

/// Accepts one connection on `listener` (with `TCP_NODELAY`, so that each
/// write of a peer leaves at once), and completes a TLS handshake on it
/// with `tls` when given.
///
/// # Panics
/// When accepting or the TLS handshake fails.
pub async fn accept_stream(
    listener: &TcpListener,
    tls: Option<&TlsAcceptor>,
) -> Box<dyn ByteStream> {
    let (stream, _) = listener.accept().await.expect("accept a connection");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    match tls {
        None => Box::new(stream),
        Some(acceptor) => Box::new(acceptor.accept(stream).await.expect("server TLS handshake")),
    }
}

/// A loopback address nothing listens on: bound to learn a free port, then released.
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound listener has an address")
}

/// A hand-made TCP server on loopback for the faults a real server library
/// never commits: it records when each connection was accepted and runs
/// `handler(index, socket)` for it (index 0 for the first connection) on the
/// current thread's local task set. Stopping it (or dropping it) closes the
/// listener and every connection.
pub struct RawServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// When each connection was accepted, in order.
    accepted: Arc<Mutex<Vec<Instant>>>,
    /// The accept loop; aborting it drops the listener and every connection task.
    task: JoinHandle<()>,
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
        let addr = listener.local_addr().expect("a bound listener has an address");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let log = accepted.clone();
        let task = tokio::task::spawn_local(async move {
            // Dropping the set (when this task is aborted) aborts every connection task.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    next = listener.accept() => {
                        let Ok((socket, _)) = next else { continue };
                        let index = {
                            let mut log = lock(&log);
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
        lock(&self.accepted).clone()
    }

    /// How many connections were accepted.
    pub fn accepted(&self) -> usize {
        lock(&self.accepted).len()
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

/// The accept log; a handler that panicked while holding it leaves it usable.
fn lock(log: &Mutex<Vec<Instant>>) -> MutexGuard<'_, Vec<Instant>> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
