//! Compression settings and counts that cross the transport boundary: plain
//! data only (the inflating and deflating live in the kit and the plugins).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A feed's choice about WebSocket permessage-deflate (RFC 7692).
///
/// Transports without a compression extension of their own ignore it (their
/// `check` refuses a feed that sets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Offer nothing: for servers that mishandle the offer.
    Off,
    /// Offer permessage-deflate with these parameters; a server that does not
    /// accept it runs uncompressed.
    Deflate(DeflateParams),
}

impl Default for Compression {
    /// Offer permessage-deflate with no parameters of our own choosing.
    fn default() -> Self {
        Compression::Deflate(DeflateParams::default())
    }
}

/// The permessage-deflate parameters a feed offers (RFC 7692 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The largest window (base-2 logarithm, 9 to 15) our compressor may use;
    /// `None`: offered without a value, so the server may pick one.
    pub client_max_window_bits: Option<u8>,
    /// The largest window (8 to 15) the server's compressor may use, which is
    /// what our inflater must hold per connection; `None`: not asked (15).
    pub server_max_window_bits: Option<u8>,
    /// Our compressor starts afresh with every message (less memory held
    /// between messages, worse ratio).
    pub client_no_context_takeover: bool,
    /// The server's compressor must start afresh with every message, so our
    /// inflater need not keep its window between messages.
    pub server_no_context_takeover: bool,
}

/// Why compressed data could not be inflated: a small fixed set, used as the
/// `reason` label of the inflate-error metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InflateFailure {
    /// It inflates past the size limit; inflating stopped at the limit.
    TooLarge,
    /// It is not a valid compressed stream (or has bytes after its end).
    Corrupt,
    /// The compressed stream ends before its end marker.
    Truncated,
}

impl InflateFailure {
    /// The snake_case label value.
    pub fn as_str(self) -> &'static str {
        match self {
            InflateFailure::TooLarge => "too_large",
            InflateFailure::Corrupt => "corrupt",
            InflateFailure::Truncated => "truncated",
        }
    }
}

/// Payload bytes of compressed messages a transport inflated: what came off
/// the wire and what it became, so that the connection actor can count wire
/// bytes beside payload bytes.
///
/// Cheap to clone (one shared pair of counters): the connection actor makes
/// one per connect request and takes the counts after each batch.
#[derive(Debug, Clone, Default)]
pub struct CompressedBytes {
    counts: Arc<[AtomicU64; 2]>,
}

impl CompressedBytes {
    /// Notes `wire` compressed bytes that inflated to `inflated` bytes.
    pub fn record(&self, wire: u64, inflated: u64) {
        self.counts[0].fetch_add(wire, Ordering::Relaxed);
        self.counts[1].fetch_add(inflated, Ordering::Relaxed);
    }

    /// The `(wire, inflated)` bytes recorded since the last call, resetting both.
    pub fn take(&self) -> (u64, u64) {
        (self.counts[0].swap(0, Ordering::Relaxed), self.counts[1].swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_taken_once() {
        let counts = CompressedBytes::default();
        counts.clone().record(10, 100);
        counts.record(1, 2);
        assert_eq!(counts.take(), (11, 102));
        assert_eq!(counts.take(), (0, 0));
    }
}
