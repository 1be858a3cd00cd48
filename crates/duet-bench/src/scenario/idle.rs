//! `idle`: C connections spread over R rooms sync and then sit idle; the server's RSS growth
//! divided by C is the memory one idle connection costs (rooms are few and empty, so their
//! own cost is small next to C connections; `rooms` measures it separately).

use super::Ctx;
use crate::conn::{self, ConnOpts};
use crate::progress;
use crate::report::Report;
use std::time::Duration;
use tokio::task::JoinSet;

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct IdleOpts {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Rooms to spread them over.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Connections opened at a time.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Seconds to wait after the last sync before reading RSS.
    #[arg(long, default_value_t = 2)]
    pub settle_secs: u64,
}

pub async fn run(ctx: &Ctx, o: &IdleOpts) -> anyhow::Result<Report> {
    crate::target::check_nofile(o.connections)?;
    let rooms = o.rooms.max(1);
    let url_of = |i: usize| {
        conn::room_url(
            &ctx.target.url,
            &format!("{}-idle-{}", ctx.run_id, i % rooms),
        )
    };
    // One warm-up connection per room first, so the rooms themselves (and the server's first
    // allocations) are in the baseline rather than in the per-connection figure.
    let mut warm = Vec::new();
    for r in 0..rooms {
        warm.push(conn::join(&url_of(r), ctx.protocol, ConnOpts::default()).await?);
    }
    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let m0 = ctx.target.metrics().await;
    let rss0 = ctx.target.rss();
    progress!(
        "idle: opening {} connections over {rooms} rooms (server RSS {:.1} MiB)",
        o.connections,
        rss0.unwrap_or(0) as f64 / 1048576.0
    );
    let opts = ConnOpts {
        small_buffers: true,
        recv_buffer: None,
    };
    let mut held = Vec::with_capacity(o.connections);
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < o.connections || !set.is_empty() {
        while next < o.connections && set.len() < o.concurrency.max(1) {
            let url = url_of(next);
            let protocol = ctx.protocol;
            set.spawn(async move { conn::join(&url, protocol, opts).await });
            next += 1;
        }
        if let Some(r) = set.join_next().await {
            held.push(r??);
            if held.len() % 250 == 0 {
                progress!("  {} connected", held.len());
            }
        }
    }
    // The sockets are held but nobody reads them: the server sees idle members.
    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let rss1 = ctx.target.rss();
    let m1 = ctx.target.metrics().await;
    let join_ms: Vec<u64> = held
        .iter()
        .map(|j| crate::stats::nanos(j.elapsed))
        .collect();
    let mut join_ms = join_ms;
    let join = crate::stats::summarize(&mut join_ms);
    drop(held);
    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let rss2 = ctx.target.rss();
    drop(warm);

    let per_conn = rss0
        .zip(rss1)
        .map(|(a, b)| (b as f64 - a as f64) / o.connections as f64 / 1024.0);
    let mut rep = Report::new("idle", ctx.protocol, &ctx.target.url, ctx.floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "connections",
        Some(o.connections as f64),
        "",
        format!("over {rooms} rooms"),
    );
    rep.row(
        "server RSS before",
        rss0.map(|b| b as f64 / 1048576.0),
        "MiB",
        "with one member per room".into(),
    );
    rep.row(
        "server RSS with all connected",
        rss1.map(|b| b as f64 / 1048576.0),
        "MiB",
        String::new(),
    );
    rep.row(
        "RSS per idle connection",
        per_conn,
        "KiB",
        if per_conn.is_none() {
            "pass --server-pid or --spawn-server".into()
        } else {
            "target ≤ 8 KiB".into()
        },
    );
    rep.row(
        "server RSS after they closed",
        rss2.map(|b| b as f64 / 1048576.0),
        "MiB",
        String::new(),
    );
    rep.row(
        "connect+sync p50",
        Some(join.p50_us / 1e3),
        "ms",
        format!("{} at a time", o.concurrency),
    );
    rep.row(
        "connect+sync p99",
        Some(join.p99_us / 1e3),
        "ms",
        String::new(),
    );
    if let (Some(a), Some(b)) = (m0, m1) {
        rep.row(
            "metrics: connections",
            b.get("duet_connections").copied(),
            "",
            format!(
                "before: {}",
                a.get("duet_connections").copied().unwrap_or(0.0)
            ),
        );
    }
    Ok(rep)
}
