//! Private PostgreSQL and Redis servers for the cluster tests: each test starts its own on free
//! loopback ports, in a temporary directory, and they are stopped and removed when dropped.
//! The machine's own PostgreSQL and Redis are never used.
//!
//! Binaries: `initdb` and `pg_ctl` from the PATH or `/usr/lib/postgresql/*/bin` (Debian:
//! `postgresql`), `redis-server` (Debian: `redis-server`); `DUET_PG_BIN` and
//! `DUET_REDIS_SERVER` override them. When one is missing, [`Postgres::start`] and
//! [`Redis::start`] print a loud SKIPPED line and return `None`, except under `CI=true`,
//! where that is a failure. PostgreSQL refuses to run as root: as root the harness runs it as
//! the `postgres` user (`DUET_PG_USER`) through `runuser`.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Says loudly that `test` did not run because of `why`; under `CI=true` that is an error.
pub fn skipped(test: &str, why: &str) -> anyhow::Result<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("{test} cannot run under CI=true: {why}");
    }
    // Written to the process's stderr, not through `eprintln!`, which the test harness
    // captures and shows only for failed tests: a skip must be seen in a passing run.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n{bar}\nSKIPPED: {test} did not run: {why}\n{bar}\n",
        bar = "!".repeat(78)
    );
    Ok(())
}

/// A free loopback port (free when asked: the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new empty directory under the system's temporary directory.
fn temp_dir(kind: &str) -> anyhow::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "duet-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `name` in a directory of the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The directory holding `initdb` and `pg_ctl`.
fn postgres_bin() -> Option<PathBuf> {
    let both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("DUET_PG_BIN") {
        let dir = PathBuf::from(dir);
        return both(&dir).then_some(dir);
    }
    if let Some(initdb) = on_path("initdb")
        && let Some(dir) = initdb.parent()
        && both(dir)
    {
        return Some(dir.to_owned());
    }
    // Debian keeps them out of the PATH, one directory per major version: take the newest.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The processes whose parent is `pid` (from `/proc`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after
            // the last ')'.
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// A private PostgreSQL cluster: its own data directory, port and socket directory, fsync on.
/// One database per test ([`Postgres::create_database`]) lets tests share a cluster; a test
/// that stops or kills it starts its own.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    /// The user to run it as (`runuser`), when running as root.
    user: Option<String>,
    port: u16,
}

impl Postgres {
    /// Starts a cluster, or says why it cannot (`None` outside CI, see [`skipped`]).
    pub fn start(test: &str) -> anyhow::Result<Option<Self>> {
        let Some(bin) = postgres_bin() else {
            skipped(
                test,
                "no PostgreSQL server binaries (initdb, pg_ctl): install the Debian package postgresql, or set DUET_PG_BIN",
            )?;
            return Ok(None);
        };
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0;
        let user = if root {
            if on_path("runuser").is_none() {
                skipped(
                    test,
                    "running as root and no runuser to start PostgreSQL as another user",
                )?;
                return Ok(None);
            }
            Some(std::env::var("DUET_PG_USER").unwrap_or_else(|_| "postgres".into()))
        } else {
            None
        };
        let dir = temp_dir("pg")?;
        if let Some(user) = &user {
            let owner = |flag: &str| -> anyhow::Result<u32> {
                let out = Command::new("id").arg(flag).arg(user).output()?;
                if !out.status.success() {
                    bail!("no user {user} to run PostgreSQL as (set DUET_PG_USER)");
                }
                Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
            };
            std::os::unix::fs::chown(&dir, Some(owner("-u")?), Some(owner("-g")?))
                .with_context(|| format!("handing {} to {user}", dir.display()))?;
        }
        let mut pg = Self {
            dir,
            bin,
            user,
            port: 0,
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                // initdb's own fsyncs only: the server runs with fsync on.
                "--no-sync".as_ref(),
            ],
        )?;
        // The port is free when chosen; if something takes it before PostgreSQL binds it,
        // try another.
        let mut last = None;
        for _ in 0..3 {
            pg.port = free_port()?;
            match pg.start_again() {
                Ok(()) => return Ok(Some(pg)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("postgresql did not start")))
    }

    /// Runs one of the cluster's programs (as its user when running as root).
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.arg("-u").arg(user).arg("--").arg(&path);
                cmd
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Starts the cluster (again), on its port; returns once it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=100 -c shared_buffers=16MB",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )
    }

    /// Stops the cluster cleanly (fast shutdown: sessions are ended, nothing is lost).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Kills the cluster with SIGKILL, postmaster and backends at once, as a crash of its
    /// machine would. [`Postgres::start_again`] then recovers from the WAL.
    pub fn kill(&self) -> anyhow::Result<()> {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        let postmaster: u32 = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .lines()
            .next()
            .context("empty postmaster.pid")?
            .trim()
            .parse()
            .context("postmaster.pid does not start with a pid")?;
        let mut pids = vec![postmaster];
        pids.extend(children(postmaster));
        let status = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string))
            .status()?;
        if !status.success() {
            bail!("kill -9 {pids:?} failed");
        }
        // Wait for all of them to be gone, so a restart finds neither the port nor the
        // shared memory still held.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            if Instant::now() >= deadline {
                bail!("postgresql processes {pids:?} outlived kill -9");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn pg_ctl_stop(&self, mode: &str) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` (trust authentication, user `postgres`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (letters, digits, `_`) and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("database name {name:?} must be letters, digits and '_'");
        }
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .context("connecting to the test cluster")?;
        let conn = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        drop(client);
        let _ = conn.await;
        Ok(self.url(name))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: nothing to keep, and a cluster that was killed is already gone.
        let _ = self.pg_ctl_stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private redis-server that keeps nothing on disk (`--save "" --appendonly no`), on its own
/// port; it can be stopped and started again on the same port, as a Redis restart.
pub struct Redis {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server, or says why it cannot (`None` outside CI, see [`skipped`]).
    pub fn start(test: &str) -> anyhow::Result<Option<Self>> {
        let bin = match std::env::var_os("DUET_REDIS_SERVER") {
            Some(path) => Some(PathBuf::from(path)).filter(|path| path.is_file()),
            None => on_path("redis-server").or_else(|| {
                let debian = PathBuf::from("/usr/bin/redis-server");
                debian.is_file().then_some(debian)
            }),
        };
        let Some(bin) = bin else {
            skipped(
                test,
                "no redis-server: install the Debian package redis-server, or set DUET_REDIS_SERVER",
            )?;
            return Ok(None);
        };
        let mut redis = Self {
            bin,
            dir: temp_dir("redis")?,
            port: 0,
            child: None,
        };
        let mut last = None;
        for _ in 0..3 {
            redis.port = free_port()?;
            match redis.start_again() {
                Ok(()) => return Ok(Some(redis)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// Starts the server (again) on its port; returns once it answers PING.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("redis-server is already running");
        }
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!("redis-server on port {} exited: {status}", self.port);
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!("redis-server on port {} did not answer PING", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (everything it held is gone: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh one on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again()
    }

    fn ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
