//! NATS connections, and what the cluster shares with the `nats` sink.
//!
//! An async-nats client lives on the arbiter that connected it: once that
//! arbiter stops, every send fails while the client still reports
//! `Connected`. So every connection is made on one arbiter that lives as
//! long as the process ([`connect`]), whoever asks for it, and the client
//! (a handle to that connection, `Send` and cheap to clone) is used from
//! any thread.
//!
//! The cluster (`src/cluster/`) registers its connection and the owner epoch
//! of each feed it owns here ([`ClusterLink`]); the `nats` sink reads them
//! without knowing the cluster, so imports keep running one way.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use actix::Arbiter;
use actix_rt::ArbiterHandle;

use crate::metrics;

/// The arbiter every NATS connection lives on, started on first use and never stopped.
fn nats_arbiter() -> &'static ArbiterHandle {
    static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();
    ARBITER.get_or_init(|| {
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        // Not stopped when dropped: the thread runs until the process ends.
        drop(arbiter);
        handle
    })
}

/// Why a NATS connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NatsConnectError {
    /// The URL list or options were refused by the client.
    #[error("cannot connect to NATS ({servers}): {reason}")]
    Refused {
        /// The servers, without credentials.
        servers: String,
        /// The client's reason.
        reason: String,
    },
    /// The arbiter that holds NATS connections is gone (the process is stopping).
    #[error("cannot connect to NATS: the connection thread is gone")]
    ArbiterGone,
}

/// How long a reconnect waits: growing by 250 ms a try up to 2 s, so that
/// a replica is back soon after NATS is.
fn reconnect_delay(attempts: usize) -> Duration {
    Duration::from_millis(250 * attempts.min(8) as u64)
}

/// Connects to `urls` on the NATS arbiter, retrying in the background when
/// no server answers yet (the client reports `Pending` meanwhile). `label`
/// names the connection in `feedvisor_nats_connected` (`cluster`, or a sink's
/// subscriber name).
pub(crate) async fn connect(
    urls: &[String],
    label: &str,
) -> Result<async_nats::Client, NatsConnectError> {
    let servers: String = urls.iter().map(|url| shown_url(url)).collect::<Vec<_>>().join(", ");
    let (urls, credentials) = split_credentials(urls);
    let gauge = metrics::nats_connected(label);
    gauge.set(0.0);
    let name = format!("feedvisor {label}");
    let (reply, answer) = tokio::sync::oneshot::channel();
    let spawned = nats_arbiter().spawn(async move {
        let events = gauge.clone();
        let options = match credentials {
            Some(Credentials::UserAndPassword(user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user, password)
            }
            Some(Credentials::Token(token)) => async_nats::ConnectOptions::with_token(token),
            None => async_nats::ConnectOptions::new(),
        };
        let options = options
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let gauge = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => gauge.set(1.0),
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            gauge.set(0.0);
                        }
                        _ => {}
                    }
                }
            });
        let result = options.connect(urls.as_slice()).await;
        if matches!(&result, Ok(client) if client.connection_state() == async_nats::connection::State::Connected)
        {
            gauge.set(1.0);
        }
        let _ = reply.send(result);
    });
    if !spawned {
        return Err(NatsConnectError::ArbiterGone);
    }
    match answer.await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(NatsConnectError::Refused { servers, reason: error.to_string() }),
        Err(_) => Err(NatsConnectError::ArbiterGone),
    }
}

/// Checks a NATS server URL: `nats://` or `tls://` with a host; the problem otherwise.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "nats" | "tls") && parsed.host().is_some() => {
            Ok(())
        }
        Ok(parsed) if matches!(parsed.scheme(), "nats" | "tls") => {
            Err("the URL names no host".to_owned())
        }
        Ok(parsed) => {
            Err(format!("unsupported scheme {:?}: use nats:// or tls://", parsed.scheme()))
        }
        Err(error) => Err(format!("invalid URL: {error}")),
    }
}

/// Credentials written in a NATS URL (`nats://user:password@host`, or
/// `nats://token@host`).
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    /// A user name and a password.
    UserAndPassword(String, String),
    /// A token, written as the user name alone.
    Token(String),
}

/// Takes the credentials out of NATS URLs, to be handed to the client apart:
/// async-nats neither sends the ones written in a URL nor keeps them out of
/// its debug log, where it prints every server it dials. The first URL that
/// carries credentials gives them (one cluster, one set of credentials).
fn split_credentials(urls: &[String]) -> (Vec<String>, Option<Credentials>) {
    let decode =
        |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    let mut credentials = None;
    let bare = urls
        .iter()
        .map(|url| {
            let Ok(mut parsed) = url::Url::parse(url) else { return url.clone() };
            let user = decode(parsed.username());
            let password = parsed.password().map(decode);
            if credentials.is_none() && !user.is_empty() {
                credentials = Some(match password {
                    Some(password) => Credentials::UserAndPassword(user, password),
                    None => Credentials::Token(user),
                });
            }
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        })
        .collect();
    (bare, credentials)
}

/// A NATS URL without its credentials, for display and errors.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let had_credentials = !parsed.username().is_empty() || parsed.password().is_some();
            let _ = parsed.set_password(None);
            let _ = parsed.set_username(if had_credentials { "***" } else { "" });
            parsed.to_string()
        }
        Err(_) => "***".to_owned(),
    }
}

/// What the cluster shares with `nats` sinks: its connection and the epoch
/// (lease revision at acquisition) of every feed this replica owns.
#[derive(Default)]
pub(crate) struct ClusterLink {
    client: RwLock<Option<async_nats::Client>>,
    epochs: RwLock<HashMap<Arc<str>, u64>>,
}

impl ClusterLink {
    /// The process's link (one cluster per process).
    pub(crate) fn get() -> &'static ClusterLink {
        static LINK: OnceLock<ClusterLink> = OnceLock::new();
        LINK.get_or_init(ClusterLink::default)
    }

    /// The cluster's connection, once it is made.
    pub(crate) fn client(&self) -> Option<async_nats::Client> {
        self.client.read().ok().and_then(|client| client.clone())
    }

    /// Records the cluster's connection.
    pub(crate) fn set_client(&self, client: async_nats::Client) {
        if let Ok(mut slot) = self.client.write() {
            *slot = Some(client);
        }
    }

    /// The epoch of `feed` while this replica owns it.
    pub(crate) fn epoch(&self, feed: &str) -> Option<u64> {
        self.epochs.read().ok().and_then(|epochs| epochs.get(feed).copied())
    }

    /// Records that this replica owns `feed` since lease revision `epoch`, or no longer (`None`).
    pub(crate) fn set_epoch(&self, feed: &str, epoch: Option<u64>) {
        if let Ok(mut epochs) = self.epochs.write() {
            match epoch {
                Some(epoch) => {
                    epochs.insert(Arc::from(feed), epoch);
                }
                None => {
                    epochs.remove(feed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(shown_url("nats://user:pw@host:4222"), "nats://***@host:4222");
        assert_eq!(shown_url("nats://s3cret@host:4222"), "nats://***@host:4222");
        assert_eq!(shown_url("nats://host:4222"), "nats://host:4222");
    }

    #[test]
    fn credentials_are_taken_out_of_the_urls_for_the_client() {
        let urls = ["nats://ad%40min:p%3Ass@a:4222".to_owned(), "nats://b:4222".to_owned()];
        let (bare, credentials) = split_credentials(&urls);
        assert_eq!(bare, ["nats://a:4222", "nats://b:4222"]);
        let expected = Credentials::UserAndPassword("ad@min".into(), "p:ss".into());
        assert_eq!(credentials, Some(expected));
        let (bare, credentials) = split_credentials(&["nats://t0ken@a".to_owned()]);
        assert_eq!(bare, ["nats://a"]);
        assert_eq!(credentials, Some(Credentials::Token("t0ken".into())));
        assert_eq!(split_credentials(&["nats://a".to_owned()]).1, None);
    }

    #[test]
    fn reconnects_wait_at_most_two_seconds() {
        assert_eq!(reconnect_delay(1), Duration::from_millis(250));
        assert_eq!(reconnect_delay(100), Duration::from_secs(2));
    }

    #[test]
    fn epochs_are_set_and_cleared() {
        let link = ClusterLink::default();
        link.set_epoch("stocks", Some(7));
        assert_eq!(link.epoch("stocks"), Some(7));
        link.set_epoch("stocks", None);
        assert_eq!(link.epoch("stocks"), None);
    }
}
