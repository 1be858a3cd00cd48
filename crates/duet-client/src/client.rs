//! [`Client`]: the application's handle on the document and the connection task.

use crate::connection;
use crate::doc_state::DocState;
use crate::shared::{Shared, lock};
use crate::{ClientConfig, ClientError, ConnState, Event, PeerInfo};
use duet_doc::{Document, Selection};
use duet_protocol::{Location, Role};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events the application has not taken yet; beyond this the client coalesces (see
/// [`Event`]) rather than wait.
const EVENT_CHANNEL_CAPACITY: usize = 256;

/// A live handle on a shared document: edit it locally at any time, online or not; the
/// connection task keeps it in sync with the room.
///
/// Cheap to clone; every clone drives the same document and connection. The connection
/// stops when [`Client::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

// The terminal editor, the tests and the benchmark share a client across tasks and threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
};

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the connection task for `config` on the current tokio runtime and returns at
    /// once, with the receiver of the client's events.
    ///
    /// Local updates already in `doc` (a loaded file, say) go to the server with the first
    /// sync. Panics if called outside a tokio runtime.
    pub fn spawn(config: ClientConfig, doc: Document) -> (Client, mpsc::Receiver<Event>) {
        let shared = Shared::new(DocState::new(doc));
        shared
            .publish_cursor
            .store(config.publish_cursor, std::sync::atomic::Ordering::Relaxed);
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        // The pump ends once the connection task has closed the queue and everything queued
        // is delivered, or as soon as the application drops the receiver.
        let events = shared.events.clone();
        tokio::spawn(async move { events.pump(tx).await });
        let task = tokio::spawn(connection::run(shared.clone(), config, cancel.clone()));
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                cancel,
                task: Mutex::new(Some(task)),
            }),
        };
        (client, rx)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Runs `f` on the document and sends the local updates it made (or keeps them for the
    /// next sync while offline).
    ///
    /// The document lock is a std `Mutex` held only while `f` runs, never across an
    /// `.await`; keep `f` short, the connection task waits for the same lock to apply
    /// remote updates.
    pub fn edit<R>(&self, f: impl FnOnce(&mut Document) -> R) -> R {
        let (result, queued, moved) = {
            let mut state = lock(&self.shared().doc);
            let before = state.doc.selection();
            let result = f(&mut state.doc);
            let queued = state.collect_local();
            (result, queued, state.doc.selection() != before)
        };
        if queued {
            self.shared().wake.notify_one();
        }
        if moved {
            self.shared().mark_awareness_dirty();
        }
        result
    }

    /// Runs `f` on the document (same lock as [`Client::edit`]).
    pub fn read<R>(&self, f: impl FnOnce(&Document) -> R) -> R {
        f(&lock(&self.shared().doc).doc)
    }

    /// Sets our selection and publishes it to the other members (coalesced: at most one
    /// awareness message per 30 ms, carrying the latest selection).
    pub fn set_selection(&self, selection: Selection) {
        lock(&self.shared().doc).doc.set_selection(selection);
        self.shared().mark_awareness_dirty();
    }

    /// Sets where we work (a file of a workspace, say) and publishes it with our awareness
    /// (coalesced like the selection). `None` clears it.
    pub fn set_location(&self, location: Option<Location>) {
        let changed = {
            let mut current = lock(&self.shared().location);
            let changed = *current != location;
            *current = location;
            changed
        };
        if changed {
            self.shared().mark_awareness_dirty();
        }
    }

    /// Whether our awareness shows our cursor (a workspace's editor hides it in the files
    /// that are not in front). Published like a selection change.
    pub fn show_cursor(&self, show: bool) {
        let was = self
            .shared()
            .publish_cursor
            .swap(show, std::sync::atomic::Ordering::Relaxed);
        if was != show {
            self.shared().mark_awareness_dirty();
        }
    }

    /// The other members of the room (not ourselves), ordered by peer id, with their
    /// selections resolved against our current document.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let peers = lock(&self.shared().session).peers.snapshot();
        let state = lock(&self.shared().doc);
        let resolve = |bytes: &[u8]| state.doc.resolve_sticky(bytes);
        peers
            .into_iter()
            .map(|p| PeerInfo {
                selection: p.cursor.as_ref().and_then(|c| {
                    Some(Selection {
                        anchor: resolve(&c.anchor)?,
                        head: resolve(&c.head)?,
                    })
                }),
                peer_id: p.peer_id,
                client_id: p.client_id,
                location: p.location,
                name: p.name,
                color: p.color,
                role: p.role,
                last_change: p.last_change,
            })
            .collect()
    }

    pub fn state(&self) -> ConnState {
        self.shared().state()
    }

    /// Our peer id in the current session; `None` while disconnected.
    pub fn peer_id(&self) -> Option<u64> {
        lock(&self.shared().session).peer_id
    }

    /// Our role, as the server last told it.
    pub fn role(&self) -> Option<Role> {
        lock(&self.shared().session).role
    }

    /// Local updates sent or waiting to be sent that the server has not acknowledged yet.
    /// (After a reconnect the sync diff that carries offline updates counts as one more.)
    pub fn unacked(&self) -> u64 {
        lock(&self.shared().doc).unacked()
    }

    /// Local updates made while not connected, waiting to be merged by the next sync.
    pub fn pending_offline(&self) -> usize {
        lock(&self.shared().doc).pending_offline()
    }

    /// Why the client stopped, if it stopped on its own.
    pub fn fatal_error(&self) -> Option<ClientError> {
        lock(&self.shared().fatal).clone()
    }

    /// Waits until the client is [`ConnState::Live`] (connected and initially synced).
    /// Fails with the fatal error if the client stops, or [`ClientError::Timeout`].
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut states = self.shared().state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            states.wait_for(|s| matches!(s, ConnState::Live | ConnState::Stopped)),
        )
        .await;
        let live = match waited {
            Err(_) => return Err(ClientError::Timeout { after: timeout }),
            Ok(Err(_)) => false,
            Ok(Ok(state)) => *state == ConnState::Live,
        };
        if live {
            Ok(())
        } else {
            Err(self.fatal_error().unwrap_or(ClientError::Stopped))
        }
    }

    /// Clears our awareness, closes the connection with 1000 and stops the connection task
    /// (for every clone of this client). Edits still work afterwards, locally.
    pub async fn close(self) {
        self.inner.cancel.cancel();
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "duet connection task failed");
            }
        } else {
            // Another clone is closing: wait for it to finish.
            let mut states = self.shared().state.subscribe();
            let _ = states.wait_for(|s| *s == ConnState::Stopped).await;
        }
    }
}
