//! The command line's options (`feedvisor-bench SCENARIO [OPTIONS]`), the
//! defaults that depend on the scenario, and their checks.

use std::time::Duration;

use crate::frames;
use crate::scenario::{BenchError, BenchSink, Scenario, SystemKind, Wire};

/// Messages per second on each connection of the many-connections latency
/// case, unless `--many-rate` says otherwise (see the `latency` module's note).
pub const MANY_RATE: f64 = 25.0;

/// `--duration` when the capacity scenario is not given one: the length of a step.
pub const CAPACITY_STEP: Duration = Duration::from_secs(2);

/// `--duration` when the soak is not given one.
pub const SOAK_DURATION: Duration = Duration::from_secs(30);

/// A size such as `1GiB` or `4MiB`, in bytes (`--stream-size`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>().map(|size| size.as_u64())
}

/// `feedvisor-bench SCENARIO [OPTIONS]`.
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
    pub(crate) duration_arg: Option<Duration>,
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
    #[arg(long, default_value_t = MANY_RATE)]
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
    /// would make every `BenchArgs` much larger).
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
    pub transports: Vec<Wire>,
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
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
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

    /// The options with every default, for `scenario` (as `feedvisor-bench SCENARIO` has them).
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
            Scenario::Soak => SOAK_DURATION,
            Scenario::Capacity => CAPACITY_STEP,
            _ => Duration::from_secs(1),
        };
        let duration = match self.duration_arg {
            Some(duration) => duration,
            None if self.duration.is_zero() => default,
            None => self.duration,
        };
        BenchArgs { duration, ..self.clone() }
    }

    /// Refuses options no run can use (a zero count, a size below a frame's
    /// minimum, no system to measure...), naming the flag to change.
    pub fn check(&self) -> Result<(), BenchError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert!(parse_size("lots").is_err());
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
        assert_eq!(soak.duration, SOAK_DURATION);
        let given = BenchArgs { duration_arg: Some(Duration::from_secs(7)), ..soak };
        assert_eq!(given.resolved().duration, Duration::from_secs(7));
        let capacity = BenchArgs::defaults(Scenario::Capacity).expect("defaults");
        assert_eq!((capacity.duration, capacity.many_conns), (CAPACITY_STEP, 1000));
        let none = BenchArgs { many_conns: 0, ..capacity };
        assert!(none.check().is_err(), "capacity needs connections");
        let feeds = BenchArgs::defaults(Scenario::Feeds).expect("defaults");
        assert_eq!(feeds.resources.feeds, [1000, 10_000]);
        assert_eq!(feeds.resources.transports, [Wire::Ws, Wire::Wss]);
        assert_eq!(feeds.resources.stream_size, 1 << 30);
    }
}
