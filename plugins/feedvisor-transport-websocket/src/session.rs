//! One open WebSocket connection: what its [`Session`] does with the socket.
//!
//! The session's life (outbound first, then a batch of what arrived, our
//! close, the peer's, the bounded final flush) is the kit's [`Session`];
//! [`WebSocketIo`] supplies
//! what is WebSocket's own: frames through [`FrameCodec`], pings answered
//! with pongs (only the latest when the write buffer is full), the peer's
//! close answered with ours, a protocol error answered with a close frame
//! carrying its code, and, in stream mode, a batch that ends once its data
//! reaches `chunk_size` bytes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Framed;
use awc::BoxedSocket;
use bytes::Bytes;
use feedvisor_transport_api::{CloseFrame, Event, Outbound, OutboundReceiver, TransportError};
use feedvisor_transport_kit::{ReadEnd, Session, SessionIo, MAX_READ_BATCH};

use crate::codec::{ClientFrame, FrameCodec};

/// The stream behind a WebSocket connection's `inbound`, over a socket that
/// has completed the upgrade.
pub(crate) fn session(
    framed: Framed<BoxedSocket, FrameCodec>,
    outbound: OutboundReceiver,
    close_timeout: Duration,
) -> Session<WebSocketIo> {
    let io = WebSocketIo { framed, pending_pong: None, last_batch: 0 };
    Session::new(io, outbound, close_timeout)
}

/// The socket, framed, and what the WebSocket side of a session remembers.
pub(crate) struct WebSocketIo {
    /// The socket; its read buffer still holds whatever awc read past the handshake.
    framed: Framed<BoxedSocket, FrameCodec>,
    /// The payload of the latest ping not yet answered because the write buffer
    /// was full; only the latest is answered (RFC 6455 section 5.5.3), so a
    /// peer that pings without reading cannot grow the buffer.
    pending_pong: Option<Bytes>,
    /// Events in the last batch, to size the next one.
    last_batch: usize,
}

impl WebSocketIo {
    /// Encodes a frame into the write buffer.
    fn write(&mut self, frame: ClientFrame) -> Result<(), TransportError> {
        Pin::new(&mut self.framed).write(frame)
    }

    /// Decodes what has arrived into `events`, answering pings and the peer's close.
    fn decode(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<Event>,
        open: bool,
    ) -> Option<ReadEnd> {
        let data_limit = self.framed.codec_ref().chunk_size().unwrap_or(usize::MAX);
        let mut data_len = 0usize;
        while events.len() < MAX_READ_BATCH && data_len < data_limit {
            let event = match Pin::new(&mut self.framed).next_item(cx) {
                Poll::Pending => return None,
                Poll::Ready(None) => return Some(ReadEnd::Eof),
                Poll::Ready(Some(Err(error))) => return Some(ReadEnd::Failed(error)),
                Poll::Ready(Some(Ok(event))) => event,
            };
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
                if let Err(error) = self.write(reply) {
                    return Some(ReadEnd::Failed(error));
                }
            }
            let closed = matches!(event, Event::Close(_));
            if events.capacity() == 0 {
                events.reserve(self.last_batch.clamp(4, MAX_READ_BATCH));
            }
            events.push(event);
            if closed {
                return Some(ReadEnd::PeerClosed);
            }
        }
        None
    }
}

impl SessionIo for WebSocketIo {
    /// Our close is a close frame the peer answers.
    const HALF_CLOSES: bool = false;
    /// Pings and the peer's close are answered while reading.
    const ANSWERS_WHILE_READING: bool = true;

    fn write_ready(&self) -> bool {
        self.framed.is_write_ready()
    }

    fn queue(&mut self, message: Outbound) -> Result<(), TransportError> {
        self.write(message.into())
    }

    fn queue_deferred(&mut self) -> Result<(), TransportError> {
        if self.framed.is_write_ready() {
            if let Some(payload) = self.pending_pong.take() {
                self.write(ClientFrame::Pong(payload))?;
            }
        }
        Ok(())
    }

    fn queue_close_for(&mut self, error: &TransportError) -> bool {
        let Some(code) = error.close_code() else { return false };
        let reason = match error {
            TransportError::FrameTooLarge { .. } => "frame too large",
            _ => "protocol error",
        };
        self.write(ClientFrame::Close(Some(CloseFrame::new(code, reason)))).is_ok()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Pin::new(&mut self.framed).flush::<ClientFrame>(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Pin::new(&mut self.framed).close::<ClientFrame>(cx)
    }

    /// In stream mode a batch also ends once its data reaches `chunk_size`
    /// bytes, so it holds less than two chunks: what is read ahead of the
    /// consumer is then bounded in bytes, not only in events.
    fn receive(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<Event>,
        open: bool,
    ) -> Option<ReadEnd> {
        let end = self.decode(cx, events, open);
        // Sized like the last batch, so that a busy feed does not grow its Vec afresh each read.
        if !events.is_empty() {
            self.last_batch = events.len();
        }
        end
    }
}
