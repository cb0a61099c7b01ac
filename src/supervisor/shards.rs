//! Feeds spread over several connections by `max_topics_per_connection`:
//! one logical feed, several connection actors.
//!
//! Shard 0 is the feed's own actor (`FeedEntry::actor`, its status cell the
//! feed's); shards 1 and up live here, each with its own status cell and
//! incarnation, on the feed's worker. Every shard runs with a copy of the
//! feed whose `subscribe.topics` are its own (balanced contiguous runs, see
//! `SubscribeConfig::shard_topics`), so a shard that reconnects resubscribes
//! only its topics and disturbs no other. Counters are per feed (shards add
//! to them); the feed's state gauges follow shard 0, each shard has
//! `feedvisor_shard_up`; `/feeds` shows the feed once, with its shards and
//! every shard's topics.

use std::sync::Arc;

use actix::prelude::*;

use super::{FeedEntry, Home, Retiring, Supervisor};
use crate::config::FeedConfig;
use crate::connection::{FeedConnection, Reconnect};
use crate::metrics;
use crate::status::{FeedState, FeedStatus, ShardStatus, StatusCell, SubscriptionStatus};

/// One connection of a sharded feed other than its first.
struct Shard {
    /// Its index (1 and up).
    index: usize,
    /// The feed as this shard runs it (its topics only).
    config: Arc<FeedConfig>,
    shared: Arc<StatusCell>,
    /// Its actor; `None` when it could not start (unknown scheme).
    actor: Option<Addr<FeedConnection>>,
    /// Which actor of the shard is current; events from others are stale.
    incarnation: u64,
}

/// A feed's shards beyond the first; empty for a feed on one connection.
#[derive(Default)]
pub(super) struct Shards {
    extra: Vec<Shard>,
}

/// The config shard `index` of `config` runs with; `config` itself when the
/// feed is not sharded.
pub(super) fn shard_config(config: &Arc<FeedConfig>, index: usize) -> Arc<FeedConfig> {
    match &config.subscribe {
        Some(subscribe) if subscribe.max_topics_per_connection.is_some() => Arc::new(FeedConfig {
            subscribe: Some(subscribe.for_shard(index)),
            ..(**config).clone()
        }),
        _ => config.clone(),
    }
}

impl Shards {
    /// The shards' actors.
    pub(super) fn actors(&self) -> impl Iterator<Item = Addr<FeedConnection>> + '_ {
        self.extra.iter().filter_map(|shard| shard.actor.clone())
    }

    /// Drops every shard's connection and connects again at once.
    pub(super) fn reconnect(&self) {
        for actor in self.actors() {
            actor.do_send(Reconnect);
        }
    }
}

impl Supervisor {
    /// Starts shards 1 and up of a sharded feed (none for another feed).
    pub(super) fn start_shards(
        &mut self,
        config: &Arc<FeedConfig>,
        home: &Home,
        ctx: &mut Context<Self>,
    ) -> Shards {
        let Some(subscribe) = &config.subscribe else { return Shards::default() };
        if subscribe.max_topics_per_connection.is_none() {
            return Shards::default();
        }
        let count = subscribe.shard_count();
        metrics::feed_shards(&config.name, count);
        let extra = (1..count)
            .map(|index| {
                let config = shard_config(config, index);
                let shared = StatusCell::new();
                let (actor, incarnation) = self.spawn_connection(&config, &shared, home, ctx);
                Shard { index, config, shared, actor, incarnation }
            })
            .collect();
        Shards { extra }
    }

    /// Hands a replaced feed's shards to the retiring list: they go when the
    /// new feed's first actor delivers, as its first shard does.
    pub(super) fn retire_shards(&mut self, feed: &str, shards: Shards) {
        for shard in shards.extra {
            let Some(actor) = shard.actor else { continue };
            self.retiring.push(Retiring {
                feed: feed.to_owned(),
                incarnation: shard.incarnation,
                sequence: None,
                leg: None,
                actor,
            });
        }
    }

    /// Restarts the shard whose actor `incarnation` died unasked; false when
    /// it is no shard of `feed`.
    pub(super) fn shard_died(
        &mut self,
        feed: &str,
        incarnation: u64,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(entry) = self.feeds.get(feed) else { return false };
        let Some(at) = entry.shards.extra.iter().position(|s| s.incarnation == incarnation) else {
            return false;
        };
        if !self.accepting_changes {
            return true;
        }
        let shard = &entry.shards.extra[at];
        tracing::error!(
            feed,
            shard = shard.index,
            "shard's connection actor died unexpectedly; restarting it"
        );
        metrics::actor_restarted("connection");
        let (config, shared, home) =
            (shard.config.clone(), shard.shared.clone(), entry.home.clone());
        shared.set_state(FeedState::Connecting);
        shared.set_error("the connection actor died unexpectedly and was restarted");
        let (actor, incarnation) = self.spawn_connection(&config, &shared, &home, ctx);
        if let Some(shard) = self.feeds.get_mut(feed).and_then(|e| e.shards.extra.get_mut(at)) {
            shard.actor = actor;
            shard.incarnation = incarnation;
        }
        true
    }
}

impl FeedEntry {
    /// Adds the shards and the generated subscriptions to the feed's status:
    /// counts summed over shards, the state of the first shard not open.
    pub(super) fn add_shards(&self, status: &mut FeedStatus) {
        let sharded = !self.shards.extra.is_empty()
            || self
                .config
                .subscribe
                .as_ref()
                .is_some_and(|s| s.max_topics_per_connection.is_some());
        if self.config.subscribe.is_some() {
            let mut topics = self.shared.subscriptions().snapshot(sharded.then_some(0));
            for shard in &self.shards.extra {
                topics.extend(shard.shared.subscriptions().snapshot(Some(shard.index)));
            }
            status.subscriptions = Some(SubscriptionStatus::of(topics));
        }
        if !sharded {
            return;
        }
        let first = ShardStatus {
            index: 0,
            state: self.shared.state(),
            topics: self.topics_of(&self.config, 0),
            reconnects: self.shared.reconnects(),
            messages_in: self.shared.messages_in(),
            last_error: self.shared.last_error(),
        };
        let mut shards = vec![first];
        for shard in &self.shards.extra {
            status.messages_in += shard.shared.messages_in();
            status.bytes_in += shard.shared.bytes_in();
            status.reconnects += shard.shared.reconnects();
            shards.push(ShardStatus {
                index: shard.index,
                state: shard.shared.state(),
                topics: shard.config.subscribe.as_ref().map_or(0, |s| s.topics.len()),
                reconnects: shard.shared.reconnects(),
                messages_in: shard.shared.messages_in(),
                last_error: shard.shared.last_error(),
            });
        }
        status.state = self.state();
        status.shards = Some(shards);
    }

    fn topics_of(&self, config: &FeedConfig, index: usize) -> usize {
        config.subscribe.as_ref().map_or(0, |subscribe| subscribe.shard_topics(index).len())
    }

    /// The feed's state: its first shard's (its best leg's, on a feed with
    /// legs), or the first of its shards that is not open.
    pub(super) fn state(&self) -> FeedState {
        std::iter::once(self.feed_state())
            .chain(self.shards.extra.iter().map(|shard| shard.shared.state()))
            .find(|state| *state != FeedState::Open)
            .unwrap_or(FeedState::Open)
    }
}
