//! What the nodes of a cluster say to each other on the bus (Redis pub/sub): one [`Envelope`]
//! per message, naming the node that sent it, that node's epoch and its own counter, around a
//! room's update or awareness entries. The room is the channel's, not the envelope's.
//!
//! Encoded by [`crate::codec::encode_bus`] like every other message (bincode, lengths checked
//! against the bytes that are really there); a node of another protocol version listens on
//! other channels ([`BUS_VERSION`]), so it never has to parse these.
//!
//! Counters let a receiver see what it missed (the bus delivers at most once): `counter`
//! increases with every message its origin publishes in one epoch, whatever the room, and
//! `prev` is the counter of the origin's previous message on the same channel (0 for its
//! first since it began publishing there). A receiver that last saw counter `c` from an origin
//! on a channel and now gets `prev != c` knows messages `c+1 ..= prev` of that channel were
//! lost (at least `prev` itself), even though the counters of other rooms lie between them.

use crate::messages::{PeerState, Role, wire_str, wire_vec};
use crate::{Payload, RoomName};
use serde::{Deserialize, Serialize};

/// The bus protocol's version, part of every channel name: nodes of different versions never
/// hear each other and converge through the log instead (a rolling deploy loses nothing).
pub const BUS_VERSION: u32 = 1;

/// Longest node id, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 64;

/// A node's name in the cluster: 1 to [`MAX_NODE_ID_BYTES`] ASCII letters, digits, `.`, `_`
/// or `-` (a host name fits). Stable across restarts of the node; the epoch tells them apart.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("node id is empty")]
    Empty,
    #[error("node id of {0} bytes exceeds the {MAX_NODE_ID_BYTES}-byte limit")]
    TooLong(usize),
    #[error("node id {0:?} may only hold ASCII letters, digits, '.', '_' and '-'")]
    BadChar(String),
}

impl NodeId {
    pub fn new(id: &str) -> Result<Self, NodeIdError> {
        if id.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if id.len() > MAX_NODE_ID_BYTES {
            return Err(NodeIdError::TooLong(id.len()));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NodeIdError::BadChar(id.to_owned()));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        wire_str::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = wire_str::deserialize(d)?;
        NodeId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Which of a room's two channels a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Document updates: a lost one is repaired from the log.
    Updates,
    /// Cursors and presence: a lost one is replaced by the next renewal.
    Awareness,
}

impl Channel {
    fn tag(self) -> &'static str {
        match self {
            Channel::Updates => "u",
            Channel::Awareness => "a",
        }
    }

    /// The channel name on the bus: `{prefix}v{BUS_VERSION}:{u|a}:{room}`. Room names need no
    /// escaping: Redis channel names are binary-safe, and the room is the whole tail.
    pub fn name(self, prefix: &str, room: &RoomName) -> String {
        format!("{prefix}v{BUS_VERSION}:{}:{}", self.tag(), room.as_str())
    }

    /// The channel and room a channel name stands for, if it is one of this version's.
    pub fn parse(prefix: &str, name: &str) -> Option<(Channel, RoomName)> {
        let rest = name.strip_prefix(prefix)?;
        let rest = rest.strip_prefix(&format!("v{BUS_VERSION}:"))?;
        let (tag, room) = rest.split_once(':')?;
        let channel = match tag {
            "u" => Channel::Updates,
            "a" => Channel::Awareness,
            _ => return None,
        };
        Some((channel, RoomName::new(room).ok()?))
    }
}

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it.
    pub origin: NodeId,
    /// Which run of that node: a new epoch means it restarted and its counters began anew.
    pub epoch: u64,
    /// Increases by one with every message the origin publishes in this epoch (from 1).
    pub counter: u64,
    /// The origin's previous counter on this channel; 0: its first message here.
    pub prev: u64,
    pub body: Body,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A yrs v1 update the origin integrated (and is storing).
    Update(Payload),
    /// Changed awareness entries of the origin's members.
    Awareness(#[serde(with = "wire_vec")] Vec<BusAwareness>),
    /// The origin's state vector of the room (yrs v1), sent now and then: a receiver that
    /// lacks some of it reads the log (the backstop of anti-entropy). On the updates channel,
    /// so its counters also reveal an update lost just before a quiet spell.
    Digest(Payload),
    /// The origin has just loaded the room: nodes holding it answer with their members'
    /// awareness, so a joiner there sees every cursor at once.
    AwarenessQuery,
}

impl Body {
    /// The channel this body travels on.
    pub fn channel(&self) -> Channel {
        match self {
            Body::Update(_) | Body::Digest(_) => Channel::Updates,
            Body::Awareness(_) | Body::AwarenessQuery => Channel::Awareness,
        }
    }
}

/// One awareness entry as the origin's room holds it, in the form its member spoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusAwareness {
    /// The yrs client id the entry belongs to.
    pub client_id: u64,
    /// Increases with every change of the entry.
    pub clock: u32,
    pub role: Role,
    pub state: AwarenessState,
}

/// An awareness entry's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AwarenessState {
    /// The member left or cleared its state.
    Removed,
    /// A duet client's typed state.
    Duet(PeerState),
    /// A Yjs client's state, the JSON text it sent.
    Json(#[serde(with = "wire_str")] String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DecodeError, decode_bus, encode_bus};
    use crate::messages::{CursorState, Location};
    use proptest::prelude::*;

    fn envelope(body: Body) -> Envelope {
        Envelope {
            origin: NodeId::new("node-a.example").unwrap(),
            epoch: 7,
            counter: 42,
            prev: 40,
            body,
        }
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::new("web-1.eu_west").is_ok());
        assert_eq!(NodeId::new(""), Err(NodeIdError::Empty));
        assert_eq!(NodeId::new(&"n".repeat(65)), Err(NodeIdError::TooLong(65)));
        assert!(matches!(NodeId::new("a b"), Err(NodeIdError::BadChar(_))));
        assert!(matches!(NodeId::new("né"), Err(NodeIdError::BadChar(_))));
    }

    #[test]
    fn channel_names_round_trip_with_slashes_in_rooms() {
        let room = RoomName::new("W/files/3").unwrap();
        for channel in [Channel::Updates, Channel::Awareness] {
            let name = channel.name("duet:", &room);
            assert_eq!(
                Channel::parse("duet:", &name),
                Some((channel, room.clone()))
            );
        }
        assert_eq!(
            Channel::Updates.name("duet:", &room),
            format!("duet:v{BUS_VERSION}:u:W/files/3")
        );
        assert_eq!(Channel::parse("other:", "duet:v1:u:r"), None);
        assert_eq!(Channel::parse("duet:", "duet:v999:u:r"), None);
        assert_eq!(Channel::parse("duet:", "duet:v1:x:r"), None);
        assert_eq!(
            Channel::parse("duet:", "duet:v1:u:"),
            None,
            "not a room name"
        );
    }

    #[test]
    fn envelopes_round_trip() {
        let bodies = [
            Body::Update(Payload(vec![1, 2, 3])),
            Body::Digest(Payload(vec![1, 7, 3])),
            Body::AwarenessQuery,
            Body::Awareness(vec![
                BusAwareness {
                    client_id: 9,
                    clock: 3,
                    role: Role::Editor,
                    state: AwarenessState::Duet(PeerState {
                        name: "ana".into(),
                        color: "#ff0000".into(),
                        cursor: Some(CursorState {
                            anchor: Payload(vec![1]),
                            head: Payload(vec![2]),
                        }),
                        location: Some(Location {
                            room: "team/files/00000000000000a1".into(),
                            line: 12,
                        }),
                    }),
                },
                BusAwareness {
                    client_id: 10,
                    clock: 1,
                    role: Role::Viewer,
                    state: AwarenessState::Json("{\"user\":{}}".into()),
                },
                BusAwareness {
                    client_id: 11,
                    clock: 5,
                    role: Role::Editor,
                    state: AwarenessState::Removed,
                },
            ]),
        ];
        for body in bodies {
            let env = envelope(body);
            assert_eq!(decode_bus(&encode_bus(&env)), Ok(env));
        }
    }

    #[test]
    fn a_bad_node_id_on_the_wire_is_refused() {
        let mut bytes = encode_bus(&envelope(Body::Update(Payload(vec![]))));
        // The origin is the first field: its length, then its bytes. Make one byte a space.
        bytes[1] = b' ';
        assert!(matches!(decode_bus(&bytes), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn huge_lengths_and_trailing_bytes_are_refused() {
        let mut bytes = encode_bus(&envelope(Body::Update(Payload(vec![5; 8]))));
        bytes.push(0);
        assert_eq!(
            decode_bus(&bytes),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
        // origin "a", epoch 0, counter 0, prev 0, Update, then a length of 2^32 - 1 with
        // nothing behind it.
        let bytes = [1u8, b'a', 0, 0, 0, 0, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(decode_bus(&bytes), Err(DecodeError::Malformed(_))));
        // An awareness list claiming 2^32 - 1 entries: refused without reserving room for them.
        let bytes = [1u8, b'a', 0, 0, 0, 1, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(decode_bus(&bytes), Err(DecodeError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_bus(&bytes);
        }

        #[test]
        fn mutated_envelopes_never_panic(
            update in proptest::collection::vec(any::<u8>(), 0..64),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode_bus(&envelope(Body::Update(Payload(update))));
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            let _ = decode_bus(&bytes);
        }
    }
}
