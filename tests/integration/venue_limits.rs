//! Venue limits through the `feedvisor` binary, from TOML files, against an
//! upstream that enforces what venues enforce (`feedvisor_test_support::venue`):
//! `outbound_rate` keeps a 1000-topic subscription and its resubscribes
//! under a message rate the venue closes with 1008 above, and `[[hosts]]`
//! keeps 200 feeds under a connect budget the venue answers 429 above, and
//! holds every feed to a host that answered 429 with `Retry-After`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use feedvisor_test_support::venue::{VenueRules, VenueServer};
use feedvisor_test_support::{eventually, wait_until};
use serde_json::Value;

use crate::support::{http_get, http_post, refused_addr, sample, ChildGuard};

/// Topics in the subscription, and per subscribe message.
const TOPICS: usize = 1000;
const TOPICS_PER_MESSAGE: usize = 50;

/// The feed's `subscribe` table: every topic, `TOPICS_PER_MESSAGE` a message,
/// generated after on_open (and paced with it) on every connect, as TOML.
fn subscriptions() -> String {
    let topics: Vec<String> = (0..TOPICS).map(|index| format!("\"topic-{index:04}\"")).collect();
    format!(
        "subscribe = {{ template = '{{\"op\":\"subscribe\",\"args\":{{{{topics}}}}}}', topics = [{}], per_message = {TOPICS_PER_MESSAGE} }}\n",
        topics.join(", ")
    )
}

/// A venue that closes a connection with 1008 above 5 messages per rolling second.
fn strict_venue() -> VenueServer {
    VenueServer::start(VenueRules {
        messages: Some((5, Duration::from_secs(1))),
        ..VenueRules::default()
    })
}

/// `feedvisor run` on `text` (written to a file of this run); its admin address.
fn run(name: &str, text: &str) -> (ChildGuard, Vec<std::sync::mpsc::Receiver<String>>) {
    let dir = std::env::temp_dir().join(format!("feedvisor-venue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("config written");
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_feedvisor"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn"),
    );
    // Drained so that the child never blocks on a full pipe.
    let lines = vec![child.stdout_lines(), child.stderr_lines()];
    (child, lines)
}

async fn json(admin: SocketAddr, path: &str) -> Value {
    let (status, body) = http_get(admin, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// `path` as JSON, or `None` while the admin server does not answer yet.
async fn try_json(admin: SocketAddr, path: &str) -> Option<Value> {
    let request = awc::Client::default().get(format!("http://{admin}{path}")).send();
    let mut answer = tokio::time::timeout(Duration::from_secs(10), request).await.ok()?.ok()?;
    let body = answer.body().limit(16 << 20).await.ok()?;
    (answer.status().as_u16() == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
}

async fn metrics(admin: SocketAddr) -> String {
    http_get(admin, "/metrics").await.1
}

/// Waits for the venue's `count`-th accepted handshake and for its
/// connection to subscribe at least `topics` topics.
async fn until_subscribed(venue: &VenueServer, count: usize, topics: usize) {
    let what = format!("connection {count} subscribed to {topics} topics");
    wait_until(Duration::from_secs(60), &what, || {
        let stats = venue.stats();
        stats.topics.len() == count && stats.topics[count - 1] >= topics
    })
    .await;
}

#[actix::test]
async fn a_paced_1000_topic_subscription_and_10_forced_reconnects_cause_no_policy_close() {
    let venue = strict_venue();
    let admin = refused_addr();
    // The venue measures arrival times, which scheduling and the network can
    // bring closer than they were sent: the rate keeps a tenth in hand.
    let text = format!(
        "[http]\nlisten = \"{admin}\"\n\n[[feeds]]\nname = \"venue\"\nurl = \"ws://{}/stream\"\n\
         outbound_rate = {{ messages = 5, per = \"1100ms\" }}\n\
         reconnect = {{ policy = \"fixed\", initial = \"100ms\" }}\n{}",
        venue.addr,
        subscriptions()
    );
    let (_sidecar, _lines) = run("paced", &text);
    let started = Instant::now();
    until_subscribed(&venue, 1, TOPICS / 2).await;
    // Held messages show in /feeds and in the gauge while the first burst goes out.
    let feed = try_json(admin, "/feeds/venue").await.expect("the feed's status");
    assert_eq!(feed["pacing"]["messages"], 5, "{feed}");
    assert_eq!(feed["pacing"]["per"], "1s 100ms", "{feed}");
    for reconnect in 1..=10 {
        let (status, body) = http_post(admin, "/feeds/venue/reconnect", None, "").await;
        assert_eq!(status, 202, "{body}");
        // Half the topics, then the next reconnect: resubscribes start while the window is full.
        until_subscribed(&venue, reconnect + 1, TOPICS / 2).await;
    }
    until_subscribed(&venue, 11, TOPICS).await;
    let stats = venue.stats();
    assert_eq!(stats.policy_closes, 0, "the venue closed a connection for its message rate");
    assert_eq!(stats.handshakes.len(), 11);
    assert_eq!(stats.topics[10], TOPICS);
    let rendered = metrics(admin).await;
    let paced = sample(&rendered, "feedvisor_outbound_paced_total", "feed=\"venue\"");
    assert!(paced.is_some_and(|paced| paced > 100.0), "{paced:?}");
    eprintln!(
        "paced: {} messages over 11 connections in {:?}, 0 policy closes",
        stats.messages,
        started.elapsed()
    );
}

#[actix::test]
async fn without_outbound_rate_the_same_venue_closes_the_subscription_with_1008() {
    let venue = strict_venue();
    let admin = refused_addr();
    let text = format!(
        "[http]\nlisten = \"{admin}\"\n\n[[feeds]]\nname = \"venue\"\nurl = \"ws://{}/stream\"\n{}",
        venue.addr,
        subscriptions()
    );
    let (_sidecar, _lines) = run("unpaced", &text);
    wait_until(Duration::from_secs(30), "a policy close", || venue.stats().policy_closes > 0).await;
    let feed = eventually(Duration::from_secs(10), "the close in /feeds", || async {
        let feed = try_json(admin, "/feeds/venue").await?;
        (feed["last_close"]["code"] == 1008).then_some(feed)
    })
    .await;
    assert!(feed.get("pacing").is_none(), "{feed}");
}

/// 200 feeds to one venue that allows 20 handshakes per rolling 10 s.
const FEEDS: usize = 200;
const CONNECTS: usize = 20;
const WINDOW: Duration = Duration::from_secs(10);

#[actix::test]
async fn two_hundred_feeds_keep_within_the_hosts_connect_budget_and_come_back_within_it() {
    let venue = VenueServer::start(VenueRules {
        connects: Some((CONNECTS, WINDOW)),
        ..VenueRules::default()
    });
    let admin = refused_addr();
    let host = venue.addr.to_string();
    // The window keeps half a second in hand: the venue counts arrivals.
    let mut text = format!(
        "[http]\nlisten = \"{admin}\"\n\n[defaults]\nreconnect = {{ policy = \"fixed\", initial = \"100ms\" }}\n\n\
         [[hosts]]\nmatch = \"{host}\"\nconnects = {CONNECTS}\nper = \"10500ms\"\n"
    );
    for index in 0..FEEDS {
        text.push_str(&format!(
            "\n[[feeds]]\nname = \"leg-{index:03}\"\nurl = \"ws://{host}/leg/{index}\"\n"
        ));
    }
    let (_sidecar, _lines) = run("budget", &text);
    let started = Instant::now();

    // While the first wave is open and the rest wait, /hosts, /feeds and the gauge say so.
    let hosts = eventually(Duration::from_secs(30), "feeds waiting in /hosts", || async {
        let hosts = try_json(admin, "/hosts").await?;
        (hosts["hosts"][0]["waiting"].as_array()?.len() >= FEEDS - CONNECTS).then_some(hosts)
    })
    .await;
    assert_eq!(hosts["hosts"][0]["match"], host.as_str());
    assert_eq!(hosts["hosts"][0]["connect_budget"]["connects"], CONNECTS);
    let feeds = json(admin, "/feeds").await;
    let waiting = feeds.as_array().expect("a list").iter().filter(|feed| {
        feed["state"] == "backing_off" && feed["host_wait"]["reason"] == "connect_budget"
    });
    assert!(waiting.count() >= FEEDS - 2 * CONNECTS, "{feeds}");
    let labels = format!("host=\"{host}\"");
    let gauge = sample(&metrics(admin).await, "feedvisor_host_connect_waiting", &labels);
    assert!(gauge.is_some_and(|waiting| waiting >= (FEEDS - 2 * CONNECTS) as f64), "{gauge:?}");

    let deadline = Duration::from_secs(150);
    wait_until(deadline, "every feed open", || venue.stats().open == FEEDS).await;
    let cold_start = started.elapsed();
    assert_eq!(venue.stats().refused_for_rate, 0, "the venue refused handshakes for rate");

    // Once the window is clear, the network goes: every feed at once.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let dropped = Instant::now();
    venue.drop_all();
    wait_until(deadline, "every feed back", || venue.stats().handshakes.len() == 2 * FEEDS).await;
    let stats = venue.stats();
    let back = stats.handshakes.last().map(|last| last.duration_since(dropped));
    let back = back.expect("handshakes");
    assert_eq!(stats.refused_for_rate, 0, "the venue refused handshakes for rate");
    assert_eq!(stats.requests.len(), 2 * FEEDS, "every attempt was a handshake accepted");
    // The venue's own budget needs (200 / 20 - 1) windows to admit 200; 10% more at most.
    let budget_time = WINDOW * (FEEDS / CONNECTS - 1) as u32;
    let waves: Vec<String> = stats.handshakes[FEEDS..]
        .chunks(CONNECTS)
        .map(|wave| {
            let first = wave[0].duration_since(dropped).as_secs_f64();
            let last = wave[wave.len() - 1].duration_since(dropped).as_secs_f64();
            format!("{first:.2}-{last:.2}")
        })
        .collect();
    assert!(
        back <= budget_time.mul_f64(1.1),
        "all back after {back:?}, budget {budget_time:?}; waves (s after the drop): {waves:?}"
    );
    let rendered = metrics(admin).await;
    let connects = sample(&rendered, "feedvisor_host_connects_total", &labels);
    assert_eq!(connects, Some((2 * FEEDS) as f64));
    eprintln!("200 feeds: cold start {cold_start:?}, all back {back:?} after the drop (budget {budget_time:?})");
}

#[actix::test]
async fn a_429_with_retry_after_5_holds_every_feed_to_the_host_for_5_seconds() {
    let venue = VenueServer::start(VenueRules::default());
    let admin = refused_addr();
    let host = venue.addr.to_string();
    // One connect a second: without the cool-down, the feeds refused or
    // waiting would be back one a second after the refusal.
    let mut text = format!(
        "[http]\nlisten = \"{admin}\"\n\n[defaults]\nreconnect = {{ policy = \"fixed\", initial = \"100ms\" }}\n\n\
         [[hosts]]\nmatch = \"{host}\"\nconnects = 1\nper = \"1s\"\n"
    );
    for index in 0..5 {
        text.push_str(&format!(
            "\n[[feeds]]\nname = \"held-{index}\"\nurl = \"ws://{host}/held/{index}\"\n"
        ));
    }
    let (_sidecar, _lines) = run("cooldown", &text);
    wait_until(Duration::from_secs(30), "every feed open", || venue.stats().open == 5).await;
    venue.refuse_next(429, Some(5));
    venue.drop_all();
    let refused_at = eventually(Duration::from_secs(10), "the 429", || async {
        venue.stats().refused_on_request.first().copied()
    })
    .await;
    // During the cool-down: /hosts and every waiting feed say so.
    let hosts = eventually(Duration::from_secs(5), "the cool-down in /hosts", || async {
        let hosts = try_json(admin, "/hosts").await?;
        hosts["hosts"][0]["cooldown"].is_object().then_some(hosts)
    })
    .await;
    assert_eq!(hosts["hosts"][0]["cooldown"]["reason"], "status_429", "{hosts}");
    let feeds = json(admin, "/feeds").await;
    let cooling = feeds
        .as_array()
        .expect("a list")
        .iter()
        .filter(|feed| feed["host_wait"]["reason"] == "cooldown");
    assert!(cooling.count() >= 3, "{feeds}");
    let rendered = metrics(admin).await;
    let labels = format!("host=\"{host}\",reason=\"status_429\"");
    assert_eq!(sample(&rendered, "feedvisor_host_cooldowns_total", &labels), Some(1.0));
    let remaining =
        sample(&rendered, "feedvisor_host_cooldown_remaining_seconds", &format!("host=\"{host}\""));
    assert!(remaining.is_some_and(|left| left > 0.0 && left <= 5.0), "{remaining:?}");

    wait_until(Duration::from_secs(30), "every feed back", || venue.stats().open == 5).await;
    let stats = venue.stats();
    let after: Vec<Duration> = stats
        .requests
        .iter()
        .filter(|at| **at > refused_at)
        .map(|at| at.duration_since(refused_at))
        .collect();
    assert_eq!(after.len(), 5, "{after:?}");
    assert!(
        after.iter().all(|wait| *wait >= Duration::from_secs(5)),
        "attempts during the cool-down: {after:?}"
    );
}
