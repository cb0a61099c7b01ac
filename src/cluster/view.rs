//! The cluster seen from the admin API: `GET /cluster`, `GET /feeds` with
//! each feed's owner, and `POST`/`PUT`/`DELETE /feeds` written to the
//! shared feed list.

use std::collections::BTreeMap;

use actix::prelude::*;
use actix_rt::time::Instant;
use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::Serialize;

use super::state::{Origin, StoredFeed};
use super::Cluster;
use crate::config::{is_kv_key, shown_nats_url, NatsUnreachable};
use crate::status::FeedStatus;
use crate::supervisor::{ChangeError, CheckFeed, GetStatus};

/// `GET /cluster`: this replica, the live replicas with their feeds, and the leases.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterView {
    /// This replica's name.
    pub replica: String,
    /// Whether the NATS connection is up.
    pub nats_connected: bool,
    /// The configured trade-off while NATS is unreachable.
    pub nats_unreachable: NatsUnreachable,
    /// The lease time to live, in seconds.
    pub lease_ttl_seconds: f64,
    /// Live replicas by name.
    pub replicas: BTreeMap<String, ReplicaView>,
    /// Feeds in the list whose lease nobody holds.
    pub unowned: Vec<String>,
}

/// One live replica.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicaView {
    /// Its admin API, as it announced it.
    pub http: Option<String>,
    /// Seconds since its last announcement.
    pub announced_seconds_ago: f64,
    /// The feeds whose lease it holds.
    pub feeds: Vec<LeaseView>,
}

/// One held lease.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaseView {
    /// The feed.
    pub feed: String,
    /// The lease's current revision.
    pub revision: u64,
    /// Seconds since the lease was last written (taken or renewed).
    pub age_seconds: f64,
    /// During a handover: the replica taking it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover_to: Option<String>,
}

/// One feed of the cluster's list, as `GET /feeds` shows it in a cluster.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterFeed {
    /// The feed's name.
    pub name: String,
    /// The URL as written (`${VAR}` unexpanded), without credentials or query.
    pub url: String,
    /// The replica holding its lease; `None` while nobody does.
    pub owner: Option<String>,
    /// Whether it came from a config file or the API.
    pub origin: &'static str,
    /// Its status, when it runs on this replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<FeedStatus>,
}

/// Asks for [`ClusterView`].
#[derive(Message)]
#[rtype(result = "ClusterView")]
pub(crate) struct GetClusterView;

impl Handler<GetClusterView> for Cluster {
    type Result = MessageResult<GetClusterView>;

    fn handle(&mut self, _: GetClusterView, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let mut replicas: BTreeMap<String, ReplicaView> = self
            .live_replicas(now)
            .into_iter()
            .map(|name| {
                let seen = self.replicas.get(name);
                let view = ReplicaView {
                    http: seen.and_then(|seen| seen.value.http.clone()),
                    announced_seconds_ago: seen
                        .map_or(0.0, |seen| now.duration_since(seen.written).as_secs_f64()),
                    feeds: Vec::new(),
                };
                (name.to_owned(), view)
            })
            .collect();
        let mut unowned = Vec::new();
        for feed in self.feeds.keys() {
            match self.lease(feed, now) {
                Some(seen) => {
                    let lease = LeaseView {
                        feed: feed.clone(),
                        revision: seen.revision,
                        age_seconds: now.duration_since(seen.written).as_secs_f64(),
                        handover_to: seen.value.handover_to.clone(),
                    };
                    replicas.entry(seen.value.owner.clone()).or_insert_with(|| ReplicaView {
                        http: None,
                        announced_seconds_ago: f64::NAN,
                        feeds: Vec::new(),
                    });
                    if let Some(replica) = replicas.get_mut(&seen.value.owner) {
                        replica.feeds.push(lease);
                    }
                }
                None => unowned.push(feed.clone()),
            }
        }
        MessageResult(ClusterView {
            replica: self.config.replica.clone(),
            nats_connected: self.client.as_ref().is_some_and(|client| {
                client.connection_state() == async_nats::connection::State::Connected
            }),
            nats_unreachable: self.config.nats_unreachable,
            lease_ttl_seconds: self.config.lease_ttl.as_secs_f64(),
            replicas,
            unowned,
        })
    }
}

/// Asks for every feed of the cluster's list with its owner.
#[derive(Message)]
#[rtype(result = "Vec<ClusterFeed>")]
pub(crate) struct GetClusterFeeds;

impl Handler<GetClusterFeeds> for Cluster {
    type Result = ResponseFuture<Vec<ClusterFeed>>;

    fn handle(&mut self, _: GetClusterFeeds, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let feeds: Vec<ClusterFeed> = self
            .feeds
            .iter()
            .map(|(name, stored)| ClusterFeed {
                name: name.clone(),
                url: stored
                    .feed
                    .get("url")
                    .and_then(serde_json::Value::as_str)
                    .map(shown_url)
                    .unwrap_or_default(),
                owner: self.lease(name, now).map(|seen| seen.value.owner.clone()),
                origin: match stored.origin {
                    Origin::Config => "config",
                    Origin::Api => "api",
                },
                status: None,
            })
            .collect();
        let supervisor = self.supervisor.clone();
        Box::pin(async move {
            let local: BTreeMap<String, FeedStatus> = supervisor
                .send(GetStatus)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|status| (status.name.clone(), status))
                .collect();
            feeds
                .into_iter()
                .map(|mut feed| {
                    feed.status = local.get(&feed.name).cloned();
                    feed
                })
                .collect()
        })
    }
}

/// A URL as written, without credentials or query (a `${VAR}` stays as written).
fn shown_url(url: &str) -> String {
    let shown = if url.contains("${") { url.to_owned() } else { shown_nats_url(url) };
    match shown.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => shown,
    }
}

/// A change to the cluster's feed list, from `POST`, `PUT` or `DELETE /feeds`.
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, FeedChangeError>")]
pub(crate) enum FeedChange {
    /// Adds a feed (`POST /feeds`).
    Add(serde_json::Value),
    /// Replaces a feed (`PUT /feeds/{name}`).
    Replace(String, serde_json::Value),
    /// Removes a feed (`DELETE /feeds/{name}`).
    Remove(String),
}

/// Why a change to the cluster's feed list was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeedChangeError {
    /// The same refusals as a single sidecar's (invalid, unknown, exists...).
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The name cannot be a NATS KV key.
    #[error("feed name {0:?} cannot be a NATS KV key: no leading, trailing or double '.'")]
    BadName(String),
    /// The feed, as stored, is larger than a NATS message may be.
    #[error(
        "the feed takes {size} bytes stored, more than the {limit} bytes a NATS message may carry"
    )]
    TooLarge {
        /// The stored size.
        size: usize,
        /// The server's `max_payload`.
        limit: usize,
    },
    /// NATS could not be reached or refused the write.
    #[error("the cluster's feed list cannot be changed now: {0}; try again")]
    Unavailable(String),
}

impl Handler<FeedChange> for Cluster {
    type Result = ResponseFuture<Result<serde_json::Value, FeedChangeError>>;

    fn handle(&mut self, change: FeedChange, _: &mut Context<Self>) -> Self::Result {
        let store = self.stores.as_ref().map(|stores| stores.feeds.clone());
        let supervisor = self.supervisor.clone();
        let timeout = self.config.lease_ttl;
        let limit =
            self.client.as_ref().map_or(usize::MAX, |client| client.server_info().max_payload);
        Box::pin(async move {
            let store = store.ok_or_else(|| {
                FeedChangeError::Unavailable("this replica has not joined the cluster yet".into())
            })?;
            let write = apply_change(change, &store, &supervisor, limit);
            actix_rt::time::timeout(timeout, write).await.unwrap_or_else(|_| {
                Err(FeedChangeError::Unavailable(format!("no answer from NATS within {timeout:?}")))
            })
        })
    }
}

async fn apply_change(
    change: FeedChange,
    store: &kv::Store,
    supervisor: &Addr<crate::supervisor::Supervisor>,
    limit: usize,
) -> Result<serde_json::Value, FeedChangeError> {
    let unavailable =
        |error: &dyn std::fmt::Display| FeedChangeError::Unavailable(error.to_string());
    let (name, feed, adding) = match change {
        FeedChange::Remove(name) => {
            if !is_kv_key(&name) {
                return Err(ChangeError::UnknownFeed(name).into());
            }
            match store.entry(name.clone()).await.map_err(|error| unavailable(&error))? {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    store
                        .delete_expect_revision(&name, Some(entry.revision))
                        .await
                        .map_err(|error| unavailable(&error))?;
                    return Ok(serde_json::json!({ "removed": name }));
                }
                _ => return Err(ChangeError::UnknownFeed(name).into()),
            }
        }
        FeedChange::Add(feed) => {
            let checked = check(supervisor, feed.clone()).await?;
            (checked, feed, true)
        }
        FeedChange::Replace(name, mut feed) => {
            if let Some(object) = feed.as_object_mut() {
                match object.get("name").and_then(serde_json::Value::as_str) {
                    Some(body) if body != name => {
                        let body = body.to_owned();
                        return Err(ChangeError::NameMismatch { path: name, body }.into());
                    }
                    Some(_) => {}
                    None => {
                        object.insert("name".to_owned(), serde_json::Value::String(name.clone()));
                    }
                }
            }
            let checked = check(supervisor, feed.clone()).await?;
            (checked, feed, false)
        }
    };
    let stored = StoredFeed { origin: Origin::Api, feed };
    let value = Bytes::from(serde_json::to_vec(&stored).map_err(|error| unavailable(&error))?);
    // The key and headers take a little of the message too.
    if value.len() + 1024 > limit {
        return Err(FeedChangeError::TooLarge { size: value.len(), limit });
    }
    let existing = store.entry(name.clone()).await.map_err(|error| unavailable(&error))?;
    let existing = existing.filter(|entry| entry.operation == kv::Operation::Put);
    match (existing, adding) {
        (Some(_), true) => Err(ChangeError::Exists(name).into()),
        (None, false) => Err(ChangeError::UnknownFeed(name).into()),
        (None, true) => match store.create(&name, value).await {
            Ok(revision) => Ok(serde_json::json!({ "name": name, "revision": revision })),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(ChangeError::Exists(name).into())
            }
            Err(error) => Err(unavailable(&error)),
        },
        (Some(entry), false) => {
            let revision = store
                .update(&name, value, entry.revision)
                .await
                .map_err(|error| unavailable(&error))?;
            Ok(serde_json::json!({ "name": name, "revision": revision }))
        }
    }
}

/// Validates a feed as a single sidecar would, and checks that its name is a KV key.
async fn check(
    supervisor: &Addr<crate::supervisor::Supervisor>,
    feed: serde_json::Value,
) -> Result<String, FeedChangeError> {
    let checked = supervisor
        .send(CheckFeed { feed })
        .await
        .map_err(|_| FeedChangeError::Change(ChangeError::ShuttingDown))??;
    if !is_kv_key(&checked.name) {
        return Err(FeedChangeError::BadName(checked.name));
    }
    Ok(checked.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(shown_url("wss://u:p@host/path?token=1"), "wss://***@host/path?***");
        assert_eq!(shown_url("wss://host/${PATH}"), "wss://host/${PATH}");
    }
}
