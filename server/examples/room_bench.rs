//! Benchmark of a room's relay path in process: the server's cost per update without sockets
//! (checks, yrs, relay to one reader, store, acknowledgement), for A/B comparisons of room
//! changes that the network benchmark (`duet-bench relay`) measures only through noise.
//!
//! Run: `cargo run --release -p duet-server --example room_bench [-- EDITS [RUNS]]`
//!
//! The workload is a typist: single-character inserts at a cursor that mostly moves forward,
//! with some backspaces and jumps (deterministic, seeded), like the automerge-paper trace.
//! Updates are encoded with yrs beforehand; the room sees them one command at a time, on a
//! current-thread runtime, as fast as it takes them.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use yrs::{Doc, OffsetKind, Options, Text, Transact};

fn workload(edits: usize) -> Vec<Vec<u8>> {
    let doc = Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    let text = doc.get_or_insert_text("content");
    let updates: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = updates.clone();
    doc.observe_update_v1("room_bench", move |_, e| {
        if let Ok(mut v) = sink.lock() {
            v.push(e.update.clone());
        }
    })
    .expect("observer");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as u32
    };
    let (mut len, mut cursor) = (0u32, 0u32);
    for _ in 0..edits {
        let roll = next() % 100;
        let mut txn = doc.transact_mut();
        if roll < 8 && cursor > 0 {
            text.remove_range(&mut txn, cursor - 1, 1);
            cursor -= 1;
            len -= 1;
        } else {
            if roll > 97 && len > 0 {
                cursor = next() % (len + 1);
            }
            let c = (b'a' + (next() % 26) as u8) as char;
            let s = if roll % 7 == 0 { " " } else { &c.to_string() };
            text.insert(&mut txn, cursor, s);
            cursor += 1;
            len += 1;
        }
    }
    std::mem::take(&mut *updates.lock().expect("not poisoned"))
}

/// Encoding the workload takes seconds (yrs finds each index from the start of the text), so
/// it is kept in the target directory between runs.
fn cached_workload(edits: usize) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/room_bench-{edits}.bin"));
    if let Ok(bytes) = std::fs::read(&path) {
        let mut updates = Vec::with_capacity(edits);
        let mut rest = &bytes[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            let Some((update, tail)) = tail.split_at_checked(len) else {
                break;
            };
            updates.push(update.to_vec());
            rest = tail;
        }
        if updates.len() == edits {
            return updates;
        }
    }
    let updates = workload(edits);
    let mut bytes = Vec::new();
    for u in &updates {
        bytes.extend_from_slice(&(u.len() as u32).to_le_bytes());
        bytes.extend_from_slice(u);
    }
    let _ = std::fs::write(&path, bytes);
    updates
}

/// CPU time this thread has run, in nanoseconds (from the scheduler's own accounting, so a
/// busy neighbour on the host does not inflate it as it does wall time).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let edits: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let t = std::time::Instant::now();
    let updates = cached_workload(edits);
    println!(
        "room_bench: {} updates per run, {runs} runs (workload encoded in {:?})",
        updates.len(),
        t.elapsed()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut per_update = Vec::new();
    for run in 1..=runs {
        let cpu = thread_cpu_ns();
        let r = rt.block_on(duet_server::bench::room_relay(&updates));
        let cpu = thread_cpu_ns().zip(cpu).map(|(b, a)| b - a);
        assert_eq!(r.relayed, updates.len(), "every update relayed");
        assert_eq!(r.acked, updates.len() as u64, "every update acknowledged");
        let wall = r.elapsed.as_nanos() as f64 / updates.len() as f64;
        let ns = cpu.map_or(wall, |c| c as f64 / updates.len() as f64);
        println!(
            "run {run}: {:?} wall, {wall:.0} ns wall and {ns:.0} ns CPU per update",
            r.elapsed
        );
        per_update.push(ns);
    }
    per_update.sort_by(f64::total_cmp);
    let median = per_update[per_update.len() / 2];
    println!(
        "median {median:.0} ns CPU per update, best {:.0} ns ({} updates, {:?} per run)",
        per_update[0],
        updates.len(),
        Duration::from_nanos((median * updates.len() as f64) as u64)
    );
}
