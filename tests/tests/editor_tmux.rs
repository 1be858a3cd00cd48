//! The `duet` editor as people use it: a real `duet-server` process and two real `duet`
//! processes in real terminals (tmux, 100x30), driven by keystrokes and read back from the
//! screen. Text typed in one appears in the other with the typist's name at their cursor;
//! undo in one leaves the other's text; edits made while the server is down reach the
//! other editor once it is back.
//!
//! Needs tmux (`apt-get install tmux`) and the `duet` binary (`cargo test --workspace`
//! builds it; `DUET_BIN` overrides the path).

use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_e2e::tmux::Tmux;
use duet_e2e::tmux::editor::{live, message, row_with, status, temp_dir};
use std::time::Duration;

const T: Duration = Duration::from_secs(15);
const SIZE: (u16, u16) = (100, 30);

#[test]
fn two_editors_under_tmux_share_text_cursors_undo_and_offline_edits() -> anyhow::Result<()> {
    let duet = workspace_bin("duet")?;
    let data = temp_dir("data");
    let data_arg = data.to_string_lossy().into_owned();
    let mut server = ServerProcess::start(&["--data-dir", &data_arg])?;
    let url = server.url();
    let dir = temp_dir("work");
    std::fs::write(dir.join("notes.txt"), "first line\n")?;
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;
    let home = home.to_string_lossy().into_owned();
    let env = [
        ("TERM", "xterm-256color"),
        ("HOME", home.as_str()),
        ("XDG_DATA_HOME", home.as_str()),
    ];

    let tmux = Tmux::new("editor")?;
    // Two people on one machine open the same file: the first seeds the room.
    tmux.spawn(
        "alice",
        SIZE,
        &dir,
        &env,
        &duet,
        &["--server", &url, "--name", "alice", "notes.txt"],
    )?;
    tmux.wait_for("alice", "alice live with the file", T, |s| {
        live(s) && row_with(s, "first line").is_some()
    })?;
    tmux.spawn(
        "bob",
        SIZE,
        &dir,
        &env,
        &duet,
        &["--server", &url, "--name", "bob", "notes.txt"],
    )?;
    tmux.wait_for("bob", "bob live, seeing alice", T, |s| {
        live(s) && status(s).contains("alice") && row_with(s, "first line").is_some()
    })?;
    tmux.wait_for("alice", "alice seeing bob", T, |s| {
        status(s).contains("bob")
    })?;

    // Bob types at the end of the file; alice sees the text with bob's name at his cursor
    // (the label is drawn after the text of the cursor's line).
    tmux.press("bob", &["C-End"])?;
    tmux.type_text("bob", "greetings")?;
    let screen = tmux.wait_for("alice", "bob's text with his label", T, |s| {
        row_with(s, "greetings").is_some_and(|l| l.ends_with("bob"))
    })?;
    assert!(
        row_with(&screen, "first line").is_some_and(|l| !l.contains("bob")),
        "the label is on bob's line only:\n{}",
        screen.join("\n")
    );

    // Alice saves: bob is told, and since they share the file on this machine, it now
    // holds bob's text too: no [+] and no "changed on disk" for him.
    tmux.press("alice", &["C-s"])?;
    tmux.wait_for("bob", "the news that alice saved", T, |s| {
        message(s).contains("alice saved notes.txt (2 lines)")
    })?;
    tmux.wait_for("bob", "bob's copy on disk up to date", T, |s| {
        !status(s).contains("[+]") && !status(s).contains("changed on disk")
    })?;
    tmux.wait_for("alice", "alice's own save", T, |s| {
        !status(s).contains("[+]")
    })?;

    // Alice types on the first line; then bob undoes: his word goes, hers stays, on both
    // screens.
    tmux.press("alice", &["Home"])?;
    tmux.type_text("alice", "ALICE ")?;
    tmux.wait_for("bob", "alice's text", T, |s| {
        row_with(s, "ALICE first line").is_some_and(|l| l.ends_with("alice"))
    })?;
    tmux.press("bob", &["C-z"])?;
    for who in ["bob", "alice"] {
        tmux.wait_for(who, "bob's word undone, alice's kept", T, |s| {
            row_with(s, "greetings").is_none() && row_with(s, "ALICE first line").is_some()
        })?;
    }

    // The server goes down; bob keeps editing; his edits reach alice once it is back.
    server.kill();
    for who in ["alice", "bob"] {
        tmux.wait_for(who, "the editor noticing the server is gone", T, |s| {
            status(s).contains("reconnecting") || status(s).contains("offline")
        })?;
    }
    // What was said while connected is gone; the outage and its reason are said instead.
    let screen = tmux.wait_for("alice", "the outage explained", T, |s| {
        message(s).contains("connection lost")
    })?;
    assert!(
        !screen.iter().any(|l| l.contains("joined")),
        "{}",
        screen.join("\n")
    );
    tmux.type_text("bob", "written offline")?;
    tmux.wait_for("bob", "bob's offline edit on his own screen", T, |s| {
        row_with(s, "written offline").is_some() && status(s).contains("waiting")
    })?;
    server.restart()?;
    // The client backs off between attempts (up to a few seconds): allow for it.
    let screen = tmux.wait_for(
        "alice",
        "bob's offline edit after the server came back",
        Duration::from_secs(40),
        |s| live(s) && row_with(s, "written offline").is_some(),
    )?;
    assert!(
        row_with(&screen, "ALICE first line").is_some(),
        "{}",
        screen.join("\n")
    );
    tmux.wait_for("bob", "bob live again", T, live)?;

    // Quitting: both ask because the text differs from the file; answering y exits 0.
    for who in ["alice", "bob"] {
        tmux.press(who, &["C-q"])?;
        tmux.wait_for(who, "the quit question", T, |s| {
            s.iter().any(|l| l.contains("quit anyway?"))
        })?;
        tmux.press(who, &["y"])?;
        tmux.wait_for(who, "the editor to exit", T, |_| {
            tmux.exited(who).unwrap_or(false)
        })?;
    }
    drop(tmux);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
