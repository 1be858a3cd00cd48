//! The `duet-server` command line as a user meets it: help, version, refusals that explain
//! themselves, tokens and the admin commands.
//!
//! (These tests also make `cargo test --workspace` build the binary that the end-to-end tests
//! in `tests/` run.)

use std::process::Command;

fn duet_server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_duet-server"))
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn help_names_the_main_flags() {
    let out = duet_server().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--auth-key-file",
        "--tls-cert",
        "rooms",
        "token",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn token_without_a_key_file_says_what_to_do() {
    let out = duet_server()
        .args(["token", "--room", "notes.md"])
        .env_remove("DUET_AUTH_KEY_FILE")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--auth-key-file"), "{err}");
}

#[test]
fn a_short_secret_is_refused_with_its_length() {
    let dir = temp_dir("short");
    let keys = dir.join("keys");
    std::fs::write(&keys, "tooshort\n").expect("write");
    let out = duet_server()
        .args(["token", "--room", "*", "--auth-key-file"])
        .arg(&keys)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("8 bytes") && err.contains("32"), "{err}");
}

#[test]
fn rooms_list_on_a_new_data_dir_is_empty_but_works() {
    let dir = temp_dir("rooms");
    let out = duet_server()
        .args(["rooms", "list", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.starts_with("ROOM"), "{list}");
    assert_eq!(list.lines().count(), 1, "{list}");
}
