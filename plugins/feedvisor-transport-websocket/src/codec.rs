//! A client-side WebSocket frame codec (RFC 6455 section 5), written for
//! feedvisor's duties rather than taken from actix-http.
//!
//! Decoding turns server frames into [`Event`]s. It rejects masked server
//! frames, reserved bits (RSV1 only marks the first frame of a compressed
//! message, once permessage-deflate is negotiated), unknown opcodes and bad
//! control frames; it checks that continuation frames continue something and
//! that text messages are valid UTF-8 across fragments. Payloads are split off
//! the read buffer without a copy. Data frames are handed over in one of two
//! ways ([`DeliveryMode`]):
//! - message mode: whole frames. The announced payload length is read from
//!   the header and a frame over the limit is refused before any of its
//!   payload is reserved or read.
//! - stream mode: frames of any length, in pieces of at most `chunk_size`
//!   bytes. Each call hands over whatever of the current frame's payload is
//!   buffered, up to `chunk_size`: `Framed` calls the decoder after every
//!   read, so a piece leaves as soon as its bytes arrived (no waiting for a
//!   full chunk that a slow peer may take minutes to send). The read buffer
//!   then holds at most the start of the next frame (a header, or a control
//!   frame of 125 bytes at most, which is still decoded whole: the wire puts
//!   control frames between frames, never inside one) plus one read, for
//!   which the decoder makes room of one piece (`Framed` itself keeps 8 KiB).
//!   A piece is split off the buffer, so the pieces of one read share its
//!   allocation until the last of them is dropped.
//!
//! With permessage-deflate negotiated, a compressed message's payload is
//! inflated (`deflate.rs`) as its frames or pieces are decoded, and handed
//! over as pieces of the message (at most `chunk_size` in stream mode; in
//! message mode one piece per frame, the message refused with 1009 as soon
//! as its inflated size passes the limit). Control frames, continuation
//! frames and every frame without the extension must not carry RSV1 (1002).
//!
//! Encoding writes every client frame unfragmented and masked with a fresh
//! random key; with the extension, data frames are compressed (RSV1 on the
//! first frame of a message), control frames never.

use actix_codec::{Decoder, Encoder};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use feedvisor_transport_api::{
    close_code, CloseFrame, CompressedBytes, DataFrame, DeliveryMode, Event, Opcode, Outbound,
    TransportError,
};
use feedvisor_transport_kit::Utf8Validator;

use crate::deflate::{MessageDeflater, MessageInflater};
use crate::extension::Negotiated;

/// Wire opcodes (RFC 6455 section 5.2).
mod wire {
    pub(super) const CONTINUATION: u8 = 0x0;
    pub(super) const TEXT: u8 = 0x1;
    pub(super) const BINARY: u8 = 0x2;
    pub(super) const CLOSE: u8 = 0x8;
    pub(super) const PING: u8 = 0x9;
    pub(super) const PONG: u8 = 0xA;
}

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest header: two bytes, an eight-byte length and a four-byte mask.
const MAX_HEADER_LEN: usize = 14;

/// A frame the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A whole text message (the bytes must be UTF-8).
    Text(Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping; a payload over 125 bytes is cut to 125.
    Ping(Bytes),
    /// The answer to a ping; a payload over 125 bytes is cut to 125.
    Pong(Bytes),
    /// A close frame; a reason over 123 bytes is cut at a character boundary.
    Close(Option<CloseFrame>),
    /// One frame of a message sent in pieces.
    Fragment(DataFrame),
}

impl From<Outbound> for ClientFrame {
    fn from(message: Outbound) -> Self {
        match message {
            Outbound::Text(payload) => ClientFrame::Text(payload),
            Outbound::Binary(payload) => ClientFrame::Binary(payload),
            Outbound::Ping(payload) => ClientFrame::Ping(payload),
            Outbound::Pong(payload) => ClientFrame::Pong(payload),
            Outbound::Close(frame) => ClientFrame::Close(frame),
            Outbound::Fragment(frame) => ClientFrame::Fragment(frame),
        }
    }
}

/// The message that continuation frames currently continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMessage {
    /// No fragmented message is open: a continuation frame is an error.
    None,
    /// A fragmented text message is open: its fragments are UTF-8 checked.
    Text,
    /// A fragmented binary message is open.
    Binary,
}

/// How data frames are handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Message mode: whole frames; frames announcing more payload than this are refused unread.
    Whole {
        /// The largest payload accepted, in bytes.
        max_frame_size: usize,
    },
    /// Stream mode: frames of any length, in pieces of at most `chunk_size` bytes.
    Pieces {
        /// The largest piece, in bytes (at least 1).
        chunk_size: usize,
    },
}

/// A data frame whose header was read and whose payload is being handed over
/// in pieces (stream mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameInProgress {
    /// The opcode of the next piece: the frame's own for its first piece,
    /// `Continuation` for the pieces after it.
    next_opcode: Opcode,
    /// The frame's FIN, which only its last piece carries.
    fin: bool,
    /// Payload bytes of the frame not handed over yet.
    remaining: u64,
}

/// Decodes server frames and encodes client frames.
#[derive(Debug)]
pub struct FrameCodec {
    /// Whole frames under a limit, or pieces of frames of any length.
    delivery: Delivery,
    /// What a continuation frame would continue.
    open: OpenMessage,
    /// Checks the current text message, fragment by fragment (piece by piece in stream mode).
    utf8: Utf8Validator,
    /// In stream mode, the data frame between its header and its last piece:
    /// while it is set, the buffer starts with payload, not with a header.
    in_frame: Option<FrameInProgress>,
    /// permessage-deflate's inflater, once negotiated: RSV1 is then allowed
    /// on the first frame of a message.
    inflater: Option<MessageInflater>,
    /// Compresses what we send; `None` without the extension, or when the
    /// window the server allows us is one we cannot compress with.
    deflater: Option<MessageDeflater>,
    /// The message being decoded is compressed (its first frame had RSV1).
    compressed: bool,
    /// Set when a frame (or piece) went to the inflater instead of being
    /// handed over, so that decoding goes on with what it inflates to rather
    /// than waiting for more bytes. Kept out of the decoders' return type, so
    /// that the uncompressed path hands its event straight back with no
    /// wrapper to unpack (a measurable cost per message).
    inflater_fed: bool,
}

impl FrameCodec {
    /// A message-mode codec that refuses frames announcing more than
    /// `max_frame_size` payload bytes.
    pub fn new(max_frame_size: usize) -> Self {
        FrameCodec::with_delivery(Delivery::Whole { max_frame_size })
    }

    /// A stream-mode codec: frames of any length, handed over in pieces of at
    /// most `chunk_size` bytes (a `chunk_size` of 0 is taken as 1).
    ///
    /// `chunk_size` is also the room made for one read, so it bounds what a
    /// peer can make the client allocate: keep it to what one read should take.
    pub fn streaming(chunk_size: usize) -> Self {
        FrameCodec::with_delivery(Delivery::Pieces { chunk_size: chunk_size.max(1) })
    }

    /// The codec a connect request asks for.
    pub fn for_mode(mode: DeliveryMode, max_frame_size: usize) -> Self {
        match mode {
            DeliveryMode::Message => FrameCodec::new(max_frame_size),
            DeliveryMode::Stream { chunk_size } => FrameCodec::streaming(chunk_size),
        }
    }

    fn with_delivery(delivery: Delivery) -> Self {
        FrameCodec {
            delivery,
            open: OpenMessage::None,
            utf8: Utf8Validator::new(),
            in_frame: None,
            inflater: None,
            deflater: None,
            compressed: false,
            inflater_fed: false,
        }
    }

    /// Turns permessage-deflate on, as `agreed` in the handshake; inflated
    /// and compressed bytes are counted in `counts`.
    pub(crate) fn with_deflate(mut self, agreed: &Negotiated, counts: CompressedBytes) -> Self {
        self.inflater = Some(MessageInflater::new(agreed, counts));
        self.deflater = MessageDeflater::new(agreed);
        self
    }

    /// Hands the inflater's next piece over, if it has one ready.
    fn inflated(&mut self) -> Result<Option<Event>, TransportError> {
        let (max_piece, limit) = match self.delivery {
            Delivery::Whole { max_frame_size } => (usize::MAX, Some(max_frame_size)),
            Delivery::Pieces { chunk_size } => (chunk_size, None),
        };
        let Some(inflater) = self.inflater.as_mut() else { return Ok(None) };
        match inflater.next_piece(max_piece, limit)? {
            Some(piece) => self.data(piece.opcode, piece.fin, piece.payload).map(Some),
            None => Ok(None),
        }
    }

    /// [`Decoder::decode`] with permessage-deflate negotiated: compressed
    /// frames go to the inflater, and what it makes is handed over before
    /// the next frame is read. Kept out of line, so that the plain path of
    /// [`Decoder::decode`] stays one small function.
    #[inline(never)]
    fn decode_inflating(&mut self, src: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        loop {
            if self.inflater.as_ref().is_some_and(MessageInflater::has_input) {
                if let Some(event) = self.inflated()? {
                    return Ok(Some(event));
                }
            }
            self.inflater_fed = false;
            if let Some(event) = self.decode_frame(src)? {
                return Ok(Some(event));
            }
            if !self.inflater_fed {
                return Ok(None);
            }
            if let Some(event) = self.inflated()? {
                return Ok(Some(event));
            }
        }
    }

    /// A data frame's payload (or a piece of it): handed over as it is, or
    /// to the inflater when its message is compressed (then `None`, with
    /// `inflater_fed` set).
    #[inline(always)]
    fn data_or_inflate(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: Bytes,
    ) -> Result<Option<Event>, TransportError> {
        // `compressed` is only ever set with an inflater (parse_header refuses RSV1 without one).
        if self.compressed {
            if let Some(inflater) = self.inflater.as_mut() {
                inflater.push(opcode, fin, payload);
                if fin {
                    self.compressed = false;
                }
                self.inflater_fed = true;
                return Ok(None);
            }
        }
        self.data(opcode, fin, payload).map(Some)
    }

    /// Decodes the next frame or piece: `None` when more bytes are needed,
    /// or when what it decoded went to the inflater (`inflater_fed`).
    #[inline(always)]
    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        match self.delivery {
            Delivery::Pieces { chunk_size } => self.decode_piece(src, chunk_size),
            Delivery::Whole { max_frame_size } => {
                let Some(header) = parse_header(src, self.inflater.is_some())? else {
                    return Ok(None);
                };
                // A control frame of up to 125 bytes is always allowed
                // (parse_header refused longer ones), whatever the data limit.
                let is_control = header.opcode & 0x08 != 0;
                let limit = if is_control { MAX_CONTROL_PAYLOAD } else { max_frame_size };
                self.decode_whole(src, header, limit)
            }
        }
    }

    /// The largest piece in stream mode; `None` in message mode.
    pub fn chunk_size(&self) -> Option<usize> {
        match self.delivery {
            Delivery::Whole { .. } => None,
            Delivery::Pieces { chunk_size } => Some(chunk_size),
        }
    }

    /// Turns a whole frame into an event, checking fragmentation and UTF-8.
    #[inline]
    fn event(&mut self, header: Header, payload: Bytes) -> Result<Option<Event>, TransportError> {
        match header.opcode {
            wire::PING => Ok(Some(Event::Ping(payload))),
            wire::PONG => Ok(Some(Event::Pong(payload))),
            wire::CLOSE => parse_close(&payload).map(|close| Some(Event::Close(close))),
            _ => {
                let data_opcode = self.start_data_frame(header)?;
                self.data_or_inflate(data_opcode, header.fin, payload)
            }
        }
    }

    /// Checks that a data frame may start here and notes the message it
    /// opens (and whether it is compressed); returns its opcode.
    fn start_data_frame(&mut self, header: Header) -> Result<Opcode, TransportError> {
        if header.opcode != wire::CONTINUATION {
            self.compressed = header.rsv1;
        } else if header.rsv1 {
            return Err(protocol_error("RSV1 set on a continuation frame"));
        }
        match header.opcode {
            wire::TEXT | wire::BINARY if self.open != OpenMessage::None => {
                Err(protocol_error("new message started inside a fragmented message"))
            }
            wire::TEXT => {
                self.open = OpenMessage::Text;
                Ok(Opcode::Text)
            }
            wire::BINARY => {
                self.open = OpenMessage::Binary;
                Ok(Opcode::Binary)
            }
            wire::CONTINUATION if self.open == OpenMessage::None => {
                Err(protocol_error("continuation frame without a message to continue"))
            }
            wire::CONTINUATION => Ok(Opcode::Continuation),
            other => Err(protocol_error(format!("unknown opcode {other:#x}"))),
        }
    }

    /// Hands over a data frame or piece; `fin` marks the last bytes of the message.
    #[inline]
    fn data(&mut self, opcode: Opcode, fin: bool, payload: Bytes) -> Result<Event, TransportError> {
        if self.open == OpenMessage::Text && !self.utf8.push(&payload, fin) {
            return Err(TransportError::Protocol {
                close_code: close_code::INVALID_PAYLOAD,
                reason: "text message is not valid UTF-8".to_owned(),
            });
        }
        if fin {
            self.open = OpenMessage::None;
        }
        Ok(Event::Data(DataFrame { opcode, fin, payload }))
    }

    /// Decodes a frame once all of it is buffered (control frames, and every
    /// frame in message mode), refusing one that announces more than `limit`.
    fn decode_whole(
        &mut self,
        src: &mut BytesMut,
        header: Header,
        limit: usize,
    ) -> Result<Option<Event>, TransportError> {
        let too_large = || TransportError::FrameTooLarge { announced: header.payload_len, limit };
        let payload_len = usize::try_from(header.payload_len).map_err(|_| too_large())?;
        if payload_len > limit {
            return Err(too_large());
        }
        let frame_len = header.len.checked_add(payload_len).ok_or_else(too_large)?;
        if src.len() < frame_len {
            // Room for this frame only; the length was checked against the limit above.
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        src.advance(header.len);
        let payload = src.split_to(payload_len).freeze();
        self.event(header, payload)
    }

    /// Stream mode: hands over the next piece of the current data frame, or
    /// reads the next header (a control frame is decoded whole).
    fn decode_piece(
        &mut self,
        src: &mut BytesMut,
        chunk_size: usize,
    ) -> Result<Option<Event>, TransportError> {
        let mut frame = match self.in_frame {
            Some(frame) => frame,
            None => {
                let Some(header) = parse_header(src, self.inflater.is_some())? else {
                    return Ok(None);
                };
                if header.opcode & 0x08 != 0 {
                    // parse_header has checked that it is final and at most 125 bytes.
                    return self.decode_whole(src, header, MAX_CONTROL_PAYLOAD);
                }
                let opcode = self.start_data_frame(header)?;
                src.advance(header.len);
                FrameInProgress {
                    next_opcode: opcode,
                    fin: header.fin,
                    remaining: header.payload_len,
                }
            }
        };
        // What remains of the frame, capped at one piece (the cap also keeps it in a usize).
        let piece_len = usize::try_from(frame.remaining).map_or(chunk_size, |r| r.min(chunk_size));
        let available = piece_len.min(src.len());
        if available == 0 && piece_len > 0 {
            // The buffer is empty: make room for one piece, so that one read
            // can fill it, but not for more.
            self.in_frame = Some(frame);
            src.reserve(piece_len);
            return Ok(None);
        }
        // An empty frame gets one empty piece, so that its FIN is not lost.
        let payload = src.split_to(available).freeze();
        frame.remaining -= available as u64;
        let opcode = std::mem::replace(&mut frame.next_opcode, Opcode::Continuation);
        let last = frame.remaining == 0;
        self.in_frame = if last { None } else { Some(frame) };
        self.data_or_inflate(opcode, last && frame.fin, payload)
    }
}

/// What the first bytes of a frame say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// True on the last frame of a message.
    fin: bool,
    /// RSV1: the first frame of a compressed message (checked to be allowed).
    rsv1: bool,
    /// The wire opcode (already checked to be a known one).
    opcode: u8,
    /// Bytes before the payload.
    len: usize,
    /// Payload bytes announced.
    payload_len: u64,
}

/// Parses a frame header, or returns `None` while it is incomplete.
/// `deflate`: permessage-deflate was negotiated, so RSV1 may be set on a data frame.
#[inline]
fn parse_header(src: &[u8], deflate: bool) -> Result<Option<Header>, TransportError> {
    let [first, second, ..] = *src else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let rsv1 = first & RSV1 != 0;
    // One test when no reserved bit is set, as in nearly every frame.
    if first & 0x70 != 0 && (first & 0x30 != 0 || !deflate) {
        return Err(reserved_bits_error(first));
    }
    let opcode = first & 0x0F;
    if !matches!(
        opcode,
        wire::CONTINUATION | wire::TEXT | wire::BINARY | wire::CLOSE | wire::PING | wire::PONG
    ) {
        return Err(protocol_error(format!("unknown opcode {opcode:#x}")));
    }
    if second & 0x80 != 0 {
        return Err(protocol_error("server frame is masked"));
    }
    let short_len = second & 0x7F;
    let is_control = opcode & 0x08 != 0;
    if is_control && !fin {
        return Err(protocol_error("fragmented control frame"));
    }
    if is_control && rsv1 {
        return Err(protocol_error("RSV1 set on a control frame"));
    }
    if is_control && usize::from(short_len) > MAX_CONTROL_PAYLOAD {
        return Err(protocol_error("control frame payload over 125 bytes"));
    }
    let (len, payload_len) = match short_len {
        126 => match src.get(2..4) {
            Some(&[high, low]) => (4, u64::from(u16::from_be_bytes([high, low]))),
            _ => return Ok(None),
        },
        127 => {
            let Some(bytes) = src.get(2..10) else {
                return Ok(None);
            };
            let mut length = [0u8; 8];
            length.copy_from_slice(bytes);
            let length = u64::from_be_bytes(length);
            if length >> 63 != 0 {
                return Err(protocol_error("64-bit payload length with the top bit set"));
            }
            (10, length)
        }
        short => (2, u64::from(short)),
    };
    Ok(Some(Header { fin, rsv1, opcode, len, payload_len }))
}

/// Why a frame's reserved bits are refused: RSV2 or RSV3 (no extension uses
/// them), or RSV1 without permessage-deflate.
#[cold]
fn reserved_bits_error(first: u8) -> TransportError {
    if first & 0x30 != 0 {
        protocol_error("RSV2 or RSV3 set; no extension using them was negotiated")
    } else {
        protocol_error("RSV1 set but permessage-deflate was not negotiated")
    }
}

/// Parses a close frame's payload: nothing, or a valid code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, TransportError> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol_error("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(protocol_error(format!("invalid close code {code}")));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| TransportError::Protocol {
                close_code: close_code::INVALID_PAYLOAD,
                reason: "close reason is not valid UTF-8".to_owned(),
            })?;
            Ok(Some(CloseFrame::new(code, reason)))
        }
    }
}

/// Close codes a peer may send (RFC 6455 section 7.4 and the IANA registry).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A protocol error answered with close code 1002.
fn protocol_error(reason: impl Into<String>) -> TransportError {
    TransportError::Protocol { close_code: close_code::PROTOCOL_ERROR, reason: reason.into() }
}

impl Decoder for FrameCodec {
    type Item = Event;
    type Error = TransportError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        #[cfg(test)]
        probe::record(src);
        if self.inflater.is_some() {
            return self.decode_inflating(src);
        }
        // Without permessage-deflate every frame is handed over as it is.
        self.decode_frame(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        match self.decode(src)? {
            Some(event) => Ok(Some(event)),
            None if src.is_empty() && self.in_frame.is_none() => Ok(None),
            None => {
                Err(TransportError::Io("connection closed in the middle of a frame".to_owned()))
            }
        }
    }
}

impl Encoder<ClientFrame> for FrameCodec {
    type Error = TransportError;

    fn encode(&mut self, frame: ClientFrame, dst: &mut BytesMut) -> Result<(), TransportError> {
        if let Some(deflater) = self.deflater.as_mut() {
            let data = match &frame {
                ClientFrame::Text(payload) => Some((wire::TEXT, true, payload)),
                ClientFrame::Binary(payload) => Some((wire::BINARY, true, payload)),
                ClientFrame::Fragment(frame) => {
                    Some((wire_opcode(frame.opcode), frame.fin, &frame.payload))
                }
                _ => None,
            };
            if let Some((opcode, fin, payload)) = data {
                let compressed = deflater.compress(payload, fin)?;
                // RSV1 marks the first frame of a compressed message only.
                let rsv1 = if opcode == wire::CONTINUATION { 0 } else { RSV1 };
                write_frame_bits(dst, rsv1 | opcode, fin, &compressed);
                return Ok(());
            }
        }
        match frame {
            ClientFrame::Text(payload) => write_frame(dst, wire::TEXT, &payload),
            ClientFrame::Binary(payload) => write_frame(dst, wire::BINARY, &payload),
            ClientFrame::Ping(payload) => write_frame(dst, wire::PING, control_payload(&payload)),
            ClientFrame::Pong(payload) => write_frame(dst, wire::PONG, control_payload(&payload)),
            ClientFrame::Close(None) => write_frame(dst, wire::CLOSE, &[]),
            ClientFrame::Fragment(frame) => {
                write_frame_bits(dst, wire_opcode(frame.opcode), frame.fin, &frame.payload);
            }
            ClientFrame::Close(Some(frame)) => {
                let reason = truncate_at_char(&frame.reason, MAX_CONTROL_PAYLOAD - 2);
                let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
                payload[..2].copy_from_slice(&frame.code.to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                write_frame(dst, wire::CLOSE, &payload[..2 + reason.len()]);
            }
        }
        Ok(())
    }
}

/// At most the first 125 bytes of a control frame payload.
fn control_payload(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_at_char(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// RSV1 in a frame's first byte: a compressed message.
const RSV1: u8 = 0x40;

/// The wire opcode of a data frame.
fn wire_opcode(opcode: Opcode) -> u8 {
    match opcode {
        Opcode::Text => wire::TEXT,
        Opcode::Binary => wire::BINARY,
        Opcode::Continuation => wire::CONTINUATION,
    }
}

/// Writes one final, masked frame.
fn write_frame(dst: &mut BytesMut, opcode: u8, payload: &[u8]) {
    write_frame_bits(dst, opcode, true, payload);
}

/// Writes one masked frame, final or not; `bits` is the opcode with any reserved bit.
fn write_frame_bits(dst: &mut BytesMut, bits: u8, fin: bool, payload: &[u8]) {
    let len = payload.len();
    dst.reserve(MAX_HEADER_LEN + len);
    dst.put_u8(if fin { 0x80 } else { 0 } | bits);
    if len < 126 {
        dst.put_u8(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        dst.put_u8(0x80 | 126);
        dst.put_u16(len);
    } else {
        dst.put_u8(0x80 | 127);
        dst.put_u64(len as u64);
    }
    let key: [u8; 4] = rand::random();
    dst.put_slice(&key);
    let start = dst.len();
    dst.put_slice(payload);
    apply_mask(&mut dst[start..], key);
}

/// XORs `bytes` with the repeating four-byte `key` (RFC 6455 section 5.3).
fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (byte, key_byte) in chunk.iter_mut().zip(key) {
            *byte ^= key_byte;
        }
    }
    for (byte, key_byte) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= key_byte;
    }
}

/// Test instrumentation: the largest read buffer the decoder was handed.
#[cfg(test)]
pub(crate) mod probe;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stream_tests;

#[cfg(test)]
mod reassembly_tests;
