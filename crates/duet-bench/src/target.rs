//! The server under test: its URL, its process (for CPU and RSS from /proc), its `/metrics`,
//! and optionally a `duet-server` the bench starts itself on port 0. A cluster is several
//! nodes (more URLs and processes, their CPU summed and their metrics added up) and the
//! engines they use (PostgreSQL, Redis: processes whose CPU, children included, is counted
//! apart).

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Kernel clock ticks per second for /proc/PID/stat; 100 on every Linux this runs on
/// (`getconf CLK_TCK`).
const CLK_TCK: f64 = 100.0;

#[derive(Debug)]
pub struct Target {
    /// `ws://HOST:PORT`, without a room.
    pub url: String,
    pub pid: Option<u32>,
    child: Option<Child>,
    /// More nodes of the same cluster: URL and process.
    pub others: Vec<(String, Option<u32>)>,
    /// Processes of the engines a cluster uses (PostgreSQL's postmaster, redis-server).
    pub engines: Vec<u32>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Target {
    pub fn remote(url: &str, pid: Option<u32>) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            pid,
            child: None,
            others: Vec::new(),
            engines: Vec::new(),
        }
    }

    /// Every node's URL, the first node's first.
    pub fn urls(&self) -> Vec<String> {
        std::iter::once(self.url.clone())
            .chain(self.others.iter().map(|(url, _)| url.clone()))
            .collect()
    }

    /// Each node's CPU seconds so far (`None` where its process is not known).
    pub fn node_cpu_secs(&self) -> Vec<Option<f64>> {
        std::iter::once(self.pid)
            .chain(self.others.iter().map(|(_, pid)| *pid))
            .map(|pid| cpu_of(pid?))
            .collect()
    }

    /// The engines' CPU seconds so far, each process and its children (PostgreSQL's backends
    /// are children of its postmaster); `None` without engines.
    pub fn engine_cpu_secs(&self) -> Option<f64> {
        if self.engines.is_empty() {
            return None;
        }
        Some(self.engines.iter().map(|pid| tree_cpu(*pid)).sum())
    }

    /// Starts `path --listen 127.0.0.1:0 ARGS...` and reads the address from its first line
    /// (`duet-server listening on ws://ADDR ...`). Its log goes to `log`.
    pub fn spawn(path: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first)?;
        let Some(url) = first
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .map(str::to_owned)
        else {
            let _ = child.kill();
            bail!(
                "{} did not print its address (first line {first:?}; log in {})",
                path.display(),
                log.display()
            )
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let pid = child.id();
        Ok(Self {
            url,
            pid: Some(pid),
            child: Some(child),
            others: Vec::new(),
            engines: Vec::new(),
        })
    }

    /// Resident set size in bytes (VmRSS).
    pub fn rss(&self) -> Option<u64> {
        rss_of(&format!("/proc/{}/status", self.pid?))
    }

    /// User + system CPU seconds so far, all threads, of every node (`None` unless every
    /// node's process is known).
    pub fn cpu_secs(&self) -> Option<f64> {
        self.node_cpu_secs().into_iter().sum()
    }

    /// `GET /metrics`, parsed into `name{labels} -> value`, added up over the nodes that
    /// answer (a gauge becomes the cluster's total). `None` if none has any.
    pub async fn metrics(&self) -> Option<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        for url in self.urls() {
            let Ok(text) = http_get(&url, "/metrics").await else {
                continue;
            };
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if let Some((k, v)) = line.rsplit_once(' ')
                    && let Ok(v) = v.parse::<f64>()
                {
                    *out.entry(k.to_owned()).or_insert(0.0) += v;
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// User + system CPU seconds of one process so far, all threads.
fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// CPU seconds of a process and its living descendants (found through /proc's parent ids).
/// Children that exited since are not counted: take it over a run in which they live.
fn tree_cpu(root: u32) -> f64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    tree.iter().filter_map(|pid| cpu_of(*pid)).sum()
}

/// The machine's CPU time from /proc/stat, in clock ticks: all of it, and the part the host of
/// a virtual machine took away (steal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub total: u64,
    pub steal: u64,
}

pub fn cpu_ticks() -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal [guest guest_nice];
/// guest time is already counted in user, so the first eight make the total.
fn parse_cpu_line(line: &str) -> Option<CpuTicks> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    Some(CpuTicks {
        total: ticks.iter().take(8).sum(),
        steal: *ticks.get(7)?,
    })
}

/// This process's own RSS in bytes.
pub fn self_rss() -> Option<u64> {
    rss_of("/proc/self/status")
}

fn rss_of(path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit on open files of this process.
pub fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Fails with the command to run when `sockets` would exceed the open-file limit.
pub fn check_nofile(sockets: usize) -> anyhow::Result<()> {
    if let Some(limit) = nofile_limit()
        && (sockets as u64 + 64) > limit
    {
        bail!(
            "{sockets} sockets need more open files than the limit of {limit}: run `ulimit -n {}` \
             in this shell first (and for the server's shell)",
            sockets + 1024
        )
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET on the server's own port (no HTTP client dependency).
async fn http_get(ws_url: &str, path: &str) -> anyhow::Result<String> {
    if ws_url.contains("{room}") {
        bail!("no /metrics behind a URL template");
    }
    let hostport = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let io = async {
        let mut s = tokio::net::TcpStream::connect(&hostport).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), io).await??;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP response from {hostport}{path}")
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{hostport}{path}: {}",
            head.lines().next().unwrap_or_default()
        )
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_steal_column_of_proc_stat() {
        let line = "cpu  325707 25346 48618 374372 2439 0 11132 30617 0 0";
        assert_eq!(
            super::parse_cpu_line(line),
            Some(super::CpuTicks {
                total: 325_707 + 25_346 + 48_618 + 374_372 + 2_439 + 11_132 + 30_617,
                steal: 30_617,
            })
        );
        assert_eq!(super::parse_cpu_line("cpu0 1 2 3 4 5 6 7 8 9 10"), None);
        assert!(super::cpu_ticks().is_some(), "this machine has /proc/stat");
    }

    #[test]
    fn reads_own_process() {
        assert!(super::self_rss().is_some_and(|b| b > 0));
        let t = super::Target::remote("ws://127.0.0.1:1", Some(std::process::id()));
        assert!(t.cpu_secs().is_some());
    }
}
