//! The PostgreSQL schema and its migrations: numbered steps applied in order at start, under a
//! transaction-scoped advisory lock, so several nodes starting at once apply each step exactly
//! once and none of them sees a half-migrated schema (PostgreSQL's DDL is transactional).

use super::PgError;
use tokio_postgres::Client;

/// The advisory lock key (one bigint: a key space apart from the compaction locks, which use
/// two int4 keys) taken while migrating: "duet" in ASCII, then 1.
const MIGRATION_LOCK: i64 = 0x6475_6574_0000_0001;

/// Every migration, in order; a step is never edited once released, only followed by another.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "
-- A room: its name and the last seq committed to its log. Appends lock the row (FOR NO KEY
-- UPDATE), take the next numbers from `head` and raise it in the same transaction, so a
-- room's seqs are dense and commit in order: a reader's cursor never skips a row.
CREATE TABLE duet_rooms (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    head    bigint NOT NULL DEFAULT 0 CHECK (head >= 0),
    created timestamptz NOT NULL DEFAULT now()
);
-- Every update a node integrated and stored, per room, in seq order.
CREATE TABLE duet_log (
    room bigint NOT NULL REFERENCES duet_rooms (id) ON DELETE CASCADE,
    seq  bigint NOT NULL CHECK (seq > 0),
    data bytea NOT NULL,
    PRIMARY KEY (room, seq)
);
-- The merged form of every update of the room with seq <= covers (those log rows are gone).
CREATE TABLE duet_snapshots (
    room    bigint PRIMARY KEY REFERENCES duet_rooms (id) ON DELETE CASCADE,
    covers  bigint NOT NULL CHECK (covers > 0),
    state   bytea NOT NULL,
    written timestamptz NOT NULL DEFAULT now()
);
-- One row per node of the cluster: its epoch grows at every start; last_seen is refreshed
-- every few seconds on the database's clock, so nodes' clocks never have to agree.
CREATE TABLE duet_nodes (
    node      text PRIMARY KEY,
    epoch     bigint NOT NULL,
    started   timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
",
)];

/// The schema version this server writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the database to [`SCHEMA_VERSION`]; returns the version found before.
pub(super) async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let failed = |e: tokio_postgres::Error| PgError::Migrate(super::describe(&e));
    let txn = client.transaction().await.map_err(failed)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS duet_schema (
             version integer PRIMARY KEY,
             applied timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(failed)?;
    let found: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM duet_schema", &[])
        .await
        .map_err(failed)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        txn.batch_execute(sql).await.map_err(failed)?;
        txn.execute("INSERT INTO duet_schema (version) VALUES ($1)", &[version])
            .await
            .map_err(failed)?;
        tracing::info!(version, "applied postgresql schema migration");
    }
    txn.commit().await.map_err(failed)?;
    Ok(found)
}
