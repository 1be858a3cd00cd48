//! duet-server as a library: the sync server that the `duet-server` binary runs, and that the
//! `duet` editor runs in-process when no server answers.
//!
//! Entry point: [`Server::bind`] with a [`ServerConfig`], then [`Server::run_until`] or
//! [`Server::spawn`].
//!
//! Rooms live at `ws://HOST:PORT/ROOM`. Each room is one task owning a yrs document
//! ([`room`]); connections ([`conn`]) reach it through bounded channels. `GET /healthz` and
//! `GET /metrics` answer on the same port.

// Tests may unwrap: a panic there is a failed test, which is what we want.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod auth;
pub mod awareness;
#[doc(hidden)]
pub mod bench;
pub mod cluster;
pub mod compaction;
mod conn;
mod conn_duet;
mod conn_yjs;
pub mod contain;
pub mod data_dir;
pub mod doc;
#[doc(hidden)]
pub mod fuzzing;
/// The bounds checks every update and state vector passes before yrs sees it.
pub use duet_guard as guard;
pub mod http;
pub mod limits;
pub mod memory;
pub mod metrics;
#[cfg(feature = "cluster")]
pub mod node;
pub mod out;
pub mod outbox;
mod registry;
pub mod room;
pub mod sqlite;
pub mod storage;
pub mod store;
pub mod tls;

use crate::limits::{Admission, LimitConfig};
use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::{ClusterLink, RoomConfig};
use crate::store::{BoxFuture, Store};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen. Loopback by default: exposing the server is a deliberate choice.
    pub listen: SocketAddr,
    /// The cap on one WebSocket message; over it the server closes with 1009.
    pub max_message_bytes: usize,
    /// A connection must finish its HTTP upgrade within this time.
    pub handshake_timeout: Duration,
    /// Room tunables.
    pub room: RoomConfig,
    /// Who may connect.
    pub access: AccessConfig,
    /// Rates and caps.
    pub limits: LimitConfig,
    /// Serve `wss://` with this configuration instead of plain `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Who may connect, and as what.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Token keys; `None` lets everyone in as an editor (safe only on loopback).
    pub keys: Option<auth::Keys>,
    /// Allowed `Origin` values for browser clients (exact match); empty allows any.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            max_message_bytes: duet_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            handshake_timeout: Duration::from_secs(10),
            room: RoomConfig::default(),
            access: AccessConfig::default(),
            limits: LimitConfig::default(),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// WebSocket buffers chosen on purpose: tungstenite's defaults (a 128 KiB read buffer,
    /// zero-filled, so all resident) cost ~134 KiB per idle connection; the 1 KiB read buffer
    /// set here leaves ~8 KiB per idle connection (docs/BENCHMARKS.md). Writes gather up
    /// to 16 KiB of frames so a batch from the send queue leaves in one syscall (conn.rs
    /// flushes after each batch); the buffer only grows that far while a batch is written.
    fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(16 * 1024)
            .max_write_buffer_size(self.max_message_bytes.saturating_mul(2).max(1 << 20))
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) admission: Admission,
    /// What `/healthz` says beyond "up" (a cluster node: PostgreSQL and Redis reachable).
    pub(crate) health: Option<Health>,
    next_peer: AtomicU64,
}

/// `Err(reason)` when the server should get no clients (`/healthz` answers 503 with it).
pub(crate) type Health = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl Shared {
    pub(crate) fn next_peer_id(&self) -> u64 {
        self.next_peer.fetch_add(1, Ordering::Relaxed)
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    /// Run after every room has stopped (a cluster node's goodbye).
    farewell: Option<BoxFuture<'static, ()>>,
}

impl Server {
    /// Binds the listener with an in-memory store.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Self> {
        Self::bind_with_store(config, Arc::new(MemoryStore::default())).await
    }

    /// Binds the listener, keeping rooms in `store`.
    pub async fn bind_with_store(
        config: ServerConfig,
        store: Arc<dyn Store>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let metrics = Metrics::with_store(store.metrics());
        Ok(Self::assemble(listener, config, store, None, metrics, None))
    }

    /// Binds the listener as one node of a cluster (ADR 011): rooms stored in PostgreSQL,
    /// shared with the other nodes over the bus `node` names. The node registers itself (a new
    /// epoch) before this returns; its tasks start with the server.
    #[cfg(feature = "cluster")]
    pub async fn bind_node(
        config: ServerConfig,
        pg: Arc<cluster::pg::PgStore>,
        node: node::NodeOptions,
    ) -> Result<Self, BindError> {
        let listener = TcpListener::bind(config.listen).await?;
        let digest_every = node.digest_every;
        let starting = node::Starting::new(pg.clone(), node).await?;
        let mut metrics = Metrics::with_store(pg.metrics());
        metrics.cluster = Some(starting.metrics.clone());
        if let Some(bus) = starting.bus_metrics() {
            metrics.sections.push(bus);
        }
        let link = ClusterLink {
            bus: starting.bus.clone(),
            digest_every,
        };
        let health = starting.health.clone();
        let health: Health = Arc::new(move || health.check());
        let mut server = Self::assemble(listener, config, pg, Some(link), metrics, Some(health));
        let farewell = starting.run(
            server.shared.registry.clone(),
            &server.tracker,
            server.shared.shutdown.clone(),
        );
        server.farewell = Some(farewell);
        Ok(server)
    }

    fn assemble(
        listener: TcpListener,
        config: ServerConfig,
        store: Arc<dyn Store>,
        link: Option<ClusterLink>,
        metrics: Metrics,
        health: Option<Health>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Arc::new(metrics);
        let registry = Registry::new(
            store,
            link,
            config.room.clone(),
            shutdown.clone(),
            tracker.clone(),
            metrics.clone(),
        );
        Self {
            listener,
            shared: Arc::new(Shared {
                admission: Admission::new(config.limits.clone()),
                config,
                registry,
                metrics,
                shutdown,
                health,
                next_peer: AtomicU64::new(1),
            }),
            tracker,
            farewell: None,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `signal` resolves, then stops accepting, closes every client with 1001,
    /// lets every room finish storing what it took in, and returns.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        let Server {
            listener,
            shared,
            tracker,
            farewell,
        } = self;
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                () = shared.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracker.spawn(handle_tcp(stream, peer, shared.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!("shutting down: closing connections and flushing rooms");
        shared.shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        if let Some(farewell) = farewell {
            farewell.await;
        }
        tracing::info!("shutdown complete");
    }

    /// Runs the server on the current runtime; the handle stops it.
    pub fn spawn(self) -> ServerHandle {
        let token = self.shared.shutdown.clone();
        let addr = self.local_addr().ok();
        let stop = token.clone();
        let join = tokio::spawn(self.run_until(async move { stop.cancelled().await }));
        ServerHandle { addr, token, join }
    }

    /// The server's metrics, for embedding applications and tests.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }
}

/// Why a cluster node could not start.
#[cfg(feature = "cluster")]
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Node(#[from] node::NodeError),
}

/// A server running on a tokio runtime.
pub struct ServerHandle {
    addr: Option<SocketAddr>,
    token: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.join.await;
    }
}

/// What the handshake decided.
struct Admitted {
    upgrade: http::Upgrade,
    rest: Vec<u8>,
    session: conn::Session,
}

/// Reads the request head and decides: plain HTTP answer, refusal, or upgrade. Order matters:
/// limits first (cheap), then origin, then token, then room capacity, so a refused client
/// never creates a room.
async fn handshake<'a, S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    shared: &'a Shared,
) -> Option<(Admitted, limits::Ticket<'a>)> {
    let head = match http::read_head(stream).await {
        Ok(head) => head,
        Err(http::HeadError::Eof | http::HeadError::Io(_)) => return None,
        Err(e) => {
            let _ = http::Response::text(400, e.to_string()).write(stream).await;
            return None;
        }
    };
    let refuse = |status: u16, message: String| {
        tracing::debug!(%peer, path = %head.path, status, %message, "refused request");
        http::Response::text(status, message)
    };
    let health = || shared.health.as_ref().map_or(Ok(()), |check| check());
    let upgrade = match http::route(&head, || shared.metrics.render(), health) {
        http::Route::Respond(response) => {
            let _ = response.write(stream).await;
            return None;
        }
        http::Route::Upgrade(upgrade) => upgrade,
    };
    let access = &shared.config.access;
    let ip = limits::client_ip(
        peer.ip(),
        head.header("x-forwarded-for"),
        &access.trusted_proxies,
    );
    let ticket = match shared.admission.admit(ip, std::time::Instant::now()) {
        Ok(ticket) => ticket,
        Err(refused) => {
            let mut response = refuse(refused.status(), refused.to_string());
            if let Some(secs) = refused.retry_after() {
                response = response.with_header("Retry-After", secs.to_string());
            }
            let _ = response.write(stream).await;
            return None;
        }
    };
    if let Some(origin) = head.header("origin")
        && !access.allowed_origins.is_empty()
        && !access.allowed_origins.iter().any(|o| o == origin)
    {
        let _ = refuse(403, format!("origin {origin} is not allowed"))
            .write(stream)
            .await;
        return None;
    }
    let mut session = conn::Session::editor();
    if let Some(keys) = &access.keys {
        let token = auth::token_from_request(head.header("authorization"), head.query.as_deref());
        let verdict = match token {
            Some(token) => keys.verify(&token, &upgrade.room),
            None => Err(auth::AuthError::Missing),
        };
        match verdict {
            Ok(claims) => {
                session.role = claims.role.into();
                session.expires_at = Some(std::time::UNIX_EPOCH + Duration::from_secs(claims.exp));
            }
            // y-websocket retries forever after an HTTP refusal but stops on a 44xx close,
            // so Yjs clients are upgraded and then closed with the code.
            Err(e) if upgrade.flavor == http::Flavor::Yjs => session.refused = Some(e),
            Err(e) => {
                let _ = refuse(e.status(), e.to_string()).write(stream).await;
                return None;
            }
        }
    }
    if session.refused.is_none()
        && !shared.registry.is_loaded(&upgrade.room)
        && shared.registry.loaded() >= shared.config.limits.max_loaded_rooms
    {
        let message = format!(
            "the server holds its limit of {} rooms; retry later",
            shared.config.limits.max_loaded_rooms
        );
        let _ = refuse(503, message)
            .with_header("Retry-After", "30")
            .write(stream)
            .await;
        return None;
    }
    http::accept(stream, &upgrade).await.ok()?;
    Some((
        Admitted {
            upgrade,
            rest: head.rest,
            session,
        },
        ticket,
    ))
}

async fn handle_tcp(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    match shared.config.tls.clone() {
        // Boxed: tokio allocates every connection's task at its future's full size, and the
        // TLS handshake and a WebSocket over rustls are far larger than a plain one. Inline,
        // they made every plain connection's task ~1.2 KiB bigger (and ~8 KiB before that).
        Some(tls) => Box::pin(serve_tls(stream, tls, peer, shared)).await,
        None => serve(stream, peer, shared).await,
    }
}

async fn serve_tls(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    match tokio::time::timeout(shared.config.handshake_timeout, accept).await {
        Ok(Ok(stream)) => serve(stream, peer, shared).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let timeout = shared.config.handshake_timeout;
    let Ok(Some((admitted, _ticket))) =
        tokio::time::timeout(timeout, handshake(&mut stream, peer, &shared)).await
    else {
        return;
    };
    let Admitted {
        upgrade,
        rest,
        session,
    } = admitted;
    let ws = WebSocketStream::from_partially_read(
        stream,
        rest,
        WsRole::Server,
        Some(shared.config.websocket()),
    )
    .await;
    shared.metrics.connections.inc();
    shared.metrics.connections_total.inc();
    tracing::debug!(%peer, room = %upgrade.room, role = session.role.as_str(), "session started");
    match upgrade.flavor {
        http::Flavor::Duet(_) => {
            conn::run(
                ws,
                conn_duet::DuetWire,
                shared.clone(),
                upgrade.room,
                session,
            )
            .await;
        }
        http::Flavor::Yjs => {
            conn::run(ws, conn_yjs::YjsWire, shared.clone(), upgrade.room, session).await;
        }
        #[cfg(debug_assertions)]
        http::Flavor::Echo => conn::echo(ws, shared.clone()).await,
    }
    shared.metrics.connections.dec();
}
