//! [`Document`]: the shared yrs text, its rope mirror, the local selection and local undo.
//!
//! Invariants (hold whenever a public method returns):
//! - the rope equals the yrs root text `ROOT_TEXT` (unless someone wrote through
//!   [`Document::ydoc`] directly; the next `&mut self` call does not notice that);
//! - the selection lies inside the text and never splits a surrogate pair;
//! - every transaction that did not come from [`Document::apply_remote_update`] has its
//!   v1 update waiting in [`Document::take_local_updates`].
//!
//! How changes reach the mirror:
//!
//! ```text
//!   insert/delete/replace ──► yrs txn (origin LOCAL) ──► rope edited directly (we know the op)
//!   apply_remote_update   ──► yrs txn (origin REMOTE) ─┐
//!   undo / redo           ──► yrs txn (origin: undo) ──┴► text observer: delta ──► inbox
//!                                                          ──► rope + selection, after commit
//! ```
//!
//! Local edits skip the delta on purpose: yrs builds a text delta by walking every
//! item of the text, which would double the cost of each keystroke.

use std::fmt;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ropey::Rope;
use yrs::branch::{Branch, BranchPtr};
use yrs::sync::time::{Clock, SystemClock};
use yrs::types::text::TextEvent;
use yrs::undo::{Options as UndoOptions, UndoManager};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Assoc, ClientID, Doc, GetString, IndexedSequence, MapRef, Observable, OffsetKind, Origin,
    ReadTxn, StateVector, StickyIndex, Text, TextRef, Transact, Update,
};

use crate::clock::Monotonic;
use crate::coords::{CharIdx, LineCol, Selection, Utf16Offset};
use crate::mirror::{self, OutOfStep, TextOp};
use crate::save_mark::{SAVES_MAP, SaveMark};
use crate::{DocError, guard, nav};

/// The name of the one root text every duet (and Yjs) document shares.
pub const ROOT_TEXT: &str = "content";

/// Local edits closer together than this (by the document's clock) form one undo step.
pub const UNDO_CAPTURE_TIMEOUT_MS: u64 = 500;

/// Origin of our own edits; the undo manager tracks only this (and its own undo/redo).
const LOCAL_ORIGIN: &str = "duet-doc/local";
/// Origin of updates received from peers.
const REMOTE_ORIGIN: &str = "duet-doc/remote";
const MIRROR_OBSERVER: &str = "duet-doc/mirror";
const UPDATE_OBSERVER: &str = "duet-doc/updates";
const SAVES_OBSERVER: &str = "duet-doc/saves";
const CLEANUP_OBSERVER: &str = "duet-doc/cleanup";
/// Origin of save records: never part of anyone's undo.
const SAVE_ORIGIN: &str = "duet-doc/save";

/// yrs client ids are 53 bits wide (JavaScript-safe integers).
const CLIENT_ID_MASK: u64 = (1 << 53) - 1;

/// What the yrs observers hand back to the document after a transaction commits.
#[derive(Default)]
struct Inbox {
    /// Text changes not made by a local edit method, in commit order.
    changes: Vec<Pending>,
    /// v1 updates of every non-remote transaction, in commit order.
    updates: Vec<Vec<u8>>,
    /// A peer's update changed the save record.
    saved: bool,
    /// A peer's update changed anything at all (text, save record, other root types).
    touched_any: bool,
}

enum Pending {
    Ops(Vec<TextOp>),
    /// The delta held something the rope cannot mirror: rebuild it.
    Resync,
}

/// Shared between the document and the observer closures yrs keeps. A std `Mutex`:
/// the closures run synchronously inside our own `&mut self` methods, on the same
/// thread, so the lock is never contended and never held across anything that blocks.
/// yrs' `sync` feature (needed for `Document: Send`) makes the closures `Send + Sync`.
type SharedInbox = Arc<Mutex<Inbox>>;

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    // A panic inside yrs while an observer held the lock leaves plain data behind.
    inbox.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a remote update did to the text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteChange {
    /// True if the text changed.
    pub changed: bool,
    /// Lines (of the text after the change) holding every inserted text and deletion
    /// point: a redraw hint. Lines below may have moved if the line count changed.
    pub touched_lines: Option<Range<usize>>,
    /// The update changed the save record ([`Document::last_saved`]).
    pub saved: bool,
    /// The update changed the document at all: its text, its save record, or any other
    /// root type (a workspace's index map, say). An update we already had changes nothing.
    pub doc_changed: bool,
}

/// What [`Document::absorb`] found in the inbox.
#[derive(Default)]
struct Absorbed {
    /// UTF-16 span of the new text holding every change.
    touched: Option<Range<usize>>,
    /// Where the last change in document order happened (UTF-16).
    last_edit: Option<usize>,
}

/// A duet document: one shared text and everything the local user needs around it.
///
/// Offsets in and out are [`Utf16Offset`]s (what Yjs counts); reading helpers convert
/// to [`CharIdx`] and [`LineCol`] through the rope mirror in O(log n).
pub struct Document {
    doc: Doc,
    text: TextRef,
    saves: MapRef,
    rope: Rope,
    selection: Selection,
    undo: UndoManager<()>,
    inbox: SharedInbox,
}

// The network client shares a document as `Arc<Mutex<Document>>`: keep it `Send`.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Document>();
};

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("client_id", &self.client_id())
            .field("len_utf16", &self.len_utf16())
            .field("selection", &self.selection)
            .finish_non_exhaustive()
    }
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}

impl Document {
    /// A new empty document with a random client id.
    pub fn new() -> Self {
        Self::from_options(yrs::Options::default())
    }

    /// A new empty document with a fixed client id (tests, replays). Only the low
    /// 53 bits are used, as in Yjs.
    pub fn with_client_id(id: u64) -> Self {
        Self::from_options(yrs::Options::with_client_id(ClientID::new(
            id & CLIENT_ID_MASK,
        )))
    }

    /// Uses `clock` (milliseconds) to decide which edits group into one undo step.
    /// Call right after construction: the undo history so far is dropped.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.undo = new_undo_manager(&self.doc, &self.text, clock);
        self
    }

    fn from_options(mut options: yrs::Options) -> Self {
        options.offset_kind = OffsetKind::Utf16;
        let doc = Doc::with_options(options);
        let text = doc.get_or_insert_text(ROOT_TEXT);
        let inbox = SharedInbox::default();

        let mirror_inbox = inbox.clone();
        let local = Origin::from(LOCAL_ORIGIN);
        text.observe(MIRROR_OBSERVER, move |txn, event: &TextEvent| {
            if txn.origin() == Some(&local) {
                return; // mirrored by the method that made the edit
            }
            let pending = match mirror::ops_from_delta(event.delta(txn)) {
                Some(ops) => Pending::Ops(ops),
                None => Pending::Resync,
            };
            lock(&mirror_inbox).changes.push(pending);
        });

        let saves = doc.get_or_insert_map(SAVES_MAP);
        let saves_inbox = inbox.clone();
        let remote_save = Origin::from(REMOTE_ORIGIN);
        saves.observe(SAVES_OBSERVER, move |txn, _| {
            if txn.origin() == Some(&remote_save) {
                lock(&saves_inbox).saved = true;
            }
        });

        // Whether a peer's update changed anything, in any root type: new blocks move the
        // state vector, deletions show in the delete set.
        let any_inbox = inbox.clone();
        let remote_any = Origin::from(REMOTE_ORIGIN);
        doc.transact_mut()
            .observe_transaction_cleanup(CLEANUP_OBSERVER, move |txn, event| {
                if txn.origin() == Some(&remote_any)
                    && (event.before_state != event.after_state || !event.delete_set.is_empty())
                {
                    lock(&any_inbox).touched_any = true;
                }
            });

        let update_inbox = inbox.clone();
        let remote = Origin::from(REMOTE_ORIGIN);
        // Captured after commit, never encoded inside the transaction (FIELD-NOTES).
        doc.transact_mut()
            .observe_update_v1(UPDATE_OBSERVER, move |txn, event| {
                if txn.origin() != Some(&remote) {
                    lock(&update_inbox).updates.push(event.update.clone());
                }
            });

        let undo = new_undo_manager(&doc, &text, Arc::new(SystemClock));
        Self {
            doc,
            text,
            saves,
            rope: Rope::new(),
            selection: Selection::default(),
            undo,
            inbox,
        }
    }

    /// This replica's yrs client id.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// The underlying yrs document, for tests and interop. Writing to it directly
    /// bypasses the rope mirror and the selection.
    pub fn ydoc(&self) -> &yrs::Doc {
        &self.doc
    }

    // --- reading ---------------------------------------------------------------

    /// The whole text, copied out of the rope mirror.
    pub fn text(&self) -> String {
        self.rope.to_string()
    }

    /// The rope mirror of the text.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Length in UTF-16 code units.
    pub fn len_utf16(&self) -> usize {
        self.rope.len_utf16_cu()
    }

    /// Length in chars.
    pub fn len_chars(&self) -> usize {
        self.rope.len_chars()
    }

    /// Number of lines; an empty text has one, a trailing line break starts another.
    pub fn line_count(&self) -> usize {
        self.rope.len_lines()
    }

    /// The char holding UTF-16 offset `o` (clamped to the end of the text).
    pub fn utf16_to_char(&self, o: Utf16Offset) -> CharIdx {
        CharIdx(self.rope.utf16_cu_to_char(o.0.min(self.len_utf16())))
    }

    /// The UTF-16 offset of char `c` (clamped to the end of the text).
    pub fn char_to_utf16(&self, c: CharIdx) -> Utf16Offset {
        Utf16Offset(self.rope.char_to_utf16_cu(c.0.min(self.len_chars())))
    }

    /// Line and column of char `c` (clamped to the end of the text).
    pub fn char_to_line_col(&self, c: CharIdx) -> LineCol {
        let c = c.0.min(self.len_chars());
        let line = self.rope.char_to_line(c);
        LineCol {
            line,
            col: c - self.rope.line_to_char(line),
        }
    }

    /// The char at `lc`; a line past the end means the last line, a column past the
    /// end of the line means its end (before its line break).
    pub fn line_col_to_char(&self, lc: LineCol) -> CharIdx {
        let line = lc.line.min(self.line_count() - 1);
        CharIdx(self.rope.line_to_char(line) + lc.col.min(self.line_len(line)))
    }

    /// The first char of `line`; past the last line, the end of the text.
    pub fn line_start(&self, line: usize) -> CharIdx {
        CharIdx(self.rope.line_to_char(line.min(self.line_count())))
    }

    /// Length of `line` in chars, without its line break (0 past the last line).
    pub fn line_len(&self, line: usize) -> usize {
        if line >= self.line_count() {
            return 0;
        }
        let slice = self.rope.line(line);
        let len = slice.len_chars();
        let last = len.checked_sub(1).and_then(|i| slice.get_char(i));
        let before_last = len.checked_sub(2).and_then(|i| slice.get_char(i));
        match (before_last, last) {
            (Some('\r'), Some('\n')) => len - 2,
            (_, Some('\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}')) => {
                len - 1
            }
            _ => len,
        }
    }

    /// The next grapheme-cluster boundary after `c`.
    pub fn next_grapheme(&self, c: CharIdx) -> CharIdx {
        CharIdx(nav::next_grapheme(&self.rope, c.0))
    }

    /// The previous grapheme-cluster boundary before `c`.
    pub fn prev_grapheme(&self, c: CharIdx) -> CharIdx {
        CharIdx(nav::prev_grapheme(&self.rope, c.0))
    }

    /// Ctrl-Right: the end of the next word (or punctuation run) after `c`.
    pub fn next_word(&self, c: CharIdx) -> CharIdx {
        CharIdx(nav::next_word(&self.rope, c.0))
    }

    /// Ctrl-Left / Ctrl-Backspace: the start of the word (or punctuation run) before `c`.
    pub fn prev_word(&self, c: CharIdx) -> CharIdx {
        CharIdx(nav::prev_word(&self.rope, c.0))
    }

    // --- local edits -----------------------------------------------------------

    /// Inserts `text` at `at` in one local transaction. The selection maps through
    /// the edit like a remote one: a cursor at `at` ends up after the new text.
    pub fn insert(&mut self, at: Utf16Offset, text: &str) -> Result<(), DocError> {
        self.replace(at..at, text)
    }

    /// Deletes `range` in one local transaction.
    pub fn delete(&mut self, range: Range<Utf16Offset>) -> Result<(), DocError> {
        self.replace(range, "")
    }

    /// Replaces `range` with `text` in one local transaction (one undo step at most).
    pub fn replace(&mut self, range: Range<Utf16Offset>, text: &str) -> Result<(), DocError> {
        let (start, end) = self.check_range(&range)?;
        if start == end && text.is_empty() {
            return Ok(());
        }
        {
            let mut txn = self.doc.transact_mut_with(LOCAL_ORIGIN);
            if end > start {
                self.text.remove_range(&mut txn, start, end - start);
            }
            if !text.is_empty() {
                self.text.insert(&mut txn, start, text);
            }
        }
        let mut ops = vec![TextOp::Retain(start as usize)];
        if end > start {
            ops.push(TextOp::Delete((end - start) as usize));
        }
        if !text.is_empty() {
            ops.push(TextOp::Insert(text.to_owned()));
        }
        self.mirror_local(&ops);
        Ok(())
    }

    /// Replaces the whole text in one local transaction (seeding a room from a file).
    /// The cursor goes to the start.
    pub fn set_text(&mut self, text: &str) -> Result<(), DocError> {
        let len = to_u32(self.len_utf16())?;
        if len == 0 && text.is_empty() {
            return Ok(());
        }
        {
            let mut txn = self.doc.transact_mut_with(LOCAL_ORIGIN);
            if len > 0 {
                self.text.remove_range(&mut txn, 0, len);
            }
            if !text.is_empty() {
                self.text.insert(&mut txn, 0, text);
            }
        }
        self.rope = Rope::from_str(text);
        self.selection = Selection::default();
        Ok(())
    }

    /// Applies a local edit we just committed to the mirror and the selection.
    fn mirror_local(&mut self, ops: &[TextOp]) {
        let Selection { anchor, head } = self.selection;
        let (mut a, mut h) = (anchor.0, head.0);
        match mirror::apply(&mut self.rope, ops, &mut [&mut a, &mut h]) {
            Ok(_) => self.selection = Selection::new(Utf16Offset(a), Utf16Offset(h)),
            // Offsets were checked against the rope before the edit, so this means the
            // mirror had drifted from yrs: recover rather than stay wrong.
            Err(OutOfStep) => self.resync(),
        }
    }

    /// Checks a range of local offsets, returning them as yrs indices.
    fn check_range(&self, range: &Range<Utf16Offset>) -> Result<(u32, u32), DocError> {
        if range.start > range.end {
            return Err(DocError::ReversedRange {
                start: range.start.0,
                end: range.end.0,
            });
        }
        Ok((
            self.check_offset(range.start)?,
            self.check_offset(range.end)?,
        ))
    }

    fn check_offset(&self, at: Utf16Offset) -> Result<u32, DocError> {
        let len = self.len_utf16();
        if at.0 > len {
            return Err(DocError::OffsetOutOfRange { offset: at.0, len });
        }
        if mirror::char_at_utf16(&self.rope, at.0).is_none() {
            return Err(DocError::SplitsSurrogatePair { offset: at.0 });
        }
        to_u32(at.0)
    }

    // --- selection -------------------------------------------------------------

    /// The local selection.
    pub fn selection(&self) -> Selection {
        self.selection
    }

    /// Sets the local selection, clamping both ends into the text and moving an end
    /// that splits a surrogate pair to the start of that char.
    pub fn set_selection(&mut self, sel: Selection) {
        self.selection = Selection::new(self.snap(sel.anchor), self.snap(sel.head));
    }

    /// Clamps `o` into the text and off the middle of a surrogate pair.
    fn snap(&self, o: Utf16Offset) -> Utf16Offset {
        self.char_to_utf16(self.utf16_to_char(o))
    }

    // --- sync ------------------------------------------------------------------

    /// v1 updates of every transaction since the last call that did not come from
    /// [`Document::apply_remote_update`]: local edits, undo and redo.
    pub fn take_local_updates(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut lock(&self.inbox).updates)
    }

    /// Applies a peer's v1 update (origin "remote": not undoable by us, not returned
    /// by [`Document::take_local_updates`]). Malformed bytes give `Err`, and so does a
    /// panic inside yrs, which is caught. On `Err` the text may still have changed in
    /// part: the mirror and the selection are kept consistent either way, so redraw.
    pub fn apply_remote_update(&mut self, update_v1: &[u8]) -> Result<RemoteChange, DocError> {
        guard::check_update_v1(update_v1)?;
        let update = match catch_unwind(|| Update::decode_v1(update_v1)) {
            Ok(Ok(update)) => update,
            Ok(Err(e)) => return Err(DocError::Decode(format!("update: {e}"))),
            Err(panic) => {
                return Err(DocError::Decode(format!(
                    "update: yrs panicked: {}",
                    panic_message(panic.as_ref())
                )));
            }
        };
        let doc = &self.doc;
        // yrs has panicked on malformed input (y-crdt #415); contain it. If it panics
        // mid-transaction the store may be partly integrated, so the mirror is rebuilt.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut_with(REMOTE_ORIGIN);
            txn.apply_update(update)
        }));
        let absorbed = if outcome.is_err() {
            self.resync();
            self.everything()
        } else {
            self.absorb()
        };
        match outcome {
            Ok(Ok(())) => Ok(self.remote_change(absorbed)),
            Ok(Err(e)) => Err(DocError::Apply(e.to_string())),
            Err(panic) => Err(DocError::Apply(format!(
                "yrs panicked: {}",
                panic_message(panic.as_ref())
            ))),
        }
    }

    /// Our state vector, v1 encoded (sync step 1).
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// A v1 update with everything a peer whose v1 state vector is `remote_sv_v1`
    /// lacks (sync step 2).
    pub fn encode_diff(&self, remote_sv_v1: &[u8]) -> Result<Vec<u8>, DocError> {
        guard::check_state_vector_v1(remote_sv_v1)?;
        let sv = match catch_unwind(|| StateVector::decode_v1(remote_sv_v1)) {
            Ok(Ok(sv)) => sv,
            Ok(Err(e)) => return Err(DocError::Decode(format!("state vector: {e}"))),
            Err(panic) => {
                return Err(DocError::Decode(format!(
                    "state vector: yrs panicked: {}",
                    panic_message(panic.as_ref())
                )));
            }
        };
        Ok(self.doc.transact().encode_diff_v1(&sv))
    }

    /// The whole document as one v1 update.
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// True if yrs holds updates it cannot integrate yet (their dependencies never
    /// arrived). A client seeing this for long should resync.
    pub fn has_pending_updates(&self) -> bool {
        self.doc.transact().has_missing_updates()
    }

    /// Moves everything the observers collected into the rope and the selection.
    fn absorb(&mut self) -> Absorbed {
        let changes = std::mem::take(&mut lock(&self.inbox).changes);
        let mut absorbed = Absorbed::default();
        for change in changes {
            let Pending::Ops(ops) = change else {
                self.resync();
                return self.everything();
            };
            let Selection { anchor, head } = self.selection;
            let (mut a, mut h) = (anchor.0, head.0);
            // The span touched so far moves with later changes, like any position.
            let before = absorbed.touched.take();
            let (mut ts, mut te) = before.as_ref().map_or((0, 0), |t| (t.start, t.end));
            match mirror::apply(
                &mut self.rope,
                &ops,
                &mut [&mut a, &mut h, &mut ts, &mut te],
            ) {
                Ok(applied) => {
                    self.selection = Selection::new(Utf16Offset(a), Utf16Offset(h));
                    absorbed.touched = match (before.map(|_| ts..te), applied.touched) {
                        (Some(b), Some(t)) => Some(b.start.min(t.start)..b.end.max(t.end)),
                        (b, t) => b.or(t),
                    };
                    absorbed.last_edit = applied.last_edit.or(absorbed.last_edit);
                }
                Err(OutOfStep) => {
                    self.resync();
                    return self.everything();
                }
            }
        }
        absorbed
    }

    /// Rebuilds the rope from yrs (O(document)): only after a delta the mirror could
    /// not follow (an embed, a split surrogate pair, a yrs panic).
    fn resync(&mut self) {
        lock(&self.inbox).changes.clear();
        self.rope = Rope::from_str(&self.text.get_string(&self.doc.transact()));
        self.set_selection(self.selection);
    }

    fn everything(&self) -> Absorbed {
        Absorbed {
            touched: Some(0..self.len_utf16()),
            last_edit: None,
        }
    }

    fn remote_change(&self, absorbed: Absorbed) -> RemoteChange {
        let touched_lines = absorbed.touched.map(|t| {
            let line = |o| self.rope.char_to_line(self.utf16_to_char(Utf16Offset(o)).0);
            line(t.start)..line(t.end) + 1
        });
        let mut inbox = lock(&self.inbox);
        RemoteChange {
            changed: touched_lines.is_some(),
            touched_lines,
            saved: std::mem::take(&mut inbox.saved),
            doc_changed: std::mem::take(&mut inbox.touched_any),
        }
    }

    // --- saves -----------------------------------------------------------------

    /// Records that `mark.by` saved the text (a local transaction: it travels to the room
    /// with [`Document::take_local_updates`], and is never undone by undo).
    pub fn mark_saved(&mut self, mark: &SaveMark) {
        let mut txn = self.doc.transact_mut_with(SAVE_ORIGIN);
        mark.write(&self.saves, &mut txn);
    }

    /// The latest save anyone recorded in the room, if any.
    pub fn last_saved(&self) -> Option<SaveMark> {
        SaveMark::read(&self.saves, &self.doc.transact())
    }

    // --- peers' cursors --------------------------------------------------------

    /// Encodes `at` (clamped, snapped off a surrogate pair) as a yrs `StickyIndex` in
    /// v1 form, which is a Yjs `RelativePosition` encoding, for publishing our cursor.
    pub fn encode_sticky(&self, at: Utf16Offset, assoc: Assoc) -> Vec<u8> {
        let at = self.snap(at).0;
        let txn = self.doc.transact();
        let index = u32::try_from(at)
            .ok()
            .and_then(|i| self.text.sticky_index(&txn, i, assoc));
        // yrs has no item to stick to at the very end with `Assoc::After`; Yjs then
        // refers to the type itself, which resolves to its end.
        index
            .unwrap_or_else(|| StickyIndex::from_type(&txn, &self.text, assoc))
            .encode_v1()
    }

    /// Resolves a peer's encoded sticky index to an offset in our text; `None` if the
    /// bytes are malformed, refer to another type, or to text we have not received.
    pub fn resolve_sticky(&self, encoded: &[u8]) -> Option<Utf16Offset> {
        let index = catch_unwind(|| StickyIndex::decode_v1(encoded))
            .ok()?
            .ok()?;
        let ours: &Branch = self.text.as_ref();
        let ours = BranchPtr::from(ours);
        let doc = &self.doc;
        let offset = catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            index
                .get_offset(&txn)
                .filter(|o| o.branch == ours)
                .map(|o| o.index)
        }))
        .ok()??;
        Some(self.snap(Utf16Offset(offset as usize)))
    }

    // --- undo ------------------------------------------------------------------

    /// Undoes our last undo step (never a peer's edits). The cursor goes to where the
    /// undo changed the text. True if the text changed.
    pub fn undo(&mut self) -> bool {
        let changed = self.undo.undo_blocking();
        self.after_undo_or_redo();
        changed
    }

    /// Redoes the last undone step. True if the text changed.
    pub fn redo(&mut self) -> bool {
        let changed = self.undo.redo_blocking();
        self.after_undo_or_redo();
        changed
    }

    fn after_undo_or_redo(&mut self) {
        if let Some(at) = self.absorb().last_edit {
            self.selection = Selection::cursor(Utf16Offset(at));
        }
    }

    /// True if there is an undo step (it may turn out empty if peers deleted its text).
    pub fn can_undo(&self) -> bool {
        self.undo.can_undo()
    }

    /// True if there is a redo step.
    pub fn can_redo(&self) -> bool {
        self.undo.can_redo()
    }

    /// Makes the next local edit start a new undo step (after a cursor jump, say).
    pub fn break_undo_group(&mut self) {
        self.undo.reset();
    }
}

fn new_undo_manager(doc: &Doc, text: &TextRef, clock: Arc<dyn Clock>) -> UndoManager<()> {
    let mut options = UndoOptions {
        capture_timeout_millis: UNDO_CAPTURE_TIMEOUT_MS,
        timestamp: Arc::new(Monotonic::new(clock)),
        ..UndoOptions::default()
    };
    options.tracked_origins.insert(Origin::from(LOCAL_ORIGIN));
    let mut undo = UndoManager::with_options(options);
    undo.expand_scope(doc, text);
    undo
}

fn to_u32(offset: usize) -> Result<u32, DocError> {
    u32::try_from(offset).map_err(|_| DocError::OffsetOutOfRange {
        offset,
        len: u32::MAX as usize,
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests;
