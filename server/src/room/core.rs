//! [`RoomCore`]: a room's state and rules, synchronous and deterministic. A command and the
//! time go in ([`RoomCore::handle`]), effects come out ([`Effect`]): what to send to whom,
//! what to append to the store, whom to close and why, when to reload or compact. It holds
//! no channel, socket, store or clock; the task around it (`task.rs`) carries the effects out
//! and feeds back what comes of them (the store's answers, queues that refused a message).
//!
//! ```text
//!   Join, SyncStep1, Updates, Awareness, Leave ──┐
//!   Remote (another node, log catch-up)  ────────┼──> RoomCore ──> Send, Broadcast, Ack, Kick,
//!   Loaded, Stored, Compacted, Tick (the task) ──┘                 Append, Compact, Reload
//! ```
//!
//! The parts: the document (`crdt.rs`), membership (`members.rs`), awareness
//! (`awareness.rs`), the acknowledgement pipeline (`acks.rs`), compaction's schedule
//! (`crate::compaction`).

use super::acks::{Acks, Settled};
use super::awareness::{Awareness, Owner, Set};
use super::crdt::{Crdt, RemoteApplied, Verdict};
use super::members::{Member, Members};
use crate::compaction::{CompactError, Compacted, CompactionPolicy, Schedule};
use crate::doc::ApplyError;
use crate::metrics::Metrics;
use crate::out::{AwarenessOut, AwarenessSource, Kick, Out, SharedUpdate};
use crate::store::{Seq, StoreError, Stored};
use duet_protocol::{ErrorCode, Role, RoomName, close};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use yrs::updates::encoder::Encode;

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
    broken: Option<String>,
    metrics: Arc<Metrics>,
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
            metrics,
        }
    }

    pub fn name(&self) -> &RoomName {
        &self.name
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
                self.acks.stored(result);
                self.settled(now, fx);
            }
            Cmd::Compacted(result) => {
                if let Err(e) = &result {
                    tracing::warn!(room = %self.name, error = %e, "compaction failed; the log is kept as it is");
                }
                self.compaction.finished(result.as_ref().copied());
            }
            Cmd::Tick => {
                if let Some(removed) = self.awareness.expire(now) {
                    fx.push_back(Effect::Broadcast {
                        except: None,
                        out: Out::Awareness(removed),
                    });
                }
            }
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

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn has_awareness(&self) -> bool {
        !self.awareness.is_empty()
    }

    fn loaded(&mut self, result: Result<Stored, StoreError>) {
        let stored = match result {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(room = %self.name, error = %e, "loading room failed");
                self.broken = Some(e.to_string());
                return;
            }
        };
        match self.crdt.load(&stored) {
            Ok(()) => self.broken = None,
            Err(e) => {
                tracing::error!(room = %self.name, error = %e, "stored update does not apply");
                self.broken = Some(e);
            }
        }
        self.log_head = stored.head;
        self.provable = true;
        self.compaction.loaded(&stored);
    }

    fn join(&mut self, peer_id: u64, role: Role, echo_awareness: bool, fx: &mut Effects) {
        if let Some(reason) = &self.broken {
            fx.push_back(Effect::Send {
                to: peer_id,
                out: Out::Error(
                    ErrorCode::ROOM_UNAVAILABLE,
                    format!("room {} cannot be opened: {reason}", self.name).into(),
                ),
            });
            fx.push_back(Effect::Kick {
                peer_id,
                kick: Kick {
                    code: close::INTERNAL,
                    reason: "room unavailable".into(),
                },
            });
            return;
        }
        self.members.insert(
            peer_id,
            Member {
                role,
                echo_awareness,
            },
        );
        let sv = self.crdt.state_vector().encode_v1();
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
                    out: Out::Awareness(entries),
                });
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
                out: Out::Awareness(removed),
            });
        }
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
