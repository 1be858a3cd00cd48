//! A server you can expose: every access control and limit, with the exact HTTP status or
//! close code it produces, and proof that a refused client created no room.

use duet_e2e::node::NodeClient;
use duet_e2e::raw::{Ended, RawClient};
use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_e2e::ydoc;
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
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v1\r\n{headers}\r\n"
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

/// A document with a fixed client id, so tests can tell authors apart in state vectors.
fn doc_with_id(id: u64) -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        client_id: yrs::block::ClientID::new(id),
        ..Options::default()
    })
}

/// The update that appends `s` to `doc`'s text.
fn append(doc: &Doc, s: &str) -> Vec<u8> {
    let before = doc.transact().state_vector();
    let text = doc.get_or_insert_text("content");
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

/// yrs 0.28.1 panics while applying this 25-byte update, which passes the guard (see
/// `server/src/contain.rs` and `fuzz/README.md`): the block is integrated, then the delete
/// panics, so the room's document is left half-changed. The sender is closed with 1011 and a
/// reason; the room drops its document and reloads it from storage; the other members stay
/// connected, keep editing and converge; what is stored never contains the bad update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yrs_panic_closes_1011_and_the_room_reloads_from_storage() -> anyhow::Result<()> {
    const BAD: &[u8] = include_bytes!("../../fuzz/regressions/yrs_apply-panic-find-index-1.bin");
    const BAD_CLIENT: u64 = 7;
    let dir = tempdir::Dir::new("panic");
    let data = dir.path().join("data").display().to_string();
    let mut server = ServerProcess::start(&["--data-dir", &data])?;
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

    // B sends the update that makes yrs panic: B alone is closed, with 1011 and a reason.
    b.send(&ClientMsg::Update {
        seq: 3,
        update: BAD.to_vec().into(),
    })
    .await?;
    let ended = b.until_end(T).await?;
    assert!(
        matches!(&ended, Ended::Closed { code: close::INTERNAL, reason } if reason.contains("crashed")),
        "the sender of the panicking update: {ended:?}"
    );

    // A is still connected and still edits; its ack means the room (reloaded) stored it.
    edit(&mut a, &a_doc, 3, "gamma ").await?;
    // A fresh joiner gets the stored document: A's and B's edits, nothing of the bad update
    // (without the reload the room would still hold its half-applied block of client 7).
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
