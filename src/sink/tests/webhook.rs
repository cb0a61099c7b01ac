//! The webhook sink against a real actix-web server on 127.0.0.1.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

use super::*;
use crate::secret::Secret;
use crate::sink::test_support::*;

const WRITTEN: &str = "feedvisor_sink_messages_written_total";
const DROPPED: &str = "feedvisor_sink_messages_dropped_total";
const ERRORS: &str = "feedvisor_sink_errors_total";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Received {
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the server does and saw; shared with its worker thread.
#[derive(Default)]
struct Script {
    /// Statuses to answer with, in order; 200 once they are used up.
    statuses: Mutex<VecDeque<u16>>,
    /// Delays before answering, in order; `delay` once they are used up.
    delays: Mutex<VecDeque<Duration>>,
    /// The delay of the other requests.
    delay: Mutex<Duration>,
    /// Every request, in the order they arrived.
    received: Mutex<Vec<Received>>,
    /// Requests being answered now, and the most at any time.
    current: AtomicUsize,
    most: AtomicUsize,
}

impl Script {
    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// An HTTP server on a free loopback port that records every POST to `/hook`.
struct Endpoint {
    addr: SocketAddr,
    script: Arc<Script>,
    handle: ServerHandle,
}

impl Endpoint {
    fn start(script: Script) -> Endpoint {
        let script = Arc::new(script);
        let shared = web::Data::from(script.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(shared.clone()).route("/hook", web::post().to(answer))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Endpoint { addr, script, handle }
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/hook?token=in-the-url", self.addr)).expect("url")
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn answer(request: HttpRequest, body: Bytes, script: web::Data<Script>) -> HttpResponse {
    let now = script.current.fetch_add(1, Ordering::SeqCst) + 1;
    script.most.fetch_max(now, Ordering::SeqCst);
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    script.received.lock().expect("not poisoned").push(Received { content_type, headers, body });
    let delay = script.delays.lock().expect("not poisoned").pop_front();
    let delay = delay.unwrap_or(*script.delay.lock().expect("not poisoned"));
    let status = script.statuses.lock().expect("not poisoned").pop_front().unwrap_or(200);
    actix_rt::time::sleep(delay).await;
    script.current.fetch_sub(1, Ordering::SeqCst);
    let status = actix_web::http::StatusCode::from_u16(status).expect("a status");
    HttpResponse::build(status).body("ok")
}

fn config(
    endpoint: &Endpoint,
    batch: usize,
    max_in_flight: usize,
    timeout: Duration,
) -> WebhookSinkConfig {
    WebhookSinkConfig {
        url: endpoint.url(),
        batch,
        max_in_flight,
        timeout,
        headers: vec![
            ("Authorization".to_owned(), Secret::new("Bearer s3cret-value")),
            ("X-Source".to_owned(), Secret::new("feedvisor-test")),
        ],
    }
}

/// What `write_json_line` writes for a message, as a JSON value.
fn object(message: &FeedMessage) -> serde_json::Value {
    serde_json::from_slice(&json_lines(std::slice::from_ref(message))).expect("json")
}

#[actix::test]
async fn single_messages_are_posted_as_json_objects_with_the_configured_headers() {
    install_metrics();
    let endpoint = Endpoint::start(Script::default());
    let sink =
        WebhookSink::new("hook-single", config(&endpoint, 1, 1, Duration::from_secs(5))).start();
    let mut batches = Batches::new();
    let messages = numbered("stocks", 0, 3);

    sink.do_send(batches.deliver(messages.clone()));
    batches.finished().await;

    let received = endpoint.script.received();
    assert_eq!(received.len(), 3);
    for (request, message) in received.iter().zip(&messages) {
        let mut line = json_lines(std::slice::from_ref(message));
        line.pop();
        assert_eq!(request.body, Bytes::from(line), "the body is the message's JSON object");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer s3cret-value"));
        assert_eq!(request.header("x-source"), Some("feedvisor-test"));
    }
    assert_eq!(metric(WRITTEN, r#"subscriber="hook-single",sink="webhook""#), 3.0);
    endpoint.stop().await;
}

#[actix::test]
async fn batches_are_posted_as_json_arrays_of_up_to_batch_objects() {
    let endpoint = Endpoint::start(Script::default());
    let sink =
        WebhookSink::new("hook-arrays", config(&endpoint, 4, 1, Duration::from_secs(5))).start();
    let mut batches = Batches::new();
    let messages = numbered("stocks", 0, 10);

    sink.do_send(batches.deliver(messages.clone()));
    batches.finished().await;
    // One message alone is still an array when `batch` > 1.
    let single = numbered("stocks", 10, 1);
    sink.do_send(batches.deliver(single.clone()));
    batches.finished().await;

    let bodies: Vec<serde_json::Value> =
        endpoint.script.received().iter().map(Received::json).collect();
    let expected: Vec<serde_json::Value> =
        [&messages[0..4], &messages[4..8], &messages[8..10], &single[..]]
            .iter()
            .map(|chunk| serde_json::Value::Array(chunk.iter().map(object).collect()))
            .collect();
    assert_eq!(bodies, expected);
    endpoint.stop().await;
}

#[actix::test]
async fn a_batch_the_server_refuses_twice_is_delivered_on_the_third_try() {
    install_metrics();
    let script = Script::default();
    script.statuses.lock().expect("not poisoned").extend([500, 500]);
    let endpoint = Endpoint::start(script);
    let sink =
        WebhookSink::new("hook-retry", config(&endpoint, 5, 1, Duration::from_secs(5))).start();
    let mut batches = Batches::new();
    let messages = numbered("stocks", 0, 3);

    sink.do_send(batches.deliver(messages.clone()));
    batches.finished().await;

    let received = endpoint.script.received();
    assert_eq!(received.len(), 3, "two refusals and a success");
    let expected = serde_json::Value::Array(messages.iter().map(object).collect());
    assert!(received.iter().all(|request| request.json() == expected));
    let labels = r#"subscriber="hook-retry",sink="webhook""#;
    assert_eq!(metric(WRITTEN, labels), 3.0);
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="http_status""#)), 2.0);
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="http_status""#)), 0.0);
    endpoint.stop().await;
}

#[actix::test]
async fn a_server_that_keeps_refusing_gets_five_tries_then_the_messages_are_dropped_and_logged() {
    install_metrics();
    let logs = Logs::default();
    let _capture = logs.capture();
    let script = Script::default();
    script.statuses.lock().expect("not poisoned").extend([503; 5]);
    let endpoint = Endpoint::start(script);
    let sink =
        WebhookSink::new("hook-refused", config(&endpoint, 1, 1, Duration::from_secs(5))).start();
    let mut batches = Batches::new();

    sink.do_send(batches.deliver(numbered("stocks", 0, 1)));
    batches.finished().await;

    assert_eq!(endpoint.script.received().len(), 5);
    let labels = r#"subscriber="hook-refused",sink="webhook""#;
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="http_status""#)), 1.0);
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="http_status""#)), 5.0);
    assert_eq!(metric(WRITTEN, labels), 0.0);
    let logged = logs.text();
    assert!(logged.contains("gave up"), "{logged}");
    assert!(logged.contains("503"), "{logged}");
    assert!(!logged.contains("s3cret-value"), "a header value was logged: {logged}");
    assert!(!logged.contains("in-the-url"), "the URL was logged: {logged}");
    endpoint.stop().await;
}

#[actix::test]
async fn no_more_than_max_in_flight_requests_are_under_way_and_the_batch_is_held_until_all_are_done(
) {
    let script = Script::default();
    *script.delay.lock().expect("not poisoned") = Duration::from_millis(100);
    let endpoint = Endpoint::start(script);
    let sink =
        WebhookSink::new("hook-in-flight", config(&endpoint, 1, 3, Duration::from_secs(5))).start();
    let mut batches = Batches::new();

    sink.do_send(batches.deliver(numbered("stocks", 0, 12)));
    eventually("the first requests", || !endpoint.script.received().is_empty()).await;
    assert_eq!(batches.try_finished(), None, "the batch is held while its requests are under way");
    batches.finished().await;

    assert_eq!(endpoint.script.received().len(), 12);
    assert_eq!(endpoint.script.most.load(Ordering::SeqCst), 3);
    endpoint.stop().await;
}

#[actix::test]
async fn a_request_that_takes_longer_than_the_timeout_is_tried_again() {
    install_metrics();
    let script = Script::default();
    script.delays.lock().expect("not poisoned").push_back(Duration::from_secs(2));
    let endpoint = Endpoint::start(script);
    let sink =
        WebhookSink::new("hook-timeout", config(&endpoint, 1, 1, Duration::from_millis(300)))
            .start();
    let mut batches = Batches::new();

    sink.do_send(batches.deliver(numbered("stocks", 0, 1)));
    batches.finished().await;

    assert_eq!(endpoint.script.received().len(), 2);
    let labels = r#"subscriber="hook-timeout",sink="webhook""#;
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="timeout""#)), 1.0);
    assert_eq!(metric(WRITTEN, labels), 1.0);
    endpoint.stop().await;
}

#[actix::test]
async fn a_refused_connection_is_a_connect_error() {
    install_metrics();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let url = url::Url::parse(&format!("http://{addr}/hook")).expect("url");
    let sink_config =
        WebhookSinkConfig { timeout: Duration::from_secs(2), ..WebhookSinkConfig::new(url) };
    let sink = WebhookSink::new("hook-refused-connection", sink_config).start();
    let mut batches = Batches::new();

    sink.do_send(batches.deliver(numbered("stocks", 0, 1)));
    batches.finished().await;

    let labels = r#"subscriber="hook-refused-connection",sink="webhook""#;
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="connect""#)), 1.0);
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="connect""#)), 5.0);
}

#[test]
fn retry_delays_are_the_backoff_policy_s_five_tries_in_all() {
    let mut backoff = Backoff::new(RETRY_POLICY);
    let delays: Vec<Option<Duration>> =
        (0..6).map(|_| backoff.next_delay(&mut rand::rng(), None)).collect();
    let ms = |millis| Some(Duration::from_millis(millis));
    assert_eq!(delays, [ms(200), ms(400), ms(800), ms(1600), None, None]);
}

#[actix::test]
async fn a_refused_request_is_tried_as_often_as_the_retry_policy_says() {
    install_metrics();
    let script = Script::default();
    script.statuses.lock().expect("not poisoned").extend([503; 8]);
    let endpoint = Endpoint::start(script);
    let policy = ReconnectPolicy {
        kind: PolicyKind::Fixed,
        initial: Duration::from_millis(1),
        max_attempts: 2,
        ..RETRY_POLICY
    };
    let sink = WebhookSink::new("hook-policy", config(&endpoint, 1, 1, Duration::from_secs(5)))
        .retrying(policy)
        .start();
    let mut batches = Batches::new();

    sink.do_send(batches.deliver(numbered("stocks", 0, 1)));
    batches.finished().await;

    assert_eq!(endpoint.script.received().len(), 3, "the first try and two retries");
    let labels = r#"subscriber="hook-policy",sink="webhook""#;
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="http_status""#)), 3.0);
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="http_status""#)), 1.0);
    endpoint.stop().await;
}

#[test]
fn the_config_checks_itself_and_never_shows_a_secret() {
    let url = url::Url::parse("https://user:pw@hooks.example/in?key=abc").expect("url");
    let mut config = WebhookSinkConfig::new(url);
    assert!(config.validate().is_empty());
    assert_eq!(
        config.describe(),
        "webhook https://user:***@hooks.example/in?*** (batch 1, 4 in flight, timeout 10s)"
    );
    config.url = url::Url::parse("ftp://hooks.example/").expect("url");
    config.batch = 0;
    config.headers = vec![
        ("Bad Name".to_owned(), Secret::new("fine")),
        ("X-Token".to_owned(), Secret::new("s3cret\r\nInjected: yes")),
    ];
    let errors: Vec<String> = config.validate().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("url: unsupported scheme \"ftp\""), "{errors:?}");
    assert_eq!(errors[1], "batch: must be at least 1");
    assert!(errors[2].starts_with("headers.Bad Name: "), "{errors:?}");
    assert_eq!(errors[3], "headers.X-Token: the value contains a line break");
    let shown = serde_json::to_string(&config).expect("serialize") + &format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
}
