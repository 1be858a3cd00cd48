//! duet's own wire (`duet.v2`, bincode frames through `duet_protocol`'s codec): how its frames
//! map to room commands, and room messages to its frames. Awareness set by Yjs clients reaches
//! duet clients typed, translated once per entry (`duet_yjs::awareness`).

use crate::conn::{Refusal, Wire};
use crate::out::{AwarenessSource, Out};
use crate::room::{Cmd, Incoming, RoomCmd};
use bytes::Bytes;
use duet_protocol::{AwarenessEntry, ClientMsg, ErrorCode, Role, RoomName, ServerMsg, close};
use duet_yjs::awareness::peer_state_from_json;

pub(crate) struct DuetWire;

impl Wire for DuetWire {
    const ECHO_AWARENESS: bool = false;
    const FRAME_SLOT: usize = 0;

    fn welcome(&self, peer_id: u64, role: Role, room: &RoomName) -> Option<Bytes> {
        let welcome = ServerMsg::Welcome {
            peer_id,
            role,
            room: room.to_string(),
            server: concat!("duet-server ", env!("CARGO_PKG_VERSION")).into(),
        };
        Some(duet_protocol::encode_server(&welcome).into())
    }

    fn encode(&self, out: Out) -> Option<Bytes> {
        let msg = match out {
            Out::Update(shared) => {
                return Some(shared.frame(Self::FRAME_SLOT, |raw| {
                    duet_protocol::encode_server(&ServerMsg::Update {
                        update: raw.to_vec().into(),
                    })
                }));
            }
            Out::SyncStep1(sv) => ServerMsg::SyncStep1 {
                state_vector: sv.into_vec().into(),
            },
            Out::SyncStep2(update) => ServerMsg::SyncStep2 {
                update: update.to_vec().into(),
            },
            Out::Awareness(entries) => ServerMsg::Awareness {
                entries: entries
                    .iter()
                    .map(|e| AwarenessEntry {
                        client_id: e.client_id,
                        peer_id: e.peer_id,
                        clock: e.clock,
                        role: e.role,
                        state: e
                            .state
                            .as_ref()
                            .map(|s| s.as_typed(peer_state_from_json).clone()),
                    })
                    .collect(),
            },
            Out::Ack(seq) => ServerMsg::Ack { seq },
            Out::Error(code, message) => ServerMsg::Error {
                code,
                message: message.into(),
            },
        };
        Some(duet_protocol::encode_server(&msg).into())
    }

    fn decode(
        &self,
        peer_id: u64,
        frame: &[u8],
        arrived: std::time::Instant,
    ) -> Result<Vec<RoomCmd>, Refusal> {
        let refuse = |message: String, reason: String| Refusal {
            reply: Some(
                duet_protocol::encode_server(&ServerMsg::Error {
                    code: ErrorCode::BAD_MESSAGE,
                    message,
                })
                .into(),
            ),
            code: close::INVALID_PAYLOAD,
            reason,
        };
        let msg = duet_protocol::decode_client(frame).map_err(|e| {
            refuse(
                format!("could not decode your message: {e}"),
                "undecodable message".into(),
            )
        })?;
        let cmd = match msg {
            ClientMsg::SyncStep1 { state_vector } => RoomCmd::Core(Cmd::SyncStep1 {
                peer_id,
                state_vector: state_vector.0,
            }),
            ClientMsg::SyncStep2 { seq, update } | ClientMsg::Update { seq, update } => {
                RoomCmd::Update(Incoming {
                    peer_id,
                    seq: Some(seq),
                    update: update.0,
                    arrived,
                })
            }
            ClientMsg::Awareness { client_id, state } => {
                // Checked as the other members will read it (a Yjs client parses the JSON it
                // becomes, reading the client id as a JavaScript number), before the room sees it.
                let checked = crate::awareness::check_client_id(client_id).and_then(|()| {
                    state
                        .as_ref()
                        .map_or(Ok(()), crate::awareness::check_peer_state)
                });
                if let Err(e) = checked {
                    return Err(refuse(e.to_string(), e.to_string()));
                }
                RoomCmd::Core(Cmd::Awareness {
                    peer_id,
                    client_id,
                    source: AwarenessSource::Duet(state),
                })
            }
        };
        Ok(vec![cmd])
    }
}
