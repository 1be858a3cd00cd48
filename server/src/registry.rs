//! The registry of loaded rooms: creates a room on first join and forgets it when its task
//! unloads it. On a cluster node it also hands each room the bus, and lets the node's tasks
//! reach the rooms it holds (bus messages, the heads check).

use crate::metrics::Metrics;
use crate::room::{self, ClusterLink, RoomConfig, RoomHandle};
use crate::store::Store;
use duet_protocol::RoomName;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Registry {
    // A std Mutex: it is held only to look up or insert a handle, never across an `.await`.
    rooms: Mutex<HashMap<RoomName, RoomHandle>>,
    next_id: AtomicU64,
    store: Arc<dyn Store>,
    link: Option<ClusterLink>,
    config: RoomConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        link: Option<ClusterLink>,
        config: RoomConfig,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            store,
            link,
            config,
            shutdown,
            tracker,
            metrics,
        })
    }

    /// The loaded room called `name`, loading it if needed.
    pub fn get_or_load(self: &Arc<Self>, name: &RoomName) -> RoomHandle {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = rooms.get(name) {
            return handle.clone();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let registry = Arc::downgrade(self);
        let exiting = name.clone();
        let handle = room::spawn(
            id,
            name.clone(),
            self.store.clone(),
            self.link.clone(),
            self.config.clone(),
            self.shutdown.clone(),
            &self.tracker,
            self.metrics.clone(),
            move || {
                if let Some(registry) = registry.upgrade() {
                    registry.forget(&exiting, id);
                }
            },
        );
        rooms.insert(name.clone(), handle.clone());
        handle
    }

    /// Forgets room `name` if it is still the instance `id`.
    fn forget(&self, name: &RoomName, id: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(name).is_some_and(|h| h.id == id) {
            rooms.remove(name);
        }
    }

    /// The loaded room called `name`, if it is loaded (a bus message never loads a room).
    #[cfg(feature = "cluster")]
    pub fn get(&self, name: &RoomName) -> Option<RoomHandle> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every loaded room.
    #[cfg(feature = "cluster")]
    pub fn all(&self) -> Vec<(RoomName, RoomHandle)> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, handle)| (name.clone(), handle.clone()))
            .collect()
    }

    /// Whether room `name` is in memory now.
    pub fn is_loaded(&self, name: &RoomName) -> bool {
        self.rooms
            .lock()
            .map(|rooms| rooms.contains_key(name))
            .unwrap_or(false)
    }

    /// How many rooms are in memory.
    pub fn loaded(&self) -> usize {
        self.rooms.lock().map(|rooms| rooms.len()).unwrap_or(0)
    }
}
