//! What a file's own room (`W/files/<id>`) says about the file besides its text: whether
//! its text was loaded yet, and which text the sharer's disk holds (ADR 010). A root map
//! [`FILE_MAP`] beside the text:
//!
//! ```text
//! duet.file: { seeded: true, disk: "9f3c0a7e12b4d5e6", save_asked: 3 }
//! ```
//!
//! - `seeded`: the room holds the file's text. The sharer's editor loads it from disk the
//!   first time anyone opens the file (a partner's new file is seeded empty by its creator);
//!   until then a partner who opens the file waits instead of typing into an empty room
//!   that the disk's text would then be added to.
//! - `disk`: a hash of the text on the sharer's disk as of the last load or save. A partner
//!   with no disk of its own tells "modified" from it; the sharer's editor, loading a room
//!   kept from an earlier session, tells from it which side changed since: the disk (a
//!   `git pull` while nobody shared), the room (edits never saved), or both.
//! - `save_asked`: the number of a partner's save request ([`crate::index::ask_save`]),
//!   written here too, after the partner's edits: the index's request travels on another
//!   connection and may arrive first, so the sharer's editor writes the file only once this
//!   room has caught up with the request (and so with the edits before it).
//!
//! Plain Yjs: any Yjs application can read it, and nothing here trusts what it finds.

use yrs::{Any, Doc, Map, Out, Transact};

/// The root map of a file room's facts.
pub const FILE_MAP: &str = "duet.file";

/// FNV-1a, 64 bits, of `chunks` as one UTF-8 string: a stable hash (the same on every
/// machine and build), enough to tell versions of one file apart.
pub fn text_hash<'a>(chunks: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for b in chunk.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// What the room says about its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileState {
    /// The room holds the file's text.
    pub seeded: bool,
    /// [`text_hash`] of the text on the sharer's disk, as of the last load or save.
    pub disk: Option<u64>,
    /// The latest save request a partner wrote here (0: none).
    pub save_asked: u64,
}

/// Reads the file's facts from its room's document.
pub fn state(doc: &Doc) -> FileState {
    let map = doc.get_or_insert_map(FILE_MAP);
    let txn = doc.transact();
    let seeded = matches!(map.get(&txn, "seeded"), Some(Out::Any(Any::Bool(true))));
    let disk = match map.get(&txn, "disk") {
        Some(Out::Any(Any::String(s))) if s.len() == 16 => u64::from_str_radix(&s, 16).ok(),
        _ => None,
    };
    let save_asked = match map.get(&txn, "save_asked") {
        Some(Out::Any(Any::Number(yrs::any::Number::Float(n)))) if n.is_finite() && n >= 0.0 => {
            n as u64
        }
        Some(Out::Any(Any::Number(yrs::any::Number::Int(n)))) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    };
    FileState {
        seeded,
        disk,
        save_asked,
    }
}

/// Records save request `n` in the file's room, after the edits it is to save.
pub fn ask_save(doc: &Doc, n: u64) {
    let map = doc.get_or_insert_map(FILE_MAP);
    let mut txn = doc.transact_mut();
    map.insert(&mut txn, "save_asked", Any::from(n as f64));
}

/// Marks the room as holding the file's text, whose disk version has hash `disk` (`None`:
/// the file is not on disk yet).
pub fn mark_seeded(doc: &Doc, disk: Option<u64>) {
    let map = doc.get_or_insert_map(FILE_MAP);
    let mut txn = doc.transact_mut();
    map.insert(&mut txn, "seeded", Any::from(true));
    if let Some(h) = disk {
        map.insert(&mut txn, "disk", Any::from(format!("{h:016x}")));
    }
}

/// Records the hash of the text the sharer's disk now holds.
pub fn set_disk(doc: &Doc, disk: u64) {
    let map = doc.get_or_insert_map(FILE_MAP);
    let mut txn = doc.transact_mut();
    map.insert(&mut txn, "disk", Any::from(format!("{disk:016x}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_chunking_does_not_matter() {
        // FNV-1a's published test vector.
        assert_eq!(text_hash([""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(text_hash(["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(text_hash(["hello ", "world"]), text_hash(["hello world"]));
        assert_ne!(text_hash(["hello"]), text_hash(["hellp"]));
    }

    #[test]
    fn seeded_and_disk_round_trip_and_foreign_shapes_are_ignored() {
        let d = Doc::with_client_id(1);
        assert_eq!(state(&d), FileState::default());
        mark_seeded(&d, None);
        assert_eq!(
            state(&d),
            FileState {
                seeded: true,
                disk: None,
                save_asked: 0
            }
        );
        set_disk(&d, 0xab);
        assert_eq!(state(&d).disk, Some(0xab));
        ask_save(&d, 3);
        assert_eq!(state(&d).save_asked, 3);
        let map = d.get_or_insert_map(FILE_MAP);
        map.insert(&mut d.transact_mut(), "disk", Any::from(12.0));
        map.insert(&mut d.transact_mut(), "seeded", Any::from("yes"));
        map.insert(&mut d.transact_mut(), "save_asked", Any::from(-4.0));
        assert_eq!(state(&d), FileState::default());
    }
}
