//! The editor's latency in a real terminal, measured the way a person feels it: keys go in
//! through tmux (`send-keys`), screens come back through `capture-pane`, polled until the
//! typed text shows. Unlike the `TestBackend` benchmark (`cargo bench -p duet --bench
//! editor`) this sees everything between the keyboard and the glass: the terminal's input
//! queue, the event loop's wake-ups, the frame written to the pty, the server's relay.
//!
//! Run (release binaries, default durable server in a temporary directory):
//!
//! ```text
//! cargo build --release --bin duet --bin duet-server
//! cargo bench -p duet-e2e --bench terminal            # 150 keys each way, 200 ms apart
//! cargo bench -p duet-e2e --bench terminal -- --keys 40 --pace-ms 100
//! ```
//!
//! Two ways of reading the screen, in one run:
//! - tmux: `send-keys`, then `capture-pane` polled until the text shows, as a person's
//!   terminal would show it; its cost is in the floor row;
//! - pty: the editor runs under `script` (a pseudo-terminal of 120x35); a key is written to
//!   it and its output bytes are read until the typed character comes back, to well under a
//!   millisecond. Typed characters there are Greek letters, which nothing else on the screen
//!   shows.
//!
//! Reported, p50 / p99 / max over the keys:
//! - floor: the same keys into `cat` in the same tmux (the pty echoes them): what tmux and
//!   the polling cost by themselves;
//! - local echo: a key typed in alice's editor until it shows on alice's screen;
//! - keystroke to peer: the same key until it shows on bob's screen (alice's editor, the
//!   server, bob's editor);
//! - WebSocket round trip: ping to pong with the same server, at the same pace.
//!
//! Needs tmux. Results go to docs/BENCHMARKS.md ("Editor in a real terminal").

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use duet_e2e::raw::RawClient;
use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_e2e::tmux::Tmux;
use duet_e2e::tmux::editor::{live, row_with};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SIZE: (u16, u16) = (120, 35);
/// Keys per line before Enter; lines stay short enough never to scroll sideways.
const LINE_KEYS: usize = 50;
const WAIT: Duration = Duration::from_secs(10);

struct Args {
    keys: usize,
    pace: Duration,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        keys: 150,
        pace: Duration::from_millis(200),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--keys" => a.keys = it.next().context("--keys N")?.parse()?,
            "--pace-ms" => {
                a.pace = Duration::from_millis(it.next().context("--pace-ms N")?.parse()?)
            }
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown argument {other:?} (known: --keys N, --pace-ms N)"),
        }
    }
    Ok(a)
}

fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("duet-bench-term-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Milliseconds, sorted.
struct Samples(Vec<f64>);

impl Samples {
    fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Self(v.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }
    /// Nearest rank.
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil().max(1.0) as usize;
        self.0[rank.min(self.0.len()) - 1]
    }
    fn row(&self, what: &str) {
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} | {} |",
            self.pct(50.0),
            self.pct(99.0),
            self.pct(100.0),
            self.0.len()
        );
    }
}

/// Polls `session` until `text` shows; the time since `t0`.
fn until_shown(tmux: &Tmux, session: &str, text: &str, t0: Instant) -> anyhow::Result<Duration> {
    loop {
        if row_with(&tmux.screen(session)?, text).is_some() {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > WAIT {
            bail!("{text:?} did not show in {session} within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Types `keys` keys into `typist` at `pace`; each one is timed until it shows in every
/// session of `watchers`. Returns one list of samples per watcher.
fn type_and_watch(
    tmux: &Tmux,
    typist: &str,
    watchers: &[&str],
    keys: usize,
    pace: Duration,
) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut out = vec![Vec::with_capacity(keys); watchers.len()];
    let mut line = 0;
    let mut text = String::new();
    // Type below whatever is there already.
    tmux.press(typist, &["C-End", "Enter"])?;
    let initial = typist.chars().next().unwrap_or('x').to_ascii_uppercase();
    for k in 0..keys {
        if k % LINE_KEYS == 0 {
            // A fresh line with a marker that makes its text unique on the screen: its
            // typist's initial and its number.
            line += 1;
            if k > 0 {
                tmux.press(typist, &["Enter"])?;
            }
            text = format!("{initial}{line}:");
            tmux.type_text(typist, &text)?;
            for w in watchers {
                until_shown(tmux, w, &text, Instant::now())?;
            }
            std::thread::sleep(pace);
        }
        let c = char::from(b'a' + (k % 26) as u8);
        text.push(c);
        let t0 = Instant::now();
        tmux.type_text(typist, &c.to_string())?;
        let times = std::thread::scope(|s| {
            let handles: Vec<_> = watchers
                .iter()
                .map(|w| {
                    let text = text.as_str();
                    s.spawn(move || until_shown(tmux, w, text, t0))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a watcher panicked"))?
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        for (i, t) in times.into_iter().enumerate() {
            out[i].push(t);
        }
        std::thread::sleep(pace.saturating_sub(t0.elapsed()));
    }
    Ok(out)
}

/// An editor under `script`: a pty of its own, its output bytes collected as they come.
struct PtyEditor {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::sync::Arc<(std::sync::Mutex<Vec<u8>>, std::sync::Condvar)>,
}

impl PtyEditor {
    fn spawn(duet: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut cmd = format!(
            "stty rows {} cols {}; exec {}",
            SIZE.1,
            SIZE.0,
            quote(&duet.to_string_lossy())
        );
        for a in args {
            cmd.push(' ');
            cmd.push_str(&quote(a));
        }
        let mut child = Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `script` (util-linux) for a pty")?;
        let stdin = child.stdin.take().context("script's stdin")?;
        let mut stdout = child.stdout.take().context("script's stdout")?;
        let out =
            std::sync::Arc::new((std::sync::Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, ready) = &*sink;
                if let Ok(mut v) = lock.lock() {
                    v.extend_from_slice(&buf[..n]);
                }
                ready.notify_all();
            }
        });
        Ok(Self { child, stdin, out })
    }

    /// Bytes received so far.
    fn mark(&self) -> usize {
        self.out.0.lock().map_or(0, |v| v.len())
    }

    /// Waits until `needle` appears in the output after byte `from`.
    fn wait_for(&self, needle: &[u8], from: usize) -> anyhow::Result<()> {
        let (lock, ready) = &*self.out;
        let deadline = Instant::now() + WAIT;
        let mut v = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        loop {
            let from = from.min(v.len());
            if v[from..].windows(needle.len()).any(|w| w == needle) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{:?} never came back from the editor",
                    String::from_utf8_lossy(needle)
                );
            }
            v = ready
                .wait_timeout(v, left)
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .0;
        }
    }

    fn type_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use std::io::Write;
        self.stdin.write_all(bytes)?;
        self.stdin.flush()?;
        Ok(())
    }
}

impl Drop for PtyEditor {
    fn drop(&mut self) {
        let _ = self.type_bytes(b"\x11"); // Ctrl-Q
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Types `keys` Greek letters into `typist` at `pace`, each timed until its bytes come back
/// from the typist (local echo) and from `peer`.
fn pty_type_and_watch(
    typist: &mut PtyEditor,
    peer: &PtyEditor,
    keys: usize,
    pace: Duration,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    const GREEK: &str = "αβγδεζηθικλμνξοπρστυφχψω";
    let letters: Vec<char> = GREEK.chars().collect();
    let (mut echo, mut remote) = (Vec::with_capacity(keys), Vec::with_capacity(keys));
    typist.type_bytes(b"\r")?; // a line of its own
    for k in 0..keys {
        if k % LINE_KEYS == LINE_KEYS - 1 {
            typist.type_bytes(b"\r")?;
            std::thread::sleep(pace);
        }
        let c = letters[k % letters.len()];
        let mut b = [0u8; 4];
        let bytes = c.encode_utf8(&mut b).as_bytes().to_vec();
        let (from_t, from_p) = (typist.mark(), peer.mark());
        let t0 = Instant::now();
        typist.type_bytes(&bytes)?;
        let (a, b) = std::thread::scope(|s| {
            let p = s.spawn(|| peer.wait_for(&bytes, from_p).map(|()| t0.elapsed()));
            let a = typist.wait_for(&bytes, from_t).map(|()| t0.elapsed());
            (a, p.join())
        });
        echo.push(a?);
        remote.push(b.map_err(|_| anyhow::anyhow!("the peer watcher panicked"))??);
        std::thread::sleep(pace.saturating_sub(t0.elapsed()));
    }
    Ok((echo, remote))
}

/// WebSocket ping to pong with the server, `n` times at `pace`.
fn ws_round_trips(url: &str, n: usize, pace: Duration) -> anyhow::Result<Vec<Duration>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = RawClient::connect(url, "bench-terminal-ping").await?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t0 = Instant::now();
            c.ws.send(Message::Ping(i.to_le_bytes().to_vec().into()))
                .await?;
            loop {
                match tokio::time::timeout(WAIT, c.ws.next()).await {
                    Ok(Some(Ok(Message::Pong(_)))) => break,
                    Ok(Some(Ok(_))) => continue,
                    other => bail!("no pong: {other:?}"),
                }
            }
            out.push(t0.elapsed());
            tokio::time::sleep(pace.saturating_sub(t0.elapsed())).await;
        }
        Ok(out)
    })
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let duet = workspace_bin("duet")?;
    let data = temp_dir("data")?;
    let work = temp_dir("work")?;
    let data_arg = data.to_string_lossy().into_owned();
    // The default durable server (SQLite, acks after fsync), as users run it.
    let server = ServerProcess::start(&["--data-dir", &data_arg])?;
    let url = server.url();
    let home = work.to_string_lossy().into_owned();
    let env = [
        ("TERM", "xterm-256color"),
        ("HOME", home.as_str()),
        ("XDG_DATA_HOME", home.as_str()),
    ];
    let tmux = Tmux::new("bench")?;
    tmux.spawn("floor", SIZE, &work, &env, std::path::Path::new("cat"), &[])?;
    for who in ["alice", "bob"] {
        tmux.spawn(
            who,
            SIZE,
            &work,
            &env,
            &duet,
            &["--server", &url, "--name", who, "--room", "bench"],
        )?;
        let deadline = Instant::now() + WAIT;
        while !live(&tmux.screen(who)?) {
            if Instant::now() > deadline {
                bail!("{who} never went live:\n{}", tmux.screen(who)?.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "typing {} keys {} ms apart into cat, then alice (watched by alice and bob), then bob",
        args.keys,
        args.pace.as_millis()
    );
    let floor = type_and_watch(&tmux, "floor", &["floor"], args.keys, args.pace)?;
    let from_alice = type_and_watch(&tmux, "alice", &["alice", "bob"], args.keys, args.pace)?;
    let from_bob = type_and_watch(&tmux, "bob", &["bob", "alice"], args.keys, args.pace)?;
    let rtt = ws_round_trips(&url, args.keys, args.pace)?;
    drop(tmux);

    // The same through a pty, in a room of their own.
    let pty_args = |who: &'static str| {
        [
            "--server",
            url.as_str(),
            "--name",
            who,
            "--room",
            "bench-pty",
        ]
    };
    let mut carol = PtyEditor::spawn(&duet, &pty_args("carol"), &env)?;
    let mut dave = PtyEditor::spawn(&duet, &pty_args("dave"), &env)?;
    for p in [&carol, &dave] {
        p.wait_for("\u{25cf} live".as_bytes(), 0)?;
    }
    let (mut pty_echo, mut pty_peer) = pty_type_and_watch(&mut carol, &dave, args.keys, args.pace)?;
    let (e2, p2) = pty_type_and_watch(&mut dave, &carol, args.keys, args.pace)?;
    pty_echo.extend(e2);
    pty_peer.extend(p2);
    drop((carol, dave));

    let floor = Samples::new(floor.concat());
    let mut echo = from_alice[0].clone();
    echo.extend_from_slice(&from_bob[0]);
    let mut peer = from_alice[1].clone();
    peer.extend_from_slice(&from_bob[1]);
    let (echo, peer, rtt) = (Samples::new(echo), Samples::new(peer), Samples::new(rtt));
    let (pty_echo, pty_peer) = (Samples::new(pty_echo), Samples::new(pty_peer));

    println!("| measure (ms) | p50 | p99 | max | samples |");
    println!("|---|---:|---:|---:|---:|");
    floor.row("floor: tmux + pty echo (`cat`)");
    echo.row("local echo (alice and bob, each their own keys)");
    peer.row("keystroke to peer (alice to bob and bob to alice)");
    pty_echo.row("pty: local echo (bytes back from the editor)");
    pty_peer.row("pty: keystroke to peer (bytes out of the peer's editor)");
    rtt.row("WebSocket ping to pong, same server and pace");
    let frame = 1000.0 / 60.0;
    let peer_budget = 2.0 * rtt.pct(50.0) + frame;
    println!();
    println!(
        "local echo p99: pty {:.2} ms, tmux {:.2} ms (the tmux floor's p99 {:.2} ms); target < 16 ms",
        pty_echo.pct(99.0),
        echo.pct(99.0),
        floor.pct(99.0)
    );
    println!(
        "keystroke to peer p50: pty {:.2} ms, tmux {:.2} ms (floor p50 {:.2} ms); target < 2 x WS RTT p50 + one 60 Hz frame = {:.2} ms",
        pty_peer.pct(50.0),
        peer.pct(50.0),
        floor.pct(50.0),
        peer_budget
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
