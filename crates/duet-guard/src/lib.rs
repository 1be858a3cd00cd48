//! Checks yrs v1 updates and state vectors before yrs sees them.
//!
//! yrs reserves memory from every leading count in an update (clients, blocks, JSON and `Any`
//! lengths) before it reads the elements, and decodes nested `Any` values recursively. A
//! 5-byte message claiming 2^28 entries cost yrs 0.28.1 0.6–0.8 s and 514 MB (FIELD-NOTES);
//! a deeply nested `Any` can exhaust the stack. This crate walks the same encoding without
//! building anything: every count must fit in the bytes that remain (each element takes at
//! least one byte) and nesting is capped, so whatever passes costs yrs at most a small multiple
//! of its size.
//!
//! It also refuses clocks yrs cannot handle (see [`MAX_CLOCK`]), and what yrs accepts but a
//! stock Yjs client cannot read: the server relays update bytes as they came, so everything
//! it lets through must parse in Yjs too (client ids past 2^53 - 1, see [`MAX_CLIENT_ID`];
//! legacy JSON content; type refs Yjs does not know).
//!
//! The layout follows yrs' `Update::decode` (update.rs), `ItemContent::decode` (block.rs),
//! `Any::decode` (any.rs) and `IdSet::decode` (id_set.rs), in the v1 encoding.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod lib0;

/// Deepest `Any` nesting accepted (Yjs documents in practice nest a handful of levels).
pub const MAX_ANY_DEPTH: usize = 64;

/// Largest clock accepted anywhere: where a client's blocks begin, where they end (the clock
/// after its last block, i.e. the client's next state-vector clock), origins and parents, the
/// end of every delete-set range, and state-vector entries.
///
/// yrs 0.28.1 stores clocks as `u32` but subtracts them as `i32` (`Update::integrate`:
/// `local_clock as i32 - clock as i32`): a block of client 7 at clock 2^31 + 1 gets a positive
/// "offset", is integrated without the Skip that should fill clocks 0..2^31, and a later
/// delete of clock 0 underflows in `find_index` (panic mid-apply, document half-changed;
/// `fuzz/regressions/yrs_apply-panic-find-index-1.bin`). With every clock at most `i32::MAX`
/// the difference of two clocks always fits an `i32`. No honest peer gets near it: a client
/// would need 2^31 operations.
pub const MAX_CLOCK: u64 = i32::MAX as u64;

/// Largest client id accepted anywhere (sections, origins, parents, delete sets, state
/// vectors): JavaScript's `Number.MAX_SAFE_INTEGER`. Past it lib0's `readVarUint` either
/// throws "Integer out of Range" (when the low 56 bits alone pass 2^53; nothing in Yjs catches
/// it, so one relayed update would take down every stock Yjs client in the room) or rounds
/// (two ids become one, and Yjs clients diverge from yrs ones). yrs 0.28.1 keeps only 53 bits
/// in release builds and asserts in debug ones. yrs makes 53-bit ids (`ClientID::random`),
/// Yjs 32-bit ones.
pub const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

/// Type refs a Yjs client can read (`typeRefs` in yjs 13: array, map, text, XML element,
/// fragment, hook, text). yrs also accepts 7 (weak link), 9 (subdocument) and 15 (undefined);
/// Yjs would call `typeRefs[15]`, which is not a function.
const MAX_TYPE_REF: u8 = 6;

/// Why an update was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Not lib0 as Yjs writes it: truncated, a varint too long, a count or length past the
    /// bytes that follow.
    #[error(transparent)]
    Lib0(#[from] lib0::Lib0Error),
    #[error("value nested deeper than {MAX_ANY_DEPTH} levels")]
    TooDeep,
    #[error("client id {0} beyond 2^53 - 1 (Yjs clients cannot read it)")]
    ClientTooLarge(u64),
    /// Legacy JSON content (content ref 2): yrs reads count + 1 strings and never checks they
    /// are JSON; Yjs reads count strings and `JSON.parse`s each (throwing on anything else).
    /// No current Yjs or yrs writes it.
    #[error("legacy JSON content is not supported by this server (byte {0})")]
    JsonContent(usize),
    /// The update's blocks of a client begin past the client's next clock: they could only
    /// wait, and yrs 0.28.1 integrates some of them anyway (visible, with the client at clock
    /// 0 in its state vector) where Yjs keeps them pending: the two would diverge.
    #[error("blocks of client {client} begin at clock {start}, past its next clock {have}")]
    Gap { client: u64, start: u64, have: u64 },
    /// A block names as origin or parent a later clock of its own client, which can never
    /// precede it: Yjs throws ("Unexpected case") looking for it.
    #[error("block {client}:{clock} refers to its own client's later clock {refers}")]
    ForwardReference {
        client: u64,
        clock: u64,
        refers: u64,
    },
    #[error("client {0} has more than one section")]
    DuplicateClient(u64),
    /// A clock above [`MAX_CLOCK`] (saturated at `u64::MAX`).
    #[error("clock {clock} of client {client} beyond 2^31 - 1 (yrs cannot handle it)")]
    ClockTooLarge { client: u64, clock: u64 },
    /// Subdocument content: yrs 0.28.1 leaks the documents it builds while decoding them
    /// (found by the `yrs_update` fuzz target under LeakSanitizer), and duet has no use for
    /// them.
    #[error("subdocuments are not supported by this server (byte {0})")]
    Subdocument(usize),
    #[error("unknown {what} tag {tag} at byte {at}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        at: usize,
    },
}

struct Skim<'a> {
    r: lib0::Reader<'a>,
    /// The (client, clock) ids read by [`Skim::id`] (origins and parents), when collected.
    refs: Option<Vec<(u64, u64)>>,
}

const BLOCK_GC: u8 = 0;
const BLOCK_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;

impl<'a> Skim<'a> {
    fn new(buf: &'a [u8], refs: Option<Vec<(u64, u64)>>) -> Self {
        Self {
            r: lib0::Reader::new(buf),
            refs,
        }
    }

    fn u8(&mut self) -> Result<u8, GuardError> {
        Ok(self.r.u8()?)
    }

    fn skip(&mut self, n: usize) -> Result<(), GuardError> {
        Ok(self.r.skip(n)?)
    }

    fn var(&mut self) -> Result<u64, GuardError> {
        Ok(self.r.var_uint()?)
    }

    /// A count of elements that each take at least `min_bytes`.
    fn count(&mut self, min_bytes: usize) -> Result<u64, GuardError> {
        Ok(self.r.count(min_bytes)?)
    }

    fn bytes(&mut self) -> Result<(), GuardError> {
        self.slice().map(drop)
    }

    /// A length-prefixed byte string.
    fn slice(&mut self) -> Result<&'a [u8], GuardError> {
        Ok(self.r.var_bytes()?)
    }

    /// A (client, clock) pair, such as an origin or a parent.
    fn id(&mut self) -> Result<(), GuardError> {
        let client = self.var()?;
        let clock = self.var()?;
        if let Some(refs) = &mut self.refs {
            refs.push((client, clock));
        }
        clock_ok(client, clock)
    }

    fn any(&mut self, depth: usize) -> Result<(), GuardError> {
        if depth > MAX_ANY_DEPTH {
            return Err(GuardError::TooDeep);
        }
        let at = self.r.pos();
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

    /// Skims an item's content and returns its length in clocks (yrs' `ItemContent::len`:
    /// UTF-16 code units for strings, elements for `Any` and JSON, 1 for the rest).
    fn content(&mut self, info: u8) -> Result<u64, GuardError> {
        let at = self.r.pos();
        match info & 0b1111 {
            1 => self.var(), // deleted: length
            2 => Err(GuardError::JsonContent(at)),
            4 => self.slice().map(utf16_len),  // string
            3 | 5 => self.bytes().map(|()| 1), // binary, embed (JSON string)
            6 => {
                self.bytes()?; // key
                self.bytes().map(|()| 1) // value (JSON string)
            }
            7 => {
                let type_ref = self.u8()?;
                if type_ref > MAX_TYPE_REF {
                    return Err(GuardError::UnknownTag {
                        what: "type",
                        tag: type_ref,
                        at: at + 1,
                    });
                }
                if type_ref == 3 {
                    self.bytes()?; // XML element name
                }
                Ok(1)
            }
            8 => {
                let n = self.count(1)?;
                for _ in 0..n {
                    self.any(0)?;
                }
                Ok(n)
            }
            9 => Err(GuardError::Subdocument(at)),
            tag => Err(GuardError::UnknownTag {
                what: "content",
                tag,
                at,
            }),
        }
    }

    /// Skims a block and returns its length in clocks.
    fn block(&mut self) -> Result<u64, GuardError> {
        let info = self.u8()?;
        match info {
            BLOCK_SKIP | BLOCK_GC => self.var(),
            info => {
                let has_origin = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) != 0;
                if info & HAS_ORIGIN != 0 {
                    self.id()?;
                }
                if info & HAS_RIGHT_ORIGIN != 0 {
                    self.id()?;
                }
                if !has_origin {
                    if self.var()? == 1 {
                        self.bytes()?; // named root type
                    } else {
                        self.id()?; // parent id
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

/// Refuses a client id above [`MAX_CLIENT_ID`] and a clock above [`MAX_CLOCK`].
fn clock_ok(client: u64, clock: u64) -> Result<(), GuardError> {
    if client > MAX_CLIENT_ID {
        return Err(GuardError::ClientTooLarge(client));
    }
    if clock > MAX_CLOCK {
        return Err(GuardError::ClockTooLarge { client, clock });
    }
    Ok(())
}

/// A string's length in UTF-16 code units, as yrs counts it: one per UTF-8 lead byte, two for
/// characters outside the BMP (4-byte sequences). Invalid UTF-8 (which yrs refuses) gets a
/// number that is no larger than its byte count.
fn utf16_len(s: &[u8]) -> u64 {
    s.iter()
        .map(|&b| match b {
            0x80..=0xbf => 0, // continuation byte
            0xf0.. => 2,
            _ => 1,
        })
        .sum()
}

/// Checks a v1 update. `Ok` means every count fits the bytes, nesting is bounded and no clock
/// passes [`MAX_CLOCK`]; yrs may still refuse it for other reasons.
pub fn check_update_v1(update: &[u8]) -> Result<(), GuardError> {
    let mut s = Skim::new(update, None);
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
        // Where the client's blocks begin, then where each one ends: the clock after the last
        // one is what the client's state-vector entry becomes.
        let mut clock = s.var()?;
        clock_ok(client, clock)?;
        for _ in 0..blocks {
            clock = clock.saturating_add(s.block()?);
            clock_ok(client, clock)?;
        }
    }
    // Delete set: clients, each with a count of (clock, len) ranges; a range ends (exclusive)
    // at MAX_CLOCK at most, like the blocks it can delete.
    for _ in 0..s.count(2)? {
        let client = s.var()?;
        for _ in 0..s.count(2)? {
            let clock = s.var()?;
            clock_ok(client, clock.saturating_add(s.var()?))?;
        }
    }
    Ok(())
}

/// One client's blocks in an update: they begin at `start` and end before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub client: u64,
    pub start: u64,
    pub end: u64,
}

/// Checks that an update (which passed [`check_update_v1`]) can integrate against a document
/// whose next clock for each client is `have(client)`, the way yrs and Yjs agree on: no
/// client's blocks begin past its next clock ([`GuardError::Gap`]), and no block refers to a
/// clock of its own client at or after its own ([`GuardError::ForwardReference`]). References
/// to other clients' blocks that have not arrived are left alone: both keep such blocks
/// pending alike. Returns the sections, so a caller checking a batch can advance `have`.
pub fn check_dependencies_v1(
    update: &[u8],
    have: impl Fn(u64) -> u64,
) -> Result<Vec<Section>, GuardError> {
    let mut s = Skim::new(update, Some(Vec::new()));
    let mut sections = Vec::new();
    for _ in 0..s.count(3)? {
        let blocks = s.count(1)?;
        let client = s.var()?;
        let start = s.var()?;
        let next = have(client);
        if start > next {
            return Err(GuardError::Gap {
                client,
                start,
                have: next,
            });
        }
        let mut clock = start;
        for _ in 0..blocks {
            if let Some(refs) = &mut s.refs {
                refs.clear();
            }
            let len = s.block()?;
            for &(c, k) in s.refs.iter().flatten() {
                if c == client && k >= clock {
                    return Err(GuardError::ForwardReference {
                        client,
                        clock,
                        refers: k,
                    });
                }
            }
            clock = clock.saturating_add(len);
        }
        sections.push(Section {
            client,
            start,
            end: clock,
        });
    }
    Ok(sections)
}

/// Checks a v1 state vector: a count of (client, clock) pairs, each client id at most
/// [`MAX_CLIENT_ID`] and each clock at most [`MAX_CLOCK`].
///
/// yrs 0.28.1 does not do the `i32` arithmetic with a peer's state vector (it only compares it
/// with the document's clocks when it encodes a diff), so a larger clock would not crash it. It
/// is refused anyway: the room's document never holds a clock above `MAX_CLOCK` (every update
/// passes [`check_update_v1`]), so a peer claiming one holds data this server refuses and yrs
/// cannot apply; one rule for every clock on the wire is simpler to reason about than two, and
/// such a peer is better told at once (1007) than after its first update.
pub fn check_state_vector_v1(sv: &[u8]) -> Result<(), GuardError> {
    let mut s = Skim::new(sv, None);
    for _ in 0..s.count(2)? {
        let client = s.var()?;
        clock_ok(client, s.var()?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn subdocuments_are_refused() {
        // What the yrs_update fuzz target found leaking under LeakSanitizer.
        let leak: &[u8] = &[
            0x01, 0x01, 0x00, 0x00, 0x29, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x7f, 0x00, 0xf8,
            0xff,
        ];
        assert!(matches!(
            check_update_v1(leak),
            Err(GuardError::Subdocument(_))
        ));
        // A real one, made by yrs.
        let doc = yrs::Doc::new();
        let map = doc.get_or_insert_map("m");
        {
            use yrs::Map;
            let mut txn = yrs::Transact::transact_mut(&doc);
            map.insert(&mut txn, "sub", yrs::Doc::new());
        }
        let update = yrs::ReadTxn::encode_state_as_update_v1(
            &yrs::Transact::transact(&doc),
            &yrs::StateVector::default(),
        );
        assert!(matches!(
            check_update_v1(&update),
            Err(GuardError::Subdocument(_))
        ));
    }

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
            Err(GuardError::Lib0(lib0::Lib0Error::CountTooLarge { .. }))
        ));
        assert!(matches!(
            check_state_vector_v1(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(GuardError::Lib0(lib0::Lib0Error::CountTooLarge { .. }))
        ));
        // One client whose block count claims 2^28.
        assert!(matches!(
            check_update_v1(&[1, 0x80, 0x80, 0x80, 0x80, 0x01, 5, 0]),
            Err(GuardError::Lib0(lib0::Lib0Error::CountTooLarge { .. }))
        ));
    }

    #[test]
    fn a_client_named_twice_is_refused() {
        let repro = include_bytes!("../../../fuzz/regressions/yrs_update-use-after-free-1.bin");
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

    use lib0::write_var_uint as var;

    /// One client section holding one string block of `client` at `clock` (no origins, parent
    /// the root text `content`), then a delete set of `deletes` (clock, len) for that client.
    fn string_update(client: u64, clock: u64, s: &str, deletes: &[(u64, u64)]) -> Vec<u8> {
        let mut u = vec![1, 1];
        var(&mut u, client);
        var(&mut u, clock);
        u.extend([4, 1, 7]);
        u.extend(b"content");
        var(&mut u, s.len() as u64);
        u.extend(s.as_bytes());
        if deletes.is_empty() {
            u.push(0);
        } else {
            u.push(1);
            var(&mut u, client);
            var(&mut u, deletes.len() as u64);
            for &(clock, len) in deletes {
                var(&mut u, clock);
                var(&mut u, len);
            }
        }
        u
    }

    fn too_large(client: u64, clock: u64) -> Result<(), GuardError> {
        Err(GuardError::ClockTooLarge { client, clock })
    }

    #[test]
    fn the_find_index_panic_is_refused_for_its_clock() {
        let repro = include_bytes!("../../../fuzz/regressions/yrs_apply-panic-find-index-1.bin");
        assert_eq!(
            &repro[..],
            string_update(7, (1 << 31) + 1, "a", &[(0, 1)]),
            "the regression file is the hand-built update this test describes"
        );
        let refused = check_update_v1(repro);
        assert_eq!(refused, too_large(7, (1 << 31) + 1));
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("beyond 2^31 - 1 (yrs cannot handle it)"),
            "{message}"
        );
    }

    #[test]
    fn updates_from_a_client_with_a_small_id_and_many_edits_pass() {
        let doc = Doc::with_options(yrs::Options {
            client_id: yrs::block::ClientID::new(7),
            offset_kind: yrs::OffsetKind::Utf16,
            ..yrs::Options::default()
        });
        let text = doc.get_or_insert_text("content");
        for i in 0..200 {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "ab👋");
            if i % 3 == 0 {
                text.remove_range(&mut txn, 0, 2);
            }
        }
        let u = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        assert_eq!(check_update_v1(&u), Ok(()));
        let sv = doc.transact().state_vector().encode_v1();
        assert_eq!(check_state_vector_v1(&sv), Ok(()));
    }

    /// The boundary: a client's blocks may end at clock `i32::MAX` (its next clock, the one its
    /// state-vector entry shows), not one later; a deleted range may end there too; a state
    /// vector may hold `i32::MAX`. Strings count in UTF-16 code units, as yrs counts them.
    #[test]
    fn clocks_up_to_i32_max_pass_and_beyond_it_are_refused() {
        const MAX: u64 = i32::MAX as u64;
        assert_eq!(MAX_CLOCK, MAX);
        // Where the blocks begin and end.
        assert_eq!(
            check_update_v1(&string_update(7, MAX - 1, "a", &[])),
            Ok(())
        );
        assert_eq!(check_update_v1(&string_update(7, MAX, "", &[])), Ok(()));
        assert_eq!(
            check_update_v1(&string_update(7, MAX, "a", &[])),
            too_large(7, MAX + 1)
        );
        assert_eq!(
            check_update_v1(&string_update(7, MAX + 1, "", &[])),
            too_large(7, MAX + 1)
        );
        assert_eq!(
            check_update_v1(&string_update(7, MAX - 1, "ab", &[])),
            too_large(7, MAX + 1)
        );
        assert_eq!(
            check_update_v1(&string_update(7, u64::MAX, "", &[])),
            too_large(7, u64::MAX)
        );
        // "é" is 2 bytes and 1 code unit; "👋" is 4 bytes and 2 code units.
        assert_eq!(
            check_update_v1(&string_update(7, MAX - 1, "é", &[])),
            Ok(())
        );
        assert_eq!(
            check_update_v1(&string_update(7, MAX - 2, "👋", &[])),
            Ok(())
        );
        assert_eq!(
            check_update_v1(&string_update(7, MAX - 2, "👋é", &[])),
            too_large(7, MAX + 1)
        );
        // A block's length (a GC run here) saturates instead of wrapping.
        let mut u = vec![1, 1, 7, 0, BLOCK_GC];
        var(&mut u, u64::MAX);
        u.push(0);
        assert_eq!(check_update_v1(&u), too_large(7, u64::MAX));
        // Origins and parents name existing clocks, so they are below the limit too: a block of
        // client 8 whose left origin is client 7's clock 2^31.
        let mut u = vec![1, 1, 8, 0, 0b1000_0100, 7];
        var(&mut u, MAX + 1);
        u.extend([1, b'a', 0]);
        assert_eq!(check_update_v1(&u), too_large(7, MAX + 1));
        // Delete set ranges: [clock, clock + len) ends at i32::MAX at most.
        assert_eq!(
            check_update_v1(&string_update(7, 0, "a", &[(MAX - 1, 1)])),
            Ok(())
        );
        assert_eq!(
            check_update_v1(&string_update(7, 0, "a", &[(0, MAX)])),
            Ok(())
        );
        assert_eq!(
            check_update_v1(&string_update(7, 0, "a", &[(MAX, 1)])),
            too_large(7, MAX + 1)
        );
        assert_eq!(
            check_update_v1(&string_update(7, 0, "a", &[(1, MAX)])),
            too_large(7, MAX + 1)
        );
        assert_eq!(
            check_update_v1(&string_update(7, 0, "a", &[(MAX + 1, 0)])),
            too_large(7, MAX + 1)
        );
        // State vectors.
        let sv = |clock: u64| {
            let mut v = vec![1, 7];
            var(&mut v, clock);
            v
        };
        assert_eq!(check_state_vector_v1(&sv(MAX)), Ok(()));
        assert_eq!(check_state_vector_v1(&sv(MAX + 1)), too_large(7, MAX + 1));
    }

    /// The guard's block lengths match yrs' clocks for every content a real document writes
    /// (strings with surrogate pairs, deleted runs, formats, `Any`, types): moving the rich
    /// update's client to start where its blocks end exactly at `MAX_CLOCK` passes, one later
    /// is refused.
    #[test]
    fn the_guard_counts_clocks_as_yrs_does() {
        let u = rich_update();
        let update = yrs::Update::decode_v1(&u).expect("decodes");
        let sv = update.state_vector();
        let (client, end) = sv.iter().next().expect("one client");
        assert_eq!(sv.len(), 1);
        let (client, end) = (client.get(), u64::from(*end));
        assert!(end > 10, "{end}");
        // Header: client count 1, block count, client, start clock 0.
        let mut s = Skim::new(&u, None);
        assert_eq!(s.var(), Ok(1));
        s.var().expect("block count");
        assert_eq!(s.var(), Ok(client));
        let at = s.r.pos();
        assert_eq!(s.var(), Ok(0));
        let starting_at = |start: u64| {
            let mut v = u[..at].to_vec();
            var(&mut v, start);
            v.extend(&u[at + 1..]);
            v
        };
        assert_eq!(check_update_v1(&starting_at(MAX_CLOCK - end)), Ok(()));
        assert_eq!(
            check_update_v1(&starting_at(MAX_CLOCK - end + 1)),
            too_large(client, MAX_CLOCK + 1)
        );
    }

    /// What the guard lets through at the boundary, yrs 0.28.1 applies without panicking: the
    /// regression's shape (a block far from clock 0, then a delete of clock 0) with the largest
    /// clocks that pass.
    #[test]
    fn yrs_applies_the_largest_clocks_that_pass() {
        const MAX: u64 = MAX_CLOCK;
        let cases = [
            string_update(7, MAX - 1, "a", &[(0, 1)]),
            string_update(7, MAX - 2, "👋", &[(0, 1), (MAX - 1, 1)]),
            string_update(7, MAX, "", &[(0, MAX)]),
        ];
        for u in cases {
            assert_eq!(check_update_v1(&u), Ok(()));
            let doc = Doc::new();
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let update = yrs::Update::decode_v1(&u).expect("decodes");
                doc.transact_mut().apply_update(update)
            }));
            assert!(
                matches!(applied, Ok(Ok(()))),
                "{u:?}: {:?}",
                applied.map_err(|_| "panicked")
            );
        }
    }

    /// What yrs accepts but a stock Yjs client cannot read is refused: the server relays
    /// update bytes as they came, so one such update would reach (and throw inside) every Yjs
    /// client of the room.
    #[test]
    fn what_yjs_cannot_read_is_refused() {
        const WIDE: u64 = MAX_CLIENT_ID + 1;
        assert_eq!(
            check_update_v1(&string_update(MAX_CLIENT_ID, 0, "a", &[])),
            Ok(())
        );
        assert_eq!(
            check_update_v1(&string_update(WIDE, 0, "a", &[])),
            Err(GuardError::ClientTooLarge(WIDE))
        );
        // In a delete set only (no blocks).
        let mut ds = vec![0, 1];
        var(&mut ds, u64::MAX);
        ds.extend([1, 0, 1]);
        assert_eq!(
            check_update_v1(&ds),
            Err(GuardError::ClientTooLarge(u64::MAX))
        );
        let mut sv = vec![1];
        var(&mut sv, WIDE);
        sv.push(0);
        assert_eq!(
            check_state_vector_v1(&sv),
            Err(GuardError::ClientTooLarge(WIDE))
        );
        // Legacy JSON content (ref 2): one block of two strings, "S" (not JSON) and "1".
        let json = [1, 1, 7, 0, 2, 1, 1, b'a', 1, 1, b'S', 1, b'1', 0];
        assert_eq!(check_update_v1(&json), Err(GuardError::JsonContent(8)));
        // Type content (ref 7) of type ref 15 ("undefined"), which yrs decodes.
        let undefined = [1, 1, 7, 0, 7, 1, 1, b'a', 15, 0];
        assert!(yrs::Update::decode_v1(&undefined).is_ok());
        assert!(matches!(
            check_update_v1(&undefined),
            Err(GuardError::UnknownTag {
                what: "type",
                tag: 15,
                ..
            })
        ));
    }

    /// What yrs and Yjs would integrate differently is refused against the document's clocks:
    /// blocks beginning past a client's next clock, and blocks naming a later clock of their
    /// own client.
    #[test]
    fn dependencies_yrs_and_yjs_disagree_on_are_refused() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("content");
        let mut updates = Vec::new();
        for s in ["ab", "cd"] {
            let before = doc.transact().state_vector();
            text.insert(&mut doc.transact_mut(), 0, s);
            updates.push(doc.transact().encode_diff_v1(&before));
        }
        let client = doc.client_id().get();
        let at = |n: u64| move |c: u64| if c == client { n } else { 0 };
        let second = check_dependencies_v1(&updates[1], at(2)).expect("follows the first");
        assert_eq!(
            second,
            vec![Section {
                client,
                start: 2,
                end: 4
            }]
        );
        assert_eq!(
            check_dependencies_v1(&updates[1], at(0)),
            Err(GuardError::Gap {
                client,
                start: 2,
                have: 0
            })
        );
        // "cd" went in before "ab": its right origin is (client, 0), the "a"; point it at
        // (client, 7) instead.
        let mut forward = updates[1].clone();
        let origin_clock = forward.len() - 5;
        assert_eq!(forward[origin_clock], 0, "{forward:?}");
        forward[origin_clock] = 7;
        assert_eq!(check_update_v1(&forward), Ok(()));
        assert_eq!(
            check_dependencies_v1(&forward, at(2)),
            Err(GuardError::ForwardReference {
                client,
                clock: 2,
                refers: 7
            })
        );
        // Every real update passes against an empty document.
        assert!(check_dependencies_v1(&rich_update(), |_| 0).is_ok());
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
