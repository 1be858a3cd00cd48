//! Unicode on the rope: grapheme and word steps, display widths, tab expansion, and the
//! mapping between char indices and screen columns of a line.
//!
//! Everything is O(log n) to find a line plus O(length of the line prefix) to walk it:
//! nothing here copies the document. Columns follow display width (CJK and emoji are two
//! cells, combining marks none, a tab runs to the next tab stop).

use ropey::{Rope, RopeSlice};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Width of a tab stop, in cells.
pub const TAB_WIDTH: usize = 4;

/// Grapheme-cluster boundaries: the document model's, so the editor and `duet-doc` agree.
pub use duet_doc::{next_grapheme, prev_grapheme};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    Newline,
    Word,
    Punct,
}

fn class_at(rope: &Rope, char_idx: usize) -> Class {
    match rope.get_char(char_idx) {
        Some('\n') => Class::Newline,
        Some(c) if c.is_whitespace() => Class::Space,
        Some(c) if c.is_alphanumeric() || c == '_' => Class::Word,
        _ => Class::Punct,
    }
}

/// Ctrl-Right: skips blanks, then a run of word or punctuation graphemes. A line break
/// is a stop of its own, so the cursor visits the end of each line.
pub fn next_word(rope: &Rope, char_idx: usize) -> usize {
    let len = rope.len_chars();
    let mut at = char_idx.min(len);
    if at < len && class_at(rope, at) == Class::Newline {
        return next_grapheme(rope, at);
    }
    while at < len && class_at(rope, at) == Class::Space {
        at = next_grapheme(rope, at);
    }
    if at >= len || class_at(rope, at) == Class::Newline {
        return at;
    }
    let class = class_at(rope, at);
    while at < len && class_at(rope, at) == class {
        at = next_grapheme(rope, at);
    }
    at
}

/// Ctrl-Left and Ctrl-Backspace: the mirror image of [`next_word`].
pub fn prev_word(rope: &Rope, char_idx: usize) -> usize {
    let mut at = char_idx.min(rope.len_chars());
    if at > 0 && class_at(rope, at - 1) == Class::Newline {
        return prev_grapheme(rope, at);
    }
    while at > 0 && class_at(rope, at - 1) == Class::Space {
        at = prev_grapheme(rope, at);
    }
    if at == 0 || class_at(rope, at - 1) == Class::Newline {
        return at;
    }
    let class = class_at(rope, at - 1);
    while at > 0 && class_at(rope, at - 1) == class {
        at = prev_grapheme(rope, at);
    }
    at
}

/// The number of chars on `line` without its line break.
pub fn line_len_chars(rope: &Rope, line: usize) -> usize {
    if line >= rope.len_lines() {
        return 0;
    }
    let slice = rope.line(line);
    let mut len = slice.len_chars();
    if len > 0 && slice.char(len - 1) == '\n' {
        len -= 1;
        if len > 0 && slice.char(len - 1) == '\r' {
            len -= 1;
        }
    }
    len
}

/// The char index of the end of `line` (before its line break).
pub fn line_end(rope: &Rope, line: usize) -> usize {
    rope.line_to_char(line.min(rope.len_lines().saturating_sub(1))) + line_len_chars(rope, line)
}

/// The cells one grapheme takes when it starts at column `x`.
pub fn grapheme_width(g: &str, x: usize) -> usize {
    if g == "\t" {
        return TAB_WIDTH - x % TAB_WIDTH;
    }
    if g.chars().next().is_some_and(char::is_control) {
        // Drawn as one replacement cell.
        return 1;
    }
    g.width().max(if g.is_empty() { 0 } else { 1 })
}

/// One grapheme of a line, placed on the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed<'a> {
    /// The grapheme's text.
    pub text: &'a str,
    /// Char offset from the start of the line.
    pub char_col: usize,
    /// Display column where it starts.
    pub x: usize,
    /// Cells it covers.
    pub width: usize,
}

/// Splits a line (without its break) into placed graphemes; the caller owns the text.
pub fn place(line: &str) -> Vec<Placed<'_>> {
    let mut out = Vec::new();
    let mut x = 0;
    let mut char_col = 0;
    for g in line.graphemes(true) {
        if g == "\n" || g == "\r\n" || g == "\r" {
            break;
        }
        let width = grapheme_width(g, x);
        out.push(Placed {
            text: g,
            char_col,
            x,
            width,
        });
        x += width;
        char_col += g.chars().count();
    }
    out
}

/// The text of `line` without its break, at most `max_chars` chars of it.
pub fn line_prefix(rope: &Rope, line: usize, max_chars: usize) -> String {
    if line >= rope.len_lines() {
        return String::new();
    }
    let len = line_len_chars(rope, line).min(max_chars);
    let slice: RopeSlice<'_> = rope.line(line).slice(..len);
    slice.to_string()
}

/// Display column of the char `col` chars into `line`.
pub fn col_to_x(rope: &Rope, line: usize, col: usize) -> usize {
    let text = line_prefix(rope, line, col);
    let mut x = 0;
    for g in text.graphemes(true) {
        x += grapheme_width(g, x);
    }
    x
}

/// The char offset in `line` of the grapheme that covers display column `x` (the end of
/// the line when `x` is past it). A click on the right half of a wide char lands on it.
pub fn x_to_col(rope: &Rope, line: usize, x: usize) -> usize {
    // A grapheme is at least one cell wide, so x + 1 graphemes are enough; combining marks
    // make graphemes longer than one char, hence the slack.
    let text = line_prefix(rope, line, x.saturating_mul(4).saturating_add(16));
    for p in place(&text) {
        if x < p.x + p.width {
            return p.char_col;
        }
    }
    text.chars().count().min(line_len_chars(rope, line))
}

/// The leading blanks of `line`.
pub fn indent_of(rope: &Rope, line: usize) -> String {
    if line >= rope.len_lines() {
        return String::new();
    }
    rope.line(line)
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphemes_step_over_clusters() {
        let rope = Rope::from_str("e\u{301}x👍🏽y");
        assert_eq!(next_grapheme(&rope, 0), 2);
        assert_eq!(next_grapheme(&rope, 3), 5);
        assert_eq!(prev_grapheme(&rope, 5), 3);
        assert_eq!(prev_grapheme(&rope, 2), 0);
    }

    #[test]
    fn widths_follow_the_terminal() {
        assert_eq!(col_to_x(&Rope::from_str("日本x"), 0, 2), 4);
        assert_eq!(col_to_x(&Rope::from_str("\tx"), 0, 1), TAB_WIDTH);
        assert_eq!(col_to_x(&Rope::from_str("ab\tx"), 0, 3), TAB_WIDTH);
        assert_eq!(col_to_x(&Rope::from_str("e\u{301}x"), 0, 2), 1);
        let rope = Rope::from_str("日本x");
        assert_eq!(x_to_col(&rope, 0, 0), 0);
        assert_eq!(x_to_col(&rope, 0, 1), 0);
        assert_eq!(x_to_col(&rope, 0, 2), 1);
        assert_eq!(x_to_col(&rope, 0, 4), 2);
        assert_eq!(x_to_col(&rope, 0, 40), 3);
    }

    #[test]
    fn words_stop_at_line_ends() {
        let rope = Rope::from_str("foo bar\n  baz");
        assert_eq!(next_word(&rope, 0), 3);
        assert_eq!(next_word(&rope, 3), 7);
        assert_eq!(next_word(&rope, 7), 8);
        assert_eq!(next_word(&rope, 8), 13);
        assert_eq!(prev_word(&rope, 13), 10);
        assert_eq!(prev_word(&rope, 10), 8);
        assert_eq!(prev_word(&rope, 8), 7);
        assert_eq!(prev_word(&rope, 7), 4);
    }
}
