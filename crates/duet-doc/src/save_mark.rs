//! Who saved the shared text last: a small record in the document itself (root map
//! [`SAVES_MAP`], key `last`), so every member and every late joiner sees "alice saved
//! notes.md" without a protocol change. Stock Yjs clients ignore a root type they do not
//! use. What peers wrote there is read defensively: any Yjs client can write anything.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::any::Number;
use yrs::{Any, Map, MapRef, Out, ReadTxn};

/// The root map holding save records.
pub const SAVES_MAP: &str = "duet.saves";
const LAST: &str = "last";
/// Longest name or file kept from a record, in chars.
const MAX_FIELD_CHARS: usize = 200;
/// Larger floats lose integer precision (JavaScript's `Number.MAX_SAFE_INTEGER`).
const MAX_SAFE: f64 = Number::F64_MAX_SAFE_INTEGER;

/// One save of the shared text to someone's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveMark {
    /// The display name of who saved.
    pub by: String,
    /// The yrs client id of who saved (to tell our own saves from others').
    pub client_id: u64,
    /// The file name as the saver shared it (`notes.md`).
    pub file: String,
    /// Lines written.
    pub lines: u64,
    /// Unix time of the save, in milliseconds.
    pub at_ms: u64,
}

impl SaveMark {
    pub(crate) fn write(&self, map: &MapRef, txn: &mut yrs::TransactionMut<'_>) {
        let mut m = HashMap::new();
        m.insert("by".to_owned(), Any::from(clean(&self.by)));
        m.insert("client".to_owned(), Any::from(self.client_id as f64));
        m.insert("file".to_owned(), Any::from(clean(&self.file)));
        m.insert("lines".to_owned(), Any::from(self.lines as f64));
        m.insert("at".to_owned(), Any::from(self.at_ms as f64));
        map.insert(txn, LAST, Any::Map(Arc::new(m)));
    }

    pub(crate) fn read<T: ReadTxn>(map: &MapRef, txn: &T) -> Option<Self> {
        let Some(Out::Any(Any::Map(m))) = map.get(txn, LAST) else {
            return None;
        };
        let text = |k: &str| match m.get(k) {
            Some(Any::String(s)) => Some(clean(s)),
            _ => None,
        };
        let number = |k: &str| match m.get(k) {
            Some(Any::Number(Number::Int(n))) => u64::try_from(*n).ok(),
            Some(Any::Number(Number::Float(n))) if (0.0..=MAX_SAFE).contains(n) => Some(*n as u64),
            _ => None,
        };
        Some(Self {
            by: text("by")?,
            client_id: number("client")?,
            file: text("file").unwrap_or_default(),
            lines: number("lines").unwrap_or(0),
            at_ms: number("at").unwrap_or(0),
        })
    }
}

/// No control characters (they could drive the terminal), bounded length.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_FIELD_CHARS)
        .collect()
}
