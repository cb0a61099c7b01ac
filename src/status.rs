//! The live status of each feed, shared between its connection actor and readers.
//!
//! A connection actor writes its state and counters here as they change;
//! the supervisor and the HTTP API read them without messaging the actor,
//! so a busy feed never delays a status query.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use feedvisor_transport_api::CloseFrame;

mod subscriptions;
pub use subscriptions::{ShardStatus, SubscriptionStatus, TopicState, TopicStatus};
pub(crate) use subscriptions::{SubscriptionCell, TopicRecord};
mod venue;

pub use venue::{HostWait, HostWaitReason, PacingStatus};

/// Where a feed's connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Opening the connection (TCP, TLS, handshake).
    Connecting,
    /// Open and receiving.
    Open,
    /// Waiting before the next connect attempt.
    BackingOff,
    /// Closed on purpose (stopped or removed).
    Closed,
    /// Given up: no more attempts will be made.
    Failed,
    /// Open, but no data message for `stale_after`: connected but silent.
    /// Not a reason to reconnect (that is `idle_timeout`'s job); not ready.
    Stale,
}

impl FeedState {
    /// Every state, in a fixed order.
    pub const ALL: [FeedState; 6] = [
        FeedState::Connecting,
        FeedState::Open,
        FeedState::BackingOff,
        FeedState::Closed,
        FeedState::Failed,
        FeedState::Stale,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::Connecting => "connecting",
            FeedState::Open => "open",
            FeedState::BackingOff => "backing_off",
            FeedState::Closed => "closed",
            FeedState::Failed => "failed",
            FeedState::Stale => "stale",
        }
    }

    /// Whether the connection is open (delivering or stale).
    pub fn is_connected(self) -> bool {
        matches!(self, FeedState::Open | FeedState::Stale)
    }

    /// The state of a feed served by several connections at once (its
    /// redundant legs, a rotation's old and new connection): open while any
    /// of them is, else stale while any is connected, else `first`'s.
    pub(crate) fn best_of(first: FeedState, others: impl IntoIterator<Item = FeedState>) -> Self {
        let mut best = first;
        for state in others {
            if state == FeedState::Open {
                return state;
            }
            if state.is_connected() && !best.is_connected() {
                best = state;
            }
        }
        best
    }
}

/// The close code and reason of the last close, from either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseRecord {
    /// Who closed: "peer" or "local".
    pub by: &'static str,
    /// The close code.
    pub code: u16,
    /// The reason text.
    pub reason: String,
}

impl CloseRecord {
    /// A close the peer initiated.
    pub fn peer(frame: &CloseFrame) -> Self {
        CloseRecord { by: "peer", code: frame.code, reason: frame.reason.clone() }
    }

    /// A close feedvisor initiated.
    pub fn local(code: u16, reason: impl Into<String>) -> Self {
        CloseRecord { by: "local", code, reason: reason.into() }
    }
}

/// Details that change rarely and are read as a whole.
#[derive(Debug, Default, Clone)]
struct Details {
    last_error: Option<String>,
    last_close: Option<CloseRecord>,
    /// The wait before the next connect attempt, while backing off.
    retry: Option<RetryWait>,
    /// The credential provider's runs, for a feed that has one.
    credentials: Option<CredentialsStatus>,
    /// Outbound pacing (`outbound_rate`) and the wait for the host's connect budget.
    venue: VenueDetails,
}

/// What `src/venue/` shows of a feed.
#[derive(Debug, Default, Clone)]
struct VenueDetails {
    host_wait: Option<HostWait>,
    pacing: Option<PacingStatus>,
}

/// A feed's wait before its next connect attempt, while it backs off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryWait {
    /// The wait, in human form (`"5m"`, `"1s 500ms"`).
    pub delay: String,
    /// The server's `Retry-After` in seconds, when its last answer had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// True when that `Retry-After` was longer than `reconnect.max_retry_after` and was cut to it.
    pub capped: bool,
}

/// A feed's credential provider in its status (`GET /feeds`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CredentialsStatus {
    /// `exec` or `http`.
    pub provider: &'static str,
    /// When the last good run ended (RFC 3339), if there was one.
    pub fetched_at: Option<String>,
    /// When those credentials expire (RFC 3339), if the provider said.
    pub expires_at: Option<String>,
    /// Good runs.
    pub fetches: u64,
    /// Failed runs.
    pub failures: u64,
    /// What failed in the last failed run (an exit status, a timeout), never its output.
    pub last_failure: Option<String>,
    /// Times the upstream refused credentials (a handshake status, a close code, a reply).
    pub rejections: u64,
    /// How the upstream last refused them.
    pub last_rejection: Option<String>,
}

/// One feed's live status: written by its connection actor, read by the
/// supervisor and the HTTP API without a message to the actor.
#[derive(Debug)]
pub(crate) struct StatusCell {
    state: AtomicU8,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    reconnects: AtomicU64,
    outbound_queued: AtomicU64,
    details: Mutex<Details>,
    /// The generated subscriptions' topics on this connection (empty without `subscribe`).
    subscriptions: SubscriptionCell,
}

impl Default for StatusCell {
    fn default() -> Self {
        StatusCell {
            state: AtomicU8::new(FeedState::Connecting as u8),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            outbound_queued: AtomicU64::new(0),
            details: Mutex::new(Details::default()),
            subscriptions: SubscriptionCell::default(),
        }
    }
}

impl StatusCell {
    /// A fresh status in state `connecting`.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn details(&self) -> MutexGuard<'_, Details> {
        self.details.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state.
    pub(crate) fn state(&self) -> FeedState {
        let raw = self.state.load(Ordering::Relaxed);
        FeedState::ALL.into_iter().find(|state| *state as u8 == raw).unwrap_or(FeedState::Failed)
    }

    pub(crate) fn set_state(&self, state: FeedState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub(crate) fn add_received(&self, messages: u64, bytes: u64) {
        self.messages_in.fetch_add(messages, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_outbound_queued(&self, messages: usize) {
        self.outbound_queued.store(messages as u64, Ordering::Relaxed);
    }

    /// Connections opened after the first one.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Messages waiting in the outbound queue.
    pub(crate) fn outbound_queued(&self) -> u64 {
        self.outbound_queued.load(Ordering::Relaxed)
    }

    pub(crate) fn set_error(&self, error: impl ToString) {
        self.details().last_error = Some(error.to_string());
    }

    pub(crate) fn set_close(&self, close: CloseRecord) {
        self.details().last_close = Some(close);
    }

    /// Messages received since the feed started.
    pub(crate) fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Payload bytes received since the feed started.
    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// The last error, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.details().last_error.clone()
    }

    /// The last close, if any.
    pub(crate) fn last_close(&self) -> Option<CloseRecord> {
        self.details().last_close.clone()
    }

    /// Sets (or clears, when connecting) the wait before the next attempt.
    pub(crate) fn set_retry(&self, retry: Option<RetryWait>) {
        self.details().retry = retry;
    }

    /// The wait before the next attempt, while backing off.
    pub(crate) fn retry(&self) -> Option<RetryWait> {
        self.details().retry.clone()
    }

    /// The generated subscriptions' topics on this connection.
    pub(crate) fn subscriptions(&self) -> &SubscriptionCell {
        &self.subscriptions
    }

    /// Publishes the credential provider's status.
    pub(crate) fn set_credentials(&self, credentials: CredentialsStatus) {
        self.details().credentials = Some(credentials);
    }

    /// The credential provider's status, for a feed that has one.
    pub(crate) fn credentials(&self) -> Option<CredentialsStatus> {
        self.details().credentials.clone()
    }

    /// Sets (or clears) the wait for the host's connect budget or cool-down.
    pub(crate) fn set_host_wait(&self, wait: Option<HostWait>) {
        self.details().venue.host_wait = wait;
    }

    /// The wait for the host, while there is one.
    pub(crate) fn host_wait(&self) -> Option<HostWait> {
        self.details().venue.host_wait.clone()
    }

    /// Sets the feed's pacing status.
    pub(crate) fn set_pacing(&self, pacing: Option<PacingStatus>) {
        self.details().venue.pacing = pacing;
    }

    /// The feed's pacing status, when it is paced.
    pub(crate) fn pacing(&self) -> Option<PacingStatus> {
        self.details().venue.pacing.clone()
    }
}

/// A feed's status as reported by `GET /feeds`.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    /// The feed's name.
    pub name: String,
    /// Its URL, with any password and query string hidden.
    pub url: String,
    /// "message" or "stream".
    pub mode: &'static str,
    /// The connection state.
    pub state: FeedState,
    /// Messages received.
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// Messages waiting in the outbound queue.
    pub outbound_queued: u64,
    /// Whether `/readyz` waits for this feed.
    pub required: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The last close, if any.
    pub last_close: Option<CloseRecord>,
    /// While backing off: the wait before the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryWait>,
    /// The generated subscriptions (`subscribe`), every shard's topics together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<SubscriptionStatus>,
    /// The connections of a feed spread over several (`max_topics_per_connection`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ShardStatus>>,
    /// The credential provider's runs and rejections, for a feed that has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsStatus>,
    /// While waiting for its host's connect budget or cool-down (`[[hosts]]`): for what, until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_wait: Option<HostWait>,
    /// When paced (`outbound_rate`): the rate and what it holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacing: Option<PacingStatus>,
    /// On a feed with redundant legs (`urls`), each leg; empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<LegStatus>,
}

/// One leg in `/feeds`.
#[derive(Debug, Clone, Serialize)]
pub struct LegStatus {
    /// The leg's index (its `leg` label in `/metrics`).
    pub leg: usize,
    /// Its URL, with any password and query string hidden.
    pub url: String,
    /// Its connection's state.
    pub state: FeedState,
    /// Connections it opened after the first one.
    pub reconnects: u64,
    /// Its last error, if any.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_on_several_connections_is_as_up_as_its_best_one() {
        use FeedState::*;
        assert_eq!(FeedState::best_of(BackingOff, [Open]), Open);
        assert_eq!(FeedState::best_of(BackingOff, [Connecting, Stale]), Stale);
        assert_eq!(FeedState::best_of(Stale, [Open, BackingOff]), Open);
        assert_eq!(FeedState::best_of(Open, [Stale]), Open);
        assert_eq!(FeedState::best_of(Open, []), Open);
        assert_eq!(FeedState::best_of(Connecting, [BackingOff]), Connecting);
    }

    #[test]
    fn state_round_trips_through_the_atomic() {
        let shared = StatusCell::new();
        for state in FeedState::ALL {
            shared.set_state(state);
            assert_eq!(shared.state(), state);
        }
    }
}
