//! The y-websocket protocol on the server: the framing is `duet_protocol::yws` (re-exported
//! here); what is the server's own is the translation between Yjs awareness JSON and duet's
//! typed [`PeerState`].

pub use duet_protocol::yws::*;

use duet_protocol::{CursorState, Location, PeerState, RoomName};
use serde_json::{Map, Value, json};
use yrs::StickyIndex;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

/// Turns a Yjs awareness state (as editor bindings write it) into duet's typed form.
/// `user.name` and `user.color` become name and colour; `cursor.anchor` / `cursor.head`
/// (Yjs relative positions as JSON) become encoded sticky indices; `location.room` and
/// `location.line` (a duet workspace's "who is where") are kept when they are a room name
/// and a u32.
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

/// yrs asserts (in debug builds) that client ids fit in 53 bits while decoding; input from the
/// wire must never be able to take a room task down with it, so conversions run contained.
fn contained<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    crate::contain::contained(f).ok().flatten()
}

fn sticky_from_json(v: &Value) -> Option<Vec<u8>> {
    // What duet clients receive must pass the same check as their own cursors.
    contained(|| sticky_from_json_inner(v)).filter(|b| crate::awareness::is_readable_sticky(b))
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
    contained(|| sticky_to_json_inner(bytes))
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

/// Turns duet's typed state into the JSON shape Yjs editor bindings read.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_messages() {
        // Captured from Yjs (FIELD-NOTES): step 1 of an empty doc, and an update inserting "hi".
        assert_eq!(parse_frame(&[0, 0, 1, 0]), Ok(vec![YMsg::SyncStep1(&[0])]));
        let hi = [0, 2, 0x0c, 1, 1, 0x2a, 0, 4, 1, 1, 0x74, 2, 0x68, 0x69, 0];
        assert_eq!(parse_frame(&hi), Ok(vec![YMsg::Update(&hi[3..])]));
    }

    #[test]
    fn several_messages_in_one_frame() {
        let mut frame = encode_sync(SYNC_STEP1, &[0]);
        frame.extend(encode_awareness([(7, 1, Some("{}"))]));
        frame.push(MSG_QUERY_AWARENESS as u8);
        let msgs = parse_frame(&frame).expect("parses");
        assert_eq!(msgs.len(), 3);
        assert!(matches!(msgs[2], YMsg::QueryAwareness));
    }

    #[test]
    fn truncated_and_oversized_lengths_are_errors() {
        assert!(parse_frame(&[0, 2, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(parse_frame(&[0, 2]).is_err());
        assert!(parse_frame(&[9]).is_err());
        // Awareness claiming 2^28 entries in 5 bytes.
        assert!(matches!(
            decode_awareness(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(YjsError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn awareness_round_trips() {
        let frame = encode_awareness([(1, 3, Some("{\"a\":1}")), (2, 4, None)]);
        let Ok(msgs) = parse_frame(&frame) else {
            panic!("parses")
        };
        let YMsg::Awareness(body) = msgs[0] else {
            panic!("awareness")
        };
        assert_eq!(
            decode_awareness(body),
            Ok(vec![
                YAwareness {
                    client_id: 1,
                    clock: 3,
                    json: Some("{\"a\":1}".into())
                },
                YAwareness {
                    client_id: 2,
                    clock: 4,
                    json: None
                },
            ])
        );
    }

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
        assert_eq!(back["cursor"]["head"]["tname"], "content");
        assert_eq!(back["cursor"]["head"]["assoc"], -1);
        assert_eq!(back["user"]["name"], "ada");
    }

    #[test]
    fn hostile_cursors_are_dropped_not_fatal() {
        // A client id wider than 53 bits trips a yrs debug assertion while decoding.
        let wide = r#"{"user":{"name":"x"},"cursor":{"anchor":{"item":{"client":18446744073709551615,"clock":1},"assoc":0},"head":{"tname":"content","assoc":0}}}"#;
        assert_eq!(peer_state_from_json(wide).cursor, None);
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
}
