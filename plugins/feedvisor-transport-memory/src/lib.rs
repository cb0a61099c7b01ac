//! An in-memory transport that tests drive frame by frame.
//!
//! A test creates a [`MemoryHub`], registers [`MemoryTransport`] for the
//! `memory` scheme and listens on a name; a connection actor that connects to
//! `memory://NAME` then shows up as a [`MemoryPeer`] on the listener, through
//! which the test sends events and reads what the actor sent. It behaves like
//! a real transport: it validates UTF-8 in text frames, answers pings and
//! close frames itself, and honours the delivery mode. In message mode it
//! hands frames over whole and refuses those over the frame size limit; in
//! stream mode (`DeliveryMode::Stream`) it accepts frames of any length and
//! hands them over in pieces of at most `chunk_size` bytes (the first with
//! the frame's opcode, the rest `Continuation`s, only the last with its
//! `fin`), in batches of at most `chunk_size` bytes of data. A batch the
//! peer sends is what one read of a network transport would return.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::stream::{Stream, StreamExt};
use futures_util::FutureExt;

use feedvisor_transport_api::{
    close_code, outbound_channel, CloseFrame, ConnectFuture, ConnectRequest, Connection, DataFrame,
    DeliveryMode, Event, FeedOptions, Opcode, OptionProblem, Outbound, OutboundReceiver, Transport,
    TransportError,
};
use feedvisor_transport_kit::Utf8Validator;

/// The scheme this transport serves.
pub const SCHEME: &str = "memory";

/// Shared state: who listens on which name, and scripted connect failures.
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<Mutex<HubState>>,
}

#[derive(Default)]
struct HubState {
    /// Where new connections to each name are handed to the test.
    listeners: HashMap<String, mpsc::UnboundedSender<MemoryPeer>>,
    /// Errors the next connects to each name fail with, in order.
    failures: HashMap<String, VecDeque<TransportError>>,
    /// Connect attempts per name, successful or not.
    attempts: HashMap<String, u64>,
    /// How many of the next connects to each name never finish (a peer that accepts TCP and then says nothing).
    stalls: HashMap<String, u32>,
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A test that panicked while holding the lock poisons it; the state is still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Accepts connections to `memory://NAME` from now on.
    pub fn listen(&self, name: &str) -> MemoryListener {
        let (sender, receiver) = mpsc::unbounded();
        self.state().listeners.insert(name.to_owned(), sender);
        MemoryListener { receiver }
    }

    /// Makes the next connect to `name` fail with `error` (queued: call again for more).
    pub fn fail_next(&self, name: &str, error: TransportError) {
        self.state().failures.entry(name.to_owned()).or_default().push_back(error);
    }

    /// Makes the next connect to `name` hang forever, as a peer that never answers the handshake.
    pub fn stall_next(&self, name: &str) {
        *self.state().stalls.entry(name.to_owned()).or_default() += 1;
    }

    /// How many connects to `name` were attempted so far.
    pub fn attempts(&self, name: &str) -> u64 {
        self.state().attempts.get(name).copied().unwrap_or(0)
    }

    /// `None` when this connect was told to stall.
    fn connect(&self, request: &ConnectRequest) -> Option<Result<Connection, TransportError>> {
        let name = request.url.host_str().unwrap_or_default().to_owned();
        let mut state = self.state();
        *state.attempts.entry(name.clone()).or_default() += 1;
        if let Some(stalls) = state.stalls.get_mut(&name).filter(|stalls| **stalls > 0) {
            *stalls -= 1;
            return None;
        }
        Some(self.open(&mut state, name, request))
    }

    fn open(
        &self,
        state: &mut HubState,
        name: String,
        request: &ConnectRequest,
    ) -> Result<Connection, TransportError> {
        if let Some(error) = state.failures.get_mut(&name).and_then(VecDeque::pop_front) {
            return Err(error);
        }
        let refused = || TransportError::Refused { addr: format!("{SCHEME}://{name}") };
        let listener = state.listeners.get(&name).ok_or_else(refused)?;
        let (inbound_sender, inbound_receiver) = mpsc::unbounded();
        let (outbound, outbound_receiver) = outbound_channel();
        let (echo_sender, echo_receiver) = mpsc::unbounded();
        let peer = MemoryPeer {
            inbound: inbound_sender,
            outbound: outbound_receiver,
            replies: echo_receiver,
            request: request.clone(),
        };
        listener.unbounded_send(peer).map_err(|_| refused())?;
        let protocol = request.subprotocols.first().cloned();
        let inbound = MemoryInbound::new(inbound_receiver, echo_sender, request);
        Ok(Connection { inbound: inbound.boxed_local(), outbound, protocol })
    }
}

/// Connections to one name, as they arrive.
pub struct MemoryListener {
    receiver: mpsc::UnboundedReceiver<MemoryPeer>,
}

impl MemoryListener {
    /// Waits for the next connection.
    pub async fn accept(&mut self) -> Option<MemoryPeer> {
        self.receiver.next().await
    }
}

/// The test's end of one connection.
pub struct MemoryPeer {
    /// Batches (or an error) for the connection's inbound stream.
    inbound: mpsc::UnboundedSender<Result<Vec<Event>, TransportError>>,
    /// What the connection actor sent.
    outbound: OutboundReceiver,
    /// What the transport answered on its own (pongs, close replies).
    replies: mpsc::UnboundedReceiver<Outbound>,
    /// The request the connection was opened with.
    request: ConnectRequest,
}

impl MemoryPeer {
    /// The request this connection was opened with (headers, subprotocols, limits).
    pub fn request(&self) -> &ConnectRequest {
        &self.request
    }

    /// Sends one event as a batch of its own; false once the connection is gone.
    pub fn send(&self, event: Event) -> bool {
        self.send_batch(vec![event])
    }

    /// Sends several events as one batch, as a network read would deliver them.
    pub fn send_batch(&self, events: Vec<Event>) -> bool {
        self.inbound.unbounded_send(Ok(events)).is_ok()
    }

    /// Sends a complete text message in one frame.
    pub fn send_text(&self, text: &str) -> bool {
        self.send(Event::Data(DataFrame::text(Bytes::copy_from_slice(text.as_bytes()))))
    }

    /// Sends one data frame.
    pub fn send_frame(&self, opcode: Opcode, fin: bool, payload: impl Into<Bytes>) -> bool {
        self.send(Event::Data(DataFrame { opcode, fin, payload: payload.into() }))
    }

    /// Sends a close frame from the peer.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        self.send(Event::Close(Some(CloseFrame::new(code, reason))))
    }

    /// Ends the connection with a transport error (a reset, a timeout, ...).
    pub fn fail(&self, error: TransportError) -> bool {
        self.inbound.unbounded_send(Err(error)).is_ok()
    }

    /// The next message the connection actor sent, or `None` once it is gone.
    pub async fn next_outbound(&mut self) -> Option<Outbound> {
        self.outbound.next().await
    }

    /// The next message the transport sent on its own (a pong, a close reply).
    pub async fn next_reply(&mut self) -> Option<Outbound> {
        self.replies.next().await
    }
}

/// The connection actor's end of the inbound side.
struct MemoryInbound {
    receiver: mpsc::UnboundedReceiver<Result<Vec<Event>, TransportError>>,
    /// Where automatic replies go.
    replies: mpsc::UnboundedSender<Outbound>,
    /// Whole frames under `max_frame_size`, or pieces of frames of any length.
    mode: DeliveryMode,
    /// The largest frame accepted in message mode.
    max_frame_size: usize,
    /// UTF-8 state of the text message being received, if one is open.
    text: Option<Utf8Validator>,
    /// What the peer's last batch holds that was not handed over yet: in
    /// stream mode a batch stops at `chunk_size` bytes of data, and the rest
    /// of a frame cut into pieces waits at the front as a continuation. The
    /// peer's next batch is read only once this is empty, so it holds one
    /// peer batch at most.
    unsent: VecDeque<Event>,
    /// An error found while a batch was being made, yielded after that batch.
    failed: Option<TransportError>,
    /// Set once the stream yielded its last item (or the error that follows it is in `failed`).
    done: bool,
}

impl MemoryInbound {
    fn new(
        receiver: mpsc::UnboundedReceiver<Result<Vec<Event>, TransportError>>,
        replies: mpsc::UnboundedSender<Outbound>,
        request: &ConnectRequest,
    ) -> Self {
        MemoryInbound {
            receiver,
            replies,
            mode: request.mode,
            max_frame_size: request.max_frame_size,
            text: None,
            unsent: VecDeque::new(),
            failed: None,
            done: false,
        }
    }

    /// The largest piece handed over, which is also the most data a batch
    /// holds: `chunk_size` in stream mode, unbounded in message mode (whole
    /// frames, the peer's batch as it sent it).
    fn piece_limit(&self) -> usize {
        match self.mode {
            DeliveryMode::Message => usize::MAX,
            DeliveryMode::Stream { chunk_size } => chunk_size.max(1),
        }
    }

    /// The next batch from `unsent`, with the transport's duties applied to
    /// each event; a batch ends at a close, at an error (yielded after the
    /// events before it) or, in stream mode, before a piece that would take
    /// its data over `chunk_size`.
    fn next_batch(&mut self) -> Result<Vec<Event>, TransportError> {
        let piece_limit = self.piece_limit();
        let mut batch = Vec::with_capacity(self.unsent.len());
        let mut data_len = 0usize;
        while let Some(event) = self.next_piece(piece_limit, data_len) {
            if let Err(error) = self.check(&event) {
                self.unsent.clear();
                if batch.is_empty() {
                    return Err(error);
                }
                self.failed = Some(error);
                break;
            }
            if let Event::Data(frame) = &event {
                data_len = data_len.saturating_add(frame.payload.len());
            }
            let closed = matches!(event, Event::Close(_));
            batch.push(event);
            if closed {
                // Nothing is read after the peer's close.
                self.unsent.clear();
                break;
            }
        }
        Ok(batch)
    }

    /// The next event of `unsent`, a data frame cut to at most `piece_limit`
    /// bytes: the first piece keeps the frame's opcode, the rest goes back to
    /// the front as a `Continuation` that carries the frame's `fin`. `None`
    /// when nothing is left, or when the batch already holds `batch_data`
    /// bytes and the next piece would take it over `piece_limit`.
    fn next_piece(&mut self, piece_limit: usize, batch_data: usize) -> Option<Event> {
        let event = self.unsent.pop_front()?;
        let Event::Data(mut frame) = event else {
            return Some(event);
        };
        let piece_len = frame.payload.len().min(piece_limit);
        if batch_data > 0 && batch_data.saturating_add(piece_len) > piece_limit {
            self.unsent.push_front(Event::Data(frame));
            return None;
        }
        if piece_len < frame.payload.len() {
            let rest = frame.payload.split_off(piece_len);
            let fin = std::mem::replace(&mut frame.fin, false);
            let rest = DataFrame { opcode: Opcode::Continuation, fin, payload: rest };
            self.unsent.push_front(Event::Data(rest));
        }
        Some(Event::Data(frame))
    }

    /// Applies the transport's duties to one event; an error ends the connection.
    fn check(&mut self, event: &Event) -> Result<(), TransportError> {
        match event {
            Event::Data(frame) => self.check_frame(frame)?,
            Event::Ping(payload) => {
                let _ = self.replies.unbounded_send(Outbound::Pong(payload.clone()));
            }
            Event::Close(frame) => {
                let code = frame.as_ref().map_or(close_code::NORMAL, |f| f.code);
                let reply = Outbound::Close(Some(CloseFrame::new(code, "")));
                let _ = self.replies.unbounded_send(reply);
                self.done = true;
            }
            Event::Pong(_) => {}
        }
        Ok(())
    }

    /// Checks a frame (a piece in stream mode): its size in message mode, and UTF-8 in text.
    fn check_frame(&mut self, frame: &DataFrame) -> Result<(), TransportError> {
        if self.mode == DeliveryMode::Message && frame.payload.len() > self.max_frame_size {
            self.refuse(close_code::MESSAGE_TOO_BIG);
            return Err(TransportError::FrameTooLarge {
                announced: frame.payload.len() as u64,
                limit: self.max_frame_size,
            });
        }
        let validator = match frame.opcode {
            Opcode::Text => Some(self.text.insert(Utf8Validator::new())),
            Opcode::Continuation => self.text.as_mut(),
            Opcode::Binary => None,
        };
        if let Some(validator) = validator {
            if !validator.push(&frame.payload, frame.fin) {
                self.refuse(close_code::INVALID_PAYLOAD);
                return Err(TransportError::Protocol {
                    close_code: close_code::INVALID_PAYLOAD,
                    reason: "invalid UTF-8 in a text message".to_owned(),
                });
            }
        }
        if frame.fin {
            self.text = None;
        }
        Ok(())
    }

    fn refuse(&mut self, code: u16) {
        let _ = self.replies.unbounded_send(Outbound::Close(Some(CloseFrame::new(code, ""))));
        self.done = true;
    }
}

impl Stream for MemoryInbound {
    type Item = Result<Vec<Event>, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        if self.unsent.is_empty() {
            match self.receiver.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(events))) => self.unsent.extend(events),
                Poll::Ready(Some(Err(error))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(TransportError::Io("peer went away".to_owned()))));
                }
            }
        }
        Poll::Ready(Some(self.next_batch()))
    }
}

/// The in-memory transport for the `memory` scheme.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    hub: MemoryHub,
}

impl MemoryTransport {
    /// A transport whose connections go to `hub`'s listeners.
    pub fn new(hub: MemoryHub) -> Self {
        MemoryTransport { hub }
    }
}

impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &[SCHEME]
    }

    /// `memory://NAME` names a listener; there is no byte stream to frame and no TLS.
    fn check(&self, feed: &FeedOptions<'_>) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if feed.url.host_str().is_none_or(str::is_empty) {
            problems.push(OptionProblem::new(
                "url",
                "a memory:// URL names a listener, such as \"memory://ticks\"",
            ));
        }
        if feed.framing.is_some() {
            problems.push(OptionProblem::new("framing", "not used by memory:// feeds"));
        }
        if feed.tls.ca_file.is_some() {
            problems.push(OptionProblem::new("tls.ca_file", "not used by memory:// feeds"));
        }
        problems
    }

    fn connect(&self, request: ConnectRequest) -> ConnectFuture {
        match self.hub.connect(&request) {
            Some(result) => async move { result }.boxed_local(),
            None => futures_util::future::pending().boxed_local(),
        }
    }
}

#[cfg(test)]
mod tests;
