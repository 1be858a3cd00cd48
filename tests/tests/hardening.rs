//! A server you can expose: every access control and limit, with the exact HTTP status or
//! close code it produces, and proof that a refused client created no room.

use anyhow::Context as _;
use duet_e2e::node::NodeClient;
use duet_e2e::raw::{Ended, RawClient};
use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_e2e::ydoc;
use duet_e2e::yraw::var_uint;
use duet_protocol::{ClientMsg, ErrorCode, ServerMsg, close};
use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Text, Transact};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "k1:0123456789abcdef0123456789abcdef-test-only";

fn key_file(dir: &tempdir::Dir) -> String {
    let path = dir.path().join("keys");
    let mut f = std::fs::File::create(&path).expect("key file");
    writeln!(f, "{SECRET}").expect("write key");
    path.display().to_string()
}

mod tempdir {
    //! A temporary directory removed on drop (no extra crate for this).
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "duet-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Mints a token with the real CLI.
fn token(keys: &str, room: &str, role: &str, ttl: &str) -> String {
    let out = std::process::Command::new(workspace_bin("duet-server").expect("bin"))
        .args([
            "token",
            "--auth-key-file",
            keys,
            "--room",
            room,
            "--role",
            role,
            "--ttl",
            ttl,
        ])
        .output()
        .expect("token command");
    assert!(
        out.status.success(),
        "token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(!t.is_empty());
    t
}

/// Sends a WebSocket upgrade by hand and returns the raw HTTP response.
async fn upgrade(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    upgrade_kept(addr, path, headers).await.0
}

/// Like [`upgrade`], but also returns the connection, so an admitted one stays open (and keeps
/// its place in the connection caps) until dropped.
async fn upgrade_kept(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
) -> (String, tokio::net::TcpStream) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v2\r\n{headers}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(T, tcp.read(&mut buf))
        .await
        .expect("response in time")
        .unwrap_or(0);
    (String::from_utf8_lossy(&buf[..n]).into_owned(), tcp)
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> i64 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

fn update_inserting(s: &str) -> Vec<u8> {
    let doc = duet_yjs::doc::new_doc();
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    text.insert(&mut doc.transact_mut(), 0, s);
    doc.transact()
        .encode_state_as_update_v1(&yrs::StateVector::default())
}

async fn connect_with_token(url: &str, room: &str, token: &str) -> anyhow::Result<RawClient> {
    RawClient::connect(url, &format!("{room}?token={token}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_before_the_upgrade() -> anyhow::Result<()> {
    let dir = tempdir::Dir::new("auth");
    let keys = key_file(&dir);
    let server = ServerProcess::start(&["--auth-key-file", &keys])?;
    let good = token(&keys, "team/*", "editor", "1h");

    let none = upgrade(server.addr, "/team/a", "").await;
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("no token"), "{none}");

    let bad = upgrade(
        server.addr,
        "/team/a",
        "Authorization: Bearer abc.def.ghi\r\n",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");

    let other_key_dir = tempdir::Dir::new("auth2");
    let forged = {
        let path = other_key_dir.path().join("keys");
        std::fs::write(&path, "k1:ffffffffffffffffffffffffffffffffffffffff\n")?;
        token(&path.display().to_string(), "team/*", "editor", "1h")
    };
    let forged = upgrade(
        server.addr,
        "/team/a",
        &format!("Authorization: Bearer {forged}\r\n"),
    )
    .await;
    assert!(
        forged.starts_with("HTTP/1.1 401") && forged.contains("signature"),
        "{forged}"
    );

    let wrong_room = upgrade(
        server.addr,
        "/other/a",
        &format!("Authorization: Bearer {good}\r\n"),
    )
    .await;
    assert!(wrong_room.starts_with("HTTP/1.1 403"), "{wrong_room}");
    assert_eq!(
        metric(server.addr, "duet_rooms_loaded").await,
        0,
        "refused requests create no room"
    );

    let ok = upgrade(
        server.addr,
        "/team/a",
        &format!("Authorization: Bearer {good}\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    // Query-string tokens work too (browsers and Yjs clients).
    let mut c = connect_with_token(&server.url(), "team/b", &good).await?;
    assert!(matches!(c.recv(T).await?, ServerMsg::Welcome { .. }));
    assert!(metric(server.addr, "duet_rooms_loaded").await >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_gets_401_and_expiry_mid_session_closes_4401() -> anyhow::Result<()> {
    let dir = tempdir::Dir::new("exp");
    let keys = key_file(&dir);
    let server = ServerProcess::start(&["--auth-key-file", &keys])?;
    let short = token(&keys, "r", "editor", "2s");
    let mut c = connect_with_token(&server.url(), "r", &short).await?;
    assert!(matches!(c.recv(T).await?, ServerMsg::Welcome { .. }));
    let ended = c.until_end(T).await?;
    assert!(
        matches!(
            ended,
            Ended::Closed {
                code: close::TOKEN_EXPIRED,
                ..
            }
        ),
        "{ended:?}"
    );
    let again = upgrade(server.addr, &format!("/r?token={short}"), "").await;
    assert!(
        again.starts_with("HTTP/1.1 401") && again.contains("expired"),
        "{again}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_receive_everything_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempdir::Dir::new("viewer");
    let keys = key_file(&dir);
    let server = ServerProcess::start(&["--auth-key-file", &keys])?;
    let editor = token(&keys, "doc", "editor", "1h");
    let viewer = token(&keys, "doc", "viewer", "1h");
    let mut e = connect_with_token(&server.url(), "doc", &editor).await?;
    let mut v = connect_with_token(&server.url(), "doc", &viewer).await?;
    let role = v
        .recv_until(T, |m| match m {
            ServerMsg::Welcome { role, .. } => Some(*role),
            _ => None,
        })
        .await?;
    assert_eq!(role, duet_protocol::Role::Viewer);

    // The viewer's edit is refused with a reason, and reaches no one.
    v.send(&ClientMsg::Update {
        seq: 1,
        update: update_inserting("vandalism").into(),
    })
    .await?;
    let code = v
        .recv_until(T, |m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await?;
    assert_eq!(code, ErrorCode::READ_ONLY);
    // The editor's edit reaches the viewer live.
    e.send(&ClientMsg::Update {
        seq: 1,
        update: update_inserting("hello").into(),
    })
    .await?;
    e.recv_until(T, |m| matches!(m, ServerMsg::Ack { seq: 1 }).then_some(()))
        .await?;
    v.recv_until(T, |m| matches!(m, ServerMsg::Update { .. }).then_some(()))
        .await?;
    // A late joiner sees only the editor's text: nothing of the viewer's was applied or stored.
    let mut late = connect_with_token(&server.url(), "doc", &editor).await?;
    late.send(&ClientMsg::SyncStep1 {
        state_vector: yrs::StateVector::default().encode_v1().into(),
    })
    .await?;
    let state = late
        .recv_until(T, |m| match m {
            ServerMsg::SyncStep2 { update } => Some(update.0.clone()),
            _ => None,
        })
        .await?;
    let doc = duet_yjs::doc::new_doc();
    {
        use yrs::updates::decoder::Decode;
        doc.transact_mut()
            .apply_update(yrs::Update::decode_v1(&state)?)?;
    }
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    assert_eq!(yrs::GetString::get_string(&text, &doc.transact()), "hello");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yjs_clients_with_bad_tokens_are_closed_with_44xx() -> anyhow::Result<()> {
    let dir = tempdir::Dir::new("yauth");
    let keys = key_file(&dir);
    let server = ServerProcess::start(&["--auth-key-file", &keys])?;
    // A raw Yjs-style upgrade (no duet subprotocol) without a token: upgraded, then 4401.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/room", server.url())).await?;
    use futures_util::StreamExt;
    let mut code = None;
    while let Some(Ok(msg)) = tokio::time::timeout(T, ws.next()).await? {
        if let tokio_tungstenite::tungstenite::Message::Close(Some(f)) = msg {
            code = Some(u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(close::TOKEN_EXPIRED.0));
    // A real y-websocket client with a token for another room: closed 4403, and it stops.
    let other = token(&keys, "elsewhere", "editor", "1h");
    let mut y = NodeClient::start(
        &server.url(),
        &format!("room?token={other}"),
        "y",
        "#000000",
    )?;
    // Wait for the refusal itself, not for a fixed time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (codes, reconnects) = loop {
        let (codes, reconnects) = y.closes()?;
        if !codes.is_empty() || std::time::Instant::now() > deadline {
            break (codes, reconnects);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(codes, [close::FORBIDDEN.0], "closed 4403 once");
    assert!(!reconnects, "y-websocket stops after 4403");
    assert_eq!(y.text()?, "");
    y.quit()?;
    assert_eq!(
        metric(server.addr, "duet_rooms_loaded").await,
        0,
        "refused clients create no room"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_get_403() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--allowed-origin", "https://notes.example"])?;
    let foreign = upgrade(server.addr, "/r", "Origin: https://evil.example\r\n").await;
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let allowed = upgrade(server.addr, "/r", "Origin: https://notes.example\r\n").await;
    assert!(allowed.starts_with("HTTP/1.1 101"), "{allowed}");
    let native = upgrade(server.addr, "/r2", "").await;
    assert!(
        native.starts_with("HTTP/1.1 101"),
        "clients without an Origin (native apps) pass: {native}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_answer_429_and_503() -> anyhow::Result<()> {
    // Handshake rate: burst of 5 at 1/s.
    let server = ServerProcess::start(&["--max-handshakes-per-sec", "1"])?;
    let mut statuses = Vec::new();
    let mut keep = Vec::new();
    for i in 0..7 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await?;
        let req = format!(
            "GET /r{i} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v2\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 1024];
        let n = tcp.read(&mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        statuses.push(head[9..12].to_owned());
        if head.starts_with("HTTP/1.1 429") {
            assert!(head.contains("Retry-After: "), "{head}");
        }
        keep.push(tcp);
    }
    assert_eq!(&statuses[..5], ["101"; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], ["429"; 2], "{statuses:?}");
    drop(keep);

    // Per-IP and global caps.
    let server = ServerProcess::start(&["--max-connections-per-ip", "2"])?;
    let _a = RawClient::connect(&server.url(), "x").await?;
    let _b = RawClient::connect(&server.url(), "x").await?;
    let third = upgrade(server.addr, "/x", "").await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    let server = ServerProcess::start(&["--max-connections", "1"])?;
    let _a = RawClient::connect(&server.url(), "x").await?;
    let second = upgrade(server.addr, "/x", "").await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");

    // Loaded rooms cap: a second room is refused, the loaded one still joinable.
    let server = ServerProcess::start(&["--max-rooms", "1"])?;
    let mut a = RawClient::connect(&server.url(), "one").await?;
    // SyncStep1 comes once the room has taken the member: the room is loaded by then.
    a.recv_until(T, |m| {
        matches!(m, ServerMsg::SyncStep1 { .. }).then_some(())
    })
    .await?;
    let other = upgrade(server.addr, "/two", "").await;
    assert!(
        other.starts_with("HTTP/1.1 503") && other.contains("rooms"),
        "{other}"
    );
    let same = upgrade(server.addr, "/one", "").await;
    assert!(same.starts_with("HTTP/1.1 101"), "{same}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_connection_is_closed_with_1008() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--max-messages-per-sec", "5"])?;
    let mut c = RawClient::connect(&server.url(), "flood").await?;
    let sv = yrs::StateVector::default().encode_v1();
    for _ in 0..200 {
        if c.send(&ClientMsg::SyncStep1 {
            state_vector: sv.clone().into(),
        })
        .await
        .is_err()
        {
            break;
        }
    }
    let ended = c.until_end(T).await?;
    assert!(
        matches!(
            ended,
            Ended::Closed {
                code: close::POLICY,
                ..
            }
        ),
        "{ended:?}"
    );
    Ok(())
}

/// A `duet-server` run with its output captured and its environment free of `DUET_*`
/// settings, killed when dropped.
struct Captured {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Captured {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = std::process::Command::new(workspace_bin("duet-server").expect("bin"));
        cmd.args(args)
            .env_remove("DUET_LISTEN")
            .env_remove("DUET_AUTH_KEY_FILE")
            .env_remove("DUET_DATA_DIR")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("starts duet-server");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, stdout }
    }

    /// The first line on standard output ("" if the process exited without one).
    fn first_line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        line
    }

    /// Waits up to `timeout` for the process to exit by itself.
    fn exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (if still running) and returns everything it wrote to stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        err
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the server's `duet-server listening on ws://ADDR (...)` line.
fn listening_addr(line: &str) -> Option<std::net::SocketAddr> {
    line.strip_prefix("duet-server listening on ws://")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This machine's address on the interface with the default route, if it has a
/// non-loopback one (a UDP `connect` only picks a route; nothing is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("8.8.8.8:80").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn exposing_the_server_without_auth_is_refused() {
    // Through the flag, through the environment, and on IPv6's any-address.
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&[&str], Env); 3] = [
        (&["--listen", "0.0.0.0:0", "--memory"], &[]),
        (&["--listen", "[::]:0", "--memory"], &[]),
        (&["--memory"], &[("DUET_LISTEN", "0.0.0.0:0")]),
    ];
    for (args, env) in cases {
        let mut server = Captured::start(args, env);
        let status = server.exit_status(T);
        // Stopped first, so reading stdout ends even if it kept running.
        let err = server.stop();
        let line = server.first_line();
        let status = status.unwrap_or_else(|| panic!("{args:?} {env:?} kept running: {err}"));
        assert!(!status.success(), "{args:?} {env:?}: {status}");
        assert!(
            !line.contains("listening"),
            "{args:?} {env:?} listened: {line}"
        );
        assert!(
            err.contains("refusing to listen")
                && err.contains("without auth")
                && err.contains("--auth-key-file")
                && err.contains("--insecure-no-auth"),
            "{args:?} {env:?}: {err}"
        );
    }
}

/// `--insecure-no-auth` exposes the server with a warning; with no `--listen` at all it binds
/// 127.0.0.1:7070 and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_loopback_by_default_and_warns_when_exposed_without_auth()
-> anyhow::Result<()> {
    let outside = non_loopback_ip();
    if outside.is_none() {
        eprintln!("no non-loopback address on this machine: skipping the outside connections");
    }

    // (a) Exposed on purpose: it serves, on every interface, and says it has no auth.
    let mut exposed = Captured::start(
        &["--listen", "0.0.0.0:0", "--insecure-no-auth", "--memory"],
        &[],
    );
    let line = exposed.first_line();
    let Some(addr) = listening_addr(&line) else {
        anyhow::bail!("no address line: {line:?}; stderr: {}", exposed.stop());
    };
    assert!(addr.ip().is_unspecified(), "{line}");
    let mut targets = vec![std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))];
    targets.extend(outside.map(|ip| std::net::SocketAddr::new(ip, addr.port())));
    for target in targets {
        let mut c = RawClient::connect(&format!("ws://{target}"), "exposed").await?;
        assert!(
            matches!(c.recv(T).await?, ServerMsg::Welcome { .. }),
            "served on {target}"
        );
    }
    let err = exposed.stop();
    assert!(
        err.contains("non-loopback address WITHOUT auth") && err.contains("--insecure-no-auth"),
        "no warning on stderr: {err}"
    );

    // (b) No --listen: 127.0.0.1:7070, unreachable from the machine's other address. The
    // port may be taken on a shared machine; then only this part is skipped.
    const DEFAULT_PORT: u16 = 7070;
    let default = std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT));
    let port_free = std::net::TcpListener::bind(default).is_ok()
        && outside.is_none_or(|ip| std::net::TcpListener::bind((ip, DEFAULT_PORT)).is_ok());
    if !port_free {
        eprintln!("{default} is in use: skipping the default-address check");
        return Ok(());
    }
    let mut server = Captured::start(&["--memory"], &[]);
    let line = server.first_line();
    if line.is_empty() {
        let err = server.stop();
        if err.contains("cannot listen") {
            eprintln!("{default} was taken meanwhile: skipping the default-address check: {err}");
            return Ok(());
        }
        anyhow::bail!("the server exited without listening: {err}");
    }
    assert_eq!(listening_addr(&line), Some(default), "{line}");
    let mut c = RawClient::connect(&format!("ws://{default}"), "local").await?;
    assert!(matches!(c.recv(T).await?, ServerMsg::Welcome { .. }));
    if let Some(ip) = outside {
        let from_outside = std::net::SocketAddr::new(ip, DEFAULT_PORT);
        let reached = std::net::TcpStream::connect_timeout(&from_outside, Duration::from_secs(2));
        assert!(
            reached.is_err(),
            "the default server answers on {from_outside}: it must bind loopback only"
        );
        eprintln!(
            "{from_outside}: {}",
            reached.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
    let err = server.stop();
    assert!(
        !err.contains("WITHOUT auth"),
        "no warning on loopback: {err}"
    );
    Ok(())
}

/// Updates whose dependencies never arrive are held, up to a bound: past 4 MiB the sender is
/// closed with 1008, and the room keeps working for everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_updates_are_bounded_per_room() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    // An honest member edits first.
    let mut honest = RawClient::connect(&server.url(), "orphans").await?;
    honest
        .send(&ClientMsg::Update {
            seq: 1,
            update: update_inserting("fine").into(),
        })
        .await?;
    honest
        .recv_until(T, |m| matches!(m, ServerMsg::Ack { seq: 1 }).then_some(()))
        .await?;

    // Another document (client 4241) writes one character the server never gets; the
    // attacker's (client 4242) writes 1 MiB blocks after it: each depends on that missing
    // character. (Blocks of the attacker's own client that skip clocks are refused at once:
    // see `a_hostile_member_cannot_crash_or_split_the_honest_clients` in relay_safety.rs.)
    let unseen = doc_with_id(4241);
    unseen
        .get_or_insert_text(duet_yjs::doc::ROOT_TEXT)
        .insert(&mut unseen.transact_mut(), 0, "x");
    let doc = doc_with_id(4242);
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let x = unseen
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    doc.transact_mut()
        .apply_update(yrs::Update::decode_v1(&x)?)?;
    let mut attacker = RawClient::connect(&server.url(), "orphans").await?;
    let block = "o".repeat(1024 * 1024);
    let mut ended = None;
    for seq in 1..=8u64 {
        let before = doc.transact().state_vector();
        let len = text.len(&doc.transact());
        text.insert(&mut doc.transact_mut(), len, &block);
        let orphan = doc.transact().encode_diff_v1(&before);
        if let Err(e) = attacker
            .send(&ClientMsg::Update {
                seq,
                update: orphan.into(),
            })
            .await
        {
            eprintln!("send {seq} failed: {e:#}");
            break;
        }
        let reply = attacker
            .recv_until(T, |m| match m {
                ServerMsg::Ack { seq: s } if *s == seq => Some(None),
                ServerMsg::Error { code, .. } => Some(Some(*code)),
                _ => None,
            })
            .await;
        match reply {
            Ok(None) => continue,
            Ok(Some(code)) => {
                assert_eq!(code, ErrorCode::BAD_UPDATE);
                ended = Some(attacker.until_end(T).await?);
                break;
            }
            // The close can overtake the error message; its reason carries the same words.
            Err(e) => {
                let e = format!("{e:#}");
                if e.contains("Policy") && e.contains("never received") {
                    ended = Some(Ended::Closed {
                        code: close::POLICY,
                        reason: e,
                    });
                }
                break;
            }
        }
    }
    assert!(
        matches!(
            ended,
            Some(Ended::Closed {
                code: close::POLICY,
                ..
            })
        ),
        "expected close 1008 after 4 MiB of orphans, got {ended:?}"
    );
    // The room still serves its honest members.
    honest
        .send(&ClientMsg::Update {
            seq: 2,
            update: update_inserting("still").into(),
        })
        .await?;
    honest
        .recv_until(T, |m| matches!(m, ServerMsg::Ack { seq: 2 }).then_some(()))
        .await?;
    Ok(())
}

/// A document with a fixed client id, so tests can tell authors apart in state vectors.
fn doc_with_id(id: u64) -> Doc {
    duet_yjs::doc::doc_with_client(id)
}

/// The update that appends `s` to `doc`'s text.
fn append(doc: &Doc, s: &str) -> Vec<u8> {
    let before = doc.transact().state_vector();
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    {
        let mut txn = doc.transact_mut();
        let len = text.len(&txn);
        text.insert(&mut txn, len, s);
    }
    doc.transact().encode_diff_v1(&before)
}

/// Appends `s`, sends it as update `seq` and waits for its ack, applying whatever updates
/// arrive meanwhile.
async fn edit(c: &mut RawClient, doc: &Doc, seq: u64, s: &str) -> anyhow::Result<()> {
    c.send(&ClientMsg::Update {
        seq,
        update: append(doc, s).into(),
    })
    .await?;
    loop {
        match c.recv(T).await? {
            ServerMsg::Update { update } => ydoc::apply(doc, &update.0),
            ServerMsg::Ack { seq: s } if s >= seq => return Ok(()),
            ServerMsg::Error { code, message } => anyhow::bail!("error {code:?}: {message}"),
            _ => {}
        }
    }
}

/// Waits for the next relayed update and applies it.
async fn receive_update(c: &mut RawClient, doc: &Doc) -> anyhow::Result<()> {
    let update = c
        .recv_until(T, |m| match m {
            ServerMsg::Update { update } => Some(update.0.clone()),
            _ => None,
        })
        .await?;
    ydoc::apply(doc, &update);
    Ok(())
}

/// A panic while yrs applies an update, with the transaction open: the room's document is left
/// half-changed. The sender is closed with 1011 and a reason; the room drops its document and
/// reloads it from storage; the other members stay connected, keep editing and converge; what
/// is stored never contains the bad update.
///
/// No known input makes yrs 0.28.1 panic past the guard (`duet-guard`) any more (the 25-byte one in
/// `fuzz/regressions/yrs_apply-panic-find-index-1.bin` is refused for its clock, see the next
/// test), so the panic comes from the server's debug-only failpoint
/// (`server/src/contain.rs`): armed by `DUET_FAILPOINT_PANIC_AFTER_APPLY=1`, it panics right
/// after yrs integrated an update whose bytes contain `duet-failpoint:panic`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yrs_panic_closes_1011_and_the_room_reloads_from_storage() -> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        // The server binary is built with the same profile as this test: no failpoint in it.
        eprintln!("skipped: the failpoint exists only in debug builds of duet-server");
        return Ok(());
    }
    const BAD_CLIENT: u64 = 7;
    // A real, valid update: client 7 inserts the failpoint's marker.
    let bad = append(&doc_with_id(BAD_CLIENT), "duet-failpoint:panic");
    let dir = tempdir::Dir::new("panic");
    let data = dir.path().join("data").display().to_string();
    let mut server = ServerProcess::start_with_env(
        &["--data-dir", &data],
        &[("DUET_FAILPOINT_PANIC_AFTER_APPLY", "1")],
    )?;
    let url = server.url();
    let room = "crashy";

    let (a_doc, b_doc) = (doc_with_id(101), doc_with_id(102));
    let mut a = ydoc::join(&url, room, &a_doc, 1).await?;
    let mut b = ydoc::join(&url, room, &b_doc, 1).await?;
    edit(&mut a, &a_doc, 2, "alpha ").await?;
    receive_update(&mut b, &b_doc).await?;
    edit(&mut b, &b_doc, 2, "beta ").await?;
    receive_update(&mut a, &a_doc).await?;
    assert_eq!(ydoc::text_of(&a_doc), "alpha beta ");

    // B sends the update that makes the server panic mid-apply: B alone is closed, with 1011
    // and a reason.
    b.send(&ClientMsg::Update {
        seq: 3,
        update: bad.into(),
    })
    .await?;
    let ended = b.until_end(T).await.context(
        "the failpoint did not fire (is duet-server a debug build, started with \
         DUET_FAILPOINT_PANIC_AFTER_APPLY=1?)",
    )?;
    assert!(
        matches!(&ended, Ended::Closed { code: close::INTERNAL, reason } if reason.contains("crashed")),
        "the sender of the panicking update: {ended:?}"
    );

    // A is still connected and still edits; its ack means the room (reloaded) stored it.
    edit(&mut a, &a_doc, 3, "gamma ").await?;
    // A fresh joiner gets the stored document: A's and B's edits, nothing of the bad update
    // (without the reload the room would still hold client 7's marker text).
    let c_doc = doc_with_id(103);
    let mut c = ydoc::join(&url, room, &c_doc, 1).await?;
    assert_eq!(ydoc::text_of(&c_doc), "alpha beta gamma ");
    let bad_client = yrs::block::ClientID::new(BAD_CLIENT);
    assert_eq!(
        c_doc.transact().state_vector().get(&bad_client),
        0,
        "nothing of the panicking update is in the room's document"
    );
    // Survivor and newcomer keep editing and converge.
    edit(&mut c, &c_doc, 2, "delta").await?;
    receive_update(&mut a, &a_doc).await?;
    assert_eq!(ydoc::text_of(&a_doc), "alpha beta gamma delta");
    assert_eq!(
        a_doc.transact().state_vector(),
        c_doc.transact().state_vector()
    );

    // What is stored is exactly that: restart without a goodbye and read it back.
    drop((a, c));
    server.restart()?;
    let d_doc = doc_with_id(104);
    let _d = ydoc::join(&server.url(), room, &d_doc, 0).await?;
    assert_eq!(ydoc::text_of(&d_doc), "alpha beta gamma delta");
    assert_eq!(
        d_doc.transact().state_vector(),
        a_doc.transact().state_vector()
    );
    Ok(())
}

/// The 25-byte update that made yrs 0.28.1 panic mid-apply (a block of client 7 at clock
/// 2^31 + 1, then a delete of its clock 0; see `fuzz/README.md`) is refused by the guard for
/// its clock before yrs sees it: the sender is closed with 1007, not 1011, and the room is not
/// reloaded. Nothing of it is relayed or stored, the other member stays, keeps editing, and a
/// newcomer sees exactly the honest edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_beyond_2_31_closes_1007_before_yrs_and_the_room_is_not_reloaded()
-> anyhow::Result<()> {
    const BAD: &[u8] = include_bytes!("../../fuzz/regressions/yrs_apply-panic-find-index-1.bin");
    const BAD_CLIENT: u64 = 7;
    let server = ServerProcess::start(&[])?;
    let url = server.url();
    let room = "big-clock";

    let (a_doc, b_doc) = (doc_with_id(201), doc_with_id(202));
    let mut a = ydoc::join(&url, room, &a_doc, 1).await?;
    let mut b = ydoc::join(&url, room, &b_doc, 1).await?;
    edit(&mut a, &a_doc, 2, "alpha ").await?;
    receive_update(&mut b, &b_doc).await?;
    let stored_before = metric(server.addr, "duet_updates_stored_total").await;
    assert!(stored_before >= 1, "{stored_before}");

    b.send(&ClientMsg::Update {
        seq: 2,
        update: BAD.to_vec().into(),
    })
    .await?;
    let ended = b.until_end(T).await?;
    assert!(
        matches!(&ended, Ended::Closed { code: close::INVALID_PAYLOAD, reason }
            if reason.contains("malformed update") && reason.contains("beyond 2^31")),
        "the sender of the big-clock update: {ended:?}"
    );

    // A is still connected and edits on; its document holds only its own text, and only its
    // edit was stored since.
    edit(&mut a, &a_doc, 3, "beta").await?;
    assert_eq!(ydoc::text_of(&a_doc), "alpha beta");
    let bad_client = yrs::block::ClientID::new(BAD_CLIENT);
    assert_eq!(a_doc.transact().state_vector().get(&bad_client), 0);
    assert_eq!(
        metric(server.addr, "duet_updates_stored_total").await,
        stored_before + 1
    );
    // Refused, not crashed: one 1007 and no 1011 (a panic is what makes a room reload).
    assert_eq!(
        metric(server.addr, "duet_closes_total{code=\"1007\"}").await,
        1
    );
    assert_eq!(
        metric(server.addr, "duet_closes_total{code=\"1011\"}").await,
        0
    );
    // A newcomer gets exactly A's edits, nothing of client 7.
    let c_doc = doc_with_id(203);
    let _c = ydoc::join(&url, room, &c_doc, 0).await?;
    assert_eq!(ydoc::text_of(&c_doc), "alpha beta");
    assert_eq!(
        c_doc.transact().state_vector(),
        a_doc.transact().state_vector(),
        "the room holds A's blocks and nothing of client 7"
    );
    Ok(())
}

/// A connection sending more payload bytes per second than `--max-bytes-per-sec` allows (in
/// messages well under the size and message-rate limits) is closed with 1008 and a reason;
/// the message that crossed the budget and everything after it is neither applied nor stored,
/// and the other member is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_byte_rate_is_closed_with_1008() -> anyhow::Result<()> {
    // The binary's burst is max(16 s of the rate, two maximal messages): 128 KiB here.
    const RATE: f64 = 1024.0;
    const MAX_MESSAGE: usize = 64 * 1024;
    let burst = (RATE * 16.0).max(2.0 * MAX_MESSAGE as f64);
    // Bytes of the join's sync messages, counted before the flood (generous).
    const JOIN_BYTES: f64 = 1024.0;
    let dir = tempdir::Dir::new("bytes");
    let data = dir.path().join("data").display().to_string();
    let mut server = ServerProcess::start(&[
        "--data-dir",
        &data,
        "--max-message-bytes",
        &MAX_MESSAGE.to_string(),
        "--max-bytes-per-sec",
        &RATE.to_string(),
        "--max-messages-per-sec",
        "100",
    ])?;
    let url = server.url();
    let room = "bytes";
    let honest_doc = doc_with_id(201);
    let mut honest = ydoc::join(&url, room, &honest_doc, 1).await?;
    edit(&mut honest, &honest_doc, 2, "honest ").await?;

    let flood_doc = doc_with_id(202);
    let started = std::time::Instant::now();
    let mut flooder = ydoc::join(&url, room, &flood_doc, 1).await?;
    // 15 KiB per message: eight fit the burst with ~8 KiB to spare, the ninth cannot.
    let chunk = |i: usize| format!("<{i:02}>{}", "x".repeat(15 * 1024 - 4));
    let mut sent = Vec::new();
    for i in 0..12 {
        let frame = duet_protocol::encode_client(&ClientMsg::Update {
            seq: 2 + i as u64,
            update: append(&flood_doc, &chunk(i)).into(),
        });
        let len = frame.len();
        if flooder.send_raw(frame).await.is_err() {
            break;
        }
        sent.push(len as f64);
    }
    let ended = flooder.until_end(T).await?;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        matches!(&ended, Ended::Closed { code: close::POLICY, reason } if reason.contains("bytes per second")),
        "{ended:?}"
    );

    // The honest member is still connected and edits; it saw the flood's accepted part.
    edit(&mut honest, &honest_doc, 3, "still here").await?;
    // Everything acknowledged is stored: read it back after a restart.
    drop(honest);
    server.restart()?;
    let check = doc_with_id(203);
    let _c = ydoc::join(&server.url(), room, &check, 0).await?;
    let text = ydoc::text_of(&check);
    assert!(
        text.contains("honest ") && text.contains("still here"),
        "{}",
        &text[..40.min(text.len())]
    );
    let stored: Vec<usize> = (0..sent.len())
        .filter(|i| text.contains(&format!("<{i:02}>")))
        .collect();
    let accepted = stored.len();
    assert_eq!(
        stored,
        (0..accepted).collect::<Vec<_>>(),
        "a prefix of the flood is stored"
    );
    assert!(
        accepted >= 1 && accepted < sent.len(),
        "accepted {accepted} of {}",
        sent.len()
    );
    let accepted_bytes: f64 = sent[..accepted].iter().sum();
    assert!(
        accepted_bytes <= burst + RATE * elapsed,
        "stored {accepted_bytes} bytes, over the budget of {burst} + {RATE}/s for {elapsed:.2} s"
    );
    assert!(
        accepted_bytes + sent[accepted] + JOIN_BYTES > burst,
        "closed before the budget was spent ({accepted_bytes} of {burst} bytes)"
    );
    Ok(())
}

/// Behind a trusted proxy (`--trusted-proxy`), the per-IP cap counts the client named by the
/// last `X-Forwarded-For` hop; from anyone else the header is ignored and the socket's address
/// counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_counts_only_behind_a_trusted_proxy() -> anyhow::Result<()> {
    let xff = |v: &str| format!("X-Forwarded-For: {v}\r\n");

    let server = ServerProcess::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "2",
    ])?;
    let (first, _k1) = upgrade_kept(server.addr, "/x", &xff("203.0.113.1")).await;
    assert!(first.starts_with("HTTP/1.1 101"), "{first}");
    // The proxy appends the address it saw: earlier hops are the client's to forge.
    let (second, _k2) = upgrade_kept(server.addr, "/x", &xff("198.51.100.9, 203.0.113.1")).await;
    assert!(second.starts_with("HTTP/1.1 101"), "{second}");
    let third = upgrade(server.addr, "/x", &xff("203.0.113.1")).await;
    assert!(
        third.starts_with("HTTP/1.1 429") && third.contains("203.0.113.1"),
        "a third connection from the same forwarded client: {third}"
    );
    let (other, _k3) = upgrade_kept(server.addr, "/x", &xff("203.0.113.2")).await;
    assert!(
        other.starts_with("HTTP/1.1 101"),
        "another forwarded client: {other}"
    );
    let (direct, _k4) = upgrade_kept(server.addr, "/x", "").await;
    assert!(
        direct.starts_with("HTTP/1.1 101"),
        "the proxy's own address has its own count: {direct}"
    );

    // Without --trusted-proxy the header changes nothing: all three come from 127.0.0.1.
    let server = ServerProcess::start(&["--max-connections-per-ip", "2"])?;
    let (first, _k1) = upgrade_kept(server.addr, "/x", &xff("203.0.113.1")).await;
    let (second, _k2) = upgrade_kept(server.addr, "/x", &xff("203.0.113.2")).await;
    assert!(first.starts_with("HTTP/1.1 101"), "{first}");
    assert!(second.starts_with("HTTP/1.1 101"), "{second}");
    let third = upgrade(server.addr, "/x", &xff("203.0.113.3")).await;
    assert!(
        third.starts_with("HTTP/1.1 429") && third.contains("127.0.0.1"),
        "an untrusted X-Forwarded-For is ignored: {third}"
    );
    Ok(())
}

/// `VmHWM` / `VmRSS` style fields of `/proc/PID/status`, in KiB (`None` off Linux).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

type YjsWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects the way y-websocket does: no subprotocol, the room (and any `?token=`) in the path.
async fn yjs_connect(url: &str, path: &str) -> anyhow::Result<YjsWs> {
    let (ws, response) = tokio_tungstenite::connect_async(format!("{url}/{path}")).await?;
    assert!(
        response.headers().get("sec-websocket-protocol").is_none(),
        "a Yjs connection gets no duet subprotocol"
    );
    Ok(ws)
}

/// Reads until the server's close frame: the binary frames before it, its code and reason.
async fn yjs_until_close(ws: &mut YjsWs) -> anyhow::Result<(Vec<Vec<u8>>, u16, String)> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no close frame within 5 s"))?;
        match next {
            Some(Ok(Message::Binary(b))) => frames.push(b.to_vec()),
            Some(Ok(Message::Close(Some(f)))) => {
                return Ok((frames, f.code.into(), f.reason.to_string()));
            }
            Some(Ok(Message::Close(None))) => anyhow::bail!("close frame without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("dropped without a close frame: {e}"),
            None => anyhow::bail!("ended without a close frame"),
        }
    }
}

/// Tiny updates whose leading counts claim 2^28 or 2^31 entries: the sender is closed with 1007
/// at once, the server's peak memory does not move, nothing is relayed or stored, and the other
/// member keeps editing. The same through the y-websocket endpoint, plus y-protocols' own length
/// prefixes. (yrs 0.28.1 reserves memory for a count before reading the entries: decoding the
/// 5-byte "2^28 clients" update unguarded took 0.44 s and raised a process's peak RSS by
/// 490 MiB; for 2^31 its 176 GB reservation fails on a 24 GB machine, but not on every machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_claiming_huge_counts_close_1007_at_once_and_cost_no_memory() -> anyhow::Result<()>
{
    // About 30 connections in a burst: more than the default handshake burst allows.
    let server = ServerProcess::start(&["--max-handshakes-per-sec", "1000"])?;
    let url = server.url();
    let room = "amplify";
    let honest_doc = doc_with_id(301);
    let mut honest = ydoc::join(&url, room, &honest_doc, 1).await?;
    edit(&mut honest, &honest_doc, 2, "before ").await?;
    let stored_before = metric(server.addr, "duet_updates_stored_total").await;
    assert!(stored_before >= 1, "{stored_before}");
    let peak_before = proc_status_kib(server.pid(), "VmHWM");

    let huge = |shift: u32| {
        let mut v = Vec::new();
        var_uint(&mut v, 1 << shift);
        v
    };
    let mut amplifying: Vec<(String, Vec<u8>)> = Vec::new();
    for shift in [28, 31] {
        let n = huge(shift);
        amplifying.extend([
            (format!("2^{shift} clients"), n.clone()),
            (
                format!("one client with 2^{shift} blocks"),
                [&[1][..], &n, &[5, 0]].concat(),
            ),
            (
                format!("a delete set of 2^{shift} clients"),
                [&[0][..], &n].concat(),
            ),
            (
                format!("a delete set client with 2^{shift} ranges"),
                [&[0, 1, 5][..], &n].concat(),
            ),
        ]);
    }

    // duet protocol: the update inside an `Update` message.
    for (what, update) in &amplifying {
        let mut bad = RawClient::connect(&url, room).await?;
        let started = std::time::Instant::now();
        bad.send(&ClientMsg::Update {
            seq: 1,
            update: update.clone().into(),
        })
        .await?;
        let ended = bad.until_end(Duration::from_secs(5)).await?;
        eprintln!("duet, {what}: {ended:?} after {:?}", started.elapsed());
        assert!(
            matches!(&ended, Ended::Closed { code: close::INVALID_PAYLOAD, reason } if reason.contains("malformed update")),
            "duet, {what}: {ended:?}"
        );
    }
    // duet protocol: the message's own length prefix for the update claims 2^31 bytes.
    let honest_frame = duet_protocol::encode_client(&ClientMsg::Update {
        seq: 1,
        update: vec![0, 0].into(),
    });
    assert_eq!(
        honest_frame,
        [2, 1, 2, 0, 0],
        "the bincode layout changed; update this test"
    );
    // bincode's varint: 0xfc, then a u32 little-endian.
    let lying_frame = [&[2, 1, 0xfc][..], &(1u32 << 31).to_le_bytes(), &[0, 0]].concat();
    let mut bad = RawClient::connect(&url, room).await?;
    bad.send_raw(lying_frame).await?;
    let ended = bad.until_end(Duration::from_secs(5)).await?;
    assert!(
        matches!(
            &ended,
            Ended::Closed {
                code: close::INVALID_PAYLOAD,
                ..
            }
        ),
        "duet, a 2^31-byte length prefix: {ended:?}"
    );

    // y-websocket: the same updates as sync updates and sync step 2, and y-protocols' length
    // prefixes (the update's, an awareness update's entry count) claiming 2^31.
    let mut yjs_frames: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, update) in &amplifying {
        yjs_frames.push((
            format!("sync update, {what}"),
            duet_e2e::yraw::message(0, Some(2), update),
        ));
        yjs_frames.push((
            format!("sync step 2, {what}"),
            duet_e2e::yraw::message(0, Some(1), update),
        ));
    }
    yjs_frames.push((
        "a sync update whose length claims 2^31 bytes".into(),
        [&[0, 2][..], &huge(31), &[0, 0]].concat(),
    ));
    yjs_frames.push((
        "an awareness update of 2^31 entries".into(),
        duet_e2e::yraw::message(1, None, &[&huge(31)[..], &[1, 1, 2, b'{', b'}']].concat()),
    ));
    for (what, frame) in &yjs_frames {
        let mut ws = yjs_connect(&url, room).await?;
        let started = std::time::Instant::now();
        futures_util::SinkExt::send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::Binary(frame.clone().into()),
        )
        .await?;
        let (_, code, reason) = yjs_until_close(&mut ws).await?;
        eprintln!(
            "yjs, {what}: {code} {reason:?} after {:?}",
            started.elapsed()
        );
        assert_eq!(code, close::INVALID_PAYLOAD.0, "yjs, {what}: {reason}");
        assert!(!reason.is_empty(), "yjs, {what}");
    }

    // Memory: the peak resident size of the server did not move (yrs would have reserved
    // gigabytes for these counts).
    match (peak_before, proc_status_kib(server.pid(), "VmHWM")) {
        (Some(before), Some(after)) => {
            eprintln!("server peak RSS: {before} KiB before, {after} KiB after");
            assert!(
                after < before + 64 * 1024,
                "the server's peak RSS grew from {before} KiB to {after} KiB"
            );
        }
        _ => eprintln!("no /proc/PID/status here: skipping the memory check"),
    }

    // The honest member still edits; only its edits were stored, nothing of the bad ones.
    edit(&mut honest, &honest_doc, 3, "after").await?;
    assert_eq!(ydoc::text_of(&honest_doc), "before after");
    assert_eq!(
        metric(server.addr, "duet_updates_stored_total").await,
        stored_before + 1,
        "only the honest edit was stored"
    );
    let late_doc = doc_with_id(302);
    let _late = ydoc::join(&url, room, &late_doc, 0).await?;
    assert_eq!(ydoc::text_of(&late_doc), "before after");
    assert_eq!(
        late_doc.transact().state_vector(),
        honest_doc.transact().state_vector(),
        "the room holds the honest member's blocks and nothing else"
    );
    // Every refused sender is counted once, whichever side (room or connection) refused it.
    let refused = amplifying.len() + 1 + yjs_frames.len();
    assert_eq!(
        metric(server.addr, "duet_closes_total{code=\"1007\"}").await,
        refused as i64,
        "each 1007 close counted exactly once"
    );
    Ok(())
}

/// A Yjs client is upgraded and then closed with a code y-websocket stops on: 4403 for a token
/// for another room, 4401 without a token, with a forged one or an expired one. It is told why
/// (a permission-denied message and the close reason), learns nothing of the room, and no room
/// is loaded for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yjs_clients_get_4403_for_another_rooms_token_and_4401_without_a_valid_one()
-> anyhow::Result<()> {
    let dir = tempdir::Dir::new("yroom");
    let keys = key_file(&dir);
    let server = ServerProcess::start(&["--auth-key-file", &keys])?;
    let url = server.url();
    let expiring = token(&keys, "notes", "editor", "1s");
    let minted = std::time::Instant::now();
    let other = token(&keys, "other", "editor", "1h");
    let good = token(&keys, "notes", "editor", "1h");
    let forged = {
        // Change the signature's first character: same claims, bad signature.
        let at = good.rfind('.').expect("a JWT") + 1;
        let swap = if good[at..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        format!("{}{swap}{}", &good[..at], &good[at + 1..])
    };

    let refused = |code: u16, frames: &[Vec<u8>], reason: &str, what: &str| {
        assert!(!reason.is_empty(), "{what}: close {code} without a reason");
        assert!(
            frames.iter().any(|f| f.starts_with(&[2, 0])),
            "{what}: no permission-denied message before the close: {frames:?}"
        );
        assert!(
            !frames.iter().any(|f| f.first() == Some(&0)),
            "{what}: a refused client got sync messages: {frames:?}"
        );
    };

    let mut ws = yjs_connect(&url, &format!("notes?token={other}")).await?;
    let (frames, code, reason) = yjs_until_close(&mut ws).await?;
    assert_eq!(code, close::FORBIDDEN.0, "another room's token: {reason}");
    assert!(reason.contains("\"other\""), "{reason}");
    refused(code, &frames, &reason, "another room's token");

    for (what, path) in [
        ("no token", "notes".to_owned()),
        ("a forged token", format!("notes?token={forged}")),
    ] {
        let mut ws = yjs_connect(&url, &path).await?;
        let (frames, code, reason) = yjs_until_close(&mut ws).await?;
        assert_eq!(code, close::TOKEN_EXPIRED.0, "{what}: {reason}");
        refused(code, &frames, &reason, what);
    }

    // A 1 s token is expired once 2 s have passed (expiry is checked in whole seconds).
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(minted.elapsed())).await;
    let mut ws = yjs_connect(&url, &format!("notes?token={expiring}")).await?;
    let (frames, code, reason) = yjs_until_close(&mut ws).await?;
    assert_eq!(code, close::TOKEN_EXPIRED.0, "an expired token: {reason}");
    assert!(reason.contains("expired"), "{reason}");
    refused(code, &frames, &reason, "an expired token");

    assert_eq!(
        metric(server.addr, "duet_rooms_loaded").await,
        0,
        "refused clients load no room"
    );
    assert_eq!(
        metric(server.addr, "duet_closes_total{code=\"4403\"}").await,
        1
    );
    assert_eq!(
        metric(server.addr, "duet_closes_total{code=\"4401\"}").await,
        3
    );

    // The control: this room's token is served (sync step 1 first) and loads the room.
    let mut ws = yjs_connect(&url, &format!("notes?token={good}")).await?;
    let first = tokio::time::timeout(T, futures_util::StreamExt::next(&mut ws))
        .await?
        .expect("a frame")?;
    assert!(
        first.into_data().starts_with(&[0, 0]),
        "a valid token gets sync step 1"
    );
    assert_eq!(metric(server.addr, "duet_rooms_loaded").await, 1);
    Ok(())
}
