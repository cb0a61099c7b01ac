//! One open TCP or TLS connection, as the stream of event batches that
//! [`Connection::inbound`](feedvisor_transport_api::Connection) is.
//!
//! A [`Session`] owns the socket, its read and write buffers, the
//! [`Decoder`] and the receiving end of the outbound channel. Every poll, in
//! this order:
//! 1. moves queued outbound messages, framed, into the write buffer (while
//!    it holds less than [`WRITE_HIGH_WATER`]) and writes, never waiting;
//! 2. reads and decodes until the socket has nothing more, the batch holds
//!    [`MAX_BATCH`] events, or (stream mode) one piece of `chunk_size` bytes;
//! 3. yields the batch.
//!
//! Our close (`Outbound::Close`) writes what is queued, shuts our write half
//! down and reads on until the peer closes its side or the close timeout
//! passes. After the peer's close or an error, the session writes what it
//! still has and shuts down (bounded by the close timeout) and ends.
//!
//! The connection actor polls the session in place
//! ([`session_inbound`](feedvisor_transport_api::session_inbound)): when it
//! falls behind or its flow gate closes, the session is not polled, the
//! socket is not read, and TCP slows the peer down.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use feedvisor_transport_api::{close_code, Event, Outbound, OutboundReceiver, TransportError};
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::time::{sleep, Sleep};

use crate::dial::BoxedSocket;
use crate::encoder::Encoder;
use crate::framing::{Decoder, READ_SIZE};

/// Most events yielded in one batch.
pub const MAX_BATCH: usize = 1024;

/// Outbound messages are taken off the channel while fewer bytes than this
/// wait in the write buffer; beyond it, they wait in the channel (which the
/// connection actor bounds) until the peer reads.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Write rounds per poll before yielding to other tasks.
const MAX_WRITE_ROUNDS: usize = 16;

/// Where a session is in its life.
enum State {
    /// Reading and writing.
    Open,
    /// We were asked to close: writing what is queued, then shutting our
    /// write half down; reading until the peer closes too, or the deadline.
    Closing {
        /// When to give up waiting for the peer.
        deadline: Pin<Box<Sleep>>,
        /// True once our write half is shut down.
        shut_down: bool,
    },
    /// The last item was yielded: writing what is left and shutting down,
    /// until done or the deadline.
    Draining(Pin<Box<Sleep>>),
    /// Finished: the stream returns `None`.
    Done,
}

/// How reading ended in one poll, if it did.
enum ReadEnd {
    /// The peer closed its side of the connection cleanly.
    Eof,
    /// The peer broke the framing, sent too much, or reading failed.
    Failed(TransportError),
}

/// The stream behind a TCP or TLS connection's `inbound`.
pub(crate) struct Session {
    /// The socket (TLS already set up, if any).
    socket: BoxedSocket,
    /// Frames outbound messages.
    encoder: Encoder,
    /// Splits what was read into events.
    decoder: Decoder,
    /// Bytes read and not yet decoded; bounded by the decoder (the frame size
    /// limit plus one read, or one `chunk_size` in stream mode); released
    /// while empty and idle.
    read_buffer: BytesMut,
    /// Framed outbound bytes not yet written.
    write_buffer: BytesMut,
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

impl Session {
    /// A session over a connected socket.
    pub(crate) fn new(
        socket: BoxedSocket,
        encoder: Encoder,
        decoder: Decoder,
        outbound: OutboundReceiver,
        close_timeout: Duration,
    ) -> Self {
        Session {
            socket,
            encoder,
            decoder,
            read_buffer: BytesMut::new(),
            write_buffer: BytesMut::new(),
            outbound,
            outbound_done: false,
            state: State::Open,
            pending_error: None,
            close_timeout,
        }
    }

    /// Frames a message, or a piece of one, into the write buffer. One that
    /// cannot be framed is dropped with a warning (its contents are not
    /// logged), unless part of it went out: that ends the connection.
    fn queue(&mut self, message: Outbound) -> Result<(), TransportError> {
        let encoded = match &message {
            Outbound::Text(payload) | Outbound::Binary(payload) => {
                self.encoder.message(payload, &mut self.write_buffer)
            }
            Outbound::Fragment(frame) => self.encoder.fragment(frame, &mut self.write_buffer),
            // TCP has no pings: liveness rests on the feed's idle timeout.
            Outbound::Ping(_) | Outbound::Pong(_) | Outbound::Close(_) => Ok(()),
        };
        match encoded {
            Ok(()) => Ok(()),
            Err(error) if error.is_fatal() => Err(TransportError::Protocol {
                close_code: close_code::PROTOCOL_ERROR,
                reason: error.to_string(),
            }),
            Err(error) => {
                tracing::warn!(%error, "outbound message dropped");
                Ok(())
            }
        }
    }

    /// Writes the write buffer to the socket, as far as it will take it, and flushes.
    fn poll_write_buffer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        while !self.write_buffer.is_empty() {
            match Pin::new(&mut self.socket).poll_write(cx, &self.write_buffer) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(TransportError::Io(
                        "write failed: the socket took no bytes".to_owned(),
                    )))
                }
                Poll::Ready(Ok(written)) => self.write_buffer.advance(written),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(write_failed(error))),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Do not keep the room a burst or a large message needed once it is written.
        if self.write_buffer.capacity() > READ_SIZE {
            self.write_buffer = BytesMut::new();
        }
        Pin::new(&mut self.socket).poll_flush(cx).map_err(write_failed)
    }

    /// Stops taking outbound messages; senders see the channel closed.
    fn close_outbound(&mut self) {
        self.outbound.close();
        self.outbound_done = true;
    }

    /// Moves outbound messages into the write buffer and writes, without
    /// waiting; once closing and written out, shuts our write half down.
    fn send_outbound(&mut self, cx: &mut Context<'_>) -> Result<(), TransportError> {
        let mut rounds = 0;
        loop {
            while !self.outbound_done && self.write_buffer.len() < WRITE_HIGH_WATER {
                match Pin::new(&mut self.outbound).poll_next(cx) {
                    // There is no close frame to carry the code and reason.
                    Poll::Ready(Some(Outbound::Close(_))) => {
                        self.close_outbound();
                        self.state = State::Closing {
                            deadline: Box::pin(sleep(self.close_timeout)),
                            shut_down: false,
                        };
                    }
                    Poll::Ready(Some(message)) => self.queue(message)?,
                    Poll::Ready(None) => self.outbound_done = true,
                    Poll::Pending => break,
                }
            }
            let buffer_was_full = self.write_buffer.len() >= WRITE_HIGH_WATER;
            match self.poll_write_buffer(cx) {
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
        if let State::Closing { shut_down: shut_down @ false, .. } = &mut self.state {
            match Pin::new(&mut self.socket).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => *shut_down = true,
                Poll::Ready(Err(error)) => {
                    tracing::debug!(%error, "shutting our write half down failed");
                    *shut_down = true;
                }
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Reads one piece of at most the decoder's read size into the read buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let size = self.decoder.read_size(self.read_buffer.len());
        self.read_buffer.reserve(size);
        let mut room = (&mut self.read_buffer).limit(size);
        // `read_buf` reads at most once, so a pending read loses nothing.
        let read = self.socket.read_buf(&mut room);
        std::pin::pin!(read).poll(cx)
    }

    /// Reads and decodes into `events` until the socket has nothing more or the batch is full.
    fn receive(&mut self, cx: &mut Context<'_>, events: &mut Vec<Event>) -> Option<ReadEnd> {
        loop {
            while events.len() < MAX_BATCH {
                match self.decoder.decode(&mut self.read_buffer) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(error) => return Some(ReadEnd::Failed(error)),
                }
            }
            // In stream mode a batch is one piece: about `chunk_size` bytes.
            if events.len() >= MAX_BATCH || (self.decoder.is_stream() && !events.is_empty()) {
                return None;
            }
            match self.poll_read(cx) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => return Some(ReadEnd::Eof),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => {
                    // Stream mode hands over what arrived before the failure.
                    events.extend(self.decoder.flush(&mut self.read_buffer));
                    return Some(ReadEnd::Failed(read_failed(error)));
                }
            }
        }
        events.extend(self.decoder.flush(&mut self.read_buffer));
        // Until more arrives, hold no read buffer: an idle connection costs less.
        if self.read_buffer.is_empty() {
            self.read_buffer = BytesMut::new();
        }
        None
    }

    /// The peer closed its side: in stream mode the message ends cleanly; in
    /// message mode that is an error, unless we had closed first.
    fn peer_closed(&mut self, mut events: Vec<Event>) -> Poll<Option<<Self as Stream>::Item>> {
        match self.decoder.finish(&mut self.read_buffer) {
            Ok(last) => events.extend(last),
            Err(error) if !matches!(self.state, State::Closing { .. }) => {
                return self.fail(error, events)
            }
            Err(error) => tracing::debug!(%error, "peer closed after our close"),
        }
        self.start_draining();
        if events.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(events)))
        }
    }

    /// Ends the session after `error`: yields the batch read before it, then the error.
    fn fail(
        &mut self,
        error: TransportError,
        events: Vec<Event>,
    ) -> Poll<Option<<Self as Stream>::Item>> {
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
        let finished = match self.poll_write_buffer(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.socket).poll_shutdown(cx).is_ready(),
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
}

impl Stream for Session {
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
        let write_error = this.send_outbound(cx).err();
        let mut events = Vec::new();
        match (this.receive(cx, &mut events), write_error) {
            (Some(ReadEnd::Failed(error)), _) => this.fail(error, events),
            (Some(ReadEnd::Eof), _) => this.peer_closed(events),
            (None, Some(error)) => this.fail(error, events),
            (None, None) if !events.is_empty() => Poll::Ready(Some(Ok(events))),
            (None, None) => {
                if let State::Closing { deadline, .. } = &mut this.state {
                    if deadline.as_mut().poll(cx).is_ready() {
                        tracing::debug!("peer did not close its side in time after our close");
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            }
        }
    }
}

/// A failed read; a TLS peer that hangs up without `close_notify` may have
/// cut the data short, so that is a failure too, not a clean close.
fn read_failed(error: io::Error) -> TransportError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return TransportError::Io("connection closed by peer without a TLS close_notify".into());
    }
    TransportError::Io(format!("read failed: {error}"))
}

fn write_failed(error: io::Error) -> TransportError {
    TransportError::Io(format!("write failed: {error}"))
}
