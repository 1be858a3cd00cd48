//! One benchmark connection: WebSocket connect, the initial sync in either protocol, and the
//! split halves the scenarios drive.

use crate::wire::{EMPTY_SV, EMPTY_UPDATE, Incoming, Protocol};
use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type Ws = WebSocketStream<TcpStream>;
pub type Sink = SplitSink<Ws, Message>;
pub type Stream = SplitStream<Ws>;

/// How long any single handshake or sync may take before the scenario gives up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, Default)]
pub struct ConnOpts {
    /// Small buffers for scenarios that hold many idle sockets.
    pub small_buffers: bool,
    /// `SO_RCVBUF` for the slow reader, so the server's writes back up sooner.
    pub recv_buffer: Option<u32>,
}

/// A synced connection.
pub struct Joined {
    pub ws: Ws,
    /// What the server sent in its sync step 2 (the document, for a newcomer).
    pub doc: Vec<u8>,
    /// Connect to synced.
    pub elapsed: Duration,
    /// The document's name in every Hocuspocus message (the URL's path).
    pub name: String,
}

/// The path of a room URL without its leading `/`: the document's name for Hocuspocus.
pub fn doc_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .split_once('/')
        .map_or("", |(_, path)| path)
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `ws://HOST:PORT` + `/ROOM`, or a template with `{room}` in it (y-sweet wants
/// `ws://HOST:PORT/d/{room}/ws/{room}`).
pub fn room_url(base: &str, room: &str) -> String {
    if base.contains("{room}") {
        base.replace("{room}", room)
    } else {
        format!("{}/{room}", base.trim_end_matches('/'))
    }
}

pub async fn connect(url: &str, protocol: Protocol, opts: ConnOpts) -> anyhow::Result<Ws> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("bad url {url}"))?;
    if let Some(p) = protocol.subprotocol() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
    }
    let uri = request.uri();
    let host = uri.host().unwrap_or("127.0.0.1").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(n) = opts.recv_buffer {
        socket.set_recv_buffer_size(n)?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut config = WebSocketConfig::default().max_message_size(Some(256 << 20));
    if opts.small_buffers {
        config = config.read_buffer_size(4096).write_buffer_size(0);
    }
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(ws)
}

/// Connects and completes the initial sync as a client with an empty document.
pub async fn join(url: &str, protocol: Protocol, opts: ConnOpts) -> anyhow::Result<Joined> {
    let start = Instant::now();
    let mut ws = tokio::time::timeout(SYNC_TIMEOUT, connect(url, protocol, opts))
        .await
        .with_context(|| format!("connecting to {url} timed out"))??;
    let name = doc_name(url);
    // Yjs servers answer a step 1 whenever it comes; duet wants it after its own step 1.
    // Hocuspocus wants an authentication message first.
    if protocol == Protocol::Hocuspocus {
        ws.feed(Message::binary(Protocol::hocuspocus_auth(&name)))
            .await?;
    }
    if protocol != Protocol::Duet {
        ws.send(Message::binary(
            protocol.wrap(&name, protocol.step1(EMPTY_SV)),
        ))
        .await?;
    }
    let doc = tokio::time::timeout(SYNC_TIMEOUT, async {
        loop {
            let Some(msg) = ws.next().await else {
                bail!("{url}: closed during sync")
            };
            let frame = match msg? {
                Message::Binary(b) => b,
                Message::Close(c) => bail!("{url}: closed during sync: {c:?}"),
                _ => continue,
            };
            let decoded = protocol.decode(&frame)?;
            match protocol.classify(&decoded, &frame)? {
                Incoming::SyncStep1(_) => {
                    if protocol == Protocol::Duet {
                        ws.feed(Message::binary(protocol.step1(EMPTY_SV))).await?;
                    }
                    ws.send(Message::binary(
                        protocol.wrap(&name, protocol.step2(1, EMPTY_UPDATE)),
                    ))
                    .await?;
                }
                Incoming::SyncStep2(update) => return Ok(update.to_vec()),
                Incoming::Error(e) => bail!("{url}: {e}"),
                _ => {}
            }
        }
    })
    .await
    .with_context(|| format!("{url}: sync timed out"))??;
    Ok(Joined {
        ws,
        doc,
        elapsed: start.elapsed(),
        name,
    })
}

/// The close code in a close frame, if any.
pub fn close_code(msg: &Message) -> Option<u16> {
    match msg {
        Message::Close(Some(frame)) => Some(u16::from(frame.code)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_name_is_the_url_path() {
        assert_eq!(super::doc_name("ws://127.0.0.1:1/team/a-1?x=1"), "team/a-1");
        assert_eq!(super::doc_name("ws://127.0.0.1:1"), "");
    }
}
