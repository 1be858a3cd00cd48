//! WebSocket close codes the server sends and what a client should do about each.
//!
//! 1000–1015 are the standard codes (RFC 6455 §7.4.1). 4400–4499 mirror HTTP 4xx and mean
//! "do not retry": y-websocket stops reconnecting on them, and so does duet's client.

/// A WebSocket close code as duet sends and reads it (a number on the wire, a type here so
/// that a code is never confused with another number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// Whether a client should stop reconnecting after the server closed with this code.
    pub fn is_fatal(self) -> bool {
        (4400..=4499).contains(&self.0) || self == TOO_BIG
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> Self {
        c.0
    }
}

impl From<u16> for CloseCode {
    fn from(c: u16) -> Self {
        Self(c)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub const NORMAL: CloseCode = CloseCode(1000);
/// The server is shutting down; reconnect later.
pub const GOING_AWAY: CloseCode = CloseCode(1001);
/// The peer broke the WebSocket or duet protocol (bad frame, unexpected message).
pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
/// A message could not be decoded (bad bincode, malformed yrs update).
pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
/// A policy was violated (rates, permissions).
pub const POLICY: CloseCode = CloseCode(1008);
/// A message exceeded the size cap.
pub const TOO_BIG: CloseCode = CloseCode(1009);
/// The server hit an internal error handling this connection.
pub const INTERNAL: CloseCode = CloseCode(1011);
/// The client could not keep up (its send queue filled); reconnect and resync.
pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
/// The token expired during the session (re-authenticate before reconnecting).
pub const TOKEN_EXPIRED: CloseCode = CloseCode(4401);
/// The token does not grant this room.
pub const FORBIDDEN: CloseCode = CloseCode(4403);

/// Whether a client should stop reconnecting after the server closed with `code`.
pub fn is_fatal(code: impl Into<CloseCode>) -> bool {
    code.into().is_fatal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy() {
        assert!(!is_fatal(GOING_AWAY));
        assert!(!is_fatal(TRY_AGAIN_LATER));
        assert!(!is_fatal(INTERNAL));
        assert!(is_fatal(TOKEN_EXPIRED));
        assert!(is_fatal(FORBIDDEN));
        assert!(is_fatal(TOO_BIG));
    }
}
