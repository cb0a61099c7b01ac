//! A transport that is not built in: registered with one line, it is named in
//! a config file and in `POST /feeds`, its own rules judge the feeds that use
//! it, and without it its scheme is refused like any unknown one.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{Sidecar, StartError, SubscriptionSpec};
use feedvisor_transport_api::{
    outbound_channel, ConnectFuture, ConnectRequest, Connection, DataFrame, Event, FeedOptions,
    OptionProblem, Transport,
};
use futures_util::{stream, FutureExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::{collect, http_post, Collector};

/// How many messages a toy connection delivers.
const TICKS: usize = 3;

/// `toy://NAME`: each connection delivers `NAME-1` to `NAME-3` as text, then
/// stays open and silent. It has no handshake and no pings.
struct ToyTransport;

impl Transport for ToyTransport {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["toy"]
    }

    fn check(&self, feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if !feed.subprotocols.is_empty() {
            problems.push(OptionProblem::new("subprotocols", "toy:// feeds have no handshake"));
        }
        if feed.protocol_pings {
            problems.push(OptionProblem::new("heartbeat", "toy:// feeds have no pings"));
        }
        problems
    }

    fn connect(&self, request: ConnectRequest) -> ConnectFuture {
        let name = request.url.host_str().unwrap_or_default().to_owned();
        let ticks: Vec<Event> = (1..=TICKS)
            .map(|tick| Event::Data(DataFrame::text(format!("{name}-{tick}"))))
            .collect();
        let (outbound, writer) = outbound_channel();
        // The writer lives as long as the inbound stream: the connection stays open.
        let inbound = stream::iter([Ok(ticks)]).chain(stream::pending().map(move |batch| {
            let _writer = &writer;
            batch
        }));
        async move { Ok(Connection { inbound: inbound.boxed_local(), outbound, protocol: None }) }
            .boxed_local()
    }
}

/// The built-in transports plus the toy one.
fn with_toy() -> TransportRegistry {
    let mut transports = TransportRegistry::with_defaults();
    transports.register(Arc::new(ToyTransport));
    transports
}

/// The config of one toy feed, `toys`.
const TOY_FEED: &str = "[[feeds]]\nname = \"toys\"\nurl = \"toy://tick\"\n";

/// A config file holding `text`, named after the test that uses it.
fn config_file(test: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("feedvisor-toy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{test}.toml"));
    std::fs::write(&path, text).expect("write the config");
    path
}

fn texts(messages: &[feedvisor::FeedMessage]) -> Vec<&str> {
    messages.iter().map(|message| message.text().expect("text")).collect()
}

#[actix::test]
async fn a_registered_transport_runs_feeds_from_a_config_file_and_its_reload() {
    let path = config_file("from-file", TOY_FEED);
    let config = Config::load(&path, &with_toy()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.feeds[0].heartbeat, None, "the toy has no pings: the default is off");
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let sidecar = Sidecar::builder(config)
        .without_http()
        .config_path(&path)
        .transport(Arc::new(ToyTransport))
        .subscriber(SubscriptionSpec::new("all", ["*"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("started");
    let messages = collect(&mut receiver, TICKS).await;
    assert_eq!(texts(&messages), ["tick-1", "tick-2", "tick-3"]);
    assert!(messages.iter().all(|message| &*message.feed == "toys"));

    // A reload is checked with the sidecar's transports, the toy among them.
    let more = format!("{TOY_FEED}[[feeds]]\nname = \"more\"\nurl = \"toy://more\"\n");
    std::fs::write(&path, more).expect("rewrite the config");
    let report = sidecar.reload().await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        (report.feeds_added, report.feeds_unchanged),
        (vec!["more".to_owned()], vec!["toys".to_owned()])
    );
    let messages = collect(&mut receiver, TICKS).await;
    assert_eq!(texts(&messages), ["more-1", "more-2", "more-3"]);
    sidecar.stop().await;
}

#[actix::test]
async fn without_the_transport_its_scheme_is_refused_at_load_and_at_start() {
    let path = config_file("refused", TOY_FEED);
    let error = Config::load(&path, &TransportRegistry::with_defaults()).expect_err("no toy");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: feeds[0] (toys).url: unsupported scheme \"toy\": use ws://, wss://, tcp:// or tls://",
            path.display()
        )
    );
    // Checked with the toy, started without it: start refuses before anything runs.
    let config = Config::load(&path, &with_toy()).expect("valid with the toy");
    match Sidecar::builder(config).without_http().start().await {
        Err(StartError::Config(error)) => {
            assert_eq!(error.errors[0].path, "feeds[0] (toys).url");
            assert!(error.errors[0].message.contains("\"toy\""), "{error}");
        }
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("a feed whose scheme nobody serves must not start"),
    }
}

#[actix::test]
async fn a_registered_transport_runs_a_feed_posted_over_http() {
    let config = Config::from_toml_str(
        "[http]\nlisten = \"127.0.0.1:0\"\n",
        "toy-http.toml".as_ref(),
        &TransportRegistry::with_defaults(),
    )
    .expect("valid");
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let sidecar = Sidecar::builder(config)
        .transport(Arc::new(ToyTransport))
        .subscriber(SubscriptionSpec::new("all", ["*"]), Collector(sender).start().recipient())
        .start()
        .await
        .expect("started");
    let addr = sidecar.http_addr().expect("admin server");
    let post = |body: serde_json::Value| {
        http_post(addr, "/feeds", Some("application/json"), body.to_string())
    };

    let (status, body) = post(json!({ "name": "posted", "url": "toy://posted" })).await;
    assert_eq!(status, 201, "{body}");
    let messages = collect(&mut receiver, TICKS).await;
    assert_eq!(texts(&messages), ["posted-1", "posted-2", "posted-3"]);

    // The toy's own rule, through the supervisor's registry.
    let refused = json!({ "name": "shaken", "url": "toy://shaken", "subprotocols": ["v1"] });
    let (status, body) = post(refused).await;
    assert_eq!(status, 400, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(answer["fields"][0]["path"], "subprotocols");
    assert_eq!(answer["fields"][0]["message"], "toy:// feeds have no handshake");

    // memory:// is a test transport: not served unless registered.
    let (status, body) = post(json!({ "name": "mem", "url": "memory://mem" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(
            r#"unsupported scheme \"memory\": use ws://, wss://, tcp://, tls:// or toy://"#
        ),
        "{body}"
    );
    sidecar.stop().await;
}
