//! What feedvisor's transport plugins share, so that each keeps only what is
//! its own (its wire format, its handshake, its URL rules).
//!
//! The contract itself (the `Transport` trait and the types a plugin speaks)
//! is `feedvisor-transport-api`, which has no runtime or TLS dependency; this
//! crate is the runtime side a network plugin builds on:
//! - [`Session`]: one open connection as a stream of event batches, with the
//!   close, drain and close-timeout logic every network session shares; a
//!   plugin supplies its socket and framing as a [`SessionIo`];
//! - [`session_inbound`]: hands a session to the connection actor to poll in
//!   place, and finishes its close on a task of its own once the actor lets go;
//! - [`tls`]: rustls client configs (ring, webpki roots, an optional CA
//!   file), also used by the webhook sink;
//! - [`proxy`]: HTTP CONNECT tunnels, and the proxy a feed goes through;
//! - [`redacted_url`]: a feed's URL as errors and logs may show it;
//! - [`Inflater`]: raw deflate, zlib or gzip inflated into output whose size
//!   the caller bounds, so that no compressed input can allocate past a limit;
//! - [`Utf8Validator`]: incremental UTF-8 validation of text split into
//!   fragments, which every transport owes the connection actor.

mod inbound;
mod inflate;
pub mod proxy;
mod redact;
mod session;
pub mod tls;
mod utf8;

pub use inbound::session_inbound;
pub use inflate::{inflate_whole, InflateError, InflateFormat, Inflated, Inflater};
pub use redact::redacted_url;
pub use session::{ReadEnd, Session, SessionIo, MAX_READ_BATCH};
pub use utf8::Utf8Validator;
