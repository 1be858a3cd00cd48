//! `duet-server`: the duet sync server.
//!
//! Run: `duet-server [--listen 127.0.0.1:7070] [--data-dir ./duet-data]`, then point `duet`
//! (or any Yjs y-websocket client, once supported) at `ws://HOST:PORT/ROOM`.

use anyhow::Context;
use clap::Parser;
use duet_server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The duet sync server: rooms of Yjs documents over WebSocket.
#[derive(Parser, Debug)]
#[command(name = "duet-server", version, about)]
struct Args {
    /// Address to listen on. Loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:7070", env = "DUET_LISTEN")]
    listen: SocketAddr,
    /// Directory for stored rooms.
    #[arg(long, default_value = "./duet-data", env = "DUET_DATA_DIR")]
    data_dir: PathBuf,
    /// Largest WebSocket message accepted, in bytes (larger: close 1009).
    #[arg(long, default_value_t = duet_protocol::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Seconds a room with no members stays in memory.
    #[arg(long, default_value_t = 60)]
    idle_unload_secs: u64,
    /// Seconds a new connection has to finish its WebSocket handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// Per-member send queue, in messages; a member whose queue fills is closed with 1013.
    #[arg(long, default_value_t = 1024)]
    send_queue: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ServerConfig {
        listen: args.listen,
        max_message_bytes: args.max_message_bytes,
        handshake_timeout: Duration::from_secs(args.handshake_timeout_secs.max(1)),
        ..ServerConfig::default()
    };
    config.room.idle_unload = Duration::from_secs(args.idle_unload_secs);
    config.room.send_queue = args.send_queue.max(1);
    let server = Server::bind(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server.local_addr()?;
    tracing::warn!(
        data_dir = %args.data_dir.display(),
        "rooms are kept in memory only in this build; they do not survive a restart"
    );
    println!("duet-server listening on ws://{addr} (health: http://{addr}/healthz)");
    server.run_until(shutdown_signal()).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
