//! Compaction, decided and computed once for every store: a room's log is replaced by a
//! snapshot when it has grown enough ([`CompactionPolicy`], tracked per room by
//! [`Schedule`]), and the snapshot is either the room's live document (when the room can
//! prove it holds every update up to the snapshot's `covers`) or the merge of everything the
//! store holds in a fresh document ([`compact_from_store`]). Stores only keep it, with the
//! compare-and-swap of [`Store::compact`].
//!
//! The cost of a compaction is proportional to the document; the policy keeps it proportional
//! to what was appended since the last one: a room compacts once its log holds
//! [`CompactionPolicy::after_rows`] rows or [`CompactionPolicy::after_bytes`] bytes, and only
//! once those also weigh twice the last snapshot (or the rows pass [`MAX_LOG_ROWS_FACTOR`]
//! times the threshold, which bounds what a load replays). Twice, not half (the SQLite store's
//! old rule): the snapshot is now encoded on the room's task, and at half a room relaying flat
//! out spent 2.4 times more on encoding its document than the memory store's old rule (twice)
//! cost; a log twice its snapshot replays in a few milliseconds more on load.

use crate::contain::contained;
use crate::doc::{apply_update, new_doc};
use crate::store::{Seq, Store, StoreError, Stored};
use duet_protocol::RoomName;
use std::sync::Arc;
use yrs::{ReadTxn, StateVector, Transact};

/// When a room's log is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Compact once the log holds this many rows past the snapshot...
    pub after_rows: u64,
    /// ...or this many bytes (in both cases only once the log also weighs twice the snapshot).
    pub after_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            after_rows: 1000,
            after_bytes: 1 << 20,
        }
    }
}

/// A log this many times [`CompactionPolicy::after_rows`] is compacted whatever the snapshot's
/// size, which bounds the rows a load replays.
pub const MAX_LOG_ROWS_FACTOR: u64 = 64;

/// What a room's log holds past its snapshot, as the room counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSize {
    pub rows: u64,
    pub bytes: u64,
    pub snapshot_bytes: u64,
}

impl CompactionPolicy {
    /// Whether a log of this size should be compacted now.
    pub fn due(&self, log: &LogSize) -> bool {
        let big_enough = log.bytes >= log.snapshot_bytes.saturating_mul(2)
            || log.rows >= self.after_rows.saturating_mul(MAX_LOG_ROWS_FACTOR);
        (log.rows >= self.after_rows || log.bytes >= self.after_bytes) && big_enough && log.rows > 1
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The store kept the snapshot (false: another one already covered as much).
    pub stored: bool,
    pub state_bytes: usize,
}

/// Why a compaction failed; the log is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored document of room {room} does not merge: {reason}")]
    Damaged { room: String, reason: String },
    /// Some stored updates wait for dependencies the log does not hold: their encoding would
    /// leave them out, so nothing is compacted.
    #[error("room {0} holds updates waiting for missing dependencies")]
    Incomplete(String),
}

/// One room's compaction bookkeeping: how much its log grew, whether a compaction is under
/// way, when to try again after a failure.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: CompactionPolicy,
    log: LogSize,
    /// The log as it was counted when the compaction under way started.
    in_flight: Option<LogSize>,
    /// After a failure: try again once the log holds this many rows.
    retry_at_rows: u64,
}

impl Schedule {
    pub fn new(policy: CompactionPolicy) -> Self {
        Self {
            policy,
            log: LogSize::default(),
            in_flight: None,
            retry_at_rows: 0,
        }
    }

    /// Counts what a read returned. A read does not say which update is the snapshot; the
    /// first one is (when there is one), and is counted as such.
    pub fn loaded(&mut self, stored: &Stored) {
        let first = stored.updates.first().map_or(0, |u| u.len() as u64);
        let total: u64 = stored.updates.iter().map(|u| u.len() as u64).sum();
        self.log = LogSize {
            rows: (stored.updates.len() as u64).saturating_sub(1),
            bytes: total - first,
            snapshot_bytes: first,
        };
        self.in_flight = None;
        self.retry_at_rows = 0;
    }

    /// One more row stored.
    pub fn appended(&mut self, bytes: usize) {
        self.log.rows += 1;
        self.log.bytes += bytes as u64;
    }

    /// Whether to start a compaction now.
    pub fn due(&self) -> bool {
        self.in_flight.is_none()
            && self.log.rows >= self.retry_at_rows
            && self.policy.due(&self.log)
    }

    /// A compaction started, covering the log as counted now.
    pub fn started(&mut self) {
        self.in_flight = Some(self.log);
    }

    /// The compaction under way ended.
    pub fn finished(&mut self, result: Result<Compacted, &CompactError>) {
        let Some(at_start) = self.in_flight.take() else {
            return;
        };
        match result {
            Ok(done) => {
                // What it covered left the log (ours, or someone else's covering as much).
                self.log.rows -= at_start.rows.min(self.log.rows);
                self.log.bytes -= at_start.bytes.min(self.log.bytes);
                if done.stored {
                    self.log.snapshot_bytes = done.state_bytes as u64;
                }
            }
            Err(_) => self.retry_at_rows = self.log.rows.saturating_mul(2),
        }
    }

    pub fn log(&self) -> LogSize {
        self.log
    }
}

/// Applies stored updates (a read's, in order) to a fresh document, as a room loads them.
pub fn merge(room: &RoomName, updates: &[Vec<u8>]) -> Result<yrs::Doc, CompactError> {
    let doc = new_doc();
    for update in updates {
        apply_update(&doc, update, false).map_err(|reason| CompactError::Damaged {
            room: room.to_string(),
            reason: reason.to_string(),
        })?;
    }
    Ok(doc)
}

/// The whole document as one v1 update, or `Incomplete` when some of it waits for missing
/// dependencies (the encoding would leave that part out).
pub fn encode_state(room: &RoomName, doc: &yrs::Doc) -> Result<Vec<u8>, CompactError> {
    let encoded = contained(|| {
        let txn = doc.transact();
        (!txn.has_missing_updates()).then(|| txn.encode_state_as_update_v1(&StateVector::default()))
    });
    match encoded {
        Ok(Some(state)) => Ok(state),
        Ok(None) => Err(CompactError::Incomplete(room.to_string())),
        Err(_) => Err(CompactError::Damaged {
            room: room.to_string(),
            reason: "yrs panicked while encoding the document".into(),
        }),
    }
}

/// Compacts `room` from what the store holds: reads it all, merges it in a fresh document off
/// the async threads, and keeps the result as the snapshot covering the read's head.
pub async fn compact_from_store(
    store: Arc<dyn Store>,
    room: RoomName,
) -> Result<Compacted, CompactError> {
    let stored = store.read(&room, Seq(0)).await?;
    let covers = stored.head;
    if covers == Seq(0) {
        return Ok(Compacted {
            stored: false,
            state_bytes: 0,
        });
    }
    let name = room.clone();
    let state =
        tokio::task::spawn_blocking(move || encode_state(&name, &merge(&name, &stored.updates)?))
            .await
            .map_err(|e| CompactError::Damaged {
                room: room.to_string(),
                reason: format!("the merge stopped: {e}"),
            })??;
    let state_bytes = state.len();
    let stored = store.compact(&room, state, covers).await?;
    Ok(Compacted {
        stored,
        state_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(rows: u64, bytes: u64, snapshot_bytes: u64) -> LogSize {
        LogSize {
            rows,
            bytes,
            snapshot_bytes,
        }
    }

    #[test]
    fn compactions_cost_in_proportion_to_what_was_appended() {
        let p = CompactionPolicy {
            after_rows: 10,
            after_bytes: 1 << 20,
        };
        // (log, due): rows or bytes past the threshold, and at least twice the snapshot.
        let table = [
            (log(9, 90, 0), false),
            (log(10, 100, 0), true),
            (log(1, 2 << 20, 0), false), // one row is nothing to merge
            (log(2, 2 << 20, 0), true),
            (log(10, 199, 100), false), // a large snapshot: not for every few rows
            (log(10, 200, 100), true),
            (log(639, 639, 1 << 20), false),
            (log(640, 640, 1 << 20), true), // MAX_LOG_ROWS_FACTOR x after_rows
        ];
        for (l, due) in table {
            assert_eq!(p.due(&l), due, "{l:?}");
        }
    }

    #[test]
    fn a_schedule_counts_from_the_last_snapshot_and_backs_off_after_failures() {
        let mut s = Schedule::new(CompactionPolicy {
            after_rows: 3,
            after_bytes: 1 << 20,
        });
        s.loaded(&Stored {
            updates: vec![vec![0; 5], vec![0; 2]],
            head: Seq(9),
        });
        assert_eq!(s.log(), log(1, 2, 5));
        s.appended(2);
        assert!(!s.due(), "2 rows");
        s.appended(2);
        assert!(!s.due(), "6 bytes are less than twice the 5-byte snapshot");
        s.appended(4);
        assert!(s.due());
        s.started();
        assert!(!s.due(), "one at a time");
        s.appended(2);
        s.finished(Ok(Compacted {
            stored: true,
            state_bytes: 2,
        }));
        assert_eq!(
            s.log(),
            log(1, 2, 2),
            "what came after the start stays counted"
        );
        for _ in 0..3 {
            s.appended(2);
        }
        assert!(s.due());
        s.started();
        s.finished(Err(&CompactError::Incomplete("r".into())));
        assert!(!s.due(), "after a failure, wait until the log doubles");
        for _ in 0..4 {
            s.appended(2);
        }
        assert!(s.due());
    }

    #[tokio::test]
    async fn compacting_from_the_store_keeps_the_document() {
        use crate::memory::MemoryStore;
        use yrs::Text;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let room = RoomName::new("c").expect("valid");
        let doc = new_doc();
        let text = doc.get_or_insert_text(crate::doc::ROOT_TEXT);
        for word in ["one ", "two ", "three"] {
            let before = doc.transact().state_vector();
            let len = yrs::Text::len(&text, &doc.transact());
            text.insert(&mut doc.transact_mut(), len, word);
            store
                .append(&room, doc.transact().encode_diff_v1(&before))
                .await
                .expect("stored");
        }
        let done = compact_from_store(store.clone(), room.clone())
            .await
            .expect("compacts");
        assert!(done.stored);
        let stored = store.read(&room, Seq(0)).await.expect("reads");
        assert_eq!(stored.updates.len(), 1, "one snapshot, no log");
        assert_eq!(stored.head, Seq(3));
        let merged = merge(&room, &stored.updates).expect("merges");
        assert_eq!(crate::doc::text_of(&merged), "one two three");
        // Again, with nothing new: the snapshot already covers as much.
        let again = compact_from_store(store, room).await.expect("runs");
        assert!(!again.stored);
    }
}
