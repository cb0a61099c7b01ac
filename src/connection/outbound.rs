//! Messages for the peer: on_open after every connect, then what waited in
//! the outbound queue, then sends as they come (queued while the feed is down).
//!
//! What bounds them. While the feed is down, sends wait in the outbound
//! queue, bounded by `outbound_queue` and its overflow policy. While it is
//! open, a send goes straight to the connection's writer, and what the
//! writer has not taken yet (its backlog) counts against the same limits:
//! once the backlog holds `max_messages` messages or `max_bytes` bytes, a
//! send is refused with [`SendError::Backlog`] (HTTP 429) whatever the
//! policy, because a message answered `sent` is never dropped afterwards. A
//! message sent in pieces paces itself on the writer instead (at most 1 MiB
//! of it waits, see `MAX_PENDING`), and sends that arrive meanwhile wait in
//! the queue behind it, under the queue's rules.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::{self, Either};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use feedvisor_transport_api::{close_code, DataFrame, Opcode, Outbound, OutboundSender};

use super::queue::{payload_len, OutboundFill, OutboundQueueError, Queued};
use super::FeedConnection;
use crate::metrics::OutboundDropReason;
use crate::status::FeedState;

/// Sends a text or binary message to the feed's peer (queued while it is down).
#[derive(Debug, Message)]
#[rtype(result = "Result<SendOutcome, SendError>")]
pub(crate) struct SendMessage {
    /// `Outbound::Text` or `Outbound::Binary`.
    pub message: Outbound,
}

/// What became of a message handed to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SendOutcome {
    /// Handed to the open connection.
    Sent,
    /// Waiting for the connection to come back; older messages were dropped to make room.
    Queued {
        /// How many older messages were dropped (`drop_oldest`), usually 0.
        dropped_oldest: usize,
    },
    /// Dropped: the queue was full and its policy is `drop_newest`.
    Dropped,
}

/// Who sends a message in pieces: only the owner's pieces continue it, and
/// only the owner can abandon it, so that a sender refused with
/// [`SendError::Busy`] can never disturb the message under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PiecesOwner(u64);

impl PiecesOwner {
    /// An owner unlike any other in this process.
    pub(crate) fn unique() -> PiecesOwner {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PiecesOwner(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A message being sent in pieces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pieces {
    /// Who sends it.
    owner: PiecesOwner,
    /// The connection generation it started on: it cannot continue on another.
    generation: u64,
}

/// Sends one piece of a large message straight to the open connection.
///
/// Pieces are `Outbound::Fragment`s: the first with `Text` or `Binary`, the
/// rest `Continuation`, the last with `fin`, all from the same `owner`.
/// While such a message is under way, other messages queue behind it. The
/// reply is the connection's writer, so that the caller can wait for it to
/// catch up before the next piece
/// ([`feedvisor_transport_api::OutboundSender::drained_below`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<OutboundSender, SendError>")]
pub(crate) struct SendPiece {
    /// Who sends the message; the same for all its pieces.
    pub owner: PiecesOwner,
    /// The piece.
    pub frame: DataFrame,
}

/// Gives up `owner`'s message sent in pieces: if it is under way, the
/// connection is closed with 1011 (a WebSocket cannot take back half a
/// message) and comes back by its policy. Anything else is left alone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct AbandonPieces {
    /// Whose message; the owner its pieces were sent with.
    pub owner: PiecesOwner,
}

/// Why a message could not be sent or queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The outbound queue refused it (or it is larger than the queue's `max_bytes`).
    #[error(transparent)]
    Queue(#[from] OutboundQueueError),
    /// The feed is open, but its writer has not taken what it was handed
    /// (the peer reads slower than it is sent to): nothing was sent.
    #[error(
        "the feed's peer is not keeping up ({} of {} messages, {} of {} bytes wait to be written): message refused, retry later",
        .0.messages, .0.max_messages, .0.bytes, .0.max_bytes
    )]
    Backlog(OutboundFill),
    /// The feed gave up reconnecting; nothing will be sent.
    #[error("the feed has failed and will not reconnect: nothing can be sent")]
    FeedFailed,
    /// Only text and binary messages can be sent.
    #[error("only text and binary messages can be sent")]
    NotData,
    /// No feed has that name.
    #[error("no feed named {0:?}")]
    UnknownFeed(String),
    /// The feed's actor is gone (the sidecar is shutting down).
    #[error("the feed is shutting down")]
    Unavailable,
    /// A message sent in pieces needs an open connection from start to end.
    #[error("the feed is not connected: a message sent in pieces needs an open connection")]
    NotConnected,
    /// Another message is being sent in pieces on this feed.
    #[error("another message is being sent in pieces on this feed: try again when it is done")]
    Busy,
    /// The connection that took the first pieces is gone; the message is lost.
    #[error("the connection was lost while the message was being sent; it did not arrive whole")]
    Interrupted,
    /// The pieces came in the wrong order (a continuation first, or a second start).
    #[error("pieces out of order: {0}")]
    OutOfOrder(&'static str),
}

impl FeedConnection {
    /// Hands a message to the open connection; false when there is none or it is gone.
    pub(super) fn send_now(&mut self, message: Outbound) -> bool {
        let Some(link) = &self.link else { return false };
        let counted = match &message {
            Outbound::Text(_) | Outbound::Binary(_) => true,
            Outbound::Fragment(frame) => frame.fin,
            _ => false,
        };
        let size = payload_len(&message);
        if link.outbound.send(message).is_err() {
            return false;
        }
        if counted {
            self.metrics.messages_sent.increment(1);
            self.metrics.bytes_sent.increment(size);
        }
        true
    }

    /// Sends the on_open messages, `{{last_seq}}` filled in (0 before any was seen).
    pub(super) fn send_on_open(&mut self) {
        let last_seq = self.last_delivered().unwrap_or(0).to_string();
        for template in self.feed.on_open.clone() {
            let text = self.credentials.fill(template.replace("{{last_seq}}", &last_seq));
            self.send_paced(Outbound::text(text));
        }
    }

    /// Sends what waited in the queue, in order; whatever cannot go now waits again.
    ///
    /// These were accepted already: they go to the writer whatever its backlog.
    pub(super) fn flush_queue(&mut self) {
        if self.pieces.is_some() {
            return;
        }
        if self.paced() {
            self.pump();
            return;
        }
        let waiting: Vec<Outbound> = self.queue.drain().collect();
        let mut waiting = waiting.into_iter();
        for message in waiting.by_ref() {
            if !self.send_now(message.clone()) {
                // The connection went away mid-flush: this one and the rest wait again.
                // They were all in the queue a moment ago, so they all fit.
                for message in std::iter::once(message).chain(waiting.by_ref()) {
                    let _ = self.queue.push(message);
                }
                break;
            }
        }
        self.queue_changed();
    }

    pub(super) fn queue_changed(&self) {
        self.metrics.outbound_queue_depth.set(self.queue.len() as f64);
        self.shared.set_outbound_queued(self.queue.len());
    }

    fn enqueue(&mut self, message: Outbound) -> Result<SendOutcome, SendError> {
        let outcome = match self.queue.push(message) {
            Ok(Queued::Ok) => SendOutcome::Queued { dropped_oldest: 0 },
            Ok(Queued::DroppedOldest(dropped)) => {
                self.metrics.outbound_dropped(OutboundDropReason::DropOldest, dropped as u64);
                SendOutcome::Queued { dropped_oldest: dropped }
            }
            Ok(Queued::DroppedNewest) => {
                self.metrics.outbound_dropped(OutboundDropReason::DropNewest, 1);
                SendOutcome::Dropped
            }
            Err(error) => {
                let reason = match error {
                    OutboundQueueError::Full(_) => OutboundDropReason::QueueFull,
                    OutboundQueueError::TooLarge { .. } => OutboundDropReason::TooLarge,
                };
                self.metrics.outbound_dropped(reason, 1);
                tracing::warn!(feed = %self.name, %error, "outbound message refused");
                return Err(error.into());
            }
        };
        self.queue_changed();
        Ok(outcome)
    }

    /// The open connection's writer, unless there is none or it is gone.
    fn open_writer(&self) -> Option<&OutboundSender> {
        self.link.as_ref().map(|link| &link.outbound).filter(|writer| !writer.is_closed())
    }

    /// Refuses a message of `size` bytes that the writer has no room for:
    /// what it has not taken yet counts against the outbound queue's limits.
    fn admit_to_writer(&self, writer: &OutboundSender, size: u64) -> Result<(), SendError> {
        let limits = &self.feed.outbound_queue;
        let (reason, error) = if size > limits.max_bytes {
            let error = OutboundQueueError::TooLarge { size, max_bytes: limits.max_bytes };
            (OutboundDropReason::TooLarge, error.into())
        } else {
            let fill =
                OutboundFill::of(writer.pending_messages(), writer.pending_bytes() as u64, limits);
            if fill.has_room_for(size) {
                return Ok(());
            }
            (OutboundDropReason::BacklogFull, SendError::Backlog(fill))
        };
        self.metrics.outbound_dropped(reason, 1);
        // Each refusal is answered and counted; a peer that stops reading
        // would otherwise log a line per send.
        tracing::debug!(feed = %self.name, %error, "outbound message refused");
        Err(error)
    }

    /// Ends the message in pieces (finished, lost or abandoned): what queued
    /// behind it goes out now, if the feed is open.
    fn end_pieces(&mut self) {
        self.pieces = None;
        if self.link.is_some() {
            self.flush_queue();
        }
    }
}

impl Handler<SendPiece> for FeedConnection {
    type Result = Result<OutboundSender, SendError>;

    fn handle(&mut self, send: SendPiece, _: &mut Context<Self>) -> Self::Result {
        let SendPiece { owner, frame } = send;
        let starting = frame.opcode != Opcode::Continuation;
        match (starting, self.pieces) {
            (true, Some(_)) => return Err(SendError::Busy),
            (false, None) => return Err(SendError::OutOfOrder("a continuation without a start")),
            (false, Some(pieces)) if pieces.owner != owner => {
                return Err(SendError::OutOfOrder("a continuation of another sender's message"));
            }
            (false, Some(pieces)) if pieces.generation != self.generation => {
                self.end_pieces();
                return Err(SendError::Interrupted);
            }
            (true, None) => {
                if self.shared.state() == FeedState::Failed {
                    return Err(SendError::FeedFailed);
                }
                if self.link.is_none() {
                    return Err(SendError::NotConnected);
                }
                self.pieces = Some(Pieces { owner, generation: self.generation });
            }
            (false, Some(_)) => {}
        }
        let Some(writer) = self.link.as_ref().map(|link| link.outbound.clone()) else {
            self.end_pieces();
            return Err(SendError::Interrupted);
        };
        let fin = frame.fin;
        if !self.send_now(Outbound::Fragment(frame)) {
            self.end_pieces();
            return Err(SendError::Interrupted);
        }
        if fin {
            self.end_pieces();
        }
        Ok(writer)
    }
}

impl Handler<AbandonPieces> for FeedConnection {
    type Result = ();

    fn handle(&mut self, abandon: AbandonPieces, ctx: &mut Context<Self>) {
        // Not (or no longer) this owner's message: nothing to give up.
        let Some(pieces) = self.pieces.filter(|pieces| pieces.owner == abandon.owner) else {
            return;
        };
        if pieces.generation != self.generation {
            // The connection it started on is gone already.
            self.end_pieces();
            return;
        }
        self.pieces = None;
        let reason = "a message sent in pieces was abandoned".to_owned();
        tracing::warn!(feed = %self.name, "{reason}; closing the connection");
        // What queued behind it goes out on the next connection, after on_open.
        self.close_and_reconnect(close_code::INTERNAL_ERROR, reason, ctx);
    }
}

impl Handler<SendMessage> for FeedConnection {
    type Result = Result<SendOutcome, SendError>;

    fn handle(&mut self, send: SendMessage, _: &mut Context<Self>) -> Self::Result {
        if !matches!(send.message, Outbound::Text(_) | Outbound::Binary(_)) {
            return Err(SendError::NotData);
        }
        if self.shared.state() == FeedState::Failed {
            return Err(SendError::FeedFailed);
        }
        // Behind anything still queued, or a message going out in pieces,
        // order is kept by queueing too.
        if self.queue.is_empty() && self.pieces.is_none() {
            if let Some(writer) = self.open_writer() {
                self.admit_to_writer(writer, payload_len(&send.message))?;
                if self.take_place() && self.send_now(send.message.clone()) {
                    return Ok(SendOutcome::Sent);
                }
            }
        }
        let outcome = self.enqueue(send.message)?;
        self.queued_by_pacing();
        Ok(outcome)
    }
}

/// Pieces of a message sent from a stream are at most this large.
const PIECE: usize = 64 * 1024;
/// Sending from a stream waits while the feed's writer holds more than this.
const MAX_PENDING: usize = 1024 * 1024;

/// Abandons its owner's message sent in pieces unless it was finished: a
/// sender that goes away mid-message (its body failed, or its future was
/// dropped: an HTTP client that disconnected) must not leave the feed
/// waiting for the rest. Armed before the first piece is offered, so that a
/// first piece accepted by the actor but never answered is given up too;
/// the owner makes it harmless when the message never started.
struct PiecesGuard {
    actor: Addr<FeedConnection>,
    owner: PiecesOwner,
    finished: bool,
}

impl Drop for PiecesGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.actor.do_send(AbandonPieces { owner: self.owner });
        }
    }
}

/// Sends the bytes of `body` upstream as one binary message, in fragments of
/// at most 64 KiB as they come, waiting for the feed's writer between them,
/// so that a message of any size goes out in bounded memory. Returns the bytes sent.
///
/// If `body` fails, or the returned future is dropped before the end, the
/// message is abandoned: the peer has half of it, so the connection is
/// closed with 1011 and reconnects by its policy.
pub(crate) async fn send_in_pieces<S, E>(
    actor: Addr<FeedConnection>,
    body: S,
) -> Result<u64, SendError>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut body = std::pin::pin!(body);
    super::paced::wait_for_place(&actor).await?;
    let owner = PiecesOwner::unique();
    let mut guard = PiecesGuard { actor: actor.clone(), owner, finished: false };
    let mut sent = 0u64;
    let mut opcode = Opcode::Binary;
    // What the body gave while the writer was being waited for: at most one item.
    let mut early = None;
    loop {
        let item = match early.take() {
            Some(item) => item,
            None => body.next().await,
        };
        let Some(chunk) = item else { break };
        let mut chunk = chunk.map_err(|_| SendError::Interrupted)?;
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(PIECE));
            sent += piece.len() as u64;
            let frame = DataFrame { opcode, fin: false, payload: piece };
            opcode = Opcode::Continuation;
            let piece = SendPiece { owner, frame };
            let writer = actor.send(piece).await.map_err(|_| SendError::Unavailable)??;
            let drained = std::pin::pin!(writer.drained_below(MAX_PENDING));
            if early.is_some() {
                drained.await;
                continue;
            }
            // Watch the body while the writer catches up: a client that goes
            // away while the peer is slow ends the message now, not once the
            // peer has read everything (if it ever does).
            match future::select(drained, body.next()).await {
                Either::Left(((), _)) => {}
                Either::Right((Some(Err(_)), _)) => return Err(SendError::Interrupted),
                Either::Right((item, drained)) => {
                    early = Some(item);
                    drained.await;
                }
            }
        }
    }
    let last = SendPiece { owner, frame: DataFrame { opcode, fin: true, payload: Bytes::new() } };
    actor.send(last).await.map_err(|_| SendError::Unavailable)??;
    guard.finished = true;
    Ok(sent)
}
