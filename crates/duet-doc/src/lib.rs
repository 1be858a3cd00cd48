//! duet's document model: one shared yrs text (Yjs-compatible, UTF-16 offsets), a rope
//! mirror for fast reading, the local selection, peers' sticky cursors and an undo that
//! only ever undoes our own edits. No IO, no async, no terminal.
//!
//! The entry point is [`Document`]. Coordinates come as newtypes: [`Utf16Offset`] (what
//! yrs and the wire count), [`CharIdx`] and [`LineCol`] (what the screen counts).
//!
//! Invariant: only this crate opens yrs transactions on a duet document's text; other
//! crates see bytes (`take_local_updates`, `apply_remote_update`) and offsets.

mod clock;
mod coords;
mod document;
mod error;
mod guard;
mod mirror;
mod nav;
pub mod notation;
mod save_mark;

pub use coords::{CharIdx, LineCol, Selection, Utf16Offset, utf16_len};
pub use document::{Document, ROOT_TEXT, RemoteChange, UNDO_CAPTURE_TIMEOUT_MS};
pub use error::DocError;
/// Grapheme-cluster boundaries on any rope (the editor moves its cursor with these).
pub use nav::{next_grapheme, prev_grapheme};
pub use save_mark::{SAVES_MAP, SaveMark};
pub use yrs::Assoc;
