//! Workspace mode driven headlessly: clients whose server never answers (so every room
//! stays offline), events fed by hand where a server would send them, keys scripted.

use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use duet_client::{ConnState, Event as ClientEvent};
use duet_workspace::{FileKind, Workspace, file_room, index};
use ratatui::layout::Rect;
use tokio::sync::mpsc;

use super::*;
use crate::color::Depth;
use crate::state::{Panel, Question};

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_term(key(KeyCode::Char(c)));
    }
}

fn app(share_dir: Option<std::path::PathBuf>) -> App {
    let (tx, rx) = mpsc::channel(1024);
    // Nobody reads the events: handlers are called by the tests.
    std::mem::forget(rx);
    let opts = WsOptions {
        workspace: Workspace::new("w").unwrap(),
        server: "ws://127.0.0.1:9".into(),
        name: "carol".into(),
        token: None,
        ca: None,
        read_only: false,
        hosting: false,
        join_command: "duet join w".into(),
        depth: Depth::TrueColor,
        notes: Vec::new(),
        share_dir,
    };
    let mut app = App::workspace(opts, tx, Instant::now());
    app.resize(Rect::new(0, 0, 80, 20));
    app
}

fn index_changed(app: &mut App) {
    app.handle_event(AppEvent::Client(TabKey::Index, ClientEvent::RemoteChange));
}

fn synced(app: &mut App, key: TabKey) {
    app.handle_event(AppEvent::Client(key, ClientEvent::State(ConnState::Live)));
    app.handle_event(AppEvent::Client(
        key,
        ClientEvent::Synced {
            offline_updates_merged: 0,
        },
    ));
}

fn rows(app: &App) -> Vec<String> {
    app.view.files.rows.iter().map(|r| r.path.clone()).collect()
}

fn text(app: &App) -> String {
    app.client().read(|d| d.text())
}

#[tokio::test]
async fn the_file_list_filters_opens_switches_back_and_creates() {
    let mut app = app(None);
    let idx = app.index_client().unwrap().clone();
    for p in ["a.txt", "b.txt", "c.txt", "src/main.rs"] {
        idx.edit(|d| index::create(d.ydoc(), p, FileKind::Text, 1, true))
            .unwrap();
    }
    idx.edit(|d| index::create(d.ydoc(), "logo.png", FileKind::Binary, 9, true))
        .unwrap();
    index_changed(&mut app);
    // The list is open from the start, every file by path.
    assert_eq!(app.view.panel, Some(Panel::Files));
    assert_eq!(rows(&app).len(), 5);
    // Ctrl-O there (what one presses to find a file) keeps it open and starts afresh.
    typed(&mut app, "zz");
    app.handle_term(ctrl('o'));
    assert_eq!(app.view.panel, Some(Panel::Files));
    assert_eq!(rows(&app).len(), 5);
    typed(&mut app, "b.t");
    assert_eq!(rows(&app), ["b.txt"]);
    app.handle_term(key(KeyCode::Enter));
    assert_eq!(app.view.panel, None);
    assert_eq!(app.view.status.file.as_deref(), Some("b.txt"));
    assert_eq!(
        app.view.status.room,
        format!(
            "w/files/{}",
            index::find(&idx.read(|d| d.ydoc().clone()), "b.txt")
                .unwrap()
                .id
        )
    );
    // A partner's file waits for the sharer's disk before it takes edits.
    typed(&mut app, "x");
    assert_eq!(text(&app), "");
    assert!(
        app.view
            .notices
            .back()
            .unwrap()
            .text
            .contains("waiting for the sharer")
    );
    // The sharer's editor loads it: the room says so, typing works.
    app.client().edit(|d| {
        d.set_text("bee\n").unwrap();
        file_room::mark_seeded(d.ydoc(), Some(file_room::text_hash(["bee\n"])));
    });
    app.handle_event(AppEvent::Client(app.tab.key, ClientEvent::RemoteChange));
    typed(&mut app, "x");
    assert_eq!(text(&app), "xbee\n");
    app.prepare();
    assert!(
        app.view.status.dirty,
        "the room differs from the sharer's disk"
    );

    // Another file, then F2 back and forth.
    app.handle_term(ctrl('o'));
    typed(&mut app, "c.t");
    app.handle_term(key(KeyCode::Enter));
    assert_eq!(app.view.status.file.as_deref(), Some("c.txt"));
    app.handle_term(key(KeyCode::F(2)));
    assert_eq!(app.view.status.file.as_deref(), Some("b.txt"));
    assert_eq!(text(&app), "xbee\n", "each file keeps its own text");
    app.handle_term(key(KeyCode::F(2)));
    assert_eq!(app.view.status.file.as_deref(), Some("c.txt"));
    // Without a query the list starts with the file before this one: Ctrl-O Enter.
    app.handle_term(ctrl('o'));
    assert_eq!(rows(&app)[0], "b.txt");
    assert!(app.view.files.rows[0].open);
    app.handle_term(key(KeyCode::Esc));

    // Binary files are listed, never opened.
    app.handle_term(ctrl('o'));
    typed(&mut app, "logo");
    app.handle_term(key(KeyCode::Enter));
    assert_eq!(app.view.status.file.as_deref(), Some("c.txt"));
    assert!(app.view.notices.back().unwrap().text.contains("not text"));

    // No match: Enter creates the file, which takes edits at once.
    app.handle_term(ctrl('o'));
    typed(&mut app, "notes/new.md");
    assert!(rows(&app).is_empty());
    app.handle_term(key(KeyCode::Enter));
    assert_eq!(app.view.status.file.as_deref(), Some("notes/new.md"));
    typed(&mut app, "hi");
    assert_eq!(text(&app), "hi");
    let entry = idx
        .read(|d| index::find(d.ydoc(), "notes/new.md"))
        .expect("in the index");
    assert!(!entry.on_disk);
    // Saving asks the sharer's editor (in the index and in the file's room).
    app.handle_term(ctrl('s'));
    assert_eq!(
        idx.read(|d| index::get(d.ydoc(), entry.id))
            .unwrap()
            .save_asked,
        1
    );
    assert_eq!(
        app.client().read(|d| file_room::state(d.ydoc()).save_asked),
        1
    );
    assert!(
        app.view
            .notices
            .back()
            .unwrap()
            .text
            .contains("asked the sharer to save notes/new.md"),
        "{:?}",
        app.view.notices
    );
    // Quitting asks: these edits never reached a server.
    app.handle_term(ctrl('q'));
    assert!(matches!(
        app.view.prompt,
        Some(Prompt::Ask {
            question: Question::QuitUnsent,
            ..
        })
    ));
}

fn share_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("duet-ws-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn the_sharer_loads_merges_saves_renames_and_deletes_on_disk() {
    let dir = share_dir("sharer");
    std::fs::write(dir.join("a.txt"), "alpha\n\n\nomega\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    std::fs::write(dir.join("target/out"), "built\n").unwrap();
    let mut app = app(Some(dir.clone()));
    let idx = app.index_client().unwrap().clone();
    // The index answers: the scan fills it (ignored files left out).
    synced(&mut app, TabKey::Index);
    assert_eq!(rows(&app), [".gitignore", "a.txt"]);
    assert_eq!(
        idx.read(|d| index::sharer(d.ydoc())).map(|s| s.name),
        Some("carol".into())
    );
    typed(&mut app, "a.t");
    app.handle_term(key(KeyCode::Enter));
    let key_a = app.tab.key;
    // Its room answers empty: the sharer's editor loads the disk's text into it.
    synced(&mut app, key_a);
    assert_eq!(text(&app), "alpha\n\n\nomega\n");
    let state = app.client().read(|d| file_room::state(d.ydoc()));
    assert!(state.seeded);
    assert_eq!(
        state.disk,
        Some(file_room::text_hash(["alpha\n\n\nomega\n"]))
    );
    typed(&mut app, "x");
    assert_eq!(text(&app), "xalpha\n\n\nomega\n");

    // A formatter changes the file on disk: merged into the room as an edit.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.join("a.txt"), "alpha\n\n\nomega, formatted\n").unwrap();
    app.tick(Instant::now() + Duration::from_secs(2));
    assert_eq!(text(&app), "xalpha\n\n\nomega, formatted\n");
    assert!(
        app.view
            .notices
            .iter()
            .any(|n| n.text.contains("changed on disk"))
    );
    // Saving writes the merge; nothing on either side is lost.
    app.handle_term(ctrl('s'));
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "xalpha\n\n\nomega, formatted\n"
    );

    // A partner's save request (index, then the file's room) is served.
    let id = match key_a {
        TabKey::File(id) => id,
        _ => unreachable!(),
    };
    app.client()
        .edit(|d| d.insert(duet_client::Utf16Offset(0), "P").unwrap());
    let n = idx.edit(|d| index::ask_save(d.ydoc(), id)).unwrap();
    index_changed(&mut app);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "xalpha\n\n\nomega, formatted\n",
        "not before the file's room has caught up with the request"
    );
    app.client().edit(|d| file_room::ask_save(d.ydoc(), n));
    app.handle_event(AppEvent::Client(key_a, ClientEvent::RemoteChange));
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "Pxalpha\n\n\nomega, formatted\n"
    );
    assert!(
        !idx.read(|d| index::get(d.ydoc(), id))
            .unwrap()
            .save_pending()
    );

    // A rename (by anyone) moves the file on disk.
    idx.edit(|d| index::rename(d.ydoc(), id, "docs/a.md"))
        .unwrap();
    index_changed(&mut app);
    assert!(!dir.join("a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("docs/a.md")).unwrap(),
        "Pxalpha\n\n\nomega, formatted\n"
    );
    assert_eq!(app.view.status.file.as_deref(), Some("docs/a.md"));

    // A file new on disk joins the index at the next scan.
    std::fs::write(dir.join("later.txt"), "l\n").unwrap();
    let generation = app.sharer().unwrap().generation;
    let scan = duet_workspace::scan(&dir, &duet_workspace::ScanOptions::default());
    app.handle_event(AppEvent::Scanned {
        generation,
        scan,
        took: Duration::from_millis(1),
    });
    assert!(
        rows(&app).contains(&"later.txt".to_owned()),
        "{:?}",
        rows(&app)
    );

    // A delete removes the file from disk; its text stays in its room.
    app.handle_term(ctrl('o'));
    typed(&mut app, "docs/a");
    app.handle_term(ctrl('d'));
    app.handle_term(key(KeyCode::Char('y')));
    assert!(!dir.join("docs").exists());
    assert!(!rows(&app).contains(&"docs/a.md".to_owned()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_workspace_shared_by_someone_connected_is_not_shared_twice() {
    let dir = share_dir("twice");
    let mut app = app(Some(dir.clone()));
    let idx = app.index_client().unwrap().clone();
    // Someone else's editor named itself the sharer; is it here? Not in this offline
    // room: a sharer who left is replaced.
    idx.edit(|d| {
        index::set_sharer(
            d.ydoc(),
            &duet_workspace::Sharer {
                name: "ann".into(),
                client_id: 42,
            },
        )
    });
    synced(&mut app, TabKey::Index);
    assert!(app.exit.is_none());
    assert_eq!(
        idx.read(|d| index::sharer(d.ydoc())).map(|s| s.name),
        Some("carol".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_partners_path_cannot_reach_outside_the_shared_directory() {
    let dir = share_dir("escape");
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    let mut app = app(Some(dir.clone()));
    let idx = app.index_client().unwrap().clone();
    synced(&mut app, TabKey::Index);
    #[cfg(unix)]
    {
        let outside = share_dir("escape-target");
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        // A partner (any Yjs client) writes an entry through the link and asks a save.
        let id = idx
            .edit(|d| index::create(d.ydoc(), "link/evil.sh", FileKind::Text, 0, false))
            .unwrap();
        idx.edit(|d| index::ask_save(d.ydoc(), id)).unwrap();
        index_changed(&mut app);
        assert!(!outside.join("evil.sh").exists());
        assert!(
            app.view
                .notices
                .iter()
                .any(|n| n.text.contains("symbolic link")),
            "{:?}",
            app.view.notices
        );
        let _ = std::fs::remove_dir_all(&outside);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
