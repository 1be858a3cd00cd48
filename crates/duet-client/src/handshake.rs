//! The WebSocket handshake: the request we send and what a refusal means.
//!
//! A refusal is either fatal (a person must change something: token, URL, client version)
//! or worth retrying (the network, an overloaded or restarting server).

use crate::{ClientConfig, ClientError};
use duet_protocol::PROTOCOL_V1;
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
        HeaderValue::from_static(PROTOCOL_V1),
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

/// Checks that the server agreed to speak `duet.v1`. (tungstenite already refuses a
/// subprotocol we did not offer; this also refuses an answer without one.)
pub(crate) fn check_response(config: &ClientConfig, response: &Response) -> Result<(), Failure> {
    let agreed = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if agreed == Some(PROTOCOL_V1) {
        Ok(())
    } else {
        Err(Failure::Fatal(not_duet(config)))
    }
}

fn not_duet(config: &ClientConfig) -> ClientError {
    ClientError::NotDuet {
        url: url(config),
        offered: PROTOCOL_V1.into(),
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
        other => Failure::Retry(other.to_string()),
    }
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
                    offered: PROTOCOL_V1.into(),
                    supported,
                    body,
                })
            }
        }
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
            && word != PROTOCOL_V1
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
        }
    }

    #[test]
    fn the_request_names_room_protocol_and_token() {
        let req = request(&config("ws://127.0.0.1:7070/")).expect("valid");
        assert_eq!(req.uri().to_string(), "ws://127.0.0.1:7070/team/notes.md");
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_PROTOCOL], "duet.v1");
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
                "unsupported protocol duet.v1; supported: duet.v2, duet.v3.",
                "server refused protocol duet.v1: it speaks duet.v2, duet.v3",
            ),
            (
                400,
                "unsupported protocol version",
                "server refused protocol duet.v1: it answered \"unsupported protocol version\"",
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
        for code in [408, 429, 500, 502, 503] {
            assert!(matches!(status(code, "busy"), Failure::Retry(_)), "{code}");
        }
    }
}
