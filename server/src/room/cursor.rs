//! A room's place in its log when several nodes append to it (the cluster, ADR 011): the
//! cursor below which every row is in the room's document, and when to read the rows past it.
//!
//! ```text
//!   log   1 2 3 4 5 6 7 8 9
//!   room  ■ ■ ■ ■ ■ · ■ · ·      cursor 5: rows 1..=5 are in the document
//!                    ▲  ▲        own append 7 came back, but 6 (another node's) is not known
//!                    │  └─ kept aside (own_ahead) until the cursor reaches it
//!                    └─ a read past 5 (a gap on the bus, a reconnect, the heads check, a
//!                       digest) brings 6..=head: the cursor jumps to the read's head
//! ```
//!
//! Another node's updates arrive by the bus as well, but carry no log position: only a read of
//! the log moves the cursor past them, and what the read brings again is applied as a no-op.
//! One read at a time; a reason to read that comes during one makes another follow it. Pure
//! and synchronous: the core asks it, the task reads.

use crate::store::Seq;
use std::collections::BTreeSet;
use std::time::Duration;

/// Own appends kept past the cursor before the room reads the log to close the gap: bounds the
/// set however busy the other nodes are between two heads checks.
pub const MAX_OWN_AHEAD: usize = 4096;

/// How long after the reads that a loss on the bus asked for the room reads its log once more.
/// The bus lost a message the moment its origin published it, before that node stored it (the
/// commit window, then the commit): a read at once may come too early for it, and without this
/// second read only the next heads check would bring it.
pub const LOSS_RECHECK: Duration = Duration::from_millis(500);

/// Why a room reads its log past the cursor (counted per reason in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// A gap or a new epoch in another node's counters on the room's updates channel.
    Gap,
    /// The node heard the bus again after a break.
    Reconnect,
    /// The node fell behind the bus and dropped messages of the room.
    Lagged,
    /// The periodic check of the loaded rooms' heads found the log past the cursor.
    Heads,
    /// Another node's state vector holds something this room lacks.
    Digest,
    /// Own appends piled up past a gap the heads check has not closed yet.
    OwnAhead,
}

impl CatchUp {
    pub const ALL: [CatchUp; 6] = [
        CatchUp::Gap,
        CatchUp::Reconnect,
        CatchUp::Lagged,
        CatchUp::Heads,
        CatchUp::Digest,
        CatchUp::OwnAhead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CatchUp::Gap => "gap",
            CatchUp::Reconnect => "reconnect",
            CatchUp::Lagged => "lagged",
            CatchUp::Heads => "heads",
            CatchUp::Digest => "digest",
            CatchUp::OwnAhead => "own_ahead",
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Cursor {
    at: Seq,
    own_ahead: BTreeSet<Seq>,
    /// A read is under way.
    reading: bool,
    /// Another read was asked for during it, from this position (`Seq(0)`: the whole room).
    again: Option<Seq>,
    /// The bus lost something its origin may not have stored yet: one more read is due
    /// [`LOSS_RECHECK`] after the reads settle.
    recheck: bool,
}

impl Cursor {
    /// The room loaded everything up to `head`.
    pub fn loaded(&mut self, head: Seq) {
        self.at = head;
        self.own_ahead.clear();
        self.reading = false;
        self.again = None;
        self.recheck = false;
    }

    /// The bus lost messages (a gap, a lag, a break): besides the read it asks for now, the
    /// room reads once more later ([`Cursor::recheck`]), when their origin has stored them.
    pub fn lost(&mut self) {
        self.recheck = true;
    }

    /// Once no read is under way or asked for: `Some(after)` if a loss asks for one more read,
    /// which is then the read under way.
    pub fn recheck(&mut self) -> Option<Seq> {
        if self.reading || !std::mem::take(&mut self.recheck) {
            return None;
        }
        self.reading = true;
        Some(self.at)
    }

    pub fn at(&self) -> Seq {
        self.at
    }

    /// One of the room's own appends came back stored at `seq`. Returns whether the appends
    /// kept aside passed [`MAX_OWN_AHEAD`] (time to read the log).
    pub fn own(&mut self, seq: Seq) -> bool {
        if seq == self.at.next() {
            self.at = seq;
            self.absorb();
        } else if seq > self.at {
            self.own_ahead.insert(seq);
        }
        self.own_ahead.len() > MAX_OWN_AHEAD
    }

    fn absorb(&mut self) {
        while self.own_ahead.remove(&self.at.next()) {
            self.at = self.at.next();
        }
        // Anything at or below the cursor is in the document already.
        while self.own_ahead.first().is_some_and(|s| *s <= self.at) {
            self.own_ahead.pop_first();
        }
    }

    /// A reason to read past the cursor (or, with `whole`, the whole room: the cursor itself
    /// is in doubt). `Some(after)`: start a read after `after` now; `None`: one is under way,
    /// and another follows it.
    pub fn wants(&mut self, whole: bool) -> Option<Seq> {
        let from = if whole { Seq(0) } else { self.at };
        if self.reading {
            self.again = Some(self.again.map_or(from, |a| a.min(from)));
            return None;
        }
        self.reading = true;
        Some(from)
    }

    /// The read returned every row up to `head`. `Some(after)`: read again (asked for meanwhile).
    pub fn read(&mut self, head: Seq) -> Option<Seq> {
        self.at = self.at.max(head);
        self.absorb();
        self.next_read()
    }

    /// The read failed; the next reason to read tries again.
    pub fn failed(&mut self) -> Option<Seq> {
        self.next_read()
    }

    fn next_read(&mut self) -> Option<Seq> {
        self.reading = false;
        let again = self.again.take()?;
        self.reading = true;
        Some(if again == Seq(0) { Seq(0) } else { self.at })
    }

    #[cfg(test)]
    pub fn reading(&self) -> bool {
        self.reading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_appends_move_the_cursor_only_when_contiguous() {
        let mut c = Cursor::default();
        c.loaded(Seq(4));
        assert!(!c.own(Seq(5)));
        assert_eq!(c.at(), Seq(5));
        // 6 belongs to another node: 7 and 8 wait.
        c.own(Seq(7));
        c.own(Seq(8));
        assert_eq!(c.at(), Seq(5));
        // A read up to 6 closes the gap: the cursor runs on through 7 and 8.
        assert_eq!(c.wants(false), Some(Seq(5)));
        assert_eq!(c.read(Seq(6)), None);
        assert_eq!(c.at(), Seq(8));
        // A read that went past own appends still waiting leaves none behind.
        c.own(Seq(12));
        assert_eq!(c.wants(false), Some(Seq(8)));
        assert_eq!(c.read(Seq(13)), None);
        assert_eq!(c.at(), Seq(13));
        assert!(c.own_ahead.is_empty());
        // An old seq (a read already brought it) changes nothing.
        c.own(Seq(11));
        assert_eq!(c.at(), Seq(13));
    }

    #[test]
    fn one_read_at_a_time_and_another_after_it_when_asked_meanwhile() {
        let mut c = Cursor::default();
        c.loaded(Seq(2));
        assert_eq!(c.wants(false), Some(Seq(2)));
        assert_eq!(c.wants(false), None, "one is under way");
        assert_eq!(c.wants(false), None);
        assert_eq!(
            c.read(Seq(5)),
            Some(Seq(5)),
            "one more, from where it got to"
        );
        assert!(c.reading());
        assert_eq!(c.read(Seq(5)), None);
        assert!(!c.reading());
        // A whole-room read asked for during a read is kept as such.
        assert_eq!(c.wants(false), Some(Seq(5)));
        assert_eq!(c.wants(true), None);
        assert_eq!(c.failed(), Some(Seq(0)));
        assert_eq!(c.read(Seq(9)), None);
        assert_eq!(c.at(), Seq(9));
    }

    #[test]
    fn a_loss_asks_for_one_more_read_once_the_reads_settle() {
        let mut c = Cursor::default();
        c.loaded(Seq(3));
        assert_eq!(c.recheck(), None, "nothing was lost");
        c.lost();
        assert_eq!(c.wants(false), Some(Seq(3)));
        assert_eq!(c.recheck(), None, "not while a read is under way");
        assert_eq!(c.read(Seq(4)), None);
        assert_eq!(c.recheck(), Some(Seq(4)));
        assert!(c.reading(), "the recheck is the read under way");
        assert_eq!(c.read(Seq(6)), None);
        assert_eq!(c.recheck(), None, "once per loss");
        assert_eq!(c.at(), Seq(6));
    }

    #[test]
    fn own_appends_kept_aside_are_bounded() {
        let mut c = Cursor::default();
        c.loaded(Seq(0));
        let mut asked = false;
        for s in 0..=MAX_OWN_AHEAD as u64 {
            asked = c.own(Seq(2 + s));
        }
        assert!(asked, "a read is due once the set passes its bound");
    }
}
