//! feedvisor keeps many outbound real-time feeds alive and routes what they
//! deliver to subscribers.
//!
//! The pieces, outermost first: [`Sidecar`] starts everything from a
//! [`config::Config`]; a supervisor owns one connection actor per feed;
//! each connection speaks to a transport plugin through
//! [`feedvisor_transport_api`] (picked by URL scheme from a
//! [`transports::TransportRegistry`]) and pushes whole messages, routed by
//! the table the router publishes, into the inbox of each subscriber, which
//! hands them over as [`Deliver`] batches to subscriber actors such as the
//! built-in sinks. See `ARCHITECTURE.md` for the map.
//!
//! This crate's public surface is what an embedding program needs: the
//! [`Sidecar`] and its builder, the [`config`] types, the transport
//! registry, what subscribers receive ([`Deliver`], [`FeedMessage`]) and
//! the results and errors of the [`Sidecar`]'s methods. Everything else is
//! internal.

mod backoff;
mod cluster;
pub mod config;
mod connection;
mod continuity;
mod credentials;
mod flow;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod inbox;
mod metrics;
mod nats;
mod pointer;
mod router;
mod secret;
mod sidecar;
mod sink;
mod status;
mod supervisor;
pub mod transports;
mod venue;

pub use connection::{OutboundFill, OutboundQueueError, SendError, SendOutcome};
pub use continuity::{Discontinuity, DiscontinuityReason, FeedEvent};
pub use http::limits::OpenFilesError;
pub use inbox::delivery::{Chunk, DataKind, Deliver, FeedMessage};
pub use metrics::{install as install_metrics, MetricsError, MetricsHandle};
pub use router::SubscriptionSpec;
pub use sidecar::{ShutdownReport, Sidecar, SidecarBuilder, StartError};
pub use sink::JsonLinesSink;
pub use status::{
    CloseRecord, CredentialsStatus, FeedState, FeedStatus, HostWait, HostWaitReason, LegStatus,
    PacingStatus, RetryWait,
};
pub use status::{ShardStatus, SubscriptionStatus, TopicState, TopicStatus};
pub use supervisor::{ChangeError, FeedReadiness, Readiness, ReloadReport};
pub use venue::{CooldownStatus, HostStatus, WaitingFeed};
