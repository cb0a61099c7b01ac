//! feedvisor keeps many outbound real-time feeds alive and routes what they
//! deliver to subscribers.
//!
//! The pieces, outermost first: [`Sidecar`] starts everything from a
//! [`config::Config`]; the [`supervisor`] owns one [`connection`] actor per
//! feed; each connection speaks to a transport plugin through
//! [`feedvisor_transport_api`] and pushes whole messages, routed by the
//! table the [`router`] publishes, into the [`inbox`] of each subscriber,
//! which hands them over as [`Deliver`] batches to subscriber actors such as
//! the built-in [`sink`]s. See `ARCHITECTURE.md` for the map.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod demo;
pub mod flow;
pub mod http;
pub mod inbox;
pub mod metrics;
pub mod router;
pub mod secret;
pub mod sidecar;
pub mod sink;
pub mod status;
pub mod supervisor;
pub mod tail;
pub mod transports;

pub use delivery::{Chunk, DataKind, Deliver, FeedMessage};
pub use router::SubscriptionSpec;
pub use sidecar::{Sidecar, SidecarBuilder, StartError};
pub use status::{FeedState, FeedStatus};
