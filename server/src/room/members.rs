//! Membership and fan-out: who is in the room and as what ([`Members`], the core's view), and
//! the members' send queues that the task delivers the core's sends and broadcasts to
//! ([`Fanout`]). A queue that refuses a message is reported back, so the core can forget the
//! member: a member that cannot keep up is closed (1013), never silently skipped.

use crate::out::{Kick, Out};
use crate::outbox::{OutboxTx, Refused};
use duet_protocol::Role;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use tokio::sync::oneshot;

/// Hashes peer ids, which the server numbers itself (a counter, never chosen by a client), so
/// no flooding defence is needed: one multiplication instead of SipHash, on the three or four
/// member lookups each update costs.
#[derive(Default)]
pub(super) struct PeerIdHasher(u64);

impl Hasher for PeerIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits hashbrown uses.
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by peer id.
pub(super) type PeerMap<V> = HashMap<u64, V, BuildHasherDefault<PeerIdHasher>>;

/// A member as the core knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Member {
    pub role: Role,
    /// Yjs clients expect their own awareness echoed back, as the y-websocket server does.
    pub echo_awareness: bool,
}

#[derive(Default)]
pub(super) struct Members {
    map: PeerMap<Member>,
}

impl Members {
    pub fn insert(&mut self, peer_id: u64, member: Member) {
        self.map.insert(peer_id, member);
    }

    pub fn remove(&mut self, peer_id: u64) -> Option<Member> {
        self.map.remove(&peer_id)
    }

    pub fn get(&self, peer_id: u64) -> Option<&Member> {
        self.map.get(&peer_id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.map.keys().copied().collect()
    }

    /// How many members a message from `author` reaches when it is relayed to all but them.
    pub fn others(&self, author: u64) -> usize {
        self.map.len() - usize::from(self.map.contains_key(&author))
    }
}

/// A member's ends as the task holds them.
struct Ends {
    tx: OutboxTx,
    kick: Option<oneshot::Sender<Kick>>,
}

/// The members' send queues and close channels.
#[derive(Default)]
pub(super) struct Fanout {
    ends: PeerMap<Ends>,
}

impl Fanout {
    pub fn add(&mut self, peer_id: u64, tx: OutboxTx, kick: oneshot::Sender<Kick>) {
        self.ends.insert(
            peer_id,
            Ends {
                tx,
                kick: Some(kick),
            },
        );
    }

    #[cfg(test)]
    pub fn ids(&self) -> Vec<u64> {
        self.ends.keys().copied().collect()
    }

    /// Forgets a member whose connection ended.
    pub fn remove(&mut self, peer_id: u64) {
        self.ends.remove(&peer_id);
    }

    /// Queues `out` for one member (none: it already left).
    pub fn send(&self, to: u64, out: Out) -> Result<(), Refused> {
        match self.ends.get(&to) {
            Some(ends) => ends.tx.push(out),
            None => Ok(()),
        }
    }

    /// Queues `out` for every member but `except`; the members whose queue refused it.
    pub fn broadcast(&self, except: Option<u64>, out: &Out) -> Vec<(u64, Refused)> {
        let mut refused = Vec::new();
        for (&peer_id, ends) in &self.ends {
            if Some(peer_id) == except {
                continue;
            }
            if let Err(why) = ends.tx.push(out.clone()) {
                refused.push((peer_id, why));
            }
        }
        refused
    }

    /// Acknowledges everything up to `seq` to one member.
    pub fn ack(&self, to: u64, seq: u64) -> Result<(), Refused> {
        match self.ends.get(&to) {
            Some(ends) => ends.tx.ack(seq),
            None => Ok(()),
        }
    }

    /// Closes a member: its connection writes what is queued, then closes with `kick`.
    pub fn kick(&mut self, peer_id: u64, kick: Kick) {
        // The connection counts the close when it sends it (conn.rs `finish`).
        if let Some(mut ends) = self.ends.remove(&peer_id)
            && let Some(tx) = ends.kick.take()
        {
            let _ = tx.send(kick);
        }
    }
}
