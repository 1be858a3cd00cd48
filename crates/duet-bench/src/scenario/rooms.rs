//! `rooms`: R rooms with one member each, every room holding the same document (a trace's end
//! state, sent as one update); the server's RSS growth per room, next to what the same R
//! documents cost this process when loaded with yrs (the floor).

use super::Ctx;
use crate::conn::{self, ConnOpts};
use crate::report::{Report, ratio};
use crate::trace::{self, Trace};
use crate::wire::{Incoming, Protocol};
use crate::{progress, target};
use anyhow::bail;
use duet_yjs::doc::doc_with_client;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, StateVector, Transact, Update};

#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct RoomsOpts {
    /// Rooms to load.
    #[arg(long, default_value_t = 200)]
    pub rooms: usize,
    /// Trace whose end state every room holds; `empty` for empty rooms.
    #[arg(long, default_value = "sveltecomponent")]
    pub doc: String,
    #[arg(long, default_value_t = 2)]
    pub settle_secs: u64,
}

/// The document as one v1 update, built by replaying the trace (not the trace's history).
fn document(name: &str) -> anyhow::Result<Vec<u8>> {
    if name == "empty" {
        return Ok(Vec::new());
    }
    let t = Trace::load(&trace::resolve_trace(name)?)?;
    let enc = trace::encode(&t, 77, None)?;
    let doc = doc_with_client(78);
    for u in &enc.updates {
        doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
    }
    Ok(doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default()))
}

/// Sends `update` into a synced connection and waits until the server has it: the ack (duet)
/// or, for Yjs servers, the answer to a fresh step 1 that covers it.
pub async fn seed(ws: &mut conn::Ws, protocol: Protocol, update: &[u8]) -> anyhow::Result<()> {
    ws.send(Message::binary(protocol.update(2, update))).await?;
    let want = Update::decode_v1(update)?.state_vector();
    if protocol == Protocol::Yjs {
        ws.send(Message::binary(protocol.step1(crate::wire::EMPTY_SV)))
            .await?;
    }
    let until = Instant::now() + conn::SYNC_TIMEOUT;
    loop {
        let Ok(Some(msg)) = tokio::time::timeout_at(until.into(), ws.next()).await else {
            bail!("seeding timed out")
        };
        let Message::Binary(frame) = msg? else {
            continue;
        };
        let d = protocol.decode(&frame)?;
        match protocol.classify(&d, &frame)? {
            Incoming::Ack(seq) if seq >= 2 => return Ok(()),
            Incoming::SyncStep2(doc) => {
                let sv = Update::decode_v1(doc)?.state_vector();
                if want.iter().all(|(c, clock)| sv.get(c) >= *clock) {
                    return Ok(());
                }
                ws.send(Message::binary(protocol.step1(crate::wire::EMPTY_SV)))
                    .await?;
            }
            Incoming::Error(e) => bail!("seeding: {e}"),
            _ => {}
        }
    }
}

pub async fn run(ctx: &Ctx, o: &RoomsOpts) -> anyhow::Result<Report> {
    target::check_nofile(o.rooms)?;
    let doc = document(&o.doc)?;
    // Floor: the same documents loaded here.
    let self0 = target::self_rss();
    let mut docs = Vec::with_capacity(o.rooms);
    for i in 0..o.rooms {
        let d = doc_with_client(10_000 + i as u64);
        if !doc.is_empty() {
            d.transact_mut().apply_update(Update::decode_v1(&doc)?)?;
        }
        docs.push(d);
    }
    let self1 = target::self_rss();
    let floor_kib = self0
        .zip(self1)
        .map(|(a, b)| (b as f64 - a as f64) / o.rooms as f64 / 1024.0);
    drop(docs);

    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let rss0 = ctx.target.rss();
    progress!(
        "rooms: loading {} rooms holding {} bytes each (server RSS {:.1} MiB)",
        o.rooms,
        doc.len(),
        rss0.unwrap_or(0) as f64 / 1048576.0
    );
    let opts = ConnOpts {
        small_buffers: true,
        recv_buffer: None,
    };
    let mut held = Vec::with_capacity(o.rooms);
    for i in 0..o.rooms {
        let url = conn::room_url(&ctx.target.url, &format!("{}-rooms-{i}", ctx.run_id));
        let mut j = conn::join(&url, ctx.protocol, opts).await?;
        if !doc.is_empty() {
            seed(&mut j.ws, ctx.protocol, &doc).await?;
        }
        held.push(j);
        if (i + 1) % 50 == 0 {
            progress!("  {} rooms loaded", i + 1);
        }
    }
    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let rss1 = ctx.target.rss();
    let loaded = ctx
        .target
        .metrics()
        .await
        .and_then(|m| m.get("duet_rooms_loaded").copied());
    drop(held);

    let per_room = rss0
        .zip(rss1)
        .map(|(a, b)| (b as f64 - a as f64) / o.rooms as f64 / 1024.0);
    let mut rep = Report::new("rooms", ctx.protocol, &ctx.target.url, ctx.floor);
    rep.params = serde_json::to_value(o)?;
    rep.row(
        "rooms",
        Some(o.rooms as f64),
        "",
        format!("document {} bytes (v1)", doc.len()),
    );
    rep.row(
        "RSS per loaded room",
        per_room,
        "KiB",
        format!(
            "{}; includes its one idle member",
            ratio(
                per_room,
                floor_kib.unwrap_or(0.0),
                "the yrs document in-process"
            )
        ),
    );
    rep.row(
        "floor: yrs document in-process",
        floor_kib,
        "KiB",
        "RSS growth of this process per loaded document".into(),
    );
    rep.row("metrics: rooms loaded", loaded, "", String::new());
    Ok(rep)
}
