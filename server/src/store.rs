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
        let updates = self
            .rooms
            .lock()
            .map(|rooms| rooms.get(room).cloned().unwrap_or_default())
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()));
        Box::pin(async move { updates })
    }

    fn append(
        &self,
        room: &RoomName,
        update: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let result = match self.rooms.lock() {
            Ok(mut rooms) => {
                let log = rooms.entry(room.clone()).or_default();
                log.push(update);
                if log.len() >= MEMORY_COMPACT_AFTER {
                    let parts: Vec<&[u8]> = log.iter().map(Vec::as_slice).collect();
                    // Merging only re-encodes updates that were already integrated; should it
                    // fail, keep the log as it is.
                    if let Ok(merged) = yrs::merge_updates_v1(&parts) {
                        *log = vec![merged];
                    }
                }
                Ok(())
            }
            Err(_) => Err(StoreError::Unavailable("memory store lock poisoned".into())),
        };
        Box::pin(async move { result })
    }
}
