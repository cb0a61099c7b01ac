//! The session's life over a scripted wire, on paused time: what is written
//! and when, what is yielded, and when the stream ends.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use bytes::Bytes;
use feedvisor_transport_api::{
    close_code, outbound_channel, CloseFrame, DataFrame, OutboundSender,
};
use futures_util::task::noop_waker_ref;
use futures_util::StreamExt;

use super::*;

/// The tests that wait for it pause time: a sleep then moves the clock to its
/// deadline at once, and timers fire exactly in deadline order.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the scripted wire saw and what it is told to do; shared with the test.
#[derive(Default)]
struct Wire {
    /// Messages queued and not yet flushed.
    queued: Vec<Outbound>,
    /// Messages flushed to the "socket", in order.
    written: Vec<Outbound>,
    /// The next flush fails with this.
    flush_error: Option<TransportError>,
    /// Events the peer sent, not yet read.
    arriving: VecDeque<Event>,
    /// How reading ends once `arriving` is empty, if it does.
    end: Option<ReadEnd>,
    /// The `open` flag of each read.
    reads_open: Vec<bool>,
    /// How often the write side was shut down.
    shutdowns: usize,
    /// Woken when the peer sends something.
    reader: Option<Waker>,
}

/// A wire whose socket is `Wire`; `HALF` picks a byte stream's close (TCP)
/// or a close frame the peer answers (WebSocket).
struct ScriptedIo<const HALF: bool>(Rc<RefCell<Wire>>);

impl<const HALF: bool> SessionIo for ScriptedIo<HALF> {
    const HALF_CLOSES: bool = HALF;
    const ANSWERS_WHILE_READING: bool = !HALF;

    fn write_ready(&self) -> bool {
        self.0.borrow().queued.len() < 8
    }

    fn queue(&mut self, message: Outbound) -> Result<(), TransportError> {
        self.0.borrow_mut().queued.push(message);
        Ok(())
    }

    fn queue_close_for(&mut self, error: &TransportError) -> bool {
        let Some(code) = error.close_code() else { return false };
        self.0.borrow_mut().queued.push(Outbound::Close(Some(CloseFrame::new(code, ""))));
        true
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let mut wire = self.0.borrow_mut();
        if let Some(error) = wire.flush_error.take() {
            return Poll::Ready(Err(error));
        }
        let queued = std::mem::take(&mut wire.queued);
        wire.written.extend(queued);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.0.borrow_mut().shutdowns += 1;
        Poll::Ready(Ok(()))
    }

    fn receive(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<Event>,
        open: bool,
    ) -> Option<ReadEnd> {
        let mut wire = self.0.borrow_mut();
        wire.reads_open.push(open);
        while let Some(event) = wire.arriving.pop_front() {
            let closed = matches!(event, Event::Close(_));
            events.push(event);
            if closed {
                return Some(ReadEnd::PeerClosed);
            }
        }
        let end = wire.end.take();
        if end.is_none() {
            wire.reader = Some(cx.waker().clone());
        }
        end
    }
}

/// A session over a scripted wire, the sender the connection actor would hold, and the wire.
fn scripted_session<const HALF: bool>(
) -> (Session<ScriptedIo<HALF>>, OutboundSender, Rc<RefCell<Wire>>) {
    let wire = Rc::new(RefCell::new(Wire::default()));
    let (sender, receiver) = outbound_channel();
    (Session::new(ScriptedIo(wire.clone()), receiver, CLOSE_TIMEOUT), sender, wire)
}

/// Polls the session once, as its consumer would.
fn poll_once<const HALF: bool>(
    session: &mut Session<ScriptedIo<HALF>>,
) -> Poll<Option<Result<Vec<Event>, TransportError>>> {
    session.poll_next_unpin(&mut Context::from_waker(noop_waker_ref()))
}

fn text(payload: &'static str) -> Event {
    Event::Data(DataFrame::text(Bytes::from_static(payload.as_bytes())))
}

fn peer_close() -> Event {
    Event::Close(Some(CloseFrame::new(close_code::NORMAL, "bye")))
}

#[actix_rt::test]
async fn our_close_is_written_after_what_was_queued_and_the_peers_answer_ends_the_session() {
    let (mut session, sender, wire) = scripted_session::<false>();
    sender.send(Outbound::Text(Bytes::from_static(b"last words"))).expect("open");
    sender.send(Outbound::Close(None)).expect("open");
    assert!(poll_once(&mut session).is_pending(), "nothing arrived yet");
    assert!(
        matches!(&wire.borrow().written[..], [Outbound::Text(_), Outbound::Close(None)]),
        "the message, then our close"
    );
    assert!(sender.send(Outbound::Ping(Bytes::new())).is_err(), "nothing is taken after the close");
    assert_eq!(wire.borrow().shutdowns, 0, "a close frame is answered, not a half-close");

    wire.borrow_mut().arriving.push_back(peer_close());
    let batch = session.next().await.expect("a batch").expect("no error");
    assert!(matches!(&batch[..], [Event::Close(_)]), "{batch:?}");
    assert_eq!(wire.borrow().reads_open, vec![false, false], "no answers once we closed");
    assert!(session.next().await.is_none(), "drained and ended");
    assert_eq!(wire.borrow().shutdowns, 1, "the socket is shut down in the drain");
}

#[actix_rt::test]
async fn an_unanswered_close_drains_and_ends_after_the_close_timeout() {
    tokio::time::pause();
    let (mut session, sender, wire) = scripted_session::<false>();
    sender.send(Outbound::Close(None)).expect("open");
    assert!(poll_once(&mut session).is_pending());
    tokio::time::sleep(CLOSE_TIMEOUT - Duration::from_millis(1)).await;
    assert!(poll_once(&mut session).is_pending(), "the peer still has time to answer");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let polled = poll_once(&mut session);
    assert!(matches!(polled, Poll::Ready(None)), "ended at the close timeout: {polled:?}");
    assert_eq!(wire.borrow().shutdowns, 1, "after the final drain");
}

#[actix_rt::test]
async fn a_half_closing_wire_shuts_its_write_half_at_once_and_ends_at_the_close_timeout() {
    tokio::time::pause();
    let (mut session, sender, wire) = scripted_session::<true>();
    sender.send(Outbound::Close(None)).expect("open");
    assert!(poll_once(&mut session).is_pending(), "reading on until the peer closes too");
    assert_eq!(wire.borrow().shutdowns, 1, "our write half is shut down once written out");
    wire.borrow_mut().arriving.push_back(text("still coming"));
    let batch = session.next().await.expect("a batch").expect("no error");
    assert_eq!(batch.len(), 1, "what the peer sends after our close is still read");
    tokio::time::sleep(CLOSE_TIMEOUT).await;
    let polled = poll_once(&mut session);
    assert!(matches!(polled, Poll::Ready(None)), "ended at the close timeout: {polled:?}");
    assert_eq!(wire.borrow().shutdowns, 1, "no second drain: closing was the drain");
}

#[actix_rt::test]
async fn an_error_comes_after_the_batch_read_before_it_and_is_answered_with_its_close() {
    let (mut session, sender, wire) = scripted_session::<false>();
    let error = TransportError::Protocol {
        close_code: close_code::INVALID_PAYLOAD,
        reason: "invalid UTF-8".to_owned(),
    };
    wire.borrow_mut().arriving.push_back(text("fine"));
    wire.borrow_mut().end = Some(ReadEnd::Failed(error.clone()));
    let batch = session.next().await.expect("a batch").expect("the batch first");
    assert_eq!(batch.len(), 1);
    assert_eq!(session.next().await, Some(Err(error)), "then the error");
    assert!(
        matches!(&wire.borrow().written[..], [Outbound::Close(Some(frame))] if frame.code == 1007),
        "the peer is told why"
    );
    assert!(sender.send(Outbound::Text(Bytes::new())).is_err(), "nothing more is taken");
    assert!(session.next().await.is_none());
}

#[actix_rt::test]
async fn a_hang_up_without_a_close_is_an_error_but_after_ours_it_just_ends() {
    let (mut session, _sender, wire) = scripted_session::<false>();
    wire.borrow_mut().end = Some(ReadEnd::Eof);
    let error = session.next().await.expect("an item").expect_err("an error");
    assert_eq!(error, TransportError::Io("connection closed without a close frame".to_owned()));

    let (mut session, sender, wire) = scripted_session::<false>();
    sender.send(Outbound::Close(None)).expect("open");
    wire.borrow_mut().end = Some(ReadEnd::Eof);
    assert!(session.next().await.is_none(), "the peer hung up instead of answering our close");
}

#[actix_rt::test]
async fn a_write_error_still_lets_the_peers_close_through() {
    let (mut session, sender, wire) = scripted_session::<false>();
    sender.send(Outbound::Text(Bytes::from_static(b"lost"))).expect("open");
    wire.borrow_mut().flush_error = Some(TransportError::Io("write failed: reset".to_owned()));
    wire.borrow_mut().arriving.push_back(peer_close());
    let batch = session.next().await.expect("a batch").expect("the close, not the write error");
    assert!(matches!(&batch[..], [Event::Close(_)]), "{batch:?}");
    assert!(session.next().await.is_none());
}

#[actix_rt::test]
async fn a_write_error_ends_the_session_when_nothing_else_happened() {
    let (mut session, sender, wire) = scripted_session::<true>();
    sender.send(Outbound::Text(Bytes::from_static(b"lost"))).expect("open");
    let error = TransportError::Io("write failed: reset".to_owned());
    wire.borrow_mut().flush_error = Some(error.clone());
    assert_eq!(session.next().await, Some(Err(error)));
    assert!(session.next().await.is_none());
}
