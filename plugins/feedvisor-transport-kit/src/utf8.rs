//! Incremental UTF-8 validation across fragment boundaries.

/// Validates a text message that arrives in pieces.
///
/// A multi-byte character may be split between two fragments, so a fragment
/// may end with up to three bytes of an incomplete character; those are kept
/// and checked together with the start of the next fragment. A message is
/// valid when every fragment passed and nothing is left over at its end.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of a character that the previous fragment left incomplete.
    pending: [u8; 4],
    /// How many bytes of `pending` are in use (0 to 3).
    pending_len: usize,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next fragment; `fin` marks the last fragment of the message.
    ///
    /// Returns `false` as soon as the bytes seen so far cannot be valid UTF-8.
    /// After `fin` (valid or not) the validator is ready for a new message.
    pub fn push(&mut self, mut bytes: &[u8], fin: bool) -> bool {
        if self.pending_len > 0 {
            // Complete the split character with bytes from this fragment.
            let needed = utf8_char_width(self.pending[0]);
            while self.pending_len < needed && !bytes.is_empty() {
                self.pending[self.pending_len] = bytes[0];
                self.pending_len += 1;
                bytes = &bytes[1..];
            }
            if self.pending_len < needed {
                let ok = !fin
                    && std::str::from_utf8(&self.pending[..self.pending_len])
                        .err()
                        .is_some_and(|e| e.error_len().is_none());
                if fin {
                    self.pending_len = 0;
                }
                return ok;
            }
            let valid = std::str::from_utf8(&self.pending[..needed]).is_ok();
            self.pending_len = 0;
            if !valid {
                return false;
            }
        }
        // The common cases: short ASCII text (below the SIMD path's setup
        // cost; a long text is not scanned twice), and a whole valid fragment
        // (the SIMD path).
        if (bytes.len() <= SHORT && bytes.is_ascii()) || simdutf8::basic::from_utf8(bytes).is_ok() {
            return true;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(error) => {
                if error.error_len().is_some() || fin {
                    // A byte that can never be valid, or a character cut off at the end.
                    self.pending_len = 0;
                    return false;
                }
                let tail = &bytes[error.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                true
            }
        }
    }
}

/// The length of the character that starts with `first`, or 1 for a byte
/// that cannot start one (the check that follows then fails).
/// Fragments up to this long are checked for plain ASCII first.
const SHORT: usize = 256;

fn utf8_char_width(first: u8) -> usize {
    match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_valid_text_passes() {
        let mut v = Utf8Validator::new();
        assert!(v.push("héllo wörld €".as_bytes(), true));
    }

    #[test]
    fn invalid_byte_fails() {
        let mut v = Utf8Validator::new();
        assert!(!v.push(&[b'a', 0xFF, b'b'], true));
    }

    #[test]
    fn character_split_across_fragments_passes() {
        let euro = "€".as_bytes(); // three bytes
        for split in 1..euro.len() {
            let mut v = Utf8Validator::new();
            assert!(v.push(&euro[..split], false), "split at {split}");
            assert!(v.push(&euro[split..], true), "split at {split}");
        }
    }

    #[test]
    fn character_split_over_three_fragments_passes() {
        let emoji = "😀".as_bytes(); // four bytes
        let mut v = Utf8Validator::new();
        assert!(v.push(&emoji[..1], false));
        assert!(v.push(&emoji[1..2], false));
        assert!(v.push(&emoji[2..], true));
    }

    #[test]
    fn truncated_character_at_end_of_message_fails() {
        let euro = "€".as_bytes();
        let mut v = Utf8Validator::new();
        assert!(v.push(&euro[..2], false));
        assert!(!v.push(&[], true));
    }

    #[test]
    fn bad_continuation_of_split_character_fails() {
        let mut v = Utf8Validator::new();
        assert!(v.push(&[0xE2], false));
        assert!(!v.push(b"ab", true));
    }

    #[test]
    fn validator_is_reusable_after_a_message() {
        let mut v = Utf8Validator::new();
        assert!(!v.push(&[0xE2], true));
        assert!(v.push(b"fine", true));
    }
}
