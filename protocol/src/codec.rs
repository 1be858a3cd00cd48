//! The codec: bincode 2.0.1 with a fixed configuration, behind this one module.
//!
//! Why bincode and why pinned: see docs/decisions/001-bincode-codec.md. Swapping the codec
//! (for `postcard` or `wincode`) means changing this file and bumping the protocol version.
//!
//! Decoding never trusts a length prefix: it borrows from the frame (so a byte string or a
//! string can be no longer than the bytes that are really there), sequences grow as elements
//! actually decode, and a global limit caps the total on top.

use crate::bus::Envelope;
use crate::messages::{ClientMsg, ServerMsg};
use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{Serialize, de::DeserializeOwned};

/// Upper bound on the bytes one decode may claim, whatever the frame says.
const DECODE_LIMIT: usize = 64 * 1024 * 1024;

type Config = Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>>;

fn config() -> Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// A frame payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message has {extra} unexpected trailing bytes")]
    TrailingBytes { extra: usize },
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for these types: every field is serializable and no
    // limit applies when encoding.
    bincode::serde::encode_to_vec(msg, config()).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (msg, used) = bincode::serde::borrow_decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(msg)
}

pub fn encode_client(msg: &ClientMsg) -> Vec<u8> {
    encode(msg)
}

pub fn decode_client(bytes: &[u8]) -> Result<ClientMsg, DecodeError> {
    decode(bytes)
}

pub fn encode_server(msg: &ServerMsg) -> Vec<u8> {
    encode(msg)
}

pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, DecodeError> {
    decode(bytes)
}

/// A message between the nodes of a cluster ([`crate::bus`]).
pub fn encode_bus(msg: &Envelope) -> Vec<u8> {
    encode(msg)
}

pub fn decode_bus(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use proptest::prelude::*;

    fn payload() -> impl Strategy<Value = Payload> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Payload)
    }

    fn peer_state() -> impl Strategy<Value = PeerState> {
        (
            ".{0,12}",
            "#[0-9a-f]{6}",
            proptest::option::of((payload(), payload())),
            proptest::option::of(("[a-z0-9/]{1,30}", any::<u32>())),
        )
            .prop_map(|(name, color, cursor, location)| PeerState {
                name,
                color,
                cursor: cursor.map(|(anchor, head)| CursorState { anchor, head }),
                location: location.map(|(room, line)| Location { room, line }),
            })
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Editor), Just(Role::Viewer)]
    }

    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            payload().prop_map(|state_vector| ClientMsg::SyncStep1 { state_vector }),
            (any::<u64>(), payload())
                .prop_map(|(seq, update)| ClientMsg::SyncStep2 { seq, update }),
            (any::<u64>(), payload()).prop_map(|(seq, update)| ClientMsg::Update { seq, update }),
            (any::<u64>(), proptest::option::of(peer_state()))
                .prop_map(|(client_id, state)| ClientMsg::Awareness { client_id, state }),
        ]
    }

    fn server_msg() -> impl Strategy<Value = ServerMsg> {
        let entry = (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            role(),
            proptest::option::of(peer_state()),
        )
            .prop_map(|(client_id, peer_id, clock, role, state)| AwarenessEntry {
                client_id,
                peer_id,
                clock,
                role,
                state,
            });
        prop_oneof![
            (any::<u64>(), role(), "[a-z/]{1,20}", ".{0,20}").prop_map(
                |(peer_id, role, room, server)| {
                    ServerMsg::Welcome {
                        peer_id,
                        role,
                        room,
                        server,
                    }
                }
            ),
            payload().prop_map(|state_vector| ServerMsg::SyncStep1 { state_vector }),
            payload().prop_map(|update| ServerMsg::SyncStep2 { update }),
            payload().prop_map(|update| ServerMsg::Update { update }),
            proptest::collection::vec(entry, 0..5)
                .prop_map(|entries| ServerMsg::Awareness { entries }),
            any::<u64>().prop_map(|seq| ServerMsg::Ack { seq }),
            (any::<u16>(), ".{0,40}").prop_map(|(c, message)| ServerMsg::Error {
                code: ErrorCode(c),
                message
            }),
        ]
    }

    proptest! {
        #[test]
        fn client_messages_round_trip(msg in client_msg()) {
            prop_assert_eq!(decode_client(&encode_client(&msg)), Ok(msg));
        }

        #[test]
        fn server_messages_round_trip(msg in server_msg()) {
            prop_assert_eq!(decode_server(&encode_server(&msg)), Ok(msg));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(msg in client_msg(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = encode_client(&msg);
            if !bytes.is_empty() {
                for (i, b) in flips {
                    let at = i.index(bytes.len());
                    bytes[at] = b;
                }
            }
            let _ = decode_client(&bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_client(&ClientMsg::SyncStep1 {
            state_vector: Payload(vec![0]),
        });
        bytes.push(0);
        assert_eq!(
            decode_client(&bytes),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn huge_length_prefix_is_refused() {
        // Variant 2 (Update), seq 0, then a byte-string length of 2^32 - 1 (varint 0xFC + u32)
        // with no bytes behind it.
        let bytes = [2u8, 0, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            decode_client(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }
}
