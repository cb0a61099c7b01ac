//! The connection actor with a scripted credential provider, over the
//! in-memory transport with paused time: what is dialed, when the provider
//! runs again, and what a rejection or a failed run leads to.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use feedvisor_transport_api::{close_code, CloseFrame, Outbound, TransportError};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::super::tests::{next_outbound, since, start_with, Harness};
use super::super::Reconnect;
use crate::credentials::{FetchError, Provider};
use crate::metrics::{CREDENTIALS_EXPIRES_IN, CREDENTIALS_FETCHES, CREDENTIALS_REJECTIONS};

/// A provider that gives what the test scripted, then fresh tokens
/// (`t1`, `t2`, ... by run) that live `life`.
struct Scripted {
    script: RefCell<VecDeque<Result<String, FetchError>>>,
    runs: Cell<usize>,
    life: Option<Duration>,
}

impl Scripted {
    fn new(life: Option<Duration>) -> Rc<Scripted> {
        Rc::new(Scripted { script: RefCell::new(VecDeque::new()), runs: Cell::new(0), life })
    }

    fn then(self: &Rc<Self>, output: Result<String, FetchError>) -> Rc<Self> {
        self.script.borrow_mut().push_back(output);
        self.clone()
    }

    fn runs(&self) -> usize {
        self.runs.get()
    }
}

/// A provider's output naming `token`, expiring `life` from now (real clock, as providers do).
fn token_output(token: &str, life: Option<Duration>) -> String {
    let expires = life.map(|life| {
        format!(r#","expires_at":"{}""#, humantime::format_rfc3339_millis(SystemTime::now() + life))
    });
    format!(
        r#"{{"headers":{{"Authorization":"Bearer {token}"}},"values":{{"token":"{token}"}}{}}}"#,
        expires.unwrap_or_default()
    )
}

impl Provider for Scripted {
    fn run(&self) -> LocalBoxFuture<'static, Result<Vec<u8>, FetchError>> {
        self.runs.set(self.runs.get() + 1);
        let output = self
            .script
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Ok(token_output(&format!("t{}", self.runs.get()), self.life)));
        async move { output.map(String::into_bytes) }.boxed_local()
    }

    fn describe(&self) -> &str {
        "exec scripted"
    }
}

/// Starts a feed whose provider is `provider`, with `credentials` fields
/// added to its table and `extra` lines for the feed; fixed 1 s reconnects.
async fn start(name: &str, credentials: &str, extra: &str, provider: &Rc<Scripted>) -> Harness {
    let provider: Rc<dyn Provider> = provider.clone();
    let feed = format!(
        "credentials = {{ exec = [\"scripted\"]{credentials} }}\n\
         reconnect = {{ policy = \"fixed\", initial = \"1s\", jitter = \"none\" }}\n{extra}"
    );
    start_with(name, &feed, move |actor| actor.with_credential_provider(provider)).await
}

fn authorization(peer: &feedvisor_transport_memory::MemoryPeer) -> Option<String> {
    let headers = &peer.request().headers;
    headers.iter().find(|(name, _)| name == "Authorization").map(|(_, value)| value.clone())
}

async fn text(peer: &mut feedvisor_transport_memory::MemoryPeer) -> String {
    match next_outbound(peer).await {
        Outbound::Text(text) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

fn failed(provider: &str) -> FetchError {
    FetchError::ExitStatus { provider: provider.to_owned(), status: "exit status: 1".to_owned() }
}

#[actix::test]
async fn the_connect_dials_with_what_the_provider_gave_and_fills_on_open() {
    let provider = Scripted::new(None);
    let extra = "on_open = ['{\"op\":\"auth\",\"token\":\"{{credentials.token}}\"}']\n\
                 headers = { Authorization = \"Bearer configured\", X-Other = \"kept\" }\n";
    let mut h = start("cred-dial", "", extra, &provider).await;
    let mut peer = h.accept().await;
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t1"));
    assert!(peer
        .request()
        .headers
        .iter()
        .any(|(name, value)| name == "X-Other" && value == "kept"));
    assert_eq!(text(&mut peer).await, r#"{"op":"auth","token":"t1"}"#);
    assert_eq!(provider.runs(), 1);
    let status = h.shared.credentials().expect("a credentials status");
    assert_eq!((status.provider, status.fetches, status.failures), ("exec", 1, 0));
    assert_eq!(h.metric(CREDENTIALS_FETCHES, ",result=\"ok\""), Some(1.0));
    assert_eq!(h.metric(CREDENTIALS_EXPIRES_IN, ""), None, "no expires_at, no gauge");
}

#[actix::test]
async fn a_refresh_at_80_percent_of_the_life_keeps_the_connection_and_feeds_later_sends() {
    let provider = Scripted::new(Some(Duration::from_secs(10)));
    let extra = "heartbeat = { interval = \"9s\", timeout = \"5s\", message = \"ping {{credentials.token}}\", reply = \"pong\" }\n";
    let mut h = start("cred-refresh", "", extra, &provider).await;
    let mut peer = h.accept().await;
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t1"));
    let left = h.metric(CREDENTIALS_EXPIRES_IN, "").expect("the expiry gauge");
    assert!(left > 0.0 && left <= 10.0, "{left}");
    tokio::time::sleep(Duration::from_millis(7900)).await;
    assert_eq!(provider.runs(), 1, "not before 80% of the 10 s life");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(provider.runs(), 2, "refreshed at 8 s");
    // The open connection stays; the heartbeat at 9 s carries the new value.
    assert_eq!(text(&mut peer).await, "ping t2");
    assert_eq!(h.hub.attempts("cred-refresh"), 1);
    // The next connect runs the provider again and dials with its answer.
    h.actor.send(Reconnect).await.expect("actor alive");
    let peer = h.accept().await;
    assert_eq!(provider.runs(), 3);
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t3"));
}

#[actix::test]
async fn refresh_as_a_period_runs_the_provider_every_period_while_open() {
    let provider = Scripted::new(None);
    let mut h = start("cred-period", ", refresh = \"20m\"", "", &provider).await;
    let _peer = h.accept().await;
    tokio::time::sleep(Duration::from_secs(20 * 60 - 1)).await;
    assert_eq!(provider.runs(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(provider.runs(), 2);
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert_eq!(provider.runs(), 3);
    assert_eq!(h.hub.attempts("cred-period"), 1, "the connection was kept");
}

#[actix::test]
async fn a_rejected_handshake_runs_the_provider_once_and_never_dials_the_same_credentials() {
    let same = token_output("tB", None);
    let provider = Scripted::new(None)
        .then(Ok(token_output("tA", None)))
        .then(Ok(same.clone()))
        .then(Ok(same));
    let name = "cred-401";
    let mut h = start(name, "", "", &provider).await;
    let first = h.accept().await;
    assert_eq!(authorization(&first).as_deref(), Some("Bearer tA"));
    h.hub.fail_next(name, TransportError::HandshakeStatus { status: 401, retry_after: None });
    first.fail(TransportError::Closed);
    let lost = tokio::time::Instant::now();
    let peer = h.accept().await;
    // tB refused with 401 at 1 s; tB again at 2 s is not dialed; t4 dialed at 3 s.
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t4"));
    assert_eq!(since(lost), Duration::from_secs(3));
    assert_eq!(provider.runs(), 4);
    assert_eq!(h.hub.attempts(name), 3, "tB was never dialed twice");
    assert_eq!(h.metric(CREDENTIALS_REJECTIONS, ",reason=\"status\""), Some(1.0));
    assert_eq!(h.metric(CREDENTIALS_FETCHES, ",result=\"unchanged\""), Some(1.0));
    let status = h.shared.credentials().expect("a credentials status");
    assert_eq!(status.rejections, 1);
    assert_eq!(status.last_rejection.as_deref(), Some("handshake answered HTTP 401"));
}

#[actix::test]
async fn a_close_code_the_feed_names_is_a_rejection_and_fresh_credentials_follow() {
    let provider = Scripted::new(None);
    let rejected = ", rejected = { close_codes = [4001] }";
    let mut h = start("cred-close", rejected, "", &provider).await;
    let peer = h.accept().await;
    peer.close(4001, "token expired");
    let peer = h.accept().await;
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t2"));
    assert_eq!(provider.runs(), 2, "one run between the rejection and the next attempt");
    assert_eq!(h.metric(CREDENTIALS_REJECTIONS, ",reason=\"close_code\""), Some(1.0));
    // A close code the feed does not name is not a rejection (the provider still runs before the attempt).
    peer.close(1001, "going away");
    let _peer = h.accept().await;
    assert_eq!(h.metric(CREDENTIALS_REJECTIONS, ",reason=\"close_code\""), Some(1.0));
    assert_eq!(provider.runs(), 3);
}

#[actix::test]
async fn a_reply_the_feed_names_closes_and_reconnects_with_fresh_credentials() {
    let provider = Scripted::new(None);
    let rejected =
        ", rejected = { reply = { pointer = \"/error\", contains = \"token is expired\" } }";
    let mut h = start("cred-reply", rejected, "", &provider).await;
    let mut peer = h.accept().await;
    // Not a rejection: the text is elsewhere.
    peer.send_text(r#"{"note":"token is expired"}"#);
    peer.send_text(r#"{"error":"token is expired"}"#);
    assert_eq!(
        next_outbound(&mut peer).await,
        Outbound::Close(Some(CloseFrame::new(
            close_code::NORMAL,
            "credentials rejected by the upstream's reply"
        )))
    );
    let peer = h.accept().await;
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t2"));
    assert_eq!(h.metric(CREDENTIALS_REJECTIONS, ",reason=\"reply\""), Some(1.0));
}

#[actix::test]
async fn failed_runs_back_off_by_the_reconnect_policy_and_are_counted() {
    let timeout = FetchError::Timeout {
        provider: "exec scripted".to_owned(),
        after: Duration::from_secs(10),
        killed: ": killed",
    };
    let provider = Scripted::new(None).then(Err(failed("exec scripted"))).then(Err(timeout));
    let mut h = start("cred-fail", "", "", &provider).await;
    let start = tokio::time::Instant::now();
    let peer = h.accept().await;
    assert_eq!(since(start), Duration::from_secs(2), "two 1 s delays");
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t3"));
    assert_eq!(h.hub.attempts("cred-fail"), 1, "no attempt without credentials");
    assert_eq!(h.metric(CREDENTIALS_FETCHES, ",result=\"exit_status\""), Some(1.0));
    assert_eq!(h.metric(CREDENTIALS_FETCHES, ",result=\"timeout\""), Some(1.0));
    let status = h.shared.credentials().expect("a credentials status");
    assert_eq!((status.fetches, status.failures), (1, 2));
    let failure = status.last_failure.unwrap_or_default();
    assert!(failure.contains("did not finish within 10s: killed"), "{failure}");
}

#[actix::test]
async fn credentials_that_arrive_expired_are_never_dialed() {
    let expired = format!(
        r#"{{"values":{{}},"expires_at":"{}"}}"#,
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60))
    );
    let provider = Scripted::new(None).then(Ok(expired));
    let mut h = start("cred-expired", "", "", &provider).await;
    let peer = h.accept().await;
    assert_eq!(authorization(&peer).as_deref(), Some("Bearer t2"));
    assert_eq!(h.hub.attempts("cred-expired"), 1);
    assert_eq!(h.metric(CREDENTIALS_FETCHES, ",result=\"expired\""), Some(1.0));
}

#[actix::test]
async fn a_failed_refresh_keeps_the_connection_and_is_retried_on_the_policy_delay() {
    let provider = Scripted::new(Some(Duration::from_secs(10)));
    let mut h = start("cred-refresh-fail", "", "", &provider).await;
    let _peer = h.accept().await;
    provider.then(Err(failed("exec scripted")));
    tokio::time::sleep(Duration::from_millis(8100)).await;
    assert_eq!(provider.runs(), 2, "the refresh at 8 s failed");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(provider.runs(), 3, "retried 1 s later");
    assert_eq!(h.hub.attempts("cred-refresh-fail"), 1);
    let status = h.shared.credentials().expect("a credentials status");
    assert_eq!((status.fetches, status.failures), (2, 1));
}

#[actix::test]
async fn a_url_the_provider_gives_is_dialed_and_kept_out_of_errors() {
    let url = "memory://cred-hide/listen/key-s3cret";
    let provider = Scripted::new(None).then(Ok(format!(r#"{{"url":"{url}"}}"#)));
    let mut h = start("cred-hide", "", "", &provider).await;
    let first = h.accept().await;
    assert_eq!(first.request().url.as_str(), url);
    // The connection breaks with an error naming the URL it was dialed with.
    first.fail(TransportError::Io(format!("reading {url} failed")));
    let _second = h.accept().await;
    let error = h.shared.last_error().unwrap_or_default();
    assert_eq!(error, "i/o error: reading <the url from credentials> failed");
}
