//! `slow`: writers type while readers follow, twice: once as a baseline, once with one more
//! member that joins and then stops reading (with a small receive buffer, so the server's
//! writes back up soon). Expected: the server's RSS stays bounded, the other readers' latency
//! does not change, the slow member is closed with 1013 and, on reconnecting, resyncs to the
//! same text as everyone else.

use super::Ctx;
use super::relay::{Window, Workload, drain, join_many, read_until_done, write_all};
use crate::conn::{self, ConnOpts, close_code};
use crate::progress;
use crate::report::{Report, ratio};
use crate::stats::{Summary, summarize};
use crate::wire::Protocol;
use duet_yjs::doc::{doc_with_client, text_of};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct SlowOpts {
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Milliseconds between one writer's edits; 0 = flat out.
    #[arg(long, default_value_t = 5)]
    pub cadence_ms: u64,
    #[arg(long, default_value = "automerge-paper")]
    pub trace: String,
    #[arg(long, default_value_t = 4000)]
    pub edits: usize,
    /// SO_RCVBUF of the slow member, in bytes.
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: u32,
}

struct Phase {
    latency: Summary,
    complete: bool,
    rss_max: Option<u64>,
    rss_start: Option<u64>,
    slow_close: Option<u16>,
    slow_frames: u64,
    resynced: Option<bool>,
    writer_errors: usize,
}

async fn phase(ctx: &Ctx, o: &SlowOpts, work: &Workload, with_slow: bool) -> anyhow::Result<Phase> {
    let room = format!("{}-slow-{}", ctx.run_id, if with_slow { "b" } else { "a" });
    let url = conn::room_url(&ctx.target.url, &room);
    let readers = join_many(&url, ctx.protocol, o.readers, ConnOpts::default()).await?;
    let slow = if with_slow {
        let opts = ConnOpts {
            small_buffers: false,
            recv_buffer: Some(o.slow_rcvbuf),
        };
        Some(conn::join(&url, ctx.protocol, opts).await?)
    } else {
        None
    };
    let writers = join_many(&url, ctx.protocol, o.writers, ConnOpts::default()).await?;
    let cadence = (o.cadence_ms > 0).then(|| Duration::from_millis(o.cadence_ms));
    let t0 = Instant::now() + Duration::from_millis(100);
    let deadline = t0 + Duration::from_secs(600);
    let last: Vec<(u32, u32)> = work
        .streams
        .iter()
        .enumerate()
        .map(|(w, s)| (w as u32, s.updates.len().saturating_sub(1) as u32))
        .collect();
    let rss_start = ctx.target.rss();
    let mut readers_set = JoinSet::new();
    let mut keep = Vec::new();
    for j in readers {
        let (tx, rx) = j.ws.split();
        keep.push(tx);
        let keys = work.keys.clone();
        let last = last.clone();
        let protocol = ctx.protocol;
        readers_set.spawn(read_until_done(
            rx, protocol, keys, last, t0, deadline, None,
        ));
    }
    let mut sent_all = Vec::new();
    let mut writers_set = JoinSet::new();
    let mut drains = JoinSet::new();
    for (w, j) in writers.into_iter().enumerate() {
        let (tx, rx) = j.ws.split();
        let frames: Vec<Message> = work.streams[w]
            .updates
            .iter()
            .enumerate()
            .map(|(i, u)| Message::binary(ctx.protocol.update(i as u64 + 2, u)))
            .collect();
        let sent: Arc<Vec<AtomicU64>> =
            Arc::new((0..frames.len()).map(|_| AtomicU64::new(0)).collect());
        sent_all.push(sent.clone());
        let offset = cadence.map_or(Duration::ZERO, |c| c * w as u32 / o.writers.max(1) as u32);
        let (wtx, wrx) = tokio::sync::watch::channel(0u64);
        let window = (ctx.protocol == Protocol::Duet).then(|| Window {
            size: 256,
            acked: wrx,
        });
        writers_set.spawn(write_all(tx, frames, sent, t0, cadence, offset, window));
        let never = Arc::new(AtomicU64::new(0));
        drains.spawn(drain(rx, ctx.protocol, u64::MAX, t0, never, wtx));
    }
    // Sample the server's RSS while they type.
    let target_pid = ctx.target.pid;
    let sampler = tokio::spawn(async move {
        let t = crate::target::Target::remote("ws://unused", target_pid);
        let mut max = None::<u64>;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            max = max.max(t.rss());
            if Instant::now() > deadline {
                return max;
            }
        }
    });
    let mut lat = Vec::new();
    let mut complete = true;
    while let Some(r) = readers_set.join_next().await {
        let out = r?;
        complete &= out.complete;
        for (w, i, recv) in out.samples {
            if let Some(s) = sent_all.get(w as usize).and_then(|s| s.get(i as usize)) {
                lat.push(recv.saturating_sub(s.load(Ordering::Relaxed)));
            }
        }
    }
    let mut writer_errors = 0;
    while let Some(r) = writers_set.join_next().await {
        if !matches!(r, Ok(Ok(_))) {
            writer_errors += 1;
        }
    }
    sampler.abort();
    let rss_max = ctx.target.rss().max(sampler.await.ok().flatten());
    drains.abort_all();

    let (mut slow_close, mut slow_frames, mut resynced) = (None, 0, None);
    if let Some(j) = slow {
        // Now read what the server left us: the buffered frames, then (expected) close 1013.
        let (_keep_open, mut rx) = j.ws.split();
        let until = Instant::now() + Duration::from_secs(30);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until.into(), rx.next()).await {
            if let Some(code) = close_code(&m) {
                slow_close = Some(code);
                break;
            }
            slow_frames += 1;
        }
        // Reconnect and resync: the document must equal what the others converged to.
        let again = conn::join(&url, ctx.protocol, ConnOpts::default()).await?;
        let doc = doc_with_client(31_337);
        doc.transact_mut()
            .apply_update(Update::decode_v1(&again.doc)?)?;
        resynced = Some(text_of(&doc) == work.expected);
    }
    drop(keep);
    Ok(Phase {
        latency: summarize(&mut lat),
        complete,
        rss_max,
        rss_start,
        slow_close,
        slow_frames,
        resynced,
        writer_errors,
    })
}

pub async fn run(ctx: &Ctx, o: &SlowOpts) -> anyhow::Result<Report> {
    crate::target::check_nofile(o.writers + o.readers + 2)?;
    let work = Workload::prepare(&o.trace, o.writers.max(1), Some(o.edits))?;
    progress!("slow: baseline phase (no slow member)");
    let a = phase(ctx, o, &work, false).await?;
    progress!("slow: phase with a member that stops reading");
    let b = phase(ctx, o, &work, true).await?;
    let mib = |v: Option<u64>| v.map(|b| b as f64 / 1048576.0);
    let mut rep = Report::new("slow", ctx.protocol, &ctx.target.url, ctx.floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "others complete",
        Some(if a.complete && b.complete { 1.0 } else { 0.0 }),
        "bool",
        format!(
            "baseline {}, with slow member {}; writers closed: {} and {}",
            a.complete, b.complete, a.writer_errors, b.writer_errors
        ),
    );
    rep.row(
        "latency p50 baseline",
        Some(a.latency.p50_us),
        "µs",
        String::new(),
    );
    rep.row(
        "latency p50 with slow member",
        Some(b.latency.p50_us),
        "µs",
        ratio(Some(b.latency.p50_us), a.latency.p50_us, "baseline"),
    );
    rep.row(
        "latency p99 baseline",
        Some(a.latency.p99_us),
        "µs",
        String::new(),
    );
    rep.row(
        "latency p99 with slow member",
        Some(b.latency.p99_us),
        "µs",
        ratio(Some(b.latency.p99_us), a.latency.p99_us, "baseline"),
    );
    rep.row(
        "server RSS max, baseline",
        mib(a.rss_max),
        "MiB",
        format!("at start {:.1}", mib(a.rss_start).unwrap_or(0.0)),
    );
    rep.row(
        "server RSS max, with slow member",
        mib(b.rss_max),
        "MiB",
        format!("at start {:.1}", mib(b.rss_start).unwrap_or(0.0)),
    );
    rep.row(
        "slow member close code",
        b.slow_close.map(f64::from),
        "",
        format!("after {} buffered frames (1013 expected)", b.slow_frames),
    );
    rep.row(
        "slow member resynced",
        b.resynced.map(|r| if r { 1.0 } else { 0.0 }),
        "bool",
        "text after reconnect == the others' text".into(),
    );
    Ok(rep)
}
