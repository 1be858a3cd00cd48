//! duet's headless client: one shared document kept in sync with a room on a duet server.
//!
//! [`Client::spawn`] takes a [`ClientConfig`] and a [`duet_doc::Document`] and returns a
//! [`Client`] handle plus a channel of [`Event`]s. The application edits through
//! [`Client::edit`] at any time, online or offline; a background task connects, syncs,
//! streams updates both ways, publishes our cursor, and reconnects with backoff.
//!
//! Code map:
//! - `client`: the handle the application holds.
//! - `connection`: the reconnect loop; `handshake`: the request and what a refusal means.
//! - `session`: one connection's message loop.
//! - `doc_state`: the document and its local-update bookkeeping (sequence numbers, offline
//!   edits); `peers`: the other members; `event_queue`: non-blocking event delivery.
//!
//! Invariant: the wire format is only touched through `duet_protocol`; no lock is held
//! across an `.await`.

mod backoff;
mod client;
mod color;
mod config;
mod connection;
mod doc_state;
mod error;
mod event;
mod event_queue;
mod handshake;
mod peers;
mod session;
mod shared;

pub use backoff::Backoff;
pub use client::Client;
pub use color::color_for;
pub use config::ClientConfig;
pub use error::ClientError;
pub use event::{ConnState, Event, PeerInfo};

pub use duet_doc::{Document, SaveMark, Selection, Utf16Offset};
pub use duet_protocol::{ErrorCode, Location, Role, RoomName};
