//! What the cluster (`src/cluster/`) asks of the supervisor: run a feed this
//! replica holds the lease of, stop one it no longer holds, and check a feed
//! before it is written to the cluster's feed list. The supervisor's own
//! add, replace and remove paths do the work, so a clustered feed runs and
//! hands over exactly as a local one.

use actix::prelude::*;

use crate::config::FeedConfig;

use super::{ChangeError, Supervisor};

/// Runs a feed given in the `[[feeds]]` shape, as JSON: added when new,
/// replaced when its settings changed, left alone otherwise.
#[derive(Message)]
#[rtype(result = "Result<(), ChangeError>")]
pub(crate) struct RunFeed {
    /// The feed as stored in the cluster's feed list.
    pub feed: serde_json::Value,
    /// Whether `${VAR}` is expanded from this process's environment: true
    /// for feeds that came from a config file, false for feeds posted over HTTP.
    pub expand_env: bool,
}

impl Handler<RunFeed> for Supervisor {
    type Result = Result<(), ChangeError>;

    fn handle(&mut self, run: RunFeed, ctx: &mut Context<Self>) -> Self::Result {
        self.check_accepting()?;
        let feed = if run.expand_env {
            self.feed_from_json_with(run.feed, &|name| std::env::var(name).ok())?
        } else {
            self.feed_from_json(run.feed)?
        };
        match self.feeds.get(&feed.name) {
            Some(entry) if *entry.config == feed => {}
            Some(_) => {
                tracing::info!(feed = %feed.name, "cluster feed changed; replacing it");
                self.replace_feed(feed, ctx);
            }
            None => {
                tracing::info!(feed = %feed.name, url = %feed.display_url(), "cluster feed started here");
                self.add_feed(feed, ctx);
            }
        }
        Ok(())
    }
}

/// Stops and forgets a feed this replica no longer holds; nothing when it does not run here.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopFeed {
    /// The feed's name.
    pub name: String,
}

impl Handler<StopFeed> for Supervisor {
    type Result = ();

    fn handle(&mut self, stop: StopFeed, ctx: &mut Context<Self>) {
        if self.remove_feed(&stop.name, ctx) {
            tracing::info!(feed = %stop.name, "cluster feed stopped here");
        }
    }
}

/// Checks a feed given as JSON (as `POST /feeds` would) without running it.
#[derive(Message)]
#[rtype(result = "Result<FeedConfig, ChangeError>")]
pub(crate) struct CheckFeed {
    /// The feed, as JSON.
    pub feed: serde_json::Value,
}

impl Handler<CheckFeed> for Supervisor {
    type Result = Result<FeedConfig, ChangeError>;

    fn handle(&mut self, check: CheckFeed, _: &mut Context<Self>) -> Self::Result {
        self.check_accepting()?;
        self.feed_from_json(check.feed)
    }
}
