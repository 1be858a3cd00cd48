//! `join`: one member seeds a room with a large document (a snapshot such as S1), then N
//! clients join at once. Join time runs from connect to holding the whole sync step 2; the
//! floor is one transfer of the same bytes over a bare WebSocket plus loading them with yrs.

use super::Ctx;
use super::rooms::seed;
use crate::conn::{self, ConnOpts};
use crate::report::{Report, ratio};
use crate::stats::{nanos, summarize};
use crate::trace;
use crate::{floor, progress};
use duet_yjs::doc::doc_with_client;
use tokio::task::JoinSet;
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, Transact, Update};

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct JoinOpts {
    /// Clients joining at once.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Snapshot name (S1, C1 in ../shared/data/snapshots) or path to a v2-encoded document.
    #[arg(long, default_value = "S1")]
    pub snapshot: String,
    /// Rounds of N joins (a fresh room each round is not needed: the document stays).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

pub async fn run(ctx: &Ctx, o: &JoinOpts) -> anyhow::Result<Report> {
    crate::target::check_nofile(o.clients + 1)?;
    let path = trace::resolve_snapshot(&o.snapshot)?;
    let snap = trace::load_snapshot_v1(&path)?;
    let doc = snap.update.clone();
    let floor_us = floor::transfer_and_load(&doc).await?;
    let url = conn::room_url(&ctx.target.url, &format!("{}-join", ctx.run_id));
    progress!(
        "join: seeding {url} with {} ({} bytes v1, roots {:?})",
        path.display(),
        doc.len(),
        snap.roots
    );
    let mut seeder = conn::join(&url, ctx.protocol, ConnOpts::default()).await?;
    seed(&mut seeder.ws, ctx.protocol, &doc).await?;

    let mut samples = Vec::new();
    let mut checked = false;
    let mut got_bytes = 0usize;
    for round in 0..o.rounds.max(1) {
        let mut set = JoinSet::new();
        for _ in 0..o.clients {
            let url = url.clone();
            let protocol = ctx.protocol;
            set.spawn(async move { conn::join(&url, protocol, ConnOpts::default()).await });
        }
        let mut joined = Vec::new();
        while let Some(r) = set.join_next().await {
            let j = r??;
            samples.push(nanos(j.elapsed));
            joined.push(j);
        }
        // Outside the timing: one client's copy really is the document.
        if !checked && let Some(j) = joined.first() {
            got_bytes = j.doc.len();
            let d = doc_with_client(4_242);
            d.transact_mut().apply_update(Update::decode_v1(&j.doc)?)?;
            let have = d.transact().state_vector();
            anyhow::ensure!(
                have == snap.state_vector,
                "a joined client's state vector differs from the snapshot's"
            );
            checked = true;
        }
        progress!("  round {} done", round + 1);
    }
    drop(seeder);
    let s = summarize(&mut samples);
    let mut rep = Report::new("join", ctx.protocol, &url, ctx.floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "document",
        Some(doc.len() as f64),
        "B",
        format!("v1; a joiner received {got_bytes} B (state vector checked)"),
    );
    rep.row(
        "join p50",
        Some(s.p50_us / 1e3),
        "ms",
        ratio(Some(s.p50_us), floor_us, "transfer+load once"),
    );
    rep.row(
        "join p99",
        Some(s.p99_us / 1e3),
        "ms",
        ratio(Some(s.p99_us), floor_us, "transfer+load once"),
    );
    rep.row(
        "floor: transfer + yrs load once",
        Some(floor_us / 1e3),
        "ms",
        "bare WebSocket, same process".into(),
    );
    rep.row(
        "joins",
        Some(s.count as f64),
        "",
        format!("{} at once", o.clients),
    );
    Ok(rep)
}
