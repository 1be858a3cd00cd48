//! Unit tests of the SQLite store: round trips, group commit, compaction, reopening.

use super::*;
use crate::compaction::merge;
use crate::doc::{ROOT_TEXT, new_doc, text_of};
use std::sync::atomic::AtomicU64;
use yrs::{ReadTxn, StateVector, Text, Transact};

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
    let doc = new_doc();
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
    text_of(&merge(&room("test"), updates).expect("stored updates apply"))
}

async fn read_all(store: &SqliteStore, name: &str) -> Stored {
    store.read(&room(name), Seq(0)).await.expect("reads")
}

#[tokio::test]
async fn appends_take_dense_seqs_and_survive_reopen() {
    let dir = temp_dir("roundtrip");
    let (updates, expected) = edits(50);
    {
        let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("opens");
        for (i, u) in updates.iter().enumerate() {
            let seq = store.append(&room("a"), u.clone()).await.expect("stored");
            assert_eq!(seq, Seq(i as u64 + 1));
        }
        assert_eq!(
            read_all(&store, "a").await,
            Stored {
                updates: updates.clone(),
                head: Seq(50)
            }
        );
        let after = store.read(&room("a"), Seq(48)).await.expect("reads");
        assert_eq!(after.updates, updates[48..]);
        assert_eq!(read_all(&store, "b").await, Stored::default());
    }
    let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("reopens");
    assert_eq!(text_from(&read_all(&store, "a").await.updates), expected);
    // Appending after a reopen continues the log instead of clashing with stored seqs.
    let (more, _) = edits(1);
    let seq = store
        .append(&room("a"), more[0].clone())
        .await
        .expect("stored");
    assert_eq!(seq, Seq(51));
}

#[tokio::test]
async fn concurrent_appends_are_committed_in_batches_and_all_acknowledged() {
    let dir = temp_dir("group");
    let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("opens");
    let (updates, expected) = edits(2000);
    // All appends are queued before any is awaited, as a busy room does.
    let pending: Vec<_> = updates
        .iter()
        .map(|u| store.append(&room("g"), u.clone()))
        .collect();
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.await, Ok(Seq(i as u64 + 1)), "acknowledged in order");
    }
    let loaded = read_all(&store, "g").await.updates;
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
    assert_eq!(text_from(&read_all(&store, "w").await.updates), expected);
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
    let gathering = store.queued.gathering.load(Ordering::Relaxed);
    let first = store.append(&room("g"), more[0].clone());
    // Waits until the writer has taken it and started gathering its batch.
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.queued.gathering.load(Ordering::Relaxed) == gathering {
        assert!(
            Instant::now() < deadline,
            "the writer never took the append"
        );
        std::thread::yield_now();
    }
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
async fn compaction_is_a_compare_and_swap_that_keeps_the_numbering() {
    let dir = temp_dir("compact");
    let (updates, expected) = edits(20);
    let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("opens");
    for u in &updates {
        store.append(&room("c"), u.clone()).await.expect("stored");
    }
    let state_at = |n: usize| {
        let doc = merge(&room("c"), &updates[..n]).expect("merges");
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    };
    let compact = |covers: u64| {
        let state = state_at((covers as usize).min(updates.len()));
        store.compact(&room("c"), state, Seq(covers))
    };
    assert_eq!(compact(21).await, Ok(false), "past the head");
    assert_eq!(
        store.compact(&room("none"), vec![0, 0], Seq(1)).await,
        Ok(false),
        "no such room"
    );
    assert_eq!(compact(12).await, Ok(true));
    assert_eq!(compact(12).await, Ok(false), "already covered");
    assert_eq!(compact(8).await, Ok(false), "behind the stored snapshot");
    assert_eq!(store.compactions(), 1);
    // A read from before the snapshot starts from it; one after it does not need it.
    let all = read_all(&store, "c").await;
    assert_eq!(all.head, Seq(20));
    assert_eq!(all.updates.len(), 1 + 8);
    assert_eq!(text_from(&all.updates), expected);
    let tail = store.read(&room("c"), Seq(15)).await.expect("reads");
    assert_eq!(tail.updates, updates[15..]);
    // Everything compacted away: the numbering goes on, across a reopen too.
    assert_eq!(compact(20).await, Ok(true));
    drop(store);
    let store = SqliteStore::open(&dir, SqliteOptions::default()).expect("reopens");
    let all = read_all(&store, "c").await;
    assert_eq!((all.updates.len(), all.head), (1, Seq(20)));
    let (more, _) = edits(1);
    assert_eq!(store.append(&room("c"), more[0].clone()).await, Ok(Seq(21)));
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
    assert_eq!(read_all(&store, "f").await.updates.len(), i);
    store.append(&room("f"), vec![0u8; 4]).await.ok();
}

#[tokio::test]
async fn admin_imports_exports_and_deletes() {
    let dir = temp_dir("admin");
    let admin = SqliteAdmin::open(&dir).expect("opens");
    crate::admin::tests::imports_exports_and_deletes(&admin).await;
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
