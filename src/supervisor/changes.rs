//! Changes to the set of feeds while the sidecar runs: add, remove, replace,
//! reconnect, and reload the config file (applying only the difference).

use std::path::Path;

use actix::prelude::*;
use serde::Serialize;

use crate::config::{self, Config, ConfigError, FeedConfig};
use crate::connection::Reconnect;
use crate::metrics;
use crate::status::FeedStatus;

use super::Supervisor;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The feed (or file) does not pass validation.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No feed has that name.
    #[error("no feed named {0:?}")]
    UnknownFeed(String),
    /// The feed has no leg with that index.
    #[error("feed {feed:?} has {legs} leg(s), numbered from 0: there is no leg {leg}")]
    UnknownLeg {
        /// The feed's name.
        feed: String,
        /// The leg asked for.
        leg: usize,
        /// How many legs it has.
        legs: usize,
    },
    /// A feed with that name exists already.
    #[error("a feed named {0:?} exists already: replace it with PUT /feeds/{0}")]
    Exists(String),
    /// The name in the body differs from the one in the path.
    #[error("the body names feed {body:?} but the path names {path:?}")]
    NameMismatch {
        /// The name in the path.
        path: String,
        /// The name in the body.
        body: String,
    },
    /// The sidecar was started from a config value, not a file.
    #[error("there is no config file to reload: the sidecar was started from a config value")]
    NoConfigFile,
    /// Shutdown has begun.
    #[error("the sidecar is shutting down and accepts no changes")]
    ShuttingDown,
}

impl Supervisor {
    pub(super) fn check_accepting(&self) -> Result<(), ChangeError> {
        if self.accepting_changes {
            Ok(())
        } else {
            Err(ChangeError::ShuttingDown)
        }
    }

    /// Validates a feed given as JSON, with the config's defaults, the
    /// supervisor's transports and no `${VAR}` or `${file:PATH}` reference
    /// (a client must not be able to make the sidecar send it a secret), nor
    /// a program of its own to run as a credential provider.
    pub(super) fn feed_from_json(
        &self,
        json: serde_json::Value,
    ) -> Result<FeedConfig, ChangeError> {
        config::refuse_exec_credentials(&json)?;
        config::refuse_references(&json)?;
        self.feed_from_json_with(json, &|_| None)
    }

    /// Validates a feed given as JSON with `${VAR}` looked up in `env`.
    pub(super) fn feed_from_json_with(
        &self,
        json: serde_json::Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FeedConfig, ChangeError> {
        let base_dir = self
            .config_path
            .as_deref()
            .and_then(Path::parent)
            .map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf);
        let defaults = &self.config.defaults;
        Ok(config::parse_feed_json(json, defaults, &base_dir, env, &self.transports)?)
    }

    fn status_of(&self, name: &str) -> Result<FeedStatus, ChangeError> {
        self.feeds
            .get(name)
            .map(|entry| entry.status())
            .ok_or_else(|| ChangeError::UnknownFeed(name.to_owned()))
    }
}

/// Adds a feed given in the config's `[[feeds]]` shape, as JSON.
#[derive(Message)]
#[rtype(result = "Result<FeedStatus, ChangeError>")]
pub(crate) struct AddFeed {
    /// The feed, as JSON.
    pub feed: serde_json::Value,
}

impl Handler<AddFeed> for Supervisor {
    type Result = Result<FeedStatus, ChangeError>;

    fn handle(&mut self, add: AddFeed, ctx: &mut Context<Self>) -> Self::Result {
        self.check_accepting()?;
        let feed = self.feed_from_json(add.feed)?;
        if self.feeds.contains_key(&feed.name) {
            return Err(ChangeError::Exists(feed.name));
        }
        let name = feed.name.clone();
        tracing::info!(feed = %name, url = %feed.display_url(), "feed added");
        self.add_feed(feed, ctx);
        self.status_of(&name)
    }
}

/// Replaces a feed: the old connection is closed once the new one is open or,
/// on a sequenced feed, once the new one continues where delivery stands
/// (see [`crate::connection::sequence`]); in any case after a bounded wait.
#[derive(Message)]
#[rtype(result = "Result<FeedStatus, ChangeError>")]
pub(crate) struct ReplaceFeed {
    /// The feed's name (from the path).
    pub name: String,
    /// The new feed, as JSON; its `name`, if given, must match.
    pub feed: serde_json::Value,
}

impl Handler<ReplaceFeed> for Supervisor {
    type Result = Result<FeedStatus, ChangeError>;

    fn handle(&mut self, replace: ReplaceFeed, ctx: &mut Context<Self>) -> Self::Result {
        self.check_accepting()?;
        let ReplaceFeed { name, mut feed } = replace;
        if let Some(object) = feed.as_object_mut() {
            match object.get("name").and_then(serde_json::Value::as_str) {
                Some(body) if body != name => {
                    return Err(ChangeError::NameMismatch { path: name, body: body.to_owned() });
                }
                Some(_) => {}
                None => {
                    object.insert("name".to_owned(), serde_json::Value::String(name.clone()));
                }
            }
        }
        if !self.feeds.contains_key(&name) {
            return Err(ChangeError::UnknownFeed(name));
        }
        let feed = self.feed_from_json(feed)?;
        tracing::info!(feed = %name, url = %feed.display_url(), "feed replaced");
        self.replace_feed(feed, ctx);
        self.status_of(&name)
    }
}

/// Removes a feed: close frame 1000, then gone.
#[derive(Message)]
#[rtype(result = "Result<(), ChangeError>")]
pub(crate) struct RemoveFeed {
    /// The feed's name.
    pub name: String,
}

impl Handler<RemoveFeed> for Supervisor {
    type Result = Result<(), ChangeError>;

    fn handle(&mut self, remove: RemoveFeed, ctx: &mut Context<Self>) -> Self::Result {
        self.check_accepting()?;
        if !self.remove_feed(&remove.name, ctx) {
            return Err(ChangeError::UnknownFeed(remove.name));
        }
        tracing::info!(feed = %remove.name, "feed removed");
        Ok(())
    }
}

/// Drops a feed's connection and connects again at once (reviving a failed feed).
#[derive(Message)]
#[rtype(result = "Result<(), ChangeError>")]
pub(crate) struct ReconnectFeed {
    /// The feed's name.
    pub name: String,
}

impl Handler<ReconnectFeed> for Supervisor {
    type Result = Result<(), ChangeError>;

    fn handle(&mut self, reconnect: ReconnectFeed, ctx: &mut Context<Self>) -> Self::Result {
        self.check_accepting()?;
        let entry = self
            .feeds
            .get(&reconnect.name)
            .ok_or_else(|| ChangeError::UnknownFeed(reconnect.name.clone()))?;
        entry.shards.reconnect();
        match &entry.actor {
            Some(actor) => actor.do_send(Reconnect),
            None => {
                // It never started (unknown scheme): try again, the registry may know it now.
                let (config, shared) = (entry.config.clone(), entry.shared.clone());
                let home = entry.home.clone();
                let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
                if let Some(entry) = self.feeds.get_mut(&reconnect.name) {
                    entry.actor = actor;
                    entry.incarnation = incarnation;
                }
            }
        }
        Ok(())
    }
}

/// Re-reads the config file and applies the difference.
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, ChangeError>")]
pub(crate) struct Reload;

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Feeds that are new.
    pub feeds_added: Vec<String>,
    /// Feeds that are gone (closed with 1000).
    pub feeds_removed: Vec<String>,
    /// Feeds whose settings changed (reconnected; the old connection closes as `PUT` closes it).
    pub feeds_changed: Vec<String>,
    /// Feeds left as they were, connections, queues and counters untouched.
    pub feeds_unchanged: Vec<String>,
    /// Config sinks added, removed or changed.
    pub subscribers_changed: Vec<String>,
    /// Settings that only take effect on restart.
    pub needs_restart: Vec<String>,
}

impl Handler<Reload> for Supervisor {
    type Result = Result<ReloadReport, ChangeError>;

    fn handle(&mut self, _: Reload, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.reload(ctx);
        let label = if result.is_ok() { "ok" } else { "invalid" };
        metrics::config_reloaded(label);
        match &result {
            Ok(report) => tracing::info!(?report, "config reloaded"),
            Err(error) => tracing::error!("config reload refused, nothing changed: {error}"),
        }
        result
    }
}

impl Supervisor {
    fn reload(&mut self, ctx: &mut Context<Self>) -> Result<ReloadReport, ChangeError> {
        self.check_accepting()?;
        let path = self.config_path.clone().ok_or(ChangeError::NoConfigFile)?;
        let new = Config::load(&path, &self.transports)?;
        Ok(self.apply(new, ctx))
    }

    /// Makes the running feeds and sinks match `new`.
    fn apply(&mut self, new: Config, ctx: &mut Context<Self>) -> ReloadReport {
        let mut report = ReloadReport::default();
        // In a cluster the feeds come from the shared list, not from the file.
        let old_names: Vec<String> =
            if self.clustered { Vec::new() } else { self.feeds.keys().cloned().collect() };
        let new_feeds = if self.clustered { &[][..] } else { &new.feeds[..] };
        for name in old_names {
            if !new.feeds.iter().any(|feed| feed.name == name) {
                self.remove_feed(&name, ctx);
                report.feeds_removed.push(name);
            }
        }
        for feed in new_feeds {
            match self.feeds.get(&feed.name) {
                None => {
                    report.feeds_added.push(feed.name.clone());
                    self.add_feed(feed.clone(), ctx);
                }
                Some(entry) if *entry.config == *feed => {
                    report.feeds_unchanged.push(feed.name.clone());
                }
                Some(_) => {
                    report.feeds_changed.push(feed.name.clone());
                    self.replace_feed(feed.clone(), ctx);
                }
            }
        }
        let old_sinks: Vec<String> = self.sinks.keys().cloned().collect();
        for name in old_sinks {
            if !new.subscribers.iter().any(|subscriber| subscriber.name == name) {
                self.stop_sink(&name);
                report.subscribers_changed.push(name);
            }
        }
        for subscriber in &new.subscribers {
            if self.sinks.get(&subscriber.name).map(|sink| &sink.config) != Some(subscriber) {
                report.subscribers_changed.push(subscriber.name.clone());
                self.start_sink(subscriber.clone(), ctx);
            }
        }
        if new.http != self.config.http {
            report.needs_restart.push("http".to_owned());
        }
        // The file's feeds only seed the shared list: not a setting of the cluster.
        let settings = |config: &Config| {
            config
                .cluster
                .clone()
                .map(|cluster| config::ClusterConfig { seed_feeds: Vec::new(), ..cluster })
        };
        if settings(&new) != settings(&self.config) {
            report.needs_restart.push("cluster".to_owned());
        }
        if new.workers != self.config.workers {
            report.needs_restart.push("workers".to_owned());
        }
        self.hosts.reload(&new);
        self.config = new;
        report
    }
}
