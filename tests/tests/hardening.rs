//! A server you can expose: every access control and limit, with the exact HTTP status or
//! close code it produces, and proof that a refused client created no room.

use duet_e2e::node::NodeClient;
use duet_e2e::raw::{Ended, RawClient};
use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_protocol::{ClientMsg, ErrorCode, ServerMsg, close};
use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, Text, Transact};

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
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v1\r\n{headers}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(T, tcp.read(&mut buf))
        .await
        .expect("response in time")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
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
    let doc = Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    let text = doc.get_or_insert_text("content");
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
    let doc = Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    {
        use yrs::updates::decoder::Decode;
        doc.transact_mut()
            .apply_update(yrs::Update::decode_v1(&state)?)?;
    }
    let text = doc.get_or_insert_text("content");
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
    assert_eq!(code, Some(close::TOKEN_EXPIRED));
    // A real y-websocket client with a token for another room: closed 4403, and it stops.
    let other = token(&keys, "elsewhere", "editor", "1h");
    let mut y = NodeClient::start(
        &server.url(),
        &format!("room?token={other}"),
        "y",
        "#000000",
    )?;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
            "GET /r{i} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v1\r\n\r\n"
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

#[test]
fn exposing_the_server_without_auth_is_refused() {
    let out = std::process::Command::new(workspace_bin("duet-server").expect("bin"))
        .args(["--listen", "0.0.0.0:0", "--memory"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without auth") && err.contains("--auth-key-file"),
        "{err}"
    );
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

    // The attacker's document writes one character the server never gets, then 1 MiB blocks
    // after it: each block depends on that missing character.
    let doc = Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        client_id: yrs::block::ClientID::new(4242),
        ..Options::default()
    });
    let text = doc.get_or_insert_text("content");
    text.insert(&mut doc.transact_mut(), 0, "x");
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
