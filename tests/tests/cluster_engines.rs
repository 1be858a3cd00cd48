//! The cluster's engines on their own, against real engines: the PostgreSQL store with three
//! pools standing for three nodes (dense seqs under concurrent appends, readers that never
//! skip, racing compactors, an outage and a crash of PostgreSQL, heartbeats, admin), the
//! Redis bus between two nodes (updates and awareness per room, a Redis restart, the drop
//! failpoint and the gaps it leaves, a node that falls behind), and the test balancer.
//!
//! Each test starts its own PostgreSQL cluster or redis-server on free loopback ports
//! (`duet_e2e::services`); without the binaries they say SKIPPED (a failure under CI=true).

use anyhow::{Context, bail, ensure};
use duet_e2e::balancer::Balancer;
use duet_e2e::services::{Postgres, Redis};
use duet_protocol::bus::{AwarenessState, Body, BusAwareness, NodeId};
use duet_protocol::{Payload, Role, RoomName};
use duet_server::admin::{self, Format};
use duet_server::cluster::bus::{Bus, BusEvent};
use duet_server::cluster::gaps::Seen;
use duet_server::cluster::pg::{PgOptions, PgStore};
use duet_server::cluster::redis::{RedisBus, RedisOptions};
use duet_server::cluster::{Seq, Stored};
use duet_server::store::{AdminError, RoomAdmin};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update};

const T: Duration = Duration::from_secs(20);

fn room(name: &str) -> RoomName {
    RoomName::new(name).expect("valid room name")
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node id")
}

/// Options for tests: short timeouts, so an outage shows within seconds.
fn pg_options() -> PgOptions {
    PgOptions {
        commit_window: Duration::from_millis(2),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
        ..PgOptions::default()
    }
}

fn redis_options() -> RedisOptions {
    RedisOptions {
        ping_every: Duration::from_millis(200),
        response_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..RedisOptions::default()
    }
}

/// A PostgreSQL cluster and a fresh database in it, or `None` when skipped.
async fn database(test: &str) -> anyhow::Result<Option<(Postgres, String)>> {
    let Some(pg) = Postgres::start(test)? else {
        return Ok(None);
    };
    let url = pg.create_database(test).await?;
    Ok(Some((pg, url)))
}

fn yrs_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Applies stored updates in order to a fresh document and returns its text.
fn text_of(stored: &[Vec<u8>]) -> anyhow::Result<String> {
    let doc = yrs_doc();
    let text = doc.get_or_insert_text("content");
    for update in stored {
        doc.transact_mut()
            .apply_update(Update::decode_v1(update)?)
            .context("a stored update applies")?;
    }
    Ok(text.get_string(&doc.transact()))
}

/// Typing `s` one character at a time: one update per character.
fn typing(doc: &Doc, s: &str) -> Vec<Vec<u8>> {
    let text = doc.get_or_insert_text("content");
    s.chars()
        .map(|c| {
            let before = doc.transact().state_vector();
            let len = text.len(&doc.transact());
            text.insert(&mut doc.transact_mut(), len, &c.to_string());
            doc.transact().encode_diff_v1(&before)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_appending_at_once_keep_each_rooms_seq_dense_and_readers_never_skip()
-> anyhow::Result<()> {
    let Some((_pg, url)) = database("dense_seq").await? else {
        return Ok(());
    };
    // Three nodes start at once on an empty database: the migration runs once, under its lock.
    let (a, b, c) = tokio::join!(
        PgStore::connect(&url, pg_options()),
        PgStore::connect(&url, pg_options()),
        PgStore::connect(&url, pg_options()),
    );
    let nodes = [Arc::new(a?), Arc::new(b?), Arc::new(c?)];
    let rooms = [room("shared"), room("other")];
    const PER_NODE: usize = 120;

    // A reader follows room "shared" by its cursor while the nodes write.
    let reader = {
        let store = nodes[0].clone();
        let room = rooms[0].clone();
        tokio::spawn(async move {
            let mut cursor = Seq(0);
            let mut seen = Vec::new();
            let deadline = Instant::now() + T;
            while cursor.0 < (3 * PER_NODE / 2) as u64 {
                let Stored { updates, head } = store.read(&room, cursor).await?;
                ensure!(
                    updates.len() as u64 == head.0 - cursor.0,
                    "a read after {cursor:?} up to {head:?} returned {} rows",
                    updates.len()
                );
                seen.extend(updates);
                cursor = head;
                ensure!(Instant::now() < deadline, "the reader never saw every row");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            anyhow::Ok(seen)
        })
    };

    // Every node appends to both rooms in bursts, so batches hold both rooms and nodes' batches
    // contend for the same rows.
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let store = store.clone();
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                for i in 0..PER_NODE {
                    let room = &rooms[i % 2];
                    let data = format!("node{n}-{i}").into_bytes();
                    pending.push((room.clone(), data.clone(), store.append(room, data)));
                    if i % 8 == 7 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                let mut done = Vec::new();
                for (room, data, seq) in pending {
                    done.push((room, data, seq.await?));
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut by_room: HashMap<RoomName, BTreeMap<u64, Vec<u8>>> = HashMap::new();
    for writer in writers {
        let done = writer.await??;
        // One node's appends to one room take increasing seqs, in call order.
        let mut last: HashMap<RoomName, u64> = HashMap::new();
        for (room, data, seq) in done {
            let prev = last.insert(room.clone(), seq.0).unwrap_or(0);
            ensure!(seq.0 > prev, "seq {seq:?} after {prev} from the same node");
            let dup = by_room.entry(room).or_default().insert(seq.0, data);
            ensure!(dup.is_none(), "seq {} given twice", seq.0);
        }
    }
    for room in &rooms {
        let seqs: Vec<u64> = by_room[room].keys().copied().collect();
        let expected: Vec<u64> = (1..=(3 * PER_NODE / 2) as u64).collect();
        ensure!(seqs == expected, "room {room:?}: seqs not dense: {seqs:?}");
        // The log holds each acknowledged update at its seq.
        let stored = nodes[2].read(room, Seq(0)).await?;
        ensure!(stored.head == Seq(expected.len() as u64));
        let in_order: Vec<Vec<u8>> = by_room[room].values().cloned().collect();
        ensure!(
            stored.updates == in_order,
            "room {room:?}: the log is not the acks' order"
        );
    }
    let seen = reader.await??;
    let in_order: Vec<Vec<u8>> = by_room[&rooms[0]].values().cloned().collect();
    ensure!(seen == in_order, "the reader's rows differ from the log");

    // Heads of many rooms in one query; a room never written is at 0.
    let heads = nodes[1]
        .heads(&[rooms[0].clone(), rooms[1].clone(), room("never")])
        .await?;
    ensure!(heads[&rooms[0]] == Seq(180) && heads[&rooms[1]] == Seq(180));
    ensure!(heads[&room("never")] == Seq(0));
    ensure!(nodes[0].read(&room("never"), Seq(0)).await? == Stored::default());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_compactors_exactly_one_wins_and_the_room_reads_the_same() -> anyhow::Result<()> {
    let Some((_pg, url)) = database("compaction").await? else {
        return Ok(());
    };
    let a = PgStore::connect(&url, pg_options()).await?;
    let b = PgStore::connect(&url, pg_options()).await?;
    let r = room("notes");
    let doc = yrs_doc();
    let mut expected = String::new();
    for round in 0..6 {
        let words = format!("round {round} of racing compactors. ");
        expected.push_str(&words);
        for update in typing(&doc, &words) {
            a.append(&r, update).await?;
        }
        let head = a.heads(std::slice::from_ref(&r)).await?[&r];
        // Each node merges what it read and offers it, at the same moment.
        let state_a = merged(&a.read(&r, Seq(0)).await?.updates)?;
        let state_b = merged(&b.read(&r, Seq(0)).await?.updates)?;
        let (won_a, won_b) =
            tokio::join!(a.compact(&r, state_a, head), b.compact(&r, state_b, head));
        let wins = [won_a?, won_b?].iter().filter(|w| **w).count();
        ensure!(
            wins == 1,
            "round {round}: {wins} compactions of the same covers won"
        );
        let stored = b.read(&r, Seq(0)).await?;
        ensure!(stored.head == head);
        ensure!(
            stored.updates.len() == 1,
            "the log past the snapshot is empty"
        );
        ensure!(
            text_of(&stored.updates)? == expected,
            "round {round}: text changed"
        );
    }
    // Neither a snapshot covering less nor one past the head replaces it.
    let head = a.heads(std::slice::from_ref(&r)).await?[&r];
    let state = merged(&a.read(&r, Seq(0)).await?.updates)?;
    ensure!(!a.compact(&r, state.clone(), Seq(head.0 - 5)).await?);
    ensure!(!a.compact(&r, state.clone(), Seq(head.0 + 1)).await?);
    ensure!(!a.compact(&r, state, Seq(0)).await?);

    // Reads around the snapshot: a cursor below it gets the snapshot and the rows after it;
    // a cursor at or past it only the rows after it.
    let more = typing(&doc, "tail");
    for update in &more {
        a.append(&r, update.clone()).await?;
    }
    expected.push_str("tail");
    let below = b.read(&r, Seq(3)).await?;
    ensure!(below.updates.len() == 1 + more.len() && below.head == Seq(head.0 + 4));
    ensure!(text_of(&below.updates)? == expected);
    let at = b.read(&r, head).await?;
    ensure!(
        at.updates == more,
        "after the snapshot's covers: the rows only"
    );
    // A cursor past the head (another life of the room) gets the whole room.
    let past = b.read(&r, Seq(head.0 + 100)).await?;
    ensure!(text_of(&past.updates)? == expected);

    // Admin: the same text exported, a room imported, listed and deleted.
    let (ad, bd): (&dyn RoomAdmin, &dyn RoomAdmin) = (&a, &b);
    ensure!(String::from_utf8(admin::export(ad, &r, Format::Text).await?)? == expected);
    let yjs = admin::export(bd, &r, Format::Yjs).await?;
    ensure!(text_of(std::slice::from_ref(&yjs))? == expected);
    let copy = room("copy");
    admin::import(ad, &copy, &yjs, Format::Yjs).await?;
    admin::import(ad, &room("plain"), "plain text".as_bytes(), Format::Text).await?;
    ensure!(matches!(
        admin::import(ad, &copy, &yjs, Format::Yjs).await,
        Err(AdminError::RoomExists(_))
    ));
    ensure!(matches!(
        admin::import(ad, &room("bad"), b"\xff\xff not yjs", Format::Yjs).await,
        Err(AdminError::BadInput(_))
    ));
    ensure!(
        String::from_utf8(admin::export(bd, &room("plain"), Format::Text).await?)? == "plain text"
    );
    let listed: Vec<String> = ad.list().await?.into_iter().map(|info| info.name).collect();
    ensure!(listed == ["copy", "notes", "plain"], "listed {listed:?}");
    ad.delete(&copy).await?;
    ensure!(matches!(
        ad.delete(&copy).await,
        Err(AdminError::NoSuchRoom(_))
    ));
    ensure!(matches!(
        admin::export(ad, &copy, Format::Text).await,
        Err(AdminError::NoSuchRoom(_))
    ));
    // An imported room continues its log after the imported row.
    ensure!(
        a.append(&room("plain"), typing(&yrs_doc(), "x")[0].clone())
            .await?
            == Seq(2)
    );
    Ok(())
}

/// The merge of stored updates as one update (what the compaction routine offers).
fn merged(updates: &[Vec<u8>]) -> anyhow::Result<Vec<u8>> {
    let doc = yrs_doc();
    for update in updates {
        doc.transact_mut()
            .apply_update(Update::decode_v1(update)?)
            .context("applies")?;
    }
    Ok(doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_appends_promptly_and_never_falsely_then_they_succeed_again()
-> anyhow::Result<()> {
    let Some((pg, url)) = database("outage").await? else {
        return Ok(());
    };
    let store = PgStore::connect(&url, pg_options()).await?;
    let r = room("r");
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for i in 0..5 {
        let data = format!("before-{i}").into_bytes();
        acked.insert(store.append(&r, data.clone()).await?.0, data);
    }

    pg.stop()?;
    // Every operation fails, each well within its timeout plus the connect timeout: no hang.
    let bound = pg_options().timeout + pg_options().connect_timeout + Duration::from_secs(2);
    for i in 0..5 {
        let data = format!("during-{i}").into_bytes();
        let began = Instant::now();
        let result = tokio::time::timeout(bound * 2, store.append(&r, data))
            .await
            .context("an append hung while postgresql was down")?;
        ensure!(
            result.is_err(),
            "append {i} acknowledged while postgresql was down"
        );
        ensure!(
            began.elapsed() < bound,
            "append {i} took {:?} to fail",
            began.elapsed()
        );
    }
    let read = tokio::time::timeout(bound * 2, store.read(&r, Seq(0)))
        .await
        .context("a read hung")?;
    ensure!(read.is_err(), "a read succeeded while postgresql was down");
    let err = read.err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(
        err.contains("postgresql") && err.contains("refused"),
        "unclear error: {err}"
    );

    pg.start_again()?;
    // The pool drops its dead connections and the writer recovers on its own.
    let deadline = Instant::now() + T;
    let seq = loop {
        match store.append(&r, b"after".to_vec()).await {
            Ok(seq) => break seq,
            Err(_) if Instant::now() < deadline => retry_pause().await,
            Err(e) => bail!("appends still fail after postgresql returned: {e}"),
        }
    };
    acked.insert(seq.0, b"after".to_vec());
    // The log holds exactly what was acknowledged, dense: nothing that failed slipped in.
    let stored = store.read(&r, Seq(0)).await?;
    ensure!(stored.updates == acked.values().cloned().collect::<Vec<_>>());
    ensure!(stored.head == Seq(acked.len() as u64));

    // A crash of PostgreSQL (kill -9 of the postmaster) loses nothing acknowledged either.
    for i in 0..20 {
        let data = format!("crash-{i}").into_bytes();
        acked.insert(store.append(&r, data.clone()).await?.0, data);
    }
    pg.kill()?;
    pg.start_again()?;
    let deadline = Instant::now() + T;
    let stored = loop {
        match store.read(&r, Seq(0)).await {
            Ok(stored) => break stored,
            Err(_) if Instant::now() < deadline => retry_pause().await,
            Err(e) => bail!("reads still fail after postgresql recovered: {e}"),
        }
    };
    ensure!(stored.updates == acked.values().cloned().collect::<Vec<_>>());
    Ok(())
}

/// Waits a little before trying again.
async fn retry_pause() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_go_stale_and_epochs_tell_restarts_apart() -> anyhow::Result<()> {
    let Some((_pg, url)) = database("heartbeats").await? else {
        return Ok(());
    };
    let store = PgStore::connect(&url, pg_options()).await?;
    let (a, b) = (node("node-a"), node("node-b"));
    ensure!(store.register_node(&a).await? == 1);
    ensure!(store.register_node(&b).await? == 1);
    // node-a restarts: a new epoch, and its previous run may no longer beat for it.
    ensure!(store.register_node(&a).await? == 2);
    ensure!(!store.heartbeat(&a, 1).await?);
    ensure!(store.heartbeat(&a, 2).await?);

    // node-a keeps beating, node-b stopped: only node-b goes stale.
    let max_age = Duration::from_millis(400);
    let deadline = Instant::now() + T;
    loop {
        ensure!(store.heartbeat(&a, 2).await?);
        let stale = store.stale_nodes(max_age).await?;
        ensure!(
            stale.iter().all(|beat| beat.node != a),
            "a beating node went stale"
        );
        if let Some(beat) = stale.iter().find(|beat| beat.node == b) {
            ensure!(beat.epoch == 1 && beat.age > max_age);
            break;
        }
        ensure!(Instant::now() < deadline, "node-b never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = store.nodes().await?;
    ensure!(
        all.iter()
            .map(|beat| (&beat.node, beat.epoch))
            .eq([(&a, 2), (&b, 1)])
    );
    // Written off: its row goes, but only for the epoch that went stale.
    ensure!(!store.forget_node(&b, 7).await?);
    ensure!(store.forget_node(&b, 1).await?);
    ensure!(store.nodes().await?.len() == 1);
    Ok(())
}

/// Two buses on one Redis, as two nodes.
async fn two_buses(
    redis: &Redis,
    a: RedisOptions,
) -> anyhow::Result<(
    (RedisBus, mpsc::Receiver<BusEvent>),
    (RedisBus, mpsc::Receiver<BusEvent>),
)> {
    let bus_a = RedisBus::start(&redis.url(), node("a"), 1, a)?;
    let bus_b = RedisBus::start(&redis.url(), node("b"), 1, redis_options())?;
    bus_a.0.wait_connected(T).await?;
    bus_b.0.wait_connected(T).await?;
    Ok((bus_a, bus_b))
}

/// The next event, within `T`.
async fn next(events: &mut mpsc::Receiver<BusEvent>) -> anyhow::Result<BusEvent> {
    tokio::time::timeout(T, events.recv())
        .await
        .context("no bus event within the deadline")?
        .context("the bus stopped")
}

/// The next message event (connection events skipped), as (room, origin, counter, body, seen).
async fn next_message(
    events: &mut mpsc::Receiver<BusEvent>,
) -> anyhow::Result<(RoomName, NodeId, u64, Body, Seen)> {
    loop {
        if let BusEvent::Message {
            room,
            envelope,
            seen,
        } = next(events).await?
        {
            return Ok((room, envelope.origin, envelope.counter, envelope.body, seen));
        }
    }
}

fn update(bytes: &[u8]) -> Body {
    Body::Update(Payload(bytes.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_buses_exchange_updates_and_awareness_per_room() -> anyhow::Result<()> {
    let Some(redis) = Redis::start("two_redis_buses")? else {
        return Ok(());
    };
    let ((a, mut a_events), (b, mut b_events)) = two_buses(&redis, redis_options()).await?;
    let (r1, r2) = (room("r1"), room("W/files/2"));
    a.subscribe(&r1).await?;
    b.subscribe(&r1).await?;
    b.subscribe(&r2).await?;

    let cursor = Body::Awareness(vec![BusAwareness {
        client_id: 77,
        clock: 1,
        role: Role::Editor,
        state: AwarenessState::Json("{\"user\":{\"name\":\"ana\"}}".into()),
    }]);
    a.publish(&r1, update(b"one"));
    a.publish(&r1, cursor.clone());
    a.publish(&r2, update(b"two"));
    a.publish(&r1, update(b"three"));
    let heard = [
        next_message(&mut b_events).await?,
        next_message(&mut b_events).await?,
        next_message(&mut b_events).await?,
        next_message(&mut b_events).await?,
    ];
    let expected = [
        (r1.clone(), 1, update(b"one"), Seen::First),
        (r1.clone(), 2, cursor, Seen::First),
        (r2.clone(), 3, update(b"two"), Seen::First),
        // Counter 3 went to another room: the link to 1 says nothing was missed here.
        (r1.clone(), 4, update(b"three"), Seen::Next),
    ];
    for ((room, origin, counter, body, seen), (e_room, e_counter, e_body, e_seen)) in
        heard.into_iter().zip(expected)
    {
        ensure!(origin == node("a"));
        ensure!((room, counter, body, seen) == (e_room, e_counter, e_body, e_seen));
    }
    // A node never hears itself: the first thing `a` hears is `b`'s message.
    b.publish(&r1, update(b"from b"));
    let (room, origin, _, body, _) = next_message(&mut a_events).await?;
    ensure!(room == r1 && origin == node("b") && body == update(b"from b"));

    // After unsubscribing, a room's messages no longer arrive.
    b.unsubscribe(&r1);
    // UNSUBSCRIBE is sent in the background; wait until Redis applied it (r2's message
    // published after it arrives, r1's does not).
    let deadline = Instant::now() + T;
    loop {
        a.publish(&r1, update(b"unheard"));
        a.publish(&r2, update(b"heard"));
        let (room, _, _, body, _) = next_message(&mut b_events).await?;
        if room == r2 {
            ensure!(body == update(b"heard"));
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "r1 still heard after unsubscribing"
        );
    }
    ensure!(a.connected() && b.connected());
    let metrics = b.metrics().context("the redis bus keeps metrics")?;
    ensure!(metrics.received.get() >= 5 && metrics.gaps.get() == 0);
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_reported_and_its_losses_seen() -> anyhow::Result<()> {
    let Some(mut redis) = Redis::start("redis_restart")? else {
        return Ok(());
    };
    let ((a, _a_events), (b, mut b_events)) = two_buses(&redis, redis_options()).await?;
    let r = room("r");
    a.subscribe(&r).await?;
    b.subscribe(&r).await?;
    a.publish(&r, update(b"before"));
    ensure!(next_message(&mut b_events).await?.3 == update(b"before"));

    redis.restart()?;
    // b stops hearing, then hears again and says so.
    ensure!(next(&mut b_events).await? == BusEvent::Disconnected);
    let BusEvent::Reconnected { after } = next(&mut b_events).await? else {
        bail!("expected Reconnected after Disconnected");
    };
    ensure!(after < T);
    b.wait_connected(T).await?;
    // a publishes until b hears it (a's first publishes find its connection broken and are
    // dropped): b sees the messages it missed as a gap in a's counters.
    let deadline = Instant::now() + T;
    let (counter, seen) = loop {
        a.publish(&r, update(b"after"));
        match tokio::time::timeout(Duration::from_millis(100), b_events.recv()).await {
            Ok(Some(BusEvent::Message { envelope, seen, .. })) => {
                ensure!(envelope.body == update(b"after"));
                break (envelope.counter, seen);
            }
            Ok(Some(other)) => bail!("unexpected event {other:?}"),
            Ok(None) => bail!("the bus stopped"),
            Err(_) => ensure!(Instant::now() < deadline, "b never heard a again"),
        }
    };
    // Counter 1 was heard before the restart; every counter between it and this one was
    // lost (dropped by a broken connection, or published while b was not listening).
    let expected = if counter > 2 {
        Seen::Gap {
            after: 1,
            upto: counter - 1,
        }
    } else {
        Seen::Next
    };
    ensure!(seen == expected, "heard counter {counter} as {seen:?}");
    let b_metrics = b.metrics().context("metrics")?;
    ensure!(b_metrics.reconnects.get() == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_failpoint_drops_every_nth_message_and_each_loss_is_named() -> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the failpoint exists only in debug builds");
        return Ok(());
    }
    let Some(redis) = Redis::start("drop_failpoint")? else {
        return Ok(());
    };
    let dropping = RedisOptions {
        drop_every: Some(3),
        ..redis_options()
    };
    let ((a, _a_events), (b, mut b_events)) = two_buses(&redis, dropping).await?;
    let r = room("r");
    b.subscribe(&r).await?;
    for i in 1..=31u8 {
        a.publish(&r, update(&[i]));
    }
    let mut heard = Vec::new();
    let mut named = Vec::new();
    while heard.len() < 21 {
        let (_, _, counter, body, seen) = next_message(&mut b_events).await?;
        ensure!(body == update(&[counter as u8]));
        heard.push(counter);
        if let Seen::Gap { after, upto } = seen {
            named.extend(after + 1..=upto);
        }
    }
    let dropped: Vec<u64> = (1..=31).filter(|c| c % 3 == 0).collect();
    let kept: Vec<u64> = (1..=31).filter(|c| c % 3 != 0).collect();
    ensure!(heard == kept, "heard {heard:?}");
    ensure!(named == dropped, "gaps named {named:?}");
    let metrics = a.metrics().context("metrics")?;
    ensure!(metrics.failpoint_dropped.get() == 10 && metrics.published.get() == 21);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_bus_drops_and_names_the_lagging_rooms() -> anyhow::Result<()> {
    let Some(redis) = Redis::start("lagging_node")? else {
        return Ok(());
    };
    let a = RedisBus::start(&redis.url(), node("a"), 1, redis_options())?.0;
    let small = RedisOptions {
        events_queue: 4,
        ..redis_options()
    };
    let (b, mut b_events) = RedisBus::start(&redis.url(), node("b"), 1, small)?;
    a.wait_connected(T).await?;
    b.wait_connected(T).await?;
    let r = room("busy");
    b.subscribe(&r).await?;
    // b does not read its events while 50 messages arrive: it keeps 4 and drops the rest.
    for i in 0..50u8 {
        a.publish(&r, update(&[i]));
    }
    let metrics = b.metrics().context("metrics")?;
    let deadline = Instant::now() + T;
    while metrics.received.get() < 50 {
        ensure!(
            Instant::now() < deadline,
            "b heard {} of 50",
            metrics.received.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ensure!(
        metrics.lagged.get() == 46,
        "lagged {}",
        metrics.lagged.get()
    );
    for _ in 0..4 {
        ensure!(matches!(
            next(&mut b_events).await?,
            BusEvent::Message { .. }
        ));
    }
    // The next message comes after word of the room it fell behind on.
    a.publish(&r, update(b"next"));
    ensure!(
        next(&mut b_events).await?
            == BusEvent::Lagged {
                rooms: vec![r.clone()]
            }
    );
    ensure!(next_message(&mut b_events).await?.3 == update(b"next"));
    Ok(())
}

#[tokio::test]
async fn the_balancer_goes_round_robin_and_skips_a_dead_backend() -> anyhow::Result<()> {
    // Three backends that say their number; the second is dead (its port closed).
    let mut backends = Vec::new();
    for n in 0..3u8 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        backends.push(listener.local_addr()?);
        if n == 1 {
            continue; // dropped: nothing listens there any more
        }
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let _ = conn.write_all(&[n]).await;
            }
        });
    }
    let balancer = Balancer::start(backends.clone()).await?;
    let mut answers = Vec::new();
    for _ in 0..6 {
        let mut conn = tokio::net::TcpStream::connect(balancer.addr).await?;
        let mut n = [0u8];
        conn.read_exact(&mut n).await?;
        answers.push(n[0]);
    }
    // Turns 0, 1 (dead: on to 2), 2, 0, 1 (-> 2), 2.
    ensure!(answers == [0, 2, 2, 0, 2, 2], "answers {answers:?}");
    let served = balancer.served();
    ensure!(served.iter().all(|(addr, _)| *addr != backends[1]));
    ensure!(served.iter().map(|(_, n)| n).sum::<u64>() == 6);
    Ok(())
}

/// ARCHITECTURE.md's rule: the editor's embedded server leaves the cluster's clients out (the
/// PostgreSQL client; Redis's protocol is the server's own code, behind the same feature).
#[test]
fn the_editor_never_links_the_cluster_clients() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |package: &str| -> anyhow::Result<String> {
        let out = std::process::Command::new(&cargo)
            .args([
                "tree",
                "--offline",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
                package,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .context("running cargo tree")?;
        ensure!(
            out.status.success(),
            "cargo tree -p {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let linked = |tree: &str, name: &str| tree.lines().any(|l| l.starts_with(&format!("{name} v")));
    let server = tree("duet-server")?;
    let editor = tree("duet")?;
    ensure!(
        linked(&editor, "duet-server"),
        "the editor embeds the server"
    );
    for client in ["tokio-postgres", "deadpool-postgres"] {
        ensure!(
            linked(&server, client),
            "duet-server (default features) lacks {client}"
        );
        ensure!(!linked(&editor, client), "the editor links {client}");
    }
    Ok(())
}
