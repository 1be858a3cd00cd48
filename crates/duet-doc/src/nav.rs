//! Cursor motion over the rope: grapheme-cluster steps and word steps.
//!
//! Everything here is a pure function of a [`Rope`] and a char index, O(log n) per
//! step: grapheme boundaries are found with `unicode-segmentation`'s incremental
//! [`GraphemeCursor`] fed the rope's chunks, so no line or document is ever copied.

use ropey::Rope;
use unicode_segmentation::{GraphemeCursor, GraphemeIncomplete};

/// The char index of the grapheme boundary after `char_idx` (or the end of the text).
pub fn next_grapheme(rope: &Rope, char_idx: usize) -> usize {
    let len = rope.len_chars();
    if char_idx >= len {
        return len;
    }
    let byte_idx = rope.char_to_byte(char_idx);
    let (mut chunk, mut chunk_start, _, _) = rope.chunk_at_byte(byte_idx);
    let mut cursor = GraphemeCursor::new(byte_idx, rope.len_bytes(), true);
    loop {
        match cursor.next_boundary(chunk, chunk_start) {
            Ok(Some(b)) => return rope.byte_to_char(b),
            Ok(None) => return len,
            Err(GraphemeIncomplete::NextChunk) => {
                chunk_start += chunk.len();
                if chunk_start >= rope.len_bytes() {
                    return len;
                }
                chunk = rope.chunk_at_byte(chunk_start).0;
            }
            Err(GraphemeIncomplete::PreContext(b)) => {
                let (ctx, ctx_start, _, _) = rope.chunk_at_byte(b.saturating_sub(1));
                cursor.provide_context(&ctx[..b - ctx_start], ctx_start);
            }
            // Not produced by next_boundary; stepping one char is a safe answer.
            Err(_) => return char_idx + 1,
        }
    }
}

/// The char index of the grapheme boundary before `char_idx` (or 0).
pub fn prev_grapheme(rope: &Rope, char_idx: usize) -> usize {
    let char_idx = char_idx.min(rope.len_chars());
    if char_idx == 0 {
        return 0;
    }
    let byte_idx = rope.char_to_byte(char_idx);
    // The chunk holding the byte just before the cursor.
    let (mut chunk, mut chunk_start, _, _) = rope.chunk_at_byte(byte_idx - 1);
    let mut cursor = GraphemeCursor::new(byte_idx, rope.len_bytes(), true);
    loop {
        match cursor.prev_boundary(chunk, chunk_start) {
            Ok(Some(b)) => return rope.byte_to_char(b),
            Ok(None) => return 0,
            Err(GraphemeIncomplete::PrevChunk) => {
                if chunk_start == 0 {
                    return 0;
                }
                let (c, s, _, _) = rope.chunk_at_byte(chunk_start - 1);
                chunk = c;
                chunk_start = s;
            }
            Err(GraphemeIncomplete::PreContext(b)) => {
                let (ctx, ctx_start, _, _) = rope.chunk_at_byte(b.saturating_sub(1));
                cursor.provide_context(&ctx[..b - ctx_start], ctx_start);
            }
            Err(_) => return char_idx - 1,
        }
    }
}

/// What a grapheme counts as for word motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    Word,
    Punct,
}

/// Classifies the grapheme starting at `char_idx` by its first char, so "e\u{301}"
/// is one word letter and a ZWJ emoji sequence is one punctuation-like symbol.
fn class_at(rope: &Rope, char_idx: usize) -> Class {
    match rope.get_char(char_idx) {
        Some(c) if c.is_whitespace() => Class::Space,
        Some(c) if c.is_alphanumeric() || c == '_' => Class::Word,
        _ => Class::Punct,
    }
}

/// Ctrl-Right: skips whitespace (line breaks included), then the run of graphemes of
/// the same class (word characters, or punctuation), stopping at its end.
pub(crate) fn next_word(rope: &Rope, char_idx: usize) -> usize {
    let len = rope.len_chars();
    let mut at = char_idx.min(len);
    while at < len && class_at(rope, at) == Class::Space {
        at = next_grapheme(rope, at);
    }
    if at >= len {
        return len;
    }
    let class = class_at(rope, at);
    while at < len && class_at(rope, at) == class {
        at = next_grapheme(rope, at);
    }
    at
}

/// Ctrl-Left and Ctrl-Backspace: skips whitespace backwards, then the run of graphemes
/// of the same class, stopping at its start.
pub(crate) fn prev_word(rope: &Rope, char_idx: usize) -> usize {
    let mut at = char_idx.min(rope.len_chars());
    let mut before = prev_grapheme(rope, at);
    while at > 0 && class_at(rope, before) == Class::Space {
        at = before;
        before = prev_grapheme(rope, at);
    }
    if at == 0 {
        return 0;
    }
    let class = class_at(rope, before);
    while at > 0 && class_at(rope, before) == class {
        at = before;
        before = prev_grapheme(rope, at);
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All grapheme boundaries walking forwards, then backwards.
    fn walk(text: &str) -> (Vec<usize>, Vec<usize>) {
        let rope = Rope::from_str(text);
        let mut fwd = vec![0];
        let mut at = 0;
        while at < rope.len_chars() {
            at = next_grapheme(&rope, at);
            fwd.push(at);
        }
        let mut back = vec![rope.len_chars()];
        let mut at = rope.len_chars();
        while at > 0 {
            at = prev_grapheme(&rope, at);
            back.push(at);
        }
        back.reverse();
        (fwd, back)
    }

    #[test]
    fn grapheme_steps_match_unicode_segmentation() {
        use unicode_segmentation::UnicodeSegmentation;
        let cases = [
            "",
            "abc",
            "e\u{301}x",
            "a👍b",
            "👨\u{200d}👩\u{200d}👧\u{200d}👦!",
            "🇫🇷🇩🇪",
            "漢字かな",
            "a\r\nb\nc\r",
            "e\u{301}\u{302}\u{303}",
        ];
        for text in cases {
            let mut expected = vec![0];
            let mut chars = 0;
            for g in text.graphemes(true) {
                chars += g.chars().count();
                expected.push(chars);
            }
            if text.is_empty() {
                expected = vec![0];
            }
            let (fwd, back) = walk(text);
            assert_eq!(fwd, expected, "forward over {text:?}");
            assert_eq!(back, expected, "backward over {text:?}");
        }
    }

    #[test]
    fn grapheme_steps_cross_rope_chunks() {
        // Long enough for ropey to split into many chunks; flags are 2 chars each and
        // regional indicators need pre-context from earlier chunks to pair up.
        let text = "🇫🇷".repeat(3000) + &"e\u{301}".repeat(3000);
        let rope = Rope::from_str(&text);
        assert!(rope.chunks().count() > 4);
        let (fwd, back) = walk(&text);
        assert_eq!(fwd.len(), 6001);
        assert_eq!(fwd, back);
        assert!(fwd.iter().all(|c| c % 2 == 0));
    }

    #[test]
    fn steps_clamp_at_the_ends() {
        let rope = Rope::from_str("ab");
        assert_eq!(next_grapheme(&rope, 2), 2);
        assert_eq!(next_grapheme(&rope, 99), 2);
        assert_eq!(prev_grapheme(&rope, 0), 0);
        assert_eq!(prev_grapheme(&rope, 99), 1);
    }

    /// Word motion table: `|` marks where we start, the second column where we land.
    #[test]
    fn word_motion() {
        let table = [
            // (start, after next_word, after prev_word)
            ("|foo bar", "foo| bar", "|foo bar"),
            ("fo|o bar", "foo| bar", "|foo bar"),
            ("foo| bar", "foo bar|", "|foo bar"),
            ("foo |bar", "foo bar|", "|foo bar"),
            ("foo bar|", "foo bar|", "foo |bar"),
            ("foo.|bar", "foo.bar|", "foo|.bar"),
            ("a  |  b", "a    b|", "|a    b"),
            ("x = foo(|)", "x = foo()|", "x = foo|()"),
            ("one\n|two", "one\ntwo|", "|one\ntwo"),
            ("cafe\u{301} |x", "cafe\u{301} x|", "|cafe\u{301} x"),
            ("snake_case|", "snake_case|", "|snake_case"),
            ("漢字 |かな", "漢字 かな|", "|漢字 かな"),
        ];
        for (start, next, prev) in table {
            let at = start.chars().position(|c| c == '|').unwrap_or(0);
            let text: String = start.chars().filter(|&c| c != '|').collect();
            let rope = Rope::from_str(&text);
            let show = |i: usize| {
                let mut s: String = text.chars().take(i).collect();
                s.push('|');
                s.extend(text.chars().skip(i));
                s
            };
            assert_eq!(show(next_word(&rope, at)), next, "next_word from {start:?}");
            assert_eq!(show(prev_word(&rope, at)), prev, "prev_word from {start:?}");
        }
    }
}
