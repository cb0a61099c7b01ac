//! The live state of a feed's generated subscriptions: each topic's state
//! (`pending`, `active`, `rejected` with the server's reason, `timed_out`)
//! and whether it is stale, written by the connection actor of its shard and
//! read by `/feeds` without messaging it; and the shards of a feed spread
//! over several connections.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::FeedState;

/// Where one topic's subscription stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicState {
    /// Not yet sent on this connection, or sent and waiting for its reply.
    Pending,
    /// Acknowledged by the server (or sent, when replies are not matched).
    Active,
    /// Refused by the server; not sent again after a reconnect unless
    /// `subscribe.replay_rejected = true`.
    Rejected,
    /// No reply within `subscribe.ack.timeout` (a late reply still counts).
    TimedOut,
}

impl TopicState {
    /// Every state, in a fixed order (the order of metric handles).
    pub const ALL: [TopicState; 4] =
        [TopicState::Pending, TopicState::Active, TopicState::Rejected, TopicState::TimedOut];

    /// The snake_case name, the `state` label of `feedvisor_subscription_topics`.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicState::Pending => "pending",
            TopicState::Active => "active",
            TopicState::Rejected => "rejected",
            TopicState::TimedOut => "timed_out",
        }
    }
}

/// One topic as its connection actor last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicRecord {
    /// The topic as configured.
    pub topic: Arc<str>,
    /// Its state.
    pub state: TopicState,
    /// The server's reason, when rejected (bounded in length).
    pub reason: Option<String>,
    /// Active, but no message for `subscribe.stale_after`.
    pub stale: bool,
}

/// One connection's topics, shared between its actor (which writes them
/// when they change, never per message) and status readers.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionCell {
    table: Mutex<Vec<TopicRecord>>,
}

impl SubscriptionCell {
    fn table(&self) -> MutexGuard<'_, Vec<TopicRecord>> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the published table.
    pub(crate) fn publish(&self, records: impl Iterator<Item = TopicRecord>) {
        let mut table = self.table();
        table.clear();
        table.extend(records);
    }

    /// Replaces the records at the given indices (a table published before holds them).
    pub(crate) fn update(&self, records: impl Iterator<Item = (usize, TopicRecord)>) {
        let mut table = self.table();
        for (at, record) in records {
            if let Some(slot) = table.get_mut(at) {
                *slot = record;
            }
        }
    }

    /// The topics as last published, each tagged with `shard` (for a sharded feed).
    pub(crate) fn snapshot(&self, shard: Option<usize>) -> Vec<TopicStatus> {
        self.table()
            .iter()
            .map(|record| TopicStatus {
                topic: record.topic.to_string(),
                state: record.state,
                reason: record.reason.clone(),
                stale: record.stale,
                shard,
            })
            .collect()
    }
}

/// One topic in `GET /feeds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicStatus {
    /// The topic as configured.
    pub topic: String,
    /// Its state on the current connection.
    pub state: TopicState,
    /// The server's reason, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Active but without a message for `subscribe.stale_after`.
    pub stale: bool,
    /// The shard (connection) the topic belongs to, for a sharded feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<usize>,
}

/// A feed's generated subscriptions in `GET /feeds`: counts, then every topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionStatus {
    /// Topics configured.
    pub topics: usize,
    /// Topics not yet acknowledged on the current connection.
    pub pending: usize,
    /// Topics acknowledged.
    pub active: usize,
    /// Topics the server refused.
    pub rejected: usize,
    /// Topics whose reply did not come within `subscribe.ack.timeout`.
    pub timed_out: usize,
    /// Active topics without a message for `subscribe.stale_after`.
    pub stale: usize,
    /// Every topic, in configured order.
    pub by_topic: Vec<TopicStatus>,
}

impl SubscriptionStatus {
    /// Counts `by_topic`.
    pub(crate) fn of(by_topic: Vec<TopicStatus>) -> SubscriptionStatus {
        let count = |state: TopicState| by_topic.iter().filter(|t| t.state == state).count();
        SubscriptionStatus {
            topics: by_topic.len(),
            pending: count(TopicState::Pending),
            active: count(TopicState::Active),
            rejected: count(TopicState::Rejected),
            timed_out: count(TopicState::TimedOut),
            stale: by_topic.iter().filter(|topic| topic.stale).count(),
            by_topic,
        }
    }
}

/// One connection of a feed whose topics are spread over several
/// (`max_topics_per_connection`), in `GET /feeds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardStatus {
    /// Its index, 0 first (shard 0 is the feed's own connection).
    pub index: usize,
    /// Its connection state.
    pub state: FeedState,
    /// How many topics it subscribes to.
    pub topics: usize,
    /// Its connections opened after the first one.
    pub reconnects: u64,
    /// Messages it received.
    pub messages_in: u64,
    /// Its last error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
