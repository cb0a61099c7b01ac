//! The webhook sink (`sink = "webhook"`): messages POSTed to a URL.
//!
//! With `batch = 1` each request's body is one message's JSON object; with
//! `batch > 1` it is a JSON array of up to `batch` objects, cut from one
//! delivered batch (a request never waits for more messages to fill up: the
//! batches grow by themselves when the endpoint is slower than the
//! feed, since what arrives meanwhile is delivered as one batch). Every
//! request has `Content-Type: application/json` and the configured headers,
//! whose values are secrets: they are marked sensitive and never logged.
//!
//! At most `max_in_flight` requests are under way at once, each bounded by
//! `timeout` (connecting, sending and reading the answer). A request that
//! fails (an error, a timeout, or any status other than 2xx, including
//! redirects, which are not followed so that the headers never go to
//! another host) is tried again after 200 ms, then 400 ms, doubling up to
//! 10 s, five tries in all; then its messages are dropped, counted
//! (`feedvisor_sink_messages_dropped_total`, the last failure as `reason`)
//! and logged. Every failed try counts in `feedvisor_sink_errors_total`.
//!
//! The sink holds each [`Deliver`] until all of its requests are done, with
//! its mailbox closed (`ctx.wait`), so no next batch comes
//! meanwhile and a slow endpoint fills the subscriber's inbox, where its
//! overflow policy applies. A stopping sink finishes the requests of the
//! batch it holds first.
//!
//! `awc::Client` is not `Send`, so the client is built in `started`, on the
//! actor's own arbiter, with rustls (ring, the webpki roots, HTTP/1.1) like
//! the WebSocket transport's.

use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use awc::http::StatusCode;
use awc::Client;
use bytes::Bytes;
use feedvisor_transport_api::TransportError;
use futures_util::StreamExt;

use crate::config::{SinkConfig, SinkKind};
use crate::delivery::{Deliver, FeedMessage};
use crate::metrics::SinkMetrics;
use crate::sink::write_json_line;

/// The delay before the second try of a request.
const RETRY_INITIAL: Duration = Duration::from_millis(200);
/// The longest delay between two tries.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Tries per request, the first included.
const MAX_ATTEMPTS: u32 = 5;
/// How much of an answer's body is read (then discarded) to keep the connection reusable.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Failure kinds (metric labels): the answer was not 2xx.
const HTTP_STATUS: &str = "http_status";
/// No complete answer within `timeout`.
const TIMEOUT: &str = "timeout";
/// The connection could not be made.
const CONNECT: &str = "connect";
/// Sending the request or reading the answer failed.
const REQUEST: &str = "request";
/// Every failure kind.
const FAILURES: [&str; 4] = [HTTP_STATUS, TIMEOUT, CONNECT, REQUEST];

/// Why one try of a request failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The server answered with a status other than 2xx.
    #[error("the server answered {0}")]
    Status(StatusCode),
    /// No complete answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Another error while sending or reading.
    #[error("request failed: {0}")]
    Request(String),
}

impl Failure {
    /// The metric label.
    fn kind(&self) -> &'static str {
        match self {
            Failure::Status(_) => HTTP_STATUS,
            Failure::Timeout(_) => TIMEOUT,
            Failure::Connect(_) => CONNECT,
            Failure::Request(_) => REQUEST,
        }
    }
}

impl From<awc::error::SendRequestError> for Failure {
    fn from(error: awc::error::SendRequestError) -> Self {
        use awc::error::SendRequestError;
        match error {
            SendRequestError::Timeout => Failure::Timeout(Duration::ZERO),
            SendRequestError::Connect(error) => Failure::Connect(error.to_string()),
            other => Failure::Request(other.to_string()),
        }
    }
}

/// Where and how to POST.
struct Target {
    /// The URL (never logged: it may carry a token).
    url: String,
    /// Extra headers; the values are marked sensitive.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Messages per request.
    batch: usize,
    /// Requests under way at once.
    max_in_flight: usize,
    /// How long one try may take.
    timeout: Duration,
}

/// POSTs messages to a URL, one object or an array of up to `batch` per request.
pub struct WebhookSink {
    /// The subscriber's name, for logs and metric labels.
    name: Rc<str>,
    /// `None` if the sink was given another sink's config (it then stops at start).
    target: Option<Rc<Target>>,
    /// Built in `started`: it is not `Send`.
    client: Option<Client>,
    /// Written, error and drop counters.
    metrics: Rc<SinkMetrics>,
}

impl WebhookSink {
    /// A sink named `name` with the settings of `sink` (a [`SinkConfig::Webhook`]).
    pub fn new(name: &str, sink: SinkConfig) -> Self {
        let metrics = SinkMetrics::new(name, SinkKind::Webhook.as_str(), &FAILURES, &FAILURES);
        let target = match sink {
            SinkConfig::Webhook { url, batch, max_in_flight, timeout, headers } => {
                let headers = headers
                    .iter()
                    .filter_map(|(name_text, secret)| {
                        let header = HeaderName::from_bytes(name_text.as_bytes());
                        let value = HeaderValue::from_str(secret.expose());
                        match (header, value) {
                            (Ok(header), Ok(mut value)) => {
                                value.set_sensitive(true);
                                Some((header, value))
                            }
                            // The value is not shown: it is a secret.
                            _ => {
                                tracing::error!(
                                    subscriber = %name,
                                    header = %name_text,
                                    "webhook sink leaves out an invalid header"
                                );
                                None
                            }
                        }
                    })
                    .collect();
                Some(Rc::new(Target {
                    url: url.to_string(),
                    headers,
                    batch: batch.max(1),
                    max_in_flight: max_in_flight.max(1),
                    timeout,
                }))
            }
            _ => None,
        };
        WebhookSink { name: name.into(), target, client: None, metrics: Rc::new(metrics) }
    }
}

impl Actor for WebhookSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(target) = &self.target else {
            let subscriber = &self.name;
            tracing::error!(%subscriber, "webhook sink started without a webhook config; stopping");
            ctx.stop();
            return;
        };
        match build_client(target) {
            Ok(client) => self.client = Some(client),
            Err(error) => {
                let subscriber = &self.name;
                tracing::error!(
                    %subscriber,
                    %error,
                    "webhook sink cannot build its TLS config; stopping"
                );
                ctx.stop();
            }
        }
    }
}

impl Handler<Deliver> for WebhookSink {
    type Result = ();

    /// Sends the batch's requests, `max_in_flight` at a time, and keeps the
    /// mailbox closed and the `Deliver` alive until all of them are done.
    fn handle(&mut self, mut deliver: Deliver, ctx: &mut Context<Self>) {
        let (Some(client), Some(target)) = (self.client.clone(), self.target.clone()) else {
            return;
        };
        let messages = deliver.take();
        let metrics = self.metrics.clone();
        let name = self.name.clone();
        let sending = async move {
            futures_util::stream::iter(messages.chunks(target.batch))
                .for_each_concurrent(target.max_in_flight, |chunk| {
                    let body = request_body(chunk, target.batch);
                    send_with_retries(&client, &target, &metrics, &name, body, chunk.len())
                })
                .await;
            // Only now may the inbox ring with the next batch.
            drop(deliver);
        };
        ctx.wait(sending.into_actor(self));
    }
}

/// The body of one request: an object when `batch` is 1, else an array.
fn request_body(messages: &[FeedMessage], batch: usize) -> Bytes {
    let mut body = Vec::with_capacity(messages.len() * 160 + 2);
    if batch == 1 {
        for message in messages {
            write_json_line(&mut body, message);
            body.pop(); // The line break.
        }
    } else {
        body.push(b'[');
        for (index, message) in messages.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            write_json_line(&mut body, message);
            body.pop(); // The line break.
        }
        body.push(b']');
    }
    Bytes::from(body)
}

/// POSTs `body` (holding `count` messages) until it succeeds or has failed
/// [`MAX_ATTEMPTS`] times, then counts and logs the outcome.
async fn send_with_retries(
    client: &Client,
    target: &Target,
    metrics: &SinkMetrics,
    subscriber: &str,
    body: Bytes,
    count: usize,
) {
    let mut delay = RETRY_INITIAL;
    let mut attempt = 1;
    loop {
        let failure = match post(client, target, body.clone()).await {
            Ok(()) => {
                metrics.written(count);
                return;
            }
            Err(failure) => failure,
        };
        metrics.error(failure.kind());
        if attempt == MAX_ATTEMPTS {
            metrics.dropped(failure.kind(), count);
            tracing::error!(
                subscriber,
                attempts = attempt,
                error = %failure,
                lost = count,
                "webhook sink gave up on a request; its messages are dropped"
            );
            return;
        }
        tracing::warn!(
            subscriber,
            attempt,
            error = %failure,
            retry_in = ?delay,
            "webhook request failed; retrying"
        );
        actix_rt::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
        attempt += 1;
    }
}

/// One try: POST, then read (and discard) the answer, all within `timeout`.
async fn post(client: &Client, target: &Target, body: Bytes) -> Result<(), Failure> {
    let mut request =
        client.post(target.url.as_str()).insert_header((CONTENT_TYPE, "application/json"));
    for (name, value) in &target.headers {
        request = request.insert_header((name.clone(), value.clone()));
    }
    let exchange = async move {
        let mut response = request.send_body(body).await.map_err(Failure::from)?;
        // Reading the answer lets the connection be reused; its content does not matter.
        let _ = response.body().limit(MAX_ANSWER_BODY).await;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Status(status))
        }
    };
    match actix_rt::time::timeout(target.timeout, exchange).await {
        Ok(Err(Failure::Timeout(_))) | Err(_) => Err(Failure::Timeout(target.timeout)),
        Ok(result) => result,
    }
}

/// A client with rustls, at most `max_in_flight` connections, and no
/// timeouts or redirects of its own (each try is bounded by `timeout`).
fn build_client(target: &Target) -> Result<Client, TransportError> {
    feedvisor_transport_kit::tls::install_default_provider();
    let connector = awc::Connector::new()
        .rustls_0_23(feedvisor_transport_kit::tls::client_config(None, &[b"http/1.1"])?)
        .limit(target.max_in_flight)
        .timeout(target.timeout)
        .handshake_timeout(target.timeout);
    // No `max_http_version`: it would replace the connector's TLS config
    // (see the WebSocket transport's client.rs); ALPN keeps us on HTTP/1.1.
    Ok(Client::builder().connector(connector).disable_timeout().disable_redirects().finish())
}

#[cfg(test)]
#[path = "tests/webhook.rs"]
mod tests;
