//! Entry points for the fuzz targets in `fuzz/`, which live outside the
//! workspace and reach private parsers only through here, and for the
//! replay of their regressions (`fuzz/regressions/<target>/`, run by
//! `cargo test`). Not part of the public API: hidden from the docs. Each
//! runs a parser on bytes; the config ones also read back what they
//! accepted. A panic, a hang or an allocation out of proportion to the
//! input is the finding.

use std::path::Path;

use crate::config::{Config, FeedDefaults};
use crate::connection::inbound::{inspect, Topics};
use crate::transports::TransportRegistry;

/// The `config_toml` target: any text as a config file, checked against
/// the built-in transports, with no `${VAR}` set. A config that loads must
/// load again from its own serialisation (what `check` and the status API
/// show).
///
/// # Panics
/// When an accepted config's TOML serialisation fails or is refused.
pub fn config_toml(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let transports = TransportRegistry::with_defaults();
    let load = |text: &str| {
        Config::from_toml_str_with_env(text, Path::new("fuzz.toml"), &|_| None, &transports)
    };
    let Ok(config) = load(text) else { return };
    let shown = match toml::to_string(&config) {
        Ok(shown) => shown,
        Err(error) => panic!("an accepted config does not serialise to TOML: {error}"),
    };
    if let Err(error) = load(&shown) {
        panic!("an accepted config does not load from its serialisation: {error}\n{shown}");
    }
}

/// The `feed_json` target: `POST /feeds` and `PUT /feeds/{name}` bodies,
/// JSON to a checked feed. A feed that is accepted must read back from its
/// serialisation (what `feedvisor check` shows of it).
///
/// # Panics
/// When an accepted feed's serialisation is refused.
pub fn feed_json(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let transports = TransportRegistry::with_defaults();
    let defaults = FeedDefaults::default();
    let parse = |value| {
        crate::config::parse_feed_json(value, &defaults, Path::new("."), &|_| None, &transports)
    };
    let Ok(feed) = parse(value) else { return };
    let shown = match serde_json::to_value(&feed) {
        Ok(shown) => shown,
        Err(error) => panic!("an accepted feed does not serialise: {error}"),
    };
    if let Err(error) = parse(shown.clone()) {
        panic!("an accepted feed does not read back from its serialisation: {error}\n{shown}");
    }
}

/// The `topic_and_sequence` target: the first line of the input holds the
/// topic and sequence pointers (separated by a space, either may be empty),
/// the rest is the message; without a line break the pointers are `/topic`
/// and `/seq`.
pub fn topic_and_sequence(input: &[u8]) {
    let (head, message) = match input.iter().position(|byte| *byte == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (&b"/topic /seq"[..], input),
    };
    let head = String::from_utf8_lossy(head);
    let mut pointers = head.splitn(2, ' ');
    let topic = pointers.next().filter(|pointer| !pointer.is_empty());
    let sequence = pointers.next().filter(|pointer| !pointer.is_empty());
    let mut topics = Topics::default();
    let _ = inspect(&mut topics, message, topic, sequence);
}
