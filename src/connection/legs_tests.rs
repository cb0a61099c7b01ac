//! Redundant legs and discontinuity events: the legs' rules on their own
//! (paused tokio clock), then connection actors of two legs over the
//! in-memory transport.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use bytes::Bytes;
use feedvisor_transport_api::{DataFrame, Event, TransportError};
use feedvisor_transport_memory::{MemoryHub, MemoryTransport};
use tokio::sync::mpsc;

use super::super::legs::{Counters, FeedLegs, LegSeat, Offered};
use super::super::{ConnectionSetup, FeedConnection};
use super::{collecting_table, data_only, discontinuities, texts, Harness, Route, WAIT};
use crate::config::{Config, FeedConfig};
use crate::inbox::delivery::{DataKind, FeedMessage};
use crate::metrics::legs::{ContinuityMetrics, LegMetrics};
use crate::status::{FeedState, StatusCell};
use crate::transports::TransportRegistry;

/// A feed `name` with `legs` legs (`memory://name-0`, ...) and extra TOML lines.
fn feed(name: &str, legs: usize, extra: &str) -> FeedConfig {
    let urls: Vec<String> = (0..legs).map(|leg| format!("\"memory://{name}-{leg}\"")).collect();
    let text = format!(
        "[[feeds]]\nname = \"{name}\"\nurls = [{}]\nheartbeat = {{ interval = \"0s\" }}\n{extra}\n",
        urls.join(", ")
    );
    let config =
        Config::from_toml_str(&text, Path::new("test.toml"), &TransportRegistry::with_memory())
            .expect("valid config");
    config.feeds.into_iter().next().expect("one feed")
}

/// A message as a leg read it.
fn message(seq: Option<u64>, payload: &str) -> FeedMessage {
    #[allow(
        clippy::disallowed_methods,
        clippy::disallowed_types,
        reason = "a message's arrival stamp, not a timer"
    )]
    let received = std::time::Instant::now();
    FeedMessage {
        feed: "legs".into(),
        topic: None,
        kind: DataKind::Text,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        received_at: std::time::SystemTime::now(),
        received,
        gap_before: None,
        sequence: seq,
        chunk: None,
        discontinuity: None,
    }
}

/// A member of the legs, with its counters, and an open status to close.
struct Member {
    seat: LegSeat,
    status: Arc<StatusCell>,
    leg: LegMetrics,
}

/// The feed's counters the members share.
struct Shared {
    continuity: ContinuityMetrics,
    gaps: metrics::Counter,
    missed: metrics::Counter,
}

impl Shared {
    fn new(name: &str) -> Self {
        Shared {
            continuity: ContinuityMetrics::new(name, &crate::DiscontinuityReason::NAMES),
            gaps: metrics::Counter::noop(),
            missed: metrics::Counter::noop(),
        }
    }
}

fn join(legs: &Arc<FeedLegs>, name: &str, incarnation: u64, leg: usize) -> Member {
    let status = StatusCell::new();
    status.set_state(FeedState::Open);
    let seat = legs.join(incarnation, leg, Some(status.clone()));
    Member { seat, status, leg: LegMetrics::new(name, leg) }
}

impl Member {
    /// Offers `seq` (and a payload naming it); returns what was delivered as `n` or `!reason`.
    fn offer(&self, shared: &Shared, seq: u64) -> (Offered, Vec<String>) {
        self.offer_message(shared, message(Some(seq), &seq.to_string()))
    }

    fn offer_message(&self, shared: &Shared, message: FeedMessage) -> (Offered, Vec<String>) {
        let mut out = Vec::new();
        let offered = self.seat.offer(message, Instant::now(), &mut out, &self.counters(shared));
        (offered, shown(&out))
    }

    fn release(&self, shared: &Shared) -> Vec<String> {
        let mut out = Vec::new();
        self.seat.release_due(Instant::now(), &mut out, &self.counters(shared));
        shown(&out)
    }

    fn counters<'a>(&'a self, shared: &'a Shared) -> Counters<'a> {
        Counters {
            leg: &self.leg,
            continuity: &shared.continuity,
            gaps: &shared.gaps,
            missed: &shared.missed,
        }
    }
}

/// Delivered messages as their payloads, events as `!reason(last_before,first_after,missed)`.
fn shown(out: &[FeedMessage]) -> Vec<String> {
    out.iter()
        .map(|message| match message.discontinuity.as_deref() {
            None => String::from_utf8_lossy(&message.payload).into_owned(),
            Some(event) => format!(
                "!{}({:?},{:?},{:?})",
                event.reason.as_str(),
                event.last_before,
                event.first_after,
                event.missed
            ),
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[actix::test]
async fn the_first_copy_of_each_number_wins_and_later_copies_are_dropped() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("first-wins", 2, "sequence = \"/seq\"")).expect("legs");
    let shared = Shared::new("first-wins");
    let (a, b) = (join(&legs, "first-wins", 1, 0), join(&legs, "first-wins", 2, 1));
    assert_eq!(a.offer(&shared, 1), (Offered::Delivered, strings(&["1"])));
    assert_eq!(a.offer(&shared, 2), (Offered::Delivered, strings(&["2"])));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.offer(&shared, 1), (Offered::Duplicate, Vec::new()));
    assert_eq!(b.offer(&shared, 2), (Offered::Duplicate, Vec::new()));
    assert_eq!(b.offer(&shared, 3), (Offered::Delivered, strings(&["3"])));
    assert_eq!(a.offer(&shared, 3), (Offered::Duplicate, Vec::new()));
    assert_eq!(legs_last(&a), Some(3));
}

fn legs_last(member: &Member) -> Option<u64> {
    member.seat.last()
}

#[actix::test]
async fn a_leg_that_runs_ahead_is_held_until_the_other_fills_the_gap_in_order() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("fill", 2, "sequence = \"/seq\"")).expect("legs");
    let shared = Shared::new("fill");
    let (a, b) = (join(&legs, "fill", 1, 0), join(&legs, "fill", 2, 1));
    assert_eq!(a.offer(&shared, 1).1, ["1"]);
    assert_eq!(b.offer(&shared, 1).0, Offered::Duplicate);
    // a lost 2 and 3; b has not passed 1, so it may still deliver them.
    assert_eq!(a.offer(&shared, 4), (Offered::HoldStarted(Duration::from_secs(1)), Vec::new()));
    assert_eq!(a.offer(&shared, 5), (Offered::Held, Vec::new()));
    assert_eq!(b.offer(&shared, 2).1, ["2"]);
    assert_eq!(b.offer(&shared, 3).1, ["3", "4", "5"], "the held numbers follow on, in order");
    assert_eq!(b.offer(&shared, 4).0, Offered::Duplicate);
    assert_eq!(a.release(&shared), Vec::<String>::new(), "nothing is held any more");
}

#[actix::test]
async fn holding_ends_after_gap_fill_wait_with_the_gap_announced() {
    tokio::time::pause();
    let config = feed("wait", 2, "sequence = \"/seq\"\ngap_fill_wait = \"200ms\"");
    let legs = FeedLegs::for_feed(&config).expect("legs");
    let shared = Shared::new("wait");
    let (a, _b) = (join(&legs, "wait", 1, 0), join(&legs, "wait", 2, 1));
    assert_eq!(a.offer(&shared, 7).1, ["7"]);
    assert_eq!(a.offer(&shared, 10).0, Offered::HoldStarted(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released = a.release(&shared);
    assert!(released.is_empty(), "still waiting for the other leg: {released:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.release(&shared), ["!gap(Some(7),Some(10),Some(2))", "10"]);
    assert_eq!(a.offer(&shared, 11).1, ["11"]);
}

#[actix::test]
async fn holding_ends_at_gap_fill_max_messages() {
    tokio::time::pause();
    let config = feed("max", 2, "sequence = \"/seq\"\ngap_fill_max = 2");
    let legs = FeedLegs::for_feed(&config).expect("legs");
    let shared = Shared::new("max");
    let (a, _b) = (join(&legs, "max", 1, 0), join(&legs, "max", 2, 1));
    assert_eq!(a.offer(&shared, 1).1, ["1"]);
    assert!(matches!(a.offer(&shared, 3).0, Offered::HoldStarted(_)));
    assert_eq!(a.offer(&shared, 4).0, Offered::Held);
    let (offered, out) = a.offer(&shared, 5);
    assert_eq!(offered, Offered::Delivered);
    assert_eq!(out, ["!gap(Some(1),Some(3),Some(1))", "3", "4", "5"]);
}

#[actix::test]
async fn with_no_other_leg_open_a_gap_is_announced_at_once() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("alone", 2, "sequence = \"/seq\"")).expect("legs");
    let shared = Shared::new("alone");
    let (a, b) = (join(&legs, "alone", 1, 0), join(&legs, "alone", 2, 1));
    assert_eq!(a.offer(&shared, 1).1, ["1"]);
    b.status.set_state(FeedState::BackingOff);
    assert_eq!(a.offer(&shared, 4).1, ["!gap(Some(1),Some(4),Some(2))", "4"]);
    // b is back, ahead: a, at 4, may still fill the gap, until it is past it too.
    b.status.set_state(FeedState::Open);
    assert!(matches!(b.offer(&shared, 9).0, Offered::HoldStarted(_)));
    assert_eq!(a.offer(&shared, 10).1, ["!gap(Some(4),Some(9),Some(4))", "9", "10"]);
}

#[actix::test]
async fn a_sequence_reset_is_announced_and_numbering_goes_on_from_it() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("reset", 2, "sequence = \"/seq\"")).expect("legs");
    let shared = Shared::new("reset");
    let (a, b) = (join(&legs, "reset", 1, 0), join(&legs, "reset", 2, 1));
    for seq in 500..=502 {
        a.offer(&shared, seq);
        b.offer(&shared, seq);
    }
    assert_eq!(a.offer(&shared, 1).1, ["!sequence_reset(Some(502),Some(1),None)", "1"]);
    assert_eq!(b.offer(&shared, 1).0, Offered::Duplicate, "the other leg's restart is a copy");
    assert_eq!(b.offer(&shared, 2).1, ["2"]);
}

#[actix::test]
async fn without_sequence_copies_are_told_apart_by_payload_and_real_repeats_pass() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("hash", 2, "")).expect("legs");
    let shared = Shared::new("hash");
    let (a, b) = (join(&legs, "hash", 1, 0), join(&legs, "hash", 2, 1));
    let text = |payload: &str| message(None, payload);
    assert_eq!(a.offer_message(&shared, text("x")).1, ["x"]);
    assert_eq!(a.offer_message(&shared, text("y")).1, ["y"]);
    assert_eq!(b.offer_message(&shared, text("x")).0, Offered::Duplicate);
    // The upstream really sent "x" twice: the second arrival on a leg is delivered once.
    assert_eq!(b.offer_message(&shared, text("x")).1, ["x"]);
    assert_eq!(a.offer_message(&shared, text("x")).0, Offered::Duplicate);
    assert_eq!(b.offer_message(&shared, text("y")).0, Offered::Duplicate);
}

#[actix::test]
async fn a_time_window_forgets_old_payloads_and_a_count_window_keeps_only_the_last() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("window", 2, "dedup_window = \"1s\"")).expect("legs");
    let shared = Shared::new("window");
    let (a, b) = (join(&legs, "window", 1, 0), join(&legs, "window", 2, 1));
    assert_eq!(a.offer_message(&shared, message(None, "old")).1, ["old"]);
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert_eq!(b.offer_message(&shared, message(None, "old")).1, ["old"], "forgotten");

    let legs = FeedLegs::for_feed(&feed("count", 2, "dedup_window = 2")).expect("legs");
    let shared = Shared::new("count");
    let (a, b) = (join(&legs, "count", 1, 0), join(&legs, "count", 2, 1));
    for payload in ["p", "q", "r"] {
        a.offer_message(&shared, message(None, payload));
    }
    assert_eq!(b.offer_message(&shared, message(None, "r")).0, Offered::Duplicate);
    assert_eq!(b.offer_message(&shared, message(None, "p")).1, ["p"], "out of the last two");
}

#[actix::test]
async fn without_sequence_a_leg_opening_while_no_other_is_open_announces_a_reconnect() {
    tokio::time::pause();
    let legs = FeedLegs::for_feed(&feed("down", 2, "")).expect("legs");
    let shared = Shared::new("down");
    let (a, b) = (join(&legs, "down", 1, 0), join(&legs, "down", 2, 1));
    b.seat.opened();
    assert_eq!(a.offer_message(&shared, message(None, "m1")).1, ["m1"], "nothing before it");
    a.seat.opened();
    assert_eq!(a.offer_message(&shared, message(None, "m2")).1, ["m2"], "b was open all along");
    b.status.set_state(FeedState::BackingOff);
    a.seat.opened();
    assert_eq!(
        a.offer_message(&shared, message(None, "m3")).1,
        ["!reconnect(None,None,None)", "m3"]
    );
}

// Connection actors of two legs.

/// Starts the actor of leg `leg` of `config` seated in `legs`.
fn leg_actor(
    hub: &MemoryHub,
    config: &FeedConfig,
    legs: &Arc<FeedLegs>,
    leg: usize,
    incarnation: u64,
    routes: Arc<crate::router::Routes>,
) -> (Addr<FeedConnection>, Arc<StatusCell>) {
    let urls = &config.redundancy.as_ref().expect("legs").urls;
    let config = FeedConfig { url: urls[leg].clone(), ..config.clone() };
    let shared = StatusCell::new();
    let seat = legs.join(incarnation, leg, Some(shared.clone()));
    let setup = ConnectionSetup {
        feed: Arc::new(config),
        transport: Arc::new(MemoryTransport::new(hub.clone())),
        routes,
        shared: shared.clone(),
        watch: None,
        hosts: Default::default(),
    };
    (FeedConnection::new(setup).on_leg(seat).start(), shared)
}

async fn accept(
    listener: &mut feedvisor_transport_memory::MemoryListener,
) -> feedvisor_transport_memory::MemoryPeer {
    let next = tokio::time::timeout(WAIT, listener.accept()).await;
    next.expect("a connection in time").expect("listener open")
}

async fn next_route(routes: &mut mpsc::UnboundedReceiver<Route>) -> Route {
    let route = tokio::time::timeout(WAIT, routes.recv()).await;
    route.expect("a batch in time").expect("router open")
}

fn seq(n: u64) -> Event {
    Event::Data(DataFrame::text(format!(r#"{{"seq":{n}}}"#)))
}

#[actix::test]
async fn two_leg_actors_give_one_stream_through_the_loss_of_either() {
    tokio::time::pause();
    crate::metrics::install().expect("recorder");
    let name = "two-legs";
    let config = feed(name, 2, "sequence = \"/seq\"");
    let legs = FeedLegs::for_feed(&config).expect("legs");
    let hub = MemoryHub::new();
    let (mut listen_a, mut listen_b) = (hub.listen("two-legs-0"), hub.listen("two-legs-1"));
    let (sender, mut routes) = mpsc::unbounded_channel();
    let table = collecting_table(sender).await;
    let _a = leg_actor(&hub, &config, &legs, 0, 1, table.clone());
    let _b = leg_actor(&hub, &config, &legs, 1, 2, table);
    let (peer_a, peer_b) = (accept(&mut listen_a).await, accept(&mut listen_b).await);
    tokio::task::yield_now().await;
    assert!(peer_a.send_batch(vec![seq(1), seq(2)]));
    assert_eq!(texts(&next_route(&mut routes).await), [r#"{"seq":1}"#, r#"{"seq":2}"#]);
    assert!(peer_b.send_batch(vec![seq(1), seq(2), seq(3)]));
    assert_eq!(texts(&next_route(&mut routes).await), [r#"{"seq":3}"#]);
    // a is lost; b carries on; a comes back after its backoff and catches up.
    peer_a.fail(TransportError::Closed);
    assert!(peer_b.send_batch(vec![seq(4), seq(5)]));
    assert_eq!(texts(&next_route(&mut routes).await), [r#"{"seq":4}"#, r#"{"seq":5}"#]);
    let peer_a = accept(&mut listen_a).await;
    tokio::task::yield_now().await;
    assert!(peer_a.send_batch(vec![seq(5), seq(6)]));
    let route = next_route(&mut routes).await;
    assert!(discontinuities(&route).is_empty());
    assert_eq!(texts(&route), [r#"{"seq":6}"#]);
    // b runs ahead (a lost nothing yet): its 8 waits for a's 7.
    assert!(peer_b.send_batch(vec![seq(8)]));
    tokio::task::yield_now().await;
    assert!(peer_a.send_batch(vec![seq(7)]));
    assert_eq!(texts(&next_route(&mut routes).await), [r#"{"seq":7}"#, r#"{"seq":8}"#]);
    // a never sends 9: after gap_fill_wait (1s) b's 10 is delivered with the gap announced.
    assert!(peer_b.send_batch(vec![seq(10)]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let route = next_route(&mut routes).await;
    assert_eq!(discontinuities(&route), ["gap"]);
    let route = data_only(route);
    assert_eq!(texts(&route), [r#"{"seq":10}"#]);
    assert_eq!(route.messages[0].gap_before, Some(1));
    let metric = |name: &str, labels: &str| {
        let rendered = crate::metrics::install().expect("recorder").render();
        let prefix = format!("{name}{{feed=\"two-legs\"{labels}}} ");
        rendered.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse::<f64>().ok())
    };
    use crate::metrics::legs::{DISCONTINUITIES, LEG_MESSAGES_WON, LEG_RECONNECTS};
    assert_eq!(metric(LEG_MESSAGES_WON, ",leg=\"0\""), Some(4.0), "1, 2, 6 and 7");
    assert_eq!(metric(LEG_MESSAGES_WON, ",leg=\"1\""), Some(5.0), "3, 4, 5, 8 and 10");
    assert_eq!(metric(LEG_RECONNECTS, ",leg=\"0\""), Some(1.0));
    assert_eq!(metric(DISCONTINUITIES, ",reason=\"gap\""), Some(1.0));
}

/// Yields until `status` leaves the connected states.
async fn until_down(status: &StatusCell) {
    for _ in 0..100 {
        if !status.state().is_connected() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the connection never went down");
}

#[actix::test]
async fn the_feed_stays_up_in_metrics_while_any_leg_is_open() {
    tokio::time::pause();
    let recorder = crate::metrics::install().expect("recorder");
    let name = "up-legs";
    let config = feed(name, 2, "sequence = \"/seq\"");
    let legs = FeedLegs::for_feed(&config).expect("legs");
    let hub = MemoryHub::new();
    let (mut listen_a, mut listen_b) = (hub.listen("up-legs-0"), hub.listen("up-legs-1"));
    let (sender, _routes) = mpsc::unbounded_channel();
    let table = collecting_table(sender).await;
    let (_a, status_a) = leg_actor(&hub, &config, &legs, 0, 1, table.clone());
    let (_b, status_b) = leg_actor(&hub, &config, &legs, 1, 2, table);
    let (peer_a, peer_b) = (accept(&mut listen_a).await, accept(&mut listen_b).await);
    tokio::task::yield_now().await;
    let up = || {
        let prefix = format!("{}{{feed=\"{name}\"}} ", crate::metrics::FEED_UP);
        let rendered = recorder.render();
        rendered.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse::<f64>().ok())
    };
    assert_eq!(up(), Some(1.0));
    // Losing either leg leaves the feed up, whichever changed last.
    peer_b.fail(TransportError::Closed);
    until_down(&status_b).await;
    assert_eq!(up(), Some(1.0), "leg 0 is still open");
    let _peer_b = accept(&mut listen_b).await;
    tokio::task::yield_now().await;
    peer_a.fail(TransportError::Closed);
    until_down(&status_a).await;
    assert_eq!(up(), Some(1.0), "leg 1 is open again");
    // Both lost: down.
    _peer_b.fail(TransportError::Closed);
    until_down(&status_b).await;
    assert_eq!(up(), Some(0.0));
}

#[actix::test]
async fn a_replacement_of_a_feed_without_sequence_or_legs_announces_the_switch() {
    let mut h: Harness = super::start("switch", "").await;
    let old = h.accept().await;
    assert!(old.send_text("before"));
    assert_eq!(texts(&h.route().await), ["before"]);
    // The replacement's subscriber is a collector of its own.
    let (sender, mut routes) = mpsc::unbounded_channel();
    let table = collecting_table(sender).await;
    let setup = ConnectionSetup {
        feed: Arc::new(feed_single("switch")),
        transport: Arc::new(MemoryTransport::new(h.hub.clone())),
        routes: table,
        shared: StatusCell::new(),
        watch: None,
        hosts: Default::default(),
    };
    let _new = FeedConnection::new(setup).replacing().start();
    let new = h.accept().await;
    assert!(new.send_text("after"));
    let route = next_route(&mut routes).await;
    assert_eq!(discontinuities(&route), ["switch"]);
    assert_eq!(texts(&data_only(route)), ["after"]);
}

fn feed_single(name: &str) -> FeedConfig {
    let text = format!(
        "[[feeds]]\nname = \"{name}\"\nurl = \"memory://{name}\"\nheartbeat = {{ interval = \"0s\" }}\n"
    );
    let config =
        Config::from_toml_str(&text, Path::new("test.toml"), &TransportRegistry::with_memory())
            .expect("valid config");
    config.feeds.into_iter().next().expect("one feed")
}
