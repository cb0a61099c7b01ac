//! `overflow = { conflate = "/symbol" }` from a config file, with the
//! `feedvisor` binary: a webhook subscriber whose endpoint stalls for the
//! whole of a 5 s burst of 10k msg/s over 100 keys resumes with one message
//! per key, each the latest sent, while the feed kept reading throughout;
//! and a `/subscribe` client under `[http.subscribe] overflow = { conflate }`
//! that stops reading for the same burst ends with the latest of each key.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use awc::ws::{Frame, Message};
use feedvisor_test_support::net::RawServer;
use feedvisor_test_support::wait::eventually;
use feedvisor_test_support::websocket::{
    encode_frame, header_value, opcode, read_request_head, RawWs, FIN,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use crate::binary::{feedvisor, temp_config};
use crate::support::{http_get, sample, ChildGuard, DEADLINE};
use crate::tls::admin_addr;

/// Distinct keys (`/symbol` values) the upstream sends.
const KEYS: u64 = 100;
/// Messages per burst, one burst every [`BURST_EVERY`]: 10k msg/s.
const BURST: u64 = 100;
const BURST_EVERY: Duration = Duration::from_millis(10);
/// Bursts in all: 5 s of messages.
const BURSTS: u64 = 500;
/// Messages in all.
const SENT: u64 = BURST * BURSTS;
/// How often (in bursts) the test looks at the feed's received count.
const LOOK_EVERY: u64 = 50;

/// What the upstream sent.
#[derive(Default)]
struct Sent {
    /// Each message's key, by sequence number (its index).
    keys: Vec<u64>,
    /// Writes the kernel did not take whole at once.
    blocked_writes: u64,
    /// Bursts sent so far.
    bursts: u64,
}

/// The key of message `seq`: a fixed pseudo-random walk over the keys, so
/// that some keys come often, some seldom, none in a fixed rotation.
fn key_of(seq: u64) -> u64 {
    let mixed = seq.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (mixed >> 33) % KEYS
}

/// The upstream: a WebSocket server that, once `go` is notified, sends
/// [`BURSTS`] bursts of [`BURST`] messages `{"symbol":"K<key>","seq":<n>}`,
/// each burst in one write, noting any write the kernel did not take at once.
async fn upstream(sent: Rc<RefCell<Sent>>, go: Rc<Notify>, progress: Rc<Notify>) -> RawServer {
    RawServer::start(move |_, socket: TcpStream| {
        let (sent, go, progress) = (sent.clone(), go.clone(), progress.clone());
        async move {
            let Ok(mut ws) = RawWs::accept(socket).await else { return };
            go.notified().await;
            let mut ticks = tokio::time::interval(BURST_EVERY);
            for burst in 0..BURSTS {
                ticks.tick().await;
                let mut bytes = Vec::new();
                for seq in burst * BURST..(burst + 1) * BURST {
                    let key = key_of(seq);
                    let text = format!(r#"{{"symbol":"K{key:03}","seq":{seq}}}"#);
                    bytes.extend(encode_frame(FIN | opcode::TEXT, text.as_bytes()));
                    sent.borrow_mut().keys.push(key);
                }
                let taken = ws.socket.try_write(&bytes).unwrap_or(0);
                if taken < bytes.len() {
                    sent.borrow_mut().blocked_writes += 1;
                    if ws.socket.write_all(&bytes[taken..]).await.is_err() {
                        return;
                    }
                }
                sent.borrow_mut().bursts = burst + 1;
                progress.notify_one();
            }
            // Stay open, reading (and so acknowledging) whatever comes.
            while let Ok(Some(_)) = ws.read_frame().await {}
        }
    })
    .await
}

/// One POST the webhook endpoint received: its messages' keys and sequence numbers.
type Request = Vec<(u64, u64)>;

/// The webhook endpoint: records each request's messages and answers 200,
/// but holds every answer while `paused` is true.
async fn endpoint(requests: Rc<RefCell<Vec<Request>>>, paused: watch::Receiver<bool>) -> RawServer {
    RawServer::start(move |_, mut socket: TcpStream| {
        let (requests, mut paused) = (requests.clone(), paused.clone());
        async move {
            loop {
                let Ok((head, mut body)) = read_request_head(&mut socket).await else { return };
                let length: usize = header_value(&head, "content-length")
                    .and_then(|length| length.parse().ok())
                    .expect("a Content-Length");
                let mut rest = vec![0; length.saturating_sub(body.len())];
                if socket.read_exact(&mut rest).await.is_err() {
                    return;
                }
                body.extend(rest);
                requests.borrow_mut().push(messages_of(&body));
                if paused.wait_for(|paused| !paused).await.is_err() {
                    return;
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                if socket.write_all(answer).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// The (key, seq) of each message in a webhook body (a JSON array).
fn messages_of(body: &[u8]) -> Request {
    let lines: Vec<serde_json::Value> = serde_json::from_slice(body).expect("a JSON array");
    lines
        .iter()
        .map(|line| {
            let payload = line["payload"].as_str().expect("a text payload");
            let message: serde_json::Value = serde_json::from_str(payload).expect("JSON");
            let symbol = message["symbol"].as_str().expect("a symbol");
            let key = symbol.trim_start_matches('K').parse().expect("K<number>");
            (key, message["seq"].as_u64().expect("a seq"))
        })
        .collect()
}

/// The value of `name{labels}` in the sidecar's `/metrics`, 0 when absent.
async fn metric(admin: SocketAddr, name: &str, labels: &str) -> u64 {
    let (status, text) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    sample(&text, name, labels).unwrap_or(0.0) as u64
}

/// Runs the `feedvisor` binary on `config` (written as `name`), its log
/// echoed, until its feed is open: the process and its admin address.
async fn start_sidecar(name: &str, config: &str) -> (ChildGuard, SocketAddr) {
    let path = temp_config(name, config);
    let mut sidecar = ChildGuard::spawn(feedvisor().arg("run").arg("--config").arg(&path));
    let stderr = sidecar.stderr_lines();
    let admin = admin_addr(&stderr);
    std::thread::spawn(move || {
        for line in stderr.iter() {
            eprintln!("sidecar: {line}");
        }
    });
    eventually(DEADLINE, "the feed open", || async move {
        (http_get(admin, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    (sidecar, admin)
}

#[test]
fn a_conflating_subscriber_paused_5s_on_100_keys_at_10k_per_second_resumes_with_the_latest_of_each()
{
    actix_rt::System::new().block_on(async {
        let sent = Rc::new(RefCell::new(Sent::default()));
        let (go, progress) = (Rc::new(Notify::new()), Rc::new(Notify::new()));
        let upstream = upstream(sent.clone(), go.clone(), progress.clone()).await;
        let requests = Rc::new(RefCell::new(Vec::new()));
        let (pause, paused) = watch::channel(true);
        let endpoint = endpoint(requests.clone(), paused).await;
        let config = format!(
            r#"[http]
listen = "127.0.0.1:0"

# The upstream answers no pings: the heartbeat is off.
[[feeds]]
name = "tickers"
heartbeat = {{ interval = "0s" }}
url = "ws://{}/"

[[subscribers]]
name = "latest"
sink = "webhook"
url = "http://{}/hook"
feeds = ["tickers"]
batch = 1024
max_in_flight = 1
timeout = "60s"
queue = 1024
overflow = {{ conflate = "/symbol" }}
"#,
            upstream.addr, endpoint.addr
        );
        let (sidecar, admin) = start_sidecar("conflate.toml", &config).await;

        // The endpoint holds its first request's answer: the sink holds
        // that batch and takes no other while the upstream sends.
        go.notify_one();
        let received = r#"feed="tickers",kind="text""#;
        let mut last_seen = 0;
        loop {
            tokio::time::timeout(DEADLINE, progress.notified()).await.expect("upstream progress");
            let bursts = sent.borrow().bursts;
            if bursts % LOOK_EVERY == 0 {
                let now = metric(admin, "feedvisor_messages_received_total", received).await;
                assert!(now > last_seen, "the feed stopped reading at {now} after {bursts} bursts");
                last_seen = now;
            }
            if bursts == BURSTS {
                break;
            }
        }
        eventually(DEADLINE, "every message read while the subscriber is paused", || async move {
            let now = metric(admin, "feedvisor_messages_received_total", received).await;
            (now == SENT).then_some(())
        })
        .await;
        assert_eq!(requests.borrow().len(), 1, "the sink held one request all along");
        assert_eq!(sent.borrow().blocked_writes, 0, "the upstream's writes never waited");
        let depth = metric(admin, "feedvisor_subscriber_queue_depth", r#"subscriber="latest""#);
        let depth = depth.await;
        assert!(depth <= KEYS, "{depth} queued for {KEYS} keys");

        // Resume: what waited is one message per key.
        pause.send(false).expect("endpoint alive");
        let latest = r#"subscriber="latest""#;
        let delivered = eventually(DEADLINE, "everything pending delivered", || {
            let requests = requests.clone();
            async move {
                let delivered = metric(admin, "feedvisor_subscriber_delivered_total", latest).await;
                let requests = requests.borrow();
                let taken: usize = requests.iter().map(Vec::len).sum();
                (taken as u64 == delivered && requests.len() >= 2).then_some(delivered)
            }
        })
        .await;
        let requests = requests.borrow().clone();
        let keys = sent.borrow().keys.clone();
        let first = &requests[0];
        let after = first.iter().map(|(_, seq)| *seq).max().expect("a first batch") + 1;
        // Keys in the order they first became pending (first sent after the
        // first batch), each with the last message sent for it.
        let mut expected = Vec::new();
        let mut position = HashMap::new();
        for (seq, key) in keys.iter().enumerate().skip(after as usize) {
            let at = *position.entry(*key).or_insert_with(|| {
                expected.push((*key, 0));
                expected.len() - 1
            });
            expected[at].1 = seq as u64;
        }
        assert_eq!(requests.len(), 2, "one batch held, then one with what waited");
        let resumed = &requests[1];
        assert!(resumed.len() as u64 <= KEYS, "{} messages for {KEYS} keys", resumed.len());
        assert_eq!(resumed, &expected, "the latest of each key, keys in first-pending order");
        let distinct: HashSet<_> = resumed.iter().map(|(key, _)| key).collect();
        assert_eq!(distinct.len(), resumed.len());

        let dropped = |reason: &str| {
            let labels = format!(r#"subscriber="latest",reason="{reason}""#);
            async move { metric(admin, "feedvisor_subscriber_dropped_total", &labels).await }
        };
        assert_eq!(delivered, (first.len() + resumed.len()) as u64);
        assert_eq!(dropped("conflated").await, SENT - delivered, "every discarded message counted");
        assert_eq!(dropped("conflate_overflow").await, 0, "100 keys fit the queue");
        assert_eq!(dropped("drop_oldest").await, 0);
        drop(sidecar);
        endpoint.stop().await;
        upstream.stop().await;
    });
}

/// Waits until a `/subscribe` client's inbox exists: its series (under the
/// one label all clients share, `websocket`) are in `/metrics`.
async fn until_subscribe_client_registered(admin: SocketAddr) {
    eventually(DEADLINE, "the /subscribe client registered", || async move {
        let (_, text) = http_get(admin, "/metrics").await;
        let series = r#"feedvisor_subscriber_delivered_total{subscriber="websocket"}"#;
        text.contains(series).then_some(())
    })
    .await;
}

#[test]
fn a_subscribe_client_that_stops_reading_for_the_burst_ends_with_the_latest_of_each_key() {
    actix_rt::System::new().block_on(async {
        let sent = Rc::new(RefCell::new(Sent::default()));
        let (go, progress) = (Rc::new(Notify::new()), Rc::new(Notify::new()));
        let upstream = upstream(sent.clone(), go.clone(), progress.clone()).await;
        let config = format!(
            r#"[http]
listen = "127.0.0.1:0"

[http.subscribe]
queue = 1024
overflow = {{ conflate = "/symbol" }}
slow_client_timeout = "60s"

[[feeds]]
name = "tickers"
heartbeat = {{ interval = "0s" }}
url = "ws://{}/"
"#,
            upstream.addr
        );
        let (sidecar, admin) = start_sidecar("conflate-subscribe.toml", &config).await;
        let request = awc::Client::default().ws(format!("ws://{admin}/subscribe?feed=tickers"));
        let (_, mut client) = tokio::time::timeout(DEADLINE, request.connect())
            .await
            .expect("an answer in time")
            .expect("upgraded");
        until_subscribe_client_registered(admin).await;
        let labels = r#"subscriber="websocket""#;

        // The client reads nothing while the whole burst is sent.
        go.notify_one();
        while sent.borrow().bursts < BURSTS {
            tokio::time::timeout(DEADLINE, progress.notified()).await.expect("upstream progress");
        }
        let received = r#"feed="tickers",kind="text""#;
        eventually(DEADLINE, "every message read while the client is stopped", || async move {
            let now = metric(admin, "feedvisor_messages_received_total", received).await;
            (now == SENT).then_some(())
        })
        .await;
        assert_eq!(sent.borrow().blocked_writes, 0, "the upstream's writes never waited");
        let depth = metric(admin, "feedvisor_subscriber_queue_depth", labels).await;
        assert!(depth <= KEYS, "{depth} queued for {KEYS} keys");

        // Resume: read until everything delivered has arrived and nothing waits.
        let mut got: Vec<(u64, u64)> = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} messages, still waiting",
                got.len()
            );
            match tokio::time::timeout(Duration::from_millis(300), client.next()).await {
                Ok(Some(Ok(Frame::Text(text)))) => {
                    got.extend(messages_of(
                        format!("[{}]", String::from_utf8_lossy(&text)).as_bytes(),
                    ));
                }
                Ok(Some(Ok(Frame::Ping(payload)))) => {
                    client.send(Message::Pong(payload)).await.expect("pong");
                }
                Ok(other) => panic!("the client's connection: {other:?}"),
                Err(_) => {
                    let delivered = metric(admin, "feedvisor_subscriber_delivered_total", labels);
                    let depth = metric(admin, "feedvisor_subscriber_queue_depth", labels);
                    if delivered.await == got.len() as u64 && depth.await == 0 {
                        break;
                    }
                }
            }
        }

        let keys = sent.borrow().keys.clone();
        let mut last_sent = HashMap::new();
        for (seq, key) in keys.iter().enumerate() {
            last_sent.insert(*key, seq as u64);
        }
        let mut last_got: HashMap<u64, u64> = HashMap::new();
        for (key, seq) in &got {
            assert_eq!(keys[*seq as usize], *key, "message {seq} under its own key");
            let before = last_got.insert(*key, *seq);
            assert!(before.is_none_or(|before| before < *seq), "key {key} went back to {seq}");
        }
        assert_eq!(last_got, last_sent, "every key ends with the last message sent for it");
        let dropped = |reason: &str| {
            let labels = format!(r#"subscriber="websocket",reason="{reason}""#);
            async move { metric(admin, "feedvisor_subscriber_dropped_total", &labels).await }
        };
        let conflated = dropped("conflated").await;
        assert!(conflated > 0, "a stopped client's queue conflated");
        assert_eq!(conflated, SENT - got.len() as u64, "every discarded message counted");
        assert_eq!(dropped("conflate_overflow").await, 0, "100 keys fit the queue");
        assert_eq!(dropped("drop_oldest").await, 0);
        drop(client);
        drop(sidecar);
        upstream.stop().await;
    });
}
