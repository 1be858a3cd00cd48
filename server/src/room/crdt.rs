//! The room's document: applying updates (a burst of them in one yrs transaction, ADR 005),
//! judging each by the guard's checks first, containing yrs panics (the document is then
//! reloaded), and the budget for updates that wait on missing dependencies. Nothing here
//! knows members, storage or wire formats.

use super::core::Incoming;
use crate::contain::contained;
use crate::doc::{ApplyError, apply_update, decode_state_vector, decode_update, has_gap, waits};
use crate::guard::GuardError;
use crate::store::Stored;
use duet_protocol::{ErrorCode, close};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// Bytes of updates a room keeps while their dependencies are missing; past this a member's
/// update is refused (close 1008) instead of being held forever, and the room reloads.
pub const MAX_ORPHAN_BYTES: usize = 4 * 1024 * 1024;

/// What becomes of one update of a batch; the core acts on the verdicts in order.
#[derive(Debug)]
pub(super) enum Verdict {
    /// For the document to judge (the core admitted it).
    Admit,
    /// Its author is gone, or was refused earlier in the batch.
    Ignore,
    /// Not applied; the author is told why and stays connected.
    Tell(ErrorCode, String),
    /// Refused: the author is told why and closed with the code.
    Refuse(ErrorCode, close::CloseCode, String),
    /// Nothing new in it.
    Unchanged,
    /// Applied; where each client's blocks in it begin.
    Applied(StateVector),
}

/// The document state vector and whether anything waits on dependencies, after a batch.
pub(super) struct AfterBatch {
    pub have: StateVector,
    pub missing: bool,
}

/// yrs panicked applying a batch: the document may be half-changed.
pub(super) struct Panicked;

/// What became of a remote update.
#[derive(Debug)]
pub(super) enum RemoteApplied {
    /// Applied, with any held updates it unblocked: relay these, in order.
    Relay(Vec<Vec<u8>>),
    /// Waiting for updates it depends on (held outside yrs, within the orphan budget).
    Held,
    /// Malformed or refused by the guard; dropped.
    Dropped(String),
    /// The document must be reloaded (yrs panicked, or the budget is spent).
    Reload(String),
}

pub(super) struct Crdt {
    doc: Doc,
    /// Set when the in-memory document can no longer be trusted (yrs panicked, or too many
    /// orphaned updates): the task reloads it before the next command.
    needs_reload: bool,
    /// Bytes of updates integrated while some of their dependencies are missing.
    orphan_bytes: usize,
    /// Remote updates whose own client's earlier blocks have not arrived. They are kept out of
    /// yrs (which would show some of their blocks where Yjs keeps them pending) until they fit.
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// The whole document encoded for a newcomer (sync step 2 against an empty state
    /// vector), kept until the document changes: a crowd joining at once costs one encoding.
    full_state: Option<Arc<[u8]>>,
}

/// The refusal of an update yrs would not decode or apply.
fn malformed(e: impl std::fmt::Display) -> Verdict {
    Verdict::Refuse(
        ErrorCode::BAD_UPDATE,
        close::INVALID_PAYLOAD,
        format!("malformed update, nothing applied: {e}"),
    )
}

impl Crdt {
    pub fn new() -> Self {
        Self {
            doc: crate::doc::new_doc(),
            needs_reload: false,
            orphan_bytes: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            full_state: None,
        }
    }

    /// Replaces the document with what the store returned; `Err` names the first update that
    /// does not apply (the room then refuses everyone).
    pub fn load(&mut self, stored: &Stored) -> Result<(), String> {
        let doc = crate::doc::new_doc();
        let mut result = Ok(());
        for (i, update) in stored.updates.iter().enumerate() {
            if let Err(e) = apply_update(&doc, update, false) {
                result = Err(format!("stored document is damaged at update {i}: {e}"));
                break;
            }
        }
        self.doc = doc;
        self.needs_reload = false;
        self.full_state = None;
        self.held.clear();
        self.held_bytes = 0;
        if !self.doc.transact().has_missing_updates() {
            self.orphan_bytes = 0;
        }
        result
    }

    pub fn needs_reload(&self) -> bool {
        self.needs_reload
    }

    /// Whether updates must come one at a time: while the orphan budget is spent, gaps are
    /// judged against the document before each update.
    pub fn one_at_a_time(&self) -> bool {
        self.orphan_bytes > MAX_ORPHAN_BYTES
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// What a peer at `state_vector` lacks.
    pub fn diff(&mut self, state_vector: &[u8]) -> Result<Arc<[u8]>, crate::doc::DecodeError> {
        let sv = decode_state_vector(state_vector)?;
        Ok(if sv.is_empty() {
            let doc = &self.doc;
            self.full_state
                .get_or_insert_with(|| doc.transact().encode_diff_v1(&sv).into())
                .clone()
        } else {
            self.doc.transact().encode_diff_v1(&sv).into()
        })
    }

    /// Judges and applies a batch in one yrs transaction. `verdicts` comes in with `Admit`
    /// for each update the core let through and leaves with each one's verdict. Nothing is
    /// relayed before the whole batch applied, so on `Err` the caller reloads and applies the
    /// batch again one update at a time: only the update that panics is refused.
    pub fn apply_batch(
        &mut self,
        batch: &[Incoming],
        verdicts: &mut [Verdict],
    ) -> Result<AfterBatch, Panicked> {
        let refuse_gaps = self.one_at_a_time();
        let mut decoded: Vec<(usize, Update)> = Vec::with_capacity(batch.len());
        // Authors refused earlier in the batch: their later updates are ignored, as they would
        // be once the room forgot them.
        let mut refused: Vec<u64> = Vec::new();
        // The document's next clock per client, advanced past each update accepted so far in
        // this batch (they apply in one transaction, in order).
        let mut next_clock: Option<HashMap<u64, u64>> = None;
        for (i, inc) in batch.iter().enumerate() {
            if !matches!(verdicts[i], Verdict::Admit) {
                continue;
            }
            verdicts[i] = if refused.contains(&inc.peer_id) {
                Verdict::Ignore
            } else {
                match decode_update(&inc.update) {
                    Err(e) => {
                        refused.push(inc.peer_id);
                        malformed(e)
                    }
                    Ok(update) if update.is_empty() => Verdict::Unchanged,
                    Ok(update) => match self.check_dependencies(&inc.update, &mut next_clock) {
                        Err(refusal) => {
                            refused.push(inc.peer_id);
                            refusal
                        }
                        Ok(()) => {
                            let lower = update.state_vector_lower();
                            if refuse_gaps && has_gap(&self.doc, &lower) {
                                refused.push(inc.peer_id);
                                Verdict::Refuse(
                                    ErrorCode::BAD_UPDATE,
                                    close::POLICY,
                                    ApplyError::Orphan.to_string(),
                                )
                            } else {
                                decoded.push((i, update));
                                Verdict::Applied(lower)
                            }
                        }
                    },
                }
            };
        }
        if decoded.is_empty() {
            return Ok(AfterBatch {
                have: StateVector::default(),
                missing: false,
            });
        }
        let doc = &self.doc;
        let applied = contained(move || {
            let mut txn = doc.transact_mut();
            let mut failures: Vec<(usize, Option<String>)> = Vec::new();
            for (i, update) in decoded {
                let author = batch[i].peer_id;
                if failures.iter().any(|&(j, _)| batch[j].peer_id == author) {
                    failures.push((i, None));
                    continue;
                }
                match txn.apply_update(update) {
                    Ok(()) => {
                        // Debug builds only: a panic on demand, transaction open
                        // (see `contain::failpoint`).
                        #[cfg(debug_assertions)]
                        crate::contain::failpoint::panic_after_apply(&batch[i].update);
                    }
                    Err(e) => failures.push((i, Some(e.to_string()))),
                }
            }
            (failures, txn.state_vector(), txn.has_missing_updates())
        });
        let Ok((failures, have, missing)) = applied else {
            self.needs_reload = true;
            return Err(Panicked);
        };
        for (i, error) in failures {
            verdicts[i] = error.map_or(Verdict::Ignore, malformed);
        }
        self.full_state = None;
        Ok(AfterBatch { have, missing })
    }

    /// Accounts an applied update against the orphan budget; `false` when it is spent (the
    /// document must be reloaded so the refused bytes leave memory).
    pub fn within_budget(&mut self, lower: &StateVector, after: &AfterBatch, bytes: usize) -> bool {
        if waits(lower, &after.have) {
            self.orphan_bytes += bytes;
            if self.orphan_bytes + self.held_bytes > MAX_ORPHAN_BYTES {
                self.needs_reload = true;
                return false;
            }
        } else if !after.missing {
            self.orphan_bytes = 0;
        }
        true
    }

    /// Refuses what yrs and Yjs would integrate differently (`duet-guard`'s dependency check):
    /// a client's blocks beginning past its next clock (they could only wait, and yrs shows
    /// some of them where Yjs keeps them pending), or a block naming a later clock of its own
    /// client (Yjs throws). Relayed as they came, either would split the room's Yjs clients
    /// from its yrs ones, or take the Yjs ones down. An honest client sends such an update
    /// only in a race after a reconnect (an edit before its sync step 2): closed with 1008,
    /// it reconnects and its sync carries everything.
    fn check_dependencies(
        &self,
        update: &[u8],
        next_clock: &mut Option<HashMap<u64, u64>>,
    ) -> Result<(), Verdict> {
        let next = next_clock.get_or_insert_with(|| self.next_clocks());
        match crate::guard::check_dependencies_v1(update, |c| next.get(&c).copied().unwrap_or(0)) {
            Ok(sections) => {
                for section in sections {
                    let at = next.entry(section.client).or_default();
                    *at = (*at).max(section.end);
                }
                Ok(())
            }
            Err(e @ GuardError::Gap { .. }) => Err(Verdict::Refuse(
                ErrorCode::BAD_UPDATE,
                close::POLICY,
                format!(
                    "the update depends on data the room never received ({e}); reconnect to resync"
                ),
            )),
            Err(e) => Err(malformed(e)),
        }
    }

    fn next_clocks(&self) -> HashMap<u64, u64> {
        self.doc
            .transact()
            .state_vector()
            .iter()
            .map(|(client, clock)| (client.get(), u64::from(*clock)))
            .collect()
    }

    /// Applies an update that came from elsewhere (another node, log catch-up) rather than
    /// from a member: it was checked where it entered, but is checked again; one that begins
    /// past its client's next clock waits (held, within the orphan budget) instead of being
    /// refused, since such updates may overtake each other on their way here.
    pub fn apply_remote(&mut self, update: Vec<u8>) -> RemoteApplied {
        let mut relay = Vec::new();
        match self.try_remote(&update) {
            Ok(true) => relay.push(update),
            Ok(false) => {}
            Err(RemoteError::Gap) => {
                self.held_bytes += update.len();
                self.held.push_back(update);
                if self.orphan_bytes + self.held_bytes > MAX_ORPHAN_BYTES {
                    self.needs_reload = true;
                    return RemoteApplied::Reload(
                        "remote updates waiting for dependencies passed the budget".into(),
                    );
                }
                return RemoteApplied::Held;
            }
            Err(RemoteError::Dropped(why)) => return RemoteApplied::Dropped(why),
            Err(RemoteError::Reload(why)) => return RemoteApplied::Reload(why),
        }
        // What was held may fit now; each one that applies may unblock another.
        while let Some(i) = self.held.iter().position(|u| !self.has_own_gap(u)) {
            let Some(next) = self.held.remove(i) else {
                break;
            };
            self.held_bytes -= next.len();
            match self.try_remote(&next) {
                Ok(true) => relay.push(next),
                Ok(false) | Err(RemoteError::Gap | RemoteError::Dropped(_)) => {}
                Err(RemoteError::Reload(why)) => return RemoteApplied::Reload(why),
            }
        }
        RemoteApplied::Relay(relay)
    }

    /// Whether `update` begins past some client's next clock.
    fn has_own_gap(&self, update: &[u8]) -> bool {
        let next = self.next_clocks();
        matches!(
            crate::guard::check_dependencies_v1(update, |c| next.get(&c).copied().unwrap_or(0)),
            Err(GuardError::Gap { .. })
        )
    }

    /// Applies one remote update: `Ok(true)` applied, `Ok(false)` nothing new (already held).
    fn try_remote(&mut self, bytes: &[u8]) -> Result<bool, RemoteError> {
        let update = decode_update(bytes).map_err(|e| RemoteError::Dropped(e.to_string()))?;
        if update.is_empty() {
            return Ok(false);
        }
        let next = self.next_clocks();
        match crate::guard::check_dependencies_v1(bytes, |c| next.get(&c).copied().unwrap_or(0)) {
            Ok(_) => {}
            Err(GuardError::Gap { .. }) => return Err(RemoteError::Gap),
            Err(e) => return Err(RemoteError::Dropped(e.to_string())),
        }
        let lower = update.state_vector_lower();
        let doc = &self.doc;
        let applied = contained(move || {
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            let result = txn.apply_update(update).map_err(|e| e.to_string());
            let have = txn.state_vector();
            // New blocks move the state vector; new deletions land in the transaction's
            // delete set (yrs skips items already deleted).
            let changed = have != before || !txn.delete_set().is_empty();
            (result, have, txn.has_missing_updates(), changed)
        });
        let Ok((result, have, missing, changed)) = applied else {
            self.needs_reload = true;
            return Err(RemoteError::Reload(
                "yrs panicked applying a remote update".into(),
            ));
        };
        result.map_err(RemoteError::Dropped)?;
        if !changed && !missing {
            // Already held (the log repeating what the bus brought, a duplicate): nothing to
            // relay, and nothing waits on it.
            return Ok(false);
        }
        self.full_state = None;
        if !self.within_budget(&lower, &AfterBatch { have, missing }, bytes.len()) {
            return Err(RemoteError::Reload(
                "updates waiting for dependencies passed the budget".into(),
            ));
        }
        Ok(true)
    }

    /// What the document holds past `state_vector` (v1), with its whole delete set.
    pub fn diff_from(&self, state_vector: &StateVector) -> Option<Vec<u8>> {
        let doc = &self.doc;
        contained(|| doc.transact().encode_diff_v1(state_vector)).ok()
    }

    /// The whole document, for a snapshot, when it holds nothing waiting for dependencies
    /// (its encoding would leave that out).
    pub fn encode_state(&self, room: &duet_protocol::RoomName) -> Option<Vec<u8>> {
        if !self.held.is_empty() {
            return None;
        }
        crate::compaction::encode_state(room, &self.doc).ok()
    }
}

enum RemoteError {
    Gap,
    Dropped(String),
    Reload(String),
}

/// The yrs client ids whose blocks an update (already checked) carries.
pub(super) fn clients_of(update: &[u8]) -> Vec<u64> {
    sections_of(update).iter().map(|s| s.client).collect()
}

/// Where each client's blocks in an update (already checked) begin and end.
pub(super) fn sections_of(update: &[u8]) -> Vec<crate::guard::Section> {
    crate::guard::check_dependencies_v1(update, |_| u64::MAX).unwrap_or_default()
}
