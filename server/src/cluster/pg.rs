//! The PostgreSQL store: the cluster's system of record. Rooms, an update log with a dense seq
//! per room, snapshots that say which seq they cover, and the nodes' heartbeats, in one
//! database that every node of the cluster writes.
//!
//! The Store contract's methods (`read`, `append`, `compact`, `metrics`) are inherent methods
//! here with the contract's names and meanings; the `impl Store for PgStore` glue comes with
//! the store rework (issue 16). What the cluster needs beside them: [`PgStore::heads`] (many
//! rooms' heads in one query), the node heartbeats ([`nodes`]) and the admin operations
//! ([`admin`]).
//!
//! Invariants:
//! - An append resolves `Ok(seq)` only after the COMMIT that holds it returned (group commit
//!   in a bounded window, [`writer`]); an error or an unknown outcome resolves it with an
//!   error, never a success.
//! - A room's stored document is its snapshot (if any) followed by its log rows with
//!   `seq > snapshot.covers`; compaction replaces a prefix of the log by a snapshot in one
//!   transaction, and only with one that covers more (compare-and-swap).
//! - Every operation is bounded in time (connect, pool wait, statement, and a client-side
//!   timeout around each), so an unreachable PostgreSQL gives prompt errors, never a hang.

mod admin;
pub mod nodes;
mod schema;
mod writer;

pub use nodes::NodeBeat;
pub use schema::SCHEMA_VERSION;

use crate::metrics::StoreMetrics;
use crate::store::{Appending, Seq, Store, Stored};
use crate::store::{BoxFuture, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use duet_protocol::RoomName;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{IsolationLevel, NoTls};

/// The default [`PgOptions::commit_window`]: the SQLite store's (ADR 008), for the same
/// reason: commits per second stay bounded at the speed people type.
pub const DEFAULT_COMMIT_WINDOW: Duration = Duration::from_millis(10);

/// Tunables of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most updates committed in one transaction.
    pub max_batch: usize,
    /// How long a batch stays open after its first update (ADR 008): bounds commits to about
    /// one per window per node however many people type. Zero commits what queued during the
    /// previous commit.
    pub commit_window: Duration,
    /// Connections per node.
    pub pool_size: usize,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long any one operation may take, waiting for a connection included; also the
    /// server-side `statement_timeout`. Past it the operation fails (an append: not
    /// acknowledged).
    pub timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            commit_window: DEFAULT_COMMIT_WINDOW,
            pool_size: 8,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Errors of opening the store and of the admin operations.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The address is not shown: it may hold a password.
    #[error("the postgresql address is not valid: {0}")]
    BadAddress(String),
    #[error("cannot set up the postgresql connection pool: {0}")]
    Pool(String),
    #[error("migrating the postgresql schema failed: {0}")]
    Migrate(String),
    #[error(
        "the postgresql schema is at version {found}, newer than this server's {known}; upgrade the server"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Rooms stored in PostgreSQL, as one node of a cluster sees them.
///
/// **Durability guarantee:** an append resolves with its seq only once the transaction
/// holding it has committed, so whatever PostgreSQL promises for a commit
/// (`synchronous_commit`, replication: see docs/deploy.md) holds for every acknowledged edit.
pub struct PgStore {
    pool: Pool,
    writer: mpsc::UnboundedSender<writer::Job>,
    options: PgOptions,
    metrics: Arc<StoreMetrics>,
}

/// The contract's methods are [`PgStore`]'s own, under the same names.
impl Store for PgStore {
    fn read(&self, room: &RoomName, after: Seq) -> BoxFuture<'_, Result<Stored, StoreError>> {
        PgStore::read(self, room, after)
    }

    fn append(&self, room: &RoomName, update: Vec<u8>) -> Appending {
        Appending::later(PgStore::append(self, room, update))
    }

    fn compact(
        &self,
        room: &RoomName,
        state: Vec<u8>,
        covers: Seq,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        PgStore::compact(self, room, state, covers)
    }

    fn metrics(&self) -> Option<Arc<StoreMetrics>> {
        PgStore::metrics(self)
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or `key=value` pairs),
    /// brings the schema up to date and starts the writer. Must run inside a tokio runtime.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, PgError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| PgError::BadAddress(e.to_string()))?;
        let statement_ms = options.timeout.as_millis();
        // The server ends a statement that runs too long, and a transaction left idle by a
        // node that vanished mid-batch, so neither holds a room's row lock for long.
        let ours = format!(
            "-c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={}",
            statement_ms.saturating_mul(3)
        );
        let server_options = match config.get_options() {
            Some(theirs) if !theirs.is_empty() => format!("{theirs} {ours}"),
            _ => ours,
        };
        config
            .options(server_options)
            .application_name("duet-server")
            .connect_timeout(options.connect_timeout)
            // The kernel gives up on a connection whose sent data stays unacknowledged (a
            // host gone without a reset), and keepalives find idle ones that died.
            .tcp_user_timeout(options.timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        {
            let mut client = pooled(&pool, options.timeout).await?;
            let found = tokio::time::timeout(options.timeout * 3, schema::migrate(&mut client))
                .await
                .map_err(|_| {
                    PgError::Migrate(format!(
                        "postgresql did not answer within {:?}",
                        options.timeout * 3
                    ))
                })??;
            tracing::debug!(found, current = SCHEMA_VERSION, "postgresql schema ready");
        }
        let metrics = Arc::new(StoreMetrics::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = writer::Writer {
            pool: pool.clone(),
            options: options.clone(),
            metrics: metrics.clone(),
            known: HashSet::new(),
        };
        tokio::spawn(writer.run(rx));
        Ok(Self {
            pool,
            writer: tx,
            options,
            metrics,
        })
    }

    /// Everything stored for `room` after `after` (`Seq(0)`: the whole room, empty for a room
    /// that was never written). One read-only snapshot of the database, so a compaction or
    /// an append committing meanwhile cannot make it miss or repeat a row.
    ///
    /// A cursor past the room's head can only come from another life of the room (deleted
    /// and written again, a restored backup): the read then returns the whole room, which
    /// is harmless to apply twice and leaves nothing out.
    pub fn read(&self, room: &RoomName, after: Seq) -> BoxFuture<'_, Result<Stored, StoreError>> {
        let room = room.clone();
        Box::pin(async move {
            let began = Instant::now();
            let result = self
                .with_client(move |client| Box::pin(read_room(client, room, after)))
                .await;
            match &result {
                Ok(_) => self.metrics.read_duration.observe(began.elapsed()),
                Err(_) => self.metrics.load_errors.inc(),
            }
            result
        })
    }

    /// Appends one update; the returned future resolves with its seq once the transaction
    /// that holds it has committed. Queued now, not when first polled, so a room's appends
    /// reach the log in call order.
    pub fn append(
        &self,
        room: &RoomName,
        update: Vec<u8>,
    ) -> impl Future<Output = Result<Seq, StoreError>> + Send + use<> {
        let (done, wait) = oneshot::channel();
        let sent = self.writer.send(writer::Job {
            room: room.clone(),
            update,
            arrived: Instant::now(),
            done,
        });
        async move {
            if sent.is_err() {
                return Err(writer_stopped());
            }
            wait.await.unwrap_or_else(|_| Err(writer_stopped()))
        }
    }

    /// Compare-and-swap compaction: keeps `state` as `room`'s snapshot covering every update
    /// with seq <= `covers`, and drops those log rows, only if `covers` is past the stored
    /// snapshot's and not past the head. `Ok(false)`: another node's snapshot already covers
    /// as much, or another node is compacting the room right now.
    pub fn compact(
        &self,
        room: &RoomName,
        state: Vec<u8>,
        covers: Seq,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let room = room.clone();
        Box::pin(async move {
            let result = self
                .with_client(move |client| Box::pin(compact_room(client, room, state, covers)))
                .await;
            match &result {
                Ok(true) => self.metrics.compactions.inc(),
                Ok(false) => {}
                Err(_) => self.metrics.compaction_errors.inc(),
            }
            result
        })
    }

    /// The heads of many rooms in one query (the cluster's periodic check of its loaded
    /// rooms); a room never written has head `Seq(0)`.
    pub async fn heads(&self, rooms: &[RoomName]) -> Result<HashMap<RoomName, Seq>, StoreError> {
        let names: Vec<String> = rooms.iter().map(|r| r.as_str().to_owned()).collect();
        let found = self
            .with_client(move |client| {
                Box::pin(async move {
                    let stmt = client
                        .prepare_cached(
                            "SELECT name, head FROM duet_rooms WHERE name = ANY($1::text[])",
                        )
                        .await?;
                    let rows = client.query(&stmt, &[&names]).await?;
                    Ok(rows
                        .iter()
                        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                        .collect::<HashMap<_, _>>())
                })
            })
            .await?;
        rooms
            .iter()
            .map(|room| {
                let head = found.get(room.as_str()).copied().unwrap_or(0);
                Ok((room.clone(), to_seq(room, head)?))
            })
            .collect()
    }

    /// The store's own figures for `/metrics`.
    pub fn metrics(&self) -> Option<Arc<StoreMetrics>> {
        Some(self.metrics.clone())
    }

    /// The store's tunables.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// Runs `op` on a pooled connection within the store's timeout. A connection whose
    /// operation timed out never returns to the pool: it may be anywhere in a transaction.
    async fn with_client<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Object) -> BoxFuture<'c, Result<T, OpError>>,
    {
        let limit = self.options.timeout;
        let mut client = pooled(&self.pool, limit).await?;
        match tokio::time::timeout(limit, op(&mut client)).await {
            Ok(result) => result.map_err(OpError::into_store),
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(format!(
                    "postgresql did not answer within {limit:?}"
                )))
            }
        }
    }
}

/// A connection from the pool, within `limit` (the pool's own timeouts bound it too).
async fn pooled(pool: &Pool, limit: Duration) -> Result<Object, StoreError> {
    match tokio::time::timeout(limit, pool.get()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(deadpool_postgres::PoolError::Backend(e))) => Err(StoreError::Unavailable(format!(
            "postgresql: {}",
            describe(&e)
        ))),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!("postgresql: {e}"))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no postgresql connection within {limit:?}"
        ))),
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the postgresql writer has stopped".into())
}

/// What an operation inside a connection can fail with.
enum OpError {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl OpError {
    fn into_store(self) -> StoreError {
        match self {
            OpError::Pg(e) => StoreError::Unavailable(format!("postgresql: {}", describe(&e))),
            OpError::Store(e) => e,
        }
    }
}

/// A PostgreSQL error as one line: the server's own message when it sent one (tokio-postgres
/// shows only "db error" otherwise), else the client's with its causes ("error connecting to
/// server: Connection refused (os error 111)").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut line = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// A stored seq or head as a [`Seq`]; a negative one means the rows were written by
/// something other than duet.
fn to_seq(room: &RoomName, value: i64) -> Result<Seq, StoreError> {
    u64::try_from(value)
        .map(Seq)
        .map_err(|_| StoreError::Corrupt {
            room: room.as_str().to_owned(),
            reason: format!("negative seq {value}"),
        })
}

fn to_i64(room: &RoomName, seq: Seq) -> Result<i64, StoreError> {
    i64::try_from(seq.0).map_err(|_| StoreError::Corrupt {
        room: room.as_str().to_owned(),
        reason: format!("seq {} beyond what postgresql stores", seq.0),
    })
}

/// [`PgStore::read`] on one connection.
async fn read_room(client: &mut Object, room: RoomName, after: Seq) -> Result<Stored, OpError> {
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head_stmt = txn
        .prepare_cached(
            "SELECT r.id, r.head, s.covers FROM duet_rooms r
             LEFT JOIN duet_snapshots s ON s.room = r.id WHERE r.name = $1",
        )
        .await?;
    let Some(row) = txn.query_opt(&head_stmt, &[&room.as_str()]).await? else {
        return Ok(Stored::default());
    };
    let id: i64 = row.get(0);
    let head = to_seq(&room, row.get(1))?;
    let covers = to_seq(&room, row.get::<_, Option<i64>>(2).unwrap_or(0))?;
    let after = if after > head {
        tracing::debug!(room = %room.as_str(), after = after.0, head = head.0, "cursor past the room's head; reading the whole room");
        Seq(0)
    } else {
        after
    };
    let mut updates = Vec::new();
    let from = if after < covers {
        let state_stmt = txn
            .prepare_cached("SELECT state FROM duet_snapshots WHERE room = $1")
            .await?;
        updates.push(
            txn.query_one(&state_stmt, &[&id])
                .await?
                .get::<_, Vec<u8>>(0),
        );
        covers
    } else {
        after
    };
    let log_stmt = txn
        .prepare_cached("SELECT seq, data FROM duet_log WHERE room = $1 AND seq > $2 ORDER BY seq")
        .await?;
    let rows = txn.query(&log_stmt, &[&id, &to_i64(&room, from)?]).await?;
    // Dense seqs are what lets a cursor stand for everything below it: check them.
    let mut expect = from.0 + 1;
    for row in rows {
        let seq = to_seq(&room, row.get(0))?;
        if seq.0 != expect {
            return Err(StoreError::Corrupt {
                room: room.as_str().to_owned(),
                reason: format!("log row {} missing (found {} next)", expect, seq.0),
            }
            .into());
        }
        expect += 1;
        updates.push(row.get::<_, Vec<u8>>(1));
    }
    if expect != head.0 + 1 {
        return Err(StoreError::Corrupt {
            room: room.as_str().to_owned(),
            reason: format!("log ends at seq {} but the head is {}", expect - 1, head.0),
        }
        .into());
    }
    txn.commit().await?;
    Ok(Stored { updates, head })
}

/// The first advisory lock key of compactions (two int4 keys: a key space apart from the
/// migration lock's single bigint): "duet" in ASCII.
const COMPACT_LOCK: i32 = 0x6475_6574;

/// [`PgStore::compact`] on one connection.
async fn compact_room(
    client: &mut Object,
    room: RoomName,
    state: Vec<u8>,
    covers: Seq,
) -> Result<bool, OpError> {
    if covers == Seq(0) {
        return Ok(false);
    }
    let covers_i64 = to_i64(&room, covers)?;
    let txn = client.transaction().await?;
    let find = txn
        .prepare_cached(
            "SELECT r.id, r.head, coalesce(s.covers, 0) FROM duet_rooms r
             LEFT JOIN duet_snapshots s ON s.room = r.id WHERE r.name = $1",
        )
        .await?;
    let Some(row) = txn.query_opt(&find, &[&room.as_str()]).await? else {
        return Ok(false);
    };
    let (id, head, stored): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if covers_i64 > head {
        tracing::warn!(room = %room.as_str(), covers = covers.0, head, "compaction offered a snapshot past the room's head; not stored");
        return Ok(false);
    }
    if covers_i64 <= stored {
        return Ok(false);
    }
    // One compactor per room at a time, without waiting: whoever holds the lock is writing a
    // snapshot at least as useful. The room's id is the second key (ids past 2^31 share a key
    // with a smaller one, which only makes a compaction wait for the next turn).
    let lock = txn
        .prepare_cached("SELECT pg_try_advisory_xact_lock($1, ($2 % 2147483648)::int4)")
        .await?;
    let locked: bool = txn.query_one(&lock, &[&COMPACT_LOCK, &id]).await?.get(0);
    if !locked {
        return Ok(false);
    }
    // The compare-and-swap itself: if a snapshot covering as much committed since the read
    // above, the upsert changes no row and nothing is deleted.
    let upsert = txn
        .prepare_cached(
            "INSERT INTO duet_snapshots (room, covers, state) VALUES ($1, $2, $3)
             ON CONFLICT (room) DO UPDATE SET covers = excluded.covers, state = excluded.state,
                 written = now()
             WHERE duet_snapshots.covers < excluded.covers",
        )
        .await?;
    let changed = txn
        .execute(&upsert, &[&id, &covers_i64, &state.as_slice()])
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    let trim = txn
        .prepare_cached("DELETE FROM duet_log WHERE room = $1 AND seq <= $2")
        .await?;
    txn.execute(&trim, &[&id, &covers_i64]).await?;
    txn.commit().await?;
    Ok(true)
}
