//! `duet`: the collaborative terminal editor.
//!
//! Run: `duet notes.md` (hosts a server in-process when none answers at
//! ws://127.0.0.1:7070), or `duet --server ws://host:7070 --room notes.md notes.md`.
//! Exit codes: 0 done, 1 a file or argument problem, 2 the server refused us.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use duet::app::{App, Options};
use duet::color::Depth;
use duet_client::{Client, ClientConfig, Document, RoomName};

const DEFAULT_SERVER: &str = "ws://127.0.0.1:7070";

/// duet: edit a file together, live, in the terminal.
#[derive(Debug, Parser)]
#[command(name = "duet", version)]
struct Args {
    /// The file to edit; its name also names the room.
    file: Option<PathBuf>,
    /// The server to join.
    #[arg(long, env = "DUET_SERVER")]
    server: Option<String>,
    /// The room to join (default: the file's name).
    #[arg(long)]
    room: Option<String>,
    /// Your name, shown to the others (default: git's user.name, then $USER).
    #[arg(long, env = "DUET_NAME")]
    name: Option<String>,
    /// Watch without changing the text.
    #[arg(long)]
    read_only: bool,
}

fn default_name() -> String {
    std::process::Command::new("git")
        .args(["config", "user.name"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "someone".to_owned())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("duet: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(start(args)) {
        Ok((code, message)) => {
            if let Some(m) = message {
                eprintln!("duet: {m}");
            }
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("duet: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn start(args: Args) -> anyhow::Result<(u8, Option<String>)> {
    let file_text = match &args.file {
        Some(path) => duet::file::load(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
        None => None,
    };
    let room = match (&args.room, &args.file) {
        (Some(r), _) => RoomName::new(r).with_context(|| format!("bad room name {r:?}"))?,
        (None, Some(f)) => RoomName::from_file_name(&f.to_string_lossy())
            .with_context(|| format!("cannot name a room after {}; pass --room", f.display()))?,
        (None, None) => RoomName::new("scratch").context("room name")?,
    };
    let name = args.name.clone().unwrap_or_else(default_name);

    // One command on one machine: host the server when nobody answers at the default.
    let mut hosted = None;
    let server = match &args.server {
        Some(s) => s.clone(),
        None => {
            let addr: SocketAddr = "127.0.0.1:7070".parse().context("default address")?;
            if !duet::embedded::probe(addr).await {
                match duet::embedded::host(addr).await {
                    Ok(h) => hosted = Some(h),
                    Err(e) => eprintln!("duet: cannot host a server at {addr}: {e}"),
                }
            }
            DEFAULT_SERVER.to_owned()
        }
    };
    let file_arg = args
        .file
        .as_ref()
        .map(|f| {
            format!(
                " {}",
                f.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let join_command = format!("duet --server {server} --room {room}{file_arg}");

    let config = ClientConfig::new(server.clone(), room.clone(), name.clone());
    let (client, events) = Client::spawn(config, Document::new());
    let opts = Options {
        file: args.file.clone(),
        file_text: if args.file.is_some() {
            Some(file_text.unwrap_or_default())
        } else {
            None
        },
        server,
        room: room.to_string(),
        name,
        read_only: args.read_only,
        hosting: hosted.is_some(),
        join_command: join_command.clone(),
        depth: Depth::detect(),
    };
    let mut app = App::new(client.clone(), opts, Instant::now());
    let result = duet::run::run(&mut app, events).await;
    client.close().await;
    if let Some(h) = hosted {
        h.shutdown().await;
    }
    result?;
    let exit = app.exit.unwrap_or(duet::app::Exit {
        code: 0,
        message: None,
    });
    let message = match exit.message {
        Some(m) => Some(m),
        None if exit.code == 0 => Some(format!("to join this room again: {join_command}")),
        None => None,
    };
    Ok((u8::try_from(exit.code).unwrap_or(1), message))
}
