//! The physical floor, measured in the same process on every run: a raw WebSocket round trip on
//! loopback (an in-process echo server, no application logic) and the cost of yrs decoding and
//! applying updates. Results are reported as ratios to these.

use crate::stats::{Summary, nanos, summarize};
use crate::trace::new_doc;
use anyhow::Context;
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

/// `rounds` round trips of `size`-byte messages.
pub async fn ws_round_trip(rounds: usize, size: usize) -> anyhow::Result<Summary> {
    let url = echo_server(None).await?;
    let stream = tokio::net::TcpStream::connect(url.trim_start_matches("ws://")).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .context("echo handshake")?;
    let payload = vec![0x5au8; size];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + 100 {
        let t = Instant::now();
        ws.send(Message::binary(payload.clone())).await?;
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_binary() => break,
                Some(Ok(_)) => continue,
                _ => anyhow::bail!("echo closed"),
            }
        }
        if i >= 100 {
            samples.push(nanos(t.elapsed())); // the first 100 warm up
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
        let doc = new_doc(3);
        doc.transact_mut()
            .apply_update(Update::decode_v1(&echoed)?)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(best)
}

/// Mean decode + apply time per update of `updates`, into one fresh document.
pub fn yrs_apply(updates: &[Vec<u8>]) -> anyhow::Result<f64> {
    let doc = new_doc(2);
    let t = Instant::now();
    for u in updates {
        doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / updates.len().max(1) as f64)
}
