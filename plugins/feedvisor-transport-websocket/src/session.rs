//! One open WebSocket connection, as the stream of event batches that
//! [`Connection::inbound`](feedvisor_transport_api::Connection) is.
//!
//! A [`Session`] owns the socket (framed with [`FrameCodec`]) and the
//! receiving end of the outbound channel. Every poll, in this order:
//! 1. moves queued outbound messages into the write buffer (while it has
//!    room) and flushes, never waiting;
//! 2. decodes every frame that has arrived, up to [`MAX_BATCH`] events (in
//!    stream mode, also ending the batch once its data reaches `chunk_size`
//!    bytes), answering pings with pongs and the peer's close with a close;
//! 3. flushes those answers and yields the batch.
//!
//! After the peer's close frame, an error or our own close, the session
//! flushes what it still has to say (bounded by the close timeout) and ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Framed;
use actix_rt::time::{sleep, Sleep};
use awc::BoxedSocket;
use bytes::Bytes;
use feedvisor_transport_api::{CloseFrame, Event, Outbound, OutboundReceiver, TransportError};
use futures_util::Stream;

use crate::codec::{ClientFrame, FrameCodec};

/// Most events yielded in one batch.
pub const MAX_BATCH: usize = 1024;

/// Write-then-flush rounds per poll before yielding to other tasks.
const MAX_WRITE_ROUNDS: usize = 16;

/// Where a session is in its life.
enum State {
    /// Reading and writing.
    Open,
    /// We sent a close frame: reading until the peer's close, EOF or the deadline.
    Closing(Pin<Box<Sleep>>),
    /// The last item was yielded: flushing and shutting down until the deadline.
    Draining(Pin<Box<Sleep>>),
    /// Finished: the stream returns `None`.
    Done,
}

/// How reading ended in one poll, if it did.
enum ReadEnd {
    /// The peer's close frame arrived (it is the last event of the batch).
    PeerClosed,
    /// The socket closed without a close frame.
    Eof,
    /// The peer broke the protocol, or reading failed.
    Failed(TransportError),
}

/// The stream behind a WebSocket connection's `inbound`.
pub(crate) struct Session {
    /// The socket; its read buffer still holds whatever awc read past the handshake.
    framed: Framed<BoxedSocket, FrameCodec>,
    /// What the connection actor wants sent.
    outbound: OutboundReceiver,
    /// True once the outbound channel ended or we closed it.
    outbound_done: bool,
    /// Decides what a poll does.
    state: State,
    /// An error found while a batch was being read, yielded after that batch.
    pending_error: Option<TransportError>,
    /// The payload of the latest ping not yet answered because the write buffer
    /// was full; only the latest is answered (RFC 6455 section 5.5.3), so a
    /// peer that pings without reading cannot grow the buffer.
    pending_pong: Option<Bytes>,
    /// How long to wait for the peer's close after ours, and for the final flush.
    close_timeout: Duration,
    /// Events in the last batch, to size the next one.
    last_batch: usize,
}

impl Session {
    /// A session over a socket that has completed the upgrade.
    pub(crate) fn new(
        framed: Framed<BoxedSocket, FrameCodec>,
        outbound: OutboundReceiver,
        close_timeout: Duration,
    ) -> Self {
        Session {
            framed,
            outbound,
            outbound_done: false,
            state: State::Open,
            pending_error: None,
            pending_pong: None,
            close_timeout,
            last_batch: 0,
        }
    }

    /// Encodes a frame into the write buffer.
    fn queue(&mut self, frame: ClientFrame) -> Result<(), TransportError> {
        Pin::new(&mut self.framed).write(frame)
    }

    /// Writes the write buffer to the socket, as far as it will take it.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Pin::new(&mut self.framed).flush::<ClientFrame>(cx)
    }

    /// Stops taking outbound messages; senders see the channel closed.
    fn close_outbound(&mut self) {
        self.outbound.close();
        self.outbound_done = true;
    }

    /// Moves outbound messages into the write buffer and flushes, without waiting.
    fn send_outbound(&mut self, cx: &mut Context<'_>) -> Result<(), TransportError> {
        if self.framed.is_write_ready() {
            if let Some(payload) = self.pending_pong.take() {
                self.queue(ClientFrame::Pong(payload))?;
            }
        }
        for _ in 0..MAX_WRITE_ROUNDS {
            while !self.outbound_done && self.framed.is_write_ready() {
                match Pin::new(&mut self.outbound).poll_next(cx) {
                    Poll::Ready(Some(Outbound::Close(frame))) => {
                        self.queue(ClientFrame::Close(frame))?;
                        self.close_outbound();
                        self.state = State::Closing(Box::pin(sleep(self.close_timeout)));
                    }
                    Poll::Ready(Some(message)) => self.queue(message.into())?,
                    Poll::Ready(None) => self.outbound_done = true,
                    Poll::Pending => break,
                }
            }
            let buffer_was_full = !self.framed.is_write_ready();
            match self.poll_flush(cx) {
                Poll::Ready(Ok(())) if buffer_was_full && !self.outbound_done => continue,
                Poll::Ready(Ok(())) | Poll::Pending => return Ok(()),
                Poll::Ready(Err(error)) => return Err(error),
            }
        }
        // More is queued: come back after the other tasks had their turn.
        cx.waker().wake_by_ref();
        Ok(())
    }

    /// Decodes what has arrived into `events`, answering pings and the peer's close.
    ///
    /// In stream mode a batch also ends once its data reaches `chunk_size`
    /// bytes, so it holds less than two chunks: what is read ahead of the
    /// consumer is then bounded in bytes, not only in events.
    fn receive(&mut self, cx: &mut Context<'_>, events: &mut Vec<Event>) -> Option<ReadEnd> {
        let data_limit = self.framed.codec_ref().chunk_size().unwrap_or(usize::MAX);
        let mut data_len = 0usize;
        while events.len() < MAX_BATCH && data_len < data_limit {
            let event = match Pin::new(&mut self.framed).next_item(cx) {
                Poll::Pending => return None,
                Poll::Ready(None) => return Some(ReadEnd::Eof),
                Poll::Ready(Some(Err(error))) => return Some(ReadEnd::Failed(error)),
                Poll::Ready(Some(Ok(event))) => event,
            };
            let open = matches!(self.state, State::Open);
            let reply = match &event {
                Event::Ping(payload) if open && self.framed.is_write_ready() => {
                    self.pending_pong = None;
                    Some(ClientFrame::Pong(payload.clone()))
                }
                Event::Ping(payload) if open => {
                    self.pending_pong = Some(payload.clone());
                    None
                }
                Event::Close(frame) if open => {
                    Some(ClientFrame::Close(frame.as_ref().map(|f| CloseFrame::new(f.code, ""))))
                }
                Event::Data(frame) => {
                    data_len = data_len.saturating_add(frame.payload.len());
                    None
                }
                _ => None,
            };
            if let Some(reply) = reply {
                if let Err(error) = self.queue(reply) {
                    return Some(ReadEnd::Failed(error));
                }
            }
            let closed = matches!(event, Event::Close(_));
            if events.capacity() == 0 {
                events.reserve(self.last_batch.clamp(4, MAX_BATCH));
            }
            events.push(event);
            if closed {
                return Some(ReadEnd::PeerClosed);
            }
        }
        None
    }

    /// Ends the session after `error`: sends the close frame it calls for and
    /// yields the batch read before it, then the error.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        error: TransportError,
        events: Vec<Event>,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        if let (Some(code), State::Open) = (error.close_code(), &self.state) {
            let reason = match &error {
                TransportError::FrameTooLarge { .. } => "frame too large",
                _ => "protocol error",
            };
            // The error is what matters: a close frame that cannot be sent is moot,
            // and one that cannot be sent at once is finished while draining.
            if self.queue(ClientFrame::Close(Some(CloseFrame::new(code, reason)))).is_ok() {
                let _ = self.poll_flush(cx);
            }
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

    /// Flushes and shuts the socket down until done or the deadline, then ends.
    fn poll_draining(&mut self, cx: &mut Context<'_>) -> Poll<Option<<Self as Stream>::Item>> {
        let finished = match self.poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.framed).close::<ClientFrame>(cx).is_ready(),
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
            State::Open | State::Closing(_) => {}
        }
        // A write error still lets us read what arrived: often the peer's close frame.
        let write_error = this.send_outbound(cx).err();
        // Allocated only once something arrived (most polls of a quiet
        // connection find nothing), then sized like the last batch, so that a
        // busy feed does not grow its Vec afresh each read.
        let mut events = Vec::new();
        let end = this.receive(cx, &mut events);
        if !events.is_empty() {
            this.last_batch = events.len();
        }
        // Send the pongs and the close reply queued while reading.
        let write_error = match this.poll_flush(cx) {
            Poll::Ready(Err(error)) => write_error.or(Some(error)),
            _ => write_error,
        };
        let closing = matches!(this.state, State::Closing(_));
        match (end, write_error) {
            (Some(ReadEnd::Failed(error)), _) => this.fail(cx, error, events),
            (Some(ReadEnd::PeerClosed), _) => {
                // The close is the last word, even if our answer could not be written.
                this.start_draining();
                Poll::Ready(Some(Ok(events)))
            }
            (Some(ReadEnd::Eof), _) if closing => {
                // We had sent our close; the peer hung up instead of answering.
                this.state = State::Done;
                this.close_outbound();
                if events.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(events)))
                }
            }
            (_, Some(error)) => this.fail(cx, error, events),
            (Some(ReadEnd::Eof), None) => {
                let error =
                    TransportError::Io("connection closed without a close frame".to_owned());
                this.fail(cx, error, events)
            }
            (None, None) if !events.is_empty() => Poll::Ready(Some(Ok(events))),
            (None, None) => {
                if let State::Closing(deadline) = &mut this.state {
                    if deadline.as_mut().poll(cx).is_ready() {
                        tracing::debug!("peer did not answer our close frame in time");
                        this.start_draining();
                        return this.poll_draining(cx);
                    }
                }
                Poll::Pending
            }
        }
    }
}
