//! Property test: the log store against a `BTreeMap` model, with reopen, power loss, process
//! crash, compaction and checkpoints at random points, with and without preallocated segments
//! and the store's own checkpoints (the writer, preallocation and compactor threads racing as
//! in production).

use std::collections::BTreeMap;

use crate::common::{dump, open, opts};
use ferrojob_store::backend::SimBackend;
use ferrojob_store::{Batch, KeyRange, LogOptions, LogStore, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Commit(Vec<(u8, u8, Option<Vec<u8>>)>),
    Reopen,
    PowerLoss,
    ProcessCrash,
    Compact,
    Checkpoint,
    Range(u8, u8, u8),
}

const TABLES: [&str; 3] = ["apps", "jobs", "instances"];

fn step() -> impl Strategy<Value = Step> {
    let op = (
        0u8..3,
        0u8..24,
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..300)),
    );
    prop_oneof![
        12 => prop::collection::vec(op, 1..6).prop_map(Step::Commit),
        1 => Just(Step::Reopen),
        1 => Just(Step::PowerLoss),
        1 => Just(Step::ProcessCrash),
        1 => Just(Step::Compact),
        1 => Just(Step::Checkpoint),
        2 => (0u8..3, 0u8..24, 0u8..24).prop_map(|(t, a, b)| Step::Range(t, a, b)),
    ]
}

type Model = BTreeMap<(String, Vec<u8>), Vec<u8>>;

fn key(k: u8) -> Vec<u8> {
    vec![b'k', k]
}

fn run(steps: Vec<Step>, preallocate: bool, auto_checkpoint: bool) {
    let o = LogOptions {
        write_hint_on_close: true,
        preallocate,
        // A small threshold: the writer snapshots and the compactor thread writes hints
        // while the test's own compactions and checkpoints run.
        checkpoint_min_bytes: if auto_checkpoint { 1024 } else { 0 },
        ..opts()
    };
    let mut backend = SimBackend::new();
    let mut store: Option<LogStore> = Some(open(&backend, o.clone()).unwrap());
    let mut model = Model::new();
    for step in steps {
        let s = store.as_ref().unwrap();
        match step {
            Step::Commit(ops) => {
                let mut b = Batch::new();
                for (t, k, v) in ops {
                    let table = TABLES[t as usize];
                    match v {
                        Some(v) => {
                            model.insert((table.to_owned(), key(k)), v.clone());
                            b.push_put(table, key(k), v);
                        }
                        None => {
                            model.remove(&(table.to_owned(), key(k)));
                            b.push_delete(table, key(k));
                        }
                    }
                }
                s.commit(b).unwrap();
            }
            Step::Reopen => {
                drop(store.take());
                store = Some(open(&backend, o.clone()).unwrap());
            }
            Step::PowerLoss => {
                // Sync durability: every acknowledged commit is in the power-loss image.
                let img = backend.crash();
                drop(store.take());
                backend = img;
                store = Some(open(&backend, o.clone()).unwrap());
            }
            Step::ProcessCrash => {
                let img = backend.process_crash();
                drop(store.take());
                backend = img;
                store = Some(open(&backend, o.clone()).unwrap());
            }
            Step::Compact => {
                s.compact().unwrap();
            }
            Step::Checkpoint => s.checkpoint().unwrap(),
            Step::Range(t, a, b) => {
                let table = TABLES[t as usize];
                let r = KeyRange::from(key(a)..key(b));
                let got = s.range(table, &r, usize::MAX).unwrap();
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|((mt, k), _)| mt == table && r.contains(k))
                    .map(|((_, k), v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, want);
            }
        }
        assert_eq!(dump(store.as_ref().unwrap()), model);
    }
    drop(store);
    assert_eq!(dump(&open(&backend, o).unwrap()), model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_store_matches_a_btreemap(
        steps in prop::collection::vec(step(), 1..80),
        preallocate in any::<bool>(),
        auto_checkpoint in any::<bool>(),
    ) {
        run(steps, preallocate, auto_checkpoint);
    }
}
