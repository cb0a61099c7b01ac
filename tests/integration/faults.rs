//! Faults a feed meets in the wild, against real sockets on 127.0.0.1: an
//! upstream that restarts again and again, a listener that never answers, a
//! peer that freezes mid-stream, handshakes refused with HTTP statuses, a
//! port nobody listens on, a text frame that is not UTF-8, a thousand feeds
//! dropped at once, messages sent while a feed is down, and a sequence gap
//! across a reconnect. Every wait polls a condition under a deadline; the
//! only timing assertions are lower bounds that follow from policy delays.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{FeedMessage, FeedState, Sidecar, SubscriptionSpec};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

mod proxy;

use crate::support::{
    answer_status, collect, collect_all, encode_frame, eventually, feed_status, http_get,
    http_post, metric, opcode, read_request_head, refused_addr, sample, wait_for_feed,
    wait_for_metric, Collector, RawServer, RawWs, Upstream, DEADLINE, FIN,
};

/// Starts a sidecar with `feeds` (TOML `[[feeds]]` tables) and an admin
/// server on a free port; every `faults-*` message goes to the receiver.
async fn start(feeds: &str) -> (Sidecar, mpsc::UnboundedReceiver<FeedMessage>) {
    let text = format!("[http]\nlisten = \"127.0.0.1:0\"\n{feeds}");
    let config =
        Config::from_toml_str(&text, Path::new("faults.toml"), &TransportRegistry::with_defaults())
            .unwrap_or_else(|error| panic!("invalid test config: {error}\n{text}"));
    let (sender, receiver) = mpsc::unbounded_channel();
    let sidecar = Sidecar::builder(config)
        .subscriber(
            SubscriptionSpec::new("faults-collector", ["faults-*"]),
            Collector(sender).start().recipient(),
        )
        .start()
        .await
        .expect("sidecar started");
    (sidecar, receiver)
}

fn json(message: &FeedMessage) -> serde_json::Value {
    serde_json::from_slice(&message.payload).expect("a JSON message")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Receives the next value from a test peer within the deadline.
async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(DEADLINE, receiver.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} in time"))
        .unwrap_or_else(|| panic!("the peer that sends {what} is gone"))
}

#[actix::test]
async fn twenty_upstream_restarts_are_twenty_reconnects_and_every_incarnation_is_delivered() {
    const RESTARTS: u32 = 20;
    const PER_RUN: usize = 3;
    let mut upstream = Upstream::start_tagged(loopback(), PER_RUN, 0);
    let addr = upstream.addr;
    let (sidecar, mut receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-restarts"
url = "ws://{addr}/sequence"
reconnect = {{ policy = "fixed", initial = "20ms", jitter = "none" }}
"#
    ))
    .await;

    for incarnation in 0..=RESTARTS {
        if incarnation > 0 {
            upstream.stop().await;
            upstream = Upstream::start_tagged(addr, PER_RUN, incarnation);
        }
        // The previous run's messages all arrived, so these are from this run.
        let messages = collect(&mut receiver, PER_RUN).await;
        for (seq, message) in messages.iter().enumerate() {
            let value = json(message);
            assert_eq!(value["incarnation"], incarnation, "{value}");
            assert_eq!(value["seq"], seq, "{value}");
        }
    }

    let http = sidecar.http_addr().expect("admin server");
    let (status, body) = http_get(http, "/feeds/faults-restarts").await;
    assert_eq!(status, 200, "{body}");
    let feed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(feed["reconnects"], RESTARTS, "{feed}");
    assert_eq!(feed["state"], "open", "{feed}");
    assert_eq!(feed["messages_in"], (RESTARTS as usize + 1) * PER_RUN, "{feed}");
    let (status, metrics) = http_get(http, "/metrics").await;
    assert_eq!(status, 200);
    let feed_label = r#"feed="faults-restarts""#;
    let reconnects = sample(&metrics, "feedvisor_reconnects_total", feed_label);
    assert_eq!(reconnects, Some(f64::from(RESTARTS)));
    let ok = r#"feed="faults-restarts",result="ok""#;
    assert_eq!(
        sample(&metrics, "feedvisor_connect_attempts_total", ok),
        Some(f64::from(RESTARTS + 1))
    );
    assert_eq!(sample(&metrics, "feedvisor_feed_up", feed_label), Some(1.0));
    for state in ["connecting", "open", "backing_off", "closed", "failed"] {
        let labels = format!(r#"feed="faults-restarts",state="{state}""#);
        let expected = if state == "open" { 1.0 } else { 0.0 };
        assert_eq!(sample(&metrics, "feedvisor_feed_state", &labels), Some(expected), "{state}");
    }
    let handshakes = sample(&metrics, "feedvisor_handshake_duration_seconds_count", feed_label);
    assert_eq!(handshakes, Some(f64::from(RESTARTS + 1)));
    let (status, health) = http_get(http, "/healthz").await;
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));

    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn a_listener_that_accepts_and_never_answers_times_out_every_attempt() {
    let closed = Arc::new(AtomicUsize::new(0));
    let closes = closed.clone();
    let server = RawServer::start(move |_, mut socket: TcpStream| {
        let closes = closes.clone();
        async move {
            // Never answers; reads only to see the client give up and close.
            let mut buffer = [0u8; 4096];
            while matches!(socket.read(&mut buffer).await, Ok(read) if read > 0) {}
            closes.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let started = Instant::now();
    let (sidecar, _receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-blackhole"
url = "ws://{}/"
handshake_timeout = "200ms"
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
"#,
        server.addr
    ))
    .await;

    let timeouts = r#"feed="faults-blackhole",result="timeout""#;
    let seen = RefCell::new(Vec::new());
    let (seen, running) = (&seen, &sidecar);
    eventually(DEADLINE, "three timed-out connect attempts", || async move {
        let state = feed_status(running, "faults-blackhole").await.state;
        seen.borrow_mut().push(state);
        let count = metric(running, "feedvisor_connect_attempts_total", timeouts);
        (count >= 3.0).then_some(())
    })
    .await;
    // Three attempts of 200ms each with 50ms between them cannot end sooner.
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    assert!(server.accepted() >= 3, "the listener saw {} connects", server.accepted());
    // One count per attempt, never more.
    let counted = metric(&sidecar, "feedvisor_connect_attempts_total", timeouts);
    assert!(counted <= server.accepted() as f64, "{counted} timeouts counted for fewer connects");
    // An attempt that timed out leaves no socket behind.
    let closed = &closed;
    eventually(DEADLINE, "the timed-out attempts' sockets closed", || async move {
        (closed.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;

    let status = feed_status(&sidecar, "faults-blackhole").await;
    let last_error = status.last_error.clone().unwrap_or_default();
    assert!(last_error.contains("timed out after 200ms"), "{status:?}");
    assert!(matches!(status.state, FeedState::BackingOff | FeedState::Connecting), "{status:?}");
    assert!(!seen.borrow().contains(&FeedState::Open), "the feed was open: {:?}", seen.borrow());
    let ok = r#"feed="faults-blackhole",result="ok""#;
    assert_eq!(metric(&sidecar, "feedvisor_connect_attempts_total", ok), 0.0);
    let open = r#"feed="faults-blackhole",state="open""#;
    assert_eq!(metric(&sidecar, "feedvisor_feed_state", open), 0.0);
    assert_eq!(metric(&sidecar, "feedvisor_feed_up", r#"feed="faults-blackhole""#), 0.0);

    let http = sidecar.http_addr().expect("admin server");
    let (status, health) = http_get(http, "/healthz").await;
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = http_get(http, "/feeds/faults-blackhole").await;
    assert_eq!(status, 200);
    let feed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(feed["state"] == "backing_off" || feed["state"] == "connecting", "{feed}");
    let (status, _) = http_get(http, "/readyz").await;
    assert_eq!(status, 503);

    sidecar.stop().await;
    server.stop().await;
}

#[actix::test]
async fn a_peer_that_freezes_mid_stream_is_found_out_by_the_heartbeat_and_replaced() {
    let thaw = Arc::new(Notify::new());
    let (after_thaw, mut frozen_saw) = mpsc::unbounded_channel();
    let frozen = thaw.clone();
    let server = RawServer::start(move |index, socket| {
        let (frozen, after_thaw) = (frozen.clone(), after_thaw.clone());
        async move {
            let Ok(mut peer) = RawWs::accept(socket).await else { return };
            for n in 0..3 {
                if peer.send_text(&format!(r#"{{"conn":{index},"n":{n}}}"#)).await.is_err() {
                    return;
                }
            }
            if index > 0 {
                peer.serve(None).await;
                return;
            }
            // Frozen: the connection stays open, but nothing is read or answered
            // until the test thaws it to see what the feed left on the wire.
            frozen.notified().await;
            let mut opcodes = Vec::new();
            let mut close_code = None;
            while let Ok(Some(frame)) = peer.read_frame().await {
                opcodes.push(frame.opcode);
                if frame.opcode == opcode::CLOSE {
                    close_code = frame.close_code();
                    let echo = encode_frame(FIN | opcode::CLOSE, &frame.payload);
                    let _ = peer.write_raw(&echo).await;
                }
            }
            let _ = after_thaw.send((opcodes, close_code));
        }
    })
    .await;
    let (sidecar, mut receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-frozen"
url = "ws://{}/"
heartbeat = {{ interval = "200ms", timeout = "100ms" }}
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
"#,
        server.addr
    ))
    .await;

    let messages = collect(&mut receiver, 6).await;
    let order: Vec<(u64, u64)> = messages
        .iter()
        .map(json)
        .map(|value| (value["conn"].as_u64().expect("conn"), value["n"].as_u64().expect("n")))
        .collect();
    assert_eq!(order, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);

    let status = wait_for_feed(&sidecar, "faults-frozen", "open again", |feed| {
        feed.state == FeedState::Open
    })
    .await;
    // One reconnect, unless the machine is so loaded that a healthy pong
    // also missed its 100ms; either way each was the heartbeat's doing.
    assert!(status.reconnects >= 1, "{status:?}");
    let last_error = status.last_error.clone().unwrap_or_default();
    assert!(last_error.contains("heartbeat"), "{status:?}");
    let close = status.last_close.clone().expect("a close recorded");
    assert_eq!((close.by, close.code), ("local", 1001), "{close:?}");
    // Open at the first connect; the ping after 200ms goes unanswered for
    // 100ms; then 50ms of backoff: the second connect cannot come sooner.
    let accepts = server.accept_times();
    let gap = accepts[1] - accepts[0];
    assert!(gap >= Duration::from_millis(350), "replaced after {gap:?}");

    // The pings of the new connection are answered and their round trips recorded.
    let rtt = r#"feed="faults-frozen""#;
    wait_for_metric(&sidecar, "feedvisor_ping_rtt_seconds_count", rtt, |count| count >= 3.0).await;

    // The frozen connection got the unanswered ping, then a close 1001, then
    // its end: the feed did not leave it open.
    thaw.notify_one();
    let (opcodes, close_code) = next(&mut frozen_saw, "the end of the frozen connection").await;
    assert_eq!(opcodes.first(), Some(&opcode::PING), "{opcodes:?}");
    assert_eq!(opcodes.last(), Some(&opcode::CLOSE), "{opcodes:?}");
    assert_eq!(close_code, Some(1001), "{opcodes:?}");

    sidecar.stop().await;
    server.stop().await;
}

#[actix::test]
async fn a_peer_that_goes_quiet_is_closed_after_the_idle_timeout_and_replaced() {
    let server = RawServer::start(|index, socket| async move {
        let Ok(mut peer) = RawWs::accept(socket).await else { return };
        if peer.send_text(&format!(r#"{{"conn":{index}}}"#)).await.is_err() {
            return;
        }
        // Answers pings and closes but sends nothing more.
        peer.serve(None).await;
    })
    .await;
    let (sidecar, mut receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-quiet"
url = "ws://{}/"
heartbeat = {{ interval = "0s" }}
idle_timeout = "300ms"
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
"#,
        server.addr
    ))
    .await;

    let conns: Vec<u64> = collect(&mut receiver, 2)
        .await
        .iter()
        .map(|m| json(m)["conn"].as_u64().expect("conn"))
        .collect();
    assert_eq!(conns, [0, 1]);
    let status =
        wait_for_feed(&sidecar, "faults-quiet", "reconnected", |feed| feed.reconnects >= 1).await;
    let last_error = status.last_error.clone().unwrap_or_default();
    assert!(last_error.contains("idle"), "{status:?}");
    let close = status.last_close.clone().expect("a close recorded");
    assert_eq!((close.by, close.code), ("local", 1001), "{close:?}");
    // 300ms of silence after the first message, then 50ms of backoff.
    let accepts = server.accept_times();
    let gap = accepts[1] - accepts[0];
    assert!(gap >= Duration::from_millis(350), "replaced after {gap:?}");

    sidecar.stop().await;
    server.stop().await;
}

/// A server that answers every upgrade request with `status_line` and
/// `headers`; it records when each answer was written.
async fn rejecting_server(
    status_line: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> (RawServer, Arc<Mutex<Vec<Instant>>>) {
    let answered = Arc::new(Mutex::new(Vec::new()));
    let log = answered.clone();
    let server = RawServer::start(move |_, mut socket| {
        let log = log.clone();
        async move {
            if read_request_head(&mut socket).await.is_ok() {
                log.lock().expect("answer log").push(Instant::now());
                answer_status(&mut socket, status_line, headers).await;
            }
        }
    })
    .await;
    (server, answered)
}

#[actix::test]
async fn handshakes_refused_with_401_429_and_500_are_counted_and_429_waits_out_retry_after() {
    let (unauthorized, _) = rejecting_server("401 Unauthorized", &[]).await;
    let (limited, limited_answers) =
        rejecting_server("429 Too Many Requests", &[("Retry-After", "1")]).await;
    let (broken, _) = rejecting_server("500 Internal Server Error", &[]).await;
    let feed = |name: &str, addr: SocketAddr| {
        format!(
            r#"
[[feeds]]
name = "{name}"
url = "ws://{addr}/"
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
"#
        )
    };
    let (sidecar, _receiver) = start(
        &[
            feed("faults-status-401", unauthorized.addr),
            feed("faults-status-429", limited.addr),
            feed("faults-status-500", broken.addr),
        ]
        .concat(),
    )
    .await;

    // Two retries after 429s: at least two seconds.
    let limited_ref = &limited;
    eventually(DEADLINE, "three attempts on the 429 server", || async move {
        (limited_ref.accepted() >= 3).then_some(())
    })
    .await;
    let accepts = limited.accept_times();
    let answers = limited_answers.lock().expect("answer log").clone();
    for (answer, next_accept) in answers.iter().zip(&accepts[1..]) {
        let waited = next_accept.saturating_duration_since(*answer);
        assert!(
            waited >= Duration::from_secs(1),
            "retried {waited:?} after a 429 with Retry-After: 1 (policy: fixed 50ms)"
        );
    }

    for (name, code) in
        [("faults-status-401", 401), ("faults-status-429", 429), ("faults-status-500", 500)]
    {
        let labels = format!(r#"feed="{name}",result="http_status""#);
        wait_for_metric(&sidecar, "feedvisor_connect_attempts_total", &labels, |count| {
            count >= 2.0
        })
        .await;
        let status = feed_status(&sidecar, name).await;
        let last_error = status.last_error.clone().unwrap_or_default();
        assert!(last_error.contains(&code.to_string()), "{status:?}");
        assert_ne!(status.state, FeedState::Open, "{status:?}");
        let ok = format!(r#"feed="{name}",result="ok""#);
        assert_eq!(metric(&sidecar, "feedvisor_connect_attempts_total", &ok), 0.0, "{name}");
    }

    sidecar.stop().await;
    for server in [unauthorized, limited, broken] {
        server.stop().await;
    }
}

#[actix::test]
async fn refused_connects_follow_the_policy_and_max_attempts_ends_in_failed() {
    let addr = refused_addr();
    let started = Instant::now();
    let (sidecar, _receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-refused-fixed"
url = "ws://{addr}/"
reconnect = {{ policy = "fixed", initial = "200ms", jitter = "none" }}

[[feeds]]
name = "faults-refused-exponential"
url = "ws://{addr}/"
reconnect = {{ policy = "exponential", initial = "100ms", multiplier = 2.0, max = "10s", jitter = "none" }}

[[feeds]]
name = "faults-refused-gives-up"
url = "ws://{addr}/"
reconnect = {{ policy = "fixed", initial = "20ms", jitter = "none", max_attempts = 3 }}
"#
    ))
    .await;

    // When each count of refused attempts was first seen (never before it happened).
    const ATTEMPTS: usize = 4;
    let fixed = r#"feed="faults-refused-fixed",result="refused""#;
    let exponential = r#"feed="faults-refused-exponential",result="refused""#;
    let seen = RefCell::new([[None::<Duration>; ATTEMPTS]; 2]);
    let (seen_ref, running) = (&seen, &sidecar);
    eventually(DEADLINE, "four refused attempts on both feeds", || async move {
        let mut seen = seen_ref.borrow_mut();
        for (feed, labels) in [fixed, exponential].into_iter().enumerate() {
            let count = metric(running, "feedvisor_connect_attempts_total", labels) as usize;
            for attempt in 0..count.min(ATTEMPTS) {
                seen[feed][attempt].get_or_insert_with(|| started.elapsed());
            }
        }
        seen.iter().flatten().all(Option::is_some).then_some(())
    })
    .await;
    let seen = seen.into_inner();
    // Attempt k (from 0) cannot happen before the sum of the delays before it.
    let fixed_floor = |k: u32| Duration::from_millis(200) * k;
    let exponential_floor = |k: u32| Duration::from_millis(100) * (2u32.pow(k) - 1);
    for (k, (fixed_at, exponential_at)) in (0u32..).zip(seen[0].iter().zip(&seen[1])) {
        let (fixed_at, exponential_at) = (fixed_at.expect("seen"), exponential_at.expect("seen"));
        assert!(fixed_at >= fixed_floor(k), "fixed: attempt {k} at {fixed_at:?}");
        assert!(
            exponential_at >= exponential_floor(k),
            "exponential: attempt {k} at {exponential_at:?}"
        );
    }

    let status = wait_for_feed(&sidecar, "faults-refused-gives-up", "failed", |feed| {
        feed.state == FeedState::Failed
    })
    .await;
    assert!(status.last_error.clone().unwrap_or_default().contains("refused"), "{status:?}");
    let refused = r#"feed="faults-refused-gives-up",result="refused""#;
    // The first attempt and three retries.
    assert_eq!(metric(&sidecar, "feedvisor_connect_attempts_total", refused), 4.0);
    for state in ["connecting", "open", "backing_off", "closed", "failed"] {
        let labels = format!(r#"feed="faults-refused-gives-up",state="{state}""#);
        let expected = if state == "failed" { 1.0 } else { 0.0 };
        assert_eq!(metric(&sidecar, "feedvisor_feed_state", &labels), expected, "{state}");
    }
    assert_eq!(metric(&sidecar, "feedvisor_feed_up", r#"feed="faults-refused-gives-up""#), 0.0);

    let http = sidecar.http_addr().expect("admin server");
    let (status, body) = http_get(http, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let readiness: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(readiness["ready"], false, "{readiness}");
    let waiting = readiness["waiting_for"].as_array().expect("waiting_for");
    let failed = serde_json::json!({ "name": "faults-refused-gives-up", "state": "failed" });
    assert!(waiting.contains(&failed), "{readiness}");
    let readiness = sidecar.readiness().await.expect("readiness");
    assert!(!readiness.ready);
    // Nothing can be sent to a feed that gave up.
    let (status, body) = http_post(http, "/feeds/faults-refused-gives-up/send", None, "x").await;
    assert_eq!(status, 503, "{body}");

    sidecar.stop().await;
}

#[actix::test]
async fn a_text_frame_that_is_not_utf8_is_refused_with_1007_and_the_feed_reconnects() {
    let (closes, mut close_frames) = mpsc::unbounded_channel();
    let server = RawServer::start(move |index, socket| {
        let closes = closes.clone();
        async move {
            let Ok(mut peer) = RawWs::accept(socket).await else { return };
            if index > 0 {
                let _ = peer.send_text(r#"{"n":1}"#).await;
                peer.serve(None).await;
                return;
            }
            // A good message and a bad one in one write.
            let mut bytes = encode_frame(FIN | opcode::TEXT, br#"{"n":0}"#);
            bytes.extend(encode_frame(FIN | opcode::TEXT, b"{\"n\":\"\xC3\x28\"}"));
            if peer.write_raw(&bytes).await.is_err() {
                return;
            }
            // The feed's close frame, then the end of the connection.
            let mut close_code = None;
            while let Ok(Some(frame)) = peer.read_frame().await {
                close_code = close_code.or(frame.close_code());
            }
            let _ = closes.send(close_code);
        }
    })
    .await;
    let (sidecar, mut receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-bad-utf8"
url = "ws://{}/"
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
"#,
        server.addr
    ))
    .await;

    let received: Vec<serde_json::Value> =
        collect(&mut receiver, 2).await.iter().map(json).collect();
    assert_eq!(received, [serde_json::json!({"n": 0}), serde_json::json!({"n": 1})]);
    assert_eq!(next(&mut close_frames, "close frame and end").await, Some(1007));

    let status = wait_for_feed(&sidecar, "faults-bad-utf8", "reconnected", |feed| {
        feed.state == FeedState::Open && feed.reconnects == 1
    })
    .await;
    let close = status.last_close.clone().expect("a close recorded");
    assert_eq!((close.by, close.code), ("local", 1007), "{close:?}");
    let rejected = |reason: &str| {
        let labels = format!(r#"feed="faults-bad-utf8",reason="{reason}""#);
        metric(&sidecar, "feedvisor_messages_rejected_total", &labels)
    };
    assert_eq!(rejected("invalid_utf8"), 1.0);
    assert_eq!(rejected("protocol"), 0.0);
    assert_eq!(rejected("too_large"), 0.0);
    assert_eq!(server.accepted(), 2);

    sidecar.stop().await;
    server.stop().await;
}

/// The sample at quantile `q` of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    values[((values.len() - 1) as f64 * q).round() as usize]
}

#[actix::test]
async fn a_thousand_feeds_dropped_together_reconnect_spread_out_by_full_jitter() {
    const FEEDS: usize = 1000;
    let serve = |_, socket| async move {
        if let Ok(mut peer) = RawWs::accept(socket).await {
            peer.serve(None).await;
        }
    };
    let server = RawServer::start(serve).await;
    let addr = server.addr;
    let mut text = String::from(
        r#"
[defaults]
heartbeat = { interval = "0s" }
reconnect = { policy = "exponential", initial = "1s", jitter = "full" }
"#,
    );
    for index in 0..FEEDS {
        text.push_str(&format!(
            "[[feeds]]\nname = \"faults-herd-{index:04}\"\nurl = \"ws://{addr}/herd?feed={index}\"\n"
        ));
    }
    let (sidecar, _receiver) = start(&text).await;
    let running = &sidecar;
    eventually(DEADLINE, "all 1000 feeds open", || async move {
        running.readiness().await.is_some_and(|readiness| readiness.ready).then_some(())
    })
    .await;
    assert_eq!(server.accepted(), FEEDS);

    let stopped_at = Instant::now();
    server.stop().await;
    let server = RawServer::start_on(addr, serve).await;
    let restarted = &server;
    eventually(DEADLINE, "all 1000 feeds back", || async move {
        let ready = running.readiness().await.is_some_and(|readiness| readiness.ready);
        (ready && restarted.accepted() >= FEEDS).then_some(())
    })
    .await;
    assert_eq!(server.accepted(), FEEDS, "one reconnect per feed");
    for feed in sidecar.feeds().await {
        assert_eq!(feed.reconnects, 1, "{feed:?}");
    }

    let mut offsets: Vec<f64> = server
        .accept_times()
        .iter()
        .map(|at| at.saturating_duration_since(stopped_at).as_secs_f64() * 1000.0)
        .collect();
    offsets.sort_by(f64::total_cmp);
    let window = 50.0;
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..offsets.len() {
        while offsets[end] - offsets[start] >= window {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    println!(
        "reconnects of {FEEDS} feeds after the upstream restart, ms after the stop: \
         min {:.1}, p10 {:.1}, p50 {:.1}, p90 {:.1}, max {:.1}; busiest {window}ms window: {busiest}",
        offsets[0],
        quantile(&offsets, 0.1),
        quantile(&offsets, 0.5),
        quantile(&offsets, 0.9),
        offsets[FEEDS - 1],
    );
    assert!(busiest <= FEEDS / 4, "{busiest} of {FEEDS} reconnects within {window}ms: lockstep");

    sidecar.stop().await;
    server.stop().await;
}

#[actix::test]
async fn messages_posted_while_the_feed_is_down_wait_and_follow_on_open_in_order() {
    let addr = refused_addr();
    let (sidecar, _receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-outbound"
url = "ws://{addr}/sequence"
on_open = ['{{"op":"subscribe"}}', '{{"op":"hello"}}']
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
outbound_queue = {{ max_messages = 3, overflow = "reject" }}
"#
    ))
    .await;
    let http = sidecar.http_addr().expect("admin server");
    let send = "/feeds/faults-outbound/send";
    let refused = r#"feed="faults-outbound",result="refused""#;
    wait_for_metric(&sidecar, "feedvisor_connect_attempts_total", refused, |count| count >= 1.0)
        .await;

    for n in 1..=3 {
        let body = format!(r#"{{"op":"queued","n":{n}}}"#);
        let (status, answer) = http_post(http, send, Some("application/json"), body).await;
        assert_eq!(status, 202, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(answer, serde_json::json!({ "status": "queued", "dropped_oldest": 0 }));
    }
    let (status, answer) = http_post(http, send, Some("text/plain"), "one too many").await;
    assert_eq!(status, 429, "{answer}");
    let (status, answer) = http_post(http, "/feeds/faults-nope/send", None, "x").await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = http_post(http, send, Some("image/png"), "x").await;
    assert_eq!(status, 415, "{answer}");
    let not_utf8: &'static [u8] = &[0xFF, 0xFE];
    let (status, answer) = http_post(http, send, None, not_utf8).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = http_post(http, send, Some("text/plain"), not_utf8).await;
    assert_eq!(status, 400, "{answer}");

    assert_eq!(feed_status(&sidecar, "faults-outbound").await.outbound_queued, 3);
    let feed = r#"feed="faults-outbound""#;
    assert_eq!(metric(&sidecar, "feedvisor_outbound_queue_depth", feed), 3.0);
    let refused = r#"feed="faults-outbound",reason="queue_full""#;
    assert_eq!(metric(&sidecar, "feedvisor_outbound_dropped_total", refused), 1.0);

    let (inbound, mut upstream_received) = mpsc::unbounded_channel();
    let upstream = Upstream::start_recording(addr, inbound);
    let mut received = Vec::new();
    for _ in 0..5 {
        received.push(next(&mut upstream_received, "message from the feed").await);
    }
    assert_eq!(
        received,
        [
            r#"{"op":"subscribe"}"#,
            r#"{"op":"hello"}"#,
            r#"{"op":"queued","n":1}"#,
            r#"{"op":"queued","n":2}"#,
            r#"{"op":"queued","n":3}"#,
        ]
    );

    let status = wait_for_feed(&sidecar, "faults-outbound", "open", |status| {
        status.state == FeedState::Open
    })
    .await;
    assert_eq!(status.outbound_queued, 0);
    let (status, answer) = http_post(http, send, None, "live").await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer, serde_json::json!({ "status": "sent" }));
    assert_eq!(next(&mut upstream_received, "the live message").await, "live");
    assert_eq!(metric(&sidecar, "feedvisor_outbound_queue_depth", feed), 0.0);
    assert_eq!(metric(&sidecar, "feedvisor_messages_sent_total", feed), 6.0);

    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn a_sequence_that_resumes_past_a_gap_after_a_reconnect_counts_the_gap() {
    let (opens, mut on_open) = mpsc::unbounded_channel();
    let server = RawServer::start(move |index, socket| {
        let opens = opens.clone();
        async move {
            let Ok(mut peer) = RawWs::accept(socket).await else { return };
            // The feed's on_open message comes first.
            let Ok(Some(frame)) = peer.read_frame().await else { return };
            let _ = opens.send((index, String::from_utf8_lossy(&frame.payload).into_owned()));
            let numbers: &[u64] = if index == 0 { &[1, 2, 3] } else { &[7, 8] };
            for seq in numbers {
                if peer.send_text(&format!(r#"{{"seq":{seq}}}"#)).await.is_err() {
                    return;
                }
            }
            if index > 0 {
                peer.serve(None).await;
                return;
            }
            // The first connection drops after 3: end the stream, read to the end.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut peer.socket).await;
            while let Ok(Some(_)) = peer.read_frame().await {}
        }
    })
    .await;
    let (sidecar, mut receiver) = start(&format!(
        r#"
[[feeds]]
name = "faults-sequence"
url = "ws://{}/"
sequence = "/seq"
on_open = ['{{"op":"resume","from":{{{{last_seq}}}}}}']
reconnect = {{ policy = "fixed", initial = "50ms", jitter = "none" }}
"#,
        server.addr
    ))
    .await;

    let messages = collect_all(&mut receiver, 6).await;
    // The gap is announced in-band, right before the first number after it.
    let Some(event) = messages[3].discontinuity.as_deref() else { panic!("{messages:?}") };
    assert_eq!((event.last_before, event.first_after, event.missed), (Some(3), Some(7), Some(3)));
    let messages: Vec<_> = messages.into_iter().filter(|m| m.discontinuity.is_none()).collect();
    let seen: Vec<(u64, Option<u64>)> = messages
        .iter()
        .map(|message| (json(message)["seq"].as_u64().expect("seq"), message.gap_before))
        .collect();
    assert_eq!(seen, [(1, None), (2, None), (3, None), (7, Some(3)), (8, None)]);
    let feed = r#"feed="faults-sequence""#;
    assert_eq!(metric(&sidecar, "feedvisor_sequence_gaps_total", feed), 1.0);
    assert_eq!(metric(&sidecar, "feedvisor_sequence_missed_total", feed), 3.0);
    assert_eq!(metric(&sidecar, "feedvisor_sequence_duplicates_total", feed), 0.0);
    assert_eq!(
        next(&mut on_open, "first on_open").await,
        (0, r#"{"op":"resume","from":0}"#.into())
    );
    assert_eq!(
        next(&mut on_open, "second on_open").await,
        (1, r#"{"op":"resume","from":3}"#.into())
    );
    assert_eq!(feed_status(&sidecar, "faults-sequence").await.reconnects, 1);

    sidecar.stop().await;
    server.stop().await;
}
