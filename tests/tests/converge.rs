//! Real clients against a real server: concurrent random edits converge, late joiners get
//! everything, a client cut off mid-session merges its offline edits, a real editing trace
//! replays exactly, and cursors land where they belong.

use duet_client::{ConnState, Selection, Utf16Offset};
use duet_e2e::clients::{TestClient, converged, start};
use duet_e2e::proxy::Proxy;
use duet_e2e::server::ServerProcess;
use duet_e2e::{eventually, unique_room};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
enum Op {
    /// Insert at a fraction (per mille) of the current length.
    Insert {
        client: usize,
        at: u16,
        text: String,
    },
    Delete {
        client: usize,
        at: u16,
        len: u8,
    },
    /// Let the network catch up a little.
    Pause,
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{1,6}",
        Just("é".to_string()),
        Just("👍🏽".to_string()),
        Just("家族".to_string()),
        Just("e\u{301}".to_string()),
        Just("👨‍👩‍👧".to_string()),
        Just("\n".to_string()),
        "[a-zα-ω😀-😎]{1,4}",
    ]
}

fn op_strategy(clients: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..clients, 0..=1000u16, text_strategy()).prop_map(|(client, at, text)| Op::Insert { client, at, text }),
        2 => (0..clients, 0..=1000u16, 1..6u8).prop_map(|(client, at, len)| Op::Delete { client, at, len }),
        1 => Just(Op::Pause),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3..=5usize).prop_flat_map(|n| (Just(n), proptest::collection::vec(op_strategy(n), 5..40)))
}

fn apply(c: &TestClient, op: &Op) {
    match op {
        Op::Insert { at, text, .. } => {
            let len = c.client.read(|d| d.len_chars());
            c.insert_at_char(len * *at as usize / 1000, text);
        }
        Op::Delete { at, len, .. } => {
            let total = c.client.read(|d| d.len_chars());
            if total > 0 {
                c.delete_chars(total * *at as usize / 1000, *len as usize);
            }
        }
        Op::Pause => {}
    }
}

/// Hundreds of seeded cases: 3–5 clients edit concurrently at random (multi-byte text,
/// emoji, combining marks), then all converge to the same text and state vector.
#[test]
fn random_concurrent_edits_converge() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Hundreds of cases open ~800 connections from one address: lift the per-IP handshake
    // rate, which exists for strangers, not for this test.
    let server =
        ServerProcess::start(&["--max-handshakes-per-sec", "10000"]).expect("server starts");
    let url = server.url();
    let cases = std::env::var("DUET_CONVERGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let result = runner.run(&scenario(), |(n, ops)| {
        let outcome: anyhow::Result<()> = rt.block_on(async {
            let room = unique_room("converge");
            let clients: Vec<TestClient> = (0..n)
                .map(|i| start(&url, &room, &format!("c{i}")))
                .collect();
            // Some clients edit before they are even connected: offline edits must merge too.
            for op in &ops {
                match op {
                    Op::Insert { client, .. } | Op::Delete { client, .. } => {
                        apply(&clients[*client], op)
                    }
                    Op::Pause => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
            converged(&clients, T).await?;
            for c in clients {
                c.client.close().await;
            }
            Ok(())
        });
        outcome.map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_the_whole_document() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let room = unique_room("late");
    let a = start(&server.url(), &room, "a");
    a.client.wait_synced(T).await?;
    for i in 0..50 {
        a.insert_at_char(usize::MAX, &format!("line {i} ✓\n"));
    }
    converged(std::slice::from_ref(&a), T).await?;
    let b = start(&server.url(), &room, "b");
    b.client.wait_synced(T).await?;
    assert_eq!(b.text(), a.text());
    assert_eq!(b.text().lines().count(), 50);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_keeps_editing_and_merges_without_duplicates() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let proxy = Proxy::start(server.addr).await?;
    let room = unique_room("offline");
    let mut a = start(&proxy.url(), &room, "a");
    let b = start(&server.url(), &room, "b");
    a.client.wait_synced(T).await?;
    b.client.wait_synced(T).await?;
    a.insert_at_char(0, "shared start\n");
    let both = [clone_handle(&a), clone_handle(&b)];
    converged(&both, T).await?;

    proxy.set_down(true);
    eventually("a to notice the cut", T, || {
        matches!(a.client.state(), ConnState::Reconnecting { .. }).then_some(())
    })
    .await?;
    a.insert_at_char(usize::MAX, "offline-one\n");
    a.insert_at_char(usize::MAX, "offline-two 🚀\n");
    b.insert_at_char(0, "online-b\n");
    assert!(a.client.pending_offline() >= 2, "offline edits are counted");
    proxy.set_down(false);
    let text = converged(&both, T).await?;
    for piece in ["shared start", "offline-one", "offline-two 🚀", "online-b"] {
        assert_eq!(
            text.matches(piece).count(),
            1,
            "{piece:?} must appear exactly once in {text:?}"
        );
    }
    let merged = a.drain_events().into_iter().find_map(|e| match e {
        duet_client::Event::Synced {
            offline_updates_merged,
        } if offline_updates_merged > 0 => Some(offline_updates_merged),
        _ => None,
    });
    assert_eq!(
        merged,
        Some(2),
        "the client reports its merged offline edits"
    );
    Ok(())
}

/// A second handle on the same client, for passing several to [`converged`].
fn clone_handle(c: &TestClient) -> TestClient {
    let (_tx, events) = tokio::sync::mpsc::channel(1);
    TestClient {
        client: c.client.clone(),
        events,
        name: c.name.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_real_trace_ends_with_its_final_text_on_both_sides() -> anyhow::Result<()> {
    let trace = duet_e2e::trace::sveltecomponent()?;
    let server = ServerProcess::start(&[])?;
    let room = unique_room("trace");
    let writer = start(&server.url(), &room, "writer");
    let watcher = start(&server.url(), &room, "watcher");
    writer.client.wait_synced(T).await?;
    watcher.client.wait_synced(T).await?;
    writer.client.edit(|d| d.set_text(&trace.start_content))?;
    for txn in &trace.txns {
        writer.client.edit(|d| -> anyhow::Result<()> {
            for (pos, del, ins) in &txn.patches {
                let (pos, del) = (*pos as usize, *del as usize);
                let start = d.char_to_utf16(duet_doc::CharIdx(pos));
                let end = d.char_to_utf16(duet_doc::CharIdx(pos + del));
                d.replace(start..end, ins)?;
            }
            Ok(())
        })?;
    }
    assert_eq!(writer.text(), trace.end_content);
    let text = converged(
        &[clone_handle(&writer), clone_handle(&watcher)],
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(text, trace.end_content);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_stays_on_its_text_at_the_peer_and_vanishes_when_its_owner_leaves()
-> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let proxy = Proxy::start(server.addr).await?;
    let room = unique_room("cursor");
    let a = start(&proxy.url(), &room, "ann");
    let b = start(&server.url(), &room, "bob");
    a.client.wait_synced(T).await?;
    b.client.wait_synced(T).await?;
    a.insert_at_char(0, "hello X world");
    converged(&[clone_handle(&a), clone_handle(&b)], T).await?;
    // Ann's cursor right before "X".
    let x = a.text().find('X').expect("X") as usize;
    a.client.set_selection(Selection {
        anchor: Utf16Offset(x),
        head: Utf16Offset(x),
    });
    // Bob inserts in front of it, concurrently.
    b.insert_at_char(0, "🎉 much text in front: ");
    converged(&[clone_handle(&a), clone_handle(&b)], T).await?;
    let x_at_b: usize = {
        let t = b.text();
        let byte = t.find('X').expect("X");
        t[..byte].encode_utf16().count()
    };
    let seen = eventually("ann's cursor to show at bob before X", T, || {
        let peers = b.client.peers();
        let ann = peers.iter().find(|p| p.name == "ann")?;
        let sel = ann.selection?;
        (sel.head == Utf16Offset(x_at_b)).then(|| ann.color.clone())
    })
    .await?;
    assert!(seen.starts_with('#') && seen.len() == 7, "a colour: {seen}");

    // Ann's socket dies without a close: her cursor disappears at Bob.
    proxy.set_down(true);
    eventually(
        "ann's cursor to vanish after her socket was killed",
        T,
        || {
            b.client
                .peers()
                .iter()
                .all(|p| p.name != "ann")
                .then_some(())
        },
    )
    .await?;

    // And a clean leave removes it too.
    let c = start(&server.url(), &room, "cat");
    c.client.wait_synced(T).await?;
    c.client.set_selection(Selection {
        anchor: Utf16Offset(1),
        head: Utf16Offset(1),
    });
    eventually("cat to appear at bob", T, || {
        b.client
            .peers()
            .iter()
            .any(|p| p.name == "cat")
            .then_some(())
    })
    .await?;
    c.client.close().await;
    eventually("cat to vanish after leaving", T, || {
        b.client
            .peers()
            .iter()
            .all(|p| p.name != "cat")
            .then_some(())
    })
    .await?;
    Ok(())
}
