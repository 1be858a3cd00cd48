//! Group commit on PostgreSQL: one task per node gathers appends for a bounded commit window
//! (ADR 008, as the SQLite writer does) and commits them, whatever their rooms, in one
//! transaction; every append of the batch resolves with its seq only after COMMIT returned.
//!
//! ```text
//!   append(room, update) ──> [queue] ──> writer: wait ≤ window after the first; then
//!      BEGIN
//!      INSERT rooms the batch names that may not exist yet   (sorted by name)
//!      SELECT id, head ... ORDER BY id FOR NO KEY UPDATE      (every node locks in id order)
//!      INSERT log rows with seq = head + 1, head + 2, ...     (one statement, arrays)
//!      UPDATE rooms SET head = ...
//!      COMMIT ──> resolve each append with its seq
//! ```
//!
//! Invariants:
//! - One batch in flight per node, so a room's appends from this node reach the log in call
//!   order; another node's batch on the same room waits for the row lock, reads the new head
//!   after it, and so commits after it with higher seqs: seq order is commit order.
//! - Room rows are locked in id order and new rooms inserted in name order, so two nodes'
//!   batches never wait on each other in a cycle. Should PostgreSQL still report a deadlock or
//!   a serialization failure, the transaction rolled back whole and is retried.
//! - A batch that fails, or whose COMMIT's outcome is unknown (connection lost, timeout),
//!   resolves every append with an error: never a success that was not committed.

use super::{PgOptions, describe};
use crate::cluster::Seq;
use crate::metrics::StoreMetrics;
use crate::store::StoreError;
use deadpool_postgres::{Object, Pool};
use duet_protocol::RoomName;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

/// One append waiting for its batch.
pub(super) struct Job {
    pub room: RoomName,
    pub update: Vec<u8>,
    /// When the room handed it over: a batch is committed one window after its first.
    pub arrived: Instant,
    pub done: oneshot::Sender<Result<Seq, StoreError>>,
}

/// How often a batch is tried when PostgreSQL rolls it back for a deadlock or a serialization
/// failure (both mean nothing of it was kept).
const ATTEMPTS: usize = 3;

/// The writer remembers at most this many rooms it saw exist; past it, it forgets them all
/// (the next batch only inserts them again, which costs a statement, not correctness).
const MAX_KNOWN_ROOMS: usize = 10_000;

pub(super) struct Writer {
    pub pool: Pool,
    pub options: PgOptions,
    pub metrics: Arc<StoreMetrics>,
    /// Rooms whose row existed at a commit; a batch naming only these skips the INSERT.
    pub known: HashSet<RoomName>,
}

impl Writer {
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let max = self.options.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        while let Some(first) = rx.recv().await {
            let closes = first.arrived + self.options.commit_window;
            batch.push(first);
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(job) => {
                        batch.push(job);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                match tokio::time::timeout_at(closes.into(), rx.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
            self.commit(&mut batch).await;
        }
        tracing::debug!("postgresql writer stopped");
    }

    /// Commits one batch and resolves every append in it.
    async fn commit(&mut self, batch: &mut Vec<Job>) {
        #[cfg(debug_assertions)]
        hold::before_commit(batch).await;
        let began = Instant::now();
        let mut attempt = 1;
        let result = loop {
            match self.attempt(batch).await {
                Ok(seqs) => break Ok(seqs),
                Err(Failure::Retry(e)) if attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "postgresql rolled a batch back; trying it again");
                    attempt += 1;
                }
                Err(Failure::Retry(e)) => break Err(StoreError::Unavailable(e)),
                Err(Failure::Fatal(e)) => break Err(e),
            }
        };
        match result {
            Ok(seqs) => {
                self.metrics.commit_duration.observe(began.elapsed());
                self.metrics.commits.inc();
                self.metrics.updates_per_commit.observe(batch.len() as u64);
                if self.known.len() > MAX_KNOWN_ROOMS {
                    self.known.clear();
                }
                for (job, seq) in batch.drain(..).zip(seqs) {
                    if !self.known.contains(&job.room) {
                        self.known.insert(job.room.clone());
                    }
                    let _ = job.done.send(Ok(seq));
                }
            }
            Err(e) => {
                self.metrics.commit_errors.inc();
                self.known.clear();
                tracing::error!(error = %e, updates = batch.len(), "storing a batch of updates in postgresql failed; the rooms concerned refuse writes");
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(e.clone()));
                }
            }
        }
    }

    /// One try at committing `batch`, within the store's timeout.
    async fn attempt(&mut self, batch: &[Job]) -> Result<Vec<Seq>, Failure> {
        let limit = self.options.timeout;
        let mut client = super::pooled(&self.pool, limit)
            .await
            .map_err(Failure::Fatal)?;
        let insert_rooms = batch.iter().any(|job| !self.known.contains(&job.room));
        match tokio::time::timeout(limit, write(&mut client, batch, insert_rooms)).await {
            Ok(Ok(seqs)) => Ok(seqs),
            Ok(Err(WriteError::Pg(e))) if retryable(&e) => {
                Err(Failure::Retry(format!("postgresql: {}", describe(&e))))
            }
            Ok(Err(WriteError::Pg(e))) => Err(Failure::Fatal(StoreError::Unavailable(format!(
                "postgresql: {}",
                describe(&e)
            )))),
            Ok(Err(WriteError::NoRoom(room))) => Err(Failure::Fatal(StoreError::Unavailable(
                format!("room {room} has no row in postgresql though it was just inserted"),
            ))),
            Err(_) => {
                // The connection may be anywhere in the transaction, COMMIT included: it
                // never goes back to the pool, and nothing of the batch is acknowledged.
                drop(Object::take(client));
                Err(Failure::Fatal(StoreError::Unavailable(format!(
                    "postgresql did not commit within {limit:?}; whether it did is unknown, so nothing is acknowledged"
                ))))
            }
        }
    }
}

/// Why an attempt failed.
enum Failure {
    /// Rolled back whole for a deadlock or a serialization failure: try again.
    Retry(String),
    Fatal(StoreError),
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Rooms a batch names that may not exist yet, inserted in name order.
const INSERT_ROOMS: &str = "INSERT INTO duet_rooms (name)
     SELECT n FROM unnest($1::text[]) AS n ORDER BY n COLLATE \"C\"
     ON CONFLICT (name) DO NOTHING";
/// The batch's rooms, locked in id order.
const LOCK_ROOMS: &str = "SELECT id, name, head FROM duet_rooms
     WHERE name = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE";
const INSERT_LOG: &str = "INSERT INTO duet_log (room, seq, data)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])";
const UPDATE_HEADS: &str = "UPDATE duet_rooms AS r SET head = u.head
     FROM unnest($1::bigint[], $2::bigint[]) AS u(id, head) WHERE r.id = u.id";

enum WriteError {
    Pg(tokio_postgres::Error),
    /// A room of the batch had no row after the INSERT (only a bug could do that).
    NoRoom(String),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

/// The statements of one batch, in one transaction; returns each append's seq.
async fn write(
    client: &mut Object,
    batch: &[Job],
    insert_rooms: bool,
) -> Result<Vec<Seq>, WriteError> {
    let txn = client.transaction().await?;
    let mut names: Vec<&str> = batch.iter().map(|job| job.room.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if insert_rooms {
        let insert = txn.prepare_cached(INSERT_ROOMS).await?;
        txn.execute(&insert, &[&names]).await?;
    }
    let lock = txn.prepare_cached(LOCK_ROOMS).await?;
    let mut rows = txn.query(&lock, &[&names]).await?;
    if rows.len() < names.len() && !insert_rooms {
        // A room this writer knew was deleted meanwhile (`rooms delete`): it starts anew.
        let insert = txn.prepare_cached(INSERT_ROOMS).await?;
        txn.execute(&insert, &[&names]).await?;
        rows = txn.query(&lock, &[&names]).await?;
    }
    // room name -> (id, head so far)
    let mut heads: HashMap<String, (i64, i64)> = rows
        .iter()
        .map(|row| (row.get::<_, String>(1), (row.get(0), row.get(2))))
        .collect();
    let mut ids = Vec::with_capacity(batch.len());
    let mut seqs = Vec::with_capacity(batch.len());
    let mut data: Vec<&[u8]> = Vec::with_capacity(batch.len());
    for job in batch {
        // Every name was inserted or found above, and the rows are locked. (Returning drops
        // the transaction, which rolls it back.)
        let Some((id, head)) = heads.get_mut(job.room.as_str()) else {
            return Err(WriteError::NoRoom(job.room.as_str().to_owned()));
        };
        *head += 1;
        ids.push(*id);
        seqs.push(*head);
        data.push(&job.update);
    }
    let insert = txn.prepare_cached(INSERT_LOG).await?;
    txn.execute(&insert, &[&ids, &seqs, &data]).await?;
    let (room_ids, room_heads): (Vec<i64>, Vec<i64>) = heads.into_values().unzip();
    let update = txn.prepare_cached(UPDATE_HEADS).await?;
    txn.execute(&update, &[&room_ids, &room_heads]).await?;
    txn.commit().await?;
    // Heads start at 0 (a CHECK keeps them there or above) and only grow: every seq is > 0.
    Ok(seqs.into_iter().map(|s| Seq(s.unsigned_abs())).collect())
}

/// Debug builds only: the SQLite writer's failpoint on PostgreSQL. With
/// `DUET_FAILPOINT_HOLD_COMMIT=1` in the environment, the writer stops before it commits a
/// batch holding an update whose bytes contain `duet-failpoint:hold`, and never resumes: the
/// room relays the update (to its members and on the bus), nothing of the batch is stored or
/// acknowledged, so a test can kill the node between relay and storage. With
/// `DUET_FAILPOINT_SLOW_COMMIT_MS=N`, every commit waits N ms first: what the node publishes
/// reaches the bus well before the log (a slow disk under load).
#[cfg(debug_assertions)]
mod hold {
    use super::Job;
    use std::sync::OnceLock;
    use std::time::Duration;

    pub const ENV: &str = "DUET_FAILPOINT_HOLD_COMMIT";
    pub const SLOW_ENV: &str = "DUET_FAILPOINT_SLOW_COMMIT_MS";
    pub const MARKER: &[u8] = b"duet-failpoint:hold";

    fn armed() -> bool {
        static ARMED: OnceLock<bool> = OnceLock::new();
        *ARMED.get_or_init(|| std::env::var_os(ENV).is_some_and(|v| v == "1"))
    }

    fn slow() -> Option<Duration> {
        static SLOW: OnceLock<Option<Duration>> = OnceLock::new();
        *SLOW.get_or_init(|| {
            let ms: u64 = std::env::var(SLOW_ENV).ok()?.parse().ok()?;
            tracing::warn!("failpoint {SLOW_ENV}: every commit waits {ms} ms");
            Some(Duration::from_millis(ms))
        })
    }

    pub(super) async fn before_commit(batch: &[Job]) {
        if let Some(slow) = slow() {
            tokio::time::sleep(slow).await;
        }
        if armed()
            && batch
                .iter()
                .any(|job| job.update.windows(MARKER.len()).any(|w| w == MARKER))
        {
            tracing::warn!("failpoint {ENV}: holding this commit forever");
            std::future::pending::<()>().await;
        }
    }
}
