//! permessage-deflate (RFC 7692) on one connection, once negotiated
//! (`extension.rs`): inflating what the server compressed, piece by piece
//! and bounded, and compressing what we send.
//!
//! Inflating: a compressed message's frames are fed in as they are decoded
//! (in stream mode, as pieces of them arrive), followed by the four bytes
//! `00 00 ff ff` the sender removed (section 7.2.2). Output is written only
//! into room reserved for it ([`feedvisor_transport_kit::Inflater`]): in
//! message mode the room never takes the message past `max_message_size`
//! (one byte over, and the message is refused with 1009), in stream mode a
//! piece is at most `chunk_size`. So a small frame that would inflate to
//! gigabytes costs at most the limit, never the inflated whole.
//!
//! Memory per idle connection: the inflater (zlib-rs's state and a 32 KiB
//! window, of which only `2^server_max_window_bits` bytes are ever touched:
//! about 46 KiB resident at 15, 19 KiB at 9, measured by `feedvisor-bench
//! compressed`). No compressor is kept between the messages we send.

use bytes::Bytes;
use feedvisor_transport_api::{CompressedBytes, InflateFailure, Opcode, TransportError};
use feedvisor_transport_kit::{InflateFormat, Inflater};
use flate2::{Compress, FlushCompress};

use crate::extension::Negotiated;

/// The bytes a sender strips from the end of each compressed message, and
/// the receiver appends before inflating it (RFC 7692 section 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The first room reserved for a piece of inflated output, grown by doubling.
const FIRST_ROOM: usize = 256;

/// Inflates the server's compressed messages.
#[derive(Debug)]
pub(crate) struct MessageInflater {
    /// The inflate stream, kept across messages unless the server resets its own.
    inflater: Inflater,
    /// The server starts each message afresh, so we may too (and must after a final block).
    reset_each_message: bool,
    /// Counts compressed bytes and what they became, for the connection actor.
    counts: CompressedBytes,
    /// The compressed message being inflated, if one is open.
    message: Option<OpenMessage>,
}

/// A compressed message between its first frame and its last inflated piece.
#[derive(Debug)]
struct OpenMessage {
    /// The opcode of the next piece handed over: the message's own for the
    /// first, `Continuation` after it.
    next_opcode: Opcode,
    /// Compressed bytes of the current frame (or frame piece) not inflated yet.
    input: Bytes,
    /// True once `input` holds the message's last compressed bytes.
    last_input: bool,
    /// Bytes of [`TAIL`] fed in after the last input.
    tail_fed: usize,
    /// The sender ended the deflate stream (a final block): what follows is ignored.
    ended: bool,
    /// Inflated bytes handed over so far.
    inflated: u64,
}

/// One piece of inflated output, ready to be handed over.
#[derive(Debug)]
pub(crate) struct InflatedPiece {
    /// The message's opcode on the first piece, `Continuation` after it.
    pub opcode: Opcode,
    /// True on the last piece of the message.
    pub fin: bool,
    /// The inflated bytes.
    pub payload: Bytes,
}

impl MessageInflater {
    /// An inflater for what `agreed` says the server sends.
    pub(crate) fn new(agreed: &Negotiated, counts: CompressedBytes) -> Self {
        MessageInflater {
            inflater: Inflater::new(InflateFormat::Raw {
                window_bits: agreed.server_max_window_bits,
            }),
            reset_each_message: agreed.server_no_context_takeover,
            counts,
            message: None,
        }
    }

    /// True while compressed input waits to be inflated.
    pub(crate) fn has_input(&self) -> bool {
        self.message.as_ref().is_some_and(|m| {
            !m.input.is_empty() || (m.last_input && m.tail_fed < TAIL.len() && !m.ended)
        })
    }

    /// Takes the compressed payload of a frame (or frame piece) of a
    /// compressed message; `opcode` is the frame's (`Text`/`Binary` opens the
    /// message), `last` marks the message's last compressed bytes.
    pub(crate) fn push(&mut self, opcode: Opcode, last: bool, payload: Bytes) {
        let message = self.message.get_or_insert(OpenMessage {
            next_opcode: opcode,
            input: Bytes::new(),
            last_input: false,
            tail_fed: 0,
            ended: false,
            inflated: 0,
        });
        message.input = payload;
        message.last_input = last;
    }

    /// Inflates the next piece: at most `max_piece` bytes, and in message
    /// mode never past `limit` bytes for the whole message. `None` when the
    /// input ran out before anything came out and the message goes on.
    pub(crate) fn next_piece(
        &mut self,
        max_piece: usize,
        limit: Option<usize>,
    ) -> Result<Option<InflatedPiece>, TransportError> {
        let Some(message) = self.message.as_mut() else { return Ok(None) };
        let inflated_so_far = usize::try_from(message.inflated).unwrap_or(usize::MAX);
        // One byte past the limit is room enough to know the message is too large.
        let max_piece = match limit {
            Some(limit) => max_piece.min(limit.saturating_sub(inflated_so_far).saturating_add(1)),
            None => max_piece,
        }
        .max(1);
        let mut piece = Vec::with_capacity(FIRST_ROOM.min(max_piece));
        let mut wire = 0u64;
        loop {
            if piece.len() == piece.capacity() {
                if piece.len() >= max_piece {
                    break;
                }
                let grown = piece.capacity().saturating_mul(2).min(max_piece);
                piece.reserve_exact(grown - piece.len());
            }
            let from_tail = message.input.is_empty();
            let input: &[u8] = if !from_tail {
                &message.input
            } else if message.last_input && !message.ended && message.tail_fed < TAIL.len() {
                &TAIL[message.tail_fed..]
            } else {
                break;
            };
            let step = self.inflater.inflate_into(input, &mut piece).map_err(|error| {
                TransportError::Inflate { failure: error.failure, reason: error.message }
            })?;
            if from_tail {
                message.tail_fed += step.consumed;
            } else {
                let _ = message.input.split_to(step.consumed);
                wire += step.consumed as u64;
            }
            if step.ended {
                message.ended = true;
                message.input = Bytes::new();
            }
            if step.consumed == 0 && step.produced == 0 {
                break;
            }
        }
        message.inflated += piece.len() as u64;
        self.counts.record(wire, piece.len() as u64);
        if let Some(limit) = limit {
            if message.inflated > limit as u64 {
                self.message = None;
                return Err(TransportError::Inflate {
                    failure: InflateFailure::TooLarge,
                    reason: format!("message inflates past max_message_size of {limit} bytes"),
                });
            }
        }
        let input_done = message.input.is_empty()
            && (!message.last_input || message.ended || message.tail_fed == TAIL.len());
        let fin = message.last_input && input_done && piece.len() < max_piece;
        if piece.is_empty() && !fin {
            return Ok(None);
        }
        let opcode = std::mem::replace(&mut message.next_opcode, Opcode::Continuation);
        if fin {
            let ended = message.ended;
            self.message = None;
            if self.reset_each_message || ended {
                self.inflater.reset();
            }
        }
        if piece.capacity() > piece.len().saturating_mul(2) {
            piece.shrink_to_fit();
        }
        Ok(Some(InflatedPiece { opcode, fin, payload: Bytes::from(piece) }))
    }
}

/// Compresses the messages we send.
///
/// Our context-takeover choice: never kept between messages. Context
/// takeover is the server's permission, not our duty (a message that does
/// not refer back is valid either way), and a feed sends little (on_open,
/// heartbeats, sends), while a zlib compressor holds about 256 KiB (window,
/// hash chains, pending output) for as long as it lives: so it is made for
/// each message and dropped after it, and an idle compressed feed holds none.
pub(crate) struct MessageDeflater {
    /// The compressor of the message being sent in pieces, between its
    /// first and last fragment; `None` between messages.
    compress: Option<Compress>,
    /// Our window (9 to 15).
    window_bits: u8,
}

impl std::fmt::Debug for MessageDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDeflater")
            .field("window_bits", &self.window_bits)
            .field("in_message", &self.compress.is_some())
            .finish_non_exhaustive()
    }
}

impl MessageDeflater {
    /// A deflater within what `agreed` allows us; `None` when the server asked
    /// for a window of 8, which zlib cannot compress with: our messages then
    /// go uncompressed, as the extension allows for any message.
    pub(crate) fn new(agreed: &Negotiated) -> Option<Self> {
        (agreed.client_max_window_bits >= 9).then_some(MessageDeflater {
            compress: None,
            window_bits: agreed.client_max_window_bits,
        })
    }

    /// Compresses one frame's payload; `fin` ends the message (its trailing
    /// `00 00 ff ff` is removed and the compressor dropped).
    pub(crate) fn compress(
        &mut self,
        payload: &[u8],
        fin: bool,
    ) -> Result<Vec<u8>, TransportError> {
        let window_bits = self.window_bits;
        let compress = self.compress.get_or_insert_with(|| {
            Compress::new_with_window_bits(flate2::Compression::default(), false, window_bits)
        });
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut position = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = compress.total_in();
            compress.compress_vec(&payload[position..], &mut out, FlushCompress::Sync).map_err(
                |error| TransportError::Io(format!("compressing a message failed: {error}")),
            )?;
            position += usize::try_from(compress.total_in() - before).unwrap_or(usize::MAX);
            // Done once all input is in and the flush fitted (room was left over).
            if position == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            self.compress = None;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(bits: u8, reset: bool) -> Negotiated {
        Negotiated {
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            server_no_context_takeover: reset,
            client_no_context_takeover: reset,
        }
    }

    /// Inflates whole messages the way the codec does: every piece, then the fin.
    fn inflate_message(
        inflater: &mut MessageInflater,
        compressed: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<u8>, TransportError> {
        inflater.push(Opcode::Binary, true, Bytes::from(compressed));
        let mut out = Vec::new();
        loop {
            if let Some(piece) = inflater.next_piece(usize::MAX, Some(limit))? {
                out.extend_from_slice(&piece.payload);
                if piece.fin {
                    return Ok(out);
                }
            }
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover_at_every_window() {
        for bits in 9..=15 {
            for reset in [false, true] {
                let mut deflater =
                    MessageDeflater::new(&agreed(bits, reset)).expect("window of 9 or more");
                let mut inflater =
                    MessageInflater::new(&agreed(bits, reset), CompressedBytes::default());
                for round in 0..3 {
                    let message =
                        format!("{{\"round\":{round},\"text\":\"{}\"}}", "abc".repeat(300));
                    let compressed = deflater.compress(message.as_bytes(), true).expect("compress");
                    assert!(!compressed.ends_with(&TAIL));
                    let inflated =
                        inflate_message(&mut inflater, compressed, 1 << 20).expect("inflate");
                    assert_eq!(inflated, message.as_bytes(), "bits {bits} reset {reset}");
                }
            }
        }
    }

    #[test]
    fn no_compressor_is_held_between_messages_only_within_one() {
        let mut deflater = MessageDeflater::new(&agreed(15, false)).expect("deflater");
        let message = b"a message with some words in it that repeats exactly".repeat(4);
        let first = deflater.compress(&message, true).expect("compress");
        assert!(deflater.compress.is_none(), "dropped after the message");
        assert_eq!(deflater.compress(&message, true).expect("compress"), first, "no context kept");
        let _ = deflater.compress(&message[..10], false).expect("a first fragment");
        assert!(deflater.compress.is_some(), "kept until the last fragment");
        let _ = deflater.compress(&message[10..], true).expect("the last fragment");
        assert!(deflater.compress.is_none());
    }

    #[test]
    fn a_window_of_8_sends_uncompressed() {
        assert!(MessageDeflater::new(&agreed(8, false)).is_none());
    }

    #[test]
    fn the_limit_is_checked_while_inflating() {
        let mut deflater = MessageDeflater::new(&agreed(15, false)).expect("deflater");
        let compressed = deflater.compress(&vec![0u8; 4 << 20], true).expect("compress");
        assert!(compressed.len() < 16 << 10, "{} bytes", compressed.len());
        let counts = CompressedBytes::default();
        let mut inflater = MessageInflater::new(&agreed(15, false), counts.clone());
        let error = inflate_message(&mut inflater, compressed, 1 << 20).expect_err("too large");
        assert!(matches!(error, TransportError::Inflate { failure: InflateFailure::TooLarge, .. }));
        let (_, inflated) = counts.take();
        assert!(inflated <= (1 << 20) + 1, "inflated {inflated} bytes before refusing");
    }

    #[test]
    fn stream_pieces_are_at_most_the_piece_size() {
        let mut deflater = MessageDeflater::new(&agreed(15, false)).expect("deflater");
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let compressed = deflater.compress(&message, true).expect("compress");
        let mut inflater = MessageInflater::new(&agreed(15, false), CompressedBytes::default());
        inflater.push(Opcode::Binary, true, Bytes::from(compressed));
        let (mut out, mut opcodes) = (Vec::new(), Vec::new());
        loop {
            let Some(piece) = inflater.next_piece(4096, None).expect("valid") else { continue };
            assert!(piece.payload.len() <= 4096);
            opcodes.push(piece.opcode);
            out.extend_from_slice(&piece.payload);
            if piece.fin {
                break;
            }
        }
        assert_eq!(out, message);
        assert_eq!(opcodes[0], Opcode::Binary);
        assert!(opcodes[1..].iter().all(|opcode| *opcode == Opcode::Continuation));
    }

    #[test]
    fn a_corrupt_stream_is_an_error_not_zeros() {
        let mut inflater = MessageInflater::new(&agreed(15, false), CompressedBytes::default());
        let error = inflate_message(&mut inflater, vec![0xff; 64], 1 << 20).expect_err("corrupt");
        assert!(
            matches!(error, TransportError::Inflate { failure: InflateFailure::Corrupt, .. }),
            "{error:?}"
        );
    }
}
