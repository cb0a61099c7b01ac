//! The largest read buffer the decoder saw on this thread, for tests that
//! check that stream mode never buffers a whole frame. Each `#[actix_rt::test]`
//! runs on a thread of its own, together with the sessions it spawns.

use std::cell::Cell;

use bytes::BytesMut;

thread_local! {
    /// The largest `(len, capacity)` seen, each on its own.
    static PEAK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Notes the buffer the decoder was handed.
pub(crate) fn record(src: &BytesMut) {
    PEAK.with(|peak| {
        let (len, capacity) = peak.get();
        peak.set((len.max(src.len()), capacity.max(src.capacity())));
    });
}

/// The largest length and the largest capacity seen since the last reset.
pub(crate) fn peak() -> (usize, usize) {
    PEAK.with(Cell::get)
}

/// Starts a new measurement.
pub(crate) fn reset() {
    PEAK.with(|peak| peak.set((0, 0)));
}
