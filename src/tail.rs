//! `feedvisor tail FEED`: prints what a running sidecar delivers, one JSON
//! object per line, by subscribing to its `/subscribe` WebSocket endpoint.

use std::io::Write;
use std::time::Duration;

use awc::error::WsClientError;
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use url::Url;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame accepted: a message of the largest `max_message_size`
/// a feed may have (1 GiB) would not fit, but nothing a terminal shows would.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// What to tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TailOptions {
    /// A feed name or glob pattern.
    pub feed: String,
    /// Topic glob patterns; empty: every message.
    pub topics: Vec<String>,
    /// The sidecar's admin server, such as `http://127.0.0.1:9900`.
    pub url: String,
}

/// Why `tail` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TailError {
    /// `--url` is not a plain HTTP URL.
    #[error("--url {url:?}: {reason}")]
    BadUrl {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing answered, or not in time.
    #[error("cannot connect to {url}: {reason} (is the sidecar running? start it with `feedvisor run --config FILE` or `feedvisor demo`, or point --url at its admin server)")]
    Connect {
        /// The endpoint.
        url: Url,
        /// Why.
        reason: String,
    },
    /// The sidecar answered the upgrade with an error status.
    #[error("{url} refused the subscription: {status}: {message}")]
    Refused {
        /// The endpoint.
        url: Url,
        /// The HTTP status.
        status: u16,
        /// The sidecar's explanation.
        message: String,
    },
    /// The connection broke.
    #[error("the connection to {url} failed: {reason}")]
    Connection {
        /// The endpoint.
        url: Url,
        /// Why.
        reason: String,
    },
    /// The sidecar closed the subscription with an error code.
    #[error("the sidecar closed the subscription: {code} {reason}")]
    Closed {
        /// The close code.
        code: u16,
        /// The reason it gave.
        reason: String,
    },
    /// Standard output failed.
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
}

/// The endpoint URL for `options`: `ws://HOST:PORT/subscribe?feed=...&topic=...`.
pub(crate) fn subscribe_url(options: &TailOptions) -> Result<Url, TailError> {
    let bad =
        |reason: &str| TailError::BadUrl { url: options.url.clone(), reason: reason.to_owned() };
    let mut url = Url::parse(&options.url).map_err(|error| {
        bad(&format!(
            "{error}: use the admin server's http:// address, such as http://127.0.0.1:9900"
        ))
    })?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => {
            return Err(bad("the admin server speaks plain HTTP: use http://"));
        }
        _ => {
            return Err(bad(
                "use the admin server's http:// address, such as http://127.0.0.1:9900",
            ))
        }
    };
    url.set_scheme(scheme).map_err(|()| bad("cannot use this URL for WebSocket"))?;
    if !url.path().ends_with("/subscribe") {
        let path = format!("{}/subscribe", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("feed", &options.feed);
        for topic in &options.topics {
            query.append_pair("topic", topic);
        }
    }
    Ok(url)
}

/// Subscribes and prints every text frame as a line on standard output
/// until Ctrl-C or until the sidecar closes. Runs inside an actix system.
pub(crate) async fn run(options: TailOptions) -> Result<(), TailError> {
    let url = subscribe_url(&options)?;
    let client = awc::Client::default();
    let connect = client.ws(url.as_str()).max_frame_size(MAX_FRAME).connect();
    let (_, mut frames) = match actix_rt::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => {
            let reason = format!("no answer within {CONNECT_TIMEOUT:?}");
            return Err(TailError::Connect { url, reason });
        }
        Ok(Err(WsClientError::InvalidResponseStatus(status))) => {
            let message = refusal_message(&client, &url).await;
            return Err(TailError::Refused { url, status: status.as_u16(), message });
        }
        Ok(Err(error)) => return Err(TailError::Connect { url, reason: error.to_string() }),
        Ok(Ok(connected)) => connected,
    };
    tracing::info!(%url, "connected; printing messages (Ctrl-C stops)");
    let mut stdout = std::io::stdout();
    let mut line = Vec::new();
    let interrupted = actix_rt::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let frame = tokio::select! {
            _ = &mut interrupted => {
                let _ = frames.send(Message::Close(Some(CloseCode::Normal.into()))).await;
                return Ok(());
            }
            frame = frames.next() => frame,
        };
        let frame = match frame {
            None => return Ok(()),
            Some(Err(error)) => {
                return Err(TailError::Connection { url, reason: error.to_string() });
            }
            Some(Ok(frame)) => frame,
        };
        match frame {
            Frame::Text(text) => {
                line.clear();
                line.extend_from_slice(&text);
                line.push(b'\n');
                match stdout.write_all(&line).and_then(|()| stdout.flush()) {
                    Ok(()) => {}
                    // The reader went away (`| head`): done, not an error.
                    Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(error) => return Err(TailError::Stdout(error)),
                }
            }
            Frame::Ping(payload) => {
                let _ = frames.send(Message::Pong(payload)).await;
            }
            Frame::Close(reason) => {
                let _ = frames.send(Message::Close(reason.clone())).await;
                return closed(reason);
            }
            Frame::Binary(_) | Frame::Pong(_) | Frame::Continuation(_) => {}
        }
    }
}

/// What a close from the sidecar means: normal and going-away end quietly.
fn closed(reason: Option<CloseReason>) -> Result<(), TailError> {
    let Some(CloseReason { code, description }) = reason else { return Ok(()) };
    let description = description.unwrap_or_default();
    match code {
        CloseCode::Normal | CloseCode::Away => {
            tracing::info!(code = u16::from(code), %description, "the sidecar closed the subscription");
            Ok(())
        }
        code => Err(TailError::Closed { code: code.into(), reason: description }),
    }
}

/// The sidecar's `{"error": ...}` for a refused upgrade, asked for again as
/// a plain request (the WebSocket client does not read refusal bodies).
async fn refusal_message(client: &awc::Client, url: &Url) -> String {
    let mut http = url.clone();
    if http.set_scheme("http").is_err() {
        return "no explanation".to_owned();
    }
    let answer = async {
        let mut response = client.get(http.as_str()).send().await.ok()?;
        let body = response.body().limit(64 * 1024).await.ok()?;
        let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
        value["error"].as_str().map(str::to_owned)
    };
    match actix_rt::time::timeout(CONNECT_TIMEOUT, answer).await {
        Ok(Some(message)) => message,
        _ => "no explanation".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str, topics: &[&str]) -> TailOptions {
        TailOptions {
            feed: "stocks".to_owned(),
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
            url: url.to_owned(),
        }
    }

    #[test]
    fn the_admin_address_becomes_the_subscribe_endpoint() {
        let url = subscribe_url(&options("http://127.0.0.1:9900", &[])).expect("valid");
        assert_eq!(url.as_str(), "ws://127.0.0.1:9900/subscribe?feed=stocks");
        let url = subscribe_url(&options("http://host:1/prefix/", &["MS*", "A B"])).expect("valid");
        assert_eq!(url.as_str(), "ws://host:1/prefix/subscribe?feed=stocks&topic=MS*&topic=A+B");
        let url = subscribe_url(&options("ws://host:1/subscribe?feed=x", &[])).expect("valid");
        assert_eq!(url.as_str(), "ws://host:1/subscribe?feed=stocks");
    }

    #[test]
    fn other_schemes_are_refused_with_advice() {
        for url in ["https://host", "ftp://host", "127.0.0.1:9900"] {
            let error = subscribe_url(&options(url, &[])).expect_err("refused").to_string();
            assert!(error.contains("http://"), "{url}: {error}");
        }
    }

    #[test]
    fn only_normal_and_going_away_closes_are_quiet() {
        assert!(closed(None).is_ok());
        assert!(closed(Some(CloseCode::Normal.into())).is_ok());
        assert!(closed(Some(CloseCode::Away.into())).is_ok());
        let reason = CloseReason { code: CloseCode::Policy, description: Some("slow".to_owned()) };
        let error = closed(Some(reason)).expect_err("an error").to_string();
        assert_eq!(error, "the sidecar closed the subscription: 1008 slow");
    }

    #[actix::test]
    async fn a_refused_connection_names_the_url_and_what_to_start() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let error = run(options(&format!("http://{addr}"), &[])).await.expect_err("refused");
        let message = error.to_string();
        assert!(matches!(error, TailError::Connect { .. }), "{message}");
        assert!(message.contains(&format!("ws://{addr}/subscribe")), "{message}");
        assert!(message.contains("feedvisor run"), "{message}");
    }
}
