//! Inflating compressed data without ever holding more output than asked for.
//!
//! [`Inflater::inflate_into`] writes only into the spare capacity of the
//! output vector the caller hands it, so the caller decides, before each
//! call, how much a compressed input may grow into: a 1 KiB frame that would
//! inflate to 1 GiB gets no more room than the limit allows. The WebSocket
//! plugin inflates permessage-deflate messages piece by piece with it;
//! [`inflate_whole`] inflates one whole payload (the connection side's
//! `decode = "gzip" | "zlib" | "deflate-raw"`).
//!
//! The backend is zlib-rs (through flate2), which honours a window smaller
//! than 32 KiB and reports a broken stream as an error.

use feedvisor_transport_api::InflateFailure;
use flate2::{Decompress, FlushDecompress, Status};

/// The container around the deflate data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateFormat {
    /// Bare deflate blocks (RFC 1951), with the window the compressor used
    /// (base-2 logarithm, 8 to 15; 8 is inflated with a window of 9).
    Raw {
        /// The compressor's window.
        window_bits: u8,
    },
    /// A zlib stream (RFC 1950).
    Zlib,
    /// A gzip member (RFC 1952).
    Gzip,
}

/// Why inflating stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InflateError {
    /// Its class, a metric label.
    pub failure: InflateFailure,
    /// What went wrong, lower case.
    pub message: String,
}

impl InflateError {
    /// Output past `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        InflateError {
            failure: InflateFailure::TooLarge,
            message: format!("inflates past max_message_size of {limit} bytes"),
        }
    }

    fn corrupt(message: impl Into<String>) -> Self {
        InflateError { failure: InflateFailure::Corrupt, message: message.into() }
    }
}

/// What one call of [`Inflater::inflate_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Output bytes written.
    pub produced: usize,
    /// The compressed stream ended (a final block, or a zlib/gzip trailer).
    pub ended: bool,
}

/// One inflate stream, kept across calls (and, for WebSocket context
/// takeover, across messages).
pub struct Inflater {
    decompress: Decompress,
    format: InflateFormat,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("format", &self.format).finish_non_exhaustive()
    }
}

impl Inflater {
    /// A fresh stream of `format`.
    pub fn new(format: InflateFormat) -> Self {
        Inflater { decompress: Self::make(format), format }
    }

    fn make(format: InflateFormat) -> Decompress {
        match format {
            // zlib inflates a stream made with an 8-bit window with a 9-bit one.
            InflateFormat::Raw { window_bits } => {
                Decompress::new_with_window_bits(false, window_bits.clamp(9, 15))
            }
            InflateFormat::Zlib => Decompress::new_with_window_bits(true, 15),
            InflateFormat::Gzip => Decompress::new_gzip(15),
        }
    }

    /// Forgets the stream: the next input starts a new one.
    pub fn reset(&mut self) {
        self.decompress = Self::make(self.format);
    }

    /// Inflates from `input` into the spare capacity of `out`, never growing
    /// it: the caller bounds the output by the room it reserved.
    ///
    /// A call with input left and room left always makes progress or fails,
    /// so a caller's loop cannot spin.
    pub fn inflate_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Inflated, InflateError> {
        let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
        let status = self
            .decompress
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|error| InflateError::corrupt(format!("invalid compressed data: {error}")))?;
        let consumed =
            usize::try_from(self.decompress.total_in() - in_before).unwrap_or(usize::MAX);
        let produced =
            usize::try_from(self.decompress.total_out() - out_before).unwrap_or(usize::MAX);
        let ended = status == Status::StreamEnd;
        let room = out.capacity() - out.len();
        if !ended && consumed == 0 && produced == 0 && !input.is_empty() && room > 0 {
            return Err(InflateError::corrupt("invalid compressed data: no progress"));
        }
        Ok(Inflated { consumed, produced, ended })
    }
}

/// Inflates one whole payload of `format` into at most `limit` bytes.
///
/// The output grows by doubling but never past `limit + 1` bytes of
/// capacity; more output than `limit` is an error. Bytes after the end of
/// the stream are an error, and so is a stream without its end.
pub fn inflate_whole(
    format: InflateFormat,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Inflater::new(format);
    let cap_limit = limit.saturating_add(1);
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).max(64).min(cap_limit));
    let mut position = 0;
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(InflateError::too_large(limit));
            }
            let grown = out.capacity().saturating_mul(2).min(cap_limit);
            out.reserve_exact(grown - out.len());
        }
        let step = inflater.inflate_into(&input[position..], &mut out)?;
        position += step.consumed;
        if out.len() > limit {
            return Err(InflateError::too_large(limit));
        }
        if step.ended {
            if position != input.len() {
                let extra = input.len() - position;
                return Err(InflateError::corrupt(format!(
                    "{extra} bytes after the end of the compressed stream"
                )));
            }
            return Ok(out);
        }
        if position == input.len() && out.len() < out.capacity() {
            return Err(InflateError {
                failure: InflateFailure::Truncated,
                message: "the compressed stream ends before its end marker".to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    #[test]
    fn every_format_round_trips() {
        let data = b"the same words again and again and again".repeat(100);
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&data).expect("in memory");
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&data).expect("in memory");
        let cases = [
            (InflateFormat::Gzip, gzip(&data)),
            (InflateFormat::Zlib, zlib.finish().expect("in memory")),
            (InflateFormat::Raw { window_bits: 15 }, raw.finish().expect("in memory")),
        ];
        for (format, compressed) in cases {
            assert_eq!(
                inflate_whole(format, &compressed, data.len()),
                Ok(data.clone()),
                "{format:?}"
            );
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_with_the_capacity_bounded() {
        let compressed = gzip(&vec![0u8; 16 << 20]);
        assert!(compressed.len() < 32 << 10, "16 MiB of zeros compress to {}", compressed.len());
        let error =
            inflate_whole(InflateFormat::Gzip, &compressed, 1 << 20).expect_err("too large");
        assert_eq!(error.failure, InflateFailure::TooLarge);
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let compressed = gzip(&[7u8; 1000]);
        assert_eq!(
            inflate_whole(InflateFormat::Gzip, &compressed, 1000).map(|v| v.len()),
            Ok(1000)
        );
        let error = inflate_whole(InflateFormat::Gzip, &compressed, 999).expect_err("one over");
        assert_eq!(error.failure, InflateFailure::TooLarge);
    }

    #[test]
    fn corrupt_truncated_and_trailing_input_are_told_apart() {
        let compressed = gzip(b"hello hello hello");
        let truncated =
            inflate_whole(InflateFormat::Gzip, &compressed[..compressed.len() - 9], 100);
        assert_eq!(truncated.map_err(|e| e.failure), Err(InflateFailure::Truncated));
        let mut trailing = compressed.clone();
        trailing.extend_from_slice(b"junk");
        let error = inflate_whole(InflateFormat::Gzip, &trailing, 100).expect_err("trailing");
        assert_eq!(error.failure, InflateFailure::Corrupt);
        let not_gzip = inflate_whole(InflateFormat::Gzip, b"plain text, not gzip", 100);
        assert_eq!(not_gzip.map_err(|e| e.failure), Err(InflateFailure::Corrupt));
        let not_zlib = inflate_whole(InflateFormat::Zlib, b"\xff\xff\xff\xff", 100);
        assert_eq!(not_zlib.map_err(|e| e.failure), Err(InflateFailure::Corrupt));
    }

    #[test]
    fn output_never_exceeds_the_room_given() {
        let compressed = gzip(&vec![1u8; 100_000]);
        let mut inflater = Inflater::new(InflateFormat::Gzip);
        let mut position = 0;
        let mut total = 0;
        loop {
            let mut piece = Vec::with_capacity(1000);
            let step = inflater.inflate_into(&compressed[position..], &mut piece).expect("valid");
            assert!(piece.len() <= 1000);
            position += step.consumed;
            total += step.produced;
            if step.ended {
                break;
            }
        }
        assert_eq!(total, 100_000);
    }
}
