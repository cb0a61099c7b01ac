//! WebSocket by hand, the server's side (RFC 6455): frame encoders, the
//! `Sec-WebSocket-Accept` derivation, and [`RawWs`], a peer that upgrades a
//! socket itself and then reads and writes frame bytes, so that a test can
//! send what no WebSocket library would.

use std::io;

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;

/// WebSocket opcodes (the low four bits of a frame's first byte).
pub mod opcode {
    /// A later frame of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// The first frame of a text message.
    pub const TEXT: u8 = 0x1;
    /// The first frame of a binary message.
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping.
    pub const PING: u8 = 0x9;
    /// A pong.
    pub const PONG: u8 = 0xA;
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: the base64 of the
/// SHA-1 of the key followed by the RFC's GUID (section 4.2.2).
pub fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = Sha1::new().chain_update(key.as_bytes()).chain_update(GUID).finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The header of an unmasked frame (as a server sends it) whose first byte
/// is `first_byte` (FIN, reserved bits and opcode as given) announcing `len`
/// payload bytes, in the shortest length encoding.
pub fn frame_header(first_byte: u8, len: u64) -> Vec<u8> {
    let mut header = vec![first_byte];
    match len {
        0..=125 => header.push(len as u8),
        126..=0xFFFF => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&len.to_be_bytes());
        }
    }
    header
}

/// A whole unmasked frame: [`frame_header`] and the payload, as sent on the wire.
pub fn encode_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = frame_header(first_byte, payload.len() as u64);
    frame.extend_from_slice(payload);
    frame
}

/// A close frame's payload: the code, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Reads an HTTP request (or response) head up to its blank line; returns
/// it as text and any bytes read past it.
pub async fn read_request_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The value of header `name` (case-insensitive) in a request head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// One frame as a [`RawWs`] read it from the client (unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// True on the last frame of a message.
    pub fin: bool,
    /// See [`opcode`].
    pub opcode: u8,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The first byte of the frame on the wire (FIN and opcode; client frames carry no reserved bits).
    pub fn first_byte(&self) -> u8 {
        if self.fin {
            FIN | self.opcode
        } else {
            self.opcode
        }
    }

    /// The close code of a close frame, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        let code = self.payload.get(..2)?;
        (self.opcode == opcode::CLOSE).then(|| u16::from_be_bytes([code[0], code[1]]))
    }
}

/// Parses one masked client frame from the front of `buffer`: the frame and
/// the bytes it took, `None` while it is incomplete, an error for an
/// unmasked frame (RFC 6455 section 5.1).
pub fn parse_client_frame(buffer: &[u8]) -> io::Result<Option<(RawFrame, usize)>> {
    if buffer.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode, masked) = (buffer[0] & FIN != 0, buffer[0] & 0x0F, buffer[1] & 0x80 != 0);
    let (len, mut at) = match buffer[1] & 0x7F {
        126 if buffer.len() >= 4 => (u64::from(u16::from_be_bytes([buffer[2], buffer[3]])), 4),
        127 if buffer.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buffer[2..10]);
            (u64::from_be_bytes(bytes), 10)
        }
        126 | 127 => return Ok(None),
        len => (u64::from(len), 2),
    };
    if !masked {
        let error = "a client frame without a mask";
        return Err(io::Error::new(io::ErrorKind::InvalidData, error));
    }
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a frame longer than memory"))?;
    if buffer.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]];
    at += 4;
    let payload =
        buffer[at..at + len].iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]).collect();
    Ok(Some((RawFrame { fin, opcode, payload }, at + len)))
}

/// The server side of a WebSocket connection over `S` (a TCP or TLS
/// stream), framed by hand.
pub struct RawWs<S = TcpStream> {
    /// The stream, for writing bytes no frame encoder would.
    pub socket: S,
    /// Bytes read but not yet parsed.
    buffer: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawWs<S> {
    /// Reads the upgrade request and answers 101 with the right accept key.
    pub async fn accept(socket: S) -> io::Result<RawWs<S>> {
        let (ws, _head) = RawWs::accept_with(socket, "", b"").await?;
        Ok(ws)
    }

    /// Reads the upgrade request and answers 101 plus `extra_headers` (each
    /// ending in CRLF), followed by `then` in the same write; returns the
    /// peer and the request head.
    pub async fn accept_with(
        mut socket: S,
        extra_headers: &str,
        then: &[u8],
    ) -> io::Result<(RawWs<S>, String)> {
        let (head, rest) = read_request_head(&mut socket).await?;
        let key = header_value(&head, "sec-websocket-key").ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key in the request")
        })?;
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extra_headers}\r\n",
            accept_key(key)
        )
        .into_bytes();
        answer.extend_from_slice(then);
        socket.write_all(&answer).await?;
        Ok((RawWs { socket, buffer: rest }, head))
    }

    /// Writes bytes as they are (one or several encoded frames).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.socket.write_all(bytes).await
    }

    /// Sends one final text frame.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.write_raw(&encode_frame(FIN | opcode::TEXT, text.as_bytes())).await
    }

    /// Reads the next frame (unmasking it); `None` at the end of the stream.
    pub async fn read_frame(&mut self) -> io::Result<Option<RawFrame>> {
        loop {
            if let Some((frame, taken)) = parse_client_frame(&self.buffer)? {
                self.buffer.drain(..taken);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 4096];
            let read = self.socket.read(&mut chunk).await?;
            if read == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Serves like a healthy peer until the connection ends: answers pings
    /// with pongs and a close with a close, and hands text messages to `inbound`.
    pub async fn serve(&mut self, inbound: Option<&mpsc::UnboundedSender<String>>) {
        while let Ok(Some(frame)) = self.read_frame().await {
            match self.answer(frame).await {
                Answered::Text(text) => {
                    if let Some(inbound) = inbound {
                        let _ = inbound.send(text);
                    }
                }
                Answered::Done => return,
                Answered::Other => {}
            }
        }
    }

    /// Does what a healthy peer does with `frame`: a ping is answered with
    /// a pong, a close with a close (and the stream shut down); a text
    /// message is handed back.
    pub async fn answer(&mut self, frame: RawFrame) -> Answered {
        match frame.opcode {
            opcode::PING => {
                let pong = encode_frame(FIN | opcode::PONG, &frame.payload);
                match self.write_raw(&pong).await {
                    Ok(()) => Answered::Other,
                    Err(_) => Answered::Done,
                }
            }
            opcode::CLOSE => {
                let code = frame.payload.get(..2).unwrap_or_default().to_vec();
                let _ = self.write_raw(&encode_frame(FIN | opcode::CLOSE, &code)).await;
                let _ = self.socket.shutdown().await;
                Answered::Done
            }
            opcode::TEXT => Answered::Text(String::from_utf8_lossy(&frame.payload).into_owned()),
            _ => Answered::Other,
        }
    }
}

/// What [`RawWs::answer`] made of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// A text message, for the caller.
    Text(String),
    /// The connection is over (closed, or the pong could not be written).
    Done,
    /// Anything else, answered or ignored.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_the_one_rfc_6455_gives_for_its_sample_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn lengths_take_the_shortest_encoding() {
        assert_eq!(frame_header(FIN | opcode::TEXT, 125), vec![0x81, 125]);
        assert_eq!(frame_header(opcode::BINARY, 126), vec![0x02, 126, 0, 126]);
        assert_eq!(
            frame_header(FIN | opcode::BINARY, 0x1_0000),
            [vec![0x82, 127], 0x1_0000u64.to_be_bytes().to_vec()].concat()
        );
        assert_eq!(
            encode_frame(FIN | opcode::CLOSE, &close_payload(1000, "ok")),
            vec![0x88, 4, 0x03, 0xE8, b'o', b'k']
        );
    }

    #[test]
    fn a_masked_client_frame_parses_once_whole_and_an_unmasked_one_is_refused() {
        let mask = [1u8, 2, 3, 4];
        let payload: Vec<u8> =
            b"hello".iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]).collect();
        let wire = [vec![0x81, 0x80 | 5], mask.to_vec(), payload].concat();
        assert!(parse_client_frame(&wire[..wire.len() - 1]).expect("valid so far").is_none());
        let (frame, taken) = parse_client_frame(&wire).expect("valid").expect("whole");
        assert_eq!(
            (frame.first_byte(), frame.payload.as_slice(), taken),
            (0x81, &b"hello"[..], wire.len())
        );
        assert!(parse_client_frame(&encode_frame(0x81, b"hello")).is_err());
    }
}
