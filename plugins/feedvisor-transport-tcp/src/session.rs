//! One open TCP or TLS connection: what its session does with the socket.
//!
//! The session's life (outbound first, then a batch of what arrived, our
//! close, the peer's, the bounded final flush) is the kit's [`Session`];
//! [`TcpIo`] supplies what is a byte stream's own: the read and write
//! buffers, the [`Decoder`] and [`Encoder`], outbound messages taken only
//! while fewer than [`WRITE_HIGH_WATER`] bytes wait, and, in stream mode, a
//! batch that is one piece of about `chunk_size` bytes.
//!
//! Our close (`Outbound::Close`) has no close frame to carry its code and
//! reason: it writes what is queued, shuts our write half down and reads on
//! until the peer closes its side or the close timeout passes. The peer
//! closing its side is its close: in stream mode the message ends cleanly; in
//! message mode that is an error, unless we had closed first.
//!
//! The connection actor polls the session in place
//! ([`session_inbound`](feedvisor_transport_kit::session_inbound)): when it
//! falls behind or its flow gate closes, the session is not polled, the
//! socket is not read, and TCP slows the peer down.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use feedvisor_transport_api::{close_code, Event, Outbound, OutboundReceiver, TransportError};
use feedvisor_transport_kit::{ReadEnd, Session, SessionIo, MAX_READ_BATCH};
use tokio::io::{AsyncReadExt, AsyncWrite};

use crate::dial::BoxedSocket;
use crate::encoder::Encoder;
use crate::framing::{Decoder, READ_SIZE};

/// Outbound messages are taken off the channel while fewer bytes than this
/// wait in the write buffer; beyond it, they wait in the channel (which the
/// connection actor bounds) until the peer reads.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;

/// The stream behind a TCP or TLS connection's `inbound`, over a connected socket.
pub(crate) fn session(
    socket: BoxedSocket,
    encoder: Encoder,
    decoder: Decoder,
    outbound: OutboundReceiver,
    close_timeout: Duration,
) -> Session<TcpIo> {
    let io = TcpIo {
        socket,
        encoder,
        decoder,
        read_buffer: BytesMut::new(),
        write_buffer: BytesMut::new(),
    };
    Session::new(io, outbound, close_timeout)
}

/// The socket, its buffers and its framing.
pub(crate) struct TcpIo {
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
}

impl TcpIo {
    /// Reads one piece of at most the decoder's read size into the read buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let size = self.decoder.read_size(self.read_buffer.len());
        self.read_buffer.reserve(size);
        let mut room = (&mut self.read_buffer).limit(size);
        // `read_buf` reads at most once, so a pending read loses nothing.
        let read = self.socket.read_buf(&mut room);
        std::pin::pin!(read).poll(cx)
    }

    /// The peer closed its side: in stream mode the message ends cleanly (its
    /// last piece goes into `events`); in message mode an unfinished message
    /// is an error, unless we had closed first.
    fn peer_closed(&mut self, events: &mut Vec<Event>, open: bool) -> ReadEnd {
        match self.decoder.finish(&mut self.read_buffer) {
            Ok(last) => {
                events.extend(last);
                ReadEnd::PeerClosed
            }
            Err(error) if open => ReadEnd::Failed(error),
            Err(error) => {
                tracing::debug!(%error, "peer closed after our close");
                ReadEnd::PeerClosed
            }
        }
    }
}

impl SessionIo for TcpIo {
    /// A byte stream has no close frame: our close is shutting our write half down.
    const HALF_CLOSES: bool = true;
    /// TCP has no pings or close frames to answer.
    const ANSWERS_WHILE_READING: bool = false;

    fn write_ready(&self) -> bool {
        self.write_buffer.len() < WRITE_HIGH_WATER
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
            // TCP has no pings (liveness rests on the feed's idle timeout),
            // and no close frame to carry a code and reason.
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

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
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

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Pin::new(&mut self.socket).poll_shutdown(cx).map_err(write_failed)
    }

    /// Reads and decodes until the socket has nothing more or the batch is
    /// full; in stream mode a batch is one piece of about `chunk_size` bytes.
    fn receive(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<Event>,
        open: bool,
    ) -> Option<ReadEnd> {
        loop {
            while events.len() < MAX_READ_BATCH {
                match self.decoder.decode(&mut self.read_buffer) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(error) => return Some(ReadEnd::Failed(error)),
                }
            }
            if events.len() >= MAX_READ_BATCH || (self.decoder.is_stream() && !events.is_empty()) {
                return None;
            }
            match self.poll_read(cx) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => return Some(self.peer_closed(events, open)),
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
