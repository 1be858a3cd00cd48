//! A node of a cluster (ADR 011): what connects the rooms this process holds to the other
//! nodes. Two tasks beside the rooms:
//!
//! ```text
//!   Redis ── BusEvent ──> on the bus listener's own task:                             room
//!                           │  FromNode, NodeAwareness, Digest, AwarenessQuery ──>   inboxes
//!                           │  Behind(gap | reconnect | lagged)
//!                           └─ a new epoch of a node ── NodeGone ──> every room   (try_send:
//!                                                                                  a full inbox
//!   PostgreSQL <── heartbeat, nodes ── tick ── NodeGone (stale heartbeat) ──> rooms marks the
//!              <── heads(all rooms) ──  │  ── Head(seq) ──────────────────> rooms  room behind)
//!                                       └─ /healthz: PostgreSQL and Redis reachable
//! ```
//!
//! What the bus hears is handed to the rooms on the bus listener's task (no queue and no task
//! between them: one hop fewer on every cross-node edit). Other nodes are known by (id,
//! epoch), numbered here for the rooms' awareness owners
//! (`Owner::Node`). A node is gone when its heartbeat is older than the stale time, or when a
//! newer epoch of it is heard: every room drops the cursors it owned and stores what it
//! relayed but never stored (`Cmd::NodeGone`). Nothing here waits on a room: bus traffic is
//! offered to a room's inbox and, when that is full, the room reads its log instead.

use crate::awareness::{check_client_id, check_peer_state, check_yjs_state};
use crate::cluster::bus::{Bus, BusEvent, NoBus};
use crate::cluster::pg::PgStore;
use crate::cluster::redis::{Deliver, RedisBus, RedisOptions};
use crate::metrics::ClusterMetrics;
use crate::out::AwarenessState;
use crate::registry::Registry;
use crate::room::{CatchUp, Cmd, RemoteEntry, RoomCmd};
use crate::store::BoxFuture;
use duet_protocol::RoomName;
use duet_protocol::bus::{self as wire, Body, BusAwareness, Envelope, NodeId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id: stable across its restarts (its epoch tells them apart).
    pub node: NodeId,
    /// The bus: a Redis URL and its options; `None` runs the node on the log alone (other
    /// nodes' edits then arrive with the heads check, within `heads_every`).
    pub redis: Option<(String, RedisOptions)>,
    /// How often the heartbeat row is refreshed.
    pub heartbeat_every: Duration,
    /// A node whose heartbeat is older than this is gone.
    pub stale_after: Duration,
    /// How often the heads of every loaded room are checked (one query).
    pub heads_every: Duration,
    /// How often a room with members publishes its state vector.
    pub digest_every: Duration,
}

impl NodeOptions {
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            redis: None,
            heartbeat_every: Duration::from_secs(2),
            stale_after: Duration::from_secs(6),
            heads_every: Duration::from_secs(2),
            digest_every: Duration::from_secs(30),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {node} in postgresql failed: {source}")]
    Register {
        node: NodeId,
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    Bus(#[from] crate::cluster::bus::BusError),
}

/// A node's health for `/healthz`: unhealthy while PostgreSQL or Redis cannot be reached, or
/// once another process took this node's id.
pub struct Health {
    node: NodeId,
    /// Why the last heartbeat failed, if it did.
    postgres: Mutex<Option<String>>,
    bus: Arc<dyn Bus>,
    redis: bool,
    /// Another process registered with this node's id (a newer epoch).
    taken: AtomicBool,
}

impl Health {
    /// `Err(reason)` when the node should not get clients.
    pub fn check(&self) -> Result<(), String> {
        if self.taken.load(Ordering::Relaxed) {
            return Err(format!(
                "node id {} was registered by another process; give each node its own --node-id",
                self.node
            ));
        }
        if let Some(why) = lock(&self.postgres).as_ref() {
            return Err(format!("postgresql unreachable: {why}"));
        }
        if self.redis && !self.bus.connected() {
            return Err("redis unreachable: this node hears no other node".into());
        }
        Ok(())
    }
}

/// A std Mutex taken over if a panic poisoned it; held only for map lookups, never across an
/// `.await`.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the node knows of the others.
#[derive(Default)]
struct Peers {
    /// (id, epoch) -> the number the rooms know that run by.
    keys: HashMap<(NodeId, u64), u64>,
    next_key: u64,
    /// The newest epoch heard of each node (bus or heartbeat table).
    latest: HashMap<NodeId, u64>,
    /// When each node was last heard on the bus.
    heard: HashMap<NodeId, Instant>,
    /// Runs written off (heartbeat stale), so each is written off once.
    gone: HashSet<(NodeId, u64)>,
}

impl Peers {
    fn key(&mut self, node: &NodeId, epoch: u64) -> u64 {
        let next = &mut self.next_key;
        *self.keys.entry((node.clone(), epoch)).or_insert_with(|| {
            *next += 1;
            *next
        })
    }

    /// A message or a heartbeat row of `node` in `epoch`: `Err(())` if an older run (drop it),
    /// else the run's key and the key of the run it replaces, if it replaces one.
    fn seen(&mut self, node: &NodeId, epoch: u64) -> Result<(u64, Option<u64>), ()> {
        let replaced = match self.latest.get(node).copied() {
            Some(known) if epoch < known => return Err(()),
            Some(known) if epoch > known => Some(self.key(node, known)),
            _ => None,
        };
        self.latest.insert(node.clone(), epoch);
        Ok((self.key(node, epoch), replaced))
    }
}

/// The state the node's tasks share.
struct NodeState {
    me: NodeId,
    epoch: u64,
    pg: Arc<PgStore>,
    registry: Arc<Registry>,
    metrics: Arc<ClusterMetrics>,
    health: Arc<Health>,
    peers: Mutex<Peers>,
    options: NodeOptions,
    tracker: TaskTracker,
}

/// A node being set up: what the server needs of it before the rooms exist, then
/// [`Starting::run`] once they do.
pub struct Starting {
    pub(crate) epoch: u64,
    pub(crate) bus: Arc<dyn Bus>,
    /// Where the bus listener finds the node once it runs (before, no room exists to hear).
    state: Arc<OnceLock<Arc<NodeState>>>,
    redis: Option<Arc<RedisBus>>,
    pub(crate) metrics: Arc<ClusterMetrics>,
    pub(crate) health: Arc<Health>,
    pg: Arc<PgStore>,
    options: NodeOptions,
}

impl Starting {
    /// Registers the node (its epoch grows) and starts its bus.
    pub async fn new(pg: Arc<PgStore>, options: NodeOptions) -> Result<Self, NodeError> {
        let epoch =
            pg.register_node(&options.node)
                .await
                .map_err(|source| NodeError::Register {
                    node: options.node.clone(),
                    source,
                })?;
        let state: Arc<OnceLock<Arc<NodeState>>> = Arc::new(OnceLock::new());
        let (bus, redis): (Arc<dyn Bus>, _) = match &options.redis {
            Some((url, redis_options)) => {
                let node = state.clone();
                let deliver = Deliver::Call(Box::new(move |event| {
                    #[cfg(debug_assertions)]
                    if matches!(event, BusEvent::Message { .. }) && failpoint::refuse() {
                        return Err(Box::new(event));
                    }
                    if let Some(node) = node.get() {
                        node.heard(event);
                    }
                    Ok(())
                }));
                let bus = RedisBus::start_with(
                    url,
                    options.node.clone(),
                    epoch,
                    redis_options.clone(),
                    deliver,
                )?;
                // Not fatal: the node serves from the log and says so on /healthz.
                if let Err(e) = bus.wait_connected(redis_options.connect_timeout).await {
                    tracing::warn!(error = %e, "starting without redis for now");
                }
                let bus = Arc::new(bus);
                (bus.clone(), Some(bus))
            }
            None => (Arc::new(NoBus), None),
        };
        tracing::info!(node = %options.node, epoch, bus = redis.is_some(), "cluster node registered");
        let health = Arc::new(Health {
            node: options.node.clone(),
            postgres: Mutex::new(None),
            bus: bus.clone(),
            redis: redis.is_some(),
            taken: AtomicBool::new(false),
        });
        Ok(Self {
            epoch,
            bus,
            state,
            redis,
            metrics: Arc::new(ClusterMetrics::default()),
            health,
            pg,
            options,
        })
    }

    /// The bus's figures, for `/metrics`.
    pub(crate) fn bus_metrics(&self) -> Option<Arc<crate::cluster::bus::BusMetrics>> {
        self.bus.metrics()
    }

    /// Starts the node's tasks on `tracker`; the future returned says goodbye (the heartbeat
    /// marked stale, so the others write this node off at once; the bus stopped), to run
    /// once every room has stored what it took in.
    pub(crate) fn run(
        self,
        registry: Arc<Registry>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let state = Arc::new(NodeState {
            me: self.options.node.clone(),
            epoch: self.epoch,
            pg: self.pg,
            registry,
            metrics: self.metrics,
            health: self.health,
            peers: Mutex::new(Peers::default()),
            options: self.options,
            tracker: tracker.clone(),
        });
        // From here the bus listener hands what it hears to the rooms.
        let _ = self.state.set(state.clone());
        tracker.spawn(tick(state.clone(), shutdown));
        let redis = self.redis;
        Box::pin(async move {
            match state.pg.retire_node(&state.me, state.epoch).await {
                Ok(_) => {
                    tracing::info!(node = %state.me, "node retired: the others write it off now")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not retire the node's heartbeat; the others write it off once it is stale")
                }
            }
            if let Some(redis) = redis {
                redis.shutdown().await;
            }
        })
    }
}

impl NodeState {
    /// What the bus heard, on its listener's task: nothing here waits.
    fn heard(&self, event: BusEvent) {
        match event {
            BusEvent::Message {
                room,
                envelope,
                seen,
            } => self.message(room, envelope, seen.missed()),
            BusEvent::Disconnected => {
                tracing::warn!("cut off from the bus: rooms work from the log until it is back");
            }
            BusEvent::Reconnected { after } => {
                tracing::info!(?after, "back on the bus: every room reads its log");
                for (_, room) in self.registry.all() {
                    room.offer(RoomCmd::Core(Cmd::Behind(CatchUp::Reconnect)));
                }
            }
            BusEvent::Lagged { rooms } => {
                for name in rooms {
                    if let Some(room) = self.registry.get(&name) {
                        room.offer(RoomCmd::Core(Cmd::Behind(CatchUp::Lagged)));
                    }
                }
            }
        }
    }

    /// One message of another node for a room this node may hold.
    fn message(&self, room: RoomName, envelope: Envelope, missed: bool) {
        let Envelope {
            origin,
            epoch,
            body,
            ..
        } = envelope;
        let (node, replaced) = {
            let mut peers = lock(&self.peers);
            peers.heard.insert(origin.clone(), Instant::now());
            match peers.seen(&origin, epoch) {
                Ok(keys) => keys,
                // A late message of a run that has since restarted.
                Err(()) => return,
            }
        };
        if let Some(old) = replaced {
            tracing::info!(node = %origin, epoch, "another node restarted: its old run is gone");
            self.gone(old);
        }
        let Some(handle) = self.registry.get(&room) else {
            return;
        };
        let cmd = match body {
            Body::Update(update) => {
                self.metrics.remote_updates.inc();
                Cmd::FromNode {
                    node,
                    update: update.0,
                }
            }
            Body::Digest(state_vector) => Cmd::Digest {
                state_vector: state_vector.0,
            },
            Body::Awareness(entries) => Cmd::NodeAwareness {
                node,
                entries: entries.into_iter().filter_map(remote_entry).collect(),
            },
            Body::AwarenessQuery => Cmd::AwarenessQuery,
        };
        if missed {
            handle.offer(RoomCmd::Core(Cmd::Behind(CatchUp::Gap)));
        }
        handle.offer(RoomCmd::Core(cmd));
    }

    /// A run of another node is gone: every room drops what it owned. Sent without dropping
    /// (each room's inbox waited for in turn), off the listener's task.
    fn gone(&self, node: u64) {
        self.metrics.nodes_gone.inc();
        let rooms = self.registry.all();
        self.tracker.spawn(async move {
            for (_, room) in rooms {
                let _ = room.send(RoomCmd::Core(Cmd::NodeGone { node })).await;
            }
        });
    }

    /// Refreshes the heartbeat, writes off the nodes whose heartbeat went stale.
    async fn heartbeat(&self) {
        match self.pg.heartbeat(&self.me, self.epoch).await {
            Ok(true) => *lock(&self.health.postgres) = None,
            Ok(false) => {
                if !self.health.taken.swap(true, Ordering::Relaxed) {
                    tracing::error!(node = %self.me, epoch = self.epoch, "another process registered this node id: this one reports itself unhealthy");
                }
                *lock(&self.health.postgres) = None;
            }
            Err(e) => {
                self.metrics.heartbeat_errors.inc();
                tracing::warn!(error = %e, "the heartbeat could not be written");
                *lock(&self.health.postgres) = Some(e.to_string());
                return;
            }
        }
        let beats = match self.pg.nodes().await {
            Ok(beats) => beats,
            Err(e) => {
                tracing::debug!(error = %e, "reading the other nodes' heartbeats failed");
                return;
            }
        };
        let stale_after = self.options.stale_after;
        let mut alive = 0;
        let mut gone = Vec::new();
        let mut forget = Vec::new();
        {
            let mut peers = lock(&self.peers);
            for beat in &beats {
                if beat.node == self.me {
                    continue;
                }
                let (key, replaced) = match peers.seen(&beat.node, beat.epoch) {
                    Ok(keys) => keys,
                    Err(()) => continue,
                };
                gone.extend(replaced);
                let run = (beat.node.clone(), beat.epoch);
                if beat.age <= stale_after {
                    alive += 1;
                    // A slow node that beats again is no longer written off.
                    peers.gone.remove(&run);
                } else if peers.gone.insert(run) {
                    tracing::info!(node = %beat.node, epoch = beat.epoch, age = ?beat.age, "another node's heartbeat is stale: it is gone");
                    gone.push(key);
                }
                // Rows of nodes long gone are removed (each node has written them off by now).
                if beat.age > stale_after * 100 {
                    forget.push((beat.node.clone(), beat.epoch));
                }
            }
            let cutoff = Instant::now() - Duration::from_secs(10);
            peers.heard.retain(|_, at| *at > cutoff);
            self.metrics.peers_heard.add(
                i64::try_from(peers.heard.len()).unwrap_or(0) - self.metrics.peers_heard.get(),
            );
        }
        self.metrics
            .nodes_alive
            .add(alive - self.metrics.nodes_alive.get());
        for key in gone {
            self.gone(key);
        }
        for (node, epoch) in forget {
            let _ = self.pg.forget_node(&node, epoch).await;
        }
    }

    /// One query for the heads of every loaded room; each room behind its log reads it.
    async fn heads(&self) {
        let rooms = self.registry.all();
        if rooms.is_empty() {
            return;
        }
        for chunk in rooms.chunks(1000) {
            let names: Vec<RoomName> = chunk.iter().map(|(name, _)| name.clone()).collect();
            let began = Instant::now();
            let heads = match self.pg.heads(&names).await {
                Ok(heads) => heads,
                Err(e) => {
                    tracing::debug!(error = %e, "the heads check failed");
                    return;
                }
            };
            self.metrics.heads_check.observe(began.elapsed());
            for (name, room) in chunk {
                if let Some(head) = heads.get(name) {
                    room.offer(RoomCmd::Core(Cmd::Head(*head)));
                }
            }
        }
    }
}

/// The node's clock: heartbeats and the heads check.
async fn tick(state: Arc<NodeState>, shutdown: CancellationToken) {
    let mut beat = tokio::time::interval(state.options.heartbeat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heads = tokio::time::interval(state.options.heads_every);
    heads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = beat.tick() => state.heartbeat().await,
            _ = heads.tick() => state.heads().await,
        }
    }
}

/// An awareness entry from the bus, checked as one from a client would be (a Yjs client
/// parses what it becomes); `None` drops it.
fn remote_entry(entry: BusAwareness) -> Option<RemoteEntry> {
    check_client_id(entry.client_id).ok()?;
    let state = match entry.state {
        wire::AwarenessState::Removed => None,
        wire::AwarenessState::Duet(state) => {
            check_peer_state(&state).ok()?;
            Some(AwarenessState::typed(state))
        }
        // JSON `null` removes the entry, as from a client.
        wire::AwarenessState::Json(json) => check_yjs_state(&json)
            .ok()?
            .map(|_| AwarenessState::json(json.as_str().into())),
    };
    Some(RemoteEntry {
        client_id: entry.client_id,
        clock: entry.clock,
        role: entry.role,
        state,
    })
}

/// Debug builds only: `DUET_FAILPOINT_BUS_SLOW_MS=N` makes the node take at most one bus
/// message per N ms, refusing those that come sooner as a full queue would: it falls behind
/// the bus (messages dropped and counted, their rooms reported lagged and read from the log),
/// the test of a node that cannot keep up.
#[cfg(debug_assertions)]
mod failpoint {
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    pub const ENV: &str = "DUET_FAILPOINT_BUS_SLOW_MS";

    /// Whether to refuse this message.
    pub fn refuse() -> bool {
        static SLOW: OnceLock<Option<Duration>> = OnceLock::new();
        static LAST: Mutex<Option<Instant>> = Mutex::new(None);
        let Some(slow) = SLOW.get_or_init(|| {
            let ms: u64 = std::env::var(ENV).ok()?.parse().ok()?;
            tracing::warn!("failpoint {ENV}: one bus message per {ms} ms");
            Some(Duration::from_millis(ms))
        }) else {
            return false;
        };
        // A std Mutex, held for a comparison: never across an `.await`.
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < *slow) {
            return true;
        }
        *last = Some(now);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    #[test]
    fn runs_of_a_node_are_told_apart_and_old_ones_dropped() {
        let mut peers = Peers::default();
        let a = node("a");
        let (k1, replaced) = peers.seen(&a, 3).unwrap();
        assert_eq!(replaced, None);
        assert_eq!(peers.seen(&a, 3).unwrap(), (k1, None), "same run, same key");
        assert!(peers.seen(&a, 2).is_err(), "a late message of an older run");
        let (k2, replaced) = peers.seen(&a, 4).unwrap();
        assert_ne!(k1, k2);
        assert_eq!(replaced, Some(k1), "the restart replaces the old run");
        let (kb, _) = peers.seen(&node("b"), 3).unwrap();
        assert!(kb != k1 && kb != k2);
    }

    #[test]
    fn bus_awareness_is_checked_like_a_clients() {
        let json = |s: &str| BusAwareness {
            client_id: 5,
            clock: 2,
            role: duet_protocol::Role::Editor,
            state: wire::AwarenessState::Json(s.into()),
        };
        assert!(remote_entry(json("{\"user\":{}}")).is_some_and(|e| e.state.is_some()));
        assert!(remote_entry(json("null")).is_some_and(|e| e.state.is_none()));
        assert!(
            remote_entry(json("S")).is_none(),
            "not JSON: would kill Yjs clients"
        );
        let mut big = json("{}");
        big.client_id = 1 << 60;
        assert!(remote_entry(big).is_none());
    }
}
