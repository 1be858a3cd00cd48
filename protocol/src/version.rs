//! Protocol versioning through the WebSocket subprotocol (`Sec-WebSocket-Protocol`).
//!
//! A duet client offers `duet.v1`; the server picks the first version it supports. A client
//! that offers only `duet.*` versions the server does not know is refused at the handshake with
//! a message that names the supported ones. A client that offers no `duet.*` subprotocol at all
//! is not a duet client (a plain Yjs / y-websocket client, for instance).

/// The first (and current) version of the duet protocol.
pub const PROTOCOL_V1: &str = "duet.v1";

/// Every version this build speaks, newest first.
pub const SUPPORTED_PROTOCOLS: &[&str] = &[PROTOCOL_V1];

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
    fn picks_v1_among_others() {
        assert_eq!(
            choose_subprotocol(["foo, duet.v1", "bar"]),
            SubprotocolChoice::Duet(PROTOCOL_V1)
        );
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
