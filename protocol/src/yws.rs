//! The y-websocket wire format (y-protocols over lib0 encoding), parsed and written by hand
//! with every length checked against the bytes that are really there. IO-free and without
//! yrs: the payloads (updates, state vectors) stay bytes; the server, duet-bench and the tests
//! all frame y-websocket messages with this module.
//!
//! Format (see y-protocols `sync.js` and `awareness.js`): a frame holds one or more messages,
//! each `varUint type` then a body. Type 0 = sync: `varUint subtype` (0 step 1, 1 step 2,
//! 2 update) + `varUint8Array` payload. Type 1 = awareness: `varUint8Array` of
//! `varUint count, {varUint clientID, varUint clock, varString JSON}*`. Type 2 = auth
//! (`varUint 0` + reason = permission denied). Type 3 = query awareness (no body).

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

/// Reads one lib0 varUint off the front of `bytes`; returns it and the bytes after it.
pub fn read_var_uint(bytes: &[u8]) -> Result<(u64, &[u8]), YjsError> {
    let mut r = Reader::new(bytes);
    let v = r.var_uint()?;
    Ok((v, &bytes[r.pos..]))
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

/// Writes `v` as a lib0 varUint (unsigned LEB128).
pub fn write_var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes a lib0 varUint8Array: the length, then the bytes.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
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
