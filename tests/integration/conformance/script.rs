//! One conformance case as the hostile upstream plays it: what it answers
//! to the upgrade request, the bytes it writes (whole or in pieces), the
//! points where it waits for the client's next frame, and the transcript of
//! everything the client sent until it closed the socket.

use std::time::Duration;

use feedvisor_test_support::websocket::{
    encode_frame, header_value, opcode, read_request_head, RawWs, FIN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the upstream waits for a frame the script expects the client to
/// send before noting that none came and carrying on. A bound on the test,
/// not a measure of the client: a conforming client answers at once.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// What the upstream answers to the client's upgrade request.
#[derive(Debug, Clone)]
pub(super) enum Handshake {
    /// A correct 101 answer, with these extra header lines (each ending in CRLF).
    Accept(String),
    /// This text instead, with `{accept}` replaced by the right accept key;
    /// then the upstream waits for the client to give up.
    Answer(String),
    /// The status line and one header, then nothing more, ever.
    NeverEnds,
}

/// One step of a case's script.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Writes `bytes` in writes of at most `piece` bytes each.
    Write { bytes: Vec<u8>, piece: usize },
    /// Waits for the client's next frame and notes it in the transcript.
    Read,
}

/// A case: its name, its feed's extra config, the handshake, the script and
/// the whole messages the script carries (what a client would deliver if
/// nothing were wrong), in order.
#[derive(Debug, Clone)]
pub(super) struct Case {
    /// The row's name, `family/what`.
    pub name: String,
    /// Extra TOML lines for the case's feed (e.g. its subprotocols).
    pub feed_options: String,
    pub handshake: Handshake,
    pub steps: Vec<Step>,
    /// Whole messages the script sends, as (is text, payload).
    pub messages: Vec<(bool, Vec<u8>)>,
    /// Ping payloads the script sends, in order, to match the pongs against.
    pub pings: Vec<Vec<u8>>,
}

impl Case {
    pub(super) fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            feed_options: String::new(),
            handshake: Handshake::Accept(String::new()),
            steps: Vec::new(),
            messages: Vec::new(),
            pings: Vec::new(),
        }
    }

    /// Writes `bytes` in one write.
    pub(super) fn write(self, bytes: Vec<u8>) -> Case {
        self.write_in(bytes, usize::MAX)
    }

    /// Writes `bytes` in writes of at most `piece` bytes.
    pub(super) fn write_in(mut self, bytes: Vec<u8>, piece: usize) -> Case {
        self.steps.push(Step::Write { bytes, piece: piece.max(1) });
        self
    }

    /// Waits for the client's next frame.
    pub(super) fn read(mut self) -> Case {
        self.steps.push(Step::Read);
        self
    }

    /// Notes a whole message the script sends.
    pub(super) fn carries(mut self, text: bool, payload: &[u8]) -> Case {
        self.messages.push((text, payload.to_vec()));
        self
    }

    /// Writes a ping and notes its payload.
    pub(super) fn ping(mut self, payload: &[u8]) -> Case {
        self.pings.push(payload.to_vec());
        self.write(encode_frame(FIN | opcode::PING, payload))
    }

    /// Writes a close frame with `payload`.
    pub(super) fn close(self, payload: &[u8]) -> Case {
        self.write(encode_frame(FIN | opcode::CLOSE, payload))
    }

    pub(super) fn handshake(mut self, handshake: Handshake) -> Case {
        self.handshake = handshake;
        self
    }

    pub(super) fn feed_options(mut self, options: &str) -> Case {
        self.feed_options = options.to_owned();
        self
    }
}

/// What the client sent on the case's connection, in order.
#[derive(Debug, Default, Clone)]
pub(super) struct Transcript {
    /// The client's frames: (opcode, payload).
    pub frames: Vec<(u8, Vec<u8>)>,
    /// Whether the upstream wrote a close frame before the client sent one.
    pub upstream_closed_first: bool,
    /// Whether the upgrade was answered with a good 101.
    pub upgraded: bool,
    /// Expected frames that did not come within [`REPLY_WAIT`].
    pub missing_replies: usize,
    /// Whether the client closed the socket (rather than the upstream giving up on it).
    pub eof: bool,
}

impl Transcript {
    fn client_closed(&self) -> bool {
        self.frames.iter().any(|(code, _)| *code == opcode::CLOSE)
    }
}

/// Plays `case` on `socket`: the handshake, the steps, then reads until the
/// client closes the socket, echoing its close frame if it sent the first one.
pub(super) async fn play(case: &Case, mut socket: TcpStream) -> Transcript {
    let _ = socket.set_nodelay(true);
    let mut transcript = Transcript::default();
    let mut peer = match &case.handshake {
        Handshake::Accept(extra) => match RawWs::accept_with(socket, extra, b"").await {
            Ok((peer, _)) => peer,
            Err(_) => return transcript,
        },
        Handshake::Answer(text) => {
            answer_then_drain(&mut socket, Some(text)).await;
            transcript.eof = true;
            return transcript;
        }
        Handshake::NeverEnds => {
            answer_then_drain(&mut socket, None).await;
            transcript.eof = true;
            return transcript;
        }
    };
    transcript.upgraded = true;
    for step in &case.steps {
        match step {
            Step::Write { bytes, piece } => {
                if is_close(bytes) && !transcript.client_closed() {
                    transcript.upstream_closed_first = true;
                }
                for chunk in bytes.chunks(*piece) {
                    if peer.write_raw(chunk).await.is_err() {
                        break;
                    }
                }
                // An empty write (a zero-length piece list) writes nothing.
            }
            Step::Read => match tokio::time::timeout(REPLY_WAIT, peer.read_frame()).await {
                Ok(Ok(Some(frame))) => transcript.frames.push((frame.opcode, frame.payload)),
                Ok(_) => {
                    transcript.eof = true;
                    return transcript;
                }
                Err(_) => transcript.missing_replies += 1,
            },
        }
    }
    // The rest: every frame until the client closes the socket; its close
    // frame is echoed when it sent the first one.
    while let Ok(Some(frame)) = peer.read_frame().await {
        let close = frame.opcode == opcode::CLOSE;
        let echo = close && !transcript.upstream_closed_first && !transcript.client_closed();
        transcript.frames.push((frame.opcode, frame.payload.clone()));
        if echo {
            let code = frame.payload.get(..2).unwrap_or_default();
            let _ = peer.write_raw(&encode_frame(FIN | opcode::CLOSE, code)).await;
        }
    }
    transcript.eof = true;
    transcript
}

/// True when `bytes` starts with a close frame.
fn is_close(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|first| first & 0x0F == opcode::CLOSE)
}

/// Reads the upgrade request, writes `answer` (with `{accept}` filled in) or
/// the first lines of an answer that never ends, then reads until the client
/// gives up and closes.
async fn answer_then_drain(socket: &mut TcpStream, answer: Option<&str>) {
    let Ok((head, _)) = read_request_head(socket).await else { return };
    let key = header_value(&head, "sec-websocket-key").unwrap_or_default();
    let text = match answer {
        Some(answer) => {
            answer.replace("{accept}", &feedvisor_test_support::websocket::accept_key(key))
        }
        None => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n".to_owned(),
    };
    if socket.write_all(text.as_bytes()).await.is_err() {
        return;
    }
    let mut buffer = [0u8; 4096];
    while matches!(socket.read(&mut buffer).await, Ok(read) if read > 0) {}
}
