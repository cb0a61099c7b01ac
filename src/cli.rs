//! The command line: `run`, `check`, `demo` and `tail`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::Sidecar;

use crate::demo;
use crate::tail::{self, TailOptions};

/// Keeps outbound real-time feeds alive and routes what they deliver.
#[derive(Debug, Parser)]
#[command(name = "feedvisor", version, about)]
pub(crate) struct Cli {
    /// Log format on standard error (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the sidecar from a config file.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Overrides [http].listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validates a config file and prints the feeds and subscribers it defines.
    Check {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Runs everything offline: a built-in upstream of stock and weather ticks and the sidecar on it.
    Demo {
        /// Where the admin HTTP server listens.
        #[arg(long, default_value = "127.0.0.1:9900")]
        listen: SocketAddr,
        /// Time between stock ticks (weather ticks come four times slower).
        #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Prints what a running sidecar delivers from FEED, one JSON object per line (via /subscribe).
    Tail {
        /// A feed name or glob pattern (`*`, `?`).
        feed: String,
        /// Only messages whose topic matches this glob pattern (repeatable).
        #[arg(long = "topic", value_name = "PATTERN")]
        topics: Vec<String>,
        /// The sidecar's admin server.
        #[arg(long, default_value = "http://127.0.0.1:9900")]
        url: String,
    },
}

/// Parses the command line and runs the command.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, "info,actix_server=warn");
    let result = match cli.command {
        Command::Run { config, listen } => run(&config, listen),
        Command::Check { file } => check(&file),
        Command::Demo { listen, interval } => run_demo(listen, interval),
        Command::Tail { feed, topics, url } => run_tail(TailOptions { feed, topics, url }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run(path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let transports = TransportRegistry::with_defaults();
    let mut config = Config::load(path, &transports)?;
    if let Some(listen) = listen {
        config.http.listen = listen;
    }
    let path = path.to_path_buf();
    actix::System::new().block_on(async move {
        let builder = Sidecar::builder(config).transports(transports).config_path(path);
        let sidecar = builder.start().await?;
        serve_until_signalled(sidecar).await;
        Ok(())
    })
}

/// Serves until SIGINT or SIGTERM (reloading on SIGHUP), then shuts down
/// gracefully; a second SIGINT or SIGTERM during shutdown exits at once.
async fn serve_until_signalled(sidecar: Sidecar) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot listen for signals; stopping");
            sidecar.stop().await;
            return;
        }
    };
    while signals.next().await == Signal::Reload {
        match sidecar.reload().await {
            Ok(report) => tracing::info!(?report, "reloaded on SIGHUP"),
            Err(error) => tracing::error!("reload on SIGHUP refused, nothing changed: {error}"),
        }
    }
    tracing::info!("shutting down (a second signal exits at once)");
    actix_rt::spawn(async move {
        while signals.next().await != Signal::Stop {}
        tracing::warn!("second signal: exiting at once");
        std::process::exit(1);
    });
    let report = sidecar.stop().await;
    if report.undelivered.is_empty() {
        tracing::info!("stopped cleanly");
    }
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGHUP: re-read the config file.
    Reload,
    /// SIGINT or SIGTERM: shut down.
    Stop,
}

/// The signals the sidecar acts on.
struct Signals {
    #[cfg(unix)]
    terminate: actix_rt::signal::unix::Signal,
    #[cfg(unix)]
    hangup: actix_rt::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{signal, SignalKind};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = actix_rt::signal::ctrl_c() => Signal::Stop,
                _ = self.terminate.recv() => Signal::Stop,
                _ = self.hangup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = actix_rt::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

/// Validates with the transports `run` serves, so that `check` accepts exactly what `run` does.
fn check(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path, &TransportRegistry::with_defaults())?;
    println!("{}: ok", path.display());
    println!("http.listen = {}", config.http.listen);
    if let Some(cluster) = &config.cluster {
        let shown = serde_json::to_string(cluster).context("describe cluster")?;
        println!("cluster = {shown} (the feeds below seed the shared feed list)");
    }
    println!("feeds ({}):", config.feeds.len());
    for feed in &config.feeds {
        println!("  {}", serde_json::to_string(feed).context("describe feed")?);
    }
    if !config.hosts.is_empty() {
        println!("hosts ({}):", config.hosts.len());
        for host in &config.hosts {
            println!("  {}", serde_json::to_string(host).context("describe host")?);
        }
    }
    println!("subscribers ({}):", config.subscribers.len());
    for subscriber in &config.subscribers {
        let topics =
            subscriber.topics.as_ref().map_or_else(|| "all".to_owned(), |t| format!("{t:?}"));
        println!(
            "  {}: feeds={:?} topics={topics} -> {}",
            subscriber.name,
            subscriber.feeds,
            subscriber.describe()
        );
    }
    Ok(())
}

fn run_demo(listen: SocketAddr, interval: Duration) -> anyhow::Result<()> {
    actix::System::new().block_on(async move {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let upstream =
            demo::start_upstream(loopback, interval).context("start the demo upstream")?;
        tracing::info!(addr = %upstream.addr, "demo upstream listening");
        let config = demo::demo_config(upstream.addr, listen)?;
        let sidecar = Sidecar::builder(config).start().await?;
        if let Some(addr) = sidecar.http_addr() {
            tracing::info!("metrics at http://{addr}/metrics, feeds at http://{addr}/feeds");
        }
        serve_until_signalled(sidecar).await;
        upstream.stop().await;
        Ok(())
    })
}

fn run_tail(options: TailOptions) -> anyhow::Result<()> {
    actix::System::new().block_on(tail::run(options))?;
    Ok(())
}
