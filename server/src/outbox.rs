//! A member's outgoing queue: what its room has for it, waiting to be written to its socket.
//!
//! Two rules keep a member that reads from being dropped, and one that does not from costing
//! unbounded memory:
//! - The queue is bounded in messages *and* in payload bytes; a push past either bound fails,
//!   and the room closes that member (1013). A message always fits an empty queue, so a large
//!   document still reaches a joiner whatever the byte budget.
//! - Acknowledgements do not take a place each. They are cumulative, so the outbox keeps only
//!   the highest one outside the queue, plus one marker in the queue telling the connection to
//!   write it; a writer sending faster than it reads gets fewer, larger acks instead of filling
//!   its own queue with them.
//!
//! Depth (messages and bytes over all members) is counted in [`Metrics`] as it changes.

use crate::metrics::Metrics;
use crate::out::Out;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Bounds for one member's queue.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Messages queued at most.
    pub messages: usize,
    /// Payload bytes queued at most (an empty queue takes one message of any size).
    pub bytes: usize,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The member's queue is over one of its bounds: it cannot keep up (close it with 1013).
    Full,
    /// The member's connection has ended and dropped its end; its `Leave` is on its way.
    Gone,
}

struct State {
    /// Payload bytes waiting in the queue.
    bytes: AtomicUsize,
    /// The highest acknowledged seq plus one; 0 when no acknowledgement is waiting.
    ack: AtomicU64,
    metrics: Arc<Metrics>,
}

/// The room's end (built by the connection, handed to the room when it joins).
pub struct OutboxTx {
    tx: mpsc::Sender<Out>,
    state: Arc<State>,
    byte_budget: usize,
}

/// The connection's end.
pub struct OutboxRx {
    rx: mpsc::Receiver<Out>,
    state: Arc<State>,
}

pub(crate) fn channel(limits: OutboxLimits, metrics: Arc<Metrics>) -> (OutboxTx, OutboxRx) {
    let (tx, rx) = mpsc::channel(limits.messages.max(1));
    let state = Arc::new(State {
        bytes: AtomicUsize::new(0),
        ack: AtomicU64::new(0),
        metrics,
    });
    (
        OutboxTx {
            tx,
            state: state.clone(),
            byte_budget: limits.bytes,
        },
        OutboxRx { rx, state },
    )
}

/// Payload bytes a message holds on to while queued (shared updates count for each member
/// they wait for, which overstates memory, never understates it).
fn weight(out: &Out) -> usize {
    match out {
        Out::SyncStep1(v) => v.len(),
        Out::SyncStep2(v) => v.len(),
        Out::Update(u) => u.raw().len(),
        Out::Awareness(entries) => entries.len() * 64,
        Out::Ack(_) => 0,
        Out::Error(_, message) => message.len(),
    }
}

impl OutboxTx {
    /// Queues a message, or reports the member as unable to keep up.
    pub(crate) fn push(&self, out: Out) -> Result<(), Refused> {
        if self.tx.is_closed() {
            return Err(Refused::Gone);
        }
        let w = weight(&out);
        let queued = self.state.bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + w > self.byte_budget {
            return Err(Refused::Full);
        }
        // Count first so the connection never subtracts what was not yet added.
        self.state.bytes.fetch_add(w, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(out) {
            self.state.bytes.fetch_sub(w, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Gone,
            });
        }
        let m = &self.state.metrics;
        m.send_queue_messages.add(1);
        m.send_queue_bytes.add(w as i64);
        Ok(())
    }

    /// Acknowledges everything up to `seq`. Queues a marker only when none is waiting.
    pub(crate) fn ack(&self, seq: u64) -> Result<(), Refused> {
        let before = self
            .state
            .ack
            .fetch_max(seq.saturating_add(1), Ordering::AcqRel);
        if before == 0 {
            return self.push(Out::Ack(seq));
        }
        Ok(())
    }
}

impl OutboxRx {
    /// The next message; `None` once the room dropped its end and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Out> {
        let out = self.rx.recv().await?;
        Some(self.taken(out))
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Out> {
        let out = self.rx.try_recv().ok()?;
        Some(self.taken(out))
    }

    fn taken(&self, out: Out) -> Out {
        let w = weight(&out);
        self.state.bytes.fetch_sub(w, Ordering::Relaxed);
        let m = &self.state.metrics;
        m.send_queue_messages.add(-1);
        m.send_queue_bytes.add(-(w as i64));
        match out {
            // The marker stands for the highest ack so far, which may be past its own.
            Out::Ack(seq) => match self.state.ack.swap(0, Ordering::AcqRel) {
                0 => Out::Ack(seq),
                highest => Out::Ack(highest - 1),
            },
            out => out,
        }
    }
}

impl Drop for OutboxRx {
    fn drop(&mut self) {
        // Whatever is still queued leaves the depth gauges with it.
        self.rx.close();
        while let Ok(out) = self.rx.try_recv() {
            self.taken(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::SharedUpdate;

    fn limits(messages: usize, bytes: usize) -> OutboxLimits {
        OutboxLimits { messages, bytes }
    }

    #[tokio::test]
    async fn acks_take_one_place_and_carry_the_highest_seq() {
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = channel(limits(2, 1 << 20), metrics.clone());
        for seq in 0..10_000 {
            tx.ack(seq).expect("acks never fill the queue");
        }
        tx.push(Out::Update(SharedUpdate::new(vec![1, 2, 3])))
            .expect("room for one update");
        assert!(matches!(rx.recv().await, Some(Out::Ack(9_999))));
        assert!(matches!(rx.recv().await, Some(Out::Update(_))));
        assert_eq!(metrics.send_queue_messages.get(), 0);
        tx.ack(10_000).unwrap();
        assert!(matches!(rx.try_recv(), Some(Out::Ack(10_000))));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn bounds_are_messages_and_bytes_but_an_empty_queue_takes_anything() {
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = channel(limits(100, 10), metrics.clone());
        tx.push(Out::SyncStep2(vec![0; 1_000].into()))
            .expect("an empty queue takes a large message");
        assert!(
            tx.push(Out::SyncStep2(vec![0; 1].into())).is_err(),
            "over bytes"
        );
        assert_eq!(metrics.send_queue_bytes.get(), 1_000);
        rx.recv().await.unwrap();
        assert_eq!(metrics.send_queue_bytes.get(), 0);
        for _ in 0..10 {
            tx.push(Out::SyncStep2(vec![0; 1].into())).unwrap();
        }
        assert!(
            tx.push(Out::SyncStep2(vec![0; 1].into())).is_err(),
            "over bytes"
        );

        let (tx, rx) = channel(limits(2, 1 << 20), metrics.clone());
        tx.push(Out::Ack(1)).unwrap();
        tx.push(Out::Ack(2)).unwrap();
        assert!(tx.push(Out::Ack(3)).is_err(), "over messages");
        drop(rx);
        drop(tx);
        assert_eq!(
            metrics.send_queue_messages.get(),
            10,
            "dropped queue leaves the gauge"
        );
    }

    #[tokio::test]
    async fn a_dropped_queue_is_gone_not_full() {
        let (tx, rx) = channel(limits(1, 1 << 20), Arc::default());
        tx.push(Out::Ack(1)).unwrap();
        assert_eq!(tx.push(Out::Ack(2)), Err(Refused::Full));
        drop(rx);
        assert_eq!(tx.push(Out::Ack(3)), Err(Refused::Gone));
    }
}
