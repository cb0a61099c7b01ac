//! The HTTP provider: one request (`GET`, `POST` or `PUT`, with the
//! configured headers and body) whose 2xx response body, at most
//! `max_output` bytes, is the output. Bounded as a whole by
//! `credentials.timeout`; server certificates are verified against the
//! webpki roots; redirects are not followed.

use std::time::Duration;

use awc::http::Method;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::{FetchError, Provider};
use crate::config::{CredentialSource, CredentialsConfig, HttpSource};

/// Makes one request per fetch.
pub(super) struct HttpProvider {
    source: Option<HttpSource>,
    timeout: Duration,
    max_output: u64,
    /// `http POST https://...`.
    described: String,
}

impl HttpProvider {
    pub(super) fn new(config: &CredentialsConfig) -> Self {
        let source = match &config.source {
            CredentialSource::Http(http) => Some(http.clone()),
            CredentialSource::Exec { .. } => None,
        };
        HttpProvider {
            source,
            timeout: config.timeout,
            max_output: config.max_output,
            described: config.source.describe(),
        }
    }
}

impl Provider for HttpProvider {
    fn run(&self) -> LocalBoxFuture<'static, Result<Vec<u8>, FetchError>> {
        let (source, timeout, limit) = (self.source.clone(), self.timeout, self.max_output);
        let provider = self.described.clone();
        async move {
            let failed = |reason: String| FetchError::Http { provider: provider.clone(), reason };
            let Some(source) = source else {
                return Err(failed("no request configured".to_owned()));
            };
            let exchange = request(&source, limit);
            match actix_rt::time::timeout(timeout, exchange).await {
                Err(_) => Err(FetchError::Timeout { provider, after: timeout, killed: "" }),
                Ok(Err(Failure::Status(status))) => {
                    Err(FetchError::HttpStatus { provider, status })
                }
                Ok(Err(Failure::TooLarge)) => Err(FetchError::TooLarge { provider, limit }),
                Ok(Err(Failure::Request(reason))) => Err(failed(reason)),
                Ok(Ok(body)) => Ok(body),
            }
        }
        .boxed_local()
    }

    fn describe(&self) -> &str {
        &self.described
    }
}

enum Failure {
    Status(u16),
    TooLarge,
    Request(String),
}

async fn request(source: &HttpSource, limit: u64) -> Result<Vec<u8>, Failure> {
    let tls =
        crate::sink::webhook::tls_config().map_err(|error| Failure::Request(error.to_string()))?;
    let connector = awc::Connector::new().rustls_0_23(tls).limit(1);
    let client =
        awc::Client::builder().connector(connector).disable_timeout().disable_redirects().finish();
    let method = Method::from_bytes(source.method.as_bytes()).unwrap_or(Method::GET);
    let mut request = client.request(method, source.url.as_str());
    for (name, value) in &source.headers {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    let sent = match &source.body {
        Some(body) => request.send_body(body.expose().to_owned()).await,
        None => request.send().await,
    };
    // awc's error names the URL, which may hold a key in its query: say what kind of failure only.
    let mut response = sent.map_err(|error| Failure::Request(send_failure(&error)))?;
    if !response.status().is_success() {
        return Err(Failure::Status(response.status().as_u16()));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match response.body().limit(limit).await {
        Ok(body) => Ok(body.to_vec()),
        Err(awc::error::PayloadError::Overflow) => Err(Failure::TooLarge),
        Err(error) => Err(Failure::Request(format!("reading the response failed: {error}"))),
    }
}

/// What kind of failure an awc send error is, without its text.
fn send_failure(error: &awc::error::SendRequestError) -> String {
    use awc::error::SendRequestError;
    match error {
        SendRequestError::Connect(connect) => {
            format!("could not connect ({})", connect_kind(connect))
        }
        SendRequestError::Timeout => "timed out".to_owned(),
        SendRequestError::Send(_) => "sending the request failed".to_owned(),
        SendRequestError::Response(_) => "the response was not valid HTTP".to_owned(),
        _ => "the request failed".to_owned(),
    }
}

fn connect_kind(error: &awc::error::ConnectError) -> &'static str {
    use awc::error::ConnectError;
    match error {
        ConnectError::Resolver(_) => "name not resolved",
        ConnectError::Timeout => "timed out",
        ConnectError::Io(_) => "refused or reset",
        _ => "tls or protocol error",
    }
}
