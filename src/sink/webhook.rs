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
//! another host) is tried again after the delays of [`RETRY_POLICY`] (a
//! `backoff.rs` policy): 200 ms, then 400 ms, doubling up to 10 s, five
//! tries in all; then its messages are dropped, counted
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
//! actor's own arbiter, with a rustls config of its own: the ring provider,
//! the webpki roots (certificates are always verified), HTTP/1.1.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Once};
use std::time::Duration;

use actix::prelude::*;
use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use awc::http::StatusCode;
use awc::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use super::watch::SinkWatch;
use super::{SettingsContext, Sink, SinkConfigError};
use crate::backoff::{Backoff, Jitter, PolicyKind, ReconnectPolicy};
use crate::inbox::delivery::{Deliver, FeedMessage};
use crate::metrics::SinkMetrics;
use crate::secret::Secret;
use crate::sink::write_json_line;

/// The `sink` label of the webhook sink's metrics.
const SINK: &str = WebhookSinkConfig::NAME;

/// When a failed request is tried again: after 200 ms, then doubling up to
/// 10 s, without jitter; four retries (five tries in all), then its messages
/// are dropped. Each request starts with a fresh [`Backoff`].
pub(super) const RETRY_POLICY: ReconnectPolicy = ReconnectPolicy {
    kind: PolicyKind::Exponential,
    initial: Duration::from_millis(200),
    max: Duration::from_secs(10),
    multiplier: 2.0,
    jitter: Jitter::None,
    max_attempts: 4,
    // Not used: a request's retries never start over.
    reset_after: Duration::MAX,
    max_retry_after: crate::backoff::DEFAULT_MAX_RETRY_AFTER,
};
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

/// `sink = "webhook"`: where and how to POST. Neither `Debug` nor
/// `Serialize` shows the URL's password or query, or a header value.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct WebhookSinkConfig {
    /// Where to POST: `http://` or `https://` (shown with any password and query hidden).
    #[serde(serialize_with = "serialize_shown_url")]
    pub url: Url,
    /// Messages per request: one JSON object when 1 (default), else a JSON array of up to this many.
    pub batch: usize,
    /// Requests under way at once (default 4).
    pub max_in_flight: usize,
    /// How long one try of a request may take, connecting included (default 10s).
    #[serde(serialize_with = "super::serialize_duration")]
    pub timeout: Duration,
    /// Extra request headers; the values are secrets. Shown as a table of
    /// names to `***`, the shape `headers` is written in.
    #[serde(serialize_with = "serialize_headers")]
    pub headers: Vec<(String, Secret)>,
}

impl WebhookSinkConfig {
    /// The default `batch`.
    pub const DEFAULT_BATCH: usize = 1;
    /// The default `max_in_flight`.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
    /// The default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// POSTs to `url` with the default settings.
    pub fn new(url: Url) -> Self {
        WebhookSinkConfig {
            url,
            batch: Self::DEFAULT_BATCH,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            timeout: Self::DEFAULT_TIMEOUT,
            headers: Vec::new(),
        }
    }
}

/// `sink = "webhook"`'s settings as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSettings {
    /// Where to POST; `${VAR}` expanded.
    url: Option<String>,
    /// Messages per request (a JSON array when above 1).
    batch: Option<usize>,
    /// Requests under way at once.
    max_in_flight: Option<usize>,
    /// How long one request may take.
    timeout: Option<String>,
    /// Extra request headers; values `${VAR}` expanded (and secrets).
    headers: Option<BTreeMap<String, String>>,
}

impl Sink for WebhookSinkConfig {
    const NAME: &'static str = "webhook";
    type Settings = WebhookSettings;

    /// The URL and header values with their `${VAR}`s expanded, the timeout parsed.
    fn from_settings(settings: WebhookSettings, context: &mut dyn SettingsContext) -> Option<Self> {
        let url = match settings.url.as_deref() {
            None => {
                context.error("url", "required for sink = \"webhook\": where to POST".to_owned());
                None
            }
            Some(text) => context.expand("url", text).and_then(|expanded| {
                Url::parse(&expanded)
                    .map_err(|error| context.error("url", format!("invalid URL: {error}")))
                    .ok()
            }),
        };
        let timeout =
            context.duration("timeout", settings.timeout.as_deref(), Self::DEFAULT_TIMEOUT);
        let mut headers = Vec::new();
        for (name, template) in settings.headers.into_iter().flatten() {
            if let Some(value) = context.expand(&format!("headers.{name}"), &template) {
                headers.push((name, Secret::new(value)));
            }
        }
        Some(WebhookSinkConfig {
            batch: settings.batch.unwrap_or(Self::DEFAULT_BATCH),
            max_in_flight: settings.max_in_flight.unwrap_or(Self::DEFAULT_MAX_IN_FLIGHT),
            timeout: timeout?,
            headers,
            ..WebhookSinkConfig::new(url?)
        })
    }

    /// Pure: the endpoint is not contacted. A header value is never quoted.
    fn validate(&self) -> Vec<SinkConfigError> {
        let mut errors = Vec::new();
        if !matches!(self.url.scheme(), "http" | "https") {
            let message =
                format!("unsupported scheme {:?}: use http:// or https://", self.url.scheme());
            errors.push(SinkConfigError::new("url", message));
        }
        for (field, value) in [("batch", self.batch), ("max_in_flight", self.max_in_flight)] {
            if value == 0 {
                errors.push(SinkConfigError::new(field, "must be at least 1"));
            }
        }
        if self.timeout.is_zero() {
            errors.push(SinkConfigError::new("timeout", "must be greater than 0"));
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(SinkConfigError::new(
                    field,
                    format!("{name:?} is not a valid header name"),
                ));
            } else if value.expose().contains(['\r', '\n']) {
                errors.push(SinkConfigError::new(field, "the value contains a line break"));
            } else if HeaderValue::from_str(value.expose()).is_err() {
                errors.push(SinkConfigError::new(field, "the value holds a control character"));
            }
        }
        errors
    }

    fn describe(&self) -> String {
        format!(
            "webhook {} (batch {}, {} in flight, timeout {})",
            shown_url(&self.url),
            self.batch,
            self.max_in_flight,
            humantime::format_duration(self.timeout)
        )
    }

    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
        WebhookSink::new(name, self.clone()).watched(watch).start().recipient()
    }
}

impl WebhookSinkConfig {
    /// A one-line description for `feedvisor check` (no secret in it).
    pub fn describe(&self) -> String {
        <Self as Sink>::describe(self)
    }
}

impl std::fmt::Debug for WebhookSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSinkConfig")
            .field("url", &shown_url(&self.url))
            .field("batch", &self.batch)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers)
            .finish()
    }
}

/// A URL fit for showing: any password and query (where tokens travel) hidden.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_some() {
        shown.set_query(Some("***"));
    }
    shown.to_string()
}

fn serialize_shown_url<S: Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&shown_url(url))
}

/// `headers = { Name = "***" }`: a list of pairs would not read back.
fn serialize_headers<S: Serializer>(
    headers: &[(String, Secret)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(headers.iter().map(|(name, value)| (name, value)))
}

/// What went wrong for the webhook sink: building its client, or one try of a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    /// The TLS client config could not be built (the sink stops; the supervisor restarts it).
    #[error("cannot build the webhook's TLS config: {0}")]
    Tls(#[from] rustls::Error),
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

impl WebhookError {
    /// The metric label of a failed try.
    fn kind(&self) -> &'static str {
        match self {
            WebhookError::Status(_) => HTTP_STATUS,
            WebhookError::Timeout(_) => TIMEOUT,
            WebhookError::Connect(_) => CONNECT,
            WebhookError::Request(_) | WebhookError::Tls(_) => REQUEST,
        }
    }
}

impl From<awc::error::SendRequestError> for WebhookError {
    fn from(error: awc::error::SendRequestError) -> Self {
        use awc::error::SendRequestError;
        match error {
            SendRequestError::Timeout => WebhookError::Timeout(Duration::ZERO),
            SendRequestError::Connect(error) => WebhookError::Connect(error.to_string()),
            other => WebhookError::Request(other.to_string()),
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
    /// When failed requests are tried again.
    retry: ReconnectPolicy,
}

/// POSTs messages to a URL, one object or an array of up to `batch` per request.
pub(super) struct WebhookSink {
    /// The subscriber's name, for logs and metric labels.
    name: Rc<str>,
    /// The endpoint and the limits.
    target: Rc<Target>,
    /// Built in `started`: it is not `Send`.
    client: Option<Client>,
    /// Written, error and drop counters.
    metrics: Rc<SinkMetrics>,
    /// Tells the supervisor when this actor stops.
    watch: Option<SinkWatch>,
}

impl WebhookSink {
    /// A sink named `name` with the settings of `config`.
    pub(super) fn new(name: &str, config: WebhookSinkConfig) -> Self {
        let metrics = SinkMetrics::new(name, SINK, &FAILURES, &FAILURES);
        let headers = config
            .headers
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
        let target = Target {
            url: config.url.to_string(),
            headers,
            batch: config.batch.max(1),
            max_in_flight: config.max_in_flight.max(1),
            timeout: config.timeout,
            retry: RETRY_POLICY,
        };
        WebhookSink {
            name: name.into(),
            target: Rc::new(target),
            client: None,
            metrics: Rc::new(metrics),
            watch: None,
        }
    }

    /// Reports the actor's stop to the supervisor through `watch`.
    pub(super) fn watched(mut self, watch: SinkWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Retries failed requests under `policy` instead of [`RETRY_POLICY`].
    #[cfg(test)]
    fn retrying(mut self, policy: ReconnectPolicy) -> Self {
        if let Some(target) = Rc::get_mut(&mut self.target) {
            target.retry = policy;
        }
        self
    }
}

impl Actor for WebhookSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match build_client(&self.target) {
            Ok(client) => self.client = Some(client),
            Err(error) => {
                let subscriber = &self.name;
                tracing::error!(%subscriber, %error, "webhook sink cannot build its client; stopping");
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
        let Some(client) = self.client.clone() else { return };
        let target = self.target.clone();
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

/// POSTs `body` (holding `count` messages) until it succeeds or the retry
/// policy gives up, then counts and logs the outcome.
async fn send_with_retries(
    client: &Client,
    target: &Target,
    metrics: &SinkMetrics,
    subscriber: &str,
    body: Bytes,
    count: usize,
) {
    let mut backoff = Backoff::new(target.retry);
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
        let Some(delay) = backoff.next_delay(&mut rand::rng(), None) else {
            metrics.dropped(failure.kind(), count);
            tracing::error!(
                subscriber,
                attempts = attempt,
                error = %failure,
                lost = count,
                "webhook sink gave up on a request; its messages are dropped"
            );
            return;
        };
        tracing::warn!(
            subscriber,
            attempt,
            error = %failure,
            retry_in = ?delay,
            "webhook request failed; retrying"
        );
        actix_rt::time::sleep(delay).await;
        attempt += 1;
    }
}

/// One try: POST, then read (and discard) the answer, all within `timeout`.
async fn post(client: &Client, target: &Target, body: Bytes) -> Result<(), WebhookError> {
    let mut request =
        client.post(target.url.as_str()).insert_header((CONTENT_TYPE, "application/json"));
    for (name, value) in &target.headers {
        request = request.insert_header((name.clone(), value.clone()));
    }
    let exchange = async move {
        let mut response = request.send_body(body).await.map_err(WebhookError::from)?;
        // Reading the answer lets the connection be reused; its content does not matter.
        let _ = response.body().limit(MAX_ANSWER_BODY).await;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status(status))
        }
    };
    match actix_rt::time::timeout(target.timeout, exchange).await {
        Ok(Err(WebhookError::Timeout(_))) | Err(_) => Err(WebhookError::Timeout(target.timeout)),
        Ok(result) => result,
    }
}

/// A client with rustls, at most `max_in_flight` connections, and no
/// timeouts or redirects of its own (each try is bounded by `timeout`).
fn build_client(target: &Target) -> Result<Client, WebhookError> {
    let connector = awc::Connector::new()
        .rustls_0_23(tls_config()?)
        .limit(target.max_in_flight)
        .timeout(target.timeout)
        .handshake_timeout(target.timeout);
    // No `max_http_version`: it would replace the connector's TLS config;
    // ALPN keeps us on HTTP/1.1.
    Ok(Client::builder().connector(connector).disable_timeout().disable_redirects().finish())
}

/// The webhook's TLS client config: the ring provider, safe protocol
/// versions, the webpki roots (server certificates are always verified),
/// ALPN `http/1.1`.
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, WebhookError> {
    install_default_provider();
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Installs ring as the process-wide rustls provider, once: our config names
/// its provider, but awc's `Connector::new` builds a default config of its
/// own first, which needs one when awc's root-store features are enabled.
fn install_default_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
#[path = "tests/webhook.rs"]
mod tests;
