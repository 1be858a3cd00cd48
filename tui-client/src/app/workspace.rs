//! Workspace mode (`duet share`, `duet join`, ADR 007 and 010): one client per opened file
//! plus the index room's, the file list and finder, who is where, and follow across files.
//!
//! ```text
//!   W/index ─── index tab (in front until a file is opened; its awareness carries
//!      │        everyone's location: file room + line)
//!   W/files/<id> ─ one tab per opened file (a Client each, joined once, kept open)
//! ```
//!
//! Every document of this editor uses one yrs client id, so a person is the same client id
//! in the index (where their location is) and in a file (where their cursor is): follow
//! reads the one to open the file, then the other to keep their cursor in view.
//!
//! Events of every client arrive tagged with their tab ([`AppEvent::Client`]); a tab not in
//! front handles its own by being swapped in front for the time of the event
//! ([`App::in_tab`]), so each file keeps the whole single-file behaviour.
//!
//! The sharer's side (disk, scans, saving for partners) is in `sharer.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use duet_client::{Client, ClientConfig, Document, Event as ClientEvent, Location, Role};
use duet_workspace::{FileEntry, FileId, FileKind, Workspace, file_room, index};
use tokio::sync::mpsc;

use super::sharer::SharerDisk;
use super::{App, AppEvent, Tab, TabKey, forward};
use crate::color::{Depth, parse_hex};
use crate::finder;
use crate::highlight::{Background, Highlighter};
use crate::state::{
    FileRow, FilesView, Level, Panel, PathPurpose, Person, Prompt, Question, Status,
};

/// How many rows the file list keeps (the best matches); a screen shows fewer.
const MAX_ROWS: usize = 200;

/// How `duet share` or `duet join` was started.
#[derive(Debug, Clone)]
pub struct WsOptions {
    pub workspace: Workspace,
    pub server: String,
    pub name: String,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
    pub read_only: bool,
    /// This process runs the server in-process.
    pub hosting: bool,
    pub join_command: String,
    pub depth: Depth,
    pub notes: Vec<String>,
    /// `duet share DIR`: the directory shared; `None` for `duet join`.
    pub share_dir: Option<PathBuf>,
}

/// The workspace side of the app.
pub(crate) struct Ws {
    pub(crate) workspace: Workspace,
    pub(crate) index: Client,
    /// The yrs client id of every document of this editor.
    pub(crate) client_id: u64,
    /// Server, name, token and CA for the clients of file rooms.
    config: ClientConfig,
    events: mpsc::Sender<AppEvent>,
    /// Tabs not in front.
    pub(crate) tabs: HashMap<TabKey, Tab>,
    /// Open files, most recently in front first (the front tab included).
    mru: Vec<TabKey>,
    /// The live files of the index, by shown path.
    pub(crate) files: Vec<FileEntry>,
    /// The file list's rows, as ids (parallel to `View::files.rows`).
    row_ids: Vec<FileId>,
    pub(crate) index_synced: bool,
    /// The status every new tab starts from (name, server, workspace).
    status: Status,
    /// `duet share`: the sharer's directory and what keeps it in step.
    pub(crate) sharer: Option<SharerDisk>,
}

impl Ws {
    /// Where scans and clients send their events.
    pub(crate) fn events_sender(&self) -> mpsc::Sender<AppEvent> {
        self.events.clone()
    }

    /// The live file `id`.
    pub(crate) fn entry(&self, id: FileId) -> Option<FileEntry> {
        self.files.iter().find(|f| f.id == id).cloned()
    }

    /// Spawns the client of file `id`'s room (our client id, the workspace's server and
    /// token); its events arrive as the tab's.
    fn spawn_file_client(&self, id: FileId) -> Client {
        let mut config = self.config.clone();
        config.room = self.workspace.file_room(id);
        // Shown once the file comes to the front (`App::switch_to`).
        config.publish_cursor = false;
        let (client, events) = Client::spawn(config, Document::with_client_id(self.client_id));
        forward(TabKey::File(id), events, self.events.clone());
        client
    }
}

impl App {
    /// The app of `duet share` or `duet join`: joins the workspace's index and shows the
    /// file list; files are joined as they are opened. Client events go to `events`.
    pub fn workspace(opts: WsOptions, events: mpsc::Sender<AppEvent>, now: Instant) -> Self {
        // One 53-bit client id for every document of this editor (see the module doc).
        let client_id: u64 = rand::random::<u64>() & ((1 << 53) - 1);
        let mut config = ClientConfig::new(
            opts.server.clone(),
            opts.workspace.index_room().clone(),
            opts.name.clone(),
        );
        config.token = opts.token.clone();
        config.ca_file = opts.ca.clone();
        config.publish_cursor = false;
        let (index, index_events) =
            Client::spawn(config.clone(), Document::with_client_id(client_id));
        forward(TabKey::Index, index_events, events.clone());
        let status = Status {
            room: opts.workspace.index_room().to_string(),
            name: opts.name.clone(),
            read_only: opts.read_only,
            hosting: opts.hosting,
            server: opts.server.clone(),
            workspace: Some(opts.workspace.name().to_owned()),
            ..Status::default()
        };
        let tab = Tab::new(TabKey::Index, index.clone(), None, None, status.clone());
        let sharer = opts.share_dir.clone().map(SharerDisk::new);
        let ws = Ws {
            workspace: opts.workspace,
            index,
            client_id,
            config,
            events,
            tabs: HashMap::new(),
            mru: vec![TabKey::Index],
            files: Vec::new(),
            row_ids: Vec::new(),
            index_synced: false,
            status,
            sharer,
        };
        let mut app = Self::around(
            tab,
            std::sync::Arc::new(tokio::sync::Notify::new()),
            (opts.depth, &opts.notes),
            opts.join_command,
            opts.token.is_some(),
            now,
        );
        app.view.panel = Some(Panel::Files);
        app.ws = Some(Box::new(ws));
        app
    }

    /// Every client of the app (the front tab's, the others', the index's), to close them.
    pub fn clients(&self) -> Vec<Client> {
        let mut all = vec![self.tab.client.clone()];
        if let Some(ws) = &self.ws {
            all.extend(ws.tabs.values().map(|t| t.client.clone()));
        }
        all
    }

    /// The index room's client, in workspace mode (tests and benchmarks fill the index
    /// through it).
    pub fn index_client(&self) -> Option<&Client> {
        self.ws.as_ref().map(|ws| &ws.index)
    }

    /// The workspace's name, in workspace mode.
    pub fn workspace_name(&self) -> Option<&str> {
        self.ws.as_ref().map(|ws| ws.workspace.name())
    }

    // --- tabs -------------------------------------------------------------------

    /// Exchanges the front tab with `other` (which must be parked): the view's per-file
    /// parts go back to the tab that owned them and come from the new front tab.
    pub(crate) fn swap_front(&mut self, other: &mut Tab) {
        let v = &mut self.view;
        std::mem::swap(&mut v.editor, &mut self.tab.editor);
        std::mem::swap(&mut v.status, &mut self.tab.status);
        std::mem::swap(&mut v.highlights, &mut self.tab.highlights);
        std::mem::swap(&mut v.peers, &mut self.tab.peers);
        std::mem::swap(&mut self.tab, other);
        std::mem::swap(&mut v.editor, &mut self.tab.editor);
        std::mem::swap(&mut v.status, &mut self.tab.status);
        std::mem::swap(&mut v.highlights, &mut self.tab.highlights);
        std::mem::swap(&mut v.peers, &mut self.tab.peers);
    }

    /// Runs `f` with tab `key` in front, then puts the front tab back; `None` if there is
    /// no such tab.
    pub(crate) fn in_tab<R>(&mut self, key: TabKey, f: impl FnOnce(&mut Self) -> R) -> Option<R> {
        if key == self.tab.key {
            return Some(f(self));
        }
        let mut tab = self.ws.as_mut()?.tabs.remove(&key)?;
        let panel = self.view.panel;
        let outer = self.backstage;
        self.swap_front(&mut tab);
        self.backstage = Some(tab.key);
        let r = f(self);
        self.backstage = outer;
        self.swap_front(&mut tab);
        // A background tab's handler must not leave a panel or prompt of its own.
        self.view.panel = panel;
        if let Some(ws) = self.ws.as_mut() {
            ws.tabs.insert(key, tab);
        }
        Some(r)
    }

    /// True when tab `key` exists (in front or parked).
    pub(crate) fn has_tab(&self, key: TabKey) -> bool {
        self.tab.key == key
            || self
                .ws
                .as_ref()
                .is_some_and(|ws| ws.tabs.contains_key(&key))
    }

    /// Brings tab `key` to the front.
    pub(crate) fn switch_to(&mut self, key: TabKey) {
        if self.backstage.is_some() {
            return; // a background tab's event never changes what the person sees
        }
        if self.tab.key != key {
            let Some(mut tab) = self.ws.as_mut().and_then(|ws| ws.tabs.remove(&key)) else {
                return;
            };
            self.swap_front(&mut tab);
            // Our cursor shows in the file we have in front only.
            if matches!(tab.key, TabKey::File(_)) {
                tab.client.show_cursor(false);
            }
            if let Some(ws) = self.ws.as_mut() {
                ws.tabs.insert(tab.key, tab);
            }
        }
        if matches!(key, TabKey::File(_)) {
            self.tab.client.show_cursor(true);
        }
        if let Some(ws) = self.ws.as_mut() {
            ws.mru.retain(|k| *k != key);
            ws.mru.insert(0, key);
        }
        // Colours start when a file first comes to the front (not for files loaded only to
        // serve a partner).
        if self.tab.highlighter.is_none()
            && let Some(name) = self.view.status.file.clone()
        {
            self.tab.highlighter = Highlighter::for_path(Path::new(&name))
                .and_then(|h| Background::start(h, self.wake.clone()));
        }
        self.tab.text_changed = true;
        self.tab.recolour = true;
        self.refresh_peers();
        self.publish_location();
    }

    /// F2: the file in front before this one.
    pub(crate) fn switch_to_previous(&mut self) {
        let Some(ws) = &self.ws else {
            return;
        };
        let front = self.tab.key;
        match ws.mru.iter().find(|k| **k != front && **k != TabKey::Index) {
            Some(&key) => self.switch_to(key),
            None => self
                .view
                .notice(Level::Info, "no other file open: Ctrl-O lists the files"),
        }
    }

    /// Opens file `id` (joining its room the first time) and brings it to the front.
    pub(crate) fn open_file(&mut self, id: FileId) {
        let key = TabKey::File(id);
        if !self.has_tab(key) && !self.load_tab(id, None) {
            return;
        }
        self.switch_to(key);
    }

    /// Joins file `id`'s room in a tab that stays parked (the sharer's editor serving a
    /// partner); `path`: where the file is on the sharer's disk when the index no longer
    /// says (a deleted file). False if the file cannot be opened (said why).
    pub(crate) fn load_tab(&mut self, id: FileId, path: Option<&str>) -> bool {
        let Some(ws) = self.ws.as_ref() else {
            return false;
        };
        let key = TabKey::File(id);
        if self.has_tab(key) {
            return true;
        }
        let entry = ws.entry(id);
        let shown = match (&entry, path) {
            (Some(e), _) => e.shown.clone(),
            (None, Some(p)) => p.to_owned(),
            (None, None) => return false,
        };
        if let Some(e) = &entry
            && e.kind != FileKind::Text
        {
            let why = if e.kind == FileKind::Binary {
                "it is not text"
            } else {
                "it is over the size limit"
            };
            self.view
                .notice(Level::Warn, format!("{shown} cannot be opened: {why}"));
            return false;
        }
        // The sharer reads the file from its disk; a partner has none.
        let (file, file_text) = match &ws.sharer {
            Some(sharer) => match sharer.read(&shown) {
                Ok(found) => found,
                Err(e) => {
                    self.view
                        .notice(Level::Error, format!("cannot open {shown}: {e}"));
                    return false;
                }
            },
            None => (None, None),
        };
        let mut status = ws.status.clone();
        status.file = Some(shown);
        status.room = ws.workspace.file_room(id).to_string();
        let client = ws.spawn_file_client(id);
        let mut tab = Tab::new(key, client, file, file_text, status);
        // A partner waits for the sharer's editor to load the text from disk.
        tab.loading = ws.sharer.is_none();
        if let Some(ws) = self.ws.as_mut() {
            ws.tabs.insert(key, tab);
        }
        true
    }

    /// Where we are, for everyone in the index: the front file's room and our line.
    pub(crate) fn publish_location(&self) {
        let Some(ws) = &self.ws else {
            return;
        };
        if self.backstage.is_some() {
            return;
        }
        let location = match self.tab.key {
            TabKey::File(id) => {
                let line = self
                    .tab
                    .client
                    .read(|d| d.char_to_line_col(d.utf16_to_char(d.selection().head)).line);
                Some(Location {
                    room: ws.workspace.file_room(id).to_string(),
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                })
            }
            _ => None,
        };
        ws.index.set_location(location);
    }

    // --- the index --------------------------------------------------------------

    /// An event of the index's client (after the index tab handled it as a tab).
    pub(crate) fn index_event(&mut self, ev: &ClientEvent) {
        match ev {
            ClientEvent::Synced { .. } => {
                let first = self.ws.as_ref().is_some_and(|ws| !ws.index_synced);
                if let Some(ws) = self.ws.as_mut() {
                    ws.index_synced = true;
                }
                self.refresh_files();
                if first {
                    self.sharer_start();
                }
                self.sharer_index_changed();
            }
            ClientEvent::RemoteChange => {
                self.refresh_files();
                self.sharer_index_changed();
            }
            ClientEvent::PeersChanged
            | ClientEvent::PeerJoined { .. }
            | ClientEvent::PeerLeft { .. } => {
                self.refresh_people();
                self.refilter();
                self.follow_peer();
                self.sharer_load_where_people_are();
            }
            _ => {}
        }
    }

    /// After an event of file tab `key`: the sharer may have work that waited for it.
    pub(crate) fn file_event(&mut self, _key: TabKey) {
        self.sharer_service();
    }

    /// Reads the index again: the file list, and the names tabs show (after a rename).
    pub(crate) fn refresh_files(&mut self) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        ws.files = ws.index.read(|d| index::files(d.ydoc()));
        let shown: HashMap<FileId, String> =
            ws.files.iter().map(|f| (f.id, f.shown.clone())).collect();
        for tab in ws.tabs.values_mut() {
            if let TabKey::File(id) = tab.key
                && let Some(s) = shown.get(&id)
            {
                tab.status.file = Some(s.clone());
            }
        }
        if let TabKey::File(id) = self.tab.key
            && let Some(s) = shown.get(&id)
        {
            self.view.status.file = Some(s.clone());
        }
        self.refilter();
    }

    /// After a change of a file tab's room (the front tab): a partner learns that the text
    /// arrived from the sharer's disk, and what the disk holds now.
    pub(crate) fn ws_remote_change(&mut self) {
        if let TabKey::File(_) = self.tab.key
            && self.tab.file.is_none()
        {
            self.partner_file_state();
        }
    }

    /// A partner's view of the front file's room: loaded yet, and the disk's version.
    fn partner_file_state(&mut self) {
        let TabKey::File(id) = self.tab.key else {
            return;
        };
        let state = self.tab.client.read(|d| file_room::state(d.ydoc()));
        let on_disk = self
            .ws
            .as_ref()
            .and_then(|ws| ws.entry(id))
            .is_none_or(|e| e.on_disk);
        let was_loading = self.tab.loading;
        self.tab.loading = !state.seeded;
        self.tab.disk_hash = match state.disk {
            Some(h) => Some(h),
            None if !on_disk => Some(file_room::text_hash([""])),
            None => None,
        };
        self.tab.text_changed = true;
        if was_loading && !self.tab.loading {
            // The text arrived: start at the top, as when a file is opened.
            self.tab
                .client
                .edit(|d| d.set_selection(duet_client::Selection::default()));
            self.view.editor.top = 0;
            self.publish_selection();
        }
    }

    /// The first sync of the front tab's room.
    pub(crate) fn ws_first_sync(&mut self) {
        match self.tab.key {
            TabKey::File(_) if self.tab.file.is_some() => self.sharer_first_sync(),
            TabKey::File(_) => self.partner_file_state(),
            _ => {}
        }
    }

    // --- people and follow ------------------------------------------------------

    /// Everyone in the workspace (the index's peers) with the file and line they are at.
    pub(crate) fn ws_people(&mut self) {
        let Some(ws) = &self.ws else {
            return;
        };
        let now = self.view.now;
        self.view.people = ws
            .index
            .peers()
            .into_iter()
            .map(|p| {
                let at = p.location.as_ref().and_then(|l| {
                    let id = ws.workspace.file_of_room(&l.room)?;
                    Some((ws.entry(id)?.shown, l.line as usize))
                });
                Person {
                    client_id: p.client_id,
                    name: p.name,
                    color: parse_hex(&p.color),
                    role: p.role,
                    file: at.as_ref().map(|(f, _)| f.clone()),
                    line: at.map(|(_, l)| l),
                    idle: now.saturating_duration_since(p.last_change),
                }
            })
            .collect();
    }

    /// Follows person `client_id`: into the file they are in, then to their cursor.
    pub(crate) fn ws_follow(&mut self, client_id: u64) {
        let Some(ws) = &self.ws else {
            return;
        };
        let Some(location) = ws
            .index
            .peers()
            .into_iter()
            .find(|p| p.client_id == client_id)
            .and_then(|p| p.location)
        else {
            return;
        };
        let Some(id) = ws.workspace.file_of_room(&location.room) else {
            return;
        };
        if self.tab.key != TabKey::File(id) {
            if ws.entry(id).is_none() {
                return;
            }
            self.open_file(id);
            if self.tab.key != TabKey::File(id) {
                return;
            }
        }
        // Their cursor in the file's room; until it arrives, the line they announced.
        if !self.reveal_peer(client_id) {
            let ed = &mut self.view.editor;
            self.tab.client.read(|d| {
                let line = (location.line as usize).min(d.line_count().saturating_sub(1));
                ed.reveal(d, d.line_start(line).0);
            });
        }
    }

    // --- the file list ----------------------------------------------------------

    /// Ctrl-O: the file list, filtered as one types.
    pub(crate) fn open_files_panel(&mut self) {
        if self.ws.is_none() {
            self.view.notice(
                Level::Info,
                "Ctrl-O lists a workspace's files: share a directory with `duet share`",
            );
            return;
        }
        self.view.files.query.clear();
        self.view.files.selected = 0;
        self.view.panel = Some(Panel::Files);
        self.refilter();
    }

    /// Recomputes the file list's rows for the query.
    pub(crate) fn refilter(&mut self) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        let query = self.view.files.query.clone();
        // Who is where, for the marks.
        let mut here: HashMap<FileId, Vec<(String, ratatui::style::Color)>> = HashMap::new();
        for p in ws.index.peers() {
            if let Some(id) = p
                .location
                .as_ref()
                .and_then(|l| ws.workspace.file_of_room(&l.room))
            {
                here.entry(id)
                    .or_default()
                    .push((p.name.clone(), parse_hex(&p.color)));
            }
        }
        let open = |id: FileId| ws.mru.contains(&TabKey::File(id));
        let (order, matched): (Vec<(usize, Vec<usize>)>, usize) = if query.trim().is_empty() {
            // Open files first, the one before this first (Ctrl-O Enter goes back), then
            // everything by path.
            let mut order: Vec<(usize, Vec<usize>)> = Vec::new();
            for key in ws.mru.iter().skip(1).chain(ws.mru.first()) {
                if let TabKey::File(id) = key
                    && let Some(i) = ws.files.iter().position(|f| f.id == *id)
                {
                    order.push((i, Vec::new()));
                }
            }
            for (i, f) in ws.files.iter().enumerate() {
                if !open(f.id) {
                    order.push((i, Vec::new()));
                }
            }
            let n = order.len();
            order.truncate(MAX_ROWS);
            (order, n)
        } else {
            let (hits, n) =
                finder::rank(&query, ws.files.iter().map(|f| f.shown.as_str()), MAX_ROWS);
            (hits.into_iter().map(|(i, m)| (i, m.positions)).collect(), n)
        };
        ws.row_ids = order.iter().map(|(i, _)| ws.files[*i].id).collect();
        let rows = order
            .into_iter()
            .map(|(i, matched)| {
                let f = &ws.files[i];
                FileRow {
                    path: f.shown.clone(),
                    matched,
                    note: match f.kind {
                        FileKind::Text => None,
                        FileKind::Binary => Some("binary"),
                        FileKind::TooBig => Some("too big"),
                    },
                    open: open(f.id),
                    new: !f.on_disk,
                    here: here.remove(&f.id).unwrap_or_default(),
                }
            })
            .collect::<Vec<_>>();
        let selected = self.view.files.selected.min(rows.len().saturating_sub(1));
        self.view.files = FilesView {
            query,
            selected,
            rows,
            matched,
            total: ws.files.len(),
        };
    }

    /// A key while the file list is open.
    pub(crate) fn files_key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let selected_id = self
            .ws
            .as_ref()
            .and_then(|ws| ws.row_ids.get(self.view.files.selected).copied());
        let n = self.view.files.rows.len();
        match k.code {
            KeyCode::Esc => self.view.panel = None,
            // The list opens by itself when a workspace is joined: Ctrl-O there (what one
            // presses to find a file) starts the filter afresh rather than closing it.
            KeyCode::Char('o') if ctrl => self.open_files_panel(),
            KeyCode::Char('q') if ctrl => self.view.panel = None,
            KeyCode::Enter => match selected_id {
                Some(id) => {
                    self.view.panel = None;
                    self.open_file(id);
                }
                None if !self.view.files.query.trim().is_empty() => {
                    let path = self.view.files.query.trim().to_owned();
                    self.view.panel = None;
                    self.path_entered(PathPurpose::NewFile, &path);
                }
                None => {}
            },
            KeyCode::Up => self.view.files.selected = self.view.files.selected.saturating_sub(1),
            KeyCode::Down => {
                self.view.files.selected = (self.view.files.selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::PageUp => {
                self.view.files.selected = self.view.files.selected.saturating_sub(10)
            }
            KeyCode::PageDown => {
                self.view.files.selected = (self.view.files.selected + 10).min(n.saturating_sub(1))
            }
            KeyCode::Char('n') if ctrl => {
                let input = self.view.files.query.trim().to_owned();
                self.view.panel = None;
                self.view.prompt = Some(Prompt::Path {
                    purpose: PathPurpose::NewFile,
                    input,
                });
            }
            KeyCode::Char('r') if ctrl => {
                if let Some(id) = selected_id {
                    let input = self.view.files.rows[self.view.files.selected].path.clone();
                    self.view.panel = None;
                    self.view.prompt = Some(Prompt::Path {
                        purpose: PathPurpose::Rename(id),
                        input,
                    });
                }
            }
            KeyCode::Char('d') if ctrl => {
                if let Some(id) = selected_id {
                    self.view.panel = None;
                    self.ask(Question::Delete(id));
                }
            }
            KeyCode::Backspace => {
                self.view.files.query.pop();
                self.view.files.selected = 0;
                self.refilter();
            }
            KeyCode::Char(c) if !ctrl => {
                self.view.files.query.push(c);
                self.view.files.selected = 0;
                self.refilter();
            }
            // Another command key (Ctrl-P, Ctrl-S, F2...): close the list and do it.
            _ => {
                if let Some(a) = crate::keymap::action_for(k) {
                    self.view.panel = None;
                    self.act(a);
                }
            }
        }
    }

    /// True (after saying why) when this editor may not change the workspace.
    fn workspace_read_only(&mut self) -> bool {
        let viewer = self.view.status.read_only
            || self
                .ws
                .as_ref()
                .is_some_and(|ws| ws.index.role() == Some(Role::Viewer));
        if viewer {
            self.view.notice(
                Level::Warn,
                "read-only: you joined as a viewer, files cannot be created, renamed or deleted",
            );
        }
        viewer
    }

    /// A path typed at the prompt: a new file, or a file's new name.
    pub(crate) fn path_entered(&mut self, purpose: PathPurpose, path: &str) {
        if self.workspace_read_only() {
            return;
        }
        if let Err(e) = index::check_path(path) {
            self.view.notice(Level::Error, e.to_string());
            return;
        }
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        if let Some(other) = ws.files.iter().find(|f| f.shown == path) {
            if purpose == PathPurpose::NewFile {
                let id = other.id;
                self.view
                    .notice(Level::Info, format!("{path} exists: opened it"));
                self.open_file(id);
            } else {
                self.view
                    .notice(Level::Error, format!("{path} exists already"));
            }
            return;
        }
        match purpose {
            PathPurpose::NewFile => {
                let created = ws
                    .index
                    .edit(|d| index::create(d.ydoc(), path, FileKind::Text, 0, false));
                match created {
                    Ok(id) => {
                        self.refresh_files();
                        if self.load_tab(id, None) {
                            // A new id: no room can hold text for it yet, so the creator
                            // marks it loaded (empty) at once and types without waiting,
                            // even offline.
                            if let Some(tab) = self
                                .ws
                                .as_mut()
                                .and_then(|ws| ws.tabs.get_mut(&TabKey::File(id)))
                            {
                                tab.seed = None;
                                tab.loading = false;
                                tab.client.edit(|d| file_room::mark_seeded(d.ydoc(), None));
                            }
                            self.switch_to(TabKey::File(id));
                            self.view.notice(
                                Level::Info,
                                format!("new file {path}: Ctrl-S saves it to the sharer's disk"),
                            );
                        }
                    }
                    Err(e) => self.view.notice(Level::Error, e.to_string()),
                }
            }
            PathPurpose::Rename(id) => {
                let renamed = ws.index.edit(|d| index::rename(d.ydoc(), id, path));
                match renamed {
                    Ok(()) => {
                        self.refresh_files();
                        self.sharer_index_changed();
                        self.view.notice(Level::Info, format!("renamed to {path}"));
                    }
                    Err(e) => self.view.notice(Level::Error, e.to_string()),
                }
            }
        }
    }

    /// Deletes file `id` for everyone (after the question); its room keeps the text.
    pub(crate) fn ws_delete(&mut self, id: FileId) {
        if self.workspace_read_only() {
            return;
        }
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let name = ws.entry(id).map(|e| e.shown).unwrap_or_default();
        if let Err(e) = ws.index.edit(|d| index::delete(d.ydoc(), id)) {
            self.view.notice(Level::Error, e.to_string());
            return;
        }
        self.refresh_files();
        self.sharer_index_changed();
        if let Some(ws) = self.ws.as_mut() {
            ws.mru.retain(|k| *k != TabKey::File(id));
        }
        if self.tab.key == TabKey::File(id) {
            let next = self
                .ws
                .as_ref()
                .and_then(|ws| ws.mru.first().copied())
                .unwrap_or(TabKey::Index);
            self.switch_to(next);
        }
        self.view.notice(Level::Info, format!("deleted {name}"));
    }

    // --- saving and quitting ----------------------------------------------------

    /// Ctrl-S in a workspace: the sharer writes its file; a partner asks the sharer's
    /// editor to (ADR 010).
    pub(crate) fn ws_save(&mut self) {
        let TabKey::File(id) = self.tab.key else {
            self.view
                .notice(Level::Info, "no file is open: Ctrl-O lists the files");
            return;
        };
        if self.ws.as_ref().is_some_and(|ws| ws.sharer.is_some()) {
            self.sharer_save_front(false);
            return;
        }
        if self.view.status.is_read_only() || self.workspace_read_only() {
            return;
        }
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let name = self.view.status.file.clone().unwrap_or_default();
        match ws.index.edit(|d| index::ask_save(d.ydoc(), id)) {
            Ok(n) => {
                // Also in the file's room, after our edits: the sharer's editor writes
                // once that room has caught up with the request (ADR 010).
                self.tab.client.edit(|d| file_room::ask_save(d.ydoc(), n));
                let sharer = ws.index.read(|d| index::sharer(d.ydoc()));
                let online = sharer
                    .as_ref()
                    .is_some_and(|s| ws.index.peers().iter().any(|p| p.client_id == s.client_id));
                let who = sharer.map_or_else(|| "the sharer".to_owned(), |s| s.name);
                let text = if online {
                    format!("asked {who} to save {name}")
                } else {
                    format!(
                        "asked {who} to save {name}; {who} is not connected: it is saved when they are back"
                    )
                };
                self.view.notice(Level::Info, text);
            }
            Err(e) => self.view.notice(Level::Error, e.to_string()),
        }
    }

    /// Ctrl-Q in a workspace: asks when open files differ from the disk (sharer), when
    /// edits cannot reach the server, or when others use our hosted server.
    pub(crate) fn ws_ask_quit(&mut self) {
        let sharer = self.ws.as_ref().is_some_and(|ws| ws.sharer.is_some());
        let mut unsaved = 0;
        let mut count = |t: &Tab| {
            if sharer && t.seed.is_none() && matches!(t.key, TabKey::File(_)) {
                let differs = t.client.read(|d| match &t.disk {
                    Some(r) => r != d.rope(),
                    None => d.len_chars() > 0,
                });
                unsaved += usize::from(differs);
            }
        };
        count(&self.tab);
        if let Some(ws) = &self.ws {
            ws.tabs.values().for_each(&mut count);
        }
        let unsent = self.unsent();
        if unsaved > 0 {
            self.ask(Question::QuitUnsavedFiles(unsaved));
        } else if unsent > 0 && !self.view.status.is_read_only() {
            self.ask(Question::QuitUnsent);
        } else if self.hosting_with_others() {
            self.ask(Question::QuitHosting);
        } else {
            self.quit(0, None);
        }
    }
}

#[cfg(test)]
mod tests;
