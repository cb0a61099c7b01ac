//! Bytes to events: where inbound messages begin and end on a byte stream
//! (the way back is `encoder.rs`).
//!
//! [`Decoder`] works on the session's read buffer: [`Decoder::decode`] takes
//! one event off its front when a whole one is there, and
//! [`Decoder::read_size`] says how much the next read may add. Together they
//! keep the buffer bounded: a message over `max_frame_size` is refused as
//! soon as that is known (a length prefix over the limit before any of the
//! payload is read; a line once more than the limit has arrived without a
//! newline), so the buffer never holds more than the limit plus one read.

use bytes::{Buf, BytesMut};
use feedvisor_transport_api::{
    close_code, DataFrame, DeliveryMode, Event, Framing, Opcode, TransportError,
};

/// The most one read of the socket adds to the buffer, unless a length prefix
/// announced a longer message (which is then read in fewer, larger reads).
pub(crate) const READ_SIZE: usize = 8 * 1024;

/// The size of a length prefix: a big-endian u32.
const PREFIX_LEN: usize = 4;

/// How bytes map to messages on one connection, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Message mode, one text message per line.
    Lines,
    /// Message mode, each binary message after its length as a big-endian u32.
    LengthPrefixed,
    /// Stream mode: the connection is one binary message, in pieces of at most `chunk_size`.
    Raw {
        /// The largest piece, in bytes (at least 1).
        chunk_size: usize,
    },
}

impl Wire {
    /// The wire format for a request's delivery mode and framing; stream mode
    /// ignores the framing.
    pub(crate) fn new(mode: DeliveryMode, framing: Framing) -> Wire {
        match (mode, framing) {
            (DeliveryMode::Stream { chunk_size }, _) => Wire::Raw { chunk_size: chunk_size.max(1) },
            (DeliveryMode::Message, Framing::Lines) => Wire::Lines,
            (DeliveryMode::Message, Framing::LengthPrefixed) => Wire::LengthPrefixed,
        }
    }
}

/// Splits the bytes read from one connection into events.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The format.
    wire: Wire,
    /// The longest message accepted in message mode.
    max_frame_size: usize,
    /// Lines: how many bytes at the front of the buffer are known to hold no newline,
    /// so that each byte is searched once however the line arrives.
    scanned: usize,
    /// Length-prefixed: the whole length (prefix included) of the message
    /// being read, once its prefix is in and the rest is not.
    wanted: usize,
    /// Stream mode: true once the first piece went out (later ones are continuations).
    started: bool,
}

impl Decoder {
    /// A decoder for a new connection.
    pub(crate) fn new(wire: Wire, max_frame_size: usize) -> Self {
        Decoder { wire, max_frame_size, scanned: 0, wanted: 0, started: false }
    }

    /// True in stream mode.
    pub(crate) fn is_stream(&self) -> bool {
        matches!(self.wire, Wire::Raw { .. })
    }

    /// How many bytes the next read may add to a buffer holding `buffered`
    /// bytes that [`Decoder::decode`] left there (always at least one).
    pub(crate) fn read_size(&self, buffered: usize) -> usize {
        match self.wire {
            Wire::Raw { chunk_size } => READ_SIZE.min(chunk_size.saturating_sub(buffered)).max(1),
            Wire::LengthPrefixed => READ_SIZE.max(self.wanted.saturating_sub(buffered)),
            Wire::Lines => READ_SIZE,
        }
    }

    /// Takes the next event off the front of `buffer`, if a whole one is there.
    ///
    /// In stream mode that is a piece of exactly `chunk_size` bytes; what is
    /// left is handed over by [`Decoder::flush`] once no more can be read.
    pub(crate) fn decode(
        &mut self,
        buffer: &mut BytesMut,
    ) -> Result<Option<Event>, TransportError> {
        match self.wire {
            Wire::Lines => self.decode_line(buffer),
            Wire::LengthPrefixed => self.decode_prefixed(buffer),
            Wire::Raw { chunk_size } if buffer.len() >= chunk_size => {
                let payload = buffer.split_to(chunk_size);
                Ok(Some(self.piece(payload, false)))
            }
            Wire::Raw { .. } => Ok(None),
        }
    }

    /// Stream mode: everything buffered, as a piece (none if nothing is).
    pub(crate) fn flush(&mut self, buffer: &mut BytesMut) -> Option<Event> {
        if !self.is_stream() || buffer.is_empty() {
            return None;
        }
        let payload = buffer.split();
        Some(self.piece(payload, false))
    }

    /// The peer closed the connection cleanly, after everything in `buffer`.
    ///
    /// In stream mode that ends the connection's message: the last piece
    /// (`fin`, possibly empty) and `Event::Close(None)`. In message mode it
    /// is an I/O error, so that the connection is made again; an unfinished
    /// message in the buffer is dropped (it may have been cut short), and the
    /// error says so.
    pub(crate) fn finish(&mut self, buffer: &mut BytesMut) -> Result<Vec<Event>, TransportError> {
        if self.is_stream() {
            let payload = buffer.split();
            return Ok(vec![self.piece(payload, true), Event::Close(None)]);
        }
        if buffer.is_empty() {
            return Err(TransportError::Io("connection closed by peer".to_owned()));
        }
        let dropped = buffer.len();
        buffer.clear();
        Err(TransportError::Io(format!(
            "connection closed by peer; an unfinished message of {dropped} bytes was dropped"
        )))
    }

    /// A stream-mode piece: the first is `Binary`, later ones `Continuation`.
    fn piece(&mut self, payload: BytesMut, fin: bool) -> Event {
        let opcode = if self.started { Opcode::Continuation } else { Opcode::Binary };
        self.started = true;
        Event::Data(DataFrame { opcode, fin, payload: payload.freeze() })
    }

    fn decode_line(&mut self, buffer: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        let Some(offset) = buffer[self.scanned..].iter().position(|&byte| byte == b'\n') else {
            self.scanned = buffer.len();
            // The limit plus one byte may still be a line of the limit and its `\r`.
            if buffer.len() > self.max_frame_size.saturating_add(1) {
                return Err(self.too_large(buffer.len()));
            }
            return Ok(None);
        };
        let newline = self.scanned + offset;
        self.scanned = 0;
        let mut line = buffer.split_to(newline + 1);
        line.truncate(newline);
        if line.last() == Some(&b'\r') {
            line.truncate(newline - 1);
        }
        if line.len() > self.max_frame_size {
            return Err(self.too_large(line.len()));
        }
        if let Err(error) = std::str::from_utf8(&line) {
            return Err(TransportError::Protocol {
                close_code: close_code::INVALID_PAYLOAD,
                reason: format!("a line is not valid UTF-8 ({error})"),
            });
        }
        Ok(Some(Event::Data(DataFrame::text(line.freeze()))))
    }

    fn decode_prefixed(&mut self, buffer: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        let Some(prefix) = buffer.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let announced = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let len = usize::try_from(announced).unwrap_or(usize::MAX);
        if len > self.max_frame_size {
            return Err(self.too_large(len));
        }
        if buffer.len() < PREFIX_LEN + len {
            self.wanted = PREFIX_LEN + len;
            return Ok(None);
        }
        self.wanted = 0;
        buffer.advance(PREFIX_LEN);
        Ok(Some(Event::Data(DataFrame::binary(buffer.split_to(len).freeze()))))
    }

    /// `announced` is the length prefix, or for a line the bytes seen so far.
    fn too_large(&self, announced: usize) -> TransportError {
        TransportError::FrameTooLarge {
            announced: u64::try_from(announced).unwrap_or(u64::MAX),
            limit: self.max_frame_size,
        }
    }
}

#[cfg(test)]
mod tests;
