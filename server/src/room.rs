//! A room: one task owns one yrs document and its awareness; connections reach it through a
//! bounded channel ([`RoomHandle`]) and hear back through their own bounded queue ([`Out`]).
//!
//! ```text
//!   conn A ──RoomCmd──┐                       ┌──Out──> conn A
//!   conn B ──RoomCmd──┼──> RoomTask (Doc) ────┼──Out──> conn B
//!   conn C ──RoomCmd──┘        │              └──Out──> conn C
//!                              └── Store::append ──> Ack to the author once stored
//! ```
//!
//! Invariants:
//! - The room loads its stored document before it handles any command, so no joiner ever
//!   sees an empty or partial document.
//! - Every update the room integrates reaches every other member, in the order integrated,
//!   or that member is closed (1013) and resyncs on reconnect. Updates are never dropped for a
//!   member that stays connected.
//! - Relay does not wait for storage; acknowledgements do.
//! - Acknowledgements are cumulative for clients ("everything up to seq is stored"), so once
//!   one append fails the room acknowledges nothing more: it tells every member, closes them
//!   (1013) and unloads. Whatever it held but could not store was relayed yet never acked, so
//!   its authors still keep it and send it again when they rejoin a room freshly loaded from
//!   storage; if storage still fails, that room refuses in the same way.
//! - At most [`MAX_PENDING_APPENDS`] appends are in flight per room; past that the room stops
//!   reading its inbox, which pushes back on the sockets.
//! - An awareness entry belongs to the connection that first set it; it is removed when that
//!   connection leaves, or after 30 s without renewal.

use crate::contain::contained;
use crate::doc::{
    ApplyError, apply_update, decode_state_vector, decode_update, has_gap, new_doc, waits,
};
use crate::metrics::Metrics;
use crate::out::{AwarenessOut, AwarenessSource, Kick, Out, SharedUpdate};
use crate::outbox::{OutboxLimits, OutboxTx, Refused};
use crate::store::{Appending, BoxFuture, Store, StoreError};
use duet_protocol::{AwarenessEntry, ErrorCode, PeerState, Role, RoomName, close};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

/// Commands a room handles in one turn when they are already waiting.
const INBOX_BATCH: usize = 64;

/// Appends a room may have in flight before it stops taking commands.
pub const MAX_PENDING_APPENDS: usize = 4096;

/// Bytes of updates a room keeps while their dependencies are missing; past this it refuses
/// more (close 1008) instead of holding them forever.
pub const MAX_ORPHAN_BYTES: usize = 4 * 1024 * 1024;

/// How long an awareness entry lives without renewal.
pub const AWARENESS_TTL: Duration = Duration::from_secs(30);

/// What a connection asks of its room.
pub enum RoomCmd {
    Join {
        peer_id: u64,
        role: Role,
        /// Yjs clients expect their own awareness echoed back, as the y-websocket server does.
        echo_awareness: bool,
        tx: OutboxTx,
        kick: oneshot::Sender<Kick>,
        reply: oneshot::Sender<()>,
    },
    SyncStep1 {
        peer_id: u64,
        state_vector: Vec<u8>,
    },
    Update {
        peer_id: u64,
        seq: Option<u64>,
        update: Vec<u8>,
        /// When the connection read it, for the relay and ack latency histograms.
        arrived: Instant,
    },
    Awareness {
        peer_id: u64,
        client_id: u64,
        source: AwarenessSource,
    },
    /// Send this member every current awareness entry.
    QueryAwareness {
        peer_id: u64,
    },
    Leave {
        peer_id: u64,
    },
}

/// The room is gone (unloading or shut down); ask the registry for a fresh one.
#[derive(Debug, thiserror::Error)]
#[error("room is unloading")]
pub struct RoomGone;

/// A cloneable way to reach a room's task.
#[derive(Clone)]
pub struct RoomHandle {
    pub(crate) id: u64,
    tx: mpsc::Sender<RoomCmd>,
}

impl RoomHandle {
    /// Sends a command, waiting while the room's inbox is full (back-pressure on the socket).
    pub async fn send(&self, cmd: RoomCmd) -> Result<(), RoomGone> {
        self.tx.send(cmd).await.map_err(|_| RoomGone)
    }

    /// Like [`send`](Self::send), but hands the command back if the room is gone.
    pub async fn send_returning(&self, cmd: RoomCmd) -> Result<(), RoomCmd> {
        self.tx.send(cmd).await.map_err(|e| e.0)
    }
}

/// Tunables for rooms.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Inbox capacity of a room.
    pub inbox: usize,
    /// Send-queue bounds per member; a member whose queue is full is closed with 1013.
    pub send_queue: OutboxLimits,
    /// How long a room with no members stays loaded.
    pub idle_unload: Duration,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            inbox: 256,
            send_queue: OutboxLimits {
                messages: 16 * 1024,
                bytes: 8 * 1024 * 1024,
            },
            idle_unload: Duration::from_secs(60),
        }
    }
}

struct Member {
    role: Role,
    echo_awareness: bool,
    tx: OutboxTx,
    kick: Option<oneshot::Sender<Kick>>,
}

struct Slot {
    owner: u64,
    clock: u32,
    role: Role,
    state: Option<PeerState>,
    json: Option<Arc<str>>,
    updated: Instant,
}

/// An update as its connection handed it to the room.
struct Incoming {
    peer_id: u64,
    seq: Option<u64>,
    update: Vec<u8>,
    arrived: Instant,
}

impl TryFrom<RoomCmd> for Incoming {
    type Error = RoomCmd;

    fn try_from(cmd: RoomCmd) -> Result<Self, RoomCmd> {
        match cmd {
            RoomCmd::Update {
                peer_id,
                seq,
                update,
                arrived,
            } => Ok(Incoming {
                peer_id,
                seq,
                update,
                arrived,
            }),
            cmd => Err(cmd),
        }
    }
}

impl From<Incoming> for RoomCmd {
    fn from(inc: Incoming) -> Self {
        RoomCmd::Update {
            peer_id: inc.peer_id,
            seq: inc.seq,
            update: inc.update,
            arrived: inc.arrived,
        }
    }
}

/// What becomes of one update of a batch; the room acts on the verdicts in order.
enum Verdict {
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

/// Author, its seq, when the update arrived, and what the store said.
type StoreResult = (u64, Option<u64>, Instant, Result<(), StoreError>);

/// The state a room task owns.
struct Room {
    name: RoomName,
    doc: Doc,
    members: HashMap<u64, Member>,
    awareness: HashMap<u64, Slot>,
    store: Arc<dyn Store>,
    pending: FuturesOrdered<BoxFuture<'static, StoreResult>>,
    /// Set when the store failed to load this room: it refuses every member.
    broken: Option<String>,
    /// Set when an append failed: the room acknowledges nothing more and unloads.
    write_failed: Option<String>,
    /// Set when the in-memory document can no longer be trusted (yrs panicked, or too many
    /// orphaned updates): the task reloads it from the store before the next command.
    needs_reload: bool,
    /// Bytes of updates integrated while some of their dependencies are missing.
    orphan_bytes: usize,
    /// Updates still to be applied one at a time, after a batch of them made yrs panic.
    one_by_one: usize,
    /// The whole document encoded for a newcomer (sync step 2 against an empty state
    /// vector), kept until the document changes: a crowd joining at once costs one encoding.
    full_state: Option<Arc<[u8]>>,
    metrics: Arc<Metrics>,
}

/// The refusal of an update yrs would not decode or apply.
fn malformed(e: impl std::fmt::Display) -> Verdict {
    Verdict::Refuse(
        ErrorCode::BAD_UPDATE,
        close::INVALID_PAYLOAD,
        format!("malformed update, nothing applied: {e}"),
    )
}

impl Room {
    async fn load(name: RoomName, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let doc = new_doc();
        let mut broken = None;
        match store.load(&name).await {
            Ok(updates) => {
                for (i, update) in updates.iter().enumerate() {
                    if let Err(e) = apply_update(&doc, update, false) {
                        tracing::error!(room = %name, index = i, error = %e, "stored update does not apply");
                        broken = Some(format!("stored document is damaged: {e}"));
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::error!(room = %name, error = %e, "loading room failed");
                broken = Some(e.to_string());
            }
        }
        Self {
            name,
            doc,
            members: HashMap::new(),
            awareness: HashMap::new(),
            store,
            pending: FuturesOrdered::new(),
            broken,
            write_failed: None,
            needs_reload: false,
            orphan_bytes: 0,
            one_by_one: 0,
            full_state: None,
            metrics,
        }
    }

    /// Replaces the document with what the store holds, after every pending write landed.
    async fn reload(&mut self) {
        while let Some(done) = self.pending.next().await {
            self.stored(done);
        }
        let fresh = Room::load(self.name.clone(), self.store.clone(), self.metrics.clone()).await;
        self.doc = fresh.doc;
        self.broken = fresh.broken;
        self.full_state = None;
        self.needs_reload = false;
        if !self.doc.transact().has_missing_updates() {
            self.orphan_bytes = 0;
        }
        tracing::warn!(room = %self.name, "room document reloaded from storage");
    }

    /// Handles queued commands in order until the queue is empty or the document must be
    /// reloaded first. Consecutive updates are applied in one yrs transaction
    /// ([`Room::updates`]). Once writes failed, joins are turned away (the task is unloading).
    fn handle_turn(&mut self, queue: &mut VecDeque<RoomCmd>) {
        while !self.needs_reload {
            let Some(cmd) = queue.pop_front() else { break };
            match cmd {
                RoomCmd::Join { reply, .. } if self.write_failed.is_some() => drop(reply),
                RoomCmd::Join {
                    peer_id,
                    role,
                    echo_awareness,
                    tx,
                    kick,
                    reply,
                } => self.join(peer_id, role, echo_awareness, tx, kick, reply),
                RoomCmd::SyncStep1 {
                    peer_id,
                    state_vector,
                } => self.sync_step1(peer_id, &state_vector),
                RoomCmd::Update {
                    peer_id,
                    seq,
                    update,
                    arrived,
                } => {
                    let mut batch = vec![Incoming {
                        peer_id,
                        seq,
                        update,
                        arrived,
                    }];
                    // After a batch panicked, and while the orphan budget is spent (gaps are
                    // judged against the document before each update), one update at a time.
                    if self.one_by_one > 0 || self.orphan_bytes > MAX_ORPHAN_BYTES {
                        self.one_by_one = self.one_by_one.saturating_sub(1);
                    } else {
                        while batch.len() < INBOX_BATCH
                            && let Some(RoomCmd::Update { .. }) = queue.front()
                            && let Some(Ok(next)) = queue.pop_front().map(Incoming::try_from)
                        {
                            batch.push(next);
                        }
                    }
                    self.updates(batch, queue);
                }
                RoomCmd::Awareness {
                    peer_id,
                    client_id,
                    source,
                } => self.set_awareness(peer_id, client_id, source),
                RoomCmd::QueryAwareness { peer_id } => self.send_all_awareness(peer_id),
                RoomCmd::Leave { peer_id } => self.leave(peer_id),
            }
        }
    }

    fn join(
        &mut self,
        peer_id: u64,
        role: Role,
        echo_awareness: bool,
        tx: OutboxTx,
        kick: oneshot::Sender<Kick>,
        reply: oneshot::Sender<()>,
    ) {
        if let Some(reason) = &self.broken {
            let _ = tx.push(Out::Error(
                ErrorCode::ROOM_UNAVAILABLE,
                format!("room {} cannot be opened: {reason}", self.name).into(),
            ));
            let _ = kick.send(Kick {
                code: close::INTERNAL,
                reason: "room unavailable".into(),
            });
            let _ = reply.send(());
            return;
        }
        let sv = self.doc.transact().state_vector().encode_v1();
        self.members.insert(
            peer_id,
            Member {
                role,
                echo_awareness,
                tx,
                kick: Some(kick),
            },
        );
        self.send(peer_id, Out::SyncStep1(sv.into()));
        if !self.awareness.is_empty() {
            self.send_all_awareness(peer_id);
        }
        let _ = reply.send(());
        tracing::debug!(room = %self.name, peer_id, members = self.members.len(), "joined");
    }

    fn sync_step1(&mut self, peer_id: u64, state_vector: &[u8]) {
        match decode_state_vector(state_vector) {
            Ok(sv) => {
                let diff = if sv.is_empty() {
                    let doc = &self.doc;
                    self.full_state
                        .get_or_insert_with(|| doc.transact().encode_diff_v1(&sv).into())
                        .clone()
                } else {
                    self.doc.transact().encode_diff_v1(&sv).into()
                };
                self.send(peer_id, Out::SyncStep2(diff));
            }
            Err(e) => self.reject(
                peer_id,
                ErrorCode::BAD_UPDATE,
                close::INVALID_PAYLOAD,
                format!("malformed state vector: {e}"),
            ),
        }
    }

    /// Applies a batch of updates in one yrs transaction (one commit, one state vector for
    /// the lot, where each update alone costs a transaction), then acts on each in order:
    /// relay and store it, or tell or refuse its author. Nothing leaves the room before the
    /// whole batch applied, so when yrs panics the batch goes back to the front of the queue
    /// and, once the document is reloaded, is applied one update at a time: only the update
    /// that panics is refused.
    fn updates(&mut self, batch: Vec<Incoming>, queue: &mut VecDeque<RoomCmd>) {
        let refuse_gaps = self.orphan_bytes > MAX_ORPHAN_BYTES;
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut decoded = Vec::with_capacity(batch.len());
        // Authors refused earlier in the batch: their later updates are ignored, as they would
        // be once the room forgot them.
        let mut refused: Vec<u64> = Vec::new();
        // The document's next clock per client, advanced past each update accepted so far in
        // this batch (they apply in one transaction, in order).
        let mut next_clock: Option<HashMap<u64, u64>> = None;
        for (i, inc) in batch.iter().enumerate() {
            let verdict = match self.members.get(&inc.peer_id) {
                None => Verdict::Ignore,
                Some(_) if refused.contains(&inc.peer_id) => Verdict::Ignore,
                Some(_) if self.write_failed.is_some() => Verdict::Tell(
                    ErrorCode::STORAGE_UNAVAILABLE,
                    format!(
                        "room {} refuses writes: {}",
                        self.name,
                        self.write_failed.as_deref().unwrap_or_default()
                    ),
                ),
                // Every client sends an empty update when it syncs; only real edits are refused.
                Some(m) if m.role == Role::Viewer && inc.update == [0, 0] => Verdict::Ignore,
                Some(m) if m.role == Role::Viewer => Verdict::Tell(
                    ErrorCode::READ_ONLY,
                    "you joined as a viewer: your edits are not applied".into(),
                ),
                Some(_) => match decode_update(&inc.update) {
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
                },
            };
            verdicts.push(verdict);
        }

        let applied = if decoded.is_empty() {
            Ok(None)
        } else {
            let doc = &self.doc;
            let batch = &batch;
            contained(move || {
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
                Some((failures, txn.state_vector(), txn.has_missing_updates()))
            })
        };
        let (have, missing) = match applied {
            Ok(Some((failures, have, missing))) => {
                for (i, error) in failures {
                    verdicts[i] = error.map_or(Verdict::Ignore, malformed);
                }
                (have, missing)
            }
            Ok(None) => (StateVector::default(), false),
            Err(_) if batch.len() == 1 => {
                let peer_id = batch[0].peer_id;
                tracing::error!(room = %self.name, peer_id, "yrs panicked applying an update; reloading the room");
                self.needs_reload = true;
                self.reject(
                    peer_id,
                    ErrorCode::INTERNAL,
                    close::INTERNAL,
                    "your update crashed the document engine; it was discarded".into(),
                );
                return;
            }
            Err(_) => {
                tracing::warn!(room = %self.name, updates = batch.len(), "yrs panicked applying a batch of updates; reloading the room and applying them one at a time");
                self.needs_reload = true;
                self.requeue(batch, queue);
                return;
            }
        };

        let mut changed = false;
        let mut items = batch.into_iter().zip(verdicts);
        while let Some((inc, verdict)) = items.next() {
            match verdict {
                Verdict::Ignore => {}
                Verdict::Tell(code, message) => {
                    self.send(inc.peer_id, Out::Error(code, message.into()))
                }
                Verdict::Refuse(code, close, message) => {
                    self.reject(inc.peer_id, code, close, message)
                }
                // Nothing new to store; the ack still waits for the author's earlier appends,
                // since an ack covers every earlier seq.
                Verdict::Unchanged => {
                    self.after_append(inc.peer_id, inc.seq, inc.arrived, Appending::done(Ok(())));
                }
                Verdict::Applied(_) if self.write_failed.is_some() => {}
                Verdict::Applied(lower) => {
                    if waits(&lower, &have) {
                        self.orphan_bytes += inc.update.len();
                        if self.orphan_bytes > MAX_ORPHAN_BYTES {
                            // Not relayed, not stored: reload so the refused bytes leave memory.
                            // The rest of the batch was applied to the document being dropped:
                            // it goes back to the queue.
                            self.needs_reload = true;
                            self.reject(
                                inc.peer_id,
                                ErrorCode::BAD_UPDATE,
                                close::POLICY,
                                ApplyError::Orphan.to_string(),
                            );
                            let rest = items.map(|(inc, _)| inc).collect();
                            self.requeue(rest, queue);
                            break;
                        }
                    } else if !missing {
                        self.orphan_bytes = 0;
                    }
                    changed = true;
                    self.relay(inc);
                }
            }
        }
        if changed {
            self.offer_snapshot();
        }
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
        let next = next_clock.get_or_insert_with(|| {
            self.doc
                .transact()
                .state_vector()
                .iter()
                .map(|(client, clock)| (client.get(), u64::from(*clock)))
                .collect()
        });
        match crate::guard::check_dependencies_v1(update, |c| next.get(&c).copied().unwrap_or(0)) {
            Ok(sections) => {
                for section in sections {
                    let at = next.entry(section.client).or_default();
                    *at = (*at).max(section.end);
                }
                Ok(())
            }
            Err(e @ crate::guard::GuardError::Gap { .. }) => Err(Verdict::Refuse(
                ErrorCode::BAD_UPDATE,
                close::POLICY,
                format!(
                    "the update depends on data the room never received ({e}); reconnect to resync"
                ),
            )),
            Err(e) => Err(malformed(e)),
        }
    }

    /// Puts updates back at the front of the queue, to be applied one at a time after the
    /// reload.
    fn requeue(&mut self, updates: Vec<Incoming>, queue: &mut VecDeque<RoomCmd>) {
        self.one_by_one = updates.len();
        for inc in updates.into_iter().rev() {
            queue.push_front(inc.into());
        }
    }

    /// Sends an integrated update to every other member and to the store.
    fn relay(&mut self, inc: Incoming) {
        let Incoming {
            peer_id,
            seq,
            update,
            arrived,
        } = inc;
        self.full_state = None;
        let shared = SharedUpdate::new(update);
        let others = self.members.len() - usize::from(self.members.contains_key(&peer_id));
        self.metrics.updates_relayed.inc_by(others as u64);
        self.broadcast(Some(peer_id), |_| Out::Update(shared.clone()));
        self.metrics.relay_latency.observe(arrived.elapsed());
        let appending = self.store.append(&self.name, shared.raw().to_vec());
        self.after_append(peer_id, seq, arrived, appending);
    }

    /// Acknowledges an update once stored: at once when the store already has it and no
    /// earlier append is still in flight (acks are cumulative, so they go in order), otherwise
    /// when its turn in `pending` comes.
    fn after_append(
        &mut self,
        peer_id: u64,
        seq: Option<u64>,
        arrived: Instant,
        mut appending: Appending,
    ) {
        if self.pending.is_empty()
            && let Some(result) = appending.take_ready()
        {
            self.stored((peer_id, seq, arrived, result));
            return;
        }
        self.pending.push_back(Box::pin(
            async move { (peer_id, seq, arrived, appending.await) },
        ));
    }

    /// Hands the store the whole document when it asks (the memory store replaces its log).
    /// Encoding is contained like every yrs call here; a document waiting on missing
    /// dependencies is not offered, since its encoding would leave those parts out.
    fn offer_snapshot(&mut self) {
        if !self.store.wants_snapshot(&self.name) {
            return;
        }
        let doc = &self.doc;
        let state = contained(|| {
            let txn = doc.transact();
            (!txn.has_missing_updates())
                .then(|| txn.encode_state_as_update_v1(&StateVector::default()))
        });
        if let Ok(Some(state)) = state {
            self.store.snapshot(&self.name, state);
        }
    }

    fn stored(&mut self, (peer_id, seq, arrived, result): StoreResult) {
        match result {
            Ok(()) => {
                self.metrics.updates_stored.inc();
                self.metrics.ack_latency.observe(arrived.elapsed());
                // After a failure nothing is acknowledged: an ack covers every earlier seq.
                if let (Some(seq), None) = (seq, &self.write_failed) {
                    let refused = self.members.get(&peer_id).and_then(|m| m.tx.ack(seq).err());
                    if let Some(refused) = refused {
                        self.refused(peer_id, refused);
                    }
                }
            }
            Err(e) if self.write_failed.is_none() => self.refuse_writes(&e),
            Err(_) => {}
        }
    }

    /// An append failed: tell every member, close them (1013) so they rejoin a room loaded
    /// from storage, and stop acknowledging.
    fn refuse_writes(&mut self, e: &StoreError) {
        tracing::error!(room = %self.name, error = %e, members = self.members.len(), "storing an update failed: the room refuses writes, closes its members and unloads");
        self.write_failed = Some(e.to_string());
        self.metrics.rooms_refusing_writes.inc();
        self.metrics.write_refusals.inc();
        let message = format!(
            "the server could not store edits of room {} ({e}); unacknowledged edits stay in your editor and are sent again when you reconnect",
            self.name
        );
        let peers: Vec<u64> = self.members.keys().copied().collect();
        for peer_id in peers {
            if let Some(member) = self.members.get(&peer_id) {
                let _ = member.tx.push(Out::Error(
                    ErrorCode::STORAGE_UNAVAILABLE,
                    message.as_str().into(),
                ));
            }
            self.kick(
                peer_id,
                close::TRY_AGAIN_LATER,
                "storage unavailable: edits not stored, reconnect later".into(),
            );
        }
    }

    fn set_awareness(&mut self, peer_id: u64, client_id: u64, source: AwarenessSource) {
        let Some(role) = self.members.get(&peer_id).map(|m| m.role) else {
            return;
        };
        let now = Instant::now();
        let slot = self.awareness.entry(client_id).or_insert(Slot {
            owner: peer_id,
            clock: 0,
            role,
            state: None,
            json: None,
            updated: now,
        });
        if slot.owner != peer_id {
            self.send(
                peer_id,
                Out::Error(
                    ErrorCode::NOT_OWNER,
                    format!("awareness entry {client_id} belongs to another connection").into(),
                ),
            );
            return;
        }
        // Translate once here, so each member gets the form it speaks without more work.
        match source {
            AwarenessSource::Duet(state) => {
                slot.clock = slot.clock.wrapping_add(1);
                slot.json = state
                    .as_ref()
                    .map(|s| Arc::from(duet_yjs::awareness::peer_state_to_json(s)));
                slot.state = state;
            }
            AwarenessSource::Yjs { json, clock } => {
                // As y-protocols does: an older clock is stale, unless it clears the state.
                let is_new = slot.state.is_none() && slot.clock == 0;
                if !is_new && clock < slot.clock && json.is_some() {
                    return;
                }
                slot.clock = clock;
                slot.state = json
                    .as_deref()
                    .map(duet_yjs::awareness::peer_state_from_json);
                slot.json = json;
            }
        }
        slot.updated = now;
        let out = awareness_out(client_id, slot);
        if out.entry.state.is_none() {
            self.awareness.remove(&client_id);
        }
        let entries: Arc<[AwarenessOut]> = vec![out].into();
        self.broadcast_awareness(peer_id, entries);
    }

    fn send_all_awareness(&mut self, peer_id: u64) {
        let entries: Arc<[AwarenessOut]> = self
            .awareness
            .iter()
            .filter(|(_, slot)| slot.state.is_some())
            .map(|(client_id, slot)| awareness_out(*client_id, slot))
            .collect::<Vec<_>>()
            .into();
        self.send(peer_id, Out::Awareness(entries));
    }

    /// Sends an awareness change to every member but its author, and to its author too when
    /// that member wants echoes (Yjs clients).
    fn broadcast_awareness(&mut self, author: u64, entries: Arc<[AwarenessOut]>) {
        let echo = self.members.get(&author).is_some_and(|m| m.echo_awareness);
        let except = (!echo).then_some(author);
        self.broadcast(except, |_| Out::Awareness(entries.clone()));
    }

    fn leave(&mut self, peer_id: u64) {
        if self.members.remove(&peer_id).is_none() {
            return;
        }
        self.drop_awareness_of(peer_id);
        tracing::debug!(room = %self.name, peer_id, members = self.members.len(), "left");
    }

    fn drop_awareness_of(&mut self, peer_id: u64) {
        let gone: Vec<u64> = self
            .awareness
            .iter()
            .filter(|(_, slot)| slot.owner == peer_id)
            .map(|(id, _)| *id)
            .collect();
        self.remove_entries(&gone);
    }

    fn remove_entries(&mut self, client_ids: &[u64]) {
        if client_ids.is_empty() {
            return;
        }
        let entries: Arc<[AwarenessOut]> = client_ids
            .iter()
            .filter_map(|id| {
                self.awareness.remove(id).map(|mut slot| {
                    slot.clock = slot.clock.wrapping_add(1);
                    slot.state = None;
                    slot.json = None;
                    awareness_out(*id, &slot)
                })
            })
            .collect::<Vec<_>>()
            .into();
        self.broadcast(None, |_| Out::Awareness(entries.clone()));
    }

    /// Drops awareness entries that were not renewed within [`AWARENESS_TTL`].
    fn expire_awareness(&mut self, now: Instant) {
        let stale: Vec<u64> = self
            .awareness
            .iter()
            .filter(|(_, slot)| now.duration_since(slot.updated) >= AWARENESS_TTL)
            .map(|(id, _)| *id)
            .collect();
        self.remove_entries(&stale);
    }

    /// Queues `out` for one member; a member whose queue is full is closed (1013).
    fn send(&mut self, peer_id: u64, out: Out) {
        let refused = match self.members.get(&peer_id) {
            Some(member) => member.tx.push(out).err(),
            None => None,
        };
        if let Some(refused) = refused {
            self.refused(peer_id, refused);
        }
    }

    fn broadcast(&mut self, except: Option<u64>, mut out: impl FnMut(u64) -> Out) {
        let mut refused = Vec::new();
        for (&peer_id, member) in &self.members {
            if Some(peer_id) == except {
                continue;
            }
            if let Err(why) = member.tx.push(out(peer_id)) {
                refused.push((peer_id, why));
            }
        }
        for (peer_id, why) in refused {
            self.refused(peer_id, why);
        }
    }

    /// A member's queue refused a message. Full: the member cannot keep up and is closed
    /// (1013). Gone: its connection already ended (its `Leave` is still in our inbox, behind
    /// what we are handling now), so it is simply forgotten; no close is sent or counted.
    fn refused(&mut self, peer_id: u64, why: Refused) {
        match why {
            Refused::Full => {
                tracing::info!(room = %self.name, peer_id, "closing a member that cannot keep up (1013)");
                self.kick(
                    peer_id,
                    close::TRY_AGAIN_LATER,
                    "you fell behind; reconnect to resync".into(),
                );
            }
            Refused::Gone => {
                tracing::debug!(room = %self.name, peer_id, "forgetting a member whose connection ended");
                self.leave(peer_id);
            }
        }
    }

    /// Sends an error, closes the member with `code` and forgets it.
    fn reject(&mut self, peer_id: u64, error: ErrorCode, code: close::CloseCode, message: String) {
        tracing::debug!(room = %self.name, peer_id, %message, "rejecting a member's message");
        if let Some(member) = self.members.get(&peer_id) {
            let _ = member.tx.push(Out::Error(error, message.as_str().into()));
        }
        self.kick(peer_id, code, message);
    }

    fn kick(&mut self, peer_id: u64, code: close::CloseCode, reason: String) {
        if let Some(mut member) = self.members.remove(&peer_id) {
            // The connection counts the close when it sends it (conn.rs `finish`).
            if let Some(kick) = member.kick.take() {
                let _ = kick.send(Kick { code, reason });
            }
        }
        self.drop_awareness_of(peer_id);
    }
}

fn awareness_out(client_id: u64, slot: &Slot) -> AwarenessOut {
    AwarenessOut {
        entry: AwarenessEntry {
            client_id,
            peer_id: slot.owner,
            clock: slot.clock,
            role: slot.role,
            state: slot.state.clone(),
        },
        json: slot.json.clone(),
    }
}

/// Starts a room's task. `on_exit` runs once the task has stopped taking commands.
// Every argument is a distinct dependency of the task; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn(
    id: u64,
    name: RoomName,
    store: Arc<dyn Store>,
    config: RoomConfig,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
    metrics: Arc<Metrics>,
    on_exit: impl FnOnce() + Send + 'static,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(config.inbox);
    tracker.spawn(run(name, store, config, rx, shutdown, metrics, on_exit));
    RoomHandle { id, tx }
}

async fn run(
    name: RoomName,
    store: Arc<dyn Store>,
    config: RoomConfig,
    mut rx: mpsc::Receiver<RoomCmd>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    on_exit: impl FnOnce(),
) {
    metrics.rooms_loaded.inc();
    let mut room = Room::load(name, store, metrics.clone()).await;
    let mut expiry = tokio::time::interval(Duration::from_secs(5));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle = tokio::time::sleep(config.idle_unload);
    tokio::pin!(idle);
    let mut idle_armed = false;
    // Commands taken from the inbox and not yet handled (a reload may interrupt a turn).
    let mut queue = VecDeque::with_capacity(INBOX_BATCH);
    loop {
        if room.write_failed.is_some() {
            break;
        }
        let is_idle = room.members.is_empty() && room.pending.is_empty();
        if is_idle && !idle_armed {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + config.idle_unload);
        }
        idle_armed = is_idle;
        tokio::select! {
            cmd = rx.recv(), if room.pending.len() < MAX_PENDING_APPENDS => match cmd {
                Some(cmd) => {
                    // Take what else is waiting in one turn: members are woken once for a
                    // burst instead of once per command, and its updates share a transaction.
                    queue.push_back(cmd);
                    while queue.len() < INBOX_BATCH
                        && room.pending.len() + queue.len() < MAX_PENDING_APPENDS
                        && let Ok(cmd) = rx.try_recv()
                    {
                        queue.push_back(cmd);
                    }
                    room.handle_turn(&mut queue);
                    while room.needs_reload {
                        room.reload().await;
                        room.handle_turn(&mut queue);
                    }
                }
                None => break,
            },
            Some(done) = room.pending.next(), if !room.pending.is_empty() => room.stored(done),
            _ = expiry.tick(), if !room.awareness.is_empty() => room.expire_awareness(Instant::now()),
            () = &mut idle, if idle_armed => {
                tracing::debug!(room = %room.name, "unloading idle room");
                break;
            }
            () = shutdown.cancelled() => break,
        }
    }
    // Stop taking commands, then finish what was taken: commands already queued are handled
    // (their updates stored), and joins that raced the unload are turned away so the
    // connection asks the registry for a fresh room.
    rx.close();
    on_exit();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            RoomCmd::Join { reply, .. } => drop(reply),
            cmd => queue.push_back(cmd),
        }
    }
    queue.retain(|cmd| !matches!(cmd, RoomCmd::Join { .. }));
    room.handle_turn(&mut queue);
    while room.needs_reload {
        room.reload().await;
        room.handle_turn(&mut queue);
    }
    while let Some(done) = room.pending.next().await {
        room.stored(done);
    }
    metrics.rooms_loaded.dec();
    if room.write_failed.is_some() {
        metrics.rooms_refusing_writes.dec();
    }
    tracing::debug!(room = %room.name, "room task finished");
}

#[cfg(test)]
mod tests;
