//! A transport session as the connection's inbound stream.
//!
//! The consumer (the connection actor) polls the session itself: a read of
//! the socket reaches it with no task, channel or extra wake-up in between.
//! Only when the consumer lets go of the stream does the session move to a
//! task of its own, to finish its close.

use std::pin::Pin;
use std::task::{Context, Poll};

use feedvisor_transport_api::{Event, Inbound, Outbound, OutboundSender, TransportError};
use futures_util::stream::{Stream, StreamExt};

/// Turns `session` (a transport's reader and writer in one stream) into a
/// connection's [`Inbound`].
///
/// The consumer polls the session directly, so a consumer that stops polling
/// (its flow gate closed, or it is behind) stops the reading of the socket,
/// and TCP slows the peer. The session still outlives its consumer: when the
/// stream is dropped before it ended, the session moves to a task on the
/// current arbiter, where a close queued just before the drop is written and
/// the peer's answer awaited (bounded by the session's close timeout); if no
/// close was queued, `going_away` is sent for it. Must be dropped within an
/// actix or tokio local context.
pub fn session_inbound<S>(session: S, outbound: OutboundSender, going_away: Outbound) -> Inbound
where
    S: Stream<Item = Result<Vec<Event>, TransportError>> + Unpin + 'static,
{
    OwnedSession { session: Some(session), outbound, going_away: Some(going_away) }.boxed_local()
}

/// A session polled by its consumer; finished on a task of its own when dropped early.
struct OwnedSession<S>
where
    S: Stream<Item = Result<Vec<Event>, TransportError>> + Unpin + 'static,
{
    /// `None` once the session ended (nothing left to finish).
    session: Option<S>,
    /// Where the close for a consumer that left without one goes.
    outbound: OutboundSender,
    /// The close sent when the consumer lets go without one.
    going_away: Option<Outbound>,
}

impl<S> Stream for OwnedSession<S>
where
    S: Stream<Item = Result<Vec<Event>, TransportError>> + Unpin + 'static,
{
    type Item = Result<Vec<Event>, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(session) = self.session.as_mut() else { return Poll::Ready(None) };
        let polled = session.poll_next_unpin(cx);
        if let Poll::Ready(None) = polled {
            self.session = None;
        }
        polled
    }
}

impl<S> Drop for OwnedSession<S>
where
    S: Stream<Item = Result<Vec<Event>, TransportError>> + Unpin + 'static,
{
    fn drop(&mut self) {
        let Some(mut session) = self.session.take() else { return };
        // If no close is under way yet, start one (once one is, the outbound
        // channel is closed and this send is a no-op), and let the session
        // finish it where nobody waits for it.
        if let Some(going_away) = self.going_away.take() {
            let _ = self.outbound.send(going_away);
        }
        actix_rt::spawn(async move { while session.next().await.is_some() {} });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use feedvisor_transport_api::outbound_channel;
    use futures_util::stream;

    use super::*;

    #[actix_rt::test]
    async fn a_dropped_stream_still_runs_the_session_to_its_end() {
        let (outbound, mut receiver) = outbound_channel();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        let session = stream::iter(vec![Ok(Vec::new()), Ok(Vec::new())])
            .chain(stream::once(async move {
                let _ended = ended_tx;
                Ok(Vec::new())
            }))
            .boxed_local();
        let mut inbound = session_inbound(session, outbound, Outbound::Close(None));
        assert!(inbound.next().await.is_some(), "polled in place");
        drop(inbound);
        assert!(matches!(receiver.next().await, Some(Outbound::Close(None))), "going away sent");
        let finished = tokio::time::timeout(Duration::from_secs(5), ended_rx).await;
        assert!(finished.is_ok(), "the rest of the session ran on its own task");
    }

    #[actix_rt::test]
    async fn a_finished_session_sends_nothing_when_dropped() {
        let (outbound, mut receiver) = outbound_channel();
        let session = stream::iter(vec![Ok(Vec::new())]).boxed_local();
        let mut inbound = session_inbound(session, outbound, Outbound::Close(None));
        assert!(inbound.next().await.is_some());
        assert!(inbound.next().await.is_none());
        drop(inbound);
        receiver.close();
        assert!(receiver.next().await.is_none(), "no close for a session that ended");
    }
}
