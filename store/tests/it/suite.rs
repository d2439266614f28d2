//! One test suite, run against every store: `MemoryStore`, `LogStore` on the simulated file
//! system, and `LogStore` on the real one.

use std::ops::Bound;
use std::sync::Arc;

use ferrojob_store::backend::SimBackend;
use ferrojob_store::{
    Batch, KeyRange, LogOptions, LogStore, MemoryStore, Scan, Store, StoreError, MAX_KEY_LEN,
};

/// A store under test, with whatever keeps it alive (a temp dir).
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

fn log_sim() -> Fixture {
    let options = LogOptions {
        segment_bytes: 4096,
        ..LogOptions::default()
    };
    let store = LogStore::open_with(Arc::new(SimBackend::new()), "/db", options).unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: None,
    }
}

fn log_fs() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path().join("db"), LogOptions::default()).unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

macro_rules! suite {
    ($($name:ident => $fixture:expr;)*) => {$(
        mod $name {
            use super::*;
            fn store() -> Fixture { $fixture }
            #[test] fn put_get_delete() { put_get_delete_(store()) }
            #[test] fn batch_is_atomic_across_tables() { batch_is_atomic_across_tables_(store()) }
            #[test] fn later_ops_in_a_batch_win() { later_ops_in_a_batch_win_(store()) }
            #[test] fn ranges_and_prefixes() { ranges_and_prefixes_(store()) }
            #[test] fn empty_and_inverted_ranges_do_not_panic() { empty_and_inverted_ranges_(store()) }
            #[test] fn scan_pages_through_large_ranges() { scan_pages_(store()) }
            #[test] fn bad_input_is_a_typed_error() { bad_input_(store()) }
            #[test] fn sequence_numbers_grow_per_record() { sequence_numbers_(store()) }
            #[test] fn submit_is_a_future() { submit_is_a_future_(store()) }
            #[test] fn concurrent_commits_all_land() { concurrent_commits_(store()) }
        }
    )*};
}

suite! {
    memory_store => memory();
    log_store_sim => log_sim();
    log_store_fs => log_fs();
}

fn put_get_delete_(f: Fixture) {
    let s = &f.store;
    assert_eq!(s.get("jobs", b"a").unwrap(), None);
    s.put("jobs", b"a", b"1").unwrap();
    s.put("jobs", b"b", b"").unwrap();
    assert_eq!(s.get("jobs", b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get("jobs", b"b").unwrap(), Some(Vec::new()));
    assert_eq!(s.get("apps", b"a").unwrap(), None);
    s.put("jobs", b"a", b"2").unwrap();
    assert_eq!(s.get("jobs", b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.count("jobs"), 2);
    s.delete("jobs", b"a").unwrap();
    s.delete("jobs", b"never-there").unwrap();
    assert_eq!(s.get("jobs", b"a").unwrap(), None);
    assert_eq!(s.count("jobs"), 1);
    assert_eq!(s.tables(), vec!["jobs".to_owned()]);
    s.delete("jobs", b"b").unwrap();
    assert!(s.tables().is_empty());
    s.flush().unwrap();
}

fn batch_is_atomic_across_tables_(f: Fixture) {
    let s = &f.store;
    s.commit(
        Batch::new()
            .put("instances", b"i-1".to_vec(), b"running".to_vec())
            .put("triggers", b"job-1".to_vec(), b"1700000000000".to_vec())
            .delete("jobs", b"none".to_vec()),
    )
    .unwrap();
    assert_eq!(
        s.get("instances", b"i-1").unwrap(),
        Some(b"running".to_vec())
    );
    assert_eq!(
        s.get("triggers", b"job-1").unwrap(),
        Some(b"1700000000000".to_vec())
    );
    // A batch with one invalid op changes nothing.
    let err = s
        .commit(
            Batch::new()
                .put("instances", b"i-2".to_vec(), b"x".to_vec())
                .put("bad table", b"k".to_vec(), b"v".to_vec()),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTable { .. }), "{err}");
    assert_eq!(s.get("instances", b"i-2").unwrap(), None);
    // Empty batches succeed.
    s.commit(Batch::new()).unwrap();
}

fn later_ops_in_a_batch_win_(f: Fixture) {
    let s = &f.store;
    s.commit(
        Batch::new()
            .put("t", b"k".to_vec(), b"1".to_vec())
            .put("t", b"k".to_vec(), b"2".to_vec())
            .put("t", b"gone".to_vec(), b"x".to_vec())
            .delete("t", b"gone".to_vec()),
    )
    .unwrap();
    assert_eq!(s.get("t", b"k").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get("t", b"gone").unwrap(), None);
    s.commit(
        Batch::new()
            .delete("t", b"k".to_vec())
            .put("t", b"k".to_vec(), b"3".to_vec()),
    )
    .unwrap();
    assert_eq!(s.get("t", b"k").unwrap(), Some(b"3".to_vec()));
}

fn keys(kvs: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
    kvs.iter().map(|(k, _)| k.as_slice()).collect()
}

fn ranges_and_prefixes_(f: Fixture) {
    let s = &f.store;
    let mut b = Batch::new();
    for k in ["a", "ab", "abc", "b", "b\u{7f}", "ba", "c"] {
        b.push_put("t", k.as_bytes(), format!("v{k}").into_bytes());
    }
    b.push_put("t", vec![b'a', 0xff], b"ff".to_vec());
    b.push_put("other", b"ab".to_vec(), b"no".to_vec());
    s.commit(b).unwrap();
    let all = s.range("t", &KeyRange::all(), 100).unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(all[0], (b"a".to_vec(), b"va".to_vec()));
    let r = s
        .range("t", &KeyRange::from(b"ab".as_slice()..b"b".as_slice()), 100)
        .unwrap();
    assert_eq!(keys(&r), vec![b"ab".as_slice(), b"abc", b"a\xff"]);
    let r = s
        .range(
            "t",
            &KeyRange::from(b"ab".as_slice()..=b"b".as_slice()),
            100,
        )
        .unwrap();
    assert_eq!(r.len(), 4);
    let r = s
        .range(
            "t",
            &KeyRange::new(Bound::Excluded(b"b"), Bound::Unbounded),
            2,
        )
        .unwrap();
    assert_eq!(keys(&r), vec![b"ba".as_slice(), b"b\x7f"]);
    let r = s.scan_prefix("t", b"a", 100).unwrap();
    assert_eq!(keys(&r), vec![b"a".as_slice(), b"ab", b"abc", b"a\xff"]);
    let r = s.scan_prefix("t", b"a\xff", 100).unwrap();
    assert_eq!(r, vec![(vec![b'a', 0xff], b"ff".to_vec())]);
    assert!(s.scan_prefix("t", b"zz", 100).unwrap().is_empty());
    assert!(s.scan_prefix("missing", b"", 100).unwrap().is_empty());
    assert_eq!(s.range("t", &KeyRange::all(), 0).unwrap().len(), 0);
}

fn empty_and_inverted_ranges_(f: Fixture) {
    let s = &f.store;
    s.put("t", b"m", b"1").unwrap();
    for r in [
        KeyRange::from(b"z".as_slice()..b"a".as_slice()),
        KeyRange::from(b"m".as_slice()..b"m".as_slice()),
        KeyRange::new(Bound::Excluded(b"m"), Bound::Excluded(b"m")),
        KeyRange::new(Bound::Excluded(b"m"), Bound::Included(b"m")),
        KeyRange::new(Bound::Included(b"z"), Bound::Included(b"a")),
    ] {
        assert!(s.range("t", &r, 10).unwrap().is_empty(), "{r:?}");
    }
}

fn scan_pages_(f: Fixture) {
    let s = &f.store;
    let mut b = Batch::new();
    for i in 0..1000u32 {
        b.push_put("t", i.to_be_bytes(), i.to_le_bytes());
    }
    s.commit(b).unwrap();
    let got: Vec<u32> = Scan::new(s.as_ref(), "t", ..)
        .map(|kv| u32::from_be_bytes(kv.unwrap().0.try_into().unwrap()))
        .collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    let from_500 = Scan::new(s.as_ref(), "t", 500u32.to_be_bytes()..).count();
    assert_eq!(from_500, 500);
    assert_eq!(Scan::new(s.as_ref(), "empty", ..).count(), 0);
}

fn bad_input_(f: Fixture) {
    let s = &f.store;
    let e = s.put("", b"k", b"v").unwrap_err();
    assert!(matches!(e, StoreError::InvalidTable { .. }));
    let e = s.put(&"x".repeat(65), b"k", b"v").unwrap_err();
    assert!(matches!(e, StoreError::InvalidTable { .. }));
    let e = s.put("t", &vec![1; MAX_KEY_LEN + 1], b"v").unwrap_err();
    assert!(
        matches!(e, StoreError::KeyTooLarge { len, .. } if len == MAX_KEY_LEN + 1),
        "{e}"
    );
    assert!(e.to_string().contains("\"t\""), "{e}");
    s.put("t", &vec![1; MAX_KEY_LEN], b"v").unwrap();
    assert_eq!(
        s.get("t", &vec![1; MAX_KEY_LEN]).unwrap(),
        Some(b"v".to_vec())
    );
    // Reads of odd names find nothing rather than failing.
    assert_eq!(s.get("no such table", b"k").unwrap(), None);
}

fn sequence_numbers_(f: Fixture) {
    let s = &f.store;
    let a = s
        .commit(Batch::new().put("t", b"a".to_vec(), b"".to_vec()))
        .unwrap();
    let b = s
        .commit(Batch::new().put("t", b"b".to_vec(), b"".to_vec()).put(
            "t",
            b"c".to_vec(),
            b"".to_vec(),
        ))
        .unwrap();
    assert_eq!(b.last_seq, a.last_seq + 2);
    assert_eq!(s.commit(Batch::new()).unwrap().last_seq, b.last_seq);
}

fn submit_is_a_future_(f: Fixture) {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let s = &f.store;
    let mut handle = pin!(s.submit(Batch::new().put("t", b"k".to_vec(), b"v".to_vec())));
    let mut cx = Context::from_waker(Waker::noop());
    // Poll until done; the writer completes it on its own thread.
    let mut spins = 0u64;
    let info = loop {
        match handle.as_mut().poll(&mut cx) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => {
                spins += 1;
                std::thread::yield_now();
                assert!(spins < 100_000_000, "commit never completed");
            }
        }
    };
    assert!(info.last_seq >= 1);
    assert_eq!(s.get("t", b"k").unwrap(), Some(b"v".to_vec()));
}

fn concurrent_commits_(f: Fixture) {
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = f.store.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    s.commit(Batch::new().put("a", vec![t, i], vec![i]).put(
                        "b",
                        vec![t, i],
                        vec![t],
                    ))
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(f.store.count("a"), 200);
    assert_eq!(f.store.count("b"), 200);
    assert_eq!(f.store.get("a", &[3, 49]).unwrap(), Some(vec![49]));
}
