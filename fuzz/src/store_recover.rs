//! Fuzz target `store_recover`: arbitrary bytes as a log segment, or as a hint file next to a
//! valid segment, must open to a state or to a typed error, never a panic.
//!
//! Input: byte 0 selects the mode, the rest is the file.
//! - mode 0: the rest is segment `00000001.log`, alone.
//! - mode 1: the rest is the `hint` file beside a valid three-batch segment; whatever the hint
//!   says, the state must be exactly that segment's state.
//! - mode 2: the rest is segment `00000001.log`, followed by a valid sealed segment
//!   `00000002.log` (so the fuzzed one is not the tail).
//!
//! Each input is opened strictly and with salvage. When an open succeeds, every key must read
//! back, and a reopen (which now may use the hint written on close) must find the same state:
//! recovery is idempotent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use ferrojob_store::backend::SimBackend;
use ferrojob_store::{Batch, KeyRange, LogOptions, LogStore, RecoveryMode, Store};

const DIR: &str = "/fuzz";

type State = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// A valid segment, its hint, and the state they hold.
struct Fixture {
    segment: Vec<u8>,
    hint: Vec<u8>,
    state: State,
}

fn options(recovery: RecoveryMode) -> LogOptions {
    LogOptions {
        recovery,
        segment_bytes: 4096,
        max_group_bytes: 4096,
        background_compaction: false,
        // Segments that grow with each append: the fixture's three batches stay in one
        // segment, whenever the preallocation thread would have had a spare ready.
        preallocate: false,
        ..LogOptions::default()
    }
}

/// The batches every fixture and seed is made of.
pub fn sample_batches() -> Vec<Batch> {
    vec![
        Batch::new()
            .put("apps", b"app-1".to_vec(), b"billing".to_vec())
            .put("jobs", b"job-1".to_vec(), b"cron 0 * * * * ?".to_vec()),
        Batch::new()
            .put("instances", b"i-1".to_vec(), vec![7u8; 40])
            .put(
                "triggers",
                b"job-1".to_vec(),
                1_700_000_000_000u64.to_le_bytes().to_vec(),
            ),
        Batch::new().delete("instances", b"i-1".to_vec()).put(
            "instances",
            b"i-2".to_vec(),
            vec![9u8; 12],
        ),
    ]
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let backend = SimBackend::new();
        let state = {
            let store = match LogStore::open_with(
                Arc::new(backend.clone()),
                DIR,
                options(RecoveryMode::Strict),
            ) {
                Ok(s) => s,
                Err(e) => panic!("fixture store: {e}"),
            };
            for b in sample_batches() {
                if let Err(e) = store.commit(b) {
                    panic!("fixture commit: {e}");
                }
            }
            let state = dump(&store).unwrap_or_default();
            if let Err(e) = store.close() {
                panic!("fixture close: {e}");
            }
            state
        };
        let read = |name: &str| backend.read(&Path::new(DIR).join(name)).unwrap_or_default();
        Fixture {
            segment: read("00000001.log"),
            hint: read("hint"),
            state,
        }
    })
}

/// The valid segment and hint the fixture builds, for seeding the corpus.
pub fn valid_segment_and_hint() -> (Vec<u8>, Vec<u8>) {
    let f = fixture();
    (f.segment.clone(), f.hint.clone())
}

fn dump(s: &dyn Store) -> Option<State> {
    let mut out = State::new();
    for t in s.tables() {
        for (k, v) in s.range(&t, &KeyRange::all(), usize::MAX).ok()? {
            out.insert((t.clone(), k), v);
        }
    }
    Some(out)
}

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let backend = SimBackend::new();
    let dir = Path::new(DIR);
    match mode % 3 {
        0 => backend.write(&dir.join("00000001.log"), file),
        1 => {
            backend.write(&dir.join("00000001.log"), &fixture().segment);
            backend.write(&dir.join("hint"), file);
        }
        _ => {
            backend.write(&dir.join("00000001.log"), file);
            backend.write(&dir.join("00000002.log"), &segment_with_id(2));
        }
    }
    for recovery in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let image = backend.process_crash();
        let first = match LogStore::open_with(Arc::new(image.clone()), DIR, options(recovery)) {
            Ok(store) => {
                // A state whose every value reads back (reads re-check checksums).
                let state = dump(&store);
                drop(store);
                state
            }
            Err(e) => {
                // A typed error with a message; a salvage open never fails on corruption.
                assert!(!e.to_string().is_empty());
                assert!(
                    !(recovery == RecoveryMode::Salvage && e.is_corruption()),
                    "salvage failed: {e}"
                );
                continue;
            }
        };
        if mode % 3 == 1 {
            assert_eq!(
                first.as_ref(),
                Some(&fixture().state),
                "a hint changed the state"
            );
        }
        // Idempotent: reopening (now with the hint written on close) finds the same state.
        match LogStore::open_with(Arc::new(image), DIR, options(recovery)) {
            Ok(store) => assert_eq!(dump(&store), first, "reopen changed the state"),
            Err(e) => panic!("reopen of a recovered store failed: {e}"),
        }
    }
}

/// The fixture segment renamed to id `id` (header id and checksum rewritten).
fn segment_with_id(id: u32) -> Vec<u8> {
    static CACHE: OnceLock<Vec<u8>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let backend = SimBackend::new();
            // Id 1 is taken by a placeholder so that the store writes segment 2.
            backend.write(&Path::new(DIR).join("00000001.compact"), b"");
            if let Ok(store) = LogStore::open_with(
                Arc::new(backend.clone()),
                DIR,
                options(RecoveryMode::Strict),
            ) {
                for b in sample_batches() {
                    let _ = store.commit(b);
                }
            }
            backend
                .read(&Path::new(DIR).join(format!("{id:08x}.log")))
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the seed corpus: `cargo test -p ferrojob-fuzz --no-default-features --features
    /// store -- --ignored write_store_recover_seeds`.
    #[test]
    #[ignore]
    fn write_store_recover_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/store_recover");
        std::fs::create_dir_all(&dir).unwrap();
        let (segment, hint) = valid_segment_and_hint();
        let with = |mode: u8, bytes: &[u8]| {
            let mut v = vec![mode];
            v.extend_from_slice(bytes);
            v
        };
        let mut torn = segment.clone();
        torn.truncate(segment.len() - 10);
        let mut flipped = segment.clone();
        flipped[60] ^= 0x20;
        let mut bad_hint = hint.clone();
        bad_hint[20] ^= 1;
        let seeds: Vec<(&str, Vec<u8>)> = vec![
            ("segment-valid", with(0, &segment)),
            ("segment-torn-tail", with(0, &torn)),
            ("segment-bit-flip", with(0, &flipped)),
            ("segment-header-only", with(0, &segment[..24])),
            ("segment-empty", with(0, &[])),
            (
                "segment-zero-tail",
                with(0, &[segment.as_slice(), &[0u8; 64]].concat()),
            ),
            ("hint-valid", with(1, &hint)),
            ("hint-truncated", with(1, &hint[..hint.len() / 2])),
            ("hint-bit-flip", with(1, &bad_hint)),
            ("sealed-torn", with(2, &torn)),
            ("sealed-valid", with(2, &segment)),
        ];
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn fixture_is_valid() {
        let (segment, hint) = valid_segment_and_hint();
        assert!(segment.len() > 24);
        assert!(!hint.is_empty());
        assert_eq!(fixture().state.len(), 4);
        run(&[&[0u8][..], &segment].concat());
        run(&[&[1u8][..], &hint].concat());
        assert!(!segment_with_id(2).is_empty());
    }
}
