//! The server at the wire level: raw protocol clients against a real `duet-server` process.

use duet_e2e::proxy::Proxy;
use duet_e2e::raw::{Ended, RawClient};
use duet_e2e::server::ServerProcess;
use duet_e2e::ydoc::{apply, doc, join, text_of};
use duet_protocol::{ClientMsg, CursorState, ErrorCode, PeerState, ServerMsg, close};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yrs::{Doc, ReadTxn, Text, Transact};

const T: Duration = Duration::from_secs(10);

/// Inserts `s` at `at` and returns the update that did it.
fn edit(doc: &Doc, at: u32, s: &str) -> Vec<u8> {
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let before = doc.transact().state_vector();
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, at, s);
    drop(txn);
    doc.transact().encode_diff_v1(&before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_relay_in_order_and_are_acknowledged() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let (da, db) = (doc(), doc());
    let mut a = join(&server.url(), "relay", &da, 0).await?;
    let mut b = join(&server.url(), "relay", &db, 0).await?;
    for (i, word) in ["one ", "two ", "three "].iter().enumerate() {
        let at = text_of(&da).encode_utf16().count() as u32;
        let update = edit(&da, at, word);
        a.send(&ClientMsg::Update {
            seq: i as u64 + 1,
            update: update.into(),
        })
        .await?;
    }
    let acked = a
        .recv_until(T, |m| match m {
            ServerMsg::Ack { seq: 3 } => Some(3),
            _ => None,
        })
        .await?;
    assert_eq!(acked, 3);
    while text_of(&db) != "one two three " {
        let update = b
            .recv_until(T, |m| match m {
                ServerMsg::Update { update } => Some(update.0.clone()),
                _ => None,
            })
            .await?;
        apply(&db, &update);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_the_whole_document_and_offline_edits_reach_the_room() -> anyhow::Result<()>
{
    let server = ServerProcess::start(&[])?;
    let da = doc();
    let mut a = join(&server.url(), "late", &da, 0).await?;
    let update = edit(&da, 0, "hello 👋 wörld");
    a.send(&ClientMsg::Update {
        seq: 1,
        update: update.into(),
    })
    .await?;
    a.recv_until(T, |m| matches!(m, ServerMsg::Ack { seq: 1 }).then_some(()))
        .await?;

    // B edited before joining: its edit reaches the room through its sync step 2.
    let db = doc();
    edit(&db, 0, "B was here. ");
    let _b = join(&server.url(), "late", &db, 0).await?;
    let seen_by_b = text_of(&db);
    assert!(
        seen_by_b.contains("hello 👋 wörld") && seen_by_b.contains("B was here. "),
        "{seen_by_b}"
    );

    let dc = doc();
    let _c = join(&server.url(), "late", &dc, 0).await?;
    assert_eq!(text_of(&dc), seen_by_b);
    Ok(())
}

fn cursor_state(name: &str) -> PeerState {
    PeerState {
        name: name.into(),
        color: "#ff0000".into(),
        // Sticky indices on the root text `content` (the server refuses bytes that are none).
        cursor: Some(CursorState {
            anchor: [&[1, 7][..], duet_yjs::doc::ROOT_TEXT.as_bytes(), &[0]]
                .concat()
                .into(),
            head: [&[1, 7][..], duet_yjs::doc::ROOT_TEXT.as_bytes(), &[0]]
                .concat()
                .into(),
        }),
        location: None,
    }
}

async fn next_awareness(c: &mut RawClient) -> anyhow::Result<Vec<duet_protocol::AwarenessEntry>> {
    c.recv_until(T, |m| match m {
        ServerMsg::Awareness { entries } => Some(entries.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_disappears_when_its_socket_is_killed() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let proxy = Proxy::start(server.addr).await?;
    let (da, db) = (doc(), doc());
    let mut a = join(&proxy.url(), "cursors", &da, 0).await?;
    let mut b = join(&server.url(), "cursors", &db, 0).await?;
    a.send(&ClientMsg::Awareness {
        client_id: 42,
        state: Some(cursor_state("ann")),
    })
    .await?;
    let entries = next_awareness(&mut b).await?;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].client_id, 42);
    assert_eq!(
        entries[0].state.as_ref().map(|s| s.name.as_str()),
        Some("ann")
    );

    // B may not set or clear A's entry.
    b.send(&ClientMsg::Awareness {
        client_id: 42,
        state: None,
    })
    .await?;
    let err = b
        .recv_until(T, |m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await?;
    assert_eq!(err, ErrorCode::NOT_OWNER);

    proxy.cut_all(); // A's socket dies without a close frame.
    let entries = next_awareness(&mut b).await?;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].client_id, 42);
    assert_eq!(entries[0].state, None, "A's cursor must be removed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_with_1013_and_resyncs() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--send-queue", "8"])?;
    let (dw, dr, ds) = (doc(), doc(), doc());
    let mut writer = join(&server.url(), "slow", &dw, 0).await?;
    let mut reader = join(&server.url(), "slow", &dr, 0).await?;
    let mut slow = join(&server.url(), "slow", &ds, 0).await?;

    // 400 updates of 32 KiB: far more than the slow client's socket buffers and queue hold.
    // The writer waits for each acknowledgement and the reader only collects, so both keep up.
    let chunk = "x".repeat(32 * 1024);
    let reading = tokio::spawn(async move {
        let mut updates = Vec::new();
        while updates.len() < 400 {
            let update = reader
                .recv_until(T, |m| match m {
                    ServerMsg::Update { update } => Some(update.0.clone()),
                    _ => None,
                })
                .await
                .map_err(|e| e.context(format!("reader got {} of 400 updates", updates.len())))?;
            updates.push(update);
        }
        anyhow::Ok(updates)
    });
    for i in 0..400u64 {
        let update = edit(&dw, 0, &chunk);
        writer
            .send(&ClientMsg::Update {
                seq: i + 1,
                update: update.into(),
            })
            .await?;
        writer
            .recv_until(T, |m| {
                matches!(m, ServerMsg::Ack { seq } if *seq == i + 1).then_some(())
            })
            .await?;
    }
    for update in reading.await?? {
        apply(&dr, &update);
    }
    assert_eq!(text_of(&dr).len(), 400 * 32 * 1024);

    // The slow one, when it finally reads, finds a 1013 close after whatever was buffered.
    let ended = slow.until_end(Duration::from_secs(30)).await?;
    assert!(
        matches!(
            ended,
            Ended::Closed {
                code: close::TRY_AGAIN_LATER,
                ..
            }
        ),
        "expected 1013, got {ended:?}"
    );
    // After reconnecting it converges.
    let ds2 = doc();
    let _again = join(&server.url(), "slow", &ds2, 0).await?;
    assert_eq!(text_of(&ds2), text_of(&dw));
    drop(ds);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_close_with_1007_and_the_room_carries_on() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let (da, db) = (doc(), doc());
    let mut a = join(&server.url(), "bad", &da, 0).await?;
    let mut b = join(&server.url(), "bad", &db, 0).await?;

    // Not a protocol message at all.
    let mut bad = RawClient::connect(&server.url(), "bad").await?;
    bad.send_raw(vec![0xff, 0xff, 0xff]).await?;
    assert!(matches!(
        bad.until_end(T).await?,
        Ended::Closed {
            code: close::CloseCode(1007),
            ..
        }
    ));

    // A protocol message carrying a malformed yrs update.
    let mut bad = RawClient::connect(&server.url(), "bad").await?;
    bad.send(&ClientMsg::Update {
        seq: 1,
        update: vec![1, 2, 3, 4, 5].into(),
    })
    .await?;
    assert!(matches!(
        bad.until_end(T).await?,
        Ended::Closed {
            code: close::CloseCode(1007),
            ..
        }
    ));

    // A text frame.
    let mut bad = RawClient::connect(&server.url(), "bad").await?;
    use futures_util::SinkExt;
    bad.ws
        .send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await?;
    assert!(matches!(
        bad.until_end(T).await?,
        Ended::Closed {
            code: close::CloseCode(1002),
            ..
        }
    ));

    // The honest members still sync.
    let update = edit(&da, 0, "still fine");
    a.send(&ClientMsg::Update {
        seq: 1,
        update: update.into(),
    })
    .await?;
    let got = b
        .recv_until(T, |m| match m {
            ServerMsg::Update { update } => Some(update.0.clone()),
            _ => None,
        })
        .await?;
    apply(&db, &got);
    assert_eq!(text_of(&db), "still fine");
    Ok(())
}

/// Performs the upgrade by hand and sends a frame header claiming `len` payload bytes with no
/// payload behind it, so the server's close cannot be lost to a TCP reset over unread bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_closed_with_1009() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--max-message-bytes", "1024"])?;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await?;
    tcp.write_all(
        b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v2\r\n\r\n",
    )
    .await?;
    // Binary frame, FIN, masked, 16-bit length 2000, mask key 0.
    tcp.write_all(&[0x82, 0xFE, 0x07, 0xD0, 0, 0, 0, 0]).await?;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(T, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("101 response")
        + 4;
    assert!(got.starts_with(b"HTTP/1.1 101"));
    // Skip the Welcome (and any other) frames to the close frame (opcode 0x8).
    let mut rest = &got[head_end..];
    let mut close_code = None;
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, hdr) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => break,
            n => (n as usize, 2),
        };
        if opcode == 0x8 {
            close_code = Some(u16::from_be_bytes([rest[hdr], rest[hdr + 1]]));
            break;
        }
        rest = &rest[hdr + len..];
    }
    assert_eq!(close_code, Some(close::TOO_BIG.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_zero() -> anyhow::Result<()> {
    let mut server = ServerProcess::start(&[])?;
    let da = doc();
    let mut a = join(&server.url(), "bye", &da, 0).await?;
    let status = server.terminate(T)?;
    assert!(status.success(), "exit status {status}");
    assert!(matches!(
        a.until_end(T).await?,
        Ended::Closed {
            code: close::CloseCode(1001),
            ..
        }
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_dropped() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--handshake-timeout-secs", "1"])?;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await?;
    tcp.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n").await?; // never finishes the head
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await?;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to be dropped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_and_version_refusal() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let get = |path: &'static str, extra: &'static str| {
        let addr = server.addr;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
                .await?;
            let mut out = String::new();
            tcp.read_to_string(&mut out).await?;
            anyhow::Ok(out)
        }
    };
    assert!(get("/healthz", "").await?.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics", "").await?;
    assert!(metrics.contains("duet_connections "), "{metrics}");
    let refused = get(
        "/room",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v1\r\n",
    )
    .await?;
    // A duet.v1 client (before workspaces' locations) is refused, told what is spoken.
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(
        refused.contains("unsupported duet protocol version duet.v1")
            && refused.contains("speaks duet.v2"),
        "{refused}"
    );
    let bad_room = get(
        "/a/../b",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: duet.v2\r\n",
    )
    .await?;
    assert!(
        bad_room.starts_with("HTTP/1.1 400") && bad_room.contains(".."),
        "{bad_room}"
    );
    Ok(())
}
