//! What a room sends its members ([`Out`]) and the caches that travel inside: an update is
//! encoded once per wire however many members receive it ([`SharedUpdate`]), an awareness
//! state is translated once into the other protocol's form ([`AwarenessState`]). The encoders
//! and translations themselves belong to the wires (`conn_duet.rs`, `conn_yjs.rs`); nothing
//! here knows a wire format. Its own module so that the room and the member queues
//! (`outbox.rs`) both use it without depending on each other.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use duet_protocol::{ErrorCode, PeerState, Role, close};

/// How many wire formats share one [`SharedUpdate`] (each `Wire` has its own slot).
pub const WIRE_SLOTS: usize = 2;

/// An update shared by every member it is relayed to; each wire's frame is encoded once, on
/// first use, by the first connection of that wire that writes it.
pub struct SharedUpdate {
    raw: Vec<u8>,
    frames: [OnceLock<Bytes>; WIRE_SLOTS],
}

impl SharedUpdate {
    pub fn new(raw: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            raw,
            frames: Default::default(),
        })
    }

    /// The v1 update as its author sent it.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The frame of wire `slot`, encoded by `encode` the first time it is asked for.
    pub fn frame(&self, slot: usize, encode: impl FnOnce(&[u8]) -> Vec<u8>) -> Bytes {
        match self.frames.get(slot) {
            Some(cell) => cell.get_or_init(|| Bytes::from(encode(&self.raw))).clone(),
            None => Bytes::from(encode(&self.raw)),
        }
    }
}

/// An awareness state in the form its author set it, and the other protocol's form made from
/// it once, on first use.
pub enum AwarenessState {
    /// Set by a duet client.
    Typed {
        state: PeerState,
        json: OnceLock<Arc<str>>,
    },
    /// Set by a Yjs client: its JSON, relayed to Yjs clients as it came (custom fields pass).
    Json {
        json: Arc<str>,
        typed: OnceLock<PeerState>,
    },
}

impl AwarenessState {
    pub fn typed(state: PeerState) -> Arc<Self> {
        Arc::new(Self::Typed {
            state,
            json: OnceLock::new(),
        })
    }

    pub fn json(json: Arc<str>) -> Arc<Self> {
        Arc::new(Self::Json {
            json,
            typed: OnceLock::new(),
        })
    }

    /// The typed form, translated from JSON by `translate` the first time.
    pub fn as_typed(&self, translate: impl FnOnce(&str) -> PeerState) -> &PeerState {
        match self {
            Self::Typed { state, .. } => state,
            Self::Json { json, typed } => typed.get_or_init(|| translate(json)),
        }
    }

    /// The JSON form, translated from the typed one by `translate` the first time.
    pub fn as_json(&self, translate: impl FnOnce(&PeerState) -> String) -> &str {
        match self {
            Self::Json { json, .. } => json,
            Self::Typed { state, json } => json.get_or_init(|| translate(state).into()),
        }
    }
}

/// One awareness entry as sent to members.
#[derive(Clone)]
pub struct AwarenessOut {
    pub client_id: u64,
    /// The peer it belongs to (as duet clients see peers).
    pub peer_id: u64,
    pub clock: u32,
    pub role: Role,
    /// `None`: the entry is removed.
    pub state: Option<Arc<AwarenessState>>,
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
#[derive(Clone)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub code: close::CloseCode,
    pub reason: String,
}
