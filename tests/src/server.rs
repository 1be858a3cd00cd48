//! Runs the real `duet-server` binary as a child process.
//!
//! The binary is found next to the test executable's directory (`target/<profile>/`), where
//! `cargo test --workspace` builds it; `DUET_SERVER_BIN` overrides the path.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of a workspace binary such as `duet-server` or `duet`.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Ok(path) = std::env::var(&var) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-exe> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable has no parent directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; run the tests with `cargo test --workspace` (which builds it) or set {var}",
            path.display()
        );
    }
    Ok(path)
}

/// A running `duet-server` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts a server on a free loopback port.
    pub fn start(extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0", extra_args)
    }

    /// Like [`start`](Self::start), with extra environment variables for the process (kept
    /// across [`restart`](Self::restart)).
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_on_with_env("127.0.0.1:0", extra_args, env)
    }

    /// Starts a server listening on `listen`. Without `--data-dir` (or `--postgres`) in
    /// `extra_args` it keeps rooms in memory (`--memory`), so tests never share a data
    /// directory.
    pub fn start_on(listen: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_on_with_env(listen, extra_args, &[])
    }

    /// Like [`start_on`](Self::start_on), with extra environment variables for the process.
    pub fn start_on_with_env(
        listen: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let bin = workspace_bin("duet-server")?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        if !args
            .iter()
            .any(|a| a == "--data-dir" || a == "--memory" || a == "--postgres")
        {
            args.push("--memory".into());
        }
        let mut child = Command::new(&bin)
            .arg("--listen")
            .arg(listen)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the server's address line")?;
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("unexpected first line from the server: {line:?}"))?
            .parse()
            .with_context(|| format!("bad address in {line:?}"))?;
        Ok(Self {
            child,
            addr,
            args,
            env,
        })
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The server's process id (for reading `/proc/PID/status` and the like).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no goodbye to anyone) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("server did not exit within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces the extra environment variables for the next [`restart`](Self::restart).
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Starts a new process on the same address with the same arguments and environment.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let listen = self.addr.to_string();
        // The port was just released; binding again can race the kernel briefly.
        let mut last = None;
        for _ in 0..50 {
            match Self::start_on_with_env(&listen, &args, &env) {
                Ok(new) => {
                    *self = new;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("restart failed")))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
