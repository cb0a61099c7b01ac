//! Generated subscriptions through the `feedvisor` binary, against a venue
//! of our own that enforces what venues do: it acknowledges or rejects each
//! subscribe message by its id, never answers some topics, feeds some topics
//! and lets others go quiet, and closes connections on demand.
//! `max_topics_per_connection` spreads 1000 topics over 4 connections, and a
//! shard the venue drops resubscribes only its own topics; a rejected topic
//! is shown with its reason and not sent again over 5 reconnects; a topic
//! never answered is `timed_out`, one that goes quiet is stale.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use feedvisor_test_support::websocket::close_payload;

use crate::support::{
    encode_frame, eventually, http_get, http_post, opcode, sample, ChildGuard, RawServer, RawWs,
    DEADLINE, FIN,
};
use crate::tls::{admin_addr, feedvisor};

/// What the venue does with topics.
#[derive(Default, Clone)]
struct VenueRules {
    /// Topics refused, with the reason given.
    reject: HashMap<String, String>,
    /// Topics whose subscribe message is never answered.
    never_answer: HashSet<String>,
    /// Send each subscribed topic a message every 50 ms.
    ticks: bool,
    /// Topics that get one message and then no more.
    quiet: HashSet<String>,
    /// Greet every connection with a message of its own as soon as it opens.
    greeting: bool,
}

/// What the venue saw, per connection.
#[derive(Default)]
struct VenueLog {
    /// The topics each connection (by accept order) subscribed to, in order.
    topics: BTreeMap<usize, Vec<String>>,
    /// Connections still open.
    open: HashSet<usize>,
    /// Closes asked for by the test, by connection.
    closers: HashMap<usize, Rc<Notify>>,
}

/// A WebSocket venue on a free loopback port.
struct Venue {
    server: RawServer,
    log: Rc<RefCell<VenueLog>>,
}

impl Venue {
    fn start(rules: VenueRules) -> impl std::future::Future<Output = Venue> {
        let log = Rc::new(RefCell::new(VenueLog::default()));
        let rules = Rc::new(rules);
        let shared = log.clone();
        async move {
            let server = RawServer::start(move |index, socket| {
                let (log, rules) = (shared.clone(), rules.clone());
                async move {
                    let Ok(ws) = RawWs::accept(socket).await else { return };
                    serve(index, ws, &log, &rules).await;
                    log.borrow_mut().open.remove(&index);
                }
            })
            .await;
            Venue { server, log }
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Closes connection `index` from the venue's side (1001).
    fn close(&self, index: usize) {
        if let Some(notify) = self.log.borrow().closers.get(&index) {
            notify.notify_one();
        }
    }

    fn connections(&self) -> usize {
        self.server.accepted()
    }

    fn topics_of(&self, index: usize) -> Vec<String> {
        self.log.borrow().topics.get(&index).cloned().unwrap_or_default()
    }

    /// How many times each topic was subscribed to, over every connection.
    fn sends(&self) -> HashMap<String, usize> {
        let mut sends = HashMap::new();
        for topics in self.log.borrow().topics.values() {
            for topic in topics {
                *sends.entry(topic.clone()).or_insert(0) += 1;
            }
        }
        sends
    }

    fn open(&self) -> HashSet<usize> {
        self.log.borrow().open.clone()
    }
}

/// Answers subscribe messages by the rules, ticks, and closes when told to.
async fn serve(index: usize, mut ws: RawWs, log: &Rc<RefCell<VenueLog>>, rules: &VenueRules) {
    let closer = Rc::new(Notify::new());
    {
        let mut log = log.borrow_mut();
        log.closers.insert(index, closer.clone());
        log.open.insert(index);
    }
    if rules.greeting && ws.send_text(r#"{"event":"welcome"}"#).await.is_err() {
        return;
    }
    let mut fed: Vec<String> = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            frame = ws.read_frame() => {
                let Ok(Some(frame)) = frame else { return };
                match frame.opcode {
                    opcode::TEXT => {
                        let Ok(request) = serde_json::from_slice::<Value>(&frame.payload) else {
                            continue;
                        };
                        for reply in answer(index, &request, log, rules, &mut fed) {
                            if ws.send_text(&reply).await.is_err() {
                                return;
                            }
                        }
                    }
                    opcode::CLOSE => {
                        let _ = ws.write_raw(&close_payload_frame(1000)).await;
                        return;
                    }
                    _ => {}
                }
            }
            () = closer.notified() => {
                let _ = ws.write_raw(&close_payload_frame(1001)).await;
                return;
            }
            _ = ticks.tick(), if rules.ticks => {
                for topic in &fed {
                    let data = serde_json::json!({ "topic": topic, "price": 1 }).to_string();
                    if ws.send_text(&data).await.is_err() {
                        return;
                    }
                }
                fed.retain(|topic| !rules.quiet.contains(topic));
            }
        }
    }
}

/// A close frame with `code` and no reason.
fn close_payload_frame(code: u16) -> Vec<u8> {
    encode_frame(FIN | opcode::CLOSE, &close_payload(code, ""))
}

/// The venue's replies to one subscribe message, logging its topics.
fn answer(
    index: usize,
    request: &Value,
    log: &Rc<RefCell<VenueLog>>,
    rules: &VenueRules,
    fed: &mut Vec<String>,
) -> Vec<String> {
    if request["op"] != "subscribe" {
        return Vec::new();
    }
    let id = request["id"].clone();
    let topics: Vec<String> = request["args"]
        .as_array()
        .map(|args| args.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    log.borrow_mut().topics.entry(index).or_default().extend(topics.iter().cloned());
    if let Some(reason) = topics.iter().find_map(|topic| rules.reject.get(topic)) {
        return vec![serde_json::json!({ "id": id, "error": reason }).to_string()];
    }
    if topics.iter().any(|topic| rules.never_answer.contains(topic)) {
        return Vec::new();
    }
    fed.extend(topics);
    vec![serde_json::json!({ "id": id, "result": "ok" }).to_string()]
}

/// `feedvisor run` with one feed `venue` at `venue`, the feed's extra lines appended.
fn run_sidecar(venue: SocketAddr, feed_lines: &str) -> (ChildGuard, SocketAddr) {
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[[feeds]]\nname = \"venue\"\n\
         url = \"ws://{venue}/\"\ntopic = \"/topic\"\n\
         reconnect = {{ initial = \"50ms\", max = \"200ms\" }}\n{feed_lines}"
    );
    let dir = std::env::temp_dir().join(format!("feedvisor-subscriptions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}.toml", venue.port()));
    std::fs::write(&path, text).expect("config written");
    let mut sidecar = ChildGuard::spawn(feedvisor("info").arg("run").arg("--config").arg(&path));
    let stderr = sidecar.stderr_lines();
    let admin = admin_addr(&stderr);
    // Keep reading stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || while stderr.recv().is_ok() {});
    (sidecar, admin)
}

/// `/feeds/venue` once `done` holds for it, within the deadline.
async fn venue_status_until(admin: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(DEADLINE, what, || async {
        let (status, body) = http_get(admin, "/feeds/venue").await;
        let feed: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && done(&feed)).then_some(feed)
    })
    .await
}

/// A subscribe template with ids, and replies matched by `/id`, errors at `/error`.
fn subscribe_line(topics: &[String], per_message: usize, extra: &str) -> String {
    let topics = serde_json::to_string(topics).expect("topics as JSON");
    format!(
        "subscribe = {{ template = '{{\"op\":\"subscribe\",\"id\":{{{{id}}}},\"args\":{{{{topics}}}}}}', \
         topics = {topics}, per_message = {per_message}, \
         ack = {{ id = \"/id\", error = \"/error\", success = \"/result\", success_value = \"ok\", timeout = \"2s\" }}{extra} }}\n"
    )
}

/// A venue that acknowledges everything, and the sidecar on it with `topics`
/// at most `max` a connection, `per_message` a subscribe message.
async fn sharded(
    topics: &[String],
    max: usize,
    per_message: usize,
) -> (Venue, ChildGuard, SocketAddr) {
    let venue = Venue::start(VenueRules::default()).await;
    let lines =
        format!("max_topics_per_connection = {max}\n{}", subscribe_line(topics, per_message, ""));
    let (sidecar, admin) = run_sidecar(venue.addr(), &lines);
    (venue, sidecar, admin)
}

fn count(feed: &Value, state: &str) -> u64 {
    feed["subscriptions"][state].as_u64().unwrap_or(0)
}

fn topic<'a>(feed: &'a Value, name: &str) -> &'a Value {
    feed["subscriptions"]["by_topic"]
        .as_array()
        .and_then(|topics| topics.iter().find(|topic| topic["topic"] == name))
        .unwrap_or_else(|| panic!("no topic {name} in {feed:#}"))
}

#[actix_rt::test]
async fn a_thousand_topics_at_most_300_a_connection_take_4_and_a_dropped_shard_resubscribes_only_its_own(
) {
    let topics: Vec<String> = (0..1000).map(|n| format!("T{n:04}")).collect();
    let (venue, _sidecar, admin) = sharded(&topics, 300, 50).await;

    let feed = venue_status_until(admin, "1000 topics active on 4 shards", |feed| {
        count(feed, "active") == 1000
    })
    .await;
    let shards = feed["shards"].as_array().expect("shards listed");
    assert_eq!(shards.len(), 4, "{feed:#}");
    for shard in shards {
        assert_eq!(shard["state"], "open", "{shard}");
        assert_eq!(shard["topics"], 250, "balanced: {shard}");
    }
    assert_eq!(venue.connections(), 4);
    let mut all = HashSet::new();
    for index in 0..4 {
        let mine = venue.topics_of(index);
        assert!(mine.len() <= 300, "connection {index} took {} topics", mine.len());
        all.extend(mine);
    }
    assert_eq!(all.len(), 1000, "every topic subscribed");
    assert!(venue.sends().values().all(|sends| *sends == 1), "each topic sent once");

    let (_, metrics) = http_get(admin, "/metrics").await;
    let active = r#"feed="venue",state="active""#;
    assert_eq!(sample(&metrics, "feedvisor_subscription_topics", active), Some(1000.0));
    assert_eq!(sample(&metrics, "feedvisor_feed_shards", r#"feed="venue""#), Some(4.0));
    for shard in 0..4 {
        let labels = format!(r#"feed="venue",shard="{shard}""#);
        assert_eq!(sample(&metrics, "feedvisor_shard_up", &labels), Some(1.0), "{labels}");
    }

    // The venue drops the connection that holds T0600: only it comes back,
    // with its own topics, and the other three are left alone.
    let dropped =
        (0..4).find(|&i| venue.topics_of(i).contains(&"T0600".to_owned())).expect("T0600");
    let before = venue.topics_of(dropped);
    venue.close(dropped);
    let feed = venue_status_until(admin, "the dropped shard back, every topic active", |feed| {
        count(feed, "active") == 1000
            && feed["shards"].as_array().is_some_and(|shards| {
                shards.iter().map(|s| s["reconnects"].as_u64().unwrap_or(0)).sum::<u64>() == 1
            })
    })
    .await;
    assert_eq!(venue.connections(), 5, "one reconnect only");
    let mut again = venue.topics_of(4);
    again.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(
        again, expected,
        "the new connection resubscribed exactly the dropped shard's topics"
    );
    let sends = venue.sends();
    for topic in &topics {
        let want = if before.contains(topic) { 2 } else { 1 };
        assert_eq!(sends[topic], want, "{topic}");
    }
    let open = venue.open();
    for index in (0..4).filter(|&i| i != dropped) {
        assert!(open.contains(&index), "connection {index} was disturbed");
    }
    let reconnected: Vec<&Value> =
        feed["shards"].as_array().into_iter().flatten().filter(|s| s["reconnects"] == 1).collect();
    assert_eq!(reconnected.len(), 1, "{feed:#}");
}

#[actix_rt::test]
async fn a_rejected_topic_shows_its_reason_and_is_not_sent_again_over_5_reconnects() {
    let rules = VenueRules {
        reject: HashMap::from([("S13".to_owned(), "unknown symbol S13".to_owned())]),
        ..VenueRules::default()
    };
    let venue = Venue::start(rules).await;
    let topics: Vec<String> = (0..50).map(|n| format!("S{n:02}")).collect();
    let (_sidecar, admin) = run_sidecar(venue.addr(), &subscribe_line(&topics, 1, ""));

    let settled = |feed: &Value| count(feed, "active") == 49 && count(feed, "rejected") == 1;
    let feed = venue_status_until(admin, "49 active and 1 rejected", settled).await;
    let rejected = topic(&feed, "S13");
    assert_eq!(rejected["state"], "rejected", "{rejected}");
    assert_eq!(rejected["reason"], "unknown symbol S13", "{rejected}");
    assert_eq!(count(&feed, "pending") + count(&feed, "timed_out"), 0, "{feed:#}");

    for round in 1..=5 {
        let current = venue.connections() - 1;
        venue.close(current);
        venue_status_until(admin, &format!("reconnect {round} settled"), |feed| {
            feed["reconnects"] == round && settled(feed)
        })
        .await;
    }
    let sends = venue.sends();
    assert_eq!(sends["S13"], 1, "the rejected topic was sent once");
    for topic in topics.iter().filter(|t| *t != "S13") {
        assert_eq!(sends[topic], 6, "{topic} is subscribed on every connection");
    }
    let (_, metrics) = http_get(admin, "/metrics").await;
    for (state, want) in [("active", 49.0), ("rejected", 1.0), ("pending", 0.0), ("timed_out", 0.0)]
    {
        let labels = format!(r#"feed="venue",state="{state}""#);
        assert_eq!(
            sample(&metrics, "feedvisor_subscription_topics", &labels),
            Some(want),
            "{state}"
        );
    }
}

#[actix_rt::test]
async fn a_topic_never_answered_times_out_and_one_that_goes_quiet_is_stale() {
    let rules = VenueRules {
        never_answer: HashSet::from(["SILENT".to_owned()]),
        quiet: HashSet::from(["QUIET".to_owned()]),
        ticks: true,
        ..VenueRules::default()
    };
    let venue = Venue::start(rules).await;
    let topics: Vec<String> =
        ["BUSY", "QUIET", "SILENT", "LIVELY"].iter().map(|t| (*t).to_owned()).collect();
    let extra = ", stale_after = \"2s\"";
    let (_sidecar, admin) = run_sidecar(venue.addr(), &subscribe_line(&topics, 1, extra));

    let feed = venue_status_until(admin, "SILENT timed out and QUIET stale", |feed| {
        count(feed, "timed_out") == 1 && count(feed, "stale") == 1
    })
    .await;
    assert_eq!(topic(&feed, "SILENT")["state"], "timed_out", "{feed:#}");
    assert_eq!(topic(&feed, "QUIET")["state"], "active", "{feed:#}");
    assert_eq!(topic(&feed, "QUIET")["stale"], true, "{feed:#}");
    assert_eq!(count(&feed, "active"), 3, "{feed:#}");
    let (_, metrics) = http_get(admin, "/metrics").await;
    let labels = r#"feed="venue",state="timed_out""#;
    assert_eq!(sample(&metrics, "feedvisor_subscription_topics", labels), Some(1.0));
    let stale = sample(&metrics, "feedvisor_subscription_stale_topics", r#"feed="venue""#);
    assert_eq!(stale, Some(1.0), "{metrics}");
    let timeouts = sample(&metrics, "feedvisor_subscription_timeouts_total", r#"feed="venue""#);
    assert_eq!(timeouts, Some(1.0));
}

/// Checked by `feedvisor check`: each bad setting refused with its path and what to do.
#[test]
fn bad_subscription_settings_are_refused_by_check_with_their_paths() {
    let cases = [
        (
            "subscribe = { template = '{\"op\":\"subscribe\"}', topics = [\"A\"] }\n",
            "feeds[0] (venue).subscribe.template",
            "has no {{topics}}",
        ),
        (
            "subscribe = { template = '{{topics}}', topics = [\"A\"], per_message = 0 }\n",
            "feeds[0] (venue).subscribe.per_message",
            "must be at least 1",
        ),
        (
            "max_topics_per_connection = 300\n",
            "feeds[0] (venue).max_topics_per_connection",
            "needs subscribe.topics",
        ),
    ];
    for (line, path, words) in cases {
        let text = format!(
            "[[feeds]]\nname = \"venue\"\nurl = \"ws://127.0.0.1:1/\"\ntopic = \"/topic\"\n{line}"
        );
        let dir =
            std::env::temp_dir().join(format!("feedvisor-subscriptions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path_of_file = dir.join("bad.toml");
        std::fs::write(&path_of_file, text).expect("config written");
        let output = feedvisor("warn").arg("check").arg(&path_of_file).output().expect("ran");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{line} was accepted");
        assert!(stderr.contains(path) && stderr.contains(words), "{line}: {stderr}");
    }
}

/// `PUT` or `DELETE` on the admin server; returns the status.
async fn change(admin: SocketAddr, method: awc::http::Method, body: Option<Value>) -> u16 {
    let client = awc::Client::default();
    let request = client.request(method, format!("http://{admin}/feeds/venue"));
    let sent = match body {
        Some(body) => tokio::time::timeout(DEADLINE, request.send_json(&body)).await,
        None => tokio::time::timeout(DEADLINE, request.send()).await,
    };
    sent.expect("answer in time").expect("request sent").status().as_u16()
}

#[actix_rt::test]
async fn a_replaced_sharded_feed_closes_its_old_shards_and_a_removed_one_leaves_no_connection_or_series(
) {
    let topics: Vec<String> = (0..6).map(|n| format!("R{n}")).collect();
    let (venue, _sidecar, admin) = sharded(&topics, 2, 2).await;
    venue_status_until(admin, "3 shards active", |feed| count(feed, "active") == 6).await;
    assert_eq!(venue.connections(), 3);

    // A reconnect asked for over HTTP reconnects every shard, each with its topics.
    let (status, _) = http_post(admin, "/feeds/venue/reconnect", None, "").await;
    assert_eq!(status, 202);
    venue_status_until(admin, "every shard back", |feed| {
        count(feed, "active") == 6 && feed["reconnects"] == 3
    })
    .await;
    assert_eq!(venue.connections(), 6);
    assert!(venue.sends().values().all(|sends| *sends == 2), "each topic sent once a connection");

    let replacement = serde_json::json!({
        "name": "venue",
        "url": format!("ws://{}/", venue.addr()),
        "topic": "/topic",
        "max_topics_per_connection": 2,
        "subscribe": {
            "template": r#"{"op":"subscribe","id":{{id}},"args":{{topics}}}"#,
            "topics": ["N0", "N1", "N2", "N3"],
            "per_message": 2,
            "ack": { "id": "/id", "error": "/error" }
        }
    });
    assert_eq!(change(admin, awc::http::Method::PUT, Some(replacement)).await, 200);
    let feed = venue_status_until(admin, "the new feed's 2 shards active", |feed| {
        count(feed, "active") == 4 && feed["shards"].as_array().is_some_and(|s| s.len() == 2)
    })
    .await;
    assert_eq!(feed["subscriptions"]["topics"], 4, "{feed:#}");
    eventually(DEADLINE, "the old shards' connections closed", || {
        let open = venue.open();
        std::future::ready((open.len() == 2 && open.iter().all(|&i| i >= 6)).then_some(()))
    })
    .await;

    assert_eq!(change(admin, awc::http::Method::DELETE, None).await, 200);
    eventually(DEADLINE, "every shard's connection closed", || {
        std::future::ready(venue.open().is_empty().then_some(()))
    })
    .await;
    let (_, metrics) = http_get(admin, "/metrics").await;
    assert!(!metrics.contains(r#"feed="venue""#), "series left:\n{metrics}");
}

/// A rotation (`POST /feeds/{name}/rotate`) keeps the old connection until
/// the new one's subscription is acknowledged: the venue's greeting is no
/// proof of a subscription. Answered, the old connection goes at once;
/// never answered, only at the rotation's bounded wait (2 ×
/// `handshake_timeout` + 1 s, 7 s here).
#[actix_rt::test]
async fn a_rotation_waits_for_the_new_connections_acknowledgement_not_its_greeting() {
    let topics = vec!["A".to_owned()];
    let lines = format!("handshake_timeout = \"3s\"\n{}", subscribe_line(&topics, 1, ""));
    let only_the_new_one = HashSet::from([1]);

    let venue = Venue::start(VenueRules { greeting: true, ..VenueRules::default() }).await;
    let (_sidecar, admin) = run_sidecar(venue.addr(), &lines);
    venue_status_until(admin, "A active", |feed| count(feed, "active") == 1).await;
    let (status, _) = http_post(admin, "/feeds/venue/rotate", None, "").await;
    assert_eq!(status, 202);
    eventually(DEADLINE, "the old connection closed once the new one was answered", || async {
        (venue.open() == only_the_new_one).then_some(())
    })
    .await;
    assert_eq!(venue.topics_of(1), topics);

    let silent = Venue::start(VenueRules {
        greeting: true,
        never_answer: HashSet::from(["A".to_owned()]),
        ..VenueRules::default()
    })
    .await;
    let (_sidecar, admin) = run_sidecar(silent.addr(), &lines);
    eventually(DEADLINE, "the first connection subscribed", || async {
        (silent.topics_of(0) == topics).then_some(())
    })
    .await;
    let (status, _) = http_post(admin, "/feeds/venue/rotate", None, "").await;
    assert_eq!(status, 202);
    eventually(DEADLINE, "the new connection greeted and subscribed", || async {
        (silent.topics_of(1) == topics).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(silent.open(), HashSet::from([0, 1]), "greeted but unanswered: both stay");
    eventually(DEADLINE, "the old connection closed at the bounded wait", || async {
        (silent.open() == only_the_new_one).then_some(())
    })
    .await;
}
