//! `team`: people typing at human speed. R rooms of K members; every member types one
//! character every C ms, starting at its own random phase, at its own cursor (half of the
//! members move theirs to a random position before every keystroke), for D seconds. Then every
//! member waits until it holds every keystroke of its room, and the room is checked: all
//! members and a fresh joiner must hold the same text.
//!
//! What it measures: the server's CPU per keystroke and per delivery (a keystroke reaches
//! K - 1 members), keystroke-to-remote latency over all rooms, for duet clients the time to the
//! acknowledgement (stored), and from the server's `/metrics` its commits (each one fsync of
//! SQLite's WAL) per keystroke and per second.
//!
//! Against a cluster (`--also-url`), `--spread` places each room's members on the nodes: all
//! on one node (rooms round robin over the nodes), each on its own node, or half the rooms
//! each way (`mixed`), which gives same-node and cross-node latency in one run. Server CPU is
//! then summed over the nodes, and the engines' (`--engine-pid`) reported apart.
//!
//! ```text
//!   member ──tick every C ms (own phase)──> insert 1 char at its cursor ──> update ──> server
//!      ▲                                                                                 │
//!      └──────── apply the other members' updates (latency: their send time → now) ◄─────┘
//! ```

use super::{Ctx, Key, keys_of};
use crate::conn::{self, ConnOpts};
use crate::progress;
use crate::report::Report;
use crate::stats::{Summary, summarize};
use crate::wire::{Incoming, Protocol};
use duet_yjs::doc::{doc_with_client, text_of};
use futures_util::{SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, Text, Transact, Update};

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct TeamOpts {
    /// Rooms.
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 2)]
    pub members: usize,
    /// Milliseconds between one member's keystrokes.
    #[arg(long, default_value_t = 200)]
    pub cadence_ms: u64,
    /// Seconds of typing.
    #[arg(long, default_value_t = 15)]
    pub secs: u64,
    /// Seed of the phases, cursors and positions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Against several nodes: where each room's members connect.
    #[arg(long, value_enum, default_value_t = Spread::Same)]
    pub spread: Spread,
}

/// Where a room's members connect when the server is several nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    /// All of a room's members on one node (rooms round robin over the nodes).
    Same,
    /// Each member of a room on another node (member i of room r on node r + i).
    Cross,
    /// Even rooms as `same`, odd rooms as `cross`.
    Mixed,
}

impl Spread {
    /// The node of member `i` of room `r` among `n` nodes.
    pub fn node(self, r: usize, i: usize, n: usize) -> usize {
        let n = n.max(1);
        match self {
            Spread::Same => r % n,
            Spread::Cross => (r + i) % n,
            Spread::Mixed if r.is_multiple_of(2) => (r / 2) % n,
            Spread::Mixed => (r + i) % n,
        }
    }
}

/// splitmix64: a few random numbers per keystroke, reproducible from the seed, no dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// What a room's members share: when each keystroke left (keyed as the server's relay is), how
/// many keystrokes the room typed, and how many members have stopped typing.
#[derive(Default)]
struct RoomShared {
    sent_at: RefCell<HashMap<Key, Instant>>,
    typed: AtomicU64,
    stopped: AtomicUsize,
}

struct MemberOut {
    remote: Vec<u64>,
    ack: Vec<u64>,
    typed: u64,
    received: u64,
    text: String,
    converged: bool,
    error: Option<String>,
}

struct Member {
    ws: conn::Ws,
    /// The document's name (Hocuspocus names it in every message).
    name: String,
    client_id: u64,
    /// Half of the members move their cursor to a random place before each keystroke.
    wanders: bool,
    phase: Duration,
    rng: Rng,
}

#[allow(clippy::too_many_arguments)]
async fn member(
    mut m: Member,
    protocol: Protocol,
    room: Rc<RoomShared>,
    k: usize,
    cadence: Duration,
    t0: Instant,
    t_end: Instant,
    deadline: Instant,
) -> MemberOut {
    let doc = doc_with_client(m.client_id);
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let mut out = MemberOut {
        remote: Vec::new(),
        ack: Vec::new(),
        typed: 0,
        received: 0,
        text: String::new(),
        converged: false,
        error: None,
    };
    let mut ticks = tokio::time::interval_at((t0 + m.phase).into(), cadence);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let mut cursor: u32 = 0;
    // Sequence 1 went with the sync answer.
    let mut seq = 1u64;
    let mut unacked: std::collections::VecDeque<(u64, Instant)> = Default::default();
    let mut typing = true;
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    loop {
        tokio::select! {
            _ = ticks.tick(), if typing => {
                let now = Instant::now();
                if now >= t_end {
                    typing = false;
                    room.stopped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let update = {
                    let before = doc.transact().state_vector();
                    let len = text.len(&doc.transact());
                    if m.wanders {
                        cursor = m.rng.below(u64::from(len) + 1) as u32;
                    }
                    cursor = cursor.min(len);
                    let c = letters[m.rng.below(26) as usize] as char;
                    text.insert(&mut doc.transact_mut(), cursor, c.encode_utf8(&mut [0; 4]));
                    cursor += 1;
                    doc.transact().encode_diff_v1(&before)
                };
                for key in keys_of(&update) {
                    room.sent_at.borrow_mut().insert(key, now);
                }
                seq += 1;
                let frame = protocol.wrap(&m.name, protocol.update(seq, &update));
                if let Err(e) = m.ws.send(Message::binary(frame)).await {
                    out.error = Some(format!("send: {e}"));
                    break;
                }
                unacked.push_back((seq, now));
                out.typed += 1;
                room.typed.fetch_add(1, Ordering::Relaxed);
            }
            msg = m.ws.next() => {
                let now = Instant::now();
                let frame = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(c))) => { out.error = Some(format!("closed: {c:?}")); break; }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => { out.error = Some(format!("read: {e}")); break; }
                    None => { out.error = Some("closed".into()); break; }
                };
                let Ok(decoded) = protocol.decode(&frame) else { continue };
                match protocol.classify(&decoded, &frame) {
                    Ok(Incoming::Update(u)) => {
                        // The y-websocket server echoes an update to its author too: only the
                        // other members' keystrokes are deliveries.
                        let keys = keys_of(u);
                        let own = keys.iter().all(|k| matches!(k, Key::Ins(c, _) | Key::Del(c, _) if *c == m.client_id));
                        if !own {
                            out.received += 1;
                            for key in keys {
                                if let Some(at) = room.sent_at.borrow().get(&key) {
                                    out.remote.push(now.duration_since(*at).as_nanos() as u64);
                                }
                            }
                        }
                        if let Ok(update) = Update::decode_v1(u)
                            && doc.transact_mut().apply_update(update).is_err()
                        {
                            out.error = Some("a relayed update did not apply".into());
                        }
                    }
                    Ok(Incoming::Ack(acked)) => {
                        while unacked.front().is_some_and(|(s, _)| *s <= acked) {
                            if let Some((_, at)) = unacked.pop_front() {
                                out.ack.push(now.duration_since(at).as_nanos() as u64);
                            }
                        }
                    }
                    Ok(Incoming::Error(e)) => { out.error = Some(e); break; }
                    _ => {}
                }
            }
            _ = check.tick(), if !typing => {
                let all_stopped = room.stopped.load(Ordering::Relaxed) == k;
                let len = u64::from(text.len(&doc.transact()));
                let acked = protocol != Protocol::Duet || unacked.is_empty();
                if all_stopped && len == room.typed.load(Ordering::Relaxed) && acked {
                    out.converged = true;
                    break;
                }
                if Instant::now() > deadline {
                    break;
                }
            }
        }
    }
    if typing {
        room.stopped.fetch_add(1, Ordering::Relaxed);
    }
    out.text = text.get_string(&doc.transact());
    out
}

/// The p99 of a Prometheus histogram's observations between two scrapes, as the upper bound of
/// the bucket it falls in (seconds).
fn histogram_p99(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    name: &str,
) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, v - before.get(k).copied().unwrap_or(0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= 0.99 * total)
        .map(|(le, _)| *le)
}

pub async fn run(ctx: &Ctx, o: &TeamOpts) -> anyhow::Result<Report> {
    let k = o.members.max(1);
    let cadence = Duration::from_millis(o.cadence_ms.max(1));
    crate::target::check_nofile(o.rooms * k + o.rooms)?;
    progress!(
        "team: {} rooms x {k} members, one keystroke per {cadence:?} each, {} s ({:.0} keystrokes/s in all)",
        o.rooms,
        o.secs,
        (o.rooms * k) as f64 * 1000.0 / cadence.as_millis() as f64
    );
    let mut rng = Rng(o.seed);
    let opts = ConnOpts {
        small_buffers: true,
        recv_buffer: None,
    };
    let mut rooms = Vec::new();
    let nodes = ctx.target.urls();
    // Per room: whether its members are on more than one node.
    let mut cross = Vec::new();
    for r in 0..o.rooms {
        let name = format!("{}-team-{r}", ctx.run_id);
        let url = conn::room_url(&nodes[o.spread.node(r, 0, nodes.len())], &name);
        let mut on: Vec<usize> = (0..k).map(|i| o.spread.node(r, i, nodes.len())).collect();
        on.sort_unstable();
        on.dedup();
        cross.push(on.len() > 1);
        let mut members = Vec::new();
        for i in 0..k {
            let member_url = conn::room_url(&nodes[o.spread.node(r, i, nodes.len())], &name);
            let joined = conn::join(&member_url, ctx.protocol, opts).await?;
            members.push(Member {
                ws: joined.ws,
                name: joined.name,
                client_id: 10_000 + (r * k + i) as u64,
                wanders: i % 2 == 1,
                phase: Duration::from_micros(rng.below(cadence.as_micros() as u64)),
                rng: Rng(rng.next()),
            });
        }
        rooms.push((url, members));
    }
    progress!("all {} members synced", o.rooms * k);

    let m0 = ctx.target.metrics().await;
    let cpu0 = ctx.target.cpu_secs();
    let nodes_cpu0 = ctx.target.node_cpu_secs();
    let engines0 = ctx.target.engine_cpu_secs();
    let t0 = Instant::now() + Duration::from_millis(100);
    let t_end = t0 + Duration::from_secs(o.secs);
    let deadline = t_end + Duration::from_secs(30);
    let local = tokio::task::LocalSet::new();
    let rss_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let rss_max = rss_max.clone();
        let t = crate::target::Target::remote("ws://unused", ctx.target.pid);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                rss_max.fetch_max(t.rss().unwrap_or(0), Ordering::Relaxed);
            }
        })
    };
    let protocol = ctx.protocol;
    let (mut results, urls) = local
        .run_until(async move {
            let mut set = JoinSet::new();
            let mut urls = Vec::new();
            for (r, (url, members)) in rooms.into_iter().enumerate() {
                urls.push(url);
                let shared = Rc::new(RoomShared::default());
                for m in members {
                    set.spawn_local({
                        let shared = shared.clone();
                        async move {
                            let out =
                                member(m, protocol, shared, k, cadence, t0, t_end, deadline).await;
                            (r, out)
                        }
                    });
                }
            }
            let mut results: Vec<Vec<MemberOut>> = Vec::new();
            while let Some(done) = set.join_next().await {
                let (r, out) = done?;
                if results.len() <= r {
                    results.resize_with(r + 1, Vec::new);
                }
                results[r].push(out);
            }
            anyhow::Ok((results, urls))
        })
        .await?;
    let busy = Instant::now().duration_since(t0);
    let cpu1 = ctx.target.cpu_secs();
    let nodes_cpu1 = ctx.target.node_cpu_secs();
    let engines1 = ctx.target.engine_cpu_secs();
    let m1 = ctx.target.metrics().await;
    sampler.abort();
    let rss = ctx
        .target
        .rss()
        .max(Some(rss_max.load(Ordering::Relaxed)).filter(|v| *v > 0));

    // Convergence: every member of a room holds the same text as a fresh joiner.
    let mut converged_rooms = 0;
    let mut errors = Vec::new();
    let (mut remote, mut ack) = (Vec::new(), Vec::new());
    let (mut remote_same, mut remote_cross) = (Vec::new(), Vec::new());
    let (mut typed, mut delivered) = (0u64, 0u64);
    for (r, members) in results.iter_mut().enumerate() {
        let joiner = conn::join(&urls[r], ctx.protocol, opts).await?;
        let doc = doc_with_client(999_999);
        doc.transact_mut()
            .apply_update(Update::decode_v1(&joiner.doc)?)?;
        let server_text = text_of(&doc);
        let all = members.iter().all(|m| m.converged && m.text == server_text);
        converged_rooms += usize::from(all);
        for m in members.iter_mut() {
            typed += m.typed;
            delivered += m.received;
            if cross[r] {
                remote_cross.extend_from_slice(&m.remote);
            } else {
                remote_same.extend_from_slice(&m.remote);
            }
            remote.append(&mut m.remote);
            ack.append(&mut m.ack);
            if let Some(e) = m.error.take() {
                errors.push(format!("room {r}: {e}"));
            }
        }
    }
    for e in errors.iter().take(5) {
        progress!("{e}");
    }
    let remote = summarize(&mut remote);
    let remote_same = summarize(&mut remote_same);
    let remote_cross = summarize(&mut remote_cross);
    let acked = ack.len();
    let ack: Summary = summarize(&mut ack);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let per = |n: u64| cpu.filter(|_| n > 0).map(|c| c * 1e6 / n as f64);

    let mut rep = Report::new("team", ctx.protocol, &ctx.target.url, ctx.floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "rooms converged",
        Some(converged_rooms as f64),
        "rooms",
        format!(
            "of {}; every member's text == a fresh joiner's; {} member errors",
            o.rooms,
            errors.len()
        ),
    );
    rep.row(
        "keystrokes",
        Some(typed as f64),
        "",
        format!("{:.0}/s", typed as f64 / o.secs.max(1) as f64),
    );
    rep.row(
        "deliveries",
        Some(delivered as f64),
        "",
        format!(
            "keystrokes received by the other members (expected {})",
            typed * (k as u64 - 1)
        ),
    );
    rep.row(
        "server CPU per keystroke",
        per(typed),
        "µs",
        format!(
            "{:.1} s of server CPU over {:.1} s",
            cpu.unwrap_or(0.0),
            busy.as_secs_f64()
        ),
    );
    rep.row(
        "server CPU per delivery",
        per(delivered),
        "µs",
        String::new(),
    );
    if nodes.len() > 1 {
        let each: Vec<String> = nodes_cpu0
            .iter()
            .zip(&nodes_cpu1)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if typed > 0 => {
                    format!("{:.1}", (b - a) * 1e6 / typed as f64)
                }
                _ => "n/a".into(),
            })
            .collect();
        rep.row(
            "server CPU per keystroke, per node",
            per(typed).map(|c| c / nodes.len() as f64),
            "µs",
            format!("mean of {} nodes; each: {}", nodes.len(), each.join(", ")),
        );
    }
    let engines = engines0.zip(engines1).map(|(a, b)| b - a);
    if engines.is_some() {
        rep.row(
            "engines CPU per keystroke",
            engines
                .filter(|_| typed > 0)
                .map(|c| c * 1e6 / typed as f64),
            "µs",
            format!(
                "PostgreSQL and Redis (--engine-pid, children included): {:.1} s",
                engines.unwrap_or(0.0)
            ),
        );
    }
    rep.row(
        "server CPU, share of one core",
        cpu.map(|c| 100.0 * c / busy.as_secs_f64()),
        "%",
        String::new(),
    );
    rep.latency("keystroke to remote", &remote, true);
    if remote_same.count > 0 && remote_cross.count > 0 {
        for (what, s) in [("same node", &remote_same), ("cross node", &remote_cross)] {
            rep.latency(&format!("keystroke to remote, {what}"), s, false);
        }
        rep.row(
            "cross node / same node, p50",
            (remote_same.p50_us > 0.0).then(|| remote_cross.p50_us / remote_same.p50_us),
            "x",
            "members on different nodes against members on one node, this run".into(),
        );
    }
    if ctx.protocol == Protocol::Duet {
        rep.latency("keystroke to ack (stored)", &ack, false);
        rep.row(
            "keystrokes acknowledged per second",
            Some(acked as f64 / busy.as_secs_f64()),
            "/s",
            format!("{acked} acknowledgements over {:.1} s", busy.as_secs_f64()),
        );
    }
    rep.row(
        "server RSS max",
        rss.map(|b| b as f64 / 1048576.0),
        "MiB",
        String::new(),
    );
    if let (Some(a), Some(b)) = (&m0, &m1) {
        let d = |key: &str| b.get(key).zip(a.get(key)).map(|(b, a)| b - a);
        let commits = d("duet_store_commits_total");
        rep.row(
            "store commits per keystroke",
            commits.map(|c| c / typed.max(1) as f64),
            "",
            "each commit fsyncs SQLite's WAL once (n/a: memory store)".into(),
        );
        rep.row(
            "store commits per second",
            commits.map(|c| c / busy.as_secs_f64()),
            "/s",
            String::new(),
        );
        rep.row(
            "store updates per commit, mean",
            d("duet_store_updates_per_commit_sum")
                .zip(d("duet_store_updates_per_commit_count"))
                .map(|(s, n)| s / n.max(1.0)),
            "",
            String::new(),
        );
        rep.row(
            "store commit duration, p99",
            histogram_p99(a, b, "duet_store_commit_seconds").map(|s| s * 1e3),
            "ms",
            "BEGIN to end of COMMIT, fsync included (bucket bound): the disk's share of ack latency".into(),
        );
        rep.row(
            "server arrival to stored, p99",
            histogram_p99(a, b, "duet_update_ack_seconds").map(|s| s * 1e3),
            "ms",
            "upper bound of the /metrics bucket holding the p99".into(),
        );
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_bucket_bound_over_the_run_only() {
        let mut a = std::collections::BTreeMap::new();
        let mut b = std::collections::BTreeMap::new();
        let key = |le: &str| format!("h_bucket{{le=\"{le}\"}}");
        a.insert(key("0.001"), 50.0);
        a.insert(key("0.01"), 50.0);
        a.insert(key("+Inf"), 50.0);
        b.insert(key("0.001"), 50.0 + 98.0);
        b.insert(key("0.01"), 50.0 + 100.0);
        b.insert(key("+Inf"), 50.0 + 100.0);
        assert_eq!(histogram_p99(&a, &b, "h"), Some(0.01));
        b.insert(key("0.001"), 50.0 + 99.0);
        assert_eq!(histogram_p99(&a, &b, "h"), Some(0.001));
        assert_eq!(histogram_p99(&a, &a, "h"), None);
    }
}
