//! Backpressure from subscribers to feeds: a gate each connection reads through.
//!
//! A subscriber whose policy is `backpressure` and whose queue is full closes
//! the gates of the feeds that fill it; a connection whose gate is closed
//! stops polling its transport, whose reader then stops reading the socket,
//! and TCP flow control slows the sender. The gate opens again when every
//! subscriber that closed it has drained.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::Stream;
use futures_util::task::AtomicWaker;

/// The gate of one connection: closed while any subscriber holds it closed.
#[derive(Debug, Default)]
pub(crate) struct FlowGate {
    /// How many subscribers hold the gate closed.
    closed_by: AtomicUsize,
    /// The reader waiting for the gate to open.
    waker: AtomicWaker,
}

impl FlowGate {
    /// An open gate.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Closes the gate (once per subscriber that wants it closed).
    pub(crate) fn close(&self) {
        self.closed_by.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes back one [`FlowGate::close`]; the last one opens the gate.
    pub(crate) fn open(&self) {
        let before = self.closed_by.fetch_sub(1, Ordering::AcqRel);
        if before == 1 {
            self.waker.wake();
        }
    }

    /// True while some subscriber holds the gate closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed_by.load(Ordering::Acquire) > 0
    }
}

/// A stream that yields only while its gate is open.
pub(crate) struct Gated<S> {
    inner: S,
    gate: Arc<FlowGate>,
}

impl<S> Gated<S> {
    /// Reads `inner` through `gate`.
    pub(crate) fn new(inner: S, gate: Arc<FlowGate>) -> Self {
        Gated { inner, gate }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.gate.is_closed() {
            self.gate.waker.register(cx.waker());
            // It may have opened between the check and the registration.
            if self.gate.is_closed() {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream::{self, StreamExt};
    use futures_util::FutureExt;

    use super::*;

    #[actix_rt::test]
    async fn a_closed_gate_holds_the_stream_until_every_closer_opens_it() {
        let gate = FlowGate::new();
        let mut gated = Gated::new(stream::iter([1, 2, 3]), gate.clone());
        assert_eq!(gated.next().await, Some(1));
        gate.close();
        gate.close();
        assert!(gated.next().now_or_never().is_none(), "read through a closed gate");
        gate.open();
        assert!(gate.is_closed());
        let opener = gate.clone();
        actix_rt::spawn(async move { opener.open() });
        assert_eq!(gated.next().await, Some(2));
        assert!(!gate.is_closed());
    }
}
