//! How the supervisor learns that a sink actor stopped, so that one that
//! stopped without being asked to can be started again.
//!
//! Every config sink holds a [`SinkWatch`]; it is dropped with the actor
//! (also when a handler panics and the actor is dropped while unwinding) and
//! then sends [`SinkStopped`]. The sink cannot tell a stop it was asked for
//! (its subscription removed by a reload, shutdown) from any other: the
//! supervisor tells them apart by the subscriber's name and incarnation.

use actix::prelude::*;

/// A sink actor is gone.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct SinkStopped {
    /// The subscriber's configured name.
    pub subscriber: String,
    /// Which actor of that subscriber.
    pub incarnation: u64,
}

/// Sends [`SinkStopped`] when dropped.
pub(crate) struct SinkWatch {
    /// Where the notice goes.
    supervisor: Recipient<SinkStopped>,
    /// The subscriber's configured name.
    subscriber: String,
    /// Which actor of that subscriber this one is.
    incarnation: u64,
}

impl SinkWatch {
    /// A watch for actor `incarnation` of `subscriber`.
    pub(crate) fn new(
        supervisor: Recipient<SinkStopped>,
        subscriber: &str,
        incarnation: u64,
    ) -> Self {
        SinkWatch { supervisor, subscriber: subscriber.to_owned(), incarnation }
    }
}

impl Drop for SinkWatch {
    fn drop(&mut self) {
        self.supervisor.do_send(SinkStopped {
            subscriber: std::mem::take(&mut self.subscriber),
            incarnation: self.incarnation,
        });
    }
}
