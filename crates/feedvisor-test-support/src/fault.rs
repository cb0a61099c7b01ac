//! A TCP proxy on loopback that commits the faults real networks commit,
//! between a client under test and its upstream: added latency with jitter
//! (order kept), delivery in slices as small as one byte, a cut after N more
//! bytes (mid-frame), a reset (RST) of every open connection, a blackhole in
//! one or both directions (bytes read and dropped: the half-open case), a
//! stall of the upstream's answers from the first byte (a TLS handshake that
//! never completes), and accept-then-silence (no upstream at all).
//!
//! Faults are set with [`FaultProxy::set`] and apply at once, to connections
//! already open as well as to new ones. Each direction of a connection is a
//! reader and a writer joined by a bounded queue of [`QUEUE_CHUNKS`] chunks:
//! when the writer is behind (latency, slicing, a peer that stops reading)
//! the reader waits, so a slow side pushes back instead of growing memory.
//! Dropping the proxy (or [`FaultProxy::stop`]) closes the listener and
//! every connection. [`sockets_on`] counts this process's sockets on a port,
//! from `/proc`, so a test can check that every socket of a case is closed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Chunks a direction holds between its reader and its writer; the reader
/// waits when they are all taken.
pub const QUEUE_CHUNKS: usize = 64;

/// The largest chunk one read takes.
const READ_CHUNK: usize = 16 * 1024;

/// How often a stalled direction looks whether the stall was lifted.
const STALL_CHECK: Duration = Duration::from_millis(5);

/// What the proxy does to the bytes it carries. The default carries them untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added to every chunk's delivery, in each direction.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk; chunks never overtake each other.
    pub jitter: Duration,
    /// Each chunk written in pieces of at most this many bytes, one write each.
    pub slice: Option<usize>,
    /// After this many more bytes towards the client, both sockets of the
    /// connection are closed (once: the budget is spent by the cut).
    pub cut_after: Option<u64>,
    /// Bytes from the client are read and dropped.
    pub blackhole_to_upstream: bool,
    /// Bytes from the upstream are read and dropped.
    pub blackhole_to_client: bool,
    /// Bytes from the upstream are held back (not read) while set: a TLS
    /// handshake through the proxy stalls after the client's hello.
    pub stall_to_client: bool,
    /// New connections are accepted and then left alone: never connected
    /// upstream, never answered (their bytes are read and dropped).
    pub silent: bool,
}

impl Faults {
    /// A fault-free proxy with `latency` and `jitter` in each direction.
    pub fn latency(latency: Duration, jitter: Duration) -> Faults {
        Faults { latency, jitter, ..Faults::default() }
    }

    /// Delivery in pieces of at most `bytes` bytes.
    pub fn sliced(bytes: usize) -> Faults {
        Faults { slice: Some(bytes.max(1)), ..Faults::default() }
    }

    /// Both directions blackholed.
    pub fn blackhole() -> Faults {
        Faults { blackhole_to_upstream: true, blackhole_to_client: true, ..Faults::default() }
    }
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the client to the upstream.
    ToUpstream,
    /// From the upstream to the client.
    ToClient,
}

/// What every connection task shares with the proxy handle.
#[derive(Debug)]
struct Shared {
    /// The current faults.
    faults: Mutex<Faults>,
    /// Where connections go.
    upstream: SocketAddr,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    /// Bumped by [`FaultProxy::reset`]: every connection open then resets.
    resets: watch::Sender<u64>,
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The proxy: where clients connect, and the handle that sets its faults.
pub struct FaultProxy {
    /// Where it listens (127.0.0.1, a port chosen at start).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; aborting it drops the listener and every connection.
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `upstream` on a free loopback port, with `faults` from the start.
    pub async fn start(upstream: SocketAddr, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            upstream,
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            resets: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        FaultProxy { addr, shared, task }
    }

    /// Replaces the faults; open connections follow at their next chunk.
    pub fn set(&self, faults: Faults) {
        *self.shared.faults() = faults;
    }

    /// The faults now in force (a cut that fired is no longer among them).
    pub fn faults(&self) -> Faults {
        self.shared.faults().clone()
    }

    /// Resets every open connection: both sockets closed with an RST.
    pub fn reset(&self) {
        self.shared.resets.send_modify(|resets| *resets += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            next = listener.accept() => {
                let Ok((client, _)) = next else { continue };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(connection(client, shared.clone()));
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Carries one connection until either side ends it, a cut, or a reset.
async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(shared.clone());
    let _ = client.set_nodelay(true);
    let mut resets = shared.resets.subscribe();
    resets.mark_unchanged();
    let mut upstream = None;
    let reset = if shared.faults().silent {
        let mut buffer = vec![0u8; READ_CHUNK];
        tokio::select! {
            _ = async { while matches!(client.read(&mut buffer).await, Ok(n) if n > 0) {} } => false,
            _ = resets.changed() => true,
        }
    } else {
        let Ok(mut connected) = TcpStream::connect(shared.upstream).await else { return };
        let _ = connected.set_nodelay(true);
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = connected.split();
        // Either direction's end (EOF, error, cut) ends the connection: a
        // proxy that half-closes would hide the fault under test behind a
        // lingering socket.
        let reset = tokio::select! {
            _ = pump(client_read, upstream_write, Direction::ToUpstream, shared.clone()) => false,
            _ = pump(upstream_read, client_write, Direction::ToClient, shared.clone()) => false,
            _ = resets.changed() => true,
        };
        upstream = Some(connected);
        reset
    };
    if reset {
        // Linger 0: dropping the sockets sends an RST, not a FIN.
        for socket in std::iter::once(&client).chain(upstream.as_ref()) {
            let _ = socket.set_zero_linger();
        }
    }
}

/// A chunk on its way, and when it may be written.
struct Chunk {
    bytes: Vec<u8>,
    due: Instant,
}

/// Moves bytes one way until EOF, an error or a cut, then writes what is
/// still queued.
async fn pump(
    mut read: ReadHalf<'_>,
    mut write: WriteHalf<'_>,
    direction: Direction,
    shared: Arc<Shared>,
) {
    let (sender, mut receiver) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let faults = shared.clone();
    let reader = async move {
        let mut last_due = Instant::now();
        loop {
            while direction == Direction::ToClient && faults.faults().stall_to_client {
                tokio::time::sleep(STALL_CHECK).await;
            }
            let mut buffer = vec![0u8; READ_CHUNK];
            let read_len = match read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read_len) => read_len,
            };
            buffer.truncate(read_len);
            let Some((delay, cut)) = faults.faults().apply(direction, &mut buffer) else {
                continue;
            };
            // Never earlier than the chunk before it: jitter does not reorder.
            last_due = last_due.max(Instant::now() + delay);
            if sender.send(Chunk { bytes: buffer, due: last_due }).await.is_err() || cut {
                return;
            }
        }
    };
    let writer = async {
        while let Some(chunk) = receiver.recv().await {
            tokio::time::sleep_until(chunk.due).await;
            let slice = shared.faults().slice.unwrap_or(usize::MAX);
            for piece in chunk.bytes.chunks(slice) {
                if write.write_all(piece).await.is_err() {
                    return;
                }
            }
        }
    };
    // The reader ends first (EOF, error, cut) and drops the sender; the
    // writer then writes what was already read before the connection ends.
    tokio::join!(reader, writer);
}

impl Faults {
    /// What the faults do to a chunk read in `direction`: `None` when it is
    /// dropped, else its delay and whether the connection is cut after it
    /// (the chunk then truncated to the budget left, which is spent).
    fn apply(&mut self, direction: Direction, chunk: &mut Vec<u8>) -> Option<(Duration, bool)> {
        let dropped = match direction {
            Direction::ToUpstream => self.blackhole_to_upstream,
            Direction::ToClient => self.blackhole_to_client,
        };
        if dropped {
            return None;
        }
        let mut cut = false;
        if let (Direction::ToClient, Some(budget)) = (direction, self.cut_after) {
            let len = chunk.len() as u64;
            if len >= budget {
                chunk.truncate(usize::try_from(budget).unwrap_or(usize::MAX));
                self.cut_after = None;
                cut = true;
            } else {
                self.cut_after = Some(budget - len);
            }
        }
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=self.jitter)
        };
        Some((self.latency + jitter, cut))
    }
}

/// This process's TCP sockets whose local or remote port is `port`, from
/// `/proc/self/net/tcp{,6}` and `/proc/self/fd`: what a test checks to see
/// that every socket of a case was closed, whatever other tests in the same
/// process are doing on other ports.
pub fn sockets_on(port: u16) -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            let on_port = [local, remote].iter().any(|address| {
                address
                    .rsplit_once(':')
                    .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                    .is_some_and(|found| found == port)
            });
            if on_port && *inode != "0" {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| inodes.contains(target.to_string_lossy().as_ref()))
        .count()
}

/// Live processes whose command line holds `marker`, from `/proc`: what a
/// test checks to see that a program it had started (with the marker among
/// its arguments) was killed.
pub fn processes_with(marker: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry.file_name().to_string_lossy().bytes().all(|byte| byte.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}
