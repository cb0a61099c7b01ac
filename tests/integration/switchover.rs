//! Replacing a sequenced feed while messages flow: subscribers see every
//! number at most once and in order, and whatever they never see is counted
//! as a gap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{FeedMessage, Sidecar, SubscriptionSpec};
use feedvisor_transport_api::{DataFrame, Event, Outbound};
use feedvisor_transport_memory::{MemoryHub, MemoryListener, MemoryPeer, MemoryTransport};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::broadcast::BroadcastUpstream;
use crate::support::{eventually, metric, with_memory, Collector, DEADLINE};

/// The numbers a subscriber has received, and each message's `gap_before`.
#[derive(Default)]
struct Received {
    numbers: Vec<u64>,
    gaps: Vec<u64>,
    /// Discontinuity events: how many messages each says were missed.
    announced: Vec<Option<u64>>,
}

impl Received {
    fn take(&mut self, message: &FeedMessage) {
        if let feedvisor::FeedEvent::Discontinuity(event) = message.event() {
            self.announced.push(event.missed);
            return;
        }
        let value: Value = serde_json::from_slice(&message.payload).expect("a JSON message");
        self.numbers.push(value["seq"].as_u64().expect("a sequence number"));
        self.gaps.extend(message.gap_before);
    }

    /// Receives until `done` holds, failing the test at the deadline.
    async fn until(
        &mut self,
        receiver: &mut mpsc::UnboundedReceiver<FeedMessage>,
        what: &str,
        done: impl Fn(&Received) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(self) {
            let next = tokio::time::timeout_at(deadline, receiver.recv()).await;
            let message = next
                .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
                .expect("collector alive");
            self.take(&message);
        }
    }
}

fn switch_config(upstream: &BroadcastUpstream, path: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         [[feeds]]\nname = \"switch\"\nurl = \"{}\"\nsequence = \"/seq\"\n\
         heartbeat = {{ interval = \"0s\" }}\n",
        upstream.url(path)
    )
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("feedvisor-switch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("written");
    path
}

async fn put_feed(addr: std::net::SocketAddr, name: &str, body: &Value) -> u16 {
    let client = awc::Client::default();
    let request = client.put(format!("http://{addr}/feeds/{name}")).send_json(body);
    let response =
        tokio::time::timeout(DEADLINE, request).await.expect("answer in time").expect("sent");
    response.status().as_u16()
}

#[actix::test]
async fn replacing_a_sequenced_feed_repeatedly_neither_repeats_nor_hides_a_number() {
    let upstream = BroadcastUpstream::start(Duration::from_millis(2));
    let path = temp_file("switch.toml", &switch_config(&upstream, "v0"));
    let config = Config::load(&path, &TransportRegistry::with_defaults()).expect("valid");
    let (sender, mut receiver) = mpsc::unbounded_channel::<FeedMessage>();
    let sidecar = Sidecar::builder(config)
        .config_path(&path)
        .subscriber(SubscriptionSpec::new("all", ["switch"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("started");
    let addr = sidecar.http_addr().expect("http");
    let mut received = Received::default();
    received.until(&mut receiver, "the first messages", |r| r.numbers.len() >= 20).await;

    // A storm of reloads that change the feed, one right after the other.
    for round in 1..=10 {
        std::fs::write(&path, switch_config(&upstream, &format!("reload-{round}")))
            .expect("written");
        let report = sidecar.reload().await.expect("reloaded");
        assert_eq!(report.feeds_changed, ["switch"]);
    }
    let seen = received.numbers.len();
    received
        .until(&mut receiver, "messages after the reloads", |r| r.numbers.len() >= seen + 20)
        .await;

    // Then replacements through the admin API, in a row.
    for round in 1..=10 {
        let feed = json!({
            "url": upstream.url(&format!("put-{round}")),
            "sequence": "/seq",
            "heartbeat": { "interval": "0s" },
        });
        assert_eq!(put_feed(addr, "switch", &feed).await, 200);
    }
    // While messages still flow, the last replacement takes over and every
    // connection before it is closed.
    eventually(DEADLINE, "the replaced connections to close", || async {
        (*upstream.open.lock().expect("open paths") == ["/put-10"]).then_some(())
    })
    .await;
    let seen = received.numbers.len();
    received
        .until(&mut receiver, "messages after the PUTs", |r| r.numbers.len() >= seen + 20)
        .await;

    let last = upstream.stop_broadcasting();
    received.until(&mut receiver, "the last number", |r| r.numbers.last() >= Some(&last)).await;

    let numbers = &received.numbers;
    let repeated_or_reordered: Vec<&[u64]> =
        numbers.windows(2).filter(|pair| pair[0] >= pair[1]).collect();
    assert!(
        repeated_or_reordered.is_empty(),
        "{} numbers repeated or out of order, the first: {:?}",
        repeated_or_reordered.len(),
        &repeated_or_reordered[..repeated_or_reordered.len().min(10)]
    );
    let first = numbers[0];
    let range = last - first + 1;
    let delivered = numbers.len() as u64;
    let missed = metric(&sidecar, "feedvisor_sequence_missed_total", r#"feed="switch""#);
    let gaps = metric(&sidecar, "feedvisor_sequence_gaps_total", r#"feed="switch""#);
    assert_eq!(
        delivered + missed as u64,
        range,
        "{delivered} delivered and {missed} counted missed of {first}..={last}"
    );
    assert_eq!(received.gaps.iter().sum::<u64>(), missed as u64, "each gap is marked");
    assert_eq!(received.gaps.len() as u64, gaps as u64);

    sidecar.stop().await;
    upstream.handle.stop(false).await;
}

fn numbered(seqs: &[u64]) -> Vec<Event> {
    seqs.iter().map(|seq| Event::Data(DataFrame::text(format!(r#"{{"seq":{seq}}}"#)))).collect()
}

/// Waits for the close frame the sidecar sends when it retires a connection.
async fn closed_by_the_sidecar(peer: &mut MemoryPeer) {
    loop {
        let next = tokio::time::timeout(DEADLINE, peer.next_outbound()).await;
        match next.expect("a close in time") {
            Some(Outbound::Close(_)) | None => return,
            Some(_) => {}
        }
    }
}

async fn accept(listener: &mut MemoryListener) -> MemoryPeer {
    let next = tokio::time::timeout(DEADLINE, listener.accept()).await;
    next.expect("a connection in time").expect("listener open")
}

fn feed_json(max_message_size: u64) -> Value {
    json!({
        "url": "memory://handover",
        "sequence": "/seq",
        "handshake_timeout": "200ms",
        "max_message_size": max_message_size,
        "heartbeat": { "interval": "0s" },
    })
}

#[actix::test]
async fn a_replacement_takes_over_a_sequenced_feed_once_it_proves_continuity() {
    let hub = MemoryHub::new();
    let mut listener = hub.listen("handover");
    let text = "[[feeds]]\nname = \"handover\"\nurl = \"memory://handover\"\nsequence = \"/seq\"\n\
                handshake_timeout = \"200ms\"\nheartbeat = { interval = \"0s\" }\n";
    let config =
        Config::from_toml_str(text, Path::new("handover.toml"), &with_memory(&hub)).expect("valid");
    let (sender, mut receiver) = mpsc::unbounded_channel::<FeedMessage>();
    let sidecar = Sidecar::builder(config)
        .without_http()
        .transport(Arc::new(MemoryTransport::new(hub.clone())))
        .subscriber(
            SubscriptionSpec::new("all", ["handover"]),
            Collector(sender).start().recipient(),
        )
        .start()
        .await
        .expect("started");
    let mut received = Received::default();
    let mut first = accept(&mut listener).await;
    assert!(first.send_batch(numbered(&[1, 2, 3])));
    received.until(&mut receiver, "1 to 3", |r| r.numbers.len() == 3).await;

    // The replacement starts behind: what it repeats is withheld, and proving
    // that it continues retires the first connection.
    sidecar.replace_feed("handover", feed_json(1 << 20)).await.expect("replaced");
    let mut second = accept(&mut listener).await;
    assert!(second.send_batch(numbered(&[2, 3, 4])));
    closed_by_the_sidecar(&mut first).await;
    received.until(&mut receiver, "4", |r| r.numbers.len() == 4).await;

    // The next replacement is ahead of an open, quiet owner: it waits, and
    // after the bounded wait it delivers, the numbers never seen counted.
    sidecar.replace_feed("handover", feed_json(2 << 20)).await.expect("replaced");
    let third = accept(&mut listener).await;
    assert!(third.send_batch(numbered(&[10])));
    closed_by_the_sidecar(&mut second).await;
    assert!(third.send_batch(numbered(&[11, 12])));
    received.until(&mut receiver, "11 and 12", |r| r.numbers.len() == 6).await;

    assert_eq!(received.numbers, [1, 2, 3, 4, 11, 12]);
    assert_eq!(received.gaps, [6], "5 to 10 never reached subscribers");
    assert_eq!(received.announced, [Some(6)], "and subscribers were told, in-band");
    let labels = r#"feed="handover""#;
    assert_eq!(metric(&sidecar, "feedvisor_sequence_missed_total", labels), 6.0);
    assert_eq!(metric(&sidecar, "feedvisor_sequence_gaps_total", labels), 1.0);
    assert_eq!(metric(&sidecar, "feedvisor_sequence_duplicates_total", labels), 2.0);
    sidecar.stop().await;
}
