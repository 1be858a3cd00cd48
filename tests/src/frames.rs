//! WebSocket frames by hand over a plain TCP socket: the upgrade, masked client frames of any
//! opcode and payload (including ones a WebSocket library refuses to send, such as close
//! frames with forbidden codes), and the server's frames read back until it closes TCP.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// One frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// What the server did after the frames a test sent.
#[derive(Debug)]
pub struct Outcome {
    /// Every frame before the end, in order.
    pub frames: Vec<Frame>,
    /// The server closed TCP (read returned 0 or the connection was reset).
    pub tcp_closed: bool,
}

impl Outcome {
    /// The first close frame the server sent.
    pub fn close(&self) -> Option<&Frame> {
        self.frames.iter().find(|f| f.opcode == OP_CLOSE)
    }
}

/// An upgraded connection spoken frame by frame.
pub struct RawSocket {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawSocket {
    /// Upgrades `path` with `protocol` as `Sec-WebSocket-Protocol` (none if empty) and checks
    /// the 101.
    pub async fn upgrade(addr: SocketAddr, path: &str, protocol: &str) -> anyhow::Result<Self> {
        let mut tcp = TcpStream::connect(addr).await?;
        let protocol = if protocol.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {protocol}\r\n")
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}\r\n"
        );
        tcp.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
                .await
                .context("no upgrade response")??;
            if n == 0 {
                bail!("connection closed during the upgrade");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            bail!("not upgraded: {}", String::from_utf8_lossy(&buf));
        }
        buf.drain(..head_end);
        Ok(Self { tcp, buf })
    }

    /// Sends one masked frame (mask key 0x37fa213d, as in RFC 6455 5.7).
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.tcp.write_all(&frame).await?;
        Ok(())
    }

    /// Sends a close frame with `code` and `reason`.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> anyhow::Result<()> {
        let payload = [&code.to_be_bytes()[..], reason.as_bytes()].concat();
        self.send(true, OP_CLOSE, &payload).await
    }

    /// Reads the server's frames until it closes TCP, or until `timeout`: then `tcp_closed` is
    /// false. Frames are unmasked (server to client).
    pub async fn until_tcp_closed(&mut self, timeout: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tcp_closed = false;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    tcp_closed = true;
                    break;
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        Outcome {
            frames: parse_frames(&self.buf),
            tcp_closed,
        }
    }
}

/// Splits unmasked frames; an incomplete last frame is left out.
fn parse_frames(mut rest: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if rest.len() < header + len {
            break;
        }
        out.push(Frame {
            opcode,
            payload: rest[header..header + len].to_vec(),
        });
        rest = &rest[header + len..];
    }
    out
}
