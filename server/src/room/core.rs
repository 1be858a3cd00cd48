//! [`RoomCore`]: a room's state and rules, synchronous and deterministic. A command and the
//! time go in ([`RoomCore::handle`]), effects come out ([`Effect`]): what to send to whom,
//! what to append to the store, whom to close and why, when to reload or compact. It holds
//! no channel, socket, store or clock; the task around it (`task.rs`) carries the effects out
//! and feeds back what comes of them (the store's answers, queues that refused a message).
//!
//! ```text
//!   Join, SyncStep1, Updates, Awareness, Leave ──┐
//!   Remote, FromNode, NodeAwareness, NodeGone,   │
//!   Behind, Head, Digest, AwarenessQuery (bus) ──┼──> RoomCore ──> Send, Broadcast, Ack, Kick,
//!   Loaded, Stored, Compacted, CaughtUp, Settle, │                 Append, Compact, Reload,
//!   Tick, DigestTick (the task) ─────────────────┘                 Publish, CatchUp, Settle
//! ```
//!
//! The parts: the document (`crdt.rs`), membership (`members.rs`), awareness
//! (`awareness.rs`), the acknowledgement pipeline (`acks.rs`), compaction's schedule
//! (`crate::compaction`), and in a cluster the room's place in its log (`cursor.rs`).
//!
//! In a cluster ([`RoomCore::in_cluster`]) several nodes hold copies of the room: another
//! node's updates come in as `FromNode` (applied and relayed, never stored here), the room
//! reads its log past its cursor when something may have been missed, tells the other nodes
//! its members' awareness and, now and then, its state vector (`Publish`), and takes their
//! members' awareness as entries owned by that node. A node that is gone loses its entries at
//! once, and what it relayed to this room but may never have stored is stored from here
//! (`Settle`).

use super::acks::{Acks, Settled};
use super::awareness::{Awareness, Owner, RemoteEntry, Set};
use super::crdt::{Crdt, RemoteApplied, Verdict, clients_of, sections_of};
use super::cursor::{CatchUp, Cursor, LOSS_RECHECK};
use super::members::{Member, Members};
use crate::compaction::{CompactError, Compacted, CompactionPolicy, Schedule};
use crate::doc::ApplyError;
use crate::guard::Section;
use crate::metrics::Metrics;
use crate::out::{AwarenessOut, AwarenessSource, Kick, Out, SharedUpdate};
use crate::store::{Seq, StoreError, Stored};
use duet_protocol::{ErrorCode, Role, RoomName, close};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact};

/// An update as a member's connection handed it to the room.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub peer_id: u64,
    /// The author's number for it (duet clients; acknowledged once stored).
    pub seq: Option<u64>,
    pub update: Vec<u8>,
    /// When the connection read it, for the relay and ack latency histograms.
    pub arrived: Instant,
}

/// What a room is told.
pub enum Cmd {
    /// The store's answer to a (re)load: the room's document, or why not.
    Loaded(Result<Stored, StoreError>),
    Join {
        peer_id: u64,
        role: Role,
        /// Yjs clients expect their own awareness echoed back.
        echo_awareness: bool,
    },
    SyncStep1 {
        peer_id: u64,
        state_vector: Vec<u8>,
    },
    /// Members' updates in the order their connections read them; a burst shares one yrs
    /// transaction (ADR 005).
    Updates(Vec<Incoming>),
    /// An update from elsewhere (another node's relay, catching up on the log): applied and
    /// relayed to every member, never stored here (it was stored where it entered); one that
    /// arrives before its dependencies waits within the orphan budget.
    Remote {
        update: Vec<u8>,
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
    /// The member's connection ended, or its queue refused a message.
    Leave {
        peer_id: u64,
    },
    /// The store's answer to the oldest append still waiting.
    Stored(Result<Seq, StoreError>),
    /// What became of the compaction the room asked for.
    Compacted(Result<Compacted, CompactError>),
    /// Time passed (awareness entries expire).
    Tick,
    /// Another node's update, heard on the bus: applied and relayed as `Remote`, and
    /// remembered as relayed by that node (see `NodeGone`).
    FromNode {
        node: u64,
        update: Vec<u8>,
    },
    /// Something may be missing (a gap in a node's counters, a reconnect, a lag): read the log
    /// past the cursor.
    Behind(CatchUp),
    /// The log's head, from the node's periodic check of its rooms.
    Head(Seq),
    /// The answer to [`Effect::CatchUp`].
    CaughtUp(Result<Stored, StoreError>),
    /// Awareness entries another node's members set.
    NodeAwareness {
        node: u64,
        entries: Vec<RemoteEntry>,
    },
    /// Another node loaded the room and asks for its members' awareness.
    AwarenessQuery,
    /// Another node's state vector of the room (v1).
    Digest {
        state_vector: Vec<u8>,
    },
    /// Time to tell the other nodes this room's state vector.
    DigestTick,
    /// A node is gone (its heartbeat went stale, or it restarted): its members' awareness
    /// leaves, and what it relayed here but may not have stored is stored from here.
    NodeGone {
        node: u64,
    },
    /// The answer to [`Effect::Settle`]: the log merged into a document (or why not), and
    /// the clients whose blocks the gone node relayed.
    Settle {
        log: Result<yrs::Doc, CompactError>,
        clients: Vec<u64>,
    },
}

/// How to compact, when [`Effect::Compact`] asks for it.
#[derive(Debug)]
pub enum Compaction {
    /// The room's live document, which holds every update up to `covers`.
    Live { state: Vec<u8>, covers: Seq },
    /// The room cannot prove that (someone else appended to its log): merge what the store
    /// holds in a fresh document (`compaction::compact_from_store`).
    FromStore,
}

/// Effects in the order they must happen.
pub type Effects = VecDeque<Effect>;

/// What the room wants done, in order.
pub enum Effect {
    Send {
        to: u64,
        out: Out,
    },
    /// To every member but `except`.
    Broadcast {
        except: Option<u64>,
        out: Out,
    },
    /// Everything up to `seq` of member `to` is stored.
    Ack {
        to: u64,
        seq: u64,
    },
    /// Close member `peer_id` (what was sent to it before goes first).
    Kick {
        peer_id: u64,
        kick: Kick,
    },
    /// Store this update; answer with [`Cmd::Stored`], in the order of the appends.
    Append(Arc<SharedUpdate>),
    /// Answer with [`Cmd::Compacted`].
    Compact(Compaction),
    /// Replace the document with what the store holds, once every append in flight has been
    /// answered, then handle `retry` one update at a time before anything else.
    Reload {
        retry: Vec<Incoming>,
    },
    /// Tell the other nodes of the cluster (only [`RoomCore::in_cluster`] rooms ask).
    Publish(Publish),
    /// Read the log past `after` (`Seq(0)`: all of it), `delay` from now (zero: at once);
    /// answer with [`Cmd::CaughtUp`].
    CatchUp {
        after: Seq,
        delay: Duration,
    },
    /// Read the whole log and merge it in a fresh document; answer with [`Cmd::Settle`]
    /// carrying `clients`.
    Settle {
        clients: Vec<u64>,
    },
}

/// What a room tells the other nodes (besides its updates, which go with `Append`).
pub enum Publish {
    /// Its own members' awareness entries that changed (or all of them, for a query).
    Awareness(Arc<[AwarenessOut]>),
    /// Its state vector (v1).
    Digest(Vec<u8>),
}

/// A room's state: its document, members, awareness, acknowledgements in flight.
pub struct RoomCore {
    name: RoomName,
    crdt: Crdt,
    members: Members,
    awareness: Awareness,
    acks: Acks,
    compaction: Schedule,
    /// The last log position the document is known to hold every update up to (from the
    /// load, then each of this room's appends in turn), and whether that chain is unbroken:
    /// a gap means someone else appended, and the live document proves nothing.
    log_head: Seq,
    provable: bool,
    /// Set when the store failed to load this room: it refuses every member.
    broken: Option<Broken>,
    /// Whether other nodes hold copies of this room (a cluster).
    shared: bool,
    /// Where the room is in its log, and its reads past that (cluster).
    cursor: Cursor,
    /// Which node relayed each yrs client's latest blocks here (cluster): when that node is
    /// gone, those clients' blocks are checked against the log.
    relayed_by: HashMap<u64, u64>,
    /// Digests in a row in which another node held something this room lacked.
    digest_behind: u32,
    /// What the log is known to hold, per client (cluster): the document as loaded, then the
    /// rows read past the cursor and this room's own appends once stored. Members are told
    /// this state vector, not the document's, when they join: the document also holds what
    /// other nodes relayed and may not have stored yet, and a client that syncs against it
    /// would leave out (yet be acknowledged for) its own edits that only a dead node's relay
    /// carried. Against this one, it sends them again, and they are stored here.
    confirmed: StateVector,
    /// Each append in flight: the client ranges it will confirm once stored (cluster).
    confirming: VecDeque<Vec<Section>>,
    metrics: Arc<Metrics>,
}

/// Why a room refuses everyone.
struct Broken {
    reason: String,
    /// The store could not be reached (rather than a damaged document): members are told to
    /// retry (1013) and the room unloads, so the next join loads it again.
    unavailable: bool,
}

impl RoomCore {
    /// A room that holds nothing until [`Cmd::Loaded`]: the task loads it before it lets
    /// anyone join, so no joiner ever sees an empty or partial document.
    pub fn new(name: RoomName, policy: CompactionPolicy, metrics: Arc<Metrics>) -> Self {
        Self {
            name,
            crdt: Crdt::new(),
            members: Members::default(),
            awareness: Awareness::default(),
            acks: Acks::default(),
            compaction: Schedule::new(policy),
            log_head: Seq(0),
            provable: true,
            broken: None,
            shared: false,
            cursor: Cursor::default(),
            relayed_by: HashMap::new(),
            digest_behind: 0,
            confirmed: StateVector::default(),
            confirming: VecDeque::new(),
            metrics,
        }
    }

    /// A room of a cluster: other nodes hold copies of it (see the module's documentation).
    pub fn in_cluster(mut self) -> Self {
        self.shared = true;
        self
    }

    pub fn name(&self) -> &RoomName {
        &self.name
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Handles one command at time `now`; the effects, in the order they must happen.
    pub fn handle(&mut self, cmd: Cmd, now: Instant) -> Vec<Effect> {
        let mut fx = Effects::new();
        self.handle_into(cmd, now, &mut fx);
        fx.into()
    }

    /// Like [`RoomCore::handle`], appending the effects to `fx` (the task reuses one queue,
    /// so a command costs no allocation for its effects).
    pub fn handle_into(&mut self, cmd: Cmd, now: Instant, fx: &mut Effects) {
        match cmd {
            Cmd::Loaded(result) => self.loaded(result),
            Cmd::Join {
                peer_id,
                role,
                echo_awareness,
            } => self.join(peer_id, role, echo_awareness, fx),
            Cmd::SyncStep1 {
                peer_id,
                state_vector,
            } => self.sync_step1(peer_id, &state_vector, fx),
            Cmd::Updates(batch) => self.updates(batch, now, fx),
            Cmd::Remote { update } => self.remote(update, fx),
            Cmd::Awareness {
                peer_id,
                client_id,
                source,
            } => self.set_awareness(peer_id, client_id, source, now, fx),
            Cmd::QueryAwareness { peer_id } => fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Awareness(self.awareness.all()),
            }),
            Cmd::Leave { peer_id } => self.leave(peer_id, fx),
            Cmd::Stored(result) => {
                if self.shared {
                    let sections = self.confirming.pop_front();
                    if let (Ok(_), Some(sections)) = (&result, sections) {
                        self.confirm(&sections);
                    }
                }
                self.acks.stored(result);
                self.settled(now, fx);
            }
            Cmd::Compacted(result) => {
                if let Err(e) = &result {
                    tracing::warn!(room = %self.name, error = %e, "compaction failed; the log is kept as it is");
                }
                if let Ok(Compacted { stored: false, .. }) = &result {
                    // Another compactor's snapshot already covers as much (the compare-and-swap
                    // refused this one): with several nodes, the one that got there first.
                    self.metrics.compactions_refused.inc();
                }
                self.compaction.finished(result.as_ref().copied());
            }
            Cmd::Tick => {
                if let Some(expired) = self.awareness.expire(now) {
                    fx.push_back(Effect::Broadcast {
                        except: None,
                        out: Out::Awareness(expired.all),
                    });
                    self.publish_awareness(expired.members, fx);
                }
            }
            Cmd::FromNode { node, update } => {
                if self.shared {
                    for client in clients_of(&update) {
                        self.relayed_by.insert(client, node);
                    }
                }
                self.remote(update, fx);
            }
            Cmd::Behind(why) => self.catch_up(why, false, fx),
            Cmd::Head(head) => {
                if head > self.cursor.at() {
                    self.catch_up(CatchUp::Heads, false, fx);
                }
            }
            Cmd::CaughtUp(result) => self.caught_up(result, fx),
            Cmd::NodeAwareness { node, entries } => self.node_awareness(node, entries, now, fx),
            Cmd::AwarenessQuery => {
                let entries = self.awareness.of_members();
                self.publish_awareness(entries, fx);
            }
            Cmd::Digest { state_vector } => self.digest(&state_vector, fx),
            Cmd::DigestTick => {
                if self.shared && self.broken.is_none() && !self.members.is_empty() {
                    let sv = self.crdt.state_vector().encode_v1();
                    fx.push_back(Effect::Publish(Publish::Digest(sv)));
                }
            }
            Cmd::NodeGone { node } => self.node_gone(node, fx),
            Cmd::Settle { log, clients } => self.settle(log, &clients, now, fx),
        }
    }

    /// Whether the document must be reloaded before the next command.
    pub fn needs_reload(&self) -> bool {
        self.crdt.needs_reload()
    }

    /// How many updates the next [`Cmd::Updates`] may carry.
    pub fn batch_limit(&self, max: usize) -> usize {
        if self.crdt.one_at_a_time() { 1 } else { max }
    }

    /// Why the room refuses writes (an append failed): it takes no one new and unloads.
    pub fn refuses_writes(&self) -> Option<&str> {
        self.acks.failed()
    }

    /// Whether the store could not be reached to load the room: it has refused the joins so
    /// far (1013) and unloads, so that the next join tries again.
    pub fn load_unavailable(&self) -> bool {
        self.broken.as_ref().is_some_and(|b| b.unavailable)
    }

    /// Every row of the log up to here is in the document (cluster bookkeeping).
    pub fn cursor(&self) -> Seq {
        self.cursor.at()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn has_awareness(&self) -> bool {
        !self.awareness.is_empty()
    }

    fn loaded(&mut self, result: Result<Stored, StoreError>) {
        let stored = match result {
            Ok(stored) => stored,
            Err(e @ StoreError::Unavailable(_)) => {
                // Each join tries again (clients back off): a warning each, not an error.
                tracing::warn!(room = %self.name, error = %e, "loading room failed; its joiners are told to retry");
                self.broken = Some(Broken {
                    unavailable: true,
                    reason: e.to_string(),
                });
                return;
            }
            Err(e) => {
                tracing::error!(room = %self.name, error = %e, "loading room failed");
                self.broken = Some(Broken {
                    unavailable: matches!(e, StoreError::Unavailable(_)),
                    reason: e.to_string(),
                });
                return;
            }
        };
        match self.crdt.load(&stored) {
            Ok(()) => self.broken = None,
            Err(e) => {
                tracing::error!(room = %self.name, error = %e, "stored update does not apply");
                self.broken = Some(Broken {
                    reason: e,
                    unavailable: false,
                });
            }
        }
        self.log_head = stored.head;
        self.provable = true;
        self.cursor.loaded(stored.head);
        if self.shared {
            self.confirmed = self.crdt.state_vector();
            self.confirming.clear();
        }
        self.compaction.loaded(&stored);
    }

    fn join(&mut self, peer_id: u64, role: Role, echo_awareness: bool, fx: &mut Effects) {
        if let Some(broken) = &self.broken {
            let (code, kick) = if broken.unavailable {
                (
                    ErrorCode::STORAGE_UNAVAILABLE,
                    Kick {
                        code: close::TRY_AGAIN_LATER,
                        reason: "storage unavailable: room not loaded, reconnect later".into(),
                    },
                )
            } else {
                (
                    ErrorCode::ROOM_UNAVAILABLE,
                    Kick {
                        code: close::INTERNAL,
                        reason: "room unavailable".into(),
                    },
                )
            };
            fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Error(
                    code,
                    format!("room {} cannot be opened: {}", self.name, broken.reason).into(),
                ),
            });
            fx.push_back(Effect::Kick { peer_id, kick });
            return;
        }
        self.members.insert(
            peer_id,
            Member {
                role,
                echo_awareness,
            },
        );
        let sv = if self.shared {
            self.confirmed.encode_v1()
        } else {
            self.crdt.state_vector().encode_v1()
        };
        fx.push_back(Effect::Send {
            to: peer_id,
            out: Out::SyncStep1(sv.into()),
        });
        if !self.awareness.is_empty() {
            fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Awareness(self.awareness.all()),
            });
        }
        tracing::debug!(room = %self.name, peer_id, members = self.members.len(), "joined");
    }

    fn sync_step1(&mut self, peer_id: u64, state_vector: &[u8], fx: &mut Effects) {
        match self.crdt.diff(state_vector) {
            Ok(diff) => fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::SyncStep2(diff),
            }),
            Err(e) => self.reject(
                peer_id,
                ErrorCode::BAD_UPDATE,
                close::INVALID_PAYLOAD,
                format!("malformed state vector: {e}"),
                fx,
            ),
        }
    }

    /// Applies a batch of updates in one yrs transaction, then acts on each in order: relay
    /// and store it, or tell or refuse its author. Nothing leaves the room before the whole
    /// batch applied, so when yrs panics the batch is handed back for a reload (`Reload`) and
    /// applied again one update at a time: only the update that panics is refused.
    fn updates(&mut self, batch: Vec<Incoming>, now: Instant, fx: &mut Effects) {
        let mut verdicts: Vec<Verdict> = batch.iter().map(|inc| self.admit(inc)).collect();
        let after = match self.crdt.apply_batch(&batch, &mut verdicts) {
            Ok(after) => after,
            Err(_) if batch.len() == 1 => {
                let peer_id = batch[0].peer_id;
                tracing::error!(room = %self.name, peer_id, "yrs panicked applying an update; reloading the room");
                self.reject(
                    peer_id,
                    ErrorCode::INTERNAL,
                    close::INTERNAL,
                    "your update crashed the document engine; it was discarded".into(),
                    fx,
                );
                fx.push_back(Effect::Reload { retry: Vec::new() });
                return;
            }
            Err(_) => {
                tracing::warn!(room = %self.name, updates = batch.len(), "yrs panicked applying a batch of updates; reloading the room and applying them one at a time");
                fx.push_back(Effect::Reload { retry: batch });
                return;
            }
        };
        let mut changed = false;
        let mut items = batch.into_iter().zip(verdicts);
        while let Some((inc, verdict)) = items.next() {
            match verdict {
                Verdict::Admit | Verdict::Ignore => {}
                Verdict::Tell(code, message) => fx.push_back(Effect::Send {
                    to: inc.peer_id,
                    out: Out::Error(code, message.into()),
                }),
                Verdict::Refuse(code, close, message) => {
                    self.reject(inc.peer_id, code, close, message, fx)
                }
                // Nothing new to store; the ack still waits for the author's earlier appends,
                // since an ack covers every earlier seq.
                Verdict::Unchanged => {
                    self.acks.unchanged(inc.peer_id, inc.seq, inc.arrived);
                    self.settled(now, fx);
                }
                Verdict::Applied(lower) => {
                    if !self.crdt.within_budget(&lower, &after, inc.update.len()) {
                        // Not relayed, not stored: reload so the refused bytes leave memory.
                        // The rest of the batch was applied to the document being dropped:
                        // it is handed back.
                        self.reject(
                            inc.peer_id,
                            ErrorCode::BAD_UPDATE,
                            close::POLICY,
                            ApplyError::Orphan.to_string(),
                            fx,
                        );
                        let retry = items.map(|(inc, _)| inc).collect();
                        fx.push_back(Effect::Reload { retry });
                        return;
                    }
                    changed = true;
                    self.relay(inc, now, fx);
                }
            }
        }
        if changed {
            self.offer_compaction(fx);
        }
    }

    /// What the room makes of an update before the document sees it.
    fn admit(&self, inc: &Incoming) -> Verdict {
        match self.members.get(inc.peer_id) {
            None => Verdict::Ignore,
            Some(_) if self.acks.failed().is_some() => Verdict::Tell(
                ErrorCode::STORAGE_UNAVAILABLE,
                format!(
                    "room {} refuses writes: {}",
                    self.name,
                    self.acks.failed().unwrap_or_default()
                ),
            ),
            // Every client sends an empty update when it syncs; only real edits are refused.
            Some(m) if m.role == Role::Viewer && inc.update == [0, 0] => Verdict::Ignore,
            Some(m) if m.role == Role::Viewer => Verdict::Tell(
                ErrorCode::READ_ONLY,
                "you joined as a viewer: your edits are not applied".into(),
            ),
            Some(_) => Verdict::Admit,
        }
    }

    /// Sends an integrated update to every other member and to the store.
    fn relay(&mut self, inc: Incoming, now: Instant, fx: &mut Effects) {
        let Incoming {
            peer_id,
            seq,
            update,
            arrived,
        } = inc;
        let bytes = update.len();
        let shared = SharedUpdate::new(update);
        self.metrics
            .updates_relayed
            .inc_by(self.members.others(peer_id) as u64);
        fx.push_back(Effect::Broadcast {
            except: Some(peer_id),
            out: Out::Update(shared.clone()),
        });
        self.metrics
            .relay_latency
            .observe(now.saturating_duration_since(arrived));
        self.appending(&shared);
        fx.push_back(Effect::Append(shared));
        self.acks.appended(peer_id, seq, arrived, bytes);
    }

    fn remote(&mut self, update: Vec<u8>, fx: &mut Effects) {
        match self.crdt.apply_remote(update) {
            RemoteApplied::Relay(updates) => {
                for update in updates {
                    self.metrics
                        .updates_relayed
                        .inc_by(self.members.len() as u64);
                    fx.push_back(Effect::Broadcast {
                        except: None,
                        out: Out::Update(SharedUpdate::new(update)),
                    });
                }
            }
            RemoteApplied::Held => {}
            RemoteApplied::Dropped(why) => {
                tracing::warn!(room = %self.name, %why, "dropping a remote update");
            }
            RemoteApplied::Reload(why) => {
                tracing::warn!(room = %self.name, %why, "reloading the room");
                fx.push_back(Effect::Reload { retry: Vec::new() });
            }
        }
    }

    /// Acts on updates whose turn in the acknowledgement pipeline came.
    fn settled(&mut self, now: Instant, fx: &mut Effects) {
        while let Some(Settled { waiting, result }) = self.acks.next_settled() {
            match result {
                Ok(stored) => {
                    if let Some(seq) = stored {
                        self.metrics.updates_stored.inc();
                        self.compaction.appended(waiting.bytes);
                        // The document holds this update: the chain goes on if nothing else
                        // was appended in between.
                        self.provable &= seq == self.log_head.next();
                        self.log_head = self.log_head.max(seq);
                        if self.shared && self.cursor.own(seq) {
                            self.catch_up(CatchUp::OwnAhead, false, fx);
                        }
                    }
                    self.metrics
                        .ack_latency
                        .observe(now.saturating_duration_since(waiting.arrived));
                    // After a failure nothing is acknowledged: an ack covers every earlier seq.
                    if let (Some(seq), None) = (waiting.seq, self.acks.failed())
                        && self.members.get(waiting.author).is_some()
                    {
                        fx.push_back(Effect::Ack {
                            to: waiting.author,
                            seq,
                        });
                    }
                }
                Err(e) if self.acks.failed().is_none() => self.refuse_writes(&e, fx),
                Err(_) => {}
            }
        }
        self.offer_compaction(fx);
    }

    /// Asks for a compaction when the log has grown enough: of the live document when it
    /// provably holds everything up to the log's head and nothing waits on dependencies, from
    /// the store when someone else appended too.
    fn offer_compaction(&mut self, fx: &mut Effects) {
        if !self.compaction.due() || self.acks.failed().is_some() {
            return;
        }
        let compaction = if self.provable {
            match self.crdt.encode_state(&self.name) {
                Some(state) => Compaction::Live {
                    state,
                    covers: self.log_head,
                },
                // Something waits on dependencies; try again after the next update.
                None => return,
            }
        } else {
            Compaction::FromStore
        };
        self.compaction.started();
        fx.push_back(Effect::Compact(compaction));
    }

    /// An append failed: tell every member, close them (1013) so they rejoin a room loaded
    /// from storage, and stop acknowledging. Whatever the room held but could not store was
    /// relayed yet never acknowledged, so its authors keep it and send it again.
    fn refuse_writes(&mut self, e: &StoreError, fx: &mut Effects) {
        tracing::error!(room = %self.name, error = %e, members = self.members.len(), "storing an update failed: the room refuses writes, closes its members and unloads");
        self.acks.fail(e.to_string());
        self.metrics.rooms_refusing_writes.inc();
        self.metrics.write_refusals.inc();
        let message: Box<str> = format!(
            "the server could not store edits of room {} ({e}); unacknowledged edits stay in your editor and are sent again when you reconnect",
            self.name
        )
        .into();
        let mut peers = self.members.ids();
        peers.sort_unstable();
        for peer_id in peers {
            fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Error(ErrorCode::STORAGE_UNAVAILABLE, message.clone()),
            });
            self.kick(
                peer_id,
                close::TRY_AGAIN_LATER,
                "storage unavailable: edits not stored, reconnect later".into(),
                fx,
            );
        }
    }

    fn set_awareness(
        &mut self,
        peer_id: u64,
        client_id: u64,
        source: AwarenessSource,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(member) = self.members.get(peer_id).copied() else {
            return;
        };
        let owner = Owner::Member(peer_id);
        match self
            .awareness
            .set(owner, peer_id, member.role, client_id, source, now)
        {
            Set::Changed(out) => {
                let entries: Arc<[AwarenessOut]> = vec![out].into();
                // Every member but its author, and its author too when it wants echoes.
                let except = (!member.echo_awareness).then_some(peer_id);
                fx.push_back(Effect::Broadcast {
                    except,
                    out: Out::Awareness(entries.clone()),
                });
                self.publish_awareness(entries, fx);
            }
            Set::Stale => {}
            Set::NotOwner => fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Error(
                    ErrorCode::NOT_OWNER,
                    format!("awareness entry {client_id} belongs to another connection").into(),
                ),
            }),
        }
    }

    fn leave(&mut self, peer_id: u64, fx: &mut Effects) {
        if self.members.remove(peer_id).is_none() {
            return;
        }
        self.drop_awareness_of(peer_id, fx);
        tracing::debug!(room = %self.name, peer_id, members = self.members.len(), "left");
    }

    fn drop_awareness_of(&mut self, peer_id: u64, fx: &mut Effects) {
        if let Some(removed) = self.awareness.drop_owner(Owner::Member(peer_id)) {
            fx.push_back(Effect::Broadcast {
                except: None,
                out: Out::Awareness(removed.clone()),
            });
            self.publish_awareness(removed, fx);
        }
    }

    /// An append is on its way to the store: what it confirms once stored (cluster).
    fn appending(&mut self, update: &SharedUpdate) {
        if self.shared {
            self.confirming.push_back(sections_of(update.raw()));
        }
    }

    /// The log holds these client ranges: the confirmed state vector grows where they join on
    /// (a range past a hole confirms nothing: the hole may be an edit no log row holds).
    fn confirm(&mut self, sections: &[Section]) {
        for s in sections {
            let client = yrs::block::ClientID::new(s.client);
            let have = u64::from(self.confirmed.get(&client));
            if s.start <= have && s.end > have {
                self.confirmed
                    .set_max(client, u32::try_from(s.end).unwrap_or(u32::MAX));
            }
        }
    }

    /// Tells the other nodes about entries the room's own members set (cluster only).
    fn publish_awareness(&self, entries: Arc<[AwarenessOut]>, fx: &mut Effects) {
        if self.shared && !entries.is_empty() {
            fx.push_back(Effect::Publish(Publish::Awareness(entries)));
        }
    }

    /// Asks for a read of the log past the cursor (or of all of it, with `whole`), unless one
    /// is under way (another then follows it).
    fn catch_up(&mut self, why: CatchUp, whole: bool, fx: &mut Effects) {
        if !self.shared || self.broken.is_some() {
            return;
        }
        if let Some(cluster) = &self.metrics.cluster {
            cluster.catch_up(why.name());
        }
        if matches!(why, CatchUp::Gap | CatchUp::Lagged | CatchUp::Reconnect) {
            self.cursor.lost();
        }
        if let Some(after) = self.cursor.wants(whole) {
            fx.push_back(Effect::CatchUp {
                after,
                delay: Duration::ZERO,
            });
        }
    }

    /// The rows past the cursor: applied as remote updates (what the bus already brought is
    /// a no-op, what it lost is relayed now), and the cursor moves to the read's head.
    fn caught_up(&mut self, result: Result<Stored, StoreError>, fx: &mut Effects) {
        let next = match result {
            Ok(stored) => {
                let rows = stored.updates.len() as u64;
                let mut repaired = 0;
                for update in stored.updates {
                    self.confirm(&sections_of(&update));
                    let before = fx.len();
                    self.remote(update, fx);
                    repaired += fx
                        .iter()
                        .skip(before)
                        .filter(|e| matches!(e, Effect::Broadcast { .. }))
                        .count() as u64;
                    if self.crdt.needs_reload() {
                        // The reload reads the whole log and sets the cursor.
                        return;
                    }
                }
                if let Some(cluster) = &self.metrics.cluster {
                    cluster.catch_up_rows.inc_by(rows);
                    cluster.repaired.inc_by(repaired);
                }
                if repaired > 0 {
                    tracing::debug!(room = %self.name, rows, repaired, "the log brought updates the bus had not");
                }
                let next = self.cursor.read(stored.head);
                if self.cursor.at() >= self.log_head {
                    // Every row up to the cursor is in the document: a snapshot of it is one.
                    self.log_head = self.cursor.at();
                    self.provable = true;
                }
                next
            }
            Err(e) => {
                tracing::warn!(room = %self.name, error = %e, "reading the log past the cursor failed; the next check tries again");
                if let Some(cluster) = &self.metrics.cluster {
                    cluster.catch_up_errors.inc();
                }
                self.cursor.failed()
            }
        };
        if let Some(after) = next {
            fx.push_back(Effect::CatchUp {
                after,
                delay: Duration::ZERO,
            });
        } else if let Some(after) = self.cursor.recheck() {
            fx.push_back(Effect::CatchUp {
                after,
                delay: LOSS_RECHECK,
            });
        }
    }

    fn node_awareness(
        &mut self,
        node: u64,
        entries: Vec<RemoteEntry>,
        now: Instant,
        fx: &mut Effects,
    ) {
        if !self.shared {
            return;
        }
        let changed: Arc<[AwarenessOut]> = entries
            .into_iter()
            .filter_map(|entry| match self.awareness.set_remote(node, entry, now) {
                Set::Changed(out) => Some(out),
                Set::Stale | Set::NotOwner => None,
            })
            .collect();
        if !changed.is_empty() {
            fx.push_back(Effect::Broadcast {
                except: None,
                out: Out::Awareness(changed),
            });
        }
    }

    /// Another node's state vector: when it holds something this room lacks, the log past the
    /// cursor should have it; when a second digest in a row still shows it, the whole log is
    /// read (the cursor itself may be wrong: a restored backup, a room deleted and made anew).
    fn digest(&mut self, state_vector: &[u8], fx: &mut Effects) {
        let Ok(theirs) = crate::doc::decode_state_vector(state_vector) else {
            return;
        };
        let ours = self.crdt.state_vector();
        let behind = theirs
            .iter()
            .any(|(client, clock)| *clock > ours.get(client));
        if !behind {
            self.digest_behind = 0;
            return;
        }
        self.digest_behind += 1;
        if let Some(cluster) = &self.metrics.cluster {
            cluster.digests_behind.inc();
        }
        self.catch_up(CatchUp::Digest, self.digest_behind > 1, fx);
    }

    /// A node is gone: its members' cursors leave at once, and if it relayed updates here,
    /// the log is read to store whatever of them it never stored.
    fn node_gone(&mut self, node: u64, fx: &mut Effects) {
        if let Some(removed) = self.awareness.drop_owner(Owner::Node(node)) {
            fx.push_back(Effect::Broadcast {
                except: None,
                out: Out::Awareness(removed),
            });
        }
        let mut clients: Vec<u64> = self
            .relayed_by
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(c, _)| *c)
            .collect();
        self.relayed_by.retain(|_, n| *n != node);
        if clients.is_empty() || self.broken.is_some() || self.acks.failed().is_some() {
            return;
        }
        clients.sort_unstable();
        fx.push_back(Effect::Settle { clients });
    }

    /// What a gone node relayed here but the log lacks (`clients`' blocks, and deletions) is
    /// appended from here, as this room's own update: a relayed edit whose author and first
    /// node both vanished is stored while any node that heard it survives.
    fn settle(
        &mut self,
        log: Result<yrs::Doc, CompactError>,
        clients: &[u64],
        now: Instant,
        fx: &mut Effects,
    ) {
        let log = match log {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(room = %self.name, error = %e, "could not read the log to settle a gone node's updates");
                return;
            }
        };
        if self.acks.failed().is_some() {
            return;
        }
        // Only the gone node's clients are compared: other clients' blocks not in the log yet
        // are on their way there from the nodes that relayed them.
        let ours = self.crdt.state_vector();
        let mut base = StateVector::default();
        for (client, clock) in ours.iter() {
            let keep = if clients.contains(&client.get()) {
                log.transact().state_vector().get(client)
            } else {
                *clock
            };
            base.set_max(*client, keep);
        }
        let Some(diff) = self.crdt.diff_from(&base) else {
            return;
        };
        let adds = crate::contain::contained(|| {
            let update = crate::doc::decode_update(&diff).ok()?;
            let mut txn = log.transact_mut();
            let before = txn.state_vector();
            txn.apply_update(update).ok()?;
            Some(txn.state_vector() != before || !txn.delete_set().is_empty())
        });
        if adds != Ok(Some(true)) {
            return;
        }
        tracing::info!(room = %self.name, bytes = diff.len(), "storing what a gone node relayed but never stored");
        if let Some(cluster) = &self.metrics.cluster {
            cluster.settled.inc();
        }
        let bytes = diff.len();
        // No author to acknowledge: peer id 0 is never a member's.
        self.acks.appended(0, None, now, bytes);
        let update = SharedUpdate::new(diff);
        self.appending(&update);
        fx.push_back(Effect::Append(update));
    }

    /// Sends an error, closes the member with `code` and forgets it.
    fn reject(
        &mut self,
        peer_id: u64,
        error: ErrorCode,
        code: close::CloseCode,
        message: String,
        fx: &mut Effects,
    ) {
        tracing::debug!(room = %self.name, peer_id, %message, "rejecting a member's message");
        if self.members.get(peer_id).is_some() {
            fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Error(error, message.as_str().into()),
            });
        }
        self.kick(peer_id, code, message, fx);
    }

    fn kick(&mut self, peer_id: u64, code: close::CloseCode, reason: String, fx: &mut Effects) {
        if self.members.remove(peer_id).is_some() {
            fx.push_back(Effect::Kick {
                peer_id,
                kick: Kick { code, reason },
            });
        }
        self.drop_awareness_of(peer_id, fx);
    }
}
