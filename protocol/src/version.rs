//! Protocol versioning through the WebSocket subprotocol (`Sec-WebSocket-Protocol`).
//!
//! A duet client offers [`PROTOCOL`]; the server picks the first version it supports. A
//! client that offers only `duet.*` versions the server does not know is refused at the
//! handshake with a message that names the supported ones. A client that offers no `duet.*`
//! subprotocol at all is not a duet client (a plain Yjs / y-websocket client, for instance).
//!
//! Versions: `duet.v1`, the first; `duet.v2` adds an optional [`crate::Location`] to every
//! awareness state (who is in which file of a workspace). bincode has no optional trailing
//! fields, so a v1 peer could not read a v2 state nor the reverse: v1 is no longer spoken
//! and its clients are refused with a message that names v2.

/// The first version of the duet protocol; no longer spoken (refused at the handshake).
pub const PROTOCOL_V1: &str = "duet.v1";

/// The second version: awareness states carry an optional location.
pub const PROTOCOL_V2: &str = "duet.v2";

/// The version this build offers and speaks.
pub const PROTOCOL: &str = PROTOCOL_V2;

/// Every version this build speaks, newest first.
pub const SUPPORTED_PROTOCOLS: &[&str] = &[PROTOCOL_V2];

/// What the server should do with the subprotocols a client offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubprotocolChoice {
    /// Speak this duet version (echo it in the handshake response).
    Duet(&'static str),
    /// The client wants duet, but only versions we do not speak: refuse with this list.
    Unsupported { offered: Vec<String> },
    /// The client offered no duet subprotocol.
    NotDuet,
}

/// Picks a duet version from the comma-separated `Sec-WebSocket-Protocol` header values.
pub fn choose_subprotocol<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
) -> SubprotocolChoice {
    let offered: Vec<String> = header_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    for supported in SUPPORTED_PROTOCOLS {
        if offered.iter().any(|p| p == supported) {
            return SubprotocolChoice::Duet(supported);
        }
    }
    let duet: Vec<String> = offered
        .into_iter()
        .filter(|p| p.starts_with("duet."))
        .collect();
    if duet.is_empty() {
        SubprotocolChoice::NotDuet
    } else {
        SubprotocolChoice::Unsupported { offered: duet }
    }
}

/// The supported versions as one human-readable list, for error messages.
pub fn supported_list() -> String {
    SUPPORTED_PROTOCOLS.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_v2_among_others() {
        assert_eq!(
            choose_subprotocol(["foo, duet.v2", "bar"]),
            SubprotocolChoice::Duet(PROTOCOL_V2)
        );
        assert_eq!(
            choose_subprotocol(["duet.v1, duet.v2"]),
            SubprotocolChoice::Duet(PROTOCOL_V2)
        );
    }

    #[test]
    fn a_v1_client_is_refused_and_told_what_is_spoken() {
        assert_eq!(
            choose_subprotocol([PROTOCOL_V1]),
            SubprotocolChoice::Unsupported {
                offered: vec!["duet.v1".into()]
            }
        );
        assert_eq!(supported_list(), "duet.v2");
    }

    #[test]
    fn unknown_duet_version_is_unsupported() {
        assert_eq!(
            choose_subprotocol(["duet.v9"]),
            SubprotocolChoice::Unsupported {
                offered: vec!["duet.v9".into()]
            }
        );
    }

    #[test]
    fn no_duet_offer_is_not_duet() {
        assert_eq!(choose_subprotocol([]), SubprotocolChoice::NotDuet);
        assert_eq!(choose_subprotocol(["chat"]), SubprotocolChoice::NotDuet);
    }
}
