//! How fast a workspace of many files opens: the sharer's scan and index, and a joiner's
//! first view of the index (decode, apply, list). Files themselves are not read beyond the
//! first 8 KiB: they load only when someone opens them.
//!
//! Run: `cargo bench -p duet-workspace --bench index` (`-- --files N`, default 5,000).
//! Results go to docs/BENCHMARKS.md ("Workspaces").

use std::time::{Duration, Instant};

use duet_workspace::{ScanOptions, index, scan};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

fn main() -> std::io::Result<()> {
    let mut n = 5_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--files" {
            n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n);
        }
    }
    let dir = std::env::temp_dir().join(format!("duet-bench-ws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 50 directories of n/50 files, source-sized (about 2 KB each).
    let body = "fn f() { let x = 1; }\n".repeat(90);
    for i in 0..n {
        let p = dir.join(format!("src/mod{:02}/file{i:05}.rs", i % 50));
        std::fs::create_dir_all(p.parent().unwrap_or(&dir))?;
        std::fs::write(p, &body)?;
    }
    let mut rows: Vec<(&str, Duration)> = Vec::new();

    let t = Instant::now();
    let found = scan(&dir, &ScanOptions::default());
    rows.push((
        "sharer: scan (walk, ignore rules, sniff 8 KiB)",
        t.elapsed(),
    ));
    assert_eq!(found.files.len(), n);

    let sharer = Doc::with_client_id(1);
    let t = Instant::now();
    index::reconcile(&sharer, &found.files).map_err(std::io::Error::other)?;
    rows.push(("sharer: fill the index", t.elapsed()));

    let t = Instant::now();
    let update = sharer
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    rows.push(("sharer: encode the index", t.elapsed()));

    let joiner = Doc::with_client_id(2);
    let t = Instant::now();
    let decoded = Update::decode_v1(&update).map_err(std::io::Error::other)?;
    joiner
        .transact_mut()
        .apply_update(decoded)
        .map_err(std::io::Error::other)?;
    let listed = index::files(&joiner);
    rows.push(("joiner: apply the index and list it", t.elapsed()));
    assert_eq!(listed.len(), n);

    let t = Instant::now();
    let again = index::reconcile(&sharer, &scan(&dir, &ScanOptions::default()).files)
        .map_err(std::io::Error::other)?;
    rows.push(("sharer: rescan, nothing changed", t.elapsed()));
    assert!(again.added.is_empty() && again.changed.is_empty() && again.removed.is_empty());

    println!("{n} files, index {} bytes", update.len());
    println!("| step | ms |");
    println!("|---|---:|");
    for (what, d) in rows {
        println!("| {what} | {:.1} |", d.as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
