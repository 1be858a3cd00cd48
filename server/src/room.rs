//! A room: one task per loaded room owns one yrs document and its awareness; connections
//! reach it through a bounded channel ([`RoomHandle`]) and hear back through their own bounded
//! queue ([`crate::out::Out`]).
//!
//! ```text
//!   conn A ──RoomCmd──┐     task: inbox, store calls, timers     ┌──Out──> conn A
//!   conn B ──RoomCmd──┼──>  RoomCore::handle(cmd, now) -> effects ┼──Out──> conn B
//!   conn C ──RoomCmd──┘        │ Append                 ▲ Stored  └──Out──> conn C
//!                              └──> Store::append ──────┘ (Ack to the author once stored)
//! ```
//!
//! The rules live in the synchronous [`RoomCore`] (`core.rs`), split by job: the document
//! (`crdt.rs`: apply, panic recovery, the orphan budget), membership and fan-out
//! (`members.rs`), awareness (`awareness.rs`), the acknowledgement pipeline (`acks.rs`). The
//! task (`task.rs`) carries out its effects. Invariants:
//! - The room loads its stored document before it handles any command, so no joiner ever
//!   sees an empty or partial document.
//! - Every update the room integrates reaches every other member, in the order integrated,
//!   or that member is closed (1013) and resyncs on reconnect. Updates are never dropped for a
//!   member that stays connected.
//! - Relay does not wait for storage; acknowledgements do.
//! - Acknowledgements are cumulative for clients ("everything up to seq is stored"), so once
//!   one append fails the room acknowledges nothing more: it tells every member, closes them
//!   (1013) and unloads. Whatever it held but could not store was relayed yet never acked, so
//!   its authors still keep it and send it again when they rejoin a room freshly loaded from
//!   storage; if storage still fails, that room refuses in the same way.
//! - An awareness entry belongs to the connection that first set it; it is removed when that
//!   connection leaves, or after 30 s without renewal.

mod acks;
mod awareness;
mod core;
mod crdt;
mod cursor;
mod members;
mod task;

pub use self::awareness::{AWARENESS_TTL, Owner, REMOTE_PEER, RemoteEntry};
pub use self::core::{Cmd, Compaction, Effect, Effects, Incoming, Publish, RoomCore};
pub use self::crdt::MAX_ORPHAN_BYTES;
pub use self::cursor::{CatchUp, MAX_OWN_AHEAD};
pub(crate) use self::task::spawn;
pub use self::task::{
    ClusterLink, Joining, MAX_PENDING_APPENDS, RoomCmd, RoomConfig, RoomGone, RoomHandle,
};

#[cfg(test)]
mod tests;
