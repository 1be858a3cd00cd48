//! Nothing one member sends reaches another unless a stock client of the receiving protocol
//! can parse it: hostile awareness entries and updates, sent raw on both protocols into rooms
//! where real y-websocket clients (node) and duet clients edit. A stock Yjs client throws on
//! what it cannot parse and, in node, nothing catches: the process exits. So these tests fail
//! when any client process dies or the honest clients stop converging.

use duet_e2e::clients::{TestClient, converged, start};
use duet_e2e::node::NodeClient;
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

fn duet_sv(c: &TestClient) -> BTreeMap<u64, u32> {
    c.state_vector()
        .iter()
        .map(|(client, clock)| (client.get(), *clock))
        .collect()
}

/// Waits until every Yjs and duet client holds the same text and state vector; a Yjs client
/// that died fails this at once ("node client exited").
async fn all_converge(yjs: &mut [NodeClient], duet: &[TestClient]) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let text = converged(duet, T).await?;
        let sv = duet_sv(&duet[0]);
        let mut seen = Vec::new();
        for y in yjs.iter_mut() {
            seen.push((y.text()?, y.state_vector()?));
        }
        if seen.iter().all(|(t, s)| *t == text && *s == sv) {
            return Ok(text);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("Yjs clients did not converge:\n yjs:  {seen:?}\n duet: {text:?} {sv:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
    all_converge(&mut yjs, &duet).await?;
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
            matches!(&end, End::Closed(close::INVALID_PAYLOAD, reason) if reason.contains(why)),
            "yjs, {what}: {end:?}"
        );
    }

    // duet.v1: the typed state becomes JSON for Yjs clients; its strings, cursors and client
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
    assert_eq!(all_converge(&mut yjs, &duet).await?, "after before ");
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
    all_converge(&mut yjs, &duet).await?;
    Ok(())
}
