//! The admin API's feed bodies (`POST /feeds`, `PUT /feeds/{name}`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| feedvisor::fuzzing::feed_json(input));
