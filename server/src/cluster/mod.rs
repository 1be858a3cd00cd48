//! Several nodes serving the same rooms (issue 14, ADR 011): PostgreSQL as the system of
//! record ([`pg::PgStore`]) and a [`bus::Bus`] carrying live traffic between nodes
//! ([`redis::RedisBus`]; [`bus::NoBus`] on a single node).
//!
//! ```text
//!   node A ── room copy ──append──> PgStore ──> PostgreSQL (rooms, log with a dense seq per
//!     │                                            ▲        room, snapshots, node heartbeats)
//!     └──publish──> Redis pub/sub ──> node B ──────┘ read(room, after cursor) when a gap, a
//!                   (at most once)    room copy        reconnect or a head check says so
//! ```
//!
//! The engines are built and tested on their own here; [`pg::PgStore`] implements
//! [`crate::store::Store`] and [`crate::store::RoomAdmin`].

pub mod bus;
pub mod gaps;
#[cfg(feature = "cluster")]
pub mod pg;
#[cfg(feature = "cluster")]
pub mod redis;
#[cfg(feature = "cluster")]
pub mod resp;

pub use crate::store::{Seq, Stored};
pub use duet_protocol::bus::NodeId;
