//! Zero-gap feeds through the `feedvisor` binary, from a TOML file, against
//! a sequenced upstream: redundant legs that lose a connection every 5 s,
//! a single leg under the same cuts (every gap announced in-band), scheduled
//! rotation ahead of a server that cuts every connection at 20 s, and legs
//! with different lag. Subscribers are the stdout sink's JSON lines.
//!
//! The three soak tests run for two minutes each (`SOAK`), and may run
//! concurrently with each other; the rest take seconds.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use feedvisor_test_support::fault::{FaultProxy, Faults};
use serde_json::Value;

use crate::binary::{feedvisor, temp_config};
use crate::broadcast::BroadcastUpstream;
use crate::support::{http_get, http_post, sample, ChildGuard, DEADLINE};
use crate::tls::admin_addr;

/// How long the soak tests run, as the issue asks.
const SOAK: Duration = Duration::from_secs(120);
/// How often a connection is killed in the soak tests.
const KILL_EVERY: Duration = Duration::from_secs(5);
/// The upstream's pace: 250 numbers a second.
const TICK: Duration = Duration::from_millis(4);

/// What a subscriber saw of one feed, in order.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// A data message's sequence number.
    Number(u64),
    /// A discontinuity event.
    Event(Value),
}

/// The `feedvisor run` child and its stdout sink's lines.
struct Running {
    _child: ChildGuard,
    admin: SocketAddr,
    stdout: Receiver<String>,
}

impl Running {
    /// Starts `feedvisor run` with `feeds` (TOML) and a stdout subscriber to every feed.
    fn start(name: &str, feeds: &str) -> Running {
        let text = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n{feeds}\n\
             [[subscribers]]\nname = \"out\"\nfeeds = [\"*\"]\nsink = \"stdout\"\n"
        );
        let path = temp_config(&format!("zero-gap-{name}.toml"), &text);
        let mut child = ChildGuard::spawn(feedvisor().arg("run").arg("--config").arg(&path));
        let (stdout, stderr) = (child.stdout_lines(), child.stderr_lines());
        let admin = admin_addr(&stderr);
        // Keep reading standard error so the child never blocks on it.
        std::thread::spawn(move || while stderr.recv().is_ok() {});
        Running { _child: child, admin, stdout }
    }

    /// Moves every line read so far into `seen`, by feed.
    fn drain(&self, seen: &mut Seen) {
        while let Ok(line) = self.stdout.try_recv() {
            seen.take(&line);
        }
    }

    /// Reads until every feed in `feeds` has delivered `last` or more, within the deadline.
    async fn until_delivered(&self, seen: &mut Seen, feeds: &[&str], last: u64) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.drain(seen);
            if feeds.iter().all(|feed| seen.last_number(feed).is_some_and(|n| n >= last)) {
                return;
            }
            let reached: Vec<_> = feeds.iter().map(|feed| seen.last_number(feed)).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "{feeds:?} never reached {last}, only {reached:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> String {
        let (status, text) = http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200);
        text
    }
}

/// Every feed's items.
#[derive(Debug, Default)]
struct Seen {
    feeds: std::collections::BTreeMap<String, Vec<Item>>,
}

impl Seen {
    fn take(&mut self, line: &str) {
        let value: Value = serde_json::from_str(line).expect("a JSON line");
        let feed = value["feed"].as_str().expect("a feed").to_owned();
        let item = if value["type"] == "discontinuity" {
            Item::Event(value)
        } else {
            let payload: Value =
                serde_json::from_str(value["payload"].as_str().expect("text")).expect("JSON");
            Item::Number(payload["seq"].as_u64().expect("a number"))
        };
        self.feeds.entry(feed).or_default().push(item);
    }

    fn items(&self, feed: &str) -> &[Item] {
        self.feeds.get(feed).map_or(&[], Vec::as_slice)
    }

    fn last_number(&self, feed: &str) -> Option<u64> {
        self.items(feed).iter().rev().find_map(|item| match item {
            Item::Number(n) => Some(*n),
            Item::Event(_) => None,
        })
    }
}

/// What a feed's items say about its continuity.
#[derive(Debug, Default)]
struct Continuity {
    /// Data messages.
    messages: u64,
    /// Jumps in the numbers, each with whether an event announced it.
    gaps: Vec<(u64, u64, bool)>,
    /// Numbers at or below one delivered before.
    duplicates: u64,
    /// Discontinuity events.
    events: u64,
}

/// Checks `items`: numbers only grow; every jump must be announced by an
/// event right before it, naming the last number before, the first after
/// and how many were missed; returns what was found.
fn continuity(items: &[Item]) -> Continuity {
    let mut found = Continuity::default();
    let (mut last, mut announced): (Option<u64>, Option<&Value>) = (None, None);
    for item in items {
        match item {
            Item::Event(event) => {
                found.events += 1;
                announced = Some(event);
            }
            Item::Number(n) => {
                found.messages += 1;
                match last {
                    Some(before) if *n <= before => found.duplicates += 1,
                    Some(before) if *n > before + 1 => {
                        if let Some(event) = announced {
                            assert_eq!(event["reason"], "gap", "{event}");
                            assert_eq!(event["last_before"], before, "{event}");
                            assert_eq!(event["first_after"], *n, "{event}");
                            assert_eq!(event["missed"], *n - before - 1, "{event}");
                        }
                        found.gaps.push((before, *n, announced.is_some()));
                    }
                    _ => assert!(announced.is_none(), "an event without a gap before {n}"),
                }
                if last.is_none_or(|before| *n > before) {
                    last = Some(*n);
                }
                announced = None;
            }
        }
    }
    found
}

fn leg_feed(name: &str, urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
    format!(
        "[[feeds]]\nname = \"{name}\"\nurls = [{}]\nsequence = \"/seq\"\n\
         heartbeat = {{ interval = \"0s\" }}\nreconnect = {{ initial = \"100ms\", max = \"500ms\" }}\n{extra}\n",
        urls.join(", ")
    )
}

fn single_feed(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[feeds]]\nname = \"{name}\"\nurl = \"{url}\"\nsequence = \"/seq\"\n\
         heartbeat = {{ interval = \"0s\" }}\nreconnect = {{ initial = \"100ms\", max = \"500ms\" }}\n{extra}\n"
    )
}

/// Runs for [`SOAK`], resetting `proxies` in turn every [`KILL_EVERY`] and
/// reading the sidecar's lines meanwhile; returns how many kills there were.
async fn soak_with_kills(sidecar: &Running, seen: &mut Seen, proxies: &[FaultProxy]) -> usize {
    let rounds = (SOAK.as_secs() / KILL_EVERY.as_secs()) as usize;
    for round in 0..rounds {
        let until = tokio::time::Instant::now() + KILL_EVERY;
        while tokio::time::Instant::now() < until {
            sidecar.drain(seen);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !proxies.is_empty() {
            proxies[round % proxies.len()].reset();
        }
    }
    rounds
}

#[actix::test]
async fn two_legs_with_one_killed_every_5s_for_2_minutes_deliver_every_number_once() {
    let upstream = BroadcastUpstream::start(TICK);
    let a = FaultProxy::start(upstream.addr, Faults::default()).await;
    let b = FaultProxy::start(upstream.addr, Faults::default()).await;
    let urls = [format!("ws://{}/a", a.addr), format!("ws://{}/b", b.addr)];
    let sidecar = Running::start("two-legs", &leg_feed("doubled", &urls, ""));
    let mut seen = Seen::default();
    // Either leg is lost in turn, 12 times each.
    // The proxies live to the end of the test: the legs reconnect through them.
    let proxies = [a, b];
    let kills = soak_with_kills(&sidecar, &mut seen, &proxies).await;
    // Delivering again after the last kill: the last number sent is then sure to arrive.
    sidecar.until_delivered(&mut seen, &["doubled"], upstream.next_number() + 25).await;
    let last = upstream.stop_broadcasting();
    sidecar.until_delivered(&mut seen, &["doubled"], last).await;
    let found = continuity(seen.items("doubled"));
    assert_eq!(found.gaps, [], "no gap");
    assert_eq!(found.duplicates, 0, "no duplicate");
    assert_eq!(found.events, 0, "no discontinuity event");
    assert!(found.messages > 20_000, "{} messages", found.messages);
    let metrics = sidecar.metrics().await;
    for leg in ["0", "1"] {
        let labels = format!("feed=\"doubled\",leg=\"{leg}\"");
        let reconnects = sample(&metrics, "feedvisor_leg_reconnects_total", &labels);
        assert!(reconnects >= Some((kills / 2 - 1) as f64), "leg {leg}: {reconnects:?}");
        let won = sample(&metrics, "feedvisor_leg_messages_won_total", &labels);
        assert!(won > Some(0.0), "leg {leg} won {won:?}");
    }
    for reason in ["gap", "sequence_reset", "reconnect", "switch"] {
        let labels = format!("feed=\"doubled\",reason=\"{reason}\"");
        assert_eq!(sample(&metrics, "feedvisor_discontinuities_total", &labels), Some(0.0));
    }
    upstream.handle.stop(false).await;
}

#[actix::test]
async fn a_single_leg_killed_every_5s_announces_every_gap_with_its_counts() {
    let upstream = BroadcastUpstream::start(TICK);
    let proxy = FaultProxy::start(upstream.addr, Faults::default()).await;
    let feed = single_feed("single", &format!("ws://{}/single", proxy.addr), "");
    let sidecar = Running::start("single-leg", &feed);
    let mut seen = Seen::default();
    let proxies = [proxy];
    let kills = soak_with_kills(&sidecar, &mut seen, &proxies).await;
    sidecar.until_delivered(&mut seen, &["single"], upstream.next_number() + 25).await;
    let last = upstream.stop_broadcasting();
    sidecar.until_delivered(&mut seen, &["single"], last).await;
    let found = continuity(seen.items("single"));
    assert!(found.gaps.iter().all(|(_, _, announced)| *announced), "{:?}", found.gaps);
    // A reconnect takes at least the 100 ms backoff: 25 numbers are missed each time.
    assert!(found.gaps.len() >= kills - 1, "{} gaps for {kills} kills", found.gaps.len());
    assert_eq!(found.events, found.gaps.len() as u64);
    assert_eq!(found.duplicates, 0);
    let metrics = sidecar.metrics().await;
    let gaps =
        sample(&metrics, "feedvisor_discontinuities_total", "feed=\"single\",reason=\"gap\"");
    assert_eq!(gaps, Some(found.events as f64));
    let missed: u64 = found.gaps.iter().map(|(before, after, _)| after - before - 1).sum();
    let counted = sample(&metrics, "feedvisor_sequence_missed_total", "feed=\"single\"");
    assert_eq!(counted, Some(missed as f64));
    upstream.handle.stop(false).await;
}

#[actix::test]
async fn rotation_every_15s_hides_the_cut_at_20s_and_without_it_every_cut_is_a_gap() {
    let upstream = BroadcastUpstream::cutting(TICK, Some(Duration::from_secs(20)));
    let feeds = single_feed("rotated", &upstream.url("rotated"), "rotate_every = \"15s\"")
        + &single_feed("plain", &upstream.url("plain"), "");
    let sidecar = Running::start("rotation", &feeds);
    let mut seen = Seen::default();
    soak_with_kills(&sidecar, &mut seen, &[]).await;
    let feeds = ["rotated", "plain"];
    sidecar.until_delivered(&mut seen, &feeds, upstream.next_number() + 25).await;
    let last = upstream.stop_broadcasting();
    sidecar.until_delivered(&mut seen, &feeds, last).await;
    let rotated = continuity(seen.items("rotated"));
    assert_eq!(rotated.gaps, [], "rotation is invisible");
    assert_eq!((rotated.duplicates, rotated.events), (0, 0));
    let plain = continuity(seen.items("plain"));
    // Cut at about 20, 40, 60, 80 and 100 s (each connection 20 s after it opened).
    assert!(plain.gaps.len() >= 5, "{:?}", plain.gaps);
    assert!(plain.gaps.iter().all(|(_, _, announced)| *announced), "{:?}", plain.gaps);
    let metrics = sidecar.metrics().await;
    let rotations = sample(&metrics, "feedvisor_rotations_total", "feed=\"rotated\"");
    assert!(rotations >= Some(7.0), "{rotations:?} rotations in 2 minutes");
    assert_eq!(sample(&metrics, "feedvisor_rotations_total", "feed=\"plain\""), None);
    upstream.handle.stop(false).await;
}

#[actix::test]
async fn the_faster_leg_wins_nearly_everything_and_the_slower_one_lags_by_about_50ms() {
    let upstream = BroadcastUpstream::start(Duration::from_millis(2));
    let slow = FaultProxy::start(
        upstream.addr,
        Faults::latency(Duration::from_millis(50), Duration::ZERO),
    )
    .await;
    let urls = [upstream.url("fast"), format!("ws://{}/slow", slow.addr)];
    let sidecar = Running::start("lag", &leg_feed("lagging", &urls, ""));
    let mut seen = Seen::default();
    // Both legs deliver for a while.
    let start = upstream.next_number();
    sidecar.until_delivered(&mut seen, &["lagging"], start + 1500).await;

    // Rotations through the admin API: a leg, every leg, and refusals.
    let rotate = |query: &str| {
        let path = format!("/feeds/lagging/rotate{query}");
        async move { http_post(sidecar.admin, &path, None, "").await.0 }
    };
    assert_eq!(rotate("?leg=1").await, 202);
    assert_eq!(rotate("").await, 202);
    assert_eq!(rotate("?leg=2").await, 404, "two legs, 0 and 1");
    assert_eq!(rotate("?leg=first").await, 400);
    let (status, _) = http_post(sidecar.admin, "/feeds/nothing/rotate", None, "").await;
    assert_eq!(status, 404);
    let more = upstream.next_number() + 1000;
    sidecar.until_delivered(&mut seen, &["lagging"], more).await;
    let last = upstream.stop_broadcasting();
    sidecar.until_delivered(&mut seen, &["lagging"], last).await;
    let found = continuity(seen.items("lagging"));
    assert_eq!((found.gaps.len(), found.duplicates, found.events), (0, 0, 0));

    let metrics = sidecar.metrics().await;
    let labels = |leg: &str| format!("feed=\"lagging\",leg=\"{leg}\"");
    let won = |leg: &str| sample(&metrics, "feedvisor_leg_messages_won_total", &labels(leg));
    let (fast, slow_won) = (won("0").expect("leg 0"), won("1").expect("leg 1"));
    assert!(fast >= 0.95 * (fast + slow_won), "the fast leg won {fast}, the slow one {slow_won}");
    let lag = |suffix: &str| {
        sample(&metrics, &format!("feedvisor_leg_lag_seconds_{suffix}"), &labels("1"))
    };
    let (sum, count) = (lag("sum").expect("lag sum"), lag("count").expect("lag count"));
    let mean = sum / count;
    assert!((0.025..0.5).contains(&mean), "leg 1 lags {mean} s on average over {count} copies");
    assert_eq!(sample(&metrics, "feedvisor_rotations_total", "feed=\"lagging\""), Some(2.0));

    let (status, body) = http_get(sidecar.admin, "/feeds/lagging").await;
    assert_eq!(status, 200);
    let status: Value = serde_json::from_str(&body).expect("JSON");
    let legs = status["legs"].as_array().expect("legs");
    assert_eq!(legs.len(), 2, "{status}");
    assert_eq!(legs[1]["url"], format!("ws://{}/slow", slow.addr));
    assert_eq!(legs[0]["state"], "open");
    upstream.handle.stop(false).await;
}

/// Sends `method` `path` with a JSON body to the admin server; returns the status.
async fn send_json(admin: SocketAddr, method: awc::http::Method, path: &str, body: &Value) -> u16 {
    let request = awc::Client::default().request(method, format!("http://{admin}{path}"));
    let response = tokio::time::timeout(DEADLINE, request.send_json(body))
        .await
        .expect("answer in time")
        .expect("sent");
    response.status().as_u16()
}

/// Waits until the upstream's open connections are those of `paths`, in any order.
async fn until_open(upstream: &BroadcastUpstream, paths: &[&str]) {
    let mut want: Vec<String> = paths.iter().map(|path| (*path).to_owned()).collect();
    want.sort();
    crate::support::eventually(DEADLINE, "the upstream's connections", || {
        let mut open = upstream.open.lock().expect("open paths").clone();
        open.sort();
        let done = open == want;
        async move { done.then_some(()) }
    })
    .await;
}

#[actix::test]
async fn a_feed_changed_to_legs_and_back_then_removed_leaves_no_connection_or_series_behind() {
    let upstream = BroadcastUpstream::start(TICK);
    let sidecar = Running::start("change", &single_feed("changing", &upstream.url("one"), ""));
    let mut seen = Seen::default();
    sidecar.until_delivered(&mut seen, &["changing"], upstream.next_number() + 50).await;
    let legs = serde_json::json!({
        "urls": [upstream.url("a"), upstream.url("b")],
        "sequence": "/seq",
        "heartbeat": { "interval": "0s" },
    });
    let put = awc::http::Method::PUT;
    assert_eq!(send_json(sidecar.admin, put.clone(), "/feeds/changing", &legs).await, 200);
    until_open(&upstream, &["/a", "/b"]).await;
    sidecar.until_delivered(&mut seen, &["changing"], upstream.next_number() + 50).await;
    let (_, body) = http_get(sidecar.admin, "/feeds/changing").await;
    let status: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status["legs"].as_array().map(Vec::len), Some(2), "{status}");
    let metrics = sidecar.metrics().await;
    assert!(metrics.contains("feedvisor_leg_messages_won_total{feed=\"changing\""));

    let single = serde_json::json!({
        "url": upstream.url("single"),
        "sequence": "/seq",
        "heartbeat": { "interval": "0s" },
    });
    assert_eq!(send_json(sidecar.admin, put, "/feeds/changing", &single).await, 200);
    until_open(&upstream, &["/single"]).await;
    sidecar.until_delivered(&mut seen, &["changing"], upstream.next_number() + 50).await;
    let (_, body) = http_get(sidecar.admin, "/feeds/changing").await;
    assert!(!body.contains("\"legs\""), "{body}");

    let delete = awc::Client::default().delete(format!("http://{}/feeds/changing", sidecar.admin));
    let answer =
        tokio::time::timeout(DEADLINE, delete.send()).await.expect("in time").expect("sent");
    assert_eq!(answer.status().as_u16(), 200);
    until_open(&upstream, &[]).await;
    let metrics = sidecar.metrics().await;
    let left: Vec<&str> =
        metrics.lines().filter(|line| line.contains("feed=\"changing\"")).collect();
    assert!(left.is_empty(), "{left:?}");
    upstream.handle.stop(false).await;
}

#[actix::test]
async fn a_leg_that_cannot_connect_leaves_the_feed_open_and_ready_and_says_why() {
    let upstream = BroadcastUpstream::start(TICK);
    let refused = crate::support::refused_addr();
    let urls = [upstream.url("up"), format!("ws://{refused}/down")];
    let sidecar = Running::start("refused-leg", &leg_feed("half", &urls, ""));
    let mut seen = Seen::default();
    sidecar.until_delivered(&mut seen, &["half"], upstream.next_number() + 50).await;
    let (status, _) = http_get(sidecar.admin, "/readyz").await;
    assert_eq!(status, 200, "one open leg is enough");
    let (_, body) = http_get(sidecar.admin, "/feeds/half").await;
    let feed: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(feed["state"], "open", "{feed}");
    let down = &feed["legs"][1];
    assert_ne!(down["state"], "open", "{feed}");
    assert!(down["last_error"].as_str().is_some_and(|e| e.contains("refused")), "{feed}");
    let metrics = sidecar.metrics().await;
    assert!(metrics.contains("feedvisor_feed_up{feed=\"half\"} 1"), "{metrics}");
    assert!(metrics.contains("feedvisor_feed_state{feed=\"half\",state=\"open\"} 1"));
    assert_eq!(continuity(seen.items("half")).gaps, []);
    upstream.handle.stop(false).await;
}
