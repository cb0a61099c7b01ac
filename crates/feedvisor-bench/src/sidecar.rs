//! The system under test: the whole sidecar path, as a library user gets it.
//!
//! One feed per connection, all pointed at the blaster, with the defaults
//! but for two settings a benchmark needs: no heartbeat (the blaster does
//! not answer pings) and no reconnect within the run (the blaster closes
//! every connection at the end of a job; a fixed hour-long delay keeps the
//! feeds quiet, where the `none` policy would log each one as failed). Metrics are on, and
//! there is no admin server. Frames go through the WebSocket transport, the
//! connection actors (on the sidecar's worker arbiters: one per core the
//! client may use, so one when the bench is pinned), their routes, and
//! subscriber actors on the bench's own arbiter that count the messages and
//! read their stamps. The subscribers ask for backpressure so that a full
//! queue slows the feed instead of dropping messages that a run waits for.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

use actix::prelude::*;

use feedvisor::config::{Config, SubscriberOverflow, DEFAULT_QUEUE};
use feedvisor::JsonLinesSink;
use feedvisor::{Deliver, Sidecar, SubscriptionSpec};

use crate::scenario::{BenchError, BenchSink};
use crate::tally::Tally;

/// The config of a sidecar with `conns` feeds named `bench-0`, `bench-1`, ... on `addr`.
pub fn config_text(addr: SocketAddr, conns: usize) -> String {
    let mut text = String::from(
        "# feedvisor-bench: the system under test.\n\
         [defaults.heartbeat]\ninterval = \"0s\"\n\
         [defaults.reconnect]\npolicy = \"fixed\"\ninitial = \"1h\"\njitter = \"none\"\n",
    );
    for index in 0..conns {
        let _ = write!(text, "\n[[feeds]]\nname = \"bench-{index}\"\nurl = \"ws://{addr}/\"\n");
    }
    text
}

/// A running sidecar with its bench subscribers.
pub struct SidecarClient {
    sidecar: Sidecar,
}

impl SidecarClient {
    /// Starts a sidecar with `conns` feeds on `addr` and `subscribers`
    /// subscribers to all of them; the first one also reads stamps.
    pub async fn start(
        addr: SocketAddr,
        conns: usize,
        subscribers: usize,
        sink: BenchSink,
        tally: &Rc<RefCell<Tally>>,
    ) -> Result<SidecarClient, BenchError> {
        let config = Config::from_toml_str(
            &config_text(addr, conns),
            Path::new("bench.toml"),
            &feedvisor::transports::TransportRegistry::with_defaults(),
        )
        .map_err(|error| BenchError::Config(error.to_string()))?;
        let mut builder = Sidecar::builder(config).without_http();
        for index in 0..subscribers.max(1) {
            let writer = match sink {
                BenchSink::Count => None,
                BenchSink::Stdout => {
                    let null = std::fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/null")
                        .map_err(|source| BenchError::io("open /dev/null", source))?;
                    Some(JsonLinesSink::new(format!("bench-{index}"), null))
                }
            };
            let subscriber =
                BenchSubscriber { tally: tally.clone(), reads_stamps: index == 0, writer };
            let spec = SubscriptionSpec::new(format!("bench-{index}"), ["bench-*"])
                .with_queue(DEFAULT_QUEUE, SubscriberOverflow::Backpressure);
            builder = builder.subscriber(spec, subscriber.start().recipient());
        }
        let sidecar = builder.start().await?;
        Ok(SidecarClient { sidecar })
    }

    /// Shuts the sidecar down (its feeds have been closed by the blaster by then).
    pub async fn stop(self) {
        self.sidecar.stop().await;
    }
}

/// A subscriber that counts what it is handed.
struct BenchSubscriber {
    /// The run's count, shared with every subscriber of the run.
    tally: Rc<RefCell<Tally>>,
    /// True for the one subscriber whose latencies are recorded.
    reads_stamps: bool,
    /// With `--sink stdout`: the stdout sink's writer, into /dev/null.
    writer: Option<JsonLinesSink<std::fs::File>>,
}

impl Actor for BenchSubscriber {
    type Context = Context<Self>;
}

impl Handler<Deliver> for BenchSubscriber {
    type Result = ();

    /// Counts the batch; it is handled when `deliver` is dropped, at the end.
    fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
        let mut tally = self.tally.borrow_mut();
        let messages = deliver.messages();
        if self.reads_stamps {
            for message in messages {
                tally.observe(&message.payload);
            }
        }
        if let Some(writer) = self.writer.as_mut() {
            if let Err(error) = writer.write_batch(messages) {
                tracing::warn!(%error, "bench sink write failed");
            }
        }
        tally.handled(messages.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_config_is_valid() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4242));
        let config = Config::from_toml_str(
            &config_text(addr, 3),
            Path::new("bench.toml"),
            &feedvisor::transports::TransportRegistry::with_defaults(),
        )
        .expect("valid config");
        let names: Vec<&str> = config.feeds.iter().map(|feed| &*feed.name).collect();
        assert_eq!(names, ["bench-0", "bench-1", "bench-2"]);
        assert!(config.feeds.iter().all(|feed| feed.url.as_str() == "ws://127.0.0.1:4242/"));
    }
}
