//! `feedvisor bench`: what the sidecar costs over a hand-written client.
//!
//! Every scenario runs in this one process. The upstream is the
//! [`blaster`], on a thread of its own; the client side is, in turn, a
//! [`baseline`] (B1, a bare awc read loop, the yardstick; B0,
//! tokio-tungstenite, for context) or the whole [`sidecar`] path. When the
//! machine has two cores or more, the blaster is pinned to one and the
//! client (this thread and every thread it starts, the sidecar's workers
//! included) to another. Runs alternate between the systems, so that a
//! change in the machine's state hits them all alike.
//!
//! A run is valid when the client, not the blaster, set the pace: at
//! saturation, when the blaster used at most [`MAX_BLASTER_SHARE`] of its
//! core; at a fixed rate, when it kept its schedule, sending at most
//! [`MAX_LATE_SHARE`] of the messages more than [`blaster::LATE_AFTER`]
//! after they were due.
//!
//! Code map:
//! - `mod.rs`: options, the scenario list, the entry points; `run.rs`: one run of one
//!   system ([`Bench::run_once`]);
//! - `blaster.rs`: the upstream, `frames.rs` its frames and stamps; `baseline.rs`: B1 and B0;
//!   `sidecar.rs`: the system under test;
//! - one module per scenario: `throughput.rs`, `latency.rs`, `fanout.rs`, `capacity.rs`,
//!   and `feeds.rs`, `stream.rs`, `soak.rs` (memory and connects rather than message rates);
//! - `cpu.rs`: CPU time per thread from `/proc`; `memory.rs`: RSS and limits from `/proc`;
//!   `stats.rs`: medians and percentiles;
//! - `report.rs`: rows, `--json`, and the machine they come from; `table.rs`: the text tables.
//!
//! A new scenario is a variant of [`Scenario`], a module with a
//! `run(&Bench, &BenchArgs) -> Result<Vec<Row>, BenchError>`, an arm in
//! `run_scenario` and, if its rows need other columns, a table in `table.rs`.

pub mod baseline;
pub mod blaster;
pub mod capacity;
pub mod cpu;
pub mod fanout;
pub mod feeds;
pub mod frames;
pub mod latency;
pub mod memory;
pub mod report;
pub mod run;
pub mod sidecar;
pub mod soak;
pub mod stats;
pub mod stream;
pub mod table;
pub mod throughput;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use self::blaster::Blaster;
use self::report::{Env, Report, Row};
use self::run::progress;
pub use self::run::{Bench, Load, RunResult, Tally};

/// A saturation run in which the blaster used more than this share of its
/// core is invalid: the upstream, not the client, may have set the pace.
pub const MAX_BLASTER_SHARE: f64 = 0.15;

/// A fixed-rate run in which the blaster handed more than this share of the
/// messages over later than [`blaster::LATE_AFTER`] after they were due is
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

/// `feedvisor bench SCENARIO [OPTIONS]`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The benchmark to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Prints one JSON object per result row (on stdout) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Runs of each system per case, alternating between the systems.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Messages per saturation run of 64-byte messages, over all connections
    /// (throughput, fanout); larger messages are fewer, for the same bytes.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// Skips the unrecorded warm-up run of each system (throughput).
    #[arg(long)]
    pub no_warm_up: bool,
    /// How long each fixed-rate run sends (latency: default 1s; capacity: each
    /// step, default 2s), or the whole soak (default 30s).
    #[arg(long = "duration", value_parser = humantime::parse_duration)]
    duration_arg: Option<Duration>,
    /// `--duration`, or the scenario's default (set by [`BenchArgs::resolved`]).
    #[arg(skip)]
    pub duration: Duration,
    /// Message sizes in bytes (throughput; at least 17).
    #[arg(long, value_delimiter = ',', default_values_t = [64, 512])]
    pub sizes: Vec<usize>,
    /// Connection counts (throughput).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100])]
    pub conns: Vec<usize>,
    /// Subscriber counts (fanout).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100])]
    pub subscribers: Vec<usize>,
    /// Connections of the realistic latency case (at `--many-rate` each; 0
    /// leaves it out) and of the capacity scenario (at least 1).
    #[arg(long, default_value_t = 1000)]
    pub many_conns: usize,
    /// Messages per second on each connection of the realistic latency case.
    #[arg(long, default_value_t = latency::MANY_RATE)]
    pub many_rate: f64,
    /// The systems to run (throughput, latency and capacity, the last two
    /// without b0; fanout always runs b1 and the sidecar).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["b1", "b0", "sidecar"])]
    pub systems: Vec<SystemKind>,
    /// B1's saturation rate at 1 × 64 B, to skip measuring it again (latency).
    #[arg(long)]
    pub b1_rate: Option<f64>,
    /// Leaves the blaster and the client unpinned.
    #[arg(long)]
    pub no_pin: bool,
    /// What the sidecar's subscribers do with each batch besides counting it.
    #[arg(long, value_enum, default_value = "count")]
    pub sink: BenchSink,
    /// Gives up on a run (connecting, or receiving everything) after this long
    /// (the soak: this long after its `--duration`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The options of the feeds, stream and soak scenarios (boxed: they
    /// would make `feedvisor`'s `bench` command much larger than the others).
    #[command(flatten)]
    pub resources: Box<ResourceArgs>,
}

/// The options of the scenarios that measure memory and connects.
#[derive(Debug, Clone, clap::Args)]
pub struct ResourceArgs {
    /// Idle feed counts (feeds; each needs `ulimit -n` of twice the count and
    /// 200 more, or is skipped).
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10_000])]
    pub feeds: Vec<usize>,
    /// Plaintext, TLS or both (feeds).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["ws", "wss"])]
    pub transports: Vec<feeds::Wire>,
    /// The feeds' first reconnect ceiling: they reconnect after a random
    /// delay in [0, this] (feeds: full jitter, exponential).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub reconnect_initial: Duration,
    /// Runs every feeds case in this process, one after the other, instead
    /// of each in a fresh process (memory freed by one case then hides part
    /// of the next one's).
    #[arg(long, hide = true)]
    pub in_process: bool,
    /// The size of the one message sent through stream mode (stream).
    #[arg(long, default_value = "1GiB", value_parser = stream::parse_size)]
    pub stream_size: u64,
    /// Connections of the soak.
    #[arg(long, default_value_t = 10)]
    pub soak_conns: usize,
    /// Messages per second on each soak connection.
    #[arg(long, default_value_t = 1000.0)]
    pub soak_rate: f64,
}

impl BenchArgs {
    /// Messages per saturation run of `size`-byte messages: `--messages` for
    /// 64 bytes or less, proportionally fewer for larger ones.
    pub fn messages_for(&self, size: usize) -> u64 {
        (self.messages * 64 / size.max(64) as u64).max(1)
    }

    /// The options with every default, for `scenario` (as `feedvisor bench SCENARIO` has them).
    pub fn defaults(scenario: Scenario) -> Result<BenchArgs, BenchError> {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: BenchArgs,
        }
        Wrapper::try_parse_from(["bench", scenario.name()])
            .map(|wrapper| wrapper.args.resolved())
            .map_err(|error| BenchError::Options(error.to_string()))
    }

    /// The options with the scenario's defaults filled in where the command
    /// line left them out (`--duration`: 1s for latency, 2s for capacity, 30s
    /// for the soak).
    pub fn resolved(&self) -> BenchArgs {
        let default = match self.scenario {
            Scenario::Soak => soak::DEFAULT_DURATION,
            Scenario::Capacity => capacity::DEFAULT_STEP,
            _ => Duration::from_secs(1),
        };
        let duration = match self.duration_arg {
            Some(duration) => duration,
            None if self.duration.is_zero() => default,
            None => self.duration,
        };
        BenchArgs { duration, ..self.clone() }
    }

    fn check(&self) -> Result<(), BenchError> {
        let invalid = |reason: String| Err(BenchError::Options(reason));
        if self.runs == 0 {
            return invalid("--runs must be at least 1".to_owned());
        }
        if self.messages == 0 {
            return invalid("--messages must be at least 1".to_owned());
        }
        if let Some(size) = self.sizes.iter().find(|size| **size < frames::MIN_SIZE) {
            return invalid(format!(
                "--sizes: {size} is too small (at least {})",
                frames::MIN_SIZE
            ));
        }
        if self.conns.contains(&0) || self.subscribers.contains(&0) {
            return invalid("--conns and --subscribers must be at least 1".to_owned());
        }
        if self.systems.is_empty() {
            return invalid("--systems: name at least one".to_owned());
        }
        if self.duration.is_zero() {
            return invalid("--duration must be more than 0".to_owned());
        }
        let positive = |rate: f64| rate > 0.0 && rate.is_finite();
        if !positive(self.many_rate) || !self.b1_rate.is_none_or(positive) {
            return invalid("--many-rate and --b1-rate must be more than 0".to_owned());
        }
        if self.scenario == Scenario::Capacity && self.many_conns == 0 {
            return invalid("--many-conns must be at least 1 for capacity".to_owned());
        }
        let measured = |system| self.systems.contains(&system);
        if self.scenario == Scenario::Capacity
            && !(measured(SystemKind::B1) || measured(SystemKind::Sidecar))
        {
            return invalid("--systems: capacity measures b1 and the sidecar".to_owned());
        }
        let resources = &self.resources;
        if resources.feeds.contains(&0)
            || resources.transports.is_empty()
            || resources.reconnect_initial.is_zero()
        {
            return invalid(
                "--feeds and --reconnect-initial must be more than 0, with a transport".to_owned(),
            );
        }
        if resources.stream_size == 0 {
            return invalid("--stream-size must be more than 0".to_owned());
        }
        if resources.soak_conns == 0
            || !(resources.soak_rate > 0.0 && resources.soak_rate.is_finite())
        {
            return invalid("--soak-conns and --soak-rate must be more than 0".to_owned());
        }
        Ok(())
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
    /// The sidecar under test did not start.
    #[error("the sidecar did not start: {0}")]
    Start(#[from] crate::StartError),
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
    fn io(what: &'static str, source: std::io::Error) -> BenchError {
        BenchError::Io { what, source }
    }
}

/// Runs one scenario; `args.no_pin` aside, pins this thread to the client's core.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let args = &args.resolved();
    args.check()?;
    if args.scenario == Scenario::Feeds && !args.resources.in_process {
        // Each case in a process of its own, which pins itself: not this one.
        return feeds::run_isolated(args);
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (client_core, blaster_core) = match cores.as_slice() {
        [client, blaster, ..] if !args.no_pin => (Some(*client), Some(*blaster)),
        _ => (None, None),
    };
    let client_pinned = client_core.is_some_and(core_affinity::set_for_current);
    let base = Instant::now();
    let blaster = Blaster::start(blaster_core.filter(|_| client_pinned), base)?;
    let pinning = match (client_pinned, blaster.core(), client_core) {
        (true, Some(blaster_core), Some(client)) => {
            format!("blaster on core {blaster_core}, client on core {}", client.id)
        }
        _ => "not pinned".to_owned(),
    };
    let timeout = match args.scenario {
        Scenario::Soak => args.timeout + args.duration,
        _ => args.timeout,
    };
    let bench = Bench { blaster, base, timeout, sink: args.sink };
    let rows = actix::System::new().block_on(run_scenario(&bench, args))?;
    let core_count = if cores.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cores.len()
    };
    Ok(Report { env: Env::gather(core_count, pinning), scenario: args.scenario, rows })
}

/// The scenario's rows.
async fn run_scenario(bench: &Bench, args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    match args.scenario {
        Scenario::Throughput => throughput::run(bench, args).await,
        Scenario::Latency => latency::run(bench, args).await,
        Scenario::Capacity => capacity::run(bench, args).await,
        Scenario::Fanout => fanout::run(bench, args).await,
        Scenario::Feeds => feeds::run(bench, args).await,
        Scenario::Stream => stream::run(bench, args).await,
        Scenario::Soak => soak::run(bench, args).await,
    }
}

/// Runs a scenario and prints its report: tables, or JSON lines with `--json`.
pub fn main(args: &BenchArgs) -> Result<(), BenchError> {
    let report = run(args)?;
    if args.json {
        for line in report.json_lines() {
            println!("{line}");
        }
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny counts, every scenario: rows come out, with positive figures.
    /// No timing is checked: only that everything ran and was counted.
    #[test]
    fn every_scenario_runs_with_tiny_counts() {
        let tiny = |scenario| BenchArgs {
            runs: 2,
            messages: 2_000,
            duration: Duration::from_millis(100),
            conns: vec![1, 3],
            sizes: vec![64],
            subscribers: vec![1, 3],
            many_conns: 20,
            no_pin: true,
            timeout: Duration::from_secs(30),
            ..BenchArgs::defaults(scenario).expect("defaults")
        };
        for scenario in
            [Scenario::Throughput, Scenario::Latency, Scenario::Fanout, Scenario::Capacity]
        {
            let report =
                run(&tiny(scenario)).unwrap_or_else(|error| panic!("{scenario:?}: {error}"));
            assert!(!report.rows.is_empty(), "{scenario:?} has rows");
            for row in &report.rows {
                let json = row.to_json(&report.env);
                if scenario == Scenario::Capacity {
                    a_capacity_row_has_its_keys(&json);
                    continue;
                }
                for key in ["baseline_msgs_per_s", "sidecar_msgs_per_s", "ratio"] {
                    let value = json[key].as_f64().unwrap_or(0.0);
                    assert!(value > 0.0, "{scenario:?} {}: {key} = {}", row.case, json[key]);
                }
                assert_eq!(json["scenario"], scenario.name());
            }
            assert!(report.render().contains(scenario.name()));
        }
    }

    /// The capacity row's contract: `baseline_msgs_per_s`, `sidecar_msgs_per_s`
    /// and `ratio` (each a number, or null when a search found no rate), and
    /// the steps they come from. Whether a step was sustained depends on the
    /// machine, so only the row's consistency with its steps is checked.
    fn a_capacity_row_has_its_keys(json: &serde_json::Value) {
        assert_eq!(json["scenario"], "capacity");
        assert_eq!(json["conns"], 20);
        for key in ["baseline_msgs_per_s", "sidecar_msgs_per_s", "ratio"] {
            let value = json.get(key).unwrap_or_else(|| panic!("no {key}: {json}"));
            assert!(value.is_number() || value.is_null(), "{key}: {json}");
        }
        if json["baseline_msgs_per_s"].is_number() && json["sidecar_msgs_per_s"].is_number() {
            assert!(json["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{json}");
        }
        let steps = json["steps"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!steps.is_empty(), "{json}");
        for (system, prefix) in [("b1", "baseline"), ("sidecar", "sidecar")] {
            let ours = steps.iter().filter(|step| step["system"] == system);
            assert!(ours.clone().count() >= 1, "{system} ran: {json}");
            assert!(ours.clone().all(|step| step["offered_msgs_per_s"].as_f64() > Some(0.0)));
            assert!(ours.clone().all(|step| step["verdict"].is_string()), "{json}");
            // The figure is the highest offered rate among the steps sustained.
            let sustained = ours
                .filter(|step| step["verdict"] == "sustained")
                .filter_map(|step| step["offered_msgs_per_s"].as_f64())
                .reduce(f64::max);
            assert_eq!(json[format!("{prefix}_msgs_per_s")].as_f64(), sustained.map(f64::round));
            assert!(json[format!("{prefix}_search")]["ended"].is_string(), "{json}");
        }
        assert!(json["blaster_late_share_max"].is_number(), "{json}");
    }

    /// Tiny versions of the memory scenarios: 20 idle feeds (ws and wss, with
    /// the restart), a 4 MiB message through stream mode, a 2-second soak.
    /// No figure is held to a threshold: only that each ran and reported.
    #[test]
    fn memory_scenarios_run_with_tiny_counts() {
        let tiny = |scenario| {
            let defaults = BenchArgs::defaults(scenario).expect("defaults");
            let resources = ResourceArgs {
                feeds: vec![20],
                in_process: true,
                stream_size: 4 << 20,
                soak_conns: 2,
                soak_rate: 100.0,
                ..(*defaults.resources).clone()
            };
            BenchArgs {
                duration: Duration::from_secs(2),
                no_pin: true,
                timeout: Duration::from_secs(30),
                resources: Box::new(resources),
                ..defaults
            }
        };
        for scenario in [Scenario::Feeds, Scenario::Stream, Scenario::Soak] {
            let report =
                run(&tiny(scenario)).unwrap_or_else(|error| panic!("{scenario:?}: {error}"));
            let positive = |json: &serde_json::Value, key: &str| {
                assert!(
                    json[key].as_f64().unwrap_or(0.0) > 0.0,
                    "{scenario:?}: {key} = {}",
                    json[key]
                );
            };
            for row in &report.rows {
                let json = row.to_json(&report.env);
                assert_eq!(json["scenario"], scenario.name());
                match scenario {
                    Scenario::Feeds => {
                        assert!(json["skipped"].is_null(), "{json}");
                        assert_eq!(json["feeds"], 20);
                        assert!(json["reconnects"].as_u64().unwrap_or(0) >= 20, "{json}");
                        for key in ["open_s", "back_s", "rss_open_kib", "busiest_100ms_share"] {
                            positive(&json, key);
                        }
                    }
                    Scenario::Stream => {
                        assert_eq!(json["bytes"], 4 << 20);
                        assert_eq!(json["intact"], true, "{json}");
                        // Pieces go as bytes arrive: at least 64 of at most 64 KiB.
                        assert!(json["chunks"].as_u64().unwrap_or(0) >= 64, "{json}");
                        for key in ["idle_rss_kib", "peak_rss_kib", "mb_per_s"] {
                            positive(&json, key);
                        }
                    }
                    _ => {
                        assert!(json["rss_samples"].as_u64().unwrap_or(0) >= 2, "{json}");
                        for key in ["sidecar_msgs_per_s", "rss_end_kib"] {
                            positive(&json, key);
                        }
                        assert!(json["slope_kib_per_min"].is_number(), "{json}");
                    }
                }
            }
            assert_eq!(report.rows.len(), if scenario == Scenario::Feeds { 2 } else { 1 });
            assert!(report.render().contains(scenario.name()));
        }
    }

    #[test]
    fn the_default_options_parse() {
        let args = BenchArgs::defaults(Scenario::Latency).expect("defaults");
        assert_eq!(args.scenario, Scenario::Latency);
        assert_eq!(args.runs, 5);
        assert_eq!(args.sizes, [64, 512]);
        assert_eq!(args.systems, [SystemKind::B1, SystemKind::B0, SystemKind::Sidecar]);
        assert!(args.check().is_ok());
        let defaults = BenchArgs::defaults(Scenario::Throughput).expect("defaults");
        let too_small = BenchArgs { sizes: vec![8], ..defaults };
        assert!(too_small.check().is_err());
        // --duration defaults by scenario; given, it wins.
        assert_eq!(args.duration, Duration::from_secs(1));
        let soak = BenchArgs::defaults(Scenario::Soak).expect("defaults");
        assert_eq!(soak.duration, soak::DEFAULT_DURATION);
        let given = BenchArgs { duration_arg: Some(Duration::from_secs(7)), ..soak };
        assert_eq!(given.resolved().duration, Duration::from_secs(7));
        let capacity = BenchArgs::defaults(Scenario::Capacity).expect("defaults");
        assert_eq!((capacity.duration, capacity.many_conns), (capacity::DEFAULT_STEP, 1000));
        let none = BenchArgs { many_conns: 0, ..capacity };
        assert!(none.check().is_err(), "capacity needs connections");
        let feeds = BenchArgs::defaults(Scenario::Feeds).expect("defaults");
        assert_eq!(feeds.resources.feeds, [1000, 10_000]);
        assert_eq!(feeds.resources.transports, [feeds::Wire::Ws, feeds::Wire::Wss]);
        assert_eq!(feeds.resources.stream_size, 1 << 30);
    }
}
