//! Where rooms keep their documents: the storage interface and the in-memory store.
//!
//! A room loads its document from the store before it answers anyone, and hands every
//! integrated update to [`Store::append`]; the author is acknowledged only once that future
//! resolves, so "acknowledged" means exactly what the store promises. The in-memory store
//! promises survival until the process exits; the durable store is
//! [`crate::sqlite::SqliteStore`].

use crate::metrics::StoreMetrics;
use duet_protocol::RoomName;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A boxed, sendable future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An append on its way to storage: a future that resolves once the update is stored. A store
/// that stores at once (the memory store) says so without a future, which lets a room
/// acknowledge without allocating or scheduling anything ([`Appending::take_ready`]).
pub struct Appending(AppendingInner);

enum AppendingInner {
    Done(Option<Result<(), StoreError>>),
    Later(BoxFuture<'static, Result<(), StoreError>>),
}

impl Appending {
    /// Already stored (or already failed).
    pub fn done(result: Result<(), StoreError>) -> Self {
        Self(AppendingInner::Done(Some(result)))
    }

    /// Stored once `future` resolves.
    pub fn later(future: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Self {
        Self(AppendingInner::Later(Box::pin(future)))
    }

    /// The result, if the store already has it.
    pub fn take_ready(&mut self) -> Option<Result<(), StoreError>> {
        match &mut self.0 {
            AppendingInner::Done(result) => result.take(),
            AppendingInner::Later(_) => None,
        }
    }
}

impl Future for Appending {
    type Output = Result<(), StoreError>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.get_mut().0 {
            AppendingInner::Done(result) => std::task::Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(StoreError::Unavailable("append polled twice".into()))),
            ),
            AppendingInner::Later(future) => future.as_mut().poll(cx),
        }
    }
}

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

    /// Appends one update; resolves once it is stored as durably as this store can. Appends
    /// reach the store in the order of the calls, whenever their futures are polled.
    fn append(&self, room: &RoomName, update: Vec<u8>) -> Appending;

    /// Whether the store would like the room's whole state now, to replace what it holds
    /// (checked after each append). Stores that compact on their own say no.
    fn wants_snapshot(&self, _room: &RoomName) -> bool {
        false
    }

    /// The room's whole state (v1), covering every update appended to `room` so far: the
    /// store may replace them with it. Only called when [`Store::wants_snapshot`] said yes and
    /// the room's document holds nothing waiting for missing dependencies.
    fn snapshot(&self, _room: &RoomName, _state: Vec<u8>) {}

    /// The store's own figures for `/metrics` (commits, batch sizes, errors), if it keeps any.
    fn metrics(&self) -> Option<Arc<StoreMetrics>> {
        None
    }
}

/// Keeps rooms in process memory: nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    // A std Mutex: it is held only to copy or push bytes, never across an `.await`.
    rooms: Mutex<HashMap<RoomName, MemoryLog>>,
}

#[derive(Default)]
struct MemoryLog {
    updates: Vec<Vec<u8>>,
    /// Bytes in `updates` past the first (the merged one after a compaction).
    appended: usize,
}

/// How many updates the memory store keeps per room before asking the room for a snapshot
/// (and only once they hold twice the bytes of the last snapshot, so encoding a large
/// document costs in proportion to what was appended, and a room's log stays within three
/// times its snapshot).
const MEMORY_COMPACT_AFTER: usize = 1024;

impl Store for MemoryStore {
    fn load(&self, room: &RoomName) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        let updates = self
            .rooms()
            .get(room)
            .map(|log| log.updates.clone())
            .unwrap_or_default();
        Box::pin(async move { Ok(updates) })
    }

    fn append(&self, room: &RoomName, update: Vec<u8>) -> Appending {
        let mut rooms = self.rooms();
        let log = match rooms.get_mut(room) {
            Some(log) => log,
            None => rooms.entry(room.clone()).or_default(),
        };
        if !log.updates.is_empty() {
            log.appended += update.len();
        }
        log.updates.push(update);
        Appending::done(Ok(()))
    }

    fn wants_snapshot(&self, room: &RoomName) -> bool {
        self.rooms().get(room).is_some_and(|log| {
            log.updates.len() >= MEMORY_COMPACT_AFTER && log.appended >= 2 * log.updates[0].len()
        })
    }

    /// The room's live document already integrated every appended update, so its encoding
    /// replaces the log without integrating anything again (merging through a fresh
    /// document cost a second apply of every update: a quarter of the server's CPU when
    /// relaying flat out).
    fn snapshot(&self, room: &RoomName, state: Vec<u8>) {
        if let Some(log) = self.rooms().get_mut(room) {
            log.updates = vec![state];
            log.appended = 0;
        }
    }
}

impl MemoryStore {
    /// The rooms map. A panic while it was held cannot have left it half-written (every
    /// change is a push or a whole replacement), so a poisoned lock is simply taken over:
    /// one bad room must never stop the others from storing.
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, MemoryLog>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact};

    #[tokio::test]
    async fn snapshots_are_asked_for_in_proportion_to_what_was_appended() {
        let store = MemoryStore::default();
        let room = RoomName::new("m").expect("valid");
        let doc = crate::doc::new_doc();
        let text = doc.get_or_insert_text(crate::doc::ROOT_TEXT);
        text.insert(&mut doc.transact_mut(), 0, &"lorem ipsum ".repeat(10_000));
        let state = || {
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        };
        let big = state();
        store.append(&room, big.clone()).await.expect("stored");
        let edit = || {
            let before = doc.transact().state_vector();
            text.insert(&mut doc.transact_mut(), 0, "x");
            doc.transact().encode_diff_v1(&before)
        };
        let mut appended = 0;
        // 1,000 small updates are far less than twice the 120 KB base: no snapshot yet.
        for _ in 0..1_000 {
            let u = edit();
            appended += u.len();
            store.append(&room, u).await.expect("stored");
            assert!(!store.wants_snapshot(&room));
        }
        assert_eq!(store.load(&room).await.expect("loads").len(), 1_001);
        while appended < 2 * big.len() {
            assert!(!store.wants_snapshot(&room));
            let u = edit();
            appended += u.len();
            store.append(&room, u).await.expect("stored");
        }
        assert!(store.wants_snapshot(&room), "twice the base appended");
        store.snapshot(&room, state());
        assert!(!store.wants_snapshot(&room));
        let after = edit();
        store.append(&room, after).await.expect("stored");
        let loaded = store.load(&room).await.expect("loads");
        assert_eq!(loaded.len(), 2, "the snapshot and one later edit");
        let check = Doc::new();
        let t = check.get_or_insert_text(crate::doc::ROOT_TEXT);
        for u in &loaded {
            crate::doc::apply_update(&check, u, false).expect("applies");
        }
        assert_eq!(
            t.get_string(&check.transact()),
            text.get_string(&doc.transact())
        );
    }
}
