//! Entry points for the fuzz targets in `fuzz/`, which live outside the
//! workspace and reach private parsers only through here. Not part of the
//! public API: hidden from the docs, and each one only runs a parser on
//! bytes and drops the result. A panic, a hang or an allocation out of
//! proportion to the input is the finding.

use std::path::Path;

use crate::config::FeedDefaults;
use crate::connection::inbound::{inspect, Topics};
use crate::transports::TransportRegistry;

/// `POST /feeds` and `PUT /feeds/{name}` bodies: JSON to a checked feed.
pub fn feed_json(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let transports = TransportRegistry::with_defaults();
    let _ = crate::config::parse_feed_json(
        value,
        &FeedDefaults::default(),
        Path::new("."),
        &|_| None,
        &transports,
    );
}

/// Topic and sequence extraction from a message, with the pointers given.
pub fn topic_and_sequence(message: &[u8], topic: Option<&str>, sequence: Option<&str>) {
    let mut topics = Topics::default();
    let _ = inspect(&mut topics, message, topic, sequence);
}
