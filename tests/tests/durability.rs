//! Durable rooms against the real binary: SIGKILL at random moments (also during
//! compaction, and inside an open commit window) loses no acknowledged edit, restarts restore every room, idle rooms unload and
//! reload, joiners during a load get the whole document, storage failures refuse writes
//! without acknowledging them, a corrupt database stops the server with a clear message, and
//! the `rooms` admin commands.

use duet_e2e::raw::RawClient;
use duet_e2e::server::{ServerProcess, workspace_bin};
use duet_e2e::ydoc::{apply, doc, join, text_of};
use duet_protocol::{ClientMsg, ErrorCode, ServerMsg};
use futures_util::StreamExt;
use rand::RngExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use yrs::{Doc, ReadTxn, Text, Transact};

const T: Duration = Duration::from_secs(10);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "duet-durability-{name}-{}-{}",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Appends `s` to the document's text and returns the update that did it.
fn append(doc: &Doc, s: &str) -> Vec<u8> {
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let before = doc.transact().state_vector();
    let len = text.len(&doc.transact());
    text.insert(&mut doc.transact_mut(), len, s);
    doc.transact().encode_diff_v1(&before)
}

/// What a fresh client sees in `room`.
async fn observe(url: &str, room: &str) -> anyhow::Result<String> {
    let d = doc();
    let _c = join(url, room, &d, 0).await?;
    Ok(text_of(&d))
}

async fn wait_ack(c: &mut RawClient, seq: u64) -> anyhow::Result<()> {
    c.recv_until(T, |m| match m {
        ServerMsg::Ack { seq: s } if *s >= seq => Some(()),
        _ => None,
    })
    .await
}

fn quick_check(dir: &Path) -> anyhow::Result<String> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("duet.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?)
}

fn count(dir: &Path, sql: &str) -> anyhow::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("duet.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

struct CrashCounts {
    rounds: usize,
    acked: usize,
    lost: usize,
}

/// A writer streams edits; the server is SIGKILLed at a random moment each round. After each
/// restart a fresh observer must see every acknowledged edit, the database must pass
/// `quick_check`, and once the writer has rejoined (resending what was not acknowledged) the
/// observer and the writer must agree.
async fn crash_rounds(rounds: usize, extra: &[&str]) -> anyhow::Result<CrashCounts> {
    let dir = temp_dir("crash");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut args = vec!["--data-dir", &dir_s];
    args.extend_from_slice(extra);
    let mut server = ServerProcess::start(&args)?;
    let room = "crash";
    let writer = doc();
    let mut acked_words: Vec<String> = Vec::new();
    let mut lost = 0;
    let mut rng = rand::rng();
    for round in 0..rounds {
        let mut c = join(&server.url(), room, &writer, 1).await?;
        let seen = observe(&server.url(), room).await?;
        assert_eq!(
            seen,
            text_of(&writer),
            "round {round}: clients did not converge"
        );
        let check = quick_check(&dir)?;
        assert_eq!(check, "ok", "round {round}: quick_check");

        // Stream edits, reading acks as they come, until a random moment; then SIGKILL.
        let kill_at = Instant::now() + Duration::from_millis(rng.random_range(5..250));
        let mut words: Vec<(u64, String)> = Vec::new();
        let mut max_acked = 0;
        let mut seq = 1;
        while Instant::now() < kill_at {
            seq += 1;
            let word = format!("r{round}e{seq} ");
            let update = append(&writer, &word);
            words.push((seq, word));
            if c.send(&ClientMsg::Update {
                seq,
                update: update.into(),
            })
            .await
            .is_err()
            {
                break;
            }
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_micros(1), c.ws.next()).await
            {
                if let Message::Binary(b) = msg
                    && let Ok(ServerMsg::Ack { seq }) = duet_protocol::decode_server(&b)
                {
                    max_acked = max_acked.max(seq);
                }
            }
        }
        server.kill();
        // Acks already on the wire before the kill count too: the server sent them.
        max_acked = max_acked.max(drain_acks(&mut c, T).await);
        drop(c);
        acked_words.extend(
            words
                .iter()
                .filter(|(s, _)| *s <= max_acked)
                .map(|(_, w)| w.clone()),
        );

        server.restart()?;
        let seen = observe(&server.url(), room).await?;
        let missing: Vec<&String> = acked_words
            .iter()
            .filter(|w| !seen.contains(w.as_str()))
            .collect();
        lost += missing.len();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged edits lost after SIGKILL: {missing:?}"
        );
    }
    // Final convergence after the last kill.
    let c = join(&server.url(), room, &writer, 1).await?;
    assert_eq!(observe(&server.url(), room).await?, text_of(&writer));
    assert_eq!(quick_check(&dir)?, "ok");
    drop(c);
    server.kill();
    let counts = CrashCounts {
        rounds,
        acked: acked_words.len(),
        lost,
    };
    if extra.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        // With a tiny threshold, compaction must actually have happened.
        let snapshots = count(&dir, "SELECT count(*) FROM snapshot")?;
        assert!(snapshots > 0, "no compaction happened");
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_edit() -> anyhow::Result<()> {
    let c = crash_rounds(30, &[]).await?;
    eprintln!(
        "crash test: {} rounds, {} acknowledged edits, {} lost",
        c.rounds, c.acked, c.lost
    );
    assert!(c.acked > 100, "too few acknowledged edits to mean anything");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_loses_no_acknowledged_edit() -> anyhow::Result<()> {
    let c = crash_rounds(30, &["--compact-after-rows", "8"]).await?;
    eprintln!(
        "crash test with compaction every 8 updates: {} rounds, {} acknowledged edits, {} lost",
        c.rounds, c.acked, c.lost
    );
    assert!(c.acked > 100, "too few acknowledged edits to mean anything");
    Ok(())
}

/// With a long commit window (400 ms), each round: one edit is sent and acknowledged (its
/// window closed and committed), then a few more are typed inside the next window, reach an
/// observer (relay does not wait for storage) and are not yet acknowledged when the server is
/// SIGKILLed. After the restart every acknowledged edit must be there; the unacknowledged
/// ones may be gone until the writer rejoins and sends them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_inside_an_open_commit_window_loses_no_acknowledged_edit() -> anyhow::Result<()> {
    let dir = temp_dir("window");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut server = ServerProcess::start(&["--data-dir", &dir_s, "--commit-window-ms", "400"])?;
    let room = "window";
    let writer = doc();
    let mut acked_words: Vec<String> = Vec::new();
    let (mut inside, rounds) = (0, 8);
    let mut rng = rand::rng();
    for round in 0..rounds {
        let mut c = join(&server.url(), room, &writer, 1).await?;
        let observer = doc();
        let mut o = join(&server.url(), room, &observer, 1).await?;
        assert_eq!(
            text_of(&observer),
            text_of(&writer),
            "round {round}: converged"
        );

        let first = format!("r{round}acked ");
        let u = append(&writer, &first);
        c.send(&ClientMsg::Update {
            seq: 2,
            update: u.into(),
        })
        .await?;
        wait_ack(&mut c, 2).await?;
        acked_words.push(first);
        // The store reports its commits (each one fsync) on /metrics.
        let commits = metric(server.addr, "duet_store_commits_total").await?;
        let batches = metric(server.addr, "duet_store_updates_per_commit_count").await?;
        assert!(
            commits >= 1 && batches == commits,
            "round {round}: {commits} commits, {batches} batches"
        );

        // Typed inside the window the next edit opens: 1-4 edits over at most ~120 ms.
        let n = rng.random_range(1..=4u64);
        let mut last = String::new();
        for i in 0..n {
            last = format!("r{round}open{i} ");
            let u = append(&writer, &last);
            c.send(&ClientMsg::Update {
                seq: 3 + i,
                update: u.into(),
            })
            .await?;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
        }
        // The observer gets them before they are stored.
        o.recv_until(T, |m| match m {
            ServerMsg::Update { update } => {
                apply(&observer, update);
                text_of(&observer).contains(last.as_str()).then_some(())
            }
            _ => None,
        })
        .await?;
        // Whatever the writer was told so far, read without waiting.
        let mut max_acked = 2;
        while let Ok(Some(Ok(Message::Binary(b)))) =
            tokio::time::timeout(Duration::from_micros(1), c.ws.next()).await
        {
            if let Ok(ServerMsg::Ack { seq }) = duet_protocol::decode_server(&b) {
                max_acked = max_acked.max(seq);
            }
        }
        server.kill();
        // Acks already on the wire before the kill count too: the server sent them.
        max_acked = max_acked.max(drain_acks(&mut c, T).await);
        if max_acked < 2 + n {
            inside += 1;
        }
        for i in 0..(max_acked - 2).min(n) {
            acked_words.push(format!("r{round}open{i} "));
        }
        drop((c, o));

        server.restart()?;
        let seen = observe(&server.url(), room).await?;
        let missing: Vec<&String> = acked_words
            .iter()
            .filter(|w| !seen.contains(w.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged edits lost after SIGKILL: {missing:?}"
        );
        assert_eq!(quick_check(&dir)?, "ok", "round {round}: quick_check");
    }
    // A slow machine may close a window before the kill; most rounds must land inside one.
    assert!(
        inside * 2 > rounds,
        "only {inside} of {rounds} kills landed inside an open commit window"
    );
    // The writer rejoins and sends again what was never acknowledged.
    let c = join(&server.url(), room, &writer, 1).await?;
    let deadline = Instant::now() + T;
    while observe(&server.url(), room).await? != text_of(&writer) {
        assert!(
            Instant::now() < deadline,
            "the writer's resent edits never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c);
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_every_room_and_admin_commands_work() -> anyhow::Result<()> {
    let dir = temp_dir("restart");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut server = ServerProcess::start(&["--data-dir", &dir_s])?;
    let rooms: Vec<String> = (0..5).map(|i| format!("room-{i}")).collect();
    for (i, room) in rooms.iter().enumerate() {
        let d = doc();
        let mut c = join(&server.url(), room, &d, 1).await?;
        let update = append(&d, &format!("text of room {i} ✓"));
        c.send(&ClientMsg::Update {
            seq: 2,
            update: update.into(),
        })
        .await?;
        wait_ack(&mut c, 2).await?;
    }
    server.restart()?;
    for (i, room) in rooms.iter().enumerate() {
        assert_eq!(
            observe(&server.url(), room).await?,
            format!("text of room {i} ✓")
        );
    }

    let bin = workspace_bin("duet-server")?;
    let admin = |args: &[&str]| {
        Command::new(&bin)
            .args(["--data-dir", &dir_s, "rooms"])
            .args(args)
            .output()
    };
    // Reads are fine while the server runs.
    let list = admin(&["list"])?;
    assert!(list.status.success(), "{list:?}");
    let listed = String::from_utf8_lossy(&list.stdout);
    for room in &rooms {
        assert!(listed.contains(room.as_str()), "{listed}");
    }
    let text = admin(&["export", "room-3"])?;
    assert_eq!(String::from_utf8_lossy(&text.stdout), "text of room 3 ✓");
    let yjs_file = dir.join("room-3.yjs");
    let yjs_s = yjs_file.to_string_lossy().into_owned();
    let out = admin(&["export", "room-3", "--format", "yjs", &yjs_s])?;
    assert!(out.status.success(), "{out:?}");
    let d = doc();
    apply(&d, &std::fs::read(&yjs_file)?);
    assert_eq!(text_of(&d), "text of room 3 ✓");

    // Writes refuse while the server holds the data directory.
    let refused = admin(&["delete", "room-1"])?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("a duet-server is running"), "{stderr}");

    server.kill();
    let out = admin(&["import", "copy-of-3", &yjs_s])?;
    assert!(out.status.success(), "{out:?}");
    let out = admin(&["delete", "room-1"])?;
    assert!(out.status.success(), "{out:?}");
    server.restart()?;
    assert_eq!(
        observe(&server.url(), "copy-of-3").await?,
        "text of room 3 ✓"
    );
    assert_eq!(observe(&server.url(), "room-1").await?, "");
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn rooms_loaded(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    metric(addr, "duet_rooms_loaded").await
}

/// One unlabelled value from the server's `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let prefix = format!("{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_room_unloads_and_reloads_with_its_document() -> anyhow::Result<()> {
    let dir = temp_dir("idle");
    let dir_s = dir.to_string_lossy().into_owned();
    let server = ServerProcess::start(&["--data-dir", &dir_s, "--idle-unload-secs", "1"])?;
    let d = doc();
    let mut c = join(&server.url(), "idle", &d, 1).await?;
    c.send(&ClientMsg::Update {
        seq: 2,
        update: append(&d, "still here").into(),
    })
    .await?;
    wait_ack(&mut c, 2).await?;
    assert_eq!(rooms_loaded(server.addr).await?, 1);
    drop(c);
    wait_unloaded(server.addr).await?;
    assert_eq!(observe(&server.url(), "idle").await?, "still here");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Sends one update per text, each appending it to `d`, with seqs after `seq`; the last seq.
async fn send_appends(
    c: &mut RawClient,
    d: &Doc,
    mut seq: u64,
    texts: impl Iterator<Item = String>,
) -> anyhow::Result<u64> {
    for text in texts {
        seq += 1;
        c.send(&ClientMsg::Update {
            seq,
            update: append(d, &text).into(),
        })
        .await?;
    }
    Ok(seq)
}

/// Waits until the server holds no room in memory.
async fn wait_unloaded(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + T;
    while rooms_loaded(addr).await? != 0 {
        anyhow::ensure!(Instant::now() < deadline, "the idle room never unloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The memory store replaces its log with the room's snapshot every few hundred updates; a
/// room that unloads after many edits (several snapshots, and edits after the last one)
/// reloads to the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_room_reloads_from_its_snapshots_and_later_edits() -> anyhow::Result<()> {
    let server = ServerProcess::start(&["--idle-unload-secs", "1"])?;
    let d = doc();
    let mut c = join(&server.url(), "snap", &d, 1).await?;
    let seq = send_appends(&mut c, &d, 1, (0..1_700).map(|i| format!("{i} "))).await?;
    wait_ack(&mut c, seq).await?;
    drop(c);
    wait_unloaded(server.addr).await?;
    assert_eq!(observe(&server.url(), "snap").await?, text_of(&d));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_during_a_load_get_the_whole_document() -> anyhow::Result<()> {
    let dir = temp_dir("load");
    let dir_s = dir.to_string_lossy().into_owned();
    // A big room stored as a long log (no compaction), so loading takes a while.
    let mut server =
        ServerProcess::start(&["--data-dir", &dir_s, "--compact-after-rows", "1000000000"])?;
    let d = doc();
    let mut c = join(&server.url(), "big", &d, 1).await?;
    let texts = (0..3000).map(|i| format!("line {i} of a long document\n"));
    let seq = send_appends(&mut c, &d, 1, texts).await?;
    wait_ack(&mut c, seq).await?;
    drop(c);
    let expected = text_of(&d);
    server.restart()?;
    let url = server.url();
    let joiners: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { observe(&url, "big").await })
        })
        .collect();
    for j in joiners {
        assert_eq!(j.await??, expected);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What a writer hears after its update when storage is full: an error or a close, never
/// an ack for what was not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_without_acknowledging_and_the_server_stays_up()
-> anyhow::Result<()> {
    let dir = temp_dir("full");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut server = ServerProcess::start(&["--data-dir", &dir_s, "--max-db-pages", "64"])?;
    let d = doc();
    let mut c = join(&server.url(), "full", &d, 1).await?;
    let chunk = "x".repeat(16 * 1024);
    let mut acked = 1;
    let mut refused = None;
    let mut seq = 1;
    'outer: for _ in 0..200 {
        seq += 1;
        c.send(&ClientMsg::Update {
            seq,
            update: append(&d, &chunk).into(),
        })
        .await?;
        loop {
            match tokio::time::timeout(T, c.ws.next()).await? {
                Some(Ok(Message::Binary(b))) => match duet_protocol::decode_server(&b)? {
                    ServerMsg::Ack { seq: s } => {
                        acked = s;
                        if s == seq {
                            break;
                        }
                    }
                    ServerMsg::Error { code, message } => {
                        assert_eq!(code, ErrorCode::STORAGE_UNAVAILABLE, "{message}");
                        refused = Some(message);
                        break 'outer;
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    assert!(reason.contains("storage"), "{reason}");
                    refused = Some(reason);
                    break 'outer;
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("connection ended unexpectedly: {other:?}"),
            }
        }
    }
    let refused = refused.ok_or_else(|| anyhow::anyhow!("a 64-page database never filled"))?;
    assert!(acked < seq, "the refused update {seq} was acknowledged");
    // Nothing more is acknowledged on that connection.
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(1), c.ws.next()).await {
        if let Message::Binary(b) = msg {
            assert!(
                !matches!(duet_protocol::decode_server(&b)?, ServerMsg::Ack { .. }),
                "an ack after the refusal ({refused})"
            );
        }
    }
    // The server is up: other rooms still serve reads, the full room reloads from storage.
    assert_eq!(observe(&server.url(), "other").await?, "");
    let seen = observe(&server.url(), "full").await?;
    assert!(seen.len() >= chunk.len() * (acked as usize - 1));

    // With room to grow again, the writer's resend (its sync step 2) stores everything.
    server.kill();
    let mut server = ServerProcess::start(&["--data-dir", &dir_s])?;
    let _c = join(&server.url(), "full", &d, 1).await?;
    assert_eq!(observe(&server.url(), "full").await?, text_of(&d));
    assert_eq!(quick_check(&dir)?, "ok");
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_stops_the_server_with_a_clear_message() -> anyhow::Result<()> {
    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("duet.sqlite3"), vec![0x42u8; 64 * 1024])?;
    let out = Command::new(workspace_bin("duet-server")?)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt") && stderr.contains("duet.sqlite3"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The failpoint marker: with `DUET_FAILPOINT_HOLD_COMMIT=1`, a debug server relays an update
/// carrying it but never commits it (`server/src/sqlite.rs`, `hold`).
const HOLD: &str = "duet-failpoint:hold";

/// Rows of the stored log or snapshot whose bytes contain `needle`.
fn stored_with(dir: &Path, needle: &str) -> anyhow::Result<i64> {
    let q = |table: &str, column: &str| {
        count(
            dir,
            &format!(
                "SELECT count(*) FROM {table} WHERE instr({column}, CAST('{needle}' AS BLOB)) > 0"
            ),
        )
    };
    Ok(q("log", "data")? + q("snapshot", "state")?)
}

/// Who saw the edit that was relayed but never stored.
enum Observer {
    Duet(duet_e2e::clients::TestClient),
    Yjs(duet_e2e::node::NodeClient),
}

impl Observer {
    fn text(&mut self) -> anyhow::Result<String> {
        match self {
            Observer::Duet(c) => Ok(c.text()),
            Observer::Yjs(y) => y.text(),
        }
    }
}

/// Relay never waits for storage, so a kill -9 can leave an edit in a member's document but
/// not in the store. An author's edit is relayed to an observer while the store's commit is
/// held (debug failpoint); the server is killed, the author is gone for good, the restarted
/// server does not have the edit (checked in the database and by a joiner). The observer
/// reconnects; its sync gives the edit back: it is stored (it survives another kill -9) and
/// reaches a late joiner. Once with duet's own client as the observer, once with a stock
/// y-websocket client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_relayed_but_never_stored_comes_back_from_the_member_that_saw_it()
-> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        // The server binary is built with the same profile as this test: no failpoint in it.
        eprintln!("skipped: the failpoint exists only in debug builds of duet-server");
        return Ok(());
    }
    for observer_kind in ["duet", "yjs"] {
        let dir = temp_dir(&format!("giveback-{observer_kind}"));
        let data = dir.display().to_string();
        let armed = [("DUET_FAILPOINT_HOLD_COMMIT", "1")];
        let mut server = ServerProcess::start_with_env(&["--data-dir", &data], &armed)?;
        let proxy = duet_e2e::proxy::Proxy::start(server.addr).await?;
        let room = format!("giveback-{observer_kind}");
        let room_name = duet_protocol::RoomName::new(&room)?;
        // What was there before is stored as usual.
        let author_doc = doc();
        let mut author = join(&server.url(), &room, &author_doc, 0).await?;
        author
            .send(&ClientMsg::Update {
                seq: 1,
                update: append(&author_doc, "stored ").into(),
            })
            .await?;
        wait_ack(&mut author, 1).await?;

        let mut observer = match observer_kind {
            "duet" => Observer::Duet(duet_e2e::clients::start(&proxy.url(), &room_name, "obs")),
            _ => {
                let mut y =
                    duet_e2e::node::NodeClient::start(&proxy.url(), &room, "obs", "#30bced")?;
                y.synced()?;
                Observer::Yjs(y)
            }
        };
        duet_e2e::eventually("the observer to sync", T, || {
            observer.text().ok().filter(|t| t == "stored ")
        })
        .await?;

        // The author's edit is relayed; its commit is held.
        author
            .send(&ClientMsg::Update {
                seq: 2,
                update: append(&author_doc, HOLD).into(),
            })
            .await?;
        let expected = format!("stored {HOLD}");
        duet_e2e::eventually("the observer to see the edit", T, || {
            observer.text().ok().filter(|t| *t == expected)
        })
        .await?;

        // kill -9 between relay and commit; the author never comes back, and the observer
        // cannot reconnect yet.
        proxy.set_down(true);
        drop(author);
        server.kill();
        assert_eq!(
            stored_with(&dir, HOLD)?,
            0,
            "{observer_kind}: the edit was stored"
        );
        server.set_env(&[]);
        server.restart()?;
        assert_eq!(
            observe(&server.url(), &room).await?,
            "stored ",
            "{observer_kind}: the restarted server lacks the edit"
        );

        // The observer reconnects; its sync gives the edit back.
        proxy.set_down(false);
        let url = server.url();
        let seen = async {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let text = observe(&url, &room).await?;
                if text == expected || Instant::now() > deadline {
                    return anyhow::Ok(text);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        assert_eq!(seen.await?, expected, "{observer_kind}: a late joiner");
        if let Observer::Duet(c) = &observer {
            duet_e2e::eventually("the observer's sync to be acknowledged", T, || {
                (c.client.unacked() == 0).then_some(())
            })
            .await?;
        }
        duet_e2e::eventually("the edit to be in the database", T, || {
            stored_with(&dir, HOLD).ok().filter(|n| *n > 0)
        })
        .await?;
        // Stored, not just held in memory: it survives another kill -9.
        drop(observer);
        server.restart()?;
        assert_eq!(
            observe(&server.url(), &room).await?,
            expected,
            "{observer_kind}: after another kill -9"
        );
        server.kill();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The highest acknowledgement `c` reads before its connection ends or `timeout` passes
/// without a message.
async fn drain_acks(c: &mut RawClient, timeout: Duration) -> u64 {
    let mut max_acked = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(timeout, c.ws.next()).await {
        if let Message::Binary(b) = msg
            && let Ok(ServerMsg::Ack { seq }) = duet_protocol::decode_server(&b)
        {
            max_acked = max_acked.max(seq);
        }
    }
    max_acked
}
