//! What the client tells the application: connection states, events and peer descriptions.

use crate::ClientError;
use duet_doc::{SaveMark, Selection};
use duet_protocol::{ErrorCode, Location, Role};
use std::time::{Duration, Instant};

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the WebSocket or waiting for the initial sync to finish.
    Connecting,
    /// Synced with the server; edits travel live.
    Live,
    /// Disconnected; the next attempt (1-based) starts in `retry_in`. `reason` says why the
    /// last attempt failed or the connection was lost, in words a person can act on
    /// ("connection refused", "cannot resolve host …", "TLS: …", "HTTP 503: …").
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        reason: String,
    },
    /// The connection loop has ended, after [`crate::Client::close`] or a [`Event::Fatal`].
    Stopped,
}

/// Another member of the room, as its last awareness update described it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The server's id for the peer's connection (changes when it reconnects).
    pub peer_id: u64,
    /// The yrs client id of the peer's document (stable across its reconnects).
    pub client_id: u64,
    /// Display name, stripped of control characters.
    pub name: String,
    /// `#rrggbb`; a colour derived from the name if the peer announced something else.
    pub color: String,
    pub role: Role,
    /// The peer's selection resolved against our current document; `None` if it has no
    /// cursor or its position refers to text we have not received yet.
    pub selection: Option<Selection>,
    /// Where the peer says it works, if it says (a workspace's file and line); the room
    /// name is as the peer wrote it: check it before using it.
    pub location: Option<Location>,
    /// When this peer's awareness last changed.
    pub last_change: Instant,
}

/// Something the application may want to react to.
///
/// Events are delivered in order through a bounded channel. The client never waits for the
/// application: [`Event::RemoteChange`] and [`Event::PeersChanged`] are coalesced while one is
/// still undelivered, as are [`Event::Acked`] (the latest wins) and consecutive
/// [`Event::State`]s (the latest wins). [`Event::Fatal`] is never dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The connection state changed.
    State(ConnState),
    /// Other members changed the document: its text or anything else in it, such as a save
    /// record or a workspace's index (one event may stand for many updates).
    RemoteChange,
    /// Someone's name, colour or cursor changed; read [`crate::Client::peers`].
    PeersChanged,
    PeerJoined {
        name: String,
    },
    PeerLeft {
        name: String,
    },
    /// The initial sync of a session finished; `offline_updates_merged` local updates made
    /// while disconnected went to the server with it.
    Synced {
        offline_updates_merged: usize,
    },
    /// Another member saved the text to their disk (the record in the document changed).
    Saved(SaveMark),
    /// The server stored every local update up to `seq`.
    Acked {
        seq: u64,
    },
    /// The server refused something we sent; the connection stays open.
    ServerError {
        code: ErrorCode,
        message: String,
    },
    /// The client stopped for a reason retrying cannot fix.
    Fatal(ClientError),
}
