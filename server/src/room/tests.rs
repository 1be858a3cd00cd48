//! A room handling bursts: the updates waiting in its inbox are applied in one transaction,
//! and every author still gets exactly what it would get for its updates one at a time.

use super::*;
use crate::doc::ROOT_TEXT;
use crate::outbox::{self, OutboxRx};
use crate::store::MemoryStore;
use tokio_util::task::TaskTracker;
use yrs::{GetString, Text};

struct Member {
    out: OutboxRx,
    kicked: oneshot::Receiver<Kick>,
}

async fn room_with(members: &[(u64, Role)]) -> (RoomHandle, Vec<Member>) {
    let handle = spawn(
        1,
        RoomName::new("burst").expect("valid"),
        Arc::new(MemoryStore::default()),
        RoomConfig::default(),
        CancellationToken::new(),
        &TaskTracker::new(),
        Arc::default(),
        || {},
    );
    let mut joined = Vec::new();
    for &(peer_id, role) in members {
        let mut member = join(&handle, peer_id, role).await;
        assert!(matches!(member.out.recv().await, Some(Out::SyncStep1(_))));
        joined.push(member);
    }
    (handle, joined)
}

/// Joins the room; returns once the room has handled the join, and so every command sent
/// before it (the inbox is handled in order, reloads included).
async fn join(handle: &RoomHandle, peer_id: u64, role: Role) -> Member {
    let (tx, out) = outbox::channel(RoomConfig::default().send_queue, Arc::default());
    let (kick, kicked) = oneshot::channel();
    let (reply, done) = oneshot::channel();
    let join = RoomCmd::Join {
        peer_id,
        role,
        echo_awareness: false,
        tx,
        kick,
        reply,
    };
    assert!(handle.send(join).await.is_ok(), "the room takes joins");
    done.await.expect("joined");
    Member { out, kicked }
}

/// `edits` successive inserts by one client, each as its own v1 update.
fn edits(client_id: u64, texts: &[&str]) -> (Vec<Vec<u8>>, String) {
    let doc = crate::doc::doc_with_client(client_id);
    let text = doc.get_or_insert_text(ROOT_TEXT);
    let mut updates = Vec::new();
    for t in texts {
        let before = doc.transact().state_vector();
        let len = text.len(&doc.transact());
        text.insert(&mut doc.transact_mut(), len, t);
        updates.push(doc.transact().encode_diff_v1(&before));
    }
    let s = text.get_string(&doc.transact());
    (updates, s)
}

fn update(peer_id: u64, seq: u64, update: Vec<u8>) -> RoomCmd {
    RoomCmd::Update {
        peer_id,
        seq: Some(seq),
        update,
        arrived: Instant::now(),
    }
}

/// Everything queued for a member right now.
fn queued(member: &mut Member) -> Vec<Out> {
    std::iter::from_fn(|| member.out.try_recv()).collect()
}

/// What a reader holds after applying the updates relayed to it.
fn text_of(relayed: &[Out]) -> String {
    let doc = new_doc();
    for out in relayed {
        if let Out::Update(u) = out {
            apply_update(&doc, u.raw(), false).expect("relayed updates apply");
        }
    }
    doc.get_or_insert_text(ROOT_TEXT)
        .get_string(&doc.transact())
}

fn acks(outs: &[Out]) -> Vec<u64> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Ack(seq) => Some(*seq),
            _ => None,
        })
        .collect()
}

fn errors(outs: &[Out]) -> Vec<ErrorCode> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Error(code, _) => Some(*code),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_burst_is_answered_per_update_in_order() {
    let (handle, mut m) = room_with(&[
        (1, Role::Editor),
        (2, Role::Editor),
        (3, Role::Viewer),
        (4, Role::Editor),
    ])
    .await;
    let (a, a_text) = edits(11, &["one ", "two ", "three"]);
    let (b, _) = edits(22, &["bee"]);
    let (v, _) = edits(33, &["viewer"]);
    // All of it waits in the inbox before the room runs: one turn, one transaction.
    for cmd in [
        update(1, 1, a[0].clone()),
        update(2, 1, vec![0xff, 0xff, 0xff]),
        update(1, 2, a[1].clone()),
        update(3, 1, v[0].clone()),
        update(2, 2, b[0].clone()),
        update(1, 3, a[2].clone()),
    ] {
        assert!(handle.send(cmd).await.is_ok());
    }
    // A newcomer's join is handled after everything sent before it.
    join(&handle, 99, Role::Viewer).await;

    let reader = queued(&mut m[3]);
    let relayed = reader
        .iter()
        .filter(|o| matches!(o, Out::Update(_)))
        .count();
    assert_eq!(
        relayed, 3,
        "the reader gets the writer's three updates, nothing else"
    );
    assert_eq!(text_of(&reader), a_text);
    let writer = queued(&mut m[0]);
    assert_eq!(
        acks(&writer).last(),
        Some(&3),
        "the writer is acknowledged up to seq 3"
    );
    assert!(errors(&writer).is_empty());

    let bad = queued(&mut m[1]);
    assert_eq!(errors(&bad), vec![ErrorCode::BAD_UPDATE]);
    assert!(
        acks(&bad).is_empty(),
        "nothing of the refused member is acknowledged"
    );
    let kick = m[1]
        .kicked
        .try_recv()
        .expect("the malformed update's author is closed");
    assert_eq!(kick.code, close::INVALID_PAYLOAD);

    let viewer = queued(&mut m[2]);
    assert_eq!(errors(&viewer), vec![ErrorCode::READ_ONLY]);
    assert!(
        m[2].kicked.try_recv().is_err(),
        "a viewer is told, not closed"
    );
}

/// When yrs panics inside a batch, the room reloads and applies the batch one update at a
/// time: only the update that panics is refused (1011), the others are relayed, stored and
/// acknowledged as if nothing happened.
#[tokio::test]
async fn a_panic_inside_a_burst_refuses_only_its_update() {
    crate::contain::failpoint::arm_for_tests();
    let (handle, mut m) =
        room_with(&[(1, Role::Editor), (2, Role::Editor), (3, Role::Editor)]).await;
    let (a, a_text) = edits(11, &["safe ", "and sound"]);
    let marker = std::str::from_utf8(crate::contain::failpoint::MARKER).expect("ascii");
    let (b, _) = edits(22, &[marker]);
    for cmd in [
        update(1, 1, a[0].clone()),
        update(2, 1, b[0].clone()),
        update(1, 2, a[1].clone()),
    ] {
        assert!(handle.send(cmd).await.is_ok());
    }
    join(&handle, 99, Role::Viewer).await;

    let reader = queued(&mut m[2]);
    assert_eq!(
        text_of(&reader),
        a_text,
        "both safe updates relayed, in order"
    );
    assert_eq!(acks(&queued(&mut m[0])).last(), Some(&2));
    assert_eq!(errors(&queued(&mut m[1])), vec![ErrorCode::INTERNAL]);
    let kick = m[1]
        .kicked
        .try_recv()
        .expect("the panicking update's author is closed");
    assert_eq!(kick.code, close::INTERNAL);

    // A newcomer syncs exactly the safe text: the panicking update left nothing behind.
    let mut newcomer = join(&handle, 9, Role::Editor).await;
    let step1 = RoomCmd::SyncStep1 {
        peer_id: 9,
        state_vector: StateVector::default().encode_v1(),
    };
    assert!(handle.send(step1).await.is_ok());
    join(&handle, 100, Role::Viewer).await;
    let doc = new_doc();
    while let Some(o) = newcomer.out.try_recv() {
        if let Out::SyncStep2(state) = o {
            apply_update(&doc, &state, false).expect("applies");
        }
    }
    let text = doc
        .get_or_insert_text(ROOT_TEXT)
        .get_string(&doc.transact());
    assert_eq!(text, a_text);
}

/// Within a burst, each update's dependencies are judged against the document as the updates
/// before it in the batch leave it: an author's consecutive updates pass, an update that skips
/// clocks of its client is refused (1008) before any of it is relayed or stored, and the rest
/// of the batch goes on.
#[tokio::test]
async fn a_burst_refuses_an_update_that_skips_clocks_and_nothing_else() {
    let (handle, mut m) =
        room_with(&[(1, Role::Editor), (2, Role::Editor), (3, Role::Editor)]).await;
    let (a, a_text) = edits(11, &["one ", "two ", "three"]);
    let (b, _) = edits(22, &["bee ", "gap"]);
    for cmd in [
        update(1, 1, a[0].clone()),
        update(2, 1, b[1].clone()), // client 22 from clock 4: clocks 0..4 never came
        update(1, 2, a[1].clone()),
        update(1, 3, a[2].clone()),
    ] {
        assert!(handle.send(cmd).await.is_ok());
    }
    join(&handle, 99, Role::Viewer).await;

    let reader = queued(&mut m[2]);
    assert_eq!(
        text_of(&reader),
        a_text,
        "only the consecutive updates are relayed"
    );
    assert_eq!(acks(&queued(&mut m[0])).last(), Some(&3));
    let gap = queued(&mut m[1]);
    assert_eq!(errors(&gap), vec![ErrorCode::BAD_UPDATE]);
    let kick = m[1].kicked.try_recv().expect("the gap's author is closed");
    assert_eq!(kick.code, close::POLICY);
    assert!(kick.reason.contains("never received"), "{}", kick.reason);
}

#[tokio::test]
async fn a_member_whose_connection_ended_is_forgotten_not_closed_as_slow() {
    let (handle, mut m) = room_with(&[(1, Role::Editor), (2, Role::Editor)]).await;
    let Member { out, mut kicked } = m.remove(1);
    // The connection ended and dropped its queue; its `Leave` has not reached the room yet.
    drop(out);
    let (updates, _) = edits(1, &["a"]);
    let sent = handle.send(update(1, 0, updates[0].clone())).await.is_ok();
    assert!(sent, "the room takes updates");
    // A join is handled after the update: the relay to member 2 has been attempted by now.
    let _later = join(&handle, 3, Role::Viewer).await;
    assert!(
        matches!(
            kicked.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ),
        "forgotten without a 1013 close"
    );
    assert_eq!(
        acks(&queued(&mut m[0])),
        vec![0],
        "the author is still acknowledged"
    );
}
