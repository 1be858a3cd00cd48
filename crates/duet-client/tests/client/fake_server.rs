//! A small duet server for the client's tests: it speaks `duet.v2` (welcome, the two sync
//! steps, relayed updates, acks, awareness broadcast) over real WebSockets on loopback, and
//! can be told to misbehave. The room outlives the server, so a test can stop the server
//! (listener and every socket) and start a new one on the same port with the same document,
//! as a restarted server with durable storage would.

use duet_doc::Document;
use duet_protocol::{
    AwarenessEntry, ClientMsg, PROTOCOL, Role, ServerMsg, decode_client, encode_server,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How the server treats one incoming connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Speak the protocol.
    Normal,
    /// Accept the WebSocket, then close at once with this code and reason.
    CloseWith(u16, &'static str),
    /// Accept, send a frame that does not decode, and wait for the client to close.
    Garbage,
    /// Complete the handshake without agreeing to `duet.v2`.
    NoSubprotocol,
}

/// The room's durable and ephemeral state, plus what the tests want to observe.
pub struct Room {
    doc: Mutex<Document>,
    /// Ephemeral (cleared on restart): connected members' outgoing queues, by peer id.
    /// Unbounded because this is a test fake: the real server closes slow clients instead.
    members: Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>,
    /// Ephemeral: awareness entries by client id.
    awareness: Mutex<HashMap<u64, AwarenessEntry>>,
    next_peer_id: AtomicU64,
    clock: AtomicU64,
    /// Behaviours for the next connections, in order; `Normal` when empty.
    script: Mutex<VecDeque<Behaviour>>,
    /// WebSocket handshakes completed.
    pub accepted: AtomicUsize,
    /// Close codes clients sent.
    pub close_codes: Mutex<Vec<u16>>,
    /// `Authorization` headers seen.
    pub authorizations: Mutex<Vec<String>>,
    /// Room paths requested.
    pub paths: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Room {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            doc: Mutex::new(Document::with_client_id(1)),
            members: Mutex::default(),
            awareness: Mutex::default(),
            next_peer_id: AtomicU64::new(1),
            clock: AtomicU64::new(0),
            script: Mutex::default(),
            accepted: AtomicUsize::new(0),
            close_codes: Mutex::default(),
            authorizations: Mutex::default(),
            paths: Mutex::default(),
        })
    }

    pub fn text(&self) -> String {
        lock(&self.doc).text()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn close_codes(&self) -> Vec<u16> {
        lock(&self.close_codes).clone()
    }

    /// Queues behaviours for the next connections.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.script).extend(behaviours);
    }

    /// Sends an awareness message to every member, as if the room had changed it.
    pub fn broadcast_awareness(&self, entries: Vec<AwarenessEntry>) {
        for e in &entries {
            if e.state.is_some() {
                lock(&self.awareness).insert(e.client_id, e.clone());
            } else {
                lock(&self.awareness).remove(&e.client_id);
            }
        }
        self.send_to_all(&ServerMsg::Awareness { entries }, None);
    }

    fn send_to_all(&self, msg: &ServerMsg, except: Option<u64>) {
        let frame = Message::binary(encode_server(msg));
        for (peer_id, tx) in lock(&self.members).iter() {
            if Some(*peer_id) != except {
                let _ = tx.send(frame.clone());
            }
        }
    }
}

/// A running server on a loopback port.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub room: Arc<Room>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeServer {
    /// Starts a server for a new room on a free port.
    pub async fn start() -> Self {
        Self::start_on(0, Room::new()).await
    }

    /// Starts a server for `room` on `port` (0: any free port).
    pub async fn start_on(port: u16, room: Arc<Room>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let room = room.clone();
            let connections = connections.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let task = tokio::spawn(serve(room.clone(), stream));
                    lock(&connections).push(task);
                }
            }
        });
        Self {
            addr,
            room,
            accept,
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Drops the listener and every socket without a close frame, and forgets the
    /// ephemeral state, as a crashed server would. The room document survives.
    pub async fn kill(self) {
        self.accept.abort();
        let _ = self.accept.await;
        let tasks: Vec<_> = lock(&self.connections).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        lock(&self.room.members).clear();
        lock(&self.room.awareness).clear();
    }
}

async fn serve(room: Arc<Room>, stream: TcpStream) {
    let behaviour = lock(&room.script).pop_front().unwrap_or(Behaviour::Normal);
    let agree = !matches!(behaviour, Behaviour::NoSubprotocol);
    #[allow(
        clippy::result_large_err,
        reason = "tungstenite's handshake callback type fixes the error type"
    )]
    let callback = |req: &Request, mut resp: Response| {
        lock(&room.paths).push(req.uri().path().to_owned());
        if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
            lock(&room.authorizations).push(auth.to_str().unwrap_or("?").to_owned());
        }
        let offered = req
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if agree && offered.split(',').any(|p| p.trim() == PROTOCOL) {
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(PROTOCOL),
            );
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    room.accepted.fetch_add(1, Ordering::SeqCst);

    match behaviour {
        Behaviour::Normal | Behaviour::NoSubprotocol => {}
        Behaviour::CloseWith(code, reason) => {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let _ = ws.close(Some(frame)).await;
            while let Some(Ok(_)) = ws.next().await {}
            return;
        }
        Behaviour::Garbage => {
            let _ = ws.send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef])).await;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Close(Some(frame)) = msg {
                    lock(&room.close_codes).push(u16::from(frame.code));
                }
            }
            return;
        }
    }

    let peer_id = room.next_peer_id.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&room.members).insert(peer_id, tx.clone());
    let send = |msg: ServerMsg| {
        let _ = tx.send(Message::binary(encode_server(&msg)));
    };
    send(ServerMsg::Welcome {
        peer_id,
        role: Role::Editor,
        room: "test".into(),
        server: "fake".into(),
    });
    send(ServerMsg::SyncStep1 {
        state_vector: lock(&room.doc).state_vector().into(),
    });
    send(ServerMsg::Awareness {
        entries: lock(&room.awareness).values().cloned().collect(),
    });

    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                if ws.send(out).await.is_err() {
                    break;
                }
            }
            frame = ws.next() => {
                let msg = match frame {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        if let Some(frame) = frame {
                            lock(&room.close_codes).push(u16::from(frame.code));
                        }
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break,
                };
                let Ok(msg) = decode_client(&msg) else {
                    break;
                };
                handle(&room, peer_id, &send, msg);
            }
        }
    }

    lock(&room.members).remove(&peer_id);
    let gone: Vec<AwarenessEntry> = {
        let mut awareness = lock(&room.awareness);
        let ids: Vec<u64> = awareness
            .values()
            .filter(|e| e.peer_id == peer_id)
            .map(|e| e.client_id)
            .collect();
        ids.iter()
            .filter_map(|id| awareness.remove(id))
            .map(|e| AwarenessEntry { state: None, ..e })
            .collect()
    };
    if !gone.is_empty() {
        room.send_to_all(&ServerMsg::Awareness { entries: gone }, None);
    }
}

fn handle(room: &Room, peer_id: u64, send: &impl Fn(ServerMsg), msg: ClientMsg) {
    match msg {
        ClientMsg::SyncStep1 { state_vector } => {
            let diff = lock(&room.doc)
                .encode_diff(&state_vector)
                .expect("client sent a valid state vector");
            send(ServerMsg::SyncStep2 {
                update: diff.into(),
            });
        }
        ClientMsg::SyncStep2 { seq, update } | ClientMsg::Update { seq, update } => {
            lock(&room.doc)
                .apply_remote_update(&update)
                .expect("client sent a valid update");
            room.send_to_all(&ServerMsg::Update { update }, Some(peer_id));
            send(ServerMsg::Ack { seq });
        }
        ClientMsg::Awareness { client_id, state } => {
            let clock = room.clock.fetch_add(1, Ordering::SeqCst);
            let entry = AwarenessEntry {
                client_id,
                peer_id,
                clock: u32::try_from(clock).unwrap_or(u32::MAX),
                role: Role::Editor,
                state,
            };
            // Echoed to the sender too, as y-websocket does: the client must skip itself.
            room.broadcast_awareness(vec![entry]);
        }
    }
}

/// A plain HTTP server that answers every request with `status` and `body`, as a server
/// refusing the handshake does. Returns its address.
pub async fn http_refuser(status: &'static str, body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the whole request first, so closing does not reset the connection.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}
