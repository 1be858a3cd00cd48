//! A room's awareness: who is where, as entries keyed by client id. Each entry has an owner
//! (the connection that set it first, or another server node of the cluster whose members set
//! it), which alone may change it and with whose departure it goes; entries not renewed within
//! [`AWARENESS_TTL`] expire. Clocks follow y-protocols: a Yjs client's older clock is stale
//! unless it clears the state; the server counts a duet client's; another node's entries carry
//! that node's clock.

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
    /// Another server node (one run of it: its id and epoch, numbered by this node): its
    /// entries are set for its members and dropped as a group when that node is gone.
    Node(u64),
}

/// The peer id duet clients see for an entry of another node's member: this bit over the
/// client id. Local peer ids are a counter from 1, so they never meet these; client ids are
/// below 2^53, so the bit never collides with one.
pub const REMOTE_PEER: u64 = 1 << 62;

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
            match (slot.owner, owner) {
                // The client came here from another node (that node died, or the balancer sent
                // its reconnect here): its own connection outranks the copy relayed from there.
                (Owner::Node(_), Owner::Member(_)) => {
                    slot.owner = owner;
                    slot.peer_id = peer_id;
                    slot.role = role;
                }
                _ => return Set::NotOwner,
            }
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

    /// Sets `client_id`'s entry as node `node` relayed it, with that node's clock. A member's
    /// entry here outranks it (`NotOwner`); an older clock, or the same clock again (a node
    /// answering a query repeats what it sent), changes nothing.
    pub fn set_remote(&mut self, node: u64, entry: RemoteEntry, now: Instant) -> Set {
        let owner = Owner::Node(node);
        let peer_id = REMOTE_PEER | entry.client_id;
        match self.slots.get_mut(&entry.client_id) {
            Some(slot) if matches!(slot.owner, Owner::Member(_)) => return Set::NotOwner,
            Some(slot) => {
                let same_run = slot.owner == owner;
                if same_run && entry.clock <= slot.clock && entry.state.is_some() {
                    // Renewed by its origin, not changed: only its age.
                    if entry.clock == slot.clock {
                        slot.updated = now;
                    }
                    return Set::Stale;
                }
                slot.owner = owner;
                slot.peer_id = peer_id;
                slot.clock = entry.clock;
                slot.role = entry.role;
                slot.state = entry.state;
                slot.updated = now;
            }
            None if entry.state.is_none() => return Set::Stale,
            None => {
                self.slots.insert(
                    entry.client_id,
                    Slot {
                        owner,
                        peer_id,
                        clock: entry.clock,
                        role: entry.role,
                        state: entry.state,
                        updated: now,
                    },
                );
            }
        }
        let Some(slot) = self.slots.get(&entry.client_id) else {
            return Set::Stale;
        };
        let out = slot.out(entry.client_id);
        if out.state.is_none() {
            self.slots.remove(&entry.client_id);
        }
        Set::Changed(out)
    }

    /// The entries this room's own members set (what another node asks for when it loads the
    /// room).
    pub fn of_members(&self) -> Arc<[AwarenessOut]> {
        self.slots
            .iter()
            .filter(|(_, slot)| matches!(slot.owner, Owner::Member(_)) && slot.state.is_some())
            .map(|(client_id, slot)| slot.out(*client_id))
            .collect()
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

    /// Removes the entries not renewed within [`AWARENESS_TTL`]: all of them, and those of
    /// them the room's own members had set (which other nodes are told about).
    pub fn expire(&mut self, now: Instant) -> Option<Expired> {
        let mut members = Vec::new();
        let all = self.remove_with(
            |slot| now.saturating_duration_since(slot.updated) >= AWARENESS_TTL,
            |owner, out| {
                if matches!(owner, Owner::Member(_)) {
                    members.push(out.clone());
                }
            },
        )?;
        Some(Expired {
            all,
            members: members.into(),
        })
    }

    fn remove(&mut self, gone: impl Fn(&Slot) -> bool) -> Option<Arc<[AwarenessOut]>> {
        self.remove_with(gone, |_, _| {})
    }

    fn remove_with(
        &mut self,
        gone: impl Fn(&Slot) -> bool,
        mut each: impl FnMut(Owner, &AwarenessOut),
    ) -> Option<Arc<[AwarenessOut]>> {
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
                        let out = slot.out(id);
                        each(slot.owner, &out);
                        out
                    })
                })
                .collect(),
        )
    }
}

/// Entries that expired.
pub(super) struct Expired {
    pub all: Arc<[AwarenessOut]>,
    /// Those the room's own members had set.
    pub members: Arc<[AwarenessOut]>,
}

/// An awareness entry as another node relayed it (checked there and again on arrival).
#[derive(Clone)]
pub struct RemoteEntry {
    pub client_id: u64,
    /// The origin's clock for the entry.
    pub clock: u32,
    pub role: Role,
    /// `None`: removed.
    pub state: Option<Arc<AwarenessState>>,
}
