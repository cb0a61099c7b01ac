//! What is stored in the cluster's three KV buckets, and what one replica
//! knows of them (from its watches), with their JSON shapes.

use std::time::{Duration, SystemTime};

use actix_rt::time::Instant;
use serde::{Deserialize, Serialize};

/// A replica's announcement in `<prefix>-replicas`, rewritten every third
/// of `lease_ttl`; the bucket's `max_age` drops it when the replica dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Announcement {
    /// The admin API's address, when it runs.
    pub http: Option<String>,
}

/// A feed's lease in `<prefix>-leases`: who holds it and, during a
/// handover, who it is being handed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    /// The replica holding the lease.
    pub owner: String,
    /// The replica that should connect the feed and then take the lease
    /// (make-before-break); `None` outside a handover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_to: Option<String>,
}

/// Where a stored feed came from: that decides whether `${VAR}` is expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Origin {
    /// A config file's `[[feeds]]`: each replica expands `${VAR}` from its environment.
    Config,
    /// `POST`/`PUT /feeds`: never expanded (a client must not be able to
    /// make a replica send it a secret).
    Api,
}

/// A feed in `<prefix>-feeds`: its `[[feeds]]` entry as written, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredFeed {
    /// Where it came from.
    pub origin: Origin,
    /// The feed, `${VAR}` unexpanded.
    pub feed: serde_json::Value,
}

/// A KV entry as this replica last saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen<T> {
    /// The value.
    pub value: T,
    /// The entry's revision (the stream sequence).
    pub revision: u64,
    /// When the server stored it, on this replica's clock: the entry
    /// expires `lease_ttl` later unless rewritten.
    pub written: Instant,
}

impl<T> Seen<T> {
    /// `value` at `revision`, written at `created` by the server's clock.
    pub(crate) fn new(value: T, revision: u64, created: SystemTime) -> Self {
        let age = SystemTime::now().duration_since(created).unwrap_or(Duration::ZERO);
        let now = Instant::now();
        Seen { value, revision, written: now.checked_sub(age).unwrap_or(now) }
    }

    /// Whether it is still alive `ttl` after it was written.
    pub(crate) fn alive(&self, ttl: Duration, now: Instant) -> bool {
        self.written + ttl > now
    }
}

/// A lease this replica holds.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The revision of our last write, which the next renewal must match.
    pub revision: u64,
    /// When the last successful renewal was sent (the server's expiry is later).
    pub renewed: Instant,
    /// Who we are handing it to, as last written.
    pub handover_to: Option<String>,
}
