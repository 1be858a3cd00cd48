//! Where rooms keep their documents: the storage interface on log positions, and the
//! administration interface every backend also implements.
//!
//! A room's stored document is a log of v1 updates numbered per room ([`Seq`]), of which a
//! prefix may have been replaced by a snapshot (compaction). A room reads its document before
//! it answers anyone, hands every integrated update to [`Store::append`] and acknowledges its
//! author only once that append resolved: "acknowledged" means exactly what the store
//! promises. The in-memory store ([`crate::memory::MemoryStore`]) promises survival until the
//! process exits; the durable one is [`crate::sqlite::SqliteStore`].
//!
//! Nothing here assumes one writer per room: appends return their position, a read says up
//! to where it covers, and compaction is a compare-and-swap, so several servers can share one
//! store (the cluster work) without changing this interface.

use crate::metrics::StoreMetrics;
use duet_protocol::RoomName;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future, so the traits stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A position in one room's update log. `Seq(0)`: nothing appended yet. Each committed append
/// takes the next number: dense per room (1, 2, 3, ...), never reused, even across
/// compactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The position after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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

/// An append on its way to storage: a future that resolves with the update's [`Seq`] once it
/// is stored. A store that stores at once (the memory store) says so without a future, which
/// lets a room acknowledge without allocating or scheduling anything
/// ([`Appending::take_ready`]).
pub struct Appending(AppendingInner);

enum AppendingInner {
    Done(Option<Result<Seq, StoreError>>),
    Later(BoxFuture<'static, Result<Seq, StoreError>>),
}

impl Appending {
    /// Already stored (or already failed).
    pub fn done(result: Result<Seq, StoreError>) -> Self {
        Self(AppendingInner::Done(Some(result)))
    }

    /// Stored once `future` resolves.
    pub fn later(future: impl Future<Output = Result<Seq, StoreError>> + Send + 'static) -> Self {
        Self(AppendingInner::Later(Box::pin(future)))
    }

    /// The result, if the store already has it.
    pub fn take_ready(&mut self) -> Option<Result<Seq, StoreError>> {
        match &mut self.0 {
            AppendingInner::Done(result) => result.take(),
            AppendingInner::Later(_) => None,
        }
    }
}

impl Future for Appending {
    type Output = Result<Seq, StoreError>;

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored document of room {room} is corrupt: {reason}")]
    Corrupt { room: String, reason: String },
}

/// Storage for rooms' documents, on log positions.
pub trait Store: Send + Sync + 'static {
    /// Everything stored for `room` after `after` (`Seq(0)`: the whole room, empty for a new
    /// room).
    fn read(&self, room: &RoomName, after: Seq) -> BoxFuture<'_, Result<Stored, StoreError>>;

    /// Appends one update; the returned future resolves with its Seq once the transaction that
    /// holds it has committed as durably as the store can (SQLite: COMMIT + fsync). Appends of
    /// one room reach the log in call order, whenever their futures are polled.
    fn append(&self, room: &RoomName, update: Vec<u8>) -> Appending;

    /// Compare-and-swap compaction: keep `state` as the room's snapshot covering every update
    /// with seq <= `covers`, and drop those log rows, only if `covers` is past the stored
    /// snapshot's covers (and not past the head). `Ok(false)`: someone else's snapshot already
    /// covers as much (or `covers` is past the head, or the room is gone). When and what to
    /// compact is decided once, above the stores ([`crate::compaction`]).
    fn compact(
        &self,
        room: &RoomName,
        state: Vec<u8>,
        covers: Seq,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// The store's own figures for `/metrics` (commits, batch sizes, errors), if it keeps any.
    fn metrics(&self) -> Option<Arc<StoreMetrics>> {
        None
    }
}

/// One stored room, as `rooms list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    /// The room's last committed Seq.
    pub head: Seq,
    /// Updates in the log past the snapshot, and their bytes.
    pub log_updates: u64,
    pub log_bytes: u64,
    /// Size of the snapshot (0: none yet).
    pub snapshot_bytes: u64,
}

/// Why an administration command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("room {0} does not exist")]
    NoSuchRoom(String),
    #[error("room {0} already exists; delete it first")]
    RoomExists(String),
    #[error("not a document: {0}")]
    BadInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The administration of stored rooms, which every backend implements so that
/// `duet-server rooms list|export|import|delete` works on any of them. Reads (list, export)
/// are safe beside a running server; writes (import, delete) must not race a server that may
/// have the room loaded (the binary holds the backend's lock for them, where it has one).
/// Document formats (text, Yjs update) are converted above this, in [`crate::admin`].
pub trait RoomAdmin: Send + Sync {
    /// Every stored room, by name.
    fn list(&self) -> BoxFuture<'_, Result<Vec<RoomInfo>, AdminError>>;

    /// Everything stored for `room` (as [`Store::read`] from `Seq(0)`); `NoSuchRoom` if it
    /// was never stored.
    fn export(&self, room: &RoomName) -> BoxFuture<'_, Result<Stored, AdminError>>;

    /// Creates `room` holding `state` (one v1 update) as its log row 1. `RoomExists` if the
    /// room exists.
    fn import(&self, room: &RoomName, state: Vec<u8>) -> BoxFuture<'_, Result<(), AdminError>>;

    /// Deletes `room` and everything stored for it. `NoSuchRoom` if it does not exist.
    fn delete(&self, room: &RoomName) -> BoxFuture<'_, Result<(), AdminError>>;
}
