//! The task around a [`RoomCore`]: its inbox, the store calls in flight, the timers, reloads.
//! It turns connections' [`RoomCmd`]s into the core's commands, carries out the effects that
//! come back (members' queues, the store), and feeds the results to the core again.
//!
//! Invariants it keeps:
//! - The room loads its stored document before it handles any command.
//! - Relay does not wait for storage: an update's broadcast is queued before its append is
//!   even handed to the store; acknowledgements wait for the store.
//! - At most [`MAX_PENDING_APPENDS`] appends are in flight per room; past that the room stops
//!   reading its inbox, which pushes back on the sockets.
//! - A reload happens only once every append in flight has been answered.
//! - In a cluster ([`ClusterLink`]): the room subscribes to its bus channels before it reads
//!   its log, so nothing published meanwhile falls between the two (what the bus brings that
//!   the log already had is a no-op); it publishes each update it appends as it hands it to the
//!   store (relay never waits for either), reads past its cursor one read at a time, and
//!   unsubscribes once it has stopped. Bus messages that do not fit its inbox are dropped and
//!   the room reads its log instead ([`RoomHandle::behind`]).

use super::core::{Cmd, Compaction, Effect, Effects, Incoming, Publish, RoomCore};
use super::cursor::CatchUp;
use super::members::Fanout;
use crate::cluster::bus::Bus;
use crate::compaction::{CompactError, Compacted, CompactionPolicy, compact_from_store, merge};
use crate::metrics::Metrics;
use crate::out::{AwarenessOut, AwarenessState, Kick};
use crate::outbox::{OutboxLimits, OutboxRx, OutboxTx, Refused};
use crate::store::{BoxFuture, Seq, Store, StoreError, Stored};
use duet_protocol::bus::{self as wire, Body, BusAwareness};
use duet_protocol::{Payload, Role, RoomName, close};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Commands a room handles in one turn when they are already waiting.
const INBOX_BATCH: usize = 64;

/// Appends a room may have in flight before it stops taking commands.
pub const MAX_PENDING_APPENDS: usize = 4096;

/// What a connection asks of its room: to join (handing over its queue and close channel),
/// then what its client says: updates one at a time (the task gathers a burst into one
/// `Cmd::Updates`, without a vector per update), the rest as the core's own commands
/// (`SyncStep1`, `Awareness`, `QueryAwareness`, `Leave`).
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
    Update(Incoming),
    Core(Cmd),
}

/// A member's way into a room: the `Join` to send, and the ends its connection keeps.
pub struct Joining {
    pub cmd: RoomCmd,
    /// What the room sends it.
    pub rx: OutboxRx,
    /// Why the room closed it, if it does.
    pub kicked: oneshot::Receiver<Kick>,
    /// Answered once the room has taken the join (dropped if the room is unloading).
    pub joined: oneshot::Receiver<()>,
}

impl RoomCmd {
    /// A join for `peer_id`, with a fresh send queue bounded by `limits`.
    pub fn join(
        peer_id: u64,
        role: Role,
        echo_awareness: bool,
        limits: OutboxLimits,
        metrics: Arc<Metrics>,
    ) -> Joining {
        let (tx, rx) = crate::outbox::channel(limits, metrics);
        let (kick, kicked) = oneshot::channel();
        let (reply, joined) = oneshot::channel();
        Joining {
            cmd: RoomCmd::Join {
                peer_id,
                role,
                echo_awareness,
                tx,
                kick,
                reply,
            },
            rx,
            kicked,
            joined,
        }
    }
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
    /// Set when a bus message for the room found its inbox full and was dropped: the room
    /// reads its log past its cursor at its next turn.
    behind: Arc<AtomicBool>,
}

impl RoomHandle {
    /// Sends a command, waiting while the room's inbox is full (back-pressure on the socket).
    pub async fn send(&self, cmd: RoomCmd) -> Result<(), RoomGone> {
        self.tx.send(cmd).await.map_err(|_| RoomGone)
    }

    /// Hands the room a command from the bus without waiting: a room that cannot take it now
    /// is marked behind and reads its log instead (the bus is never buffered without bound).
    /// `false`: the room is gone.
    pub fn offer(&self, cmd: RoomCmd) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.behind.store(true, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
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
    /// When a room's log is compacted.
    pub compaction: CompactionPolicy,
}

/// What a room of a cluster node holds beside its store: the bus to the other nodes.
#[derive(Clone)]
pub struct ClusterLink {
    pub bus: Arc<dyn Bus>,
    /// How often a room with members publishes its state vector (the digest).
    pub digest_every: Duration,
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
            compaction: CompactionPolicy::default(),
        }
    }
}

/// Starts a room's task. `on_exit` runs once the task has stopped taking commands.
// Every argument is a distinct dependency of the task; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn(
    id: u64,
    name: RoomName,
    store: Arc<dyn Store>,
    link: Option<ClusterLink>,
    config: RoomConfig,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
    metrics: Arc<Metrics>,
    on_exit: impl FnOnce() + Send + 'static,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(config.inbox);
    let behind = Arc::new(AtomicBool::new(false));
    let inbox = Inbox {
        rx,
        behind: behind.clone(),
    };
    tracker.spawn(run(
        name, store, link, config, inbox, shutdown, metrics, on_exit,
    ));
    RoomHandle { id, tx, behind }
}

/// The task's end of its handles.
struct Inbox {
    rx: mpsc::Receiver<RoomCmd>,
    behind: Arc<AtomicBool>,
}

/// The core and what the task holds around it.
pub(super) struct Shell {
    core: RoomCore,
    fanout: Fanout,
    store: Arc<dyn Store>,
    /// Appends in flight, answered in order.
    pending: FuturesOrdered<BoxFuture<'static, Result<Seq, StoreError>>>,
    /// The compaction under way (the core asks for one at a time).
    compacting: FuturesOrdered<BoxFuture<'static, Result<Compacted, CompactError>>>,
    /// Set by a `Reload` effect: reload before the next command.
    reload: bool,
    /// Updates to apply again one at a time after a reload, before anything else.
    retry: VecDeque<Incoming>,
    /// Effects still to carry out (kept between commands for its allocation).
    work: Effects,
    /// The bus, in a cluster.
    link: Option<ClusterLink>,
    /// The read of the log past the cursor under way (the core asks for one at a time).
    catching_up: FuturesOrdered<BoxFuture<'static, Result<Stored, StoreError>>>,
    /// Reads of the whole log to settle a gone node's updates.
    settling: FuturesOrdered<BoxFuture<'static, Cmd>>,
}

impl Shell {
    pub(super) fn new(core: RoomCore, store: Arc<dyn Store>) -> Self {
        Self {
            core,
            fanout: Fanout::default(),
            store,
            pending: FuturesOrdered::new(),
            compacting: FuturesOrdered::new(),
            reload: false,
            retry: VecDeque::new(),
            work: Effects::new(),
            link: None,
            catching_up: FuturesOrdered::new(),
            settling: FuturesOrdered::new(),
        }
    }

    /// Whether exactly these members have queues here (tests).
    #[cfg(test)]
    pub(super) fn fanout_is(&self, peers: &[u64]) -> bool {
        let mut ids = self.fanout.ids();
        ids.sort_unstable();
        ids == peers
    }

    pub(super) fn feed(&mut self, cmd: Cmd) {
        self.core.handle_into(cmd, Instant::now(), &mut self.work);
        self.execute();
    }

    /// Carries out the queued effects in order; what comes of them (queues that refused,
    /// appends the store already answered) is fed back, and its effects carried out after.
    fn execute(&mut self) {
        while let Some(effect) = self.work.pop_front() {
            match effect {
                Effect::Send { to, out } => {
                    if let Err(why) = self.fanout.send(to, out) {
                        self.refused(to, why);
                    }
                }
                Effect::Broadcast { except, out } => {
                    for (peer_id, why) in self.fanout.broadcast(except, &out) {
                        self.refused(peer_id, why);
                    }
                }
                Effect::Ack { to, seq } => {
                    if let Err(why) = self.fanout.ack(to, seq) {
                        self.refused(to, why);
                    }
                }
                Effect::Kick { peer_id, kick } => self.fanout.kick(peer_id, kick),
                Effect::Append(update) => {
                    if let Some(link) = &self.link {
                        // Published as it goes to the store: relay never waits for either.
                        link.bus.publish(
                            self.core.name(),
                            Body::Update(Payload(update.raw().to_vec())),
                        );
                    }
                    let mut appending = self.store.append(self.core.name(), update.raw().to_vec());
                    // A store that stored at once is answered at once, when no earlier append
                    // is still waiting (answers go in order).
                    match appending.take_ready() {
                        Some(result) if self.pending.is_empty() => {
                            let now = Instant::now();
                            self.core
                                .handle_into(Cmd::Stored(result), now, &mut self.work);
                        }
                        Some(result) => self.pending.push_back(Box::pin(async { result })),
                        None => self.pending.push_back(Box::pin(appending)),
                    }
                }
                Effect::Compact(compaction) => self.compact(compaction),
                Effect::Reload { retry } => {
                    self.reload = true;
                    for inc in retry.into_iter().rev() {
                        self.retry.push_front(inc);
                    }
                }
                Effect::Publish(what) => self.publish(what),
                Effect::CatchUp { after, delay } => {
                    let store = self.store.clone();
                    let room = self.core.name().clone();
                    self.catching_up.push_back(Box::pin(async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        store.read(&room, after).await
                    }));
                }
                Effect::Settle { clients } => {
                    let store = self.store.clone();
                    let room = self.core.name().clone();
                    self.settling.push_back(Box::pin(async move {
                        let log = match store.read(&room, Seq(0)).await {
                            Ok(stored) => {
                                let name = room.clone();
                                tokio::task::spawn_blocking(move || merge(&name, &stored.updates))
                                    .await
                                    .unwrap_or_else(|e| {
                                        Err(CompactError::Damaged {
                                            room: room.to_string(),
                                            reason: format!("the merge stopped: {e}"),
                                        })
                                    })
                            }
                            Err(e) => Err(CompactError::Store(e)),
                        };
                        Cmd::Settle { log, clients }
                    }));
                }
            }
        }
    }

    /// Tells the other nodes what the core asked to (cluster only).
    fn publish(&self, what: Publish) {
        let Some(link) = &self.link else {
            return;
        };
        let body = match what {
            Publish::Awareness(entries) => Body::Awareness(entries.iter().map(to_bus).collect()),
            Publish::Digest(state_vector) => {
                if let Some(cluster) = &self.core_metrics().cluster {
                    cluster.digests_sent.inc();
                }
                Body::Digest(Payload(state_vector))
            }
        };
        link.bus.publish(self.core.name(), body);
    }

    fn core_metrics(&self) -> &Arc<Metrics> {
        self.core.metrics()
    }

    /// A member's queue refused a message. Full: the member cannot keep up and is closed
    /// (1013). Gone: its connection already ended (its `Leave` is still in the inbox, behind
    /// what we are handling now), so it is simply forgotten; no close is sent or counted.
    fn refused(&mut self, peer_id: u64, why: Refused) {
        match why {
            Refused::Full => {
                tracing::info!(room = %self.core.name(), peer_id, "closing a member that cannot keep up (1013)");
                self.fanout.kick(
                    peer_id,
                    Kick {
                        code: close::TRY_AGAIN_LATER,
                        reason: "you fell behind; reconnect to resync".into(),
                    },
                );
            }
            Refused::Gone => {
                tracing::debug!(room = %self.core.name(), peer_id, "forgetting a member whose connection ended");
                self.fanout.remove(peer_id);
            }
        }
        self.core
            .handle_into(Cmd::Leave { peer_id }, Instant::now(), &mut self.work);
    }

    fn compact(&mut self, compaction: Compaction) {
        let store = self.store.clone();
        let room = self.core.name().clone();
        let mut compacting: BoxFuture<'static, Result<Compacted, CompactError>> = match compaction {
            Compaction::Live { state, covers } => Box::pin(async move {
                let state_bytes = state.len();
                let stored = store.compact(&room, state, covers).await?;
                Ok(Compacted {
                    stored,
                    state_bytes,
                })
            }),
            Compaction::FromStore => Box::pin(compact_from_store(store, room)),
        };
        // A store that compacts at once (the memory store) is answered at once, as its
        // appends are; the others answer through the task's loop.
        match (&mut compacting).now_or_never() {
            Some(done) => {
                let now = Instant::now();
                self.core
                    .handle_into(Cmd::Compacted(done), now, &mut self.work);
            }
            None => self.compacting.push_back(compacting),
        }
    }

    /// Handles one command from a connection. Consecutive updates go to the core together
    /// (one yrs transaction), as many as it takes at once.
    pub(super) fn command(&mut self, cmd: RoomCmd, queue: &mut VecDeque<RoomCmd>) {
        match cmd {
            // Once writes failed, the room is unloading: the connection asks for a fresh one.
            RoomCmd::Join { reply, .. } if self.core.refuses_writes().is_some() => drop(reply),
            RoomCmd::Join {
                peer_id,
                role,
                echo_awareness,
                tx,
                kick,
                reply,
            } => {
                self.fanout.add(peer_id, tx, kick);
                self.feed(Cmd::Join {
                    peer_id,
                    role,
                    echo_awareness,
                });
                let _ = reply.send(());
            }
            RoomCmd::Update(first) => {
                let limit = self.core.batch_limit(INBOX_BATCH);
                let mut batch = Vec::with_capacity(limit.min(queue.len() + 1));
                batch.push(first);
                while batch.len() < limit
                    && let Some(RoomCmd::Update(_)) = queue.front()
                    && let Some(RoomCmd::Update(next)) = queue.pop_front()
                {
                    batch.push(next);
                }
                self.feed(Cmd::Updates(batch));
            }
            RoomCmd::Core(Cmd::Leave { peer_id }) => {
                self.fanout.remove(peer_id);
                self.feed(Cmd::Leave { peer_id });
            }
            RoomCmd::Core(cmd) => self.feed(cmd),
        }
    }

    /// Handles queued commands in order until the queue is empty, reloading whenever the core
    /// asks (updates it hands back go first, one at a time).
    async fn turn(&mut self, queue: &mut VecDeque<RoomCmd>) {
        loop {
            if self.reload {
                self.reload().await;
            }
            if let Some(inc) = self.retry.pop_front() {
                self.feed(Cmd::Updates(vec![inc]));
            } else if let Some(cmd) = queue.pop_front() {
                self.command(cmd, queue);
            } else {
                break;
            }
        }
    }

    /// Replaces the document with what the store holds, after every pending write landed.
    async fn reload(&mut self) {
        while let Some(done) = self.pending.next().await {
            self.feed(Cmd::Stored(done));
        }
        let stored = self.store.read(self.core.name(), Seq(0)).await;
        self.reload = false;
        self.feed(Cmd::Loaded(stored));
        tracing::warn!(room = %self.core.name(), "room document reloaded from storage");
    }
}

/// An awareness entry as the bus carries it.
fn to_bus(entry: &AwarenessOut) -> BusAwareness {
    BusAwareness {
        client_id: entry.client_id,
        clock: entry.clock,
        role: entry.role,
        state: match entry.state.as_deref() {
            None => wire::AwarenessState::Removed,
            Some(AwarenessState::Typed { state, .. }) => wire::AwarenessState::Duet(state.clone()),
            Some(AwarenessState::Json { json, .. }) => wire::AwarenessState::Json(json.to_string()),
        },
    }
}

// Every argument is a distinct dependency of the task, as in `spawn`.
#[allow(clippy::too_many_arguments)]
async fn run(
    name: RoomName,
    store: Arc<dyn Store>,
    link: Option<ClusterLink>,
    config: RoomConfig,
    inbox: Inbox,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    on_exit: impl FnOnce(),
) {
    let Inbox { mut rx, behind } = inbox;
    metrics.rooms_loaded.inc();
    let mut core = RoomCore::new(name, config.compaction, metrics.clone());
    if link.is_some() {
        core = core.in_cluster();
    }
    let mut shell = Shell::new(core, store);
    shell.link = link;
    if let Some(link) = &shell.link {
        // Subscribed before the read: whatever another node publishes from here on arrives,
        // so nothing falls between the log as read and the bus. A bus that is down now is
        // caught up on when it is back (`Reconnected`), and the heads check runs meanwhile.
        if let Err(e) = link.bus.subscribe(shell.core.name()).await {
            tracing::debug!(room = %shell.core.name(), error = %e, "room loads without the bus");
        }
    }
    let loaded = shell.store.read(shell.core.name(), Seq(0)).await;
    shell.feed(Cmd::Loaded(loaded));
    if let Some(link) = &shell.link {
        link.bus.publish(shell.core.name(), Body::AwarenessQuery);
    }
    let mut expiry = tokio::time::interval(Duration::from_secs(5));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // In a cluster, each room publishes its digest at its own phase, so a node's rooms do not
    // all publish at once.
    let digest_every = shell.link.as_ref().map_or(Duration::from_secs(3600), |l| {
        l.digest_every.max(Duration::from_millis(100))
    });
    let phase =
        Duration::from_millis(u64::from(rand_phase()) % digest_every.as_millis().max(1) as u64);
    let mut digest = tokio::time::interval_at(tokio::time::Instant::now() + phase, digest_every);
    digest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let clustered = shell.link.is_some();
    let idle = tokio::time::sleep(config.idle_unload);
    tokio::pin!(idle);
    let mut idle_armed = false;
    // Commands taken from the inbox and not yet handled.
    let mut queue = VecDeque::with_capacity(INBOX_BATCH);
    loop {
        if shell.core.refuses_writes().is_some() || shell.core.load_unavailable() {
            break;
        }
        if clustered && behind.swap(false, Ordering::Relaxed) {
            if let Some(cluster) = &metrics.cluster {
                cluster.inbox_full.inc();
            }
            shell.feed(Cmd::Behind(CatchUp::Lagged));
        }
        let is_idle = !shell.core.has_members() && shell.pending.is_empty();
        if is_idle && !idle_armed {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + config.idle_unload);
        }
        idle_armed = is_idle;
        tokio::select! {
            cmd = rx.recv(), if shell.pending.len() < MAX_PENDING_APPENDS => match cmd {
                Some(cmd) => {
                    // Take what else is waiting in one turn: members are woken once for a
                    // burst instead of once per command, and its updates share a transaction.
                    queue.push_back(cmd);
                    while queue.len() < INBOX_BATCH
                        && shell.pending.len() + queue.len() < MAX_PENDING_APPENDS
                        && let Ok(cmd) = rx.try_recv()
                    {
                        queue.push_back(cmd);
                    }
                    shell.turn(&mut queue).await;
                }
                None => break,
            },
            Some(done) = shell.pending.next(), if !shell.pending.is_empty() => shell.feed(Cmd::Stored(done)),
            Some(done) = shell.compacting.next(), if !shell.compacting.is_empty() => shell.feed(Cmd::Compacted(done)),
            Some(read) = shell.catching_up.next(), if !shell.catching_up.is_empty() => shell.feed(Cmd::CaughtUp(read)),
            Some(settle) = shell.settling.next(), if !shell.settling.is_empty() => shell.feed(settle),
            _ = expiry.tick(), if shell.core.has_awareness() => shell.feed(Cmd::Tick),
            _ = digest.tick(), if clustered && shell.core.has_members() => shell.feed(Cmd::DigestTick),
            () = &mut idle, if idle_armed => {
                tracing::debug!(room = %shell.core.name(), "unloading idle room");
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
    // A room whose store could not be reached refuses its joiners itself, with 1013 and the
    // reason, so they retry later rather than at once.
    let refuse_joins = shell.core.load_unavailable();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            RoomCmd::Join { reply, .. } if !refuse_joins => drop(reply),
            cmd => queue.push_back(cmd),
        }
    }
    if !refuse_joins {
        queue.retain(|cmd| !matches!(cmd, RoomCmd::Join { .. }));
    }
    shell.turn(&mut queue).await;
    while let Some(done) = shell.pending.next().await {
        shell.feed(Cmd::Stored(done));
    }
    while let Some(done) = shell.compacting.next().await {
        shell.feed(Cmd::Compacted(done));
    }
    if let Some(link) = &shell.link {
        link.bus.unsubscribe(shell.core.name());
    }
    metrics.rooms_loaded.dec();
    if shell.core.refuses_writes().is_some() {
        metrics.rooms_refusing_writes.dec();
    }
    tracing::debug!(room = %shell.core.name(), "room task finished");
}

/// A number that differs from room to room and run to run (the digest's phase), without a
/// random number generator: the low bits of the clock.
fn rand_phase() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
