//! What a room sends its members ([`Out`]) and what travels inside: updates encoded once per
//! wire format however many members receive them, awareness in both forms, the reason a
//! member was closed. Its own module so that the room and the member queues (`outbox.rs`)
//! both use it without depending on each other.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use duet_protocol::{AwarenessEntry, ErrorCode, PeerState, ServerMsg, close};

/// An update shared by every member it is relayed to; each wire format is encoded once.
pub struct SharedUpdate {
    raw: Vec<u8>,
    duet_frame: OnceLock<Bytes>,
    yjs_frame: OnceLock<Bytes>,
}

impl SharedUpdate {
    pub fn new(raw: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            raw,
            duet_frame: OnceLock::new(),
            yjs_frame: OnceLock::new(),
        })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The `ServerMsg::Update` frame for duet clients, encoded on first use.
    pub fn duet_frame(&self) -> Bytes {
        self.duet_frame
            .get_or_init(|| {
                Bytes::from(duet_protocol::encode_server(&ServerMsg::Update {
                    update: self.raw.clone().into(),
                }))
            })
            .clone()
    }

    /// The y-websocket sync-update frame, encoded on first use.
    pub fn yjs_frame(&self) -> Bytes {
        self.yjs_frame
            .get_or_init(|| {
                Bytes::from(duet_yjs::wire::encode_sync(
                    duet_yjs::wire::SYNC_UPDATE,
                    &self.raw,
                ))
            })
            .clone()
    }
}

/// One awareness entry as sent to members: duet's typed form, and the JSON Yjs clients read
/// (the original JSON when a Yjs client set it, so custom fields pass through untouched).
#[derive(Debug, Clone)]
pub struct AwarenessOut {
    pub entry: AwarenessEntry,
    pub json: Option<Arc<str>>,
}

/// Who sets an awareness entry, in which form.
pub enum AwarenessSource {
    /// A duet client: typed state; the server counts the clock.
    Duet(Option<PeerState>),
    /// A Yjs client: its JSON state (`None` = removed) and its own clock.
    Yjs { json: Option<Arc<str>>, clock: u32 },
}

/// What a room sends a member. Kept to 24 bytes (boxed slices, not vectors): every member's
/// queue allocates its first block of 32 slots up front, idle or not.
pub enum Out {
    SyncStep1(Box<[u8]>),
    /// Shared: a crowd of joiners gets the same encoding of the whole document.
    SyncStep2(Arc<[u8]>),
    Update(Arc<SharedUpdate>),
    Awareness(Arc<[AwarenessOut]>),
    Ack(u64),
    Error(ErrorCode, Box<str>),
}
const _: () = assert!(
    std::mem::size_of::<Out>() <= 24,
    "Out grew: idle queues cost more"
);

/// Why a room closed a member.
#[derive(Debug, Clone)]
pub struct Kick {
    pub code: close::CloseCode,
    pub reason: String,
}
