//! `bare-relay`: the least a y-websocket server can do, as the floor for relay latency and
//! fan-out cost. It answers a client's sync step 1 with an empty document and forwards every
//! sync update frame verbatim to the other members of its room: no document, no checks, no
//! storage, no queue bounds. Run as its own process (like the servers it is compared with),
//! `bench/compare` drives it as the server `bare` with the same scenarios; a relay through it
//! costs what tokio, tungstenite and loopback TCP cost on this machine, and nothing else.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Each room's members: id and the way to its writer.
type Members = HashMap<String, Vec<(u64, mpsc::UnboundedSender<Message>)>>;
type Rooms = Arc<Mutex<Members>>;

fn lock(rooms: &Rooms) -> MutexGuard<'_, Members> {
    rooms.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves until the process is killed; prints `ws://ADDR` on stdout once listening.
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("ws://{}", listener.local_addr()?);
    run(listener).await
}

async fn run(listener: TcpListener) -> anyhow::Result<()> {
    let rooms = Rooms::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        next_id += 1;
        tokio::spawn(member(stream, next_id, rooms.clone()));
    }
}

// The handshake callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
async fn member(stream: TcpStream, id: u64, rooms: Rooms) {
    let mut room = String::new();
    let accepted = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        room = req.uri().path().to_owned();
        Ok(resp)
    })
    .await;
    let Ok(ws) = accepted else { return };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    lock(&rooms)
        .entry(room.clone())
        .or_default()
        .push((id, tx.clone()));
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(m) = next {
                if sink.feed(m).await.is_err() {
                    return;
                }
                next = rx.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(frame) = &msg else {
            continue;
        };
        match frame.get(..2) {
            // Sync step 1: our (empty) state vector, then the (empty) document.
            Some([0, 0]) => {
                let _ = tx.send(Message::binary(vec![0u8, 0, 1, 0]));
                let _ = tx.send(Message::binary(vec![0u8, 1, 2, 0, 0]));
            }
            // A sync update: to every other member, as it came.
            Some([0, 2]) => {
                if let Some(members) = lock(&rooms).get(&room) {
                    for (other, to) in members {
                        if *other != id {
                            let _ = to.send(msg.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(members) = lock(&rooms).get_mut(&room) {
        members.retain(|(m, _)| *m != id);
    }
    drop(tx);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnOpts, join};
    use crate::wire::Protocol;
    use std::time::Duration;

    #[tokio::test]
    async fn updates_reach_the_other_members_of_the_room_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("ws://{}", listener.local_addr().expect("bound"));
        tokio::spawn(run(listener));
        let room = |name: &str| format!("{url}/{name}");
        let mut a = join(&room("r"), Protocol::Yjs, ConnOpts::default())
            .await
            .expect("a syncs");
        let mut b = join(&room("r"), Protocol::Yjs, ConnOpts::default())
            .await
            .expect("b syncs");
        let mut c = join(&room("other"), Protocol::Yjs, ConnOpts::default())
            .await
            .expect("c syncs");
        assert_eq!(a.doc, [0, 0], "a newcomer gets an empty document");

        let frame = Protocol::Yjs.update(1, &[1, 2, 3, 4]);
        a.ws.send(Message::binary(frame.clone()))
            .await
            .expect("sent");
        let got = tokio::time::timeout(Duration::from_secs(5), b.ws.next())
            .await
            .expect("b hears within 5 s")
            .expect("open")
            .expect("a frame");
        assert_eq!(
            got.into_data().as_ref(),
            frame.as_slice(),
            "relayed verbatim"
        );
        let quiet = Duration::from_millis(200);
        assert!(
            tokio::time::timeout(quiet, a.ws.next()).await.is_err(),
            "no echo to the author"
        );
        assert!(
            tokio::time::timeout(quiet, c.ws.next()).await.is_err(),
            "nothing to other rooms"
        );
    }
}
