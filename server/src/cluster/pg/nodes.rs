//! Node heartbeats: one row per node of the cluster, refreshed every few seconds, on the
//! database's clock (so nodes' clocks never have to agree). A node whose row went stale is
//! written off by the others: every cursor it owned is removed, within seconds of its death
//! rather than after the 30 s awareness timeout. Its epoch grows at every start, so a node
//! that restarts quickly is still told apart from its previous run.

use super::PgStore;
use crate::store::StoreError;
use duet_protocol::bus::NodeId;
use std::time::Duration;

/// One node's heartbeat as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeBeat {
    pub node: NodeId,
    pub epoch: u64,
    /// Time since its last heartbeat, on the database's clock.
    pub age: Duration,
}

impl PgStore {
    /// Registers a start of `node`: its epoch is one more than its previous start's (1 for
    /// its first), and its heartbeat is fresh.
    pub async fn register_node(&self, node: &NodeId) -> Result<u64, StoreError> {
        let node = node.as_str().to_owned();
        let epoch: i64 = self
            .with_client(move |client| {
                Box::pin(async move {
                    let stmt = client
                        .prepare_cached(
                            "INSERT INTO duet_nodes (node, epoch) VALUES ($1, 1)
                             ON CONFLICT (node) DO UPDATE SET epoch = duet_nodes.epoch + 1,
                                 started = now(), last_seen = now()
                             RETURNING epoch",
                        )
                        .await?;
                    Ok(client.query_one(&stmt, &[&node]).await?.get(0))
                })
            })
            .await?;
        Ok(epoch.unsigned_abs())
    }

    /// Refreshes `node`'s heartbeat. `Ok(false)`: the row belongs to a newer start of the same
    /// node id (another process started with it, or this one was written off and forgotten):
    /// this process must not act as that node any longer.
    pub async fn heartbeat(&self, node: &NodeId, epoch: u64) -> Result<bool, StoreError> {
        self.set_last_seen(
            node,
            epoch,
            "UPDATE duet_nodes SET last_seen = now() WHERE node = $1 AND epoch = $2",
        )
        .await
    }

    /// Marks `node`'s heartbeat (if it still holds `epoch`) as long stale: a node that stops
    /// cleanly is written off by the others at their next check instead of after the stale
    /// time. Its row stays, so every node sees it go.
    pub async fn retire_node(&self, node: &NodeId, epoch: u64) -> Result<bool, StoreError> {
        self.set_last_seen(
            node,
            epoch,
            "UPDATE duet_nodes SET last_seen = now() - interval '1 day'
             WHERE node = $1 AND epoch = $2",
        )
        .await
    }

    /// Runs `sql` (an UPDATE of `node`'s row at `epoch`, its parameters `$1` and `$2`):
    /// whether the row was there to update.
    async fn set_last_seen(
        &self,
        node: &NodeId,
        epoch: u64,
        sql: &'static str,
    ) -> Result<bool, StoreError> {
        let node = node.as_str().to_owned();
        let epoch = i64::try_from(epoch)
            .map_err(|_| StoreError::Unavailable(format!("epoch {epoch} out of range")))?;
        self.with_client(move |client| {
            Box::pin(async move {
                let stmt = client.prepare_cached(sql).await?;
                Ok(client.execute(&stmt, &[&node, &epoch]).await? == 1)
            })
        })
        .await
    }

    /// Every node's heartbeat, by node id.
    pub async fn nodes(&self) -> Result<Vec<NodeBeat>, StoreError> {
        self.beats(None).await
    }

    /// The nodes whose last heartbeat is older than `max_age`.
    pub async fn stale_nodes(&self, max_age: Duration) -> Result<Vec<NodeBeat>, StoreError> {
        self.beats(Some(max_age)).await
    }

    /// Removes `node`'s row if it still holds `epoch` (a node written off for good; a newer
    /// start keeps its row).
    pub async fn forget_node(&self, node: &NodeId, epoch: u64) -> Result<bool, StoreError> {
        let node = node.as_str().to_owned();
        let epoch = i64::try_from(epoch)
            .map_err(|_| StoreError::Unavailable(format!("epoch {epoch} out of range")))?;
        self.with_client(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached("DELETE FROM duet_nodes WHERE node = $1 AND epoch = $2")
                    .await?;
                Ok(client.execute(&stmt, &[&node, &epoch]).await? == 1)
            })
        })
        .await
    }

    async fn beats(&self, older_than: Option<Duration>) -> Result<Vec<NodeBeat>, StoreError> {
        let min_age = older_than.map_or(-1.0, |d| d.as_secs_f64());
        let rows = self
            .with_client(move |client| {
                Box::pin(async move {
                    let stmt = client
                        .prepare_cached(
                            "SELECT node, epoch,
                                    extract(epoch FROM (now() - last_seen))::float8 AS age
                             FROM duet_nodes
                             WHERE extract(epoch FROM (now() - last_seen))::float8 > $1
                             ORDER BY node",
                        )
                        .await?;
                    let rows = client.query(&stmt, &[&min_age]).await?;
                    Ok(rows
                        .iter()
                        .map(|row| {
                            (
                                row.get::<_, String>(0),
                                row.get::<_, i64>(1),
                                row.get::<_, f64>(2),
                            )
                        })
                        .collect::<Vec<_>>())
                })
            })
            .await?;
        rows.into_iter()
            .map(|(node, epoch, age)| {
                let bad = |what: String| StoreError::Corrupt {
                    room: "duet_nodes".into(),
                    reason: what,
                };
                Ok(NodeBeat {
                    epoch: u64::try_from(epoch)
                        .map_err(|_| bad(format!("node {node} has epoch {epoch}")))?,
                    node: NodeId::new(&node).map_err(|e| bad(e.to_string()))?,
                    // A clock step backwards on the database can make an age negative.
                    age: Duration::try_from_secs_f64(age.max(0.0)).unwrap_or_default(),
                })
            })
            .collect()
    }
}
