//! What `/feeds` shows of a feed's venue limits (`src/venue/`): its wait
//! for its host's connect budget or cool-down, and its outbound pacing.
//! Plain data here, so that the status imports nothing of `venue/`.

use serde::Serialize;

/// What a feed waits for before connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostWaitReason {
    /// A place in the host's connect budget.
    ConnectBudget,
    /// The end of the host's cool-down.
    Cooldown,
}

/// A feed's wait for its host, as `/feeds` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostWait {
    /// The `[[hosts]]` entry's `match`.
    pub host: String,
    /// What it waits for.
    pub reason: HostWaitReason,
    /// When it may connect (RFC 3339).
    pub until: String,
}

/// A feed's pacing as `/feeds` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacingStatus {
    /// `outbound_rate.messages`.
    pub messages: u32,
    /// `outbound_rate.per`, in human form.
    pub per: String,
    /// Whether heartbeat pings count.
    pub count_pings: bool,
    /// on_open messages and pings held by the rate now (sends held wait in
    /// the outbound queue and show in `outbound_queued`).
    pub held: usize,
    /// While messages are held: in how many milliseconds the next place frees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_place_in_ms: Option<u64>,
}
