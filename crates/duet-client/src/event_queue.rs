//! The queue between the connection task and the application's bounded event channel.
//!
//! The connection task must never wait for a slow application (the server would close it as
//! too slow), yet state changes and fatal errors must not be lost. So the connection task
//! pushes into this queue without blocking, coalescing what can be coalesced, and a small
//! pump task moves events into the application's channel at the application's pace.

use crate::{ConnState, Event};
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use tokio::sync::{Notify, mpsc};

/// Undelivered events kept at most; only reached if the application stops reading while the
/// connection keeps failing, or peers keep coming and going. Then the oldest events that
/// are not [`Event::Fatal`] or [`Event::State`] give way first.
const CAP: usize = 1024;

/// Makes room in a full queue.
fn drop_oldest(events: &mut VecDeque<Event>) {
    let droppable = events
        .iter()
        .position(|e| !matches!(e, Event::Fatal(_) | Event::State(_)))
        // Only states and fatal errors are left: older states are history.
        .or_else(|| events.iter().position(|e| matches!(e, Event::State(_))));
    if let Some(dropped) = droppable.and_then(|i| events.remove(i)) {
        tracing::warn!(
            ?dropped,
            "the application is not reading events; dropped one"
        );
    }
}

#[derive(Default)]
pub(crate) struct EventQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

#[derive(Default)]
struct Inner {
    events: VecDeque<Event>,
    /// No more events will come: the pump exits once the queue is empty.
    closed: bool,
}

impl EventQueue {
    /// Queues `event`, merging it with an undelivered event of the same kind where that loses
    /// nothing the application needs.
    pub(crate) fn push(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let events = &mut inner.events;
        let merged = match &event {
            Event::RemoteChange | Event::PeersChanged => events.contains(&event),
            Event::Acked { seq } => {
                match events.iter_mut().find(|e| matches!(e, Event::Acked { .. })) {
                    Some(Event::Acked { seq: queued }) => {
                        *queued = (*queued).max(*seq);
                        true
                    }
                    _ => false,
                }
            }
            Event::State(_) => match events.back_mut() {
                Some(last @ Event::State(_)) => {
                    *last = event.clone();
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !merged {
            events.push_back(event);
            if events.len() > CAP {
                drop_oldest(events);
            }
        }
        drop(inner);
        self.notify.notify_one();
    }

    pub(crate) fn push_state(&self, state: ConnState) {
        self.push(Event::State(state));
    }

    /// No more events will be pushed; the pump delivers what is queued, then ends.
    pub(crate) fn close(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.notify.notify_one();
    }

    /// Moves events into `tx` until the queue is closed and empty or the receiver is dropped.
    pub(crate) async fn pump(&self, tx: mpsc::Sender<Event>) {
        loop {
            let next = {
                let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
                match inner.events.pop_front() {
                    Some(event) => Some(event),
                    None if inner.closed => return,
                    None => None,
                }
            };
            match next {
                Some(event) => {
                    if tx.send(event).await.is_err() {
                        return; // The application dropped its receiver.
                    }
                }
                // `notify_one` stores a permit if nobody waits, so a push between the check
                // above and this await is not missed.
                None => self.notify.notified().await,
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> Vec<Event> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientError;
    use std::time::Duration;

    fn reconnecting(attempt: u32) -> Event {
        Event::State(ConnState::Reconnecting {
            attempt,
            retry_in: Duration::from_millis(10),
            reason: "connection refused".into(),
        })
    }

    #[test]
    fn coalesces_what_the_application_reads_from_shared_state() {
        let q = EventQueue::default();
        q.push(Event::RemoteChange);
        q.push(Event::PeersChanged);
        q.push(Event::Acked { seq: 3 });
        q.push(Event::RemoteChange);
        q.push(Event::Acked { seq: 5 });
        q.push(Event::PeerJoined { name: "a".into() });
        q.push(Event::PeersChanged);
        q.push(Event::Acked { seq: 4 });
        assert_eq!(
            q.queued(),
            [
                Event::RemoteChange,
                Event::PeersChanged,
                Event::Acked { seq: 5 },
                Event::PeerJoined { name: "a".into() },
            ]
        );
    }

    #[test]
    fn consecutive_states_keep_the_latest_and_others_keep_their_order() {
        let q = EventQueue::default();
        q.push_state(ConnState::Connecting);
        q.push(reconnecting(1));
        q.push(Event::Synced {
            offline_updates_merged: 2,
        });
        q.push_state(ConnState::Live);
        q.push(reconnecting(1));
        q.push_state(ConnState::Stopped);
        q.push(Event::Fatal(ClientError::Stopped));
        assert_eq!(
            q.queued(),
            [
                reconnecting(1),
                Event::Synced {
                    offline_updates_merged: 2
                },
                Event::State(ConnState::Stopped),
                Event::Fatal(ClientError::Stopped),
            ]
        );
    }

    #[test]
    fn a_full_queue_drops_old_events_but_keeps_states_and_fatal_errors() {
        let q = EventQueue::default();
        q.push_state(ConnState::Connecting);
        q.push(Event::Fatal(ClientError::Stopped));
        for i in 0..CAP + 10 {
            q.push(Event::PeerJoined {
                name: i.to_string(),
            });
        }
        let queued = q.queued();
        assert_eq!(queued.len(), CAP);
        assert_eq!(queued[0], Event::State(ConnState::Connecting));
        assert_eq!(queued[1], Event::Fatal(ClientError::Stopped));
        assert_eq!(
            queued[CAP - 1],
            Event::PeerJoined {
                name: (CAP + 9).to_string()
            }
        );
    }

    #[tokio::test]
    async fn the_pump_delivers_everything_then_ends_when_closed() {
        let q = std::sync::Arc::new(EventQueue::default());
        let (tx, mut rx) = mpsc::channel(1);
        let pump = tokio::spawn({
            let q = q.clone();
            async move { q.pump(tx).await }
        });
        for seq in 0..3 {
            q.push(Event::PeerLeft {
                name: seq.to_string(),
            });
        }
        q.push_state(ConnState::Stopped);
        q.close();
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(e);
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], Event::State(ConnState::Stopped));
        pump.await.expect("pump task");
    }
}
