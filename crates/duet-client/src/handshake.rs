//! The WebSocket handshake: the request we send and what a refusal means.
//!
//! A refusal is either fatal (a person must change something: token, URL, client version)
//! or worth retrying (the network, an overloaded or restarting server).

use crate::{ClientConfig, ClientError};
use duet_protocol::PROTOCOL;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};

/// Longest part of a server's HTTP answer kept for an error message, in chars.
const MAX_BODY_CHARS: usize = 512;

/// Why a connection attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Stop the loop.
    Fatal(ClientError),
    /// Try again after a backoff delay; the text is for the debug log.
    Retry(String),
}

/// `ws://host:port` + `/` + room.
pub(crate) fn url(config: &ClientConfig) -> String {
    format!("{}/{}", config.server.trim_end_matches('/'), config.room)
}

/// The handshake request: the room in the path, our protocol version offered, the token (if
/// any) as a bearer credential.
pub(crate) fn request(config: &ClientConfig) -> Result<Request, ClientError> {
    let url = url(config);
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(ClientError::InvalidUrl {
            url,
            reason: "the address must start with ws:// or wss://".into(),
        });
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(PROTOCOL),
    );
    if let Some(token) = &config.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::InvalidToken {
                reason: "it contains characters not allowed in an HTTP header".into(),
            }
        })?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    Ok(request)
}

/// Checks that the server agreed to speak `duet.v2`. (tungstenite already refuses a
/// subprotocol we did not offer; this also refuses an answer without one.)
pub(crate) fn check_response(config: &ClientConfig, response: &Response) -> Result<(), Failure> {
    let agreed = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if agreed == Some(PROTOCOL) {
        Ok(())
    } else {
        Err(Failure::Fatal(not_duet(config)))
    }
}

fn not_duet(config: &ClientConfig) -> ClientError {
    ClientError::NotDuet {
        url: url(config),
        offered: PROTOCOL.into(),
    }
}

/// Sorts a failed handshake into "stop" and "retry".
pub(crate) fn classify(config: &ClientConfig, error: WsError) -> Failure {
    match error {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim()
                        .chars()
                        .take(MAX_BODY_CHARS)
                        .collect()
                })
                .unwrap_or_default();
            classify_status(config, response.status(), body)
        }
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => {
            Failure::Fatal(not_duet(config))
        }
        WsError::Url(e) => Failure::Fatal(ClientError::InvalidUrl {
            url: url(config),
            reason: e.to_string(),
        }),
        other => Failure::Retry(describe(config, &other)),
    }
}

/// Why a connection attempt failed, in words a person can act on: "connection refused"
/// rather than "IO error: Connection refused (os error 111)".
pub(crate) fn describe(config: &ClientConfig, error: &WsError) -> String {
    let host = host_port(&config.server);
    match error {
        WsError::Io(e) => describe_io(&host, e),
        WsError::Tls(e) => {
            let e = e.to_string();
            if e.contains("UnknownIssuer") || e.contains("certificate") {
                format!(
                    "TLS: {host} sent a certificate we do not trust ({e}); pass --ca FILE for a private CA"
                )
            } else {
                format!("TLS with {host} failed: {e}")
            }
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            format!("{host} closed the connection during the handshake")
        }
        WsError::Protocol(e) => format!("{host} does not speak WebSocket correctly: {e}"),
        WsError::HttpFormat(e) => format!("{host} sent an answer that is not HTTP: {e}"),
        other => other.to_string(),
    }
}

fn describe_io(host: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let text = e.to_string();
    match e.kind() {
        K::ConnectionRefused => format!("connection refused: nothing listens at {host}"),
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
            format!("{host} dropped the connection during the handshake")
        }
        K::TimedOut => format!("{host} did not answer (timed out)"),
        K::HostUnreachable => format!("host unreachable: {host}"),
        K::NetworkUnreachable => format!("network unreachable for {host}"),
        K::AddrNotAvailable => format!("address not available: {host}"),
        // getaddrinfo failures have no kind of their own.
        _ if text.contains("lookup address") || text.contains("resolve") => {
            format!("cannot resolve the host of {host} ({text})")
        }
        _ => format!("cannot connect to {host}: {text}"),
    }
}

/// `host:port` of a `ws://` or `wss://` address, for messages.
fn host_port(server: &str) -> String {
    let rest = server
        .strip_prefix("wss://")
        .or_else(|| server.strip_prefix("ws://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

pub(crate) fn classify_status(config: &ClientConfig, status: StatusCode, body: String) -> Failure {
    let reason = if body.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    } else {
        body.clone()
    };
    match status.as_u16() {
        400 => {
            let supported = duet_versions(&body);
            if supported.is_empty() && !body.to_ascii_lowercase().contains("protocol") {
                Failure::Fatal(ClientError::Refused { status: 400, body })
            } else {
                Failure::Fatal(ClientError::VersionRefused {
                    offered: PROTOCOL.into(),
                    supported,
                    body,
                })
            }
        }
        401 if config.token.is_none() => Failure::Fatal(ClientError::TokenRequired { reason }),
        401 => Failure::Fatal(ClientError::Unauthorized { reason }),
        403 => Failure::Fatal(ClientError::Forbidden {
            room: config.room.to_string(),
            reason,
        }),
        // Timeouts, rate limits and server-side trouble pass.
        408 | 429 | 500..=599 => Failure::Retry(format!("HTTP {status}: {reason}")),
        _ => Failure::Fatal(ClientError::Refused {
            status: status.as_u16(),
            body,
        }),
    }
}

/// The `duet.*` versions a refusal names, other than the one we offered, in order.
fn duet_versions(body: &str) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for word in body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')) {
        let word = word.trim_end_matches('.');
        if word.starts_with("duet.")
            && word.len() > "duet.".len()
            && word != PROTOCOL
            && !versions.iter().any(|v| v == word)
        {
            versions.push(word.to_owned());
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backoff;
    use duet_protocol::RoomName;

    fn config(server: &str) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            room: RoomName::new("team/notes.md").expect("valid room"),
            name: "ann".into(),
            color: None,
            token: Some("s3cret".into()),
            backoff: Backoff::default(),
            ca_file: None,
            publish_cursor: true,
        }
    }

    #[test]
    fn the_request_names_room_protocol_and_token() {
        let req = request(&config("ws://127.0.0.1:7070/")).expect("valid");
        assert_eq!(req.uri().to_string(), "ws://127.0.0.1:7070/team/notes.md");
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_PROTOCOL], "duet.v2");
        assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer s3cret");
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn bad_addresses_and_tokens_are_reported() {
        for bad in ["http://127.0.0.1:7070", "127.0.0.1:7070", "ws://bad host"] {
            assert!(
                matches!(request(&config(bad)), Err(ClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let mut c = config("ws://127.0.0.1:1");
        c.token = Some("line\nbreak".into());
        assert!(matches!(request(&c), Err(ClientError::InvalidToken { .. })));
    }

    fn status(code: u16, body: &str) -> Failure {
        classify_status(
            &config("ws://h:1"),
            StatusCode::from_u16(code).expect("valid status"),
            body.into(),
        )
    }

    #[test]
    fn refusals_are_sorted_into_stop_and_retry() {
        let table: &[(u16, &str, &str)] = &[
            (
                400,
                "unsupported protocol duet.v2; supported: duet.v3, duet.v4.",
                "server refused protocol duet.v2: it speaks duet.v3, duet.v4",
            ),
            (
                400,
                "unsupported protocol version",
                "server refused protocol duet.v2: it answered \"unsupported protocol version\"",
            ),
            (
                400,
                "bad room name",
                "server refused the connection with HTTP 400: bad room name",
            ),
            (
                401,
                "token expired",
                "server refused the token: token expired; get a new token and reconnect",
            ),
            (
                401,
                "",
                "server refused the token: Unauthorized; get a new token and reconnect",
            ),
            (
                403,
                "no",
                "access to room \"team/notes.md\" is forbidden: no",
            ),
            (
                404,
                "not here",
                "server refused the connection with HTTP 404: not here",
            ),
        ];
        for (code, body, message) in table {
            match status(*code, body) {
                Failure::Fatal(e) => assert_eq!(e.to_string(), *message, "{code} {body}"),
                Failure::Retry(r) => panic!("{code} {body}: retry {r}"),
            }
        }
        let mut anonymous = config("ws://h:1");
        anonymous.token = None;
        let no_token = classify_status(&anonymous, StatusCode::UNAUTHORIZED, "no token".into());
        assert!(
            matches!(no_token, Failure::Fatal(ClientError::TokenRequired { .. })),
            "{no_token:?}"
        );
        for code in [408, 429, 500, 502, 503] {
            assert!(matches!(status(code, "busy"), Failure::Retry(_)), "{code}");
        }
    }

    #[test]
    fn connection_failures_are_described_for_people() {
        use std::io::{Error, ErrorKind};
        let c = config("ws://127.0.0.1:7499/");
        let io = |kind, text: &str| describe(&c, &WsError::Io(Error::new(kind, text.to_owned())));
        assert_eq!(
            io(
                ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)"
            ),
            "connection refused: nothing listens at 127.0.0.1:7499"
        );
        assert_eq!(
            io(
                ErrorKind::Other,
                "failed to lookup address information: Name or service not known"
            ),
            "cannot resolve the host of 127.0.0.1:7499 (failed to lookup address information: Name or service not known)"
        );
        assert_eq!(
            io(ErrorKind::TimedOut, "timed out"),
            "127.0.0.1:7499 did not answer (timed out)"
        );
        assert_eq!(host_port("wss://example.org:443/x"), "example.org:443");
    }
}
