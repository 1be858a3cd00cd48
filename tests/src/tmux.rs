//! Real terminal programs under tmux: a private tmux server (its own `-L` socket, killed on
//! drop), sessions of a fixed size, keys sent as a person types them, and screens read back
//! with `capture-pane`. Waits poll the screen with a deadline, never sleep a fixed time.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A private tmux server; every session in it is killed when this is dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts nothing yet: the tmux server starts with the first session. Fails with a clear
    /// message when tmux is not installed (the editor's end-to-end tests need it).
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => bail!(
                "`tmux -V` failed ({}): the editor's end-to-end tests drive real terminals with \
                 tmux; install it (apt-get install tmux)",
                o.status
            ),
            Err(e) => bail!(
                "tmux not found ({e}): the editor's end-to-end tests drive real terminals with \
                 tmux; install it (apt-get install tmux)"
            ),
        }
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            socket: format!("duet-e2e-{prefix}-{}-{n}", std::process::id()),
        })
    }

    fn tmux(&self, args: &[&str]) -> anyhow::Result<Output> {
        // `-f /dev/null`: the user's ~/.tmux.conf must not change what the tests see.
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .with_context(|| format!("running tmux {args:?}"))?;
        if !out.status.success() {
            bail!(
                "tmux {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Starts `program args` in a new detached session `name` of `width`x`height` cells,
    /// in `dir`, with `env` set. The pane stays after the program exits (so its last screen
    /// and exit status can be read).
    pub fn spawn(
        &self,
        name: &str,
        (width, height): (u16, u16),
        dir: &Path,
        env: &[(&str, &str)],
        program: &Path,
        args: &[&str],
    ) -> anyhow::Result<()> {
        let (w, h) = (width.to_string(), height.to_string());
        let dir = dir.to_string_lossy();
        let mut cmd: Vec<String> = vec![
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            name.into(),
            "-x".into(),
            w,
            "-y".into(),
            h,
            "-c".into(),
            dir.into_owned(),
        ];
        for (k, v) in env {
            cmd.push("-e".into());
            cmd.push(format!("{k}={v}"));
        }
        cmd.push(program.to_string_lossy().into_owned());
        cmd.extend(args.iter().map(|a| a.to_string()));
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.tmux(&cmd)?;
        self.tmux(&["set-option", "-t", name, "remain-on-exit", "on"])?;
        Ok(())
    }

    /// Starts the workspace's `duet args` in session `name` (as [`Tmux::spawn`]) under a
    /// shell that prints `[duet exited N]` when it exits and then stays, so that the last
    /// screen (the message duet printed on exit) can be read whole ([`Tmux::wait_exit`]).
    pub fn spawn_duet(
        &self,
        name: &str,
        size: (u16, u16),
        dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<()> {
        let duet = crate::server::workspace_bin("duet")?;
        let duet = duet.to_string_lossy();
        let mut sh_args = vec![
            "-c",
            "\"$0\" \"$@\"; echo \"[duet exited $?]\"; exec sleep 600",
            &duet,
        ];
        sh_args.extend_from_slice(args);
        self.spawn(name, size, dir, env, Path::new("/bin/sh"), &sh_args)
    }

    /// Waits for the duet of [`Tmux::spawn_duet`] in `name` to exit; returns its exit status
    /// and the whole screen as one string (rows joined, so wrapped messages read whole).
    pub fn wait_exit(&self, name: &str, timeout: Duration) -> anyhow::Result<(i32, String)> {
        let screen = self.wait_for(name, "duet to exit", timeout, |s| {
            s.iter().any(|l| l.contains("[duet exited "))
        })?;
        let all = screen.join("");
        let code = all
            .split("[duet exited ")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1);
        Ok((code, all))
    }

    /// Types `text` literally, as if pasted key by key (no key names interpreted).
    pub fn type_text(&self, name: &str, text: &str) -> anyhow::Result<()> {
        self.tmux(&["send-keys", "-t", name, "-l", text])?;
        Ok(())
    }

    /// Presses keys by tmux name: `Enter`, `C-z`, `Down`, `End`, ...
    pub fn press(&self, name: &str, keys: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.tmux(&args)?;
        Ok(())
    }

    /// The screen of session `name`, one string per row, trailing blanks trimmed.
    pub fn screen(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let out = self.tmux(&["capture-pane", "-p", "-t", name])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect())
    }

    /// True when the program in session `name` has exited.
    pub fn exited(&self, name: &str) -> anyhow::Result<bool> {
        let out = self.tmux(&["display-message", "-p", "-t", name, "#{pane_dead}"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    }

    /// Polls the screen of `name` until `check` accepts it; fails after `timeout` with
    /// `what` and the last screen.
    pub fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen(name)?;
            if check(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what} in session {name}; its screen:\n{}",
                    screen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Reading the `duet` editor's screen: the text rows, then the status bar, then the message
/// row (prompt, notice or hint).
pub mod editor {
    /// The status bar: the second-to-last row.
    pub fn status(screen: &[String]) -> &str {
        screen
            .len()
            .checked_sub(2)
            .and_then(|i| screen.get(i))
            .map_or("", String::as_str)
    }

    /// The message row: the last.
    pub fn message(screen: &[String]) -> &str {
        screen.last().map_or("", String::as_str)
    }

    /// The status bar says the editor is live.
    pub fn live(screen: &[String]) -> bool {
        status(screen).contains("\u{25cf} live")
    }

    /// The text row holding `text`, if any.
    pub fn row_with<'a>(screen: &'a [String], text: &str) -> Option<&'a str> {
        screen
            .iter()
            .take(screen.len().saturating_sub(2))
            .find(|l| l.contains(text))
            .map(String::as_str)
    }

    /// A fresh directory under the system's temp dir, named for the test and this process.
    pub fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("duet-editor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        dir
    }
}
