//! A raw duet-protocol client over tokio-tungstenite: sends and receives protocol messages
//! directly, with no document model, to test the server's behaviour at the wire level.

use anyhow::{Context, bail};
use duet_protocol::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct RawClient {
    pub ws: Ws,
}

/// How a session ended, seen from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed {
        code: duet_protocol::close::CloseCode,
        reason: String,
    },
    /// The connection dropped without a close frame.
    Dropped,
}

impl RawClient {
    /// Connects to `base`/`room` offering the current duet protocol.
    pub async fn connect(base: &str, room: &str) -> anyhow::Result<Self> {
        Self::connect_with(base, room, 64 << 20).await
    }

    pub async fn connect_with(base: &str, room: &str, max_message: usize) -> anyhow::Result<Self> {
        let mut request = format!("{base}/{room}").into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(duet_protocol::PROTOCOL),
        );
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .context("websocket connect")?;
        Ok(Self { ws })
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.send_raw(duet_protocol::encode_client(msg)).await
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// The next protocol message, within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<ServerMsg> {
        loop {
            let next = tokio::time::timeout(timeout, self.ws.next())
                .await
                .context("timed out waiting for a message")?;
            match next {
                Some(Ok(Message::Binary(b))) => return Ok(duet_protocol::decode_server(&b)?),
                Some(Ok(Message::Close(frame))) => bail!("closed: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("read error: {e}"),
                None => bail!("connection ended"),
            }
        }
    }

    /// Receives until `pick` returns `Some`, skipping other messages.
    pub async fn recv_until<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.recv(left).await?;
            if let Some(v) = pick(&msg) {
                return Ok(v);
            }
        }
    }

    /// Reads (discarding messages) until the server ends the session.
    pub async fn until_end(&mut self, timeout: Duration) -> anyhow::Result<Ended> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => bail!("session did not end within {timeout:?}"),
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return Ok(Ended::Closed {
                        code: duet_protocol::close::CloseCode(frame.code.into()),
                        reason: frame.reason.to_string(),
                    });
                }
                Ok(Some(Ok(Message::Close(None)))) => {
                    return Ok(Ended::Closed {
                        code: duet_protocol::close::CloseCode(1005),
                        reason: String::new(),
                    });
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return Ok(Ended::Dropped),
            }
        }
    }
}
