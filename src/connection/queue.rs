//! The outbound queue: messages that wait while their feed is down (or
//! behind a message being sent in pieces).
//!
//! Bounded by message count and by bytes; what happens past either bound is
//! the feed's overflow policy. Messages leave in the order they came. The
//! same limits bound what an open connection's writer has not taken yet
//! ([`OutboundFill`], checked in `outbound.rs`), but there a full backlog
//! always refuses: a message answered "sent" is never dropped afterwards.

use std::collections::VecDeque;

use feedvisor_transport_api::Outbound;

use crate::config::{OutboundQueueConfig, Overflow};

/// How full a feed's outbound bound is: what waits against it (in the
/// outbound queue, or handed to an open connection's writer), and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundFill {
    /// Messages waiting.
    pub messages: usize,
    /// Their payload bytes.
    pub bytes: u64,
    /// The feed's `outbound_queue.max_messages`.
    pub max_messages: usize,
    /// The feed's `outbound_queue.max_bytes`.
    pub max_bytes: u64,
}

impl OutboundFill {
    /// What waits against `limits`.
    pub(crate) fn of(messages: usize, bytes: u64, limits: &OutboundQueueConfig) -> OutboundFill {
        OutboundFill {
            messages,
            bytes,
            max_messages: limits.max_messages,
            max_bytes: limits.max_bytes,
        }
    }

    /// True when one more message of `size` bytes stays within both limits.
    pub(crate) fn has_room_for(&self, size: u64) -> bool {
        self.messages < self.max_messages && self.bytes.saturating_add(size) <= self.max_bytes
    }
}

/// Why a message was not put in a feed's outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundQueueError {
    /// The queue is full and the feed's policy is `reject`.
    #[error(
        "outbound queue full ({} of {} messages, {} of {} bytes queued): message rejected, retry later",
        .0.messages, .0.max_messages, .0.bytes, .0.max_bytes
    )]
    Full(OutboundFill),
    /// The message alone is larger than the queue's byte bound.
    #[error(
        "message of {size} bytes is larger than the outbound queue's max_bytes of {max_bytes}: raise the feed's outbound_queue.max_bytes"
    )]
    TooLarge {
        /// The message's size.
        size: u64,
        /// The bound.
        max_bytes: u64,
    },
}

/// What became of a message offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued; nothing dropped.
    Ok,
    /// Queued after dropping this many of the oldest messages (`drop_oldest`).
    DroppedOldest(usize),
    /// Not queued: the newest message was dropped (`drop_newest`).
    DroppedNewest,
}

/// A bounded FIFO of outbound messages.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    config: OutboundQueueConfig,
    messages: VecDeque<Outbound>,
    /// Payload bytes held, kept in step with `messages`.
    bytes: u64,
}

/// The payload size of a message, as the byte bound counts it.
pub(crate) fn payload_len(message: &Outbound) -> u64 {
    match message {
        Outbound::Text(bytes) | Outbound::Binary(bytes) => bytes.len() as u64,
        Outbound::Ping(bytes) | Outbound::Pong(bytes) => bytes.len() as u64,
        Outbound::Fragment(frame) => frame.payload.len() as u64,
        Outbound::Close(_) => 0,
    }
}

impl OutboundQueue {
    /// An empty queue with the feed's bounds.
    pub(crate) fn new(config: OutboundQueueConfig) -> Self {
        OutboundQueue { config, messages: VecDeque::new(), bytes: 0 }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// What waits, against the queue's limits.
    pub(crate) fn fill(&self) -> OutboundFill {
        OutboundFill::of(self.messages.len(), self.bytes, &self.config)
    }

    fn fits(&self, size: u64) -> bool {
        self.fill().has_room_for(size)
    }

    /// Offers a message; the overflow policy decides when the queue is full.
    pub(crate) fn push(&mut self, message: Outbound) -> Result<Queued, OutboundQueueError> {
        let size = payload_len(&message);
        if size > self.config.max_bytes {
            return Err(OutboundQueueError::TooLarge { size, max_bytes: self.config.max_bytes });
        }
        if self.fits(size) {
            self.push_back(message, size);
            return Ok(Queued::Ok);
        }
        match self.config.overflow {
            Overflow::Reject => Err(OutboundQueueError::Full(self.fill())),
            Overflow::DropNewest => Ok(Queued::DroppedNewest),
            Overflow::DropOldest => {
                let mut dropped = 0;
                while !self.fits(size) {
                    let Some(oldest) = self.messages.pop_front() else { break };
                    self.bytes -= payload_len(&oldest);
                    dropped += 1;
                }
                self.push_back(message, size);
                Ok(Queued::DroppedOldest(dropped))
            }
        }
    }

    fn push_back(&mut self, message: Outbound, size: u64) {
        self.bytes += size;
        self.messages.push_back(message);
    }

    /// Takes the oldest message.
    pub(crate) fn pop(&mut self) -> Option<Outbound> {
        let message = self.messages.pop_front()?;
        self.bytes -= payload_len(&message);
        Some(message)
    }

    /// Puts back, first, a message just taken by [`Self::pop`] (it fits: it was just in).
    pub(crate) fn unpop(&mut self, message: Outbound) {
        self.bytes += payload_len(&message);
        self.messages.push_front(message);
    }

    /// Takes every waiting message, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Outbound> + '_ {
        self.bytes = 0;
        self.messages.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_messages: usize, max_bytes: u64, overflow: Overflow) -> OutboundQueue {
        OutboundQueue::new(OutboundQueueConfig { max_messages, max_bytes, overflow })
    }

    fn texts(queue: &mut OutboundQueue) -> Vec<String> {
        queue
            .drain()
            .map(|message| match message {
                Outbound::Text(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn messages_leave_in_order() {
        let mut q = queue(10, 1000, Overflow::Reject);
        for text in ["a", "b", "c"] {
            assert_eq!(q.push(Outbound::text(text)), Ok(Queued::Ok));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(texts(&mut q), ["a", "b", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn reject_refuses_past_the_message_bound() {
        let mut q = queue(2, 1000, Overflow::Reject);
        q.push(Outbound::text("a")).expect("fits");
        q.push(Outbound::text("b")).expect("fits");
        let fill = OutboundFill { messages: 2, bytes: 2, max_messages: 2, max_bytes: 1000 };
        assert_eq!(q.push(Outbound::text("c")), Err(OutboundQueueError::Full(fill)));
        assert_eq!(texts(&mut q), ["a", "b"]);
    }

    #[test]
    fn drop_newest_keeps_what_was_queued() {
        let mut q = queue(2, 1000, Overflow::DropNewest);
        q.push(Outbound::text("a")).expect("fits");
        q.push(Outbound::text("b")).expect("fits");
        assert_eq!(q.push(Outbound::text("c")), Ok(Queued::DroppedNewest));
        assert_eq!(texts(&mut q), ["a", "b"]);
    }

    #[test]
    fn drop_oldest_makes_room_by_bytes_too() {
        let mut q = queue(10, 6, Overflow::DropOldest);
        q.push(Outbound::text("aa")).expect("fits");
        q.push(Outbound::text("bb")).expect("fits");
        q.push(Outbound::text("cc")).expect("fits");
        assert_eq!(q.push(Outbound::text("dddd")), Ok(Queued::DroppedOldest(2)));
        assert_eq!(texts(&mut q), ["cc", "dddd"]);
    }

    #[test]
    fn a_message_larger_than_the_queue_is_refused_whatever_the_policy() {
        let mut q = queue(10, 4, Overflow::DropOldest);
        q.push(Outbound::text("ab")).expect("fits");
        assert_eq!(
            q.push(Outbound::text("abcde")),
            Err(OutboundQueueError::TooLarge { size: 5, max_bytes: 4 })
        );
        assert_eq!(texts(&mut q), ["ab"]);
    }

    #[test]
    fn byte_count_follows_drain() {
        let mut q = queue(10, 4, Overflow::Reject);
        q.push(Outbound::text("abcd")).expect("fits");
        assert!(q.push(Outbound::text("e")).is_err());
        q.drain().for_each(drop);
        assert_eq!(q.push(Outbound::text("efgh")), Ok(Queued::Ok));
    }
}
