//! Benchmark of the SQLite store: acknowledged appends per second with group commit against
//! one transaction per update, and the append-to-acknowledgement latency (p50, p99).
//!
//! Run: `cargo run --release -p duet-server --example store_bench`
//!
//! Each run appends 32-byte updates round-robin over 100 rooms into a fresh database in the
//! system temp directory (`synchronous=FULL`, WAL), keeping up to `window` appends in flight,
//! as busy rooms do. Compaction is off so that only the write path is measured. The paced run
//! offers a steady 10,000 updates/s to show latency below saturation.

use duet_protocol::RoomName;
use duet_server::sqlite::{SqliteOptions, SqliteStore};
use duet_server::store::Store;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::time::{Duration, Instant};

struct Run {
    name: &'static str,
    max_batch: usize,
    updates: usize,
    window: usize,
    /// Offered load in updates per second; `None`: as fast as acknowledgements allow.
    rate: Option<u64>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn bench(run: &Run) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "duet-store-bench-{}-{}",
        std::process::id(),
        run.name
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let options = SqliteOptions {
        max_batch: run.max_batch,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir, options)?;
    let rooms: Vec<RoomName> = (0..100)
        .map(|i| RoomName::new(&format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(run.updates);
    let start = Instant::now();
    for i in 0..run.updates {
        if let Some(rate) = run.rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            while Instant::now() < due {
                tokio::select! {
                    Some(done) = in_flight.next(), if !in_flight.is_empty() => latencies.push(done?),
                    () = tokio::time::sleep_until(due.into()) => {}
                }
            }
        }
        while in_flight.len() >= run.window {
            if let Some(done) = in_flight.next().await {
                latencies.push(done?);
            }
        }
        let sent = Instant::now();
        let append = store.append(&rooms[i % rooms.len()], vec![(i % 251) as u8; 32]);
        in_flight.push(async move { append.await.map(|_seq| sent.elapsed()) });
    }
    while let Some(done) = in_flight.next().await {
        latencies.push(done?);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    println!(
        "{:<34} {:>8} updates {:>9.0} acked/s  p50 {:>8.2} ms  p99 {:>8.2} ms  {:>6} commits",
        run.name,
        run.updates,
        run.updates as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        store.commits(),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = [
        Run {
            name: "group commit, saturated",
            max_batch: 512,
            updates: 200_000,
            window: 4096,
            rate: None,
        },
        Run {
            name: "group commit, 10k/s offered",
            max_batch: 512,
            updates: 50_000,
            window: 4096,
            rate: Some(10_000),
        },
        Run {
            name: "one txn per update, saturated",
            max_batch: 1,
            updates: 3_000,
            window: 4096,
            rate: None,
        },
    ];
    for run in &runs {
        bench(run).await?;
    }
    Ok(())
}
