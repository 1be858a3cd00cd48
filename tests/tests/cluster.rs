//! Several duet-server nodes serving the same rooms (issue 14, ADR 011), end to end: real
//! node processes on a private PostgreSQL and redis-server, clients on different nodes or
//! behind the round-robin balancer (`duet_e2e::cluster`). Without the engines' binaries each
//! test says SKIPPED (a failure under CI=true).
//!
//! Bounds: with the test timings (heads checked every 300 ms, a node gone after 1 s without a
//! heartbeat, clients reconnecting within 500 ms) every room converges within a few seconds of
//! any loss; the tests allow [`T`] so a loaded CI machine does not fail them.

use anyhow::{Context, ensure};
use duet_client::{Selection, Utf16Offset};
use duet_e2e::clients::{TestClient, converged, start};
use duet_e2e::cluster::Cluster;
use duet_e2e::node::NodeClient;
use duet_e2e::raw::RawClient;
use duet_e2e::{eventually, unique_room};
use duet_protocol::{ClientMsg, ServerMsg};
use std::time::Duration;

/// Room for convergence on a loaded machine (the bounds these tests check are far below it).
const T: Duration = Duration::from_secs(20);

/// Nodes on PostgreSQL alone (no `--redis`): a node hears another's edits through the log at
/// its heads check, edits are acknowledged once stored, and the nodes are healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_redis_converge_through_the_log() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start_without_bus("no_bus", 2, &[]).await? else {
        return Ok(());
    };
    let room = unique_room("nobus");
    let ann = start(&cluster.url(0), &room, "ann");
    let bob = start(&cluster.url(1), &room, "bob");
    ann.client.wait_synced(T).await?;
    bob.client.wait_synced(T).await?;
    ann.insert_at_char(0, "from ann ");
    bob.insert_at_char(0, "from bob ");
    eventually("both nodes' members to hold both edits", T, || {
        let (a, b) = (ann.text(), bob.text());
        (a == b && a.contains("from ann ") && a.contains("from bob ")).then_some(())
    })
    .await?;
    for c in [&ann, &bob] {
        eventually("every edit acknowledged", T, || {
            (c.client.unacked() == 0).then_some(())
        })
        .await?;
    }
    for i in 0..2 {
        let heads = cluster
            .metric(i, "duet_cluster_catch_ups_total{why=\"heads\"}")
            .await?;
        ensure!(
            heads > 0.0,
            "node{i} never read the log for a head past its cursor"
        );
        let (status, body) = cluster.healthz(i).await?;
        ensure!(
            status == 200,
            "node{i} /healthz without Redis: {status} {body}"
        );
    }
    Ok(())
}

/// A second handle on a client (the helpers take slices of clients).
fn handle(c: &TestClient) -> TestClient {
    let (_tx, events) = tokio::sync::mpsc::channel(1);
    TestClient {
        client: c.client.clone(),
        events,
        name: c.name.clone(),
    }
}

/// Whether `c` sees `name` as a peer with a selection (and, with `at`, that selection's head).
fn sees_cursor(c: &TestClient, name: &str) -> bool {
    c.client
        .peers()
        .iter()
        .any(|p| p.name == name && p.selection.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_converge_with_cursors_crossing() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start("three_nodes_converge", 3, &[], &[]).await? else {
        return Ok(());
    };
    let room = unique_room("three");
    let names = ["ann", "bob", "cat"];
    let clients: Vec<TestClient> = names
        .iter()
        .enumerate()
        .map(|(i, name)| start(&cluster.url(i), &room, name))
        .collect();
    for c in &clients {
        c.client.wait_synced(T).await?;
    }
    // A stock Yjs client on the third node too.
    let mut yjs = NodeClient::start(&cluster.url(2), room.as_str(), "yan", "#30bced")?;
    yjs.synced()?;

    // Everyone types at once, at the start or the end of the text (never inside a word).
    for round in 0..25 {
        for (i, c) in clients.iter().enumerate() {
            let at = if i == 1 { usize::MAX } else { 0 };
            c.insert_at_char(at, &format!("{}{round} ", names[i]));
        }
        yjs.insert_at_fraction(1000, &format!("yan{round} "))?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = duet_e2e::node::all_converge(std::slice::from_mut(&mut yjs), &clients, T).await?;
    for name in names.iter().chain(&["yan"]) {
        for round in 0..25 {
            ensure!(
                text.contains(&format!("{name}{round} ")),
                "{name}{round} missing from {text:?}"
            );
        }
    }

    // Cursors cross nodes, both protocols.
    for (i, c) in clients.iter().enumerate() {
        c.client.set_selection(Selection {
            anchor: Utf16Offset(i),
            head: Utf16Offset(i + 2),
        });
    }
    yjs.set_cursor(3, 5)?;
    eventually("every cursor at every duet client", T, || {
        clients
            .iter()
            .all(|c| {
                names
                    .iter()
                    .chain(&["yan"])
                    .filter(|n| **n != c.name)
                    .all(|n| sees_cursor(c, n))
            })
            .then_some(())
    })
    .await?;
    let deadline = std::time::Instant::now() + T;
    loop {
        let peers = yjs.peers()?;
        let seen: Vec<&str> = peers.iter().filter_map(|p| p["name"].as_str()).collect();
        if names.iter().all(|n| seen.contains(n)) {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the Yjs client sees {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cat leaves node 2: her cursor disappears on the other nodes.
    let mut clients = clients;
    let cat = clients.pop().context("three clients")?;
    cat.client.close().await;
    eventually("cat's cursor to vanish everywhere", T, || {
        clients
            .iter()
            .all(|c| c.client.peers().iter().all(|p| p.name != "cat"))
            .then_some(())
    })
    .await?;
    // A joiner on node 1 sees the cursors of members on the other nodes at once.
    let dan = start(&cluster.url(1), &room, "dan");
    dan.client.wait_synced(T).await?;
    eventually("the joiner to see ann's cursor (node 0)", T, || {
        sees_cursor(&dan, "ann").then_some(())
    })
    .await?;
    ensure!(dan.text() == text);
    yjs.quit()?;
    let _ = handle(&dan);
    Ok(())
}

/// Appends `word` to `doc`'s text; the update that did it.
fn type_word(doc: &yrs::Doc, word: &str) -> Vec<u8> {
    use yrs::{ReadTxn, Text, Transact};
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let before = doc.transact().state_vector();
    let len = text.len(&doc.transact());
    text.insert(&mut doc.transact_mut(), len, word);
    doc.transact().encode_diff_v1(&before)
}

/// Reads messages until the acknowledgement of `seq` (or a later one).
async fn wait_ack(c: &mut RawClient, seq: u64) -> anyhow::Result<()> {
    c.recv_until(T, |m| match m {
        ServerMsg::Ack { seq: s } if *s >= seq => Some(()),
        _ => None,
    })
    .await
}

/// What a fresh client joining through `url` sees.
async fn observe(url: &str, room: &str) -> anyhow::Result<String> {
    let doc = duet_e2e::ydoc::doc();
    let _c = duet_e2e::ydoc::join(url, room, &doc, 0).await?;
    Ok(duet_e2e::ydoc::text_of(&doc))
}

/// Rows of the cluster's log and snapshots whose bytes contain `needle`.
async fn stored_with(cluster: &Cluster, needle: &str) -> anyhow::Result<i64> {
    let sql = cluster.sql().await?;
    let n = needle.as_bytes();
    let rows: i64 = sql
        .query_one(
            "SELECT (SELECT count(*) FROM duet_log WHERE position($1::bytea in data) > 0)
                  + (SELECT count(*) FROM duet_snapshots WHERE position($1::bytea in state) > 0)",
            &[&n],
        )
        .await?
        .get(0);
    Ok(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_appending_to_one_room_keep_its_seq_dense_and_store_each_update_once()
-> anyhow::Result<()> {
    let Some(mut cluster) = Cluster::start("dense_seq_e2e", 3, &[], &[]).await? else {
        return Ok(());
    };
    let room = unique_room("dense");
    const N: u64 = 40;
    // Three writers, one per node, typing at once.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let url = cluster.url(i);
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let doc = duet_yjs::doc::doc_with_client(100 + i as u64);
            let mut c = duet_e2e::ydoc::join(&url, room.as_str(), &doc, 0).await?;
            let mut sent = Vec::new();
            for k in 1..=N {
                let update = type_word(&doc, &format!("w{i}-{k} "));
                sent.push(update.clone());
                c.send(&ClientMsg::Update {
                    seq: k,
                    update: update.into(),
                })
                .await?;
                if k % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            wait_ack(&mut c, N).await?;
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await??);
    }
    // Every node reads the other nodes' rows from the log (what the bus already brought)
    // before the check: a node that stored those again would show here.
    for i in 0..3 {
        eventually("each node to read the others' rows from its log", T, || {
            futures_now(cluster.metric(i, "duet_cluster_catch_up_rows_total"))
                .filter(|rows| *rows >= 2.0 * N as f64)
        })
        .await?;
    }
    let (seqs, head) = cluster.log_of(room.as_str()).await?;
    let expected: Vec<i64> = (1..=3 * N as i64).collect();
    ensure!(head == 3 * N as i64, "head {head}");
    ensure!(seqs == expected, "seqs not dense: {seqs:?}");
    let sql = cluster.sql().await?;
    let rows = sql
        .query(
            "SELECT data FROM duet_log l JOIN duet_rooms r ON r.id = l.room WHERE r.name = $1",
            &[&room.as_str()],
        )
        .await?;
    let mut stored: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
    stored.sort();
    sent.sort();
    ensure!(
        stored == sent,
        "each update stored exactly once (bus and log deliver it to every node)"
    );
    // A late joiner on a fourth node gets the whole document.
    let fourth = cluster.add_node()?;
    let seen = observe(&cluster.url(fourth), room.as_str()).await?;
    for i in 0..3 {
        for k in 1..=N {
            ensure!(seen.contains(&format!("w{i}-{k} ")), "w{i}-{k} missing");
        }
    }
    ensure!(seen == observe(&cluster.url(0), room.as_str()).await?);
    Ok(())
}

/// A raw client's awareness: a person named "ghost", no cursor.
fn ghost_awareness(client_id: u64) -> ClientMsg {
    ClientMsg::Awareness {
        client_id,
        state: Some(duet_protocol::PeerState {
            name: "ghost".into(),
            color: "#30bced".into(),
            cursor: None,
            location: None,
        }),
    }
}

/// Polls a future once (the helpers' `eventually` takes a closure): the metric now, if the
/// node answers at once.
fn futures_now<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> Option<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).ok()
}

/// A node that cannot keep up with the bus (debug failpoint: it takes one message per 30 ms
/// and refuses the others, as a full queue would) drops what it cannot take rather than
/// buffer it, and its rooms read their logs instead: its members still get every edit. The
/// heads check and the digests are off here, so only the lag's own repair can bring them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_on_the_bus_catches_up_from_the_log() -> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the failpoint exists only in debug builds");
        return Ok(());
    }
    let Some(mut cluster) = Cluster::start(
        "behind_bus",
        0,
        &["--heads-check-ms", "600000", "--digest-ms", "600000"],
        &[],
    )
    .await?
    else {
        return Ok(());
    };
    // The writer's node commits slowly (a loaded disk): what the slow node lost is not in the
    // log yet when the loss sends it there, and only the read that follows a loss later
    // (LOSS_RECHECK) finds it, with the heads check and digests off.
    cluster.add_node_with(&[("DUET_FAILPOINT_SLOW_COMMIT_MS", "100")])?;
    let slow = cluster.add_node_with(&[("DUET_FAILPOINT_BUS_SLOW_MS", "30")])?;
    let room = unique_room("behind");
    let reader = start(&cluster.url(slow), &room, "reader");
    reader.client.wait_synced(T).await?;
    let doc = duet_yjs::doc::doc_with_client(7);
    let mut writer = duet_e2e::ydoc::join(&cluster.url(0), room.as_str(), &doc, 0).await?;
    const N: u64 = 300;
    for k in 1..=N {
        let update = type_word(&doc, &format!("{k} "));
        writer
            .send(&ClientMsg::Update {
                seq: k,
                update: update.into(),
            })
            .await?;
    }
    wait_ack(&mut writer, N).await?;
    let expected = duet_e2e::ydoc::text_of(&doc);
    eventually("the slow node's member to hold every edit", T, || {
        (reader.text() == expected).then_some(())
    })
    .await?;
    let lagged = cluster
        .metric(slow, "duet_bus_messages_total{what=\"lagged\"}")
        .await?;
    ensure!(lagged > 0.0, "the slow node dropped nothing: {lagged}");
    let read = cluster
        .metric(slow, "duet_cluster_catch_ups_total{why=\"lagged\"}")
        .await?;
    ensure!(read > 0.0, "no room read its log for being behind");
    let heads = cluster
        .metric(slow, "duet_cluster_catch_ups_total{why=\"heads\"}")
        .await?;
    ensure!(heads == 0.0, "the heads check was meant to be off");
    Ok(())
}

/// kill -9 of a node while its clients type: they reconnect through the balancer to another
/// node and resync; nothing any node acknowledged is lost, and every client's edits (duet's
/// client keeps the unacknowledged ones, a stock Yjs client sends what the server lacks when
/// it syncs) end up in every copy of the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_typing_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let Some(mut cluster) = Cluster::start("kill_node", 3, &[], &[]).await? else {
        return Ok(());
    };
    let room = unique_room("kill");
    // The victims connect through a balancer that, for now, knows only node 0.
    let victims = duet_e2e::balancer::Balancer::start(vec![cluster.nodes[0].addr]).await?;
    let ann = start(&victims.url(), &room, "ann");
    ann.client.wait_synced(T).await?;
    let mut yan = NodeClient::start(&victims.url(), room.as_str(), "yan", "#30bced")?;
    yan.synced()?;
    victims.set_backends(cluster.nodes.iter().map(|n| n.addr).collect());
    let bob = start(&cluster.url(1), &room, "bob");
    let cat = start(&cluster.url(2), &room, "cat");
    bob.client.wait_synced(T).await?;
    cat.client.wait_synced(T).await?;
    // A raw writer on node 0 counts what node 0 acknowledged.
    let raw_doc = duet_yjs::doc::doc_with_client(4242);
    let mut raw = duet_e2e::ydoc::join(&cluster.url(0), room.as_str(), &raw_doc, 0).await?;

    let mut typed: Vec<String> = Vec::new();
    let mut raw_words: Vec<(u64, String)> = Vec::new();
    let mut max_acked = 0;
    let killed_at = 40;
    for round in 0..80u64 {
        if round == killed_at {
            cluster.nodes[0].kill();
        }
        for (c, name) in [(&ann, "ann"), (&bob, "bob"), (&cat, "cat")] {
            let word = format!("{name}{round} ");
            c.insert_at_char(0, &word);
            typed.push(word);
        }
        let word = format!("yan{round} ");
        yan.insert_at_fraction(0, &word)?;
        typed.push(word);
        if round < killed_at {
            let word = format!("raw{round} ");
            let update = type_word(&raw_doc, &word);
            let seq = round + 1;
            if raw
                .send(&ClientMsg::Update {
                    seq,
                    update: update.into(),
                })
                .await
                .is_ok()
            {
                raw_words.push((seq, word));
            }
            while let Ok(Ok(ServerMsg::Ack { seq })) =
                tokio::time::timeout(Duration::from_millis(1), raw.recv(T)).await
            {
                max_acked = max_acked.max(seq);
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Acknowledgements already on the wire before the kill count too.
    while let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(200), raw.recv(T)).await {
        if let ServerMsg::Ack { seq } = msg {
            max_acked = max_acked.max(seq);
        }
    }
    drop(raw);
    let text = duet_e2e::node::all_converge(
        std::slice::from_mut(&mut yan),
        &[handle(&ann), handle(&bob), handle(&cat)],
        T,
    )
    .await?;
    for word in &typed {
        ensure!(text.contains(word.as_str()), "{word:?} lost");
    }
    let seen = observe(&cluster.url(1), room.as_str()).await?;
    ensure!(seen == text, "a fresh joiner on node 1 sees the same");
    let acked: Vec<&String> = raw_words
        .iter()
        .filter(|(seq, _)| *seq <= max_acked)
        .map(|(_, w)| w)
        .collect();
    ensure!(
        !acked.is_empty(),
        "node 0 acknowledged nothing before it died"
    );
    for word in acked {
        ensure!(seen.contains(word.as_str()), "acknowledged {word:?} lost");
    }
    ensure!(
        ann.client.peers().iter().all(|p| p.name != "raw"),
        "nothing of the dead node's members lingers"
    );
    yan.quit()?;
    Ok(())
}

/// The debug failpoint's marker: with `DUET_FAILPOINT_HOLD_COMMIT=1`, a node relays an update
/// holding it but never commits it (nor anything after it).
const HOLD: &str = "duet-failpoint:hold";

/// A node dies between relay and commit, and the author of the edit vanishes with it: the
/// dead node's cursors leave the survivors within seconds (not the 30 s awareness timeout),
/// and the survivor that heard the edit stores it once the dead node is written off, so it
/// outlives that survivor too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_cursors_vanish_and_what_it_only_relayed_is_stored_by_a_survivor()
-> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the failpoint exists only in debug builds");
        return Ok(());
    }
    let Some(mut cluster) = Cluster::start("orphan_relay", 0, &[], &[]).await? else {
        return Ok(());
    };
    let armed = cluster.add_node_with(&[("DUET_FAILPOINT_HOLD_COMMIT", "1")])?;
    let survivor = cluster.add_node()?;
    let other = cluster.add_node()?;
    let room = unique_room("orphan");
    let observer = start(&cluster.url(survivor), &room, "obs");
    observer.client.wait_synced(T).await?;

    let author_doc = duet_yjs::doc::doc_with_client(31);
    let mut author =
        duet_e2e::ydoc::join(&cluster.url(armed), room.as_str(), &author_doc, 0).await?;
    author
        .send(&ClientMsg::Update {
            seq: 1,
            update: type_word(&author_doc, "stored ").into(),
        })
        .await?;
    wait_ack(&mut author, 1).await?;
    author.send(&ghost_awareness(31)).await?;
    author
        .send(&ClientMsg::Update {
            seq: 2,
            update: type_word(&author_doc, HOLD).into(),
        })
        .await?;
    let expected = format!("stored {HOLD}");
    eventually("the observer to see the edit and the ghost", T, || {
        (observer.text() == expected && observer.client.peers().iter().any(|p| p.name == "ghost"))
            .then_some(())
    })
    .await?;
    ensure!(stored_with(&cluster, HOLD).await? == 0, "held, not stored");

    // kill -9 between relay and commit; the author is gone for good.
    cluster.nodes[armed].kill();
    drop(author);
    // Well within the 30 s awareness timeout: the node is written off once its heartbeat
    // is stale (1 s here, 6 s by default).
    eventually(
        "the ghost's cursor to vanish",
        Duration::from_secs(10),
        || {
            observer
                .client
                .peers()
                .iter()
                .all(|p| p.name != "ghost")
                .then_some(())
        },
    )
    .await?;
    let deadline = std::time::Instant::now() + T;
    while stored_with(&cluster, HOLD).await? == 0 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the survivor never stored the relayed edit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        cluster
            .metric(survivor, "duet_cluster_settled_updates_total")
            .await?
            >= 1.0
    );
    // Stored, not just held: it outlives the survivor too.
    drop(observer);
    cluster.nodes[survivor].kill();
    ensure!(observe(&cluster.url(other), room.as_str()).await? == expected);
    Ok(())
}

/// A node dies between relay and commit while the edit's author lives on: the author
/// reconnects to a node that already holds the edit (the dead node relayed it there). That
/// node tells joiners what its log holds, not what its copy holds, so the author's client
/// sends the edit again and it is stored before anything is acknowledged; with duet's client
/// (it keeps unacknowledged edits) and with a stock Yjs client (its sync sends what the server
/// lacks). The dead node is not written off during the test (stale after 60 s), so nothing
/// else stores the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_author_whose_edit_only_a_dead_nodes_relay_carried_sends_it_again() -> anyhow::Result<()>
{
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the failpoint exists only in debug builds");
        return Ok(());
    }
    for kind in ["duet", "yjs"] {
        let name = format!("resend_{kind}");
        let Some(mut cluster) =
            Cluster::start(&name, 0, &["--stale-after-ms", "60000"], &[]).await?
        else {
            return Ok(());
        };
        let armed = cluster.add_node_with(&[("DUET_FAILPOINT_HOLD_COMMIT", "1")])?;
        let holder = cluster.add_node()?;
        let room = unique_room(&name);
        let observer = start(&cluster.url(holder), &room, "obs");
        observer.client.wait_synced(T).await?;
        let via = duet_e2e::balancer::Balancer::start(vec![cluster.nodes[armed].addr]).await?;
        let mut duet_author = None;
        let mut yjs_author = None;
        match kind {
            "duet" => {
                let a = start(&via.url(), &room, "author");
                a.client.wait_synced(T).await?;
                a.insert_at_char(0, "stored ");
                eventually("the first edit acknowledged", T, || {
                    (a.client.unacked() == 0).then_some(())
                })
                .await?;
                a.insert_at_char(7, HOLD);
                duet_author = Some(a);
            }
            _ => {
                let mut y = NodeClient::start(&via.url(), room.as_str(), "author", "#30bced")?;
                y.synced()?;
                y.insert(0, "stored ")?;
                eventually("the first edit stored", T, || {
                    futures_now(stored_with(&cluster, "stored")).filter(|n| *n > 0)
                })
                .await?;
                y.insert(7, HOLD)?;
                yjs_author = Some(y);
            }
        }
        let expected = format!("stored {HOLD}");
        eventually("the holder's member to see the edit", T, || {
            (observer.text() == expected).then_some(())
        })
        .await?;
        ensure!(
            stored_with(&cluster, HOLD).await? == 0,
            "{kind}: held, not stored"
        );
        // From now on the balancer sends the author to the node that holds the edit.
        via.set_backends(vec![cluster.nodes[armed].addr, cluster.nodes[holder].addr]);
        cluster.nodes[armed].kill();
        match (&duet_author, &mut yjs_author) {
            (Some(a), _) => {
                eventually("the author's edits acknowledged again", T, || {
                    (a.client.unacked() == 0 && a.client.peer_id().is_some()).then_some(())
                })
                .await?;
                // Acknowledged means stored: the edit is in the log now, not later.
                ensure!(
                    stored_with(&cluster, HOLD).await? > 0,
                    "duet: acknowledged before the edit was stored"
                );
            }
            (_, Some(_)) => {
                eventually("the Yjs author's sync to store the edit", T, || {
                    futures_now(stored_with(&cluster, HOLD)).filter(|n| *n > 0)
                })
                .await?;
            }
            _ => unreachable!("one author"),
        }
        ensure!(
            cluster
                .metric(holder, "duet_cluster_settled_updates_total")
                .await?
                == 0.0,
            "{kind}: stored by the author's resync, not by a settle"
        );
        // It outlives the holder: a node started afresh loads it from the log.
        drop(observer);
        cluster.nodes[holder].kill();
        let fresh = cluster.add_node()?;
        ensure!(observe(&cluster.url(fresh), room.as_str()).await? == expected);
        if let Some(y) = yjs_author {
            y.quit()?;
        }
    }
    Ok(())
}

/// The bus loses messages on purpose (every 5th a node publishes, debug failpoint) and Redis
/// is restarted in the middle of the typing: every room still converges, from the log, within
/// a few heads checks of the last edit (300 ms apart here; the test allows 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_converge_through_a_redis_restart_and_dropped_messages() -> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the failpoint exists only in debug builds");
        return Ok(());
    }
    let drop_every = [("DUET_FAILPOINT_BUS_DROP_EVERY", "5")];
    let Some(mut cluster) = Cluster::start("bus_losses", 3, &[], &drop_every).await? else {
        return Ok(());
    };
    let rooms = [unique_room("lossy-a"), unique_room("lossy-b")];
    let mut clients = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for i in 0..3 {
            let c = start(&cluster.url(i), room, &format!("r{r}n{i}"));
            c.client.wait_synced(T).await?;
            clients.push((r, c));
        }
    }
    for round in 0..60 {
        if round == 30 {
            cluster.redis.restart()?;
        }
        for (_, c) in &clients {
            c.insert_at_char(0, &format!("{}-{round} ", c.name));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = std::time::Instant::now();
    for (r, _) in rooms.iter().enumerate() {
        let members: Vec<TestClient> = clients
            .iter()
            .filter(|(room, _)| *room == r)
            .map(|(_, c)| handle(c))
            .collect();
        let text = converged(&members, Duration::from_secs(10)).await?;
        for c in &members {
            for round in 0..60 {
                ensure!(text.contains(&format!("{}-{round} ", c.name)));
            }
        }
    }
    let took = stopped.elapsed();
    let mut repaired = 0.0;
    let mut dropped = 0.0;
    for i in 0..3 {
        repaired += cluster
            .metric(i, "duet_cluster_repaired_updates_total")
            .await?;
        dropped += cluster
            .metric(i, "duet_bus_messages_total{what=\"failpoint_dropped\"}")
            .await?;
    }
    ensure!(dropped > 0.0, "the failpoint dropped nothing");
    ensure!(repaired > 0.0, "the log repaired nothing");
    eprintln!(
        "converged {took:?} after the last edit; {dropped} messages dropped, {repaired} updates repaired from the log"
    );
    Ok(())
}

/// PostgreSQL stops for a few seconds: no write is acknowledged meanwhile, writers are told
/// why and closed with 1013, joins are refused the same way, /healthz says 503 with the
/// reason; once it is back, everything the clients kept is stored and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_refuses_writes_with_a_reason_then_recovers() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start("pg_outage", 2, &[], &[]).await? else {
        return Ok(());
    };
    let room = unique_room("outage");
    let ann = start(&cluster.url(0), &room, "ann");
    let bob = start(&cluster.url(1), &room, "bob");
    ann.client.wait_synced(T).await?;
    bob.client.wait_synced(T).await?;
    ann.insert_at_char(0, "before ");
    converged(&[handle(&ann), handle(&bob)], T).await?;
    ensure!(cluster.healthz(0).await?.0 == 200);

    let doc = duet_yjs::doc::doc_with_client(77);
    let mut raw = duet_e2e::ydoc::join(&cluster.url(0), room.as_str(), &doc, 0).await?;
    cluster.pg.stop()?;
    let update = type_word(&doc, "during ");
    raw.send(&ClientMsg::Update {
        seq: 1,
        update: update.clone().into(),
    })
    .await?;
    // Told why, never acknowledged, then closed with 1013.
    let mut told = None;
    let ended = loop {
        match tokio::time::timeout(T, futures_util::StreamExt::next(&mut raw.ws)).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                match duet_protocol::decode_server(&b)? {
                    ServerMsg::Ack { seq } => {
                        anyhow::bail!("acknowledged {seq} with postgresql down")
                    }
                    ServerMsg::Error { code, message } => told = Some((code, message)),
                    _ => {}
                }
            }
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!("the session ended without a close frame: {other:?}"),
        }
    };
    let (code, message) = told.context("no error message before the close")?;
    ensure!(
        code == duet_protocol::ErrorCode::STORAGE_UNAVAILABLE,
        "{code:?}"
    );
    ensure!(message.contains("could not store"), "{message}");
    let frame = ended.context("a close frame with a code")?;
    ensure!(
        u16::from(frame.code) == 1013,
        "closed with {:?}",
        frame.code
    );
    ensure!(
        frame.reason.contains("storage unavailable"),
        "{}",
        frame.reason
    );
    // /healthz drains the node.
    eventually("/healthz to say 503 with the reason", T, || {
        futures_now(cluster.healthz(1))
            .filter(|(status, body)| *status == 503 && body.contains("postgresql unreachable"))
    })
    .await?;
    // A join meanwhile is refused the same way (the room cannot load).
    let other_room = unique_room("outage-new");
    let mut c = RawClient::connect(&cluster.url(1), other_room.as_str()).await?;
    let ended = c.until_end(T).await?;
    ensure!(
        matches!(&ended, duet_e2e::raw::Ended::Closed { code, reason } if code.0 == 1013 && reason.contains("storage unavailable")),
        "{ended:?}"
    );
    // A duet client typing meanwhile keeps its edits.
    ann.insert_at_char(0, "kept ");
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.pg.start_again()?;
    eventually("/healthz to say 200 again", T, || {
        futures_now(cluster.healthz(0)).filter(|(status, _)| *status == 200)
    })
    .await?;
    let text = converged(&[handle(&ann), handle(&bob)], T).await?;
    ensure!(text.contains("kept ") && text.contains("before "), "{text}");
    // The raw writer rejoins and its edit (never acknowledged) is stored now.
    let _raw = duet_e2e::ydoc::join(&cluster.url(0), room.as_str(), &doc, 2).await?;
    let seen = observe(&cluster.url(1), room.as_str()).await?;
    ensure!(seen.contains("during "), "{seen}");
    Ok(())
}

/// Two nodes whose members write the same rooms in step reach the compaction threshold at
/// the same moment, time and again: the store's compare-and-swap lets one snapshot through per
/// room and covers and refuses the other node's. Triggers in the test's database widen the
/// race (each snapshot write takes 100 ms more, inside its transaction) and record every
/// snapshot written: per room, each one covers strictly more than the one before (no covers
/// written twice, none going back), their number is what the nodes say they stored, and every
/// room reads the same from its snapshot and log as was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_compacting_one_room_at_once_only_one_does() -> anyhow::Result<()> {
    let Some(cluster) =
        Cluster::start("compact_race", 2, &["--compact-after-rows", "10"], &[]).await?
    else {
        return Ok(());
    };
    const ROOMS: usize = 6;
    const BURSTS: u64 = 8;
    cluster
        .sql()
        .await?
        .batch_execute(
            "CREATE TABLE snapshot_writes (n bigserial, room bigint, covers bigint);
             CREATE FUNCTION record_snapshot() RETURNS trigger AS $$
             BEGIN INSERT INTO snapshot_writes (room, covers) VALUES (NEW.room, NEW.covers);
             RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER record_snapshot AFTER INSERT OR UPDATE ON duet_snapshots
             FOR EACH ROW EXECUTE FUNCTION record_snapshot();
             CREATE FUNCTION slow_snapshot() RETURNS trigger AS $$
             BEGIN PERFORM pg_sleep(0.1); RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER slow_snapshot BEFORE INSERT OR UPDATE ON duet_snapshots
             FOR EACH ROW EXECUTE FUNCTION slow_snapshot();",
        )
        .await?;
    let rooms: Vec<_> = (0..ROOMS).map(|_| unique_room("compact")).collect();
    // Per room, one writer on each node, in step: ten updates each, then both wait for their
    // acknowledgements, so both nodes pass the threshold within a commit window of each other.
    let mut tasks = Vec::new();
    for room in &rooms {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        for i in 0..2 {
            let url = cluster.url(i);
            let room = room.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let doc = duet_yjs::doc::doc_with_client(500 + i as u64);
                let mut c = duet_e2e::ydoc::join(&url, room.as_str(), &doc, 0).await?;
                for burst in 0..BURSTS {
                    barrier.wait().await;
                    for k in burst * 10 + 1..=burst * 10 + 10 {
                        let update = type_word(&doc, &format!("n{i}-{k} "));
                        c.send(&ClientMsg::Update {
                            seq: k,
                            update: update.into(),
                        })
                        .await?;
                    }
                    wait_ack(&mut c, burst * 10 + 10).await?;
                }
                anyhow::Ok(())
            }));
        }
    }
    for task in tasks {
        task.await??;
    }
    // Compactions under way finish (each takes 100 ms in the database here): the nodes'
    // count of snapshots stored and the database's agree, twice in a row 200 ms apart.
    let sql = cluster.sql().await?;
    let deadline = std::time::Instant::now() + T;
    let mut last = None;
    loop {
        let rows: i64 = sql
            .query_one("SELECT count(*) FROM snapshot_writes", &[])
            .await?
            .get(0);
        let mut stored = 0.0;
        for i in 0..2 {
            stored += cluster.metric(i, "duet_store_compactions_total").await?;
        }
        if rows > 0 && rows as f64 == stored && last == Some(rows) {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "compactions never settled: the nodes stored {stored}, the database saw {rows}"
        );
        last = (rows as f64 == stored).then_some(rows);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes = sql
        .query("SELECT room, covers FROM snapshot_writes ORDER BY n", &[])
        .await?;
    let mut by_room: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for row in &writes {
        by_room.entry(row.get(0)).or_default().push(row.get(1));
    }
    for (room, covers) in &by_room {
        ensure!(
            covers.windows(2).all(|w| w[0] < w[1]),
            "room {room}: snapshots written with covers {covers:?}"
        );
    }
    let mut won = 0.0;
    let mut refused = 0.0;
    for i in 0..2 {
        won += cluster.metric(i, "duet_store_compactions_total").await?;
        refused += cluster.metric(i, "duet_compactions_refused_total").await?;
    }
    ensure!(
        won == writes.len() as f64,
        "the nodes stored {won} snapshots, the database saw {}",
        writes.len()
    );
    ensure!(by_room.len() == ROOMS, "every room compacted");
    ensure!(
        refused >= 1.0,
        "no compaction met another at the same time ({won} stored): the race was not run"
    );
    eprintln!("compactions stored {won}, refused {refused}; covers {by_room:?}");
    // Every room reads whole: every word, rows dense past the snapshot.
    for room in &rooms {
        let (seqs, head) = cluster.log_of(room.as_str()).await?;
        ensure!(head == 2 * 10 * BURSTS as i64, "head {head}");
        if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
            ensure!(
                *last == head && seqs.len() as i64 == last - first + 1,
                "{seqs:?}"
            );
        }
        let seen = observe(&cluster.url(1), room.as_str()).await?;
        for i in 0..2 {
            for k in 1..=10 * BURSTS {
                ensure!(seen.contains(&format!("n{i}-{k} ")), "n{i}-{k} missing");
            }
        }
    }
    Ok(())
}

/// A single node's data directory moves into a cluster's PostgreSQL (`duet-server migrate`),
/// and `rooms list` works against the cluster's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_nodes_rooms_move_into_postgresql() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start("migrate", 0, &[], &[]).await? else {
        return Ok(());
    };
    let mut cluster = cluster;
    let dir = std::env::temp_dir().join(format!("duet-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.display().to_string();
    let mut single = duet_e2e::server::ServerProcess::start(&["--data-dir", &data])?;
    for (room, text) in [("notes", "single node notes"), ("W/files/1", "a file")] {
        let doc = duet_yjs::doc::new_doc();
        let mut c = duet_e2e::ydoc::join(&single.url(), room, &doc, 0).await?;
        c.send(&ClientMsg::Update {
            seq: 1,
            update: type_word(&doc, text).into(),
        })
        .await?;
        wait_ack(&mut c, 1).await?;
    }
    // Refused while the single node runs.
    let bin = duet_e2e::server::workspace_bin("duet-server")?;
    let migrate = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(["migrate", "--data-dir", &data, "--postgres", &cluster.db])
            .args(args)
            .output()
    };
    let out = migrate(&[])?;
    ensure!(!out.status.success(), "migrated beside a running server");
    ensure!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    single.terminate(T)?;
    let out = migrate(&[])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(String::from_utf8_lossy(&out.stderr).contains("copied 2 of 2 rooms"));
    // Again: the rooms exist, so it stops, unless told to leave them.
    ensure!(!migrate(&[])?.status.success());
    ensure!(migrate(&["--skip-existing"])?.status.success());
    let out = std::process::Command::new(&bin)
        .args(["rooms", "list", "--postgres", &cluster.db])
        .output()?;
    let listed = String::from_utf8_lossy(&out.stdout);
    ensure!(
        listed.contains("notes") && listed.contains("W/files/1"),
        "{listed}"
    );
    let node = cluster.add_node()?;
    ensure!(observe(&cluster.url(node), "notes").await? == "single node notes");
    ensure!(observe(&cluster.url(node), "W/files/1").await? == "a file");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A node killed and started again at once (same node id) is written off by its new epoch,
/// not by its heartbeat going stale (60 s here): the cursors of its old run's members leave
/// the other nodes within a heartbeat of the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_written_off_by_its_new_epoch() -> anyhow::Result<()> {
    let Some(mut cluster) =
        Cluster::start("new_epoch", 2, &["--stale-after-ms", "60000"], &[]).await?
    else {
        return Ok(());
    };
    let room = unique_room("epoch");
    let observer = start(&cluster.url(1), &room, "obs");
    observer.client.wait_synced(T).await?;
    let doc = duet_yjs::doc::doc_with_client(61);
    let mut ghost = duet_e2e::ydoc::join(&cluster.url(0), room.as_str(), &doc, 0).await?;
    ghost.send(&ghost_awareness(61)).await?;
    eventually("the observer to see the ghost", T, || {
        observer
            .client
            .peers()
            .iter()
            .any(|p| p.name == "ghost")
            .then_some(())
    })
    .await?;
    // kill -9 (before the ghost's socket closes: the dead node tells no one it left), and
    // the same node again at once: its heartbeat never goes stale.
    cluster.nodes[0].kill();
    drop(ghost);
    cluster.nodes[0].restart()?;
    cluster.rebalance();
    eventually(
        "the old run's cursor to vanish",
        Duration::from_secs(10),
        || {
            observer
                .client
                .peers()
                .iter()
                .all(|p| p.name != "ghost")
                .then_some(())
        },
    )
    .await?;
    ensure!(
        cluster.metric(1, "duet_cluster_nodes_gone_total").await? >= 1.0,
        "written off"
    );
    Ok(())
}
