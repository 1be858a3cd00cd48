//! The two wire protocols the bench speaks, reduced to what it needs: frame an update, a state
//! vector or a sync answer, and classify an incoming frame.
//!
//! duet frames go through `duet_protocol`'s codec, y-websocket frames through `duet_yjs::wire`
//! (one place knows each encoding); the reader side only classifies a frame and borrows its
//! payload, never copying an update through yrs.

use anyhow::Context;
use duet_protocol::{ClientMsg, Payload, ServerMsg};
use duet_yjs::lib0::{self, Reader};
use duet_yjs::wire as yws;

/// A v1 state vector of an empty document.
pub const EMPTY_SV: &[u8] = &[0];
/// A v1 update that changes nothing.
pub const EMPTY_UPDATE: &[u8] = &[0, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// duet's own protocol (subprotocol `duet.v2`, bincode frames, acknowledgements).
    Duet,
    /// The y-websocket protocol (no subprotocol), as Yjs clients speak it.
    Yjs,
    /// Hocuspocus's protocol: y-websocket messages, each prefixed with the document's name
    /// (lib0 varString), after an auth message; the document is named in every message, not
    /// in the URL. Only the `team` scenario speaks it.
    Hocuspocus,
}

/// What a server frame means to the bench.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The server's state vector.
    SyncStep1(&'a [u8]),
    /// The answer to our state vector: what we lack.
    SyncStep2(&'a [u8]),
    /// Another member's edit.
    Update(&'a [u8]),
    /// duet only: our updates up to `seq` are stored.
    Ack(u64),
    /// duet only: a refusal.
    Error(String),
    /// Welcome, awareness and anything else the bench ignores.
    Other,
}

/// A decoded duet frame, which owns its bytes; [`Incoming`] borrows from it.
#[derive(Debug)]
pub enum Decoded {
    Duet(ServerMsg),
    Yjs,
}

impl Protocol {
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Protocol::Duet => Some(duet_protocol::PROTOCOL),
            Protocol::Yjs | Protocol::Hocuspocus => None,
        }
    }

    /// An incremental update. `seq` numbers a duet connection's updates (ignored by Yjs).
    pub fn update(self, seq: u64, update: &[u8]) -> Vec<u8> {
        match self {
            Protocol::Duet => duet_protocol::encode_client(&ClientMsg::Update {
                seq,
                update: Payload(update.to_vec()),
            }),
            Protocol::Yjs | Protocol::Hocuspocus => yjs_sync(2, update),
        }
    }

    pub fn step1(self, sv: &[u8]) -> Vec<u8> {
        match self {
            Protocol::Duet => duet_protocol::encode_client(&ClientMsg::SyncStep1 {
                state_vector: Payload(sv.to_vec()),
            }),
            Protocol::Yjs | Protocol::Hocuspocus => yjs_sync(0, sv),
        }
    }

    pub fn step2(self, seq: u64, update: &[u8]) -> Vec<u8> {
        match self {
            Protocol::Duet => duet_protocol::encode_client(&ClientMsg::SyncStep2 {
                seq,
                update: Payload(update.to_vec()),
            }),
            Protocol::Yjs | Protocol::Hocuspocus => yjs_sync(1, update),
        }
    }

    /// Decodes what needs decoding; pass the result to [`Protocol::classify`].
    pub fn decode(self, frame: &[u8]) -> anyhow::Result<Decoded> {
        match self {
            Protocol::Duet => Ok(Decoded::Duet(
                duet_protocol::decode_server(frame).context("decoding a duet frame")?,
            )),
            Protocol::Yjs | Protocol::Hocuspocus => Ok(Decoded::Yjs),
        }
    }

    pub fn classify<'a>(
        self,
        decoded: &'a Decoded,
        frame: &'a [u8],
    ) -> anyhow::Result<Incoming<'a>> {
        match decoded {
            Decoded::Duet(msg) => Ok(match msg {
                ServerMsg::SyncStep1 { state_vector } => Incoming::SyncStep1(state_vector),
                ServerMsg::SyncStep2 { update } => Incoming::SyncStep2(update),
                ServerMsg::Update { update } => Incoming::Update(update),
                ServerMsg::Ack { seq } => Incoming::Ack(*seq),
                ServerMsg::Error { code, message } => {
                    Incoming::Error(format!("error {}: {message}", code.0))
                }
                ServerMsg::Welcome { .. } | ServerMsg::Awareness { .. } => Incoming::Other,
            }),
            Decoded::Yjs if self == Protocol::Hocuspocus => classify_hocuspocus(frame),
            Decoded::Yjs => classify_yjs(frame),
        }
    }

    /// What goes on the wire for `frame` (built by the methods above) in document `doc`:
    /// Hocuspocus prefixes every message with the document's name; the others send it as is.
    pub fn wrap(self, doc: &str, frame: Vec<u8>) -> Vec<u8> {
        if self != Protocol::Hocuspocus {
            return frame;
        }
        let mut out = Vec::with_capacity(doc.len() + frame.len() + 4);
        lib0::write_var_string(&mut out, doc);
        out.extend_from_slice(&frame);
        out
    }

    /// Hocuspocus: the authentication message a client sends first (type 2, token subtype 0,
    /// an empty token: the bench's server has no `onAuthenticate` hook).
    pub fn hocuspocus_auth(doc: &str) -> Vec<u8> {
        Protocol::Hocuspocus.wrap(doc, vec![2, 0, 0])
    }
}

/// Hocuspocus message types (`MessageType` in @hocuspocus/server 4.7): sync and sync reply
/// carry y-websocket sync messages; the rest (awareness, auth, sync status) the bench ignores.
fn classify_hocuspocus(frame: &[u8]) -> anyhow::Result<Incoming<'_>> {
    let mut r = Reader::new(frame);
    r.var_bytes().context("reading the document name")?;
    match r.var_uint()? {
        0 | 4 => classify_sync(r),
        _ => Ok(Incoming::Other),
    }
}

fn yjs_sync(subtype: u8, payload: &[u8]) -> Vec<u8> {
    yws::encode_sync(u64::from(subtype), payload)
}

fn classify_yjs(frame: &[u8]) -> anyhow::Result<Incoming<'_>> {
    let mut r = Reader::new(frame);
    if r.var_uint()? != yws::MSG_SYNC {
        return Ok(Incoming::Other);
    }
    classify_sync(r)
}

/// A y-protocols sync message after its message type: subtype, then the payload.
fn classify_sync(mut r: Reader<'_>) -> anyhow::Result<Incoming<'_>> {
    let sub = r.var_uint()?;
    let payload = r.var_bytes().context("reading a sync message")?;
    Ok(match sub {
        yws::SYNC_STEP1 => Incoming::SyncStep1(payload),
        yws::SYNC_STEP2 => Incoming::SyncStep2(payload),
        yws::SYNC_UPDATE => Incoming::Update(payload),
        _ => Incoming::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yjs_frames_match_captured_bytes() {
        // FIELD-NOTES: step 1 of an empty doc, and an update inserting "hi".
        assert_eq!(Protocol::Yjs.step1(EMPTY_SV), vec![0, 0, 1, 0]);
        let hi = [
            0x01, 0x01, 0x2a, 0x00, 0x04, 0x01, 0x01, 0x74, 0x02, 0x68, 0x69, 0x00,
        ];
        let frame = Protocol::Yjs.update(0, &hi);
        assert_eq!(frame[..3], [0, 2, 12]);
        let d = Protocol::Yjs.decode(&frame).expect("decodes");
        assert_eq!(
            Protocol::Yjs.classify(&d, &frame).expect("classifies"),
            Incoming::Update(&hi)
        );
        let long = vec![7u8; 300];
        let frame = Protocol::Yjs.step2(0, &long);
        assert_eq!(
            Protocol::Yjs
                .classify(&Decoded::Yjs, &frame)
                .expect("classifies"),
            Incoming::SyncStep2(&long)
        );
        assert!(classify_yjs(&[0, 2, 5, 1]).is_err());
    }

    #[test]
    fn hocuspocus_frames_carry_the_document_name() {
        let frame = Protocol::Hocuspocus.wrap("ab", Protocol::Hocuspocus.update(0, &[7, 7]));
        assert_eq!(frame, vec![2, b'a', b'b', 0, 2, 2, 7, 7]);
        let d = Protocol::Hocuspocus.decode(&frame).expect("decodes");
        assert_eq!(
            Protocol::Hocuspocus
                .classify(&d, &frame)
                .expect("classifies"),
            Incoming::Update(&[7, 7])
        );
        // A sync reply (type 4) is a sync message too; a sync status (8) is not.
        let reply = [2, b'a', b'b', 4, 1, 1, 9];
        assert_eq!(
            classify_hocuspocus(&reply).expect("ok"),
            Incoming::SyncStep2(&[9])
        );
        assert_eq!(
            classify_hocuspocus(&[1, b'x', 8, 1]).expect("ok"),
            Incoming::Other
        );
        assert_eq!(
            Protocol::hocuspocus_auth("ab"),
            vec![2, b'a', b'b', 2, 0, 0]
        );
    }
}
