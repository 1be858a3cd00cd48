//! `duet`: the collaborative terminal editor.
//!
//! Run: `duet notes.md` (hosts a server in-process when none answers at
//! ws://127.0.0.1:7070), or `duet --server ws://host:7070 notes.md`; a directory:
//! `duet share [DIR]`, and a partner runs the `duet join WORKSPACE` it prints.
//! Exit codes: 0 done, 1 a file or argument problem (or no terminal), 2 the server refused
//! us, 3 the server was never reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use duet::app::workspace::WsOptions;
use duet::app::{App, AppEvent, Options, TabKey, forward};
use duet::color::Depth;
use duet_client::{Client, ClientConfig, Document, RoomName};
use duet_workspace::Workspace;
use tokio::sync::mpsc;

use duet::cli::{DEFAULT_SERVER, join_command, workspace_join_command};

const AFTER_HELP: &str = "\
Starting a session:
  duet notes.md                 on one machine: the first duet hosts the server
                                (rooms kept in ~/.local/share/duet), the next joins it
  duet --server ws://HOST:7070 notes.md
                                join a duet-server elsewhere
  duet --read-only notes.md     watch without changing the text
  duet share [DIR]              share a directory (default: this one) as a workspace
  duet join WORKSPACE           join one (the command `duet share` shows)
The editor shows the exact command a partner runs to join, and prints it on exit.

With FILE: an empty room is seeded with the file; if the room holds other text you
choose to take the room's version (your file is kept as FILE.duet-backup) or quit.

Keys: F1 or Ctrl-H in the editor. Ctrl-S save, Ctrl-Q quit, Ctrl-Z/Ctrl-Y undo/redo
(your own edits only), Ctrl-F find, Ctrl-G go to line, Ctrl-P people, Ctrl-T suspend.

Exit status: 0 done; 1 bad argument, no terminal, or a file that cannot be read (missing
permission, binary, not UTF-8); 2 the server refused to let you in (version, auth, room);
3 the server was never reached (nothing was shared).";

/// Exit status when the session never reached the server.
const NEVER_CONNECTED: i32 = 3;

/// duet: edit a file together, live, in the terminal.
#[derive(Debug, Parser)]
#[command(
    name = "duet",
    version,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The file to edit (created on save if missing); its name also names the room.
    file: Option<PathBuf>,
    /// The server to join [default: ws://127.0.0.1:7070, hosted in-process when
    /// nothing answers there].
    #[arg(long, env = "DUET_SERVER", value_name = "URL", global = true)]
    server: Option<String>,
    /// The room to join [default: the file's name, or "scratch" without a file].
    #[arg(long)]
    room: Option<String>,
    /// Your name, shown to the others [default: git config user.name, then $USER].
    #[arg(long, env = "DUET_NAME", global = true)]
    name: Option<String>,
    /// Watch without changing the text.
    #[arg(long, global = true)]
    read_only: bool,
    /// An access token for servers that require one (`duet-server token`); never shown.
    #[arg(long, env = "DUET_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A PEM file of CA certificates to trust for wss:// (a private CA), besides the system's.
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Share a directory as a workspace: its text files (git's ignore rules and
    /// .duetignore respected) open in any partner's duet; saving writes into DIR.
    Share {
        /// The directory to share [default: the current one].
        dir: Option<PathBuf>,
        /// The workspace's name, a room prefix: a token for `NAME/*` admits it
        /// [default: the directory's name].
        #[arg(long, value_name = "NAME")]
        workspace: Option<String>,
    },
    /// Join a shared workspace (the command `duet share` shows).
    Join {
        /// The workspace's name.
        workspace: String,
    },
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

/// Which of stdin and stdout is not a terminal, if either.
fn not_a_terminal() -> Option<&'static str> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        Some("standard input")
    } else if !std::io::stdout().is_terminal() {
        Some("standard output")
    } else {
        None
    }
}

/// The in-process server of this build, if it has one.
#[cfg(feature = "embedded-server")]
type Hosted = duet::embedded::Hosted;
#[cfg(not(feature = "embedded-server"))]
type Hosted = std::convert::Infallible;

/// Hosts the server at the default address when nothing answers there.
#[cfg(feature = "embedded-server")]
async fn host_default(notes: &mut Vec<String>) -> anyhow::Result<Option<Hosted>> {
    let addr: std::net::SocketAddr = "127.0.0.1:7070".parse().context("default address")?;
    if duet::embedded::probe(addr).await {
        return Ok(None);
    }
    match duet::embedded::host(addr).await {
        Ok(h) => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            notes.push(h.storage.hosting_note(DEFAULT_SERVER, home.as_deref()));
            Ok(Some(h))
        }
        Err(e) => {
            notes.push(format!(
                "nothing answers at {addr} and hosting a server there failed: {e}"
            ));
            Ok(None)
        }
    }
}

/// A build without the embedded server (`--no-default-features`) only joins.
#[cfg(not(feature = "embedded-server"))]
async fn host_default(_notes: &mut Vec<String>) -> anyhow::Result<Option<Hosted>> {
    Ok(None)
}

#[cfg(feature = "embedded-server")]
async fn shut_down(h: Hosted) {
    h.shutdown().await;
}

#[cfg(not(feature = "embedded-server"))]
async fn shut_down(h: Hosted) {
    match h {}
}

async fn start(mut args: Args) -> anyhow::Result<(u8, Option<String>)> {
    if let Some(s) = &args.server
        && !(s.starts_with("ws://") || s.starts_with("wss://"))
    {
        anyhow::bail!(
            "bad --server {s:?}: expected a ws:// or wss:// address, e.g. {DEFAULT_SERVER}"
        );
    }
    match args.command.take() {
        Some(Command::Share { dir, workspace }) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let dir = std::fs::canonicalize(&dir)
                .ok()
                .filter(|d| d.is_dir())
                .with_context(|| format!("cannot share {}: not a directory", dir.display()))?;
            let name = match workspace {
                Some(w) => w,
                None => {
                    let base = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "workspace".to_owned());
                    RoomName::from_file_name(&base)
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| "workspace".to_owned())
                }
            };
            start_workspace(args, name, Some(dir)).await
        }
        Some(Command::Join { workspace }) => start_workspace(args, workspace, None).await,
        None => start_file(args).await,
    }
}

/// The message for a terminal that is not one, if stdin or stdout is not.
fn terminal_problem() -> Option<(u8, Option<String>)> {
    // Raw mode and the alternate screen need a terminal on both ends; without one every
    // later error would read "No such device or address (os error 6)". Checked after the
    // arguments and the file, so that their errors come first.
    not_a_terminal().map(|which| {
        (
            1,
            Some(format!(
                "{which} is not a terminal: duet is an interactive editor; run it in a \
                 terminal (over ssh: `ssh -t HOST duet ...`)"
            )),
        )
    })
}

/// How a session that never reached its server ends.
fn never_reached(server: &str, problem: Option<&str>, explicit_server: bool) -> String {
    format!(
        "never reached the server at {server}{}; nothing was shared{}",
        problem.map(|p| format!(" ({p})")).unwrap_or_default(),
        match (explicit_server, cfg!(feature = "embedded-server")) {
            (true, true) => "; start duet-server there, or run duet without --server to host one",
            (_, false) => {
                "; start duet-server there (this duet was built without the embedded server)"
            }
            (false, true) => "",
        }
    )
}

/// `duet share` (with `share_dir`) and `duet join`.
async fn start_workspace(
    args: Args,
    name: String,
    share_dir: Option<PathBuf>,
) -> anyhow::Result<(u8, Option<String>)> {
    let workspace = Workspace::new(&name).with_context(|| {
        format!("bad workspace name {name:?}: use letters, digits, '-', '_', '.' and '/'")
    })?;
    if let Some(problem) = terminal_problem() {
        return Ok(problem);
    }
    let who = args.name.clone().unwrap_or_else(default_name);
    let mut notes = Vec::new();
    // The sharer hosts the server when nobody answers, as `duet FILE` does; a partner
    // joining has nothing to host for.
    let (server, hosted) = match (&args.server, &share_dir) {
        (Some(s), _) => (s.clone(), None),
        (None, Some(_)) => (DEFAULT_SERVER.to_owned(), host_default(&mut notes).await?),
        (None, None) => (DEFAULT_SERVER.to_owned(), None),
    };
    let join = workspace_join_command(&server, workspace.name(), args.token.is_some());
    if args.token.is_some() && share_dir.is_some() {
        notes.push(format!(
            "a partner needs a token of their own: duet-server token --room '{}' --name NAME",
            workspace.token_pattern()
        ));
    }
    let (tx, rx) = mpsc::channel::<AppEvent>(1024);
    let opts = WsOptions {
        workspace,
        server: server.clone(),
        name: who,
        token: args.token.clone(),
        ca: args.ca.clone(),
        read_only: args.read_only,
        hosting: hosted.is_some(),
        join_command: join.clone(),
        depth: Depth::detect(),
        notes,
        share_dir,
    };
    let mut app = App::workspace(opts, tx, Instant::now());
    let result = duet::run::run(&mut app, rx).await;
    for client in app.clients() {
        client.close().await;
    }
    if let Some(h) = hosted {
        shut_down(h).await;
    }
    result?;
    let again = format!(
        "workspace {} on {server}; to join it again: {join}",
        app.workspace_name().unwrap_or_default()
    );
    Ok(exit_status(&app, &server, args.server.is_some(), again))
}

/// `duet [FILE]`.
async fn start_file(args: Args) -> anyhow::Result<(u8, Option<String>)> {
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
    if let Some(problem) = terminal_problem() {
        return Ok(problem);
    }

    // One command on one machine: host the server when nobody answers at the default.
    let mut notes = Vec::new();
    let (server, hosted) = match &args.server {
        Some(s) => (s.clone(), None),
        None => (DEFAULT_SERVER.to_owned(), host_default(&mut notes).await?),
    };
    let file_name = args
        .file
        .as_ref()
        .and_then(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let join_command = join_command(&server, room.as_str(), file_name.as_deref());

    let mut config = ClientConfig::new(server.clone(), room.clone(), name.clone());
    config.token = args.token.clone();
    config.ca_file = args.ca.clone();
    let (client, events) = Client::spawn(config, Document::new());
    let (tx, rx) = mpsc::channel::<AppEvent>(256);
    forward(TabKey::Single, events, tx);
    let opts = Options {
        file: args.file.clone(),
        file_text,
        server: server.clone(),
        room: room.to_string(),
        name,
        read_only: args.read_only,
        hosting: hosted.is_some(),
        join_command: join_command.clone(),
        depth: Depth::detect(),
        notes,
        has_token: args.token.is_some(),
    };
    let mut app = App::new(client.clone(), opts, Instant::now());
    let result = duet::run::run(&mut app, rx).await;
    client.close().await;
    if let Some(h) = hosted {
        shut_down(h).await;
    }
    result?;
    let again = format!("room {room} on {server}; to join it again: {join_command}");
    Ok(exit_status(&app, &server, args.server.is_some(), again))
}

/// The exit code and last words of a session: what the app decided, else "never reached the
/// server" (not a success, and no "join it again"), else `again`.
fn exit_status(app: &App, server: &str, server_given: bool, again: String) -> (u8, Option<String>) {
    let exit = app.exit.clone().unwrap_or(duet::app::Exit {
        code: 0,
        message: None,
    });
    let (code, message) = match exit.message {
        Some(m) => (exit.code, Some(m)),
        None if exit.code == 0 && !app.ever_live() => (
            NEVER_CONNECTED,
            Some(never_reached(server, app.last_problem(), server_given)),
        ),
        None if exit.code == 0 => (0, Some(again)),
        None => (exit.code, None),
    };
    (u8::try_from(code).unwrap_or(1), message)
}
