//! The client against a fake duet server on loopback: sync, convergence, offline edits
//! across a server restart, fatal refusals, peers, and a server that sends garbage.
//!
//! Run with `cargo test -p duet-client --test client`. Every wait polls with a deadline.

mod fake_server;

use duet_client::{
    Backoff, Client, ClientConfig, ClientError, ConnState, Document, Event, RoomName, Selection,
    Utf16Offset,
};
use duet_protocol::{AwarenessEntry, PeerState, Role};
use fake_server::{Behaviour, FakeServer, http_refuser};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(10);

fn config(server: &str, name: &str) -> ClientConfig {
    ClientConfig {
        server: server.to_owned(),
        room: RoomName::new("team/notes.md").expect("valid room"),
        name: name.to_owned(),
        color: None,
        token: None,
        // Fast retries keep the tests short; the jitter is still real.
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        ca_file: None,
        publish_cursor: true,
    }
}

/// Every event a client emitted, collected in the background.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().expect("recorder lock").clone()
    }

    fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.events().iter().any(pred)
    }
}

fn spawn(config: ClientConfig) -> (Client, Recorder) {
    spawn_with(config, Document::new())
}

fn spawn_with(config: ClientConfig, doc: Document) -> (Client, Recorder) {
    let (client, mut events) = Client::spawn(config, doc);
    let recorder = Recorder::default();
    let sink = recorder.0.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            sink.lock().expect("recorder lock").push(event);
        }
    });
    (client, recorder)
}

/// Polls `cond` until it holds or the deadline passes.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text(client: &Client) -> String {
    client.read(|d| d.text())
}

fn append(client: &Client, s: &str) {
    client.edit(|d| {
        let end = Utf16Offset(d.len_utf16());
        d.insert(end, s).expect("insert at the end");
    });
}

fn prepend(client: &Client, s: &str) {
    client.edit(|d| d.insert(Utf16Offset(0), s).expect("insert at 0"));
}

#[tokio::test]
async fn two_clients_converge_and_every_update_is_acknowledged() {
    let server = FakeServer::start().await;
    let mut cfg = config(&server.url(), "ann");
    cfg.token = Some("t0ken".into());
    let (a, a_events) = spawn(cfg);
    let (b, _) = spawn(config(&server.url(), "bob"));
    a.wait_synced(DEADLINE).await.expect("a synced");
    b.wait_synced(DEADLINE).await.expect("b synced");
    assert!(a.peer_id().is_some());
    assert_eq!(a.role(), Some(Role::Editor));

    // Concurrent edits on both sides, several each.
    for i in 0..5 {
        append(&a, &format!("a{i} "));
        prepend(&b, &format!("b{i} "));
    }
    eventually("both texts equal and complete", || {
        let (ta, tb) = (text(&a), text(&b));
        ta == tb && ta.len() == 30
    })
    .await;
    let t = text(&a);
    for i in 0..5 {
        assert_eq!(t.matches(&format!("a{i} ")).count(), 1, "{t}");
        assert_eq!(t.matches(&format!("b{i} ")).count(), 1, "{t}");
    }
    assert_eq!(server.room.text(), t);
    eventually("all acknowledged", || a.unacked() == 0 && b.unacked() == 0).await;
    assert!(a_events.has(|e| matches!(e, Event::Acked { .. })));
    assert!(a_events.has(|e| matches!(e, Event::RemoteChange)));
    assert!(a_events.has(|e| *e == Event::State(ConnState::Live)));

    let paths = server.room.paths.lock().expect("lock").clone();
    assert!(paths.iter().all(|p| p == "/team/notes.md"), "{paths:?}");
    let auths = server.room.authorizations.lock().expect("lock").clone();
    assert_eq!(auths, ["Bearer t0ken"]);
}

#[tokio::test]
async fn edits_made_while_the_server_is_down_merge_once_it_is_back() {
    let server = FakeServer::start().await;
    let port = server.addr.port();
    let room = server.room.clone();
    let (a, a_events) = spawn(config(&server.url(), "ann"));
    let (b, b_events) = spawn(config(&server.url(), "bob"));
    a.wait_synced(DEADLINE).await.expect("a synced");
    b.wait_synced(DEADLINE).await.expect("b synced");
    append(&a, "shared ");
    eventually("b has a's edit", || text(&b) == "shared ").await;
    eventually("a's edit stored", || a.unacked() == 0).await;

    server.kill().await;
    let reconnecting = |c: &Client| matches!(c.state(), ConnState::Reconnecting { .. });
    eventually("both notice", || reconnecting(&a) && reconnecting(&b)).await;
    assert_eq!(a.peer_id(), None);

    append(&a, "a-offline-1 ");
    append(&a, "a-offline-2 ");
    prepend(&b, "b-offline ");
    assert_eq!(a.pending_offline(), 2);
    assert_eq!(b.pending_offline(), 1);
    assert!(a.unacked() >= 2);

    let server = FakeServer::start_on(port, room).await;
    a.wait_synced(DEADLINE).await.expect("a synced again");
    b.wait_synced(DEADLINE).await.expect("b synced again");
    eventually("texts equal", || {
        text(&a) == text(&b) && text(&a).len() > 40
    })
    .await;
    let t = text(&a);
    for piece in ["shared ", "a-offline-1 ", "a-offline-2 ", "b-offline "] {
        assert_eq!(t.matches(piece).count(), 1, "{piece:?} in {t:?}");
    }
    assert_eq!(t.len(), "shared a-offline-1 a-offline-2 b-offline ".len());
    assert_eq!(server.room.text(), t);
    assert_eq!(a.pending_offline(), 0);
    eventually("a's offline edits stored", || a.unacked() == 0).await;
    eventually("synced events", || {
        a_events.has(|e| {
            *e == Event::Synced {
                offline_updates_merged: 2,
            }
        }) && b_events.has(|e| {
            *e == Event::Synced {
                offline_updates_merged: 1,
            }
        })
    })
    .await;
    // The reconnect did not announce the other member as new.
    let joined = |r: &Recorder| {
        r.events()
            .iter()
            .filter(|e| matches!(e, Event::PeerJoined { .. }))
            .count()
    };
    assert_eq!(joined(&a_events), 1, "{:?}", a_events.events());
}

#[tokio::test]
async fn a_document_with_content_merges_into_an_existing_room() {
    let server = FakeServer::start().await;
    let (a, _) = spawn(config(&server.url(), "ann"));
    a.wait_synced(DEADLINE).await.expect("a synced");
    append(&a, "room text\n");
    eventually("stored", || server.room.text() == "room text\n").await;

    let mut local = Document::new();
    local
        .insert(Utf16Offset(0), "my file\n")
        .expect("insert into an empty doc");
    let (b, b_events) = spawn_with(config(&server.url(), "bob"), local);
    b.wait_synced(DEADLINE).await.expect("b synced");
    eventually("a sees b's text", || text(&a).contains("my file\n")).await;
    assert_eq!(text(&a), text(&b));
    assert_eq!(text(&a).len(), "room text\nmy file\n".len());
    assert!(b_events.has(|e| *e
        == Event::Synced {
            offline_updates_merged: 1
        }));
}

#[tokio::test]
async fn close_4401_is_fatal_and_stops_retrying() {
    let server = FakeServer::start().await;
    server
        .room
        .script([Behaviour::CloseWith(4401, "token expired")]);
    let (a, events) = spawn(config(&server.url(), "ann"));
    let err = a
        .wait_synced(DEADLINE)
        .await
        .expect_err("the server refused");
    assert_eq!(
        err,
        ClientError::Unauthorized {
            reason: "token expired".into()
        }
    );
    assert_eq!(a.state(), ConnState::Stopped);
    eventually("fatal and stopped events", || {
        events.has(|e| matches!(e, Event::Fatal(ClientError::Unauthorized { .. })))
            && events.has(|e| *e == Event::State(ConnState::Stopped))
    })
    .await;
    // Stopped means the loop has ended: there is nobody left to retry.
    assert_eq!(server.room.accepted(), 1);
    // Editing still works locally.
    append(&a, "still here");
    assert_eq!(text(&a), "still here");
}

#[tokio::test]
async fn a_version_refusal_names_the_versions_the_server_speaks() {
    let addr = http_refuser(
        "400 Bad Request",
        "unsupported protocol duet.v2; this server speaks duet.v3, duet.v4",
    )
    .await;
    let (a, events) = spawn(config(&format!("ws://{addr}"), "ann"));
    let err = a.wait_synced(DEADLINE).await.expect_err("refused");
    match &err {
        ClientError::VersionRefused {
            offered, supported, ..
        } => {
            assert_eq!(offered, "duet.v2");
            assert_eq!(supported, &["duet.v3", "duet.v4"]);
        }
        other => panic!("expected VersionRefused, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "server refused protocol duet.v2: it speaks duet.v3, duet.v4"
    );
    eventually("fatal event", || {
        events.has(|e| matches!(e, Event::Fatal(ClientError::VersionRefused { .. })))
    })
    .await;
}

#[tokio::test]
async fn http_401_and_403_at_the_handshake_are_fatal() {
    let addr = http_refuser("401 Unauthorized", "bad token").await;
    let mut with_token = config(&format!("ws://{addr}"), "ann");
    with_token.token = Some("expired".into());
    let (a, _) = spawn(with_token);
    assert_eq!(
        a.wait_synced(DEADLINE).await,
        Err(ClientError::Unauthorized {
            reason: "bad token".into()
        })
    );
    // Without a token, the same answer means one is needed, not that ours was bad.
    let (anon, _) = spawn(config(&format!("ws://{addr}"), "cy"));
    assert_eq!(
        anon.wait_synced(DEADLINE).await,
        Err(ClientError::TokenRequired {
            reason: "bad token".into()
        })
    );
    let addr = http_refuser("403 Forbidden", "not your room").await;
    let (b, _) = spawn(config(&format!("ws://{addr}"), "bob"));
    assert!(matches!(
        b.wait_synced(DEADLINE).await,
        Err(ClientError::Forbidden { .. })
    ));
}

#[tokio::test]
async fn a_server_without_the_duet_subprotocol_is_refused() {
    let server = FakeServer::start().await;
    server.room.script([Behaviour::NoSubprotocol]);
    let (a, _) = spawn(config(&server.url(), "ann"));
    assert!(matches!(
        a.wait_synced(DEADLINE).await,
        Err(ClientError::NotDuet { .. })
    ));
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_with_growing_delays() {
    // Bind and release a port so nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (a, events) = spawn(config(&format!("ws://127.0.0.1:{port}"), "ann"));
    eventually(
        "three attempts",
        || matches!(a.state(), ConnState::Reconnecting { attempt, .. } if attempt >= 3),
    )
    .await;
    for e in events.events() {
        if let Event::State(ConnState::Reconnecting { retry_in, .. }) = e {
            assert!(retry_in <= Duration::from_millis(200), "{retry_in:?}");
        }
    }
    // It connects as soon as a server appears.
    let server = FakeServer::start_on(port, fake_server::Room::new()).await;
    a.wait_synced(DEADLINE).await.expect("synced");
    drop(server);
}

#[tokio::test]
async fn peers_appear_with_name_colour_and_cursor_and_disappear() {
    let server = FakeServer::start().await;
    let (a, a_events) = spawn(config(&server.url(), "ann"));
    let mut bob = config(&server.url(), "bob");
    bob.color = Some("#123ABC".into());
    let (b, _) = spawn(bob);
    a.wait_synced(DEADLINE).await.expect("a synced");
    b.wait_synced(DEADLINE).await.expect("b synced");

    eventually("a sees bob", || a.peers().len() == 1).await;
    let peer = &a.peers()[0];
    assert_eq!(peer.name, "bob");
    assert_eq!(peer.color, "#123abc");
    assert_eq!(Some(peer.peer_id), b.peer_id());
    assert_eq!(peer.client_id, b.read(|d| d.client_id()));
    eventually("b sees ann in her colour", || {
        b.peers()
            .first()
            .is_some_and(|p| p.name == "ann" && p.color == duet_client::color_for("ann"))
    })
    .await;
    assert!(a_events.has(|e| *e == Event::PeerJoined { name: "bob".into() }));

    // Bob selects text; ann sees the selection, still on the same text after ann types
    // in front of it.
    append(&b, "hello world");
    eventually("a has the text", || text(&a) == "hello world").await;
    b.set_selection(Selection::new(Utf16Offset(6), Utf16Offset(11)));
    let bobs_selection = |c: &Client| c.peers().first().and_then(|p| p.selection);
    eventually("a sees bob's selection", || {
        bobs_selection(&a) == Some(Selection::new(Utf16Offset(6), Utf16Offset(11)))
    })
    .await;
    prepend(&a, ">> ");
    assert_eq!(
        bobs_selection(&a),
        Some(Selection::new(Utf16Offset(9), Utf16Offset(14)))
    );

    // The server says bob is gone.
    let bob_id = b.read(|d| d.client_id());
    server.room.broadcast_awareness(vec![AwarenessEntry {
        client_id: bob_id,
        peer_id: b.peer_id().expect("b connected"),
        clock: 99,
        role: Role::Editor,
        state: None,
    }]);
    eventually("bob left", || a.peers().is_empty()).await;
    eventually("left event", || {
        a_events.has(|e| *e == Event::PeerLeft { name: "bob".into() })
    })
    .await;

    // A third member announced by the server, then closed for real.
    server.room.broadcast_awareness(vec![AwarenessEntry {
        client_id: 4242,
        peer_id: 4242,
        clock: 1,
        role: Role::Viewer,
        state: Some(PeerState {
            name: "cat".into(),
            color: "#000000".into(),
            cursor: None,
            location: None,
        }),
    }]);
    eventually("a sees cat", || {
        a.peers()
            .iter()
            .any(|p| p.name == "cat" && p.role == Role::Viewer && p.selection.is_none())
    })
    .await;

    // Closing clears our awareness at the server and says goodbye with 1000.
    let (c, _) = spawn(config(&server.url(), "cy"));
    c.wait_synced(DEADLINE).await.expect("c synced");
    eventually("a sees cy", || a.peers().iter().any(|p| p.name == "cy")).await;
    c.close().await;
    eventually("cy left", || !a.peers().iter().any(|p| p.name == "cy")).await;
    eventually("close code 1000", || {
        server.room.close_codes().contains(&1000)
    })
    .await;
}

#[tokio::test]
async fn garbage_from_the_server_closes_with_1007_and_reconnects() {
    let server = FakeServer::start().await;
    server.room.script([Behaviour::Garbage]);
    let (a, events) = spawn(config(&server.url(), "ann"));
    a.wait_synced(DEADLINE)
        .await
        .expect("synced on the second try");
    assert_eq!(server.room.accepted(), 2);
    eventually("1007 received", || {
        server.room.close_codes().contains(&1007)
    })
    .await;
    assert!(!events.has(|e| matches!(e, Event::Fatal(_))));
    append(&a, "works");
    eventually("stored", || server.room.text() == "works").await;
}

#[tokio::test]
async fn close_stops_the_client_and_clones_see_it() {
    let server = FakeServer::start().await;
    let (a, events) = spawn(config(&server.url(), "ann"));
    a.wait_synced(DEADLINE).await.expect("synced");
    let clone = a.clone();
    a.close().await;
    assert_eq!(clone.state(), ConnState::Stopped);
    assert_eq!(clone.wait_synced(DEADLINE).await, Err(ClientError::Stopped));
    eventually("stopped event", || {
        events.has(|e| *e == Event::State(ConnState::Stopped))
    })
    .await;
    assert!(!events.has(|e| matches!(e, Event::Fatal(_))));
    eventually("close code 1000", || {
        server.room.close_codes().contains(&1000)
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_does_not_come_back_after_a_restart_is_reported_gone() {
    let server = FakeServer::start().await;
    let port = server.addr.port();
    let room = server.room.clone();
    let (a, a_events) = spawn(config(&server.url(), "ann"));
    let (b, _) = spawn(config(&server.url(), "bob"));
    a.wait_synced(DEADLINE).await.expect("a synced");
    b.wait_synced(DEADLINE).await.expect("b synced");
    eventually("a sees bob", || a.peers().len() == 1).await;

    server.kill().await;
    b.close().await; // Bob goes away while the server is down: no goodbye reaches anyone.
    eventually("a notices", || a.peers().is_empty()).await;
    assert!(!a_events.has(|e| matches!(e, Event::PeerLeft { .. })));

    let _server = FakeServer::start_on(port, room).await;
    a.wait_synced(DEADLINE).await.expect("a synced again");
    // Reported once the rejoin grace is over.
    eventually("bob reported gone", || {
        a_events.has(|e| *e == Event::PeerLeft { name: "bob".into() })
    })
    .await;
}
