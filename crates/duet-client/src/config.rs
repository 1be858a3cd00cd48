//! What a client needs to know before it connects.

use crate::Backoff;
use duet_protocol::RoomName;

/// Where to connect and who we are.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's address without the room, e.g. `ws://127.0.0.1:7070`.
    pub server: String,
    /// The room; it becomes the URL path.
    pub room: RoomName,
    /// Our display name, shown to the other members.
    pub name: String,
    /// Our colour as `#rrggbb`; `None` (or anything not of that form): derived from the name.
    pub color: Option<String>,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    pub backoff: Backoff,
    /// For `wss://`: a PEM file of extra CA certificates to trust (a private CA), on top of
    /// the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Publish our cursor with our awareness (true); false in rooms whose text nobody
    /// edits, such as a workspace's index, where only [`crate::Client::set_location`]
    /// matters.
    pub publish_cursor: bool,
}

impl ClientConfig {
    /// A configuration with a derived colour, no token and the default backoff.
    pub fn new(server: impl Into<String>, room: RoomName, name: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            room,
            name: name.into(),
            color: None,
            token: None,
            backoff: Backoff::default(),
            ca_file: None,
            publish_cursor: true,
        }
    }

    /// The colour we announce.
    pub fn effective_color(&self) -> String {
        match &self.color {
            Some(c) if crate::color::is_hex_color(c) => c.to_ascii_lowercase(),
            _ => crate::color_for(&self.name),
        }
    }
}
