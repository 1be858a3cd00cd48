//! Render snapshot tests: whole screens drawn into ratatui's `TestBackend` and compared
//! with the expected text, plus the colours of the cells that matter.

use std::time::{Duration, Instant};

use duet_protocol::Role;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ropey::Rope;

use super::*;
use crate::buffer::{CharSel, MemBuffer, TextBuffer};
use crate::editor::Editor;
use crate::state::{ConnView, FileRow, FilesView, PeerView, Person, Status, View};

fn person(id: u64, name: &str, color: Color, file: Option<&str>, line: usize) -> Person {
    Person {
        client_id: id,
        name: name.into(),
        color,
        role: Role::Editor,
        file: file.map(str::to_owned),
        line: Some(line),
        idle: Duration::from_secs(3),
    }
}

const ALICE: Color = Color::Rgb(0xe0, 0x6c, 0x75);
const BOB: Color = Color::Rgb(0x61, 0xaf, 0xef);

fn peer(id: u64, name: &str, color: Color, rope: &Rope, anchor: usize, head: usize) -> PeerView {
    PeerView {
        peer_id: id,
        client_id: id,
        name: name.into(),
        color,
        role: Role::Editor,
        sel: Some(CharSel { anchor, head }),
        line: rope.char_to_line(head),
        idle: Duration::from_secs(3),
    }
}

fn view(text: &str, sel: CharSel, w: u16, h: u16) -> (View, MemBuffer) {
    let mut buf = MemBuffer::new(text);
    buf.set_selection(sel);
    let mut editor = Editor::new(&buf);
    let a = areas(
        ratatui::layout::Rect::new(0, 0, w, h),
        buf.rope().len_lines(),
    );
    editor.resize(a.text.width as usize, a.text.height as usize);
    editor.scroll_to_cursor(&buf);
    let mut v = View::new(editor, Instant::now());
    v.status = Status {
        role: Some(Role::Editor),
        file: Some("notes.md".into()),
        room: "notes.md".into(),
        conn: ConnView::Live,
        name: "carol".into(),
        ..Status::default()
    };
    (v, buf)
}

fn render(v: &View, buf: &MemBuffer, w: u16, h: u16) -> (Buffer, Option<(u16, u16)>) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let frame = term
        .draw(|f| draw(f, v, buf.rope(), buf.selection()))
        .unwrap();
    let buffer = frame.buffer.clone();
    let cursor = term.get_cursor_position().ok().map(|p| (p.x, p.y));
    (buffer, cursor)
}

/// The screen as text, one string per row (wide chars appear once).
fn lines(b: &Buffer) -> Vec<String> {
    (0..b.area.height)
        .map(|y| {
            let mut s = String::new();
            let mut skip = 0;
            for x in 0..b.area.width {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let sym = b[(x, y)].symbol();
                skip = unicode_width::UnicodeWidthStr::width(sym).saturating_sub(1);
                s.push_str(sym);
            }
            s.trim_end().to_owned()
        })
        .collect()
}

#[track_caller]
fn assert_screen(b: &Buffer, expected: &[&str]) {
    let got = lines(b);
    assert_eq!(got, expected, "\n{}", got.join("\n"));
}

#[test]
fn remote_cursors_selections_and_labels() {
    let text = "fn main() {\n    let x = 1;\n}\n";
    let (mut v, buf) = view(text, CharSel::cursor(0), 60, 7);
    let rope = buf.rope().clone();
    // alice selects "let" on line 2, bob's cursor sits at the end of line 1.
    v.peers = vec![
        peer(1, "alice", ALICE, &rope, 16, 19),
        peer(2, "bob", BOB, &rope, 11, 11),
    ];
    let (b, cursor) = render(&v, &buf, 60, 7);
    assert_screen(
        &b,
        &[
            "  1 fn main() {  bob",
            "  2     let x = 1;  alice",
            "  3 }",
            "  4",
            "~",
            " EDIT  notes.md  room notes.md  ● live  ●alice ●bob     1:1",
            "F1 help · Ctrl-S save · Ctrl-Q quit · Ctrl-P people",
        ],
    );
    // alice's selection is tinted, her cursor (head) is her colour; bob's cursor is a
    // block at the end of his line.
    assert_ne!(b[(8, 1)].bg, Color::Reset);
    assert_ne!(b[(8, 1)].bg, ALICE);
    assert_eq!(b[(11, 1)].bg, ALICE);
    assert_eq!(b[(15, 0)].bg, BOB);
    assert_eq!(b[(18, 0)].bg, BOB);
    assert_eq!(b[(20, 1)].bg, ALICE);
    // The terminal's cursor stays ours.
    assert_eq!(cursor, Some((4, 0)));
}

#[test]
fn wide_characters_take_two_cells_and_peers_colour_both() {
    let text = "日本語 ok\n";
    let (mut v, buf) = view(text, CharSel::cursor(2), 50, 5);
    let rope = buf.rope().clone();
    v.peers = vec![peer(1, "alice", ALICE, &rope, 1, 1)];
    let (b, cursor) = render(&v, &buf, 50, 5);
    assert_screen(
        &b,
        &[
            "  1 日本語 ok  alice",
            "  2",
            "~",
            " EDIT  notes.md  room notes.md  ● live  ●alic 1:3",
            "F1 help · Ctrl-S save · Ctrl-Q quit · Ctrl-P peopl",
        ],
    );
    assert_eq!(b[(6, 0)].symbol(), "本");
    assert_eq!(b[(6, 0)].bg, ALICE);
    assert_eq!(b[(7, 0)].bg, ALICE);
    // The local cursor is on 語, at cell 8.
    assert_eq!(cursor, Some((8, 0)));
}

#[test]
fn tabs_expand_and_the_view_scrolls_horizontally() {
    let text = format!("\tx\n{}END\n", "a".repeat(40));
    let (v, buf) = view(&text, CharSel::cursor(3 + 43), 24, 5);
    let (b, cursor) = render(&v, &buf, 24, 5);
    let got = lines(&b);
    assert!(got[1].ends_with("aaEND"), "{got:?}");
    assert!(cursor.is_some());
    let (v, buf) = view(&text, CharSel::cursor(1), 24, 5);
    let (b, _) = render(&v, &buf, 24, 5);
    assert_eq!(lines(&b)[0], "  1     x");
}

#[test]
fn peers_outside_the_view_show_at_the_edges() {
    let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
    let (mut v, buf) = view(&text, CharSel::cursor(0), 40, 6);
    let rope = buf.rope().clone();
    let at = rope.line_to_char(39);
    v.editor.top = 10;
    v.peers = vec![
        peer(1, "alice", ALICE, &rope, 0, 0),
        peer(2, "bob", BOB, &rope, at, at),
    ];
    let (b, _) = render(&v, &buf, 40, 6);
    let got = lines(&b);
    assert!(
        got[0].starts_with(" 11 line 11") && got[0].ends_with("↑ alice 1"),
        "{got:?}"
    );
    assert!(got[3].ends_with("↓ bob 40"), "{got:?}");
}

#[test]
fn status_bar_shows_offline_edits_and_read_only() {
    let (mut v, buf) = view("hi\n", CharSel::cursor(1), 80, 3);
    v.status.dirty = true;
    v.status.conn = ConnView::Reconnecting { retry_in: 3 };
    v.status.ever_live = true;
    v.status.waiting = 4;
    v.status.role = Some(Role::Viewer);
    let (b, _) = render(&v, &buf, 80, 3);
    assert_eq!(
        lines(&b)[1],
        " VIEW  notes.md [+]  room notes.md  ◌ reconnecting in 3s, 4 edits waiting   1:2"
    );
}

#[test]
fn people_panel_lists_peers() {
    let (mut v, buf) = view("a\nb\nc\n", CharSel::cursor(0), 64, 9);
    v.people = vec![
        person(1, "alice", ALICE, None, 1),
        person(2, "bob", BOB, None, 2),
    ];
    v.follow = Some(2);
    v.panel = Some(Panel::People { selected: 1 });
    let (b, _) = render(&v, &buf, 64, 9);
    let got = lines(&b);
    let panel: Vec<String> = got[1..7]
        .iter()
        .map(|l| l.chars().skip(2).collect())
        .collect();
    assert_eq!(
        panel,
        [
            "┌ people in notes.md · you are carol · Enter follow · Esc ─┐",
            "│  name                    line    role    idle            │",
            "│● alice                   2       editor  3s              │",
            "│● bob                     3       editor  3s    following │",
            "│                                                          │",
            "└──────────────────────────────────────────────────────────┘",
        ],
        "{}",
        got.join("\n")
    );
}

#[test]
fn in_a_workspace_people_show_their_file_and_the_status_the_workspace() {
    let (mut v, buf) = view("a\nb\nc\n", CharSel::cursor(0), 96, 9);
    v.status.workspace = Some("proj".into());
    v.status.file = Some("src/main.rs".into());
    v.people = vec![person(7, "bob", BOB, Some("b.txt"), 40)];
    v.panel = Some(Panel::People { selected: 0 });
    let (b, _) = render(&v, &buf, 96, 9);
    let got = lines(&b);
    let all = got.join("\n");
    assert!(got[2].contains("people in workspace proj"), "{all}");
    assert!(got[3].contains("file") && got[3].contains("line"), "{all}");
    let row = &got[4];
    assert!(
        row.contains("bob") && row.contains("b.txt") && row.contains("41"),
        "{all}"
    );
    assert!(
        got[7].contains("src/main.rs") && got[7].contains("workspace proj"),
        "{all}"
    );
}

#[test]
fn the_file_list_marks_matches_open_files_and_who_is_where() {
    let (mut v, buf) = view("", CharSel::cursor(0), 80, 12);
    v.status.workspace = Some("proj".into());
    v.files = FilesView {
        query: "b.t".into(),
        selected: 0,
        rows: vec![FileRow {
            path: "b.txt".into(),
            matched: vec![0, 1, 2],
            note: None,
            open: true,
            new: false,
            here: vec![("bob".into(), BOB)],
        }],
        matched: 1,
        total: 3,
    };
    v.panel = Some(Panel::Files);
    let (b, cursor) = render(&v, &buf, 80, 12);
    let got = lines(&b);
    let all = got.join("\n");
    assert!(got[2].contains("files \u{b7} 1 of 3"), "{all}");
    assert!(got[3].contains("> b.t"), "{all}");
    let row = &got[4];
    assert!(
        row.contains("\u{25cf} b.txt") && row.contains("\u{25cf} bob"),
        "{all}"
    );
    // The matched letters are highlighted; the row is selected (reversed).
    let x = row
        .find("b.txt")
        .map(|i| row[..i].chars().count())
        .unwrap_or(0) as u16;
    assert_eq!(b[(x, 4)].fg, Color::Yellow);
    assert!(b[(x, 4)].modifier.contains(Modifier::REVERSED));
    assert_eq!(cursor.map(|c| c.1), Some(3), "the cursor is in the query");
    // No match: Enter creates the file.
    v.files.rows.clear();
    v.files.query = "new.txt".into();
    let (b, _) = render(&v, &buf, 80, 12);
    assert!(lines(&b)[4].contains("no match: Enter creates new.txt"));
}

#[test]
fn long_messages_keep_their_start_and_their_end() {
    use super::fit;
    let path = "hosting the server at ws://127.0.0.1:7070 (rooms kept in /tmp/duet-editor-home-1234567/.local/share/duet)";
    let f = fit(path, 60);
    assert!(f.chars().count() <= 60, "{f}");
    assert!(
        f.starts_with("hosting the server at ws://127.0.0.1:7070"),
        "{f}"
    );
    assert!(f.ends_with("share/duet)"), "{f}");
    assert!(f.contains('\u{2026}'), "{f}");
    assert_eq!(fit("short", 60), "short");
    // Wide characters count as two columns.
    assert!(unicode_width::UnicodeWidthStr::width(fit(&"日本".repeat(30), 21).as_str()) <= 21);
}
