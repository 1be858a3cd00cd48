//! The durable store: every room in one SQLite database under the data directory, written by
//! one dedicated thread with group commit, read through short-lived read connections, and
//! compacted in the background.
//!
//! ```text
//!   room tasks ──append──> [queue] ──> writer thread: wait ≤ window after the first;
//!                                          BEGIN; INSERT ×n; COMMIT ──> resolve n acks
//!                                          │  ▲
//!                      log too long ───────┘  └── Compacted{snapshot, covers} (one transaction:
//!                              ▼                   upsert snapshot, delete merged log rows)
//!                      compactor thread: read snapshot + log, merge in a Doc
//! ```
//!
//! Invariants:
//! - Only the writer thread writes while a server runs; the compactor only reads and hands its
//!   result back to the writer, so there is never write contention inside one process.
//! - An append future resolves `Ok` only after the transaction holding its update has
//!   committed with `synchronous=FULL` (the WAL is fsynced at every commit).
//! - A room's stored document is `snapshot.state` followed by the log rows with
//!   `seq > snapshot.covers`; compaction replaces a prefix of the log by a snapshot in one
//!   transaction, so a crash at any moment leaves either the old or the new form, never a gap.

use crate::doc::{ROOT_TEXT, apply_update, new_doc};
use crate::metrics::StoreMetrics;
use crate::store::{Appending, BoxFuture, Store, StoreError};
use duet_protocol::RoomName;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use yrs::{GetString, ReadTxn, StateVector, Transact};

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

/// Errors of opening the database and of the admin operations.
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
    #[error("room {0} does not exist")]
    NoSuchRoom(String),
    #[error("room {0} already exists; delete it first")]
    RoomExists(String),
    #[error("stored document of room {room} is damaged: {reason}")]
    Damaged { room: String, reason: String },
    #[error("not a yjs update: {0}")]
    BadUpdate(String),
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
    /// Compact a room once its log holds this many rows past its snapshot...
    pub compact_after_rows: u64,
    /// ...or this many bytes; in both cases only once the log is also at least half the
    /// snapshot's size (or [`MAX_LOG_ROWS_FACTOR`] times the rows), so the cost of merging
    /// stays proportional to what was appended however large the document grows.
    pub compact_after_bytes: u64,
    /// `PRAGMA max_page_count` for the writer, to simulate a full disk in tests.
    pub max_page_count: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            commit_window: DEFAULT_COMMIT_WINDOW,
            compact_after_rows: 1000,
            compact_after_bytes: 1 << 20,
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

type Done = oneshot::Sender<Result<(), StoreError>>;

enum Job {
    Append {
        room: String,
        update: Vec<u8>,
        done: Done,
        /// When the room handed it over: a batch is committed one window after its first.
        arrived: Instant,
    },
    /// The compactor's merge of `room_id`'s snapshot and log rows `..= covers`.
    Compacted {
        room_id: i64,
        state: Vec<u8>,
        covers: i64,
    },
    CompactFailed {
        room_id: i64,
    },
}

/// Appends sent to the writer and not yet taken, so that a full batch can wake the writer
/// before its window closes.
struct Queued {
    appends: AtomicUsize,
    /// Set once the writer thread runs.
    writer: std::sync::OnceLock<std::thread::Thread>,
    max_batch: usize,
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

struct CompactJob {
    room: String,
    room_id: i64,
    covers: i64,
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
    /// Opens the store in `dir` (created if missing) and starts its writer and compactor.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<Self, SqliteStoreError> {
        let writer_conn = open_db(dir)?;
        if let Some(pages) = options.max_page_count {
            writer_conn.pragma_update(None, "max_page_count", pages as i64)?;
        }
        let path = dir.join(DB_FILE);
        let compactor_conn = connect(&path, read_flags())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (compact_tx, compact_rx) = std::sync::mpsc::channel();
        let back = tx.downgrade();
        std::thread::Builder::new()
            .name("duet-compactor".into())
            .spawn(move || compactor(compactor_conn, compact_rx, back))
            .map_err(|source| SqliteStoreError::Thread {
                name: "duet-compactor",
                source,
            })?;
        let metrics = Arc::new(StoreMetrics::default());
        let queued = Arc::new(Queued {
            appends: AtomicUsize::new(0),
            writer: std::sync::OnceLock::new(),
            max_batch: options.max_batch.max(1),
        });
        let writer = Writer {
            queued: queued.clone(),
            metrics: metrics.clone(),
            conn: writer_conn,
            rooms: HashMap::new(),
            options,
            compact: compact_tx,
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

    /// Compactions the writer has scheduled so far. The writer schedules them after acking a
    /// batch, so once a later append is acknowledged, every earlier batch's are counted.
    pub fn compactions(&self) -> u64 {
        self.metrics.compactions.get()
    }
}

fn read_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Reads a room's stored updates (snapshot first, then the log after it) in one read
/// transaction, so a compaction committing meanwhile cannot make us miss rows.
pub(crate) fn read_room(
    conn: &mut Connection,
    room: &str,
) -> rusqlite::Result<Option<Vec<Vec<u8>>>> {
    let txn = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let Some(id): Option<i64> = txn
        .query_row("SELECT id FROM rooms WHERE name = ?1", [room], |r| r.get(0))
        .optional()?
    else {
        return Ok(None);
    };
    let mut updates = Vec::new();
    let snapshot: Option<(Vec<u8>, i64)> = txn
        .query_row(
            "SELECT state, covers FROM snapshot WHERE room = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let covers = match snapshot {
        Some((state, covers)) => {
            updates.push(state);
            covers
        }
        None => 0,
    };
    {
        let mut stmt =
            txn.prepare_cached("SELECT data FROM log WHERE room = ?1 AND seq > ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![id, covers], |r| r.get::<_, Vec<u8>>(0))?;
        for row in rows {
            updates.push(row?);
        }
    }
    txn.commit()?;
    Ok(Some(updates))
}

impl Store for SqliteStore {
    fn metrics(&self) -> Option<Arc<StoreMetrics>> {
        Some(self.metrics.clone())
    }

    fn load(&self, room: &RoomName) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        let room = room.as_str().to_owned();
        let path = self.path.clone();
        let readers = self.readers.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let pooled = readers.lock().ok().and_then(|mut r| r.pop());
                let mut conn = match pooled {
                    Some(conn) => conn,
                    None => connect(&path, read_flags()).map_err(unavailable)?,
                };
                let result = read_room(&mut conn, &room).map_err(|e| {
                    if is_corrupt(&e) {
                        StoreError::Corrupt {
                            room: room.clone(),
                            reason: e.to_string(),
                        }
                    } else {
                        unavailable(e)
                    }
                });
                if let Ok(mut pool) = readers.lock()
                    && pool.len() < 8
                {
                    pool.push(conn);
                }
                Ok(result?.unwrap_or_default())
            });
            let result = task.await.map_err(unavailable).and_then(|r| r);
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

/// A log this many times `compact_after_rows` is compacted whatever the snapshot's size, which
/// bounds the rows a load replays.
pub const MAX_LOG_ROWS_FACTOR: u64 = 64;

/// What the writer remembers about a room it wrote to.
struct RoomLog {
    id: i64,
    next_seq: i64,
    /// Log rows and bytes past the snapshot.
    rows: u64,
    bytes: u64,
    /// Size of the room's snapshot.
    snapshot_bytes: u64,
    compacting: bool,
    /// Compaction failed at this size; try again once the log has doubled.
    retry_at_rows: u64,
}

/// The writer remembers at most this many rooms; past it, idle entries are forgotten (they
/// are read again from the database on the next append).
const MAX_REMEMBERED_ROOMS: usize = 10_000;

struct Writer {
    queued: Arc<Queued>,
    metrics: Arc<StoreMetrics>,
    conn: Connection,
    rooms: HashMap<String, RoomLog>,
    options: SqliteOptions,
    compact: std::sync::mpsc::Sender<CompactJob>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let max = self.options.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        while let Some(first) = rx.blocking_recv() {
            // The window opens with the batch's first update; a batch holding only a
            // compaction's result commits at once.
            let closes = match &first {
                Job::Append { arrived, .. } => *arrived + self.options.commit_window,
                _ => Instant::now(),
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
                Ok(()) => {
                    self.metrics.commit_duration.observe(began.elapsed());
                    self.metrics.commits.inc();
                    self.metrics.updates_per_commit.observe(appends as u64);
                    for job in batch.drain(..) {
                        if let Job::Append { done, .. } = job {
                            let _ = done.send(Ok(()));
                        }
                    }
                    self.schedule_compactions();
                }
                Err(e) => {
                    self.metrics.commit_errors.inc();
                    tracing::error!(path = ?self.conn.path(), error = %e, updates = batch.len(), "storing a batch of updates failed; the rooms concerned refuse writes");
                    // The transaction rolled back: what we remembered may be ahead of the file.
                    self.rooms.clear();
                    let err = unavailable(format!("database write failed: {e}"));
                    for job in batch.drain(..) {
                        if let Job::Append { done, .. } = job {
                            let _ = done.send(Err(err.clone()));
                        }
                    }
                }
            }
            if self.rooms.len() > MAX_REMEMBERED_ROOMS {
                self.rooms.retain(|_, r| r.compacting);
            }
        }
        tracing::debug!("storage writer stopped");
    }

    /// Writes one batch in one transaction.
    ///
    /// BEGIN and COMMIT are cached statements like the INSERT: `Connection::transaction`
    /// prepares both again for every commit (1.5% of the server's CPU samples at human
    /// cadence, ADR 008).
    fn commit(&mut self, batch: &[Job]) -> rusqlite::Result<()> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let written = self
            .write(batch)
            .and_then(|()| self.conn.prepare_cached("COMMIT")?.execute([]).map(drop));
        if written.is_err() && !self.conn.is_autocommit() {
            // Nothing of the batch is kept (and nothing of it acknowledged).
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rolling back a failed batch failed");
            }
        }
        written
    }

    /// The statements of one batch, inside the transaction `commit` opened.
    fn write(&mut self, batch: &[Job]) -> rusqlite::Result<()> {
        let txn = &self.conn;
        for job in batch {
            match job {
                Job::Append { room, update, .. } => {
                    if !self.rooms.contains_key(room) {
                        let log = remember(txn, room)?;
                        self.rooms.insert(room.clone(), log);
                    }
                    let Some(log) = self.rooms.get_mut(room) else {
                        continue;
                    };
                    txn.prepare_cached("INSERT INTO log (room, seq, data) VALUES (?1, ?2, ?3)")?
                        .execute(params![log.id, log.next_seq, update])?;
                    log.next_seq += 1;
                    log.rows += 1;
                    log.bytes += update.len() as u64;
                }
                Job::Compacted {
                    room_id,
                    state,
                    covers,
                } => {
                    let exists: Option<i64> = txn
                        .query_row("SELECT id FROM rooms WHERE id = ?1", [room_id], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    if exists.is_some() {
                        txn.execute(
                            "INSERT INTO snapshot (room, state, covers) VALUES (?1, ?2, ?3)
                             ON CONFLICT (room) DO UPDATE SET state = excluded.state, covers = excluded.covers
                             WHERE excluded.covers > snapshot.covers",
                            params![room_id, state, covers],
                        )?;
                        txn.execute(
                            "DELETE FROM log WHERE room = ?1 AND seq <= ?2",
                            params![room_id, covers],
                        )?;
                    }
                    let (rows, bytes) = log_size(txn, *room_id)?;
                    let snapshot_bytes = snapshot_size(txn, *room_id)?;
                    if let Some(log) = self.rooms.values_mut().find(|l| l.id == *room_id) {
                        log.rows = rows;
                        log.bytes = bytes;
                        log.snapshot_bytes = snapshot_bytes;
                        log.compacting = false;
                    }
                }
                Job::CompactFailed { room_id } => {
                    self.metrics.compaction_errors.inc();
                    if let Some(log) = self.rooms.values_mut().find(|l| l.id == *room_id) {
                        log.compacting = false;
                        log.retry_at_rows = log.rows.saturating_mul(2);
                    }
                }
            }
        }
        Ok(())
    }

    fn schedule_compactions(&mut self) {
        let (rows, bytes) = (
            self.options.compact_after_rows,
            self.options.compact_after_bytes,
        );
        for (name, log) in &mut self.rooms {
            let big_enough = log.bytes.saturating_mul(2) >= log.snapshot_bytes
                || log.rows >= rows.saturating_mul(MAX_LOG_ROWS_FACTOR);
            let due = (log.rows >= rows || log.bytes >= bytes)
                && big_enough
                && log.rows >= log.retry_at_rows;
            if due && !log.compacting && log.rows > 1 {
                log.compacting = true;
                let job = CompactJob {
                    room: name.clone(),
                    room_id: log.id,
                    covers: log.next_seq - 1,
                };
                if self.compact.send(job).is_err() {
                    log.compacting = false;
                } else {
                    self.metrics.compactions.inc();
                }
            }
        }
    }
}

/// Finds or creates `room`'s row and measures its log.
fn remember(txn: &Connection, room: &str) -> rusqlite::Result<RoomLog> {
    txn.execute("INSERT OR IGNORE INTO rooms (name) VALUES (?1)", [room])?;
    let id: i64 = txn.query_row("SELECT id FROM rooms WHERE name = ?1", [room], |r| r.get(0))?;
    let last: i64 = txn.query_row(
        "SELECT coalesce(max(seq), 0) FROM log WHERE room = ?1",
        [id],
        |r| r.get(0),
    )?;
    let covers: i64 = txn
        .query_row("SELECT covers FROM snapshot WHERE room = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let (rows, bytes) = log_size(txn, id)?;
    Ok(RoomLog {
        id,
        next_seq: last.max(covers) + 1,
        rows,
        bytes,
        snapshot_bytes: snapshot_size(txn, id)?,
        compacting: false,
        retry_at_rows: 0,
    })
}

fn snapshot_size(txn: &Connection, id: i64) -> rusqlite::Result<u64> {
    Ok(txn
        .query_row(
            "SELECT length(state) FROM snapshot WHERE room = ?1",
            [id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64)
}

fn log_size(txn: &Connection, id: i64) -> rusqlite::Result<(u64, u64)> {
    txn.query_row(
        "SELECT count(*), coalesce(sum(length(data)), 0) FROM log WHERE room = ?1",
        [id],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// The compactor thread: merges a room's snapshot and log into a new snapshot and hands it
/// to the writer, which stores it and trims the log in one transaction.
fn compactor(
    mut conn: Connection,
    jobs: std::sync::mpsc::Receiver<CompactJob>,
    writer: mpsc::WeakUnboundedSender<Job>,
) {
    while let Ok(job) = jobs.recv() {
        let result = merge_room(&mut conn, &job);
        let Some(writer) = writer.upgrade() else {
            break;
        };
        let reply = match result {
            Ok(state) => {
                tracing::debug!(room = %job.room, covers = job.covers, bytes = state.len(), "compacted");
                Job::Compacted {
                    room_id: job.room_id,
                    state,
                    covers: job.covers,
                }
            }
            Err(e) => {
                tracing::warn!(room = %job.room, error = %e, "compaction failed; the log is kept as it is");
                Job::CompactFailed {
                    room_id: job.room_id,
                }
            }
        };
        if writer.send(reply).is_err() {
            break;
        }
    }
}

fn merge_room(conn: &mut Connection, job: &CompactJob) -> Result<Vec<u8>, SqliteStoreError> {
    let txn = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let mut updates: Vec<Vec<u8>> = Vec::new();
    let snapshot: Option<(Vec<u8>, i64)> = txn
        .query_row(
            "SELECT state, covers FROM snapshot WHERE room = ?1",
            [job.room_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let after = match snapshot {
        Some((state, covers)) => {
            updates.push(state);
            covers
        }
        None => 0,
    };
    {
        let mut stmt = txn.prepare(
            "SELECT data FROM log WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![job.room_id, after, job.covers], |r| {
            r.get::<_, Vec<u8>>(0)
        })?;
        for row in rows {
            updates.push(row?);
        }
    }
    txn.commit()?;
    let doc = merge_to_doc(&job.room, &updates)?;
    // Contained: a panic here would end the compactor thread for every room.
    crate::contain::contained(|| {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    })
    .map_err(|_| SqliteStoreError::Damaged {
        room: job.room.clone(),
        reason: "yrs panicked while encoding the merged document".into(),
    })
}

/// Applies stored updates to a fresh document.
pub(crate) fn merge_to_doc(room: &str, updates: &[Vec<u8>]) -> Result<yrs::Doc, SqliteStoreError> {
    let doc = new_doc();
    for update in updates {
        apply_update(&doc, update, false).map_err(|reason| SqliteStoreError::Damaged {
            room: room.to_owned(),
            reason: reason.to_string(),
        })?;
    }
    Ok(doc)
}

/// The text of a document's root text.
pub(crate) fn text_of(doc: &yrs::Doc) -> String {
    let text = doc.get_or_insert_text(ROOT_TEXT);
    text.get_string(&doc.transact())
}

#[cfg(test)]
mod tests;
