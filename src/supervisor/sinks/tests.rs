//! Sinks under supervision: a test sink that stops itself on the message
//! `stop`, fed by a memory-transport feed, under paused time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use feedvisor_transport_memory::{MemoryHub, MemoryTransport};
use tokio::sync::mpsc;

use super::*;
use crate::config::Config;
use crate::router::{GetInFlight, Router};
use crate::supervisor::{CloseFeeds, Reload, Supervisor};
use crate::transports::TransportRegistry;

/// How long any wait in these tests may take (paused time: the clock only
/// jumps when nothing else can run).
const DEADLINE: Duration = Duration::from_secs(600);

/// What the test sinks report.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Actor `incarnation` started.
    Started(u64),
    /// A message's text.
    Message(String),
    /// An actor stopped.
    Stopped,
}

/// A sink that reports what it receives and stops itself on `stop`.
struct Fragile {
    seen: mpsc::UnboundedSender<Seen>,
    /// Held for the supervisor: dropped with the actor.
    _watch: SinkWatch,
}

impl Actor for Fragile {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        let _ = self.seen.send(Seen::Stopped);
    }
}

impl Handler<Deliver> for Fragile {
    type Result = ();

    fn handle(&mut self, mut deliver: Deliver, ctx: &mut Context<Self>) {
        for message in deliver.messages() {
            let text = String::from_utf8_lossy(&message.payload).into_owned();
            if text == "stop" {
                ctx.stop();
            }
            let _ = self.seen.send(Seen::Message(text));
        }
    }
}

/// Starts the supervisor of `config` with [`Fragile`] sinks; `hub` serves `memory://`.
fn supervise(
    config: Config,
    path: Option<PathBuf>,
    hub: &MemoryHub,
) -> (Addr<Supervisor>, Addr<Router>, mpsc::UnboundedReceiver<Seen>) {
    let (sender, seen) = mpsc::unbounded_channel();
    let mut transports = TransportRegistry::empty();
    transports.register(Arc::new(MemoryTransport::new(hub.clone())));
    let router = Router::new();
    let routes = router.routes();
    let router = router.start();
    let mut supervisor = Supervisor::new(config, path, transports, router.clone(), routes);
    let next = std::cell::Cell::new(0);
    supervisor.start_sink_actor = Box::new(move |_, _, watch| {
        next.set(next.get() + 1);
        let _ = sender.send(Seen::Started(next.get()));
        Fragile { seen: sender.clone(), _watch: watch }.start().recipient()
    });
    (supervisor.start(), router, seen)
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    match tokio::time::timeout(DEADLINE, seen.recv()).await {
        Ok(Some(event)) => event,
        other => panic!("no event from the test sinks: {other:?}"),
    }
}

fn restarts(subscriber: &str) -> f64 {
    let rendered = metrics::install().expect("recorder").render();
    let prefix = format!("{}{{subscriber=\"{subscriber}\"}} ", metrics::SUBSCRIBER_RESTARTS);
    rendered.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Asserts that `waited` is the delay `expected`, as paused time measures
/// it: tokio's timer wheel rounds a deadline up to its next millisecond.
fn assert_waited(waited: Duration, expected: Duration) {
    let tick = Duration::from_millis(1);
    assert!(waited >= expected && waited <= expected + tick, "waited {waited:?}, not {expected:?}");
}

const FEED: &str = "workers = 1\n[[feeds]]\nname = \"ticks\"\nurl = \"memory://ticks\"\n\
                    heartbeat = { interval = \"0s\" }\n";

#[actix::test]
async fn a_sink_that_stops_unasked_is_restarted_after_the_policy_delay_and_receives_later_messages()
{
    metrics::install().expect("recorder");
    tokio::time::pause();
    let hub = MemoryHub::new();
    let mut listener = hub.listen("ticks");
    let text = format!("{FEED}[[subscribers]]\nname = \"fragile\"\nfeeds = [\"ticks\"]\n");
    let config =
        Config::from_toml_str(&text, Path::new("sinks.toml"), &TransportRegistry::with_memory())
            .expect("valid");
    let (_supervisor, router, mut seen) = supervise(config, None, &hub);
    let peer = tokio::time::timeout(DEADLINE, listener.accept()).await.expect("in time");
    let peer = peer.expect("the feed connects");
    assert_eq!(next(&mut seen).await, Seen::Started(1));

    assert!(peer.send_text("one"));
    assert_eq!(next(&mut seen).await, Seen::Message("one".into()));
    assert!(peer.send_text("stop"));
    assert_eq!(next(&mut seen).await, Seen::Message("stop".into()));
    assert_eq!(next(&mut seen).await, Seen::Stopped);
    let stopped = actix_rt::time::Instant::now();

    assert_eq!(next(&mut seen).await, Seen::Started(2));
    assert_waited(stopped.elapsed(), SINK_RESTART_POLICY.ceiling(0));
    assert_eq!(restarts("fragile"), 1.0);
    // The router has taken the new subscription once it answers what came after it.
    router.send(GetInFlight).await.expect("router alive");
    assert!(peer.send_text("two"));
    assert_eq!(next(&mut seen).await, Seen::Message("two".into()));

    // A second quick stop waits twice as long.
    assert!(peer.send_text("stop"));
    assert_eq!(next(&mut seen).await, Seen::Message("stop".into()));
    assert_eq!(next(&mut seen).await, Seen::Stopped);
    let stopped = actix_rt::time::Instant::now();
    assert_eq!(next(&mut seen).await, Seen::Started(3));
    assert_waited(stopped.elapsed(), SINK_RESTART_POLICY.ceiling(1));
    assert_eq!(restarts("fragile"), 2.0);
}

#[actix::test]
async fn a_sink_removed_by_a_reload_is_not_restarted() {
    metrics::install().expect("recorder");
    tokio::time::pause();
    let dir = std::env::temp_dir().join(format!("feedvisor-sink-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("feedvisor.toml");
    let with_sink = "[[subscribers]]\nname = \"removed\"\nfeeds = [\"*\"]\n";
    std::fs::write(&path, with_sink).expect("write the config");
    let config = Config::load(&path, &TransportRegistry::with_memory()).expect("valid");
    let (supervisor, _router, mut seen) = supervise(config, Some(path.clone()), &MemoryHub::new());
    assert_eq!(next(&mut seen).await, Seen::Started(1));

    std::fs::write(&path, "").expect("write the config without the sink");
    let report = supervisor.send(Reload).await.expect("supervisor alive").expect("reloaded");
    assert_eq!(report.subscribers_changed, ["removed"]);
    assert_eq!(next(&mut seen).await, Seen::Stopped, "the router let go of it");
    // Longer than any restart delay of the policy: a restart would have happened.
    actix_rt::time::sleep(SINK_RESTART_POLICY.max * 2).await;
    assert!(seen.try_recv().is_err(), "nothing restarted");
    assert_eq!(restarts("removed"), 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix::test]
async fn once_shutdown_began_a_sink_that_stops_is_not_restarted() {
    metrics::install().expect("recorder");
    tokio::time::pause();
    let hub = MemoryHub::new();
    let mut listener = hub.listen("ticks");
    let text = format!("{FEED}[[subscribers]]\nname = \"at-shutdown\"\nfeeds = [\"ticks\"]\n");
    let config =
        Config::from_toml_str(&text, Path::new("sinks.toml"), &TransportRegistry::with_memory())
            .expect("valid");
    let (supervisor, _router, mut seen) = supervise(config, None, &hub);
    let peer = tokio::time::timeout(DEADLINE, listener.accept()).await.expect("in time");
    let peer = peer.expect("the feed connects");
    assert_eq!(next(&mut seen).await, Seen::Started(1));

    // The sink stops unasked; shutdown begins during the restart delay.
    assert!(peer.send_text("stop"));
    assert_eq!(next(&mut seen).await, Seen::Message("stop".into()));
    assert_eq!(next(&mut seen).await, Seen::Stopped);
    supervisor.send(CloseFeeds).await.expect("supervisor alive");
    actix_rt::time::sleep(SINK_RESTART_POLICY.max * 2).await;
    assert!(seen.try_recv().is_err(), "nothing restarted");
    assert_eq!(restarts("at-shutdown"), 0.0);
}

#[actix::test]
async fn feeds_start_only_once_the_router_holds_the_sinks_so_a_first_message_reaches_them() {
    metrics::install().expect("recorder");
    let hub = MemoryHub::new();
    let mut listener = hub.listen("ticks");
    let text = format!("{FEED}[[subscribers]]\nname = \"early\"\nfeeds = [\"ticks\"]\n");
    let config =
        Config::from_toml_str(&text, Path::new("sinks.toml"), &TransportRegistry::with_memory())
            .expect("valid");
    let mut transports = TransportRegistry::empty();
    transports.register(Arc::new(MemoryTransport::new(hub.clone())));
    let router = Router::new();
    let routes = router.routes();
    // A router that has not handled its mailbox yet, as on a busy arbiter.
    let router_context = Context::new();
    let mut supervisor =
        Supervisor::new(config, None, transports, router_context.address(), routes);
    let (sender, mut seen) = mpsc::unbounded_channel();
    supervisor.start_sink_actor = Box::new(move |_, _, watch| {
        Fragile { seen: sender.clone(), _watch: watch }.start().recipient()
    });
    let _supervisor = supervisor.start();

    // Real time: the feed's actor runs on a worker arbiter of its own.
    let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(early.is_err(), "no feed connects before the router holds the sinks");
    let _router = router_context.run(router);
    let peer = tokio::time::timeout(DEADLINE, listener.accept()).await.expect("in time");
    let peer = peer.expect("the feed connects");
    assert!(peer.send_text("first"));
    assert_eq!(next(&mut seen).await, Seen::Message("first".into()));
}
