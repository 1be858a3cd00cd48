//! Offline administration of a data directory: list, export, import and delete rooms.
//!
//! Reads (list, export) are safe beside a running server: WAL gives them a consistent
//! snapshot. Writes (import, delete) must not run beside a server that may have the room
//! loaded; the binary takes the data directory's lock ([`crate::data_dir`]) before calling
//! them and refuses with a clear message when a server holds it.

use crate::doc::ROOT_TEXT;
use crate::sqlite::{SqliteStoreError, merge_to_doc, open_db, read_room, text_of};
use rusqlite::{Connection, TransactionBehavior, params};
use std::path::Path;
use yrs::{ReadTxn, StateVector, Text, Transact};

/// How a document is written out or read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The root text "content", as UTF-8.
    Text,
    /// A Yjs v1 update holding the whole document (`Y.applyUpdate` loads it).
    Yjs,
}

/// One stored room, as `rooms list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    /// Updates in the log past the snapshot.
    pub log_updates: u64,
    pub log_bytes: u64,
    pub snapshot_bytes: u64,
}

/// A connection to a data directory's database for admin commands.
pub struct Admin {
    conn: Connection,
}

impl Admin {
    /// Opens the database in `dir` (creating an empty one if there is none).
    pub fn open(dir: &Path) -> Result<Self, SqliteStoreError> {
        Ok(Self {
            conn: open_db(dir)?,
        })
    }

    /// Every stored room, by name.
    pub fn list(&self) -> Result<Vec<RoomInfo>, SqliteStoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.name,
                    (SELECT count(*) FROM log l WHERE l.room = r.id),
                    (SELECT coalesce(sum(length(l.data)), 0) FROM log l WHERE l.room = r.id),
                    (SELECT coalesce(length(s.state), 0) FROM snapshot s WHERE s.room = r.id)
             FROM rooms r ORDER BY r.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RoomInfo {
                name: r.get(0)?,
                log_updates: r.get::<_, i64>(1)? as u64,
                log_bytes: r.get::<_, i64>(2)? as u64,
                snapshot_bytes: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The document of `room` in `format`.
    pub fn export(&mut self, room: &str, format: Format) -> Result<Vec<u8>, SqliteStoreError> {
        let updates = read_room(&mut self.conn, room)?
            .ok_or_else(|| SqliteStoreError::NoSuchRoom(room.to_owned()))?;
        let doc = merge_to_doc(room, &updates)?;
        Ok(match format {
            Format::Text => text_of(&doc).into_bytes(),
            Format::Yjs => doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default()),
        })
    }

    /// Creates `room` holding the document in `bytes`. Refuses if the room exists.
    pub fn import(
        &mut self,
        room: &str,
        bytes: &[u8],
        format: Format,
    ) -> Result<(), SqliteStoreError> {
        let update = match format {
            Format::Yjs => {
                // Check that it applies before storing it.
                let doc = merge_to_doc(room, &[bytes.to_vec()])
                    .map_err(|e| SqliteStoreError::BadUpdate(e.to_string()))?;
                doc.transact()
                    .encode_state_as_update_v1(&StateVector::default())
            }
            Format::Text => {
                let text = std::str::from_utf8(bytes).map_err(|e| {
                    SqliteStoreError::BadUpdate(format!("the text file is not UTF-8: {e}"))
                })?;
                let doc = crate::doc::new_doc();
                let root = doc.get_or_insert_text(ROOT_TEXT);
                root.insert(&mut doc.transact_mut(), 0, text);
                doc.transact()
                    .encode_state_as_update_v1(&StateVector::default())
            }
        };
        let txn = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = txn.execute("INSERT OR IGNORE INTO rooms (name) VALUES (?1)", [room])?;
        if inserted == 0 {
            return Err(SqliteStoreError::RoomExists(room.to_owned()));
        }
        let id = txn.last_insert_rowid();
        txn.execute(
            "INSERT INTO log (room, seq, data) VALUES (?1, 1, ?2)",
            params![id, update],
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes `room` and everything stored for it.
    pub fn delete(&mut self, room: &str) -> Result<(), SqliteStoreError> {
        let txn = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: Option<i64> = rusqlite::OptionalExtension::optional(txn.query_row(
            "SELECT id FROM rooms WHERE name = ?1",
            [room],
            |r| r.get(0),
        ))?;
        let id = id.ok_or_else(|| SqliteStoreError::NoSuchRoom(room.to_owned()))?;
        txn.execute("DELETE FROM log WHERE room = ?1", [id])?;
        txn.execute("DELETE FROM snapshot WHERE room = ?1", [id])?;
        txn.execute("DELETE FROM rooms WHERE id = ?1", [id])?;
        txn.commit()?;
        Ok(())
    }
}
