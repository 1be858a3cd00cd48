//! The other members of the room, kept from the server's awareness messages.
//!
//! Plain state, no IO: the session feeds it entries and turns the returned changes into
//! events. Across a reconnect the map is emptied (the server resends everything), but peers
//! seen before the disconnect are remembered so that a network blip does not announce
//! "alice left" and "alice joined" again:
//!
//! ```text
//!   connected       disconnected        new session:              3 s after Live (grace):
//!   {alice, bob} -> {} (remembered:  -> alice reappears        -> bob never came back:
//!                    alice, bob)        (no "joined" for her)     "bob left"
//! ```

use crate::color::{color_for, is_hex_color};
use duet_protocol::{AwarenessEntry, CursorState, Location, Role};
use std::collections::HashMap;
use std::time::Instant;

/// Longest display name kept, in chars.
const MAX_NAME_CHARS: usize = 64;

/// One peer as its awareness entry described it; the cursor is still encoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Peer {
    pub peer_id: u64,
    pub client_id: u64,
    pub name: String,
    pub color: String,
    pub role: Role,
    pub cursor: Option<CursorState>,
    pub location: Option<Location>,
    pub last_change: Instant,
}

/// What one awareness message changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub joined: Vec<String>,
    pub left: Vec<String>,
    /// Anything visible changed (including joins and leaves).
    pub changed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// Keyed by yrs client id, as the server keys awareness entries.
    live: HashMap<u64, Peer>,
    /// Peers of an earlier session not yet seen again, by client id: their names.
    remembered: HashMap<u64, String>,
}

impl Peers {
    /// Applies the server's entries. `own` is this connection's peer id and document client
    /// id: our own entry (which the server may echo back) is not a peer.
    pub(crate) fn apply(
        &mut self,
        entries: Vec<AwarenessEntry>,
        own_peer_id: Option<u64>,
        own_client_id: u64,
        now: Instant,
    ) -> Changes {
        let mut changes = Changes::default();
        for entry in entries {
            if Some(entry.peer_id) == own_peer_id || entry.client_id == own_client_id {
                continue;
            }
            match entry.state {
                None => {
                    if let Some(gone) = self.live.remove(&entry.client_id) {
                        changes.left.push(gone.name);
                        changes.changed = true;
                    }
                }
                Some(state) => {
                    let name = clean_name(&state.name);
                    let color = if is_hex_color(&state.color) {
                        state.color.to_ascii_lowercase()
                    } else {
                        color_for(&name)
                    };
                    let peer = Peer {
                        peer_id: entry.peer_id,
                        client_id: entry.client_id,
                        name,
                        color,
                        role: entry.role,
                        cursor: state.cursor,
                        location: state.location,
                        last_change: now,
                    };
                    match self.live.get_mut(&entry.client_id) {
                        Some(known) => {
                            let same = known.peer_id == peer.peer_id
                                && known.name == peer.name
                                && known.color == peer.color
                                && known.role == peer.role
                                && known.cursor == peer.cursor
                                && known.location == peer.location;
                            if !same {
                                *known = peer;
                                changes.changed = true;
                            }
                        }
                        None => {
                            if self.remembered.remove(&entry.client_id).is_none() {
                                changes.joined.push(peer.name.clone());
                            }
                            self.live.insert(entry.client_id, peer);
                            changes.changed = true;
                        }
                    }
                }
            }
        }
        changes
    }

    /// The connection dropped: forget the live peers but remember who they were. Returns
    /// whether the visible set changed.
    pub(crate) fn disconnected(&mut self) -> bool {
        let changed = !self.live.is_empty();
        for (client_id, peer) in self.live.drain() {
            self.remembered.insert(client_id, peer.name);
        }
        changed
    }

    /// Remembered peers who have not come back by now have left. Returns their names.
    pub(crate) fn settle(&mut self) -> Vec<String> {
        let mut left: Vec<String> = self.remembered.drain().map(|(_, name)| name).collect();
        left.sort();
        left
    }

    /// The live peers, ordered by peer id.
    pub(crate) fn snapshot(&self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self.live.values().cloned().collect();
        peers.sort_by_key(|p| p.peer_id);
        peers
    }
}

/// A name safe to draw in a terminal: no control characters (escape sequences), bounded.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "anonymous".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_protocol::{Payload, PeerState};

    const OWN_PEER: u64 = 1;
    const OWN_CLIENT: u64 = 100;

    fn entry(peer_id: u64, client_id: u64, name: Option<&str>) -> AwarenessEntry {
        AwarenessEntry {
            client_id,
            peer_id,
            clock: 0,
            role: Role::Editor,
            state: name.map(|n| PeerState {
                name: n.to_owned(),
                color: "#AABBCC".to_owned(),
                cursor: None,
                location: None,
            }),
        }
    }

    fn apply(peers: &mut Peers, entries: Vec<AwarenessEntry>) -> Changes {
        peers.apply(entries, Some(OWN_PEER), OWN_CLIENT, Instant::now())
    }

    fn names(peers: &Peers) -> Vec<String> {
        peers.snapshot().into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn joins_changes_and_leaves() {
        let mut peers = Peers::default();
        let c = apply(
            &mut peers,
            vec![entry(2, 200, Some("alice")), entry(3, 300, Some("bob"))],
        );
        assert_eq!(c.joined, ["alice", "bob"]);
        assert!(c.changed);
        assert_eq!(names(&peers), ["alice", "bob"]);
        assert_eq!(peers.snapshot()[0].color, "#aabbcc");

        // The same state again changes nothing; a new cursor does.
        let c = apply(&mut peers, vec![entry(2, 200, Some("alice"))]);
        assert_eq!(c, Changes::default());
        let mut moved = entry(2, 200, Some("alice"));
        if let Some(s) = moved.state.as_mut() {
            s.cursor = Some(CursorState {
                anchor: Payload(vec![1]),
                head: Payload(vec![2]),
            });
        }
        let c = apply(&mut peers, vec![moved]);
        assert!(c.changed && c.joined.is_empty() && c.left.is_empty());

        let c = apply(&mut peers, vec![entry(2, 200, None), entry(9, 900, None)]);
        assert_eq!(c.left, ["alice"]);
        assert_eq!(names(&peers), ["bob"]);
    }

    #[test]
    fn our_own_entry_is_not_a_peer() {
        let mut peers = Peers::default();
        let c = apply(
            &mut peers,
            vec![
                entry(OWN_PEER, 555, Some("me")),
                entry(7, OWN_CLIENT, Some("me")),
            ],
        );
        assert_eq!(c, Changes::default());
        assert!(peers.snapshot().is_empty());
    }

    #[test]
    fn a_reconnect_does_not_announce_peers_again() {
        let mut peers = Peers::default();
        apply(
            &mut peers,
            vec![entry(2, 200, Some("alice")), entry(3, 300, Some("bob"))],
        );
        assert!(peers.disconnected());
        assert!(peers.snapshot().is_empty());
        assert!(!peers.disconnected(), "nothing visible left to clear");

        // New session: alice is back under a new peer id, carol is new, bob is gone.
        let c = apply(
            &mut peers,
            vec![entry(12, 200, Some("alice")), entry(13, 400, Some("carol"))],
        );
        assert_eq!(c.joined, ["carol"]);
        assert_eq!(peers.settle(), ["bob"]);
        assert!(peers.settle().is_empty());
        assert_eq!(names(&peers), ["alice", "carol"]);
    }

    #[test]
    fn names_and_colours_are_made_safe() {
        let mut peers = Peers::default();
        let mut e = entry(2, 200, Some("\u{1b}[31mevil\u{7}"));
        if let Some(s) = e.state.as_mut() {
            s.color = "red; drop table".into();
        }
        let long = "x".repeat(500);
        apply(
            &mut peers,
            vec![e, entry(3, 300, Some(&long)), entry(4, 400, Some(" \n "))],
        );
        let snap = peers.snapshot();
        assert_eq!(snap[0].name, "[31mevil");
        assert_eq!(snap[0].color, color_for("[31mevil"));
        assert_eq!(snap[1].name.chars().count(), MAX_NAME_CHARS);
        assert_eq!(snap[2].name, "anonymous");
    }
}
