//! Loads the real editing traces (josephg/editing-traces, CC BY 4.0; see tests/data/README.md).

use anyhow::Context;
use serde::Deserialize;
use std::io::Read;
use std::path::Path;

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
    pub patches: Vec<(usize, usize, String)>,
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

    /// The small sveltecomponent trace shipped with the tests.
    pub fn sveltecomponent() -> anyhow::Result<Self> {
        Self::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sveltecomponent.json.gz"))
    }

    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }
}
