//! How far a `/subscribe` client is behind, in bytes, and how its session
//! learns that the client caught up.
//!
//! actix-web-actors runs a session inside the response body: the session only
//! runs when the HTTP layer polls the body for more bytes, and the HTTP layer
//! only does so while its own write buffer (32 KiB) has room. Whatever the
//! session writes during one poll is encoded into one chunk, of any size. So
//! the session bounds what it writes itself: it counts the bytes of every
//! frame it writes into the [`Backlog`], and [`MeteredBody`], between the
//! context and the HTTP layer, takes a chunk back out of the count when the
//! HTTP layer comes back for more (proof that the chunk, all but at most the
//! 32 KiB write buffer, went to the socket).
//!
//! A session thus holds at most the bound plus one message ahead of its
//! socket (plus the HTTP layer's buffer); what arrives meanwhile waits,
//! bounded, in the client's inbox.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_rt::time::Instant;
use bytes::Bytes;
use futures_util::stream::Stream;

/// Bytes one client may have written for it and not yet taken by its socket;
/// past this its session holds the batch it is writing, and the rest waits
/// in the client's bounded inbox.
pub(crate) const MAX_BACKLOG: usize = 1024 * 1024;

/// The size of a server (unmasked) WebSocket frame with `payload` bytes.
pub(super) fn frame_len(payload: usize) -> usize {
    let header = match payload {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    header + payload
}

/// The bytes of one client's frames written but not yet taken by its
/// connection, shared by its session (adds) and its [`MeteredBody`] (takes).
///
/// Both run on the same task (the HTTP connection's), hence `Cell`s.
#[derive(Debug)]
pub(super) struct Backlog {
    /// The bound the session writes up to.
    bound: usize,
    /// Bytes written and not yet taken.
    unsent: Cell<usize>,
    /// Since when the HTTP layer has held a chunk without coming back for
    /// more; `None` while it keeps up. It comes back as soon as its write
    /// buffer has room, so a stall outlasting moments means the socket is
    /// full and the client reads nothing.
    stalled_since: Cell<Option<Instant>>,
}

impl Backlog {
    /// An empty backlog bounded by `bound` bytes.
    pub(super) fn new(bound: usize) -> Rc<Self> {
        Rc::new(Backlog { bound, unsent: Cell::new(0), stalled_since: Cell::new(None) })
    }

    /// Bytes written and not yet taken.
    pub(super) fn unsent(&self) -> usize {
        self.unsent.get()
    }

    /// True from the moment the backlog reaches its bound until it falls below it.
    pub(super) fn is_over(&self) -> bool {
        self.unsent.get() >= self.bound
    }

    /// Counts a frame of `bytes` written.
    pub(super) fn add(&self, bytes: usize) {
        self.unsent.set(self.unsent.get().saturating_add(bytes));
    }

    /// Takes `bytes` out as sent; true when this brought the backlog back
    /// below its bound (the client caught up).
    pub(super) fn take(&self, bytes: usize) -> bool {
        let was_over = self.is_over();
        self.unsent.set(self.unsent.get().saturating_sub(bytes));
        was_over && !self.is_over()
    }

    /// Since when the HTTP layer has been holding a chunk, if it is.
    pub(super) fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since.get()
    }

    /// True when the HTTP layer has been holding a chunk for `timeout`.
    pub(super) fn stuck(&self, timeout: Duration) -> bool {
        self.stalled_since.get().is_some_and(|since| since + timeout <= Instant::now())
    }
}

/// The body of a session's response: the WebSocket context's byte stream,
/// with what the HTTP layer takes counted out of the [`Backlog`].
pub(super) struct MeteredBody<S> {
    /// The context's byte stream (which runs the session when polled).
    inner: Pin<Box<S>>,
    /// Shared with the session, which adds what it writes.
    backlog: Rc<Backlog>,
    /// Bytes of the last chunk handed over, confirmed sent at the next poll.
    handed_over: usize,
    /// Tells the session that the backlog fell below its bound.
    on_drained: Box<dyn Fn()>,
}

impl<S> MeteredBody<S> {
    /// Meters `inner`; `on_drained` runs (before the session is polled) each
    /// time the backlog falls below its bound.
    pub(super) fn new(inner: S, backlog: Rc<Backlog>, on_drained: impl Fn() + 'static) -> Self {
        MeteredBody {
            inner: Box::pin(inner),
            backlog,
            handed_over: 0,
            on_drained: Box::new(on_drained),
        }
    }
}

impl<S, E> Stream for MeteredBody<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // The HTTP layer asks for more only when its write buffer has room:
        // the previous chunk has gone to the socket (all but that buffer).
        let sent = std::mem::take(&mut this.handed_over);
        this.backlog.stalled_since.set(None);
        if this.backlog.take(sent) {
            // Queued in the session's mailbox, so it runs in the poll just below.
            (this.on_drained)();
        }
        let next = this.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            this.handed_over = chunk.len();
            this.backlog.stalled_since.set(Some(Instant::now()));
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn frame_lengths_follow_the_three_header_sizes() {
        assert_eq!(frame_len(0), 2);
        assert_eq!(frame_len(125), 127);
        assert_eq!(frame_len(126), 130);
        assert_eq!(frame_len(0xFFFF), 0xFFFF + 4);
        assert_eq!(frame_len(0x1_0000), 0x1_0000 + 10);
    }

    #[test]
    fn falling_below_the_bound_is_reported_once() {
        let backlog = Backlog::new(100);
        backlog.add(60);
        assert!(!backlog.is_over());
        backlog.add(60);
        assert!(backlog.is_over(), "120 of 100");
        assert!(!backlog.take(20), "110: still over");
        assert!(backlog.take(60), "50: caught up");
        assert!(!backlog.take(10), "already below");
        assert!(!backlog.take(500), "never below zero");
        assert_eq!(backlog.unsent(), 0);
    }

    #[actix::test]
    async fn a_chunk_held_for_the_timeout_means_stuck() {
        tokio::time::pause();
        let timeout = Duration::from_millis(500);
        let backlog = Backlog::new(1000);
        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let mut body = MeteredBody::new(chunks(queue.clone()), backlog.clone(), || {});
        assert!(!backlog.stuck(timeout), "nothing handed over");
        queue.borrow_mut().push_back(Bytes::from_static(b"frame"));
        body.next().await.expect("a chunk").expect("ok");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!backlog.stuck(timeout));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(backlog.stuck(timeout));
        // Taken at last: the stall is over.
        let waker = futures_util::task::noop_waker();
        assert!(Pin::new(&mut body).poll_next(&mut Context::from_waker(&waker)).is_pending());
        assert!(!backlog.stuck(timeout));
        assert!(backlog.stalled_since().is_none());
    }

    /// An inner stream that yields the chunks the test pushes, else pends.
    fn chunks(
        queue: Rc<RefCell<VecDeque<Bytes>>>,
    ) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
        futures_util::stream::poll_fn(move |_| match queue.borrow_mut().pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(chunk))),
            None => Poll::Pending,
        })
    }

    #[actix::test]
    async fn a_chunk_counts_as_sent_when_the_http_layer_comes_back_for_more() {
        let backlog = Backlog::new(100);
        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let drained = Rc::new(Cell::new(0));
        let seen = drained.clone();
        let mut body = MeteredBody::new(chunks(queue.clone()), backlog.clone(), move || {
            seen.set(seen.get() + 1)
        });

        // The session writes 150 bytes (over), which the context encodes into one chunk.
        backlog.add(150);
        queue.borrow_mut().push_back(Bytes::from(vec![0; 150]));
        let chunk = body.next().await.expect("a chunk").expect("ok");
        assert_eq!(chunk.len(), 150);
        assert_eq!(backlog.unsent(), 150, "handed over, not yet known to be sent");
        assert!(backlog.stalled_since().is_some(), "the HTTP layer holds it");
        assert_eq!(drained.get(), 0);

        // The HTTP layer comes back: the chunk went out and the session is told, once.
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut body).poll_next(&mut cx).is_pending());
        assert_eq!(backlog.unsent(), 0);
        assert!(backlog.stalled_since().is_none());
        assert_eq!(drained.get(), 1);
        assert!(Pin::new(&mut body).poll_next(&mut cx).is_pending());
        assert_eq!(drained.get(), 1);
    }

    #[actix::test]
    async fn below_the_bound_no_one_is_woken() {
        let backlog = Backlog::new(1000);
        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let drained = Rc::new(Cell::new(0));
        let seen = drained.clone();
        let mut body = MeteredBody::new(chunks(queue.clone()), backlog.clone(), move || {
            seen.set(seen.get() + 1)
        });
        for _ in 0..3 {
            backlog.add(100);
            queue.borrow_mut().push_back(Bytes::from(vec![0; 100]));
            body.next().await.expect("a chunk").expect("ok");
        }
        assert_eq!(backlog.unsent(), 100, "the last chunk is still in the HTTP layer's hands");
        assert_eq!(drained.get(), 0);
    }
}
