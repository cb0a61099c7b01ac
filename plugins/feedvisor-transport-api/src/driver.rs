//! Running a transport's session on a task of its own, shared by the plugins.

use futures_util::stream::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::error::TransportError;
use crate::frame::{Event, Outbound};
use crate::transport::{Inbound, OutboundSender};

/// Batches the driver may hold for a consumer that has not taken them yet.
///
/// When they are all taken up, the driver stops polling the session, which
/// stops reading the socket until the consumer catches up: a slow consumer
/// slows the peer (TCP backpressure) instead of growing memory. In stream
/// mode, where a batch holds less than two chunks of data, this bounds what a
/// transport holds to a few chunks.
pub const INBOUND_QUEUE: usize = 4;

/// Runs `session` (a transport's reader and writer in one stream) on a task of
/// its own, on the current arbiter, and hands its batches over a bounded channel.
///
/// The session then outlives its consumer: a consumer that queues a close and
/// drops the stream at once still has the close written and the peer's answer
/// awaited (the session bounds that by its close timeout). A consumer that
/// drops the stream without a close gets `going_away` sent for it at once,
/// even while nothing arrives. Must be called within an actix or tokio local context.
pub fn spawn_session<S>(session: S, outbound: OutboundSender, going_away: Outbound) -> Inbound
where
    S: Stream<Item = Result<Vec<Event>, TransportError>> + Unpin + 'static,
{
    let (sender, mut receiver) = mpsc::channel(INBOUND_QUEUE);
    actix_rt::spawn(drive(session, sender, outbound, going_away));
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed_local()
}

async fn drive<S>(
    mut session: S,
    batches: mpsc::Sender<Result<Vec<Event>, TransportError>>,
    outbound: OutboundSender,
    going_away: Outbound,
) where
    S: Stream<Item = Result<Vec<Event>, TransportError>> + Unpin,
{
    loop {
        let item = tokio::select! {
            item = session.next() => item,
            () = batches.closed() => break,
        };
        let Some(item) = item else { return };
        if batches.send(item).await.is_err() {
            break;
        }
    }
    // Nobody reads any more. If no close is under way yet, start one (once
    // one is, the outbound channel is closed and this send is a no-op), and
    // let the session finish it.
    let _ = outbound.send(going_away);
    while session.next().await.is_some() {}
}
