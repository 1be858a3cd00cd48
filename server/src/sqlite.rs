//! The durable store: every room in one SQLite database under the data directory, written by
//! one dedicated thread with group commit, and read through short-lived read connections.
//!
//! ```text
//!   room tasks ──append / compact──> [queue] ──> writer thread: wait ≤ window after the first;
//!                                                    BEGIN; INSERT ×n (seq = head + 1 each);
//!                                                    snapshot CAS; COMMIT ──> resolve them all
//! ```
//!
//! Invariants:
//! - Only the writer thread writes while a server runs, so there is never write contention
//!   inside one process; it numbers each room's appends (its `Seq`) as it inserts them.
//! - An append future resolves `Ok(seq)` only after the transaction holding its update has
//!   committed with `synchronous=FULL` (the WAL is fsynced at every commit).
//! - A room's stored document is `snapshot.state` followed by the log rows with
//!   `seq > snapshot.covers`; a compaction replaces a prefix of the log by a snapshot in one
//!   transaction, so a crash at any moment leaves either the old or the new form, never a gap.
//!   Its head (the last seq) is `max(max(log.seq), snapshot.covers)`: seqs are never reused.
//! - What to compact and when is decided above the store (`crate::compaction`); the writer
//!   only does the compare-and-swap.

use crate::metrics::StoreMetrics;
use crate::store::{
    AdminError, Appending, BoxFuture, RoomAdmin, RoomInfo, Seq, Store, StoreError, Stored,
};
use duet_protocol::RoomName;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "duet.sqlite3";

/// How long a connection waits for another one's lock (an admin command, a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL DEFAULT (unixepoch())
);
-- Updates in the order they were integrated, per room. `seq` increases per room.
CREATE TABLE IF NOT EXISTS log (
    room INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq  INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
-- The merged form of every log row of `room` with seq <= covers.
CREATE TABLE IF NOT EXISTS snapshot (
    room   INTEGER PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
    state  BLOB NOT NULL,
    covers INTEGER NOT NULL
);
";

/// Errors of opening the database.
#[derive(Debug, thiserror::Error)]
pub enum SqliteStoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} is corrupt or not a duet database ({source}); move it away to start empty, or restore a backup"
    )]
    Corrupt {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot start the storage thread {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Tunables of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most updates committed in one transaction. 1 disables group commit (for benchmarks).
    pub max_batch: usize,
    /// How long a batch stays open after its first update before it is committed (sooner if
    /// it fills up): bounds commits, and so fsyncs, to about one per window however many
    /// people type, for at most this much more acknowledgement latency. Zero commits what
    /// queued during the previous commit at once (ADR 008).
    pub commit_window: Duration,
    /// `PRAGMA max_page_count` for the writer, to simulate a full disk in tests.
    pub max_page_count: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            commit_window: DEFAULT_COMMIT_WINDOW,
            max_page_count: None,
        }
    }
}

/// The default [`SqliteOptions::commit_window`] (ADR 008).
pub const DEFAULT_COMMIT_WINDOW: Duration = Duration::from_millis(10);

/// Rooms stored in SQLite.
///
/// **Durability guarantee:** once the server has acknowledged an edit, it is in the database
/// and fsynced, so no crash of the server or the machine (process kill, power loss) loses it.
///
/// How: WAL journal with `synchronous=FULL`, so every commit fsyncs the WAL before an
/// acknowledgement goes out; its cost is spread over a batch by group commit: a batch stays
/// open [`SqliteOptions::commit_window`] after its first update (or until
/// [`SqliteOptions::max_batch`] are queued), so people typing at a few characters a second
/// share one fsync per window instead of paying one each (ADR 008). Nothing is acknowledged
/// before its batch's COMMIT returned.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<Job>,
    /// Wakes the writer early when a batch is full.
    queued: Arc<Queued>,
    // A std Mutex: held only to take or return a connection, never across an `.await`.
    readers: Arc<Mutex<Vec<Connection>>>,
    metrics: Arc<StoreMetrics>,
}

enum Job {
    Append {
        room: String,
        update: Vec<u8>,
        done: oneshot::Sender<Result<Seq, StoreError>>,
        /// When the room handed it over: a batch is committed one window after its first.
        arrived: Instant,
    },
    /// The compare-and-swap of a snapshot (`Store::compact`).
    Compact {
        room: String,
        state: Vec<u8>,
        covers: Seq,
        done: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// What the writer did with one job, sent once its transaction committed.
enum Outcome {
    Appended(Seq),
    Compacted(bool),
}

/// Appends sent to the writer and not yet taken, so that a full batch can wake the writer
/// before its window closes.
struct Queued {
    appends: AtomicUsize,
    /// Set once the writer thread runs.
    writer: std::sync::OnceLock<std::thread::Thread>,
    max_batch: usize,
    /// Batches the writer has started gathering (tests wait on it instead of sleeping).
    #[cfg(test)]
    gathering: AtomicUsize,
}

impl Queued {
    /// Appends are counted before they are sent, so the writer never takes one that was not
    /// counted yet.
    fn wake_if_full(&self, queued: usize) {
        if queued >= self.max_batch
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    /// The writer is done with `n` appends (committed or failed). Counting them until then,
    /// not until the writer takes them from the channel, is what makes the count cover the
    /// batch being gathered as well as the queue: a batch half gathered and half queued is
    /// still a full batch, and the append that completes it wakes the writer.
    fn finished(&self, n: usize) {
        self.appends.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Opens a connection with the settings every duet connection uses.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, SqliteStoreError> {
    let conn =
        Connection::open_with_flags(path, flags).map_err(|source| SqliteStoreError::Open {
            path: path.to_owned(),
            source,
        })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Opens (creating if needed) the database in `dir` and makes sure the schema exists.
pub(crate) fn open_db(dir: &Path) -> Result<Connection, SqliteStoreError> {
    std::fs::create_dir_all(dir).map_err(|source| SqliteStoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let conn = connect(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let setup = || -> rusqlite::Result<()> {
        // The journal mode is stored in the file: WAL lets readers (loads, admin exports) run
        // beside the writer. FULL: every commit fsyncs the WAL, so an acknowledged update
        // survives power loss too; group commit makes that affordable.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(())
    };
    setup().map_err(|source| {
        if is_corrupt(&source) {
            SqliteStoreError::Corrupt {
                path: path.clone(),
                source,
            }
        } else {
            SqliteStoreError::Open {
                path: path.clone(),
                source,
            }
        }
    })?;
    Ok(conn)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens the store in `dir` (created if missing) and starts its writer.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<Self, SqliteStoreError> {
        let writer_conn = open_db(dir)?;
        if let Some(pages) = options.max_page_count {
            writer_conn.pragma_update(None, "max_page_count", pages as i64)?;
        }
        let path = dir.join(DB_FILE);
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(StoreMetrics::default());
        let queued = Arc::new(Queued {
            appends: AtomicUsize::new(0),
            writer: std::sync::OnceLock::new(),
            max_batch: options.max_batch.max(1),
            #[cfg(test)]
            gathering: AtomicUsize::new(0),
        });
        let writer = Writer {
            queued: queued.clone(),
            metrics: metrics.clone(),
            conn: writer_conn,
            rooms: HashMap::new(),
            options,
        };
        let thread = std::thread::Builder::new()
            .name("duet-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| SqliteStoreError::Thread {
                name: "duet-writer",
                source,
            })?;
        let _ = queued.writer.set(thread.thread().clone());
        Ok(Self {
            path,
            writer: tx,
            queued,
            readers: Arc::new(Mutex::new(Vec::new())),
            metrics,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions the writer has committed so far (each is one group of appends).
    pub fn commits(&self) -> u64 {
        self.metrics.commits.get()
    }

    /// Snapshots the writer has stored so far.
    pub fn compactions(&self) -> u64 {
        self.metrics.compactions.get()
    }

    /// Runs `f` on a pooled read connection, off the async threads.
    fn with_reader<T: Send + 'static>(
        &self,
        room: &RoomName,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let room = room.to_string();
        let path = self.path.clone();
        let readers = self.readers.clone();
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || -> Result<T, StoreError> {
                let pooled = readers.lock().ok().and_then(|mut r| r.pop());
                let mut conn = match pooled {
                    Some(conn) => conn,
                    None => connect(&path, read_flags()).map_err(unavailable)?,
                };
                let result = f(&mut conn).map_err(|e| store_error(&room, e));
                if let Ok(mut pool) = readers.lock()
                    && pool.len() < 8
                {
                    pool.push(conn);
                }
                result
            });
            task.await.map_err(unavailable).and_then(|r| r)
        })
    }

    fn send<T>(
        &self,
        job: Job,
        wait: oneshot::Receiver<Result<T, StoreError>>,
    ) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
    {
        if self.writer.send(job).is_err() {
            return Box::pin(async { Err(unavailable("the storage writer has stopped")) });
        }
        Box::pin(async move {
            wait.await
                .unwrap_or_else(|_| Err(unavailable("the storage writer has stopped")))
        })
    }
}

fn read_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

fn store_error(room: &str, e: rusqlite::Error) -> StoreError {
    if is_corrupt(&e) {
        StoreError::Corrupt {
            room: room.to_owned(),
            reason: e.to_string(),
        }
    } else {
        unavailable(e)
    }
}

/// A room's id, if it was ever stored.
fn room_id(txn: &Connection, room: &str) -> rusqlite::Result<Option<i64>> {
    txn.prepare_cached("SELECT id FROM rooms WHERE name = ?1")?
        .query_row([room], |r| r.get(0))
        .optional()
}

/// The room's snapshot covers (0: none) and head.
fn covers_and_head(txn: &Connection, id: i64) -> rusqlite::Result<(i64, i64)> {
    let covers: i64 = txn
        .prepare_cached("SELECT covers FROM snapshot WHERE room = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let last: i64 = txn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM log WHERE room = ?1")?
        .query_row([id], |r| r.get(0))?;
    Ok((covers, last.max(covers)))
}

/// Reads what is stored for a room after `after` in one read transaction, so a compaction
/// committing meanwhile cannot make us miss rows. `None`: the room was never stored.
pub(crate) fn read_room(
    conn: &mut Connection,
    room: &str,
    after: Seq,
) -> rusqlite::Result<Option<Stored>> {
    let txn = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let Some(id) = room_id(&txn, room)? else {
        return Ok(None);
    };
    let (covers, head) = covers_and_head(&txn, id)?;
    let after = i64::try_from(after.0).unwrap_or(i64::MAX);
    let mut updates = Vec::new();
    let from = if after < covers {
        let state: Vec<u8> = txn
            .prepare_cached("SELECT state FROM snapshot WHERE room = ?1")?
            .query_row([id], |r| r.get(0))?;
        updates.push(state);
        covers
    } else {
        after
    };
    {
        let mut stmt =
            txn.prepare_cached("SELECT data FROM log WHERE room = ?1 AND seq > ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![id, from], |r| r.get::<_, Vec<u8>>(0))?;
        for row in rows {
            updates.push(row?);
        }
    }
    txn.commit()?;
    Ok(Some(Stored {
        updates,
        head: Seq(head as u64),
    }))
}

impl Store for SqliteStore {
    fn metrics(&self) -> Option<Arc<StoreMetrics>> {
        Some(self.metrics.clone())
    }

    fn read(&self, room: &RoomName, after: Seq) -> BoxFuture<'_, Result<Stored, StoreError>> {
        let name = room.to_string();
        let read = self.with_reader(room, move |conn| {
            Ok(read_room(conn, &name, after)?.unwrap_or_default())
        });
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = read.await;
            if result.is_err() {
                metrics.load_errors.inc();
            }
            result
        })
    }

    fn append(&self, room: &RoomName, update: Vec<u8>) -> Appending {
        let (done, wait) = oneshot::channel();
        // Sent now, not when the future is first polled, so a room's updates reach the log in
        // the order the room integrated them.
        self.queued.appends.fetch_add(1, Ordering::Relaxed);
        let sent = self.writer.send(Job::Append {
            room: room.as_str().to_owned(),
            update,
            done,
            arrived: Instant::now(),
        });
        let queued = self.queued.appends.load(Ordering::Relaxed);
        if sent.is_err() {
            self.queued.appends.fetch_sub(1, Ordering::Relaxed);
            return Appending::done(Err(unavailable("the storage writer has stopped")));
        }
        self.queued.wake_if_full(queued);
        Appending::later(async move {
            wait.await
                .unwrap_or_else(|_| Err(unavailable("the storage writer has stopped")))
        })
    }

    fn compact(
        &self,
        room: &RoomName,
        state: Vec<u8>,
        covers: Seq,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let (done, wait) = oneshot::channel();
        let job = Job::Compact {
            room: room.as_str().to_owned(),
            state,
            covers,
            done,
        };
        self.send(job, wait)
    }
}

/// Debug builds only: a commit held forever, so the end-to-end tests can kill the server
/// between relay and storage. Relay never waits for storage, so a member may hold an edit the
/// store never got; the test shows that member's sync gives it back after a restart.
///
/// With `DUET_FAILPOINT_HOLD_COMMIT=1` in the environment, the writer thread stops before it
/// commits a batch holding an update whose bytes contain `duet-failpoint:hold` (an update
/// inserting that text, say), and never resumes: the room relays the update, nothing of the
/// batch is stored or acknowledged. Release builds do not contain it.
#[cfg(debug_assertions)]
mod hold {
    use super::Job;
    use std::sync::OnceLock;

    pub const ENV: &str = "DUET_FAILPOINT_HOLD_COMMIT";
    pub const MARKER: &[u8] = b"duet-failpoint:hold";

    fn armed() -> bool {
        static ARMED: OnceLock<bool> = OnceLock::new();
        *ARMED.get_or_init(|| std::env::var_os(ENV).is_some_and(|v| v == "1"))
    }

    pub(super) fn before_commit(batch: &[Job]) {
        if !armed() {
            return;
        }
        let marked = batch.iter().any(|job| match job {
            Job::Append { update, .. } => update.windows(MARKER.len()).any(|w| w == MARKER),
            _ => false,
        });
        if marked {
            tracing::warn!("failpoint {ENV}: holding this commit forever");
            loop {
                std::thread::park();
            }
        }
    }
}

/// What the writer remembers about a room it wrote to.
struct RoomLog {
    id: i64,
    /// The seq the next append takes.
    next_seq: i64,
}

/// The writer remembers at most this many rooms; past it, they are forgotten (and read again
/// from the database on their next append).
const MAX_REMEMBERED_ROOMS: usize = 10_000;

struct Writer {
    queued: Arc<Queued>,
    metrics: Arc<StoreMetrics>,
    conn: Connection,
    rooms: HashMap<String, RoomLog>,
    options: SqliteOptions,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let max = self.options.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        while let Some(first) = rx.blocking_recv() {
            #[cfg(test)]
            self.queued.gathering.fetch_add(1, Ordering::Relaxed);
            // The window opens with the batch's first update; a batch holding only a
            // compaction commits at once.
            let closes = match &first {
                Job::Append { arrived, .. } => *arrived + self.options.commit_window,
                Job::Compact { .. } => Instant::now(),
            };
            batch.push(first);
            loop {
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let now = Instant::now();
                if batch.len() >= max || now >= closes {
                    break;
                }
                // Woken early by the append that fills the batch (`Queued::wake_if_full`); a stray
                // wake-up only makes us look at the queue once more.
                std::thread::park_timeout(closes - now);
            }
            // Debug builds only: a batch carrying the marker never commits (see `hold`).
            #[cfg(debug_assertions)]
            hold::before_commit(&batch);
            let began = std::time::Instant::now();
            let appends = batch
                .iter()
                .filter(|j| matches!(j, Job::Append { .. }))
                .count();
            let committed = self.commit(&batch);
            self.queued.finished(appends);
            match committed {
                Ok(outcomes) => {
                    self.metrics.commit_duration.observe(began.elapsed());
                    self.metrics.commits.inc();
                    self.metrics.updates_per_commit.observe(appends as u64);
                    for (job, outcome) in batch.drain(..).zip(outcomes) {
                        match (job, outcome) {
                            (Job::Append { done, .. }, Outcome::Appended(seq)) => {
                                let _ = done.send(Ok(seq));
                            }
                            (Job::Compact { done, .. }, Outcome::Compacted(stored)) => {
                                if stored {
                                    self.metrics.compactions.inc();
                                }
                                let _ = done.send(Ok(stored));
                            }
                            // `write` answers each job with its own kind of outcome.
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    self.metrics.commit_errors.inc();
                    tracing::error!(path = ?self.conn.path(), error = %e, jobs = batch.len(), "storing a batch failed; the rooms concerned refuse writes");
                    // The transaction rolled back: what we remembered may be ahead of the file.
                    self.rooms.clear();
                    let err = unavailable(format!("database write failed: {e}"));
                    for job in batch.drain(..) {
                        match job {
                            Job::Append { done, .. } => {
                                let _ = done.send(Err(err.clone()));
                            }
                            Job::Compact { done, .. } => {
                                self.metrics.compaction_errors.inc();
                                let _ = done.send(Err(err.clone()));
                            }
                        }
                    }
                }
            }
            if self.rooms.len() > MAX_REMEMBERED_ROOMS {
                self.rooms.clear();
            }
        }
        tracing::debug!("storage writer stopped");
    }

    /// Writes one batch in one transaction.
    ///
    /// BEGIN and COMMIT are cached statements like the INSERT: `Connection::transaction`
    /// prepares both again for every commit (1.5% of the server's CPU samples at human
    /// cadence, ADR 008).
    fn commit(&mut self, batch: &[Job]) -> rusqlite::Result<Vec<Outcome>> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let written = self.write(batch).and_then(|outcomes| {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(outcomes)
        });
        if written.is_err() && !self.conn.is_autocommit() {
            // Nothing of the batch is kept (and nothing of it acknowledged).
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rolling back a failed batch failed");
            }
        }
        written
    }

    /// The statements of one batch, inside the transaction `commit` opened.
    fn write(&mut self, batch: &[Job]) -> rusqlite::Result<Vec<Outcome>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            let outcome = match job {
                Job::Append { room, update, .. } => {
                    let log = self.room(room)?;
                    let (id, seq) = (log.id, log.next_seq);
                    log.next_seq += 1;
                    self.conn
                        .prepare_cached("INSERT INTO log (room, seq, data) VALUES (?1, ?2, ?3)")?
                        .execute(params![id, seq, update])?;
                    Outcome::Appended(Seq(seq as u64))
                }
                Job::Compact {
                    room,
                    state,
                    covers,
                    ..
                } => Outcome::Compacted(self.swap_snapshot(room, state, *covers)?),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The room's row, created on its first append.
    fn room(&mut self, room: &str) -> rusqlite::Result<&mut RoomLog> {
        if !self.rooms.contains_key(room) {
            let txn = &self.conn;
            txn.prepare_cached("INSERT OR IGNORE INTO rooms (name) VALUES (?1)")?
                .execute([room])?;
            let id = room_id(txn, room)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let (_, head) = covers_and_head(txn, id)?;
            self.rooms.insert(
                room.to_owned(),
                RoomLog {
                    id,
                    next_seq: head + 1,
                },
            );
        }
        self.rooms
            .get_mut(room)
            .ok_or(rusqlite::Error::QueryReturnedNoRows)
    }

    /// Keeps `state` as the snapshot covering `covers` if that is past the stored snapshot and
    /// not past the head, and drops the log rows it covers.
    fn swap_snapshot(&mut self, room: &str, state: &[u8], covers: Seq) -> rusqlite::Result<bool> {
        let txn = &self.conn;
        let Some(id) = room_id(txn, room)? else {
            return Ok(false);
        };
        let (stored_covers, head) = covers_and_head(txn, id)?;
        let covers = i64::try_from(covers.0).unwrap_or(i64::MAX);
        if covers <= stored_covers || covers > head {
            return Ok(false);
        }
        txn.execute(
            "INSERT INTO snapshot (room, state, covers) VALUES (?1, ?2, ?3)
             ON CONFLICT (room) DO UPDATE SET state = excluded.state, covers = excluded.covers",
            params![id, state, covers],
        )?;
        txn.execute(
            "DELETE FROM log WHERE room = ?1 AND seq <= ?2",
            params![id, covers],
        )?;
        Ok(true)
    }
}

/// The administration of a data directory's rooms, on its own connection (no writer thread):
/// reads are safe beside a running server (WAL gives them a consistent snapshot); the binary
/// takes the data directory's lock ([`crate::data_dir`]) before writes.
pub struct SqliteAdmin {
    // A std Mutex: each command runs on a blocking thread and holds it to the end; nothing
    // awaits while holding it.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteAdmin {
    /// Opens the database in `dir` (creating an empty one if there is none).
    pub fn open(dir: &Path) -> Result<Self, SqliteStoreError> {
        Ok(Self {
            conn: Arc::new(Mutex::new(open_db(dir)?)),
        })
    }

    fn run<T: Send + 'static>(
        &self,
        room: &str,
        f: impl FnOnce(&mut Connection) -> Result<T, AdminError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, AdminError>> {
        let conn = self.conn.clone();
        let room = room.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut conn)
            })
            .await
            .map_err(|e| AdminError::Store(unavailable(format!("room {room}: {e}"))))?
        })
    }
}

fn admin_error(room: &str) -> impl Fn(rusqlite::Error) -> AdminError + '_ {
    move |e| AdminError::Store(store_error(room, e))
}

impl RoomAdmin for SqliteAdmin {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RoomInfo>, AdminError>> {
        self.run("*", |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT r.name,
                    (SELECT count(*) FROM log l WHERE l.room = r.id),
                    (SELECT coalesce(sum(length(l.data)), 0) FROM log l WHERE l.room = r.id),
                    (SELECT coalesce(length(s.state), 0) FROM snapshot s WHERE s.room = r.id),
                    max((SELECT coalesce(max(l.seq), 0) FROM log l WHERE l.room = r.id),
                        (SELECT coalesce(max(s.covers), 0) FROM snapshot s WHERE s.room = r.id))
                 FROM rooms r ORDER BY r.name",
                )
                .map_err(admin_error("*"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(RoomInfo {
                        name: r.get(0)?,
                        log_updates: r.get::<_, i64>(1)? as u64,
                        log_bytes: r.get::<_, i64>(2)? as u64,
                        snapshot_bytes: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                        head: Seq(r.get::<_, i64>(4)? as u64),
                    })
                })
                .map_err(admin_error("*"))?;
            rows.collect::<Result<_, _>>().map_err(admin_error("*"))
        })
    }

    fn export(&self, room: &RoomName) -> BoxFuture<'_, Result<Stored, AdminError>> {
        let name = room.to_string();
        self.run(room.as_str(), move |conn| {
            read_room(conn, &name, Seq(0))
                .map_err(admin_error(&name))?
                .ok_or_else(|| AdminError::NoSuchRoom(name.clone()))
        })
    }

    fn import(&self, room: &RoomName, state: Vec<u8>) -> BoxFuture<'_, Result<(), AdminError>> {
        let name = room.to_string();
        self.run(room.as_str(), move |conn| {
            let e = admin_error(&name);
            let txn = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&e)?;
            let inserted = txn
                .execute("INSERT OR IGNORE INTO rooms (name) VALUES (?1)", [&name])
                .map_err(&e)?;
            if inserted == 0 {
                return Err(AdminError::RoomExists(name.clone()));
            }
            let id = txn.last_insert_rowid();
            txn.execute(
                "INSERT INTO log (room, seq, data) VALUES (?1, 1, ?2)",
                params![id, state],
            )
            .map_err(&e)?;
            txn.commit().map_err(&e)
        })
    }

    fn delete(&self, room: &RoomName) -> BoxFuture<'_, Result<(), AdminError>> {
        let name = room.to_string();
        self.run(room.as_str(), move |conn| {
            let e = admin_error(&name);
            let txn = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&e)?;
            let id = room_id(&txn, &name)
                .map_err(&e)?
                .ok_or_else(|| AdminError::NoSuchRoom(name.clone()))?;
            txn.execute("DELETE FROM log WHERE room = ?1", [id])
                .map_err(&e)?;
            txn.execute("DELETE FROM snapshot WHERE room = ?1", [id])
                .map_err(&e)?;
            txn.execute("DELETE FROM rooms WHERE id = ?1", [id])
                .map_err(&e)?;
            txn.commit().map_err(&e)
        })
    }
}

#[cfg(test)]
mod tests;
