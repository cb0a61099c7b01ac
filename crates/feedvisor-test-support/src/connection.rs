//! Reading a [`Connection`]'s inbound stream the way tests need it: a number
//! of events, or everything up to its end.

use feedvisor_transport_api::{Connection, Event, TransportError};
use futures_util::StreamExt;

/// Reads batches until `count` events arrived; returns them and the number of batches.
///
/// # Panics
/// When the stream ends or fails first.
pub async fn read_events(connection: &mut Connection, count: usize) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut batches = 0;
    while events.len() < count {
        match connection.inbound.next().await {
            Some(Ok(batch)) => events.extend(batch),
            Some(Err(error)) => panic!("failed after {} of {count} events: {error}", events.len()),
            None => panic!("ended after {} of {count} events", events.len()),
        }
        batches += 1;
    }
    (events, batches)
}

/// Reads until the stream ends; returns the events and the error it ended
/// with, if any.
///
/// # Panics
/// When the stream yields anything after an error.
pub async fn read_to_end(connection: &mut Connection) -> (Vec<Event>, Option<TransportError>) {
    let mut events = Vec::new();
    while let Some(item) = connection.inbound.next().await {
        match item {
            Ok(batch) => events.extend(batch),
            Err(error) => {
                let after = connection.inbound.next().await;
                assert!(after.is_none(), "the stream goes on after {error}: {after:?}");
                return (events, Some(error));
            }
        }
    }
    (events, None)
}
