//! What an awareness entry must be before a room keeps or relays it, on either protocol.
//!
//! Awareness is relayed to every member of a room, each in the form its protocol speaks, so an
//! entry is checked as its most demanding receiver will parse it. y-protocols'
//! `applyAwarenessUpdate` runs `JSON.parse` on every state and reads client ids with lib0's
//! `readVarUint`, and nothing around it catches: one entry whose state is not JSON (the frame
//! `01 06 01 89 06 01 01 53`, state `S`) kills a stock Node y-websocket client, and every
//! client that joins while the entry stands; so does a client id whose low 56 bits pass
//! 2^53 - 1 ("Integer out of Range"), and wider ones are rounded. So a state must be
//! a JSON object (or `null`, the removal), within [`MAX_STATE_BYTES`] and [`MAX_STATE_DEPTH`];
//! a duet client's typed state must have short strings and cursors that decode as sticky
//! indices. Anything else closes its sender with 1007 and never reaches the room.

use duet_guard::MAX_CLIENT_ID;
use duet_protocol::PeerState;
pub use duet_yjs::awareness::{MAX_STICKY_BYTES, is_readable_sticky};
use serde_json::Value;

/// Longest awareness state accepted, in bytes of JSON. Editor bindings write a few hundred
/// (`user` and `cursor`); this leaves room for applications' own fields.
pub const MAX_STATE_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects in a state (a cursor state nests 4 levels).
pub const MAX_STATE_DEPTH: usize = 32;
/// Longest name in a duet client's state, in bytes (64 characters of up to 4 bytes).
pub const MAX_NAME_BYTES: usize = 256;
/// Longest colour in a duet client's state, in bytes (`#rrggbb` is 7).
pub const MAX_COLOR_BYTES: usize = 64;

/// Why an awareness entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwarenessError {
    #[error("awareness client id {0} beyond 2^53 - 1 (Yjs clients cannot read it)")]
    ClientTooLarge(u64),
    #[error("awareness state of {0} bytes exceeds the {MAX_STATE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("awareness state is not JSON: {0}")]
    NotJson(String),
    #[error("awareness state must be a JSON object or null, not {0}")]
    NotObject(&'static str),
    #[error("awareness state nested deeper than {MAX_STATE_DEPTH} levels")]
    TooDeep,
    #[error("awareness name of {0} bytes exceeds the {MAX_NAME_BYTES}-byte limit")]
    NameTooLong(usize),
    #[error("awareness colour of {0} bytes exceeds the {MAX_COLOR_BYTES}-byte limit")]
    ColorTooLong(usize),
    #[error("awareness cursor {0} is not a sticky index a client can read")]
    BadCursor(&'static str),
    #[error("awareness location {0:?} is not a room name")]
    BadLocation(String),
}

/// Refuses a client id a JavaScript number cannot hold exactly.
pub fn check_client_id(client_id: u64) -> Result<(), AwarenessError> {
    if client_id > MAX_CLIENT_ID {
        return Err(AwarenessError::ClientTooLarge(client_id));
    }
    Ok(())
}

/// Checks a Yjs client's state as `JSON.parse` and the editor bindings will read it. `Ok(None)`
/// means JSON `null` (the entry is removed), `Ok(Some(json))` an object to keep and relay as it
/// came. serde_json accepts a subset of what `JSON.parse` accepts (it refuses lone surrogates
/// and numbers beyond f64), so what passes here parses in every Yjs client.
pub fn check_yjs_state(json: &str) -> Result<Option<&str>, AwarenessError> {
    if json.len() > MAX_STATE_BYTES {
        return Err(AwarenessError::TooLarge(json.len()));
    }
    // serde_json stops at 128 levels by itself, so parsing cannot exhaust the stack.
    let value: Value =
        serde_json::from_str(json).map_err(|e| AwarenessError::NotJson(e.to_string()))?;
    match &value {
        Value::Null => return Ok(None),
        Value::Object(_) => {}
        Value::Bool(_) => return Err(AwarenessError::NotObject("a boolean")),
        Value::Number(_) => return Err(AwarenessError::NotObject("a number")),
        Value::String(_) => return Err(AwarenessError::NotObject("a string")),
        Value::Array(_) => return Err(AwarenessError::NotObject("an array")),
    }
    if depth(&value) > MAX_STATE_DEPTH {
        return Err(AwarenessError::TooDeep);
    }
    Ok(Some(json))
}

/// Levels of arrays and objects (a scalar is 0, `{}` is 1).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks a duet client's typed state: short strings (relayed to Yjs clients as JSON, to duet
/// clients as they are) and cursors that are canonical sticky indices with 53-bit client ids.
pub fn check_peer_state(state: &PeerState) -> Result<(), AwarenessError> {
    if state.name.len() > MAX_NAME_BYTES {
        return Err(AwarenessError::NameTooLong(state.name.len()));
    }
    if state.color.len() > MAX_COLOR_BYTES {
        return Err(AwarenessError::ColorTooLong(state.color.len()));
    }
    if let Some(cursor) = &state.cursor {
        if !is_readable_sticky(&cursor.anchor) {
            return Err(AwarenessError::BadCursor("anchor"));
        }
        if !is_readable_sticky(&cursor.head) {
            return Err(AwarenessError::BadCursor("head"));
        }
    }
    // A location names a room (so it is short, and safe to draw); its line is a u32 that
    // JSON carries exactly.
    if let Some(at) = &state.location
        && duet_protocol::RoomName::new(&at.room).is_err()
    {
        let shown: String = at.room.chars().take(64).collect();
        return Err(AwarenessError::BadLocation(shown));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_protocol::CursorState;
    use yrs::updates::encoder::Encode;
    use yrs::{IndexScope, StickyIndex};

    #[test]
    fn yjs_states_must_be_json_objects_or_null() {
        let cursor = r##"{"user":{"name":"ada","color":"#30bced"},"cursor":{"anchor":{"type":null,"tname":null,"item":{"client":12,"clock":3},"assoc":0},"head":null}}"##;
        assert_eq!(check_yjs_state(cursor), Ok(Some(cursor)));
        assert_eq!(check_yjs_state("{}"), Ok(Some("{}")));
        assert_eq!(check_yjs_state("null"), Ok(None));
        assert_eq!(check_yjs_state(" null "), Ok(None));
        // The bug's state: one letter.
        assert!(matches!(
            check_yjs_state("S"),
            Err(AwarenessError::NotJson(_))
        ));
        for (json, what) in [
            ("1", "a number"),
            ("\"s\"", "a string"),
            ("true", "a boolean"),
            ("[]", "an array"),
        ] {
            assert_eq!(check_yjs_state(json), Err(AwarenessError::NotObject(what)));
        }
        for bad in [
            "{",
            "{\"a\":}",
            "{\"a\":1}x",
            "\u{feff}{}",
            "{\"a\":\"\\ud800\"}",
        ] {
            assert!(
                matches!(check_yjs_state(bad), Err(AwarenessError::NotJson(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn yjs_states_are_capped_in_size_and_depth() {
        let nested = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert!(check_yjs_state(&nested(MAX_STATE_DEPTH)).is_ok());
        assert_eq!(
            check_yjs_state(&nested(MAX_STATE_DEPTH + 1)),
            Err(AwarenessError::TooDeep)
        );
        // Past serde_json's own limit (128): an error, not a stack overflow.
        assert!(check_yjs_state(&nested(10_000)).is_err());
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_STATE_BYTES));
        assert_eq!(
            check_yjs_state(&big),
            Err(AwarenessError::TooLarge(big.len()))
        );
    }

    #[test]
    fn client_ids_must_fit_53_bits() {
        assert_eq!(check_client_id(777), Ok(()));
        assert_eq!(check_client_id(MAX_CLIENT_ID), Ok(()));
        assert_eq!(
            check_client_id(MAX_CLIENT_ID + 1),
            Err(AwarenessError::ClientTooLarge(MAX_CLIENT_ID + 1))
        );
    }

    fn sticky(client: u64) -> Vec<u8> {
        let id = yrs::ID::new(yrs::block::ClientID::new(client), 3);
        StickyIndex::new(IndexScope::Relative(id), yrs::Assoc::After).encode_v1()
    }

    #[test]
    fn duet_states_need_short_strings_and_readable_cursors() {
        let state = |name: &str, anchor: Vec<u8>| PeerState {
            name: name.into(),
            color: "#30bced".into(),
            cursor: Some(CursorState {
                anchor: anchor.into(),
                head: sticky(5).into(),
            }),
            location: None,
        };
        assert_eq!(check_peer_state(&state("ada", sticky(12))), Ok(()));
        let root = StickyIndex::new(
            IndexScope::Root(duet_yjs::doc::ROOT_TEXT.into()),
            yrs::Assoc::Before,
        );
        assert_eq!(check_peer_state(&state("ada", root.encode_v1())), Ok(()));
        assert_eq!(
            check_peer_state(&state(&"n".repeat(MAX_NAME_BYTES + 1), sticky(1))),
            Err(AwarenessError::NameTooLong(MAX_NAME_BYTES + 1))
        );
        // Not a sticky index, trailing bytes, a client id past 53 bits (u64::MAX is what
        // made yrs assert while decoding).
        let mut trailing = sticky(12);
        trailing.push(0);
        let wide = [
            0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0,
        ];
        for bad in [vec![9, 9, 9], trailing, wide.to_vec(), vec![]] {
            assert_eq!(
                check_peer_state(&state("ada", bad.clone())),
                Err(AwarenessError::BadCursor("anchor")),
                "{bad:?}"
            );
        }
        assert!(is_readable_sticky(&sticky(MAX_CLIENT_ID)));
    }

    #[test]
    fn a_location_must_name_a_room() {
        let at = |room: &str| PeerState {
            name: "ada".into(),
            color: "#30bced".into(),
            cursor: None,
            location: Some(duet_protocol::Location {
                room: room.into(),
                line: 7,
            }),
        };
        assert_eq!(check_peer_state(&at("team/w/files/00ab")), Ok(()));
        let long = "r".repeat(200);
        for bad in ["", "a b", "\u{1b}[2J", "/abs", long.as_str()] {
            assert!(
                matches!(
                    check_peer_state(&at(bad)),
                    Err(AwarenessError::BadLocation(_))
                ),
                "{bad:?}"
            );
        }
    }
}
