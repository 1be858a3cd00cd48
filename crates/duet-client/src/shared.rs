//! The state the application's [`crate::Client`] handles and the connection task share.
//!
//! Locks are std `Mutex`es: they are held only for short synchronous sections (an edit, an
//! apply, a copy) and never across an `.await`, so a blocking lock is cheaper than an async
//! one. No code path holds two of them at once.

use crate::doc_state::DocState;
use crate::event_queue::EventQueue;
use crate::peers::Peers;
use crate::{ClientError, ConnState, Event};
use duet_protocol::{Location, Role};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{Notify, watch};

pub(crate) struct Shared {
    pub(crate) doc: Mutex<DocState>,
    pub(crate) session: Mutex<SessionInfo>,
    pub(crate) state: watch::Sender<ConnState>,
    /// Why the loop stopped, if it stopped on its own.
    pub(crate) fatal: Mutex<Option<ClientError>>,
    /// Wakes the connection task: the outbox has updates or our awareness changed.
    pub(crate) wake: Notify,
    /// Our selection changed since our awareness was last sent.
    pub(crate) awareness_dirty: AtomicBool,
    /// Shared with the pump task, which moves events into the application's channel.
    pub(crate) events: Arc<EventQueue>,
    /// Where we work, published with our awareness (a workspace's index room carries it).
    pub(crate) location: Mutex<Option<Location>>,
    /// Our awareness carries our cursor (not in rooms without text, like an index, nor in
    /// a file the person has not in front).
    pub(crate) publish_cursor: AtomicBool,
}

/// What the current session learnt about us and the room.
#[derive(Default)]
pub(crate) struct SessionInfo {
    pub(crate) peer_id: Option<u64>,
    pub(crate) role: Option<Role>,
    pub(crate) peers: Peers,
}

/// Locks `m`, carrying on after a panic elsewhere: every section that holds these locks
/// leaves the data consistent at each step, and a panicking edit closure of the application
/// must not take the connection down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(doc: DocState) -> Self {
        Self {
            doc: Mutex::new(doc),
            session: Mutex::new(SessionInfo::default()),
            state: watch::Sender::new(ConnState::Connecting),
            fatal: Mutex::new(None),
            wake: Notify::new(),
            awareness_dirty: AtomicBool::new(true),
            events: Arc::new(EventQueue::default()),
            location: Mutex::new(None),
            publish_cursor: AtomicBool::new(true),
        }
    }

    /// Publishes a new connection state (and its event) if it differs from the current one.
    pub(crate) fn set_state(&self, state: ConnState) {
        let changed = self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state.clone();
                true
            }
        });
        if changed {
            self.events.push_state(state);
        }
    }

    pub(crate) fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    pub(crate) fn mark_awareness_dirty(&self) {
        self.awareness_dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(crate) fn take_awareness_dirty(&self) -> bool {
        self.awareness_dirty.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn awareness_is_dirty(&self) -> bool {
        self.awareness_dirty.load(Ordering::Acquire)
    }

    /// Records why the loop stops and tells the application.
    pub(crate) fn fail(&self, error: ClientError) {
        tracing::warn!(%error, "duet client stopping");
        *lock(&self.fatal) = Some(error.clone());
        self.events.push(Event::Fatal(error));
    }
}
