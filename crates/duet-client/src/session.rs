//! One connection to the server, from the accepted handshake until it ends.
//!
//! The session reads server messages, applies them to the shared state, and writes what the
//! application produced in between (queued updates, our awareness). It owns the socket; the
//! application reaches it only through [`Shared`] and its wake-up signal.
//!
//! ```text
//!   Welcome ................ remember peer id and role
//!   SyncStep1{server sv} ... send SyncStep1{our sv} + SyncStep2{seq, diff}; from now on
//!                            local updates stream out and our awareness is published
//!   SyncStep2{update} ...... apply; the first one makes the session Live (Event::Synced)
//!   Update / Awareness / Ack / Error ... apply and report
//! ```

use crate::shared::{Shared, lock};
use crate::{ClientError, ConnState, Event};
use duet_protocol::{
    ClientMsg, CursorState, PeerState, ServerMsg, close, decode_server, encode_client,
};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// At most one awareness message per this interval; the latest selection wins.
const AWARENESS_MIN_INTERVAL: Duration = Duration::from_millis(30);
/// The server expires awareness entries after 30 s without renewal.
const AWARENESS_RENEWAL: Duration = Duration::from_secs(15);
/// The server pings every 20 s; this long without any frame means the connection is dead
/// even if TCP has not noticed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// A write that takes longer than this means the server or the network is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a reconnect, how long peers of the earlier session have to reappear before they
/// are reported as gone. After a server restart everyone reconnects at slightly different
/// times; without this the first one back would see the others leave and join again.
const REJOIN_GRACE: Duration = Duration::from_secs(3);
/// How long a goodbye waits for the server's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The application closed the client.
    Closed,
    /// The connection is gone; reconnect. `was_live`: the session got as far as Live;
    /// `why`: what happened, for the person waiting.
    Lost { was_live: bool, why: String },
    /// Stop reconnecting.
    Fatal(ClientError),
}

/// Why handling a frame ends the session.
enum Stop {
    /// Close with this code and reason, then reconnect.
    Violation(close::CloseCode, &'static str),
    /// The server closed or the transport failed (why, in words).
    Lost(String),
    Fatal(ClientError),
}

pub(crate) struct Session<'a> {
    shared: &'a Shared,
    room: &'a str,
    name: &'a str,
    color: &'a str,
    /// Our sync diff went out: local updates may stream and our awareness may be published.
    streaming: bool,
    live: bool,
    /// When peers of an earlier session that have not reappeared count as gone.
    settle_peers_at: Option<Instant>,
    last_awareness: Option<Instant>,
    last_received: Instant,
    started: Instant,
}

impl<'a> Session<'a> {
    pub(crate) fn new(shared: &'a Shared, room: &'a str, name: &'a str, color: &'a str) -> Self {
        Self {
            shared,
            room,
            name,
            color,
            streaming: false,
            live: false,
            settle_peers_at: None,
            last_awareness: None,
            last_received: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Runs the session to its end and leaves the shared state ready for the next one.
    pub(crate) async fn run<S>(
        mut self,
        ws: &mut WebSocketStream<S>,
        cancel: &CancellationToken,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let end = self.serve(ws, cancel).await;
        lock(&self.shared.doc).disconnected();
        let peers_changed = {
            let mut session = lock(&self.shared.session);
            session.peer_id = None;
            session.peers.disconnected()
        };
        if peers_changed {
            self.shared.events.push(Event::PeersChanged);
        }
        end
    }

    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>, cancel: &CancellationToken) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let awareness_at = self.next_awareness_at();
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    self.goodbye(ws).await;
                    return End::Closed;
                }
                frame = ws.next() => {
                    self.last_received = Instant::now();
                    let replies = match frame {
                        None => Err(Stop::Lost("the server closed the connection".into())),
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "connection lost");
                            Err(Stop::Lost(format!("connection lost: {e}")))
                        }
                        Some(Ok(message)) => self.on_message(message),
                    };
                    match replies {
                        Ok(replies) => {
                            if send_all(ws, replies).await.is_err() {
                                return self.stop(ws, Stop::Lost("connection lost while sending".into())).await;
                            }
                        }
                        Err(stop) => return self.stop(ws, stop).await,
                    }
                }
                () = self.shared.wake.notified() => {}
                () = sleep_until(awareness_at.unwrap_or_else(Instant::now)), if awareness_at.is_some() => {}
                () = sleep_until(self.settle_peers_at.unwrap_or_else(Instant::now)), if self.settle_peers_at.is_some() => {
                    self.settle_peers_at = None;
                    self.settle_peers();
                }
                () = sleep_until(self.last_received + IDLE_TIMEOUT) => {
                    tracing::debug!("no message from the server for {IDLE_TIMEOUT:?}; reconnecting");
                    return self.stop(ws, Stop::Violation(close::GOING_AWAY, "idle")).await;
                }
            }
            // After every wake-up, whatever woke us: a busy stream of incoming frames must
            // not starve our own updates.
            let outgoing = self.outgoing();
            if send_all(ws, outgoing).await.is_err() {
                return self
                    .stop(ws, Stop::Lost("connection lost while sending".into()))
                    .await;
            }
        }
    }

    /// Ends the session for `stop`, closing the socket politely where that makes sense.
    async fn stop<S>(&self, ws: &mut WebSocketStream<S>, stop: Stop) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match stop {
            Stop::Violation(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(u16::from(code)),
                    reason: reason.into(),
                };
                let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
                End::Lost {
                    was_live: self.live,
                    why: match reason {
                        "idle" => "the server went silent".to_owned(),
                        other => format!(
                            "the server sent what we cannot read ({other}, closed {code}); resyncing"
                        ),
                    },
                }
            }
            Stop::Lost(why) => {
                // If the server closed, tungstenite queued the reply; let it go out.
                let _ = timeout(CLOSE_TIMEOUT, ws.flush()).await;
                End::Lost {
                    was_live: self.live,
                    why,
                }
            }
            Stop::Fatal(error) => {
                let _ = timeout(CLOSE_TIMEOUT, ws.flush()).await;
                End::Fatal(error)
            }
        }
    }

    /// Clears our awareness and closes with 1000.
    async fn goodbye<S>(&self, ws: &mut WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let client_id = lock(&self.shared.doc).doc.client_id();
        let bye = ClientMsg::Awareness {
            client_id,
            state: None,
        };
        let _ = send_all(ws, vec![bye]).await;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        let _ = timeout(CLOSE_TIMEOUT, async {
            if ws.close(Some(frame)).await.is_ok() {
                // Wait for the server's close reply so that our last messages are read.
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }

    /// Handles one frame; returns the messages to send in reply.
    fn on_message(&mut self, message: Message) -> Result<Vec<ClientMsg>, Stop> {
        match message {
            Message::Binary(bytes) => match decode_server(&bytes) {
                Ok(msg) => self.on_server_msg(msg),
                Err(e) => {
                    tracing::debug!(error = %e, len = bytes.len(), "undecodable server message");
                    Err(Stop::Violation(
                        close::INVALID_PAYLOAD,
                        "undecodable message",
                    ))
                }
            },
            Message::Text(_) => {
                tracing::debug!("server sent a text frame");
                Err(Stop::Violation(
                    close::PROTOCOL_ERROR,
                    "text frames are not part of the duet protocol",
                ))
            }
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((close::NORMAL, String::new()), |f| {
                    (
                        close::CloseCode(u16::from(f.code)),
                        f.reason.as_str().to_owned(),
                    )
                });
                tracing::debug!(%code, reason, "server closed the connection");
                if close::is_fatal(code) {
                    Err(Stop::Fatal(fatal_close(code, reason, self.room)))
                } else if reason.is_empty() {
                    Err(Stop::Lost(format!(
                        "the server closed the connection ({code})"
                    )))
                } else {
                    Err(Stop::Lost(format!(
                        "the server closed the connection ({code}: {reason})"
                    )))
                }
            }
            // tungstenite answers pings itself while we keep reading.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(Vec::new()),
        }
    }

    fn on_server_msg(&mut self, msg: ServerMsg) -> Result<Vec<ClientMsg>, Stop> {
        match msg {
            ServerMsg::Welcome {
                peer_id,
                role,
                room,
                server,
            } => {
                tracing::debug!(peer_id, ?role, room, server, "welcome");
                let mut session = lock(&self.shared.session);
                session.peer_id = Some(peer_id);
                session.role = Some(role);
            }
            ServerMsg::SyncStep1 { state_vector } => {
                let answer = lock(&self.shared.doc).answer_sync(&state_vector);
                let answer = answer.map_err(|e| {
                    tracing::debug!(error = %e, "bad state vector from the server");
                    Stop::Violation(close::INVALID_PAYLOAD, "bad state vector")
                })?;
                self.streaming = true;
                return Ok(vec![
                    ClientMsg::SyncStep1 {
                        state_vector: answer.state_vector.into(),
                    },
                    ClientMsg::SyncStep2 {
                        seq: answer.seq,
                        update: answer.diff.into(),
                    },
                ]);
            }
            ServerMsg::SyncStep2 { update } => {
                self.apply(&update)?;
                if self.streaming && !self.live {
                    self.go_live();
                }
            }
            ServerMsg::Update { update } => self.apply(&update)?,
            ServerMsg::Awareness { entries } => self.on_awareness(entries),
            ServerMsg::Ack { seq } => {
                if let Some(seq) = lock(&self.shared.doc).ack(seq) {
                    self.shared.events.push(Event::Acked { seq });
                }
            }
            ServerMsg::Error { code, message } => {
                tracing::debug!(code = code.0, message, "server refused a message");
                self.shared
                    .events
                    .push(Event::ServerError { code, message });
            }
        }
        Ok(Vec::new())
    }

    fn apply(&self, update: &[u8]) -> Result<(), Stop> {
        let (applied, saved) = {
            let doc = &mut lock(&self.shared.doc).doc;
            let applied = doc.apply_remote_update(update);
            let ours = doc.client_id();
            let saved = match &applied {
                Ok(change) if change.saved => doc.last_saved().filter(|m| m.client_id != ours),
                _ => None,
            };
            (applied, saved)
        };
        match applied {
            Ok(change) => {
                // Any change, not only the text's: a workspace's index is a map.
                if change.changed || change.doc_changed {
                    self.shared.events.push(Event::RemoteChange);
                }
                if let Some(mark) = saved {
                    self.shared.events.push(Event::Saved(mark));
                }
                Ok(())
            }
            Err(e) => {
                // The text may have changed in part: let the application redraw. Our copy
                // can no longer be trusted to match the room, so resync from scratch.
                self.shared.events.push(Event::RemoteChange);
                tracing::debug!(error = %e, len = update.len(), "bad update from the server");
                Err(Stop::Violation(close::INVALID_PAYLOAD, "bad update"))
            }
        }
    }

    fn go_live(&mut self) {
        self.live = true;
        let merged = lock(&self.shared.doc).synced();
        self.shared.set_state(ConnState::Live);
        self.shared.events.push(Event::Synced {
            offline_updates_merged: merged,
        });
        self.settle_peers_at = Some(Instant::now() + REJOIN_GRACE);
    }

    fn on_awareness(&mut self, entries: Vec<duet_protocol::AwarenessEntry>) {
        let own_client_id = lock(&self.shared.doc).doc.client_id();
        let changes = {
            let mut session = lock(&self.shared.session);
            let own_peer_id = session.peer_id;
            session.peers.apply(
                entries,
                own_peer_id,
                own_client_id,
                std::time::Instant::now(),
            )
        };
        for name in changes.joined {
            self.shared.events.push(Event::PeerJoined { name });
        }
        for name in changes.left {
            self.shared.events.push(Event::PeerLeft { name });
        }
        if changes.changed {
            self.shared.events.push(Event::PeersChanged);
        }
    }

    fn settle_peers(&self) {
        let left = lock(&self.shared.session).peers.settle();
        for name in left {
            self.shared.events.push(Event::PeerLeft { name });
        }
    }

    /// When our awareness should next go out, if ever.
    fn next_awareness_at(&self) -> Option<Instant> {
        if !self.streaming {
            return None;
        }
        Some(match self.last_awareness {
            // Due since the session started (a fixed instant, so "due" stays due).
            None => self.started,
            Some(last) if self.shared.awareness_is_dirty() => last + AWARENESS_MIN_INTERVAL,
            Some(last) => last + AWARENESS_RENEWAL,
        })
    }

    /// What the application produced since the last look: queued updates, and our awareness
    /// if it is due.
    fn outgoing(&mut self) -> Vec<ClientMsg> {
        let mut out: Vec<ClientMsg> = lock(&self.shared.doc)
            .take_outbox()
            .into_iter()
            .map(|(seq, update)| ClientMsg::Update {
                seq,
                update: update.into(),
            })
            .collect();
        let now = Instant::now();
        if self.next_awareness_at().is_some_and(|at| at <= now) {
            self.shared.take_awareness_dirty();
            self.last_awareness = Some(now);
            out.push(self.own_awareness());
        }
        out
    }

    fn own_awareness(&self) -> ClientMsg {
        let location = lock(&self.shared.location).clone();
        let state = lock(&self.shared.doc);
        let selection = state.doc.selection();
        let show = self
            .shared
            .publish_cursor
            .load(std::sync::atomic::Ordering::Relaxed);
        let cursor = show.then(|| CursorState {
            anchor: state
                .doc
                .encode_sticky(selection.anchor, yrs::Assoc::After)
                .into(),
            head: state
                .doc
                .encode_sticky(selection.head, yrs::Assoc::After)
                .into(),
        });
        ClientMsg::Awareness {
            client_id: state.doc.client_id(),
            state: Some(PeerState {
                // The server refuses names past 256 bytes (1007); 64 characters always fit.
                name: self.name.chars().take(64).collect(),
                color: self.color.to_owned(),
                cursor,
                location,
            }),
        }
    }
}

/// Writes `messages` as one batch of binary frames.
async fn send_all<S>(ws: &mut WebSocketStream<S>, messages: Vec<ClientMsg>) -> Result<(), ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if messages.is_empty() {
        return Ok(());
    }
    let write = async {
        for msg in &messages {
            ws.feed(Message::binary(encode_client(msg))).await?;
        }
        ws.flush().await
    };
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "write failed");
            Err(())
        }
        Err(_) => {
            tracing::debug!("write stuck for {WRITE_TIMEOUT:?}");
            Err(())
        }
    }
}

/// The error for a close code that means "do not retry".
pub(crate) fn fatal_close(code: close::CloseCode, reason: String, room: &str) -> ClientError {
    let reason = if reason.is_empty() {
        format!("close code {code}")
    } else {
        reason
    };
    match code {
        close::TOKEN_EXPIRED => ClientError::Unauthorized { reason },
        close::FORBIDDEN => ClientError::Forbidden {
            room: room.to_owned(),
            reason,
        },
        close::TOO_BIG => ClientError::TooBig { reason },
        _ => ClientError::Closed {
            code: code.0,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_state::DocState;
    use duet_doc::{Document, Utf16Offset};
    use duet_protocol::{ErrorCode, decode_client, encode_server};
    use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

    async fn recv(ws: &mut WebSocketStream<tokio::io::DuplexStream>) -> ClientMsg {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => return decode_client(&b).expect("client msg"),
                Some(Ok(_)) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    async fn send(ws: &mut WebSocketStream<tokio::io::DuplexStream>, msg: ServerMsg) {
        ws.send(Message::binary(encode_server(&msg)))
            .await
            .expect("send");
    }

    /// A scripted server on the other end of an in-memory pipe.
    #[tokio::test]
    async fn a_session_syncs_reports_and_closes_1002_on_a_text_frame() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let mut server = WebSocketStream::from_raw_socket(server_io, WsRole::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
        let mut local = Document::with_client_id(5);
        local.insert(Utf16Offset(0), "offline").expect("insert");
        let shared = Shared::new(DocState::new(local));
        let cancel = CancellationToken::new();
        let mut room = Document::with_client_id(1);
        room.insert(Utf16Offset(0), "room ").expect("insert");

        let session = Session::new(&shared, "r", "ann", "#000000").run(&mut client, &cancel);
        let script = async {
            send(
                &mut server,
                ServerMsg::Welcome {
                    peer_id: 7,
                    role: duet_protocol::Role::Viewer,
                    room: "r".into(),
                    server: "script".into(),
                },
            )
            .await;
            send(
                &mut server,
                ServerMsg::SyncStep1 {
                    state_vector: room.state_vector().into(),
                },
            )
            .await;
            let ClientMsg::SyncStep1 { state_vector } = recv(&mut server).await else {
                panic!("expected SyncStep1 first");
            };
            let ClientMsg::SyncStep2 { seq, update } = recv(&mut server).await else {
                panic!("expected SyncStep2");
            };
            assert_eq!(seq, 2, "one offline update, then the diff");
            room.apply_remote_update(&update).expect("diff applies");
            send(
                &mut server,
                ServerMsg::SyncStep2 {
                    update: room.encode_diff(&state_vector).expect("sv").into(),
                },
            )
            .await;
            let ClientMsg::Awareness {
                client_id: 5,
                state: Some(state),
            } = recv(&mut server).await
            else {
                panic!("expected our awareness");
            };
            assert_eq!(
                (state.name.as_str(), state.color.as_str()),
                ("ann", "#000000")
            );
            send(
                &mut server,
                ServerMsg::Error {
                    code: ErrorCode::READ_ONLY,
                    message: "viewers cannot edit".into(),
                },
            )
            .await;
            send(&mut server, ServerMsg::Ack { seq: 99 }).await;
            server.send(Message::text("hello?")).await.expect("send");
            loop {
                match server.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        return frame.map(|f| u16::from(f.code));
                    }
                    Some(Ok(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        };
        let (end, close_code) = tokio::join!(session, script);

        assert_eq!(close_code, Some(close::PROTOCOL_ERROR.0));
        assert!(matches!(end, End::Lost { was_live: true, .. }), "{end:?}");
        assert_eq!(room.text(), lock(&shared.doc).doc.text());
        assert_eq!(
            lock(&shared.session).role,
            Some(duet_protocol::Role::Viewer)
        );
        assert_eq!(lock(&shared.session).peer_id, None, "cleared at the end");
        assert_eq!(
            lock(&shared.doc).unacked(),
            0,
            "ack clamped to the last seq"
        );
        let events = shared.events.queued();
        for expected in [
            Event::State(ConnState::Live),
            Event::Synced {
                offline_updates_merged: 1,
            },
            Event::ServerError {
                code: ErrorCode::READ_ONLY,
                message: "viewers cannot edit".into(),
            },
            Event::Acked { seq: 2 },
        ] {
            assert!(events.contains(&expected), "{expected:?} not in {events:?}");
        }
    }

    #[test]
    fn fatal_close_codes_become_actionable_errors() {
        assert_eq!(
            fatal_close(close::CloseCode(4401), "token expired".into(), "r").to_string(),
            "server refused the token: token expired; get a new token and reconnect"
        );
        assert_eq!(
            fatal_close(close::CloseCode(4403), String::new(), "r").to_string(),
            "access to room \"r\" is forbidden: close code 4403"
        );
        assert!(matches!(
            fatal_close(close::CloseCode(1009), "2 MB > 1 MB".into(), "r"),
            ClientError::TooBig { .. }
        ));
        assert!(matches!(
            fatal_close(close::CloseCode(4429), "slow down".into(), "r"),
            ClientError::Closed { code: 4429, .. }
        ));
    }
}
