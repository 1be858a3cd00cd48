//! The errors a user of the client can act on: each message says what happened and, where
//! there is one, what to do about it.

use std::time::Duration;

/// Why the client stopped (delivered as [`crate::Event::Fatal`]) or why a wait failed.
///
/// Every variant except [`ClientError::Timeout`] ends the connection loop: retrying would not
/// help until a person changes something (the token, the URL, the client version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server does not speak our protocol version (HTTP 400 at the handshake).
    #[error("server refused protocol {offered}: {}", speaks(supported, body))]
    VersionRefused {
        /// The version this client offered.
        offered: String,
        /// The versions the server named in its answer (may be empty if it named none).
        supported: Vec<String>,
        /// The server's answer, as text.
        body: String,
    },
    /// The token is missing, invalid or expired (HTTP 401 at the handshake, or close 4401).
    #[error("server refused the token: {reason}; get a new token and reconnect")]
    Unauthorized { reason: String },
    /// The server wants a token and none was configured (HTTP 401 without a token).
    #[error("the server requires an access token and none was given: {reason}")]
    TokenRequired { reason: String },
    /// The token does not grant this room (HTTP 403 at the handshake, or close 4403).
    #[error("access to room {room:?} is forbidden: {reason}")]
    Forbidden { room: String, reason: String },
    /// A message exceeded the server's size limit (close 1009); resending it would fail again.
    #[error("server closed the connection because a message was too big: {reason}")]
    TooBig { reason: String },
    /// Another HTTP answer that retrying will not change (a 4xx other than 401/403, say).
    #[error("server refused the connection with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    /// Another close code that means "do not retry" (44xx).
    #[error("server closed the connection with code {code}: {reason}")]
    Closed { code: u16, reason: String },
    /// The server accepted the WebSocket but not the `duet.vN` subprotocol it offered.
    #[error("{url} did not agree to protocol {offered}; is it a duet server?")]
    NotDuet { url: String, offered: String },
    /// The server address cannot be used.
    #[error("invalid server address {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The CA file given for `wss://` cannot be used.
    #[error("cannot use CA certificates from {path:?}: {reason}")]
    InvalidCa { path: String, reason: String },
    /// The token cannot be sent in an HTTP header.
    #[error("invalid token: {reason}")]
    InvalidToken { reason: String },
    /// [`crate::Client::wait_synced`] gave up.
    #[error("not synced after {after:?}")]
    Timeout { after: Duration },
    /// The client was closed before the awaited condition held.
    #[error("the client was closed")]
    Stopped,
}

fn speaks(supported: &[String], body: &str) -> String {
    if supported.is_empty() {
        format!("it answered {body:?}")
    } else {
        format!("it speaks {}", supported.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_refusal_names_what_the_server_speaks() {
        let e = ClientError::VersionRefused {
            offered: "duet.v1".into(),
            supported: vec!["duet.v2".into(), "duet.v3".into()],
            body: "whatever".into(),
        };
        assert_eq!(
            e.to_string(),
            "server refused protocol duet.v1: it speaks duet.v2, duet.v3"
        );
        let e = ClientError::VersionRefused {
            offered: "duet.v1".into(),
            supported: vec![],
            body: "nope".into(),
        };
        assert_eq!(
            e.to_string(),
            "server refused protocol duet.v1: it answered \"nope\""
        );
    }
}
