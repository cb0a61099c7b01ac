//! Discontinuity events: what subscribers are told, in-band and before the
//! next data message, when a feed cannot prove that nothing was lost.
//!
//! An event travels as a [`FeedMessage`] whose `discontinuity` is set (so
//! it takes the same inboxes, queues and batches as the data around it, in
//! order) and whose payload is the event as a JSON object, so that a sink
//! that writes payloads as they are (NATS, one file per message) writes the
//! event without knowing of it. Library subscribers tell it apart with
//! [`FeedMessage::event`]. Data messages carry `None` there: one pointer
//! more per message, never read on their way.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use crate::inbox::delivery::{DataKind, FeedMessage};

/// Why continuity could not be proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscontinuityReason {
    /// Sequence numbers were skipped and no leg could fill them.
    Gap,
    /// The sequence number went back a long way or started again from 0 or 1:
    /// the upstream restarted its numbering.
    SequenceReset,
    /// A feed without sequence numbers connected again (on a feed with
    /// legs: after every leg was down), so what was sent meanwhile is unknown.
    Reconnect,
    /// A feed without sequence numbers and without legs moved to a new
    /// connection (rotation or replacement): messages around the switch may
    /// be missing or repeated.
    Switch,
}

impl DiscontinuityReason {
    /// Every reason, in the order of their metric series.
    pub const ALL: [DiscontinuityReason; 4] = [
        DiscontinuityReason::Gap,
        DiscontinuityReason::SequenceReset,
        DiscontinuityReason::Reconnect,
        DiscontinuityReason::Switch,
    ];

    /// The name in events and in the `reason` label.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Its position in [`DiscontinuityReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The names of [`DiscontinuityReason::ALL`], in order: the `reason` label's values.
    pub(crate) const NAMES: [&'static str; 4] = ["gap", "sequence_reset", "reconnect", "switch"];
}

/// A break in a feed's stream that could not be avoided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discontinuity {
    /// The feed.
    pub feed: String,
    /// Why.
    pub reason: DiscontinuityReason,
    /// The last sequence number delivered before it, when known.
    pub last_before: Option<u64>,
    /// The first sequence number delivered after it, when known.
    pub first_after: Option<u64>,
    /// How many messages were missed, when known.
    pub missed: Option<u64>,
}

/// The event as JSON, with `"type": "discontinuity"`.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    discontinuity: &'a Discontinuity,
}

impl Discontinuity {
    /// The event as a JSON object: `type`, `feed`, `reason`, `last_before`,
    /// `first_after`, `missed` (null when unknown).
    pub fn to_json(&self) -> String {
        let event = Event { kind: "discontinuity", discontinuity: self };
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_string(&event).unwrap_or_default()
    }

    /// The event as the message of feed `name` that carries it in-band.
    pub(crate) fn into_message(self, name: Arc<str>, received_at: SystemTime) -> FeedMessage {
        FeedMessage {
            feed: name,
            topic: None,
            kind: DataKind::Text,
            payload: Bytes::from(self.to_json()),
            received_at,
            received: now(),
            gap_before: None,
            sequence: None,
            chunk: None,
            discontinuity: Some(Arc::new(self)),
        }
    }
}

/// The real clock, as a message's arrival (the start of delivery latency).
#[allow(
    clippy::disallowed_methods,
    reason = "delivery latency is measured on the real clock across threads, not by a timer"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// What a subscriber received: data, or a break in the stream before what follows.
#[derive(Debug, Clone, Copy)]
pub enum FeedEvent<'a> {
    /// A message from the feed.
    Data(&'a FeedMessage),
    /// The stream broke here: what follows does not continue what came before.
    Discontinuity(&'a Discontinuity),
}

impl FeedMessage {
    /// Data or a discontinuity event.
    pub fn event(&self) -> FeedEvent<'_> {
        match &self.discontinuity {
            None => FeedEvent::Data(self),
            Some(discontinuity) => FeedEvent::Discontinuity(discontinuity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_a_json_object_of_type_discontinuity_with_unknowns_as_null() {
        let event = Discontinuity {
            feed: "ticks".to_owned(),
            reason: DiscontinuityReason::Gap,
            last_before: Some(4),
            first_after: Some(9),
            missed: Some(4),
        };
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"type": "discontinuity", "feed": "ticks", "reason": "gap",
                "last_before": 4, "first_after": 9, "missed": 4})
        );
        for reason in DiscontinuityReason::ALL {
            let name = serde_json::to_value(reason).expect("a name");
            assert_eq!(name, reason.as_str(), "the event and the label agree");
        }
        let message =
            Discontinuity { missed: None, ..event }.into_message("ticks".into(), SystemTime::now());
        let FeedEvent::Discontinuity(carried) = message.event() else { panic!("not an event") };
        assert_eq!(carried.missed, None);
        assert!(message.text().is_some_and(|text| text.contains(r#""missed":null"#)));
    }
}
