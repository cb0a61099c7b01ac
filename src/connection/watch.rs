//! How the supervisor learns what happens to a connection actor: when it
//! is subscribed and delivering, when its `rotate_every` is due, when a replacement on a sequenced feed takes over delivery, and
//! when it dies without being asked to (a panic or an unexpected stop), so
//! that it can be restarted.

use actix::prelude::*;

/// What a connection actor tells its supervisor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) enum ConnectionEvent {
    /// On a sequenced feed, this actor delivers from now on (it proved that it
    /// continues where delivery stands, or the one before it could not
    /// deliver): the actors it replaces can go. Sent by [`super::sequence::FeedSequence`].
    TookOver {
        /// The feed's name.
        feed: String,
        /// Which actor of that feed.
        incarnation: u64,
    },
    /// The connection is subscribed and delivering (its first data message):
    /// a connection it replaces (rotation, a changed feed) can close.
    Delivering {
        /// The feed's name.
        feed: String,
        /// Which actor of that feed.
        incarnation: u64,
    },
    /// The connection has been open for `rotate_every`: time to replace it.
    RotateDue {
        /// The feed's name.
        feed: String,
        /// Which actor of that feed.
        incarnation: u64,
    },
    /// The actor is gone without having been told to stop.
    Died {
        /// The feed's name.
        feed: String,
        /// Which actor of that feed.
        incarnation: u64,
    },
}

/// A connection actor's line to its supervisor: reports [`ConnectionEvent::Delivering`]
/// and [`ConnectionEvent::RotateDue`] when asked, and sends [`ConnectionEvent::Died`] when dropped, unless the
/// stop was expected. (The sequenced feed's [`ConnectionEvent::TookOver`]
/// travels the same way, from [`super::sequence::FeedSequence`].)
///
/// A panic in a handler drops the actor while unwinding, so the death is
/// reported even then.
pub(crate) struct SupervisorLink {
    supervisor: Recipient<ConnectionEvent>,
    feed: String,
    incarnation: u64,
    /// Set when the actor was told to stop: no death reported then.
    expected: bool,
}

impl SupervisorLink {
    /// The link of one actor of `feed`.
    pub(crate) fn new(
        supervisor: Recipient<ConnectionEvent>,
        feed: String,
        incarnation: u64,
    ) -> Self {
        SupervisorLink { supervisor, feed, incarnation, expected: false }
    }

    /// Tells the supervisor the connection is subscribed and delivering.
    pub(crate) fn delivering(&self) {
        self.supervisor.do_send(ConnectionEvent::Delivering {
            feed: self.feed.clone(),
            incarnation: self.incarnation,
        });
    }

    /// Asks the supervisor to rotate this connection (`rotate_every` passed).
    pub(crate) fn rotate_due(&self) {
        self.supervisor.do_send(ConnectionEvent::RotateDue {
            feed: self.feed.clone(),
            incarnation: self.incarnation,
        });
    }

    /// Marks the coming stop as asked for.
    pub(crate) fn expect_stop(&mut self) {
        self.expected = true;
    }
}

impl Drop for SupervisorLink {
    fn drop(&mut self) {
        if !self.expected {
            self.supervisor.do_send(ConnectionEvent::Died {
                feed: std::mem::take(&mut self.feed),
                incarnation: self.incarnation,
            });
        }
    }
}
