//! The seam between the editor and the text it edits.
//!
//! The editor core thinks in chars of a rope (the unit of motion and display); the
//! collaborative document thinks in UTF-16 offsets. [`TextBuffer`] is the handful of
//! operations the editor needs, in chars: the adapter for `duet_doc::Document` converts at
//! this one boundary, and [`MemBuffer`] is a plain in-memory buffer for tests and for
//! running without a document.

use std::ops::Range;

use ropey::Rope;

/// The local selection in char indices; `anchor == head` is a plain cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CharSel {
    /// Where the selection started.
    pub anchor: usize,
    /// Where the cursor is.
    pub head: usize,
}

impl CharSel {
    /// A plain cursor.
    pub fn cursor(at: usize) -> Self {
        Self {
            anchor: at,
            head: at,
        }
    }

    /// True when nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.anchor == self.head
    }

    /// The selected chars, start first.
    pub fn range(&self) -> Range<usize> {
        self.anchor.min(self.head)..self.anchor.max(self.head)
    }
}

/// Why an edit did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditRefused(pub String);

/// What the editor core needs from a text.
pub trait TextBuffer {
    /// The text; always current.
    fn rope(&self) -> &Rope;
    /// The local selection.
    fn selection(&self) -> CharSel;
    /// Moves the local selection (clamped to the text).
    fn set_selection(&mut self, sel: CharSel);
    /// Replaces `range` with `text` as one transaction (one undo step at most).
    fn replace(&mut self, range: Range<usize>, text: &str) -> Result<(), EditRefused>;
    /// Undoes the last local step; false when there was none.
    fn undo(&mut self) -> bool;
    /// Redoes the last undone step; false when there was none.
    fn redo(&mut self) -> bool;
    /// Ends the current undo group: the next edit starts a new step.
    fn break_undo_group(&mut self);
}

#[derive(Debug, Clone)]
struct Step {
    before: Rope,
    sel_before: CharSel,
    after: Rope,
    sel_after: CharSel,
}

/// A plain buffer: a rope, a selection and a snapshot undo stack where a run of edits
/// is one step until [`TextBuffer::break_undo_group`] (the document groups by time).
/// Snapshots are cheap: ropes share their nodes.
#[derive(Debug, Clone, Default)]
pub struct MemBuffer {
    rope: Rope,
    sel: CharSel,
    undo: Vec<Step>,
    redo: Vec<Step>,
    grouping: bool,
}

impl MemBuffer {
    /// A buffer holding `text` with the cursor at the start.
    pub fn new(text: &str) -> Self {
        Self {
            rope: Rope::from_str(text),
            ..Self::default()
        }
    }
}

impl TextBuffer for MemBuffer {
    fn rope(&self) -> &Rope {
        &self.rope
    }

    fn selection(&self) -> CharSel {
        self.sel
    }

    fn set_selection(&mut self, sel: CharSel) {
        let len = self.rope.len_chars();
        self.sel = CharSel {
            anchor: sel.anchor.min(len),
            head: sel.head.min(len),
        };
    }

    fn replace(&mut self, range: Range<usize>, text: &str) -> Result<(), EditRefused> {
        let len = self.rope.len_chars();
        if range.start > range.end || range.end > len {
            return Err(EditRefused(format!("range {range:?} outside 0..{len}")));
        }
        let before = self.rope.clone();
        let sel_before = self.sel;
        self.rope.remove(range.clone());
        self.rope.insert(range.start, text);
        let inserted = text.chars().count();
        let map = |p: usize| {
            // As the document does (yrs `Assoc::After`): text inserted at a position
            // lands before it.
            if p < range.start {
                p
            } else if p <= range.end {
                range.start + inserted
            } else {
                p - (range.end - range.start) + inserted
            }
        };
        self.sel = CharSel {
            anchor: map(self.sel.anchor),
            head: map(self.sel.head),
        };
        self.redo.clear();
        match self.undo.last_mut() {
            Some(step) if self.grouping => {
                step.after = self.rope.clone();
                step.sel_after = self.sel;
            }
            _ => self.undo.push(Step {
                before,
                sel_before,
                after: self.rope.clone(),
                sel_after: self.sel,
            }),
        }
        self.grouping = true;
        Ok(())
    }

    fn undo(&mut self) -> bool {
        self.grouping = false;
        let Some(step) = self.undo.pop() else {
            return false;
        };
        self.rope = step.before.clone();
        self.sel = step.sel_before;
        self.redo.push(step);
        true
    }

    fn redo(&mut self) -> bool {
        self.grouping = false;
        let Some(step) = self.redo.pop() else {
            return false;
        };
        self.rope = step.after.clone();
        self.sel = step.sel_after;
        self.undo.push(step);
        true
    }

    fn break_undo_group(&mut self) {
        self.grouping = false;
    }
}
