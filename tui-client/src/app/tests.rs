//! The app driven headlessly: a real client whose server never answers (so everything
//! happens offline), scripted keys, and frames drawn into a `TestBackend`.

use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use duet_client::{Backoff, Client, ClientConfig, Document, RoomName};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;

fn app(file_text: Option<&str>, read_only: bool) -> App {
    let file = file_text.map(|_| std::env::temp_dir().join("duet-app-test-never-written.txt"));
    app_on(file, file_text, read_only)
}

fn app_on(file: Option<std::path::PathBuf>, file_text: Option<&str>, read_only: bool) -> App {
    app_with(file, file_text, read_only, "")
}

/// An app whose client never reaches its server, offering `join_command` once live.
fn app_with(
    file: Option<std::path::PathBuf>,
    file_text: Option<&str>,
    read_only: bool,
    join_command: &str,
) -> App {
    let mut config = ClientConfig::new("ws://127.0.0.1:9", RoomName::new("t").unwrap(), "carol");
    config.backoff = Backoff {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(60),
    };
    let (client, _events) = Client::spawn(config, Document::new());
    let opts = Options {
        file,
        file_text: file_text.map(str::to_owned),
        server: "ws://127.0.0.1:9".into(),
        room: "t".into(),
        name: "carol".into(),
        read_only,
        hosting: false,
        join_command: join_command.into(),
        depth: Depth::TrueColor,
        notes: Vec::new(),
        has_token: false,
    };
    let mut app = App::new(client, opts, Instant::now());
    app.resize(Rect::new(0, 0, 40, 8));
    app
}

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn screen(app: &mut App) -> Vec<String> {
    app.prepare();
    let mut term = Terminal::new(TestBackend::new(40, 8)).unwrap();
    let frame = term.draw(|f| app.draw(f)).unwrap();
    let b = frame.buffer.clone();
    (0..b.area.height)
        .map(|y| {
            (0..b.area.width)
                .map(|x| b[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn text(app: &App) -> String {
    app.client().read(|d| d.text())
}

#[tokio::test]
async fn typing_find_and_goto_through_the_keys() {
    let mut app = app(None, false);
    for c in "hello\nworld".chars() {
        app.handle_term(if c == '\n' {
            key(KeyCode::Enter)
        } else {
            key(KeyCode::Char(c))
        });
    }
    assert_eq!(text(&app), "hello\nworld");
    app.handle_term(ctrl('g'));
    app.handle_term(key(KeyCode::Char('1')));
    app.handle_term(key(KeyCode::Enter));
    app.handle_term(ctrl('f'));
    for c in "orl".chars() {
        app.handle_term(key(KeyCode::Char(c)));
    }
    let s = screen(&mut app);
    assert!(s[7].starts_with("Find: orl"), "{s:?}");
    app.handle_term(key(KeyCode::Enter));
    app.handle_term(TermEvent::Paste("W".into()));
    assert_eq!(text(&app), "hello\nwWd");
    let s = screen(&mut app);
    assert_eq!(s[0], "  1 hello");
    assert!(s[6].contains("[no file]") && s[6].contains("2:3"), "{s:?}");
}

#[tokio::test]
async fn read_only_refuses_edits_with_a_notice() {
    let mut app = app(None, true);
    app.handle_term(key(KeyCode::Char('x')));
    assert_eq!(text(&app), "");
    let s = screen(&mut app);
    assert!(s[6].starts_with(" VIEW"), "{s:?}");
    assert!(s[7].starts_with("read-only"), "{s:?}");
}

#[tokio::test]
async fn an_unreachable_server_means_offline_editing_of_the_file() {
    let mut app = app(Some("abc\n"), false);
    app.handle_term(key(KeyCode::Char('x')));
    assert_eq!(text(&app), "", "no edit before the room is known");
    app.tick(Instant::now() + Duration::from_secs(5));
    assert_eq!(text(&app), "abc\n");
    app.handle_term(key(KeyCode::Char('x')));
    assert_eq!(text(&app), "xabc\n");
    screen(&mut app);
    assert!(app.view.status.dirty);
    // Quit asks because the text differs from the file; n keeps editing.
    app.handle_term(ctrl('q'));
    assert!(screen(&mut app)[7].starts_with("the text differs"));
    app.handle_term(key(KeyCode::Char('n')));
    assert!(app.exit.is_none());
    app.handle_term(ctrl('q'));
    app.handle_term(key(KeyCode::Char('y')));
    assert_eq!(
        app.exit,
        Some(Exit {
            code: 0,
            message: None
        })
    );
}

#[tokio::test]
async fn copy_goes_to_the_terminal_clipboard() {
    let mut app = app(None, false);
    app.handle_term(TermEvent::Paste("hi".into()));
    app.handle_term(ctrl('a'));
    app.handle_term(ctrl('c'));
    assert_eq!(app.out, vec![crate::clipboard::osc52("hi")]);
}

#[tokio::test]
async fn a_file_changed_on_disk_is_shown_and_saving_asks_first() {
    let dir = std::env::temp_dir().join(format!("duet-app-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.txt");
    std::fs::write(&path, "abc\n").unwrap();
    let mut app = app_on(Some(path.clone()), Some("abc\n"), false);
    let t0 = Instant::now();
    app.tick(t0 + Duration::from_secs(5));
    app.handle_term(key(KeyCode::Char('x')));
    assert!(!app.view.status.changed_on_disk);
    // git checkout, another editor...
    std::fs::write(&path, "changed by someone else\n").unwrap();
    app.tick(t0 + Duration::from_secs(7));
    assert!(app.view.status.changed_on_disk);
    let s = screen(&mut app);
    assert!(s[7].contains("changed o"), "{s:?}");
    // Ctrl-S asks; n leaves the file alone.
    app.handle_term(ctrl('s'));
    assert!(matches!(
        app.view.prompt,
        Some(Prompt::Ask {
            question: Question::Overwrite,
            ..
        })
    ));
    app.handle_term(key(KeyCode::Char('n')));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "changed by someone else\n"
    );
    // y overwrites, and the flag goes.
    app.handle_term(ctrl('s'));
    app.handle_term(key(KeyCode::Char('y')));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "xabc\n");
    assert!(!app.view.status.changed_on_disk);
    // Saving again needs no question.
    app.handle_term(key(KeyCode::Char('y')));
    app.handle_term(ctrl('s'));
    assert!(app.view.prompt.is_none());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "xyabc\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reconnecting_counts_down_and_says_when_it_is_back() {
    use duet_client::ConnState;
    let mut app = app(None, false);
    app.handle_client(ClientEvent::State(ConnState::Live));
    app.handle_client(ClientEvent::PeerJoined { name: "bob".into() });
    app.handle_client(ClientEvent::State(ConnState::Reconnecting {
        attempt: 1,
        retry_in: Duration::from_secs(5),
        reason: "connection refused: nothing listens at 127.0.0.1:9".into(),
    }));
    // Old news goes; the outage and its reason are what the message row says.
    let s = screen(&mut app);
    assert!(s[7].starts_with("connection lost: connection"), "{s:?}");
    assert!(!s.iter().any(|l| l.contains("bob joined")), "{s:?}");
    let countdown = |app: &App| match app.view.status.conn {
        ConnView::Reconnecting { retry_in } => retry_in,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(countdown(&app), 5);
    app.tick(Instant::now() + Duration::from_millis(2100));
    assert_eq!(countdown(&app), 3);
    app.tick(Instant::now() + Duration::from_secs(6));
    assert_eq!(countdown(&app), 0);
    app.handle_client(ClientEvent::State(ConnState::Live));
    let s = screen(&mut app);
    assert_eq!(app.view.status.conn, ConnView::Live);
    assert!(s[7].contains("reconnected"), "{s:?}");
}

#[tokio::test]
async fn tab_with_lines_selected_indents_them_in_the_shared_document() {
    let mut app = app(None, false);
    app.handle_term(TermEvent::Paste("a\nb\nc".into()));
    app.handle_term(ctrl('a'));
    app.handle_term(key(KeyCode::Tab));
    assert_eq!(text(&app), "    a\n    b\n    c");
    app.handle_term(TermEvent::Key(KeyEvent::new(
        KeyCode::BackTab,
        KeyModifiers::SHIFT,
    )));
    assert_eq!(text(&app), "a\nb\nc");
}

#[tokio::test]
async fn before_the_room_answers_there_is_a_reason_and_no_join_hint() {
    use duet_client::ConnState;
    let mut app = app_with(None, None, false, "duet --server ws://127.0.0.1:9 --room t");
    app.handle_client(ClientEvent::State(ConnState::Reconnecting {
        attempt: 1,
        retry_in: Duration::from_secs(3),
        reason: "connection refused".into(),
    }));
    let s = screen(&mut app);
    assert!(s[6].contains("\u{2715} no serv"), "{s:?}");
    assert!(matches!(
        app.view.status.conn,
        ConnView::Reconnecting { retry_in: 3 }
    ));
    assert!(s[7].contains("ws://127.0.0.1:9: conne"), "{s:?}");
    assert!(!s.iter().any(|l| l.contains("join")), "{s:?}");
    assert!(!app.ever_live());
    assert_eq!(app.last_problem(), Some("connection refused"));
    // Once live, the partner's command is offered.
    app.handle_client(ClientEvent::State(ConnState::Live));
    let s = screen(&mut app);
    assert!(s[7].contains("a partner joins with"), "{s:?}");
    assert!(app.ever_live());
}

#[tokio::test]
async fn a_missing_token_is_explained_with_the_flag_and_the_variable() {
    let mut app = app(None, false);
    app.handle_client(ClientEvent::Fatal(ClientError::TokenRequired {
        reason: "no token: send `Authorization: Bearer <token>`".into(),
    }));
    let exit = app.exit.clone().expect("the editor stops");
    assert_eq!(exit.code, 2);
    let m = exit.message.unwrap_or_default();
    assert!(m.contains("--token") && m.contains("DUET_TOKEN"), "{m}");
    assert!(!m.contains("Authorization"), "{m}");
}

#[tokio::test]
async fn quitting_with_edits_the_server_never_got_asks_first() {
    // No file, server unreachable: nothing but this process holds the text.
    let mut quiet = app(None, false);
    quiet.handle_term(ctrl('q'));
    assert_eq!(
        quiet.exit.as_ref().map(|e| e.code),
        Some(0),
        "nothing typed: no question"
    );
    let mut app = app(None, false);
    app.handle_term(key(KeyCode::Char('x')));
    app.handle_term(ctrl('q'));
    assert!(app.exit.is_none());
    match app.view.prompt.clone() {
        Some(Prompt::Ask { question, text }) => {
            assert_eq!(question, Question::QuitUnsent);
            assert!(
                text.starts_with("1 edits have not reached the server"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    app.handle_term(key(KeyCode::Char('n')));
    assert!(app.exit.is_none());
    app.handle_term(ctrl('q'));
    app.handle_term(key(KeyCode::Char('y')));
    assert_eq!(app.exit.as_ref().map(|e| e.code), Some(0));
}
