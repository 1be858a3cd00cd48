//! Coordinate types: one newtype per coordinate space, and the local selection.
//!
//! yrs and Yjs count text positions in UTF-16 code units ([`Utf16Offset`]); the rope
//! mirror and the terminal think in chars ([`CharIdx`]) and lines ([`LineCol`]).
//! Keeping them apart in the type system stops the classic "emoji moved my cursor" bug.

use std::ops::Range;

/// The number of UTF-16 code units needed to encode `s` (its length as Yjs counts it).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// A position in the text counted in UTF-16 code units, the unit Yjs and yrs use on
/// the wire. Invariant (checked at every public entry point): never inside a surrogate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Utf16Offset(pub usize);

/// A position in the text counted in Unicode scalar values (Rust `char`s), the unit of
/// the rope mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CharIdx(pub usize);

/// A 0-based line and column; `col` counts chars, not bytes or grapheme clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LineCol {
    /// 0-based line number.
    pub line: usize,
    /// 0-based column in chars from the start of the line.
    pub col: usize,
}

impl LineCol {
    /// Shorthand constructor.
    pub fn new(line: usize, col: usize) -> Self {
        Self { line, col }
    }
}

/// The local user's selection. `anchor` stays put while `head` (the visible cursor)
/// moves; `anchor == head` is a plain cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Selection {
    /// Where the selection started.
    pub anchor: Utf16Offset,
    /// Where the cursor is.
    pub head: Utf16Offset,
}

impl Selection {
    /// A plain cursor at `at`.
    pub fn cursor(at: Utf16Offset) -> Self {
        Self {
            anchor: at,
            head: at,
        }
    }

    /// A selection from `anchor` to `head` (either order).
    pub fn new(anchor: Utf16Offset, head: Utf16Offset) -> Self {
        Self { anchor, head }
    }

    /// True when nothing is selected (a plain cursor).
    pub fn is_empty(&self) -> bool {
        self.anchor == self.head
    }

    /// The selected range, start before end whichever way the selection was made.
    pub fn range(&self) -> Range<Utf16Offset> {
        if self.anchor <= self.head {
            self.anchor..self.head
        } else {
            self.head..self.anchor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_len_counts_code_units() {
        assert_eq!(utf16_len(""), 0);
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("e\u{301}"), 2);
        assert_eq!(utf16_len("👍"), 2);
        assert_eq!(utf16_len("👨\u{200d}👩\u{200d}👧"), 8);
        assert_eq!(utf16_len("漢字"), 2);
        assert_eq!(utf16_len("\r\n"), 2);
    }

    #[test]
    fn range_is_ordered_whichever_way_the_selection_was_made() {
        let fwd = Selection::new(Utf16Offset(2), Utf16Offset(5));
        let back = Selection::new(Utf16Offset(5), Utf16Offset(2));
        assert_eq!(fwd.range(), Utf16Offset(2)..Utf16Offset(5));
        assert_eq!(back.range(), Utf16Offset(2)..Utf16Offset(5));
        assert!(!back.is_empty());
        assert!(Selection::cursor(Utf16Offset(3)).is_empty());
        assert_eq!(
            Selection::cursor(Utf16Offset(3)).range(),
            Utf16Offset(3)..Utf16Offset(3)
        );
    }
}
