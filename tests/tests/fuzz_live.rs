//! Hostile input at a live server: at least 100,000 random and mutated frames (duet and
//! y-websocket), counted by the server itself, while honest members edit the same room. The
//! server must stay up and the honest members must converge.

use duet_e2e::clients::{converged, start};
use duet_e2e::server::ServerProcess;
use duet_protocol::{ClientMsg, CursorState, PeerState};
use futures_util::SinkExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Text, Transact};

const TARGET_FRAMES: i64 = 100_000;

/// Real updates to mutate: a few edits with multi-byte text.
fn corpus() -> Vec<Vec<u8>> {
    let doc = duet_yjs::doc::new_doc();
    let text = doc.get_or_insert_text(duet_yjs::doc::ROOT_TEXT);
    let mut out = Vec::new();
    for (i, s) in ["hello", " wörld", " 👋🏽", "\nline", " 家族"]
        .iter()
        .enumerate()
    {
        let before = doc.transact().state_vector();
        let len = text.len(&doc.transact());
        text.insert(&mut doc.transact_mut(), (i as u32).min(len), s);
        out.push(doc.transact().encode_diff_v1(&before));
    }
    out.push(doc.transact().state_vector().encode_v1());
    out
}

fn mutate(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..4) {
            0 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            1 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes.truncate(i);
            }
            2 => {
                let i = rng.random_range(0..=bytes.len());
                bytes.insert(i, [0xff, 0x80, 0x7f, 0][rng.random_range(0..4)]);
            }
            _ => bytes.extend((0..rng.random_range(1..8)).map(|_| rng.random::<u8>())),
        }
    }
    bytes
}

/// One frame for the duet protocol: about a quarter are broken (random bytes, mutated
/// messages, mutated yrs payloads) and end the connection; the rest are well formed but
/// hostile in content (replayed updates, odd state vectors, awareness with junk cursors and
/// ids it does not own) and keep it open.
fn duet_frame(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let pick = |rng: &mut StdRng| corpus[rng.random_range(0..corpus.len())].clone();
    match rng.random_range(0..20) {
        0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        1 => {
            let update = pick(rng);
            mutate(
                rng,
                duet_protocol::encode_client(&ClientMsg::Update {
                    seq: 1,
                    update: update.into(),
                }),
            )
        }
        2 | 3 => {
            let picked = pick(rng);
            let update = mutate(rng, picked);
            duet_protocol::encode_client(&ClientMsg::Update {
                seq: rng.random(),
                update: update.into(),
            })
        }
        4 => {
            let picked = pick(rng);
            let sv = mutate(rng, picked);
            duet_protocol::encode_client(&ClientMsg::SyncStep1 {
                state_vector: sv.into(),
            })
        }
        5..=7 => duet_protocol::encode_client(&ClientMsg::Update {
            seq: rng.random(),
            update: pick(rng).into(),
        }),
        8 | 9 => duet_protocol::encode_client(&ClientMsg::SyncStep1 {
            state_vector: corpus[corpus.len() - 1].clone().into(),
        }),
        _ => duet_protocol::encode_client(&ClientMsg::Awareness {
            client_id: rng.random_range(0..50),
            state: rng.random_bool(0.8).then(|| PeerState {
                name: (0..rng.random_range(0..20))
                    .map(|_| rng.random::<char>())
                    .collect(),
                color: "#zzz".into(),
                cursor: Some(CursorState {
                    anchor: mutate(rng, vec![1, 2]).into(),
                    head: pick(rng).into(),
                }),
                // Sometimes a location, sometimes one that is no room name.
                location: rng.random_bool(0.3).then(|| duet_protocol::Location {
                    room: if rng.random_bool(0.5) {
                        "w/files/ab".into()
                    } else {
                        "../x y".into()
                    },
                    line: rng.random(),
                }),
            }),
        }),
    }
}

/// One frame for the y-websocket protocol, in the same spirit.
fn yjs_frame(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let payload = corpus[rng.random_range(0..corpus.len())].clone();
    let wrap = |kind: &[u8], body: &[u8]| {
        let mut f = kind.to_vec();
        f.push(body.len().min(127) as u8);
        f.extend_from_slice(body);
        f
    };
    match rng.random_range(0..20) {
        0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        1 | 2 => {
            let body = mutate(rng, payload);
            mutate(rng, wrap(&[0, 2], &body))
        }
        3..=7 => wrap(&[0, 2], &payload),
        8 | 9 => wrap(&[0, 0], &corpus[corpus.len() - 1]),
        10 => vec![3],
        _ => {
            let name: String = (0..rng.random_range(0..12))
                .map(|_| rng.random::<char>())
                .collect();
            let json = serde_json::json!({"user": {"name": name}, "cursor": {"anchor": {"item": {"client": rng.random::<u64>(), "clock": 1}, "assoc": 0}}}).to_string();
            let mut body = vec![1];
            body.push(rng.random_range(0..120));
            body.push(rng.random_range(0..120));
            body.push(json.len().min(127) as u8);
            body.extend(json.bytes().take(127));
            wrap(&[1], &body)
        }
    }
}

async fn fuzz_worker(url: String, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = corpus();
    while !stop.load(Ordering::Relaxed) {
        let yjs = rng.random_bool(0.4);
        let room = if rng.random_bool(0.5) {
            "honest".to_string()
        } else {
            format!("fz{}", rng.random_range(0..20))
        };
        let Ok(mut req) = format!("{url}/{room}").into_client_request() else {
            continue;
        };
        if !yjs {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(duet_protocol::PROTOCOL),
            );
        }
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
            continue;
        };
        for _ in 0..200 {
            let frame = if yjs {
                yjs_frame(&mut rng, &corpus)
            } else {
                duet_frame(&mut rng, &corpus)
            };
            if ws.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = ws.close(None).await;
    }
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> i64 {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return -1;
    };
    let _ = tcp
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = tcp.read_to_string(&mut out).await;
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_server_survives_100k_hostile_frames_and_honest_members_converge()
-> anyhow::Result<()> {
    let server = ServerProcess::start(&[
        "--max-handshakes-per-sec",
        "100000",
        "--max-connections-per-ip",
        "100000",
        "--max-messages-per-sec",
        "1000000",
    ])?;
    let room = duet_protocol::RoomName::new("honest")?;
    let a = start(&server.url(), &room, "a");
    let b = start(&server.url(), &room, "b");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| tokio::spawn(fuzz_worker(server.url(), 1000 + i, stop.clone())))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut round = 0;
    loop {
        // The honest members keep editing through the storm.
        a.insert_at_char(usize::MAX, &format!("a{round} "));
        b.insert_at_char(0, &format!("b{round}👍 "));
        round += 1;
        let received = metric(server.addr, "duet_messages_received_total").await;
        assert!(received >= 0, "the server stopped answering /metrics");
        if received >= TARGET_FRAMES {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {received} frames in the time allowed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let text = converged(&[a, b], Duration::from_secs(30)).await?;
    for i in 0..round {
        assert_eq!(
            text.matches(&format!("a{i} ")).count(),
            1,
            "a{i} exactly once"
        );
        assert_eq!(
            text.matches(&format!("b{i}👍 ")).count(),
            1,
            "b{i} exactly once"
        );
    }
    let frames = metric(server.addr, "duet_messages_received_total").await;
    eprintln!(
        "fuzz: the server processed {frames} hostile and honest frames; {round} honest edit rounds converged"
    );
    assert!(frames >= TARGET_FRAMES);
    Ok(())
}
