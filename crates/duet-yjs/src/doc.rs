//! The documents every duet and Yjs client edits: one root text, offsets in UTF-16 code units
//! (what Yjs counts; yrs defaults to bytes, and with bytes an index inside a multi-byte
//! character made yrs panic in random tests, FIELD-NOTES). Whoever builds a document for a
//! room (the server, the load generator, the tests) builds it here.

use yrs::{Doc, GetString, OffsetKind, Options, Transact};

/// The one root text every duet and Yjs client edits.
pub const ROOT_TEXT: &str = "content";

/// The options of every room document: UTF-16 offsets, and `client_id` when given (tests and
/// replays want a fixed one; otherwise yrs draws a random 53-bit id).
pub fn options(client_id: Option<u64>) -> Options {
    let mut options = Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    };
    if let Some(id) = client_id {
        options.client_id = yrs::block::ClientID::new(id);
    }
    options
}

/// A new empty document with the root text created.
pub fn new_doc() -> Doc {
    with_options(options(None))
}

/// Like [`new_doc`], with a fixed yrs client id.
pub fn doc_with_client(client_id: u64) -> Doc {
    with_options(options(Some(client_id)))
}

fn with_options(options: Options) -> Doc {
    let doc = Doc::with_options(options);
    doc.get_or_insert_text(ROOT_TEXT);
    doc
}

/// The whole root text (never per keystroke on a large document: it copies it all).
pub fn text_of(doc: &Doc) -> String {
    doc.get_or_insert_text(ROOT_TEXT)
        .get_string(&doc.transact())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::Text;

    #[test]
    fn offsets_count_utf16_units() {
        let doc = doc_with_client(7);
        let text = doc.get_or_insert_text(ROOT_TEXT);
        text.insert(&mut doc.transact_mut(), 0, "a😀b");
        // "😀" is two UTF-16 units: offset 3 is after it.
        text.insert(&mut doc.transact_mut(), 3, "|");
        assert_eq!(text_of(&doc), "a😀|b");
        assert_eq!(doc.client_id().get(), 7);
    }
}
