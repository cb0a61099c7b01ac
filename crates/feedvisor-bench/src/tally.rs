//! What a client counts in a run: the messages handled against those
//! expected, and the latency of each stamped one.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use actix::prelude::*;
use feedvisor::Deliver;
use tokio::sync::oneshot;

use crate::frames;

/// What a client has handled in one run: the count, and the latency of
/// each stamped message.
pub struct Tally {
    /// Messages (deliveries, with several subscribers) that end the run.
    expected: u64,
    /// Handled so far.
    received: u64,
    /// The instant the blaster's stamps count from.
    base: Instant,
    /// Send-to-handled nanoseconds of the stamped messages.
    latencies: Vec<u64>,
    /// Told the instant the last expected message was handled.
    finished: Option<oneshot::Sender<Instant>>,
}

impl Tally {
    /// A tally that expects `expected` messages; the receiver gets the instant it is complete.
    pub fn new(expected: u64, base: Instant) -> (Rc<RefCell<Tally>>, oneshot::Receiver<Instant>) {
        let (finished, complete) = oneshot::channel();
        let tally =
            Tally { expected, received: 0, base, latencies: Vec::new(), finished: Some(finished) };
        (Rc::new(RefCell::new(tally)), complete)
    }

    /// Records the latency of a stamped payload (others are ignored).
    pub fn observe(&mut self, payload: &[u8]) {
        if let Some(sent) = frames::parse_stamp(payload) {
            self.latencies.push(frames::nanos_since(self.base).saturating_sub(sent));
        }
    }

    /// Messages handled so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The latencies recorded so far, leaving none.
    pub fn take_latencies(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.latencies)
    }

    /// Counts `count` handled messages.
    pub fn handled(&mut self, count: u64) {
        self.received += count;
        if self.received >= self.expected {
            if let Some(finished) = self.finished.take() {
                let _ = finished.send(Instant::now());
            }
        }
    }
}

/// Counts what it is handed, and keeps nothing.
pub struct CountingSubscriber {
    /// Where the count goes.
    pub tally: Rc<RefCell<Tally>>,
}

impl Actor for CountingSubscriber {
    type Context = Context<Self>;
}

impl Handler<Deliver> for CountingSubscriber {
    type Result = ();

    fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
        self.tally.borrow_mut().handled(deliver.messages().len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_completes_once_and_reads_stamps() {
        let base = Instant::now();
        let (tally, mut complete) = Tally::new(3, base);
        let mut stamped = b"T0000000000000000".to_vec();
        stamped.extend_from_slice(b"xxxx");
        tally.borrow_mut().observe(&stamped);
        tally.borrow_mut().observe(b"xxxxxxxxxxxxxxxxxxxxx");
        tally.borrow_mut().handled(2);
        assert!(complete.try_recv().is_err());
        tally.borrow_mut().handled(1);
        assert!(complete.try_recv().is_ok());
        assert_eq!(tally.borrow().latencies.len(), 1);
    }
}
