//! Stream mode against a raw peer: a 64 MiB frame in pieces, and a consumer
//! that stops reading slowing the peer down through TCP.
//!
//! The payload is a pseudo-random pattern that both sides compute from the
//! offset, so the peer writes it slice by slice and the client checks each
//! piece where it lands, without either side holding the whole frame.

use std::time::Duration;

use bytes::Bytes;
use feedvisor_test_support::websocket::{frame_header, FIN};
use feedvisor_transport_api::{Connection, DataFrame, DeliveryMode, Event, Opcode, Transport};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::codec::probe;
use crate::WebSocketTransport;

/// The largest piece the client asks for.
const CHUNK: usize = 64 * 1024;

/// The length of the one frame the peer sends.
const FRAME_LEN: u64 = 64 << 20;

/// How much of the pattern the peer writes at a time.
const SLICE: usize = 256 * 1024;

/// How long a peer's write may wait before the socket counts as full.
const STALL: Duration = Duration::from_millis(300);

/// One step of SplitMix64: a well-mixed word from a counter.
fn splitmix64(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `len` bytes of the pattern that start at `offset`.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    let first_word = offset / 8;
    let end_word = (offset + len as u64).div_ceil(8);
    let mut words = Vec::with_capacity(((end_word - first_word) * 8) as usize);
    for word in first_word..end_word {
        words.extend_from_slice(&splitmix64(word).to_le_bytes());
    }
    let skip = (offset % 8) as usize;
    words.drain(..skip);
    words.truncate(len);
    words
}

/// Writes the frame's payload from `offset` to its end, a slice at a time,
/// then a close frame.
async fn write_rest(stream: &mut RawWs, mut offset: u64) {
    while offset < FRAME_LEN {
        let len = SLICE.min((FRAME_LEN - offset) as usize);
        stream.write_raw(&pattern(offset, len)).await.expect("write payload");
        offset += len as u64;
    }
    stream.write_raw(&encode_frame(0x88, &close_payload(1000, ""))).await.expect("write close");
}

/// Connects in stream mode with pieces of [`CHUNK`] bytes to a raw peer.
async fn open_streaming() -> (RawWs, Connection) {
    let (listener, url) = listen().await;
    let mut request = request(&url);
    request.mode = DeliveryMode::Stream { chunk_size: CHUNK };
    let server = accept_upgrade(&listener, "", b"");
    let client = WebSocketTransport::new().connect(request);
    let ((stream, _), connection) = tokio::join!(server, client);
    (stream, connection.expect("connected"))
}

/// What the client has received, checked piece by piece as it arrives.
#[derive(Debug, Default)]
struct Received {
    /// Payload bytes received so far: where the next piece must start.
    offset: u64,
    /// Data events received.
    pieces: usize,
    /// Batches received.
    batches: usize,
    /// The most payload bytes in one piece.
    largest_piece: usize,
    /// The most payload bytes in one batch.
    largest_batch: usize,
    /// True once the peer's close frame arrived.
    closed: bool,
}

impl Received {
    /// Checks a batch: pieces of at most [`CHUNK`] bytes, in order, with the
    /// frame's opcode first, `Continuation` after, FIN on the last only.
    fn take(&mut self, batch: Vec<Event>) {
        self.batches += 1;
        let mut batch_len = 0;
        for event in batch {
            let frame = match event {
                Event::Data(frame) => frame,
                Event::Close(_) => {
                    assert_eq!(self.offset, FRAME_LEN, "close before the frame ended");
                    self.closed = true;
                    continue;
                }
                other => panic!("unexpected {other:?}"),
            };
            assert!(!self.closed, "data after the close");
            let len = frame.payload.len();
            assert!(0 < len && len <= CHUNK, "piece of {len} bytes at {}", self.offset);
            let opcode = if self.offset == 0 { Opcode::Binary } else { Opcode::Continuation };
            assert_eq!(frame.opcode, opcode, "opcode at {}", self.offset);
            // Not assert_eq: a mismatch would print two 64 KiB vectors.
            assert!(frame.payload == pattern(self.offset, len), "content at {}", self.offset);
            self.offset += len as u64;
            assert_eq!(frame.fin, self.offset == FRAME_LEN, "fin at {}", self.offset);
            self.pieces += 1;
            self.largest_piece = self.largest_piece.max(len);
            batch_len += len;
        }
        self.largest_batch = self.largest_batch.max(batch_len);
    }

    /// Reads and checks batches until the peer's close frame.
    async fn read_to_close(&mut self, connection: &mut Connection) {
        while !self.closed {
            let batch = connection.inbound.next().await.expect("stream open").expect("no error");
            self.take(batch);
        }
    }

    /// Checks what every stream-mode test expects once the frame is through.
    fn check_complete(&self) {
        assert!(self.closed);
        assert_eq!(self.offset, FRAME_LEN, "every byte arrived");
        assert!(self.largest_piece <= CHUNK);
        assert!(self.largest_batch < 2 * CHUNK, "batch of {} bytes", self.largest_batch);
        let (peak_len, peak_capacity) = probe::peak();
        assert!(peak_len <= 2 * CHUNK, "read buffer held {peak_len} bytes");
        assert!(peak_capacity <= 4 * CHUNK, "read buffer grew to {peak_capacity} bytes");
        eprintln!(
            "{} pieces in {} batches; largest batch {} bytes; read buffer peak {peak_len} \
             bytes, capacity {peak_capacity} bytes",
            self.pieces, self.batches, self.largest_batch
        );
    }
}

#[actix_rt::test]
async fn a_64_mib_frame_streams_through_in_pieces_of_at_most_chunk_size() {
    probe::reset();
    within(async {
        let (mut stream, mut connection) = open_streaming().await;
        let mut received = Received::default();
        let peer = async {
            stream
                .write_raw(&frame_header(FIN | opcode::BINARY, FRAME_LEN))
                .await
                .expect("write header");
            write_rest(&mut stream, 0).await;
        };
        tokio::join!(peer, received.read_to_close(&mut connection));
        received.check_complete();
        assert!(received.pieces >= (FRAME_LEN / CHUNK as u64) as usize);
        assert_eq!(read_client_close_code(&mut stream).await, Some(1000), "close answered");
    })
    .await;
}

#[actix_rt::test]
async fn a_consumer_that_stops_reading_stalls_the_peer_and_then_gets_everything() {
    probe::reset();
    within(async {
        let (mut stream, mut connection) = open_streaming().await;
        stream
            .write_raw(&frame_header(FIN | opcode::BINARY, FRAME_LEN))
            .await
            .expect("write header");
        // The consumer does not read: the session fills the inbound queue,
        // stops reading the socket, and the socket buffers fill up until a
        // write of the peer waits. A dropped `write` future wrote nothing.
        let mut slice_start = 0u64;
        let mut slice = pattern(0, SLICE);
        let mut written_of_slice = 0;
        loop {
            let write = stream.socket.write(&slice[written_of_slice..]);
            let Ok(written) = tokio::time::timeout(STALL, write).await else {
                break;
            };
            written_of_slice += written.expect("write");
            if written_of_slice == SLICE {
                slice_start += SLICE as u64;
                assert!(slice_start < FRAME_LEN, "64 MiB went out while nobody read");
                slice = pattern(slice_start, SLICE);
                written_of_slice = 0;
            }
        }
        eprintln!("the peer stalled after {} bytes", slice_start + written_of_slice as u64);

        // The consumer resumes: the rest goes through, and all of it is intact.
        let mut received = Received::default();
        let peer = async {
            stream.write_raw(&slice[written_of_slice..]).await.expect("write the slice's rest");
            write_rest(&mut stream, slice_start + SLICE as u64).await;
        };
        tokio::join!(peer, received.read_to_close(&mut connection));
        received.check_complete();
    })
    .await;
}

#[actix_rt::test]
async fn a_ping_between_fragments_is_answered_and_the_message_continues() {
    let (first, second) = "héllo".as_bytes().split_at(2); // inside "é"
    let frames = [
        encode_frame(0x01, first), // text, not fin
        encode_frame(0x89, b"still there?"),
        encode_frame(0x80, second), // final continuation
    ]
    .concat();
    within(async {
        let (mut stream, mut connection) = open_streaming().await;
        stream.write_raw(&frames).await.expect("write frames");
        let mut events = Vec::new();
        while events.len() < 3 {
            events.extend(connection.inbound.next().await.expect("open").expect("no error"));
        }
        let data = |opcode, fin, payload: &[u8]| {
            Event::Data(DataFrame { opcode, fin, payload: Bytes::copy_from_slice(payload) })
        };
        assert_eq!(
            events,
            vec![
                data(Opcode::Text, false, first),
                Event::Ping(Bytes::from("still there?")),
                data(Opcode::Continuation, true, second),
            ]
        );
        assert_eq!(read_client_frame(&mut stream).await, (0x8A, b"still there?".to_vec()));
    })
    .await;
}
