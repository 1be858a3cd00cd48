//! What `duet-server rooms ...` needs of the PostgreSQL store: list, export, import, delete.
//! (The `RoomAdmin` trait of the store rework will call these.)
//!
//! Unlike SQLite's, these are safe beside running nodes as far as the database goes (each is
//! one transaction); deleting a room that nodes hold loaded is still the operator's call: a
//! node that appends to it afterwards starts it anew from its own copy.

use super::{PgError, PgStore};
use crate::admin::{Format, RoomInfo};
use crate::cluster::Seq;
use crate::contain::contained;
use crate::doc::{ROOT_TEXT, apply_update, new_doc};
use duet_protocol::RoomName;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

impl PgStore {
    /// Every stored room, by name.
    pub async fn list(&self) -> Result<Vec<RoomInfo>, PgError> {
        let rows = self
            .with_client(|client| {
                Box::pin(async move {
                    let rows = client
                        .query(
                            "SELECT r.name,
                                (SELECT count(*) FROM duet_log l WHERE l.room = r.id),
                                (SELECT coalesce(sum(octet_length(l.data)), 0)::bigint
                                   FROM duet_log l WHERE l.room = r.id),
                                (SELECT coalesce(octet_length(s.state), 0)::bigint
                                   FROM duet_snapshots s WHERE s.room = r.id)
                             FROM duet_rooms r ORDER BY r.name",
                            &[],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|row| RoomInfo {
                            name: row.get(0),
                            log_updates: row.get::<_, i64>(1).unsigned_abs(),
                            log_bytes: row.get::<_, i64>(2).unsigned_abs(),
                            snapshot_bytes: row
                                .get::<_, Option<i64>>(3)
                                .unwrap_or(0)
                                .unsigned_abs(),
                        })
                        .collect::<Vec<_>>())
                })
            })
            .await?;
        Ok(rows)
    }

    /// The document of `room` in `format`.
    pub async fn export(&self, room: &RoomName, format: Format) -> Result<Vec<u8>, PgError> {
        if !self.exists(room).await? {
            return Err(PgError::NoSuchRoom(room.as_str().to_owned()));
        }
        let stored = self.read(room, Seq(0)).await?;
        let doc = merge(room, &stored.updates)?;
        let name = room.as_str().to_owned();
        contained(|| match format {
            Format::Text => doc
                .get_or_insert_text(ROOT_TEXT)
                .get_string(&doc.transact())
                .into_bytes(),
            Format::Yjs => doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default()),
        })
        .map_err(|_| PgError::Damaged {
            room: name,
            reason: "yrs panicked while encoding the document".into(),
        })
    }

    /// Creates `room` holding the document in `bytes` (its log's first row). Refuses if the
    /// room exists.
    pub async fn import(
        &self,
        room: &RoomName,
        bytes: &[u8],
        format: Format,
    ) -> Result<(), PgError> {
        let update = match format {
            Format::Yjs => {
                // It must apply before it is stored; the document's own encoding is stored.
                let doc = merge(room, &[bytes.to_vec()])
                    .map_err(|e| PgError::BadUpdate(e.to_string()))?;
                doc.transact()
                    .encode_state_as_update_v1(&StateVector::default())
            }
            Format::Text => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| PgError::BadUpdate(format!("the text file is not UTF-8: {e}")))?;
                let doc = new_doc();
                let root = doc.get_or_insert_text(ROOT_TEXT);
                root.insert(&mut doc.transact_mut(), 0, text);
                doc.transact()
                    .encode_state_as_update_v1(&StateVector::default())
            }
        };
        let name = room.as_str().to_owned();
        let created = self
            .with_client(move |client| {
                Box::pin(async move {
                    let txn = client.transaction().await?;
                    let Some(row) = txn
                        .query_opt(
                            "INSERT INTO duet_rooms (name, head) VALUES ($1, 1)
                             ON CONFLICT (name) DO NOTHING RETURNING id",
                            &[&name],
                        )
                        .await?
                    else {
                        return Ok(false);
                    };
                    let id: i64 = row.get(0);
                    txn.execute(
                        "INSERT INTO duet_log (room, seq, data) VALUES ($1, 1, $2)",
                        &[&id, &update.as_slice()],
                    )
                    .await?;
                    txn.commit().await?;
                    Ok(true)
                })
            })
            .await?;
        if created {
            Ok(())
        } else {
            Err(PgError::RoomExists(room.as_str().to_owned()))
        }
    }

    /// Deletes `room` and everything stored for it.
    pub async fn delete(&self, room: &RoomName) -> Result<(), PgError> {
        let name = room.as_str().to_owned();
        let deleted = self
            .with_client(move |client| {
                Box::pin(async move {
                    // The log and the snapshot go with the room (ON DELETE CASCADE).
                    Ok(client
                        .execute("DELETE FROM duet_rooms WHERE name = $1", &[&name])
                        .await?)
                })
            })
            .await?;
        if deleted == 0 {
            return Err(PgError::NoSuchRoom(room.as_str().to_owned()));
        }
        Ok(())
    }

    async fn exists(&self, room: &RoomName) -> Result<bool, PgError> {
        let name = room.as_str().to_owned();
        Ok(self
            .with_client(move |client| {
                Box::pin(async move {
                    Ok(client
                        .query_opt("SELECT 1 FROM duet_rooms WHERE name = $1", &[&name])
                        .await?
                        .is_some())
                })
            })
            .await?)
    }
}

/// Applies stored updates to a fresh document.
fn merge(room: &RoomName, updates: &[Vec<u8>]) -> Result<yrs::Doc, PgError> {
    let doc = new_doc();
    for update in updates {
        apply_update(&doc, update, false).map_err(|e| PgError::Damaged {
            room: room.as_str().to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(doc)
}
