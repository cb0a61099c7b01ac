//! What feedvisor's tests share, so that no test copies it: TLS material
//! made at test time ([`certificates`]), raw WebSocket and TCP peers
//! ([`websocket`], [`net`]), an upstream that enforces expiring tokens
//! ([`tokens`]), reading a connection ([`connection`]), a proxy that commits
//! network faults ([`fault`]), bounded
//! waits ([`wait`]), and the transport compliance suite every transport
//! runs ([`compliance`]).
//!
//! A dev-dependency only: nothing here is built into feedvisor. Helpers
//! panic with what failed, which fails the test that called them.

pub mod certificates;
pub mod compliance;
pub mod connection;
pub mod fault;
pub mod net;
pub mod tokens;
pub mod venue;
pub mod wait;
pub mod websocket;

pub use certificates::TestCertificates;
pub use wait::{eventually, wait_until, within, TEST_DEADLINE};
