//! Editing tests in a readable notation.
//!
//! `|` is the cursor; a selection is `[` (anchor) and `]` (head) when made forwards, or
//! `|` (head) and `[` (anchor) when made backwards. Keys are written as on the help
//! screen: `Backspace`, `S-Left` (Shift), `C-Right` (Ctrl), `CS-End`, `Enter`, or
//! `"type:text"` to type text.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::buffer::MemBuffer;
use crate::keymap::action_for;

/// Parses the notation into text and selection.
pub(crate) fn parse(s: &str) -> (String, CharSel) {
    let mut text = String::new();
    let (mut anchor, mut head) = (None, None);
    for c in s.chars() {
        let at = text.chars().count();
        match c {
            '|' | ']' => head = Some(at),
            '[' => anchor = Some(at),
            _ => text.push(c),
        }
    }
    let head = head.unwrap_or(0);
    (
        text,
        CharSel {
            anchor: anchor.unwrap_or(head),
            head,
        },
    )
}

/// Prints text and selection in the notation.
pub(crate) fn show(text: &str, sel: CharSel) -> String {
    let mut out = String::new();
    let n = text.chars().count();
    for (i, c) in text.chars().chain(std::iter::once('\0')).enumerate() {
        if sel.is_empty() && i == sel.head {
            out.push('|');
        } else if !sel.is_empty() {
            if sel.anchor < sel.head {
                if i == sel.anchor {
                    out.push('[');
                }
                if i == sel.head {
                    out.push(']');
                }
            } else {
                if i == sel.head {
                    out.push('|');
                }
                if i == sel.anchor {
                    out.push('[');
                }
            }
        }
        if i < n {
            out.push(c);
        }
    }
    out
}

fn key(name: &str) -> KeyEvent {
    let (mods, name) = match name.split_once('-') {
        Some((m, rest)) if !rest.is_empty() && m.chars().all(|c| "CSA".contains(c)) => {
            let mut k = KeyModifiers::NONE;
            for c in m.chars() {
                k |= match c {
                    'C' => KeyModifiers::CONTROL,
                    'S' => KeyModifiers::SHIFT,
                    _ => KeyModifiers::ALT,
                };
            }
            (k, rest)
        }
        _ => (KeyModifiers::NONE, name),
    };
    let code = match name {
        "Backspace" => KeyCode::Backspace,
        "Delete" => KeyCode::Delete,
        "Enter" => KeyCode::Enter,
        "Tab" => KeyCode::Tab,
        "Left" => KeyCode::Left,
        "Right" => KeyCode::Right,
        "Up" => KeyCode::Up,
        "Down" => KeyCode::Down,
        "Home" => KeyCode::Home,
        "End" => KeyCode::End,
        "PageUp" => KeyCode::PageUp,
        "PageDown" => KeyCode::PageDown,
        "Esc" => KeyCode::Esc,
        one if one.chars().count() == 1 => KeyCode::Char(one.chars().next().unwrap()),
        other => panic!("unknown key {other:?}"),
    };
    KeyEvent::new(code, mods)
}

fn run(before: &str, keys: &[&str]) -> (Editor, MemBuffer) {
    let (text, sel) = parse(before);
    run_on(MemBuffer::new(&text), sel, keys)
}

/// A real shared document holding `text`, which arrived from a peer (so it is not in
/// our undo history, as when joining a room).
fn doc_with(text: &str) -> duet_doc::Document {
    let mut seed = duet_doc::Document::new();
    seed.set_text(text).unwrap();
    let mut doc = duet_doc::Document::new();
    doc.apply_remote_update(&seed.encode_state()).unwrap();
    doc
}

fn run_on<B: TextBuffer>(mut buf: B, sel: CharSel, keys: &[&str]) -> (Editor, B) {
    buf.set_selection(sel);
    let mut ed = Editor::new(&buf);
    ed.resize(20, 5);
    for k in keys {
        if let Some(t) = k.strip_prefix("type:") {
            for c in t.chars() {
                ed.apply(&mut buf, &Action::InsertChar(c));
            }
        } else {
            let action = action_for(key(k)).unwrap_or_else(|| panic!("{k} is not bound"));
            ed.apply(&mut buf, &action);
        }
    }
    (ed, buf)
}

/// Runs `keys` on `before` twice: on the plain [`MemBuffer`] and on a real shared
/// `Document` through its adapter (UTF-16 offsets, yrs transactions, its own undo), and
/// expects `after` from both.
#[track_caller]
fn check(before: &str, keys: &[&str], after: &str) {
    let (_, buf) = run(before, keys);
    let got = show(&buf.rope().to_string(), buf.selection());
    assert_eq!(got, after, "MemBuffer: {before:?} + {keys:?}");
    let (text, sel) = parse(before);
    let (_, doc) = run_on(doc_with(&text), sel, keys);
    let got = show(&doc.text(), TextBuffer::selection(&doc));
    assert_eq!(got, after, "Document: {before:?} + {keys:?}");
}

#[test]
fn notation_round_trips() {
    for s in ["he|llo", "[he]llo", "|he[llo", "|", "ab[]"] {
        let (t, sel) = parse(s);
        let expect = if s == "ab[]" { "ab|" } else { s };
        assert_eq!(show(&t, sel), expect);
    }
}

#[test]
fn typing_and_deleting() {
    check("he|llo", &["Backspace"], "h|llo");
    check("he|llo", &["Delete"], "he|lo");
    check("|hello", &["Backspace"], "|hello");
    check("hello|", &["Delete"], "hello|");
    check("he|llo", &["type:XY"], "heXY|llo");
    check("[he]llo", &["type:J"], "J|llo");
    check("|he[llo", &["Backspace"], "|llo");
    check("foo bar|", &["C-Backspace"], "foo |");
    check("foo bar|", &["C-w"], "foo |");
    check("a|\nb", &["Delete"], "a|b");
}

#[test]
fn graphemes_are_one_step() {
    check("e\u{301}|x", &["Backspace"], "|x");
    check("|👍🏽x", &["Delete"], "|x");
    check("|👍🏽x", &["Right"], "👍🏽|x");
    check("日本|", &["Left", "Left"], "|日本");
    check("a🇫🇷|b", &["Backspace"], "a|b");
}

#[test]
fn enter_keeps_indentation() {
    check("    foo|", &["Enter"], "    foo\n    |");
    check("\tfoo|bar", &["Enter"], "\tfoo\n\t|bar");
    check("  |foo", &["Enter"], "  \n  |foo");
    check("x|", &["Enter", "type:y"], "x\ny|");
}

#[test]
fn tab_goes_to_the_next_stop() {
    check("|x", &["Tab"], "    |x");
    check("ab|x", &["Tab"], "ab  |x");
    check("\ta\n|x", &["Tab"], "\ta\n\t|x");
}

#[test]
fn tab_and_shift_tab_indent_selected_lines() {
    // A selection from the start of a line keeps covering whole lines.
    check("[a\nb]", &["Tab"], "[    a\n    b]");
    check("[a\n\nb]", &["Tab"], "[    a\n\n    b]");
    check("x[a\nb]\nc", &["Tab"], "    x[a\n    b]\nc");
    // A selection ending at the start of a line leaves that line alone.
    check("[a\n]b", &["Tab"], "[    a\n]b");
    check("[a\nb\n]c", &["Tab"], "[    a\n    b\n]c");
    check("    [a\n      b]", &["S-Tab"], "[a\n  b]");
    check("\t[a\n\tb]", &["S-Tab"], "[a\nb]");
    check("  fo|o", &["S-Tab"], "fo|o");
    check("fo|o", &["S-Tab"], "fo|o");
    // One undo step (the document puts the cursor back its own way: compare text).
    let (_, buf) = run("[a\nb]", &["Tab", "C-z"]);
    assert_eq!(buf.rope().to_string(), "a\nb");
    let (text, sel) = parse("[a\nb]");
    let (_, doc) = run_on(doc_with(&text), sel, &["Tab", "C-z"]);
    assert_eq!(doc.text(), "a\nb");
    // Within one line, Tab still replaces the selection.
    check("[ab]c", &["Tab"], "    |c");
}

#[test]
fn moves_and_selections() {
    check("ab|c", &["S-Left", "S-Left"], "|ab[c");
    check("a|bc", &["S-Right", "S-Right"], "a[bc]");
    check("a[bc]", &["Left"], "a|bc");
    check("a[bc]", &["Right"], "abc|");
    check("foo.bar| baz", &["C-Left"], "foo.|bar baz");
    check("|foo.bar baz", &["C-Right", "C-Right"], "foo.|bar baz");
    check("|foo bar", &["CS-Right"], "[foo] bar");
    check("  fo|o", &["Home"], "  |foo");
    check("  fo|o", &["Home", "Home"], "|  foo");
    check("|  foo", &["End"], "  foo|");
    check("a\nb|c\nd", &["C-Home"], "|a\nbc\nd");
    check("a\nb|c\nd", &["C-End"], "a\nbc\nd|");
    check("a\nb|c\nd", &["CS-End"], "a\nb[c\nd]");
    check("a|bc", &["C-a"], "[abc]");
    check("a[bc]", &["Esc"], "abc|");
}

#[test]
fn vertical_moves_keep_the_column() {
    check("abc|d\nx\nabcdef", &["Down", "Down"], "abcd\nx\nabc|def");
    check("abcdef\nx\nabc|d", &["Up", "Up"], "abc|def\nx\nabcd");
    check("ab|\n日本語", &["Down"], "ab\n日|本語");
    check("a|b", &["Up"], "|ab");
    check("a|b", &["Down"], "ab|");
    check("ab|c\n\nabc", &["S-Down", "S-Down"], "ab[c\n\nab]c");
}

#[test]
fn pages_move_by_the_view_height() {
    let text: String = (0..20).map(|i| format!("{i}\n")).collect();
    let (ed, buf) = run(&format!("|{text}"), &["PageDown"]);
    assert_eq!(buf.rope().char_to_line(buf.selection().head), 4);
    assert_eq!(ed.top, 4);
    let (ed, buf) = run(&format!("|{text}"), &["PageDown", "PageDown", "PageUp"]);
    assert_eq!(buf.rope().char_to_line(buf.selection().head), 4);
    assert!(ed.top <= 4);
}

#[test]
fn copy_cut_paste() {
    check("[ab]c", &["C-c", "End", "C-v"], "abcab|");
    check("[ab]c", &["C-x"], "|c");
    check("[ab]c", &["C-x", "End", "C-v"], "cab|");
    // Without a selection, the whole line.
    check("one\ntw|o\n", &["C-x"], "one\n|");
    check("one\ntw|o", &["C-c", "Up", "C-v"], "two\non|e\ntwo");
}

#[test]
fn undo_and_redo() {
    check("|", &["type:hello world", "C-z"], "hello|");
    check("|", &["type:hello world", "C-z", "C-z"], "|");
    check("|", &["type:ab", "C-z", "C-y"], "ab|");
    // Enter starts a new step; the typing after it belongs to it.
    check("x|", &["Enter", "type:y", "C-z"], "x|");
}

#[test]
fn paste_is_one_step_and_normalises_line_breaks() {
    let (text, sel) = parse("a|b");
    let mut buf = MemBuffer::new(&text);
    buf.set_selection(sel);
    let mut ed = Editor::new(&buf);
    ed.apply(&mut buf, &Action::InsertText("x\r\ny\rz".into()));
    assert_eq!(show(&buf.rope().to_string(), buf.selection()), "ax\ny\nz|b");
    ed.apply(&mut buf, &Action::Undo);
    assert_eq!(show(&buf.rope().to_string(), buf.selection()), "a|b");
}

#[test]
fn find_wraps_and_respects_case() {
    let (text, sel) = parse("|foo Foo foo");
    let mut buf = MemBuffer::new(&text);
    buf.set_selection(sel);
    let mut ed = Editor::new(&buf);
    assert!(ed.find(&mut buf, "foo", true));
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "[foo] Foo foo"
    );
    assert!(ed.find(&mut buf, "foo", true));
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "foo [Foo] foo"
    );
    assert!(ed.find(&mut buf, "Foo", true));
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "foo [Foo] foo"
    );
    assert!(ed.find(&mut buf, "foo", false));
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "[foo] Foo foo"
    );
    assert!(ed.find(&mut buf, "foo", false));
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "foo Foo [foo]"
    );
    assert!(!ed.find(&mut buf, "nope", true));
}

#[test]
fn view_follows_the_cursor() {
    let long = "x".repeat(50);
    let (ed, _) = run(&format!("|{long}"), &["End"]);
    assert!(ed.left > 0 && ed.left <= 50 && 50 < ed.left + ed.width);
    let text: String = (0..30).map(|i| format!("{i}\n")).collect();
    let (ed, _) = run(&format!("|{text}"), &["C-End"]);
    assert_eq!(ed.top, 26);
}

#[test]
fn click_and_drag_select() {
    let (text, sel) = parse("|hello\n日本語");
    let mut buf = MemBuffer::new(&text);
    buf.set_selection(sel);
    let mut ed = Editor::new(&buf);
    ed.apply(&mut buf, &Action::Click { x: 1, y: 0 });
    ed.apply(&mut buf, &Action::Drag { x: 3, y: 1 });
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "h[ello\n日]本語"
    );
    ed.apply(&mut buf, &Action::Click { x: 99, y: 0 });
    assert_eq!(
        show(&buf.rope().to_string(), buf.selection()),
        "hello|\n日本語"
    );
}

#[test]
fn a_remote_change_keeps_the_cursor_row_without_scrolling_past_the_text() {
    let mut ed = Editor::default();
    ed.resize(80, 10);
    // Lines inserted above: the cursor keeps its row (row 3, now on line 8).
    ed.top = 2;
    ed.keep_cursor_row(8, 3, 100);
    assert_eq!(ed.top, 5);
    // A two-line file whose cursor a partner pushed onto line 1: line 0 stays in view.
    ed.top = 0;
    ed.keep_cursor_row(1, 0, 2);
    assert_eq!(ed.top, 0);
    // Near the end of a long file: no further than the last screenful...
    ed.top = 85;
    ed.keep_cursor_row(99, 3, 100);
    assert_eq!(ed.top, 90);
    // ...unless the user had scrolled past it already.
    ed.top = 95;
    ed.keep_cursor_row(99, 3, 100);
    assert_eq!(ed.top, 95);
}
