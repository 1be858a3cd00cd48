//! Real Yjs clients: `tests/yjs/client.mjs` (yjs + y-websocket from npm, pinned by
//! `tests/yjs/package-lock.json`) run under node and steered one JSON line at a time.
//!
//! The npm packages are installed with `npm ci` on first use, so a fresh clone needs only
//! node and npm on the PATH.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

fn yjs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("yjs")
}

/// Installs the locked npm packages once per test process.
pub fn ensure_npm_packages() -> anyhow::Result<()> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let dir = yjs_dir();
    if !dir.join("node_modules/y-websocket").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("running `npm ci` in tests/yjs: the Yjs interop tests need node and npm on the PATH")?;
        if !status.success() {
            bail!("`npm ci` in {} failed with {status}", dir.display());
        }
    }
    *done = true;
    Ok(())
}

/// One Yjs client process.
pub struct NodeClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl NodeClient {
    pub fn start(url: &str, room: &str, name: &str, color: &str) -> anyhow::Result<Self> {
        ensure_npm_packages()?;
        let mut child = Command::new("node")
            .arg(yjs_dir().join("client.mjs"))
            .args([url, room, name, color])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node (is it installed?)")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one command and returns its reply. Blocks the calling thread (inside
    /// `block_in_place` when called from async code).
    pub fn cmd(&mut self, command: Value) -> anyhow::Result<Value> {
        let mut run = || -> anyhow::Result<Value> {
            writeln!(self.stdin, "{command}")?;
            self.stdin.flush()?;
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("node client exited");
            }
            let reply: Value =
                serde_json::from_str(&line).with_context(|| format!("bad reply {line:?}"))?;
            if let Some(err) = reply.get("error") {
                bail!("node client error: {err}");
            }
            Ok(reply)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(run),
            Err(_) => run(),
        }
    }

    pub fn insert(&mut self, pos: usize, text: &str) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "insert", "pos": pos, "text": text}))
            .map(drop)
    }

    pub fn delete(&mut self, pos: usize, len: usize) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "delete", "pos": pos, "len": len}))
            .map(drop)
    }

    /// Inserts at the code-point boundary `frac` per mille through the text, computed inside
    /// the client at the moment of the edit.
    pub fn insert_at_fraction(&mut self, frac: usize, text: &str) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "insertAt", "frac": frac, "text": text}))
            .map(drop)
    }

    /// Deletes `chars` code points from the boundary `frac` per mille through the text.
    pub fn delete_at_fraction(&mut self, frac: usize, chars: usize) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "deleteAt", "frac": frac, "chars": chars}))
            .map(drop)
    }

    pub fn text(&mut self) -> anyhow::Result<String> {
        let reply = self.cmd(json!({"cmd": "text"}))?;
        Ok(reply["text"].as_str().unwrap_or_default().to_owned())
    }

    /// The state vector as client id -> clock.
    pub fn state_vector(&mut self) -> anyhow::Result<std::collections::BTreeMap<u64, u32>> {
        let reply = self.cmd(json!({"cmd": "sv"}))?;
        let mut out = std::collections::BTreeMap::new();
        if let Some(map) = reply["sv"].as_object() {
            for (k, v) in map {
                out.insert(k.parse()?, v.as_u64().unwrap_or(0) as u32);
            }
        }
        Ok(out)
    }

    pub fn set_cursor(&mut self, anchor: usize, head: usize) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "cursor", "anchor": anchor, "head": head}))
            .map(drop)
    }

    /// Other clients' awareness: name, colour and resolved cursor indices.
    pub fn peers(&mut self) -> anyhow::Result<Vec<Value>> {
        let reply = self.cmd(json!({"cmd": "peers"}))?;
        Ok(reply["peers"].as_array().cloned().unwrap_or_default())
    }

    /// The close codes the server sent this client so far, and whether the provider will
    /// connect again (y-websocket stops after 4400-4499).
    pub fn closes(&mut self) -> anyhow::Result<(Vec<u16>, bool)> {
        let v = self.cmd(serde_json::json!({"cmd": "closes"}))?;
        let codes = v["closes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_u64().and_then(|c| u16::try_from(c).ok()))
                    .collect()
            })
            .unwrap_or_default();
        Ok((codes, v["reconnects"].as_bool().unwrap_or(true)))
    }

    pub fn synced(&mut self) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "synced"})).map(drop)
    }

    pub fn disconnect(&mut self) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "disconnect"})).map(drop)
    }

    pub fn connect(&mut self) -> anyhow::Result<()> {
        self.cmd(json!({"cmd": "connect"})).map(drop)
    }

    /// Closes the provider and waits for the process to exit.
    pub fn quit(mut self) -> anyhow::Result<()> {
        let _ = self.cmd(json!({"cmd": "quit"}));
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A duet client's state vector in the form [`NodeClient::state_vector`] reports.
pub fn duet_sv(c: &crate::clients::TestClient) -> std::collections::BTreeMap<u64, u32> {
    c.state_vector()
        .iter()
        .map(|(client, clock)| (client.get(), *clock))
        .collect()
}

/// Waits until every Yjs and duet client holds the same text and state vector; a Yjs client
/// that died fails this at once ("node client exited").
pub async fn all_converge(
    yjs: &mut [NodeClient],
    duet: &[crate::clients::TestClient],
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = crate::clients::converged(duet, timeout).await?;
        let sv = duet_sv(&duet[0]);
        let mut seen = Vec::new();
        for y in yjs.iter_mut() {
            seen.push((y.text()?, y.state_vector()?));
        }
        if seen.iter().all(|(t, s)| *t == text && *s == sv) {
            return Ok(text);
        }
        if std::time::Instant::now() > deadline {
            bail!("Yjs clients did not converge:\n yjs:  {seen:?}\n duet: {text:?} {sv:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
