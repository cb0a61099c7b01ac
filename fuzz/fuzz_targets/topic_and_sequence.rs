//! Topic and sequence extraction: the first line of the input holds the two
//! JSON pointers (separated by a space), the rest is the message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (head, message) = match input.iter().position(|byte| *byte == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (&b"/topic /seq"[..], input),
    };
    let head = String::from_utf8_lossy(head);
    let mut pointers = head.splitn(2, ' ');
    let topic = pointers.next().filter(|pointer| !pointer.is_empty());
    let sequence = pointers.next().filter(|pointer| !pointer.is_empty());
    feedvisor::fuzzing::topic_and_sequence(message, topic, sequence);
});
