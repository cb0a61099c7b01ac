//! `outbound_queue = { ... }` of a feed, resolved: how many messages to the
//! upstream may wait while the feed is down, and what happens past that.

use serde::{Deserialize, Serialize};

/// Bounds of a feed's outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundQueueConfig {
    /// Most messages held; greater than 0.
    pub max_messages: usize,
    /// Most payload bytes held; greater than 0.
    pub max_bytes: u64,
    /// What happens to a message that would pass either bound.
    pub overflow: Overflow,
}

impl Default for OutboundQueueConfig {
    /// 1000 messages, 1MiB, `reject`.
    fn default() -> Self {
        Self { max_messages: 1000, max_bytes: 1 << 20, overflow: Overflow::Reject }
    }
}

/// What a full outbound queue does with one more message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop the oldest queued messages to make room.
    DropOldest,
    /// Drop the new message.
    DropNewest,
    /// Refuse the new message with an error to its sender.
    #[default]
    Reject,
}

impl Overflow {
    /// The name used in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
            Self::Reject => "reject",
        }
    }
}
