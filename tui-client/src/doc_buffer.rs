//! [`TextBuffer`] for the shared `duet_doc::Document`: the one place where the editor's
//! char indices become the document's UTF-16 offsets. Each conversion is O(log n) on the
//! document's rope mirror.

use std::ops::Range;

use duet_doc::{CharIdx, Document, Selection};
use ropey::Rope;

use crate::buffer::{CharSel, EditRefused, TextBuffer};

/// The local selection of `doc` in chars.
pub fn char_selection(doc: &Document) -> CharSel {
    let sel = doc.selection();
    CharSel {
        anchor: doc.utf16_to_char(sel.anchor).0,
        head: doc.utf16_to_char(sel.head).0,
    }
}

/// A peer's (UTF-16) selection in chars of `rope`, clamped to the text.
pub fn to_chars(rope: &Rope, sel: Selection) -> CharSel {
    let len = rope.len_utf16_cu();
    CharSel {
        anchor: rope.utf16_cu_to_char(sel.anchor.0.min(len)),
        head: rope.utf16_cu_to_char(sel.head.0.min(len)),
    }
}

impl TextBuffer for Document {
    fn rope(&self) -> &Rope {
        Document::rope(self)
    }

    fn selection(&self) -> CharSel {
        char_selection(self)
    }

    fn set_selection(&mut self, sel: CharSel) {
        let anchor = self.char_to_utf16(CharIdx(sel.anchor));
        let head = self.char_to_utf16(CharIdx(sel.head));
        Document::set_selection(self, Selection::new(anchor, head));
    }

    fn replace(&mut self, range: Range<usize>, text: &str) -> Result<(), EditRefused> {
        let start = self.char_to_utf16(CharIdx(range.start));
        let end = self.char_to_utf16(CharIdx(range.end));
        Document::replace(self, start..end, text).map_err(|e| EditRefused(e.to_string()))
    }

    fn undo(&mut self) -> bool {
        Document::undo(self)
    }

    fn redo(&mut self) -> bool {
        Document::redo(self)
    }

    fn break_undo_group(&mut self) {
        Document::break_undo_group(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::editor::Editor;

    #[test]
    fn the_editor_drives_a_real_document() {
        let mut doc = Document::new();
        let mut ed = Editor::new(&doc);
        for c in "a👍🏽b".chars() {
            ed.apply(&mut doc, &Action::InsertChar(c));
        }
        ed.apply(&mut doc, &Action::Backspace);
        ed.apply(&mut doc, &Action::Backspace);
        assert_eq!(doc.text(), "a");
        assert_eq!(TextBuffer::selection(&doc), CharSel::cursor(1));
        ed.apply(&mut doc, &Action::InsertText("x\ny".into()));
        assert_eq!(doc.text(), "ax\ny");
        assert!(ed.apply(&mut doc, &Action::Undo) == crate::editor::Effect::None);
        assert_eq!(doc.text(), "a");
    }
}
