//! Keeping the rope mirror (and positions that live in the text) in step with yrs.
//!
//! yrs reports each change to a text as a delta: retain / insert / delete, counted in
//! UTF-16 code units because the document uses `OffsetKind::Utf16`. [`apply`] replays
//! such a delta onto the [`Rope`] in O(ops · log n) and maps tracked positions through
//! it, so the mirror never has to be rebuilt from `get_string` after an edit.
//!
//! Position mapping matches a Yjs relative position with the default association
//! (`assoc >= 0`, yrs `Assoc::After`): text inserted exactly at a position lands
//! before it, text deleted around it collapses it to the deletion point.
//!
//! ```text
//!   before:  h e l | l o        insert "XY" at 3    h e l X Y | l o
//!   before:  h e [l l] o        delete 2..5         h e |
//! ```

use std::ops::Range;

use ropey::Rope;
use yrs::types::Delta;
use yrs::{Any, Out};

use crate::coords::utf16_len;

/// One step of a text delta, with lengths in UTF-16 code units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextOp {
    /// Skip over unchanged text.
    Retain(usize),
    /// Insert this text at the current position.
    Insert(String),
    /// Delete this many code units at the current position.
    Delete(usize),
}

/// Converts a yrs text delta to owned ops. `None` when the delta carries something the
/// mirror cannot hold (an embed or a nested type a Yjs peer put into the text).
pub(crate) fn ops_from_delta(delta: &[Delta]) -> Option<Vec<TextOp>> {
    delta
        .iter()
        .map(|d| match d {
            Delta::Retain(n, _) => Some(TextOp::Retain(*n as usize)),
            Delta::Deleted(n) => Some(TextOp::Delete(*n as usize)),
            Delta::Inserted(Out::Any(Any::String(s)), _) => Some(TextOp::Insert(s.to_string())),
            Delta::Inserted(_, _) => None,
        })
        .collect()
}

/// The mirror no longer matches the delta: an offset fell outside the text or inside a
/// surrogate pair (a peer split one). The caller must rebuild the rope from yrs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfStep;

/// What [`apply`] changed, in UTF-16 units of the text after the change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Applied {
    /// The span that holds every insertion and deletion point (empty for a pure delete).
    pub(crate) touched: Option<Range<usize>>,
    /// Where the last insertion ended or the last deletion happened.
    pub(crate) last_edit: Option<usize>,
}

/// Maps a position through an insertion of `len` units at `at`.
pub(crate) fn map_insert(pos: usize, at: usize, len: usize) -> usize {
    if pos >= at { pos + len } else { pos }
}

/// Maps a position through the deletion of `start..end`.
pub(crate) fn map_delete(pos: usize, start: usize, end: usize) -> usize {
    if pos <= start {
        pos
    } else if pos <= end {
        start
    } else {
        pos - (end - start)
    }
}

/// The char index at UTF-16 offset `utf16`, or `None` if it is past the end or splits a
/// surrogate pair.
pub(crate) fn char_at_utf16(rope: &Rope, utf16: usize) -> Option<usize> {
    if utf16 > rope.len_utf16_cu() {
        return None;
    }
    let c = rope.utf16_cu_to_char(utf16);
    (rope.char_to_utf16_cu(c) == utf16).then_some(c)
}

/// Widens the touched span to cover `start..end`, which is also the latest edit.
fn touch(applied: &mut Applied, start: usize, end: usize) {
    let t = applied.touched.get_or_insert(start..end);
    t.start = t.start.min(start);
    t.end = t.end.max(end);
    applied.last_edit = Some(end);
}

/// Replays `ops` onto `rope` and maps every position in `points` through them.
pub(crate) fn apply(
    rope: &mut Rope,
    ops: &[TextOp],
    points: &mut [&mut usize],
) -> Result<Applied, OutOfStep> {
    let mut at = 0usize;
    let mut applied = Applied::default();
    for op in ops {
        match op {
            TextOp::Retain(n) => at += n,
            TextOp::Insert(s) => {
                let c = char_at_utf16(rope, at).ok_or(OutOfStep)?;
                rope.insert(c, s);
                let len = utf16_len(s);
                for p in points.iter_mut() {
                    **p = map_insert(**p, at, len);
                }
                if let Some(t) = applied.touched.as_mut() {
                    // Earlier spans lie before `at`, but may end exactly on it.
                    t.end = map_insert(t.end, at, len);
                }
                touch(&mut applied, at, at + len);
                at += len;
            }
            TextOp::Delete(n) => {
                let start = char_at_utf16(rope, at).ok_or(OutOfStep)?;
                let end = char_at_utf16(rope, at + n).ok_or(OutOfStep)?;
                rope.remove(start..end);
                for p in points.iter_mut() {
                    **p = map_delete(**p, at, at + n);
                }
                if let Some(t) = applied.touched.as_mut() {
                    t.end = map_delete(t.end, at, at + n);
                }
                touch(&mut applied, at, at);
            }
        }
    }
    if at > rope.len_utf16_cu() {
        return Err(OutOfStep);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TextOp::{Delete, Insert, Retain};

    fn run(text: &str, ops: &[TextOp], mut pos: usize) -> (String, usize, Applied) {
        let mut rope = Rope::from_str(text);
        let applied = apply(&mut rope, ops, &mut [&mut pos]).expect("in step");
        (rope.to_string(), pos, applied)
    }

    #[test]
    fn insert_before_shifts_insert_at_pushes_insert_after_leaves() {
        assert_eq!(run("hello", &[Retain(1), Insert("XY".into())], 3).1, 5);
        assert_eq!(run("hello", &[Retain(3), Insert("XY".into())], 3).1, 5);
        assert_eq!(run("hello", &[Retain(4), Insert("XY".into())], 3).1, 3);
    }

    #[test]
    fn delete_spanning_collapses_to_the_deletion_point() {
        let (text, pos, applied) = run("hello", &[Retain(1), Delete(3)], 3);
        assert_eq!((text.as_str(), pos), ("ho", 1));
        assert_eq!(applied.touched, Some(1..1));
        assert_eq!(run("hello", &[Delete(2)], 4).1, 2);
        assert_eq!(run("hello", &[Retain(4), Delete(1)], 2).1, 2);
    }

    #[test]
    fn counts_utf16_units_around_astral_chars() {
        // "👍" is 2 units: retain 2 lands after it.
        let (text, pos, applied) = run("👍a", &[Retain(2), Insert("é".into())], 3);
        assert_eq!((text.as_str(), pos), ("👍éa", 4));
        assert_eq!(applied.touched, Some(2..3));
        assert_eq!(run("a👍b", &[Retain(1), Delete(2)], 4).0, "ab");
    }

    #[test]
    fn touched_span_covers_every_op_in_new_coordinates() {
        let ops = [
            Retain(1),
            Insert("XX".into()),
            Retain(2),
            Delete(1),
            Insert("Y".into()),
        ];
        let (text, _, applied) = run("abcdef", &ops, 0);
        assert_eq!(text, "aXXbcYef");
        assert_eq!(applied.touched, Some(1..6));
        assert_eq!(applied.last_edit, Some(6));
    }

    #[test]
    fn offsets_inside_a_pair_or_past_the_end_are_out_of_step() {
        let mut rope = Rope::from_str("👍");
        assert_eq!(
            apply(&mut rope, &[Retain(1), Delete(1)], &mut []),
            Err(OutOfStep)
        );
        let mut rope = Rope::from_str("ab");
        assert_eq!(apply(&mut rope, &[Retain(3)], &mut []), Err(OutOfStep));
        assert_eq!(
            apply(&mut rope, &[Retain(1), Delete(5)], &mut []),
            Err(OutOfStep)
        );
    }
}
