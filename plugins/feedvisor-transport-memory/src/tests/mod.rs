//! The memory transport's tests: its rules for a feed, how it hands over
//! what its peer sends, and the compliance suite.

mod check;
mod compliance;
mod stream;
