//! The editor core: view state (scroll, desired column, clipboard, search) and
//! [`Editor::apply`], which applies one [`Action`] to a [`TextBuffer`].
//!
//! Pure and synchronous: no terminal, no clock, no network. Everything is char indices on
//! the rope; work per action is O(log n) plus the length of the lines it touches, so a
//! keystroke costs the same in a 100 KB file and a 4 MB one.

use crate::action::{Action, Motion};
use crate::buffer::{CharSel, TextBuffer};
use crate::text;

/// What applying an action asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the state change.
    None,
    /// Put this text on the system clipboard (OSC 52).
    Copied(String),
    /// The buffer refused an edit.
    Refused(String),
    /// Undo or redo had nothing to do.
    NothingToUndo,
}

/// How the file indents, guessed once from its first lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indent {
    Tabs,
    Spaces(usize),
}

/// The editor's own state beside the text.
#[derive(Debug, Clone)]
pub struct Editor {
    /// First visible line.
    pub top: usize,
    /// First visible display column.
    pub left: usize,
    /// Text area size in cells (without the gutter).
    pub width: usize,
    pub height: usize,
    /// The display column vertical moves aim for.
    desired_x: Option<usize>,
    /// The last copied or cut text (the terminal clipboard cannot be read back).
    pub clipboard: String,
    /// Whether `clipboard` holds whole lines (copied without a selection).
    clipboard_lines: bool,
    pub indent: Indent,
    /// The last search, kept for F3.
    pub query: String,
}

impl Default for Editor {
    fn default() -> Self {
        Self {
            top: 0,
            left: 0,
            width: 80,
            height: 24,
            desired_x: None,
            clipboard: String::new(),
            clipboard_lines: false,
            indent: Indent::Spaces(4),
            query: String::new(),
        }
    }
}

fn line_of(buf: &impl TextBuffer, char_idx: usize) -> usize {
    buf.rope()
        .char_to_line(char_idx.min(buf.rope().len_chars()))
}

impl Editor {
    /// An editor for `buf`, guessing its indentation.
    pub fn new(buf: &impl TextBuffer) -> Self {
        Self {
            indent: guess_indent(buf),
            ..Self::default()
        }
    }

    /// Sets the size of the text area.
    pub fn resize(&mut self, width: usize, height: usize) {
        self.width = width.max(1);
        self.height = height.max(1);
    }

    /// Applies `action`. App-level actions (find, save, ...) are ignored here.
    pub fn apply(&mut self, buf: &mut impl TextBuffer, action: &Action) -> Effect {
        match action {
            Action::InsertChar(c) => {
                if c.is_whitespace() {
                    buf.break_undo_group();
                }
                let mut s = [0u8; 4];
                self.insert(buf, c.encode_utf8(&mut s))
            }
            Action::InsertText(t) => {
                buf.break_undo_group();
                let t = t.replace("\r\n", "\n").replace('\r', "\n");
                let e = self.insert(buf, &t);
                buf.break_undo_group();
                e
            }
            Action::Newline => {
                buf.break_undo_group();
                let head = buf.selection().range().start;
                let line = line_of(buf, head);
                let line_start = buf.rope().line_to_char(line);
                let indent: String = text::indent_of(buf.rope(), line)
                    .chars()
                    .take(head - line_start)
                    .collect();
                self.insert(buf, &format!("\n{indent}"))
            }
            Action::Tab if self.selected_lines(buf).is_some() => self.reindent(buf, true),
            Action::Dedent => self.reindent(buf, false),
            Action::Tab => {
                let s = match self.indent {
                    Indent::Tabs => "\t".to_owned(),
                    Indent::Spaces(n) => {
                        let head = buf.selection().range().start;
                        let line = line_of(buf, head);
                        let col = head - buf.rope().line_to_char(line);
                        let x = text::col_to_x(buf.rope(), line, col);
                        " ".repeat(n - x % n)
                    }
                };
                self.insert(buf, &s)
            }
            Action::Backspace => self.delete_with(buf, text::prev_grapheme),
            Action::Delete => self.delete_with(buf, text::next_grapheme),
            Action::DeleteWordBack => {
                buf.break_undo_group();
                let e = self.delete_with(buf, text::prev_word);
                buf.break_undo_group();
                e
            }
            Action::Move { motion, extend } => {
                buf.break_undo_group();
                self.move_cursor(buf, *motion, *extend);
                Effect::None
            }
            Action::SelectAll => {
                let len = buf.rope().len_chars();
                buf.set_selection(CharSel {
                    anchor: 0,
                    head: len,
                });
                Effect::None
            }
            Action::Copy => self.copy(buf, false),
            Action::Cut => self.copy(buf, true),
            Action::Paste => {
                let clip = self.clipboard.clone();
                if self.clipboard_lines && buf.selection().is_empty() {
                    // A copied line goes above the current one, as in nano and micro.
                    buf.break_undo_group();
                    let head = buf.selection().head;
                    let start = buf.rope().line_to_char(line_of(buf, head));
                    let r = buf.replace(start..start, &clip);
                    buf.break_undo_group();
                    self.scroll_to_cursor(buf);
                    match r {
                        Ok(()) => Effect::None,
                        Err(e) => Effect::Refused(e.0),
                    }
                } else {
                    self.apply(buf, &Action::InsertText(clip))
                }
            }
            Action::Undo | Action::Redo => {
                buf.break_undo_group();
                let done = if *action == Action::Undo {
                    buf.undo()
                } else {
                    buf.redo()
                };
                self.desired_x = None;
                self.scroll_to_cursor(buf);
                if done {
                    Effect::None
                } else {
                    Effect::NothingToUndo
                }
            }
            Action::Scroll(n) => {
                let last = buf.rope().len_lines().saturating_sub(1);
                self.top = self.top.saturating_add_signed(*n).min(last);
                Effect::None
            }
            Action::Click { x, y } => {
                buf.break_undo_group();
                let at = self.char_at_cell(buf, *x, *y);
                buf.set_selection(CharSel::cursor(at));
                self.desired_x = None;
                Effect::None
            }
            Action::Drag { x, y } => {
                let at = self.char_at_cell(buf, *x, *y);
                let sel = buf.selection();
                buf.set_selection(CharSel {
                    anchor: sel.anchor,
                    head: at,
                });
                self.desired_x = None;
                self.scroll_to_cursor(buf);
                Effect::None
            }
            Action::Escape => {
                let head = buf.selection().head;
                buf.set_selection(CharSel::cursor(head));
                Effect::None
            }
            _ => Effect::None,
        }
    }

    /// Replaces the selection with `s` and puts the cursor after it.
    fn insert(&mut self, buf: &mut impl TextBuffer, s: &str) -> Effect {
        let range = buf.selection().range();
        let r = buf.replace(range.clone(), s);
        if r.is_ok() {
            buf.set_selection(CharSel::cursor(range.start + s.chars().count()));
        }
        self.desired_x = None;
        self.scroll_to_cursor(buf);
        match r {
            Ok(()) => Effect::None,
            Err(e) => Effect::Refused(e.0),
        }
    }

    /// The lines a selection spans when it holds a line break; a selection ending at the
    /// start of a line does not take that line.
    fn selected_lines(&self, buf: &impl TextBuffer) -> Option<std::ops::RangeInclusive<usize>> {
        let range = buf.selection().range();
        let rope = buf.rope();
        let first = line_of(buf, range.start);
        let mut last = line_of(buf, range.end);
        if last == first {
            return None;
        }
        if rope.line_to_char(last) == range.end {
            last -= 1;
        }
        Some(first..=last)
    }

    /// Indents (or dedents) the selected lines, or the cursor's line, by one level: one
    /// small edit per line (never a rewrite of the block, which would clobber a partner's
    /// edits in it), as one undo step. The selection keeps covering the same text.
    fn reindent(&mut self, buf: &mut impl TextBuffer, indent: bool) -> Effect {
        let sel = buf.selection();
        let lines = self.selected_lines(buf).unwrap_or_else(|| {
            let l = line_of(buf, sel.head);
            l..=l
        });
        let unit = match self.indent {
            Indent::Tabs => "\t".to_owned(),
            Indent::Spaces(n) => " ".repeat(n),
        };
        // (line, column) of both ends, to put them back on the same text afterwards.
        let rope = buf.rope();
        let at = |c: usize| {
            let l = rope.char_to_line(c.min(rope.len_chars()));
            (l, c - rope.line_to_char(l))
        };
        let (anchor, head) = (at(sel.anchor), at(sel.head));
        let mut delta = std::collections::HashMap::new();
        buf.break_undo_group();
        let mut result = Ok(());
        // Bottom up, so the lines above keep their offsets.
        for line in lines.rev() {
            let rope = buf.rope();
            let start = rope.line_to_char(line);
            let edit = if indent {
                // Blank lines stay blank.
                (text::line_len_chars(rope, line) > 0).then(|| (start..start, unit.clone()))
            } else {
                let ws = text::indent_of(rope, line);
                let remove = if ws.starts_with('\t') {
                    1
                } else {
                    ws.chars()
                        .take_while(|c| *c == ' ')
                        .count()
                        .min(unit.chars().count().max(1))
                };
                (remove > 0).then(|| (start..start + remove, String::new()))
            };
            if let Some((range, text)) = edit {
                let d = text.chars().count() as isize - range.len() as isize;
                if let Err(e) = buf.replace(range, &text) {
                    result = Err(e);
                    break;
                }
                delta.insert(line, d);
            }
        }
        buf.break_undo_group();
        let place = |(line, col): (usize, usize)| {
            let d = delta.get(&line).copied().unwrap_or(0);
            let col = if col == 0 {
                0
            } else {
                col.saturating_add_signed(d)
            };
            let rope = buf.rope();
            rope.line_to_char(line) + col.min(text::line_len_chars(rope, line))
        };
        let new = CharSel {
            anchor: place(anchor),
            head: place(head),
        };
        buf.set_selection(new);
        self.desired_x = None;
        self.scroll_to_cursor(buf);
        match result {
            Ok(()) => Effect::None,
            Err(e) => Effect::Refused(e.0),
        }
    }

    /// Deletes the selection, or from the cursor to `target(cursor)`.
    fn delete_with(
        &mut self,
        buf: &mut impl TextBuffer,
        target: impl Fn(&ropey::Rope, usize) -> usize,
    ) -> Effect {
        let sel = buf.selection();
        let range = if sel.is_empty() {
            let to = target(buf.rope(), sel.head);
            sel.head.min(to)..sel.head.max(to)
        } else {
            sel.range()
        };
        if range.is_empty() {
            return Effect::None;
        }
        let r = buf.replace(range.clone(), "");
        if r.is_ok() {
            buf.set_selection(CharSel::cursor(range.start));
        }
        self.desired_x = None;
        self.scroll_to_cursor(buf);
        match r {
            Ok(()) => Effect::None,
            Err(e) => Effect::Refused(e.0),
        }
    }

    fn copy(&mut self, buf: &mut impl TextBuffer, cut: bool) -> Effect {
        let sel = buf.selection();
        let rope = buf.rope();
        let (range, lines) = if sel.is_empty() {
            let line = rope.char_to_line(sel.head);
            let start = rope.line_to_char(line);
            let end = if line + 1 < rope.len_lines() {
                rope.line_to_char(line + 1)
            } else {
                rope.len_chars()
            };
            (start..end, true)
        } else {
            (sel.range(), false)
        };
        let mut copied = rope.slice(range.clone()).to_string();
        if lines && !copied.ends_with('\n') {
            copied.push('\n');
        }
        self.clipboard = copied.clone();
        self.clipboard_lines = lines;
        if cut && !range.is_empty() {
            buf.break_undo_group();
            let r = buf.replace(range.clone(), "");
            buf.break_undo_group();
            if let Err(e) = r {
                return Effect::Refused(e.0);
            }
            buf.set_selection(CharSel::cursor(range.start));
            self.scroll_to_cursor(buf);
        }
        Effect::Copied(copied)
    }

    fn move_cursor(&mut self, buf: &mut impl TextBuffer, motion: Motion, extend: bool) {
        let sel = buf.selection();
        let rope = buf.rope();
        let head = sel.head;
        let line = rope.char_to_line(head);
        let line_start = rope.line_to_char(line);
        let last_line = rope.len_lines().saturating_sub(1);
        let mut keep_x = false;
        let new_head = match motion {
            // Without Shift, Left/Right on a selection go to its edge.
            Motion::Left if !extend && !sel.is_empty() => sel.range().start,
            Motion::Right if !extend && !sel.is_empty() => sel.range().end,
            Motion::Left => text::prev_grapheme(rope, head),
            Motion::Right => text::next_grapheme(rope, head),
            Motion::WordLeft => text::prev_word(rope, head),
            Motion::WordRight => text::next_word(rope, head),
            Motion::LineStart => {
                let indent = text::indent_of(rope, line).chars().count();
                let first = line_start + indent.min(text::line_len_chars(rope, line));
                if head == first { line_start } else { first }
            }
            Motion::LineEnd => text::line_end(rope, line),
            Motion::DocStart => 0,
            Motion::DocEnd => rope.len_chars(),
            Motion::Up | Motion::Down | Motion::PageUp | Motion::PageDown => {
                keep_x = true;
                let x = self
                    .desired_x
                    .unwrap_or_else(|| text::col_to_x(rope, line, head - line_start));
                self.desired_x = Some(x);
                let page = self.height.saturating_sub(1).max(1);
                let target = match motion {
                    Motion::Up if line == 0 => None,
                    Motion::Up => Some(line - 1),
                    Motion::Down if line == last_line => None,
                    Motion::Down => Some(line + 1),
                    Motion::PageUp => {
                        self.top = self.top.saturating_sub(page);
                        Some(line.saturating_sub(page))
                    }
                    _ => {
                        self.top = (self.top + page).min(last_line);
                        Some((line + page).min(last_line))
                    }
                };
                match target {
                    Some(l) => rope.line_to_char(l) + text::x_to_col(rope, l, x),
                    // Up on the first line goes to its start, Down on the last to its end.
                    None if motion == Motion::Up => 0,
                    None => rope.len_chars(),
                }
            }
        };
        if !keep_x {
            self.desired_x = None;
        }
        let anchor = if extend { sel.anchor } else { new_head };
        buf.set_selection(CharSel {
            anchor,
            head: new_head,
        });
        self.scroll_to_cursor(buf);
    }

    /// The char under a cell of the text area.
    fn char_at_cell(&self, buf: &impl TextBuffer, x: u16, y: u16) -> usize {
        let rope = buf.rope();
        let line = (self.top + y as usize).min(rope.len_lines().saturating_sub(1));
        rope.line_to_char(line) + text::x_to_col(rope, line, self.left + x as usize)
    }

    /// Scrolls just enough to show the cursor.
    pub fn scroll_to_cursor(&mut self, buf: &impl TextBuffer) {
        let head = buf.selection().head;
        self.scroll_to(buf, head);
    }

    /// Scrolls just enough to show the char at `at`.
    pub fn scroll_to(&mut self, buf: &impl TextBuffer, at: usize) {
        let rope = buf.rope();
        let at = at.min(rope.len_chars());
        let line = rope.char_to_line(at);
        if line < self.top {
            self.top = line;
        } else if line >= self.top + self.height {
            self.top = line + 1 - self.height;
        }
        let x = text::col_to_x(rope, line, at - rope.line_to_char(line));
        if x < self.left {
            self.left = x.saturating_sub(self.width / 4);
        } else if x >= self.left + self.width {
            self.left = x + 1 - self.width + self.width / 4;
        }
    }

    /// After a remote change, keeps the cursor (now on `line`) on screen row `row`, so text
    /// inserted above it does not push it away; but never scrolls further down than the
    /// document needs (of `lines` lines), unless the view was already there: a partner
    /// appending at our cursor in a short file must not hide its first lines.
    pub fn keep_cursor_row(&mut self, line: usize, row: usize, lines: usize) {
        let fits = lines.saturating_sub(self.height).max(self.top);
        self.top = line.saturating_sub(row).min(fits);
    }

    /// Centres the view on `at` when it is outside it (jumps: find, go to line, follow).
    pub fn reveal(&mut self, buf: &impl TextBuffer, at: usize) {
        let line = line_of(buf, at);
        if line < self.top || line >= self.top + self.height {
            self.top = line.saturating_sub(self.height / 2);
        }
        self.scroll_to(buf, at);
    }

    /// Moves the cursor to the start of 1-based `line` (clamped).
    pub fn goto_line(&mut self, buf: &mut impl TextBuffer, line: usize) {
        let rope = buf.rope();
        let l = line
            .saturating_sub(1)
            .min(rope.len_lines().saturating_sub(1));
        let at = rope.line_to_char(l);
        buf.set_selection(CharSel::cursor(at));
        self.desired_x = None;
        self.reveal(buf, at);
    }

    /// Finds `query` from the cursor (forward: after the selection start; backward:
    /// before it), wrapping around, and selects the match. Case-insensitive unless the
    /// query has a capital. Matches do not span lines. Returns whether it found one.
    pub fn find(&mut self, buf: &mut impl TextBuffer, query: &str, forward: bool) -> bool {
        if query.is_empty() || query.contains('\n') {
            return false;
        }
        self.query = query.to_owned();
        let found = find_in(buf.rope(), query, buf.selection(), forward);
        if let Some(range) = &found {
            buf.set_selection(CharSel {
                anchor: range.start,
                head: range.end,
            });
            self.desired_x = None;
            self.reveal(buf, range.start);
            self.scroll_to(buf, range.end);
        }
        found.is_some()
    }

    /// The cursor's line and column (0-based, column in display cells).
    pub fn cursor_line_x(&self, buf: &impl TextBuffer) -> (usize, usize) {
        let rope = buf.rope();
        let head = buf.selection().head.min(rope.len_chars());
        let line = rope.char_to_line(head);
        (
            line,
            text::col_to_x(rope, line, head - rope.line_to_char(line)),
        )
    }
}

/// Guesses tabs or spaces from the first indented lines.
fn guess_indent(buf: &impl TextBuffer) -> Indent {
    let rope = buf.rope();
    for line in rope.lines().take(1000) {
        match line.get_char(0) {
            Some('\t') => return Indent::Tabs,
            Some(' ') => {
                let n = line.chars().take_while(|c| *c == ' ').count();
                if n == 2 || n == 4 || n == 8 {
                    return Indent::Spaces(n.min(4));
                }
            }
            _ => {}
        }
    }
    Indent::Spaces(4)
}

fn find_in(
    rope: &ropey::Rope,
    query: &str,
    sel: CharSel,
    forward: bool,
) -> Option<std::ops::Range<usize>> {
    let fold = !query.chars().any(char::is_uppercase);
    let needle = if fold {
        query.to_lowercase()
    } else {
        query.to_owned()
    };
    let lines = rope.len_lines();
    // Forward from a match skips it; from a plain cursor a match right there counts.
    let start_char = if forward {
        sel.range().start + usize::from(!sel.is_empty())
    } else {
        sel.range().start
    }
    .min(rope.len_chars());
    let start_line = rope.char_to_line(start_char);
    // Each line is searched on its own: a match never spans lines, and no step copies
    // more than one line. Lowercasing may change byte lengths, so matches are mapped
    // back through char counts, which `to_lowercase` keeps for the scripts people search
    // in (the rare exceptions simply do not match).
    let matches_in = |l: usize| -> Vec<usize> {
        let text = rope.line(l).to_string();
        let hay = if fold { text.to_lowercase() } else { text };
        hay.match_indices(&needle)
            .map(|(b, _)| hay[..b].chars().count())
            .collect()
    };
    let qlen = query.chars().count();
    for step in 0..=lines {
        let l = if forward {
            (start_line + step) % lines
        } else {
            (start_line + lines - step % lines) % lines
        };
        let base = rope.line_to_char(l);
        let found = matches_in(l);
        let pick = if forward {
            found
                .into_iter()
                .find(|c| step > 0 || base + c >= start_char)
        } else {
            found
                .into_iter()
                .rev()
                .find(|c| step > 0 || base + c < start_char)
        };
        if let Some(c) = pick {
            return Some(base + c..base + c + qlen);
        }
    }
    None
}

#[cfg(test)]
mod tests;
