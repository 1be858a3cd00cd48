//! A file changed on the sharer's disk while the room edited it (ADR 010): the change is
//! offered to the room as an edit, merged with what the room did since the two last
//! agreed, never written over it and never dropped.
//!
//! ```text
//!   base (disk and room agreed: last load or save)
//!     ├── room: edits not saved yet ──┐
//!     └── disk: git checkout, a formatter ──┴─► merge(base, room, disk) ─► edits to the room
//! ```
//!
//! Lines both sides changed differently (or changed next to each other, as git counts
//! it) are kept, both, between git's conflict markers in diff3 style (`<<<<<<< ours` is
//! the room's text, `||||||| original` the last agreed one, `>>>>>>> theirs` the disk's),
//! where both people see them. The room receives the merge as line edits ([`edits`]), not as a new text: a
//! partner typing elsewhere in the file keeps their cursor and their words.

use std::ops::Range;

/// The text the room should hold after a change on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    /// Some lines were changed on both sides: the text holds conflict markers.
    pub conflicts: bool,
}

/// Merges the disk's change (`base` to `disk`) into the room's text (`base` to `room`).
pub fn merge(base: &str, room: &str, disk: &str) -> Merged {
    if room == base || room == disk {
        return Merged {
            text: disk.to_owned(),
            conflicts: false,
        };
    }
    if disk == base {
        return Merged {
            text: room.to_owned(),
            conflicts: false,
        };
    }
    match diffy::merge(base, room, disk) {
        Ok(text) => Merged {
            text,
            conflicts: false,
        },
        Err(text) => Merged {
            text,
            conflicts: true,
        },
    }
}

/// Merges two versions with no known common ancestor (a room kept from an earlier session
/// and a disk that both changed since): the lines they share stand for the ancestor, so a
/// line only one side has is kept, and lines where they differ are kept both, between
/// markers. Nothing of either side is lost.
pub fn two_way(room: &str, disk: &str) -> Merged {
    // The ancestor: `room` without the lines that differ from `disk`.
    let mut common = room.to_owned();
    for e in edits(room, disk).iter().rev() {
        common.replace_range(e.range.clone(), "");
    }
    merge(&common, room, disk)
}

/// One replacement in a text: `range` (bytes of the old text) becomes `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub text: String,
}

/// The line edits that turn `old` into `new`, in increasing order of position and never
/// overlapping (apply them from the last to the first).
pub fn edits(old: &str, new: &str) -> Vec<Edit> {
    if old == new {
        return Vec::new();
    }
    // Byte offset of the start of each line of `old` (and of its end, last).
    let mut starts = vec![0];
    starts.extend(old.match_indices('\n').map(|(i, _)| i + 1));
    if *starts.last().unwrap_or(&0) != old.len() {
        starts.push(old.len());
    }
    let line_start = |line: usize| starts.get(line).copied().unwrap_or(old.len());
    let patch = diffy::DiffOptions::new()
        .set_context_len(0)
        .create_patch(old, new);
    let mut out = Vec::new();
    for hunk in patch.hunks() {
        let r = hunk.old_range();
        // Unified-diff numbering: the first old line is 1; an empty old range names the
        // line after which the new lines go (0: before the first).
        let first = if r.is_empty() {
            r.start()
        } else {
            r.start() - 1
        };
        let range = line_start(first)..line_start(first + r.len());
        let text: String = hunk
            .lines()
            .iter()
            .filter_map(|l| match l {
                diffy::Line::Insert(s) => Some(*s),
                _ => None,
            })
            .collect();
        out.push(Edit { range, text });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(old: &str, edits: &[Edit]) -> String {
        let mut s = old.to_owned();
        for e in edits.iter().rev() {
            s.replace_range(e.range.clone(), &e.text);
        }
        s
    }

    #[test]
    fn edits_turn_old_into_new_line_by_line() {
        let cases = [
            ("", ""),
            ("", "a\n"),
            ("a\n", ""),
            ("a\nb\nc\n", "a\nB\nc\n"),
            ("a\nb\nc\n", "x\na\nb\nc\n"),
            ("a\nb\nc\n", "a\nb\nc\nz\n"),
            ("a\nb\nc", "a\nb\nc!"),
            ("a\nb\nc", "a\nb\nc\n"),
            ("a\nb\nc\n", "a\nb\nc"),
            ("one\ntwo\nthree\nfour\n", "zero\none\nthree\nfour\nfive"),
            (
                "h\u{e9}llo\nw\u{f6}rld\n",
                "h\u{e9}llo\nw\u{f6}rld!\n\u{1f600}\n",
            ),
            ("same\n", "same\n"),
        ];
        for (old, new) in cases {
            let e = edits(old, new);
            assert_eq!(apply(old, &e), new, "{old:?} -> {new:?}: {e:?}");
            assert!(
                e.windows(2).all(|w| w[0].range.end <= w[1].range.start),
                "{e:?}"
            );
        }
        // Only the changed line is replaced.
        assert_eq!(
            edits("a\nb\nc\n", "a\nB\nc\n"),
            [Edit {
                range: 2..4,
                text: "B\n".into()
            }]
        );
    }

    #[test]
    fn a_disk_change_merges_with_the_rooms_unsaved_edits() {
        let base = "fn a() {}\n\nfn b() {}\n\nfn c() {}\n";
        // The room edited b; a formatter (the disk) changed a and c.
        let room = "fn a() {}\n\nfn b() { todo!() }\n\nfn c() {}\n";
        let disk = "fn a() {\n}\n\nfn b() {}\n\nfn c() {\n}\n";
        let m = merge(base, room, disk);
        assert!(!m.conflicts);
        assert_eq!(m.text, "fn a() {\n}\n\nfn b() { todo!() }\n\nfn c() {\n}\n");
        // Nothing unsaved in the room: the room takes the disk's text.
        assert_eq!(merge(base, base, disk).text, disk);
        // The disk did not change: the room keeps its own.
        assert_eq!(merge(base, room, base).text, room);
    }

    #[test]
    fn without_an_ancestor_nothing_of_either_side_is_lost() {
        let room = "a\nroom only\nb\nsame\n";
        let disk = "a\nb\nsame\ndisk only\n";
        let m = two_way(room, disk);
        for line in ["a\n", "room only\n", "b\n", "same\n", "disk only\n"] {
            assert!(m.text.contains(line), "{line:?} in {:?}", m.text);
        }
        assert!(!m.conflicts, "{}", m.text);
        let m = two_way("x = 1\n", "x = 2\n");
        assert!(m.conflicts && m.text.contains("x = 1") && m.text.contains("x = 2"));
        assert_eq!(two_way("same\n", "same\n").text, "same\n");
    }

    #[test]
    fn both_sides_changing_one_line_keeps_both_between_markers() {
        let m = merge("x = 1\n", "x = 2\n", "x = 3\n");
        assert!(m.conflicts);
        assert!(
            m.text.contains("x = 2") && m.text.contains("x = 3") && m.text.contains("<<<<<<<"),
            "{}",
            m.text
        );
    }
}
