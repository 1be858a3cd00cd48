//! The errors a caller of this crate can act on.

/// Everything that can go wrong in a [`crate::Document`] operation.
///
/// Offsets are reported in UTF-16 code units, as the caller passed them.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    /// The offset lies past the end of the text.
    #[error("offset {offset} is past the end of the text (length {len} utf-16 units)")]
    OffsetOutOfRange {
        /// The offending offset.
        offset: usize,
        /// The text length in UTF-16 code units.
        len: usize,
    },
    /// The offset lies between the two halves of a surrogate pair (inside an emoji, say).
    #[error("offset {offset} splits a surrogate pair")]
    SplitsSurrogatePair {
        /// The offending offset.
        offset: usize,
    },
    /// The range ends before it starts.
    #[error("range {start}..{end} ends before it starts")]
    ReversedRange {
        /// Start of the offending range.
        start: usize,
        /// End of the offending range.
        end: usize,
    },
    /// Bytes from a peer could not be decoded (malformed, truncated, or implausibly large).
    #[error("cannot decode {0}")]
    Decode(String),
    /// A decoded update could not be applied (yrs rejected it or panicked on it).
    #[error("cannot apply update: {0}")]
    Apply(String),
}
