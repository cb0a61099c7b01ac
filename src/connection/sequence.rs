//! Gap and duplicate detection for feeds whose messages carry a sequence number.
//!
//! The number must grow by one per message. The tracker outlives
//! connections, so a reconnect that resumes past what was missed shows as
//! a gap, and one that replays what was already seen shows as duplicates.

/// What one sequence number says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The first number seen, or the one after the last.
    InOrder,
    /// Numbers were skipped: `missed` messages never arrived.
    Gap {
        /// How many numbers were skipped.
        missed: u64,
    },
    /// A number at or below the last one seen again.
    Duplicate,
}

/// The last sequence number seen on a feed.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    last: Option<u64>,
}

impl SequenceTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest number seen so far (for `{{last_seq}}`).
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Checks the next number and remembers it when it moves forward.
    pub fn observe(&mut self, seq: u64) -> SequenceCheck {
        let check = match self.last {
            None => SequenceCheck::InOrder,
            Some(last) if seq <= last => return SequenceCheck::Duplicate,
            Some(last) if seq == last + 1 => SequenceCheck::InOrder,
            Some(last) => SequenceCheck::Gap { missed: seq - last - 1 },
        };
        self.last = Some(seq);
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_numbers_are_in_order() {
        let mut tracker = SequenceTracker::new();
        for seq in 5..10 {
            assert_eq!(tracker.observe(seq), SequenceCheck::InOrder);
        }
        assert_eq!(tracker.last(), Some(9));
    }

    #[test]
    fn a_skip_is_a_gap_counted_to_the_message() {
        let mut tracker = SequenceTracker::new();
        tracker.observe(1);
        assert_eq!(tracker.observe(5), SequenceCheck::Gap { missed: 3 });
        assert_eq!(tracker.observe(6), SequenceCheck::InOrder);
    }

    #[test]
    fn repeats_and_going_back_are_duplicates_and_do_not_move_the_mark() {
        let mut tracker = SequenceTracker::new();
        tracker.observe(10);
        assert_eq!(tracker.observe(10), SequenceCheck::Duplicate);
        assert_eq!(tracker.observe(3), SequenceCheck::Duplicate);
        assert_eq!(tracker.last(), Some(10));
        assert_eq!(tracker.observe(11), SequenceCheck::InOrder);
    }
}
