//! duet's wire protocol: the messages a duet client and the server exchange, the codec that
//! turns them into WebSocket frame payloads, protocol versioning, room names and limits.
//!
//! This crate does no IO. It is the only place that knows the wire format: other crates build
//! and match on [`ClientMsg`] and [`ServerMsg`] and call [`codec`] to turn them into bytes.
//!
//! yrs updates, state vectors and sticky indices travel as opaque bytes ([`Payload`]); the
//! protocol never looks inside them.

// Tests may unwrap: a panic there is a failed test, which is what we want.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bus;
pub mod close;
pub mod codec;
mod messages;
mod room;
mod version;

pub use codec::{DecodeError, decode_client, decode_server, encode_client, encode_server};
pub use messages::{
    AwarenessEntry, ClientMsg, CursorState, ErrorCode, Location, Payload, PeerState, Role,
    ServerMsg,
};
pub use room::{MAX_ROOM_NAME_BYTES, RoomName, RoomNameError};
pub use version::{
    PROTOCOL, PROTOCOL_V1, PROTOCOL_V2, SUPPORTED_PROTOCOLS, SubprotocolChoice, choose_subprotocol,
    supported_list,
};

/// Default cap on one WebSocket message, in bytes. Servers make it configurable; it is large
/// enough for a 4 MB file seeded in one update.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
