//! The sidecar embedded as a library, against a real actix-web-actors upstream.

use std::path::Path;

use actix::prelude::*;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{FeedState, Sidecar, SubscriptionSpec};
use tokio::sync::mpsc;

use crate::support::{collect, http_get, sample, Collector, Upstream};

#[actix::test]
async fn subscriber_receives_every_message_in_order_and_metrics_count_them() {
    const COUNT: usize = 500;
    let upstream = Upstream::start(COUNT);
    let config = Config::from_toml_str(
        &format!(
            r#"
            [http]
            listen = "127.0.0.1:0"
            [[feeds]]
            name = "library-sequence"
            url = "ws://{}/sequence"
            topic = "/symbol"
            "#,
            upstream.addr
        ),
        Path::new("library-test.toml"),
        &TransportRegistry::with_defaults(),
    )
    .expect("valid config");
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let collector = Collector(sender).start();
    let sidecar = Sidecar::builder(config)
        .subscriber(SubscriptionSpec::new("collector", ["library-*"]), collector.recipient())
        .start()
        .await
        .expect("sidecar started");

    let messages = collect(&mut receiver, COUNT).await;
    for (seq, message) in messages.iter().enumerate() {
        let value: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("JSON payload");
        assert_eq!(value["seq"], seq, "message {seq} out of order");
        assert_eq!(message.topic.as_deref(), Some(format!("SYM{}", seq % 3).as_str()));
        assert_eq!(&*message.feed, "library-sequence");
    }

    let addr = sidecar.http_addr().expect("admin server running");
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let labels = r#"feed="library-sequence",kind="text""#;
    assert_eq!(sample(&metrics, "feedvisor_messages_received_total", labels), Some(COUNT as f64));
    assert_eq!(sample(&metrics, "feedvisor_feed_up", r#"feed="library-sequence""#), Some(1.0));
    let latency_count = sample(
        &metrics,
        "feedvisor_delivery_latency_seconds_count",
        r#"feed="library-sequence",subscriber="collector""#,
    );
    // One sample per delivered batch: at least one, at most one per message.
    assert!(
        latency_count.is_some_and(|count| count >= 1.0 && count <= COUNT as f64),
        "{latency_count:?}"
    );

    for name in dashboard_metric_names() {
        let rendered = metrics.lines().any(|line| line.starts_with(&format!("{name}{{")));
        assert!(rendered, "the dashboard uses {name}, which /metrics does not render");
    }

    let (status, feeds) = http_get(addr, "/feeds").await;
    assert_eq!(status, 200);
    let feeds: serde_json::Value = serde_json::from_str(&feeds).expect("JSON");
    let feed = &feeds[0];
    assert_eq!(feed["name"], "library-sequence");
    assert_eq!(feed["state"], "open");
    assert_eq!(feed["mode"], "message");
    assert_eq!(feed["messages_in"], COUNT);
    assert!(feed["bytes_in"].as_u64().expect("number") > 0);
    assert_eq!(feed["last_error"], serde_json::Value::Null);

    let (status, _) = http_get(addr, "/feeds/nope").await;
    assert_eq!(status, 404);
    let (status, health) = http_get(addr, "/healthz").await;
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));

    sidecar.stop().await;
    upstream.stop().await;
}

#[actix::test]
async fn feed_comes_back_when_the_upstream_restarts_on_the_same_port() {
    let upstream = Upstream::start(1);
    let addr = upstream.addr;
    let config = Config::from_toml_str(
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[[feeds]]\nname = \"restart\"\nurl = \"ws://{addr}/sequence\"\n"
        ),
        Path::new("restart-test.toml"), &TransportRegistry::with_defaults(),
    )
    .expect("valid config");
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let sidecar = Sidecar::builder(config)
        .subscriber(SubscriptionSpec::new("c", ["restart"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("sidecar started");
    collect(&mut receiver, 1).await;
    upstream.stop().await;
    // The feed notices the loss, backs off and reconnects to the new server.
    let upstream = Upstream::start_on(addr, 1);
    collect(&mut receiver, 1).await;
    let feeds = sidecar.feeds().await;
    assert_eq!(feeds[0].state, FeedState::Open);
    assert!(feeds[0].last_error.is_some());
    sidecar.stop().await;
    upstream.stop().await;
}

/// Every `feedvisor_*` series name the shipped Grafana dashboard queries.
fn dashboard_metric_names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/feedvisor.json");
    let text = std::fs::read_to_string(path).expect("dashboard readable");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (start, _) in expr.match_indices("feedvisor_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 6, "the dashboard queries too few metrics: {names:?}");
    names.sort();
    names.dedup();
    names
}
