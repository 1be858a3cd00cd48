//! duet-server as a library: the sync server that the `duet-server` binary runs, and that the
//! `duet` editor runs in-process when no server answers.
//!
//! Entry point: [`Server::bind`] with a [`ServerConfig`], then [`Server::run_until`] or
//! [`Server::spawn`].
//!
//! Rooms live at `ws://HOST:PORT/ROOM`. Each room is one task owning a yrs document
//! ([`room`]); connections ([`conn`]) reach it through bounded channels. `GET /healthz` and
//! `GET /metrics` answer on the same port.

pub mod admin;
mod conn;
mod conn_yjs;
pub mod data_dir;
pub mod http;
pub mod metrics;
mod registry;
pub mod room;
pub mod sqlite;
pub mod store;
pub mod yjs;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::RoomConfig;
use crate::store::{MemoryStore, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            max_message_bytes: duet_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            handshake_timeout: Duration::from_secs(10),
            room: RoomConfig::default(),
        }
    }
}

impl ServerConfig {
    /// WebSocket buffers chosen on purpose: tungstenite's defaults (a 128 KiB read buffer)
    /// cost ~134 KiB per idle connection; 4 KiB and an unbuffered writer cost ~6 KiB.
    fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
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
    next_peer: AtomicU64,
}

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
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Arc::new(Metrics::default());
        let registry = Registry::new(
            store,
            config.room.clone(),
            shutdown.clone(),
            tracker.clone(),
            metrics.clone(),
        );
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                registry,
                metrics,
                shutdown,
                next_peer: AtomicU64::new(1),
            }),
            tracker,
        })
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

async fn handle_tcp(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let handshake = async {
        let head = match http::read_head(&mut stream).await {
            Ok(head) => head,
            Err(http::HeadError::Eof | http::HeadError::Io(_)) => return None,
            Err(e) => {
                let _ = http::Response::text(400, e.to_string())
                    .write(&mut stream)
                    .await;
                return None;
            }
        };
        match http::route(&head, || shared.metrics.render()) {
            http::Route::Respond(response) => {
                if response.status >= 400 {
                    tracing::debug!(%peer, path = %head.path, status = response.status, "refused request");
                }
                let _ = response.write(&mut stream).await;
                None
            }
            http::Route::Upgrade(upgrade) => {
                http::accept(&mut stream, &upgrade).await.ok()?;
                Some((upgrade, head.rest))
            }
        }
    };
    let Ok(Some((upgrade, rest))) =
        tokio::time::timeout(shared.config.handshake_timeout, handshake).await
    else {
        return;
    };
    let ws = WebSocketStream::from_partially_read(
        stream,
        rest,
        WsRole::Server,
        Some(shared.config.websocket()),
    )
    .await;
    shared.metrics.connections.inc();
    shared.metrics.connections_total.inc();
    tracing::debug!(%peer, room = %upgrade.room, "session started");
    let role = duet_protocol::Role::Editor;
    match upgrade.flavor {
        http::Flavor::Duet(_) => {
            conn::run(ws, conn::DuetWire, shared.clone(), upgrade.room, role).await;
        }
        http::Flavor::Yjs => {
            conn::run(ws, conn_yjs::YjsWire, shared.clone(), upgrade.room, role).await;
        }
    }
    shared.metrics.connections.dec();
}
