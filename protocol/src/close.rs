//! WebSocket close codes the server sends and what a client should do about each.
//!
//! 1000–1015 are the standard codes (RFC 6455 §7.4.1). 4400–4499 mirror HTTP 4xx and mean
//! "do not retry": y-websocket stops reconnecting on them, and so does duet's client.

pub const NORMAL: u16 = 1000;
/// The server is shutting down; reconnect later.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the WebSocket or duet protocol (bad frame, unexpected message).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A message could not be decoded (bad bincode, malformed yrs update).
pub const INVALID_PAYLOAD: u16 = 1007;
/// A policy was violated (rates, permissions).
pub const POLICY: u16 = 1008;
/// A message exceeded the size cap.
pub const TOO_BIG: u16 = 1009;
/// The server hit an internal error handling this connection.
pub const INTERNAL: u16 = 1011;
/// The client could not keep up (its send queue filled); reconnect and resync.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The token expired during the session (re-authenticate before reconnecting).
pub const TOKEN_EXPIRED: u16 = 4401;
/// The token does not grant this room.
pub const FORBIDDEN: u16 = 4403;

/// Whether a client should stop reconnecting after the server closed with `code`.
pub fn is_fatal(code: u16) -> bool {
    (4400..=4499).contains(&code) || code == TOO_BIG
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
