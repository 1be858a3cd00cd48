//! The editor's speed, measured the way a person feels it.
//!
//! Run: `cargo bench -p duet --bench editor` (release profile; add `-- --quick` for a
//! shorter run). It drives the real [`App`] (with its real network client, whose server
//! never answers, so everything is local) into ratatui's `TestBackend`:
//!
//! - open: read a 100k-line, 4 MB Rust file, load it into the shared document, draw the
//!   first frame (syntax highlighting included);
//! - keystroke to finished frame: scripted typing, Enter, Backspace, arrows and paging in
//!   the middle of that file and of a 100 KB one; each sample is `handle_term` + `prepare`
//!   + `draw`;
//! - a remote update (a peer's one-character insert near the view) applied to the
//!   document and drawn;
//! - for honest reading: the document's own cost of a local insert (yrs + rope mirror),
//!   without the editor;
//! - workspaces (`duet join`): a 5,000-file index applied, listed and drawn; the file
//!   finder's keystroke to frame over those 5,000 paths; switching between two open files
//!   (F2) to a finished frame; what the index and an opened file add to the process's
//!   memory. `-- --workspace` runs only these.
//!
//! Results are recorded in docs/BENCHMARKS.md (sections "Editor" and "Workspaces").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use duet::app::workspace::WsOptions;
use duet::app::{App, AppEvent, Options, TabKey};
use duet::color::Depth;
use duet_client::{
    Backoff, Client, ClientConfig, Document, Event as ClientEvent, RoomName, Utf16Offset,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;

/// Rust-looking source of about `bytes` bytes in lines of about 40 bytes.
fn source(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 64);
    let mut n = 0usize;
    while s.len() < bytes {
        s.push_str(&format!("fn function_{n:06}(x: u32) -> u32 {{\n"));
        for k in 0..8 {
            s.push_str(&format!("    let v{k} = x.wrapping_mul({k}) + {n}; // s\n"));
        }
        s.push_str("}\n");
        n += 1;
    }
    s
}

fn write_temp(name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("duet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A client whose server never answers: the app edits offline, as when the server is down.
fn offline_client() -> anyhow::Result<(Client, tokio::sync::mpsc::Receiver<ClientEvent>)> {
    let mut config = ClientConfig::new(
        "ws://127.0.0.1:9",
        RoomName::new("bench").context("room")?,
        "bench",
    );
    config.backoff = Backoff {
        initial: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    };
    Ok(Client::spawn(config, Document::new()))
}

struct Opened {
    app: App,
    term: Terminal<TestBackend>,
    _events: tokio::sync::mpsc::Receiver<ClientEvent>,
}

/// Opens `path` the way `duet FILE` does and draws the first frame. The 3 s wait for an
/// unreachable server is skipped by ticking the clock past it.
fn open(path: &Path) -> anyhow::Result<Opened> {
    let text = duet::file::load(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?
        .unwrap_or_default();
    let (client, events) = offline_client()?;
    let start = Instant::now();
    let opts = Options {
        file: Some(path.to_path_buf()),
        file_text: Some(text),
        server: "ws://127.0.0.1:9".into(),
        room: "bench".into(),
        name: "bench".into(),
        read_only: false,
        hosting: false,
        join_command: String::new(),
        depth: Depth::TrueColor,
        notes: Vec::new(),
        has_token: false,
    };
    let mut app = App::new(client, opts, start);
    app.tick(start + Duration::from_secs(5));
    app.resize(Rect::new(0, 0, WIDTH, HEIGHT));
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    app.prepare();
    term.draw(|f| app.draw(f))?;
    Ok(Opened {
        app,
        term,
        _events: events,
    })
}

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// One keystroke to a finished frame.
fn frame_after(o: &mut Opened, ev: TermEvent) -> anyhow::Result<Duration> {
    let t = Instant::now();
    o.app.handle_term(ev);
    o.app.prepare();
    o.term.draw(|f| o.app.draw(f))?;
    Ok(t.elapsed())
}

/// One keystroke to a frame with the colours of the new text (the highlighter runs on its
/// own thread; the first frame shows the text at once, this one the colours too).
fn coloured_frame_after(o: &mut Opened, ev: TermEvent) -> anyhow::Result<Duration> {
    let t = Instant::now();
    o.app.handle_term(ev);
    o.app.prepare();
    o.term.draw(|f| o.app.draw(f))?;
    // `prepare` takes the colours in when they arrive.
    while o.app.highlighting() {
        std::thread::sleep(Duration::from_micros(50));
        o.app.prepare();
    }
    o.term.draw(|f| o.app.draw(f))?;
    Ok(t.elapsed())
}

/// A session of editing: words typed, Enter, Backspace, moves, an occasional page.
fn script(n: usize) -> Vec<TermEvent> {
    let words = "let total = value.saturating_add(step);";
    let mut keys = Vec::with_capacity(n);
    let mut i = 0usize;
    while keys.len() < n {
        for c in words.chars() {
            keys.push(key(KeyCode::Char(c)));
        }
        keys.push(key(KeyCode::Enter));
        for _ in 0..3 {
            keys.push(key(KeyCode::Backspace));
        }
        keys.push(key(KeyCode::Up));
        keys.push(key(KeyCode::End));
        keys.push(key(KeyCode::Down));
        if i % 5 == 4 {
            keys.push(key(KeyCode::PageDown));
        }
        i += 1;
    }
    keys.truncate(n);
    keys
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
        n: samples.len(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report(what: &str, s: &Stats, target: Option<Duration>) {
    let verdict = match target {
        Some(t) if s.p99 < t => format!("  (target p99 < {}: met)", ms(t)),
        Some(t) => format!("  (target p99 < {}: MISSED)", ms(t)),
        None => String::new(),
    };
    println!(
        "{what:<52} n={:<5} p50 {:>10}  p99 {:>10}  max {:>10}{verdict}",
        s.n,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

/// Keystrokes in the middle of `path`: the first `warm` keys are not counted (the first
/// jump there parses the highlighting context once).
fn keystrokes(path: &Path, n: usize, coloured: bool) -> anyhow::Result<Stats> {
    let mut o = open(path)?;
    let middle = o.app.client().read(|d| d.line_count()) / 2;
    o.app.handle_term(ctrl('g'));
    for c in middle.to_string().chars() {
        o.app.handle_term(key(KeyCode::Char(c)));
    }
    frame_after(&mut o, key(KeyCode::Enter))?;
    let mut samples = Vec::with_capacity(n);
    for ev in script(n) {
        samples.push(if coloured {
            coloured_frame_after(&mut o, ev)?
        } else {
            frame_after(&mut o, ev)?
        });
    }
    Ok(stats(samples))
}

/// A peer inserts one character a few lines below our cursor; we apply it and draw.
fn remote_updates(path: &Path, n: usize) -> anyhow::Result<Stats> {
    let mut o = open(path)?;
    let middle = o.app.client().read(|d| d.line_count()) / 2;
    o.app.handle_term(ctrl('g'));
    for c in middle.to_string().chars() {
        o.app.handle_term(key(KeyCode::Char(c)));
    }
    frame_after(&mut o, key(KeyCode::Enter))?;
    let mut peer = Document::new();
    let state = o.app.client().read(|d| d.encode_state());
    peer.apply_remote_update(&state)
        .map_err(|e| anyhow::anyhow!("peer join: {e}"))?;
    let at_line = middle + 5;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let at = peer.char_to_utf16(peer.line_start(at_line + i % 10));
        peer.insert(Utf16Offset(at.0), "x")
            .map_err(|e| anyhow::anyhow!("peer insert: {e}"))?;
        let updates = peer.take_local_updates();
        let t = Instant::now();
        for u in &updates {
            o.app
                .client()
                .edit(|d| d.apply_remote_update(u))
                .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
        }
        o.app.handle_client(ClientEvent::RemoteChange);
        o.app.prepare();
        o.term.draw(|f| o.app.draw(f))?;
        samples.push(t.elapsed());
    }
    Ok(stats(samples))
}

/// The document alone: one-character local inserts in the middle (yrs + rope mirror).
fn doc_inserts(text: &str, n: usize) -> anyhow::Result<Stats> {
    let mut doc = Document::new();
    doc.set_text(text)
        .map_err(|e| anyhow::anyhow!("set_text: {e}"))?;
    let mid = doc.len_utf16() / 2;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        doc.insert(Utf16Offset(mid + i), "x")
            .map_err(|e| anyhow::anyhow!("insert: {e}"))?;
        samples.push(t.elapsed());
        doc.take_local_updates();
    }
    Ok(stats(samples))
}

/// Resident memory of this process, in MiB (Linux; 0 elsewhere).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

/// The index a sharer's editor makes of `n` source files (50 directories).
fn index_update(n: usize) -> anyhow::Result<Vec<u8>> {
    let sharer = Document::with_client_id(1);
    for i in 0..n {
        let path = format!("src/mod{:02}/file{i:05}.rs", i % 50);
        duet_workspace::index::create(
            sharer.ydoc(),
            &path,
            duet_workspace::FileKind::Text,
            2000,
            true,
        )
        .map_err(|e| anyhow::anyhow!("index: {e}"))?;
    }
    Ok(sharer.encode_state())
}

/// `duet join`'s app with a server that never answers; the events are fed by hand.
fn workspace_app() -> anyhow::Result<App> {
    let (tx, rx) = tokio::sync::mpsc::channel::<AppEvent>(4096);
    std::mem::forget(rx);
    let opts = WsOptions {
        workspace: duet_workspace::Workspace::new("bench").context("workspace")?,
        server: "ws://127.0.0.1:9".into(),
        name: "bench".into(),
        token: None,
        ca: None,
        read_only: false,
        hosting: false,
        join_command: String::new(),
        depth: Depth::TrueColor,
        notes: Vec::new(),
        share_dir: None,
    };
    let mut app = App::workspace(opts, tx, Instant::now());
    app.resize(Rect::new(0, 0, WIDTH, HEIGHT));
    Ok(app)
}

fn draw_app(app: &mut App, term: &mut Terminal<TestBackend>) -> anyhow::Result<()> {
    app.prepare();
    term.draw(|f| app.draw(f))?;
    Ok(())
}

fn workspace_benches(runs: usize, keys: usize) -> anyhow::Result<()> {
    const FILES: usize = 5_000;
    let update = index_update(FILES)?;
    println!(
        "workspace: {FILES} files, index {} KB; frames {WIDTH}x{HEIGHT}",
        update.len() / 1024
    );
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    // Joining: the index arrives, is applied, listed, and the file list drawn.
    let mut opens = Vec::new();
    let mut grew = None;
    for _ in 0..runs {
        let mut app = workspace_app()?;
        draw_app(&mut app, &mut term)?;
        let before = rss_mib();
        let t = Instant::now();
        let index = app.index_client().context("index")?.clone();
        index
            .edit(|d| d.apply_remote_update(&update))
            .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
        app.handle_event(AppEvent::Client(TabKey::Index, ClientEvent::RemoteChange));
        draw_app(&mut app, &mut term)?;
        opens.push(t.elapsed());
        // The first run: later ones reuse memory the allocator kept from the one before.
        grew.get_or_insert(rss_mib() - before);
    }
    report(
        "join: 5,000-file index applied + listed + drawn",
        &stats(opens),
        Some(Duration::from_secs(1)),
    );
    println!(
        "  memory: the 5,000-file index adds {:.1} MiB of RSS",
        grew.unwrap_or(0.0)
    );

    // The finder: each keystroke re-ranks 5,000 paths and draws.
    let mut app = workspace_app()?;
    let index = app.index_client().context("index")?.clone();
    index
        .edit(|d| d.apply_remote_update(&update))
        .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
    app.handle_event(AppEvent::Client(TabKey::Index, ClientEvent::RemoteChange));
    draw_app(&mut app, &mut term)?;
    let queries = ["file01234", "mod07fi", "srcmod1file", "f9", "rs"];
    let mut samples = Vec::with_capacity(keys);
    'typing: loop {
        for q in queries {
            for c in q.chars() {
                let t = Instant::now();
                app.handle_term(key(KeyCode::Char(c)));
                draw_app(&mut app, &mut term)?;
                samples.push(t.elapsed());
            }
            for _ in q.chars() {
                let t = Instant::now();
                app.handle_term(key(KeyCode::Backspace));
                draw_app(&mut app, &mut term)?;
                samples.push(t.elapsed());
                if samples.len() >= keys {
                    break 'typing;
                }
            }
        }
    }
    report(
        "finder keystroke to frame, 5,000 files",
        &stats(samples),
        Some(Duration::from_millis(16)),
    );

    // Two open files of 100 KB each; F2 goes back and forth.
    let text = source(100_000);
    let before = rss_mib();
    for q in ["file00001", "file00002"] {
        app.handle_term(ctrl('o'));
        for c in q.chars() {
            app.handle_term(key(KeyCode::Char(c)));
        }
        app.handle_term(key(KeyCode::Enter));
        // As if the sharer's editor had loaded it from disk.
        app.client().edit(|d| {
            let _ = d.set_text(&text);
            duet_workspace::file_room::mark_seeded(d.ydoc(), None);
        });
        draw_app(&mut app, &mut term)?;
    }
    let per_file = (rss_mib() - before) / 2.0;
    let mut samples = Vec::with_capacity(keys);
    for _ in 0..keys {
        let t = Instant::now();
        app.handle_term(key(KeyCode::F(2)));
        draw_app(&mut app, &mut term)?;
        samples.push(t.elapsed());
    }
    report(
        "switch file (F2) to frame, two 100 KB files",
        &stats(samples),
        Some(Duration::from_millis(16)),
    );
    println!("  memory: an opened 100 KB file adds {per_file:.1} MiB of RSS");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 10 };
    let keys = if quick { 500 } else { 3000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    if std::env::args().any(|a| a == "--workspace") {
        return workspace_benches(runs, keys);
    }

    let big_text = source(4_000_000);
    let small_text = source(100_000);
    let ext = if std::env::args().any(|a| a == "--plain") {
        "txt"
    } else {
        "rs"
    };
    let big = write_temp(&format!("big.{ext}"), &big_text)?;
    let small = write_temp(&format!("small.{ext}"), &small_text)?;
    println!(
        "files: {} lines / {} bytes and {} lines / {} bytes; frames {WIDTH}x{HEIGHT}",
        big_text.lines().count(),
        big_text.len(),
        small_text.lines().count(),
        small_text.len()
    );

    let mut opens = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = open(&big)?;
        opens.push(t.elapsed());
        drop(o);
    }
    report(
        "open 4 MB file + first frame",
        &stats(opens),
        Some(Duration::from_millis(300)),
    );
    report(
        "keystroke to frame, 4 MB file",
        &keystrokes(&big, keys, false)?,
        Some(Duration::from_millis(16)),
    );
    report(
        "keystroke to frame, 100 KB file",
        &keystrokes(&small, keys, false)?,
        Some(Duration::from_millis(2)),
    );
    if ext == "rs" {
        report(
            "keystroke to frame with new colours, 4 MB file",
            &keystrokes(&big, keys, true)?,
            None,
        );
        report(
            "keystroke to frame with new colours, 100 KB file",
            &keystrokes(&small, keys, true)?,
            None,
        );
    }
    report(
        "remote update applied + drawn, 4 MB file",
        &remote_updates(&big, keys)?,
        Some(Duration::from_millis(2)),
    );
    report(
        "remote update applied + drawn, 100 KB file",
        &remote_updates(&small, keys)?,
        Some(Duration::from_millis(2)),
    );
    report(
        "document only: local 1-char insert, 4 MB (yrs+rope)",
        &doc_inserts(&big_text, keys)?,
        None,
    );
    report(
        "document only: local 1-char insert, 100 KB",
        &doc_inserts(&small_text, keys)?,
        None,
    );
    if let Some(dir) = big.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    workspace_benches(runs, keys)
}
