//! `failover`: people typing in rooms spread over the nodes of a cluster while something
//! breaks half way through: a node is killed (`--kill-pid`, SIGKILL) or a command disrupts
//! the cluster (`--disrupt`, say `redis-cli -p PORT client kill type pubsub`, or a Redis
//! restart). duet protocol only (it needs acknowledgements).
//!
//! Member i of room r connects to node (r + i) % nodes. A member whose connection breaks
//! reconnects to the next node that answers, as clients behind a load balancer would, with
//! duet's client's backoff (`--backoff-ms`, default its 250: each wait drawn between 0 and a
//! ceiling that doubles per failed attempt), and resyncs: it answers the node's state vector
//! with everything the node lacks, its unacknowledged keystrokes included.
//!
//! ```text
//!   0 ──── typing ──── secs/2: disruption ──── typing ──── secs ── every member holds every
//!                          │                                        keystroke of its room
//!                          ├─ cut-off members reconnect and resync  (reconnect times)
//!                          └─ every member holds every keystroke typed before the
//!                             disruption                            (disruption to converged)
//! ```
//!
//! Reported: how many members were cut off, their reconnect times, the time from the
//! disruption until every room's members hold every keystroke typed before it, keystroke to
//! remote latency over the run, and acknowledged keystrokes lost (a fresh joiner's state
//! vector must cover every member's highest acknowledged clock; the target is 0).

use super::team::Rng;
use super::{Ctx, Key, keys_of};
use crate::conn::{self, ConnOpts, Ws};
use crate::progress;
use crate::report::Report;
use crate::stats::summarize;
use crate::wire::{Incoming, Protocol};
use anyhow::bail;
use duet_yjs::doc::doc_with_client;
use futures_util::{SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Text, Transact, Update};

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct FailoverOpts {
    /// Rooms.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Members per room (each on another node while there are enough nodes).
    #[arg(long, default_value_t = 2)]
    pub members: usize,
    /// Milliseconds between one member's keystrokes.
    #[arg(long, default_value_t = 100)]
    pub cadence_ms: u64,
    /// Seconds of typing; the disruption comes half way.
    #[arg(long, default_value_t = 8)]
    pub secs: u64,
    /// Kill this process (a node's) with SIGKILL half way.
    #[arg(long)]
    pub kill_pid: Option<u32>,
    /// Run this shell command half way.
    #[arg(long)]
    pub disrupt: Option<String>,
    /// Seed of the cursors and letters.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The reconnect backoff's first ceiling, in ms (duet's client: 250).
    #[arg(long, default_value_t = 250)]
    pub backoff_ms: u64,
}

/// What a room's members share.
#[derive(Default)]
struct RoomShared {
    /// When each keystroke was typed.
    sent_at: RefCell<HashMap<Key, Instant>>,
    /// Each member's clock when the disruption came: what every member must end up holding.
    before: RefCell<HashMap<u64, u32>>,
    /// Keystrokes typed in the room, and members done typing.
    typed: RefCell<u64>,
    stopped: RefCell<usize>,
}

#[derive(Default)]
struct MemberOut {
    remote: Vec<u64>,
    /// From the disruption to this member holding everything typed before it.
    converged_after: Option<Duration>,
    /// From losing its connection to being synced again, for each time it did.
    reconnects: Vec<Duration>,
    /// The highest own clock acknowledged.
    acked_clock: u32,
    client_id: u64,
    done: bool,
    error: Option<String>,
}

/// Connects to the first node that answers, from `from` on, and syncs `doc` both ways: the
/// node's state vector is answered with everything it lacks (sent as `seq`). With a
/// `backoff`, it first waits as duet's client does after losing a live connection (full
/// jitter below the ceiling), and each failed attempt doubles the ceiling. Returns the socket
/// and the node it is on.
async fn connect(
    urls: &[String],
    from: usize,
    doc: &yrs::Doc,
    seq: u64,
    deadline: Instant,
    backoff: Option<(Duration, &mut Rng)>,
) -> anyhow::Result<(Ws, usize)> {
    let (mut ceiling, mut rng) = match backoff {
        Some((ceiling, rng)) => (ceiling, Some(rng)),
        None => (Duration::ZERO, None),
    };
    let mut at = from;
    loop {
        if let Some(rng) = rng.as_deref_mut() {
            let wait = ceiling.mul_f64((rng.next() % 1000) as f64 / 1000.0);
            tokio::time::sleep(wait).await;
        }
        if Instant::now() > deadline {
            bail!("no node answered before the deadline");
        }
        let url = &urls[at % urls.len()];
        match tokio::time::timeout(Duration::from_secs(5), sync(url, doc, seq)).await {
            Ok(Ok(ws)) => return Ok((ws, at % urls.len())),
            _ => {
                at += 1;
                if rng.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                ceiling = (ceiling * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn sync(url: &str, doc: &yrs::Doc, seq: u64) -> anyhow::Result<Ws> {
    let opts = ConnOpts {
        small_buffers: true,
        recv_buffer: None,
    };
    let mut ws = conn::connect(url, Protocol::Duet, opts).await?;
    let p = Protocol::Duet;
    loop {
        let Some(msg) = ws.next().await else {
            bail!("closed during sync")
        };
        let frame = match msg? {
            Message::Binary(b) => b,
            Message::Close(c) => bail!("closed during sync: {c:?}"),
            _ => continue,
        };
        let decoded = p.decode(&frame)?;
        match p.classify(&decoded, &frame)? {
            Incoming::SyncStep1(sv) => {
                let theirs = StateVector::decode_v1(sv)?;
                let (ours, diff) = {
                    let txn = doc.transact();
                    (txn.state_vector().encode_v1(), txn.encode_diff_v1(&theirs))
                };
                ws.feed(Message::binary(p.step1(&ours))).await?;
                ws.send(Message::binary(p.step2(seq, &diff))).await?;
            }
            Incoming::SyncStep2(update) => {
                doc.transact_mut()
                    .apply_update(Update::decode_v1(update)?)?;
                return Ok(ws);
            }
            Incoming::Error(e) => bail!("{e}"),
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn member(
    urls: Rc<Vec<String>>,
    home: usize,
    client_id: u64,
    room: Rc<RoomShared>,
    members: usize,
    cadence: Duration,
    backoff: Duration,
    times: (Instant, Instant, Instant, Instant),
    mut rng: Rng,
) -> MemberOut {
    let (t0, t_disrupt, t_end, deadline) = times;
    let mut out = MemberOut {
        client_id,
        ..MemberOut::default()
    };
    let doc = doc_with_client(client_id);
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let mut seq = 1u64;
    // (seq, own clock once it is stored)
    let mut unacked: VecDeque<(u64, u32)> = VecDeque::new();
    let clock = |doc: &yrs::Doc| {
        doc.transact()
            .state_vector()
            .get(&yrs::block::ClientID::new(client_id))
    };
    let (mut ws, mut node) = match connect(&urls, home, &doc, seq, deadline, None).await {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    let mut ticks = tokio::time::interval_at(
        (t0 + Duration::from_micros(rng.next() % cadence.as_micros() as u64)).into(),
        cadence,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut check = tokio::time::interval(Duration::from_millis(10));
    let mut typing = true;
    let mut recorded = false;
    loop {
        let broken = tokio::select! {
            _ = ticks.tick(), if typing => {
                let now = Instant::now();
                if now >= t_end {
                    typing = false;
                    *room.stopped.borrow_mut() += 1;
                    continue;
                }
                let update = {
                    let before = doc.transact().state_vector();
                    let len = text.len(&doc.transact());
                    let at = (rng.next() % u64::from(len + 1)) as u32;
                    let c = (b'a' + (rng.next() % 26) as u8) as char;
                    text.insert(&mut doc.transact_mut(), at, c.encode_utf8(&mut [0; 4]));
                    doc.transact().encode_diff_v1(&before)
                };
                for key in keys_of(&update) {
                    room.sent_at.borrow_mut().insert(key, now);
                }
                *room.typed.borrow_mut() += 1;
                seq += 1;
                unacked.push_back((seq, clock(&doc)));
                ws.send(Message::binary(Protocol::Duet.update(seq, &update))).await.is_err()
            }
            msg = ws.next() => {
                let now = Instant::now();
                match msg {
                    Some(Ok(Message::Binary(frame))) => {
                        let Ok(decoded) = Protocol::Duet.decode(&frame) else { continue };
                        match Protocol::Duet.classify(&decoded, &frame) {
                            Ok(Incoming::Update(u)) => {
                                for key in keys_of(u) {
                                    if let Some(at) = room.sent_at.borrow().get(&key) {
                                        out.remote.push(now.duration_since(*at).as_nanos() as u64);
                                    }
                                }
                                if let Ok(update) = Update::decode_v1(u) {
                                    let _ = doc.transact_mut().apply_update(update);
                                }
                            }
                            Ok(Incoming::Ack(acked)) => {
                                while unacked.front().is_some_and(|(s, _)| *s <= acked) {
                                    if let Some((_, c)) = unacked.pop_front() {
                                        out.acked_clock = out.acked_clock.max(c);
                                    }
                                }
                            }
                            _ => {}
                        }
                        false
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => true,
                    Some(Ok(_)) => false,
                }
            }
            _ = check.tick() => {
                let now = Instant::now();
                if !recorded && now >= t_disrupt {
                    // Everything typed so far is what the disruption must not lose.
                    room.before.borrow_mut().insert(client_id, clock(&doc));
                    recorded = true;
                }
                if recorded && out.converged_after.is_none() && room.before.borrow().len() == members {
                    let sv = doc.transact().state_vector();
                    let holds = room.before.borrow().iter().all(|(c, k)| sv.get(&yrs::block::ClientID::new(*c)) >= *k);
                    if holds {
                        out.converged_after = Some(now.duration_since(t_disrupt));
                    }
                }
                if !typing && *room.stopped.borrow() == members {
                    let len = u64::from(text.len(&doc.transact()));
                    if len == *room.typed.borrow() && unacked.is_empty() {
                        out.done = true;
                        break;
                    }
                }
                if now > deadline {
                    break;
                }
                false
            }
        };
        if broken {
            let lost = Instant::now();
            // Whatever was not acknowledged goes again in the resync (the diff against the
            // node's state vector), under one new seq that covers it all.
            seq += 1;
            let pending = clock(&doc);
            unacked.clear();
            unacked.push_back((seq, pending));
            let mut jitter = Rng(rng.next());
            match connect(
                &urls,
                node + 1,
                &doc,
                seq,
                deadline,
                Some((backoff, &mut jitter)),
            )
            .await
            {
                Ok((w, n)) => {
                    ws = w;
                    node = n;
                    out.reconnects.push(lost.elapsed());
                }
                Err(e) => {
                    out.error = Some(format!("reconnecting: {e}"));
                    break;
                }
            }
        }
    }
    if typing {
        *room.stopped.borrow_mut() += 1;
    }
    out
}

pub async fn run(ctx: &Ctx, o: &FailoverOpts) -> anyhow::Result<Report> {
    if ctx.protocol != Protocol::Duet {
        bail!("failover speaks the duet protocol only (it needs acknowledgements)");
    }
    let urls = Rc::new(ctx.target.urls());
    let k = o.members.max(1);
    let cadence = Duration::from_millis(o.cadence_ms.max(1));
    crate::target::check_nofile(o.rooms * k + o.rooms)?;
    progress!(
        "failover: {} rooms x {k} members over {} nodes, one keystroke per {cadence:?} each, {} s; disruption at {} s: {}",
        o.rooms,
        urls.len(),
        o.secs,
        o.secs as f64 / 2.0,
        match (&o.kill_pid, &o.disrupt) {
            (Some(pid), _) => format!("kill -9 {pid}"),
            (None, Some(cmd)) => cmd.clone(),
            (None, None) => "none".into(),
        }
    );
    let m0 = ctx.target.metrics().await;
    let t0 = Instant::now() + Duration::from_millis(500);
    let t_disrupt = t0 + Duration::from_millis(o.secs * 500);
    let t_end = t0 + Duration::from_secs(o.secs);
    let deadline = t_end + Duration::from_secs(60);
    let mut rng = Rng(o.seed);
    let kill_pid = o.kill_pid;
    let disrupt = o.disrupt.clone();
    let disruption = tokio::spawn(async move {
        tokio::time::sleep_until(t_disrupt.into()).await;
        if let Some(pid) = kill_pid {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        } else if let Some(cmd) = disrupt {
            let _ = std::process::Command::new("sh").args(["-c", &cmd]).status();
        }
    });
    let local = tokio::task::LocalSet::new();
    let run_id = ctx.run_id.clone();
    let results: Vec<MemberOut> = local
        .run_until(async move {
            let mut set = JoinSet::new();
            for r in 0..o.rooms {
                let shared = Rc::new(RoomShared::default());
                let room_urls: Rc<Vec<String>> = Rc::new(
                    urls.iter()
                        .map(|u| conn::room_url(u, &format!("{run_id}-failover-{r}")))
                        .collect(),
                );
                for i in 0..k {
                    let member_rng = Rng(rng.next());
                    set.spawn_local(member(
                        room_urls.clone(),
                        (r + i) % room_urls.len(),
                        20_000 + (r * k + i) as u64,
                        shared.clone(),
                        k,
                        cadence,
                        Duration::from_millis(o.backoff_ms),
                        (t0, t_disrupt, t_end, deadline),
                        member_rng,
                    ));
                }
            }
            let mut results = Vec::new();
            while let Some(done) = set.join_next().await {
                results.push(done?);
            }
            anyhow::Ok(results)
        })
        .await?;
    let _ = disruption.await;
    // The nodes still up (a killed node's figures are gone with it).
    let m1 = ctx.target.metrics().await;

    // What a fresh joiner of each room holds must cover every acknowledged keystroke.
    let mut lost = 0u64;
    let mut by_client: HashMap<u64, &MemberOut> = HashMap::new();
    for m in &results {
        by_client.insert(m.client_id, m);
    }
    let urls = ctx.target.urls();
    for r in 0..o.rooms {
        let doc = doc_with_client(999_999);
        let name = format!("{}-failover-{r}", ctx.run_id);
        let room_urls: Vec<String> = urls.iter().map(|u| conn::room_url(u, &name)).collect();
        let (_ws, _) = connect(
            &room_urls,
            r,
            &doc,
            1,
            Instant::now() + Duration::from_secs(30),
            None,
        )
        .await?;
        let sv = doc.transact().state_vector();
        for i in 0..k {
            let client = 20_000 + (r * k + i) as u64;
            if let Some(m) = by_client.get(&client)
                && sv.get(&yrs::block::ClientID::new(client)) < m.acked_clock
            {
                lost += 1;
            }
        }
    }
    let mut remote = Vec::new();
    let mut reconnects = Vec::new();
    let mut converged_after = Vec::new();
    let mut errors = 0;
    let mut done = 0;
    for m in &results {
        remote.extend_from_slice(&m.remote);
        reconnects.extend(m.reconnects.iter().map(|d| d.as_nanos() as u64));
        if let Some(c) = m.converged_after {
            converged_after.push(c.as_nanos() as u64);
        }
        errors += usize::from(m.error.is_some());
        done += usize::from(m.done);
    }
    for m in results.iter().filter(|m| m.error.is_some()).take(5) {
        progress!(
            "member {}: {}",
            m.client_id,
            m.error.as_deref().unwrap_or("")
        );
    }
    let cut_off = results.iter().filter(|m| !m.reconnects.is_empty()).count();
    let remote = summarize(&mut remote);
    let reconnect = summarize(&mut reconnects);
    let all_converged = converged_after.len() == results.len();
    let converged = summarize(&mut converged_after);

    let mut rep = Report::new("failover", ctx.protocol, &ctx.target.url, ctx.floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "members converged at the end",
        Some(done as f64),
        "",
        format!("of {}; {errors} member errors", results.len()),
    );
    rep.row(
        "acknowledged keystrokes lost",
        Some(lost as f64),
        "",
        "members whose highest acknowledged clock a fresh joiner lacks (target 0)".into(),
    );
    rep.row(
        "members cut off",
        Some(cut_off as f64),
        "",
        format!("{} reconnects in all", reconnect.count),
    );
    if reconnect.count > 0 {
        rep.row(
            "cut off to resynced, p50",
            Some(reconnect.p50_us / 1e3),
            "ms",
            "from the broken connection to synced on another node".into(),
        );
        rep.row(
            "cut off to resynced, max",
            Some(reconnect.max_us / 1e3),
            "ms",
            String::new(),
        );
    }
    rep.row(
        "disruption to converged, max",
        all_converged.then_some(converged.max_us / 1e3),
        "ms",
        "until every member holds every keystroke typed before the disruption (n/a: some never did)"
            .into(),
    );
    rep.row(
        "disruption to converged, p50",
        all_converged.then_some(converged.p50_us / 1e3),
        "ms",
        String::new(),
    );
    rep.latency("keystroke to remote", &remote, true);
    if let (Some(a), Some(b)) = (&m0, &m1) {
        let d = |key: &str| b.get(key).map(|b| b - a.get(key).copied().unwrap_or(0.0));
        for (metric, key, note) in [
            (
                "bus messages lost (gaps seen)",
                "duet_bus_gaps_total",
                "losses other nodes' counters showed, surviving nodes",
            ),
            (
                "bus messages dropped by a publisher",
                "duet_bus_messages_total{what=\"publish_dropped\"}",
                "Redis down or the send queue full",
            ),
            (
                "updates repaired from the log",
                "duet_cluster_repaired_updates_total",
                "updates a read past a cursor brought that the room lacked",
            ),
            (
                "reads past a cursor, reconnect",
                "duet_cluster_catch_ups_total{why=\"reconnect\"}",
                "",
            ),
            (
                "reads past a cursor, heads check",
                "duet_cluster_catch_ups_total{why=\"heads\"}",
                "",
            ),
            (
                "nodes written off",
                "duet_cluster_nodes_gone_total",
                "counted by each surviving node",
            ),
        ] {
            rep.row(metric, d(key), "", note.to_owned());
        }
    }
    Ok(rep)
}
