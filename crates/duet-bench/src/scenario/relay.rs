//! `relay`: K writers replay a trace into one room while M readers follow.
//!
//! Every writer replays the same trace prefix under its own client id, so the room holds K
//! interleaved copies. Latency is measured on one clock (this process): from the scheduled
//! send time (at a cadence) or the moment before the send (flat out) to the moment a reader
//! has the frame. A reader is done when it has the last update of every writer (servers relay
//! each writer's updates in order).

use super::{Ctx, KeyMap, key_map, keys_of};
use crate::conn::{self, ConnOpts, Sink, Stream, close_code};
use crate::report::{Report, ratio};
use crate::stats::{nanos, summarize};
use crate::trace::{self, Encoded, Trace};
use crate::wire::{Incoming, Protocol};
use crate::{floor, progress};
use anyhow::Context;
use duet_yjs::doc::{doc_with_client, text_of};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct RelayOpts {
    /// Writers replaying the trace, each under its own client id.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Readers following the room.
    #[arg(long, default_value_t = 1)]
    pub readers: usize,
    /// Milliseconds between one writer's edits; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    pub cadence_ms: u64,
    /// Trace name (in ../shared/data/traces or tests/data) or path.
    #[arg(long, default_value = "sveltecomponent")]
    pub trace: String,
    /// Replay only the first N transactions of the trace.
    #[arg(long)]
    pub edits: Option<usize>,
    /// duet only: at most this many updates in flight without an acknowledgement (0 = no
    /// limit), as the duet client's own flow control does.
    #[arg(long, default_value_t = 256)]
    pub window: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Load the room with this snapshot (S1: 315k chars, C1: 534k chars, or a path to a
    /// v2-encoded document) before the replay, to see how relay cost grows with the document.
    #[arg(long)]
    pub preload: Option<String>,
}

/// The pre-encoded workload: one stream per writer, the keys, the text all should reach.
pub struct Workload {
    pub streams: Vec<Encoded>,
    pub keys: Arc<KeyMap>,
    pub expected: String,
}

impl Workload {
    pub fn prepare(trace_name: &str, writers: usize, edits: Option<usize>) -> anyhow::Result<Self> {
        let path = trace::resolve_trace(trace_name)?;
        progress!("pre-encoding {} for {writers} writer(s)", path.display());
        let t = Trace::load(&path)?;
        let mut streams = Vec::with_capacity(writers);
        for w in 0..writers {
            streams.push(trace::encode(&t, 1_000 + w as u64, edits)?);
        }
        if edits.is_none()
            && let Some(first) = streams.first()
        {
            anyhow::ensure!(
                first.end_text == t.end_content,
                "replaying {} did not reproduce its endContent",
                path.display()
            );
        }
        let expected = if writers == 1 {
            streams
                .first()
                .map(|s| s.end_text.clone())
                .unwrap_or_default()
        } else {
            let doc = doc_with_client(999);
            for s in &streams {
                for u in &s.updates {
                    doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
                }
            }
            text_of(&doc)
        };
        let raw: Vec<Vec<Vec<u8>>> = streams.iter().map(|s| s.updates.clone()).collect();
        let keys = Arc::new(key_map(&raw));
        progress!(
            "{} updates per writer, {} chars at the end",
            streams.first().map_or(0, |s| s.updates.len()),
            expected.chars().count()
        );
        Ok(Self {
            streams,
            keys,
            expected,
        })
    }

    pub fn total(&self) -> usize {
        self.streams.iter().map(|s| s.updates.len()).sum()
    }

    /// The last key of each writer: seeing all of them means a reader has everything.
    fn last_keys(&self) -> Vec<(u32, u32)> {
        self.streams
            .iter()
            .enumerate()
            .map(|(w, s)| (w as u32, s.updates.len().saturating_sub(1) as u32))
            .collect()
    }
}

/// Updates delivered to readers so far, all readers together (for progress lines).
pub static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// What one reader saw.
#[derive(Debug, Default)]
pub struct ReaderOut {
    /// (writer, index, receive time in ns since t0), first receipt of each matched update.
    pub samples: Vec<(u32, u32, u64)>,
    pub bytes: u64,
    pub frames: u64,
    pub unmatched: u64,
    pub last_ns: u64,
    pub complete: bool,
    pub close: Option<u16>,
    pub text: Option<String>,
}

/// Follows the room until it has every writer's last update, `deadline` passes, or the
/// server closes. With `verify`, applies every update into a document and returns its text.
pub async fn read_until_done(
    mut rx: Stream,
    protocol: Protocol,
    keys: Arc<KeyMap>,
    last: Vec<(u32, u32)>,
    t0: Instant,
    deadline: Instant,
    verify: Option<Doc>,
) -> ReaderOut {
    let mut out = ReaderOut::default();
    let mut missing = last.len();
    let mut seen_last = vec![false; last.len()];
    let mut seen = std::collections::HashSet::new();
    while missing > 0 {
        // Give up at the deadline, or after 15 s without a frame (a writer was closed).
        let until = deadline.min(Instant::now() + Duration::from_secs(15));
        let next = tokio::time::timeout_at(until.into(), rx.next()).await;
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_)) | None) | Err(_) => break,
        };
        let now = nanos(t0.elapsed());
        if let Some(code) = close_code(&msg) {
            out.close = Some(code);
            break;
        }
        let Message::Binary(frame) = msg else {
            continue;
        };
        out.frames += 1;
        out.bytes += frame.len() as u64;
        let Ok(decoded) = protocol.decode(&frame) else {
            continue;
        };
        let Ok(Incoming::Update(update)) = protocol.classify(&decoded, &frame) else {
            continue;
        };
        if let Some(doc) = &verify
            && let Ok(u) = Update::decode_v1(update)
        {
            let _ = doc.transact_mut().apply_update(u);
        }
        let mut matched = false;
        for k in keys_of(update) {
            if let Some(&(w, i)) = keys.get(&k) {
                matched = true;
                if seen.insert((w, i)) {
                    out.samples.push((w, i, now));
                    DELIVERED.fetch_add(1, Ordering::Relaxed);
                }
                if last.get(w as usize) == Some(&(w, i))
                    && let Some(s) = seen_last.get_mut(w as usize)
                    && !*s
                {
                    *s = true;
                    missing -= 1;
                }
            }
        }
        if !matched {
            out.unmatched += 1;
        }
        out.last_ns = now;
    }
    out.complete = missing == 0;
    out.text = verify.as_ref().map(text_of);
    out
}

/// Sends one writer's frames; returns the wire bytes sent.
pub async fn write_all(
    mut tx: Sink,
    frames: Vec<Message>,
    sent_ns: Arc<Vec<AtomicU64>>,
    t0: Instant,
    cadence: Option<Duration>,
    offset: Duration,
    mut window: Option<Window>,
) -> anyhow::Result<(Sink, u64)> {
    let mut bytes = 0u64;
    tokio::time::sleep_until((t0 + offset).into()).await;
    for (i, frame) in frames.into_iter().enumerate() {
        if let Some(w) = &mut window
            && w.size > 0
        {
            let seq = i as u64 + 2;
            let size = w.size;
            w.acked
                .wait_for(|&a| seq.saturating_sub(a) <= size)
                .await
                .context("the connection closed while waiting for acknowledgements")?;
        }
        let at = match cadence {
            Some(c) => {
                let sched = t0 + offset + c * i as u32;
                floor::sleep_until_precisely(sched).await;
                nanos(sched.saturating_duration_since(t0))
            }
            None => nanos(t0.elapsed()),
        };
        if let Some(slot) = sent_ns.get(i) {
            slot.store(at, Ordering::Relaxed);
        }
        bytes += frame.len() as u64;
        tx.send(frame).await.context("sending an update")?;
        if cadence.is_none() {
            // Flat out on a shared runtime: let this client's own reading (acks, relayed
            // updates) keep pace, as a real client's read loop would.
            tokio::task::yield_now().await;
        }
    }
    Ok((tx, bytes))
}

/// Drains a writer's incoming side (other writers' updates, acks) until the stream ends;
/// stores when `last_seq` was acknowledged (duet; ns since t0) in `acked`.
/// Every acknowledged seq is published on `window` for the writer's flow control.
pub async fn drain(
    mut rx: Stream,
    protocol: Protocol,
    last_seq: u64,
    t0: Instant,
    acked: Arc<AtomicU64>,
    window: tokio::sync::watch::Sender<u64>,
) {
    while let Some(Ok(msg)) = rx.next().await {
        if let Message::Binary(frame) = msg
            && let Ok(d) = protocol.decode(&frame)
            && let Ok(Incoming::Ack(seq)) = protocol.classify(&d, &frame)
        {
            window.send_replace(seq);
            if seq >= last_seq && acked.load(Ordering::Relaxed) == 0 {
                acked.store(nanos(t0.elapsed()).max(1), Ordering::Relaxed);
            }
        }
    }
}

/// Flow control for duet writers: at most `window` updates sent and not yet acknowledged
/// (0 = unlimited). Frame `i` carries seq `i + 2`.
#[derive(Debug, Clone)]
pub struct Window {
    pub size: u64,
    pub acked: tokio::sync::watch::Receiver<u64>,
}

/// Polls until every writer's last update is acknowledged or `limit` passes; the latest
/// acknowledgement time in ns since t0.
pub async fn wait_acks(acks: &[Arc<AtomicU64>], limit: Duration) -> Option<u64> {
    let until = Instant::now() + limit;
    loop {
        let v: Vec<u64> = acks.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        if v.iter().all(|&a| a > 0) {
            return v.into_iter().max();
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Connects `n` clients to `url` concurrently and syncs each.
pub async fn join_many(
    url: &str,
    protocol: Protocol,
    n: usize,
    opts: ConnOpts,
) -> anyhow::Result<Vec<conn::Joined>> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let url = url.to_owned();
        set.spawn(async move { (i, conn::join(&url, protocol, opts).await) });
    }
    let mut out: Vec<Option<conn::Joined>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, j) = r?;
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(j?);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

pub async fn run(ctx: &Ctx, o: &RelayOpts) -> anyhow::Result<Report> {
    let work = Workload::prepare(&o.trace, o.writers.max(1), o.edits)?;
    let mut floor = ctx.floor;
    floor.yrs_apply_us = floor::yrs_apply(&work.streams[0].updates)?;
    let url = conn::room_url(&ctx.target.url, &format!("{}-relay", ctx.run_id));
    let total = work.total();
    let cadence = (o.cadence_ms > 0).then(|| Duration::from_millis(o.cadence_ms));
    progress!(
        "relay: {} writers, {} readers, {} updates, {} into {url}",
        o.writers,
        o.readers,
        total,
        cadence.map_or("flat out".to_owned(), |c| format!(
            "one edit per {c:?} per writer"
        ))
    );
    crate::target::check_nofile(o.writers + o.readers)?;

    // The preloaded document, seeded by a member that stays until the end.
    let mut expected_text = work.expected.clone();
    let mut seeder = None;
    if let Some(name) = &o.preload {
        let path = trace::resolve_snapshot(name)?;
        let snap = trace::load_snapshot_v1(&path)?;
        progress!(
            "preloading {url} with {} ({} bytes v1)",
            path.display(),
            snap.update.len()
        );
        let mut s = conn::join(&url, ctx.protocol, ConnOpts::default()).await?;
        super::rooms::seed(&mut s.ws, ctx.protocol, &snap.update).await?;
        let doc = doc_with_client(998);
        doc.transact_mut()
            .apply_update(Update::decode_v1(&snap.update)?)?;
        for stream in &work.streams {
            for u in &stream.updates {
                doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
            }
        }
        expected_text = text_of(&doc);
        seeder = Some(s);
    }

    let readers = join_many(&url, ctx.protocol, o.readers, ConnOpts::default()).await?;
    let writers = join_many(&url, ctx.protocol, o.writers.max(1), ConnOpts::default()).await?;
    progress!("all {} clients synced", readers.len() + writers.len());

    let m0 = ctx.target.metrics().await;
    let cpu0 = ctx.target.cpu_secs();
    let rss0 = ctx.target.rss();
    let t0 = Instant::now() + Duration::from_millis(100);
    let deadline = t0 + Duration::from_secs(o.timeout_secs);
    let last = work.last_keys();

    let mut reader_tasks = JoinSet::new();
    for (r, j) in readers.into_iter().enumerate() {
        let (_tx, rx) = j.ws.split();
        let keys = work.keys.clone();
        let last = last.clone();
        // Reader 0 checks the text: it starts from what it was sent on joining.
        let verify = if r == 0 {
            let doc = doc_with_client(5_000);
            doc.transact_mut()
                .apply_update(Update::decode_v1(&j.doc)?)?;
            Some(doc)
        } else {
            None
        };
        let protocol = ctx.protocol;
        reader_tasks.spawn(async move {
            let out = read_until_done(rx, protocol, keys, last, t0, deadline, verify).await;
            drop(_tx);
            (r, out)
        });
    }
    let mut sent_all = Vec::new();
    let mut writer_tasks = JoinSet::new();
    let mut drains = JoinSet::new();
    let mut acks = Vec::new();
    for (w, j) in writers.into_iter().enumerate() {
        let (tx, rx) = j.ws.split();
        let stream = &work.streams[w];
        // Sequence 1 went with the sync answer.
        let frames: Vec<Message> = stream
            .updates
            .iter()
            .enumerate()
            .map(|(i, u)| Message::binary(ctx.protocol.update(i as u64 + 2, u)))
            .collect();
        let last_seq = frames.len() as u64 + 1;
        let sent: Arc<Vec<AtomicU64>> =
            Arc::new((0..frames.len()).map(|_| AtomicU64::new(0)).collect());
        sent_all.push(sent.clone());
        // Spread the writers over one cadence period, as independent typists would be.
        let offset = cadence.map_or(Duration::ZERO, |c| c * w as u32 / o.writers.max(1) as u32);
        let (wtx, wrx) = tokio::sync::watch::channel(0u64);
        let window = (ctx.protocol == Protocol::Duet).then(|| Window {
            size: o.window,
            acked: wrx,
        });
        writer_tasks.spawn(write_all(tx, frames, sent, t0, cadence, offset, window));
        let acked = Arc::new(AtomicU64::new(0));
        acks.push(acked.clone());
        drains.spawn(drain(rx, ctx.protocol, last_seq, t0, acked, wtx));
    }

    // At a cadence, the floor is also taken beside the run: round trips to an echo on its own
    // thread, paced like the room's edits (one per cadence / writers, between them), so both
    // pay the same wake-ups and share the machine alike.
    let paced = match cadence {
        Some(c) => {
            let every = c / o.writers.max(1) as u32;
            let last = t0 + c * work.streams[0].updates.len() as u32;
            let echo = floor::spawn_echo_thread()?;
            Some(tokio::spawn(floor::paced_round_trips(
                echo,
                t0 + every / 2,
                every,
                last,
            )))
        }
        None => None,
    };

    // Progress while it runs.
    let expected = total * o.readers;
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            progress!(
                "  ... {:.0} s, {} of {expected} deliveries",
                t0.elapsed().as_secs_f64(),
                DELIVERED.load(Ordering::Relaxed)
            );
        }
    });
    let mut reader_outs: Vec<ReaderOut> = (0..o.readers).map(|_| ReaderOut::default()).collect();
    while let Some(r) = reader_tasks.join_next().await {
        let (i, out) = r?;
        if let Some(slot) = reader_outs.get_mut(i) {
            *slot = out;
        }
    }
    let mut sinks = Vec::new();
    let mut bytes_sent = 0u64;
    while let Some(r) = writer_tasks.join_next().await {
        let (sink, b) = r??;
        bytes_sent += b;
        sinks.push(sink);
    }
    let last_ack = if ctx.protocol == Protocol::Duet {
        wait_acks(&acks, Duration::from_secs(30)).await
    } else {
        None
    };
    ticker.abort();
    let paced_rtt = match paced {
        Some(p) => Some(p.await??),
        None => None,
    };
    let cpu1 = ctx.target.cpu_secs();
    let rss1 = ctx.target.rss();
    let m1 = ctx.target.metrics().await;
    for mut s in sinks {
        let _ = s.close().await;
    }
    drains.abort_all();

    // Figures.
    let mut lat = Vec::new();
    for out in &reader_outs {
        for &(w, i, recv) in &out.samples {
            if let Some(sent) = sent_all.get(w as usize).and_then(|s| s.get(i as usize)) {
                lat.push(recv.saturating_sub(sent.load(Ordering::Relaxed)));
            }
        }
    }
    let expected_samples = total * o.readers;
    let lat = summarize(&mut lat);
    let complete = reader_outs.iter().all(|r| r.complete);
    let converge_ns = reader_outs.iter().map(|r| r.last_ns).max().unwrap_or(0);
    let verified = reader_outs.first().and_then(|r| r.text.as_ref()) == Some(&expected_text);
    drop(seeder);
    let closes: Vec<u16> = reader_outs.iter().filter_map(|r| r.close).collect();
    let last_sched = sent_all
        .iter()
        .filter_map(|s| s.last().map(|a| a.load(Ordering::Relaxed)))
        .max()
        .unwrap_or(0);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    // Every update goes to every reader and to every other writer.
    let delivered = (total * (o.readers + o.writers.max(1) - 1)) as f64;
    let cpu_per_update = cpu.map(|c| c * 1e6 / total as f64);
    let bytes_in_readers: u64 = reader_outs.iter().map(|r| r.bytes).sum();

    let mut rep = Report::new("relay", ctx.protocol, &url, floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "updates sent",
        Some(total as f64),
        "",
        format!("{} writers", o.writers),
    );
    rep.row(
        "converged",
        Some(if complete && verified { 1.0 } else { 0.0 }),
        "bool",
        format!(
            "all readers complete: {complete}; reader 0 text == expected: {verified}{}",
            if closes.is_empty() {
                String::new()
            } else {
                format!("; closes {closes:?}")
            }
        ),
    );
    rep.row(
        "time to full convergence",
        Some(converge_ns as f64 / 1e6),
        "ms",
        "from the first scheduled send to the last reader's last update".into(),
    );
    if cadence.is_some() {
        rep.row(
            "tail after last send",
            Some(converge_ns.saturating_sub(last_sched) as f64 / 1e6),
            "ms",
            String::new(),
        );
    } else {
        rep.row(
            "throughput",
            Some(total as f64 / (converge_ns.max(1) as f64 / 1e9)),
            "upd/s",
            "updates fully delivered per second".into(),
        );
    }
    rep.row(
        "latency p50",
        Some(lat.p50_us),
        "µs",
        ratio(Some(lat.p50_us), floor.ws_rtt.p50_us, "WebSocket RTT p50"),
    );
    rep.row(
        "latency p99",
        Some(lat.p99_us),
        "µs",
        ratio(Some(lat.p99_us), floor.ws_rtt.p50_us, "WebSocket RTT p50"),
    );
    if let Some(p) = &paced_rtt {
        rep.row(
            "latency p50 vs paced RTT",
            Some(lat.p50_us / p.p50_us.max(f64::MIN_POSITIVE)),
            "x",
            format!(
                "paced WebSocket RTT beside the run: p50 {:.1} µs, p99 {:.1} µs ({} samples)",
                p.p50_us, p.p99_us, p.count
            ),
        );
    }
    rep.row("latency max", Some(lat.max_us), "µs", String::new());
    rep.row(
        "latency samples",
        Some(lat.count as f64),
        "",
        format!(
            "of {expected_samples} expected; {} frames unmatched",
            reader_outs.iter().map(|r| r.unmatched).sum::<u64>()
        ),
    );
    rep.row(
        "server CPU",
        cpu,
        "s",
        if cpu.is_none() {
            "pass --server-pid or --spawn-server".into()
        } else {
            String::new()
        },
    );
    rep.row(
        "server CPU per 1000 updates",
        cpu.map(|c| c * 1e3 / total as f64),
        "s",
        format!("{} delivered messages", delivered),
    );
    rep.row(
        "server CPU per update",
        cpu_per_update,
        "µs",
        ratio(cpu_per_update, floor.yrs_apply_us, "yrs decode+apply"),
    );
    rep.row(
        "server CPU per delivered message",
        cpu.map(|c| c * 1e6 / delivered),
        "µs",
        String::new(),
    );
    rep.row(
        "bytes per update sent",
        Some(bytes_sent as f64 / total as f64),
        "B",
        "WebSocket payload, client to server".into(),
    );
    rep.row(
        "bytes per update received",
        Some(bytes_in_readers as f64 / (total * o.readers).max(1) as f64),
        "B",
        "WebSocket payload, server to each reader".into(),
    );
    rep.row(
        "server RSS change",
        rss0.zip(rss1).map(|(a, b)| (b as f64 - a as f64) / 1024.0),
        "KiB",
        String::new(),
    );
    if ctx.protocol == Protocol::Duet {
        rep.row(
            "last ack",
            last_ack.map(|ns| ns as f64 / 1e6),
            "ms",
            "all writers' last updates stored".into(),
        );
    }
    if let (Some(a), Some(b)) = (&m0, &m1) {
        let d = |k: &str| b.get(k).zip(a.get(k)).map(|(b, a)| b - a);
        rep.row(
            "metrics: relayed",
            d("duet_updates_relayed_total"),
            "",
            String::new(),
        );
        rep.row(
            "metrics: stored",
            d("duet_updates_stored_total"),
            "",
            String::new(),
        );
        rep.row(
            "metrics: bytes out per update",
            d("duet_bytes_out_total").map(|v| v / total as f64),
            "B",
            String::new(),
        );
        // duet-server's own histograms: how much of the latency is inside the server.
        let mean_us = |name: &str| {
            let sum = d(&format!("{name}_sum"))?;
            let count = d(&format!("{name}_count"))?;
            (count > 0.0).then(|| sum / count * 1e6)
        };
        // The median's bucket: the smallest bucket bound holding half the run's observations.
        let p50_bound_us = |name: &str| {
            let count = d(&format!("{name}_count"))?;
            let mut bounds: Vec<(f64, f64)> = b
                .keys()
                .filter_map(|k| {
                    let le = k.strip_prefix(&format!("{name}_bucket{{le=\""))?;
                    let le: f64 = le.strip_suffix("\"}")?.parse().ok()?;
                    Some((le, d(k)?))
                })
                .collect();
            bounds.sort_by(|x, y| x.0.total_cmp(&y.0));
            bounds
                .into_iter()
                .find(|(_, n)| *n >= count / 2.0 && count > 0.0)
                .map(|(le, _)| le * 1e6)
        };
        rep.row(
            "metrics: arrival to relay, mean",
            mean_us("duet_update_relay_seconds"),
            "µs",
            format!(
                "inside the server: read to queued for every other member; median at most {} µs",
                p50_bound_us("duet_update_relay_seconds").map_or("?".into(), |v| format!("{v:.0}"))
            ),
        );
        rep.row(
            "metrics: arrival to ack, mean",
            mean_us("duet_update_ack_seconds"),
            "µs",
            "inside the server: read to stored and acknowledged".into(),
        );
    }
    Ok(rep)
}
