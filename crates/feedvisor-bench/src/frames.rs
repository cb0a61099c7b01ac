//! The blaster's side of the wire: pre-encoded server frames, the send
//! stamp in the first frame of each batch, and the WebSocket handshake the
//! in-process upstreams (the blaster, and those of feeds and stream) answer.
//!
//! A stamp is `T` and 16 lower-case hex digits at the start of a payload:
//! the send time in nanoseconds since an instant that the blaster and the
//! client share. The rest of every payload is `x`, so that payloads are
//! valid text whatever their size, and a payload that does not start with
//! `T` carries no stamp; a client reads one byte to know.

use std::io;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of a payload that a stamp takes: `T` and 16 hex digits.
pub const STAMP_LEN: usize = 17;

/// The smallest message size the blaster sends (room for a stamp).
pub const MIN_SIZE: usize = STAMP_LEN;

/// The close frame that ends every connection: code 1000, no reason.
pub const CLOSE_FRAME: [u8; 4] = [0x88, 0x02, 0x03, 0xE8];

/// The header length of a server frame with `size` payload bytes.
fn header_len(size: usize) -> usize {
    match size {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    }
}

/// Bytes on the wire of a server frame with `size` payload bytes.
pub fn frame_len(size: usize) -> usize {
    header_len(size) + size
}

/// The header of an unmasked server frame: `first_byte` (FIN, reserved
/// bits, opcode), then the shortest length encoding for `size`.
pub fn frame_header(first_byte: u8, size: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(header_len(size));
    header.push(first_byte);
    match header_len(size) {
        2 => header.push(size as u8),
        4 => {
            header.push(126);
            header.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    header
}

/// A batch of identical pre-encoded text frames; the first one carries the stamp.
pub struct Frames {
    /// The encoded frames, back to back.
    bytes: Vec<u8>,
    /// Bytes per frame.
    frame_len: usize,
    /// Where the first frame's payload starts.
    payload_start: usize,
}

impl Frames {
    /// `count` unmasked text frames of `size` bytes of `x` each.
    pub fn new(size: usize, count: usize) -> Frames {
        let mut frame = Vec::with_capacity(frame_len(size));
        frame.extend(frame_header(0x81, size));
        let payload_start = frame.len();
        frame.resize(payload_start + size, b'x');
        Frames { bytes: frame.repeat(count.max(1)), frame_len: frame.len(), payload_start }
    }

    /// Frames in the batch.
    pub fn count(&self) -> usize {
        self.bytes.len() / self.frame_len
    }

    /// Puts `stamp` into the first frame (needs a payload of at least [`STAMP_LEN`]).
    pub fn stamp(&mut self, stamp: u64) {
        let payload = &mut self.bytes[self.payload_start..self.payload_start + STAMP_LEN];
        payload[0] = b'T';
        for (digit, byte) in payload[1..].iter_mut().enumerate() {
            let nibble = (stamp >> (60 - 4 * digit)) & 0xF;
            *byte = b"0123456789abcdef"[nibble as usize];
        }
    }

    /// The first `count` frames (at most all of them).
    pub fn first(&self, count: usize) -> &[u8] {
        &self.bytes[..count.min(self.count()) * self.frame_len]
    }
}

/// Nanoseconds from `base` to now.
pub fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The send time in a stamped payload (`T` and 16 hex digits, nanoseconds
/// since the shared base); `None` for a payload without a stamp.
pub fn parse_stamp(payload: &[u8]) -> Option<u64> {
    if payload.first() != Some(&b'T') || payload.len() < STAMP_LEN {
        return None;
    }
    payload[1..STAMP_LEN].iter().try_fold(0u64, |stamp, byte| {
        let digit = (*byte as char).to_digit(16)?;
        Some(stamp << 4 | u64::from(digit))
    })
}

/// The longest handshake request the in-process upstreams read.
const MAX_REQUEST: usize = 16 * 1024;

/// Reads a WebSocket upgrade request and answers it with the accept key and nothing else.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 2048];
    let end = loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the handshake",
            ));
        }
        request.extend_from_slice(&buffer[..read]);
        if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if request.len() > MAX_REQUEST {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "handshake request too long"));
        }
    };
    if end + 4 != request.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "data after the handshake request"));
    }
    let accept = accept_key(&request[..end])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// The `Sec-WebSocket-Accept` answer to a request head, from its
/// `Sec-WebSocket-Key`; `None` when the head has no key.
pub fn accept_key(head: &[u8]) -> Option<String> {
    let key = websocket_key(head)?;
    Some(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The `Sec-WebSocket-Key` of a request head.
fn websocket_key(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_shortest_header_for_their_size() {
        let small = Frames::new(64, 3);
        assert_eq!(small.count(), 3);
        assert_eq!(&small.first(1)[..2], &[0x81, 64]);
        assert_eq!(small.first(2).len(), 2 * 66);
        let medium = Frames::new(512, 1);
        assert_eq!(&medium.first(1)[..4], &[0x81, 126, 0x02, 0x00]);
        assert_eq!(medium.first(9).len(), 516);
        let large = Frames::new(70_000, 1);
        assert_eq!(&large.first(1)[..2], &[0x81, 127]);
        assert_eq!(large.first(1).len(), 70_010);
    }

    #[test]
    fn only_the_first_frame_carries_the_stamp() {
        let mut frames = Frames::new(64, 2);
        frames.stamp(0x0123_4567_89ab_cdef);
        let bytes = frames.first(2);
        assert_eq!(parse_stamp(&bytes[2..66]), Some(0x0123_4567_89ab_cdef));
        assert_eq!(parse_stamp(&bytes[68..]), None);
        assert!(std::str::from_utf8(&bytes[2..66]).is_ok(), "payloads stay valid text");
        frames.stamp(7);
        assert_eq!(parse_stamp(&frames.first(1)[2..]), Some(7));
    }

    #[test]
    fn stamps_must_be_whole() {
        assert_eq!(parse_stamp(b"T00000000000000ff"), Some(255));
        assert_eq!(parse_stamp(b"T00000000000000f"), None);
        assert_eq!(parse_stamp(b"T0000000000000g0f"), None);
        assert_eq!(parse_stamp(b"xxxxxxxxxxxxxxxxxx"), None);
        assert_eq!(parse_stamp(b""), None);
    }

    #[test]
    fn the_key_header_is_found_in_any_case() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nsec-websocket-KEY:  dGhlIHNhbXBsZSBub25jZQ== ";
        assert_eq!(websocket_key(head).as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(websocket_key(b"GET / HTTP/1.1\r\nHost: x"), None);
    }
}
