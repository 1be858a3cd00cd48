//! The workspace index: which files a workspace holds, as a Yjs map any Yjs application can
//! read (root map [`FILES_MAP`] of the document in room `W/index`).
//!
//! ```text
//! files: {
//!   "3f2a9c0d11e8b7a4": { path: "src/main.rs", kind: "text", size: 1234, on_disk: true },
//!   "b19e0c7d2a4f6e81": { path: "notes.md", kind: "text", size: 0, on_disk: false },
//!   "77d0e2c9a1b3f5e6": { path: "old.txt", kind: "text", size: 9, deleted: true },
//! }
//! ```
//!
//! Each entry is a nested Y map, so concurrent changes to different fields merge, and
//! changes to one field resolve the way Yjs resolves them (the same on every replica):
//! - create: a new random id, never a key someone else can write at the same time;
//! - rename: sets `path`; two concurrent renames leave one of the two names, and one file;
//! - delete: sets `deleted` (a tombstone): the file's room and text stay, and a delete
//!   concurrent with a rename or an edit loses nothing that cannot be brought back;
//! - two files created at the same path at once both stay: the one with the smaller id is
//!   shown at the path, the other beside it with its id ([`FileEntry::shown`]), on every
//!   replica alike.
//!
//! `on_disk` says whether the sharer's directory has the file; the sharer's scan
//! ([`reconcile`]) only ever deletes entries it had seen on disk, so a file a partner just
//! created is not taken for one deleted on disk.
//!
//! Saving by a partner (ADR 010) is a request in the entry: `save_asked` counts requests,
//! `save_done` the last request the sharer's editor served by writing the file. Two
//! partners asking at once write the same next number: one request, served once, with the
//! text as it is then. The root map [`WORKSPACE_MAP`] names the sharer.

use std::collections::{HashMap, HashSet};
use std::fmt;

use duet_protocol::{RoomName, RoomNameError};
use yrs::any::Number;
use yrs::{Any, Doc, Map, MapPrelim, MapRef, Out, ReadTxn, Transact};

use crate::scan::Scanned;

/// The root map of the index document.
pub const FILES_MAP: &str = "files";
/// The root map of facts about the workspace itself (`sharer`, `sharer_client`).
pub const WORKSPACE_MAP: &str = "workspace";
/// Longest path kept in the index, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A file's stable identity: its room is named after it, whatever its path becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(u64);

impl FileId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Reads the 16 hex digits [`FileId`]'s `Display` writes.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Self)
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a file is to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// UTF-8 text under the size cap: it can be opened and edited.
    Text,
    /// Not text (a NUL byte, or not UTF-8): listed, never opened.
    Binary,
    /// Over the size cap: listed, never opened.
    TooBig,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Text => "text",
            FileKind::Binary => "binary",
            FileKind::TooBig => "too-big",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(FileKind::Text),
            "binary" => Some(FileKind::Binary),
            "too-big" => Some(FileKind::TooBig),
            _ => None,
        }
    }
}

/// One live file of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub id: FileId,
    /// The path as stored: relative, `/`-separated.
    pub path: String,
    /// The path to show and to write on disk: `path`, or, when another file has the same
    /// path, `path~<id>` for all but the one with the smallest id.
    pub shown: String,
    pub kind: FileKind,
    /// Bytes, as last seen on the sharer's disk.
    pub size: u64,
    /// The sharer's directory has it.
    pub on_disk: bool,
    /// Save requests made so far ([`ask_save`]).
    pub save_asked: u64,
    /// The last request the sharer's editor served ([`save_done`]).
    pub save_done: u64,
}

impl FileEntry {
    /// A partner asked for a save the sharer's editor has not served yet.
    pub fn save_pending(&self) -> bool {
        self.save_asked > self.save_done
    }
}

/// Who shares the workspace, as the sharer's editor wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharer {
    /// Display name, control characters dropped.
    pub name: String,
    /// The yrs client id the sharer's editor uses in every room of the workspace (the same
    /// as its awareness entries' client id).
    pub client_id: u64,
}

/// Why the index refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("bad path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("no file {0} in the workspace")]
    NoSuchFile(FileId),
}

/// A workspace: a prefix of rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    name: String,
    index: RoomName,
}

impl Workspace {
    /// The workspace `name` (a room name itself, e.g. `team/duet`).
    pub fn new(name: &str) -> Result<Self, RoomNameError> {
        let name = name.trim_end_matches('/');
        let index = RoomName::new(&format!("{name}/index"))?;
        // The longest file room must fit too.
        RoomName::new(&format!("{name}/files/{}", FileId(u64::MAX)))?;
        Ok(Self {
            name: name.to_owned(),
            index,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room holding the index.
    pub fn index_room(&self) -> &RoomName {
        &self.index
    }

    /// The room holding the text of file `id`.
    pub fn file_room(&self, id: FileId) -> RoomName {
        // Checked in `new` for the longest id; every id has the same length.
        RoomName::new(&format!("{}/files/{id}", self.name)).unwrap_or_else(|_| self.index.clone())
    }

    /// The token pattern that admits the whole workspace (`duet-server token --room`).
    pub fn token_pattern(&self) -> String {
        format!("{}/*", self.name)
    }

    /// The file whose room is `room`, if `room` is a file room of this workspace.
    pub fn file_of_room(&self, room: &str) -> Option<FileId> {
        room.strip_prefix(&self.name)?
            .strip_prefix("/files/")
            .and_then(FileId::parse)
    }
}

/// Checks a path as the index keeps it: relative, `/`-separated, no `.`/`..` or empty
/// segments, no control characters.
pub fn check_path(path: &str) -> Result<(), IndexError> {
    let bad = |why| {
        Err(IndexError::BadPath {
            path: path.to_owned(),
            why,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("too long");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control character or backslash");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("empty segment"),
            "." | ".." => return bad("'.' or '..' segment"),
            // Never shared, never written: a hook written there would run on the sharer's
            // machine (any case: some file systems ignore it).
            s if s.eq_ignore_ascii_case(".git") => return bad("inside .git"),
            _ => {}
        }
    }
    Ok(())
}

fn files_map(doc: &Doc) -> MapRef {
    doc.get_or_insert_map(FILES_MAP)
}

fn text_of<T: ReadTxn>(m: &MapRef, txn: &T, key: &str) -> Option<String> {
    match m.get(txn, key) {
        Some(Out::Any(Any::String(s))) => Some(s.to_string()),
        _ => None,
    }
}

fn number_of<T: ReadTxn>(m: &MapRef, txn: &T, key: &str) -> Option<u64> {
    match m.get(txn, key) {
        Some(Out::Any(Any::Number(Number::Int(n)))) => u64::try_from(n).ok(),
        Some(Out::Any(Any::Number(Number::Float(n)))) if n >= 0.0 && n.is_finite() => {
            Some(n as u64)
        }
        _ => None,
    }
}

fn flag_of<T: ReadTxn>(m: &MapRef, txn: &T, key: &str) -> bool {
    matches!(m.get(txn, key), Some(Out::Any(Any::Bool(true))))
}

/// The live files, sorted by [`FileEntry::shown`]. Entries that other applications wrote
/// in another shape are skipped, not trusted.
pub fn files(doc: &Doc) -> Vec<FileEntry> {
    let map = files_map(doc);
    let txn = doc.transact();
    let mut out: Vec<FileEntry> = Vec::new();
    for (key, value) in map.iter(&txn) {
        let (Some(id), Out::YMap(entry)) = (FileId::parse(key), value) else {
            continue;
        };
        if flag_of(&entry, &txn, "deleted") {
            continue;
        }
        let Some(path) = text_of(&entry, &txn, "path").filter(|p| check_path(p).is_ok()) else {
            continue;
        };
        let kind = text_of(&entry, &txn, "kind")
            .and_then(|k| FileKind::parse(&k))
            .unwrap_or(FileKind::Binary);
        out.push(FileEntry {
            id,
            shown: path.clone(),
            path,
            kind,
            size: number_of(&entry, &txn, "size").unwrap_or(0),
            on_disk: flag_of(&entry, &txn, "on_disk"),
            save_asked: number_of(&entry, &txn, "save_asked").unwrap_or(0),
            save_done: number_of(&entry, &txn, "save_done").unwrap_or(0),
        });
    }
    // Same path: the smallest id keeps it, the others are shown beside it.
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.id.cmp(&b.id)));
    for i in 1..out.len() {
        if out[i].path == out[i - 1].path {
            out[i].shown = format!("{}~{}", out[i].path, out[i].id);
        }
    }
    out.sort_by(|a, b| a.shown.cmp(&b.shown));
    out
}

/// The live file at `path` (the one shown there), if any.
pub fn find(doc: &Doc, path: &str) -> Option<FileEntry> {
    files(doc).into_iter().find(|f| f.shown == path)
}

/// Adds a file; returns its new id.
pub fn create(
    doc: &Doc,
    path: &str,
    kind: FileKind,
    size: u64,
    on_disk: bool,
) -> Result<FileId, IndexError> {
    check_path(path)?;
    let id = FileId::random();
    let map = files_map(doc);
    let mut txn = doc.transact_mut();
    let entry = MapPrelim::from([
        ("path", Any::from(path)),
        ("kind", Any::from(kind.as_str())),
        ("size", Any::from(size as f64)),
        ("on_disk", Any::from(on_disk)),
    ]);
    map.insert(&mut txn, id.to_string(), entry);
    Ok(id)
}

fn entry(doc: &Doc, id: FileId) -> Result<MapRef, IndexError> {
    let map = files_map(doc);
    let txn = doc.transact();
    match map.get(&txn, &id.to_string()) {
        Some(Out::YMap(m)) => Ok(m),
        _ => Err(IndexError::NoSuchFile(id)),
    }
}

/// Gives file `id` a new path; its text stays where it is.
pub fn rename(doc: &Doc, id: FileId, path: &str) -> Result<(), IndexError> {
    check_path(path)?;
    let e = entry(doc, id)?;
    e.insert(&mut doc.transact_mut(), "path", Any::from(path));
    Ok(())
}

/// Marks file `id` deleted (its room and text stay).
pub fn delete(doc: &Doc, id: FileId) -> Result<(), IndexError> {
    let e = entry(doc, id)?;
    e.insert(&mut doc.transact_mut(), "deleted", Any::from(true));
    Ok(())
}

/// Records what the sharer's disk holds for file `id`.
pub fn set_on_disk(doc: &Doc, id: FileId, kind: FileKind, size: u64) -> Result<(), IndexError> {
    let e = entry(doc, id)?;
    let mut txn = doc.transact_mut();
    e.insert(&mut txn, "kind", Any::from(kind.as_str()));
    e.insert(&mut txn, "size", Any::from(size as f64));
    e.insert(&mut txn, "on_disk", Any::from(true));
    Ok(())
}

/// The live file `id`, if it is live.
pub fn get(doc: &Doc, id: FileId) -> Option<FileEntry> {
    files(doc).into_iter().find(|f| f.id == id)
}

/// Asks the sharer's editor to write file `id` to disk; returns the request's number.
pub fn ask_save(doc: &Doc, id: FileId) -> Result<u64, IndexError> {
    let e = entry(doc, id)?;
    let mut txn = doc.transact_mut();
    let asked = number_of(&e, &txn, "save_asked").unwrap_or(0);
    let done = number_of(&e, &txn, "save_done").unwrap_or(0);
    let n = asked.max(done) + 1;
    e.insert(&mut txn, "save_asked", Any::from(n as f64));
    Ok(n)
}

/// Records that the sharer's editor wrote file `id` for request `n` (and all before it).
pub fn save_done(doc: &Doc, id: FileId, n: u64) -> Result<(), IndexError> {
    let e = entry(doc, id)?;
    let mut txn = doc.transact_mut();
    if number_of(&e, &txn, "save_done").unwrap_or(0) < n {
        e.insert(&mut txn, "save_done", Any::from(n as f64));
    }
    Ok(())
}

/// Records who shares the workspace.
pub fn set_sharer(doc: &Doc, sharer: &Sharer) {
    let map = doc.get_or_insert_map(WORKSPACE_MAP);
    let mut txn = doc.transact_mut();
    let name: String = sharer.name.chars().filter(|c| !c.is_control()).collect();
    map.insert(&mut txn, "sharer", Any::from(name));
    map.insert(
        &mut txn,
        "sharer_client",
        Any::from(sharer.client_id.to_string()),
    );
}

/// Who shares the workspace, if the sharer's editor said so.
pub fn sharer(doc: &Doc) -> Option<Sharer> {
    let map = doc.get_or_insert_map(WORKSPACE_MAP);
    let txn = doc.transact();
    let name: String = text_of(&map, &txn, "sharer")?
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let client_id = text_of(&map, &txn, "sharer_client")?.parse().ok()?;
    Some(Sharer { name, client_id })
}

/// What [`reconcile`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Brings the index in line with a scan of the sharer's directory: files new on disk are
/// added, changed kinds and sizes recorded, and files the index had seen on disk that are
/// gone are deleted. Files nobody saved to disk yet (`on_disk: false`) are left alone.
pub fn reconcile(doc: &Doc, scanned: &[Scanned]) -> Result<Reconciled, IndexError> {
    let live = files(doc);
    let by_path: HashMap<&str, &FileEntry> = live.iter().map(|f| (f.shown.as_str(), f)).collect();
    let on_disk: HashSet<&str> = scanned.iter().map(|s| s.path.as_str()).collect();
    let mut done = Reconciled::default();
    for s in scanned {
        match by_path.get(s.path.as_str()) {
            None => {
                create(doc, &s.path, s.kind, s.size, true)?;
                done.added.push(s.path.clone());
            }
            Some(f) if f.kind != s.kind || f.size != s.size || !f.on_disk => {
                set_on_disk(doc, f.id, s.kind, s.size)?;
                done.changed.push(s.path.clone());
            }
            Some(_) => {}
        }
    }
    for f in &live {
        if f.on_disk && !on_disk.contains(f.shown.as_str()) {
            delete(doc, f.id)?;
            done.removed.push(f.shown.clone());
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::Update;
    use yrs::updates::decoder::Decode;

    fn doc(client: u64) -> Doc {
        Doc::with_client_id(client)
    }

    /// Sends each side what the other lacks.
    fn exchange(a: &Doc, b: &Doc) {
        let a_to_b = a
            .transact()
            .encode_state_as_update_v1(&b.transact().state_vector());
        let b_to_a = b
            .transact()
            .encode_state_as_update_v1(&a.transact().state_vector());
        let apply = |d: &Doc, u: &[u8]| {
            d.transact_mut()
                .apply_update(Update::decode_v1(u).expect("decodes"))
                .expect("applies");
        };
        apply(b, &a_to_b);
        apply(a, &b_to_a);
    }

    fn shown(d: &Doc) -> Vec<String> {
        files(d).into_iter().map(|f| f.shown).collect()
    }

    fn scanned(path: &str, size: u64) -> Scanned {
        Scanned {
            path: path.into(),
            kind: FileKind::Text,
            size,
        }
    }

    #[test]
    fn create_rename_delete() {
        let d = doc(1);
        let a = create(&d, "src/main.rs", FileKind::Text, 10, true).expect("create");
        let b = create(&d, "README.md", FileKind::Text, 5, true).expect("create");
        assert_eq!(shown(&d), ["README.md", "src/main.rs"]);
        rename(&d, a, "src/lib.rs").expect("rename");
        assert_eq!(find(&d, "src/lib.rs").map(|f| f.id), Some(a));
        delete(&d, b).expect("delete");
        assert_eq!(shown(&d), ["src/lib.rs"]);
        assert_eq!(
            delete(&d, FileId(7)),
            Err(IndexError::NoSuchFile(FileId(7)))
        );
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a\nb",
            "a\\b",
            ".git/hooks/pre-commit",
            "sub/.GIT/config",
        ] {
            assert!(
                matches!(
                    create(&d, bad, FileKind::Text, 0, false),
                    Err(IndexError::BadPath { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn concurrent_renames_leave_one_file_with_one_name() {
        let (a, b) = (doc(1), doc(2));
        let id = create(&a, "notes.md", FileKind::Text, 3, true).expect("create");
        exchange(&a, &b);
        rename(&a, id, "ideas.md").expect("rename");
        rename(&b, id, "todo.md").expect("rename");
        exchange(&a, &b);
        assert_eq!(shown(&a), shown(&b));
        assert_eq!(files(&a).len(), 1);
        assert!(["ideas.md", "todo.md"].contains(&files(&a)[0].path.as_str()));
    }

    #[test]
    fn a_delete_concurrent_with_a_rename_deletes_and_both_sides_agree() {
        let (a, b) = (doc(1), doc(2));
        let id = create(&a, "notes.md", FileKind::Text, 3, true).expect("create");
        exchange(&a, &b);
        delete(&a, id).expect("delete");
        rename(&b, id, "kept.md").expect("rename");
        exchange(&a, &b);
        assert_eq!(shown(&a), Vec::<String>::new());
        assert_eq!(shown(&b), Vec::<String>::new());
    }

    #[test]
    fn two_files_created_at_one_path_both_stay_shown_alike() {
        let (a, b) = (doc(1), doc(2));
        let x = create(&a, "new.rs", FileKind::Text, 1, false).expect("create");
        let y = create(&b, "new.rs", FileKind::Text, 2, false).expect("create");
        exchange(&a, &b);
        let (first, second) = if x < y { (x, y) } else { (y, x) };
        let want = vec!["new.rs".to_owned(), format!("new.rs~{second}")];
        assert_eq!(shown(&a), want);
        assert_eq!(shown(&b), want);
        assert_eq!(find(&a, "new.rs").map(|f| f.id), Some(first));
    }

    #[test]
    fn reconcile_follows_the_disk_but_keeps_files_not_saved_yet() {
        let d = doc(1);
        let r = reconcile(&d, &[scanned("a.txt", 1), scanned("b.txt", 2)]).expect("scan");
        assert_eq!(r.added, ["a.txt", "b.txt"]);
        // A partner creates c.txt; nobody saved it yet.
        create(&d, "c.txt", FileKind::Text, 0, false).expect("create");
        // b.txt grows, a.txt is deleted on disk.
        let r = reconcile(&d, &[scanned("b.txt", 20)]).expect("scan");
        assert_eq!(r.changed, ["b.txt"]);
        assert_eq!(r.removed, ["a.txt"]);
        assert_eq!(shown(&d), ["b.txt", "c.txt"]);
        // Once c.txt is saved, the scan sees it: recorded as on disk.
        let r = reconcile(&d, &[scanned("b.txt", 20), scanned("c.txt", 4)]).expect("scan");
        assert_eq!(r.changed, ["c.txt"]);
        assert!(find(&d, "c.txt").is_some_and(|f| f.on_disk && f.size == 4));
        assert_eq!(
            reconcile(&d, &[scanned("b.txt", 20), scanned("c.txt", 4)]).expect("scan"),
            Reconciled::default()
        );
    }

    #[test]
    fn entries_in_another_shape_are_skipped() {
        let d = doc(1);
        let map = files_map(&d);
        {
            let mut txn = d.transact_mut();
            map.insert(&mut txn, "not-an-id", Any::from("x"));
            map.insert(&mut txn, "0000000000000001", Any::from(3.0));
            map.insert(
                &mut txn,
                "0000000000000002",
                MapPrelim::from([("path", Any::from("../escape"))]),
            );
        }
        create(&d, "ok.txt", FileKind::Text, 1, true).expect("create");
        assert_eq!(shown(&d), ["ok.txt"]);
    }

    #[test]
    fn concurrent_adds_from_both_sides_all_stay() {
        let (a, b) = (doc(1), doc(2));
        create(&a, "shared.rs", FileKind::Text, 1, true).expect("create");
        exchange(&a, &b);
        create(&a, "from_a.rs", FileKind::Text, 1, false).expect("create");
        create(&b, "from_b.rs", FileKind::Text, 1, false).expect("create");
        create(&b, "dir/deep.rs", FileKind::Text, 1, false).expect("create");
        exchange(&a, &b);
        let want = ["dir/deep.rs", "from_a.rs", "from_b.rs", "shared.rs"];
        assert_eq!(shown(&a), want);
        assert_eq!(shown(&b), want);
    }

    #[test]
    fn a_rename_onto_a_path_another_creates_keeps_both() {
        let (a, b) = (doc(1), doc(2));
        let old = create(&a, "old.rs", FileKind::Text, 1, true).expect("create");
        exchange(&a, &b);
        rename(&a, old, "new.rs").expect("rename");
        let fresh = create(&b, "new.rs", FileKind::Text, 1, false).expect("create");
        exchange(&a, &b);
        assert_eq!(shown(&a), shown(&b));
        assert_eq!(files(&a).len(), 2, "{:?}", shown(&a));
        let (first, second) = if old < fresh {
            (old, fresh)
        } else {
            (fresh, old)
        };
        assert_eq!(find(&a, "new.rs").map(|f| f.id), Some(first));
        assert_eq!(
            find(&b, &format!("new.rs~{second}")).map(|f| f.id),
            Some(second)
        );
    }

    #[test]
    fn deletes_from_both_sides_and_a_delete_beside_an_edit_of_another_file() {
        let (a, b) = (doc(1), doc(2));
        let x = create(&a, "x.rs", FileKind::Text, 1, true).expect("create");
        let y = create(&a, "y.rs", FileKind::Text, 1, true).expect("create");
        exchange(&a, &b);
        // Both delete x at once; a renames y while b deletes it.
        delete(&a, x).expect("delete");
        delete(&b, x).expect("delete");
        rename(&a, y, "z.rs").expect("rename");
        delete(&b, y).expect("delete");
        exchange(&a, &b);
        assert!(
            shown(&a).is_empty() && shown(&b).is_empty(),
            "{:?}",
            shown(&a)
        );
    }

    #[test]
    fn save_requests_count_up_and_are_served_once() {
        let (a, b) = (doc(1), doc(2));
        let id = create(&a, "notes.md", FileKind::Text, 1, true).expect("create");
        exchange(&a, &b);
        assert!(!get(&a, id).expect("live").save_pending());
        // Two partners ask at once: one request.
        assert_eq!(ask_save(&a, id), Ok(1));
        assert_eq!(ask_save(&b, id), Ok(1));
        exchange(&a, &b);
        let e = get(&a, id).expect("live");
        assert!(e.save_pending());
        save_done(&a, id, e.save_asked).expect("done");
        exchange(&a, &b);
        assert!(!get(&b, id).expect("live").save_pending());
        // Served requests never come back, and the next one counts on.
        save_done(&b, id, 0).expect("done");
        assert_eq!(ask_save(&b, id), Ok(2));
        assert_eq!(
            ask_save(&a, FileId(9)),
            Err(IndexError::NoSuchFile(FileId(9)))
        );
    }

    #[test]
    fn the_sharer_is_named_in_the_index() {
        let d = doc(1);
        assert_eq!(sharer(&d), None);
        let who = Sharer {
            name: "ann\u{1b}[2J".into(),
            client_id: (1 << 53) - 1,
        };
        set_sharer(&d, &who);
        assert_eq!(
            sharer(&d),
            Some(Sharer {
                name: "ann[2J".into(),
                client_id: (1 << 53) - 1
            })
        );
    }

    #[test]
    fn rooms_are_named_after_ids_under_the_workspace() {
        let w = Workspace::new("team/duet/").expect("valid");
        assert_eq!(w.index_room().as_str(), "team/duet/index");
        assert_eq!(
            w.file_room(FileId(0xab)).as_str(),
            "team/duet/files/00000000000000ab"
        );
        assert_eq!(w.token_pattern(), "team/duet/*");
        assert_eq!(
            w.file_of_room("team/duet/files/00000000000000ab"),
            Some(FileId(0xab))
        );
        assert_eq!(w.file_of_room("team/duet/index"), None);
        assert_eq!(w.file_of_room("team/other/files/00000000000000ab"), None);
        assert!(Workspace::new("bad name").is_err());
        assert_eq!(FileId::parse("00000000000000ab"), Some(FileId(0xab)));
        assert_eq!(FileId::parse("AB"), None);
    }
}
