//! Generated subscriptions (`subscribe = { ... }`): the subscribe messages
//! sent after `on_open` on every connect, the replies matched to them, each
//! topic's state, and staleness per topic.
//!
//! On each connect the topics not rejected (all of them with
//! `replay_rejected = true`) are sent again in batches of `per_message`, each
//! batch with an id unique on the connection (`{{id}}`, counting from 1). A
//! message whose `ack.id` pointer holds the id of a batch waiting for its
//! reply is that reply: it makes the batch's topics `active`, or `rejected`
//! with the server's reason (when `ack.error` finds a value, or `ack.success`
//! does not find the one it wants). Replies are control messages, like the
//! answers to heartbeats: they are consumed here and not delivered to
//! subscribers. A batch without a reply after `ack.timeout` is `timed_out`;
//! its reply is still taken if it comes later on the same connection.
//!
//! Topics and states are published into the connection's [`StatusCell`]
//! when they change (never per message), and the feed's topic gauges get
//! this connection's share by difference, so a feed spread over several
//! connections counts every topic once.
//!
//! Costs on the per-message path: one pointer walk per message while a
//! batch waits for its reply (none once every batch has its answer), and,
//! with `stale_after`, one hash lookup of the message's topic.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use actix_rt::time::Instant;
use feedvisor_transport_api::Outbound;

use super::pointer::{lookup_many, Scalar};
use super::FeedConnection;
use crate::config::{AckConfig, FeedConfig, SubscribeConfig, ID_PLACEHOLDER, TOPICS_PLACEHOLDER};
use crate::metrics::SubscriptionMetrics;
use crate::status::{StatusCell, TopicRecord, TopicState};

/// The longest rejection reason kept, in bytes; longer ones are cut (at a
/// character boundary) and end in `…`.
const MAX_REASON: usize = 200;

/// The staleness sweep runs at most this often.
const MIN_SWEEP: std::time::Duration = std::time::Duration::from_millis(50);

/// A subscribe message waiting for its reply.
#[derive(Debug)]
struct Waiting {
    /// The indices of its topics.
    topics: Vec<usize>,
}

/// What a reply said about its subscribe message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Acknowledged: its topics are active.
    Ack,
    /// Refused, with the server's reason.
    Rejected(String),
}

/// One connection's generated subscriptions.
pub(super) struct Subscriptions {
    /// The template, batch size, reply matching and staleness settings.
    config: SubscribeConfig,
    /// This connection's topics (the feed's, or its shard's).
    topics: Vec<Arc<str>>,
    /// Each topic's state, in `topics` order.
    states: Vec<TopicState>,
    /// Each rejected topic's reason.
    reasons: Vec<Option<String>>,
    /// When each active topic last had a message (or became active).
    last_data: Vec<Instant>,
    /// Whether each active topic is stale.
    stale: Vec<bool>,
    /// Topic → index, for staleness (empty without `stale_after`).
    index: HashMap<Arc<str>, usize>,
    /// Batches sent on this connection and not answered yet, by id.
    waiting: HashMap<u64, Waiting>,
    /// The last id handed out on this connection.
    last_id: u64,
    /// Where the topics are published for `/feeds`.
    shared: Arc<StatusCell>,
    metrics: SubscriptionMetrics,
    /// How many topics are in each state, and stale, now.
    counts: ([f64; 4], f64),
    /// What this connection last added to the feed's gauges (per state, and stale).
    counted: ([f64; 4], f64),
    /// Whether the staleness sweep runs (it is started once, with the first connect).
    sweeping: bool,
}

impl Subscriptions {
    /// The generated subscriptions of `feed` (the topics of its shard, when it is one).
    pub(super) fn for_feed(feed: &FeedConfig, shared: &Arc<StatusCell>) -> Option<Subscriptions> {
        let config = feed.subscribe.clone()?;
        let topics: Vec<Arc<str>> = config.topics.iter().map(|t| Arc::from(t.as_str())).collect();
        let index = if config.stale_after.is_some() {
            topics.iter().enumerate().map(|(at, topic)| (topic.clone(), at)).collect()
        } else {
            HashMap::new()
        };
        let states = TopicState::ALL.map(TopicState::as_str);
        let mut subscriptions = Subscriptions {
            states: vec![TopicState::Pending; topics.len()],
            reasons: vec![None; topics.len()],
            last_data: vec![Instant::now(); topics.len()],
            stale: vec![false; topics.len()],
            topics,
            index,
            waiting: HashMap::new(),
            last_id: 0,
            shared: shared.clone(),
            metrics: SubscriptionMetrics::new(&feed.name, states),
            counts: ([0.0; 4], 0.0),
            counted: ([0.0; 4], 0.0),
            sweeping: false,
            config,
        };
        if let Some(index) = subscriptions.config.shard {
            subscriptions.metrics.in_shard(&feed.name, index);
        }
        subscriptions.counts.0[TopicState::Pending as usize] = subscriptions.topics.len() as f64;
        subscriptions.publish(None);
        Some(subscriptions)
    }

    /// Sets the shard's up gauge, when it is a shard.
    pub(super) fn set_up(&self, up: bool) {
        if let Some(gauge) = &self.metrics.shard_up {
            gauge.set(if up { 1.0 } else { 0.0 });
        }
    }

    /// A new connection opened: the subscribe messages to send on it, each
    /// with its id, in order. Topics not rejected (or all, with
    /// `replay_rejected`) are pending again, or active at once when replies
    /// are not matched.
    pub(super) fn messages_for_connect(&mut self, now: Instant) -> Vec<(u64, String)> {
        self.waiting.clear();
        self.last_id = 0;
        let mut due = Vec::with_capacity(self.topics.len());
        for at in 0..self.topics.len() {
            if self.states[at] == TopicState::Rejected && !self.config.replay_rejected {
                continue;
            }
            self.reasons[at] = None;
            self.set_stale(at, false);
            let state = if self.config.ack.is_some() {
                TopicState::Pending
            } else {
                self.last_data[at] = now;
                TopicState::Active
            };
            self.set_state(at, state);
            due.push(at);
        }
        let per_message = self.config.per_message.max(1);
        let mut messages = Vec::with_capacity(due.len().div_ceil(per_message));
        for batch in due.chunks(per_message) {
            self.last_id += 1;
            let id = self.last_id;
            let names: Vec<&str> = batch.iter().map(|&at| &*self.topics[at]).collect();
            // An array of strings always serializes.
            let array = serde_json::to_string(&names).unwrap_or_default();
            let text = self
                .config
                .template
                .replace(TOPICS_PLACEHOLDER, &array)
                .replace(ID_PLACEHOLDER, &id.to_string());
            if self.config.ack.is_some() {
                self.waiting.insert(id, Waiting { topics: batch.to_vec() });
            }
            messages.push((id, text));
        }
        self.publish(None);
        messages
    }

    /// The connection ended: whatever was active or waiting is pending until
    /// the next connection subscribes again; rejections stand.
    pub(super) fn connection_ended(&mut self) {
        self.waiting.clear();
        for at in 0..self.topics.len() {
            if self.states[at] != TopicState::Rejected {
                self.set_state(at, TopicState::Pending);
            }
            self.set_stale(at, false);
        }
        self.publish(None);
    }

    /// Whether the message is the reply to a subscribe message of this
    /// connection; if it is, its topics are settled.
    pub(super) fn reply(&mut self, payload: &[u8]) -> Option<Verdict> {
        if self.waiting.is_empty() {
            return None;
        }
        let ack = self.config.ack.as_ref()?;
        let (id, verdict) = judge(ack, payload)?;
        let waiting = self.waiting.remove(&id)?;
        let now = Instant::now();
        for &at in &waiting.topics {
            match &verdict {
                Verdict::Ack => {
                    self.set_state(at, TopicState::Active);
                    self.last_data[at] = now;
                }
                Verdict::Rejected(reason) => {
                    self.set_state(at, TopicState::Rejected);
                    self.reasons[at] = Some(reason.clone());
                }
            }
        }
        match verdict {
            Verdict::Ack => self.metrics.acks.increment(1),
            Verdict::Rejected(_) => self.metrics.rejections.increment(1),
        }
        self.publish(Some(&waiting.topics));
        Some(verdict)
    }

    /// Batch `id`'s reply did not come in time: its pending topics are
    /// `timed_out` (its reply is still taken if it comes). False when the
    /// batch had its reply already.
    pub(super) fn timed_out(&mut self, id: u64) -> bool {
        let Some(waiting) = self.waiting.get(&id) else { return false };
        let topics = waiting.topics.clone();
        for &at in &topics {
            if self.states[at] == TopicState::Pending {
                self.set_state(at, TopicState::TimedOut);
            }
        }
        self.metrics.timeouts.increment(1);
        self.publish(Some(&topics));
        true
    }

    /// A message of `topic` arrived: the topic is fresh again.
    #[inline]
    pub(super) fn observe(&mut self, topic: Option<&Arc<str>>) {
        if self.index.is_empty() {
            return;
        }
        let Some(&at) = topic.and_then(|topic| self.index.get(topic)) else { return };
        self.last_data[at] = Instant::now();
        if self.stale[at] {
            self.set_stale(at, false);
            self.publish(Some(&[at]));
        }
    }

    /// Marks the active topics without a message for `stale_after` stale;
    /// returns how many went stale now.
    pub(super) fn sweep(&mut self, now: Instant) -> usize {
        let Some(after) = self.config.stale_after else { return 0 };
        let mut went = Vec::new();
        for at in 0..self.topics.len() {
            let silent = now.saturating_duration_since(self.last_data[at]) >= after;
            if self.states[at] == TopicState::Active && silent && !self.stale[at] {
                self.set_stale(at, true);
                went.push(at);
            }
        }
        if !went.is_empty() {
            self.metrics.went_stale.increment(went.len() as u64);
            self.publish(Some(&went));
        }
        went.len()
    }

    fn set_state(&mut self, at: usize, state: TopicState) {
        self.counts.0[self.states[at] as usize] -= 1.0;
        self.counts.0[state as usize] += 1.0;
        self.states[at] = state;
    }

    fn set_stale(&mut self, at: usize, stale: bool) {
        if self.stale[at] != stale {
            self.counts.1 += if stale { 1.0 } else { -1.0 };
            self.stale[at] = stale;
        }
    }

    fn record(&self, at: usize) -> TopicRecord {
        TopicRecord {
            topic: self.topics[at].clone(),
            state: self.states[at],
            reason: self.reasons[at].clone(),
            stale: self.stale[at],
        }
    }

    /// Publishes the topics `changed` (all of them for `None`) for `/feeds`,
    /// and this connection's share of the gauges: a reply costs its batch,
    /// not the whole list.
    fn publish(&mut self, changed: Option<&[usize]>) {
        let cell = self.shared.subscriptions();
        match changed {
            None => cell.publish((0..self.topics.len()).map(|at| self.record(at))),
            Some(changed) => cell.update(changed.iter().map(|&at| (at, self.record(at)))),
        }
        let ((counts, stale), (before, stale_before)) = (self.counts, self.counted);
        let delta = std::array::from_fn(|at| counts[at] - before[at]);
        self.metrics.add(delta, stale - stale_before);
        self.counted = self.counts;
    }

    /// How often the staleness sweep runs: a quarter of `stale_after`, so a
    /// topic is reported within 1.25 times it, but not more often than every
    /// [`MIN_SWEEP`] whatever `stale_after` is.
    fn sweep_interval(&self) -> Option<std::time::Duration> {
        self.config.stale_after.map(|after| (after / 4).max(MIN_SWEEP))
    }
}

impl Drop for Subscriptions {
    /// This connection's topics leave the feed's gauges with it.
    fn drop(&mut self) {
        let (counts, stale) = self.counted;
        self.metrics.add(counts.map(|count| -count), -stale);
    }
}

/// The id a reply echoes and what it says, or `None` for a message that is
/// not a reply (no id, or one that is not a number).
fn judge(ack: &AckConfig, payload: &[u8]) -> Option<(u64, Verdict)> {
    let [id, error, success, reason] = lookup_many(
        payload,
        [
            Some(ack.id.as_str()),
            ack.error.as_deref(),
            ack.success.as_deref(),
            ack.reason.as_deref(),
        ],
    );
    let id = match id? {
        Scalar::Number(text) => text.parse().ok()?,
        Scalar::Str(text) => text.trim().parse().ok()?,
        Scalar::Bool(_) => return None,
    };
    let reason_text =
        |fallback: String| bounded(reason.as_ref().map(scalar_text).unwrap_or(fallback));
    if let Some(error) = error {
        return Some((id, Verdict::Rejected(reason_text(scalar_text(&error)))));
    }
    if let Some(pointer) = &ack.success {
        let verdict = match (success, &ack.success_value) {
            (None, _) => {
                Verdict::Rejected(reason_text(format!("the reply has nothing at {pointer}")))
            }
            (Some(found), Some(wanted)) if scalar_text(&found) != *wanted => Verdict::Rejected(
                reason_text(format!("the reply has {} at {pointer}", scalar_text(&found))),
            ),
            (Some(_), _) => Verdict::Ack,
        };
        return Some((id, verdict));
    }
    Some((id, Verdict::Ack))
}

/// A scalar as text: a string's own text, a number's or boolean's JSON text.
fn scalar_text(scalar: &Scalar<'_>) -> String {
    match scalar {
        Scalar::Str(text) => text.to_string(),
        Scalar::Number(text) => (*text).to_owned(),
        Scalar::Bool(flag) => flag.to_string(),
    }
}

/// `text` cut to [`MAX_REASON`] bytes at a character boundary, control
/// characters replaced by spaces.
fn bounded(text: String) -> String {
    let mut text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl FeedConnection {
    /// Sends the generated subscribe messages after `on_open`, through the
    /// same hand-off to the connection as `on_open` (paced by `outbound_rate`
    /// like it), and arms their reply timeouts, each starting when its
    /// message is due to go out.
    pub(super) fn send_subscriptions(&mut self, ctx: &mut Context<Self>) {
        let Some(subscriptions) = self.subscriptions.as_mut() else { return };
        let messages = subscriptions.messages_for_connect(Instant::now());
        let timeout = subscriptions.config.ack.as_ref().map(|ack| ack.timeout);
        let sweep = subscriptions.sweep_interval().filter(|_| !subscriptions.sweeping);
        subscriptions.sweeping |= sweep.is_some();
        let generation = self.generation;
        for (id, text) in messages {
            if !self.send_paced(Outbound::text(text)) {
                break;
            }
            if let Some(subscriptions) = &self.subscriptions {
                subscriptions.metrics.requests.increment(1);
            }
            if let Some(timeout) = timeout {
                ctx.run_later(timeout + self.pacing_delay(), move |actor, _| {
                    if actor.generation == generation {
                        actor.subscription_timed_out(id);
                    }
                });
            }
        }
        if let Some(every) = sweep {
            ctx.run_interval(every, |actor, _| {
                if let Some(subscriptions) = actor.subscriptions.as_mut() {
                    subscriptions.sweep(Instant::now());
                }
            });
        }
    }

    fn subscription_timed_out(&mut self, id: u64) {
        let Some(subscriptions) = self.subscriptions.as_mut() else { return };
        if subscriptions.timed_out(id) {
            tracing::warn!(feed = %self.name, id, "no reply to a subscribe message in time: its topics are timed_out");
        }
    }

    /// Whether `payload` is a reply to one of this connection's subscribe
    /// messages (then it is consumed, not delivered).
    #[inline]
    pub(super) fn subscription_reply(&mut self, payload: &[u8]) -> bool {
        let Some(subscriptions) = self.subscriptions.as_mut() else { return false };
        match subscriptions.reply(payload) {
            None => false,
            Some(Verdict::Ack) => {
                self.acknowledged();
                true
            }
            Some(Verdict::Rejected(reason)) => {
                tracing::warn!(feed = %self.name, %reason, "the server rejected a subscription");
                true
            }
        }
    }

    /// A data message of `topic` arrived (for staleness).
    #[inline]
    pub(super) fn subscription_data(&mut self, topic: Option<&Arc<str>>) {
        if let Some(subscriptions) = self.subscriptions.as_mut() {
            subscriptions.observe(topic);
        }
    }

    /// The connection ended: topics wait for the next one.
    pub(super) fn subscriptions_ended(&mut self) {
        if let Some(subscriptions) = self.subscriptions.as_mut() {
            subscriptions.connection_ended();
        }
    }
}

#[cfg(test)]
mod tests;
