//! Unit tests of the SQLite store: round trips, group commit, compaction, reopening.

use super::*;
use crate::admin::{Admin, Format};
use std::sync::atomic::{AtomicU64, Ordering};
use yrs::{Doc, Text};

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "duet-sqlite-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn room(name: &str) -> RoomName {
    RoomName::new(name).expect("valid room name")
}

/// `n` updates, each appending `word{i} ` to the text of one document.
fn edits(n: usize) -> (Vec<Vec<u8>>, String) {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(ROOT_TEXT);
    let mut updates = Vec::new();
    let mut expected = String::new();
    for i in 0..n {
        let before = doc.transact().state_vector();
        let word = format!("w{i} ");
        let len = text.len(&doc.transact());
        text.insert(&mut doc.transact_mut(), len, &word);
        expected.push_str(&word);
        updates.push(doc.transact().encode_diff_v1(&before));
    }
    (updates, expected)
}

fn text_from(updates: &[Vec<u8>]) -> String {
    text_of(&merge_to_doc("test", updates).expect("stored updates apply"))
}

#[tokio::test]
async fn append_then_load_round_trips_and_survives_reopen() {
    let dir = temp_dir("roundtrip");
    let (updates, expected) = edits(50);
    {
        let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("opens");
        for u in &updates {
            store.append(&room("a"), u.clone()).await.expect("stored");
        }
        assert_eq!(store.load(&room("a")).await.expect("loads"), updates);
        assert!(store.load(&room("b")).await.expect("loads").is_empty());
    }
    let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("reopens");
    assert_eq!(
        text_from(&store.load(&room("a")).await.expect("loads")),
        expected
    );
    // Appending after a reopen continues the log instead of clashing with stored seqs.
    let (more, _) = edits(1);
    store
        .append(&room("a"), more[0].clone())
        .await
        .expect("stored");
    assert_eq!(store.load(&room("a")).await.expect("loads").len(), 51);
}

#[tokio::test]
async fn concurrent_appends_are_committed_in_batches_and_all_acknowledged() {
    let dir = temp_dir("group");
    let options = SqliteOptions {
        compact_after_rows: u64::MAX,
        compact_after_bytes: u64::MAX,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir, options).expect("opens");
    let (updates, expected) = edits(2000);
    // All appends are queued before any is awaited, as a busy room does.
    let pending: Vec<_> = updates
        .iter()
        .map(|u| store.append(&room("g"), u.clone()))
        .collect();
    for p in pending {
        p.await.expect("acknowledged");
    }
    let loaded = store.load(&room("g")).await.expect("loads");
    assert_eq!(text_from(&loaded), expected);
    // The log keeps the append order, and the updates went in far fewer transactions.
    assert_eq!(loaded, updates);
    let commits = store.commits();
    assert!(
        commits <= 2000 / 4,
        "{commits} commits for 2000 updates: no group commit"
    );
}

#[tokio::test]
async fn appends_inside_one_commit_window_share_one_commit() {
    let dir = temp_dir("window");
    let options = SqliteOptions {
        commit_window: Duration::from_millis(300),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir, options).expect("opens");
    let (updates, expected) = edits(5);
    // Handed over back to back, as a room does with keystrokes of several people: all of
    // them arrive while the window the first one opened is still open.
    let pending: Vec<_> = updates
        .iter()
        .map(|u| store.append(&room("w"), u.clone()))
        .collect();
    for p in pending {
        p.await.expect("acknowledged");
    }
    assert_eq!(
        store.commits(),
        1,
        "one commit (and one fsync) for the window"
    );
    assert_eq!(
        text_from(&store.load(&room("w")).await.expect("loads")),
        expected
    );
}

#[tokio::test]
async fn a_full_batch_commits_without_waiting_for_its_window() {
    let dir = temp_dir("full");
    let options = SqliteOptions {
        max_batch: 8,
        // Far longer than the test may take: only a full batch can get these committed.
        commit_window: Duration::from_secs(3600),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir, options).expect("opens");
    let (updates, _) = edits(8);
    let pending: Vec<_> = updates
        .iter()
        .map(|u| store.append(&room("f"), u.clone()))
        .collect();
    let all = async {
        for p in pending {
            p.await.expect("acknowledged");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("a full batch is committed before its window closes");
    assert_eq!(store.commits(), 1);

    // Half gathered, half queued: the writer has taken the first append (and parked for its
    // window) before the others arrive; the one that completes the batch must wake it.
    let (more, _) = edits(8);
    let first = store.append(&room("g"), more[0].clone());
    // Gives the writer thread time to take it; the assertion does not depend on how long.
    std::thread::sleep(Duration::from_millis(50));
    let rest: Vec<_> = more[1..]
        .iter()
        .map(|u| store.append(&room("g"), u.clone()))
        .collect();
    let all = async {
        first.await.expect("acknowledged");
        for p in rest {
            p.await.expect("acknowledged");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("a batch completed while the writer waited is committed at once");
    assert_eq!(store.commits(), 2);
}

#[tokio::test]
async fn compaction_keeps_the_content_and_trims_the_log() {
    let dir = temp_dir("compact");
    let options = SqliteOptions {
        compact_after_rows: 10,
        ..SqliteOptions::default()
    };
    let (updates, expected) = edits(200);
    {
        let store = SqliteStore::open(&dir, options.clone()).expect("opens");
        for u in &updates {
            store.append(&room("c"), u.clone()).await.expect("stored");
        }
        let loaded = store.load(&room("c")).await.expect("loads");
        assert_eq!(text_from(&loaded), expected);
    }
    let admin = Admin::open(&dir).expect("admin opens");
    let info = admin.list().expect("lists");
    assert_eq!(info.len(), 1);
    assert!(info[0].snapshot_bytes > 0, "{info:?}");
    assert!(info[0].log_updates < 200, "{info:?}");
    let store = SqliteStore::open(&dir, options).expect("reopens");
    assert_eq!(
        text_from(&store.load(&room("c")).await.expect("loads")),
        expected
    );
}

#[tokio::test]
async fn a_full_database_fails_appends_instead_of_acknowledging_them() {
    let dir = temp_dir("full");
    let options = SqliteOptions {
        max_page_count: Some(16),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir, options).expect("opens");
    let big = vec![7u8; 8 * 1024];
    let mut failed = None;
    for i in 0..100 {
        if let Err(e) = store.append(&room("f"), big.clone()).await {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("a 16-page database fills up");
    assert!(e.to_string().contains("full"), "{e}");
    // What was acknowledged is there; the writer keeps working for what fits.
    assert_eq!(store.load(&room("f")).await.expect("loads").len(), i);
    store.append(&room("f"), vec![0u8; 4]).await.ok();
}

#[tokio::test]
async fn admin_imports_exports_and_deletes() {
    let dir = temp_dir("admin");
    let mut admin = Admin::open(&dir).expect("opens");
    admin
        .import("notes", "hello wörld".as_bytes(), Format::Text)
        .expect("imports");
    assert!(matches!(
        admin.import("notes", b"x", Format::Text),
        Err(SqliteStoreError::RoomExists(_))
    ));
    assert_eq!(
        admin.export("notes", Format::Text).expect("exports"),
        "hello wörld".as_bytes()
    );
    let yjs = admin.export("notes", Format::Yjs).expect("exports");
    admin
        .import("copy", &yjs, Format::Yjs)
        .expect("imports yjs");
    assert_eq!(
        admin.export("copy", Format::Text).expect("exports"),
        "hello wörld".as_bytes()
    );
    assert!(matches!(
        admin.import("bad", b"\xff\xff\xff", Format::Yjs),
        Err(SqliteStoreError::BadUpdate(_))
    ));
    admin.delete("notes").expect("deletes");
    assert!(matches!(
        admin.export("notes", Format::Text),
        Err(SqliteStoreError::NoSuchRoom(_))
    ));
    let names: Vec<String> = admin
        .list()
        .expect("lists")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["copy"]);
}

#[test]
fn a_garbage_database_file_is_reported_as_corrupt() {
    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(DB_FILE), vec![0x5au8; 8192]).expect("write garbage");
    match SqliteStore::open(&dir, SqliteOptions::default()) {
        Err(SqliteStoreError::Corrupt { path, .. }) => assert_eq!(path, dir.join(DB_FILE)),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a garbage file opened as a database"),
    }
}

/// Appends `n` one-character edits after `base`'s document, as updates.
fn small_edits_after(base: &[u8], n: usize) -> Vec<Vec<u8>> {
    use yrs::updates::decoder::Decode;
    let doc = Doc::new();
    let text = doc.get_or_insert_text(ROOT_TEXT);
    doc.transact_mut()
        .apply_update(yrs::Update::decode_v1(base).expect("decodes"))
        .expect("applies");
    (0..n)
        .map(|_| {
            let before = doc.transact().state_vector();
            text.insert(&mut doc.transact_mut(), 0, "x");
            doc.transact().encode_diff_v1(&before)
        })
        .collect()
}

#[tokio::test]
async fn a_large_snapshot_is_not_merged_again_for_every_few_rows() {
    let dir = temp_dir("proportional");
    // Hundreds of appends one after the other: no window, or each would wait for it.
    let options = SqliteOptions {
        compact_after_rows: 10,
        commit_window: Duration::ZERO,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir, options).expect("opens");
    let doc = Doc::new();
    let text = doc.get_or_insert_text(ROOT_TEXT);
    text.insert(&mut doc.transact_mut(), 0, &"lorem ipsum ".repeat(20_000));
    let big = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    let admin = Admin::open(&dir).expect("admin opens");
    let wait_for_snapshot = |log_at_most: u64| {
        for _ in 0..200 {
            let info = admin.list().expect("lists");
            if info[0].snapshot_bytes > 0 && info[0].log_updates <= log_at_most {
                return info[0].clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no compaction: {:?}", admin.list());
    };
    store.append(&room("p"), big.clone()).await.expect("stored");
    let small = small_edits_after(&big, 1_000);
    for u in &small[..10] {
        store.append(&room("p"), u.clone()).await.expect("stored");
    }
    // The first ten rows (big one included) are merged: the snapshot is large now.
    let first = wait_for_snapshot(1);
    assert!(first.snapshot_bytes > 100_000, "{first:?}");
    // 300 rows of a few bytes each are far less than half the snapshot: no merge yet. (The
    // writer schedules a batch's compactions before it commits the next batch, so once an
    // append is acknowledged every earlier one has been considered.)
    let scheduled = store.compactions();
    for u in &small[10..310] {
        store.append(&room("p"), u.clone()).await.expect("stored");
    }
    assert_eq!(store.compactions(), scheduled, "merged again too early");
    assert_eq!(admin.list().expect("lists")[0].log_updates, 301);
    // Past MAX_LOG_ROWS_FACTOR x compact_after_rows the log is merged whatever its size.
    for u in &small[310..] {
        store.append(&room("p"), u.clone()).await.expect("stored");
    }
    wait_for_snapshot(64 * 10 - 1);
    let loaded = store.load(&room("p")).await.expect("loads");
    let mut expected = "x".repeat(1_000);
    expected.push_str(&"lorem ipsum ".repeat(20_000));
    assert_eq!(text_from(&loaded), expected);
}
