//! The scenarios, and what they share: the server under test, the protocol, the floor, and how
//! a received update is matched to the writer and trace position that produced it.

pub mod failover;
pub mod idle;
pub mod join;
pub mod relay;
pub mod rooms;
pub mod slow;
pub mod team;

use crate::floor::Floor;
use crate::target::Target;
use crate::wire::Protocol;
use std::collections::HashMap;
use yrs::Update;
use yrs::updates::decoder::Decode;

pub struct Ctx {
    pub target: Target,
    pub protocol: Protocol,
    pub floor: Floor,
    /// Prefix of every room name, unique per run so rooms of earlier runs do not interfere.
    pub run_id: String,
}

/// What identifies an update after a server has re-encoded it (Yjs servers relay the update
/// their own document emitted, not the bytes they received): a writer's clock after its
/// inserts, or for a delete-only update the first id it deletes (each id is deleted once).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Key {
    Ins(u64, u32),
    Del(u64, u32),
}

/// The keys of one update (one per client it touches; one for a single writer's update).
pub fn keys_of(update: &[u8]) -> Vec<Key> {
    let Ok(u) = Update::decode_v1(update) else {
        return Vec::new();
    };
    // Not `Update::state_vector`: it counts only blocks that start at clock 0.
    let mut keys: Vec<Key> = Vec::new();
    for (client, ranges) in u.insertions(true).iter() {
        if let Some(end) = ranges.iter().map(|r| r.end).max() {
            keys.push(Key::Ins(client.get(), end));
        }
    }
    if keys.is_empty() {
        for (client, ranges) in u.delete_set().iter() {
            if let Some(r) = ranges.iter().next() {
                keys.push(Key::Del(client.get(), r.start));
            }
        }
    }
    keys
}

/// Key -> (writer, index in its stream).
pub type KeyMap = HashMap<Key, (u32, u32)>;

pub fn key_map(streams: &[Vec<Vec<u8>>]) -> KeyMap {
    let mut map = HashMap::new();
    for (w, updates) in streams.iter().enumerate() {
        for (i, u) in updates.iter().enumerate() {
            for k in keys_of(u) {
                map.insert(k, (w as u32, i as u32));
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Trace, encode};
    use std::path::Path;

    #[test]
    fn every_update_of_a_trace_has_its_own_key() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sveltecomponent.json.gz");
        let trace = Trace::load(&path).expect("loads");
        let a = encode(&trace, 11, Some(3000)).expect("encodes");
        let b = encode(&trace, 12, Some(3000)).expect("encodes");
        let map = key_map(&[a.updates.clone(), b.updates.clone()]);
        assert_eq!(map.len(), a.updates.len() + b.updates.len());
        assert_eq!(map.get(&keys_of(&b.updates[5])[0]), Some(&(1, 5)));
    }
}
