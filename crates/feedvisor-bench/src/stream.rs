//! `stream`: peak RSS while one large binary message (1 GiB by default,
//! `--stream-size`) passes through a stream-mode feed (`mode = "stream"`,
//! `chunk_size = "64KiB"`) to a subscriber that hashes its chunks.
//!
//! The upstream, in this process on a thread of its own (the blaster's core
//! when pinned), answers the handshake, waits for the go, then writes one
//! binary frame: the header with the whole length, then the payload in
//! 256 KiB slices cut from a pre-computed pseudo-random pattern at varying
//! offsets (so that a chunk out of place changes the hash; the hash of the
//! whole is computed before the go). It never holds the message. On
//! loopback the sender's thread pays for much of the receiving TCP stack:
//! when it used most of its core, it set the pace, and MB/s is a lower bound. The subscriber asks for a queue of
//! [`QUEUE`] batches with backpressure, so nothing is dropped: when it is
//! behind, the feed stops reading the socket.
//!
//! Measured: VmRSS with the feed open and idle; the peak while the message
//! passes (the larger of VmHWM, reset just before the go, and VmRSS sampled
//! every [`SAMPLE_EVERY`] on a thread of its own); the throughput from the go
//! to the last chunk handled; and whether the subscriber's hash and length
//! equal the upstream's. The target: under 64 MiB of peak RSS.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use feedvisor::config::{Config, SubscriberOverflow};
use feedvisor::{Deliver, Sidecar, SubscriptionSpec};

use crate::cpu;
use crate::feeds::POLL;
use crate::figures::StreamFigures;
use crate::format::Table;
use crate::frames::upgrade;
use crate::memory::{self, format_kib};
use crate::options::BenchArgs;
use crate::result::{Extra, Row};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario};
use crate::table;

/// The feed's `chunk_size`.
pub const CHUNK_SIZE: u64 = 64 * 1024;

/// The subscriber's queue, in batches, with backpressure.
pub const QUEUE: usize = 64;

/// How often VmRSS is sampled while the message passes.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Bytes the upstream writes at once.
const SLICE: usize = 256 * 1024;

/// The pattern the slices are cut from.
const PATTERN: usize = 1024 * 1024;

/// Time for allocations to settle before the idle RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The feed's name.
const FEED: &str = "bench-stream";

/// What the report says under the table.
pub const NOTE: &str = "idle: VmRSS with the feed open and nothing flowing; \
peak: the larger of VmHWM (reset before the message) and VmRSS sampled every 5 ms while it passed; \
chunk × queue: what the subscriber's queue alone may hold; \
MB/s: 10^6 bytes a second from the go to the last chunk handled (the subscriber hashes every chunk); \
upstream: the share of its core the upstream used while sending (near 100%, it set the pace and MB/s is a lower bound); \
intact: the subscriber's hash and length equal the upstream's. Target: peak RSS under 64 MiB.";

/// Bytes as whole GiB, MiB or KiB where they are, else bytes.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0 B".to_owned(),
        b if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Runs the one case.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let figures = measure(bench, args.resources.stream_size).await?;
    let case = format!("{} in {} chunks", format_size(figures.bytes), format_size(CHUNK_SIZE));
    let size = usize::try_from(figures.bytes).unwrap_or(usize::MAX);
    Ok(vec![Row::measured(Scenario::Stream, case, 1, size, 1, Extra::Stream(figures))])
}

/// The config of the one stream-mode feed, on `addr`.
pub fn config_text(addr: SocketAddr) -> String {
    format!(
        "# feedvisor-bench stream: one stream-mode feed.\n\
         [defaults.heartbeat]\ninterval = \"0s\"\n\
         [defaults.reconnect]\npolicy = \"fixed\"\ninitial = \"1h\"\njitter = \"none\"\n\n\
         [[feeds]]\nname = \"{FEED}\"\nurl = \"ws://{addr}/\"\nmode = \"stream\"\nchunk_size = \"{}KiB\"\n",
        CHUNK_SIZE / 1024
    )
}

async fn measure(bench: &Bench, size: u64) -> Result<StreamFigures, BenchError> {
    let mut upstream = StreamUpstream::start(size, bench.blaster.core())?;
    let config = Config::from_toml_str(
        &config_text(upstream.addr),
        Path::new("bench-stream.toml"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .map_err(|error| BenchError::Config(error.to_string()))?;
    let (done, received) = oneshot::channel();
    let subscriber = StreamSubscriber {
        hash: StreamHash::new(),
        received: 0,
        chunks: 0,
        problem: None,
        done: Some(done),
    }
    .start();
    let spec = SubscriptionSpec::new("bench-stream-hash", [FEED])
        .with_queue(QUEUE, SubscriberOverflow::Backpressure);
    let sidecar = Sidecar::builder(config)
        .without_http()
        .subscriber(spec, subscriber.recipient())
        .start()
        .await?;
    let outcome = observe(&sidecar, &mut upstream, received, size, bench.timeout).await;
    sidecar.stop().await;
    drop(upstream);
    outcome
}

async fn observe(
    sidecar: &Sidecar,
    upstream: &mut StreamUpstream,
    received: oneshot::Receiver<Received>,
    size: u64,
    timeout: Duration,
) -> Result<StreamFigures, BenchError> {
    let incomplete = |what: String| BenchError::Incomplete(what);
    upstream.connected(timeout).await?;
    let deadline = Instant::now() + timeout;
    while !sidecar.readiness().await.is_some_and(|readiness| readiness.ready) {
        if Instant::now() >= deadline {
            return Err(incomplete(format!("the stream feed did not open within {timeout:?}")));
        }
        actix_rt::time::sleep(POLL).await;
    }
    actix_rt::time::sleep(SETTLE).await;
    let read = |memory: io::Result<memory::Memory>| {
        memory.map_err(|source| BenchError::io("read /proc/self/status", source))
    };
    let idle = read(memory::sample())?.rss_kib;
    let hwm_reset = memory::reset_peak().is_ok();
    let sampler = RssSampler::start();
    let started = Instant::now();
    upstream.go();
    let outcome = tokio::time::timeout(timeout, received).await;
    let sampled = sampler.stop();
    let after = read(memory::sample())?;
    let received = match outcome {
        Ok(Ok(received)) => received,
        Ok(Err(_)) => return Err(incomplete("the stream subscriber stopped".to_owned())),
        Err(_) => {
            return Err(incomplete(format!("the message did not arrive within {timeout:?}")));
        }
    };
    let sent = upstream.sent(timeout).await?;
    let elapsed = received.at.saturating_duration_since(started).as_secs_f64();
    let peak = if hwm_reset { sampled.max(after.hwm_kib) } else { sampled };
    if let Some(problem) = &received.problem {
        eprintln!("stream: {problem}");
    }
    let intact = received.problem.is_none()
        && received.hash == sent.hash
        && received.bytes == sent.bytes
        && sent.bytes == size;
    let figures = StreamFigures {
        bytes: size,
        chunk_size: CHUNK_SIZE,
        queue: QUEUE,
        chunk_queue_kib: CHUNK_SIZE * QUEUE as u64 / 1024,
        idle_rss_kib: idle,
        peak_rss_kib: peak,
        peak_minus_idle_kib: peak.saturating_sub(idle),
        mb_per_s: (received.bytes as f64 / elapsed.max(f64::MIN_POSITIVE) / 1e6 * 10.0).round()
            / 10.0,
        chunks: received.chunks,
        sent_hash: format!("{:016x}", sent.hash),
        received_hash: format!("{:016x}", received.hash),
        intact,
        hwm_reset,
        upstream_cpu_share: ((sent.cpu.as_secs_f64() / sent.wall.as_secs_f64().max(1e-9)) * 1000.0)
            .round()
            / 1000.0,
    };
    eprintln!(
        "stream {}: idle {}, peak {} (+{}), {:.0} MB/s, {} chunks, {}",
        format_size(size),
        format_kib(idle as f64),
        format_kib(peak as f64),
        format_kib(figures.peak_minus_idle_kib as f64),
        figures.mb_per_s,
        figures.chunks,
        if intact { "intact" } else { "NOT intact" }
    );
    Ok(figures)
}

/// What the subscriber got.
struct Received {
    bytes: u64,
    hash: u64,
    chunks: u64,
    problem: Option<String>,
    at: Instant,
}

/// Hashes the chunks of the one message, checking that each starts where the last ended.
struct StreamSubscriber {
    hash: StreamHash,
    received: u64,
    chunks: u64,
    problem: Option<String>,
    done: Option<oneshot::Sender<Received>>,
}

impl Actor for StreamSubscriber {
    type Context = Context<Self>;
}

impl Handler<Deliver> for StreamSubscriber {
    type Result = ();

    fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
        for message in deliver.messages() {
            let Some(chunk) = message.chunk else {
                self.problem.get_or_insert_with(|| "a message not in stream mode".to_owned());
                continue;
            };
            if chunk.offset != self.received {
                self.problem.get_or_insert_with(|| {
                    format!("a chunk at offset {} after {} bytes", chunk.offset, self.received)
                });
            }
            if chunk.aborted {
                self.problem.get_or_insert_with(|| "the message was cut short".to_owned());
            }
            self.hash.update(&message.payload);
            self.received += message.payload.len() as u64;
            self.chunks += 1;
            if chunk.last || chunk.aborted {
                if let Some(done) = self.done.take() {
                    let _ = done.send(Received {
                        bytes: self.received,
                        hash: self.hash.finish(),
                        chunks: self.chunks,
                        problem: self.problem.take(),
                        at: Instant::now(),
                    });
                }
            }
        }
    }
}

/// A fast 64-bit checksum of a byte stream that does not depend on how the
/// stream is cut into pieces (not cryptographic: it checks that what arrived
/// is what was sent, in order).
#[derive(Debug, Clone, Default)]
pub struct StreamHash {
    state: u64,
    /// Bytes of an unfinished 8-byte word, little-endian.
    tail: u64,
    tail_len: u32,
    len: u64,
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(state: u64, word: u64) -> u64 {
    (state ^ word).wrapping_mul(MULTIPLIER).rotate_left(31)
}

impl StreamHash {
    /// The hash of nothing yet.
    pub fn new() -> StreamHash {
        StreamHash::default()
    }

    /// Adds the next bytes of the stream.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        while self.tail_len > 0 {
            let Some((first, rest)) = bytes.split_first() else { return };
            self.push_tail(*first);
            bytes = rest;
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.state = mix(self.state, u64::from_le_bytes(le));
        }
        for byte in words.remainder() {
            self.push_tail(*byte);
        }
    }

    fn push_tail(&mut self, byte: u8) {
        self.tail |= u64::from(byte) << (8 * self.tail_len);
        self.tail_len += 1;
        if self.tail_len == 8 {
            self.state = mix(self.state, self.tail);
            self.tail = 0;
            self.tail_len = 0;
        }
    }

    /// The hash of everything added, with its length.
    pub fn finish(&self) -> u64 {
        let mut state = self.state;
        if self.tail_len > 0 {
            state = mix(state, self.tail);
        }
        state = mix(state, self.len);
        state ^ (state >> 29)
    }
}

/// The highest VmRSS seen, sampled on a thread of its own until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-rss".to_owned())
            .spawn(move || {
                let mut peak = 0;
                loop {
                    peak = peak.max(memory::rss_kib().unwrap_or(0));
                    if flag.load(Ordering::Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
            .ok();
        RssSampler { stop, thread }
    }

    /// The peak, in KiB (0 if the thread could not start).
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|thread| thread.join().ok()).unwrap_or(0)
    }
}

/// What the upstream sent.
struct Sent {
    bytes: u64,
    hash: u64,
    cpu: Duration,
    wall: Duration,
}

/// The stream's upstream, on its own thread.
struct StreamUpstream {
    addr: SocketAddr,
    connected: Option<oneshot::Receiver<()>>,
    go: Option<oneshot::Sender<()>>,
    sent: Option<oneshot::Receiver<io::Result<Sent>>>,
    /// Dropping it ends the thread.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamUpstream {
    fn start(size: u64, core: Option<usize>) -> Result<StreamUpstream, BenchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| BenchError::io("build the upstream's runtime", source))?;
        let (started, start) = std::sync::mpsc::channel();
        let (connected_sender, connected) = oneshot::channel();
        let (go, go_receiver) = oneshot::channel();
        let (sent_sender, sent) = oneshot::channel();
        let (stop, stop_receiver) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bench-upstream".to_owned())
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                runtime.block_on(async move {
                    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = started.send(Err(error));
                            return;
                        }
                    };
                    let _ = started.send(listener.local_addr());
                    tokio::select! {
                        () = send_one(listener, size, connected_sender, go_receiver, sent_sender) => {}
                        _ = stop_receiver => {}
                    }
                });
            })
            .map_err(|source| BenchError::io("start the upstream thread", source))?;
        let addr = start
            .recv()
            .map_err(|_| BenchError::Blaster("the upstream thread died at start".to_owned()))?
            .map_err(|source| BenchError::io("open the upstream's listener", source))?;
        Ok(StreamUpstream {
            addr,
            connected: Some(connected),
            go: Some(go),
            sent: Some(sent),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Waits until the feed's handshake has been answered.
    async fn connected(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let Some(connected) = self.connected.take() else { return Ok(()) };
        match tokio::time::timeout(timeout, connected).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(BenchError::Incomplete(format!(
                "the stream feed did not connect within {timeout:?}"
            ))),
        }
    }

    fn go(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    /// What the upstream sent, once it has.
    async fn sent(&mut self, timeout: Duration) -> Result<Sent, BenchError> {
        let sent = self.sent.take().ok_or_else(|| {
            BenchError::Blaster("the upstream's report was already taken".to_owned())
        })?;
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(Ok(sent))) => Ok(sent),
            Ok(Ok(Err(source))) => Err(BenchError::io("send the stream message", source)),
            _ => Err(BenchError::Blaster("the upstream did not report".to_owned())),
        }
    }
}

impl Drop for StreamUpstream {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts one connection, answers its handshake, waits for the go, sends
/// the message, and keeps the connection open (until the thread is stopped).
async fn send_one(
    listener: TcpListener,
    size: u64,
    connected: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
    sent: oneshot::Sender<io::Result<Sent>>,
) {
    let result = async {
        // Hashed before the go, so that sending costs the upstream only the writes.
        let pattern = pattern(PATTERN + SLICE);
        let mut hash = StreamHash::new();
        for (offset, length) in slices(size) {
            hash.update(&pattern[offset..offset + length]);
        }
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        upgrade(&mut stream).await?;
        let _ = connected.send(());
        go.await.map_err(|_| io::Error::other("no go"))?;
        let cpu_before = cpu::current_thread_cpu()?;
        let started = Instant::now();
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&size.to_be_bytes());
        stream.write_all(&header).await?;
        let mut written = 0u64;
        for (offset, length) in slices(size) {
            stream.write_all(&pattern[offset..offset + length]).await?;
            written += length as u64;
        }
        let wall = started.elapsed();
        let cpu = cpu::current_thread_cpu()?.saturating_sub(cpu_before);
        Ok::<_, io::Error>((stream, Sent { bytes: written, hash: hash.finish(), cpu, wall }))
    }
    .await;
    match result {
        Ok((stream, report)) => {
            let _ = sent.send(Ok(report));
            // The message is whole without a close: hold the connection until stopped.
            std::future::pending::<()>().await;
            drop(stream);
        }
        Err(error) => {
            let _ = sent.send(Err(error));
        }
    }
}

/// The slices of a message of `size` bytes, as offsets into the pattern and
/// lengths: [`SLICE`] bytes each but the last, from varying offsets.
fn slices(size: u64) -> impl Iterator<Item = (usize, usize)> {
    let slice = SLICE as u64;
    (0..size.div_ceil(slice)).map(move |index| {
        let length = (size - index * slice).min(slice) as usize;
        let offset = (index.wrapping_mul(0x9E37_79B9) % PATTERN as u64) as usize;
        (offset, length)
    })
}

/// `length` pseudo-random bytes (xorshift).
fn pattern(length: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut bytes = vec![0u8; length];
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    bytes
}

/// The stream table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "message",
        "chunk × queue",
        "idle RSS",
        "peak RSS",
        "peak − idle",
        "MB/s",
        "upstream",
        "intact",
    ]);
    for row in rows {
        if let Some(Extra::Stream(f)) = &row.extra {
            table.rows.push(vec![
                table::case(row),
                format!(
                    "{} × {} = {}",
                    format_size(f.chunk_size),
                    f.queue,
                    format_kib(f.chunk_queue_kib as f64)
                ),
                format_kib(f.idle_rss_kib as f64),
                format_kib(f.peak_rss_kib as f64),
                format_kib(f.peak_minus_idle_kib as f64),
                format!("{:.0}", f.mb_per_s),
                format!("{:.0}%", f.upstream_cpu_share * 100.0),
                if f.intact { "yes".to_owned() } else { "NO".to_owned() },
            ]);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_does_not_depend_on_how_the_stream_is_cut() {
        let bytes = pattern(10_000);
        let mut whole = StreamHash::new();
        whole.update(&bytes);
        for cuts in [[1, 7, 8, 9], [3, 3, 3, 3], [8, 16, 24, 1000], [0, 0, 5, 9_999]] {
            let mut pieces = StreamHash::new();
            let mut rest = &bytes[..];
            for cut in cuts {
                let (piece, after) = rest.split_at(cut.min(rest.len()));
                pieces.update(piece);
                rest = after;
            }
            pieces.update(rest);
            assert_eq!(pieces.finish(), whole.finish(), "cut at {cuts:?}");
        }
    }

    #[test]
    fn the_hash_sees_order_length_and_content() {
        let hash = |parts: &[&[u8]]| {
            let mut hash = StreamHash::new();
            for part in parts {
                hash.update(part);
            }
            hash.finish()
        };
        let (a, b) = (&[1u8; 16][..], &[2u8; 16][..]);
        assert_ne!(hash(&[a, b]), hash(&[b, a]));
        assert_ne!(hash(&[&[0u8; 3]]), hash(&[&[0u8; 4]]), "trailing zeros count");
        assert_ne!(hash(&[a]), hash(&[b]));
        assert_eq!(hash(&[]), StreamHash::new().finish());
    }

    #[test]
    fn slices_cover_the_message_once() {
        assert_eq!(slices(0).count(), 0);
        let lengths: Vec<usize> = slices(SLICE as u64 * 2 + 5).map(|(_, length)| length).collect();
        assert_eq!(lengths, [SLICE, SLICE, 5]);
        assert!(slices(1 << 30).all(|(offset, length)| offset + length <= PATTERN + SLICE));
        let offsets: std::collections::HashSet<usize> =
            slices(64 * SLICE as u64).map(|(offset, _)| offset).collect();
        assert!(offsets.len() > 32, "slices come from varying offsets");
    }

    #[test]
    fn sizes_print_in_whole_units() {
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(64 << 10), "64 KiB");
        assert_eq!(format_size(1000), "1000 B");
    }

    #[test]
    fn the_config_is_a_stream_mode_feed() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4242));
        let config = Config::from_toml_str(
            &config_text(addr),
            Path::new("bench-stream.toml"),
            &feedvisor::transports::TransportRegistry::with_defaults(),
        )
        .expect("valid");
        assert_eq!(config.feeds.len(), 1);
        assert_eq!(&*config.feeds[0].name, FEED);
    }
}
