//! The message types of the duet protocol, in both directions.
//!
//! A session, after the WebSocket handshake agreed on `duet.v2` (v2 added
//! [`PeerState::location`]; v1 clients are refused at the handshake):
//!
//! ```text
//!   client                                   server
//!     |  <------------- Welcome{peer_id, role, room}
//!     |  <------------- SyncStep1{server state vector}   (sent once the room has loaded)
//!     |  <------------- Awareness{every peer's state}
//!     |  SyncStep1{client sv} ------------->
//!     |  SyncStep2{seq, what the server lacks} -------->  (the client's offline edits)
//!     |  <------------- SyncStep2{what the client lacks}
//!     |  <------------- Ack{seq}                          (once stored)
//!     |  Update{seq, ..} / Awareness{..}  <------>  Update{..} / Awareness{..}
//! ```
//!
//! Enum variants are encoded by index: append new variants at the end, never reorder.

use serde::{Deserialize, Serialize};

/// Opaque bytes: a yrs v1 update, a v1 state vector or an encoded sticky index.
///
/// Serialized as a length-prefixed byte string. Decoding copies from the frame itself, so a
/// length prefix can never make the decoder allocate more than the frame holds.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(pub Vec<u8>);

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Bounded-allocation (de)serialization of `String` fields: like [`Payload`], decoding borrows
/// from the frame and copies only what is there.
pub(crate) mod wire_str {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a UTF-8 string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
        }
        d.deserialize_str(V)
    }
}

/// Sequences that grow only as elements really decode: serde's default preallocates up to
/// 1 MiB from the length prefix, which a 10-byte frame must not be able to cause.
pub(crate) mod wire_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::marker::PhantomData;

    pub fn serialize<T: Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// What a connection may do in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads and writes.
    Editor,
    /// Receives everything live and may show a cursor; its updates are refused.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

/// A machine-readable error code (a number, so that old clients can still read new codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// A message could not be decoded or was not valid at this point of the session.
    pub const BAD_MESSAGE: Self = Self(1);
    /// A yrs update or state vector was malformed; nothing of it was applied.
    pub const BAD_UPDATE: Self = Self(2);
    /// The connection is a viewer and tried to change the document.
    pub const READ_ONLY: Self = Self(3);
    /// The room cannot store writes right now (storage failure); nothing was acknowledged.
    pub const STORAGE_UNAVAILABLE: Self = Self(4);
    /// An awareness entry belongs to another connection.
    pub const NOT_OWNER: Self = Self(5);
    /// The room is being reloaded or shut down; reconnect.
    pub const ROOM_UNAVAILABLE: Self = Self(6);
    /// Something failed inside the server.
    pub const INTERNAL: Self = Self(7);
}

/// One peer's cursor: two encoded yrs sticky indices (Yjs relative positions), so it stays on
/// its text while edits arrive. `anchor == head` is a plain cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    pub anchor: Payload,
    pub head: Payload,
}

/// Where a peer is working when that is another room than the one the state is published
/// in: a workspace's editors publish it in the workspace's index room, so that everyone sees
/// who is in which file (and on which line) without joining every file's room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The room of the file the peer has in front of it (a valid room name).
    #[serde(with = "wire_str")]
    pub room: String,
    /// 0-based line of the peer's cursor in that file.
    pub line: u32,
}

/// What a peer shows the others about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    #[serde(with = "wire_str")]
    pub name: String,
    /// A CSS-style colour, `#rrggbb`.
    #[serde(with = "wire_str")]
    pub color: String,
    pub cursor: Option<CursorState>,
    /// Where the peer works, when it is another room (new in `duet.v2`).
    pub location: Option<Location>,
}

/// One entry of the room's awareness, keyed by the owner's yrs client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwarenessEntry {
    /// The yrs client id of the document the peer edits.
    pub client_id: u64,
    /// The server's peer id of the connection that owns the entry.
    pub peer_id: u64,
    /// Increases with every change of this entry.
    pub clock: u32,
    /// The role of the owning connection.
    pub role: Role,
    /// `None`: the peer left or cleared its state; forget it.
    pub state: Option<PeerState>,
}

/// Client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// The client's state vector: the server answers with what the client lacks.
    SyncStep1 { state_vector: Payload },
    /// The answer to the server's step 1: what the server lacks (edits made offline).
    SyncStep2 { seq: u64, update: Payload },
    /// A local edit. `seq` increases per connection; the server acknowledges it once stored.
    Update { seq: u64, update: Payload },
    /// Set (or with `None` clear) this connection's own awareness entry.
    Awareness {
        client_id: u64,
        state: Option<PeerState>,
    },
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// First message of every session.
    Welcome {
        peer_id: u64,
        role: Role,
        #[serde(with = "wire_str")]
        room: String,
        /// The server's name and version, for diagnostics.
        #[serde(with = "wire_str")]
        server: String,
    },
    /// The room's state vector; answer with [`ClientMsg::SyncStep2`].
    SyncStep1 { state_vector: Payload },
    /// What the client lacks, answering its [`ClientMsg::SyncStep1`].
    SyncStep2 { update: Payload },
    /// Another member's edit.
    Update { update: Payload },
    /// Changed awareness entries (at join: all of them).
    Awareness {
        #[serde(with = "wire_vec")]
        entries: Vec<AwarenessEntry>,
    },
    /// Every update this connection sent with a sequence number up to `seq` is durably stored.
    Ack { seq: u64 },
    /// Something the client sent was refused; the connection stays open unless a close follows.
    Error {
        code: ErrorCode,
        #[serde(with = "wire_str")]
        message: String,
    },
}
