//! Reassembly of fragmented messages, bounded by a size limit.

use bytes::{Bytes, BytesMut};

use crate::frame::{close_code, DataFrame, DataKind, Message, Opcode};

/// Why a frame could not be added to the message being assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// The message grew past the limit; nothing beyond the limit was buffered.
    #[error("message of at least {size} bytes exceeds max_message_size of {limit} bytes")]
    TooLarge {
        /// Bytes the message had reached when it was refused.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A continuation frame arrived with no message open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was open.
    #[error("new message started before the fragmented message before it was finished")]
    Interrupted,
}

impl AssembleError {
    /// The close code to send to the peer for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            AssembleError::TooLarge { .. } => close_code::MESSAGE_TOO_BIG,
            AssembleError::UnexpectedContinuation | AssembleError::Interrupted => {
                close_code::PROTOCOL_ERROR
            }
        }
    }
}

/// Turns data frames into whole messages (message mode).
///
/// A message that arrives in one frame passes through without a copy; a
/// fragmented one is gathered into one buffer that never grows past
/// `max_message_size`.
#[derive(Debug)]
pub struct MessageAssembler {
    /// The largest message accepted, in bytes.
    max_message_size: usize,
    /// The kind and the bytes so far of a fragmented message, if one is open.
    partial: Option<(DataKind, BytesMut)>,
}

impl MessageAssembler {
    /// An assembler that accepts messages of up to `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        MessageAssembler { max_message_size, partial: None }
    }

    /// The configured limit in bytes.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// True while a fragmented message is open.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Forgets any open message (after a reconnect).
    pub fn reset(&mut self) {
        self.partial = None;
    }

    /// Adds a frame; returns a message when the frame completed one.
    ///
    /// After an error the open message is dropped; the caller is expected to
    /// close the connection with [`AssembleError::close_code`].
    pub fn push(&mut self, frame: DataFrame) -> Result<Option<Message>, AssembleError> {
        let result = self.push_inner(frame);
        if result.is_err() {
            self.partial = None;
        }
        result
    }

    fn push_inner(&mut self, frame: DataFrame) -> Result<Option<Message>, AssembleError> {
        let DataFrame { opcode, fin, payload } = frame;
        match (opcode, self.partial.as_mut()) {
            (Opcode::Text | Opcode::Binary, Some(_)) => Err(AssembleError::Interrupted),
            (Opcode::Continuation, None) => Err(AssembleError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, None) => {
                let kind = if opcode == Opcode::Text { DataKind::Text } else { DataKind::Binary };
                self.check_size(payload.len())?;
                if fin {
                    return Ok(Some(Message { kind, payload }));
                }
                let mut buffer = BytesMut::with_capacity(payload.len().max(64));
                buffer.extend_from_slice(&payload);
                self.partial = Some((kind, buffer));
                Ok(None)
            }
            (Opcode::Continuation, Some((_, buffer))) => {
                let size = buffer.len().saturating_add(payload.len());
                self.check_size(size)?;
                if let Some((kind, buffer)) = self.partial.as_mut() {
                    buffer.extend_from_slice(&payload);
                    if fin {
                        let kind = *kind;
                        let payload: Bytes = std::mem::take(buffer).freeze();
                        self.partial = None;
                        return Ok(Some(Message { kind, payload }));
                    }
                }
                Ok(None)
            }
        }
    }

    fn check_size(&self, size: usize) -> Result<(), AssembleError> {
        if size > self.max_message_size {
            return Err(AssembleError::TooLarge { size, limit: self.max_message_size });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: Opcode, fin: bool, payload: &'static str) -> DataFrame {
        DataFrame { opcode, fin, payload: Bytes::from_static(payload.as_bytes()) }
    }

    #[test]
    fn single_frame_message_passes_through() {
        let mut a = MessageAssembler::new(16);
        let message = a.push(DataFrame::text("hello")).expect("valid").expect("complete");
        assert_eq!(message, Message { kind: DataKind::Text, payload: Bytes::from("hello") });
    }

    #[test]
    fn fragments_are_reassembled_in_order() {
        let mut a = MessageAssembler::new(64);
        assert_eq!(a.push(frame(Opcode::Binary, false, "ab")), Ok(None));
        assert!(a.in_message());
        assert_eq!(a.push(frame(Opcode::Continuation, false, "cd")), Ok(None));
        let message = a.push(frame(Opcode::Continuation, true, "ef")).expect("ok").expect("done");
        assert_eq!(message.kind, DataKind::Binary);
        assert_eq!(message.payload, Bytes::from("abcdef"));
        assert!(!a.in_message());
    }

    #[test]
    fn message_at_the_limit_is_accepted_and_one_byte_more_refused() {
        let mut a = MessageAssembler::new(4);
        assert!(a.push(DataFrame::text("abcd")).expect("fits").is_some());
        assert_eq!(
            a.push(DataFrame::text("abcde")),
            Err(AssembleError::TooLarge { size: 5, limit: 4 })
        );
    }

    #[test]
    fn fragmented_message_past_the_limit_is_refused_and_dropped() {
        let mut a = MessageAssembler::new(4);
        assert_eq!(a.push(frame(Opcode::Text, false, "abc")), Ok(None));
        let error = a.push(frame(Opcode::Continuation, true, "de")).expect_err("too large");
        assert_eq!(error, AssembleError::TooLarge { size: 5, limit: 4 });
        assert_eq!(error.close_code(), close_code::MESSAGE_TOO_BIG);
        assert!(!a.in_message());
    }

    #[test]
    fn continuation_without_start_is_a_protocol_error() {
        let mut a = MessageAssembler::new(16);
        let error = a.push(frame(Opcode::Continuation, true, "x")).expect_err("error");
        assert_eq!(error, AssembleError::UnexpectedContinuation);
        assert_eq!(error.close_code(), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn new_message_inside_fragmented_one_is_a_protocol_error() {
        let mut a = MessageAssembler::new(16);
        assert_eq!(a.push(frame(Opcode::Text, false, "x")), Ok(None));
        assert_eq!(a.push(DataFrame::text("y")), Err(AssembleError::Interrupted));
    }
}
