//! What the command line shows people: the exact command a partner runs to join (a room,
//! or a workspace), quoted so it can be pasted into a shell as it is.

/// The address `duet` uses (and hosts) when no `--server` is given.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:7070";

/// `s` quoted for a POSIX shell when it needs it (single quotes, `'` as `'\''`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command a partner runs to join `room` on `server`, editing their own copy named
/// `file` (the file's base name). `--server` only when it is not the default, `--room`
/// only when the file's name would not name the same room.
pub fn join_command(server: &str, room: &str, file: Option<&str>) -> String {
    let mut cmd = String::from("duet");
    if server != DEFAULT_SERVER {
        cmd.push_str(" --server ");
        cmd.push_str(&shell_quote(server));
    }
    let derived = file.and_then(|f| duet_protocol::RoomName::from_file_name(f).ok());
    if derived.as_ref().map(|r| r.as_str()) != Some(room) {
        cmd.push_str(" --room ");
        cmd.push_str(&shell_quote(room));
    }
    if let Some(f) = file {
        cmd.push(' ');
        cmd.push_str(&shell_quote(f));
    }
    cmd
}

/// The command a partner runs to join workspace `workspace` on `server` (`duet join`).
/// With `token_needed`, a `--token TOKEN` placeholder: a partner needs a token of their own
/// for the workspace's rooms (never the sharer's, which is never shown).
pub fn workspace_join_command(server: &str, workspace: &str, token_needed: bool) -> String {
    let mut cmd = String::from("duet join");
    if server != DEFAULT_SERVER {
        cmd.push_str(" --server ");
        cmd.push_str(&shell_quote(server));
    }
    cmd.push(' ');
    cmd.push_str(&shell_quote(workspace));
    if token_needed {
        cmd.push_str(" --token TOKEN");
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_commands_are_minimal_and_paste_as_they_are() {
        assert_eq!(
            join_command(DEFAULT_SERVER, "notes.md", Some("notes.md")),
            "duet notes.md"
        );
        assert_eq!(
            join_command("ws://10.0.0.5:7070", "notes.md", Some("notes.md")),
            "duet --server ws://10.0.0.5:7070 notes.md"
        );
        assert_eq!(
            join_command(DEFAULT_SERVER, "plan", Some("notes.md")),
            "duet --room plan notes.md"
        );
        assert_eq!(
            join_command(DEFAULT_SERVER, "scratch", None),
            "duet --room scratch"
        );
        // The room named after "my notes.md" is "my-notes.md": the file name alone names it.
        assert_eq!(
            join_command(DEFAULT_SERVER, "my-notes.md", Some("my notes.md")),
            "duet 'my notes.md'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn workspace_join_commands_name_server_workspace_and_token() {
        assert_eq!(
            workspace_join_command(DEFAULT_SERVER, "proj", false),
            "duet join proj"
        );
        assert_eq!(
            workspace_join_command("wss://h:7070", "team/proj", true),
            "duet join --server wss://h:7070 team/proj --token TOKEN"
        );
    }
}
