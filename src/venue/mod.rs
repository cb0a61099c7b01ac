//! What venues limit, enforced: outbound pacing per feed (`outbound_rate`)
//! and connect budgets and cool-downs shared by the feeds to one host
//! (`[[hosts]]`).
//!
//! `window.rs` is the strict rolling window both use; `pacing.rs` a feed's
//! pacing state, driven by its connection actor (`connection/paced.rs`)
//! where messages are handed to the connection; `hosts.rs` the one registry
//! of host entries per process, asked by every connection actor before each
//! connect attempt and told of refusals that cool a host down. The config
//! they follow is checked in `config/limits.rs`; their metrics are named in
//! `metrics/venue.rs`.

#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub(crate) mod hosts;
pub(crate) mod pacing;
mod window;

pub use hosts::{CooldownStatus, HostStatus, WaitingFeed};
