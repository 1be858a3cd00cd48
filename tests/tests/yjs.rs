//! Yjs applications and duet clients in the same rooms: real y-websocket clients (npm
//! packages, pinned) next to duet's headless client, against a real server process.

use duet_client::{Selection, Utf16Offset};
use duet_e2e::clients::{converged, start};
use duet_e2e::node::{NodeClient, all_converge};
use duet_e2e::server::ServerProcess;
use duet_e2e::{eventually, unique_room};
use rand::{RngExt, SeedableRng};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yjs_and_duet_clients_converge_on_random_edits_with_emoji() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let url = server.url();
    for seed in 0..8u64 {
        let room = unique_room("mixed");
        let mut yjs = vec![
            NodeClient::start(&url, room.as_str(), "y1", "#30bced")?,
            NodeClient::start(&url, room.as_str(), "y2", "#6eeb83")?,
        ];
        let duet = vec![start(&url, &room, "d1"), start(&url, &room, "d2")];
        for y in yjs.iter_mut() {
            y.synced()?;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let pieces = ["a", "bc ", "é", "👍🏽", "家", "\n", "👨‍👩‍👧", "e\u{301}"];
        for _ in 0..30 {
            let who = rng.random_range(0..4);
            let piece = pieces[rng.random_range(0..pieces.len())];
            let frac = rng.random_range(0..=1000);
            let delete = rng.random_ratio(1, 4);
            if who < 2 {
                if delete {
                    yjs[who].delete_at_fraction(frac, 2)?;
                } else {
                    yjs[who].insert_at_fraction(frac, piece)?;
                }
            } else {
                let d = &duet[who - 2];
                let len = d.client.read(|doc| doc.len_chars());
                if delete && len > 0 {
                    d.delete_chars(len * frac / 1000, 2);
                } else {
                    d.insert_at_char(len * frac / 1000, piece);
                }
                let after = d.text();
                assert!(
                    !after.contains('\u{fffd}'),
                    "seed {seed}: duet {who} split a pair: {after:?}"
                );
            }
        }
        let text = all_converge(&mut yjs, &duet, T).await?;
        assert!(
            !text.contains('\u{fffd}'),
            "no split surrogate pairs: {text:?}"
        );
        for y in yjs {
            y.quit()?;
        }
        for d in duet {
            d.client.close().await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_cross_between_yjs_and_duet_and_vanish_when_owners_leave() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let room = unique_room("cursors");
    let mut y = NodeClient::start(&server.url(), room.as_str(), "yolanda", "#ee6352")?;
    let d = start(&server.url(), &room, "dmitri");
    y.synced()?;
    d.client.wait_synced(T).await?;
    y.insert(0, "ab 👋 cd X ef")?;
    eventually("duet to receive the text", T, || {
        (d.text() == "ab 👋 cd X ef").then_some(())
    })
    .await?;

    // The Yjs cursor, before "X", shows in duet at the same character with name and colour.
    let x = utf16_len("ab 👋 cd ");
    y.set_cursor(x, x + 1)?;
    let peer = eventually("the Yjs cursor to show in duet", T, || {
        d.client
            .peers()
            .into_iter()
            .find(|p| p.name == "yolanda" && p.selection.is_some())
    })
    .await?;
    assert_eq!(peer.color, "#ee6352");
    assert_eq!(
        peer.selection,
        Some(Selection {
            anchor: Utf16Offset(x),
            head: Utf16Offset(x + 1)
        })
    );
    // It stays on its text when duet edits in front of it.
    d.insert_at_char(0, "🚀🚀 ");
    let shift = utf16_len("🚀🚀 ");
    eventually("the Yjs cursor to stay on X", T, || {
        let p = d.client.peers().into_iter().find(|p| p.name == "yolanda")?;
        (p.selection?.anchor == Utf16Offset(x + shift)).then_some(())
    })
    .await?;

    // The duet cursor shows in the Yjs client at the same character.
    let at = x + shift;
    d.client.set_selection(Selection {
        anchor: Utf16Offset(at),
        head: Utf16Offset(at + 1),
    });
    let mut seen = None;
    for _ in 0..500 {
        let peers = y.peers()?;
        if let Some(p) = peers.iter().find(|p| {
            p["name"] == "dmitri"
                && p["anchor"].as_u64() == Some(at as u64)
                && p["head"].as_u64() == Some(at as u64 + 1)
        }) {
            seen = Some(p.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = seen.ok_or_else(|| {
        anyhow::anyhow!(
            "duet cursor never showed at {at} in the Yjs client: {:?}",
            y.peers()
        )
    })?;
    assert!(p["color"].as_str().is_some_and(|c| c.starts_with('#')));

    // Both vanish when their owners leave.
    d.client.close().await;
    let mut gone = false;
    for _ in 0..500 {
        if y.peers()?.iter().all(|p| p["name"] != "dmitri") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gone,
        "the duet cursor must vanish from the Yjs client when duet leaves"
    );
    let d2 = start(&server.url(), &room, "watcher");
    eventually("watcher to see yolanda", T, || {
        d2.client
            .peers()
            .iter()
            .any(|p| p.name == "yolanda")
            .then_some(())
    })
    .await?;
    y.quit()?;
    eventually("the Yjs cursor to vanish from duet", T, || {
        d2.client
            .peers()
            .iter()
            .all(|p| p.name != "yolanda")
            .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yjs_client_offline_edits_merge_without_loss_or_duplication() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    let room = unique_room("yoffline");
    let mut y = NodeClient::start(&server.url(), room.as_str(), "y", "#30bced")?;
    let d = start(&server.url(), &room, "d");
    y.synced()?;
    y.insert(0, "base\n")?;
    eventually("duet gets the base", T, || {
        (d.text() == "base\n").then_some(())
    })
    .await?;
    y.disconnect()?;
    y.insert(5, "offline yjs 🛰\n")?;
    d.insert_at_char(0, "online duet\n");
    y.connect()?;
    y.synced()?;
    let text = all_converge(std::slice::from_mut(&mut y), std::slice::from_ref(&d), T).await?;
    for piece in ["base", "offline yjs 🛰", "online duet"] {
        assert_eq!(text.matches(piece).count(), 1, "{piece:?} once in {text:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_get_the_whole_document_in_both_directions() -> anyhow::Result<()> {
    let server = ServerProcess::start(&[])?;
    // A room filled by duet, joined late by Yjs.
    let room = unique_room("late-yjs");
    let d = start(&server.url(), &room, "d");
    d.client.wait_synced(T).await?;
    for i in 0..40 {
        d.insert_at_char(usize::MAX, &format!("line {i} ✓ 😀\n"));
    }
    converged(std::slice::from_ref(&d), T).await?;
    let mut y = NodeClient::start(&server.url(), room.as_str(), "late", "#000000")?;
    y.synced()?;
    assert_eq!(y.text()?, d.text());

    // A room filled by Yjs, joined late by duet.
    let room = unique_room("late-duet");
    let mut y = NodeClient::start(&server.url(), room.as_str(), "y", "#000000")?;
    y.synced()?;
    for i in 0..40 {
        let len = utf16_len(&y.text()?);
        y.insert(len, &format!("row {i} 🦀\n"))?;
    }
    let expected = y.text()?;
    // Wait for the server to have it: a second Yjs client sees it all.
    let mut y2 = NodeClient::start(&server.url(), room.as_str(), "y2", "#000000")?;
    y2.synced()?;
    let mut ok = false;
    for _ in 0..500 {
        if y2.text()? == expected {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "second Yjs client got the room");
    let d = start(&server.url(), &room, "late-duet");
    d.client.wait_synced(T).await?;
    assert_eq!(d.text(), expected);
    Ok(())
}
