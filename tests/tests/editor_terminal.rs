//! The `duet` editor's first minute in a real terminal (tmux, 120x35): what a person sees
//! when the server cannot be reached, when it wants a token they did not give, when there
//! is no terminal at all, and whether the help opens on F1 and Ctrl-H.
//!
//! Needs tmux and the `duet` and `duet-server` binaries (`cargo test --workspace` builds
//! them).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_e2e::tmux::Tmux;
use duet_e2e::tmux::editor::{message, status, temp_dir};

const T: Duration = Duration::from_secs(15);
const SIZE: (u16, u16) = (120, 35);

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_duet(
    tmux: &Tmux,
    name: &str,
    dir: &std::path::Path,
    home: &str,
    args: &[&str],
) -> anyhow::Result<()> {
    tmux.spawn_duet(name, SIZE, dir, &env(home), args)
}

fn wait_exit(tmux: &Tmux, name: &str) -> anyhow::Result<(i32, String)> {
    tmux.wait_exit(name, T)
}

fn env(home: &str) -> [(&str, &str); 3] {
    [
        ("TERM", "xterm-256color"),
        ("HOME", home),
        ("XDG_DATA_HOME", home),
    ]
}

#[test]
fn an_unreachable_server_is_named_and_never_offered_as_a_room_to_join() -> anyhow::Result<()> {
    let dir = temp_dir("unreachable");
    let home = dir.to_string_lossy().into_owned();
    let url = format!("ws://127.0.0.1:{}", dead_port()?);
    let tmux = Tmux::new("unreachable")?;
    spawn_duet(
        &tmux,
        "ann",
        &dir,
        &home,
        &["--server", &url, "--name", "ann", "notes.md"],
    )?;
    // The reason, in words, where the hint row was; the status says there is no server.
    let screen = tmux.wait_for("ann", "the reason the server cannot be reached", T, |s| {
        message(s).contains("connection refused") && status(s).contains("no server")
    })?;
    assert!(message(&screen).contains(&url), "{}", screen.join("\n"));
    assert!(
        !screen.iter().any(|l| l.contains("join")),
        "nobody can join a server nobody reached:\n{}",
        screen.join("\n")
    );
    // F1 and Ctrl-H both open the help; it offers no join command either.
    for key in ["F1", "C-h"] {
        tmux.press("ann", &[key])?;
        let help = tmux.wait_for("ann", &format!("the help after {key}"), T, |s| {
            s.iter().any(|l| l.contains("duet help"))
        })?;
        assert!(
            !help.iter().any(|l| l.contains("joins with")),
            "{}",
            help.join("\n")
        );
        tmux.press("ann", &["Escape"])?;
        tmux.wait_for("ann", "the help closed", T, |s| {
            !s.iter().any(|l| l.contains("duet help"))
        })?;
    }
    // Quitting says nothing was shared (no "join it again") and exits 3.
    tmux.press("ann", &["C-q"])?;
    let (code, screen) = wait_exit(&tmux, "ann")?;
    assert!(
        screen.contains("never reached the server") && screen.contains("connection refused"),
        "{screen}"
    );
    assert!(!screen.contains("join it again"), "{screen}");
    assert_eq!(code, 3, "{screen}");
    drop(tmux);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn a_missing_token_names_the_flag_and_the_variable() -> anyhow::Result<()> {
    let dir = temp_dir("token");
    let keys = dir.join("keys");
    writeln!(
        std::fs::File::create(&keys)?,
        "a-secret-of-at-least-thirty-two-bytes-for-tests"
    )?;
    let keys = keys.to_string_lossy().into_owned();
    let server = ServerProcess::start(&["--auth-key-file", &keys])?;
    let url = server.url();
    let home = dir.to_string_lossy().into_owned();
    let tmux = Tmux::new("token")?;
    spawn_duet(&tmux, "ann", &dir, &home, &["--server", &url, "notes.md"])?;
    let (code, screen) = wait_exit(&tmux, "ann")?;
    assert!(
        screen.contains("--token") && screen.contains("DUET_TOKEN"),
        "{screen}"
    );
    assert_eq!(code, 2, "{screen}");
    drop(tmux);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn without_a_terminal_duet_says_so_and_exits_1() -> anyhow::Result<()> {
    let duet = workspace_bin("duet")?;
    let url = format!("ws://127.0.0.1:{}", dead_port()?);
    let out = Command::new(&duet)
        .args(["--server", &url, "notes.md"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a terminal"), "{stderr}");
    assert!(!stderr.contains("os error 6"), "{stderr}");
    Ok(())
}

#[test]
fn a_partner_sees_who_saved_and_a_joiner_without_the_file_is_not_asked_to_save()
-> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let url = server.url();
    let (a_dir, c_dir) = (temp_dir("save-ann"), temp_dir("save-cy"));
    std::fs::write(a_dir.join("notes.md"), "shared text\n")?;
    let (a_home, c_home) = (
        a_dir.to_string_lossy().into_owned(),
        c_dir.to_string_lossy().into_owned(),
    );
    let tmux = Tmux::new("save")?;
    spawn_duet(
        &tmux,
        "ann",
        &a_dir,
        &a_home,
        &["--server", &url, "--name", "ann", "notes.md"],
    )?;
    tmux.wait_for("ann", "ann live", T, |s| status(s).contains("live"))?;
    // Cy has no notes.md: she joins the room's text.
    spawn_duet(
        &tmux,
        "cy",
        &c_dir,
        &c_home,
        &["--server", &url, "--name", "cy", "notes.md"],
    )?;
    tmux.wait_for("cy", "cy sees the room's text", T, |s| {
        status(s).contains("live") && s.iter().any(|l| l.contains("shared text"))
    })?;
    tmux.type_text("ann", "more ")?;
    tmux.press("ann", &["C-s"])?;
    let screen = tmux.wait_for("cy", "the news that ann saved", T, |s| {
        message(s).contains("ann saved notes.md")
    })?;
    assert!(
        screen.iter().any(|l| l.contains("more shared text")),
        "{}",
        screen.join("\n")
    );
    // Not "modified" against a file cy never had, and quitting asks nothing.
    assert!(!status(&screen).contains("[+]"), "{}", screen.join("\n"));
    tmux.press("cy", &["C-q"])?;
    let (code, out) = wait_exit(&tmux, "cy")?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("to join it again"), "{out}");
    assert!(
        !c_dir.join("notes.md").exists(),
        "nothing was written for cy"
    );
    drop(tmux);
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&c_dir);
    Ok(())
}
