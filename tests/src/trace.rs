//! The real editing traces (josephg/editing-traces, CC BY 4.0; see tests/data/README.md),
//! loaded by duet-bench's loader: one format, one loader for benchmarks and tests.

pub use duet_bench::trace::{Trace, Txn};
use std::path::Path;

/// The small sveltecomponent trace shipped with the tests.
pub fn sveltecomponent() -> anyhow::Result<Trace> {
    Trace::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sveltecomponent.json.gz"))
}
