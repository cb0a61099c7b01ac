//! The TCP framing decoders (lines, length-prefixed, stream pieces) on bytes
//! read in pieces of any size, then finished as at the peer's close (see
//! `feedvisor_transport_tcp::fuzzing::framing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| feedvisor_transport_tcp::fuzzing::framing(input));
