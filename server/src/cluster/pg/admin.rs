//! What `duet-server rooms ...` needs of the PostgreSQL store: [`RoomAdmin`] (list, export,
//! import, delete); the text and Yjs formats are converted above it, in [`crate::admin`].
//!
//! Unlike SQLite's, these are safe beside running nodes as far as the database goes (each is
//! one transaction); deleting a room that nodes hold loaded is still the operator's call: a
//! node that appends to it afterwards starts it anew from its own copy.

use super::PgStore;
use crate::store::{AdminError, BoxFuture, RoomAdmin, RoomInfo, Seq, StoreError, Stored};
use duet_protocol::RoomName;

impl RoomAdmin for PgStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RoomInfo>, AdminError>> {
        Box::pin(async move {
            let rows = self
                .with_client(|client| {
                    Box::pin(async move {
                        let rows = client
                            .query(
                                "SELECT r.name, r.head,
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
                                head: Seq(row.get::<_, i64>(1).unsigned_abs()),
                                log_updates: row.get::<_, i64>(2).unsigned_abs(),
                                log_bytes: row.get::<_, i64>(3).unsigned_abs(),
                                snapshot_bytes: row
                                    .get::<_, Option<i64>>(4)
                                    .unwrap_or(0)
                                    .unsigned_abs(),
                            })
                            .collect::<Vec<_>>())
                    })
                })
                .await?;
            Ok(rows)
        })
    }

    fn export(&self, room: &RoomName) -> BoxFuture<'_, Result<Stored, AdminError>> {
        let room = room.clone();
        Box::pin(async move {
            if !self.exists(&room).await? {
                return Err(AdminError::NoSuchRoom(room.as_str().to_owned()));
            }
            Ok(self.read(&room, Seq(0)).await?)
        })
    }

    fn import(&self, room: &RoomName, state: Vec<u8>) -> BoxFuture<'_, Result<(), AdminError>> {
        let name = room.as_str().to_owned();
        Box::pin(async move {
            let created = {
                let name = name.clone();
                self.with_client(move |client| {
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
                            &[&id, &state.as_slice()],
                        )
                        .await?;
                        txn.commit().await?;
                        Ok(true)
                    })
                })
                .await?
            };
            if created {
                Ok(())
            } else {
                Err(AdminError::RoomExists(name))
            }
        })
    }

    fn delete(&self, room: &RoomName) -> BoxFuture<'_, Result<(), AdminError>> {
        let name = room.as_str().to_owned();
        Box::pin(async move {
            let deleted = {
                let name = name.clone();
                self.with_client(move |client| {
                    Box::pin(async move {
                        // The log and the snapshot go with the room (ON DELETE CASCADE).
                        Ok(client
                            .execute("DELETE FROM duet_rooms WHERE name = $1", &[&name])
                            .await?)
                    })
                })
                .await?
            };
            if deleted == 0 {
                return Err(AdminError::NoSuchRoom(name));
            }
            Ok(())
        })
    }
}

impl PgStore {
    async fn exists(&self, room: &RoomName) -> Result<bool, StoreError> {
        let name = room.as_str().to_owned();
        self.with_client(move |client| {
            Box::pin(async move {
                Ok(client
                    .query_opt("SELECT 1 FROM duet_rooms WHERE name = $1", &[&name])
                    .await?
                    .is_some())
            })
        })
        .await
    }
}
