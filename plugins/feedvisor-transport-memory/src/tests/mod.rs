//! The memory transport's tests: its rules for a feed, and the compliance suite.

mod check;
mod compliance;
