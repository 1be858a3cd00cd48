//! Where rooms keep their documents: the storage interface and the in-memory store.
//!
//! A room loads its document from the store before it answers anyone, and hands every
//! integrated update to [`Store::append`]; the author is acknowledged only once that future
//! resolves, so "acknowledged" means exactly what the store promises. The in-memory store
//! promises survival until the process exits; the durable store is
//! [`crate::sqlite::SqliteStore`].

use duet_protocol::RoomName;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed, sendable future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage operation failed; the room refuses writes rather than acknowledge them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored document of room {room} is corrupt: {reason}")]
    Corrupt { room: String, reason: String },
}

/// Storage for rooms' documents.
pub trait Store: Send + Sync + 'static {
    /// Every stored update of `room`, in order (v1 encoding). Empty for a new room.
    fn load(&self, room: &RoomName) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>>;

    /// Appends one update; resolves once it is stored as durably as this store can.
    fn append(
        &self,
        room: &RoomName,
        update: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// Keeps rooms in process memory: nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    // A std Mutex: it is held only to copy or push bytes, never across an `.await`.
    rooms: Mutex<HashMap<RoomName, Vec<Vec<u8>>>>,
}

/// How many updates the memory store keeps per room before merging them into one.
const MEMORY_COMPACT_AFTER: usize = 512;

impl Store for MemoryStore {
    fn load(&self, room: &RoomName) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        let updates = self.rooms().get(room).cloned().unwrap_or_default();
        Box::pin(async move { Ok(updates) })
    }

    fn append(
        &self,
        room: &RoomName,
        update: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut rooms = self.rooms();
        let log = rooms.entry(room.clone()).or_default();
        log.push(update);
        if log.len() >= MEMORY_COMPACT_AFTER {
            // Merge through a document (contained: yrs has panicked on hostile updates, and
            // `merge_updates_v1` did here under fuzzing). Should it fail, keep the log.
            if let Some(merged) = compact(log) {
                *log = vec![merged];
            }
        }
        Box::pin(async move { Ok(()) })
    }
}

impl MemoryStore {
    /// The rooms map. A panic while it was held cannot have left it half-written (every
    /// change is a push or a whole replacement), so a poisoned lock is simply taken over:
    /// one bad room must never stop the others from storing.
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Vec<Vec<u8>>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One update equivalent to `log`, or `None` if any part does not apply.
fn compact(log: &[Vec<u8>]) -> Option<Vec<u8>> {
    use yrs::{ReadTxn, StateVector, Transact};
    let doc = crate::room::new_doc();
    for update in log {
        crate::room::apply_update(&doc, update, false).ok()?;
    }
    crate::contain::contained(|| {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    })
    .ok()
}
