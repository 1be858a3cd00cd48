//! The `duet` command line before any terminal is involved: help, version and the refusals
//! that must happen before the editor takes over the screen.
//!
//! (These tests also make `cargo test --workspace` build the binary that the tmux tests in
//! `tests/` drive.)

use std::process::Command;

fn duet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_duet"))
}

#[test]
fn help_documents_the_options_people_need() {
    let out = duet().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--server",
        "--room",
        "--name",
        "--read-only",
        "--token",
        "--ca",
        "DUET_SERVER",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_server_address_that_is_not_a_websocket_url_exits_1() {
    let out = duet()
        .args(["--server", "http://127.0.0.1:7070", "notes.md"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ws://"), "{err}");
}
