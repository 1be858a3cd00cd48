//! Property tests: replicas exchanging updates in random order converge, the rope mirror
//! never drifts from yrs, and no byte string from a peer can make a document panic.

use std::collections::VecDeque;

use duet_doc::{CharIdx, Document, ROOT_TEXT, Selection};
use proptest::prelude::*;
use yrs::updates::decoder::Decode;
use yrs::{GetString, StateVector, Transact};

/// Pieces of text that stress offsets: multi-unit chars, combining marks, CRLF.
const PIECES: &[&str] = &[
    "a",
    "b",
    " ",
    "\n",
    "\r\n",
    "é",
    "e\u{301}",
    "👍",
    "漢",
    "🇫🇷",
    "👨\u{200d}👩\u{200d}👧",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..4).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
enum Step {
    /// Insert at a fraction (per mille) of the text, on a char boundary.
    Insert {
        replica: usize,
        at: u16,
        text: String,
    },
    /// Delete up to `len` chars from a fraction of the text.
    Delete {
        replica: usize,
        at: u16,
        len: usize,
    },
    Undo {
        replica: usize,
    },
    Redo {
        replica: usize,
    },
    BreakUndoGroup {
        replica: usize,
    },
    /// Move the cursor to a fraction of the text.
    Select {
        replica: usize,
        at: u16,
    },
    /// Deliver one queued update (chosen by index) to `to`: random delivery order.
    Deliver {
        to: usize,
        pick: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let replica = 0..2usize;
    prop_oneof![
        4 => (replica.clone(), 0..=1000u16, text())
            .prop_map(|(replica, at, text)| Step::Insert { replica, at, text }),
        2 => (replica.clone(), 0..=1000u16, 1..5usize)
            .prop_map(|(replica, at, len)| Step::Delete { replica, at, len }),
        1 => replica.clone().prop_map(|replica| Step::Undo { replica }),
        1 => replica.clone().prop_map(|replica| Step::Redo { replica }),
        1 => replica.clone().prop_map(|replica| Step::BreakUndoGroup { replica }),
        1 => (replica.clone(), 0..=1000u16).prop_map(|(replica, at)| Step::Select { replica, at }),
        4 => (replica, any::<usize>()).prop_map(|(to, pick)| Step::Deliver { to, pick }),
    ]
}

fn char_at(doc: &Document, per_mille: u16) -> CharIdx {
    CharIdx(doc.len_chars() * usize::from(per_mille) / 1000)
}

fn yrs_text(doc: &Document) -> String {
    let root = doc.ydoc().get_or_insert_text(ROOT_TEXT);
    root.get_string(&doc.ydoc().transact())
}

fn state_vector(doc: &Document) -> StateVector {
    StateVector::decode_v1(&doc.state_vector()).expect("own state vector decodes")
}

/// The mirror equals yrs and the selection is inside the text, on char boundaries.
fn check_consistent(doc: &Document) -> Result<(), TestCaseError> {
    prop_assert_eq!(doc.text(), yrs_text(doc));
    prop_assert_eq!(doc.rope().len_utf16_cu(), doc.len_utf16());
    let sel = doc.selection();
    for end in [sel.anchor, sel.head] {
        prop_assert!(end.0 <= doc.len_utf16());
        prop_assert_eq!(doc.char_to_utf16(doc.utf16_to_char(end)), end);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_delivery_order(
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let mut docs = [Document::with_client_id(1), Document::with_client_id(2)];
        // inbox[i]: updates on their way to replica i.
        let mut inbox: [VecDeque<Vec<u8>>; 2] = [VecDeque::new(), VecDeque::new()];
        for step in steps {
            match step {
                Step::Insert { replica, at, text } => {
                    let doc = &mut docs[replica];
                    let at = doc.char_to_utf16(char_at(doc, at));
                    doc.insert(at, &text).expect("insert on a char boundary");
                }
                Step::Delete { replica, at, len } => {
                    let doc = &mut docs[replica];
                    let start = char_at(doc, at);
                    let end = CharIdx((start.0 + len).min(doc.len_chars()));
                    let range = doc.char_to_utf16(start)..doc.char_to_utf16(end);
                    doc.delete(range).expect("delete on char boundaries");
                }
                Step::Undo { replica } => {
                    docs[replica].undo();
                }
                Step::Redo { replica } => {
                    docs[replica].redo();
                }
                Step::BreakUndoGroup { replica } => docs[replica].break_undo_group(),
                Step::Select { replica, at } => {
                    let doc = &mut docs[replica];
                    let at = doc.char_to_utf16(char_at(doc, at));
                    doc.set_selection(Selection::cursor(at));
                }
                Step::Deliver { to, pick } => {
                    if !inbox[to].is_empty() {
                        let pick = pick % inbox[to].len();
                        if let Some(update) = inbox[to].remove(pick) {
                            docs[to].apply_remote_update(&update).expect("peer update applies");
                        }
                    }
                }
            }
            for (from, doc) in docs.iter_mut().enumerate() {
                inbox[1 - from].extend(doc.take_local_updates());
                check_consistent(doc)?;
            }
        }
        // Deliver everything left, in whatever order it is queued.
        for to in 0..2 {
            while let Some(update) = inbox[to].pop_front() {
                docs[to].apply_remote_update(&update).expect("peer update applies");
            }
        }
        prop_assert_eq!(docs[0].text(), docs[1].text());
        prop_assert_eq!(state_vector(&docs[0]), state_vector(&docs[1]));
        prop_assert!(!docs[0].has_pending_updates());
        for doc in &docs {
            check_consistent(doc)?;
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut doc = Document::with_client_id(1);
        doc.set_text("some 👍 text").expect("seed");
        // Random bytes are almost never a valid update; if they are, fine.
        let _ = doc.apply_remote_update(&bytes);
        let _ = doc.encode_diff(&bytes);
        let _ = doc.resolve_sticky(&bytes);
        check_consistent(&doc)?;
    }

    #[test]
    fn mutated_updates_never_panic(
        edits in prop::collection::vec(text(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut source = Document::with_client_id(7);
        for text in &edits {
            source.insert(duet_doc::Utf16Offset(0), text).expect("insert");
        }
        let mut update = source.encode_state();
        for (index, byte) in flips {
            let i = index.index(update.len());
            update[i] ^= byte;
        }
        update.truncate(cut.index(update.len() + 1).max(1));
        let mut doc = Document::with_client_id(1);
        doc.set_text("keep me").expect("seed");
        if doc.apply_remote_update(&update).is_err() {
            // Whatever happened, the document is still usable and consistent.
            doc.insert(duet_doc::Utf16Offset(0), "!").expect("still editable");
        }
        check_consistent(&doc)?;
    }
}
