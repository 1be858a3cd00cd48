//! Real editing traces (josephg/editing-traces, CC BY 4.0) turned into pre-encoded yrs updates.
//!
//! The generator never edits through yrs while it measures: each writer's updates are encoded
//! here beforehand, one v1 update per trace transaction, captured with `observe_update_v1`
//! after commit (encoding inside the transaction slows later edits, see FIELD-NOTES).

use anyhow::{Context, bail};
use duet_yjs::doc::{ROOT_TEXT, doc_with_client, text_of};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, StateVector, Text, Transact, Update};

#[derive(Debug, Deserialize)]
pub struct Trace {
    #[serde(rename = "startContent")]
    pub start_content: String,
    #[serde(rename = "endContent")]
    pub end_content: String,
    pub txns: Vec<Txn>,
}

#[derive(Debug, Deserialize)]
pub struct Txn {
    /// `[position in code points, characters to delete, text to insert]`, applied in order.
    pub patches: Vec<(u32, u32, String)>,
}

/// Where the shared data lives, relative to the workspace (`../shared/data`).
pub fn shared_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// Resolves a trace argument: a path, or a bare name looked up in `../shared/data/traces`
/// and then in `tests/data`.
pub fn resolve_trace(name: &str) -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from(name);
    if direct.is_file() {
        return Ok(direct);
    }
    let file = format!("{name}.json.gz");
    let shared = shared_data_dir().join("traces").join(&file);
    if shared.is_file() {
        return Ok(shared);
    }
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(&file);
    if bundled.is_file() {
        return Ok(bundled);
    }
    bail!(
        "trace {name:?} not found: not a file, not in {} (the shared data set is missing?), \
         not in tests/data",
        shared_data_dir().join("traces").display()
    )
}

/// Resolves a snapshot argument (`S1`, `C1` or a path to a v2-encoded Yjs document).
pub fn resolve_snapshot(name: &str) -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from(name);
    if direct.is_file() {
        return Ok(direct);
    }
    let shared = shared_data_dir()
        .join("snapshots")
        .join(format!("{name}.yjs"));
    if shared.is_file() {
        return Ok(shared);
    }
    bail!(
        "snapshot {name:?} not found: not a file and not in {} (the shared data set is missing?)",
        shared_data_dir().join("snapshots").display()
    )
}

impl Trace {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut json = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut json)
            .with_context(|| format!("decompressing {}", path.display()))?;
        serde_json::from_str(&json).with_context(|| format!("parsing {}", path.display()))
    }
}

/// One writer's updates, ready to send.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// v1 updates in trace order, one per trace transaction that changed something.
    pub updates: Vec<Vec<u8>>,
    /// The text after all of `updates` (when no other writer interleaves).
    pub end_text: String,
}

/// Replays the first `limit` transactions of `trace` (all if `None`) into a document with
/// `client_id` and captures each transaction's update.
pub fn encode(trace: &Trace, client_id: u64, limit: Option<usize>) -> anyhow::Result<Encoded> {
    let doc = doc_with_client(client_id);
    let text = doc.get_or_insert_text(ROOT_TEXT);
    let captured: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = captured.clone();
    doc.observe_update_v1("duet-bench", move |_txn, event| {
        if let Ok(mut v) = sink.lock() {
            v.push(event.update.clone());
        }
    })
    .map_err(|e| anyhow::anyhow!("observing updates: {e}"))?;
    if !trace.start_content.is_empty() {
        text.insert(&mut doc.transact_mut(), 0, &trace.start_content);
    }
    let n = limit.unwrap_or(trace.txns.len()).min(trace.txns.len());
    for txn in &trace.txns[..n] {
        let mut t = doc.transact_mut();
        for (pos, del, ins) in &txn.patches {
            // The traces hold no astral characters: code points equal UTF-16 units.
            if *del > 0 {
                text.remove_range(&mut t, *pos, *del);
            }
            if !ins.is_empty() {
                text.insert(&mut t, *pos, ins);
            }
        }
    }
    let end_text = text_of(&doc);
    let updates = captured
        .lock()
        .map_err(|_| anyhow::anyhow!("update capture poisoned"))?
        .split_off(0);
    Ok(Encoded { updates, end_text })
}

/// A snapshot as a joiner should receive it.
#[derive(Debug)]
pub struct Snapshot {
    /// The whole document as one v1 update.
    pub update: Vec<u8>,
    pub state_vector: StateVector,
    /// Its root types (the snapshots name theirs `text`, not duet's `content`).
    pub roots: Vec<String>,
}

/// Loads a v2-encoded Yjs document (the snapshots).
pub fn load_snapshot_v1(path: &Path) -> anyhow::Result<Snapshot> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let update =
        Update::decode_v2(&bytes).with_context(|| format!("decoding {}", path.display()))?;
    let doc = doc_with_client(1);
    doc.transact_mut()
        .apply_update(update)
        .with_context(|| format!("applying {}", path.display()))?;
    let txn = doc.transact();
    Ok(Snapshot {
        update: txn.encode_state_as_update_v1(&StateVector::default()),
        state_vector: txn.state_vector(),
        roots: txn.root_refs().map(|(name, _)| name.to_owned()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> Trace {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sveltecomponent.json.gz");
        Trace::load(&path).expect("the bundled trace loads")
    }

    #[test]
    fn pre_encoded_updates_reproduce_end_content() {
        let trace = bundled();
        let enc = encode(&trace, 7, None).expect("encodes");
        assert_eq!(enc.end_text, trace.end_content);
        // A receiver that only ever sees the bytes ends with the same text.
        let doc = doc_with_client(99);
        for u in &enc.updates {
            let u = Update::decode_v1(u).expect("decodes");
            doc.transact_mut().apply_update(u).expect("applies");
        }
        assert_eq!(text_of(&doc), trace.end_content);
    }

    #[test]
    fn a_prefix_is_a_prefix() {
        let trace = bundled();
        let enc = encode(&trace, 7, Some(100)).expect("encodes");
        assert!(enc.updates.len() <= 100 && !enc.updates.is_empty());
    }
}
