//! The sharer's side of a workspace (ADR 010): the shared directory stays the truth for
//! git, builds and tests, and the sharer's editor is the one bridge between it and the
//! rooms.
//!
//! - **Loading.** A file's room gets its text from disk the first time anyone opens the
//!   file: the sharer's editor joins the room when it opens the file itself, or when a
//!   partner's location names it, and seeds it ([`App::sharer_first_sync`]). A room kept
//!   from an earlier session is compared with the disk through the disk hash it recorded:
//!   the side that changed since wins; both changed, both are kept.
//! - **Saving.** Ctrl-S writes the room's text; a partner's Ctrl-S is a request in the index
//!   that the sharer's editor serves the same way, loading the file's room if needed.
//! - **Changes on disk** (git checkout, a formatter) to a loaded file are noticed by its
//!   stamp (checked every second) and offered to the room as an edit, merged with the
//!   room's unsaved edits ([`duet_workspace::merge`]): never written over, never dropped.
//!   A save merges such a change first.
//! - **The tree.** A rescan (in the background, every few seconds, more rarely for large
//!   trees) adds new files to the index and deletes those gone from disk; a partner's
//!   rename or delete in the index is carried out on disk (a deleted file's text is first
//!   loaded into its room, where it stays).
//!
//! Polling, not file-system events: one stat per loaded file per second, and a rescan
//! costing ~10-20 ms per 1,000 files (docs/BENCHMARKS.md, "Workspaces"), spaced to at most
//! about 5 % of a core. Events would need a watcher crate and its platform backends, a
//! watch per directory, and debouncing of a checkout's storms anyway.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use duet_client::{Client, Selection};
use duet_workspace::merge::{self, Merged};
use duet_workspace::scan::Scan;
use duet_workspace::{FileId, FileKind, ScanOptions, Sharer, disk, file_room, index};
use ropey::Rope;

use super::{App, AppEvent, TabKey};
use crate::file;
use crate::state::Level;

/// The shortest time between two rescans.
const MIN_SCAN_INTERVAL: Duration = Duration::from_secs(3);
/// Rescans are spaced to this many times their own duration (at most ~5 % of a core).
const SCAN_SPACING: u32 = 20;

/// The sharer's directory and what keeps it in step with the workspace.
pub(crate) struct SharerDisk {
    pub(crate) root: PathBuf,
    /// Every file as last brought in line with the disk: its shown path, and whether the
    /// disk has it. The index moving away from this is a partner's rename or delete.
    applied: HashMap<FileId, (String, bool)>,
    /// Counts this editor's own changes to the disk: a scan started before one is stale.
    pub(crate) generation: u64,
    scanning: bool,
    last_scan: Option<Instant>,
    scan_every: Duration,
    opts: ScanOptions,
    /// The first scan is in the index.
    ready: bool,
    /// Files to remove from disk once their room holds their text: id -> path.
    to_delete: HashMap<FileId, String>,
    /// Save requests to serve once the file's room is loaded: id -> request number.
    to_serve: HashMap<FileId, u64>,
}

impl SharerDisk {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            applied: HashMap::new(),
            generation: 0,
            scanning: false,
            last_scan: None,
            scan_every: MIN_SCAN_INTERVAL,
            opts: ScanOptions::default(),
            ready: false,
            to_delete: HashMap::new(),
            to_serve: HashMap::new(),
        }
    }

    /// Index path `shown` on disk, and its text if the file exists.
    pub(crate) fn read(&self, shown: &str) -> Result<(Option<PathBuf>, Option<String>), String> {
        let path = disk::resolve(&self.root, shown).map_err(|e| e.to_string())?;
        let text = file::load(&path).map_err(|e| e.to_string())?;
        Ok((Some(path), text))
    }
}

/// Applies line edits (byte ranges of the current text, increasing) to `client`'s document
/// as local edits, from the last to the first so the earlier offsets stay valid.
fn apply_edits(client: &Client, edits: &[merge::Edit]) {
    client.edit(|d| {
        for e in edits.iter().rev() {
            let rope = d.rope();
            if e.range.end > rope.len_bytes() {
                continue; // computed against another text: never splice blindly
            }
            let start = d.char_to_utf16(duet_doc::CharIdx(rope.byte_to_char(e.range.start)));
            let end = d.char_to_utf16(duet_doc::CharIdx(rope.byte_to_char(e.range.end)));
            let _ = d.replace(start..end, &e.text);
        }
    });
}

impl App {
    pub(crate) fn sharer(&self) -> Option<&SharerDisk> {
        self.ws.as_ref().and_then(|ws| ws.sharer.as_ref())
    }

    fn sharer_mut(&mut self) -> Option<&mut SharerDisk> {
        self.ws.as_mut().and_then(|ws| ws.sharer.as_mut())
    }

    /// The index answered for the first time: name the sharer, scan the directory, fill
    /// the index.
    pub(crate) fn sharer_start(&mut self) {
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let Some(sharer) = ws.sharer.as_ref() else {
            return;
        };
        // Two sharers of one workspace would each carry their own disk into it.
        if let Some(other) = ws.index.read(|d| index::sharer(d.ydoc()))
            && other.client_id != ws.client_id
            && ws
                .index
                .peers()
                .iter()
                .any(|p| p.client_id == other.client_id)
        {
            let name = ws.workspace.name().to_owned();
            self.quit(
                1,
                Some(format!(
                    "workspace {name} is already shared by {}: join it with `duet join {name}`, \
                     or share under another name with --workspace NAME",
                    other.name
                )),
            );
            return;
        }
        let me = Sharer {
            name: self.view.status.name.clone(),
            client_id: ws.client_id,
        };
        ws.index.edit(|d| index::set_sharer(d.ydoc(), &me));
        let started = Instant::now();
        let found = duet_workspace::scan(&sharer.root, &sharer.opts);
        let took = started.elapsed();
        let reconciled = ws.index.edit(|d| index::reconcile(d.ydoc(), &found.files));
        let text = found
            .files
            .iter()
            .filter(|f| f.kind == FileKind::Text)
            .count();
        let other = found.files.len() - text;
        let mut note = format!("sharing {text} files of {}", sharer.root.display());
        if other > 0 {
            note.push_str(&format!(" ({other} binary or too big: listed, not opened)"));
        }
        if found.truncated > 0 {
            note.push_str(&format!("; {} more left out (file limit)", found.truncated));
        }
        if let Err(e) = reconciled {
            self.view
                .notice(Level::Error, format!("cannot fill the index: {e}"));
        }
        self.view.notice(Level::Info, note);
        if let Some(s) = self.sharer_mut() {
            s.ready = true;
            s.last_scan = Some(Instant::now());
            s.scan_every = MIN_SCAN_INTERVAL.max(took * SCAN_SPACING);
        }
        self.refresh_files();
        self.sharer_snapshot();
        self.sharer_load_where_people_are();
    }

    /// Remembers the index as it is now as what the disk matches.
    fn sharer_snapshot(&mut self) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        let now: HashMap<FileId, (String, bool)> = ws
            .files
            .iter()
            .map(|f| (f.id, (f.shown.clone(), f.on_disk)))
            .collect();
        if let Some(s) = ws.sharer.as_mut() {
            s.applied = now;
        }
    }

    /// The index changed (a partner, or this editor): carry renames and deletions out on
    /// disk, and take up save requests.
    pub(crate) fn sharer_index_changed(&mut self) {
        if !self.sharer().is_some_and(|s| s.ready) {
            return;
        }
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let Some(sharer) = ws.sharer.as_ref() else {
            return;
        };
        let root = sharer.root.clone();
        let now: HashMap<FileId, (String, bool)> = ws
            .files
            .iter()
            .map(|f| (f.id, (f.shown.clone(), f.on_disk)))
            .collect();
        let mut renames = Vec::new();
        let mut deletes = Vec::new();
        for (id, (old, was_on_disk)) in &sharer.applied {
            if !was_on_disk {
                continue;
            }
            match now.get(id) {
                None => deletes.push((*id, old.clone())),
                Some((new, _)) if new != old => renames.push((*id, old.clone(), new.clone())),
                Some(_) => {}
            }
        }
        let requests: Vec<(FileId, u64)> = ws
            .files
            .iter()
            .filter(|f| f.save_pending())
            .map(|f| (f.id, f.save_asked))
            .collect();
        for (id, old, new) in renames {
            match disk::rename(&root, &old, &new) {
                Ok(()) => {
                    if let Some(s) = self.sharer_mut() {
                        s.generation += 1;
                    }
                    let path = root.join(&new);
                    let key = TabKey::File(id);
                    self.in_tab(key, |app| app.tab.file = Some(path));
                }
                Err(e) => self.view.notice(
                    Level::Error,
                    format!("{old} was renamed to {new}, but not on disk: {e}"),
                ),
            }
        }
        for (id, path) in deletes {
            if let Some(s) = self.sharer_mut() {
                s.to_delete.insert(id, path.clone());
            }
            // Its text goes into its room before the file leaves the disk.
            self.load_tab(id, Some(&path));
        }
        for (id, n) in requests {
            let fresh = self.sharer_mut().is_some_and(|s| {
                let known = s.to_serve.get(&id).copied().unwrap_or(0);
                s.to_serve.insert(id, known.max(n));
                known < n
            });
            if fresh {
                self.load_tab(id, None);
            }
        }
        self.sharer_snapshot();
        self.sharer_service();
    }

    /// Joins the rooms of the files partners are in, so that their text is loaded from
    /// disk for them.
    pub(crate) fn sharer_load_where_people_are(&mut self) {
        if !self.sharer().is_some_and(|s| s.ready) {
            return;
        }
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let wanted: Vec<FileId> = ws
            .index
            .peers()
            .iter()
            .filter_map(|p| ws.workspace.file_of_room(&p.location.as_ref()?.room))
            .filter(|id| ws.entry(*id).is_some())
            .collect();
        for id in wanted {
            self.load_tab(id, None);
        }
    }

    /// Work that waited for a file's room: partners' save requests, files to delete.
    pub(crate) fn sharer_service(&mut self) {
        let Some(sharer) = self.sharer() else {
            return;
        };
        let serve: Vec<(FileId, u64)> = sharer.to_serve.iter().map(|(k, v)| (*k, *v)).collect();
        let delete: Vec<(FileId, String)> = sharer
            .to_delete
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let root = sharer.root.clone();
        for (id, n) in serve {
            let key = TabKey::File(id);
            if !self.tab_loaded(key) {
                continue;
            }
            // The request reached the index before the edits it saves reached the file's
            // room: wait for the room to catch up (its own copy of the request comes after
            // them).
            let caught_up = self
                .in_tab(key, |app| {
                    app.tab
                        .client
                        .read(|d| file_room::state(d.ydoc()).save_asked >= n)
                })
                .unwrap_or(false);
            if !caught_up {
                continue;
            }
            let saved = self
                .in_tab(key, |app| app.sharer_save_front(true))
                .unwrap_or(false);
            if saved && let Some(ws) = self.ws.as_ref() {
                let _ = ws.index.edit(|d| index::save_done(d.ydoc(), id, n));
            }
            if let Some(s) = self.sharer_mut() {
                s.to_serve.remove(&id);
            }
        }
        for (id, path) in delete {
            let key = TabKey::File(id);
            if !self.tab_loaded(key) {
                continue;
            }
            match disk::remove(&root, &path) {
                Ok(()) => self.view.notice(
                    Level::Info,
                    format!("deleted {path} from disk (its text stays in the workspace's room)"),
                ),
                Err(e) => self
                    .view
                    .notice(Level::Error, format!("cannot delete {path}: {e}")),
            }
            if let Some(s) = self.sharer_mut() {
                s.generation += 1;
                s.to_delete.remove(&id);
            }
            self.in_tab(key, |app| {
                app.tab.file = None;
                app.tab.disk = None;
                app.tab.disk_stamp = None;
            });
        }
    }

    /// True when tab `key` exists and its room's first sync is done.
    fn tab_loaded(&self, key: TabKey) -> bool {
        if self.tab.key == key {
            return self.tab.seed.is_none();
        }
        self.ws
            .as_ref()
            .and_then(|ws| ws.tabs.get(&key))
            .is_some_and(|t| t.seed.is_none())
    }

    /// The first sync of the front tab's room, on the sharer's side: the room and the disk
    /// brought in line (see the module doc).
    pub(crate) fn sharer_first_sync(&mut self) {
        let Some(seed) = self.tab.seed.take() else {
            return;
        };
        let on_disk = self.tab.disk.is_some();
        let name = self.view.status.file.clone().unwrap_or_default();
        let (state, room) = self
            .tab
            .client
            .read(|d| (file_room::state(d.ydoc()), d.text()));
        // The room's text arrived into an empty document, the cursor at its end: start at
        // the top instead.
        self.tab
            .client
            .edit(|d| d.set_selection(Selection::default()));
        self.view.editor.top = 0;
        self.tab.text_changed = true;
        // Republish the cursor at the top: one published into the empty room would stick
        // to its end.
        self.publish_selection();
        if !on_disk {
            // A new file nobody saved yet: whatever the room holds is its text.
            if !state.seeded {
                self.tab
                    .client
                    .edit(|d| file_room::mark_seeded(d.ydoc(), None));
            }
            return;
        }
        let disk_hash = file_room::text_hash([seed.as_str()]);
        if !state.seeded && room.is_empty() {
            self.tab.client.edit(|d| {
                if let Err(e) = d.set_text(&seed) {
                    tracing::warn!(error = %e, "cannot load a file into its room");
                }
                d.set_selection(Selection::default());
                file_room::mark_seeded(d.ydoc(), Some(disk_hash));
            });
            return;
        }
        if room == seed {
            if !state.seeded || state.disk != Some(disk_hash) {
                self.tab
                    .client
                    .edit(|d| file_room::mark_seeded(d.ydoc(), Some(disk_hash)));
            }
            return;
        }
        if state.disk == Some(disk_hash) {
            // The disk is as the room last saw it: the room's edits were never saved.
            self.view.notice(
                Level::Warn,
                format!("{name}: the room holds edits not on disk yet (Ctrl-S writes them)"),
            );
            return;
        }
        let room_unchanged = state.disk == Some(file_room::text_hash([room.as_str()]));
        let merged = if room_unchanged {
            Merged {
                text: seed.clone(),
                conflicts: false,
            }
        } else {
            merge::two_way(&room, &seed)
        };
        apply_edits(&self.tab.client, &merge::edits(&room, &merged.text));
        self.tab
            .client
            .edit(|d| file_room::mark_seeded(d.ydoc(), Some(disk_hash)));
        let text = if room_unchanged {
            format!("{name} changed on disk since it was last shared: the room took the change")
        } else if merged.conflicts {
            format!(
                "{name} changed on disk and in the room: both kept, between <<<<<<< ours (the room) and >>>>>>> theirs (the disk)"
            )
        } else {
            format!("{name} changed on disk and in the room: merged")
        };
        self.view.notice(Level::Warn, text);
    }

    /// Checks the front tab's file on disk; a change is merged into the room as an edit.
    pub(crate) fn sharer_check_front_disk(&mut self) {
        if self.tab.seed.is_some() {
            return;
        }
        let Some(path) = self.tab.file.clone() else {
            return;
        };
        let stamp = file::stamp(&path);
        if stamp == self.tab.disk_stamp || stamp.is_none() {
            return; // unchanged, or gone (the rescan deals with deletions)
        }
        let Ok(Some(disk)) = file::load(&path) else {
            return;
        };
        self.tab.disk_stamp = stamp;
        let base = self
            .tab
            .disk
            .as_ref()
            .map(Rope::to_string)
            .unwrap_or_default();
        if disk == base {
            return;
        }
        let name = self.view.status.file.clone().unwrap_or_default();
        let room = self.tab.client.read(|d| d.text());
        let merged = merge::merge(&base, &room, &disk);
        apply_edits(&self.tab.client, &merge::edits(&room, &merged.text));
        let h = file_room::text_hash([disk.as_str()]);
        self.tab.client.edit(|d| file_room::set_disk(d.ydoc(), h));
        self.tab.disk = Some(Rope::from_str(&disk));
        self.tab.text_changed = true;
        let text = if room == base {
            format!("{name} changed on disk: the room took the change (Ctrl-Z undoes it)")
        } else if merged.conflicts {
            format!(
                "{name} changed on disk and has unsaved edits: both kept, between <<<<<<< ours (the room) and >>>>>>> theirs (the disk)"
            )
        } else {
            format!("{name} changed on disk: merged with the unsaved edits")
        };
        self.view.notice(Level::Warn, text);
    }

    /// Writes the front tab's text to the sharer's disk (for a partner's request when
    /// `for_partner`). A change on disk since the last load or save is merged into the room
    /// first, so the save never writes over it.
    pub(crate) fn sharer_save_front(&mut self, for_partner: bool) -> bool {
        let TabKey::File(id) = self.tab.key else {
            return false;
        };
        if self.tab.seed.is_some() {
            self.view
                .notice(Level::Warn, "waiting for the room before saving");
            return false;
        }
        let Some(root) = self.sharer().map(|s| s.root.clone()) else {
            return false;
        };
        let name = self.view.status.file.clone().unwrap_or_default();
        let path = match disk::prepare(&root, &name) {
            Ok(p) => p,
            Err(e) => {
                self.view
                    .notice(Level::Error, format!("cannot save {name}: {e}"));
                return false;
            }
        };
        if self.tab.file.as_ref() != Some(&path) {
            self.tab.file = Some(path.clone());
        }
        self.sharer_check_front_disk();
        let rope = self.tab.client.read(|d| d.rope().clone());
        if let Err(e) = file::save_atomic(&path, rope.chunks()) {
            self.view
                .notice(Level::Error, format!("cannot save {name}: {e}"));
            return false;
        }
        let h = file_room::text_hash(rope.chunks());
        self.tab.client.edit(|d| file_room::set_disk(d.ydoc(), h));
        let lines = rope.len_lines() as u64;
        let size = rope.len_bytes() as u64;
        self.tab.disk = Some(rope);
        self.tab.disk_stamp = file::stamp(&path);
        self.tab.text_changed = true;
        self.view.status.changed_on_disk = false;
        let by = if for_partner { " for a partner" } else { "" };
        self.view.notice(
            Level::Info,
            format!(
                "saved {name}{by} ({lines} {})",
                if lines == 1 { "line" } else { "lines" }
            ),
        );
        self.tell_saved(name, lines);
        if let Some(ws) = self.ws.as_ref() {
            let _ = ws
                .index
                .edit(|d| index::set_on_disk(d.ydoc(), id, FileKind::Text, size));
        }
        if let Some(s) = self.sharer_mut() {
            s.generation += 1;
        }
        self.refresh_files();
        self.sharer_snapshot();
        true
    }

    /// Once a second in a workspace: the sharer's loaded files checked on disk, a rescan
    /// when one is due, and the work that waits.
    pub(crate) fn ws_tick(&mut self, now: Instant) {
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let Some(sharer) = ws.sharer.as_ref() else {
            return;
        };
        let mut keys: Vec<TabKey> = ws.tabs.keys().copied().collect();
        keys.push(self.tab.key);
        let due = sharer.ready
            && !sharer.scanning
            && sharer
                .last_scan
                .is_none_or(|t| now.saturating_duration_since(t) >= sharer.scan_every);
        for key in keys {
            if matches!(key, TabKey::File(_)) {
                self.in_tab(key, App::sharer_check_front_disk);
            }
        }
        if due {
            self.start_scan();
        }
        self.sharer_service();
    }

    /// Scans the directory on a blocking thread; the result comes back as an event.
    fn start_scan(&mut self) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        let events = ws.events_sender();
        let Some(s) = ws.sharer.as_mut() else {
            return;
        };
        s.scanning = true;
        let (root, opts, generation) = (s.root.clone(), s.opts.clone(), s.generation);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let scan = duet_workspace::scan(&root, &opts);
            let took = started.elapsed();
            let _ = events.blocking_send(AppEvent::Scanned {
                generation,
                scan,
                took,
            });
        });
    }

    /// A rescan finished: new files on disk join the index, files gone from disk leave it.
    pub(crate) fn scanned(&mut self, generation: u64, scan: Scan, took: Duration) {
        let Some(s) = self.sharer_mut() else {
            return;
        };
        s.scanning = false;
        s.last_scan = Some(Instant::now());
        s.scan_every = MIN_SCAN_INTERVAL.max(took * SCAN_SPACING);
        if generation != s.generation {
            return; // this editor changed the disk meanwhile: the next scan sees it
        }
        let Some(ws) = self.ws.as_ref() else {
            return;
        };
        let reconciled = ws.index.edit(|d| index::reconcile(d.ydoc(), &scan.files));
        match reconciled {
            Ok(r) if !(r.added.is_empty() && r.removed.is_empty() && r.changed.is_empty()) => {
                let mut parts = Vec::new();
                if !r.added.is_empty() {
                    parts.push(format!("{} new", r.added.len()));
                }
                if !r.removed.is_empty() {
                    parts.push(format!("{} gone", r.removed.len()));
                }
                if !parts.is_empty() {
                    self.view
                        .notice(Level::Info, format!("on disk: {}", parts.join(", ")));
                }
                self.refresh_files();
            }
            Ok(_) => {}
            Err(e) => self
                .view
                .notice(Level::Error, format!("cannot update the index: {e}")),
        }
        self.sharer_snapshot();
    }
}
