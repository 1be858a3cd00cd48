//! `duet-server`: the duet sync server.
//!
//! Run: `duet-server [--listen 127.0.0.1:7070] [--data-dir ./duet-data]`, then point `duet`
//! (or any Yjs y-websocket client) at `ws://HOST:PORT/ROOM`.
//!
//! A node of a cluster (docs/deploy.md): `duet-server --postgres URL --redis URL [--node-id ID]`
//! (or `DUET_POSTGRES`, `DUET_REDIS`, `DUET_NODE_ID`); any number of them behind a plain load
//! balancer serve the same rooms.
//!
//! Admin: `duet-server rooms list | export ROOM [--format text|yjs] [FILE] | import ROOM FILE
//! [--format yjs|text] | delete ROOM`, on the same backend (`--data-dir`, or `--postgres`).
//! `list` and `export` are safe while a server runs; on SQLite `import` and `delete` refuse
//! while a server holds the data directory. `duet-server migrate --data-dir DIR --postgres URL`
//! copies every room of a single node's SQLite data directory into PostgreSQL.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use duet_server::admin::{self, Format};
use duet_server::compaction::CompactionPolicy;
use duet_server::data_dir::LockError;
use duet_server::sqlite::SqliteOptions;
use duet_server::storage::StoreChoice;
use duet_server::{Server, ServerConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The duet sync server: rooms of Yjs documents over WebSocket.
#[derive(Parser, Debug)]
#[command(name = "duet-server", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory for stored rooms (one SQLite database, created if missing).
    #[arg(
        long,
        default_value = "./duet-data",
        env = "DUET_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    /// Address to listen on. Loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:7070", env = "DUET_LISTEN")]
    listen: SocketAddr,
    /// Keep rooms in memory only: nothing survives a restart, the data directory is unused.
    #[arg(long, conflicts_with = "postgres")]
    memory: bool,
    /// Store rooms in this PostgreSQL database (`postgres://USER:PASSWORD@HOST:PORT/DB`) and
    /// run as a node of a cluster: every node given the same database (and --redis) serves the
    /// same rooms. The data directory is unused.
    #[arg(long, env = "DUET_POSTGRES", hide_env_values = true, global = true)]
    postgres: Option<String>,
    /// The Redis that carries live edits and cursors between the nodes
    /// (`redis://[:PASSWORD@]HOST:PORT`). Without it, nodes see each other's edits only through
    /// the database, every --heads-check-ms.
    #[arg(
        long,
        env = "DUET_REDIS",
        hide_env_values = true,
        requires = "postgres"
    )]
    redis: Option<String>,
    /// Put before the name of every channel this cluster uses on Redis, so that several
    /// clusters can share one Redis.
    #[arg(long, env = "DUET_BUS_PREFIX", default_value = "duet:")]
    bus_prefix: String,
    /// This node's name in the cluster, stable across its restarts (letters, digits, `.`, `_`,
    /// `-`). Default: the host name and the port.
    #[arg(long, env = "DUET_NODE_ID")]
    node_id: Option<String>,
    /// Milliseconds between a node's heartbeats (a row in PostgreSQL).
    #[arg(long, hide = true, default_value_t = 2000)]
    heartbeat_ms: u64,
    /// Milliseconds after which a node whose heartbeat has not been refreshed is gone (its
    /// cursors removed everywhere).
    #[arg(long, hide = true, default_value_t = 6000)]
    stale_after_ms: u64,
    /// Milliseconds between checks of the loaded rooms' heads in the log (one query).
    #[arg(long, hide = true, default_value_t = 2000)]
    heads_check_ms: u64,
    /// Milliseconds between a room's state-vector digests on the bus.
    #[arg(long, hide = true, default_value_t = 30_000)]
    digest_ms: u64,
    /// Compact a room once its log holds this many updates (small values exercise compaction
    /// in tests).
    #[arg(long, hide = true, default_value_t = CompactionPolicy::default().after_rows)]
    compact_after_rows: u64,
    /// Milliseconds a batch of edits stays open after its first one before it is committed
    /// and fsynced (sooner once 512 have queued). Bounds fsyncs to about one per window however
    /// many people type; acknowledgements wait up to this long more. 0: commit at once.
    #[arg(long, default_value_t = duet_server::sqlite::DEFAULT_COMMIT_WINDOW.as_millis() as u64)]
    commit_window_ms: u64,
    /// Cap the database at this many pages (`PRAGMA max_page_count`), to simulate a full disk.
    #[arg(long, hide = true)]
    max_db_pages: Option<u64>,
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
    /// Acknowledgements do not count: a member has at most one waiting.
    #[arg(long, default_value_t = 16 * 1024)]
    send_queue: usize,
    /// Per-member send queue, in MiB of payload; a member past it is closed with 1013 (one
    /// message of any size always fits an empty queue).
    #[arg(long, default_value_t = 8)]
    send_queue_mib: usize,
    /// Turns on token auth: a file with one secret (>= 32 bytes) per line, optionally
    /// `KID:SECRET`; the first signs, all verify. Mint tokens with `duet-server token`.
    #[arg(long, env = "DUET_AUTH_KEY_FILE", global = true)]
    auth_key_file: Option<PathBuf>,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow listening on a non-loopback address without auth (anyone who can reach the port
    /// can read and write every room).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Browser origins allowed to connect (exact match, repeatable); default: any.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// Reverse proxies whose X-Forwarded-For names the client (repeatable).
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// New connections per second per client IP (burst: 5x).
    #[arg(long, default_value_t = duet_server::limits::LimitConfig::default().handshakes_per_sec)]
    max_handshakes_per_sec: f64,
    /// Open connections per client IP (over: 429).
    #[arg(long, default_value_t = duet_server::limits::LimitConfig::default().connections_per_ip)]
    max_connections_per_ip: usize,
    /// Open connections in all (over: 503).
    #[arg(long, default_value_t = duet_server::limits::LimitConfig::default().connections_total)]
    max_connections: usize,
    /// Rooms held in memory at once (over: 503 for a room not already loaded).
    #[arg(long, default_value_t = duet_server::limits::LimitConfig::default().max_loaded_rooms)]
    max_rooms: usize,
    /// Messages per second per connection (burst: 10x; over: close 1008).
    #[arg(long, default_value_t = duet_server::limits::LimitConfig::default().messages_per_sec)]
    max_messages_per_sec: f64,
    /// Bytes per second per connection (burst: 16x; over: close 1008).
    #[arg(long, default_value_t = duet_server::limits::LimitConfig::default().bytes_per_sec)]
    max_bytes_per_sec: f64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints a signed access token (needs --auth-key-file or DUET_AUTH_KEY_FILE).
    Token {
        /// Room name or prefix pattern: `notes.md`, `team/*`, or `*`.
        #[arg(long)]
        room: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Editor)]
        role: RoleArg,
        /// Lifetime, e.g. 30m, 8h, 7d.
        #[arg(long, default_value = "8h")]
        ttl: String,
        /// A display name carried in the token.
        #[arg(long)]
        name: Option<String>,
    },
    /// Inspect and manage the stored rooms of the data directory (or of --postgres).
    Rooms {
        #[command(subcommand)]
        command: RoomsCommand,
    },
    /// Copies every room of a single node's data directory (--data-dir, SQLite) into the
    /// PostgreSQL database of a cluster (--postgres). The single node must be stopped.
    Migrate {
        /// Leave rooms that already exist in PostgreSQL as they are (default: stop at the first).
        #[arg(long)]
        skip_existing: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RoomsCommand {
    /// Lists stored rooms with the size of their log and snapshot.
    List,
    /// Writes a room's document to FILE (or standard output).
    Export {
        room: String,
        #[arg(long, value_enum, default_value_t = FormatArg::Text)]
        format: FormatArg,
        file: Option<PathBuf>,
    },
    /// Creates a room from a Yjs update file (or a text file with --format text).
    Import {
        room: String,
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = FormatArg::Yjs)]
        format: FormatArg,
    },
    /// Deletes a room and everything stored for it.
    Delete { room: String },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Editor,
    Viewer,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    /// The document's text.
    Text,
    /// A Yjs v1 update of the whole document (loads with `Y.applyUpdate`).
    Yjs,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Yjs => Format::Yjs,
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    duet_server::contain::install_panic_hook();
    let mut args = Args::parse();
    #[cfg(not(feature = "cluster"))]
    if args.postgres.is_some() || args.redis.is_some() {
        anyhow::bail!(
            "this duet-server was built without the cargo feature `cluster`: no PostgreSQL or Redis"
        );
    }
    match args.command.take() {
        Some(Command::Rooms { command }) => return rooms(&store_choice(&args), command),
        Some(Command::Migrate { skip_existing }) => {
            #[cfg(feature = "cluster")]
            return cluster_cli::migrate(&args, skip_existing);
            #[cfg(not(feature = "cluster"))]
            {
                let _ = skip_existing;
                anyhow::bail!(
                    "this duet-server was built without the cargo feature `cluster`: it cannot migrate into PostgreSQL"
                );
            }
        }
        Some(Command::Token {
            room,
            role,
            ttl,
            name,
        }) => return token(args.auth_key_file.as_deref(), &room, role, &ttl, name),
        None => {}
    }
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
    config.room.compaction.after_rows = args.compact_after_rows.max(2);
    config.room.send_queue = duet_server::outbox::OutboxLimits {
        messages: args.send_queue.max(1),
        bytes: args.send_queue_mib.max(1).saturating_mul(1024 * 1024),
    };
    config.access.allowed_origins = args.allowed_origins.clone();
    config.access.trusted_proxies = args.trusted_proxies.clone();
    config.limits.handshakes_per_sec = args.max_handshakes_per_sec.max(0.1);
    config.limits.handshake_burst = (args.max_handshakes_per_sec * 5.0).max(1.0);
    config.limits.connections_per_ip = args.max_connections_per_ip.max(1);
    config.limits.connections_total = args.max_connections.max(1);
    config.limits.max_loaded_rooms = args.max_rooms.max(1);
    config.limits.messages_per_sec = args.max_messages_per_sec.max(1.0);
    config.limits.message_burst = (args.max_messages_per_sec * 10.0).max(1.0);
    config.limits.bytes_per_sec = args.max_bytes_per_sec.max(1024.0);
    config.limits.byte_burst =
        (args.max_bytes_per_sec * 16.0).max(args.max_message_bytes as f64 * 2.0);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(duet_server::tls::server_config(cert, key)?);
    }
    match &args.auth_key_file {
        Some(path) => {
            let keys = duet_server::auth::Keys::from_file(path)?;
            tracing::info!(keys = ?keys, "token auth on");
            config.access.keys = Some(keys);
        }
        None if !args.listen.ip().is_loopback() => {
            if !args.insecure_no_auth {
                anyhow::bail!(
                    "refusing to listen on {} without auth: anyone who can reach it could read and write every room. Use --auth-key-file FILE (see `duet-server token --help`), or --insecure-no-auth if you really mean it",
                    args.listen
                );
            }
            tracing::warn!(listen = %args.listen, "listening on a non-loopback address WITHOUT auth (--insecure-no-auth)");
        }
        None => {}
    }
    if args.memory {
        tracing::warn!("--memory: rooms are kept in memory only; they do not survive a restart");
    }
    // The lock is held until the server exits: one server per data directory, and admin
    // writes refuse meanwhile.
    let opened = store_choice(&args).connect().await?;
    #[cfg(feature = "cluster")]
    let server = match opened.postgres.clone() {
        Some(pg) => {
            let node = cluster_cli::node_options(&args)?;
            tracing::info!(node = %node.node, redis = node.redis.is_some(), "starting a cluster node");
            Server::bind_node(config, pg, node)
                .await
                .with_context(|| format!("cannot start the node on {}", args.listen))?
        }
        None => Server::bind_with_store(config, opened.store)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?,
    };
    #[cfg(not(feature = "cluster"))]
    let server = Server::bind_with_store(config, opened.store)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server.local_addr()?;
    let (ws, http) = if args.tls_cert.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    println!("duet-server listening on {ws}://{addr} (health: {http}://{addr}/healthz)");
    server.run_until(shutdown_signal()).await;
    drop(opened.lock);
    Ok(())
}

/// The store the arguments choose: the one place `duet-server` decides it (serving and
/// `rooms ...` alike; the editor's embedded server uses the same `StoreChoice`).
fn store_choice(args: &Args) -> StoreChoice {
    if args.memory {
        return StoreChoice::Memory;
    }
    #[cfg(feature = "cluster")]
    if let Some(url) = &args.postgres {
        return StoreChoice::Postgres {
            url: url.clone(),
            options: duet_server::cluster::pg::PgOptions {
                commit_window: Duration::from_millis(args.commit_window_ms),
                ..Default::default()
            },
        };
    }
    sqlite_choice(args)
}

fn sqlite_choice(args: &Args) -> StoreChoice {
    StoreChoice::Sqlite {
        dir: args.data_dir.clone(),
        options: SqliteOptions {
            max_page_count: args.max_db_pages,
            commit_window: Duration::from_millis(args.commit_window_ms),
            ..SqliteOptions::default()
        },
    }
}

/// What only a server built with the cargo feature `cluster` can do: run as a node, migrate
/// a data directory into PostgreSQL.
#[cfg(feature = "cluster")]
mod cluster_cli {
    use super::{Args, Format, LockError, StoreChoice, admin, sqlite_choice};
    use anyhow::Context;
    use duet_server::cluster::pg::PgOptions;
    use duet_server::cluster::redis::RedisOptions;
    use duet_server::node::NodeOptions;
    use std::time::Duration;

    /// How this process runs as a node of a cluster.
    pub fn node_options(args: &Args) -> anyhow::Result<NodeOptions> {
        let id = match &args.node_id {
            Some(id) => id.clone(),
            None => default_node_id(args.listen.port()),
        };
        let node = duet_protocol::bus::NodeId::new(&id)
            .with_context(|| format!("invalid node id {id:?} (set --node-id)"))?;
        let mut options = NodeOptions::new(node);
        options.heartbeat_every = Duration::from_millis(args.heartbeat_ms.max(10));
        options.stale_after = Duration::from_millis(args.stale_after_ms.max(args.heartbeat_ms * 2));
        options.heads_every = Duration::from_millis(args.heads_check_ms.max(10));
        options.digest_every = Duration::from_millis(args.digest_ms.max(100));
        options.redis = args.redis.clone().map(|url| {
            (
                url,
                RedisOptions {
                    prefix: args.bus_prefix.clone(),
                    ..RedisOptions::default()
                },
            )
        });
        Ok(options)
    }

    /// The host's name and the port: stable across restarts of a node on its machine.
    fn default_node_id(port: u16) -> String {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(48)
            .collect();
        let host = if host.is_empty() { "node".into() } else { host };
        format!("{host}-{port}")
    }

    /// Copies every room of the SQLite data directory into PostgreSQL.
    pub fn migrate(args: &Args, skip_existing: bool) -> anyhow::Result<()> {
        let Some(url) = &args.postgres else {
            anyhow::bail!(
                "migrate needs --postgres URL (or DUET_POSTGRES): the database to copy into"
            );
        };
        let from = sqlite_choice(args);
        let to = StoreChoice::Postgres {
            url: url.clone(),
            options: PgOptions::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(async {
            // The single node must not serve (and store) while its rooms are copied.
            let _lock = from.lock_for_writes().map_err(|e| match e {
                LockError::InUse(dir) => anyhow::anyhow!(
                    "refusing to migrate: a duet-server is running on {}; stop it first",
                    dir.display()
                ),
                e => e.into(),
            })?;
            let source = from.admin().await?;
            let target = to.admin().await?;
            let rooms = source.list().await?;
            let (mut copied, mut skipped) = (0, 0);
            for info in &rooms {
                let room = duet_protocol::RoomName::new(&info.name)
                    .with_context(|| format!("stored room name {:?} is not valid", info.name))?;
                // The whole document merged into one update, checked on the way in.
                let state = admin::export(source.as_ref(), &room, Format::Yjs).await?;
                match admin::import(target.as_ref(), &room, &state, Format::Yjs).await {
                    Ok(()) => copied += 1,
                    Err(duet_server::store::AdminError::RoomExists(_)) if skip_existing => {
                        eprintln!("room {room} already exists in postgresql: left as it is");
                        skipped += 1;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "copying room {room} (copied {copied} before it; --skip-existing leaves existing rooms alone)"
                        )));
                    }
                }
            }
            eprintln!(
                "copied {copied} of {} rooms from {} into postgresql ({skipped} already there)",
                rooms.len(),
                args.data_dir.display()
            );
            anyhow::Ok(())
        })
    }
}

/// Prints a token for `room` with `role`, valid for `ttl`.
fn token(
    key_file: Option<&Path>,
    room: &str,
    role: RoleArg,
    ttl: &str,
    name: Option<String>,
) -> anyhow::Result<()> {
    let key_file = key_file.context(
        "no key file: pass --auth-key-file FILE or set DUET_AUTH_KEY_FILE (the same file the server uses)",
    )?;
    let keys = duet_server::auth::Keys::from_file(key_file)?;
    let ttl = duet_server::auth::parse_ttl(ttl)?;
    let pattern_ok = room == "*"
        || duet_protocol::RoomName::new(room.strip_suffix("/*").unwrap_or(room)).is_ok();
    anyhow::ensure!(
        pattern_ok,
        "invalid room pattern {room:?}: use a room name, PREFIX/*, or *"
    );
    let role = match role {
        RoleArg::Editor => duet_server::auth::RoleClaim::Editor,
        RoleArg::Viewer => duet_server::auth::RoleClaim::Viewer,
    };
    println!("{}", keys.issue(room, role, ttl, name));
    Ok(())
}

/// Runs a `rooms` admin command on the chosen backend.
fn rooms(choice: &StoreChoice, command: RoomsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(rooms_on(choice, command))
}

async fn rooms_on(choice: &StoreChoice, command: RoomsCommand) -> anyhow::Result<()> {
    let room_name = |room: &str| -> anyhow::Result<duet_protocol::RoomName> {
        Ok(duet_protocol::RoomName::new(room)?)
    };
    // Writes take the backend's lock: a running server may have the room loaded, and would
    // keep serving (and storing) its in-memory copy.
    let lock_for_write = |what: &str| {
        choice.lock_for_writes().map_err(|e| match e {
            LockError::InUse(dir) => anyhow::anyhow!(
                "refusing to {what}: a duet-server is running on {}; stop it first (`rooms list` and `rooms export` are safe while it runs)",
                dir.display()
            ),
            e => e.into(),
        })
    };
    let rooms = choice.admin().await?;
    match command {
        RoomsCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<40} {:>10} {:>10} {:>12} {:>14}",
                "ROOM", "HEAD", "UPDATES", "LOG BYTES", "SNAPSHOT BYTES"
            )?;
            for room in rooms.list().await? {
                writeln!(
                    out,
                    "{:<40} {:>10} {:>10} {:>12} {:>14}",
                    room.name, room.head, room.log_updates, room.log_bytes, room.snapshot_bytes
                )?;
            }
        }
        RoomsCommand::Export { room, format, file } => {
            let room = room_name(&room)?;
            let bytes = admin::export(rooms.as_ref(), &room, format.into()).await?;
            match file {
                Some(path) => std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().lock().write_all(&bytes)?,
            }
        }
        RoomsCommand::Import { room, file, format } => {
            let room = room_name(&room)?;
            let _lock = lock_for_write("import")?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            admin::import(rooms.as_ref(), &room, &bytes, format.into()).await?;
            eprintln!("imported room {room} from {}", file.display());
        }
        RoomsCommand::Delete { room } => {
            let room = room_name(&room)?;
            let _lock = lock_for_write("delete")?;
            rooms.delete(&room).await?;
            eprintln!("deleted room {room}");
        }
    }
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
