//! Outbound messages to bytes, framed the way inbound ones are
//! (`framing.rs`): a line and its `\n`, a big-endian u32 length and the
//! payload, or (stream mode) the raw bytes.
//!
//! A message sent in pieces (`Outbound::Fragment`) goes out as its pieces
//! come, except with length prefixes: the length must be known before the
//! first byte, so the pieces are gathered and the message goes out whole
//! after its last piece (it is held in memory until then).
//!
//! What cannot be framed is refused. A line must not contain a newline: a
//! whole message that does is dropped; a message in pieces whose first piece
//! does is dropped whole; one whose newline comes after its first pieces went
//! out cannot be taken back, and is [`EncodeError::is_fatal`]: the connection
//! ends, so that the peer drops the unfinished line rather than taking half of
//! it for a message.

use bytes::{BufMut, BytesMut};
use feedvisor_transport_api::DataFrame;

use crate::framing::Wire;

/// Why an outbound message cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncodeError {
    /// A message sent as a line contains a newline; none of it went out.
    NewlineInLine,
    /// A later piece of a line in pieces contains a newline; the first pieces went out.
    NewlineInStartedLine,
    /// A length-prefixed message longer than a u32 can say; none of it went out.
    TooLongForPrefix(usize),
}

impl EncodeError {
    /// True when part of the message went out and the connection must end.
    pub(crate) fn is_fatal(self) -> bool {
        matches!(self, EncodeError::NewlineInStartedLine)
    }
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::NewlineInLine => {
                f.write_str("a message sent as a line contains a newline")
            }
            EncodeError::NewlineInStartedLine => f.write_str(
                "a message sent as a line in pieces has a newline after its first pieces went out",
            ),
            EncodeError::TooLongForPrefix(len) => {
                write!(f, "a message of {len} bytes does not fit a u32 length prefix")
            }
        }
    }
}

/// Where a message sent in pieces stands.
#[derive(Debug, Default)]
enum Pieces {
    /// None is under way.
    #[default]
    Idle,
    /// Lines or raw: its first pieces went out.
    Writing,
    /// Length-prefixed: its pieces so far.
    Gathering(BytesMut),
    /// It was refused: its remaining pieces are dropped.
    Skipping,
}

/// Frames outbound messages for one connection.
#[derive(Debug)]
pub(crate) struct Encoder {
    /// The format.
    wire: Wire,
    /// The message in pieces under way, if any.
    pieces: Pieces,
}

impl Encoder {
    /// An encoder for a new connection.
    pub(crate) fn new(wire: Wire) -> Self {
        Encoder { wire, pieces: Pieces::Idle }
    }

    /// Appends a whole message, framed, to `out`; nothing when it is refused.
    pub(crate) fn message(
        &mut self,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self.wire {
            Wire::Lines => {
                if payload.contains(&b'\n') {
                    return Err(EncodeError::NewlineInLine);
                }
                out.reserve(payload.len() + 1);
                out.put_slice(payload);
                out.put_u8(b'\n');
            }
            Wire::LengthPrefixed => {
                let len = u32::try_from(payload.len())
                    .map_err(|_| EncodeError::TooLongForPrefix(payload.len()))?;
                out.reserve(4 + payload.len());
                out.put_u32(len);
                out.put_slice(payload);
            }
            Wire::Raw { .. } => out.put_slice(payload),
        }
        Ok(())
    }

    /// Appends one piece of a message sent in pieces to `out`, or gathers it.
    pub(crate) fn fragment(
        &mut self,
        frame: &DataFrame,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let payload = &frame.payload[..];
        match (self.wire, std::mem::take(&mut self.pieces)) {
            (_, Pieces::Skipping) => {
                if !frame.fin {
                    self.pieces = Pieces::Skipping;
                }
                Ok(())
            }
            (Wire::Raw { .. }, _) => {
                out.put_slice(payload);
                Ok(())
            }
            (Wire::Lines, started) if payload.contains(&b'\n') => {
                if matches!(started, Pieces::Writing) {
                    return Err(EncodeError::NewlineInStartedLine);
                }
                if !frame.fin {
                    self.pieces = Pieces::Skipping;
                }
                Err(EncodeError::NewlineInLine)
            }
            (Wire::Lines, _) => {
                out.put_slice(payload);
                if frame.fin {
                    out.put_u8(b'\n');
                } else {
                    self.pieces = Pieces::Writing;
                }
                Ok(())
            }
            (Wire::LengthPrefixed, Pieces::Gathering(mut gathered)) => {
                gathered.extend_from_slice(payload);
                self.gathered(gathered, frame.fin, out)
            }
            (Wire::LengthPrefixed, _) if frame.fin => self.message(payload, out),
            (Wire::LengthPrefixed, _) => self.gathered(BytesMut::from(payload), false, out),
        }
    }

    /// Length-prefixed: sends the gathered message after its last piece, or keeps gathering.
    fn gathered(
        &mut self,
        gathered: BytesMut,
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if u32::try_from(gathered.len()).is_err() {
            if !fin {
                self.pieces = Pieces::Skipping;
            }
            return Err(EncodeError::TooLongForPrefix(gathered.len()));
        }
        if fin {
            return self.message(&gathered, out);
        }
        self.pieces = Pieces::Gathering(gathered);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use feedvisor_transport_api::Opcode;

    use super::*;

    fn piece(first: bool, fin: bool, payload: &'static [u8]) -> DataFrame {
        let opcode = if first { Opcode::Text } else { Opcode::Continuation };
        DataFrame { opcode, fin, payload: Bytes::from_static(payload) }
    }

    /// Encodes `pieces` as one message in pieces; returns the bytes and each piece's result.
    fn encode_pieces(wire: Wire, pieces: &[DataFrame]) -> (Vec<u8>, Vec<Result<(), EncodeError>>) {
        let mut encoder = Encoder::new(wire);
        let mut out = BytesMut::new();
        let results = pieces.iter().map(|frame| encoder.fragment(frame, &mut out)).collect();
        (out.to_vec(), results)
    }

    #[test]
    fn whole_messages_are_framed_for_their_wire() {
        let mut out = BytesMut::new();
        let mut lines = Encoder::new(Wire::Lines);
        lines.message(b"hello", &mut out).expect("a line");
        lines.message(b"", &mut out).expect("an empty line");
        assert_eq!(&out[..], b"hello\n\n");
        assert_eq!(lines.message(b"two\nlines", &mut out), Err(EncodeError::NewlineInLine));
        assert_eq!(&out[..], b"hello\n\n", "nothing appended for a refused message");

        let mut out = BytesMut::new();
        let mut prefixed = Encoder::new(Wire::LengthPrefixed);
        prefixed.message(b"abc", &mut out).expect("framed");
        prefixed.message(b"", &mut out).expect("framed");
        assert_eq!(&out[..], b"\0\0\0\x03abc\0\0\0\0");

        let mut out = BytesMut::new();
        Encoder::new(Wire::Raw { chunk_size: 2 }).message(b"raw\nbytes", &mut out).expect("raw");
        assert_eq!(&out[..], b"raw\nbytes");
    }

    #[test]
    fn a_line_in_pieces_goes_out_as_they_come_and_ends_with_its_newline() {
        let pieces =
            [piece(true, false, b"he"), piece(false, false, b""), piece(false, true, b"y")];
        let (bytes, results) = encode_pieces(Wire::Lines, &pieces);
        assert_eq!(bytes, b"hey\n");
        assert!(results.iter().all(Result::is_ok));
    }

    #[test]
    fn a_line_in_pieces_with_a_newline_is_dropped_whole_or_ends_the_connection() {
        let first_has_it = [piece(true, false, b"a\nb"), piece(false, true, b"c")];
        let (bytes, results) = encode_pieces(Wire::Lines, &first_has_it);
        assert_eq!(bytes, b"");
        assert_eq!(results, vec![Err(EncodeError::NewlineInLine), Ok(())]);

        let later_has_it = [piece(true, false, b"a"), piece(false, true, b"b\nc")];
        let (bytes, results) = encode_pieces(Wire::Lines, &later_has_it);
        assert_eq!(bytes, b"a");
        assert_eq!(results[1], Err(EncodeError::NewlineInStartedLine));
        assert!(EncodeError::NewlineInStartedLine.is_fatal());
        assert!(!EncodeError::NewlineInLine.is_fatal());
    }

    #[test]
    fn a_length_prefixed_message_in_pieces_goes_out_whole_after_its_last_piece() {
        let mut encoder = Encoder::new(Wire::LengthPrefixed);
        let mut out = BytesMut::new();
        encoder.fragment(&piece(true, false, b"ab"), &mut out).expect("gathered");
        encoder.fragment(&piece(false, false, b"cd"), &mut out).expect("gathered");
        assert!(out.is_empty(), "nothing goes out before the length is known");
        encoder.fragment(&piece(false, true, b"e"), &mut out).expect("sent");
        assert_eq!(&out[..], b"\0\0\0\x05abcde");
        encoder.fragment(&piece(true, true, b"f"), &mut out).expect("a one-piece message");
        assert_eq!(&out[..], b"\0\0\0\x05abcde\0\0\0\x01f");
    }

    #[test]
    fn raw_pieces_go_out_as_they_come() {
        let pieces = [piece(true, false, b"a\n"), piece(false, true, b"b")];
        let (bytes, results) = encode_pieces(Wire::Raw { chunk_size: 8 }, &pieces);
        assert_eq!(bytes, b"a\nb");
        assert!(results.iter().all(Result::is_ok));
    }
}
