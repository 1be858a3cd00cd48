//! Nothing one member sends reaches another unless a stock client of the receiving protocol
//! can parse it: hostile awareness entries and updates, sent raw on both protocols into rooms
//! where real y-websocket clients (node) and duet clients edit. A stock Yjs client throws on
//! what it cannot parse and, in node, nothing catches: the process exits. So these tests fail
//! when any client process dies or the honest clients stop converging.

use duet_e2e::clients::start;
use duet_e2e::node::{NodeClient, all_converge};
use duet_e2e::raw::{Ended, RawClient};
use duet_e2e::server::ServerProcess;
use duet_e2e::yraw::{self, End};
use duet_e2e::{eventually, unique_room};
use duet_protocol::{ClientMsg, CursorState, PeerState, close};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The frame of issue 15: one awareness entry, client 777, clock 1, state `S` (not JSON).
/// Relayed as it was, it made y-protocols' `JSON.parse` throw in every Yjs client of the room.
const BUG_FRAME: [u8; 8] = [0x01, 0x06, 0x01, 0x89, 0x06, 0x01, 0x01, 0x53];

/// The names a Yjs client sees in its awareness (other than its own).
fn yjs_peer_names(y: &mut NodeClient) -> anyhow::Result<BTreeSet<String>> {
    Ok(y.peers()?
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("<no name>").to_owned())
        .collect())
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn peer_state(name: &str, anchor: Vec<u8>) -> PeerState {
    PeerState {
        name: name.into(),
        color: "#ff0000".into(),
        cursor: Some(CursorState {
            anchor: anchor.into(),
            // A sticky index on the root text: valid.
            head: vec![1, 7, b'c', b'o', b'n', b't', b'e', b'n', b't', 0].into(),
        }),
        location: None,
    }
}

/// The bug's frame, and every other awareness entry a stock client cannot read, closes its
/// sender with 1007 and a reason, on both protocols; no Yjs client in the room (nor one joining
/// later) notices, and no such entry is in the room's awareness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_awareness_entry_closes_its_sender_1007_and_reaches_no_one()
-> anyhow::Result<()> {
    let server = ServerProcess::start(&["--max-handshakes-per-sec", "1000"])?;
    let url = server.url();
    let room = unique_room("aware");
    let mut yjs = vec![
        NodeClient::start(&url, room.as_str(), "ya", "#30bced")?,
        NodeClient::start(&url, room.as_str(), "yb", "#6eeb83")?,
    ];
    for y in yjs.iter_mut() {
        y.synced()?;
    }
    let duet = vec![start(&url, &room, "d1")];
    yjs[0].insert(0, "before ")?;
    all_converge(&mut yjs, &duet, T).await?;
    let honest = names(&["ya", "yb", "d1"]);
    eventually("ya to see yb and d1", T, || {
        yjs_peer_names(&mut yjs[0])
            .ok()
            .filter(|n| *n == names(&["yb", "d1"]))
    })
    .await?;

    // y-websocket frames, each on its own connection.
    let nested = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024)).into_bytes();
    let valid = br##"{"user":{"name":"half","color":"#000000"}}"##;
    let yjs_attacks: Vec<(&str, Vec<u8>, &str)> = vec![
        ("the bug's frame", BUG_FRAME.to_vec(), "not JSON"),
        (
            "a number",
            yraw::awareness(&[(778, 1, b"1")]),
            "object or null",
        ),
        (
            "a string",
            yraw::awareness(&[(778, 1, b"\"S\"")]),
            "object or null",
        ),
        (
            "an array",
            yraw::awareness(&[(778, 1, b"[]")]),
            "object or null",
        ),
        (
            "truncated JSON",
            yraw::awareness(&[(778, 1, b"{\"user\":")]),
            "not JSON",
        ),
        (
            "nested 40 deep",
            yraw::awareness(&[(778, 1, &nested(40))]),
            "nested deeper",
        ),
        ("70 KiB", yraw::awareness(&[(778, 1, &big)]), "limit"),
        (
            "a client id past 2^53",
            yraw::awareness(&[(1 << 60, 1, valid)]),
            "2^53",
        ),
        (
            "a valid entry, then a bad one",
            yraw::awareness(&[(4242, 1, valid), (4243, 1, b"S")]),
            "not JSON",
        ),
    ];
    for (what, frame, why) in &yjs_attacks {
        let mut ws = yraw::connect(&url, room.as_str()).await?;
        yraw::send(&mut ws, frame.clone()).await?;
        let end = yraw::until_end(&mut ws, T).await?;
        assert!(
            matches!(&end, End::Closed(code, reason) if *code == close::INVALID_PAYLOAD.0 && reason.contains(why)),
            "yjs, {what}: {end:?}"
        );
    }

    // duet's protocol: the typed state becomes JSON for Yjs clients; its strings, cursors and client
    // id are checked as those clients (and duet clients) will read them.
    let good_sticky = vec![1, 7, b'c', b'o', b'n', b't', b'e', b'n', b't', 0];
    let duet_attacks: Vec<(&str, u64, PeerState, &str)> = vec![
        (
            "a client id past 2^53",
            1 << 60,
            peer_state("evil", good_sticky.clone()),
            "2^53",
        ),
        (
            "a 300-byte name",
            779,
            peer_state(&"n".repeat(300), good_sticky.clone()),
            "name",
        ),
        (
            "a cursor that is no sticky index",
            779,
            peer_state("evil", vec![9, 9, 9]),
            "cursor anchor",
        ),
    ];
    for (what, client_id, state, why) in duet_attacks {
        let mut c = RawClient::connect(&url, room.as_str()).await?;
        c.send(&ClientMsg::Awareness {
            client_id,
            state: Some(state),
        })
        .await?;
        let ended = c.until_end(T).await?;
        assert!(
            matches!(&ended, Ended::Closed { code: close::INVALID_PAYLOAD, reason } if reason.contains(why)),
            "duet, {what}: {ended:?}"
        );
    }

    // An edit after the attacks reaches everyone: whatever was relayed before it has been
    // read by every client, and each is still running.
    yjs[1].insert(0, "after ")?;
    assert_eq!(all_converge(&mut yjs, &duet, T).await?, "after before ");
    for y in yjs.iter_mut() {
        assert_eq!(yjs_peer_names(y)?.len(), 2, "only honest peers");
    }
    let duet_peers: BTreeSet<String> = duet[0].client.peers().into_iter().map(|p| p.name).collect();
    assert_eq!(duet_peers, names(&["ya", "yb"]), "the duet client's peers");
    // A Yjs client joining now gets the room's whole awareness: only honest entries.
    let mut late = NodeClient::start(&url, room.as_str(), "late", "#123456")?;
    late.synced()?;
    let seen = eventually("the late client to see every honest peer", T, || {
        yjs_peer_names(&mut late).ok().filter(|n| *n == honest)
    })
    .await?;
    assert_eq!(seen, honest);
    assert_eq!(late.text()?, "after before ");
    yjs.push(late);
    yjs[0].insert(0, "end ")?;
    all_converge(&mut yjs, &duet, T).await?;
    Ok(())
}

/// lib0 / yrs varUint.
fn var(out: &mut Vec<u8>, v: u64) {
    yraw::var_uint(out, v);
}

/// One string block of `client` at clock 0 in the root text, by hand (yrs' v1 layout).
fn string_update(client: u64, s: &str) -> Vec<u8> {
    let mut u = vec![1, 1];
    var(&mut u, client);
    u.extend([0, 4, 1, 7]);
    u.extend(duet_yjs::doc::ROOT_TEXT.as_bytes());
    var(&mut u, s.len() as u64);
    u.extend(s.as_bytes());
    u.push(0);
    u
}

/// Updates yrs accepts (or did) that a stock Yjs client cannot read.
fn yjs_unreadable_updates() -> Vec<(&'static str, Vec<u8>)> {
    let mut json = vec![1, 1, 0x85, 0x07, 0, 2, 1, 7];
    json.extend(duet_yjs::doc::ROOT_TEXT.as_bytes());
    json.extend([1, 1, b'S', 1, b'1', 0]);
    let mut undefined_type = vec![1, 1, 0x86, 0x07, 0, 7, 1, 7];
    undefined_type.extend(duet_yjs::doc::ROOT_TEXT.as_bytes());
    undefined_type.extend([15, 0]);
    let mut wide_delete = vec![0, 1];
    var(&mut wide_delete, u64::MAX >> 4);
    wide_delete.extend([1, 0, 1]);
    vec![
        ("a client id past 2^53", string_update(1 << 60, "wide")),
        ("a client id of 2^53", string_update(1 << 53, "wide")),
        ("legacy JSON content that is not JSON", json),
        ("type ref 15", undefined_type),
        ("a delete set of a wide client", wide_delete),
    ]
}

/// The attacker's frames: (protocol, frame). Hand-made cases first, then seeded random ones.
fn hostile_corpus(
    rng: &mut rand::rngs::StdRng,
    honest_ids: &[u64],
    own_doc: &yrs::Doc,
) -> Vec<(&'static str, Vec<u8>)> {
    use rand::RngExt;
    use yrs::{ReadTxn, Text, Transact};
    const YJS: &str = "";
    const DUET: &str = duet_protocol::PROTOCOL;
    let mut out: Vec<(&str, Vec<u8>)> = Vec::new();
    let text = own_doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    // Real updates of the attacker's own document: valid, so some are applied and relayed.
    let mut valid = Vec::new();
    for i in 0..8 {
        let before = own_doc.transact().state_vector();
        text.insert(&mut own_doc.transact_mut(), 0, &format!("<x{i}>"));
        valid.push(own_doc.transact().encode_diff_v1(&before));
    }
    let good_state = br##"{"user":{"name":"mallory","color":"#000000"}}"##.to_vec();
    let duet_state = |name: String, anchor: Vec<u8>| {
        Some(PeerState {
            name,
            color: "#000000".into(),
            cursor: Some(CursorState {
                anchor: anchor.into(),
                head: vec![1, 7, b'c', b'o', b'n', b't', b'e', b'n', b't', 0].into(),
            }),
            location: None,
        })
    };
    let huge = |shift: u32| {
        let mut v = Vec::new();
        var(&mut v, 1 << shift);
        v
    };

    // Non-JSON and oversized awareness states, on both protocols.
    for state in [
        &b"S"[..],
        b"{",
        b"1",
        b"[]",
        b"\"x\"",
        b"true",
        b"{\"a\":}",
        b"\xff\xfe",
        b"undefined",
    ] {
        out.push((YJS, yraw::awareness(&[(990, 1, state)])));
    }
    out.push((YJS, BUG_FRAME.to_vec()));
    out.push((
        YJS,
        yraw::awareness(&[(
            991,
            1,
            format!("{}1{}", "[".repeat(200), "]".repeat(200)).as_bytes(),
        )]),
    ));
    // Foreign client ids: the honest members' entries (set or cleared), and ids past 2^53.
    for &id in honest_ids {
        out.push((YJS, yraw::awareness(&[(id, 1 << 30, &good_state)])));
        out.push((YJS, yraw::awareness(&[(id, 1 << 30, b"null")])));
        out.push((
            DUET,
            duet_protocol::encode_client(&ClientMsg::Awareness {
                client_id: id,
                state: duet_state(
                    "mallory".into(),
                    vec![1, 7, b'c', b'o', b'n', b't', b'e', b'n', b't', 0],
                ),
            }),
        ));
        out.push((
            DUET,
            duet_protocol::encode_client(&ClientMsg::Awareness {
                client_id: id,
                state: None,
            }),
        ));
    }
    for id in [1 << 53, 1 << 60, u64::MAX] {
        out.push((YJS, yraw::awareness(&[(id, 1, &good_state)])));
        out.push((
            DUET,
            duet_protocol::encode_client(&ClientMsg::Awareness {
                client_id: id,
                state: duet_state(
                    "wide".into(),
                    vec![1, 7, b'c', b'o', b'n', b't', b'e', b'n', b't', 0],
                ),
            }),
        ));
    }
    out.push((
        DUET,
        duet_protocol::encode_client(&ClientMsg::Awareness {
            client_id: 992,
            state: duet_state("x".repeat(4000), vec![9, 9, 9]),
        }),
    ));
    // Huge counts in updates, state vectors and awareness.
    for shift in [28, 31, 62] {
        let n = huge(shift);
        for update in [
            n.clone(),
            [&[1][..], &n, &[5, 0]].concat(),
            [&[0][..], &n].concat(),
            [&[0, 1, 5][..], &n].concat(),
        ] {
            out.push((YJS, yraw::sync_update(&update)));
            out.push((YJS, yraw::message(0, Some(1), &update)));
            out.push((YJS, yraw::message(0, Some(0), &update)));
            out.push((
                DUET,
                duet_protocol::encode_client(&ClientMsg::Update {
                    seq: 1,
                    update: update.clone().into(),
                }),
            ));
        }
        out.push((
            YJS,
            yraw::message(1, None, &[&n[..], &[1, 1, 2, b'{', b'}']].concat()),
        ));
        out.push((YJS, [&[0, 2][..], &n, &[0, 0]].concat()));
    }
    // Updates Yjs cannot read.
    for (_, update) in yjs_unreadable_updates() {
        out.push((YJS, yraw::sync_update(&update)));
        out.push((
            DUET,
            duet_protocol::encode_client(&ClientMsg::Update {
                seq: 1,
                update: update.into(),
            }),
        ));
    }
    // Every truncation of a valid update frame and of a valid awareness frame.
    let update_frame = yraw::sync_update(&valid[0]);
    for len in 1..update_frame.len() {
        out.push((YJS, update_frame[..len].to_vec()));
    }
    let aware_frame = yraw::awareness(&[(993, 1, &good_state)]);
    for len in 1..aware_frame.len() {
        out.push((YJS, aware_frame[..len].to_vec()));
    }
    let duet_update = duet_protocol::encode_client(&ClientMsg::Update {
        seq: 1,
        update: valid[1].clone().into(),
    });
    for len in 1..duet_update.len() {
        out.push((DUET, duet_update[..len].to_vec()));
    }
    // Seeded random frames: random bytes behind a plausible first byte, and valid updates with
    // a few bytes changed, on both protocols; now and then a valid update unchanged.
    for _ in 0..1500 {
        let protocol = if rng.random_bool(0.5) { YJS } else { DUET };
        let frame = match rng.random_range(0..10) {
            0..=2 => {
                let mut f = vec![rng.random_range(0..5u8)];
                f.extend((0..rng.random_range(0..48)).map(|_| rng.random::<u8>()));
                f
            }
            3..=7 => {
                let mut u = valid[rng.random_range(0..valid.len())].clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..u.len());
                    u[at] = rng.random();
                }
                if protocol == YJS {
                    yraw::sync_update(&u)
                } else {
                    duet_protocol::encode_client(&ClientMsg::Update {
                        seq: rng.random_range(0..4),
                        update: u.into(),
                    })
                }
            }
            _ => {
                let u = valid[rng.random_range(0..valid.len())].clone();
                if protocol == YJS {
                    yraw::sync_update(&u)
                } else {
                    duet_protocol::encode_client(&ClientMsg::Update {
                        seq: 1,
                        update: u.into(),
                    })
                }
            }
        };
        out.push((protocol, frame));
    }
    out
}

/// A raw attacker sends a corpus of malformed and hostile messages on both protocols (random
/// bytes, every truncation of valid frames, huge counts, non-JSON awareness, other members'
/// and 64-bit client ids, updates Yjs cannot read) into a room where stock y-websocket
/// clients and duet clients edit. Each frame goes on its own connection, followed by the
/// attacker's close, so each is read to its end. No client may die and the honest clients
/// (and one joining afterwards) must converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_cannot_crash_or_split_the_honest_clients() -> anyhow::Result<()> {
    use duet_e2e::frames::RawSocket;
    use rand::SeedableRng;
    let server = ServerProcess::start(&[
        "--max-handshakes-per-sec",
        "100000",
        "--max-messages-per-sec",
        "100000",
    ])?;
    let url = server.url();
    let room = unique_room("hostile");
    let mut yjs = vec![
        NodeClient::start(&url, room.as_str(), "ya", "#30bced")?,
        NodeClient::start(&url, room.as_str(), "yb", "#6eeb83")?,
    ];
    for y in yjs.iter_mut() {
        y.synced()?;
    }
    let duet = vec![start(&url, &room, "da"), start(&url, &room, "db")];
    yjs[0].insert(0, "honest ")?;
    all_converge(&mut yjs, &duet, T).await?;
    // Every honest client id (the Yjs clients' from each other's awareness).
    let mut honest_ids: Vec<u64> = duet
        .iter()
        .map(|d| d.client.read(|doc| doc.client_id()))
        .collect();
    for y in yjs.iter_mut() {
        let ids = eventually("the Yjs clients to see the other members", T, || {
            let peers = y.peers().ok()?;
            (peers.len() == 3).then_some(peers)
        })
        .await?;
        honest_ids.extend(ids.iter().filter_map(|p| p["clientID"].as_u64()));
    }
    honest_ids.sort_unstable();
    honest_ids.dedup();
    assert_eq!(honest_ids.len(), 4, "{honest_ids:?}");

    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let attacker_doc = duet_yjs::doc::doc_with_client(4_000_000_007);
    let corpus = hostile_corpus(&mut rng, &honest_ids, &attacker_doc);
    let frames = corpus.len();
    let addr = server.addr;
    let path = format!("/{room}");
    let attacker = tokio::spawn(async move {
        let mut closes: BTreeMap<u16, usize> = BTreeMap::new();
        for (protocol, frame) in corpus {
            let mut s = RawSocket::upgrade(addr, &path, protocol).await?;
            s.send(true, duet_e2e::frames::OP_BINARY, &frame).await?;
            s.send_close(1000, "done").await?;
            let out = s.until_tcp_closed(T).await;
            anyhow::ensure!(out.tcp_closed, "the server kept an attacker's socket open");
            let code = out.close().and_then(|f| f.close_code()).unwrap_or(0);
            *closes.entry(code).or_default() += 1;
        }
        anyhow::Ok(closes)
    });

    // The honest clients keep editing while the attack runs.
    let mut round = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    while !attacker.is_finished() {
        tick.tick().await;
        let frac = (round * 379) % 1000;
        match round % 4 {
            0 => yjs[0].insert_at_fraction(frac, "a")?,
            1 => yjs[1].insert_at_fraction(frac, "b")?,
            2 => duet[0].insert_at_char(frac % 7, "c"),
            _ => duet[1].insert_at_char(frac % 5, "d"),
        }
        round += 1;
    }
    let closes = attacker.await??;
    eprintln!("{frames} hostile frames; closes by code: {closes:?}; {round} honest rounds");
    assert!(
        closes.get(&close::INVALID_PAYLOAD.0).copied().unwrap_or(0) > frames / 4,
        "a good part of the hostile frames is refused with 1007 (~45% in runs so far): {closes:?}"
    );

    // Everyone alive, everyone converges; then a newcomer gets the same document and only
    // honest (or well-formed) awareness.
    yjs[0].insert(0, "end ")?;
    let text = all_converge(&mut yjs, &duet, T).await?;
    assert!(text.starts_with("end "), "{text:?}");
    for d in &duet {
        assert!(
            d.client.fatal_error().is_none(),
            "{}: {:?}",
            d.name,
            d.client.fatal_error()
        );
    }
    let mut late = NodeClient::start(&url, room.as_str(), "late", "#123456")?;
    late.synced()?;
    let names = yjs_peer_names(&mut late)?;
    assert!(
        names.is_subset(&names_of(&["ya", "yb", "da", "db", "mallory"])),
        "{names:?}"
    );
    yjs.push(late);
    yjs[2].insert(0, "late ")?;
    all_converge(&mut yjs, &duet, T).await?;
    Ok(())
}

fn names_of(list: &[&str]) -> BTreeSet<String> {
    names(list)
}
