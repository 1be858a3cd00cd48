//! Awareness between the two protocols: the JSON state Yjs editor bindings write
//! (`user: {name, color}`, `cursor: {anchor, head}` with Yjs relative positions as JSON) and
//! duet's typed [`PeerState`] (cursors as encoded sticky indices), both ways.
//!
//! Cursors are decoded by yrs, so every conversion runs contained: yrs asserts (in debug
//! builds) that client ids fit in 53 bits, and peer input must never take a room down.

use crate::contain::contained;
use duet_guard::MAX_CLIENT_ID;
use duet_protocol::{CursorState, Location, PeerState, RoomName};
use serde_json::{Map, Value, json};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{IndexScope, StickyIndex};

/// Longest encoded sticky index accepted as a cursor.
pub const MAX_STICKY_BYTES: usize = 1024;

/// Turns a Yjs awareness state into duet's typed form. `user.name` and `user.color` become
/// name and colour; `cursor.anchor` / `cursor.head` become encoded sticky indices (dropped,
/// with the rest kept, when either is not one a duet client can read); `location.room` and
/// `location.line` (a duet workspace's "who is where") are kept when they are a room name and
/// a u32.
pub fn peer_state_from_json(json: &str) -> PeerState {
    let value: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let user = value.get("user");
    let name = user
        .and_then(|u| u.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("Yjs user")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let color = user
        .and_then(|u| u.get("color"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(32)
        .collect();
    let cursor = value.get("cursor").and_then(|c| {
        let anchor = sticky_from_json(c.get("anchor")?)?;
        let head = sticky_from_json(c.get("head")?)?;
        Some(CursorState {
            anchor: anchor.into(),
            head: head.into(),
        })
    });
    let location = value.get("location").and_then(|l| {
        let room = l.get("room")?.as_str()?;
        let line = u32::try_from(l.get("line")?.as_u64()?).ok()?;
        RoomName::new(room).ok()?;
        Some(Location {
            room: room.to_owned(),
            line,
        })
    });
    PeerState {
        name,
        color,
        cursor,
        location,
    }
}

/// Turns duet's typed state into the JSON shape Yjs editor bindings read (`cursor: null` when
/// there is none, or when it does not decode).
pub fn peer_state_to_json(state: &PeerState) -> String {
    let mut obj = Map::new();
    obj.insert(
        "user".into(),
        json!({ "name": state.name, "color": state.color }),
    );
    let cursor = state.cursor.as_ref().and_then(|c| {
        Some(json!({ "anchor": sticky_to_json(&c.anchor)?, "head": sticky_to_json(&c.head)? }))
    });
    obj.insert("cursor".into(), cursor.unwrap_or(Value::Null));
    if let Some(at) = &state.location {
        obj.insert(
            "location".into(),
            json!({ "room": at.room, "line": at.line }),
        );
    }
    Value::Object(obj).to_string()
}

/// Whether `bytes` are one v1 sticky index, exactly as yrs encodes it, naming a client id that
/// fits 53 bits: what a duet client can read as a cursor.
pub fn is_readable_sticky(bytes: &[u8]) -> bool {
    if bytes.len() > MAX_STICKY_BYTES {
        return false;
    }
    contained(|| {
        let Ok(index) = StickyIndex::decode_v1(bytes) else {
            return false;
        };
        let client_ok = match index.scope() {
            IndexScope::Relative(id) | IndexScope::Nested(id) => id.client.get() <= MAX_CLIENT_ID,
            IndexScope::Root(_) => true,
        };
        // Trailing bytes or a non-canonical form would be read differently by someone.
        client_ok && index.encode_v1() == bytes
    })
    .unwrap_or(false)
}

fn sticky_from_json(v: &Value) -> Option<Vec<u8>> {
    // What duet clients receive must pass the same check as their own cursors.
    contained(|| sticky_from_json_inner(v))
        .ok()
        .flatten()
        .filter(|b| is_readable_sticky(b))
}

fn sticky_from_json_inner(v: &Value) -> Option<Vec<u8>> {
    // Yjs writes `assoc` as any integer: >= 0 sticks after, < 0 before. yrs wants 0 or -1.
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        let assoc = obj.get("assoc").and_then(Value::as_i64).unwrap_or(0);
        obj.insert("assoc".into(), json!(if assoc < 0 { -1 } else { 0 }));
        obj.retain(|_, value| !value.is_null());
    }
    let index: StickyIndex = serde_json::from_value(v).ok()?;
    Some(index.encode_v1())
}

fn sticky_to_json(bytes: &[u8]) -> Option<Value> {
    contained(|| sticky_to_json_inner(bytes)).ok().flatten()
}

fn sticky_to_json_inner(bytes: &[u8]) -> Option<Value> {
    let index = StickyIndex::decode_v1(bytes).ok()?;
    let mut v = serde_json::to_value(&index).ok()?;
    // Yjs' JSON form names all four fields.
    if let Some(obj) = v.as_object_mut() {
        for key in ["type", "tname", "item"] {
            obj.entry(key).or_insert(Value::Null);
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_translate_both_ways() {
        let yjs = r##"{"user":{"name":"ada","color":"#30bced"},"cursor":{"anchor":{"type":null,"tname":null,"item":{"client":12,"clock":3},"assoc":0},"head":{"type":null,"tname":"content","item":null,"assoc":-1}}}"##;
        let state = peer_state_from_json(yjs);
        assert_eq!(state.name, "ada");
        assert_eq!(state.color, "#30bced");
        let cursor = state.cursor.clone().expect("cursor");
        let anchor = StickyIndex::decode_v1(&cursor.anchor).expect("sticky");
        assert_eq!(
            anchor.id().map(|id| (id.client.get(), id.clock)),
            Some((12, 3))
        );
        let back: Value = serde_json::from_str(&peer_state_to_json(&state)).expect("json");
        assert_eq!(back["cursor"]["anchor"]["item"]["client"], 12);
        assert_eq!(back["cursor"]["head"]["tname"], crate::doc::ROOT_TEXT);
        assert_eq!(back["cursor"]["head"]["assoc"], -1);
        assert_eq!(back["user"]["name"], "ada");
    }

    #[test]
    fn hostile_cursors_are_dropped_not_fatal() {
        // A client id wider than 53 bits trips a yrs debug assertion while decoding.
        let wide = r#"{"user":{"name":"x"},"cursor":{"anchor":{"item":{"client":18446744073709551615,"clock":1},"assoc":0},"head":{"tname":"content","assoc":0}}}"#;
        let state = peer_state_from_json(wide);
        assert_eq!(state.cursor, None);
        assert_eq!(state.name, "x", "the rest of the state is kept");
        let state = PeerState {
            name: "x".into(),
            color: "#000000".into(),
            cursor: Some(CursorState {
                anchor: vec![
                    0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0,
                ]
                .into(),
                head: vec![9, 9, 9].into(),
            }),
            location: None,
        };
        let json: Value = serde_json::from_str(&peer_state_to_json(&state)).expect("json");
        assert_eq!(json["cursor"], Value::Null);
    }

    #[test]
    fn locations_translate_both_ways_and_bad_ones_are_dropped() {
        let yjs =
            r#"{"user":{"name":"ada"},"location":{"room":"w/files/00000000000000ab","line":41}}"#;
        let state = peer_state_from_json(yjs);
        assert_eq!(
            state.location,
            Some(Location {
                room: "w/files/00000000000000ab".into(),
                line: 41
            })
        );
        let back: Value = serde_json::from_str(&peer_state_to_json(&state)).expect("json");
        assert_eq!(back["location"]["room"], "w/files/00000000000000ab");
        assert_eq!(back["location"]["line"], 41);
        for bad in [
            r#"{"location":{"room":"../x","line":1}}"#,
            r#"{"location":{"room":"w/a","line":-1}}"#,
            r#"{"location":{"room":"w/a","line":4294967296}}"#,
            r#"{"location":{"room":7,"line":1}}"#,
            r#"{"location":"w/a"}"#,
        ] {
            assert_eq!(peer_state_from_json(bad).location, None, "{bad}");
        }
        // No location: no key, as before v2.
        let plain = peer_state_from_json(r#"{"user":{"name":"x"}}"#);
        let json: Value = serde_json::from_str(&peer_state_to_json(&plain)).expect("json");
        assert!(json.get("location").is_none());
    }

    #[test]
    fn states_without_cursor_or_user_still_translate() {
        let s = peer_state_from_json("{\"foo\":1}");
        assert_eq!(s.name, "Yjs user");
        assert_eq!(s.cursor, None);
        let s = peer_state_from_json("not json");
        assert_eq!(s.cursor, None);
    }

    fn sticky(client: u64) -> Vec<u8> {
        let id = yrs::ID::new(yrs::block::ClientID::new(client), 3);
        StickyIndex::new(IndexScope::Relative(id), yrs::Assoc::After).encode_v1()
    }

    #[test]
    fn readable_stickies_are_canonical_with_53_bit_clients() {
        assert!(is_readable_sticky(&sticky(12)));
        assert!(is_readable_sticky(&sticky(MAX_CLIENT_ID)));
        let root = StickyIndex::new(
            IndexScope::Root(crate::doc::ROOT_TEXT.into()),
            yrs::Assoc::Before,
        );
        assert!(is_readable_sticky(&root.encode_v1()));
        let mut trailing = sticky(12);
        trailing.push(0);
        let wide = [
            0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0,
        ];
        for bad in [vec![9, 9, 9], trailing, wide.to_vec(), vec![]] {
            assert!(!is_readable_sticky(&bad), "{bad:?}");
        }
    }
}
