//! What a key, a mouse event or a paste asks for: [`Action`], a plain value.
//!
//! The keymap turns terminal input into actions; the editor core applies the editing and
//! motion ones; the app handles the rest (prompts, panels, saving, quitting).

/// A cursor motion. With `extend` the selection grows instead of collapsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    Left,
    Right,
    Up,
    Down,
    WordLeft,
    WordRight,
    /// Smart Home: first non-blank, then column 0.
    LineStart,
    LineEnd,
    PageUp,
    PageDown,
    DocStart,
    DocEnd,
}

/// One user intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Types one char (replacing the selection).
    InsertChar(char),
    /// Inserts text as one transaction (bracketed paste, clipboard paste).
    InsertText(String),
    /// Enter: a line break and the current line's indentation.
    Newline,
    /// Tab: indentation to the next tab stop; with a selection over several lines,
    /// indents those lines.
    Tab,
    /// Shift-Tab: removes one level of indentation from the current line or from every
    /// line of the selection.
    Dedent,
    Backspace,
    Delete,
    /// Ctrl-Backspace: deletes the word before the cursor.
    DeleteWordBack,
    /// Moves the cursor; `extend` keeps the anchor (Shift).
    Move {
        motion: Motion,
        extend: bool,
    },
    SelectAll,
    /// Copies the selection (or the current line) to the clipboards.
    Copy,
    /// Cuts the selection (or the current line).
    Cut,
    /// Pastes the editor's own clipboard.
    Paste,
    Undo,
    Redo,
    /// Scrolls the view without moving the cursor (mouse wheel); positive is down.
    Scroll(isize),
    /// Mouse press at a cell of the text area (column, row from its top left).
    Click {
        x: u16,
        y: u16,
    },
    /// Mouse drag to a cell of the text area.
    Drag {
        x: u16,
        y: u16,
    },
    // App-level actions: handled outside the editor core.
    OpenFind,
    FindNext,
    FindPrev,
    OpenGoto,
    Save,
    Quit,
    Help,
    People,
    /// Esc: closes whatever is open, or collapses the selection.
    Escape,
    /// Ctrl-O: the workspace's file list and finder.
    Files,
    /// F2: back to the file before this one (workspaces).
    PrevFile,
    /// Ctrl-Z is undo, so suspend is on its own key (handled by the loop).
    Suspend,
}

impl Action {
    /// True for actions that change the text (refused in read-only mode).
    pub fn edits(&self) -> bool {
        matches!(
            self,
            Action::InsertChar(_)
                | Action::InsertText(_)
                | Action::Newline
                | Action::Tab
                | Action::Dedent
                | Action::Backspace
                | Action::Delete
                | Action::DeleteWordBack
                | Action::Cut
                | Action::Paste
                | Action::Undo
                | Action::Redo
        )
    }
}
