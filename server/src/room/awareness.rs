//! A room's awareness: who is where, as entries keyed by client id. Each entry has an owner
//! (the connection that set it first, or, in the cluster work, another server node whose
//! members set it), which alone may change it and with whose departure it goes; entries not
//! renewed within [`AWARENESS_TTL`] expire. Clocks follow y-protocols: a Yjs client's older
//! clock is stale unless it clears the state; the server counts a duet client's.

use crate::out::{AwarenessOut, AwarenessSource, AwarenessState};
use duet_protocol::Role;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an awareness entry lives without renewal.
pub const AWARENESS_TTL: Duration = Duration::from_secs(30);

/// Who may change an entry, and with whom it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A connection of this room.
    Member(u64),
    /// Another server node: its entries are set for its members and dropped as a group when
    /// that node is gone (cluster work; nothing sets these yet).
    Node(u64),
}

struct Slot {
    owner: Owner,
    /// The peer shown to duet clients.
    peer_id: u64,
    clock: u32,
    role: Role,
    state: Option<Arc<AwarenessState>>,
    updated: Instant,
}

impl Slot {
    fn out(&self, client_id: u64) -> AwarenessOut {
        AwarenessOut {
            client_id,
            peer_id: self.peer_id,
            clock: self.clock,
            role: self.role,
            state: self.state.clone(),
        }
    }
}

/// What setting an entry did.
pub(super) enum Set {
    /// The entry changed (or was removed): tell everyone.
    Changed(AwarenessOut),
    /// An older clock than the entry's: nothing to tell.
    Stale,
    /// The entry belongs to another owner.
    NotOwner,
}

#[derive(Default)]
pub(super) struct Awareness {
    slots: HashMap<u64, Slot>,
}

impl Awareness {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sets `client_id`'s entry for `owner`, shown as `peer_id` with `role`.
    pub fn set(
        &mut self,
        owner: Owner,
        peer_id: u64,
        role: Role,
        client_id: u64,
        source: AwarenessSource,
        now: Instant,
    ) -> Set {
        let slot = self.slots.entry(client_id).or_insert(Slot {
            owner,
            peer_id,
            clock: 0,
            role,
            state: None,
            updated: now,
        });
        if slot.owner != owner {
            return Set::NotOwner;
        }
        match source {
            AwarenessSource::Duet(state) => {
                slot.clock = slot.clock.wrapping_add(1);
                slot.state = state.map(AwarenessState::typed);
            }
            AwarenessSource::Yjs { json, clock } => {
                // As y-protocols does: an older clock is stale, unless it clears the state.
                let is_new = slot.state.is_none() && slot.clock == 0;
                if !is_new && clock < slot.clock && json.is_some() {
                    return Set::Stale;
                }
                slot.clock = clock;
                slot.state = json.map(AwarenessState::json);
            }
        }
        slot.updated = now;
        let out = slot.out(client_id);
        if out.state.is_none() {
            self.slots.remove(&client_id);
        }
        Set::Changed(out)
    }

    /// Every current entry.
    pub fn all(&self) -> Arc<[AwarenessOut]> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.state.is_some())
            .map(|(client_id, slot)| slot.out(*client_id))
            .collect()
    }

    /// Removes every entry of `owner`; the removals to tell everyone, if any.
    pub fn drop_owner(&mut self, owner: Owner) -> Option<Arc<[AwarenessOut]>> {
        self.remove(|slot| slot.owner == owner)
    }

    /// Removes the entries not renewed within [`AWARENESS_TTL`].
    pub fn expire(&mut self, now: Instant) -> Option<Arc<[AwarenessOut]>> {
        self.remove(|slot| now.saturating_duration_since(slot.updated) >= AWARENESS_TTL)
    }

    fn remove(&mut self, gone: impl Fn(&Slot) -> bool) -> Option<Arc<[AwarenessOut]>> {
        let ids: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, slot)| gone(slot))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return None;
        }
        Some(
            ids.into_iter()
                .filter_map(|id| {
                    self.slots.remove(&id).map(|mut slot| {
                        slot.clock = slot.clock.wrapping_add(1);
                        slot.state = None;
                        slot.out(id)
                    })
                })
                .collect(),
        )
    }
}
