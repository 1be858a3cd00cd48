//! Everything the screen shows besides the text: status, peers, prompts, panels and
//! notices. Plain data, filled by the app and read by [`crate::render`]; time is passed
//! in (`now`), never read here, so the render tests are deterministic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use duet_protocol::Role;
use ratatui::style::Color;

use crate::buffer::CharSel;
use crate::color::Depth;
use crate::editor::Editor;
use crate::highlight::Highlights;

/// A peer as drawn: colour already parsed, selection already in chars.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub peer_id: u64,
    /// The peer's yrs client id: in a workspace, the same in every room (one per person).
    pub client_id: u64,
    pub name: String,
    pub color: Color,
    pub role: Role,
    /// `None` while the peer has not placed a cursor.
    pub sel: Option<CharSel>,
    /// 0-based line of the peer's cursor.
    pub line: usize,
    /// Time since the peer last changed something.
    pub idle: Duration,
}

/// A person in the people panel: a peer of the room, or in a workspace, anyone in it and
/// the file they are in.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Whom to follow (stable while they stay connected, the same in every room).
    pub client_id: u64,
    pub name: String,
    pub color: Color,
    pub role: Role,
    /// The file they are in (workspaces; `None`: none open, or not a workspace).
    pub file: Option<String>,
    /// 0-based line of their cursor, if known.
    pub line: Option<usize>,
    pub idle: Duration,
}

/// One row of the file list.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    pub path: String,
    /// Char positions of `path` the query matched (drawn highlighted).
    pub matched: Vec<usize>,
    /// Why it cannot be opened (`binary`, `too big`), if so.
    pub note: Option<&'static str>,
    /// We have it open.
    pub open: bool,
    /// Not on the sharer's disk yet (created in the workspace, never saved).
    pub new: bool,
    /// Others who are in this file: (name, colour).
    pub here: Vec<(String, Color)>,
}

/// The file list and finder (Ctrl-O in a workspace): type to filter, Enter opens.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilesView {
    pub query: String,
    /// Index into `rows`.
    pub selected: usize,
    /// The best matches (all files, by path, without a query), at most a screenful or so.
    pub rows: Vec<FileRow>,
    /// How many files matched in all.
    pub matched: usize,
    /// Files in the workspace.
    pub total: usize,
}

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnView {
    Connecting,
    Live,
    /// Waiting to reconnect; `retry_in` whole seconds.
    Reconnecting {
        retry_in: u64,
    },
    /// Not connected and not trying (stopped, or refused).
    Offline,
}

/// The status bar's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Our role as the server granted it (`None` before the first join).
    pub role: Option<Role>,
    /// Started with `--read-only`.
    pub read_only: bool,
    /// The file being edited, as given on the command line.
    pub file: Option<String>,
    /// The text differs from the file on disk.
    pub dirty: bool,
    /// The file on disk changed since it was read or written (by git, another editor).
    pub changed_on_disk: bool,
    pub room: String,
    pub conn: ConnView,
    /// Local edits the server has not acknowledged yet.
    pub waiting: u64,
    /// This editor runs the server in-process.
    pub hosting: bool,
    /// The local user's name.
    pub name: String,
    /// The server's address.
    pub server: String,
    /// The room was reached at least once.
    pub ever_live: bool,
    /// Why the last connection attempt failed, while not live.
    pub problem: Option<String>,
    /// The workspace, in `duet share` and `duet join` (shown instead of the room).
    pub workspace: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            role: None,
            read_only: false,
            file: None,
            dirty: false,
            changed_on_disk: false,
            room: String::new(),
            conn: ConnView::Connecting,
            waiting: 0,
            hosting: false,
            name: String::new(),
            server: String::new(),
            ever_live: false,
            problem: None,
            workspace: None,
        }
    }
}

impl Status {
    /// True when text changes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only || self.role == Some(Role::Viewer)
    }
}

/// What a yes/no question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// Quit although the text differs from the file.
    QuitUnsaved,
    /// Quit although edits have not reached the server and cannot now.
    QuitUnsent,
    /// Quit although others are connected to our in-process server.
    QuitHosting,
    /// The room holds other text than the file: take the room's version?
    TakeRoom,
    /// Saving would overwrite a file that changed on disk since it was read.
    Overwrite,
    /// Delete this workspace file for everyone?
    Delete(duet_workspace::FileId),
    /// Quit although this many open workspace files differ from the sharer's disk.
    QuitUnsavedFiles(usize),
}

/// What a path typed at the prompt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPurpose {
    /// A new file of the workspace.
    NewFile,
    /// A new path for this file.
    Rename(duet_workspace::FileId),
}

/// The one-line prompt at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Find as you type; `origin` is where the search started (restored on Esc).
    Find {
        input: String,
        origin: CharSel,
        found: bool,
    },
    Goto {
        input: String,
    },
    SaveAs {
        input: String,
    },
    /// A workspace path (a new file, a rename).
    Path {
        purpose: PathPurpose,
        input: String,
    },
    Ask {
        question: Question,
        text: String,
    },
}

/// A panel over the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Help,
    People {
        selected: usize,
    },
    /// The workspace's file list and finder ([`View::files`]).
    Files,
}

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A short message that goes away by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub level: Level,
    pub until: Instant,
}

/// The screen's state.
#[derive(Debug, Clone)]
pub struct View {
    pub editor: Editor,
    pub status: Status,
    pub peers: Vec<PeerView>,
    /// The people panel's list.
    pub people: Vec<Person>,
    /// The file list (workspaces).
    pub files: FilesView,
    pub prompt: Option<Prompt>,
    pub panel: Option<Panel>,
    pub notices: VecDeque<Notice>,
    /// The person (client id) whose cursor we keep in view, across files in a workspace,
    /// until our next own key.
    pub follow: Option<u64>,
    /// The command a partner runs to join.
    pub join_command: String,
    pub depth: Depth,
    pub highlights: Highlights,
    /// The clock reading this frame is drawn for.
    pub now: Instant,
}

impl View {
    /// A view at time `now`.
    pub fn new(editor: Editor, now: Instant) -> Self {
        Self {
            editor,
            status: Status::default(),
            peers: Vec::new(),
            people: Vec::new(),
            files: FilesView::default(),
            prompt: None,
            panel: None,
            notices: VecDeque::new(),
            follow: None,
            join_command: String::new(),
            depth: Depth::TrueColor,
            highlights: Highlights::default(),
            now,
        }
    }

    /// Shows `text` for a few seconds.
    pub fn notice(&mut self, level: Level, text: impl Into<String>) {
        let secs = if level == Level::Info { 4 } else { 8 };
        self.notice_for(level, text, Duration::from_secs(secs));
    }

    /// Shows `text` for `how_long` (the newest notice is the one shown).
    pub fn notice_for(&mut self, level: Level, text: impl Into<String>, how_long: Duration) {
        self.notices.push_back(Notice {
            text: text.into(),
            level,
            until: self.now + how_long,
        });
        while self.notices.len() > 3 {
            self.notices.pop_front();
        }
    }

    /// Like [`View::notice_for`], but behind the notices already showing: it is seen once
    /// they expire.
    pub fn notice_behind(&mut self, level: Level, text: impl Into<String>, how_long: Duration) {
        self.notices.push_front(Notice {
            text: text.into(),
            level,
            until: self.now + how_long,
        });
        while self.notices.len() > 3 {
            self.notices.remove(1);
        }
    }

    /// Drops expired notices; true if any went.
    pub fn expire_notices(&mut self) -> bool {
        let before = self.notices.len();
        let now = self.now;
        self.notices.retain(|n| n.until > now);
        before != self.notices.len()
    }
}
