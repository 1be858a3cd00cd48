//! The physical floor, measured in the same process on every run: a raw WebSocket round trip on
//! loopback (an in-process echo server, no application logic) and the cost of yrs decoding and
//! applying updates. Results are reported as ratios to these.

use crate::stats::{Summary, nanos, summarize};
use anyhow::Context;
use duet_yjs::doc::doc_with_client;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Floor {
    /// Round trip of a small binary message through a bare tokio-tungstenite echo.
    pub ws_rtt: Summary,
    /// yrs decode + apply per update, averaged over the pre-encoded stream.
    pub yrs_apply_us: f64,
}

/// Echo server on 127.0.0.1:0 that serves one connection; with `reply`, it answers every
/// message with those bytes instead.
async fn echo_server(reply: Option<Vec<u8>>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(m)) = rx.next().await {
                    let out = match &reply {
                        Some(r) => Message::binary(r.clone()),
                        None => m,
                    };
                    if out.is_binary() && tx.send(out).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok(format!("ws://{addr}"))
}

/// An echo server on its own OS thread and runtime (as a separate server process would be),
/// for round trips that pay the same thread wake-ups as a relay does.
pub fn spawn_echo_thread() -> anyhow::Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("echo-floor".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let url = echo_server(None).await;
                let _ = tx.send(url);
                // The echo task runs until its one connection ends.
                std::future::pending::<()>().await;
            });
        })?;
    rx.recv().context("echo thread ended early")?
}

/// Round trips of 40-byte messages to the echo at `url`, one every `every`, from `start`
/// until `until`: the raw WebSocket round trip under the same load and pacing as a run.
pub async fn paced_round_trips(
    url: String,
    start: Instant,
    every: std::time::Duration,
    until: Instant,
) -> anyhow::Result<Summary> {
    let mut ws = connect_echo(&url).await?;
    let payload = vec![0x5au8; 40];
    let mut samples = Vec::new();
    let mut at = start;
    while at < until {
        sleep_until_precisely(at).await;
        samples.push(round_trip(&mut ws, &payload).await?);
        at += every;
    }
    Ok(summarize(&mut samples))
}

type EchoWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect_echo(url: &str) -> anyhow::Result<EchoWs> {
    let stream = tokio::net::TcpStream::connect(url.trim_start_matches("ws://")).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .context("echo handshake")?;
    Ok(ws)
}

/// One message to the echo and back: the elapsed nanoseconds.
async fn round_trip(ws: &mut EchoWs, payload: &[u8]) -> anyhow::Result<u64> {
    let t = Instant::now();
    ws.send(Message::binary(payload.to_vec())).await?;
    loop {
        match ws.next().await {
            Some(Ok(m)) if m.is_binary() => return Ok(nanos(t.elapsed())),
            Some(Ok(_)) => continue,
            _ => anyhow::bail!("echo closed"),
        }
    }
}

/// Sleeps until `at` without tokio's timer lateness: its wheel ticks in whole milliseconds
/// and rounds deadlines up, which would add ~0.5-1 ms to every latency taken from a
/// scheduled send time. Sleeps to 2 ms before, then yields (letting other tasks run) until
/// the moment.
pub async fn sleep_until_precisely(at: Instant) {
    const SPIN: std::time::Duration = std::time::Duration::from_millis(2);
    if let Some(early) = at.checked_sub(SPIN)
        && early > Instant::now()
    {
        tokio::time::sleep_until(early.into()).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// `rounds` round trips of `size`-byte messages.
pub async fn ws_round_trip(rounds: usize, size: usize) -> anyhow::Result<Summary> {
    let url = echo_server(None).await?;
    let mut ws = connect_echo(&url).await?;
    let payload = vec![0x5au8; size];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + 100 {
        let t = round_trip(&mut ws, &payload).await?;
        if i >= 100 {
            samples.push(t); // the first 100 warm up
        }
    }
    Ok(summarize(&mut samples))
}

/// A small request answered with `bytes` over a bare WebSocket, then decoding and applying
/// them into a fresh document: the least a join of that document can cost (best of 5, µs).
pub async fn transfer_and_load(bytes: &[u8]) -> anyhow::Result<f64> {
    let url = echo_server(Some(bytes.to_vec())).await?;
    let stream = tokio::net::TcpStream::connect(url.trim_start_matches("ws://")).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream).await?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        ws.send(Message::binary(vec![0u8])).await?;
        let echoed = loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => break b,
                Some(Ok(_)) => continue,
                _ => anyhow::bail!("echo closed"),
            }
        };
        let doc = doc_with_client(3);
        doc.transact_mut()
            .apply_update(Update::decode_v1(&echoed)?)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(best)
}

/// Mean decode + apply time per update of `updates`, into one fresh document.
pub fn yrs_apply(updates: &[Vec<u8>]) -> anyhow::Result<f64> {
    let doc = doc_with_client(2);
    let t = Instant::now();
    for u in updates {
        doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / updates.len().max(1) as f64)
}
