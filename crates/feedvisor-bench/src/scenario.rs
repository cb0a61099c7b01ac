//! What every part of the bench speaks of: the scenarios, the systems
//! measured, what makes a run valid, and why a benchmark could not run.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;

/// A saturation run in which the blaster used more than this share of its
/// core is invalid: the upstream, not the client, may have set the pace.
pub const MAX_BLASTER_SHARE: f64 = 0.15;

/// A fixed-rate run in which the blaster handed more than this share of the
/// messages over later than `blaster::LATE_AFTER` after they were due is
/// invalid: it did not keep its schedule, so the client was not offered the
/// load the run names. (Its CPU share does not tell: at a fixed rate each
/// message may be a write of its own, and on loopback the sender's thread
/// also pays for much of the receiving TCP stack.)
///
/// Why 2% and not less: the cores of a 2-vCPU virtual machine stall now and
/// then for 3 to 8 ms even when idle (a sleep loop pinned to one sees about
/// two such stalls a second), and every message due during a stall is late
/// whatever the rate: in quiet runs of 25,000 to 50,000 msg/s over 1000
/// connections, 0.3 to 1.5% of the messages (up to 2.6% in a 1-second
/// run). A blaster that cannot keep up is late for 4% and more.
pub const MAX_LATE_SHARE: f64 = 0.02;

/// What the sidecar's subscribers do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSink {
    /// Count it (and read the stamps): the cost of the path alone.
    Count,
    /// Also write it as the stdout sink does (one JSON line per message, the
    /// whole batch in one write), into /dev/null: the cost with a real sink.
    Stdout,
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Saturation: msg/s and CPU per message for B1, B0 and the sidecar.
    Throughput,
    /// Fixed rates: send-to-handled percentiles and CPU per message, B1 and the sidecar.
    Latency,
    /// The highest total rate B1 and the sidecar each sustain over many connections, and their ratio.
    Capacity,
    /// One feed to 1, 10, 100 subscribers.
    Fanout,
    /// Many idle feeds (ws and wss): time to open, RSS per feed, then an upstream restart.
    Feeds,
    /// Peak RSS while one large message passes through a stream-mode feed.
    Stream,
    /// A fixed rate for `--duration`, nobody scraping `/metrics`: the RSS slope.
    Soak,
    /// One feed into a `nats` sink against a bare async-nats publisher.
    Nats,
    /// permessage-deflate: CPU per message against the same stream uncompressed, idle RSS per feed.
    Compressed,
    /// Redundant legs: CPU per delivered message of one feed on two legs against one.
    Doubled,
}

impl Scenario {
    /// The name on the command line and in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Capacity => "capacity",
            Scenario::Fanout => "fanout",
            Scenario::Feeds => "feeds",
            Scenario::Stream => "stream",
            Scenario::Soak => "soak",
            Scenario::Nats => "nats",
            Scenario::Compressed => "compressed",
            Scenario::Doubled => "doubled",
        }
    }
}

/// The clients a run can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum SystemKind {
    /// A bare awc `Framed` read loop: the yardstick.
    B1,
    /// tokio-tungstenite with an 8 KiB read buffer, for context.
    B0,
    /// The whole sidecar path: transport, connection actor, inbox, subscriber actor.
    Sidecar,
}

impl fmt::Display for SystemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SystemKind::B1 => "b1",
            SystemKind::B0 => "b0",
            SystemKind::Sidecar => "sidecar",
        })
    }
}

/// Plaintext or TLS feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Wire {
    /// `ws://`.
    Ws,
    /// `wss://`, with the test CA.
    Wss,
}

impl Wire {
    /// The URL scheme.
    pub fn name(self) -> &'static str {
        match self {
            Wire::Ws => "ws",
            Wire::Wss => "wss",
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options make no sense.
    #[error("invalid options: {0}")]
    Options(String),
    /// An operating system call failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The blaster failed or gave up.
    #[error("blaster: {0}")]
    Blaster(String),
    /// The sidecar under test could not be configured.
    #[error("the bench config is invalid: {0}")]
    Config(String),
    /// The `wss` upstream's certificates or TLS config could not be made.
    #[error("the test TLS setup failed: {0}")]
    Tls(String),
    /// The sidecar under test did not start.
    #[error("the sidecar did not start: {0}")]
    Start(#[from] feedvisor::StartError),
    /// A baseline client could not connect.
    #[error("{system} could not connect to {addr}: {reason}")]
    Connect {
        /// Which client.
        system: SystemKind,
        /// The blaster's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A baseline client failed while reading.
    #[error("{system} failed while reading: {reason}")]
    Read {
        /// Which client.
        system: SystemKind,
        /// Why.
        reason: String,
    },
    /// A feeds, stream or soak run did not get where it had to.
    #[error("the run did not complete: {0}")]
    Incomplete(String),
    /// A run did not receive everything in time.
    #[error("{system} run timed out after {timeout:?}: {received} of {expected} messages handled")]
    Timeout {
        /// Which client.
        system: SystemKind,
        /// The time allowed.
        timeout: Duration,
        /// Messages handled.
        received: u64,
        /// Messages expected.
        expected: u64,
    },
}

impl BenchError {
    pub(crate) fn io(what: &'static str, source: std::io::Error) -> BenchError {
        BenchError::Io { what, source }
    }
}
