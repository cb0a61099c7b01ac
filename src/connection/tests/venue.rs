//! The connection actor under `outbound_rate` and `[[hosts]]`, over the
//! in-memory transport with paused time: exact send and connect schedules.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use feedvisor_transport_api::{Outbound, TransportError};
use feedvisor_transport_memory::{MemoryHub, MemoryPeer, MemoryTransport};
use tokio::sync::mpsc;

use super::{collecting_table, next_outbound, Harness};
use super::{ConnectionSetup, FeedConnection, SendMessage, SendOutcome};
use crate::config::Config;
use crate::status::HostWaitReason;
use crate::status::{FeedState, StatusCell};
use crate::transports::TransportRegistry;
use crate::venue::hosts::HostRegistry;

/// Starts one actor per feed of `text` (a whole config), all sharing one
/// host registry built from it, on one memory hub; `listen` names the
/// memory hosts to accept on.
async fn start_all(
    text: &str,
    hub: &MemoryHub,
) -> (Vec<(Arc<StatusCell>, Addr<FeedConnection>)>, Arc<HostRegistry>) {
    crate::metrics::install().expect("recorder");
    let config =
        Config::from_toml_str(text, Path::new("test.toml"), &TransportRegistry::with_memory())
            .expect("valid config");
    let hosts = HostRegistry::new(&config);
    let (sender, _routes) = mpsc::unbounded_channel();
    let table = collecting_table(sender).await;
    let mut actors = Vec::new();
    for feed in config.feeds {
        let shared = StatusCell::new();
        let setup = ConnectionSetup {
            feed: Arc::new(feed),
            transport: Arc::new(MemoryTransport::new(hub.clone())),
            routes: table.clone(),
            shared: shared.clone(),
            watch: None,
            hosts: hosts.clone(),
        };
        actors.push((shared, FeedConnection::new(setup).start()));
    }
    tokio::task::yield_now().await;
    (actors, hosts)
}

/// One paced feed named `name` with `extra` lines, through the usual harness.
async fn paced(name: &str, extra: &str) -> Harness {
    super::start(name, extra).await
}

/// The next outbound text and how long after `start` it arrived, in
/// tenths of a second (tokio's timers fire on the millisecond after their
/// deadline, so each wave is a millisecond later than its place).
async fn next_text_at(peer: &mut MemoryPeer, start: Instant) -> (String, Duration) {
    let tenths = |elapsed: Duration| Duration::from_millis(elapsed.as_millis() as u64 / 100 * 100);
    match next_outbound(peer).await {
        Outbound::Text(bytes) => {
            (String::from_utf8_lossy(&bytes).into_owned(), tenths(start.elapsed()))
        }
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next `count` outbound texts, each with when it arrived.
async fn texts_at(peer: &mut MemoryPeer, start: Instant, count: usize) -> Vec<(String, Duration)> {
    let mut sent = Vec::new();
    for _ in 0..count {
        sent.push(next_text_at(peer, start).await);
    }
    sent
}

/// Texts and when they are due, as [`next_text_at`] reads them.
fn schedule(expected: &[(&str, u64)]) -> Vec<(String, Duration)> {
    expected.iter().map(|(text, at)| (text.to_string(), secs(*at))).collect()
}

fn secs(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[actix::test]
async fn on_open_beyond_the_rate_goes_out_at_its_pace_in_order() {
    let extra =
        "on_open = ['s0', 's1', 's2', 's3', 's4']\noutbound_rate = { messages = 2, per = \"1s\" }";
    let mut h = paced("paced-on-open", extra).await;
    let start = Instant::now();
    let mut peer = h.accept().await;
    let sent = texts_at(&mut peer, start, 5).await;
    let expected = [("s0", 0), ("s1", 0), ("s2", 1000), ("s3", 1000), ("s4", 2000)];
    assert_eq!(sent, schedule(&expected));
    assert_eq!(h.metric(crate::metrics::venue::OUTBOUND_PACED, ""), Some(3.0));
    let pacing = h.shared.pacing().expect("paced");
    assert_eq!((pacing.messages, pacing.per.as_str(), pacing.held), (2, "1s", 0));
}

#[actix::test]
async fn a_send_waits_behind_on_open_and_is_answered_queued_never_dropped() {
    let extra = "on_open = ['sub-a', 'sub-b']\noutbound_rate = { messages = 1, per = \"1s\" }";
    let mut h = paced("paced-send", extra).await;
    let start = Instant::now();
    let mut peer = h.accept().await;
    assert_eq!(h.shared.pacing().map(|pacing| pacing.held), Some(1));
    let outcome = h.actor.send(SendMessage { message: Outbound::text("order") }).await;
    assert_eq!(outcome.expect("actor alive"), Ok(SendOutcome::Queued { dropped_oldest: 0 }));
    assert_eq!(h.shared.outbound_queued(), 1);
    assert_eq!(next_text_at(&mut peer, start).await, ("sub-a".to_owned(), secs(0)));
    assert_eq!(next_text_at(&mut peer, start).await, ("sub-b".to_owned(), secs(1000)));
    assert_eq!(next_text_at(&mut peer, start).await, ("order".to_owned(), secs(2000)));
    h.settle().await;
    assert_eq!(h.shared.outbound_queued(), 0);
    // A place is free again after a quiet second: the next send goes at once.
    tokio::time::sleep(secs(1000)).await;
    let outcome = h.actor.send(SendMessage { message: Outbound::text("now") }).await;
    assert_eq!(outcome.expect("actor alive"), Ok(SendOutcome::Sent));
    assert_eq!(h.metric(crate::metrics::venue::OUTBOUND_PACED, ""), Some(2.0));
}

#[actix::test]
async fn a_reconnect_resubscribes_at_the_pace_and_forgets_the_old_connections_on_open() {
    let extra =
        "on_open = ['s0', 's1', 's2', 's3']\noutbound_rate = { messages = 2, per = \"1s\" }\n\
                 reconnect = { policy = \"fixed\", initial = \"100ms\", jitter = \"none\" }";
    let mut h = paced("paced-reconnect", extra).await;
    let start = Instant::now();
    let mut peer = h.accept().await;
    assert_eq!(next_text_at(&mut peer, start).await.0, "s0");
    assert_eq!(next_text_at(&mut peer, start).await.0, "s1");
    // Dropped with s2 and s3 still held: they are not sent on the new connection twice.
    assert!(peer.close(1001, "going away"));
    let mut peer = h.accept().await;
    let sent = texts_at(&mut peer, start, 4).await;
    // The window outlives the connection: places free at 1 s and 2 s, as if it had not broken.
    assert_eq!(sent, schedule(&[("s0", 1000), ("s1", 1000), ("s2", 2000), ("s3", 2000)]));
}

#[actix::test]
async fn with_count_pings_a_ping_takes_a_place_and_goes_first() {
    let extra = "on_open = ['s0', 's1', 's2']\n\
                 heartbeat = { interval = \"5s\", timeout = \"4s\", message = 'ping', reply = 'pong' }\n\
                 outbound_rate = { messages = 1, per = \"2s\", count_pings = true }";
    let mut h = paced("paced-pings", extra).await;
    let start = Instant::now();
    let mut peer = h.accept().await;
    // s0 at 0, s1 at 2 s, s2 at 4 s; the ping due at 5 s waits for the place at 6 s.
    let sent = texts_at(&mut peer, start, 4).await;
    assert_eq!(sent, schedule(&[("s0", 0), ("s1", 2000), ("s2", 4000), ("ping", 6000)]));
}

#[actix::test]
async fn pings_take_no_place_without_count_pings() {
    let extra = "on_open = ['s0', 's1']\n\
                 heartbeat = { interval = \"1s\", timeout = \"900ms\", message = 'ping', reply = 'pong' }\n\
                 outbound_rate = { messages = 1, per = \"5s\" }";
    let mut h = paced("paced-pings-free", extra).await;
    let start = Instant::now();
    let mut peer = h.accept().await;
    assert_eq!(next_text_at(&mut peer, start).await, ("s0".to_owned(), secs(0)));
    // Pings do not count: the first goes at 1 s though s1 waits until 5 s.
    assert_eq!(next_text_at(&mut peer, start).await, ("ping".to_owned(), secs(1000)));
    assert!(peer.send_text("pong"));
    let mut rest = Vec::new();
    while rest.last().is_none_or(|(text, _): &(String, Duration)| text != "s1") {
        rest.push(next_text_at(&mut peer, start).await);
        if let Some((text, _)) = rest.last() {
            if text == "ping" {
                assert!(peer.send_text("pong"));
            }
        }
    }
    assert_eq!(rest.last().map(|(_, at)| *at), Some(secs(5000)));
}

#[actix::test]
async fn a_host_budget_spreads_connects_of_all_its_feeds_over_its_window() {
    let hub = MemoryHub::new();
    let mut listener = hub.listen("venue");
    let mut text = "[[hosts]]\nmatch = \"venue\"\nconnects = 2\nper = \"10s\"\n".to_owned();
    for index in 0..5 {
        text.push_str(&format!("[[feeds]]\nname = \"budget-{index}\"\nurl = \"memory://venue/{index}\"\nheartbeat = {{ interval = \"0s\" }}\n"));
    }
    tokio::time::pause();
    let start = Instant::now();
    let (actors, hosts) = start_all(&text, &hub).await;
    let mut opened = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..5 {
        let peer = tokio::time::timeout(Duration::from_secs(60), listener.accept()).await;
        peers.push(peer.expect("in time").expect("listener open"));
        opened.push(start.elapsed());
    }
    // Two at once, then two per window, each pushed back by under a second of jitter.
    assert_eq!(&opened[..2], [Duration::ZERO, Duration::ZERO]);
    for (index, at) in opened.iter().enumerate().skip(2) {
        let wave = Duration::from_secs(10 * (index as u64 / 2));
        assert!(*at >= wave && *at < wave + Duration::from_secs(6), "connect {index} at {at:?}");
    }
    let status = hosts.status(Instant::now());
    assert_eq!(status[0].host, "venue");
    assert!(status[0].waiting.is_empty());
    assert_eq!(hub.attempts("venue"), 5);
    for (shared, _) in &actors {
        assert_eq!(shared.host_wait(), None);
    }
}

#[actix::test]
async fn a_waiting_feed_shows_its_host_and_reason() {
    tokio::time::pause();
    let hub = MemoryHub::new();
    let _listener = hub.listen("shown");
    let mut text = "[[hosts]]\nmatch = \"shown\"\nconnects = 1\nper = \"30s\"\n".to_owned();
    for index in 0..2 {
        text.push_str(&format!("[[feeds]]\nname = \"shown-{index}\"\nurl = \"memory://shown/{index}\"\nheartbeat = {{ interval = \"0s\" }}\n"));
    }
    let (actors, hosts) = start_all(&text, &hub).await;
    let waiting = actors.iter().filter_map(|(shared, _)| shared.host_wait()).collect::<Vec<_>>();
    assert_eq!(waiting.len(), 1, "one feed waits");
    assert_eq!(waiting[0].host, "shown");
    assert_eq!(waiting[0].reason, HostWaitReason::ConnectBudget);
    let waiter = actors.iter().find(|(shared, _)| shared.host_wait().is_some()).expect("one waits");
    assert_eq!(waiter.0.state(), FeedState::BackingOff);
    let status = hosts.status(Instant::now());
    assert_eq!(status[0].waiting.len(), 1);
    assert_eq!(status[0].connects_in_window, 2, "the waiting feed's place is held ahead");
    // Stopping the waiting feed gives its place back.
    waiter.1.send(super::Disconnect { code: 1000, retire: false }).await.expect("alive");
    tokio::task::yield_now().await;
    let status = hosts.status(Instant::now());
    assert!(status[0].waiting.is_empty());
    assert_eq!(status[0].connects_in_window, 1);
}

#[actix::test]
async fn a_429_with_retry_after_holds_every_feed_to_the_host() {
    let hub = MemoryHub::new();
    let mut listener = hub.listen("cool");
    let text = "[[hosts]]\nmatch = \"cool\"\n\
                [[feeds]]\nname = \"cool-a\"\nurl = \"memory://cool/a\"\nheartbeat = { interval = \"0s\" }\n\
                reconnect = { policy = \"fixed\", initial = \"100ms\", jitter = \"none\" }\n\
                [[feeds]]\nname = \"cool-b\"\nurl = \"memory://cool/b\"\nheartbeat = { interval = \"0s\" }\n\
                reconnect = { policy = \"fixed\", initial = \"100ms\", jitter = \"none\" }\n";
    let busy =
        TransportError::HandshakeStatus { status: 429, retry_after: Some(Duration::from_secs(5)) };
    hub.fail_next("cool", busy);
    tokio::time::pause();
    let start = Instant::now();
    let (actors, hosts) = start_all(text, &hub).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The refused feed waits out Retry-After by its own reconnect policy;
    // the other, never refused, waits for the host's cool-down.
    let status = hosts.status(Instant::now());
    let cooldown = status[0].cooldown.as_ref().expect("cooling down");
    assert_eq!(cooldown.reason, "status_429");
    assert!(cooldown.remaining_secs > 3.9 && cooldown.remaining_secs <= 4.0);
    assert_eq!(status[0].waiting.len(), 1);
    assert_eq!(status[0].waiting[0].reason, HostWaitReason::Cooldown);
    let shown: Vec<_> = actors.iter().filter_map(|(shared, _)| shared.host_wait()).collect();
    assert_eq!(shown.len(), 1);
    assert_eq!((shown[0].host.as_str(), shown[0].reason), ("cool", HostWaitReason::Cooldown));
    assert!(actors.iter().all(|(shared, _)| shared.state() == FeedState::BackingOff));
    assert_eq!(hub.attempts("cool"), 1);
    let mut opened = Vec::new();
    for _ in 0..2 {
        let peer = tokio::time::timeout(Duration::from_secs(60), listener.accept()).await;
        peer.expect("in time").expect("open");
        opened.push(start.elapsed());
    }
    assert!(opened.iter().all(|at| *at >= Duration::from_secs(5)), "{opened:?}");
    assert_eq!(hub.attempts("cool"), 3, "no attempt during the cool-down");
    tokio::task::yield_now().await;
    assert!(actors.iter().all(|(shared, _)| shared.host_wait().is_none()));
    assert!(hosts.status(Instant::now())[0].waiting.is_empty());
}
