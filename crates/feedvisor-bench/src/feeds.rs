//! `feeds`: many idle feeds, plaintext (`ws`) and TLS (`wss`), through the
//! library API (`Sidecar::builder(config).without_http()`), heartbeats off.
//!
//! The upstream runs in this process, on a thread of its own (the
//! blaster's core when pinned): it answers the WebSocket handshake (after a
//! TLS handshake with a server certificate made for the case by a CA made
//! with it ([`TestPki`]), which the feeds trust through
//! `tls = { ca_file = ... }`), then keeps only
//! the bare socket of each connection (the TLS session is dropped: an idle
//! feed is sent nothing), so that what the process gains per feed is the
//! client's. It answers at most [`HANDSHAKES_IN_FLIGHT`] handshakes at once.
//!
//! A case: RSS before the config is written; the time from the sidecar's
//! start until every feed is open (the upstream has answered every
//! handshake and the sidecar's readiness says so, polled every [`POLL`]);
//! RSS once they are, and the difference per feed. Then the upstream
//! restarts: it drops every connection and its listener, and listens again
//! on the same port at once. The feeds reconnect by their policy
//! (exponential from `--reconnect-initial`, 1 s by default, with full
//! jitter: the first retry anywhere in `[0, 1 s]`). Measured: the time from
//! the drop until every feed is open again, the most connections the
//! upstream accepted in any 100 ms, as a share of all it accepted, and the
//! client's CPU (every thread but the upstream's and the idle blaster's):
//! the most of one core it used in any 100 ms, and in all per reconnect.
//!
//! Freed memory that the allocator keeps stays resident and is reused, so a
//! case would hide part of the next one's memory: `feedvisor-bench feeds`
//! runs each case in a fresh process of the same binary (`--in-process`,
//! hidden, runs them all here; the tests do).

use std::cell::Cell;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use feedvisor::config::Config;
use feedvisor::Sidecar;

use crate::cpu::{self, ProcessCpu};
use crate::figures::FeedsFigures;
use crate::format::Table;
use crate::frames;
use crate::memory::{self, format_kib};
use crate::options::BenchArgs;
use crate::pki::TestPki;
use crate::report::{Env, Report};
use crate::result::{Extra, Row};
use crate::run::Bench;
use crate::scenario::{BenchError, Scenario, Wire};
use crate::table;

/// The window in which connects are counted, and CPU is sampled.
pub const WINDOW: Duration = Duration::from_millis(100);

/// How often the sidecar's readiness is asked while waiting for the feeds.
pub const POLL: Duration = Duration::from_millis(20);

/// Handshakes the upstream answers at once; the others wait, accepted.
pub const HANDSHAKES_IN_FLIGHT: usize = 32;

/// Sockets per feed in this process: the feed's and the upstream's.
const FDS_PER_FEED: u64 = 2;

/// File descriptors besides the sockets (the runtime, the binary, stdio, ...).
const FD_MARGIN: u64 = 200;

/// Time for allocations to settle before RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The upstream's listen backlog (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// What the report says under the table.
pub const NOTE: &str = "all open: from the sidecar's start until every feed is open (polled every 20 ms); \
RSS/feed: VmRSS once they are open minus VmRSS before the config was written, per feed (the in-process upstream keeps a bare socket per connection); \
restart: the upstream drops every connection and listens again on the same port; the feeds reconnect with full jitter from --reconnect-initial (1 s by default; exponential); \
busiest 100 ms: the most connections accepted in any 100 ms, as a share of all accepted after the restart (target: at most 5%); \
peak CPU: the most of one core the client used in any 100 ms of the reconnects; CPU/reconnect: all the client's CPU from the drop until all were back, per reconnect. \
Each case runs in a fresh process; a case needs ulimit -n of twice its feeds and 200 more (both ends of every connection are in the process).";

/// One case: how many feeds, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    feeds: usize,
    wire: Wire,
}

impl Case {
    fn label(self) -> String {
        format!("{} × {}", self.feeds, self.wire.name())
    }
}

/// The cases of `args`, in order: each count with each transport.
fn cases(args: &BenchArgs) -> Vec<Case> {
    args.resources
        .feeds
        .iter()
        .flat_map(|&feeds| args.resources.transports.iter().map(move |&wire| Case { feeds, wire }))
        .collect()
}

/// Why `case` cannot run here, if it cannot.
fn skip_reason(case: Case) -> Option<String> {
    let needed = fds_needed(case.feeds);
    match memory::open_files_limit() {
        // Two sockets a feed in this process: the feed's and the upstream's.
        Ok(Some(limit)) if limit < needed => {
            Some(format!("needs ulimit -n ≥ {needed}, it is {limit}"))
        }
        _ => None,
    }
}

/// File descriptors a case of `feeds` needs in one process.
pub fn fds_needed(feeds: usize) -> u64 {
    FDS_PER_FEED * feeds as u64 + FD_MARGIN
}

fn skipped_row(case: Case, reason: String) -> Row {
    eprintln!("feeds {}: skipped: {reason}", case.label());
    Row::measured(Scenario::Feeds, case.label(), case.feeds, 0, 0, Extra::Skipped(reason))
}

/// Runs every case in this process, one after the other.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    let cases = cases(args);
    for case in &cases {
        if let Some(reason) = skip_reason(*case) {
            rows.push(skipped_row(*case, reason));
            continue;
        }
        let mut figures = measure(bench, *case, args.resources.reconnect_initial).await?;
        // Only the first case measured in a process starts from a clean heap.
        figures.fresh_process =
            !rows.iter().any(|row: &Row| matches!(row.extra, Some(Extra::Feeds(_))));
        rows.push(Row::measured(
            Scenario::Feeds,
            case.label(),
            case.feeds,
            0,
            0,
            Extra::Feeds(figures),
        ));
    }
    Ok(rows)
}

/// Runs each case in a fresh process of this binary (`bench feeds
/// --in-process` with that one case) and gathers their rows.
pub fn run_isolated(args: &BenchArgs) -> Result<Report, BenchError> {
    let exe =
        std::env::current_exe().map_err(|source| BenchError::io("find this binary", source))?;
    let mut rows = Vec::new();
    let mut pinning = None;
    for case in cases(args) {
        if let Some(reason) = skip_reason(case) {
            rows.push(skipped_row(case, reason));
            continue;
        }
        let mut command = Command::new(&exe);
        command
            .args(["feeds", "--in-process", "--json"])
            .args(["--feeds", &case.feeds.to_string(), "--transports", case.wire.name()])
            .args(["--timeout", &format!("{}ms", args.timeout.as_millis())])
            .args([
                "--reconnect-initial",
                &format!("{}ms", args.resources.reconnect_initial.as_millis()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if args.no_pin {
            command.arg("--no-pin");
        }
        if std::env::var_os("RUST_LOG").is_none() {
            // The restart makes every feed warn that its connection was lost.
            command.env("RUST_LOG", "warn,feedvisor::connection=error");
        }
        let output =
            command.output().map_err(|source| BenchError::io("run a feeds case", source))?;
        if !output.status.success() {
            return Err(BenchError::Incomplete(format!(
                "the {} case failed ({})",
                case.label(),
                output.status
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines().filter(|line| line.starts_with('{')) {
            let json: Value = serde_json::from_str(line).map_err(|error| {
                BenchError::Incomplete(format!(
                    "the {} case printed {line:?}: {error}",
                    case.label()
                ))
            })?;
            if let Some(child) = json["env"]["pinning"].as_str() {
                pinning.get_or_insert_with(|| child.to_owned());
            }
            rows.push(row_from_json(&json, case).map_err(|error| {
                BenchError::Incomplete(format!(
                    "the {} case printed {line:?}: {error}",
                    case.label()
                ))
            })?);
        }
    }
    let cores = core_affinity::get_core_ids()
        .map(|cores| cores.len())
        .filter(|count| *count > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(Report {
        env: Env::gather(cores, pinning.unwrap_or_else(|| "not pinned".to_owned())),
        scenario: Scenario::Feeds,
        rows,
    })
}

/// A row back from a case's `--json` line.
fn row_from_json(json: &Value, case: Case) -> Result<Row, serde_json::Error> {
    let extra = match json["skipped"].as_str() {
        Some(reason) => Extra::Skipped(reason.to_owned()),
        None => {
            let mut figures: FeedsFigures = serde_json::from_value(json.clone())?;
            figures.fresh_process = true;
            Extra::Feeds(figures)
        }
    };
    let label = json["case"].as_str().map_or_else(|| case.label(), str::to_owned);
    Ok(Row::measured(Scenario::Feeds, label, case.feeds, 0, 0, extra))
}

/// The config of `count` idle feeds on `addr`: no heartbeat, full jitter.
pub fn config_text(
    addr: SocketAddr,
    count: usize,
    wire: Wire,
    ca_file: Option<&Path>,
    reconnect_initial: Duration,
) -> String {
    let mut text = format!(
        "# feedvisor-bench feeds: idle feeds.\n\
         [defaults.heartbeat]\ninterval = \"0s\"\n\
         [defaults.reconnect]\npolicy = \"exponential\"\ninitial = \"{}ms\"\nmax = \"30s\"\njitter = \"full\"\n",
        reconnect_initial.as_millis()
    );
    let tls = ca_file.map(|path| {
        // A JSON string is a valid TOML basic string.
        let quoted = serde_json::to_string(&path.to_string_lossy()).unwrap_or_default();
        format!("tls = {{ ca_file = {quoted} }}\n")
    });
    for index in 0..count {
        let _ = write!(
            text,
            "\n[[feeds]]\nname = \"feeds-{count}-{}-{index}\"\nurl = \"{}://{addr}/\"\n{}",
            wire.name(),
            wire.name(),
            tls.as_deref().unwrap_or("")
        );
    }
    text
}

/// The test CA in a temporary file, for `tls.ca_file`; removed on drop.
struct CaFile {
    path: PathBuf,
}

impl CaFile {
    fn write(ca_pem: &str) -> Result<CaFile, BenchError> {
        static WRITTEN: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "feedvisor-bench-{}-{}-ca.pem",
            std::process::id(),
            WRITTEN.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, ca_pem)
            .map_err(|source| BenchError::io("write the test CA file", source))?;
        Ok(CaFile { path })
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One case, from the upstream's start to the sidecar's stop.
///
/// RSS is read before the config is even written: what the sidecar keeps of
/// a feed's config, and what parsing it left behind, count as the feed's.
async fn measure(
    bench: &Bench,
    case: Case,
    reconnect_initial: Duration,
) -> Result<FeedsFigures, BenchError> {
    let pki = match case.wire {
        Wire::Wss => Some(TestPki::generate().map_err(|error| BenchError::Tls(error.to_string()))?),
        Wire::Ws => None,
    };
    let upstream = Upstream::start(pki.as_ref(), bench.blaster.core())?;
    let ca = pki.as_ref().map(|pki| CaFile::write(&pki.ca_pem)).transpose()?;
    // The recorder is installed once per process, by the first sidecar:
    // install it now, so that it is in the figure before.
    let _ = feedvisor::install_metrics();
    actix_rt::time::sleep(SETTLE).await;
    let rss_before = rss()?;
    let ca_path = ca.as_ref().map(|ca| &*ca.path);
    let text = config_text(upstream.addr, case.feeds, case.wire, ca_path, reconnect_initial);
    let config = Config::from_toml_str(
        &text,
        Path::new("bench-feeds.toml"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .map_err(|error| BenchError::Config(error.to_string()))?;
    drop(text);
    let started = Instant::now();
    let sidecar = Sidecar::builder(config).without_http().start().await?;
    let excluded = [bench.blaster.thread_id(), upstream.thread_id];
    let outcome = observe(&sidecar, &upstream, case, bench.timeout, started, rss_before, &excluded)
        .await
        .map(|figures| FeedsFigures {
            reconnect_initial_s: reconnect_initial.as_millis() as f64 / 1000.0,
            ..figures
        });
    sidecar.stop().await;
    drop(upstream);
    drop(ca);
    outcome
}

fn rss() -> Result<u64, BenchError> {
    memory::rss_kib().map_err(|source| BenchError::io("read /proc/self/status", source))
}

fn cpu_sample() -> Result<ProcessCpu, BenchError> {
    ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))
}

/// Open, RSS, restart, back: the figures of a running case.
async fn observe(
    sidecar: &Sidecar,
    upstream: &Upstream,
    case: Case,
    timeout: Duration,
    started: Instant,
    rss_before: u64,
    excluded: &[u32],
) -> Result<FeedsFigures, BenchError> {
    let label = case.label();
    wait_open(sidecar, upstream, case.feeds, timeout, "open").await?;
    let open = started.elapsed();
    actix_rt::time::sleep(SETTLE).await;
    let rss_open = rss()?;
    let rss_per_feed = (rss_open as f64 - rss_before as f64) / case.feeds as f64;
    eprintln!(
        "feeds {label}: all open in {:.2} s; RSS {} -> {}, {:.1} KiB per feed",
        open.as_secs_f64(),
        format_kib(rss_before as f64),
        format_kib(rss_open as f64),
        rss_per_feed
    );
    let watch = CpuWatch::start(excluded.to_vec());
    let cpu_before = cpu_sample()?;
    let dropped_at = upstream.restart().await?;
    wait_open(sidecar, upstream, case.feeds, timeout, "back after the restart").await?;
    let back = dropped_at.elapsed();
    let cpu = cpu_sample()?.used_since(&cpu_before, excluded);
    let peak_cpu = watch.stop();
    let mut offsets: Vec<Duration> = upstream
        .accepts()
        .iter()
        .map(|accepted| accepted.saturating_duration_since(dropped_at))
        .collect();
    offsets.sort_unstable();
    let reconnects = offsets.len();
    let busiest = max_in_window(&offsets, WINDOW);
    let spread = match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    let share = busiest as f64 / reconnects.max(1) as f64;
    eprintln!(
        "feeds {label}: all back in {:.2} s after the restart; {reconnects} reconnects over {:.2} s, \
         at most {busiest} ({:.1}%) in 100 ms; peak CPU {:.0}%",
        back.as_secs_f64(),
        spread.as_secs_f64(),
        share * 100.0,
        peak_cpu * 100.0
    );
    Ok(FeedsFigures {
        transport: case.wire.name().to_owned(),
        reconnect_initial_s: 0.0,
        feeds: case.feeds,
        open_s: millis(open),
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_per_feed_kib: (rss_per_feed * 10.0).round() / 10.0,
        back_s: millis(back),
        reconnects,
        reconnect_spread_s: millis(spread),
        busiest_100ms_connects: busiest,
        busiest_100ms_share: (share * 1000.0).round() / 1000.0,
        peak_cpu_share: (peak_cpu * 1000.0).round() / 1000.0,
        cpu_us_per_reconnect: (cpu.as_secs_f64() * 1e6 / reconnects.max(1) as f64).round(),
        fresh_process: false,
    })
}

/// Seconds, to the millisecond.
fn millis(duration: Duration) -> f64 {
    duration.as_millis() as f64 / 1000.0
}

/// Waits until the upstream has answered `count` handshakes and the sidecar
/// says every feed is open.
async fn wait_open(
    sidecar: &Sidecar,
    upstream: &Upstream,
    count: usize,
    timeout: Duration,
    what: &str,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if upstream.upgraded() >= count
            && sidecar.readiness().await.is_some_and(|readiness| readiness.ready)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let waiting = sidecar.readiness().await.map_or(count, |r| r.waiting_for.len());
            return Err(BenchError::Incomplete(format!(
                "{} of {count} feeds {what} after {timeout:?} ({} handshakes answered)",
                count.saturating_sub(waiting),
                upstream.upgraded()
            )));
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// The most of `sorted` (ascending) that fall in any half-open interval
/// `[t, t + window)`.
pub fn max_in_window(sorted: &[Duration], window: Duration) -> usize {
    let mut most = 0;
    let mut end = 0;
    for (start, first) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < *first + window {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

/// The client's CPU, sampled every [`WINDOW`] on this thread: the most of
/// one core used between two samples.
struct CpuWatch {
    peak: Rc<Cell<f64>>,
    task: actix_rt::task::JoinHandle<()>,
}

impl CpuWatch {
    fn start(excluded: Vec<u32>) -> CpuWatch {
        let peak = Rc::new(Cell::new(0.0_f64));
        let shared = peak.clone();
        let task = actix_rt::spawn(async move {
            let mut interval = actix_rt::time::interval(WINDOW);
            interval.tick().await;
            let mut last: Option<(Instant, ProcessCpu)> = None;
            loop {
                interval.tick().await;
                let now = Instant::now();
                let Ok(sample) = ProcessCpu::sample() else { continue };
                match &last {
                    Some((at, before)) if now.duration_since(*at) >= WINDOW / 2 => {
                        let used = sample.used_since(before, &excluded).as_secs_f64();
                        let share = used / now.duration_since(*at).as_secs_f64();
                        shared.set(shared.get().max(share));
                    }
                    Some(_) => continue,
                    None => {}
                }
                last = Some((now, sample));
            }
        });
        CpuWatch { peak, task }
    }

    /// The peak so far.
    fn stop(self) -> f64 {
        self.task.abort();
        self.peak.get()
    }
}

/// Asks the upstream thread to restart; the answer is the instant it dropped
/// every connection.
type RestartReply = oneshot::Sender<io::Result<Instant>>;

/// The upstream of a case, on its own thread.
struct Upstream {
    /// Where the feeds connect, before and after the restart.
    addr: SocketAddr,
    /// The thread's kernel id, left out of the client's CPU.
    thread_id: u32,
    /// When each connection of the current listener was accepted.
    accepts: Arc<Mutex<Vec<Instant>>>,
    /// Handshakes answered since the current listener opened.
    upgraded: watch::Receiver<usize>,
    /// Restart requests; dropping it ends the thread.
    commands: Option<mpsc::UnboundedSender<RestartReply>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on a free loopback port, on a thread pinned to `core` if
    /// given; with `pki`, speaks TLS with its server certificate.
    fn start(pki: Option<&TestPki>, core: Option<usize>) -> Result<Upstream, BenchError> {
        let acceptor = pki.map(tls_acceptor).transpose()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| BenchError::io("build the upstream's runtime", source))?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let (upgraded_sender, upgraded) = watch::channel(0);
        let accepts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (started, start) = std::sync::mpsc::channel();
        let state = Shared { acceptor, accepts: accepts.clone(), upgraded: upgraded_sender };
        let thread = std::thread::Builder::new()
            .name("bench-upstream".to_owned())
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                let bound = runtime.block_on(async { listen(([127, 0, 0, 1], 0).into()) });
                let listener = match (cpu::current_thread_id(), bound) {
                    (Ok(id), Ok(listener)) => match listener.local_addr() {
                        Ok(addr) => {
                            let _ = started.send(Ok((id, addr)));
                            listener
                        }
                        Err(error) => {
                            let _ = started.send(Err(error));
                            return;
                        }
                    },
                    (Err(error), _) | (_, Err(error)) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(serve(listener, state, receiver));
            })
            .map_err(|source| BenchError::io("start the upstream thread", source))?;
        let (thread_id, addr) = start
            .recv()
            .map_err(|_| BenchError::Blaster("the upstream thread died at start".to_owned()))?
            .map_err(|source| BenchError::io("open the upstream's listener", source))?;
        Ok(Upstream {
            addr,
            thread_id,
            accepts,
            upgraded,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// Handshakes answered since the last (re)start.
    fn upgraded(&self) -> usize {
        *self.upgraded.borrow()
    }

    /// When each connection since the last (re)start was accepted.
    fn accepts(&self) -> Vec<Instant> {
        self.accepts.lock().map(|accepts| accepts.clone()).unwrap_or_default()
    }

    /// Drops every connection and the listener, and listens again on the
    /// same port; returns the instant of the drop.
    async fn restart(&self) -> Result<Instant, BenchError> {
        let gone = || BenchError::Blaster("the upstream thread has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.commands.as_ref().ok_or_else(gone)?.send(reply).map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|source| BenchError::io("listen again after the restart", source))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the upstream thread shares with its handle.
struct Shared {
    acceptor: Option<TlsAcceptor>,
    accepts: Arc<Mutex<Vec<Instant>>>,
    upgraded: watch::Sender<usize>,
}

/// A loopback listener with a long backlog, reusing the address.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The upstream's life: serve, restart when asked, until the handle is dropped.
async fn serve(
    mut listener: TcpListener,
    shared: Shared,
    mut commands: mpsc::UnboundedReceiver<RestartReply>,
) {
    let Ok(addr) = listener.local_addr() else { return };
    loop {
        let Some((reply, dropped_at)) =
            serve_until_restart(&listener, &shared, &mut commands).await
        else {
            return;
        };
        drop(listener);
        if let Ok(mut accepts) = shared.accepts.lock() {
            accepts.clear();
        }
        shared.upgraded.send_replace(0);
        match listen(addr) {
            Ok(again) => {
                listener = again;
                let _ = reply.send(Ok(dropped_at));
            }
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        }
    }
}

/// Accepts and answers handshakes, holding each connection's bare socket,
/// until a restart is asked for (the connections are dropped then) or the
/// handle is gone.
async fn serve_until_restart(
    listener: &TcpListener,
    shared: &Shared,
    commands: &mut mpsc::UnboundedReceiver<RestartReply>,
) -> Option<(RestartReply, Instant)> {
    let permits = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => {
                let reply = command?;
                let dropped_at = Instant::now();
                drop(held);
                drop(handshakes);
                return Some((reply, dropped_at));
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Ok(mut accepts) = shared.accepts.lock() {
                        accepts.push(Instant::now());
                    }
                    handshakes.spawn(answer(stream, shared.acceptor.clone(), permits.clone()));
                }
                // Out of file descriptors, say: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(done) = handshakes.join_next() => {
                // A client that gave up on its handshake is simply not held.
                if let Ok(Ok(stream)) = done {
                    held.push(stream);
                    shared.upgraded.send_modify(|count| *count += 1);
                }
            }
        }
    }
}

/// Answers one connection's handshakes (TLS, then WebSocket) and keeps only its socket.
async fn answer(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    permits: Arc<Semaphore>,
) -> io::Result<std::net::TcpStream> {
    let _permit = permits.acquire_owned().await.map_err(io::Error::other)?;
    stream.set_nodelay(true)?;
    match acceptor {
        None => {
            let mut stream = stream;
            frames::upgrade(&mut stream).await?;
            stream.into_std()
        }
        Some(acceptor) => {
            let mut tls = acceptor.accept(stream).await?;
            frames::upgrade(&mut tls).await?;
            // The session goes; the socket stays open, and an idle feed is sent nothing.
            let (stream, _session) = tls.into_inner();
            stream.into_std()
        }
    }
}

/// A TLS acceptor with the case's server certificate.
fn tls_acceptor(pki: &TestPki) -> Result<TlsAcceptor, BenchError> {
    let config = pki.server_config().map_err(|error| BenchError::Tls(error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The feeds table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "feeds",
        "all open",
        "RSS/feed",
        "RSS before → open",
        "all back",
        "first retry",
        "reconnects",
        "busiest 100 ms",
        "peak CPU",
        "CPU/reconnect",
    ]);
    for row in rows {
        let case = table::case(row);
        match &row.extra {
            Some(Extra::Feeds(f)) => table.rows.push(vec![
                case,
                format!("{:.2} s", f.open_s),
                format!("{:.1} KiB", f.rss_per_feed_kib),
                format!(
                    "{} → {}",
                    format_kib(f.rss_before_kib as f64),
                    format_kib(f.rss_open_kib as f64)
                ),
                format!("{:.2} s", f.back_s),
                format!("≤ {} s", f.reconnect_initial_s),
                format!("{} over {:.2} s", f.reconnects, f.reconnect_spread_s),
                format!("{:.1}% ({})", f.busiest_100ms_share * 100.0, f.busiest_100ms_connects),
                format!("{:.0}%", f.peak_cpu_share * 100.0),
                format!("{:.0} µs", f.cpu_us_per_reconnect),
            ]),
            Some(Extra::Skipped(reason)) => {
                table.rows.push(vec![case, format!("skipped: {reason}")])
            }
            _ => table.rows.push(vec![case]),
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|value| Duration::from_millis(*value)).collect()
    }

    #[test]
    fn the_busiest_window_is_half_open() {
        let window = Duration::from_millis(100);
        assert_eq!(max_in_window(&[], window), 0);
        assert_eq!(max_in_window(&ms(&[5]), window), 1);
        // 0, 50 and 99 fall in [0, 100); 100 does not.
        assert_eq!(max_in_window(&ms(&[0, 50, 99, 100, 250]), window), 3);
        // The busiest window need not start at a multiple of 100 ms.
        assert_eq!(max_in_window(&ms(&[0, 150, 160, 170, 240, 260, 400]), window), 4);
        assert_eq!(max_in_window(&ms(&[7, 7, 7]), window), 3);
    }

    #[test]
    fn the_config_has_full_jitter_and_trusts_the_ca_for_wss() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4242));
        let pki = TestPki::generate().expect("certificates");
        let ca = CaFile::write(&pki.ca_pem).expect("CA file");
        let text = config_text(addr, 3, Wire::Wss, Some(&ca.path), Duration::from_secs(1));
        let config = Config::from_toml_str(
            &text,
            Path::new("bench-feeds.toml"),
            &feedvisor::transports::TransportRegistry::with_defaults(),
        )
        .expect("valid");
        assert_eq!(config.feeds.len(), 3);
        let feed = &config.feeds[0];
        assert_eq!(feed.url.as_str(), "wss://127.0.0.1:4242/");
        assert_eq!(feed.reconnect.jitter, feedvisor::config::Jitter::Full);
        assert_eq!(feed.reconnect.initial, Duration::from_secs(1));
        assert!(text.contains("ca_file"));
        let plain = config_text(addr, 2, Wire::Ws, None, Duration::from_millis(2500));
        assert!(plain.contains("initial = \"2500ms\""));
        assert!(!plain.contains("tls") && plain.contains("ws://127.0.0.1:4242/"));
        assert!(tls_acceptor(&pki).is_ok());
        assert_eq!(std::fs::read_to_string(&ca.path).ok().as_deref(), Some(&*pki.ca_pem));
    }

    #[test]
    fn rows_come_back_from_a_case_process() {
        let figures = FeedsFigures {
            transport: "wss".to_owned(),
            reconnect_initial_s: 1.0,
            feeds: 20,
            open_s: 0.1,
            rss_before_kib: 1000,
            rss_open_kib: 1500,
            rss_per_feed_kib: 25.0,
            back_s: 1.0,
            reconnects: 20,
            reconnect_spread_s: 0.9,
            busiest_100ms_connects: 4,
            busiest_100ms_share: 0.2,
            peak_cpu_share: 0.5,
            cpu_us_per_reconnect: 300.0,
            fresh_process: false,
        };
        let case = Case { feeds: 20, wire: Wire::Wss };
        let row =
            Row::measured(Scenario::Feeds, case.label(), 20, 0, 0, Extra::Feeds(figures.clone()));
        let env = Env::gather(2, "not pinned".to_owned());
        let back = row_from_json(&row.to_json(&env), case).expect("row");
        assert_eq!(back.extra, Some(Extra::Feeds(FeedsFigures { fresh_process: true, ..figures })));
        assert_eq!(back.case, "20 × wss");
        let skipped =
            Row::measured(Scenario::Feeds, case.label(), 20, 0, 0, Extra::Skipped("no".into()));
        let back = row_from_json(&skipped.to_json(&env), case).expect("row");
        assert_eq!(back.extra, Some(Extra::Skipped("no".to_owned())));
        let text = table(&[row, skipped]).render();
        assert!(text.contains("25.0 KiB") && text.contains("skipped: no"), "{text}");
    }

    #[test]
    fn big_cases_need_file_descriptors() {
        let args = BenchArgs::defaults(Scenario::Feeds).expect("defaults");
        let labels: Vec<String> = cases(&args).into_iter().map(Case::label).collect();
        assert_eq!(labels, ["1000 × ws", "1000 × wss", "10000 × ws", "10000 × wss"]);
        assert_eq!(fds_needed(10_000), 20_200);
        let huge = Case { feeds: 100_000_000, wire: Wire::Ws };
        if let Ok(Some(_)) = memory::open_files_limit() {
            assert!(skip_reason(huge).is_some_and(|reason| reason.contains("ulimit")));
        }
    }
}
