//! The y-websocket wire format (y-protocols, lib0 encoding), parsed and written by hand with
//! every length checked against the bytes that are really there, and the translation between
//! Yjs awareness JSON and duet's typed [`PeerState`].
//!
//! Format (see y-protocols `sync.js` and `awareness.js`): a frame holds one or more messages,
//! each `varUint type` then a body. Type 0 = sync: `varUint subtype` (0 step 1, 1 step 2,
//! 2 update) + `varUint8Array` payload. Type 1 = awareness: `varUint8Array` of
//! `varUint count, {varUint clientID, varUint clock, varString JSON}*`. Type 2 = auth
//! (`varUint 0` + reason = permission denied). Type 3 = query awareness (no body).

use duet_protocol::{CursorState, PeerState};
use serde_json::{Map, Value, json};
use yrs::StickyIndex;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
pub const MSG_AUTH: u64 = 2;
pub const MSG_QUERY_AWARENESS: u64 = 3;

pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// A y-websocket frame could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YjsError {
    #[error("message truncated at byte {0}")]
    Truncated(usize),
    #[error("varint too long at byte {0}")]
    VarintOverflow(usize),
    #[error("unknown message type {0}")]
    UnknownType(u64),
    #[error("unknown sync message subtype {0}")]
    UnknownSyncType(u64),
    #[error("awareness entry count {count} cannot fit in {bytes} bytes")]
    CountTooLarge { count: u64, bytes: usize },
    #[error("awareness state is not UTF-8")]
    BadUtf8,
}

/// One message of a y-websocket frame, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub enum YMsg<'a> {
    SyncStep1(&'a [u8]),
    SyncStep2(&'a [u8]),
    Update(&'a [u8]),
    Awareness(&'a [u8]),
    Auth,
    QueryAwareness,
}

/// A bounds-checked lib0 reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn var_uint(&mut self) -> Result<u64, YjsError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(YjsError::Truncated(self.pos));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(YjsError::VarintOverflow(self.pos))
    }

    fn var_bytes(&mut self) -> Result<&'a [u8], YjsError> {
        let len = self.var_uint()?;
        if len > self.remaining() as u64 {
            return Err(YjsError::Truncated(self.pos));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }
}

/// Splits a frame into its messages. Either every message parses or none is returned.
pub fn parse_frame(frame: &[u8]) -> Result<Vec<YMsg<'_>>, YjsError> {
    let mut r = Reader::new(frame);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let msg = match r.var_uint()? {
            MSG_SYNC => match r.var_uint()? {
                SYNC_STEP1 => YMsg::SyncStep1(r.var_bytes()?),
                SYNC_STEP2 => YMsg::SyncStep2(r.var_bytes()?),
                SYNC_UPDATE => YMsg::Update(r.var_bytes()?),
                other => return Err(YjsError::UnknownSyncType(other)),
            },
            MSG_AWARENESS => YMsg::Awareness(r.var_bytes()?),
            MSG_AUTH => {
                // Clients have no business sending auth messages; skip the body.
                let _ = r.var_uint()?;
                if r.remaining() > 0 {
                    let _ = r.var_bytes()?;
                }
                YMsg::Auth
            }
            MSG_QUERY_AWARENESS => YMsg::QueryAwareness,
            other => return Err(YjsError::UnknownType(other)),
        };
        out.push(msg);
    }
    Ok(out)
}

fn write_var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A sync message (`subtype` 0, 1 or 2) carrying `payload`.
pub fn encode_sync(subtype: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    write_var_uint(&mut out, MSG_SYNC);
    write_var_uint(&mut out, subtype);
    write_var_bytes(&mut out, payload);
    out
}

/// An auth message refusing the client: y-websocket shows the reason and stops.
pub fn encode_permission_denied(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 4);
    write_var_uint(&mut out, MSG_AUTH);
    write_var_uint(&mut out, 0);
    write_var_bytes(&mut out, reason.as_bytes());
    out
}

/// One entry of an awareness update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YAwareness {
    pub client_id: u64,
    pub clock: u32,
    /// The JSON state, or `None` for `"null"` (the client left).
    pub json: Option<String>,
}

/// Decodes an awareness update, checking the entry count against the bytes first (a 5-byte
/// message claiming 2^28 entries must not allocate for them).
pub fn decode_awareness(payload: &[u8]) -> Result<Vec<YAwareness>, YjsError> {
    let mut r = Reader::new(payload);
    let count = r.var_uint()?;
    // Each entry takes at least 3 bytes: client id, clock, string length.
    if count > (r.remaining() / 3) as u64 {
        return Err(YjsError::CountTooLarge {
            count,
            bytes: r.remaining(),
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client_id = r.var_uint()?;
        let clock = r.var_uint()? as u32;
        let state = std::str::from_utf8(r.var_bytes()?).map_err(|_| YjsError::BadUtf8)?;
        out.push(YAwareness {
            client_id,
            clock,
            json: (state != "null").then(|| state.to_owned()),
        });
    }
    Ok(out)
}

/// Encodes an awareness message (type 1) with these entries.
pub fn encode_awareness<'a>(
    entries: impl IntoIterator<Item = (u64, u32, Option<&'a str>)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    let entries: Vec<_> = entries.into_iter().collect();
    write_var_uint(&mut body, entries.len() as u64);
    for (client_id, clock, json) in entries {
        write_var_uint(&mut body, client_id);
        write_var_uint(&mut body, u64::from(clock));
        write_var_bytes(&mut body, json.unwrap_or("null").as_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    write_var_uint(&mut out, MSG_AWARENESS);
    write_var_bytes(&mut out, &body);
    out
}

/// Turns a Yjs awareness state (as editor bindings write it) into duet's typed form.
/// `user.name` and `user.color` become name and colour; `cursor.anchor` / `cursor.head`
/// (Yjs relative positions as JSON) become encoded sticky indices.
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
    PeerState {
        name,
        color,
        cursor,
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
        };
        let json: Value = serde_json::from_str(&peer_state_to_json(&state)).expect("json");
        assert_eq!(json["cursor"], Value::Null);
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
