//! The WebSocket frame decoder, its size guard and reassembly: server bytes
//! read in pieces, in message or stream mode (see
//! `feedvisor_transport_websocket::fuzzing::frames`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| feedvisor_transport_websocket::fuzzing::frames(input));
