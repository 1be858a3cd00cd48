//! Checks yrs v1 updates and state vectors before yrs sees them.
//!
//! yrs reserves memory from every leading count in an update (clients, blocks, JSON and `Any`
//! lengths) before it reads the elements, and decodes nested `Any` values recursively. A
//! 5-byte message claiming 2^28 entries cost yrs 0.28.1 0.6–0.8 s and 514 MB (FIELD-NOTES);
//! a deeply nested `Any` can exhaust the stack. This module walks the same encoding without
//! building anything: every count must fit in the bytes that remain (each element takes at
//! least one byte) and nesting is capped, so whatever passes costs yrs at most a small multiple
//! of its size.
//!
//! The layout follows yrs' `Update::decode` (update.rs), `ItemContent::decode` (block.rs),
//! `Any::decode` (any.rs) and `IdSet::decode` (id_set.rs), in the v1 encoding.

/// Deepest `Any` nesting accepted (Yjs documents in practice nest a handful of levels).
pub const MAX_ANY_DEPTH: usize = 64;

/// Why an update was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("varint too long at byte {0}")]
    BadVarint(usize),
    #[error("count {count} at byte {at} exceeds the {remaining} bytes that follow")]
    CountTooLarge {
        count: u64,
        at: usize,
        remaining: usize,
    },
    #[error("value nested deeper than {MAX_ANY_DEPTH} levels")]
    TooDeep,
    #[error("client {0} has more than one section")]
    DuplicateClient(u64),
    #[error("unknown {what} tag {tag} at byte {at}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        at: usize,
    },
}

struct Skim<'a> {
    buf: &'a [u8],
    pos: usize,
}

const BLOCK_GC: u8 = 0;
const BLOCK_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;

impl<'a> Skim<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, GuardError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(GuardError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), GuardError> {
        if n > self.remaining() {
            return Err(GuardError::Truncated(self.pos));
        }
        self.pos += n;
        Ok(())
    }

    fn var(&mut self) -> Result<u64, GuardError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift < 64 {
                value |= u64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(GuardError::BadVarint(start))
    }

    /// A count of elements that each take at least `min_bytes`.
    fn count(&mut self, min_bytes: usize) -> Result<u64, GuardError> {
        let at = self.pos;
        let count = self.var()?;
        let remaining = self.remaining();
        if count.saturating_mul(min_bytes as u64) > remaining as u64 {
            return Err(GuardError::CountTooLarge {
                count,
                at,
                remaining,
            });
        }
        Ok(count)
    }

    fn bytes(&mut self) -> Result<(), GuardError> {
        let at = self.pos;
        let len = self.var()?;
        if len > self.remaining() as u64 {
            return Err(GuardError::CountTooLarge {
                count: len,
                at,
                remaining: self.remaining(),
            });
        }
        self.skip(len as usize)
    }

    fn any(&mut self, depth: usize) -> Result<(), GuardError> {
        if depth > MAX_ANY_DEPTH {
            return Err(GuardError::TooDeep);
        }
        let at = self.pos;
        match self.u8()? {
            127 | 126 | 121 | 120 => Ok(()),
            125 => self.var().map(drop),
            124 => self.skip(4),
            123 | 122 => self.skip(8),
            119 | 116 => self.bytes(),
            118 => {
                // key string (>= 1 byte) + value (>= 1 byte)
                for _ in 0..self.count(2)? {
                    self.bytes()?;
                    self.any(depth + 1)?;
                }
                Ok(())
            }
            117 => {
                for _ in 0..self.count(1)? {
                    self.any(depth + 1)?;
                }
                Ok(())
            }
            tag => Err(GuardError::UnknownTag {
                what: "any",
                tag,
                at,
            }),
        }
    }

    fn content(&mut self, info: u8) -> Result<(), GuardError> {
        let at = self.pos;
        match info & 0b1111 {
            1 => self.var().map(drop), // deleted: length
            2 => {
                // JSON: yrs reads count + 1 strings
                let n = self.count(1)?;
                for _ in 0..=n {
                    self.bytes()?;
                }
                Ok(())
            }
            3..=5 => self.bytes(), // binary, string, embed (JSON string)
            6 => {
                self.bytes()?; // key
                self.bytes() // value (JSON string)
            }
            7 => {
                let type_ref = self.u8()?;
                if type_ref == 3 {
                    self.bytes()?; // XML element name
                }
                Ok(())
            }
            8 => {
                for _ in 0..self.count(1)? {
                    self.any(0)?;
                }
                Ok(())
            }
            9 => {
                self.bytes()?; // guid
                self.any(0) // options
            }
            tag => Err(GuardError::UnknownTag {
                what: "content",
                tag,
                at,
            }),
        }
    }

    fn block(&mut self) -> Result<(), GuardError> {
        let info = self.u8()?;
        match info {
            BLOCK_SKIP | BLOCK_GC => self.var().map(drop),
            info => {
                let has_origin = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) != 0;
                if info & HAS_ORIGIN != 0 {
                    self.var()?;
                    self.var()?;
                }
                if info & HAS_RIGHT_ORIGIN != 0 {
                    self.var()?;
                    self.var()?;
                }
                if !has_origin {
                    if self.var()? == 1 {
                        self.bytes()?; // named root type
                    } else {
                        self.var()?; // parent id
                        self.var()?;
                    }
                    if info & HAS_PARENT_SUB != 0 {
                        self.bytes()?;
                    }
                }
                self.content(info)
            }
        }
    }
}

/// Checks a v1 update. `Ok` means every count fits the bytes and nesting is bounded; yrs may
/// still refuse it for other reasons.
pub fn check_update_v1(update: &[u8]) -> Result<(), GuardError> {
    let mut s = Skim {
        buf: update,
        pos: 0,
    };
    // Each client section: block count, client, clock (3 bytes at least). Encoders write one
    // section per client; yrs merges repeated ones into a single block list, and such input
    // made yrs 0.28.1 read freed memory (fuzz/regressions/yrs_update-use-after-free-1.bin).
    let mut clients = Vec::new();
    for _ in 0..s.count(3)? {
        let blocks = s.count(1)?;
        let client = s.var()?;
        if clients.contains(&client) {
            return Err(GuardError::DuplicateClient(client));
        }
        clients.push(client);
        s.var()?; // clock
        for _ in 0..blocks {
            s.block()?;
        }
    }
    // Delete set: clients, each with a count of (clock, len) ranges.
    for _ in 0..s.count(2)? {
        s.var()?;
        for _ in 0..s.count(2)? {
            s.var()?;
            s.var()?;
        }
    }
    Ok(())
}

/// Checks a v1 state vector: a count of (client, clock) pairs.
pub fn check_state_vector_v1(sv: &[u8]) -> Result<(), GuardError> {
    let mut s = Skim { buf: sv, pos: 0 };
    for _ in 0..s.count(2)? {
        s.var()?;
        s.var()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{Any, Array, Doc, Map, ReadTxn, StateVector, Text, Transact, XmlFragment};

    fn rich_update() -> Vec<u8> {
        let doc = Doc::with_options(yrs::Options {
            offset_kind: yrs::OffsetKind::Utf16,
            ..yrs::Options::default()
        });
        let text = doc.get_or_insert_text("content");
        let arr = doc.get_or_insert_array("arr");
        let map = doc.get_or_insert_map("map");
        let xml = doc.get_or_insert_xml_fragment("xml");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "héllo 👋 world");
        text.remove_range(&mut txn, 2, 3);
        text.format(
            &mut txn,
            0,
            2,
            [("bold".into(), Any::Bool(true))].into_iter().collect(),
        );
        arr.insert(
            &mut txn,
            0,
            Any::from(vec![Any::from(1), Any::from("x"), Any::Null]),
        );
        map.insert(&mut txn, "k", Any::from(2.5));
        xml.insert(&mut txn, 0, yrs::XmlElementPrelim::empty("p"));
        drop(txn);
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn real_updates_pass() {
        let u = rich_update();
        assert_eq!(check_update_v1(&u), Ok(()));
        let doc = Doc::new();
        let sv = doc.transact().state_vector().encode_v1();
        assert_eq!(check_state_vector_v1(&sv), Ok(()));
        assert_eq!(check_update_v1(&[0, 0]), Ok(()));
    }

    #[test]
    fn amplifying_counts_are_refused() {
        // 2^28 clients in 5 bytes.
        assert!(matches!(
            check_update_v1(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(GuardError::CountTooLarge { .. })
        ));
        assert!(matches!(
            check_state_vector_v1(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(GuardError::CountTooLarge { .. })
        ));
        // One client whose block count claims 2^28.
        assert!(matches!(
            check_update_v1(&[1, 0x80, 0x80, 0x80, 0x80, 0x01, 5, 0]),
            Err(GuardError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn a_client_named_twice_is_refused() {
        let repro = include_bytes!("../../fuzz/regressions/yrs_update-use-after-free-1.bin");
        assert!(matches!(
            check_update_v1(repro),
            Err(GuardError::DuplicateClient(_))
        ));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // One client, one block: info = Any content (8), parent named "a", one Any value that is
        // an array nested 100 levels.
        let mut u = vec![1, 1, 7, 0, 8, 1, 1, b'a', 1];
        u.extend(std::iter::repeat_n([117u8, 1], 100).flatten());
        u.push(126);
        u.extend([0]);
        assert_eq!(check_update_v1(&u), Err(GuardError::TooDeep));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check_update_v1(&bytes);
            let _ = check_state_vector_v1(&bytes);
        }

        #[test]
        fn mutated_updates_never_panic_and_passing_ones_are_cheap(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let mut u = rich_update();
            for (i, b) in flips {
                let at = i.index(u.len());
                u[at] = b;
            }
            if check_update_v1(&u).is_ok() {
                // What passes, yrs may decode (or refuse) but must not blow up.
                let _ = std::panic::catch_unwind(|| yrs::Update::decode_v1(&u));
            }
        }
    }
}
