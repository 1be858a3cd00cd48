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
use crate::highlight::{Background, Highlighter, Highlights};
use crate::keymap;
use crate::render;
use crate::state::{ConnView, Level, Panel, PeerView, Person, Prompt, Question, Status, View};
use duet_workspace::FileId;
use tokio::sync::mpsc;

mod sharer;
pub mod workspace;

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

/// Which room a tab edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TabKey {
    /// `duet FILE`: the one room.
    Single,
    /// A workspace's index room: in front only until a file is opened (no text to edit).
    Index,
    /// A file of a workspace.
    File(FileId),
}

/// Something for the app from outside the terminal.
#[derive(Debug)]
pub enum AppEvent {
    /// An event of the client of tab `key`.
    Client(TabKey, ClientEvent),
    /// A scan of the sharer's directory finished (started at disk generation `generation`).
    Scanned {
        generation: u64,
        scan: duet_workspace::scan::Scan,
        took: Duration,
    },
}

/// Moves the events of a tab's client into the app's one queue, tagged with the tab.
pub fn forward(key: TabKey, mut from: mpsc::Receiver<ClientEvent>, to: mpsc::Sender<AppEvent>) {
    tokio::spawn(async move {
        while let Some(ev) = from.recv().await {
            if to.send(AppEvent::Client(key, ev)).await.is_err() {
                break;
            }
        }
    });
}

/// One open file: its room's client and what is kept per file. The tab in front lends its
/// editor, status, colours and peers to the [`View`] (the screen draws the view); the
/// others keep theirs here until they come to the front ([`App::swap_front`]).
pub(crate) struct Tab {
    pub(crate) key: TabKey,
    pub(crate) client: Client,
    /// The file on disk (`duet FILE`, or the sharer's copy of a workspace file).
    pub(crate) file: Option<PathBuf>,
    /// The file's text as last read or written: "modified" means the text differs from it.
    pub(crate) disk: Option<Rope>,
    /// The file's stamp when it was last read or written, to notice changes by others.
    pub(crate) disk_stamp: Option<file::Stamp>,
    /// When the client's next reconnection attempt starts, for the countdown.
    pub(crate) retry_at: Option<Instant>,
    /// The file's text, waiting for the first sync to learn whether the room is empty.
    pub(crate) seed: Option<String>,
    /// The cursor's row in the view before a remote change, to keep it there.
    pub(crate) cursor_row: Option<usize>,
    pub(crate) highlighter: Option<Background>,
    /// The text changed since colours were last asked for.
    pub(crate) recolour: bool,
    pub(crate) was_reconnecting: bool,
    /// The room already held text and our file did not exist: we joined someone else's
    /// text, which is not "modified" against a file we never had.
    pub(crate) joined_without_file: bool,
    pub(crate) text_changed: bool,
    /// A workspace partner's file whose text the sharer's editor has not loaded yet.
    pub(crate) loading: bool,
    /// Hash of the sharer's disk version (a workspace partner's "modified").
    pub(crate) disk_hash: Option<u64>,
    // Kept here while the tab is not in front (the view holds them while it is).
    pub(crate) editor: Editor,
    pub(crate) status: Status,
    pub(crate) highlights: Highlights,
    pub(crate) peers: Vec<PeerView>,
}

impl Tab {
    /// A tab on `client` for `file` (with its text as read, if it exists), not in front.
    pub(crate) fn new(
        key: TabKey,
        client: Client,
        file: Option<PathBuf>,
        file_text: Option<String>,
        status: Status,
    ) -> Self {
        let editor = client.read(Editor::new);
        let disk = file_text.as_deref().map(Rope::from_str);
        let disk_stamp = file.as_deref().and_then(file::stamp);
        // With a file, wait for the room before editing: seed an empty room with it.
        let seed = file.as_ref().map(|_| file_text.unwrap_or_default());
        Self {
            key,
            client,
            file,
            disk,
            disk_stamp,
            retry_at: None,
            seed,
            cursor_row: None,
            highlighter: None,
            recolour: true,
            was_reconnecting: false,
            joined_without_file: false,
            text_changed: true,
            loading: false,
            disk_hash: None,
            editor,
            status,
            highlights: Highlights::default(),
            peers: Vec::new(),
        }
    }
}

/// The application state.
pub struct App {
    /// The tab in front (in `duet FILE`, the only one).
    pub(crate) tab: Tab,
    pub view: View,
    last_disk_check: Instant,
    started: Instant,
    /// Escape sequences for the terminal (OSC 52) that the loop writes after drawing.
    pub out: Vec<String>,
    pub exit: Option<Exit>,
    pub suspend: bool,
    /// Notified when something outside the input (the highlighter) wants a new frame.
    wake: Arc<Notify>,
    /// Shown once the room is reachable: a join hint for a server nobody reached is a lie.
    join_command: String,
    has_token: bool,
    size: Rect,
    /// Workspace mode (`duet share`, `duet join`): the index, the other tabs, the sharer's
    /// disk.
    pub(crate) ws: Option<Box<workspace::Ws>>,
    /// While a parked tab handles an event in front ([`App::in_tab`]): the key of the tab
    /// really in front, set aside meanwhile. Nothing that concerns the person (location,
    /// follow, switching) happens then.
    pub(crate) backstage: Option<TabKey>,
}

impl App {
    /// An app on `client` (already spawned with an empty document).
    pub fn new(client: Client, opts: Options, now: Instant) -> Self {
        let status = Status {
            file: opts.file.as_ref().map(|p| p.display().to_string()),
            room: opts.room.clone(),
            name: opts.name.clone(),
            read_only: opts.read_only,
            hosting: opts.hosting,
            server: opts.server.clone(),
            ..Status::default()
        };
        let mut tab = Tab::new(TabKey::Single, client, opts.file, opts.file_text, status);
        let wake = Arc::new(Notify::new());
        tab.highlighter = tab
            .file
            .as_deref()
            .and_then(Highlighter::for_path)
            .and_then(|h| Background::start(h, wake.clone()));
        Self::around(
            tab,
            wake,
            (opts.depth, &opts.notes),
            opts.join_command,
            opts.has_token,
            now,
        )
    }

    /// The app around its front tab, with a view on it at the options' depth and their
    /// notes shown: what a file's session and a workspace's have in common.
    fn around(
        tab: Tab,
        wake: Arc<Notify>,
        (depth, notes): (Depth, &[String]),
        join_command: String,
        has_token: bool,
        now: Instant,
    ) -> Self {
        let mut view = View::new(tab.editor.clone(), now);
        view.status = tab.status.clone();
        view.depth = depth;
        for note in notes {
            view.notice_for(Level::Info, note.clone(), Duration::from_secs(10));
        }
        Self {
            tab,
            view,
            last_disk_check: now,
            started: now,
            out: Vec::new(),
            exit: None,
            suspend: false,
            wake,
            join_command,
            has_token,
            size: Rect::new(0, 0, 80, 24),
            ws: None,
            backstage: None,
        }
    }

    /// Notified when a frame is wanted for something other than input (new colours).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// True while colours for the current text are still being computed.
    pub fn highlighting(&self) -> bool {
        self.tab.highlighter.as_ref().is_some_and(Background::busy)
    }

    /// The client, for the loop to close it.
    pub fn client(&self) -> &Client {
        &self.tab.client
    }

    /// True once the room was reached; until then nothing typed was shared.
    pub fn ever_live(&self) -> bool {
        match &self.ws {
            // A workspace was reached when its index was.
            Some(ws) => ws.index_synced,
            None => self.view.status.ever_live,
        }
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
                    | Prompt::SaveAs { input }
                    | Prompt::Path { input, .. } = p
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
        let lines = self.tab.client.read(|d| d.line_count());
        let a = render::areas(size, lines);
        self.view
            .editor
            .resize(a.text.width as usize, a.text.height as usize);
    }

    fn handle_mouse(&mut self, m: MouseEvent) {
        let lines = self.tab.client.read(|d| d.line_count());
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
            let n = self.view.people.len();
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
                    if let Some(p) = self.view.people.get(selected) {
                        self.view.follow = Some(p.client_id);
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
        if matches!(self.view.panel, Some(Panel::Files)) {
            self.files_key(k);
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
            Action::Save if self.ws.is_some() => self.ws_save(),
            Action::Save => self.save(),
            Action::Quit if self.ws.is_some() => self.ws_ask_quit(),
            Action::Quit => self.ask_quit(),
            Action::Files => self.open_files_panel(),
            Action::PrevFile => self.switch_to_previous(),
            Action::Help => self.view.panel = Some(Panel::Help),
            Action::People => self.view.panel = Some(Panel::People { selected: 0 }),
            Action::Suspend => self.suspend = true,
            Action::OpenFind => {
                let origin = self.tab.client.read(char_selection);
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
                let found = self.tab.client.edit(|doc| ed.find(doc, &q, fwd));
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
            a if a.edits() && self.tab.key == TabKey::Index => {
                self.view
                    .notice(Level::Info, "no file is open: Ctrl-O lists the files");
            }
            a if a.edits() && self.tab.loading => {
                self.view.notice(
                    Level::Warn,
                    "waiting for the sharer's editor to load this file from disk",
                );
            }
            a if a.edits() && self.tab.seed.is_some() => {
                self.view
                    .notice(Level::Warn, "waiting for the room before editing");
            }
            a => {
                let ed = &mut self.view.editor;
                let effect = self.tab.client.edit(|doc| ed.apply(doc, &a));
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
                    self.tab.text_changed = true;
                }
                self.publish_selection();
            }
        }
    }

    fn read_only(&self) -> bool {
        self.view.status.is_read_only()
    }

    fn publish_selection(&self) {
        let sel = self.tab.client.read(|d| d.selection());
        self.tab.client.set_selection(sel);
        self.publish_location();
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
                    self.tab
                        .client
                        .edit(|d| TextBuffer::set_selection(d, origin));
                    let ed = &mut self.view.editor;
                    self.tab.client.read(|d| ed.reveal(d, origin.head));
                    self.publish_selection();
                }
                KeyCode::Enter => {
                    // Enter keeps the match selected and closes the bar.
                    self.view.editor.query = input;
                }
                KeyCode::Down | KeyCode::Up | KeyCode::F(3) => {
                    let fwd = k.code != KeyCode::Up;
                    let ed = &mut self.view.editor;
                    let found = self.tab.client.edit(|d| ed.find(d, &input, fwd));
                    self.publish_selection();
                    self.view.prompt = Some(Prompt::Find {
                        input,
                        origin,
                        found,
                    });
                }
                KeyCode::Char('n') if ctrl => {
                    let ed = &mut self.view.editor;
                    let found = self.tab.client.edit(|d| ed.find(d, &input, true));
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
                    let found = self.tab.client.edit(|d| {
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
                        self.tab.client.edit(|d| ed.goto_line(d, n));
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
            Prompt::Path { purpose, mut input } => match k.code {
                KeyCode::Esc => {}
                KeyCode::Enter if !input.trim().is_empty() => {
                    self.path_entered(purpose, input.trim());
                }
                KeyCode::Backspace => {
                    input.pop();
                    self.view.prompt = Some(Prompt::Path { purpose, input });
                }
                KeyCode::Char(c) if !ctrl => {
                    input.push(c);
                    self.view.prompt = Some(Prompt::Path { purpose, input });
                }
                _ => self.view.prompt = Some(Prompt::Path { purpose, input }),
            },
            Prompt::SaveAs { mut input } => match k.code {
                KeyCode::Esc => {}
                KeyCode::Enter if !input.trim().is_empty() => {
                    let path = PathBuf::from(input.trim());
                    self.view.status.file = Some(path.display().to_string());
                    // Unknown version: an existing file there is overwritten only after
                    // asking.
                    self.tab.disk_stamp = None;
                    self.tab.disk = None;
                    self.tab.file = Some(path);
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
            (Question::Delete(id), true) => self.ws_delete(id),
            (Question::Delete(_), false) => {}
            (
                Question::QuitUnsaved | Question::QuitUnsent | Question::QuitUnsavedFiles(_),
                true,
            ) => {
                if self.hosting_with_others() {
                    self.ask(Question::QuitHosting);
                } else {
                    self.quit(0, None);
                }
            }
            (Question::QuitHosting, true) => self.quit(0, None),
            (
                Question::QuitUnsaved
                | Question::QuitUnsent
                | Question::QuitHosting
                | Question::QuitUnsavedFiles(_),
                false,
            ) => {}
            (Question::TakeRoom, true) => self.take_room(),
            (Question::Overwrite, true) => {
                if let Some(path) = self.tab.file.clone() {
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
                self.view.people.len()
            ),
            Question::Overwrite => format!(
                "{} on disk is not the version you opened (changed since): overwrite it with this text?",
                self.view.status.file.as_deref().unwrap_or("the file")
            ),
            Question::Delete(id) => format!(
                "delete {} for everyone (its text stays in the room; the sharer's file goes)?",
                self.ws
                    .as_ref()
                    .and_then(|ws| ws.entry(id))
                    .map_or_else(|| id.to_string(), |e| e.shown)
            ),
            Question::QuitUnsavedFiles(n) => format!(
                "{n} open file{} differ from the disk: quit anyway (the room keeps the text)?",
                if n == 1 { "" } else { "s" }
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
        self.view.status.hosting && !self.view.people.is_empty()
    }

    /// Local edits the room does not have and cannot get now (the server is unreachable),
    /// in every open file. While live, edits in flight still reach the server before the
    /// goodbye.
    fn unsent(&self) -> u64 {
        let of = |c: &Client| {
            if c.state() == ConnState::Live {
                0
            } else {
                c.unacked().max(c.pending_offline() as u64)
            }
        };
        let others: u64 = self
            .ws
            .as_ref()
            .map_or(0, |ws| ws.tabs.values().map(|t| of(&t.client)).sum());
        of(&self.tab.client) + others
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
        let Some(path) = self.tab.file.clone() else {
            self.view.prompt = Some(Prompt::SaveAs {
                input: String::new(),
            });
            return;
        };
        if file::stamp(&path) != self.tab.disk_stamp {
            // Someone else wrote the file (git checkout, another editor): ask first.
            self.view.status.changed_on_disk = true;
            self.ask(Question::Overwrite);
            return;
        }
        self.write_file(&path);
    }

    /// Writes the text to `path`, which becomes the version on disk.
    fn write_file(&mut self, path: &std::path::Path) {
        let rope = self.tab.client.read(|d| d.rope().clone());
        match file::save_atomic(path, rope.chunks()) {
            Ok(()) => {
                self.view.notice(
                    Level::Info,
                    format!("saved {} ({} lines)", path.display(), rope.len_lines()),
                );
                let lines = rope.len_lines() as u64;
                self.tab.disk = Some(rope);
                self.tab.disk_stamp = file::stamp(path);
                self.view.status.changed_on_disk = false;
                self.tab.text_changed = true;
                let file = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                self.tell_saved(file, lines);
            }
            Err(e) => self
                .view
                .notice(Level::Error, format!("cannot save {}: {e}", path.display())),
        }
    }

    /// Records the save in the room, so that the others see who saved `file`.
    fn tell_saved(&mut self, file: String, lines: u64) {
        if self.read_only() || self.tab.seed.is_some() {
            return; // a viewer's writes are refused; before the first sync there is no room
        }
        let mark = SaveMark {
            by: self.view.status.name.clone(),
            client_id: self.tab.client.read(|d| d.client_id()),
            file,
            lines,
            at_ms: unix_ms(),
        };
        self.tab.client.edit(|d| d.mark_saved(&mark));
    }

    /// Notices when the file on disk changed under us.
    fn check_disk(&mut self) {
        let Some(path) = &self.tab.file else { return };
        if self.view.status.changed_on_disk || self.tab.seed.is_some() {
            return;
        }
        let stamp = file::stamp(path);
        if stamp != self.tab.disk_stamp {
            // A partner on this machine saved the same file: it holds our text, so it is
            // our version on disk now, not a change to warn about.
            if let Ok(Some(text)) = file::load(path)
                && self.tab.client.read(|d| *d.rope() == text.as_str())
            {
                self.tab.disk = Some(Rope::from_str(&text));
                self.tab.disk_stamp = stamp;
                self.tab.text_changed = true;
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
        let Some(seed) = self.tab.seed.take() else {
            return;
        };
        // The room's text arrived into an empty document, carrying the cursor to its end:
        // start at the top instead.
        self.tab
            .client
            .edit(|d| d.set_selection(duet_client::Selection::cursor(duet_client::Utf16Offset(0))));
        self.publish_selection();
        self.view.editor.top = 0;
        let room_empty = self.tab.client.read(|d| d.len_chars() == 0);
        let same = self.tab.client.read(|d| *d.rope() == seed.as_str());
        if self.tab.disk.is_none() && !room_empty {
            self.tab.joined_without_file = true;
            self.tab.text_changed = true;
        }
        if room_empty && !seed.is_empty() {
            let r = self.tab.client.edit(|d| {
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
            self.tab.text_changed = true;
        } else if !same && !room_empty && !seed.is_empty() {
            // Keep the file's text to write the backup if the user takes the room's.
            self.tab.seed = Some(seed);
            self.ask(Question::TakeRoom);
        }
    }

    fn take_room(&mut self) {
        let Some(seed) = self.tab.seed.take() else {
            return;
        };
        let Some(path) = self.tab.file.clone() else {
            return;
        };
        let backup = file::backup_path(&path);
        match file::save_atomic(&backup, std::iter::once(seed.as_str())) {
            Ok(()) => {
                let rope = self.tab.client.read(|d| d.rope().clone());
                match file::save_atomic(&path, rope.chunks()) {
                    Ok(()) => {
                        self.tab.disk = Some(rope);
                        self.tab.disk_stamp = file::stamp(&path);
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
                self.tab.text_changed = true;
            }
            Err(e) => self.quit(
                1,
                Some(format!("cannot write the backup {}: {e}", backup.display())),
            ),
        }
    }

    // --- the client -------------------------------------------------------------

    /// Handles one event from outside the terminal: a client's (routed to its tab), or a
    /// finished scan of the sharer's directory.
    pub fn handle_event(&mut self, ev: AppEvent) {
        match ev {
            AppEvent::Client(key, ev) => {
                let for_index = (key == TabKey::Index).then(|| ev.clone());
                if key == self.tab.key {
                    self.handle_client(ev);
                } else {
                    self.in_tab(key, |app| app.handle_client(ev));
                }
                match for_index {
                    Some(ev) => self.index_event(&ev),
                    None if self.ws.is_some() => self.file_event(key),
                    None => {}
                }
            }
            AppEvent::Scanned {
                generation,
                scan,
                took,
            } => self.scanned(generation, scan, took),
        }
    }

    /// Handles one event from the network client of the tab in front.
    pub fn handle_client(&mut self, ev: ClientEvent) {
        // In a workspace, people come and go, and the connection drops and returns, once
        // (in the index room), not once per open file.
        let announce = self.ws.is_none() || self.tab.key == TabKey::Index;
        match ev {
            ClientEvent::State(s) => {
                self.view.status.conn = match s {
                    ConnState::Connecting => ConnView::Connecting,
                    ConnState::Live => {
                        if !self.view.status.ever_live {
                            self.first_live(announce);
                        } else if self.tab.was_reconnecting && announce {
                            self.view.notice(Level::Info, "reconnected");
                        }
                        self.tab.was_reconnecting = false;
                        self.view.status.problem = None;
                        ConnView::Live
                    }
                    ConnState::Reconnecting {
                        retry_in, reason, ..
                    } => {
                        if self.view.status.ever_live && !self.tab.was_reconnecting && announce {
                            // What was said while connected ("bob joined") is stale now.
                            self.view.notices.clear();
                            self.view.notice(
                                Level::Warn,
                                format!("connection lost: {reason}; edits are kept"),
                            );
                        }
                        self.view.status.problem = Some(reason);
                        self.tab.was_reconnecting = true;
                        // The edge of the app: the countdown runs on the tick's clock.
                        self.tab.retry_at = Some(Instant::now() + retry_in);
                        ConnView::Reconnecting {
                            retry_in: retry_in.as_secs_f64().ceil() as u64,
                        }
                    }
                    ConnState::Stopped => ConnView::Offline,
                };
            }
            ClientEvent::RemoteChange => {
                self.tab.text_changed = true;
                // Keep our cursor on the same screen row: the view never jumps away.
                if let Some(row) = self.tab.cursor_row {
                    let (line, lines) = self.tab.client.read(|d| {
                        let head = d.char_to_line_col(d.utf16_to_char(d.selection().head));
                        (head.line, d.rope().len_lines())
                    });
                    self.view.editor.keep_cursor_row(line, row, lines);
                }
                if self.ws.is_some() {
                    self.ws_remote_change();
                }
                self.refresh_peers();
            }
            ClientEvent::PeersChanged => self.refresh_peers(),
            ClientEvent::PeerJoined { name } => {
                if announce {
                    self.view.notice(Level::Info, format!("{name} joined"));
                }
                self.refresh_peers();
            }
            ClientEvent::PeerLeft { name } => {
                if announce {
                    self.view.notice(Level::Info, format!("{name} left"));
                }
                self.refresh_peers();
            }
            ClientEvent::Synced {
                offline_updates_merged,
            } => {
                if offline_updates_merged > 0 {
                    let text = match &self.view.status.file {
                        Some(f) if self.ws.is_some() => {
                            format!("{offline_updates_merged} offline edits merged in {f}")
                        }
                        _ => format!("{offline_updates_merged} offline edits merged"),
                    };
                    self.view.notice(Level::Info, text);
                }
                if self.ws.is_some() {
                    self.ws_first_sync();
                } else {
                    self.first_sync();
                }
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
                        self.view.status.server,
                        self.token_room()
                    ),
                    e => e.to_string(),
                };
                let file_tab = matches!(self.tab.key, TabKey::File(_));
                if file_tab {
                    // One file of a workspace: the others, and the index, carry on.
                    let f = self.view.status.file.clone().unwrap_or_default();
                    self.view
                        .notice(Level::Error, format!("cannot open {f}: {e}"));
                } else if self.tab.seed.is_some() || self.view.status.role.is_none() {
                    // Refused before we ever joined: nothing to lose, say why and stop.
                    let what = match &self.ws {
                        Some(ws) => format!("workspace {}", ws.workspace.name()),
                        None => format!("room {}", self.view.status.room),
                    };
                    self.quit(2, Some(format!("cannot join {what}: {e}")));
                } else {
                    self.view.notice(
                        Level::Error,
                        format!("disconnected for good: {e}; edits stay local, save to keep them"),
                    );
                }
            }
        }
        self.view.status.role = self.tab.client.role().or(self.view.status.role);
    }

    /// The room pattern a token must admit: the room, or the whole workspace.
    fn token_room(&self) -> String {
        match &self.ws {
            Some(ws) => format!("'{}'", ws.workspace.token_pattern()),
            None => self.view.status.room.clone(),
        }
    }

    /// The room answered for the first time: now a partner can join us.
    fn first_live(&mut self, announce: bool) {
        self.view.status.ever_live = true;
        if announce && !self.join_command.is_empty() {
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
        let infos = self.tab.client.peers();
        self.view.peers = self.tab.client.read(|d| {
            infos
                .into_iter()
                .map(|p| {
                    let sel = p.selection.map(|s| to_chars(d.rope(), s));
                    PeerView {
                        peer_id: p.peer_id,
                        client_id: p.client_id,
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
        self.refresh_people();
        self.follow_peer();
    }

    /// The people panel's list: the room's peers, or in a workspace everyone in its index
    /// with the file they are in.
    fn refresh_people(&mut self) {
        if self.ws.is_some() {
            self.ws_people();
        } else {
            self.view.people = self
                .view
                .peers
                .iter()
                .map(|p| Person {
                    client_id: p.client_id,
                    name: p.name.clone(),
                    color: p.color,
                    role: p.role,
                    file: None,
                    line: p.sel.map(|_| p.line),
                    idle: p.idle,
                })
                .collect();
        }
        if let Some(Panel::People { selected }) = self.view.panel {
            let n = self.view.people.len();
            self.view.panel = Some(Panel::People {
                selected: selected.min(n.saturating_sub(1)),
            });
        }
    }

    fn follow_peer(&mut self) {
        let Some(id) = self.view.follow else { return };
        if self.backstage.is_some() {
            return;
        }
        if self.ws.is_some() {
            self.ws_follow(id);
            return;
        }
        self.reveal_peer(id);
    }

    /// Scrolls to peer `client_id`'s cursor in the front tab; false if it has none here.
    pub(crate) fn reveal_peer(&mut self, client_id: u64) -> bool {
        let Some(head) = self
            .view
            .peers
            .iter()
            .find(|p| p.client_id == client_id)
            .and_then(|p| p.sel)
            .map(|s| s.head)
        else {
            return false;
        };
        let ed = &mut self.view.editor;
        self.tab.client.read(|d| ed.reveal(d, head));
        true
    }

    /// Time passes: notices expire, the reconnection countdown runs, the file on disk is
    /// checked (once a second), the first sync may time out.
    pub fn tick(&mut self, now: Instant) {
        self.view.now = now;
        self.view.expire_notices();
        if let (ConnView::Reconnecting { retry_in }, Some(at)) =
            (&mut self.view.status.conn, self.tab.retry_at)
        {
            *retry_in = at.saturating_duration_since(now).as_secs_f64().ceil() as u64;
        }
        if now.saturating_duration_since(self.last_disk_check) >= Duration::from_secs(1) {
            self.last_disk_check = now;
            if self.ws.is_some() {
                self.ws_tick(now);
            } else {
                self.check_disk();
            }
        }
        // In a workspace the sharer's editor waits for the room instead: seeding offline
        // would add the file's text a second time to a room that already holds it.
        if self.ws.is_none()
            && self.tab.seed.is_some()
            && self.view.prompt.is_none()
            && now.duration_since(self.started) > FIRST_SYNC_WAIT
            && self.tab.client.state() != ConnState::Live
        {
            // The server is unreachable: edit the file offline rather than wait. The
            // client merges these edits into the room when it reconnects.
            if let Some(seed) = self.tab.seed.take() {
                let r = self.tab.client.edit(|d| d.set_text(&seed));
                if r.is_ok() {
                    self.tab.client.edit(|d| {
                        d.set_selection(duet_client::Selection::cursor(duet_client::Utf16Offset(0)))
                    });
                }
                self.view.notice(
                    Level::Warn,
                    "server unreachable: editing offline, your edits merge when it is back",
                );
                self.tab.text_changed = true;
            }
        }
    }

    /// Brings derived state up to date before a frame: status, modified flag, highlights.
    pub fn prepare(&mut self) {
        self.view.status.waiting = self
            .tab
            .client
            .unacked()
            .max(self.tab.client.pending_offline() as u64);
        self.view.status.role = self.tab.client.role().or(self.view.status.role);
        if self.view.status.role == Some(Role::Viewer) && !self.view.status.read_only {
            // Nothing else to do: edits are refused by `act`.
        }
        if self.tab.text_changed {
            self.tab.text_changed = false;
            self.tab.recolour = true;
            let disk = self.tab.disk.as_ref();
            let file = self.tab.file.is_some() && !self.tab.joined_without_file;
            let disk_hash = self.tab.disk_hash;
            self.view.status.dirty = self.tab.client.read(|d| match (disk, disk_hash) {
                (Some(r), _) => r != d.rope(),
                // A workspace partner: the room against the sharer's disk.
                (None, Some(h)) => duet_workspace::file_room::text_hash(d.rope().chunks()) != h,
                (None, None) => file && d.len_chars() > 0,
            });
        }
        let lines = self.tab.client.read(|d| d.line_count());
        let a = render::areas(self.size, lines);
        self.view
            .editor
            .resize(a.text.width as usize, a.text.height as usize);
        if let Some(h) = &mut self.tab.highlighter {
            if let Some(hl) = h.poll() {
                self.view.highlights = hl;
            }
            let (top, height) = (self.view.editor.top, self.view.editor.height);
            let changed = std::mem::take(&mut self.tab.recolour);
            self.tab
                .client
                .read(|d| h.request(d.rope(), top, height, changed));
        }
        let ed = &self.view.editor;
        self.tab.cursor_row = self.tab.client.read(|d| {
            let line = d
                .rope()
                .char_to_line(char_selection(d).head.min(d.len_chars()));
            (line >= ed.top && line < ed.top + ed.height).then(|| line - ed.top)
        });
    }

    /// Draws the screen.
    pub fn draw(&self, frame: &mut Frame<'_>) {
        self.tab
            .client
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
