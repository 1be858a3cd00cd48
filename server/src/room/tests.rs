//! The room core as tables: each step is a command and the effects it must produce, written
//! in a small notation (`2 <- "two"`: member 2 is sent the update that inserted "two";
//! `all but 1 <- ...`: a broadcast; `append "two"`; `1 <- ack 3`; `close 2 1007`). No task,
//! no channel, no sleep: time is a value passed in.
//!
//! The task around the core is checked the same way at the end, synchronously, where what
//! matters is how it carries effects out (members' queues that refuse, appends answered at
//! once).

use super::awareness::{REMOTE_PEER, RemoteEntry};
use super::core::{Cmd, Compaction, Effect, Incoming, Publish, RoomCore};
use super::cursor::CatchUp;
use super::members::Fanout;
use super::task::{RoomCmd, Shell};
use crate::compaction::{Compacted, CompactionPolicy};
use crate::doc::{ROOT_TEXT, apply_update, doc_with_client, new_doc, text_of};
use crate::memory::MemoryStore;
use crate::out::{AwarenessOut, AwarenessSource, AwarenessState, Kick, Out};
use crate::outbox::{self, OutboxRx};
use crate::store::{Seq, StoreError, Stored};
use duet_protocol::{PeerState, Role, RoomName};
use duet_yjs::awareness::peer_state_from_json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Text, Transact};

/// A room core and the names of the updates the test made.
struct Table {
    core: RoomCore,
    names: HashMap<Vec<u8>, String>,
    now: Instant,
}

impl Table {
    fn new() -> Self {
        Self::with_policy(CompactionPolicy::default())
    }

    /// A room loaded empty.
    fn with_policy(policy: CompactionPolicy) -> Self {
        let mut t = Self {
            core: RoomCore::new(RoomName::new("t").expect("valid"), policy, Arc::default()),
            names: HashMap::new(),
            now: Instant::now(),
        };
        t.step(Cmd::Loaded(Ok(Stored::default())), &[]);
        t
    }

    /// A room of a cluster node, loaded from `stored`.
    fn cluster(stored: Stored) -> Self {
        let mut t = Self {
            core: RoomCore::new(
                RoomName::new("t").expect("valid"),
                CompactionPolicy::default(),
                Arc::default(),
            )
            .in_cluster(),
            names: HashMap::new(),
            now: Instant::now(),
        };
        t.step(Cmd::Loaded(Ok(stored)), &[]);
        t
    }

    /// Handles `cmd` and checks its effects, in order.
    #[track_caller]
    fn step(&mut self, cmd: Cmd, expected: &[&str]) -> Vec<Effect> {
        let fx = self.core.handle(cmd, self.now);
        let got: Vec<String> = fx.iter().map(|e| self.describe(e)).collect();
        assert_eq!(got, expected);
        fx
    }

    /// Successive inserts by yrs client `client`, each its own update, named by its text.
    fn edits<const N: usize>(&mut self, client: u64, texts: [&str; N]) -> [Vec<u8>; N] {
        let doc = doc_with_client(client);
        let text = doc.get_or_insert_text(ROOT_TEXT);
        texts.map(|t| {
            let before = doc.transact().state_vector();
            let len = text.len(&doc.transact());
            text.insert(&mut doc.transact_mut(), len, t);
            let update = doc.transact().encode_diff_v1(&before);
            self.names.insert(update.clone(), format!("{t:?}"));
            update
        })
    }

    fn name(&self, update: &[u8]) -> String {
        self.names
            .get(update)
            .cloned()
            .unwrap_or_else(|| format!("{} bytes", update.len()))
    }

    fn describe(&self, effect: &Effect) -> String {
        match effect {
            Effect::Send { to, out } => format!("{to} <- {}", self.out(out)),
            Effect::Broadcast { except: None, out } => format!("all <- {}", self.out(out)),
            Effect::Broadcast {
                except: Some(a),
                out,
            } => format!("all but {a} <- {}", self.out(out)),
            Effect::Ack { to, seq } => format!("{to} <- ack {seq}"),
            Effect::Kick { peer_id, kick } => format!("close {peer_id} {}", kick.code),
            Effect::Append(u) => format!("append {}", self.name(u.raw())),
            Effect::Compact(Compaction::Live { covers, .. }) => format!("compact live to {covers}"),
            Effect::Compact(Compaction::FromStore) => "compact from the store".into(),
            Effect::Reload { retry } => {
                let names: Vec<String> = retry.iter().map(|i| self.name(&i.update)).collect();
                format!("reload, then {}", names.join(" "))
                    .trim_end()
                    .to_owned()
            }
            Effect::Publish(Publish::Awareness(entries)) => {
                format!("publish {}", self.awareness(entries))
            }
            Effect::Publish(Publish::Digest(_)) => "publish digest".into(),
            Effect::CatchUp { after, delay } if delay.is_zero() => {
                format!("read the log after {after}")
            }
            Effect::CatchUp { after, delay } => {
                format!("read the log after {after} in {} ms", delay.as_millis())
            }
            Effect::Settle { clients } => format!("settle {clients:?}"),
        }
    }

    fn awareness(&self, entries: &[AwarenessOut]) -> String {
        let mut named: Vec<String> = entries
            .iter()
            .map(|e| match &e.state {
                Some(s) => format!("{}={}", e.client_id, s.as_typed(peer_state_from_json).name),
                None => format!("{}=gone", e.client_id),
            })
            .collect();
        named.sort();
        format!("awareness {}", named.join(" "))
    }

    fn out(&self, out: &Out) -> String {
        match out {
            Out::SyncStep1(_) => "step1".into(),
            Out::SyncStep2(state) => {
                let doc = new_doc();
                apply_update(&doc, state, false).expect("a sync step 2 applies");
                format!("step2 {:?}", text_of(&doc))
            }
            Out::Update(u) => self.name(u.raw()),
            Out::Awareness(entries) => {
                let mut named: Vec<String> = entries
                    .iter()
                    .map(|e| match &e.state {
                        Some(s) => {
                            format!("{}={}", e.client_id, s.as_typed(peer_state_from_json).name)
                        }
                        None => format!("{}=gone", e.client_id),
                    })
                    .collect();
                named.sort();
                format!("awareness {}", named.join(" "))
            }
            Out::Ack(seq) => format!("ack {seq}"),
            Out::Error(code, _) => format!("error {}", code.0),
        }
    }

    fn join(&mut self, peer_id: u64, role: Role) {
        self.step(
            Cmd::Join {
                peer_id,
                role,
                echo_awareness: false,
            },
            &[&format!("{peer_id} <- step1")],
        );
    }
}

fn join(peer_id: u64, role: Role, echo_awareness: bool) -> Cmd {
    Cmd::Join {
        peer_id,
        role,
        echo_awareness,
    }
}

fn inc(peer_id: u64, seq: u64, update: &[u8]) -> Incoming {
    Incoming {
        peer_id,
        seq: Some(seq),
        update: update.to_vec(),
        arrived: Instant::now(),
    }
}

fn updates(items: &[(u64, u64, &[u8])]) -> Cmd {
    Cmd::Updates(items.iter().map(|(p, s, u)| inc(*p, *s, u)).collect())
}

fn stored(seq: u64) -> Cmd {
    Cmd::Stored(Ok(Seq(seq)))
}

fn named(name: &str) -> AwarenessSource {
    AwarenessSource::Duet(Some(PeerState {
        name: name.into(),
        color: "#30bced".into(),
        cursor: None,
        location: None,
    }))
}

#[test]
fn a_joiner_gets_the_state_vector_then_syncs_the_document() {
    let mut t = Table::new();
    t.join(1, Role::Editor);
    let [one] = t.edits(11, ["one"]);
    t.step(
        updates(&[(1, 1, &one)]),
        &["all but 1 <- \"one\"", "append \"one\""],
    );
    t.step(join(2, Role::Viewer, false), &["2 <- step1"]);
    let empty = StateVector::default().encode_v1();
    t.step(
        Cmd::SyncStep1 {
            peer_id: 2,
            state_vector: empty,
        },
        &["2 <- step2 \"one\""],
    );
    t.step(
        Cmd::SyncStep1 {
            peer_id: 2,
            state_vector: vec![0xff, 0xff, 0xff],
        },
        &["2 <- error 2", "close 2 1007"],
    );
}

/// The updates waiting in a room's inbox are applied in one transaction, and every author
/// still gets exactly what it would get for its updates one at a time.
#[test]
fn a_burst_is_answered_per_update_in_order() {
    let mut t = Table::new();
    for (peer, role) in [
        (1, Role::Editor),
        (2, Role::Editor),
        (3, Role::Viewer),
        (4, Role::Editor),
    ] {
        t.join(peer, role);
    }
    let [a1, a2, a3] = t.edits(11, ["one ", "two ", "three"]);
    let [b] = t.edits(22, ["bee"]);
    let [v] = t.edits(33, ["viewer"]);
    t.step(
        updates(&[
            (1, 1, &a1),
            (2, 1, &[0xff, 0xff, 0xff]),
            (1, 2, &a2),
            (3, 1, &v),
            (2, 2, &b), // its author was closed earlier in the burst: ignored
            (1, 3, &a3),
        ]),
        &[
            "all but 1 <- \"one \"",
            "append \"one \"",
            "2 <- error 2",
            "close 2 1007",
            "all but 1 <- \"two \"",
            "append \"two \"",
            "3 <- error 3", // a viewer is told, not closed
            "all but 1 <- \"three\"",
            "append \"three\"",
        ],
    );
    // Acknowledged once stored, each in turn.
    t.step(stored(1), &["1 <- ack 1"]);
    t.step(stored(2), &["1 <- ack 2"]);
    t.step(stored(3), &["1 <- ack 3"]);
}

/// Within a burst, each update's dependencies are judged against the document as the
/// updates before it leave it: an author's consecutive updates pass, an update that skips
/// clocks of its client is refused (1008) before any of it is relayed or stored.
#[test]
fn a_burst_refuses_an_update_that_skips_clocks_and_nothing_else() {
    let mut t = Table::new();
    t.join(1, Role::Editor);
    t.join(2, Role::Editor);
    let [a1, a2] = t.edits(11, ["one ", "two"]);
    let [_, b2] = t.edits(22, ["bee ", "gap"]);
    t.step(
        updates(&[(1, 1, &a1), (2, 1, &b2), (1, 2, &a2)]),
        &[
            "all but 1 <- \"one \"",
            "append \"one \"",
            "2 <- error 2",
            "close 2 1008",
            "all but 1 <- \"two\"",
            "append \"two\"",
        ],
    );
}

/// When yrs panics inside a batch, the room asks for a reload and the batch back one update
/// at a time: only the update that panics is refused (1011); the others are relayed, stored
/// and acknowledged as if nothing happened.
#[test]
fn a_panic_inside_a_burst_refuses_only_its_update() {
    crate::contain::failpoint::arm_for_tests();
    let mut t = Table::new();
    t.join(1, Role::Editor);
    t.join(2, Role::Editor);
    t.join(3, Role::Editor);
    let [a1, a2] = t.edits(11, ["safe ", "and sound"]);
    let marker = std::str::from_utf8(crate::contain::failpoint::MARKER).expect("ascii");
    let [b] = t.edits(22, [marker]);
    let burst = updates(&[(1, 1, &a1), (2, 1, &b), (1, 2, &a2)]);
    let reload = format!("reload, then \"safe \" {marker:?} \"and sound\"");
    t.step(burst, &[&reload]);
    assert!(t.core.needs_reload());
    // What the task does: reload from the store (which holds nothing of the burst)...
    t.step(Cmd::Loaded(Ok(Stored::default())), &[]);
    // ...then hands the burst back one update at a time.
    t.step(
        updates(&[(1, 1, &a1)]),
        &["all but 1 <- \"safe \"", "append \"safe \""],
    );
    t.step(
        updates(&[(2, 1, &b)]),
        &["2 <- error 7", "close 2 1011", "reload, then"],
    );
    t.step(stored(1), &["1 <- ack 1"]);
    t.step(
        Cmd::Loaded(Ok(Stored {
            updates: vec![a1.clone()],
            head: Seq(1),
        })),
        &[],
    );
    t.step(
        updates(&[(1, 2, &a2)]),
        &["all but 1 <- \"and sound\"", "append \"and sound\""],
    );
    t.step(stored(2), &["1 <- ack 2"]);
    // A newcomer syncs exactly the safe text: the panicking update left nothing behind.
    t.join(9, Role::Viewer);
    t.step(
        Cmd::SyncStep1 {
            peer_id: 9,
            state_vector: StateVector::default().encode_v1(),
        },
        &["9 <- step2 \"safe and sound\""],
    );
}

/// An acknowledgement covers every earlier seq, so it waits for the appends before it, even
/// for an update that needed no append; once an append fails, nothing more is acknowledged
/// and every member is told and closed (1013) to rejoin a room loaded from storage.
#[test]
fn acknowledgements_wait_for_storage_and_stop_when_it_fails() {
    let mut t = Table::new();
    t.join(1, Role::Editor);
    t.join(2, Role::Editor);
    let [a1, a2] = t.edits(11, ["one", "two"]);
    t.step(
        updates(&[(1, 1, &a1)]),
        &["all but 1 <- \"one\"", "append \"one\""],
    );
    // Nothing to store (the empty update every client sends when it syncs): acknowledged
    // behind the append still in flight.
    t.step(updates(&[(2, 5, &[0, 0])]), &[]);
    t.step(stored(1), &["1 <- ack 1", "2 <- ack 5"]);
    t.step(
        updates(&[(1, 2, &a2)]),
        &["all but 1 <- \"two\"", "append \"two\""],
    );
    t.step(
        Cmd::Stored(Err(StoreError::Unavailable("disk full".into()))),
        &[
            "1 <- error 4",
            "close 1 1013",
            "2 <- error 4",
            "close 2 1013",
        ],
    );
    assert!(t.core.refuses_writes().is_some());
}

/// Updates from elsewhere (another node, the log) are applied and relayed to every member,
/// never stored; one that arrives before an update it depends on waits, and both go out, in
/// order, once the missing one arrives.
#[test]
fn remote_updates_are_relayed_not_stored_and_wait_for_their_dependencies() {
    let mut t = Table::new();
    t.join(1, Role::Editor);
    t.join(2, Role::Editor);
    let [r1, r2, r3] = t.edits(44, ["far ", "away ", "node"]);
    t.step(Cmd::Remote { update: r1 }, &["all <- \"far \""]);
    t.step(Cmd::Remote { update: r3 }, &[]);
    t.step(
        Cmd::Remote { update: r2 },
        &["all <- \"away \"", "all <- \"node\""],
    );
    t.step(
        Cmd::Remote {
            update: vec![0xff, 0xff, 0xff],
        },
        &[],
    );
    // A member's edit on top of them is relayed and stored as usual.
    t.join(3, Role::Viewer);
    t.step(
        Cmd::SyncStep1 {
            peer_id: 3,
            state_vector: StateVector::default().encode_v1(),
        },
        &["3 <- step2 \"far away node\""],
    );
}

#[test]
fn awareness_belongs_to_its_connection_and_leaves_with_it() {
    let mut t = Table::new();
    t.join(1, Role::Editor);
    t.step(join(2, Role::Editor, true), &["2 <- step1"]);
    let set = |peer_id, client_id, name: &str| Cmd::Awareness {
        peer_id,
        client_id,
        source: named(name),
    };
    t.step(set(1, 100, "ada"), &["all but 1 <- awareness 100=ada"]);
    // A Yjs client (echo) gets its own entry back too.
    t.step(set(2, 200, "bob"), &["all <- awareness 200=bob"]);
    t.step(set(2, 100, "eve"), &["2 <- error 5"]);
    t.step(
        join(3, Role::Viewer, false),
        &["3 <- step1", "3 <- awareness 100=ada 200=bob"],
    );
    t.step(Cmd::Leave { peer_id: 1 }, &["all <- awareness 100=gone"]);
    t.step(
        Cmd::QueryAwareness { peer_id: 3 },
        &["3 <- awareness 200=bob"],
    );
    // Renewed entries stay; the others expire after 30 s.
    t.now += Duration::from_secs(20);
    t.step(set(2, 200, "bob"), &["all <- awareness 200=bob"]);
    t.step(set(3, 300, "cy"), &["all but 3 <- awareness 300=cy"]);
    t.now += Duration::from_secs(20);
    t.step(Cmd::Tick, &[]);
    t.now += Duration::from_secs(15);
    t.step(Cmd::Tick, &["all <- awareness 200=gone 300=gone"]);
    // A Yjs client's older clock is stale, unless it clears the state.
    let yjs = |clock, json: Option<&str>| Cmd::Awareness {
        peer_id: 2,
        client_id: 201,
        source: AwarenessSource::Yjs {
            json: json.map(Arc::from),
            clock,
        },
    };
    t.step(
        yjs(5, Some(r#"{"user":{"name":"yan"}}"#)),
        &["all <- awareness 201=yan"],
    );
    t.step(yjs(4, Some(r#"{"user":{"name":"old"}}"#)), &[]);
    t.step(yjs(4, None), &["all <- awareness 201=gone"]);
}

/// The room offers its live document as a snapshot once the log has grown enough, covering
/// the last stored seq; when its appends' seqs show someone else appended in between, it can
/// prove nothing and asks for a merge from the store instead.
#[test]
fn compaction_is_offered_from_the_live_document_while_the_room_can_prove_it() {
    let policy = CompactionPolicy {
        after_rows: 3,
        after_bytes: 1 << 20,
    };
    let mut t = Table::with_policy(policy);
    t.join(1, Role::Editor);
    let [a, b, c, d, e, f] = t.edits(11, ["a", "b", "c", "d", "e", "f"]);
    for (i, u) in [&a, &b, &c].into_iter().enumerate() {
        let seq = i as u64 + 1;
        let name = t.name(u);
        let relayed = format!("all but 1 <- {name}");
        t.step(
            updates(&[(1, seq, u)]),
            &[&relayed, &format!("append {name}")],
        );
    }
    t.step(stored(1), &["1 <- ack 1"]);
    t.step(stored(2), &["1 <- ack 2"]);
    t.step(stored(3), &["1 <- ack 3", "compact live to 3"]);
    t.step(
        Cmd::Compacted(Ok(Compacted {
            stored: true,
            state_bytes: 1,
        })),
        &[],
    );
    // Another writer took seq 7 and 8: the room's appends come back as 9, 10, 11.
    for (i, u) in [&d, &e, &f].into_iter().enumerate() {
        let name = t.name(u);
        let relayed = format!("all but 1 <- {name}");
        t.step(
            updates(&[(1, i as u64 + 4, u)]),
            &[&relayed, &format!("append {name}")],
        );
    }
    t.step(stored(9), &["1 <- ack 4"]);
    t.step(stored(10), &["1 <- ack 5"]);
    t.step(stored(11), &["1 <- ack 6", "compact from the store"]);
}

#[test]
fn a_room_that_did_not_load_refuses_everyone() {
    let mut t = Table::new();
    // Storage out of reach: told to retry later (1013), and the room unloads so that a later
    // join loads it again.
    t.step(
        Cmd::Loaded(Err(StoreError::Unavailable("disk gone".into()))),
        &[],
    );
    t.step(
        join(1, Role::Editor, false),
        &["1 <- error 4", "close 1 1013"],
    );
    assert!(t.core.load_unavailable());
    // A damaged document: the room stays, refusing (1011), until it unloads.
    t.step(
        Cmd::Loaded(Err(StoreError::Corrupt {
            room: "t".into(),
            reason: "bad row".into(),
        })),
        &[],
    );
    t.step(
        join(2, Role::Editor, false),
        &["2 <- error 6", "close 2 1011"],
    );
    assert!(!t.core.load_unavailable());
}

fn remote(client_id: u64, clock: u32, name: Option<&str>) -> RemoteEntry {
    RemoteEntry {
        client_id,
        clock,
        role: Role::Editor,
        state: name.map(|n| {
            AwarenessState::typed(PeerState {
                name: n.into(),
                color: "#30bced".into(),
                cursor: None,
                location: None,
            })
        }),
    }
}

/// In a cluster the room tells the other nodes what its members set (and only that), takes
/// theirs as entries owned by their node, gives a joiner all of them, and drops a node's
/// entries when the node is gone. A client that comes here from another node takes its entry
/// over.
#[test]
fn cluster_awareness_crosses_nodes_and_leaves_with_them() {
    let mut t = Table::cluster(Stored::default());
    t.join(1, Role::Editor);
    let set = |peer_id, client_id, name: &str| Cmd::Awareness {
        peer_id,
        client_id,
        source: named(name),
    };
    t.step(
        set(1, 100, "ada"),
        &[
            "all but 1 <- awareness 100=ada",
            "publish awareness 100=ada",
        ],
    );
    let from = |node, entries| Cmd::NodeAwareness { node, entries };
    t.step(
        from(
            7,
            vec![remote(500, 3, Some("zed")), remote(501, 1, Some("yu"))],
        ),
        &["all <- awareness 500=zed 501=yu"],
    );
    // The same clock again (a node answering a query), or an older one: nothing new.
    t.step(from(7, vec![remote(500, 3, Some("zed"))]), &[]);
    t.step(from(7, vec![remote(500, 2, Some("old"))]), &[]);
    t.step(
        from(7, vec![remote(500, 4, Some("zed2"))]),
        &["all <- awareness 500=zed2"],
    );
    // Another node cannot change a member's entry here.
    t.step(from(8, vec![remote(100, 9, Some("eve"))]), &[]);
    // A joiner sees everyone, duet clients see remote members under their own peer ids.
    t.step(
        join(2, Role::Editor, false),
        &["2 <- step1", "2 <- awareness 100=ada 500=zed2 501=yu"],
    );
    let fx = t.core.handle(Cmd::QueryAwareness { peer_id: 2 }, t.now);
    let Some(Effect::Send {
        out: Out::Awareness(all),
        ..
    }) = fx.first()
    else {
        panic!("awareness expected");
    };
    let zed = all
        .iter()
        .find(|e| e.client_id == 500)
        .expect("remote entry");
    assert_eq!(zed.peer_id, REMOTE_PEER | 500);
    // Another node loading the room asks: only this node's members' entries are told.
    t.step(Cmd::AwarenessQuery, &["publish awareness 100=ada"]);
    // Client 501 reconnects here (its node died): its own connection takes the entry over.
    t.step(
        set(2, 501, "yu"),
        &["all but 2 <- awareness 501=yu", "publish awareness 501=yu"],
    );
    t.step(Cmd::NodeGone { node: 7 }, &["all <- awareness 500=gone"]);
    t.step(
        Cmd::Leave { peer_id: 2 },
        &["all <- awareness 501=gone", "publish awareness 501=gone"],
    );
    // Expiry tells the other nodes only about the members' own entries.
    t.step(
        from(9, vec![remote(900, 1, Some("far"))]),
        &["all <- awareness 900=far"],
    );
    t.now += Duration::from_secs(31);
    t.step(
        Cmd::Tick,
        &[
            "all <- awareness 100=gone 900=gone",
            "publish awareness 100=gone",
        ],
    );
}

/// The cursor: everything up to it is in the document. The bus brings other nodes' updates
/// without log positions; a read past the cursor (asked for by a gap, a head past it, ...)
/// brings them again as no-ops, plus whatever the bus lost, which is relayed now. Own appends
/// move the cursor only while contiguous.
#[test]
fn the_log_repairs_what_the_bus_lost_and_the_cursor_follows() {
    let mut t = Table::new();
    let [a1, a2] = t.edits(11, ["one ", "two "]);
    let [b1, b2, b3] = t.edits(22, ["far ", "away ", "node "]);
    let mut t = Table::cluster(Stored {
        updates: vec![a1.clone(), a2.clone()],
        head: Seq(2),
    });
    t.names.extend(
        [(&b1, "\"far \""), (&b2, "\"away \""), (&b3, "\"node \"")]
            .map(|(u, n)| (u.clone(), n.to_owned())),
    );
    t.join(1, Role::Editor);
    // b1 arrives by the bus; b2 is lost on it.
    t.step(
        Cmd::FromNode {
            node: 7,
            update: b1.clone(),
        },
        &["all <- \"far \""],
    );
    t.step(Cmd::Head(Seq(2)), &[]);
    t.step(Cmd::Head(Seq(4)), &["read the log after 2"]);
    // One read at a time: a gap noticed meanwhile makes another follow.
    t.step(Cmd::Behind(CatchUp::Gap), &[]);
    t.step(
        Cmd::CaughtUp(Ok(Stored {
            updates: vec![b1.clone(), b2.clone()],
            head: Seq(4),
        })),
        &["all <- \"away \"", "read the log after 4"],
    );
    // The gap was a loss on the bus, whose origin may not have stored it yet: once the reads
    // settle, one more follows later.
    t.step(
        Cmd::CaughtUp(Ok(Stored::default())),
        &["read the log after 4 in 500 ms"],
    );
    t.step(Cmd::CaughtUp(Ok(Stored::default())), &[]);
    assert_eq!(t.core.cursor(), Seq(4));
    // A member's update is stored at 6: row 5 is another node's, so the cursor waits.
    let [c1] = t.edits(33, ["mine "]);
    t.step(
        updates(&[(1, 1, &c1)]),
        &["all but 1 <- \"mine \"", "append \"mine \""],
    );
    t.step(stored(6), &["1 <- ack 1"]);
    assert_eq!(t.core.cursor(), Seq(4));
    t.step(Cmd::Head(Seq(6)), &["read the log after 4"]);
    t.step(
        Cmd::CaughtUp(Ok(Stored {
            updates: vec![b3.clone(), c1.clone()],
            head: Seq(6),
        })),
        &["all <- \"node \""],
    );
    assert_eq!(t.core.cursor(), Seq(6));
    // A failed read is tried again at the next reason.
    t.step(Cmd::Head(Seq(7)), &["read the log after 6"]);
    t.step(
        Cmd::CaughtUp(Err(StoreError::Unavailable("down".into()))),
        &[],
    );
    t.step(Cmd::Behind(CatchUp::Lagged), &["read the log after 6"]);
    // The reads a late message of the bus asks for bring what it lost, stored meanwhile.
    let [b4] = t.edits(44, ["late "]);
    t.step(
        Cmd::CaughtUp(Ok(Stored::default())),
        &["read the log after 6 in 500 ms"],
    );
    t.step(
        Cmd::CaughtUp(Ok(Stored {
            updates: vec![b4.clone()],
            head: Seq(7),
        })),
        &["all <- \"late \""],
    );
    assert_eq!(t.core.cursor(), Seq(7));
    // A joiner gets the whole text.
    t.join(2, Role::Viewer);
    t.step(
        Cmd::SyncStep1 {
            peer_id: 2,
            state_vector: StateVector::default().encode_v1(),
        },
        &["2 <- step2 \"one two far away node mine late \""],
    );
}

/// Digests: a room with members publishes its state vector; another node's that holds more
/// sends the room to its log, and a second one in a row to the whole log.
#[test]
fn a_digest_holding_more_sends_the_room_to_its_log() {
    let mut t = Table::cluster(Stored::default());
    t.step(Cmd::DigestTick, &[]);
    t.join(1, Role::Editor);
    t.step(Cmd::DigestTick, &["publish digest"]);
    let [x] = t.edits(44, ["x"]);
    let theirs = {
        let doc = doc_with_client(1);
        apply_update(&doc, &x, false).expect("applies");
        doc.transact().state_vector().encode_v1()
    };
    let digest = |sv: &[u8]| Cmd::Digest {
        state_vector: sv.to_vec(),
    };
    t.step(digest(&StateVector::default().encode_v1()), &[]);
    t.step(digest(&theirs), &["read the log after 0"]);
    t.step(Cmd::CaughtUp(Ok(Stored::default())), &[]);
    t.step(digest(&theirs), &["read the log after 0"]);
    t.step(Cmd::CaughtUp(Ok(Stored::default())), &[]);
    t.step(digest(&[0xff, 0xff]), &[]);
    // Once it holds as much, nothing more.
    t.step(
        Cmd::FromNode {
            node: 3,
            update: x.clone(),
        },
        &["all <- \"x\""],
    );
    t.step(digest(&theirs), &[]);
}

/// A node that is gone may have relayed updates it never stored (killed between relay and
/// commit, its author gone too): the room reads the log, and stores from here what of that
/// node's clients the log lacks, as an update of its own that no one is acknowledged for.
#[test]
fn what_a_gone_node_relayed_but_never_stored_is_stored_from_here() {
    let mut t = Table::cluster(Stored::default());
    t.join(1, Role::Editor);
    let [b1, b2] = t.edits(22, ["kept ", "relayed only"]);
    let [c1] = t.edits(33, ["other node "]);
    for (node, u) in [(7, &b1), (7, &b2), (8, &c1)] {
        let name = t.name(u);
        t.step(
            Cmd::FromNode {
                node,
                update: u.clone(),
            },
            &[&format!("all <- {name}")],
        );
    }
    t.step(Cmd::NodeGone { node: 9 }, &[]);
    t.step(Cmd::NodeGone { node: 7 }, &["settle [22]"]);
    // The log holds b1 (stored by node 7 before it died) but not b2; c1 is still on its way
    // to the log from node 8, and is not node 7's to settle.
    let log = new_doc();
    apply_update(&log, &b1, false).expect("applies");
    let fx = t.core.handle(
        Cmd::Settle {
            log: Ok(log),
            clients: vec![22],
        },
        t.now,
    );
    let [Effect::Append(stored_here)] = fx.as_slice() else {
        panic!("one append expected");
    };
    let check = new_doc();
    apply_update(&check, &b1, false).expect("applies");
    apply_update(&check, stored_here.raw(), false).expect("applies");
    assert_eq!(text_of(&check), "kept relayed only", "b2 and nothing of c1");
    // Nobody is acknowledged for it.
    t.step(stored(1), &[]);
    // Again with a log that has everything: nothing to store.
    let log = new_doc();
    for u in [&b1, &b2] {
        apply_update(&log, u, false).expect("applies");
    }
    t.step(
        Cmd::Settle {
            log: Ok(log),
            clients: vec![22],
        },
        &[],
    );
}

/// A member joining a cluster room is told what the log holds, not what the document holds:
/// an edit that only another node's relay brought (that node may die before storing it) is
/// sent again by a client that has it, stored from here, and only then acknowledged.
#[test]
fn a_joiner_is_told_the_logs_state_vector_and_sends_again_what_only_a_relay_carried() {
    let mut t = Table::new();
    let [a1] = t.edits(11, ["stored "]);
    let [b1] = t.edits(22, ["relayed "]);
    let mut t = Table::cluster(Stored {
        updates: vec![a1.clone()],
        head: Seq(1),
    });
    t.names.insert(b1.clone(), "\"relayed \"".into());
    t.step(
        Cmd::FromNode {
            node: 7,
            update: b1.clone(),
        },
        &["all <- \"relayed \""],
    );
    let fx = t.core.handle(join(1, Role::Editor, false), t.now);
    let [
        Effect::Send {
            out: Out::SyncStep1(sv),
            ..
        },
    ] = fx.as_slice()
    else {
        panic!("a step 1 expected");
    };
    let sv = crate::doc::decode_state_vector(sv).expect("a state vector");
    let told: Vec<(u64, u32)> = sv.iter().map(|(c, k)| (c.get(), *k)).collect();
    assert_eq!(told, [(11, 7)], "the log's, without the relayed edit");
    // The client (which has b1) answers against it: b1 comes back, is stored and acknowledged.
    t.step(
        updates(&[(1, 1, &b1)]),
        &["all but 1 <- \"relayed \"", "append \"relayed \""],
    );
    t.step(stored(2), &["1 <- ack 1"]);
    // Stored: the next joiner is told so.
    let fx = t.core.handle(join(2, Role::Editor, false), t.now);
    let [
        Effect::Send {
            out: Out::SyncStep1(sv),
            ..
        },
    ] = fx.as_slice()
    else {
        panic!("a step 1 expected");
    };
    let sv = crate::doc::decode_state_vector(sv).expect("a state vector");
    assert_eq!(sv.get(&yrs::block::ClientID::new(22)), 8);
}

/// A room of a single server never talks to other nodes.
#[test]
fn a_single_node_room_publishes_nothing_and_never_reads_past_a_cursor() {
    let mut t = Table::new();
    t.join(1, Role::Editor);
    t.step(
        Cmd::Awareness {
            peer_id: 1,
            client_id: 100,
            source: named("ada"),
        },
        &["all but 1 <- awareness 100=ada"],
    );
    t.step(Cmd::DigestTick, &[]);
    t.step(Cmd::Head(Seq(9)), &[]);
    t.step(Cmd::Behind(CatchUp::Gap), &[]);
    t.step(Cmd::AwarenessQuery, &[]);
}

/// The task carries the core's effects out on members' queues: a member whose connection
/// ended (its queue dropped, its `Leave` still on the way) is forgotten quietly, while one
/// whose queue is full is closed with 1013; the memory store's appends are acknowledged at
/// once.
#[test]
fn the_task_forgets_ended_members_and_closes_slow_ones() {
    let mut shell = Shell::new(
        RoomCore::new(
            RoomName::new("t").expect("valid"),
            CompactionPolicy::default(),
            Arc::default(),
        ),
        Arc::new(MemoryStore::default()),
    );
    shell.feed(Cmd::Loaded(Ok(Stored::default())));
    let mut member = |peer_id: u64, messages: usize| {
        let limits = crate::outbox::OutboxLimits {
            messages,
            bytes: 1 << 20,
        };
        let join = RoomCmd::join(peer_id, Role::Editor, false, limits, Arc::default());
        shell.command(join.cmd, &mut Default::default());
        (join.rx, join.kicked)
    };
    let (mut writer, _) = member(1, 64);
    let (gone, mut gone_kicked) = member(2, 64);
    let (_slow, mut slow_kicked) = member(3, 1); // its step1 fills it
    drop(gone);
    let doc = doc_with_client(5);
    doc.get_or_insert_text(ROOT_TEXT)
        .insert(&mut doc.transact_mut(), 0, "a");
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let update = RoomCmd::Update(inc(1, 7, &update));
    shell.command(update, &mut Default::default());
    assert!(
        matches!(
            gone_kicked.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ),
        "forgotten without a close"
    );
    let kick: Kick = slow_kicked.try_recv().expect("the slow member is closed");
    assert_eq!(kick.code, duet_protocol::close::TRY_AGAIN_LATER);
    let got: Vec<String> = std::iter::from_fn(|| writer.try_recv())
        .map(|o| match o {
            Out::SyncStep1(_) => "step1".to_owned(),
            Out::Ack(seq) => format!("ack {seq}"),
            _ => "other".to_owned(),
        })
        .collect();
    assert_eq!(
        got,
        ["step1", "ack 7"],
        "acknowledged at once by the memory store"
    );
    assert!(shell.fanout_is(&[1]));
}

/// Checks the fan-out on its own: a dropped queue is gone, not full.
#[test]
fn a_dropped_queue_is_reported_gone() {
    let mut fanout = Fanout::default();
    let (tx, rx): (_, OutboxRx) = outbox::channel(
        crate::outbox::OutboxLimits {
            messages: 4,
            bytes: 1 << 20,
        },
        Arc::default(),
    );
    let (kick, _) = oneshot::channel();
    fanout.add(1, tx, kick);
    assert!(fanout.send(1, Out::Ack(1)).is_ok());
    drop(rx);
    assert_eq!(
        fanout.send(1, Out::Ack(2)),
        Err(crate::outbox::Refused::Gone)
    );
    assert_eq!(
        fanout.broadcast(None, &Out::Ack(3)),
        [(1, crate::outbox::Refused::Gone)]
    );
}
