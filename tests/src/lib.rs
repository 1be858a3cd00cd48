//! Shared helpers for duet's end-to-end tests: real `duet-server` processes on loopback, a TCP
//! proxy that can cut connections, a round-robin load balancer, private PostgreSQL and Redis
//! servers and clusters of nodes on them, a raw protocol client for poking the server
//! directly, the editing-trace loader, and polling waits with deadlines (never fixed sleeps).

pub mod balancer;
pub mod clients;
pub mod cluster;
pub mod frames;
pub mod node;
pub mod proxy;
pub mod raw;
pub mod server;
pub mod services;
pub mod tmux;
pub mod trace;
pub mod ydoc;
pub mod yraw;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails with `what` after `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Builds a `Document`-free random room name so tests sharing a server never collide.
pub fn unique_room(prefix: &str) -> duet_protocol::RoomName {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}-{}-{n}", std::process::id());
    duet_protocol::RoomName::new(&name).unwrap_or_else(|e| panic!("bad test room name: {e}"))
}
