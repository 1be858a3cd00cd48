//! A raw y-websocket client: sends hand-made y-protocols frames (as an attacker or a broken
//! client would) and reads what the server answers, down to its close code.

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub type YjsWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects the way y-websocket does: no subprotocol, the room in the path.
pub async fn connect(url: &str, room: &str) -> anyhow::Result<YjsWs> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}/{room}")).await?;
    Ok(ws)
}

pub async fn send(ws: &mut YjsWs, frame: Vec<u8>) -> anyhow::Result<()> {
    ws.send(Message::Binary(frame.into())).await?;
    Ok(())
}

/// How a raw session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Closed(u16, String),
    /// Without a close frame (or the read failed).
    Dropped,
}

/// Reads until the session ends (discarding binary frames), within `timeout`.
pub async fn until_end(ws: &mut YjsWs, timeout: Duration) -> anyhow::Result<End> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => bail!("session did not end within {timeout:?}"),
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return Ok(End::Closed(f.code.into(), f.reason.to_string()));
            }
            Ok(Some(Ok(Message::Close(None)))) => return Ok(End::Closed(1005, String::new())),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return Ok(End::Dropped),
        }
    }
}

/// lib0's varUint (the one writer, in `duet_yjs::lib0`).
pub use duet_yjs::lib0::write_var_uint as var_uint;

/// A y-protocols message: `kind`, for sync messages `subtype`, then `payload` with its length,
/// whatever the kind (hand-made: tests send what no honest client would).
pub fn message(kind: u64, subtype: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    var_uint(&mut out, kind);
    if let Some(subtype) = subtype {
        var_uint(&mut out, subtype);
    }
    duet_yjs::lib0::write_var_bytes(&mut out, payload);
    out
}

/// A sync update (type 0, subtype 2) carrying `update`.
pub fn sync_update(update: &[u8]) -> Vec<u8> {
    duet_yjs::wire::encode_sync(duet_yjs::wire::SYNC_UPDATE, update)
}

/// An awareness message (type 1) with these (client id, clock, state string) entries; the
/// state is written as it is, JSON or not.
pub fn awareness(entries: &[(u64, u64, &[u8])]) -> Vec<u8> {
    duet_yjs::wire::encode_awareness_raw(entries.iter().copied())
}
