//! A readable notation for a text with a selection, for tests across the workspace.
//!
//! - `"he|llo"`: a cursor after "he";
//! - `"h[ell]o"`: "ell" selected forwards (anchor at `[`, head at `]`);
//! - `"h|ell[o"`: "ell" selected backwards (head at `|`, anchor at `[`).
//!
//! The markers themselves cannot appear in the text.

use crate::{Document, Selection, Utf16Offset};

/// Why a notation string could not be read.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("bad selection notation {notation:?}: {reason}")]
pub struct NotationError {
    /// The offending notation.
    pub notation: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Splits `marked` into its text and selection (offsets in UTF-16 units).
pub fn parse(marked: &str) -> Result<(String, Selection), NotationError> {
    let fail = |reason| NotationError {
        notation: marked.to_owned(),
        reason,
    };
    let mut text = String::with_capacity(marked.len());
    let mut at = 0;
    // Where `[`, `|` and `]` were seen.
    let mut marks: [Option<Utf16Offset>; 3] = [None; 3];
    for c in marked.chars() {
        let slot = match c {
            '[' => 0,
            '|' => 1,
            ']' => 2,
            _ => {
                text.push(c);
                at += c.len_utf16();
                continue;
            }
        };
        if marks[slot].replace(Utf16Offset(at)).is_some() {
            return Err(fail("a marker appears twice"));
        }
    }
    let sel = match marks {
        [_, Some(_), Some(_)] => return Err(fail("both `|` and `]` mark the cursor")),
        [None, Some(head), None] => Selection::cursor(head),
        [Some(anchor), Some(head), None] | [Some(anchor), None, Some(head)] => {
            Selection::new(anchor, head)
        }
        [None, None, None] => return Err(fail("no `|` or `]` marks the cursor")),
        [None, None, Some(_)] => return Err(fail("`]` without `[`")),
        [Some(_), None, None] => return Err(fail("`[` without `|` or `]`")),
    };
    Ok((text, sel))
}

/// Writes `text` with `sel` marked, the inverse of [`parse`].
pub fn mark(text: &str, sel: Selection) -> String {
    let (anchor, head) = (sel.anchor.0, sel.head.0);
    let marker = |at: usize| match (at == anchor, at == head) {
        (true, true) => "|",
        (true, false) => "[",
        (false, true) if anchor < head => "]",
        (false, true) => "|",
        (false, false) => "",
    };
    let mut out = String::with_capacity(text.len() + 2);
    let mut at = 0;
    for c in text.chars() {
        out.push_str(marker(at));
        out.push(c);
        at += c.len_utf16();
    }
    out.push_str(marker(at));
    out
}

/// A document holding the text of `marked` with its selection, as a local edit.
///
/// # Panics
///
/// If `marked` is not valid notation: this is a test helper, and a typo in a test
/// should fail loudly.
pub fn doc_from(marked: &str) -> Document {
    let (text, sel) = match parse(marked) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{e}"),
    };
    let mut doc = Document::with_client_id(1);
    if let Err(e) = doc.set_text(&text) {
        panic!("cannot seed document from {marked:?}: {e}");
    }
    doc.set_selection(sel);
    doc
}

/// The document's text with its selection marked.
pub fn render(doc: &Document) -> String {
    mark(&doc.text(), doc.selection())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for marked in ["|", "he|llo", "hello|", "h[ell]o", "h|ell[o", "[x]", "👍|é"] {
            let (text, sel) = parse(marked).expect("valid");
            assert_eq!(mark(&text, sel), marked);
        }
    }

    #[test]
    fn offsets_are_utf16() {
        let (text, sel) = parse("👍[é]").expect("valid");
        assert_eq!(text, "👍é");
        assert_eq!(sel, Selection::new(Utf16Offset(2), Utf16Offset(3)));
    }

    #[test]
    fn rejects_ambiguous_notation() {
        for bad in ["hello", "a|b|c", "a[b", "a]b", "[a|b]", "[[a|"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = parse("abc").expect_err("no cursor");
        assert!(err.to_string().contains("\"abc\""), "{err}");
    }

    #[test]
    fn doc_from_and_render_agree() {
        let doc = doc_from("ab|c");
        assert_eq!(doc.text(), "abc");
        assert_eq!(render(&doc), "ab|c");
    }
}
