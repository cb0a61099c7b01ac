//! Topic and sequence extraction: the first line of the input holds the two
//! JSON pointers (separated by a space), the rest is the message (see
//! `feedvisor::fuzzing::topic_and_sequence`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| feedvisor::fuzzing::topic_and_sequence(input));
