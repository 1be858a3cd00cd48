//! The in-memory store: rooms kept in process memory, nothing survives a restart. Appends are
//! stored at once (no future to wait for); compaction replaces a prefix of a room's log by the
//! snapshot the room hands it, as every store does.

use crate::store::{
    AdminError, Appending, BoxFuture, RoomAdmin, RoomInfo, Seq, Store, StoreError, Stored,
};
use duet_protocol::RoomName;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Keeps rooms in process memory.
#[derive(Default)]
pub struct MemoryStore {
    // A std Mutex: it is held only to copy or push bytes, never across an `.await`.
    rooms: Mutex<HashMap<RoomName, Log>>,
}

#[derive(Default)]
struct Log {
    /// The merged form of every update with seq <= its covers.
    snapshot: Option<(Vec<u8>, Seq)>,
    /// The updates after the snapshot, in order; the last one is the head.
    rows: VecDeque<(Seq, Vec<u8>)>,
    head: Seq,
}

impl Log {
    fn covers(&self) -> Seq {
        self.snapshot.as_ref().map_or(Seq(0), |(_, covers)| *covers)
    }

    fn read(&self, after: Seq) -> Stored {
        let mut updates = Vec::new();
        let from = if after < self.covers() {
            if let Some((state, covers)) = &self.snapshot {
                updates.push(state.clone());
                *covers
            } else {
                after
            }
        } else {
            after
        };
        updates.extend(
            self.rows
                .iter()
                .filter(|(seq, _)| *seq > from)
                .map(|(_, u)| u.clone()),
        );
        Stored {
            updates,
            head: self.head,
        }
    }
}

impl MemoryStore {
    /// The rooms map. A panic while it was held cannot have left it half-written (every
    /// change is a push or a whole replacement), so a poisoned lock is simply taken over:
    /// one bad room must never stop the others from storing.
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomName, Log>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn read(&self, room: &RoomName, after: Seq) -> BoxFuture<'_, Result<Stored, StoreError>> {
        let stored = self
            .rooms()
            .get(room)
            .map(|log| log.read(after))
            .unwrap_or_default();
        Box::pin(async move { Ok(stored) })
    }

    fn append(&self, room: &RoomName, update: Vec<u8>) -> Appending {
        let mut rooms = self.rooms();
        let log = match rooms.get_mut(room) {
            Some(log) => log,
            None => rooms.entry(room.clone()).or_default(),
        };
        log.head = log.head.next();
        log.rows.push_back((log.head, update));
        Appending::done(Ok(log.head))
    }

    fn compact(
        &self,
        room: &RoomName,
        state: Vec<u8>,
        covers: Seq,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut rooms = self.rooms();
        let swapped = match rooms.get_mut(room) {
            Some(log) if covers > log.covers() && covers <= log.head => {
                while log.rows.front().is_some_and(|(seq, _)| *seq <= covers) {
                    log.rows.pop_front();
                }
                log.snapshot = Some((state, covers));
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(swapped) })
    }
}

impl RoomAdmin for MemoryStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RoomInfo>, AdminError>> {
        let sorted: BTreeMap<String, RoomInfo> = self
            .rooms()
            .iter()
            .map(|(name, log)| {
                let info = RoomInfo {
                    name: name.to_string(),
                    head: log.head,
                    log_updates: log.rows.len() as u64,
                    log_bytes: log.rows.iter().map(|(_, u)| u.len() as u64).sum(),
                    snapshot_bytes: log.snapshot.as_ref().map_or(0, |(s, _)| s.len() as u64),
                };
                (info.name.clone(), info)
            })
            .collect();
        Box::pin(async move { Ok(sorted.into_values().collect()) })
    }

    fn export(&self, room: &RoomName) -> BoxFuture<'_, Result<Stored, AdminError>> {
        let stored = self
            .rooms()
            .get(room)
            .map(|log| log.read(Seq(0)))
            .ok_or_else(|| AdminError::NoSuchRoom(room.to_string()));
        Box::pin(async move { stored })
    }

    fn import(&self, room: &RoomName, state: Vec<u8>) -> BoxFuture<'_, Result<(), AdminError>> {
        let mut rooms = self.rooms();
        let result = if rooms.contains_key(room) {
            Err(AdminError::RoomExists(room.to_string()))
        } else {
            let log = rooms.entry(room.clone()).or_default();
            log.head = Seq(1);
            log.rows.push_back((Seq(1), state));
            Ok(())
        };
        Box::pin(async move { result })
    }

    fn delete(&self, room: &RoomName) -> BoxFuture<'_, Result<(), AdminError>> {
        let result = self
            .rooms()
            .remove(room)
            .map(drop)
            .ok_or_else(|| AdminError::NoSuchRoom(room.to_string()));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomName {
        RoomName::new("m").expect("valid")
    }

    fn u(b: u8) -> Vec<u8> {
        vec![b]
    }

    #[tokio::test]
    async fn seqs_are_dense_and_survive_compaction() {
        let store = MemoryStore::default();
        assert_eq!(store.read(&room(), Seq(0)).await, Ok(Stored::default()));
        for i in 1..=5u8 {
            assert_eq!(store.append(&room(), u(i)).await, Ok(Seq(u64::from(i))));
        }
        assert_eq!(
            store.read(&room(), Seq(3)).await,
            Ok(Stored {
                updates: vec![u(4), u(5)],
                head: Seq(5)
            })
        );
        // Compare-and-swap: past the head, or not past the stored snapshot, changes nothing.
        assert_eq!(store.compact(&room(), u(0), Seq(6)).await, Ok(false));
        assert_eq!(store.compact(&room(), u(30), Seq(3)).await, Ok(true));
        assert_eq!(store.compact(&room(), u(20), Seq(2)).await, Ok(false));
        assert_eq!(store.compact(&room(), u(31), Seq(3)).await, Ok(false));
        // A read from before the snapshot starts from it; one after it does not need it.
        assert_eq!(
            store.read(&room(), Seq(1)).await,
            Ok(Stored {
                updates: vec![u(30), u(4), u(5)],
                head: Seq(5)
            })
        );
        assert_eq!(
            store.read(&room(), Seq(4)).await,
            Ok(Stored {
                updates: vec![u(5)],
                head: Seq(5)
            })
        );
        // Compacting everything keeps the numbering going.
        assert_eq!(store.compact(&room(), u(50), Seq(5)).await, Ok(true));
        assert_eq!(store.append(&room(), u(6)).await, Ok(Seq(6)));
        assert_eq!(
            store.read(&room(), Seq(0)).await,
            Ok(Stored {
                updates: vec![u(50), u(6)],
                head: Seq(6)
            })
        );
    }
}
