//! The application: the editor core, the shared document (through the network client), the
//! screen state, and the file. It turns input events and client events into state changes;
//! [`App::draw`] paints the state and changes nothing. Terminal and sockets stay outside
//! (see `run.rs`), so the whole app can be driven headlessly in tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent,
    MouseEventKind,
};
use duet_client::{Client, ClientError, ConnState, Event as ClientEvent, Role, SaveMark};
use ratatui::Frame;
use ratatui::layout::Rect;
use ropey::Rope;
use tokio::sync::Notify;

use crate::action::Action;
use crate::buffer::{CharSel, TextBuffer};
use crate::clipboard;
use crate::color::{Depth, parse_hex};
use crate::doc_buffer::{char_selection, to_chars};
use crate::editor::{Editor, Effect};
use crate::file;
use crate::highlight::{Background, Highlighter};
use crate::keymap;
use crate::render;
use crate::state::{ConnView, Level, Panel, PeerView, Prompt, Question, View};

/// How the app was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub file: Option<PathBuf>,
    /// The text of `file` when it was opened (`None`: no file, or one that does not exist).
    pub file_text: Option<String>,
    pub server: String,
    pub room: String,
    pub name: String,
    pub read_only: bool,
    /// This process runs the server in-process.
    pub hosting: bool,
    pub join_command: String,
    pub depth: Depth,
    /// Things to say at startup (hosting the server, why not).
    pub notes: Vec<String>,
    /// A token was given (`--token`, `DUET_TOKEN`).
    pub has_token: bool,
}

/// How the app ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub message: Option<String>,
}

/// How long to wait for the room before editing the file offline.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(3);

/// The application state.
pub struct App {
    client: Client,
    pub view: View,
    file: Option<PathBuf>,
    /// The file's text as last read or written: "modified" means the text differs from it.
    disk: Option<Rope>,
    /// The file's stamp when it was last read or written, to notice changes by others.
    disk_stamp: Option<file::Stamp>,
    last_disk_check: Instant,
    /// When the client's next reconnection attempt starts, for the countdown.
    retry_at: Option<Instant>,
    /// The file's text, waiting for the first sync to learn whether the room is empty.
    seed: Option<String>,
    started: Instant,
    /// Escape sequences for the terminal (OSC 52) that the loop writes after drawing.
    pub out: Vec<String>,
    pub exit: Option<Exit>,
    pub suspend: bool,
    /// The cursor's row in the view before a remote change, to keep it there.
    cursor_row: Option<usize>,
    highlighter: Option<Background>,
    /// The text changed since colours were last asked for.
    recolour: bool,
    /// Notified when something outside the input (the highlighter) wants a new frame.
    wake: Arc<Notify>,
    was_reconnecting: bool,
    /// Shown once the room is reachable: a join hint for a server nobody reached is a lie.
    join_command: String,
    has_token: bool,
    /// The room already held text and our file did not exist: we joined someone else's
    /// text, which is not "modified" against a file we never had.
    joined_without_file: bool,
    text_changed: bool,
    size: Rect,
}

impl App {
    /// An app on `client` (already spawned with an empty document).
    pub fn new(client: Client, opts: Options, now: Instant) -> Self {
        let editor = client.read(Editor::new);
        let mut view = View::new(editor, now);
        view.status.file = opts.file.as_ref().map(|p| p.display().to_string());
        view.status.room = opts.room.clone();
        view.status.name = opts.name.clone();
        view.status.read_only = opts.read_only;
        view.status.hosting = opts.hosting;
        view.status.server = opts.server.clone();
        view.depth = opts.depth;
        for note in &opts.notes {
            view.notice_for(Level::Info, note.clone(), Duration::from_secs(10));
        }
        let wake = Arc::new(Notify::new());
        let highlighter = opts
            .file
            .as_deref()
            .and_then(Highlighter::for_path)
            .and_then(|h| Background::start(h, wake.clone()));
        let disk = opts.file_text.as_deref().map(Rope::from_str);
        let disk_stamp = opts.file.as_deref().and_then(file::stamp);
        // With a file, wait for the room before editing: seed an empty room with it.
        let seed = opts
            .file
            .as_ref()
            .map(|_| opts.file_text.clone().unwrap_or_default());
        Self {
            client,
            view,
            file: opts.file,
            disk,
            disk_stamp,
            last_disk_check: now,
            retry_at: None,
            seed,
            started: now,
            out: Vec::new(),
            exit: None,
            suspend: false,
            cursor_row: None,
            highlighter,
            recolour: true,
            wake,
            was_reconnecting: false,
            join_command: opts.join_command,
            has_token: opts.has_token,
            joined_without_file: false,
            text_changed: true,
            size: Rect::new(0, 0, 80, 24),
        }
    }

    /// Notified when a frame is wanted for something other than input (new colours).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// True while colours for the current text are still being computed.
    pub fn highlighting(&self) -> bool {
        self.highlighter.as_ref().is_some_and(Background::busy)
    }

    /// The client, for the loop to close it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True once the room was reached; until then nothing typed was shared.
    pub fn ever_live(&self) -> bool {
        self.view.status.ever_live
    }

    /// Why the last connection attempt failed, if one did.
    pub fn last_problem(&self) -> Option<&str> {
        self.view.status.problem.as_deref()
    }

    fn quit(&mut self, code: i32, message: Option<String>) {
        self.exit = Some(Exit { code, message });
    }

    // --- input ------------------------------------------------------------------

    /// Handles one terminal event.
    pub fn handle_term(&mut self, ev: TermEvent) {
        match ev {
            TermEvent::Key(k) if k.kind != KeyEventKind::Release => self.handle_key(k),
            TermEvent::Paste(s) => {
                if let Some(p) = &mut self.view.prompt {
                    if let Prompt::Find { input, .. }
                    | Prompt::Goto { input }
                    | Prompt::SaveAs { input } = p
                    {
                        input.push_str(s.lines().next().unwrap_or(""));
                    }
                } else {
                    self.view.follow = None;
                    self.act(Action::InsertText(s));
                }
            }
            TermEvent::Mouse(m) => self.handle_mouse(m),
            TermEvent::Resize(w, h) => self.resize(Rect::new(0, 0, w, h)),
            _ => {}
        }
    }

    /// Sets the terminal size.
    pub fn resize(&mut self, size: Rect) {
        self.size = size;
        let lines = self.client.read(|d| d.line_count());
        let a = render::areas(size, lines);
        self.view
            .editor
            .resize(a.text.width as usize, a.text.height as usize);
    }

    fn handle_mouse(&mut self, m: MouseEvent) {
        let lines = self.client.read(|d| d.line_count());
        let a = render::areas(self.size, lines);
        let inside = m.column >= a.text.x
            && m.column < a.text.right()
            && m.row >= a.text.y
            && m.row < a.text.bottom();
        let (x, y) = (
            m.column.saturating_sub(a.text.x),
            m.row.saturating_sub(a.text.y),
        );
        let action = match m.kind {
            MouseEventKind::Down(MouseButton::Left) if inside => Action::Click { x, y },
            MouseEventKind::Drag(MouseButton::Left) => Action::Drag {
                x,
                y: y.min(a.text.height.saturating_sub(1)),
            },
            MouseEventKind::ScrollDown => Action::Scroll(3),
            MouseEventKind::ScrollUp => Action::Scroll(-3),
            _ => return,
        };
        self.view.follow = None;
        self.act(action);
    }

    fn handle_key(&mut self, k: KeyEvent) {
        // Any key of our own ends follow mode.
        self.view.follow = None;
        if self.view.prompt.is_some() {
            self.prompt_key(k);
            return;
        }
        if let Some(Panel::People { selected }) = self.view.panel {
            let n = self.view.peers.len();
            match k.code {
                KeyCode::Up => {
                    self.view.panel = Some(Panel::People {
                        selected: selected.saturating_sub(1),
                    })
                }
                KeyCode::Down => {
                    self.view.panel = Some(Panel::People {
                        selected: (selected + 1).min(n.saturating_sub(1)),
                    })
                }
                KeyCode::Enter => {
                    if let Some(p) = self.view.peers.get(selected) {
                        self.view.follow = Some(p.peer_id);
                        self.view
                            .notice(Level::Info, format!("following {} (any key stops)", p.name));
                        self.follow_peer();
                    }
                    self.view.panel = None;
                }
                _ => self.view.panel = None,
            }
            return;
        }
        if self.view.panel.is_some() {
            self.view.panel = None;
            return;
        }
        if let Some(a) = keymap::action_for(k) {
            self.act(a);
        }
    }

    /// Applies one action.
    pub fn act(&mut self, action: Action) {
        match action {
            Action::Save => self.save(),
            Action::Quit => self.ask_quit(),
            Action::Help => self.view.panel = Some(Panel::Help),
            Action::People => self.view.panel = Some(Panel::People { selected: 0 }),
            Action::Suspend => self.suspend = true,
            Action::OpenFind => {
                let origin = self.client.read(char_selection);
                let input = self.view.editor.query.clone();
                self.view.prompt = Some(Prompt::Find {
                    input,
                    origin,
                    found: true,
                });
            }
            Action::OpenGoto => {
                self.view.prompt = Some(Prompt::Goto {
                    input: String::new(),
                })
            }
            Action::FindNext | Action::FindPrev => {
                let q = self.view.editor.query.clone();
                let fwd = action == Action::FindNext;
                let ed = &mut self.view.editor;
                let found = self.client.edit(|doc| ed.find(doc, &q, fwd));
                if !found && !q.is_empty() {
                    self.view.notice(Level::Warn, format!("{q:?} not found"));
                }
                self.publish_selection();
            }
            a if a.edits() && self.read_only() => {
                self.view.notice(
                    Level::Warn,
                    "read-only: you joined as a viewer, the text cannot be changed",
                );
            }
            a if a.edits() && self.seed.is_some() => {
                self.view
                    .notice(Level::Warn, "waiting for the room before editing");
            }
            a => {
                let ed = &mut self.view.editor;
                let effect = self.client.edit(|doc| ed.apply(doc, &a));
                match effect {
                    Effect::Copied(text) => {
                        self.out.push(clipboard::osc52(&text));
                        if a == Action::Copy {
                            self.view.notice(Level::Info, "copied");
                        }
                    }
                    Effect::Refused(why) => self
                        .view
                        .notice(Level::Error, format!("edit refused: {why}")),
                    Effect::NothingToUndo => self.view.notice(Level::Info, "nothing to undo"),
                    Effect::None => {}
                }
                if a.edits() {
                    self.text_changed = true;
                }
                self.publish_selection();
            }
        }
    }

    fn read_only(&self) -> bool {
        self.view.status.is_read_only()
    }

    fn publish_selection(&self) {
        let sel = self.client.read(|d| d.selection());
        self.client.set_selection(sel);
    }

    fn prompt_key(&mut self, k: KeyEvent) {
        let Some(prompt) = self.view.prompt.take() else {
            return;
        };
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match prompt {
            Prompt::Ask { question, text } => match k.code {
                KeyCode::Char('y' | 'Y') => self.answer(question, true),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => self.answer(question, false),
                _ => self.view.prompt = Some(Prompt::Ask { question, text }),
            },
            Prompt::Find {
                mut input,
                origin,
                found,
            } => match k.code {
                KeyCode::Esc => {
                    self.client.edit(|d| TextBuffer::set_selection(d, origin));
                    let ed = &mut self.view.editor;
                    self.client.read(|d| ed.reveal(d, origin.head));
                    self.publish_selection();
                }
                KeyCode::Enter => {
                    // Enter keeps the match selected and closes the bar.
                    self.view.editor.query = input;
                }
                KeyCode::Down | KeyCode::Up | KeyCode::F(3) => {
                    let fwd = k.code != KeyCode::Up;
                    let ed = &mut self.view.editor;
                    let found = self.client.edit(|d| ed.find(d, &input, fwd));
                    self.publish_selection();
                    self.view.prompt = Some(Prompt::Find {
                        input,
                        origin,
                        found,
                    });
                }
                KeyCode::Char('n') if ctrl => {
                    let ed = &mut self.view.editor;
                    let found = self.client.edit(|d| ed.find(d, &input, true));
                    self.view.prompt = Some(Prompt::Find {
                        input,
                        origin,
                        found,
                    });
                }
                KeyCode::Backspace | KeyCode::Char(_) if !ctrl => {
                    if let KeyCode::Char(c) = k.code {
                        input.push(c);
                    } else {
                        input.pop();
                    }
                    // Find as you type, from where the search started.
                    let ed = &mut self.view.editor;
                    let found = self.client.edit(|d| {
                        TextBuffer::set_selection(d, CharSel::cursor(origin.range().start));
                        input.is_empty() || ed.find(d, &input, true)
                    });
                    self.publish_selection();
                    self.view.prompt = Some(Prompt::Find {
                        input,
                        origin,
                        found,
                    });
                }
                _ => {
                    self.view.prompt = Some(Prompt::Find {
                        input,
                        origin,
                        found,
                    })
                }
            },
            Prompt::Goto { mut input } => match k.code {
                KeyCode::Esc => {}
                KeyCode::Enter => match input.trim().parse::<usize>() {
                    Ok(n) => {
                        let ed = &mut self.view.editor;
                        self.client.edit(|d| ed.goto_line(d, n));
                        self.publish_selection();
                    }
                    Err(_) => self
                        .view
                        .notice(Level::Warn, format!("not a line number: {input:?}")),
                },
                KeyCode::Backspace => {
                    input.pop();
                    self.view.prompt = Some(Prompt::Goto { input });
                }
                KeyCode::Char(c) if c.is_ascii_digit() => {
                    input.push(c);
                    self.view.prompt = Some(Prompt::Goto { input });
                }
                _ => self.view.prompt = Some(Prompt::Goto { input }),
            },
            Prompt::SaveAs { mut input } => match k.code {
                KeyCode::Esc => {}
                KeyCode::Enter if !input.trim().is_empty() => {
                    let path = PathBuf::from(input.trim());
                    self.view.status.file = Some(path.display().to_string());
                    // Unknown version: an existing file there is overwritten only after
                    // asking.
                    self.disk_stamp = None;
                    self.disk = None;
                    self.file = Some(path);
                    self.save();
                }
                KeyCode::Backspace => {
                    input.pop();
                    self.view.prompt = Some(Prompt::SaveAs { input });
                }
                KeyCode::Char(c) if !ctrl => {
                    input.push(c);
                    self.view.prompt = Some(Prompt::SaveAs { input });
                }
                _ => self.view.prompt = Some(Prompt::SaveAs { input }),
            },
        }
    }

    fn answer(&mut self, q: Question, yes: bool) {
        match (q, yes) {
            (Question::QuitUnsaved | Question::QuitUnsent, true) => {
                if self.hosting_with_others() {
                    self.ask(Question::QuitHosting);
                } else {
                    self.quit(0, None);
                }
            }
            (Question::QuitHosting, true) => self.quit(0, None),
            (Question::QuitUnsaved | Question::QuitUnsent | Question::QuitHosting, false) => {}
            (Question::TakeRoom, true) => self.take_room(),
            (Question::Overwrite, true) => {
                if let Some(path) = self.file.clone() {
                    self.write_file(&path);
                }
            }
            (Question::Overwrite, false) => self
                .view
                .notice(Level::Info, "not saved: the file on disk was left as it is"),
            (Question::TakeRoom, false) => self.quit(
                1,
                Some("the room holds other text than the file; nothing was changed".into()),
            ),
        }
    }

    fn ask(&mut self, question: Question) {
        let text = match question {
            Question::QuitUnsaved => {
                "the text differs from the file on disk: quit anyway?".to_owned()
            }
            Question::QuitUnsent => format!(
                "{} edits have not reached the server (it is unreachable) and are lost on quitting unless you save: quit anyway?",
                self.unsent()
            ),
            Question::QuitHosting => format!(
                "{} connected to the server this editor hosts: quit anyway (they keep editing offline)?",
                self.view.peers.len()
            ),
            Question::Overwrite => format!(
                "{} on disk is not the version you opened (changed since): overwrite it with this text?",
                self.view.status.file.as_deref().unwrap_or("the file")
            ),
            Question::TakeRoom => format!(
                "room {} holds other text than {}: take the room's version (your file is kept as a backup)?",
                self.view.status.room,
                self.view.status.file.as_deref().unwrap_or("the file")
            ),
        };
        self.view.prompt = Some(Prompt::Ask { question, text });
    }

    fn hosting_with_others(&self) -> bool {
        self.view.status.hosting && !self.view.peers.is_empty()
    }

    /// Local edits the room does not have and cannot get now (the server is unreachable).
    /// While live, edits in flight still reach the server before the goodbye.
    fn unsent(&self) -> u64 {
        if self.client.state() == ConnState::Live {
            0
        } else {
            self.client
                .unacked()
                .max(self.client.pending_offline() as u64)
        }
    }

    fn ask_quit(&mut self) {
        if self.view.status.dirty {
            self.ask(Question::QuitUnsaved);
        } else if self.unsent() > 0 && !self.read_only() {
            self.ask(Question::QuitUnsent);
        } else if self.hosting_with_others() {
            self.ask(Question::QuitHosting);
        } else {
            self.quit(0, None);
        }
    }

    // --- files ------------------------------------------------------------------

    fn save(&mut self) {
        let Some(path) = self.file.clone() else {
            self.view.prompt = Some(Prompt::SaveAs {
                input: String::new(),
            });
            return;
        };
        if file::stamp(&path) != self.disk_stamp {
            // Someone else wrote the file (git checkout, another editor): ask first.
            self.view.status.changed_on_disk = true;
            self.ask(Question::Overwrite);
            return;
        }
        self.write_file(&path);
    }

    /// Writes the text to `path`, which becomes the version on disk.
    fn write_file(&mut self, path: &std::path::Path) {
        let rope = self.client.read(|d| d.rope().clone());
        match file::save_atomic(path, rope.chunks()) {
            Ok(()) => {
                self.view.notice(
                    Level::Info,
                    format!("saved {} ({} lines)", path.display(), rope.len_lines()),
                );
                let lines = rope.len_lines() as u64;
                self.disk = Some(rope);
                self.disk_stamp = file::stamp(path);
                self.view.status.changed_on_disk = false;
                self.text_changed = true;
                self.tell_saved(path, lines);
            }
            Err(e) => self
                .view
                .notice(Level::Error, format!("cannot save {}: {e}", path.display())),
        }
    }

    /// Records the save in the room, so that the others see who saved.
    fn tell_saved(&mut self, path: &std::path::Path, lines: u64) {
        if self.read_only() || self.seed.is_some() {
            return; // a viewer's writes are refused; before the first sync there is no room
        }
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mark = SaveMark {
            by: self.view.status.name.clone(),
            client_id: self.client.read(|d| d.client_id()),
            file,
            lines,
            at_ms: unix_ms(),
        };
        self.client.edit(|d| d.mark_saved(&mark));
    }

    /// Notices when the file on disk changed under us.
    fn check_disk(&mut self) {
        let Some(path) = &self.file else { return };
        if self.view.status.changed_on_disk || self.seed.is_some() {
            return;
        }
        let stamp = file::stamp(path);
        if stamp != self.disk_stamp {
            // A partner on this machine saved the same file: it holds our text, so it is
            // our version on disk now, not a change to warn about.
            if let Ok(Some(text)) = file::load(path)
                && self.client.read(|d| *d.rope() == text.as_str())
            {
                self.disk = Some(Rope::from_str(&text));
                self.disk_stamp = stamp;
                self.text_changed = true;
                return;
            }
            self.view.status.changed_on_disk = true;
            self.view.notice(
                Level::Warn,
                format!(
                    "changed on disk: {}; saving asks before overwriting it",
                    path.display()
                ),
            );
        }
    }

    /// After the first sync: seed an empty room with the file, or ask when they differ.
    fn first_sync(&mut self) {
        let Some(seed) = self.seed.take() else {
            return;
        };
        // The room's text arrived into an empty document, carrying the cursor to its end:
        // start at the top instead.
        self.client
            .edit(|d| d.set_selection(duet_client::Selection::cursor(duet_client::Utf16Offset(0))));
        self.publish_selection();
        self.view.editor.top = 0;
        let room_empty = self.client.read(|d| d.len_chars() == 0);
        let same = self.client.read(|d| *d.rope() == seed.as_str());
        if self.disk.is_none() && !room_empty {
            self.joined_without_file = true;
            self.text_changed = true;
        }
        if room_empty && !seed.is_empty() {
            let r = self.client.edit(|d| {
                let r = d.set_text(&seed);
                d.set_selection(duet_client::Selection::cursor(duet_client::Utf16Offset(0)));
                r
            });
            if let Err(e) = r {
                self.view.notice(
                    Level::Error,
                    format!("cannot load the file into the room: {e}"),
                );
            }
            self.text_changed = true;
        } else if !same && !room_empty && !seed.is_empty() {
            // Keep the file's text to write the backup if the user takes the room's.
            self.seed = Some(seed);
            self.ask(Question::TakeRoom);
        }
    }

    fn take_room(&mut self) {
        let Some(seed) = self.seed.take() else {
            return;
        };
        let Some(path) = self.file.clone() else {
            return;
        };
        let backup = file::backup_path(&path);
        match file::save_atomic(&backup, std::iter::once(seed.as_str())) {
            Ok(()) => {
                let rope = self.client.read(|d| d.rope().clone());
                match file::save_atomic(&path, rope.chunks()) {
                    Ok(()) => {
                        self.disk = Some(rope);
                        self.disk_stamp = file::stamp(&path);
                        self.view.notice(
                            Level::Warn,
                            format!(
                                "took the room's version; your file was kept as {}",
                                backup.display()
                            ),
                        );
                    }
                    Err(e) => self.view.notice(
                        Level::Error,
                        format!(
                            "backup written to {}, but {}: {e}",
                            backup.display(),
                            path.display()
                        ),
                    ),
                }
                self.text_changed = true;
            }
            Err(e) => self.quit(
                1,
                Some(format!("cannot write the backup {}: {e}", backup.display())),
            ),
        }
    }

    // --- the client -------------------------------------------------------------

    /// Handles one event from the network client.
    pub fn handle_client(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::State(s) => {
                self.view.status.conn = match s {
                    ConnState::Connecting => ConnView::Connecting,
                    ConnState::Live => {
                        if !self.view.status.ever_live {
                            self.first_live();
                        } else if self.was_reconnecting {
                            self.view.notice(Level::Info, "reconnected");
                        }
                        self.was_reconnecting = false;
                        self.view.status.problem = None;
                        ConnView::Live
                    }
                    ConnState::Reconnecting {
                        retry_in, reason, ..
                    } => {
                        if self.view.status.ever_live && !self.was_reconnecting {
                            // What was said while connected ("bob joined") is stale now.
                            self.view.notices.clear();
                            self.view.notice(
                                Level::Warn,
                                format!("connection lost: {reason}; edits are kept"),
                            );
                        }
                        self.view.status.problem = Some(reason);
                        self.was_reconnecting = true;
                        // The edge of the app: the countdown runs on the tick's clock.
                        self.retry_at = Some(Instant::now() + retry_in);
                        ConnView::Reconnecting {
                            retry_in: retry_in.as_secs_f64().ceil() as u64,
                        }
                    }
                    ConnState::Stopped => ConnView::Offline,
                };
            }
            ClientEvent::RemoteChange => {
                self.text_changed = true;
                // Keep our cursor on the same screen row: the view never jumps away.
                if let Some(row) = self.cursor_row {
                    let (line, lines) = self.client.read(|d| {
                        let head = d.char_to_line_col(d.utf16_to_char(d.selection().head));
                        (head.line, d.rope().len_lines())
                    });
                    self.view.editor.keep_cursor_row(line, row, lines);
                }
                self.refresh_peers();
            }
            ClientEvent::PeersChanged => self.refresh_peers(),
            ClientEvent::PeerJoined { name } => {
                self.view.notice(Level::Info, format!("{name} joined"));
                self.refresh_peers();
            }
            ClientEvent::PeerLeft { name } => {
                self.view.notice(Level::Info, format!("{name} left"));
                self.refresh_peers();
            }
            ClientEvent::Synced {
                offline_updates_merged,
            } => {
                if offline_updates_merged > 0 {
                    self.view.notice(
                        Level::Info,
                        format!("{offline_updates_merged} offline edits merged"),
                    );
                }
                self.first_sync();
                self.refresh_peers();
            }
            ClientEvent::Saved(mark) => self.peer_saved(&mark),
            ClientEvent::Acked { .. } => {}
            ClientEvent::ServerError { code, message } => {
                self.view
                    .notice(Level::Error, format!("server: {message} (code {})", code.0));
            }
            ClientEvent::Fatal(e) => {
                self.view.status.conn = ConnView::Offline;
                let e = match e {
                    ClientError::TokenRequired { .. } if !self.has_token => format!(
                        "{} requires an access token: run duet with --token TOKEN or set \
                         DUET_TOKEN (the server's admin mints one with `duet-server token --room {}`)",
                        self.view.status.server, self.view.status.room
                    ),
                    e => e.to_string(),
                };
                if self.seed.is_some() || self.view.status.role.is_none() {
                    // Refused before we ever joined: nothing to lose, say why and stop.
                    self.quit(
                        2,
                        Some(format!("cannot join room {}: {e}", self.view.status.room)),
                    );
                } else {
                    self.view.notice(
                        Level::Error,
                        format!("disconnected for good: {e}; edits stay local, save to keep them"),
                    );
                }
            }
        }
        self.view.status.role = self.client.role().or(self.view.status.role);
    }

    /// The room answered for the first time: now a partner can join us.
    fn first_live(&mut self) {
        self.view.status.ever_live = true;
        if !self.join_command.is_empty() {
            self.view.join_command = self.join_command.clone();
            // Behind the startup notes (hosting), and it stays longest; it is also in the
            // help overlay and in the hint row.
            self.view.notice_behind(
                Level::Info,
                format!("a partner joins with: {}", self.join_command),
                Duration::from_secs(30),
            );
        }
    }

    /// Another member saved the text: say so while it is news.
    fn peer_saved(&mut self, mark: &SaveMark) {
        let age = unix_ms().saturating_sub(mark.at_ms);
        if age > 120_000 {
            return; // an old record that arrived with the room's text on joining
        }
        let lines = if mark.lines == 1 { "line" } else { "lines" };
        self.view.notice(
            Level::Info,
            format!("{} saved {} ({} {lines})", mark.by, mark.file, mark.lines),
        );
    }

    fn refresh_peers(&mut self) {
        let now = self.view.now;
        let infos = self.client.peers();
        self.view.peers = self.client.read(|d| {
            infos
                .into_iter()
                .map(|p| {
                    let sel = p.selection.map(|s| to_chars(d.rope(), s));
                    PeerView {
                        peer_id: p.peer_id,
                        line: sel.map_or(0, |s| d.rope().char_to_line(s.head)),
                        name: p.name,
                        color: parse_hex(&p.color),
                        role: p.role,
                        sel,
                        idle: now.saturating_duration_since(p.last_change),
                    }
                })
                .collect()
        });
        if let Some(Panel::People { selected }) = self.view.panel {
            let n = self.view.peers.len();
            self.view.panel = Some(Panel::People {
                selected: selected.min(n.saturating_sub(1)),
            });
        }
        self.follow_peer();
    }

    fn follow_peer(&mut self) {
        let Some(id) = self.view.follow else { return };
        let Some(head) = self
            .view
            .peers
            .iter()
            .find(|p| p.peer_id == id)
            .and_then(|p| p.sel)
            .map(|s| s.head)
        else {
            return;
        };
        let ed = &mut self.view.editor;
        self.client.read(|d| ed.reveal(d, head));
    }

    /// Time passes: notices expire, the reconnection countdown runs, the file on disk is
    /// checked (once a second), the first sync may time out.
    pub fn tick(&mut self, now: Instant) {
        self.view.now = now;
        self.view.expire_notices();
        if let (ConnView::Reconnecting { retry_in }, Some(at)) =
            (&mut self.view.status.conn, self.retry_at)
        {
            *retry_in = at.saturating_duration_since(now).as_secs_f64().ceil() as u64;
        }
        if now.saturating_duration_since(self.last_disk_check) >= Duration::from_secs(1) {
            self.last_disk_check = now;
            self.check_disk();
        }
        if self.seed.is_some()
            && self.view.prompt.is_none()
            && now.duration_since(self.started) > FIRST_SYNC_WAIT
            && self.client.state() != ConnState::Live
        {
            // The server is unreachable: edit the file offline rather than wait. The
            // client merges these edits into the room when it reconnects.
            if let Some(seed) = self.seed.take() {
                let r = self.client.edit(|d| d.set_text(&seed));
                if r.is_ok() {
                    self.client.edit(|d| {
                        d.set_selection(duet_client::Selection::cursor(duet_client::Utf16Offset(0)))
                    });
                }
                self.view.notice(
                    Level::Warn,
                    "server unreachable: editing offline, your edits merge when it is back",
                );
                self.text_changed = true;
            }
        }
    }

    /// Brings derived state up to date before a frame: status, modified flag, highlights.
    pub fn prepare(&mut self) {
        self.view.status.waiting = self
            .client
            .unacked()
            .max(self.client.pending_offline() as u64);
        self.view.status.role = self.client.role().or(self.view.status.role);
        if self.view.status.role == Some(Role::Viewer) && !self.view.status.read_only {
            // Nothing else to do: edits are refused by `act`.
        }
        if self.text_changed {
            self.text_changed = false;
            self.recolour = true;
            let disk = self.disk.as_ref();
            let file = self.file.is_some() && !self.joined_without_file;
            self.view.status.dirty = self.client.read(|d| match disk {
                Some(r) => r != d.rope(),
                None => file && d.len_chars() > 0,
            });
        }
        let lines = self.client.read(|d| d.line_count());
        let a = render::areas(self.size, lines);
        self.view
            .editor
            .resize(a.text.width as usize, a.text.height as usize);
        if let Some(h) = &mut self.highlighter {
            if let Some(hl) = h.poll() {
                self.view.highlights = hl;
            }
            let (top, height) = (self.view.editor.top, self.view.editor.height);
            let changed = std::mem::take(&mut self.recolour);
            self.client
                .read(|d| h.request(d.rope(), top, height, changed));
        }
        let ed = &self.view.editor;
        self.cursor_row = self.client.read(|d| {
            let line = d
                .rope()
                .char_to_line(char_selection(d).head.min(d.len_chars()));
            (line >= ed.top && line < ed.top + ed.height).then(|| line - ed.top)
        });
    }

    /// Draws the screen.
    pub fn draw(&self, frame: &mut Frame<'_>) {
        self.client
            .read(|d| render::draw(frame, &self.view, d.rope(), char_selection(d)));
    }
}

/// Now as Unix milliseconds (save records carry wall-clock time).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
