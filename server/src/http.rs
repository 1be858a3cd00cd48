//! The HTTP side of a connection: reads one request head, answers plain HTTP requests
//! (`/healthz`, `/metrics`, errors with a status a person can act on) and performs the
//! WebSocket upgrade itself, so every refusal gets a real status and a readable body instead of
//! a dropped socket.

use duet_protocol::{RoomName, SubprotocolChoice, choose_subprotocol, supported_list};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 48;

/// A parsed request head, plus any bytes that arrived after it.
#[derive(Debug)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub rest: Vec<u8>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("connection closed before a full request head")]
    Eof,
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("io error reading request head: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads and parses one request head.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<RequestHead, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.to_owned(), None),
                };
                return Ok(RequestHead {
                    method: req.method.unwrap_or("").to_owned(),
                    path,
                    query,
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

/// A plain HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub content_type: &'static str,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Self {
            status,
            headers: Vec::new(),
            body,
            content_type: "text/plain; charset=utf-8",
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub async fn write<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> std::io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Which protocol an accepted WebSocket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Duet(&'static str),
    /// The standard y-websocket protocol (no duet subprotocol offered).
    Yjs,
    /// Debug builds only: echo every message back, for WebSocket conformance tests
    /// (Autobahn|Testsuite) through the server's own accept path, limits and frame handling.
    #[cfg(debug_assertions)]
    Echo,
}

/// Debug builds only: the path of the echo route, served when the process was started with
/// `DUET_DEBUG_ECHO_ROUTE=1`. `~` is not allowed in room names, so no room can be shadowed;
/// release builds answer it like any other invalid room (400).
#[cfg(debug_assertions)]
pub const ECHO_PATH: &str = "/~echo";

#[cfg(debug_assertions)]
fn echo_route_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DUET_DEBUG_ECHO_ROUTE").is_some_and(|v| v == "1"))
}

/// A request that may become a WebSocket session.
#[derive(Debug)]
pub struct Upgrade {
    pub room: RoomName,
    pub flavor: Flavor,
    pub accept_key: String,
}

/// What to do with a request head.
pub enum Route {
    Respond(Response),
    Upgrade(Upgrade),
}

/// Decides what a request head asks for. `health` says whether the server should get clients
/// (`/healthz`: 200, or 503 with the reason, so a load balancer drains it).
pub fn route(
    head: &RequestHead,
    metrics: impl FnOnce() -> String,
    health: impl FnOnce() -> Result<(), String>,
) -> Route {
    let is_upgrade = head.header_has_token("connection", "upgrade")
        && head.header_has_token("upgrade", "websocket");
    if !is_upgrade {
        return Route::Respond(match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/healthz") => match health() {
                Ok(()) => Response::text(200, "ok"),
                Err(why) => Response::text(503, format!("unhealthy: {why}")),
            },
            ("GET", "/metrics") => {
                let mut r = Response::text(200, metrics());
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                r
            }
            ("GET", _) => Response::text(
                426,
                "this is a duet sync server: connect with a WebSocket client (duet, or any Yjs y-websocket client)",
            )
            .with_header("Upgrade", "websocket"),
            (method, _) => Response::text(405, format!("method {method} is not allowed")),
        });
    }
    if head.method != "GET" {
        return Route::Respond(Response::text(405, "a WebSocket upgrade must use GET"));
    }
    if head.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Route::Respond(
            Response::text(
                426,
                "unsupported WebSocket version; this server speaks version 13",
            )
            .with_header("Sec-WebSocket-Version", "13"),
        );
    }
    let Some(key) = head.header("sec-websocket-key").map(str::trim) else {
        return Route::Respond(Response::text(400, "missing Sec-WebSocket-Key header"));
    };
    #[cfg(debug_assertions)]
    if head.path == ECHO_PATH && echo_route_enabled() {
        return Route::Upgrade(Upgrade {
            room: RoomName::new("echo").unwrap_or_else(|e| unreachable!("{e}")),
            flavor: Flavor::Echo,
            accept_key: tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                key.as_bytes(),
            ),
        });
    }
    let room = match RoomName::new(head.path.trim_start_matches('/')) {
        Ok(room) => room,
        Err(e) => {
            return Route::Respond(Response::text(
                400,
                format!("invalid room in URL path: {e}"),
            ));
        }
    };
    let flavor = match choose_subprotocol(head.headers_named("sec-websocket-protocol")) {
        SubprotocolChoice::Duet(version) => Flavor::Duet(version),
        SubprotocolChoice::Unsupported { offered } => {
            return Route::Respond(Response::text(
                400,
                format!(
                    "unsupported duet protocol version {}; this server speaks {}. Update duet on one side so both speak the same version",
                    offered.join(", "),
                    supported_list()
                ),
            ));
        }
        SubprotocolChoice::NotDuet => Flavor::Yjs,
    };
    Route::Upgrade(Upgrade {
        room,
        flavor,
        accept_key: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
    })
}

/// Writes the `101 Switching Protocols` response for `upgrade`.
pub async fn accept<S: AsyncWrite + Unpin>(
    stream: &mut S,
    upgrade: &Upgrade,
) -> std::io::Result<()> {
    let protocol_header = match upgrade.flavor {
        Flavor::Duet(protocol) => format!("Sec-WebSocket-Protocol: {protocol}\r\n"),
        Flavor::Yjs => String::new(),
        #[cfg(debug_assertions)]
        Flavor::Echo => String::new(),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol_header}\r\n",
        upgrade.accept_key
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head(raw: &str) -> RequestHead {
        let mut bytes = raw.as_bytes();
        read_head(&mut bytes).await.expect("parses")
    }

    fn upgrade_request(path: &str, protocol: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
    }

    fn ok() -> Result<(), String> {
        Ok(())
    }

    fn status(route: Route) -> (u16, String) {
        match route {
            Route::Respond(r) => (r.status, r.body),
            Route::Upgrade(u) => (101, u.room.to_string()),
        }
    }

    #[tokio::test]
    async fn routes_requests() {
        let h = head("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status(route(&h, String::new, ok)).0, 200);
        let down = || Err("postgresql unreachable: connection refused".to_owned());
        assert_eq!(
            status(route(&h, String::new, down)),
            (
                503,
                "unhealthy: postgresql unreachable: connection refused\n".into()
            )
        );
        let h = head(&upgrade_request("/team/notes.md?x=1", "duet.v2")).await;
        assert_eq!(
            status(route(&h, String::new, ok)),
            (101, "team/notes.md".into())
        );
        let h = head(&upgrade_request("/a/../b", "duet.v2")).await;
        assert_eq!(status(route(&h, String::new, ok)).0, 400);
        // A v1 client (before workspaces' locations) is told what this server speaks.
        let h = head(&upgrade_request("/a", "duet.v1")).await;
        let (code, body) = status(route(&h, String::new, ok));
        assert_eq!(code, 400);
        assert!(
            body.contains("duet.v1") && body.contains("duet.v2"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn accept_key_matches_rfc_example() {
        let h = head(&upgrade_request("/a", "duet.v2")).await;
        let Route::Upgrade(u) = route(&h, String::new, ok) else {
            panic!("expected an upgrade")
        };
        assert_eq!(u.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[tokio::test]
    async fn missing_key_is_400() {
        let raw = "GET /a HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let h = head(raw).await;
        assert_eq!(status(route(&h, String::new, ok)).0, 400);
    }
}
