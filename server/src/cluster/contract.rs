//! The log positions of the Store contract (shared with issue 16's `store.rs`): defined here
//! until that rework lands, then replaced by `crate::store::{Seq, Stored}` with the same names
//! and meanings.

/// A position in one room's update log. `Seq(0)`: nothing appended yet. Each committed append
/// takes the next number: dense per room (1, 2, 3, ...), never reused, even across compactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// What a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// v1 updates to apply in order: the snapshot first when the read had to start from it
    /// (the rows after `after` were compacted away), then the log rows after it.
    pub updates: Vec<Vec<u8>>,
    /// Every update at or below `head` is covered by `updates` together with what the caller
    /// already held at `after`; `head` is the room's last committed Seq at the time of the read.
    pub head: Seq,
}
