//! What permessage-deflate costs: CPU per message of one feed receiving the
//! same stream of ticks compressed (context takeover, a 32 KiB window, as
//! servers do by default) and uncompressed, and the memory each compressed
//! feed holds while idle: its inflater, with the default window and with
//! the 512-byte window `server_max_window_bits = 9` asks for.
//!
//! The upstream runs on a thread of its own (the blaster's core when
//! pinned). It compresses the whole stream before the go, so the CPU
//! figures are the client's inflating alone. The idle figure is taken from
//! inflaters alone, as the transport keeps one per connection (we keep no
//! compressor between the messages we send): RSS measured around a whole
//! sidecar moved by more than that from one group of feeds to the next
//! (freed message buffers are reused), so it could not tell.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use flate2::{Compress, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use feedvisor::config::{Config, SubscriberOverflow};
use feedvisor::{Sidecar, SubscriptionSpec};

use crate::cpu::{self, ProcessCpu};
use crate::figures::CompressedFigures;
use crate::format::Table;
use crate::frames::frame_header;
use crate::memory::{self, format_kib};
use crate::options::BenchArgs;
use crate::result::{Extra, Row};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario};
use crate::tally::{CountingSubscriber, Tally};

/// Messages of the CPU cases, at most (`--messages` when fewer).
pub const MESSAGES: u64 = 200_000;

/// Inflaters measured together for the idle figure.
pub const IDLE_FEEDS: usize = 500;

/// Ticks each inflater takes before it idles: about 38 KiB, enough to fill
/// a 32 KiB window (context takeover keeps it filled).
pub const IDLE_MESSAGES: u64 = 300;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// The note under the table.
pub const NOTE: &str = "cpu/msg: CPU time of the whole process but the upstream's thread, \
from the go to the last message handled, per message (a subscriber that counts); \
wire: payload bytes per message on the wire; RSS/feed: VmRSS growth over 500 inflaters \
(zlib-rs, as the transport keeps one per compressed connection) that each inflated 300 ticks \
(38 KiB) compressed with that window, per inflater: what a compressed feed holds while idle, \
on top of what any feed holds.";

/// Runs the CPU cases, then the idle ones.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let messages = args.messages.clamp(1, MESSAGES);
    let core = bench.blaster.core();
    let mut rows = Vec::new();
    for compressed in [false, true] {
        let figures = cpu_case(compressed, messages, core, bench.timeout).await?;
        rows.push(row(figures));
    }
    for window_bits in [15, 9] {
        rows.push(row(inflaters_alone(window_bits)?));
    }
    Ok(rows)
}

/// The RSS of [`IDLE_FEEDS`] inflaters alone (zlib-rs through flate2, as the
/// WebSocket transport keeps one per compressed connection), each having
/// inflated the idle feeds' stream, compressed with `window_bits`: what a
/// compressed feed holds between messages, without the transient
/// allocations of delivering them that the sidecar rows include.
fn inflaters_alone(window_bits: u8) -> Result<CompressedFigures, BenchError> {
    let mut deflater = Deflater::new(window_bits);
    let stream: Vec<Vec<u8>> =
        (0..IDLE_MESSAGES).map(|seq| deflater.message(tick(seq).as_bytes())).collect();
    let mut out = Vec::with_capacity(64 << 10);
    let before = memory::rss_kib().map_err(|source| BenchError::io("read VmRSS", source))?;
    let mut kept = Vec::with_capacity(IDLE_FEEDS);
    for _ in 0..IDLE_FEEDS {
        let mut inflater = flate2::Decompress::new_with_window_bits(false, window_bits);
        for message in &stream {
            for input in [message.as_slice(), &[0x00, 0x00, 0xff, 0xff]] {
                out.clear();
                inflater
                    .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
                    .map_err(|error| BenchError::Incomplete(format!("inflate: {error}")))?;
            }
        }
        kept.push(inflater);
    }
    let after = memory::rss_kib().map_err(|source| BenchError::io("read VmRSS", source))?;
    drop(kept);
    Ok(CompressedFigures {
        compression: format!("inflater alone, window_bits = {window_bits}"),
        messages: 0,
        cpu_ns_per_msg: None,
        wire_bytes_per_msg: None,
        payload_bytes_per_msg: tick(0).len() as f64,
        idle_feeds: IDLE_FEEDS,
        rss_per_feed_kib: Some(after.saturating_sub(before) as f64 / IDLE_FEEDS as f64),
    })
}

fn row(figures: CompressedFigures) -> Row {
    let case = if figures.messages > 0 {
        format!("{} × {} msgs", figures.compression, figures.messages)
    } else {
        format!("{} × {} idle", figures.compression, figures.idle_feeds)
    };
    let conns = if figures.messages > 0 { 1 } else { figures.idle_feeds };
    let size = figures.payload_bytes_per_msg.round() as usize;
    Row::measured(Scenario::Compressed, case, conns, size, 1, Extra::Compressed(figures))
}

/// The table of the rows.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&["case", "payload", "wire", "cpu/msg", "RSS/feed"]);
    for row in rows {
        let Some(Extra::Compressed(f)) = &row.extra else { continue };
        table.rows.push(vec![
            row.case.clone(),
            format!("{:.0} B", f.payload_bytes_per_msg),
            f.wire_bytes_per_msg.map_or("-".to_owned(), |b| format!("{b:.0} B")),
            f.cpu_ns_per_msg.map_or("-".to_owned(), |ns| format!("{ns:.0} ns")),
            f.rss_per_feed_kib.map_or("-".to_owned(), format_kib),
        ]);
    }
    table
}

/// The `seq`-th tick: JSON like a trade feed's, about 150 bytes.
fn tick(seq: u64) -> String {
    format!(
        r#"{{"type":"trade","symbol":"SYM{}","price":{}.{:02},"size":{},"exchange":"XNAS","conditions":["@","F"],"ts":{},"seq":{seq}}}"#,
        seq % 50,
        100 + seq % 97,
        seq % 100,
        (seq % 9 + 1) * 100,
        1_795_656_159_639u64 + seq * 3,
    )
}

/// A raw-deflate compressor as a server keeps one per connection.
struct Deflater(Compress);

impl Deflater {
    fn new(window_bits: u8) -> Self {
        Deflater(Compress::new_with_window_bits(flate2::Compression::default(), false, window_bits))
    }

    /// One message compressed (sync-flushed, its trailing `00 00 ff ff` removed).
    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut position = 0;
        loop {
            out.reserve(out.capacity().max(256));
            let before = self.0.total_in();
            if self.0.compress_vec(&data[position..], &mut out, FlushCompress::Sync).is_err() {
                return data.to_vec();
            }
            position += (self.0.total_in() - before) as usize;
            if position == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        out.truncate(out.len().saturating_sub(4));
        out
    }
}

/// The stream of the CPU cases, encoded: frames, payload bytes, wire payload bytes.
pub(crate) fn encode_stream(
    compressed: bool,
    messages: u64,
    window_bits: u8,
) -> (Vec<u8>, u64, u64) {
    let mut deflater = Deflater::new(window_bits);
    let (mut bytes, mut payload, mut wire) = (Vec::new(), 0u64, 0u64);
    for seq in 0..messages {
        let text = tick(seq);
        payload += text.len() as u64;
        let (first, body) = if compressed {
            (0xC1, deflater.message(text.as_bytes()))
        } else {
            (0x81, text.into_bytes())
        };
        wire += body.len() as u64;
        bytes.extend(frame_header(first, body.len()));
        bytes.extend(body);
    }
    (bytes, payload, wire)
}

/// What the upstream writes to each connection once it answered and the go came.
#[derive(Clone)]
struct Behaviour {
    /// The stream uncompressed, for a client that offered nothing.
    plain: Arc<Vec<u8>>,
    /// The stream compressed, for a client that offered permessage-deflate.
    compressed: Arc<Vec<u8>>,
    /// Turns true at the go.
    go: watch::Receiver<bool>,
}

/// The in-process upstream, on a thread of its own.
struct Upstream {
    addr: SocketAddr,
    thread_id: u32,
    _thread: std::thread::JoinHandle<()>,
}

impl Upstream {
    fn start(behaviour: Behaviour, core: Option<usize>) -> Result<Upstream, BenchError> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|source| BenchError::io("bind the upstream", source))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| BenchError::io("bind the upstream", source))?;
        let addr = std_listener
            .local_addr()
            .map_err(|source| BenchError::io("bind the upstream", source))?;
        let (ids, id) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Some(id) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id });
            }
            let _ = ids.send(cpu::current_thread_id().unwrap_or(0));
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else { return };
                let local = tokio::task::LocalSet::new();
                local
                    .run_until(async move {
                        while let Ok((stream, _)) = listener.accept().await {
                            let behaviour = behaviour.clone();
                            tokio::task::spawn_local(async move {
                                let _ = serve(stream, behaviour).await;
                            });
                        }
                    })
                    .await;
            });
        });
        let thread_id = id.recv().unwrap_or(0);
        Ok(Upstream { addr, thread_id, _thread: thread })
    }
}

/// Answers the upgrade (accepting permessage-deflate when offered), then behaves.
async fn serve(mut stream: TcpStream, behaviour: Behaviour) -> io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 || request.len() > 16 << 10 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
    let accept = crate::frames::accept_key(&request)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    let offered = head.contains("permessage-deflate");
    let small_window = head.contains("server_max_window_bits=9");
    let extension = match (offered, small_window) {
        (false, _) => String::new(),
        (true, false) => "Sec-WebSocket-Extensions: permessage-deflate\r\n".to_owned(),
        (true, true) => {
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n".to_owned()
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extension}\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    let Behaviour { plain, compressed, mut go } = behaviour;
    while !*go.borrow_and_update() {
        if go.changed().await.is_err() {
            return Ok(());
        }
    }
    stream.write_all(if offered { &compressed } else { &plain }).await?;
    // Held open until the client goes.
    while stream.read(&mut buffer).await? > 0 {}
    Ok(())
}

/// A feed's TOML on `addr`.
fn feed_toml(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!("\n[[feeds]]\nname = \"{name}\"\nurl = \"ws://{addr}/\"\n{extra}\n")
}

/// The sidecar of a case, its feeds in `feeds`, a counting subscriber to all of them.
async fn start_sidecar(feeds: &str, tally: &Rc<RefCell<Tally>>) -> Result<Sidecar, BenchError> {
    let text = format!(
        "[defaults.heartbeat]\ninterval = \"0s\"\n\
         [defaults.reconnect]\npolicy = \"fixed\"\ninitial = \"1h\"\njitter = \"none\"\n{feeds}"
    );
    let config = Config::from_toml_str(
        &text,
        Path::new("bench-compressed.toml"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .map_err(|error| BenchError::Config(error.to_string()))?;
    let counter = CountingSubscriber { tally: tally.clone() }.start();
    let spec = SubscriptionSpec::new("bench-count", ["*"])
        .with_queue(4096, SubscriberOverflow::Backpressure);
    Ok(Sidecar::builder(config)
        .without_http()
        .subscriber(spec, counter.recipient())
        .start()
        .await?)
}

async fn cpu_case(
    compressed: bool,
    messages: u64,
    core: Option<usize>,
    timeout: Duration,
) -> Result<CompressedFigures, BenchError> {
    let (plain, payload, plain_wire) = encode_stream(false, messages, 15);
    let (deflated, _, deflated_wire) = encode_stream(true, messages, 15);
    let extra = if compressed { "" } else { "compression = \"off\"" };
    let feeds = |addr| feed_toml("bench-deflate", addr, extra);
    let used = cpu_of_stream(&feeds, plain, deflated, messages, core, timeout, false).await?;
    let wire = if compressed { deflated_wire } else { plain_wire };
    Ok(CompressedFigures {
        compression: if compressed { "deflate" } else { "plain" }.to_owned(),
        messages,
        cpu_ns_per_msg: Some(used.as_nanos() as f64 / messages as f64),
        wire_bytes_per_msg: Some(wire as f64 / messages as f64),
        payload_bytes_per_msg: payload as f64 / messages as f64,
        idle_feeds: 0,
        rss_per_feed_kib: None,
    })
}

/// The CPU the sidecar spends (all its threads but the upstream's) from the
/// go until a counting subscriber has handled `messages`, with the feeds
/// `feeds` gives for the upstream's address; every connection to the
/// upstream gets `plain` (or `deflated`, when it offers permessage-deflate).
/// With `settle`, the count goes on after the last message until the process
/// is quiet (connections still reading copies nobody needs, such as a
/// slower leg's), at most [`SETTLE_MAX`].
pub(crate) async fn cpu_of_stream(
    feeds: &dyn Fn(SocketAddr) -> String,
    plain: Vec<u8>,
    deflated: Vec<u8>,
    messages: u64,
    core: Option<usize>,
    timeout: Duration,
    settle: bool,
) -> Result<Duration, BenchError> {
    let (go, going) = watch::channel(false);
    let behaviour = Behaviour { plain: Arc::new(plain), compressed: Arc::new(deflated), go: going };
    let upstream = Upstream::start(behaviour, core)?;
    let (tally, complete) = Tally::new(messages, Instant::now());
    let sidecar = start_sidecar(&feeds(upstream.addr), &tally).await?;
    let deadline = Instant::now() + timeout;
    while !sidecar.readiness().await.is_some_and(|readiness| readiness.ready) {
        if Instant::now() >= deadline {
            return Err(BenchError::Incomplete(format!(
                "the feed did not open within {timeout:?}"
            )));
        }
        actix_rt::time::sleep(POLL).await;
    }
    let before = ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
    let _ = go.send(true);
    if actix_rt::time::timeout(timeout, complete).await.is_err() {
        let handled = tally.borrow().received();
        return Err(BenchError::Incomplete(format!(
            "{handled} of {messages} messages handled within {timeout:?}"
        )));
    }
    let sample = || ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source));
    let mut after = sample()?;
    let settled = Instant::now() + SETTLE_MAX;
    while settle && Instant::now() < settled {
        actix_rt::time::sleep(SETTLE_STEP).await;
        let later = sample()?;
        let busy = later.used_since(&after, &[upstream.thread_id]);
        after = later;
        if busy < SETTLE_STEP / 20 {
            break;
        }
    }
    let used = after.used_since(&before, &[upstream.thread_id]);
    sidecar.stop().await;
    Ok(used)
}

/// How often a settling count looks whether the process is quiet (under 5%
/// of a core since the last look).
const SETTLE_STEP: Duration = Duration::from_millis(50);

/// The longest a settling count waits for the process to be quiet.
pub(crate) const SETTLE_MAX: Duration = Duration::from_secs(5);
