//! Unit tests for [`Document`], written in the `"he|llo"` notation where it helps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use yrs::{GetString, Transact};

use super::*;
use crate::notation::{doc_from, render};

const FAMILY: &str = "👨\u{200d}👩\u{200d}👧\u{200d}👦"; // 7 chars, 11 UTF-16 units

fn u(o: usize) -> Utf16Offset {
    Utf16Offset(o)
}

/// The rope mirror must always equal what yrs holds.
fn assert_mirrored(doc: &Document) {
    // get_or_insert_text opens a write transaction: take the ref before reading.
    let root = doc.ydoc().get_or_insert_text(ROOT_TEXT);
    let text = root.get_string(&doc.ydoc().transact());
    assert_eq!(doc.text(), text, "rope mirror drifted from yrs");
}

/// Delivers each side's pending local updates to the other.
fn exchange(a: &mut Document, b: &mut Document) {
    for update in a.take_local_updates() {
        b.apply_remote_update(&update)
            .expect("a's update applies at b");
    }
    for update in b.take_local_updates() {
        a.apply_remote_update(&update)
            .expect("b's update applies at a");
    }
}

/// A clock the test moves by hand, starting at an arbitrary non-zero time.
fn manual_clock() -> (Arc<AtomicU64>, Arc<dyn Clock>) {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let reading = now.clone();
    (now, Arc::new(move || reading.load(Ordering::SeqCst)))
}

fn type_at_end(doc: &mut Document, text: &str) {
    let end = u(doc.len_utf16());
    doc.insert(end, text).expect("insert at end");
}

#[test]
fn new_documents_are_empty_and_use_the_shared_root() {
    let doc = Document::new();
    assert_eq!(doc.text(), "");
    assert_eq!(
        (doc.len_utf16(), doc.len_chars(), doc.line_count()),
        (0, 0, 1)
    );
    assert_eq!(Document::with_client_id(42).client_id(), 42);
    assert_ne!(Document::new().client_id(), Document::new().client_id());
    let mut doc = Document::with_client_id(7);
    doc.insert(u(0), "x").expect("insert");
    let root = doc.ydoc().get_or_insert_text("content");
    assert_eq!(root.get_string(&doc.ydoc().transact()), "x");
}

#[test]
fn offset_conversions_across_scripts() {
    // (text, utf16 offset of each char boundary)
    let cases: [(&str, &[usize]); 7] = [
        ("abc", &[0, 1, 2, 3]),
        ("é", &[0, 1]),
        ("e\u{301}", &[0, 1, 2]),
        ("a👍b", &[0, 1, 3, 4]),
        (FAMILY, &[0, 2, 3, 5, 6, 8, 9, 11]),
        ("漢字", &[0, 1, 2]),
        ("a\r\nb", &[0, 1, 2, 3, 4]),
    ];
    for (text, boundaries) in cases {
        let mut doc = Document::with_client_id(1);
        doc.set_text(text).expect("seed");
        assert_eq!(doc.len_chars(), boundaries.len() - 1, "{text:?}");
        assert_eq!(
            doc.len_utf16(),
            *boundaries.last().unwrap_or(&0),
            "{text:?}"
        );
        for (c, &o) in boundaries.iter().enumerate() {
            assert_eq!(doc.char_to_utf16(CharIdx(c)), u(o), "{text:?} char {c}");
            assert_eq!(doc.utf16_to_char(u(o)), CharIdx(c), "{text:?} offset {o}");
        }
        // Clamping at the end.
        assert_eq!(doc.utf16_to_char(u(999)), CharIdx(doc.len_chars()));
        assert_eq!(doc.char_to_utf16(CharIdx(999)), u(doc.len_utf16()));
    }
    let doc = doc_from("👍|");
    // An offset inside the pair belongs to the emoji.
    assert_eq!(doc.utf16_to_char(u(1)), CharIdx(0));
}

#[test]
fn lines_and_columns() {
    let doc = doc_from("ab\r\ncd\n\ne\u{301}👍|");
    assert_eq!(doc.line_count(), 4);
    let lc = |line, col| LineCol { line, col };
    assert_eq!(doc.char_to_line_col(CharIdx(0)), lc(0, 0));
    assert_eq!(doc.char_to_line_col(CharIdx(2)), lc(0, 2)); // on the '\r'
    assert_eq!(doc.char_to_line_col(CharIdx(4)), lc(1, 0));
    assert_eq!(doc.char_to_line_col(CharIdx(7)), lc(2, 0));
    assert_eq!(doc.char_to_line_col(CharIdx(10)), lc(3, 2));
    assert_eq!(doc.char_to_line_col(CharIdx(11)), lc(3, 3));
    assert_eq!(doc.char_to_line_col(CharIdx(99)), lc(3, 3));
    assert_eq!(doc.line_col_to_char(lc(0, 99)), CharIdx(2)); // before "\r\n"
    assert_eq!(doc.line_col_to_char(lc(1, 1)), CharIdx(5));
    assert_eq!(doc.line_col_to_char(lc(1, 99)), CharIdx(6)); // before "\n"
    assert_eq!(doc.line_col_to_char(lc(2, 5)), CharIdx(7)); // empty line
    assert_eq!(doc.line_col_to_char(lc(9, 1)), CharIdx(9)); // past the last line
    assert_eq!(doc.line_start(1), CharIdx(4));
    assert_eq!(doc.line_start(3), CharIdx(8));
    assert_eq!(doc.line_start(9), CharIdx(11));
    assert_eq!(
        (0..5).map(|l| doc.line_len(l)).collect::<Vec<_>>(),
        [2, 2, 0, 3, 0]
    );
    let trailing = doc_from("a\n|");
    assert_eq!(trailing.line_count(), 2);
    assert_eq!(trailing.char_to_line_col(CharIdx(2)), lc(1, 0));
}

#[test]
fn grapheme_motion_through_the_document() {
    let doc = doc_from(&format!("|e\u{301}👍{FAMILY}🇫🇷\r\n漢"));
    let mut at = CharIdx(0);
    let mut stops = vec![0];
    while at.0 < doc.len_chars() {
        at = doc.next_grapheme(at);
        stops.push(at.0);
    }
    assert_eq!(stops, [0, 2, 3, 10, 12, 14, 15]);
    let mut back = vec![at.0];
    while at.0 > 0 {
        at = doc.prev_grapheme(at);
        back.push(at.0);
    }
    back.reverse();
    assert_eq!(back, stops);
    assert_eq!(doc.next_word(CharIdx(0)), CharIdx(2));
    assert_eq!(doc.prev_word(CharIdx(15)), CharIdx(14));
}

/// Local edits, as (before, edit, after) in notation.
#[test]
fn local_edit_table() {
    type Edit = fn(&mut Document) -> Result<(), DocError>;
    let table: [(&str, Edit, &str); 9] = [
        ("he|llo", |d| d.insert(u(2), "XY"), "heXY|llo"),
        ("he|llo", |d| d.insert(u(0), "XY"), "XYhe|llo"),
        ("he|llo", |d| d.insert(u(4), "XY"), "he|llXYo"),
        ("he|llo", |d| d.delete(u(1)..u(4)), "h|o"),
        ("hel|lo", |d| d.delete(u(0)..u(1)), "el|lo"),
        ("h[ell]o", |d| d.replace(u(1)..u(4), "i"), "hi|o"),
        ("a👍|b", |d| d.delete(u(1)..u(3)), "a|b"),
        ("a|b", |d| d.insert(u(1), FAMILY), &format!("a{FAMILY}|b")),
        ("abc|", |d| d.set_text("xyz"), "|xyz"),
    ];
    for (before, edit, after) in table {
        let mut doc = doc_from(before);
        edit(&mut doc).expect("edit applies");
        assert_eq!(render(&doc), after, "from {before:?}");
        assert_mirrored(&doc);
    }
}

#[test]
fn offsets_inside_a_surrogate_pair_or_past_the_end_are_refused() {
    let mut doc = doc_from("a👍|b");
    let before = doc.encode_state();
    assert_eq!(
        doc.insert(u(2), "x"),
        Err(DocError::SplitsSurrogatePair { offset: 2 })
    );
    assert_eq!(
        doc.delete(u(0)..u(2)),
        Err(DocError::SplitsSurrogatePair { offset: 2 })
    );
    assert_eq!(
        doc.replace(u(2)..u(3), "x"),
        Err(DocError::SplitsSurrogatePair { offset: 2 })
    );
    assert_eq!(
        doc.insert(u(5), "x"),
        Err(DocError::OffsetOutOfRange { offset: 5, len: 4 })
    );
    assert_eq!(
        doc.delete(u(3)..u(1)),
        Err(DocError::ReversedRange { start: 3, end: 1 })
    );
    let err = doc.insert(u(9), "x").expect_err("out of range");
    assert!(err.to_string().contains('9'), "{err}");
    assert_eq!(
        doc.encode_state(),
        before,
        "refused edits must not touch yrs"
    );
    assert_eq!(render(&doc), "a👍|b");
}

#[test]
fn empty_edits_make_no_transaction() {
    let mut doc = doc_from("ab|");
    doc.take_local_updates();
    doc.insert(u(1), "").expect("empty insert");
    doc.delete(u(1)..u(1)).expect("empty delete");
    assert!(doc.take_local_updates().is_empty());
}

#[test]
fn set_selection_clamps_and_snaps() {
    let mut doc = doc_from("a👍|");
    doc.set_selection(Selection::new(u(2), u(99)));
    assert_eq!(doc.selection(), Selection::new(u(1), u(3)));
}

#[test]
fn selection_survives_remote_edits() {
    let mut local = doc_from("hello |world");
    let mut remote = Document::with_client_id(2);
    exchange(&mut local, &mut remote);

    // An insert before the cursor shifts it by the inserted length.
    remote.insert(u(0), "👍 ").expect("remote insert");
    exchange(&mut local, &mut remote);
    assert_eq!(render(&local), "👍 hello |world");

    // An insert after the cursor leaves it alone.
    remote.insert(u(12), "!").expect("remote insert");
    exchange(&mut local, &mut remote);
    assert_eq!(render(&local), "👍 hello |wor!ld");

    // A delete spanning the cursor collapses it to the deletion point.
    remote.delete(u(6)..u(11)).expect("remote delete");
    exchange(&mut local, &mut remote);
    assert_eq!(render(&local), "👍 hel|r!ld");

    // A selection keeps covering its text.
    local.set_selection(Selection::new(u(3), u(6)));
    remote.insert(u(0), ">>").expect("remote insert");
    exchange(&mut local, &mut remote);
    assert_eq!(render(&local), ">>👍 [hel]r!ld");
    assert_mirrored(&local);
}

#[test]
fn remote_change_reports_touched_lines() {
    let mut local = doc_from("a\nb\nc\nd|");
    let mut remote = Document::with_client_id(2);
    exchange(&mut local, &mut remote);
    remote.insert(u(4), "x\ny").expect("remote insert"); // at the start of line 2
    let updates = remote.take_local_updates();
    assert_eq!(updates.len(), 1);
    let change = local.apply_remote_update(&updates[0]).expect("applies");
    assert_eq!(local.text(), "a\nb\nx\nyc\nd");
    assert_eq!(
        change,
        RemoteChange {
            changed: true,
            touched_lines: Some(2..4),
            saved: false,
            doc_changed: true,
        }
    );
    // Applying the same update again changes nothing.
    let again = local.apply_remote_update(&updates[0]).expect("idempotent");
    assert_eq!(again, RemoteChange::default());
}

#[test]
fn undo_removes_only_our_own_edits() {
    let mut a = Document::with_client_id(1);
    let mut b = Document::with_client_id(2);
    type_at_end(&mut a, "hello");
    exchange(&mut a, &mut b);
    type_at_end(&mut b, " world");
    exchange(&mut a, &mut b);
    assert_eq!(a.text(), "hello world");

    assert!(a.undo());
    assert_eq!(a.text(), " world");
    exchange(&mut a, &mut b);
    assert_eq!(b.text(), " world");
    assert!(!a.can_undo());
    assert!(!a.undo(), "nothing of ours is left to undo");

    assert!(a.redo());
    exchange(&mut a, &mut b);
    assert_eq!(
        (a.text(), b.text()),
        ("hello world".into(), "hello world".into())
    );
    assert_mirrored(&a);
    assert_mirrored(&b);
}

#[test]
fn undo_skips_interleaved_remote_edits() {
    let (now, clock) = manual_clock();
    let mut a = Document::with_client_id(1).with_clock(clock);
    let mut b = Document::with_client_id(2);
    // a and b take turns typing at the end, inside one capture window of a's.
    for (i, (mine, theirs)) in [("a1", "B1"), ("a2", "B2"), ("a3", "B3")]
        .iter()
        .enumerate()
    {
        now.fetch_add(100, Ordering::SeqCst);
        type_at_end(&mut a, mine);
        exchange(&mut a, &mut b);
        type_at_end(&mut b, theirs);
        exchange(&mut a, &mut b);
        assert_eq!(a.text().len(), 4 * (i + 1));
    }
    assert_eq!(a.text(), "a1B1a2B2a3B3");
    assert!(a.undo());
    exchange(&mut a, &mut b);
    assert_eq!(a.text(), "B1B2B3");
    assert_eq!(b.text(), "B1B2B3");
}

#[test]
fn undo_groups_bursts_by_the_clock() {
    let (now, clock) = manual_clock();
    let mut doc = Document::with_client_id(1).with_clock(clock);
    for word in ["a", "b", "c"] {
        type_at_end(&mut doc, word);
        now.fetch_add(100, Ordering::SeqCst); // typing pace: one step
    }
    now.fetch_add(600, Ordering::SeqCst); // a pause: new step
    type_at_end(&mut doc, "d");
    now.fetch_add(100, Ordering::SeqCst);
    doc.break_undo_group(); // explicit break: new step
    type_at_end(&mut doc, "e");
    now.fetch_add(100, Ordering::SeqCst);
    type_at_end(&mut doc, "f");

    assert_eq!(doc.text(), "abcdef");
    assert!(doc.undo());
    assert_eq!(doc.text(), "abcd");
    assert!(doc.undo());
    assert_eq!(doc.text(), "abc");
    assert!(doc.undo());
    assert_eq!(doc.text(), "");
    assert!(!doc.can_undo());
    assert!(doc.redo());
    assert_eq!(doc.text(), "abc");
    assert!(doc.can_redo());
}

#[test]
fn a_clock_that_steps_back_does_not_panic() {
    let (now, clock) = manual_clock();
    let mut doc = Document::with_client_id(1).with_clock(clock);
    type_at_end(&mut doc, "a");
    now.store(5, Ordering::SeqCst);
    type_at_end(&mut doc, "b");
    assert!(doc.undo());
}

#[test]
fn undo_and_redo_place_the_cursor_where_the_text_changed() {
    let mut doc = doc_from("hello |world");
    doc.break_undo_group();
    doc.insert(u(6), "big ").expect("insert");
    assert_eq!(render(&doc), "hello big |world");
    doc.set_selection(Selection::cursor(u(0)));
    assert!(doc.undo());
    assert_eq!(render(&doc), "hello |world");
    doc.set_selection(Selection::cursor(u(0)));
    assert!(doc.redo());
    assert_eq!(render(&doc), "hello big |world");

    doc.break_undo_group();
    doc.delete(u(0)..u(6)).expect("delete");
    doc.set_selection(Selection::cursor(u(3)));
    assert!(doc.undo());
    assert_eq!(render(&doc), "hello |big world");
    assert_mirrored(&doc);
}

#[test]
fn replace_and_set_text_are_one_undo_step_each() {
    let mut doc = doc_from("h[ell]o");
    doc.break_undo_group();
    doc.replace(u(1)..u(4), "ipp").expect("replace");
    assert_eq!(doc.text(), "hippo");
    assert!(doc.undo());
    assert_eq!(doc.text(), "hello");

    doc.break_undo_group();
    doc.set_text("seeded").expect("set_text");
    assert!(doc.undo());
    assert_eq!(doc.text(), "hello");
    assert_mirrored(&doc);
}

#[test]
fn local_updates_exclude_remote_ones_and_replay_to_the_same_text() {
    let mut a = Document::with_client_id(1);
    let mut b = Document::with_client_id(2);
    type_at_end(&mut b, "remote ");
    let from_b = b.take_local_updates();
    for update in &from_b {
        a.apply_remote_update(update).expect("applies");
    }
    assert!(
        a.take_local_updates().is_empty(),
        "remote updates are not ours"
    );

    type_at_end(&mut a, "local");
    a.delete(u(0)..u(1)).expect("delete");
    assert!(a.undo()); // the undo's update counts as ours too
    let from_a = a.take_local_updates();
    assert_eq!(from_a.len(), 3);
    assert!(a.take_local_updates().is_empty(), "taking drains");

    let mut replica = Document::with_client_id(3);
    for update in from_b.iter().chain(&from_a) {
        replica.apply_remote_update(update).expect("replays");
    }
    assert_eq!(replica.text(), a.text());
    assert_eq!(replica.state_vector(), a.state_vector());
    assert_mirrored(&replica);
}

#[test]
fn state_vector_and_diff_sync_two_replicas() {
    let mut a = doc_from("shared 👍 text|");
    let mut b = Document::with_client_id(2);
    type_at_end(&mut b, "b's part");
    let diff_for_b = a.encode_diff(&b.state_vector()).expect("diff");
    let diff_for_a = b.encode_diff(&a.state_vector()).expect("diff");
    b.apply_remote_update(&diff_for_b).expect("applies");
    a.apply_remote_update(&diff_for_a).expect("applies");
    assert_eq!(a.text(), b.text());
    assert_mirrored(&a);

    let mut joiner = Document::with_client_id(3);
    joiner
        .apply_remote_update(&a.encode_state())
        .expect("whole state applies");
    assert_eq!(joiner.text(), a.text());
    assert!(!joiner.has_pending_updates());
    assert!(a.encode_diff(&[0x80]).is_err());
}

#[test]
fn updates_missing_their_dependencies_wait() {
    let mut a = Document::with_client_id(1);
    type_at_end(&mut a, "one");
    type_at_end(&mut a, "two");
    let updates = a.take_local_updates();
    let mut b = Document::with_client_id(2);
    let change = b.apply_remote_update(&updates[1]).expect("stashed");
    assert!(!change.changed);
    assert!(b.has_pending_updates());
    b.apply_remote_update(&updates[0]).expect("applies");
    assert_eq!(b.text(), "onetwo");
    assert!(!b.has_pending_updates());
    assert_mirrored(&b);
}

#[test]
fn garbage_updates_are_errors_not_panics() {
    let mut doc = doc_from("safe|");
    let state = doc.encode_state();
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x01];
    let truncated = &state[..state.len() - 3];
    for bytes in [&[][..], &[0xff], &bomb, truncated, b"not an update"] {
        assert!(
            doc.apply_remote_update(bytes).is_err(),
            "{bytes:?} should be refused"
        );
    }
    assert_eq!(render(&doc), "safe|");
    assert_mirrored(&doc);
}

/// lib0 varUint of 2^60: a client id wider than the 53 bits yrs accepts.
const HUGE_CLIENT: [u8; 9] = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];

#[test]
fn a_panic_inside_yrs_decoding_is_an_error() {
    // yrs 0.28.1 debug-asserts client ids below 2^53 while decoding (a panic in debug
    // builds; in release the update below is simply truncated): either way `Err`.
    let mut update = vec![0x01, 0x01];
    update.extend(HUGE_CLIENT);
    update.push(0x00);
    let mut doc = doc_from("ok|");
    assert!(doc.apply_remote_update(&update).is_err());
    let mut sticky = vec![0x00];
    sticky.extend(HUGE_CLIENT);
    sticky.extend([0x00, 0x00]);
    assert_eq!(doc.resolve_sticky(&sticky), None);
    assert_eq!(render(&doc), "ok|");
    assert_mirrored(&doc);
}

#[test]
fn updates_to_other_roots_leave_the_text_alone() {
    // FIELD-NOTES: Yjs inserting "hi" into a root text named "t".
    let hi = [
        0x01, 0x01, 0x2a, 0x00, 0x04, 0x01, 0x01, 0x74, 0x02, 0x68, 0x69, 0x00,
    ];
    let mut doc = doc_from("x|");
    let change = doc.apply_remote_update(&hi).expect("valid update");
    assert!(!change.changed);
    assert_eq!(render(&doc), "x|");
}

#[test]
fn sticky_cursors_follow_their_text() {
    let mut a = doc_from("hello world|");
    let mut b = Document::with_client_id(2);
    exchange(&mut a, &mut b);

    let before_w = b.encode_sticky(u(6), Assoc::After);
    let at_end = b.encode_sticky(u(11), Assoc::After);
    let at_start = b.encode_sticky(u(0), Assoc::Before);
    let end_before = b.encode_sticky(u(11), Assoc::Before);
    assert_eq!(a.resolve_sticky(&before_w), Some(u(6)));
    assert_eq!(a.resolve_sticky(&at_end), Some(u(11)));

    a.insert(u(0), "👍 ").expect("insert before");
    a.insert(u(14), "!").expect("insert at end");
    assert_eq!(a.text(), "👍 hello world!");
    assert_eq!(a.resolve_sticky(&before_w), Some(u(9)));
    assert_eq!(a.resolve_sticky(&at_end), Some(u(15)));
    assert_eq!(a.resolve_sticky(&at_start), Some(u(0)));
    assert_eq!(a.resolve_sticky(&end_before), Some(u(14)));

    // Our own encodings round-trip too, and clamp.
    let own = a.encode_sticky(u(3), Assoc::After);
    assert_eq!(a.resolve_sticky(&own), Some(u(3)));
    assert_eq!(
        a.resolve_sticky(&a.encode_sticky(u(99), Assoc::After)),
        Some(u(15))
    );
    // Inside the emoji: snapped to its start.
    assert_eq!(
        a.resolve_sticky(&a.encode_sticky(u(1), Assoc::After)),
        Some(u(0))
    );
}

#[test]
fn sticky_cursors_that_cannot_resolve_are_none() {
    let mut a = doc_from("abc|");
    let mut b = Document::with_client_id(2);
    b.insert(u(0), "xyz").expect("insert");
    // b's items are unknown to a.
    assert_eq!(a.resolve_sticky(&b.encode_sticky(u(1), Assoc::After)), None);
    assert_eq!(a.resolve_sticky(&[]), None);
    assert_eq!(a.resolve_sticky(&[0x07, 0x01]), None);
    // A root type other than ours.
    let other = {
        let doc = yrs::Doc::new();
        let t = doc.get_or_insert_text("other");
        let txn = doc.transact();
        yrs::StickyIndex::from_type(&txn, &t, Assoc::After).encode_v1()
    };
    assert_eq!(a.resolve_sticky(&other), None);
    // A remote delete spanning a cursor collapses it.
    let mid = a.encode_sticky(u(1), Assoc::After);
    a.delete(u(0)..u(2)).expect("delete");
    assert_eq!(a.resolve_sticky(&mid), Some(u(0)));
}

#[test]
fn a_save_record_reaches_peers_and_is_not_undone() {
    let mut alice = Document::with_client_id(1);
    let mut bob = Document::with_client_id(2);
    alice.insert(u(0), "hello").expect("insert");
    let mark = crate::SaveMark {
        by: "alice\u{1b}[2J".into(),
        client_id: alice.client_id(),
        file: "notes.md".into(),
        lines: 1,
        at_ms: 1_764_800_000_000,
    };
    alice.mark_saved(&mark);
    let mut saw_save = false;
    for update in alice.take_local_updates() {
        saw_save |= bob.apply_remote_update(&update).expect("applies").saved;
    }
    assert!(saw_save, "bob is told that the record changed");
    let got = bob.last_saved().expect("bob reads the record");
    // Control characters never reach a terminal through a name.
    assert_eq!(got.by, "alice[2J");
    assert_eq!(
        (got.client_id, got.file.as_str(), got.lines),
        (1, "notes.md", 1)
    );
    assert_eq!(got.at_ms, 1_764_800_000_000);
    // Undo takes back the text, not the fact that it was saved.
    assert!(alice.undo());
    assert_eq!(alice.text(), "");
    assert_eq!(alice.last_saved().map(|m| m.by), Some("alice[2J".into()));
    // A text edit alone does not count as a save.
    bob.insert(u(0), "x").expect("insert");
    for update in bob.take_local_updates() {
        assert!(!alice.apply_remote_update(&update).expect("applies").saved);
    }
}

#[test]
fn changes_outside_the_text_are_reported_too() {
    use yrs::{Any, Map, Transact};
    // A workspace's index lives in a map of the same kind of document.
    let mut a = Document::with_client_id(1);
    let mut b = Document::with_client_id(2);
    let files = a.ydoc().get_or_insert_map("files");
    files.insert(&mut a.ydoc().transact_mut(), "k", Any::from("v"));
    let updates = a.take_local_updates();
    assert_eq!(updates.len(), 1, "a write through ydoc() is a local update");
    let change = b.apply_remote_update(&updates[0]).expect("applies");
    assert!(change.doc_changed && !change.changed, "{change:?}");
    // Had already: nothing changed.
    let again = b.apply_remote_update(&updates[0]).expect("applies");
    assert!(!again.doc_changed);
    // A removal (only the delete set moves) counts as well.
    files.remove(&mut a.ydoc().transact_mut(), "k");
    for u in a.take_local_updates() {
        assert!(b.apply_remote_update(&u).expect("applies").doc_changed);
    }
}

#[test]
fn a_save_record_written_by_a_foreign_client_is_read_defensively() {
    use yrs::{Any, Map, Transact};
    let foreign = yrs::Doc::with_client_id(9);
    let map = foreign.get_or_insert_map(crate::SAVES_MAP);
    map.insert(
        &mut foreign.transact_mut(),
        "last",
        Any::from("not a record"),
    );
    let update = foreign
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    let mut doc = Document::with_client_id(1);
    doc.apply_remote_update(&update).expect("applies");
    assert_eq!(doc.last_saved(), None);
}
