//! One client's session after the WebSocket upgrade: decodes its frames into room commands,
//! writes what the room sends back, keeps the heartbeat, and closes with a code that says why.
//!
//! The session loop is the same for every protocol; a [`Wire`] says how frames map to room
//! commands and back: `DuetWire` in `conn_duet.rs`, `YjsWire` in `conn_yjs.rs` for
//! y-websocket clients.

use crate::Shared;
use crate::out::{Kick, Out};
use crate::outbox::{self, OutboxRx, OutboxTx};
use crate::room::{Cmd, RoomCmd, RoomHandle};
use bytes::Bytes;
use duet_protocol::{Role, RoomName, close};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How often the server pings an idle connection.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// Silence after which a connection is considered dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(40);
/// A member whose last batch left less than this ago is being streamed to: its next batch
/// waits one scheduler turn to grow.
const STREAMING: Duration = Duration::from_millis(1);
/// How many queued frames are written before one flush.
const WRITE_BATCH: usize = 64;
/// How long a closed member's last queued messages may take to write before the close frame.
const KICK_DRAIN: Duration = Duration::from_secs(1);

/// How one protocol's frames map to room commands and back. Each wire knows its own encoding
/// and nothing else does: the room hands over [`Out`] values, the wire makes the frames (an
/// update's frame is encoded once per wire, in its slot of the shared update, whichever of
/// the wire's connections writes it first).
pub(crate) trait Wire: Send {
    /// This wire's slot in [`crate::out::SharedUpdate`]'s frame cache (below `WIRE_SLOTS`).
    const FRAME_SLOT: usize;
    /// Yjs clients expect their own awareness echoed; duet clients do not.
    const ECHO_AWARENESS: bool;
    /// The first frame of a session, if the protocol has one.
    fn welcome(&self, peer_id: u64, role: Role, room: &RoomName) -> Option<Bytes>;
    /// The frame for a room's message; `None` when this protocol has no such message.
    fn encode(&self, out: Out) -> Option<Bytes>;
    /// A frame telling the client it was refused, if the protocol has one.
    fn refusal(&self, _reason: &str) -> Option<Bytes> {
        None
    }
    /// The room commands one binary frame carries, or why it is refused. `arrived` is when
    /// the frame was read (for the latency histograms).
    fn decode(
        &self,
        peer_id: u64,
        frame: &[u8],
        arrived: std::time::Instant,
    ) -> Result<Vec<RoomCmd>, Refusal>;
}

/// A frame that cannot be accepted: what to tell the client, and the close code.
pub(crate) struct Refusal {
    pub reply: Option<Bytes>,
    pub code: close::CloseCode,
    pub reason: String,
}

/// What the handshake granted this connection.
pub(crate) struct Session {
    pub role: Role,
    /// When the token runs out: the session is closed with 4401 then.
    pub expires_at: Option<std::time::SystemTime>,
    /// A Yjs client whose token was refused: it is told why and closed with 44xx at once.
    pub refused: Option<crate::auth::AuthError>,
}

impl Session {
    pub(crate) fn editor() -> Self {
        Self {
            role: Role::Editor,
            expires_at: None,
            refused: None,
        }
    }
}

enum End {
    /// The client vanished; nothing more to send.
    Gone,
    /// The client sent a close frame: answer it, then close TCP (RFC 6455 5.5.1, 7.1.1).
    ClosedByClient,
    /// Close with this code and reason.
    Close(close::CloseCode, String),
}

pub(crate) async fn run<S, W>(
    mut ws: WebSocketStream<S>,
    wire: W,
    shared: Arc<Shared>,
    room_name: RoomName,
    session: Session,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    W: Wire,
{
    let role = session.role;
    if let Some(refused) = session.refused {
        let code = if refused.status() == 403 {
            close::FORBIDDEN
        } else {
            close::TOKEN_EXPIRED
        };
        if let Some(frame) = wire.refusal(&refused.to_string()) {
            let _ = Box::pin(send(&mut ws, &shared, frame)).await;
        }
        Box::pin(finish(ws, &shared, End::Close(code, refused.to_string()))).await;
        return;
    }
    let mut traffic = shared.admission.traffic(std::time::Instant::now());
    // A deadline far away stands for "no expiry", keeping one select branch.
    let expires_in = session
        .expires_at
        .map(|at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        })
        .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    let peer_id = shared.next_peer_id();
    let (tx, mut out_rx) = outbox::channel(shared.config.room.send_queue, shared.metrics.clone());
    let (kick_tx, mut kick_rx) = oneshot::channel::<Kick>();

    if let Some(welcome) = wire.welcome(peer_id, role, &room_name)
        && Box::pin(send(&mut ws, &shared, welcome)).await.is_err()
    {
        return;
    }
    let joined = Box::pin(join(
        &shared,
        &room_name,
        peer_id,
        role,
        W::ECHO_AWARENESS,
        tx,
        kick_tx,
    ))
    .await;
    let Some(room) = joined else {
        let end = End::Close(close::GOING_AWAY, "room unavailable, reconnect".into());
        Box::pin(finish(ws, &shared, end)).await;
        return;
    };

    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_seen = Instant::now();
    let mut last_write: Option<std::time::Instant> = None;
    // Registered once: a fresh `cancelled()` per turn would lock the token on every message.
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let end = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break End::Close(close::GOING_AWAY, "server shutting down".into()),
            () = &mut expiry => break End::Close(close::TOKEN_EXPIRED, "token expired; get a new one".into()),
            kick = &mut kick_rx => {
                // What the room queued before closing us (the error saying why) goes first.
                let _ = Box::pin(tokio::time::timeout(KICK_DRAIN, drain(&mut ws, &wire, &shared, &mut out_rx))).await;
                break match kick {
                    Ok(k) => End::Close(k.code, k.reason),
                    Err(_) => End::Close(close::GOING_AWAY, "room closed, reconnect".into()),
                }
            },
            out = out_rx.recv() => {
                let Some(out) = out else { break End::Close(close::GOING_AWAY, "room closed, reconnect".into()) };
                // In a stream of messages (the last batch left moments ago), let the tasks
                // already queued run first (the room, the author's connection), so what they
                // queue next joins this batch and leaves in the same syscall. A lone edit
                // (people typing) is written at once: a yield costs every member of the room
                // a trip through the scheduler and a poll of the I/O driver.
                let now = std::time::Instant::now();
                if last_write.is_some_and(|at| now.duration_since(at) < STREAMING) {
                    tokio::task::yield_now().await;
                }
                last_write = Some(now);
                if write_batch(&mut ws, &wire, &shared, out, &mut out_rx).await.is_err() {
                    break End::Gone;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= DEAD_AFTER {
                    tracing::debug!(peer_id, "no heartbeat, dropping connection");
                    break End::Close(close::GOING_AWAY, "no heartbeat".into());
                }
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    break End::Gone;
                }
            }
            msg = ws.next() => {
                // One clock read per frame serves the heartbeat, the rate limit and latency.
                let now = std::time::Instant::now();
                last_seen = Instant::from_std(now);
                match msg {
                    None => break End::Gone,
                    Some(Ok(Message::Binary(bytes))) => {
                        shared.metrics.messages_in.inc();
                        shared.metrics.bytes_in.inc_by(bytes.len() as u64);
                        if let Err(why) = traffic.record(bytes.len(), now) {
                            break End::Close(close::POLICY, why.to_string());
                        }
                        match wire.decode(peer_id, &bytes, now) {
                            Ok(cmds) => {
                                let updates = cmds.iter().filter(|c| matches!(c, RoomCmd::Update(_))).count();
                                shared.metrics.updates_received.inc_by(updates as u64);
                                if forward(&room, cmds).await.is_err() {
                                    break End::Close(close::GOING_AWAY, "room closed, reconnect".into());
                                }
                            }
                            Err(refusal) => {
                                if let Some(reply) = refusal.reply {
                                    let _ = Box::pin(send(&mut ws, &shared, reply)).await;
                                }
                                break End::Close(refusal.code, refusal.reason);
                            }
                        }
                    }
                    Some(Ok(Message::Text(_))) => break End::Close(close::PROTOCOL_ERROR, "this server speaks binary frames only".into()),
                    Some(Ok(Message::Close(_))) => break End::ClosedByClient,
                    Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                    Some(Err(e)) => break read_error(e),
                }
            }
        }
    };
    let _ = room.send(RoomCmd::Core(Cmd::Leave { peer_id })).await;
    Box::pin(finish(ws, &shared, end)).await;
}

/// Debug builds only: echoes every text and binary message back (the echo route,
/// `http::ECHO_PATH`), with the session's own limits, read-error closes and close handshake,
/// so a WebSocket conformance suite tests exactly the frame handling sessions get.
#[cfg(debug_assertions)]
pub(crate) async fn echo<S>(mut ws: WebSocketStream<S>, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut traffic = shared.admission.traffic(std::time::Instant::now());
    let end = loop {
        let Some(msg) = ws.next().await else {
            break End::Gone;
        };
        let msg = match msg {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => msg,
            Ok(Message::Close(_)) => break End::ClosedByClient,
            Ok(_) => continue, // ping, pong: tungstenite answers pings itself
            Err(e) => break read_error(e),
        };
        if let Err(why) = traffic.record(msg.len(), std::time::Instant::now()) {
            break End::Close(close::POLICY, why.to_string());
        }
        if ws.send(msg).await.is_err() {
            break End::Gone;
        }
    };
    Box::pin(finish(ws, &shared, end)).await;
}

async fn forward(room: &RoomHandle, cmds: Vec<RoomCmd>) -> Result<(), crate::room::RoomGone> {
    for cmd in cmds {
        room.send(cmd).await?;
    }
    Ok(())
}

/// Joins the room, asking the registry for a fresh instance if the one found is unloading.
async fn join(
    shared: &Arc<Shared>,
    room_name: &RoomName,
    peer_id: u64,
    role: Role,
    echo_awareness: bool,
    tx: OutboxTx,
    kick: oneshot::Sender<Kick>,
) -> Option<RoomHandle> {
    let (mut tx, mut kick) = (tx, kick);
    for _ in 0..3 {
        let room = shared.registry.get_or_load(room_name);
        let (reply_tx, reply_rx) = oneshot::channel();
        let cmd = RoomCmd::Join {
            peer_id,
            role,
            echo_awareness,
            tx,
            kick,
            reply: reply_tx,
        };
        match room.send_returning(cmd).await {
            Ok(()) => {
                if reply_rx.await.is_ok() {
                    return Some(room);
                }
                return None;
            }
            Err(RoomCmd::Join { tx: t, kick: k, .. }) => {
                tx = t;
                kick = k;
            }
            Err(_) => return None,
        }
        tokio::task::yield_now().await;
    }
    None
}

/// Writes `first` and whatever else is already queued, then flushes once.
async fn write_batch<S, W: Wire>(
    ws: &mut WebSocketStream<S>,
    wire: &W,
    shared: &Shared,
    first: Out,
    rx: &mut OutboxRx,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut n = 0;
    while let Some(out) = next {
        if let Some(frame) = wire.encode(out) {
            shared.metrics.bytes_out.inc_by(frame.len() as u64);
            ws.feed(Message::Binary(frame)).await?;
        }
        n += 1;
        next = if n < WRITE_BATCH { rx.try_recv() } else { None };
    }
    ws.flush().await
}

/// Writes whatever is queued.
async fn drain<S, W: Wire>(
    ws: &mut WebSocketStream<S>,
    wire: &W,
    shared: &Shared,
    rx: &mut OutboxRx,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(out) = rx.try_recv() {
        write_batch(ws, wire, shared, out, rx).await?;
    }
    Ok(())
}

async fn send<S>(ws: &mut WebSocketStream<S>, shared: &Shared, frame: Bytes) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.metrics.bytes_out.inc_by(frame.len() as u64);
    ws.send(Message::Binary(frame)).await
}

/// Maps a read error to the close code the client should see. tungstenite drops the socket
/// without a close frame on these errors, so we send it ourselves.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => End::Close(
            close::TOO_BIG,
            format!("message of {size} bytes exceeds the {max_size}-byte limit"),
        ),
        WsError::Capacity(e) => End::Close(close::TOO_BIG, e.to_string()),
        WsError::Utf8(_) => End::Close(
            close::INVALID_PAYLOAD,
            "invalid UTF-8 in a text frame".into(),
        ),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Io(_) => End::Gone,
        WsError::Protocol(e) => End::Close(close::PROTOCOL_ERROR, e.to_string()),
        other => {
            tracing::debug!(error = %other, "websocket read error");
            End::Gone
        }
    }
}

/// Sends the close frame (if any) and waits briefly for the client's reply.
async fn finish<S>(mut ws: WebSocketStream<S>, shared: &Shared, end: End)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (code, reason) = match end {
        End::Gone => return,
        End::ClosedByClient => {
            // tungstenite queued the answer when it read the client's close: the same code
            // and reason, or 1002 for a code RFC 6455 7.4 does not allow on the wire (0-999,
            // 1004-1006, 1015, 1016-2999 unassigned, 5000 and up; tungstenite 0.30 also
            // counts IANA's 1014 among them). Only a flush writes it (`close` would refuse to
            // send after the peer's close); the server then closes TCP first, as 7.1.1 asks.
            let _ = ws.flush().await;
            let _ = ws.get_mut().shutdown().await;
            return;
        }
        End::Close(code, reason) => (code, reason),
    };
    shared.metrics.count_close(code.0);
    let mut reason = reason;
    // A close frame's reason must fit in 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code: CloseCode::from(code.0),
        reason: reason.clone().into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        // tungstenite refuses to write once it has failed a read (oversized or bad frames):
        // write the close frame straight to the socket.
        let mut raw = vec![0x88, (2 + reason.len()) as u8];
        raw.extend_from_slice(&code.0.to_be_bytes());
        raw.extend_from_slice(reason.as_bytes());
        let stream = ws.get_mut();
        let _ = stream.write_all(&raw).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
        return;
    }
    // Let the client answer the close; don't wait for a dead one.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
