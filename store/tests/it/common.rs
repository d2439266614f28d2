//! Helpers shared by the log store's crash, model and compaction tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrojob_store::backend::SimBackend;
use ferrojob_store::{KeyRange, LogOptions, LogStore, Store, StoreError};

pub const DIR: &str = "/db";

/// Small segments so that tests rotate; no background threads racing the test; no hint unless
/// a test asks for one; segments that grow with each append, so that a test can cut a file at
/// any byte (the `prealloc` tests turn preallocation on).
pub fn opts() -> LogOptions {
    LogOptions {
        preallocate: false,
        segment_bytes: 4096,
        max_group_bytes: 4096,
        background_compaction: false,
        write_hint_on_close: false,
        compaction_min_garbage_bytes: 1,
        ..LogOptions::default()
    }
}

pub fn open(b: &SimBackend, o: LogOptions) -> Result<LogStore, StoreError> {
    LogStore::open_with(Arc::new(b.clone()), DIR, o)
}

pub type State = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// Every table's every entry.
pub fn dump(s: &dyn Store) -> State {
    let mut out = State::new();
    for t in s.tables() {
        for (k, v) in s.range(&t, &KeyRange::all(), usize::MAX).unwrap() {
            out.insert((t.clone(), k), v);
        }
    }
    out
}

pub fn segments(b: &SimBackend) -> Vec<PathBuf> {
    b.paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

pub fn hint_path() -> PathBuf {
    Path::new(DIR).join("hint")
}

/// A copy of the backend's current files (as if the process had died), for trying one cut.
pub fn copy(b: &SimBackend) -> SimBackend {
    b.process_crash()
}
