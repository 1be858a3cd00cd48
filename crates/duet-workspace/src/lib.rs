//! Shared workspaces: a directory of files that a pair edits together (ADR 007).
//!
//! A workspace `W` is a prefix of rooms. Its index lives in room `W/index`: a Yjs document
//! whose root map [`FILES_MAP`] holds one entry per file, keyed by a stable [`FileId`], with
//! the file's path, kind and size. Each file's text lives in its own room `W/files/<id>`,
//! loaded only when someone opens it. Keying by id rather than by path is what makes renames
//! cheap and safe: a rename changes one field, the text stays in its room, and two people
//! renaming or creating files at once never lose each other's text (see [`index`]).
//!
//! - [`index`]: reading and changing the index of a yrs document (no IO), including a
//!   partner's save requests and who the sharer is.
//! - [`file_room`]: what a file's own room says besides its text (loaded yet; the hash of
//!   the disk's version).
//! - [`scan`]: reading a directory as the sharer's editor shares it (ignore rules, binary
//!   files, a size cap).
//! - [`disk`]: index paths on the sharer's disk, never through `..`, `.git` or a link;
//!   renames and deletions.
//! - [`merge`]: a change on disk merged into the room's unsaved edits, as line edits.
//!
//! Invariant: nothing here talks to the network; the editor carries the index's updates in
//! an ordinary room through `duet-client`.

pub mod disk;
pub mod file_room;
pub mod index;
pub mod merge;
pub mod scan;

pub use disk::DiskError;
pub use file_room::FileState;
pub use index::{
    FILES_MAP, FileEntry, FileId, FileKind, IndexError, Sharer, WORKSPACE_MAP, Workspace,
};
pub use scan::{ScanOptions, Scanned, Skipped, scan};
