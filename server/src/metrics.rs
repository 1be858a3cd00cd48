//! Built-in metrics, served as Prometheus text at `GET /metrics`.
//!
//! Plain atomics: every counter is bumped on hot paths (per update, per connection), so no
//! locks and no allocation there.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency histograms' buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A latency histogram with fixed buckets: one atomic add per observation.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: std::time::Duration) {
        let us = elapsed.as_micros();
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= u128::from(*b))
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match LATENCY_BUCKETS_US.get(i) {
                Some(us) => {
                    let le = *us as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Upper bounds of the updates-per-commit histogram's buckets.
const BATCH_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A histogram of counts (updates per commit): one atomic add per observation.
#[derive(Default)]
pub struct CountHistogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BATCH_BUCKETS.len() + 1],
    sum: AtomicU64,
}

impl CountHistogram {
    pub fn observe(&self, n: u64) {
        let i = BATCH_BUCKETS
            .iter()
            .position(|b| n <= *b)
            .unwrap_or(BATCH_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BATCH_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// What a durable store reports about its load and health (the SQLite store fills it in).
#[derive(Default)]
pub struct StoreMetrics {
    /// Transactions committed (each fsyncs the WAL once).
    pub commits: Counter,
    pub updates_per_commit: CountHistogram,
    /// From BEGIN to the end of COMMIT (fsync included).
    pub commit_duration: Histogram,
    /// Reads of a room (loads and catch-ups), where the store times them.
    pub read_duration: Histogram,
    /// Snapshots stored (compactions the compare-and-swap let through).
    pub compactions: Counter,
    /// Failed commits (every update of the batch refused).
    pub commit_errors: Counter,
    /// Compactions whose transaction failed (the log is kept as it is).
    pub compaction_errors: Counter,
    /// Failed loads of a room.
    pub load_errors: Counter,
}

impl StoreMetrics {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP duet_store_commits_total Store transactions committed (each fsyncs the WAL).\n# TYPE duet_store_commits_total counter\nduet_store_commits_total {}",
            self.commits.get()
        );
        self.updates_per_commit.render(
            out,
            "duet_store_updates_per_commit",
            "Updates stored per committed transaction.",
        );
        self.commit_duration.render(
            out,
            "duet_store_commit_seconds",
            "Time to write and commit one transaction, fsync included.",
        );
        if self.read_duration.count() > 0 {
            self.read_duration.render(
                out,
                "duet_store_read_seconds",
                "Time to read a room's log (a load, or the rows past a cursor).",
            );
        }
        let _ = writeln!(
            out,
            "# HELP duet_store_compactions_total Snapshots stored in place of a prefix of a room log.\n# TYPE duet_store_compactions_total counter\nduet_store_compactions_total {}",
            self.compactions.get()
        );
        let _ = writeln!(
            out,
            "# HELP duet_store_errors_total Failed store operations, by operation.\n# TYPE duet_store_errors_total counter"
        );
        for (op, c) in [
            ("commit", &self.commit_errors),
            ("compaction", &self.compaction_errors),
            ("load", &self.load_errors),
        ] {
            let _ = writeln!(out, "duet_store_errors_total{{op=\"{op}\"}} {}", c.get());
        }
    }
}

/// A part of `/metrics` kept elsewhere (the bus's figures), rendered after the rest.
pub trait Section: Send + Sync {
    fn render(&self, out: &mut String);
}

/// Why rooms read their log past their cursor, as [`ClusterMetrics::catch_up`] counts them
/// (`room::CatchUp::name`).
const CATCH_UP_REASONS: [&str; 6] = ["gap", "reconnect", "lagged", "heads", "digest", "own_ahead"];

/// What a node of a cluster counts beside the bus's own figures.
#[derive(Default)]
pub struct ClusterMetrics {
    catch_ups: [Counter; CATCH_UP_REASONS.len()],
    /// Reads of the log past a room's cursor that failed.
    pub catch_up_errors: Counter,
    /// Rows (or snapshots) those reads returned.
    pub catch_up_rows: Counter,
    /// Updates a read brought that the room did not hold: what the bus had lost.
    pub repaired: Counter,
    /// Other nodes' updates applied from the bus.
    pub remote_updates: Counter,
    /// Digests published, and digests heard that held something the room lacked.
    pub digests_sent: Counter,
    pub digests_behind: Counter,
    /// Other nodes with a fresh heartbeat, and other nodes heard on the bus in the last 10 s.
    pub nodes_alive: Gauge,
    pub peers_heard: Gauge,
    /// Nodes written off (heartbeat stale or a new epoch): their cursors removed.
    pub nodes_gone: Counter,
    /// Updates a gone node relayed but never stored, stored by this node.
    pub settled: Counter,
    /// Heartbeats that could not be written.
    pub heartbeat_errors: Counter,
    /// Bus messages that could not reach their room's inbox (full): the room reads its log.
    pub inbox_full: Counter,
    /// Time the heads check takes (one query for all the node's rooms).
    pub heads_check: Histogram,
}

impl ClusterMetrics {
    /// One read of a room's log past its cursor, for `reason` (a `room::CatchUp` name).
    pub fn catch_up(&self, reason: &str) {
        if let Some(i) = CATCH_UP_REASONS.iter().position(|r| *r == reason) {
            self.catch_ups[i].inc();
        }
    }

    pub fn catch_ups(&self, reason: &str) -> u64 {
        CATCH_UP_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.catch_ups[i].get())
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP duet_cluster_catch_ups_total Reads of a room's log past its cursor, by why.\n# TYPE duet_cluster_catch_ups_total counter"
        );
        for (why, c) in CATCH_UP_REASONS.iter().zip(&self.catch_ups) {
            let _ = writeln!(
                out,
                "duet_cluster_catch_ups_total{{why=\"{why}\"}} {}",
                c.get()
            );
        }
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        for (name, help, c) in [
            (
                "duet_cluster_catch_up_errors_total",
                "Reads of a room's log past its cursor that failed.",
                &self.catch_up_errors,
            ),
            (
                "duet_cluster_catch_up_rows_total",
                "Rows those reads returned.",
                &self.catch_up_rows,
            ),
            (
                "duet_cluster_repaired_updates_total",
                "Updates read from the log that the room did not hold (lost on the bus).",
                &self.repaired,
            ),
            (
                "duet_cluster_remote_updates_total",
                "Other nodes' updates heard on the bus.",
                &self.remote_updates,
            ),
            (
                "duet_cluster_digests_sent_total",
                "State-vector digests published.",
                &self.digests_sent,
            ),
            (
                "duet_cluster_digests_behind_total",
                "Digests heard that held something the room lacked.",
                &self.digests_behind,
            ),
            (
                "duet_cluster_nodes_gone_total",
                "Other nodes written off (stale heartbeat or new epoch).",
                &self.nodes_gone,
            ),
            (
                "duet_cluster_settled_updates_total",
                "Updates a gone node relayed but never stored, stored by this node.",
                &self.settled,
            ),
            (
                "duet_cluster_heartbeat_errors_total",
                "Heartbeats that could not be written.",
                &self.heartbeat_errors,
            ),
            (
                "duet_cluster_inbox_full_total",
                "Bus messages dropped because their room's inbox was full (the room reads its log).",
                &self.inbox_full,
            ),
        ] {
            metric(name, "counter", help, c.get().to_string());
        }
        metric(
            "duet_cluster_nodes_alive",
            "gauge",
            "Other nodes with a fresh heartbeat.",
            self.nodes_alive.get().to_string(),
        );
        metric(
            "duet_cluster_peers_heard",
            "gauge",
            "Other nodes heard on the bus in the last 10 s.",
            self.peers_heard.get().to_string(),
        );
        self.heads_check.render(
            out,
            "duet_cluster_heads_check_seconds",
            "Time the periodic check of the loaded rooms' heads takes (one query).",
        );
    }
}

/// Close codes counted by value; anything else lands in `other`.
const CLOSE_CODES: [u16; 11] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 4401, 4403,
];

#[derive(Default)]
pub struct Metrics {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub rooms_loaded: Gauge,
    pub updates_received: Counter,
    pub updates_relayed: Counter,
    pub updates_stored: Counter,
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Messages waiting in members' send queues, over all members.
    pub send_queue_messages: Gauge,
    /// Payload bytes waiting in members' send queues, over all members.
    pub send_queue_bytes: Gauge,
    /// From an update's arrival to its hand-off to the other members' queues.
    pub relay_latency: Histogram,
    /// From an update's arrival to its storage being confirmed (and, for duet clients, its
    /// acknowledgement queued).
    pub ack_latency: Histogram,
    /// Rooms that stopped accepting writes because an append failed (until they unload).
    pub rooms_refusing_writes: Gauge,
    /// Times a room began refusing writes.
    pub write_refusals: Counter,
    /// Compactions the store's compare-and-swap refused (a snapshot covering as much was
    /// already there: on a cluster, another node's).
    pub compactions_refused: Counter,
    /// The durable store's figures, if the store keeps any.
    pub store: Option<Arc<StoreMetrics>>,
    /// A cluster node's figures.
    pub cluster: Option<Arc<ClusterMetrics>>,
    /// Parts kept elsewhere (the bus), rendered last.
    pub sections: Vec<Arc<dyn Section>>,
    closes: [Counter; CLOSE_CODES.len()],
    closes_other: Counter,
}

impl Metrics {
    /// Metrics of a server whose store reports `store`.
    pub fn with_store(store: Option<Arc<StoreMetrics>>) -> Self {
        Self {
            store,
            ..Self::default()
        }
    }

    pub fn count_close(&self, code: u16) {
        match CLOSE_CODES.iter().position(|c| *c == code) {
            Some(i) => self.closes[i].inc(),
            None => self.closes_other.inc(),
        }
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "duet_connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections.get().to_string(),
        );
        metric(
            "duet_connections_total",
            "counter",
            "WebSocket connections accepted.",
            self.connections_total.get().to_string(),
        );
        metric(
            "duet_rooms_loaded",
            "gauge",
            "Rooms held in memory.",
            self.rooms_loaded.get().to_string(),
        );
        metric(
            "duet_updates_received_total",
            "counter",
            "Document updates received from clients.",
            self.updates_received.get().to_string(),
        );
        metric(
            "duet_updates_relayed_total",
            "counter",
            "Document updates queued to other members.",
            self.updates_relayed.get().to_string(),
        );
        metric(
            "duet_updates_stored_total",
            "counter",
            "Document updates the store confirmed.",
            self.updates_stored.get().to_string(),
        );
        metric(
            "duet_messages_received_total",
            "counter",
            "WebSocket data messages received.",
            self.messages_in.get().to_string(),
        );
        metric(
            "duet_bytes_in_total",
            "counter",
            "WebSocket payload bytes received.",
            self.bytes_in.get().to_string(),
        );
        metric(
            "duet_bytes_out_total",
            "counter",
            "WebSocket payload bytes sent.",
            self.bytes_out.get().to_string(),
        );
        metric(
            "duet_send_queue_messages",
            "gauge",
            "Messages waiting in members' send queues.",
            self.send_queue_messages.get().to_string(),
        );
        metric(
            "duet_send_queue_bytes",
            "gauge",
            "Payload bytes waiting in members' send queues.",
            self.send_queue_bytes.get().to_string(),
        );
        metric(
            "duet_rooms_refusing_writes",
            "gauge",
            "Loaded rooms refusing writes after a failed append (they unload once empty).",
            self.rooms_refusing_writes.get().to_string(),
        );
        metric(
            "duet_write_refusals_total",
            "counter",
            "Times a room began refusing writes because the store failed.",
            self.write_refusals.get().to_string(),
        );
        metric(
            "duet_compactions_refused_total",
            "counter",
            "Compactions the store refused: a snapshot covering as much was already stored (another node's).",
            self.compactions_refused.get().to_string(),
        );
        self.relay_latency.render(
            &mut out,
            "duet_update_relay_seconds",
            "Time from an update's arrival to its relay to the other members' queues.",
        );
        self.ack_latency.render(
            &mut out,
            "duet_update_ack_seconds",
            "Time from an update's arrival until it is stored and acknowledged.",
        );
        if let Some(store) = &self.store {
            store.render(&mut out);
        }
        if let Some(cluster) = &self.cluster {
            cluster.render(&mut out);
        }
        for section in &self.sections {
            section.render(&mut out);
        }
        let _ = writeln!(
            out,
            "# HELP duet_closes_total Connections the server closed, by close code.\n# TYPE duet_closes_total counter"
        );
        for (code, counter) in CLOSE_CODES.iter().zip(&self.closes) {
            let _ = writeln!(
                out,
                "duet_closes_total{{code=\"{code}\"}} {}",
                counter.get()
            );
        }
        let _ = writeln!(
            out,
            "duet_closes_total{{code=\"other\"}} {}",
            self.closes_other.get()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.connections.inc();
        m.count_close(1013);
        m.count_close(4999);
        m.relay_latency
            .observe(std::time::Duration::from_micros(300));
        m.relay_latency.observe(std::time::Duration::from_secs(60));
        let text = m.render();
        assert!(
            text.contains("duet_update_relay_seconds_bucket{le=\"0.00025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("duet_update_relay_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("duet_update_relay_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("duet_update_relay_seconds_count 2\n"),
            "{text}"
        );
        assert!(text.contains("duet_update_ack_seconds_count 0\n"), "{text}");
        assert!(text.contains("duet_send_queue_bytes 0\n"), "{text}");
        assert!(text.contains("duet_connections 1\n"), "{text}");
        assert!(text.contains("duet_messages_received_total 0\n"), "{text}");
        assert!(
            text.contains("duet_closes_total{code=\"1013\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("duet_closes_total{code=\"other\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("duet_store_"),
            "no store figures without a store"
        );
    }

    #[test]
    fn renders_the_store_figures() {
        let store = Arc::new(StoreMetrics::default());
        let m = Metrics::with_store(Some(store.clone()));
        store.commits.inc();
        store.updates_per_commit.observe(3);
        store.updates_per_commit.observe(2_000);
        store.commit_errors.inc();
        m.rooms_refusing_writes.inc();
        let text = m.render();
        for line in [
            "duet_store_commits_total 1\n",
            "duet_store_updates_per_commit_bucket{le=\"2\"} 0\n",
            "duet_store_updates_per_commit_bucket{le=\"4\"} 1\n",
            "duet_store_updates_per_commit_bucket{le=\"+Inf\"} 2\n",
            "duet_store_updates_per_commit_sum 2003\n",
            "duet_store_commit_seconds_count 0\n",
            "duet_store_compactions_total 0\n",
            "duet_store_errors_total{op=\"commit\"} 1\n",
            "duet_store_errors_total{op=\"load\"} 0\n",
            "duet_rooms_refusing_writes 1\n",
            "duet_write_refusals_total 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
