//! One open connection as the stream of event batches that
//! [`Connection::inbound`](feedvisor_transport_api::Connection) is: the life
//! every network session shares, from open through our close or the peer's
//! to the bounded final flush.
//!
//! A [`Session`] owns the receiving end of the outbound channel and a
//! [`SessionIo`]: the socket with what is the plugin's own (how messages are
//! framed, how what arrives becomes events, what the wire answers by itself).
//! Every poll, in this order:
//! 1. moves queued outbound messages into the write buffer (while it has
//!    room) and writes, never waiting;
//! 2. reads and decodes what has arrived into one batch (at most
//!    [`MAX_READ_BATCH`] events; the plugin may end it sooner);
//! 3. writes the answers queued while reading, if the wire has any, and
//!    yields the batch.
//!
//! Our close (`Outbound::Close`) is framed by the plugin and written; the
//! session then reads on until the peer closes too or the close timeout
//! passes. After the peer's close, an error, or the close timeout, the
//! session writes what it still has to say and shuts the socket down
//! (bounded by the close timeout again) and ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use feedvisor_transport_api::{Event, Outbound, OutboundReceiver, TransportError};
use futures_util::Stream;
use tokio::time::{sleep, Sleep};

/// The most events one read of a session yields as one batch.
pub const MAX_READ_BATCH: usize = 1024;

/// Write rounds per poll before yielding to other tasks.
const MAX_WRITE_ROUNDS: usize = 16;

/// How reading ended in one poll, if it did.
#[derive(Debug)]
pub enum ReadEnd {
    /// The peer closed properly (a WebSocket close frame, the end of a TCP
    /// stream); what came before it, if anything, is in the batch.
    PeerClosed,
    /// The connection ended without the close the protocol calls for (a
    /// WebSocket without its close frame): an error, unless we had closed first.
    Eof,
    /// The peer broke the protocol, or reading failed.
    Failed(TransportError),
}

/// What a plugin's session does with its socket; the [`Session`] decides when.
///
/// Every method is called from [`Session`]'s `poll_next`, so the calls are
/// static (the session is generic over this trait, not a `dyn`).
pub trait SessionIo: Unpin {
    /// True when our close is the end of our half of the connection (a byte
    /// stream, which has no close frame): once what is queued is written, the
    /// write half is shut down, and the close timeout ends the session
    /// without a second drain. False when our close is a message the peer
    /// answers (WebSocket).
    const HALF_CLOSES: bool;

    /// True when reading can queue answers (pongs, a close reply): they are
    /// written before the batch is yielded.
    const ANSWERS_WHILE_READING: bool;

    /// True while the write buffer has room for another outbound message.
    fn write_ready(&self) -> bool;

    /// Frames `message` (our close included) into the write buffer. An error
    /// ends the session.
    fn queue(&mut self, message: Outbound) -> Result<(), TransportError>;

    /// Queues what was put off for want of room (a pong), before outbound messages.
    fn queue_deferred(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Queues the close that tells the peer why we end after `error`, if the
    /// wire has one; true if it was queued.
    fn queue_close_for(&mut self, error: &TransportError) -> bool {
        let _ = error;
        false
    }

    /// Writes the write buffer to the socket, as far as it will take it, and flushes.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Shuts the socket's write side down (called once the write buffer is empty).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Reads and decodes what has arrived into `events`, up to [`MAX_READ_BATCH`]
    /// of them; `open` is false once our close was sent (a wire then stops
    /// answering the peer). Returns how reading ended, if it did.
    fn receive(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<Event>,
        open: bool,
    ) -> Option<ReadEnd>;
}

/// Where a session is in its life.
enum State {
    /// Reading and writing.
    Open,
    /// We sent our close: writing what is queued, reading until the peer
    /// closes too, EOF or the deadline.
    Closing {
        /// When to give up waiting for the peer.
        deadline: Pin<Box<Sleep>>,
        /// True once our write half is shut down (only for a wire that half-closes).
        shut_down: bool,
    },
    /// The last item was yielded: writing what is left and shutting down,
    /// until done or the deadline.
    Draining(Pin<Box<Sleep>>),
    /// Finished: the stream returns `None`.
    Done,
}

/// The stream behind a network connection's `inbound`.
pub struct Session<Io: SessionIo> {
    /// The socket and the plugin's framing.
    io: Io,
    /// What the connection actor wants sent.
    outbound: OutboundReceiver,
    /// True once the outbound channel ended or we closed it.
    outbound_done: bool,
    /// Decides what a poll does.
    state: State,
    /// An error found while a batch was being read, yielded after that batch.
    pending_error: Option<TransportError>,
    /// How long to wait for the peer's close after ours, and for the final flush.
    close_timeout: Duration,
}

impl<Io: SessionIo> Session<Io> {
    /// A session over a connected socket (its handshake, if any, done).
    pub fn new(io: Io, outbound: OutboundReceiver, close_timeout: Duration) -> Self {
        Session {
            io,
            outbound,
            outbound_done: false,
            state: State::Open,
            pending_error: None,
            close_timeout,
        }
    }

    /// Stops taking outbound messages; senders see the channel closed.
    fn close_outbound(&mut self) {
        self.outbound.close();
        self.outbound_done = true;
    }

    /// Moves outbound messages into the write buffer and writes, without
    /// waiting; once closing and written out, shuts a half-closing wire's
    /// write half down.
    fn send_outbound(&mut self, cx: &mut Context<'_>) -> Result<(), TransportError> {
        self.io.queue_deferred()?;
        let mut rounds = 0;
        loop {
            while !self.outbound_done && self.io.write_ready() {
                match Pin::new(&mut self.outbound).poll_next(cx) {
                    Poll::Ready(Some(close @ Outbound::Close(_))) => {
                        self.io.queue(close)?;
                        self.close_outbound();
                        self.state = State::Closing {
                            deadline: Box::pin(sleep(self.close_timeout)),
                            shut_down: false,
                        };
                    }
                    Poll::Ready(Some(message)) => self.io.queue(message)?,
                    Poll::Ready(None) => self.outbound_done = true,
                    Poll::Pending => break,
                }
            }
            let buffer_was_full = !self.io.write_ready();
            match self.io.poll_flush(cx) {
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(())) if buffer_was_full && !self.outbound_done => {}
                Poll::Ready(Ok(())) => break,
            }
            rounds += 1;
            if rounds == MAX_WRITE_ROUNDS {
                // More is queued: come back after the other tasks had their turn.
                cx.waker().wake_by_ref();
                return Ok(());
            }
        }
        if Io::HALF_CLOSES {
            if let State::Closing { shut_down: shut_down @ false, .. } = &mut self.state {
                match self.io.poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => *shut_down = true,
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "shutting our write half down failed");
                        *shut_down = true;
                    }
                    Poll::Pending => {}
                }
            }
        }
        Ok(())
    }

    /// Ends the session after `error`: sends the close it calls for (if the
    /// wire has one and we had not closed) and yields the batch read before
    /// it, then the error.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        error: TransportError,
        events: Vec<Event>,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        // The error is what matters: a close that cannot be sent is moot, and
        // one that cannot be sent at once is finished while draining.
        if matches!(self.state, State::Open) && self.io.queue_close_for(&error) {
            let _ = self.io.poll_flush(cx);
        }
        self.start_draining();
        if events.is_empty() {
            Poll::Ready(Some(Err(error)))
        } else {
            self.pending_error = Some(error);
            Poll::Ready(Some(Ok(events)))
        }
    }

    /// Stops taking outbound messages and starts the bounded final flush.
    fn start_draining(&mut self) {
        self.close_outbound();
        self.state = State::Draining(Box::pin(sleep(self.close_timeout)));
    }

    /// Writes what is left and shuts the socket down until done or the deadline, then ends.
    fn poll_draining(&mut self, cx: &mut Context<'_>) -> Poll<Option<<Self as Stream>::Item>> {
        let finished = match self.io.poll_flush(cx) {
            Poll::Ready(Ok(())) => self.io.poll_shutdown(cx).is_ready(),
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        let expired = match &mut self.state {
            State::Draining(deadline) => deadline.as_mut().poll(cx).is_ready(),
            _ => true,
        };
        if finished || expired {
            self.state = State::Done;
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Nothing arrived and nothing failed: waits, unless our close went
    /// unanswered for the whole close timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<<Self as Stream>::Item>> {
        let State::Closing { deadline, .. } = &mut self.state else { return Poll::Pending };
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if Io::HALF_CLOSES {
            // Closing was already writing out and shutting down: that was the drain.
            tracing::debug!("peer did not close its side in time after our close");
            self.state = State::Done;
            return Poll::Ready(None);
        }
        tracing::debug!("peer did not answer our close in time");
        self.start_draining();
        self.poll_draining(cx)
    }
}

/// The batch, or the end of the stream when there is none.
fn batch_or_end(events: Vec<Event>) -> Poll<Option<Result<Vec<Event>, TransportError>>> {
    if events.is_empty() {
        Poll::Ready(None)
    } else {
        Poll::Ready(Some(Ok(events)))
    }
}

impl<Io: SessionIo> Stream for Session<Io> {
    type Item = Result<Vec<Event>, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(error) = this.pending_error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match this.state {
            State::Done => return Poll::Ready(None),
            State::Draining(_) => return this.poll_draining(cx),
            State::Open | State::Closing { .. } => {}
        }
        // A write error still lets us read what arrived: often the peer's close.
        let mut write_error = this.send_outbound(cx).err();
        // False once our close went out, in this poll or before.
        let open = matches!(this.state, State::Open);
        // Allocated only once something arrived (most polls of a quiet
        // connection find nothing); the plugin may size it.
        let mut events = Vec::new();
        let end = this.io.receive(cx, &mut events, open);
        if Io::ANSWERS_WHILE_READING {
            // Send the answers queued while reading.
            if let Poll::Ready(Err(error)) = this.io.poll_flush(cx) {
                write_error = write_error.or(Some(error));
            }
        }
        match (end, write_error) {
            (Some(ReadEnd::Failed(error)), _) => this.fail(cx, error, events),
            (Some(ReadEnd::PeerClosed), _) => {
                // The peer's close is the last word, even if our answer could not be written.
                this.start_draining();
                batch_or_end(events)
            }
            (Some(ReadEnd::Eof), _) if !open => {
                // We had sent our close; the peer hung up instead of answering.
                this.state = State::Done;
                this.close_outbound();
                batch_or_end(events)
            }
            (_, Some(error)) => this.fail(cx, error, events),
            (Some(ReadEnd::Eof), None) => {
                let error =
                    TransportError::Io("connection closed without a close frame".to_owned());
                this.fail(cx, error, events)
            }
            (None, None) if !events.is_empty() => Poll::Ready(Some(Ok(events))),
            (None, None) => this.poll_idle(cx),
        }
    }
}

#[cfg(test)]
mod tests;
