//! A cluster on loopback for end-to-end tests: a private PostgreSQL (one database per test) and
//! redis-server ([`crate::services`]), real `duet-server` nodes started with `--postgres` and
//! `--redis`, and the round-robin [`Balancer`] in front of them. Without the engines' binaries
//! [`Cluster::start`] says SKIPPED and returns `None` (a failure under `CI=true`).
//!
//! The nodes run with short timings so that tests see within a second what production sees
//! within seconds: heartbeats every 200 ms, a node gone after 1 s without one, heads checked
//! every 300 ms, digests every 2 s.

use crate::balancer::Balancer;
use crate::server::ServerProcess;
use crate::services::{Postgres, Redis};
use anyhow::Context;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The timings every test node runs with (see the module's documentation).
pub const NODE_TIMINGS: [&str; 8] = [
    "--heartbeat-ms",
    "200",
    "--stale-after-ms",
    "1000",
    "--heads-check-ms",
    "300",
    "--digest-ms",
    "2000",
];

/// Fields drop in order: the nodes stop before the engines they use.
pub struct Cluster {
    pub nodes: Vec<ServerProcess>,
    pub balancer: Balancer,
    pub pg: Postgres,
    pub db: String,
    pub redis: Redis,
    /// Whether the nodes are given the Redis (`--redis`); without it they hear each other's
    /// edits only through the log, at each heads check.
    bus: bool,
    /// Arguments every node gets beyond the engines and its id.
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts PostgreSQL, Redis, `nodes` nodes with `extra` arguments and `env`, and the
    /// balancer; `None` when the engines are missing (SKIPPED said).
    pub async fn start(
        test: &str,
        nodes: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Option<Self>> {
        let Some(pg) = Postgres::start(test)? else {
            return Ok(None);
        };
        let Some(redis) = Redis::start(test)? else {
            return Ok(None);
        };
        let db = pg.create_database(test).await?;
        let mut cluster = Self {
            pg,
            db,
            redis,
            nodes: Vec::new(),
            balancer: Balancer::start(Vec::new()).await?,
            bus: true,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for _ in 0..nodes {
            cluster.add_node()?;
        }
        Ok(Some(cluster))
    }

    /// Like [`Cluster::start`], but the nodes get no `--redis`: PostgreSQL alone.
    pub async fn start_without_bus(
        test: &str,
        nodes: usize,
        extra: &[&str],
    ) -> anyhow::Result<Option<Self>> {
        let Some(mut cluster) = Self::start(test, 0, extra, &[]).await? else {
            return Ok(None);
        };
        cluster.bus = false;
        for _ in 0..nodes {
            cluster.add_node()?;
        }
        Ok(Some(cluster))
    }

    /// The arguments of node `i`: the test timings, unless `extra` sets one of them.
    fn args(&self, i: usize) -> Vec<String> {
        let mut args: Vec<String> = ["--postgres", &self.db, "--node-id", &format!("node{i}")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.bus {
            args.extend(["--redis".to_owned(), self.redis.url()]);
        }
        for pair in NODE_TIMINGS.chunks(2) {
            if !self.extra.iter().any(|a| a == pair[0]) {
                args.extend(pair.iter().map(|s| s.to_string()));
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts one more node and puts it behind the balancer; returns its index.
    pub fn add_node(&mut self) -> anyhow::Result<usize> {
        self.add_node_with(&[])
    }

    /// Like [`Cluster::add_node`], with environment variables for this node only (a
    /// failpoint, say).
    pub fn add_node_with(&mut self, env: &[(&str, &str)]) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        let args = self.args(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(env.iter().copied())
            .collect();
        let node = ServerProcess::start_with_env(&args, &env)
            .with_context(|| format!("starting node{i}"))?;
        self.nodes.push(node);
        self.rebalance();
        Ok(i)
    }

    /// Puts every node behind the balancer again (after a restart).
    pub fn rebalance(&self) {
        self.balancer
            .set_backends(self.nodes.iter().map(|n| n.addr).collect());
    }

    /// Node `i`'s URL, bypassing the balancer.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// One value from node `i`'s `/metrics` (`name` with its labels, as the line starts).
    pub async fn metric(&self, i: usize, name: &str) -> anyhow::Result<f64> {
        let (_, body) = get(self.nodes[i].addr, "/metrics").await?;
        let prefix = format!("{name} ");
        body.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {name} in node{i}'s metrics"))
    }

    /// Node `i`'s `/healthz`: status and body.
    pub async fn healthz(&self, i: usize) -> anyhow::Result<(u16, String)> {
        get(self.nodes[i].addr, "/healthz").await
    }

    /// A connection to the cluster's database, for checks.
    pub async fn sql(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.db, tokio_postgres::NoTls)
            .await
            .context("connecting to the test database")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The seqs of `room`'s log rows, in order, and its head.
    pub async fn log_of(&self, room: &str) -> anyhow::Result<(Vec<i64>, i64)> {
        let sql = self.sql().await?;
        let head: i64 = sql
            .query_opt("SELECT head FROM duet_rooms WHERE name = $1", &[&room])
            .await?
            .map_or(0, |r| r.get(0));
        let seqs = sql
            .query(
                "SELECT l.seq FROM duet_log l JOIN duet_rooms r ON r.id = l.room
                 WHERE r.name = $1 ORDER BY l.seq",
                &[&room],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((seqs, head))
    }
}

/// A plain HTTP GET on loopback: status and body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut response))
        .await
        .context("no answer")??;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
