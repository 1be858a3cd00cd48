//! The y-websocket wire: how frames from any Yjs application (y-websocket's `WebsocketProvider`)
//! map to room commands, and room messages to y-protocols frames.
//!
//! Behaviour matched from the y-websocket server: the server sends sync step 1 at once, answers
//! a client's step 1 with step 2, relays updates, echoes awareness to its sender too, answers
//! query-awareness with every known state, and sends one message per frame (the JS client reads
//! only the first message of a frame), while accepting several messages in one frame.

use crate::awareness;
use crate::conn::{Refusal, Wire};
use crate::out::{AwarenessSource, Out};
use crate::room::{Cmd, Incoming, RoomCmd};
use bytes::Bytes;
use duet_protocol::{ErrorCode, Role, RoomName, close};
use duet_yjs::awareness::peer_state_to_json;
use duet_yjs::wire::{self as yjs, YMsg};
use std::sync::Arc;

pub(crate) struct YjsWire;

impl Wire for YjsWire {
    const ECHO_AWARENESS: bool = true;
    const FRAME_SLOT: usize = 1;

    fn welcome(&self, _peer_id: u64, _role: Role, _room: &RoomName) -> Option<Bytes> {
        None
    }

    fn encode(&self, out: Out) -> Option<Bytes> {
        Some(match out {
            Out::SyncStep1(sv) => yjs::encode_sync(yjs::SYNC_STEP1, &sv).into(),
            Out::SyncStep2(update) => yjs::encode_sync(yjs::SYNC_STEP2, &update).into(),
            Out::Update(shared) => shared.frame(Self::FRAME_SLOT, |raw| {
                yjs::encode_sync(yjs::SYNC_UPDATE, raw)
            }),
            Out::Awareness(entries) => yjs::encode_awareness(entries.iter().map(|e| {
                (
                    e.client_id,
                    e.clock,
                    e.state.as_ref().map(|s| s.as_json(peer_state_to_json)),
                )
            }))
            .into(),
            // y-websocket has no acknowledgements and no error messages.
            Out::Ack(_) => return None,
            // A viewer's edit: y-websocket reports permission-denied messages to the app.
            Out::Error(ErrorCode::READ_ONLY, message) => {
                yjs::encode_permission_denied(&message).into()
            }
            Out::Error(code, message) => {
                tracing::debug!(code = code.0, %message, "error not expressible to a Yjs client");
                return None;
            }
        })
    }

    fn refusal(&self, reason: &str) -> Option<Bytes> {
        Some(yjs::encode_permission_denied(reason).into())
    }

    fn decode(
        &self,
        peer_id: u64,
        frame: &[u8],
        arrived: std::time::Instant,
    ) -> Result<Vec<RoomCmd>, Refusal> {
        let refuse = |reason: String| Refusal {
            reply: None,
            code: close::INVALID_PAYLOAD,
            reason,
        };
        let messages = yjs::parse_frame(frame)
            .map_err(|e| refuse(format!("malformed y-protocols message: {e}")))?;
        let mut cmds = Vec::with_capacity(messages.len());
        for msg in messages {
            match msg {
                YMsg::SyncStep1(sv) => cmds.push(RoomCmd::Core(Cmd::SyncStep1 {
                    peer_id,
                    state_vector: sv.to_vec(),
                })),
                YMsg::SyncStep2(update) | YMsg::Update(update) => {
                    cmds.push(RoomCmd::Update(Incoming {
                        peer_id,
                        seq: None,
                        update: update.to_vec(),
                        arrived,
                    }));
                }
                YMsg::Awareness(body) => {
                    let entries = yjs::decode_awareness(body)
                        .map_err(|e| refuse(format!("malformed awareness update: {e}")))?;
                    // Every entry as y-protocols will read it, before any reaches the room:
                    // one unreadable entry refuses the whole frame.
                    for e in entries {
                        awareness::check_client_id(e.client_id)
                            .map_err(|e| refuse(e.to_string()))?;
                        let json = match e.json.as_deref() {
                            Some(json) => awareness::check_yjs_state(json)
                                .map_err(|e| refuse(e.to_string()))?
                                .map(Arc::from),
                            None => None,
                        };
                        cmds.push(RoomCmd::Core(Cmd::Awareness {
                            peer_id,
                            client_id: e.client_id,
                            source: AwarenessSource::Yjs {
                                json,
                                clock: e.clock,
                            },
                        }));
                    }
                }
                YMsg::QueryAwareness => cmds.push(RoomCmd::Core(Cmd::QueryAwareness { peer_id })),
                YMsg::Auth => {}
            }
        }
        Ok(cmds)
    }
}
