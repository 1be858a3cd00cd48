//! In-process measurement of a room's relay path, for `examples/room_bench.rs`: one writer
//! and one reader joined to a real room task over real send queues, with no sockets, so the
//! room's own cost per update (checks, yrs, relay, store, acknowledgement) can be compared
//! between two builds without the noise of the network and the scheduler.

use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::out::Out;
use crate::outbox::OutboxLimits;
use crate::room::{self, Incoming, RoomCmd, RoomConfig};
use crate::store::Store;
use duet_protocol::{Role, RoomName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct RelayRun {
    /// From the first update sent to the room to the reader holding the last one and the
    /// writer holding the last acknowledgement.
    pub elapsed: Duration,
    /// Updates the reader received.
    pub relayed: usize,
    /// The highest seq acknowledged to the writer.
    pub acked: u64,
}

/// Sends `updates` (v1, in order, seq 1..) into a fresh in-memory room with one writer and
/// one reader, as fast as the room takes them; call it on a current-thread runtime.
pub async fn room_relay(updates: &[Vec<u8>]) -> RelayRun {
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let tracker = TaskTracker::new();
    let config = RoomConfig::default();
    let limits = OutboxLimits {
        messages: updates.len() + 16,
        bytes: usize::MAX / 2,
    };
    let handle = room::spawn(
        1,
        RoomName::new("bench").expect("valid room name"),
        store,
        None,
        config,
        CancellationToken::new(),
        &tracker,
        metrics.clone(),
        || {},
    );
    let mut ends = Vec::new();
    for peer_id in [1, 2] {
        let join = RoomCmd::join(peer_id, Role::Editor, false, limits, metrics.clone());
        assert!(handle.send(join.cmd).await.is_ok(), "room accepts joins");
        join.joined.await.expect("joined");
        ends.push((join.rx, join.kicked));
    }
    let (mut reader, _reader_kick) = ends.pop().expect("two members");
    let (mut writer, _writer_kick) = ends.pop().expect("two members");
    // Each side first gets the room's sync step 1.
    let _ = reader.recv().await;
    let _ = writer.recv().await;

    let last_seq = updates.len() as u64;
    let start = Instant::now();
    let read = async {
        let mut relayed = 0;
        while relayed < updates.len() {
            match reader.recv().await {
                Some(Out::Update(_)) => relayed += 1,
                Some(_) => {}
                None => break,
            }
        }
        relayed
    };
    let acks = async {
        let mut acked = 0;
        while acked < last_seq {
            match writer.recv().await {
                Some(Out::Ack(seq)) => acked = acked.max(seq),
                Some(_) => {}
                None => break,
            }
        }
        acked
    };
    let send = async {
        for (i, update) in updates.iter().enumerate() {
            let cmd = RoomCmd::Update(Incoming {
                peer_id: 1,
                seq: Some(i as u64 + 1),
                update: update.clone(),
                arrived: Instant::now(),
            });
            if handle.send(cmd).await.is_err() {
                break;
            }
        }
    };
    let ((), relayed, acked) = tokio::join!(send, read, acks);
    let elapsed = start.elapsed();
    drop(handle);
    RelayRun {
        elapsed,
        relayed,
        acked,
    }
}
