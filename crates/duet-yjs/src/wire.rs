//! The y-websocket wire format (y-protocols over lib0), parsed and written with every length
//! checked against the bytes that are really there. The payloads (updates, state vectors)
//! stay bytes here; awareness states stay JSON text.
//!
//! Format (see y-protocols `sync.js` and `awareness.js`): a frame holds one or more messages,
//! each `varUint type` then a body. Type 0 = sync: `varUint subtype` (0 step 1, 1 step 2,
//! 2 update) + `varUint8Array` payload. Type 1 = awareness: `varUint8Array` of
//! `varUint count, {varUint clientID, varUint clock, varString JSON}*`. Type 2 = auth
//! (`varUint 0` + reason = permission denied). Type 3 = query awareness (no body).

use crate::lib0::{Lib0Error, Reader, write_var_bytes, write_var_string, write_var_uint};

pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
pub const MSG_AUTH: u64 = 2;
pub const MSG_QUERY_AWARENESS: u64 = 3;

pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// A y-websocket frame could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Lib0(#[from] Lib0Error),
    #[error("unknown message type {0}")]
    UnknownType(u64),
    #[error("unknown sync message subtype {0}")]
    UnknownSyncType(u64),
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

/// Splits a frame into its messages. Either every message parses or none is returned.
pub fn parse_frame(frame: &[u8]) -> Result<Vec<YMsg<'_>>, WireError> {
    let mut r = Reader::new(frame);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        out.push(read_message(&mut r)?);
    }
    Ok(out)
}

/// Reads one message off the front of `r`.
pub fn read_message<'a>(r: &mut Reader<'a>) -> Result<YMsg<'a>, WireError> {
    Ok(match r.var_uint()? {
        MSG_SYNC => match r.var_uint()? {
            SYNC_STEP1 => YMsg::SyncStep1(r.var_bytes()?),
            SYNC_STEP2 => YMsg::SyncStep2(r.var_bytes()?),
            SYNC_UPDATE => YMsg::Update(r.var_bytes()?),
            other => return Err(WireError::UnknownSyncType(other)),
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
        other => return Err(WireError::UnknownType(other)),
    })
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
    write_var_string(&mut out, reason);
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
pub fn decode_awareness(payload: &[u8]) -> Result<Vec<YAwareness>, WireError> {
    let mut r = Reader::new(payload);
    // Each entry takes at least 3 bytes: client id, clock, string length.
    let count = r.count(3)?;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client_id = r.var_uint()?;
        let clock = r.var_uint()? as u32;
        let state = r.var_string()?;
        out.push(YAwareness {
            client_id,
            clock,
            json: (state != "null").then(|| state.to_owned()),
        });
    }
    Ok(out)
}

/// Encodes an awareness message (type 1) with these entries; `None` is written `null` (the
/// entry is removed). The state is written as it is: callers relay only checked JSON.
pub fn encode_awareness<'a>(
    entries: impl IntoIterator<Item = (u64, u32, Option<&'a str>)>,
) -> Vec<u8> {
    encode_awareness_raw(
        entries
            .into_iter()
            .map(|(id, clock, json)| (id, u64::from(clock), json.unwrap_or("null").as_bytes())),
    )
}

/// Encodes an awareness message with states as raw bytes and clocks as they come, JSON or
/// not (for tests that play a broken or hostile client).
pub fn encode_awareness_raw<'a>(
    entries: impl IntoIterator<Item = (u64, u64, &'a [u8])>,
) -> Vec<u8> {
    let entries: Vec<_> = entries.into_iter().collect();
    let mut body = Vec::new();
    write_var_uint(&mut body, entries.len() as u64);
    for (client_id, clock, state) in entries {
        write_var_uint(&mut body, client_id);
        write_var_uint(&mut body, clock);
        write_var_bytes(&mut body, state);
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    write_var_uint(&mut out, MSG_AWARENESS);
    write_var_bytes(&mut out, &body);
    out
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
        assert_eq!(encode_sync(SYNC_UPDATE, &hi[3..]), hi);
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
        assert_eq!(parse_frame(&[9]), Err(WireError::UnknownType(9)));
        // Awareness claiming 2^28 entries in 5 bytes.
        assert!(matches!(
            decode_awareness(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(WireError::Lib0(Lib0Error::CountTooLarge { .. }))
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
}
