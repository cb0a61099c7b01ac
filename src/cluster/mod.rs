//! Replicas sharing one feed list through NATS JetStream, each feed owned
//! by exactly one of them.
//!
//! One [`Cluster`] actor per process owns the NATS connection (made on the
//! process-long NATS arbiter, see `src/nats.rs`) and three KV buckets:
//! - `<prefix>-replicas`: each replica announces itself every third of
//!   `lease_ttl`; the bucket's `max_age` (= `lease_ttl`) drops a dead one.
//! - `<prefix>-leases`: one key per feed, `{owner, handover_to}`. A lease
//!   is taken by `create` (compare-and-set on absent) and renewed every
//!   third of `lease_ttl` by `update` on the revision last written; the
//!   bucket's `max_age` expires the lease of a replica that died.
//! - `<prefix>-feeds`: the feed list, each feed as written (`${VAR}`
//!   unexpanded), seeded from the config file, changed by `POST`, `PUT` and
//!   `DELETE /feeds` on any replica.
//!
//! The actor watches all three and, on every tick (a sixth of `lease_ttl`),
//! compares what it holds with where rendezvous hashing places each feed
//! (`placement.rs`): it takes absent leases of the feeds placed on it (any
//! replica takes one left absent for two ticks), renews its own, and
//! hands over those placed elsewhere make-before-break: it writes
//! `handover_to` into the lease, the new replica connects the feed and, once
//! it is open, takes the lease by `update` on its revision; the old owner
//! sees the lease change (its watch, or its next renewal failing) and stops
//! its connection. A feed connects only while this replica holds its lease
//! (or, during a handover, was named to take it).
//!
//! If renewals fail for two thirds of `lease_ttl` (NATS unreachable), the
//! feeds are stopped before their leases can expire on the server, so that
//! no other replica can hold them at the same time (`nats_unreachable =
//! "stop_feeds"`, the default), or kept running, accepting that another
//! replica may take them too (`"keep_feeds"`).

mod placement;
mod state;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::Instant;
use async_nats::jetstream::kv::{self, Entry, Operation, Store};
use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::StreamExt;

use crate::config::{ClusterConfig, NatsUnreachable};
use crate::metrics::ClusterMetrics;
use crate::nats::ClusterLink;
use crate::status::FeedState;
use crate::supervisor::{GetFeedStatus, RunFeed, StopFeed, Supervisor};

use state::{Announcement, Held, Lease, Origin, Seen, StoredFeed};
pub(crate) use view::{FeedChange, FeedChangeError, GetClusterFeeds, GetClusterView};

/// The three buckets, once they exist.
#[derive(Clone)]
struct Stores {
    replicas: Store,
    leases: Store,
    feeds: Store,
}

/// Which bucket a watched entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Replicas,
    Leases,
    Feeds,
}

/// An event of one of the bucket watches.
#[derive(Message)]
#[rtype(result = "()")]
enum Watched {
    /// An entry was written or deleted.
    Entry(Bucket, Box<Entry>),
    /// The watch ended or failed: watch again.
    Ended(Bucket),
}

/// What one tick asks of NATS, run together, each bounded in time.
enum Action {
    Announce,
    Acquire { feed: String },
    Adopt { feed: String, revision: u64 },
    Renew { feed: String, revision: u64, handover_to: Option<String> },
    TakeOver { feed: String, revision: u64 },
    Release { feed: String, revision: u64 },
}

/// What came of an [`Action`].
enum Outcome {
    Announced,
    Acquired {
        feed: String,
        revision: u64,
        sent: Instant,
        handed_in: bool,
    },
    Conflict {
        feed: String,
    },
    Renewed {
        feed: String,
        revision: u64,
        sent: Instant,
        handover_to: Option<String>,
    },
    Lost {
        feed: String,
    },
    Released,
    /// A handover waits for the connection here to open.
    Waiting,
    Failed {
        what: &'static str,
        feed: Option<String>,
        error: String,
    },
}

/// The cluster member this process is.
pub(crate) struct Cluster {
    config: ClusterConfig,
    /// The admin API's address, announced so that operators find each replica.
    http: Option<SocketAddr>,
    supervisor: Addr<Supervisor>,
    metrics: ClusterMetrics,
    link: &'static ClusterLink,
    client: Option<async_nats::Client>,
    stores: Option<Stores>,
    /// Live replicas as last announced (stale ones are filtered on use).
    replicas: BTreeMap<String, Seen<Announcement>>,
    /// Every feed's lease as last seen (expired ones are filtered on use).
    leases: BTreeMap<String, Seen<Lease>>,
    /// The feed list.
    feeds: BTreeMap<String, StoredFeed>,
    /// The leases this replica holds.
    held: BTreeMap<String, Held>,
    /// Feeds connected here ahead of taking their lease in a handover.
    joining: BTreeSet<String>,
    /// Feeds whose lease was seen absent, and since when.
    absent_since: BTreeMap<String, Instant>,
    /// When this replica last announced itself.
    announced: Option<Instant>,
    /// A tick's NATS work is under way: the next tick waits for it.
    busy: bool,
    /// Set by [`Leave`]: no more leases are taken.
    leaving: bool,
}

impl Cluster {
    /// A cluster member for `config`, driving `supervisor`'s feeds.
    pub(crate) fn new(
        config: ClusterConfig,
        http: Option<SocketAddr>,
        supervisor: Addr<Supervisor>,
    ) -> Self {
        let metrics = ClusterMetrics::new(&config.replica);
        Cluster {
            config,
            http,
            supervisor,
            metrics,
            link: ClusterLink::get(),
            client: None,
            stores: None,
            replicas: BTreeMap::new(),
            leases: BTreeMap::new(),
            feeds: BTreeMap::new(),
            held: BTreeMap::new(),
            joining: BTreeSet::new(),
            absent_since: BTreeMap::new(),
            announced: None,
            busy: false,
            leaving: false,
        }
    }

    fn tick_interval(&self) -> Duration {
        self.config.lease_ttl / 6
    }

    /// How long one NATS request of a tick may take.
    fn request_timeout(&self) -> Duration {
        self.config.lease_ttl / 6
    }

    fn me(&self) -> &str {
        &self.config.replica
    }

    /// Connects, then makes (or opens) the buckets, seeds the feed list and watches.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        let urls: Vec<String> =
            self.config.nats.iter().map(|url| url.expose().to_owned()).collect();
        let fut = async move { crate::nats::connect(&urls, "cluster").await };
        ctx.spawn(fut.into_actor(self).map(|result, cluster, ctx| match result {
            Ok(client) => {
                cluster.link.set_client(client.clone());
                cluster.client = Some(client);
                cluster.open_buckets(ctx);
            }
            Err(error) => {
                tracing::error!(%error, "cluster: NATS connection refused; retrying");
                ctx.run_later(cluster.tick_interval(), |cluster, ctx| cluster.connect(ctx));
            }
        }));
    }

    fn open_buckets(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else { return };
        let config = self.config.clone();
        let fut = async move {
            let jetstream = async_nats::jetstream::new(client);
            let replicas =
                bucket(&jetstream, config.replicas_bucket(), Some(config.lease_ttl)).await?;
            let leases = bucket(&jetstream, config.leases_bucket(), Some(config.lease_ttl)).await?;
            let feeds = bucket(&jetstream, config.feeds_bucket(), None).await?;
            let stores = Stores { replicas, leases, feeds };
            seed(&stores.feeds, &config.seed_feeds).await;
            Ok::<Stores, String>(stores)
        };
        ctx.spawn(fut.into_actor(self).map(|result, cluster, ctx| match result {
            Ok(stores) => {
                tracing::info!(replica = %cluster.me(), "cluster: joined");
                cluster.stores = Some(stores);
                for bucket in [Bucket::Replicas, Bucket::Leases, Bucket::Feeds] {
                    cluster.watch(bucket, ctx);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cluster: cannot open the KV buckets yet; retrying");
                ctx.run_later(cluster.tick_interval(), |cluster, ctx| cluster.open_buckets(ctx));
            }
        }));
    }

    fn store(&self, bucket: Bucket) -> Option<Store> {
        let stores = self.stores.as_ref()?;
        Some(match bucket {
            Bucket::Replicas => stores.replicas.clone(),
            Bucket::Leases => stores.leases.clone(),
            Bucket::Feeds => stores.feeds.clone(),
        })
    }

    /// Watches every key of `bucket`, its current values first; an ended
    /// watch is started again after a tick.
    fn watch(&mut self, bucket: Bucket, ctx: &mut Context<Self>) {
        let Some(store) = self.store(bucket) else { return };
        let fut = async move { store.watch_with_history(">").await };
        ctx.spawn(fut.into_actor(self).map(move |result, cluster, ctx| match result {
            Ok(watch) => {
                let entries = watch.filter_map(move |entry| async move {
                    match entry {
                        Ok(entry) => Some(Watched::Entry(bucket, Box::new(entry))),
                        Err(error) => {
                            tracing::warn!(%error, ?bucket, "cluster: watch error");
                            None
                        }
                    }
                });
                let ended = futures_util::stream::once(async move { Watched::Ended(bucket) });
                ctx.add_message_stream(entries.chain(ended));
            }
            Err(error) => {
                tracing::warn!(%error, ?bucket, "cluster: cannot watch yet; retrying");
                ctx.run_later(cluster.tick_interval(), move |cluster, ctx| {
                    cluster.watch(bucket, ctx)
                });
            }
        }));
    }

    fn live_replicas(&self, now: Instant) -> Vec<&str> {
        let ttl = self.config.lease_ttl;
        let mut live: Vec<&str> = self
            .replicas
            .iter()
            .filter(|(_, seen)| seen.alive(ttl, now))
            .map(|(name, _)| name.as_str())
            .collect();
        if !self.leaving && !live.contains(&self.me()) {
            live.push(self.me());
        }
        live
    }

    /// The lease of `feed` unless it has expired.
    fn lease(&self, feed: &str, now: Instant) -> Option<&Seen<Lease>> {
        self.leases.get(feed).filter(|seen| seen.alive(self.config.lease_ttl, now))
    }

    /// Works out this tick's NATS requests, and starts or stops feeds whose
    /// fate is already known.
    fn plan(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let announce_every = self.config.lease_ttl / 3;
        if !self.leaving && self.announced.is_none_or(|at| now >= at + announce_every) {
            actions.push(Action::Announce);
        }
        let live = self.live_replicas(now);
        let names: Vec<&str> = self.feeds.keys().map(String::as_str).collect();
        let placement: BTreeMap<String, String> = placement::place(&names, &live)
            .into_iter()
            .map(|(feed, replica)| (feed.to_owned(), replica.to_owned()))
            .collect();
        let me = self.me().to_owned();
        let fallback = self.tick_interval() * 2;
        for feed in self.feeds.keys().cloned().collect::<Vec<_>>() {
            let desired = placement.get(&feed).cloned();
            if let Some(held) = self.held.get(&feed) {
                let handover_to = desired.clone().filter(|desired| *desired != me);
                if now >= held.renewed + announce_every || handover_to != held.handover_to {
                    actions.push(Action::Renew { feed, revision: held.revision, handover_to });
                }
                continue;
            }
            if self.leaving {
                continue;
            }
            match self.lease(&feed, now).map(|seen| (seen.value.clone(), seen.revision)) {
                None => {
                    let since = *self.absent_since.entry(feed.clone()).or_insert(now);
                    if desired.as_deref() == Some(&me) || now >= since + fallback {
                        actions.push(Action::Acquire { feed: feed.clone() });
                    }
                    self.stop_joining(&feed);
                }
                Some((lease, revision)) if lease.owner == me => {
                    // Ours from before a restart under the same name: nobody else runs it.
                    actions.push(Action::Adopt { feed: feed.clone(), revision });
                }
                Some((lease, revision)) if lease.handover_to.as_deref() == Some(&me) => {
                    self.absent_since.remove(&feed);
                    if self.joining.insert(feed.clone()) {
                        self.run_feed(&feed);
                    } else {
                        // Taken once the connection is open (checked in `run_tick`).
                        actions.push(Action::TakeOver { feed: feed.clone(), revision });
                    }
                }
                Some(_) => {
                    self.absent_since.remove(&feed);
                    self.stop_joining(&feed);
                }
            }
        }
        // Feeds removed from the list: release their leases.
        let removed: Vec<(String, u64)> = self
            .held
            .iter()
            .filter(|(feed, _)| !self.feeds.contains_key(*feed))
            .map(|(feed, held)| (feed.clone(), held.revision))
            .collect();
        for (feed, revision) in removed {
            self.drop_feed(&feed);
            actions.push(Action::Release { feed, revision });
        }
        for feed in self.joining.clone() {
            if !self.feeds.contains_key(&feed) {
                self.stop_joining(&feed);
            }
        }
        actions
    }

    /// Runs one tick: plan, then the NATS requests together, then their outcomes.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.check_unrenewed();
        if self.busy {
            return;
        }
        let Some(stores) = self.stores.clone() else { return };
        let actions = self.plan(Instant::now());
        if actions.is_empty() {
            return;
        }
        self.busy = true;
        let me = self.me().to_owned();
        let announcement = Announcement { http: self.http.map(|addr| addr.to_string()) };
        let timeout = self.request_timeout();
        let supervisor = self.supervisor.clone();
        let requests = actions.into_iter().map(move |action| {
            let stores = stores.clone();
            let me = me.clone();
            let announcement = announcement.clone();
            let supervisor = supervisor.clone();
            async move {
                let sent = Instant::now();
                let request = run(action, &stores, &me, &announcement, &supervisor, sent);
                match actix_rt::time::timeout(timeout, request).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Failed {
                        what: "request",
                        feed: None,
                        error: format!("no answer from NATS within {timeout:?}"),
                    },
                }
            }
        });
        let all = join_all(requests);
        ctx.spawn(all.into_actor(self).map(|outcomes, cluster, _| {
            cluster.busy = false;
            for outcome in outcomes {
                cluster.apply(outcome);
            }
            cluster.metrics.feeds_owned.set(cluster.held.len() as f64);
            cluster.metrics.replicas.set(cluster.live_replicas(Instant::now()).len() as f64);
        }));
    }

    fn apply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Announced => self.announced = Some(Instant::now()),
            Outcome::Acquired { feed, revision, sent, handed_in } => {
                self.metrics.acquisition("acquired");
                if handed_in {
                    self.metrics.handover("in");
                }
                self.joining.remove(&feed);
                self.absent_since.remove(&feed);
                tracing::info!(%feed, epoch = revision, handover = handed_in, "cluster: lease taken");
                self.link.set_epoch(&feed, Some(revision));
                self.held.insert(feed.clone(), Held { revision, renewed: sent, handover_to: None });
                if !handed_in {
                    self.run_feed(&feed);
                }
            }
            Outcome::Conflict { feed } => {
                self.metrics.acquisition("conflict");
                tracing::debug!(%feed, "cluster: lease held elsewhere");
            }
            Outcome::Renewed { feed, revision, sent, handover_to } => {
                self.metrics.renewal("ok");
                if let Some(held) = self.held.get_mut(&feed) {
                    held.revision = revision;
                    held.renewed = sent;
                    held.handover_to = handover_to;
                }
            }
            Outcome::Lost { feed } => {
                self.metrics.renewal("lost");
                if self.held.contains_key(&feed) {
                    self.lose(&feed);
                }
            }
            Outcome::Released | Outcome::Waiting => {}
            Outcome::Failed { what, feed, error } => {
                match what {
                    "renew" => self.metrics.renewal("error"),
                    "acquire" => self.metrics.acquisition("error"),
                    _ => {}
                }
                tracing::warn!(what, feed = feed.as_deref().unwrap_or(""), %error, "cluster: NATS request failed");
            }
        }
    }

    /// The lease of a feed we held belongs to another replica now.
    fn lose(&mut self, feed: &str) {
        let handed_out = self.held.get(feed).and_then(|held| held.handover_to.clone());
        let owner = self.leases.get(feed).map(|seen| seen.value.owner.clone());
        if handed_out.is_some() && handed_out == owner {
            self.metrics.handover("out");
            tracing::info!(%feed, to = owner.as_deref().unwrap_or(""), "cluster: feed handed over");
        } else {
            self.metrics.loss("taken");
            tracing::warn!(%feed, "cluster: lease lost to another replica; feed stopped here");
        }
        self.drop_feed(feed);
    }

    /// Stops running `feed` here and forgets its lease.
    fn drop_feed(&mut self, feed: &str) {
        self.held.remove(feed);
        self.joining.remove(feed);
        self.link.set_epoch(feed, None);
        self.supervisor.do_send(StopFeed { name: feed.to_owned() });
        self.metrics.feeds_owned.set(self.held.len() as f64);
    }

    fn stop_joining(&mut self, feed: &str) {
        if self.joining.remove(feed) {
            self.supervisor.do_send(StopFeed { name: feed.to_owned() });
        }
    }

    fn run_feed(&mut self, feed: &str) {
        let Some(stored) = self.feeds.get(feed) else { return };
        let run =
            RunFeed { feed: stored.feed.clone(), expand_env: stored.origin == Origin::Config };
        let name = feed.to_owned();
        let supervisor = self.supervisor.clone();
        actix_rt::spawn(async move {
            match supervisor.send(run).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(feed = %name, %error, "cluster: this replica cannot run the feed");
                }
                Err(_) => {}
            }
        });
    }

    /// Stops the feeds whose leases could not be renewed for two thirds of
    /// `lease_ttl`, before the server could let another replica take them
    /// (unless `nats_unreachable = "keep_feeds"`).
    fn check_unrenewed(&mut self) {
        if self.config.nats_unreachable == NatsUnreachable::KeepFeeds {
            return;
        }
        let limit = self.config.lease_ttl * 2 / 3;
        let now = Instant::now();
        let stale: Vec<String> = self
            .held
            .iter()
            .filter(|(_, held)| now >= held.renewed + limit)
            .map(|(feed, _)| feed.clone())
            .collect();
        for feed in stale {
            self.metrics.loss("unrenewed");
            tracing::error!(%feed, "cluster: lease not renewed in time (NATS unreachable?); feed stopped so that it has one owner at most");
            self.drop_feed(&feed);
        }
    }

    fn on_entry(&mut self, bucket: Bucket, entry: Entry) {
        let deleted = matches!(entry.operation, Operation::Delete | Operation::Purge);
        let created = std::time::SystemTime::from(entry.created);
        let key = entry.key;
        match bucket {
            Bucket::Replicas => {
                if deleted {
                    self.replicas.remove(&key);
                } else if let Ok(value) = serde_json::from_slice::<Announcement>(&entry.value) {
                    self.replicas.insert(key, Seen::new(value, entry.revision, created));
                }
            }
            Bucket::Feeds => {
                if deleted {
                    self.feeds.remove(&key);
                } else {
                    match serde_json::from_slice::<StoredFeed>(&entry.value) {
                        Ok(stored) => {
                            let changed = self.feeds.get(&key) != Some(&stored);
                            self.feeds.insert(key.clone(), stored);
                            if changed
                                && (self.held.contains_key(&key) || self.joining.contains(&key))
                            {
                                self.run_feed(&key);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(feed = %key, %error, "cluster: unreadable feed entry ignored");
                        }
                    }
                }
            }
            Bucket::Leases => {
                let newer =
                    self.leases.get(&key).is_none_or(|seen| entry.revision >= seen.revision);
                if !newer {
                    return;
                }
                if deleted {
                    self.leases.remove(&key);
                    return;
                }
                let Ok(lease) = serde_json::from_slice::<Lease>(&entry.value) else { return };
                let taken = lease.owner != self.config.replica
                    && self.held.get(&key).is_some_and(|held| entry.revision > held.revision);
                self.leases.insert(key.clone(), Seen::new(lease, entry.revision, created));
                if taken {
                    self.lose(&key);
                }
            }
        }
    }
}

/// Opens bucket `name`, making it if it does not exist (`max_age`: entries
/// expire that long after their last write).
async fn bucket(
    jetstream: &async_nats::jetstream::Context,
    name: String,
    max_age: Option<Duration>,
) -> Result<Store, String> {
    if let Ok(store) = jetstream.get_key_value(name.clone()).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.clone(),
        history: 1,
        max_age: max_age.unwrap_or_default(),
        ..Default::default()
    };
    match jetstream.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another replica made it meanwhile.
        Err(_) => jetstream
            .get_key_value(name.clone())
            .await
            .map_err(|error| format!("bucket {name}: {error}")),
    }
}

/// Adds the config file's feeds that the list does not have yet: the file
/// seeds the list; later changes go through the API.
async fn seed(feeds: &Store, seed_feeds: &[serde_json::Value]) {
    for feed in seed_feeds {
        let Some(name) = feed.get("name").and_then(serde_json::Value::as_str) else { continue };
        let stored = StoredFeed { origin: Origin::Config, feed: feed.clone() };
        let Ok(value) = serde_json::to_vec(&stored) else { continue };
        match feeds.create(name, Bytes::from(value)).await {
            Ok(_) => {
                tracing::info!(feed = %name, "cluster: feed added to the shared list from the config file")
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(error) => tracing::warn!(feed = %name, %error, "cluster: cannot seed the feed"),
        }
    }
}

fn lease_value(me: &str, handover_to: Option<String>) -> Bytes {
    let lease = Lease { owner: me.to_owned(), handover_to };
    Bytes::from(serde_json::to_vec(&lease).unwrap_or_default())
}

/// Whether an update failed because the lease was written since (not our revision).
fn moved_on(error: &kv::UpdateError) -> bool {
    error.kind() == kv::UpdateErrorKind::WrongLastRevision
}

/// What came of writing a lease to take it: ours, held elsewhere (`conflict`), or failed.
fn acquisition<E: std::fmt::Display>(
    result: Result<u64, E>,
    conflict: impl Fn(&E) -> bool,
    feed: String,
    sent: Instant,
    handed_in: bool,
) -> Outcome {
    match result {
        Ok(revision) => Outcome::Acquired { feed, revision, sent, handed_in },
        Err(error) if conflict(&error) => Outcome::Conflict { feed },
        Err(error) => {
            Outcome::Failed { what: "acquire", feed: Some(feed), error: error.to_string() }
        }
    }
}

/// Runs one [`Action`] against the buckets.
async fn run(
    action: Action,
    stores: &Stores,
    me: &str,
    announcement: &Announcement,
    supervisor: &Addr<Supervisor>,
    sent: Instant,
) -> Outcome {
    match action {
        Action::Announce => {
            let value = Bytes::from(serde_json::to_vec(announcement).unwrap_or_default());
            match stores.replicas.put(me, value).await {
                Ok(_) => Outcome::Announced,
                Err(error) => {
                    Outcome::Failed { what: "announce", feed: None, error: error.to_string() }
                }
            }
        }
        Action::Acquire { feed } => {
            let created = stores.leases.create(&feed, lease_value(me, None)).await;
            let exists =
                |error: &kv::CreateError| error.kind() == kv::CreateErrorKind::AlreadyExists;
            acquisition(created, exists, feed, sent, false)
        }
        Action::Adopt { feed, revision } => {
            let updated = stores.leases.update(&feed, lease_value(me, None), revision).await;
            acquisition(updated, moved_on, feed, sent, false)
        }
        Action::TakeOver { feed, revision } => {
            let open = supervisor
                .send(GetFeedStatus { name: feed.clone() })
                .await
                .ok()
                .flatten()
                .is_some_and(|status| status.state == FeedState::Open);
            if !open {
                return Outcome::Waiting;
            }
            let updated = stores.leases.update(&feed, lease_value(me, None), revision).await;
            acquisition(updated, moved_on, feed, sent, true)
        }
        Action::Renew { feed, revision, handover_to } => {
            let value = lease_value(me, handover_to.clone());
            match stores.leases.update(&feed, value, revision).await {
                Ok(revision) => Outcome::Renewed { feed, revision, sent, handover_to },
                Err(error) if moved_on(&error) => Outcome::Lost { feed },
                Err(error) => {
                    Outcome::Failed { what: "renew", feed: Some(feed), error: error.to_string() }
                }
            }
        }
        Action::Release { feed, revision } => {
            match stores.leases.delete_expect_revision(&feed, Some(revision)).await {
                Ok(()) => Outcome::Released,
                Err(error) => {
                    Outcome::Failed { what: "release", feed: Some(feed), error: error.to_string() }
                }
            }
        }
    }
}

impl Actor for Cluster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
        ctx.run_interval(self.tick_interval(), |cluster, ctx| cluster.tick(ctx));
    }
}

impl Handler<Watched> for Cluster {
    type Result = ();

    fn handle(&mut self, watched: Watched, ctx: &mut Context<Self>) {
        match watched {
            Watched::Entry(bucket, entry) => self.on_entry(bucket, *entry),
            Watched::Ended(bucket) => {
                tracing::warn!(?bucket, "cluster: watch ended; watching again");
                ctx.run_later(self.tick_interval(), move |cluster, ctx| cluster.watch(bucket, ctx));
            }
        }
    }
}

/// Leaves the cluster at shutdown: the leases this replica holds are
/// released and its announcement deleted, so that the others take its feeds
/// at once instead of after `lease_ttl`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave;

impl Handler<Leave> for Cluster {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        self.leaving = true;
        let held: Vec<(String, u64)> =
            self.held.iter().map(|(feed, held)| (feed.clone(), held.revision)).collect();
        for (feed, _) in &held {
            self.drop_feed(feed);
        }
        for feed in self.joining.clone() {
            self.stop_joining(&feed);
        }
        let stores = self.stores.clone();
        let me = self.me().to_owned();
        let timeout = self.request_timeout();
        Box::pin(
            async move {
                let Some(stores) = stores else { return };
                let releases = held.into_iter().map(|(feed, revision)| {
                    let leases = stores.leases.clone();
                    async move { leases.delete_expect_revision(&feed, Some(revision)).await }
                });
                let leave = async {
                    join_all(releases).await;
                    let _ = stores.replicas.delete(&me).await;
                };
                let _ = actix_rt::time::timeout(timeout, leave).await;
            }
            .into_actor(self),
        )
    }
}
