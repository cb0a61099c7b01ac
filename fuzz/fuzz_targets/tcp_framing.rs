//! The TCP framing decoders (lines, length-prefixed, stream pieces) on bytes
//! read in pieces of any size, then finished as at the peer's close.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [format, limit, chunk, read, bytes @ ..] = input else { return };
    let (limit, chunk) = (usize::from(*limit) * 16, usize::from(*chunk) * 16);
    feedvisor_transport_tcp::fuzzing::decode(*format, limit, chunk, usize::from(*read), bytes);
});
