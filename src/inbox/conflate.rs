//! Conflation, the `overflow = { conflate = "/symbol" }` policy: while a
//! subscriber is behind, only the latest message per key waits for it.
//!
//! An inbox with this policy queues like any other while its subscriber
//! keeps up: no key is read, the plain path costs nothing more. The first
//! push that would overflow the queue turns what waits into [`Pending`]
//! entries, one per key (the scalar at the pointer, per feed, compared as
//! written: `"1"` and `1` are different keys), in the order each key first
//! became pending. From then on a message whose key is pending replaces that
//! entry's message in place (the one replaced is counted,
//! `reason="conflated"`), and a new key joins the end. The inbox stays in
//! this mode until its subscriber has taken every entry, then queues plainly
//! again.
//!
//! The queue bound still holds: at most `queue` entries wait. A new entry
//! that finds them all taken pushes out the oldest one (drop_oldest),
//! counted as `reason="conflate_overflow"`: more keys than the queue holds.
//!
//! Key-less messages (not JSON, no scalar at the pointer, stream-mode
//! chunks) are entries of their own: kept in order and never replaced, only
//! pushed out by the bound like any entry. A gap a sequenced feed announced
//! on a replaced message (`gap_before`) moves to the message that replaced
//! it, added to its own, so that no announcement is conflated away.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::delivery::{batch_vec, FeedMessage, LatencySampler};
use super::{InboxState, SubscriberOverflow, Timing};
use crate::metrics::SubscriberMetrics;
use crate::pointer::{lookup, Scalar};

/// The JSON pointer that keys a conflating subscriber's messages (such as
/// `/symbol`): checked when made, never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyPointer(Box<str>);

/// Why a conflation key pointer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPointerError {
    /// The empty pointer names the whole message, which keys nothing.
    #[error(
        "the conflation key pointer is empty: name the field that keys a message, \
         such as \"/symbol\""
    )]
    Empty,
    /// Not an RFC 6901 pointer.
    #[error("{0}")]
    Syntax(String),
}

impl KeyPointer {
    /// A key pointer, if `pointer` is a non-empty RFC 6901 pointer.
    pub fn new(pointer: impl Into<String>) -> Result<Self, KeyPointerError> {
        let pointer = pointer.into();
        if pointer.is_empty() {
            return Err(KeyPointerError::Empty);
        }
        crate::pointer::check_syntax(&pointer).map_err(KeyPointerError::Syntax)?;
        Ok(KeyPointer(pointer.into_boxed_str()))
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyPointer {
    type Error = KeyPointerError;

    fn try_from(pointer: String) -> Result<Self, Self::Error> {
        KeyPointer::new(pointer)
    }
}

impl From<KeyPointer> for String {
    fn from(pointer: KeyPointer) -> String {
        pointer.0.into()
    }
}

/// What `overflow` may be, for errors.
const OVERFLOW_CHOICES: &str =
    "use \"drop_oldest\", \"drop_newest\", \"backpressure\" or { conflate = \"/pointer\" }";

impl<'de> Deserialize<'de> for SubscriberOverflow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OverflowVisitor;
        impl<'de> serde::de::Visitor<'de> for OverflowVisitor {
            type Value = SubscriberOverflow;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an overflow policy: ")?;
                f.write_str(OVERFLOW_CHOICES)
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
                match name {
                    "drop_oldest" => Ok(SubscriberOverflow::DropOldest),
                    "drop_newest" => Ok(SubscriberOverflow::DropNewest),
                    "backpressure" => Ok(SubscriberOverflow::Backpressure),
                    "conflate" => Err(E::custom(
                        "conflate needs the JSON pointer of each message's key: \
                         write { conflate = \"/symbol\" }",
                    )),
                    other => Err(E::custom(format!(
                        "unknown overflow policy {other:?}: {OVERFLOW_CHOICES}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let mut pointer = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "conflate" {
                        let message =
                            format!("unknown key {key:?} in overflow: {OVERFLOW_CHOICES}");
                        return Err(A::Error::custom(message));
                    }
                    pointer = Some(map.next_value::<KeyPointer>()?);
                }
                match pointer {
                    Some(pointer) => Ok(SubscriberOverflow::Conflate(pointer)),
                    None => Err(A::Error::custom(format!("empty table: {OVERFLOW_CHOICES}"))),
                }
            }
        }
        deserializer.deserialize_any(OverflowVisitor)
    }
}

/// Which kind of scalar a key is, so that `"1"`, `1` and `true` differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    Str,
    Number,
    Bool,
}

/// A message's conflation key: its feed and the scalar at the pointer,
/// sharing the message's bytes where the scalar had no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    feed: Arc<str>,
    kind: KeyKind,
    value: Bytes,
}

/// The key of `message`, or `None` for a key-less one.
///
/// The rule for anything that is not plain data: it must come out key-less
/// here, so that it is never replaced by a later message. Stream-mode
/// chunks are key-less (each is part of a message, not a message); so must
/// be any in-band notice a feed adds for its subscribers (a discontinuity,
/// say): a notice conflated away would be a gap nobody hears of.
fn key_of(message: &FeedMessage, pointer: &KeyPointer) -> Option<Key> {
    if message.chunk.is_some() {
        return None;
    }
    let payload = &message.payload;
    let (kind, value) = match lookup(payload, pointer.as_str())? {
        Scalar::Str(std::borrow::Cow::Borrowed(text)) => {
            (KeyKind::Str, payload.slice_ref(text.as_bytes()))
        }
        Scalar::Str(std::borrow::Cow::Owned(text)) => (KeyKind::Str, Bytes::from(text)),
        Scalar::Number(text) => (KeyKind::Number, payload.slice_ref(text.as_bytes())),
        Scalar::Bool(true) => (KeyKind::Bool, Bytes::from_static(b"true")),
        Scalar::Bool(false) => (KeyKind::Bool, Bytes::from_static(b"false")),
    };
    Some(Key { feed: message.feed.clone(), kind, value })
}

/// One message waiting in a conflating inbox.
struct Entry {
    /// Its key; `None`: key-less, never replaced.
    key: Option<Key>,
    /// The latest message of its key.
    message: FeedMessage,
    /// The delivery latency of its feed to this subscriber.
    latency: Arc<LatencySampler>,
}

/// What waits in an inbox while it conflates: one entry per pending key, in
/// the order the keys first became pending.
#[derive(Default)]
pub(super) struct Pending {
    /// The entries, oldest key first.
    entries: VecDeque<Entry>,
    /// Where each pending key's entry is, as a count of entries ever queued
    /// (`first` is that of `entries[0]`): entries leave only from the
    /// front, so positions never move.
    index: HashMap<Key, u64>,
    /// The position of `entries[0]`.
    first: u64,
}

impl Pending {
    /// Adds `message`: replaces its key's entry, or joins the end (pushing
    /// the oldest entry out when `capacity` are waiting).
    fn add(
        &mut self,
        message: FeedMessage,
        latency: &Arc<LatencySampler>,
        pointer: &KeyPointer,
        capacity: usize,
        metrics: &SubscriberMetrics,
    ) {
        let key = key_of(&message, pointer);
        if let Some(position) = key.as_ref().and_then(|key| self.index.get(key)) {
            let at = usize::try_from(position - self.first).unwrap_or(usize::MAX);
            if let Some(entry) = self.entries.get_mut(at) {
                let mut message = message;
                // A gap announced on the message replaced is announced on its successor.
                if let Some(missed) = entry.message.gap_before {
                    message.gap_before =
                        Some(message.gap_before.unwrap_or(0).saturating_add(missed));
                }
                entry.message = message;
                entry.latency = latency.clone();
                metrics.dropped_conflated.increment(1);
                return;
            }
        }
        if self.entries.len() >= capacity && self.pop().is_some() {
            metrics.dropped_conflate_overflow.increment(1);
        }
        if let Some(key) = &key {
            self.index.insert(key.clone(), self.first + self.entries.len() as u64);
        }
        self.entries.push_back(Entry { key, message, latency: latency.clone() });
    }

    /// Takes the oldest entry out.
    fn pop(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.first += 1;
        if let Some(key) = &entry.key {
            self.index.remove(key);
        }
        Some(entry)
    }

    /// Entries waiting.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The conflation policy's share of `Inbox::make_room`: while the queue has
/// room and nothing is pending, nothing happens (no key is read); once a
/// push would overflow it, everything waiting and `batch` become pending
/// entries, and every later push goes there until the subscriber has taken
/// them all. Leaves `batch` empty when it took the messages.
pub(super) fn make_room(
    state: &mut InboxState,
    batch: &mut Vec<FeedMessage>,
    latency: &Arc<LatencySampler>,
    pointer: &KeyPointer,
    capacity: usize,
    metrics: &SubscriberMetrics,
) {
    if state.pending.is_none() && state.waiting() + batch.len() <= capacity {
        return;
    }
    let pending = state.pending.get_or_insert_with(Pending::default);
    // What waited plainly keeps its order ahead of the batch.
    for segment in state.queue.drain(..) {
        for message in segment.messages {
            pending.add(message, &segment.latency, pointer, capacity, metrics);
        }
    }
    for message in batch.drain(..) {
        pending.add(message, latency, pointer, capacity, metrics);
    }
    state.queued = pending.len();
}

/// The conflation policy's share of `Inbox::take_batch`: moves up to `max`
/// pending entries, oldest key first, into `messages`, with each run of one
/// feed's entries timed from its oldest arrival. The inbox queues plainly
/// again once every entry is taken.
pub(super) fn take(
    state: &mut InboxState,
    messages: &mut Vec<FeedMessage>,
    timings: &mut Vec<Timing>,
    max: usize,
) {
    let Some(pending) = state.pending.as_mut() else { return };
    if messages.capacity() == 0 {
        *messages = batch_vec(pending.len().min(max));
    }
    while messages.len() < max {
        let Some(Entry { message, latency, .. }) = pending.pop() else { break };
        match timings.last_mut() {
            Some((sampler, oldest)) if Arc::ptr_eq(sampler, &latency) => {
                *oldest = (*oldest).min(message.received);
            }
            _ => timings.push((latency, message.received)),
        }
        messages.push(message);
    }
    if pending.len() == 0 {
        state.pending = None;
    }
}

#[cfg(test)]
#[path = "conflate_tests.rs"]
mod tests;
