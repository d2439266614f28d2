//! The stepped writer mode (`WriterMode::Stepped`), as a deterministic simulator drives it:
//! batches submitted, written, synced, and the simulated file system crashed in between.
//!
//! The property test runs random sequences of submit / write / sync / compact / commit /
//! checkpoint / power loss (clean or torn) / process crash / reopen against a `BTreeMap`
//! model, and runs every sequence twice to check that it is deterministic.

use crate::common::{dump, open, opts, State};
use ferrojob_store::backend::{Fault, SimBackend, Tear};
use ferrojob_store::{
    Batch, CommitHandle, CommitInfo, Durability, LogOptions, LogStore, Store, StoreError,
    WriterMode,
};
use proptest::prelude::*;

fn stepped() -> LogOptions {
    LogOptions {
        writer: WriterMode::Stepped,
        ..opts()
    }
}

fn buffered() -> LogOptions {
    LogOptions {
        durability: Durability::Buffered,
        ..stepped()
    }
}

fn put(key: &str, value: &str) -> Batch {
    Batch::new().put("t", key.as_bytes().to_vec(), value.as_bytes().to_vec())
}

fn value(s: &LogStore, key: &str) -> Option<Vec<u8>> {
    s.get("t", key.as_bytes()).unwrap()
}

#[test]
fn a_written_batch_is_durable_and_acknowledged_only_after_its_sync() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    s.put("t", b"before", b"0").unwrap();

    let h = s.submit(put("k", "1"));
    assert!(!h.is_done());
    assert_eq!((s.queued_batches(), s.unsynced_batches()), (1, 0));
    assert_eq!(value(&s, "k"), None);
    // Nothing written yet: even a process crash loses it.
    assert_eq!(
        dump(&open(&b.process_crash(), stepped()).unwrap()).len(),
        1,
        "only the first commit"
    );

    assert_eq!(s.write_pending().unwrap(), 1);
    // Written, fdatasync still running: not durable, not acknowledged, not visible.
    assert!(!h.is_done());
    assert_eq!((s.queued_batches(), s.unsynced_batches()), (0, 1));
    assert_eq!(value(&s, "k"), None);
    assert_eq!(value(&open(&b.crash(), stepped()).unwrap(), "k"), None);
    assert_eq!(
        value(&open(&b.process_crash(), stepped()).unwrap(), "k"),
        Some(b"1".to_vec()),
        "a process crash keeps what was written"
    );

    assert_eq!(s.sync_pending().unwrap(), 1);
    let info = h.wait().unwrap();
    assert_eq!(info, CommitInfo { last_seq: 2 });
    assert_eq!((s.queued_batches(), s.unsynced_batches()), (0, 0));
    assert_eq!(value(&s, "k"), Some(b"1".to_vec()));
    assert_eq!(
        value(&open(&b.crash(), stepped()).unwrap(), "k"),
        Some(b"1".to_vec())
    );
}

#[test]
fn buffered_acknowledges_on_write_and_syncs_on_request() {
    let b = SimBackend::new();
    let s = open(&b, buffered()).unwrap();
    let h = s.submit(put("k", "1"));
    assert!(!h.is_done());
    assert_eq!(s.write_pending().unwrap(), 1);
    assert_eq!(h.wait().unwrap(), CommitInfo { last_seq: 1 });
    assert_eq!(value(&s, "k"), Some(b"1".to_vec()));
    assert_eq!(s.unsynced_batches(), 1);
    assert_eq!(value(&open(&b.crash(), buffered()).unwrap(), "k"), None);
    assert_eq!(s.sync_pending().unwrap(), 1);
    assert_eq!(
        value(&open(&b.crash(), buffered()).unwrap(), "k"),
        Some(b"1".to_vec())
    );
}

#[test]
fn sync_pending_does_not_write_the_queue() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    let h = s.submit(put("k", "1"));
    assert_eq!(s.sync_pending().unwrap(), 0);
    assert!(!h.is_done());
    assert_eq!(s.queued_batches(), 1);
    s.flush().unwrap();
    assert!(h.wait().is_ok());
}

#[test]
fn commit_and_flush_drive_the_writer_themselves() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    let queued = s.submit(put("a", "1"));
    // `commit` writes the queue and syncs: the earlier batch goes first.
    assert_eq!(s.commit(put("b", "2")).unwrap(), CommitInfo { last_seq: 2 });
    assert_eq!(queued.wait().unwrap(), CommitInfo { last_seq: 1 });
    assert_eq!(s.commit(Batch::new()).unwrap(), CommitInfo { last_seq: 2 });
    let s2 = open(&b.crash(), stepped()).unwrap();
    assert_eq!(s2.count("t"), 2);
}

#[test]
fn the_queue_is_written_once_it_holds_a_group() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    // opts() sets max_group_bytes to 4096: the queue is written when it reaches that.
    let handles: Vec<_> = (0..40u8)
        .map(|i| s.submit(Batch::new().put("t", vec![i], vec![i; 200])))
        .collect();
    assert!(s.queued_batches() < 20, "{}", s.queued_batches());
    assert!(s.unsynced_batches() + s.queued_batches() <= 40);
    s.flush().unwrap();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap().last_seq, i as u64 + 1);
    }
}

#[test]
fn rotation_publishes_the_groups_it_made_durable_and_compaction_keeps_them() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    let mut handles = Vec::new();
    // Write (never sync) until a rotation has sealed a segment.
    let mut i = 0u32;
    while s.segment_count() < 2 {
        handles.push(s.submit(Batch::new().put("t", i.to_be_bytes().to_vec(), vec![1; 300])));
        s.write_pending().unwrap();
        i += 1;
    }
    // The rotation fdatasynced the sealed segment: its batches are acknowledged; the batch
    // written after it into the new segment is not.
    let (last, sealed) = handles.split_last().unwrap();
    assert!(sealed.iter().all(CommitHandle::is_done));
    assert!(!last.is_done());
    assert_eq!(s.unsynced_batches(), 1);
    assert_eq!(s.count("t"), i as usize - 1);
    // Overwrite everything so that the sealed segment is garbage, then compact it away
    // while the newest batch is still unsynced.
    for k in 0..i {
        s.submit(Batch::new().put("t", k.to_be_bytes().to_vec(), vec![2; 10]));
    }
    s.write_pending().unwrap();
    s.sync_pending().unwrap();
    assert!(s.compact().unwrap().inputs >= 1);
    let expected = dump(&s);
    assert_eq!(expected.len(), i as usize);
    assert!(expected.values().all(|v| v == &vec![2; 10]));
    for img in [b.crash(), b.process_crash()] {
        assert_eq!(dump(&open(&img, stepped()).unwrap()), expected);
    }
}

#[test]
fn fsync_failure_fails_the_waiting_batches_and_poisons() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    s.put("t", b"ok", b"1").unwrap();
    let h = s.submit(put("lost", "2"));
    s.write_pending().unwrap();
    b.fail(Fault::SyncData, 0);
    let err = s.sync_pending().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(h.wait(), Err(StoreError::Io { .. })));
    assert_eq!(value(&s, "lost"), None);
    assert!(matches!(
        s.submit(put("later", "3")).wait(),
        Err(StoreError::Poisoned { .. })
    ));
    assert!(matches!(s.write_pending(), Ok(0)));
    assert!(matches!(s.sync_pending(), Err(StoreError::Poisoned { .. })));
    s.abandon();
    let s = open(&b.crash(), stepped()).unwrap();
    assert_eq!(value(&s, "ok"), Some(b"1".to_vec()));
}

#[test]
fn write_failure_fails_every_queued_batch() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    let first = s.submit(put("a", "1"));
    s.write_pending().unwrap();
    let second = s.submit(put("b", "2"));
    b.fail(Fault::Write, 0);
    assert!(matches!(
        s.write_pending(),
        Err(StoreError::Io { op: "write", .. })
    ));
    assert!(matches!(second.wait(), Err(StoreError::Io { .. })));
    // The group written before the failure waited for an fdatasync that will never happen.
    assert!(s.sync_pending().is_err());
    assert!(first.wait().is_err());
}

#[test]
fn abandon_resolves_every_waiting_handle_as_closed_and_writes_nothing() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    s.put("t", b"a", b"1").unwrap();
    let written = s.submit(put("b", "2"));
    s.write_pending().unwrap();
    let queued = s.submit(put("c", "3"));
    let before = files(&b);
    s.abandon();
    assert!(matches!(written.wait(), Err(StoreError::Closed { .. })));
    assert!(matches!(queued.wait(), Err(StoreError::Closed { .. })));
    assert_eq!(files(&b), before, "no write, no hint");
}

#[test]
fn abandoning_a_threaded_store_keeps_its_commits_and_writes_no_hint() {
    let b = SimBackend::new();
    let s = open(
        &b,
        LogOptions {
            write_hint_on_close: true,
            ..opts()
        },
    )
    .unwrap();
    s.put("t", b"k", b"v").unwrap();
    s.abandon();
    assert!(!b.paths().contains(&crate::common::hint_path()));
    let s = open(&b.crash(), opts()).unwrap();
    assert_eq!(value(&s, "k"), Some(b"v".to_vec()));
}

#[test]
fn stepping_calls_need_the_stepped_mode_and_interval_needs_the_thread() {
    let b = SimBackend::new();
    let s = open(&b, opts()).unwrap();
    assert!(matches!(
        s.write_pending(),
        Err(StoreError::NotStepped {
            op: "write_pending",
            ..
        })
    ));
    assert!(matches!(
        s.sync_pending(),
        Err(StoreError::NotStepped { .. })
    ));
    assert_eq!((s.queued_batches(), s.unsynced_batches()), (0, 0));
    drop(s);
    let err = open(
        &b,
        LogOptions {
            durability: Durability::Interval(10),
            ..stepped()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidOptions {
                field: "durability",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_closed_stepped_store_refuses_stepping_and_commits() {
    let b = SimBackend::new();
    let s = open(&b, stepped()).unwrap();
    let h = s.submit(put("k", "1"));
    s.close().unwrap();
    assert!(h.wait().is_ok(), "close writes and syncs the queue");
    assert!(matches!(s.write_pending(), Err(StoreError::Closed { .. })));
    assert!(matches!(
        s.submit(put("x", "1")).wait(),
        Err(StoreError::Closed { .. })
    ));
    assert!(matches!(
        s.commit(Batch::new()),
        Err(StoreError::Closed { .. })
    ));
    assert_eq!(value(&s, "k"), Some(b"1".to_vec()));
}

#[test]
fn a_batch_cut_short_by_zeros_is_a_torn_tail() {
    for kept in [0, 10, 40, 200] {
        let b = SimBackend::new();
        let s = open(&b, stepped()).unwrap();
        s.put("t", b"a", b"1").unwrap();
        s.submit(Batch::new().put("t", b"b".to_vec(), vec![7; 500]));
        s.write_pending().unwrap();
        // The file's new length reached the disk, only `kept` bytes of the batch did.
        let img = b.crash_torn(|_, _| Tear::ZeroFilled(kept));
        s.abandon();
        let s = open(&img, stepped()).unwrap();
        assert_eq!(dump(&s).len(), 1, "kept {kept}");
        assert_eq!(value(&s, "a"), Some(b"1".to_vec()));
        assert_eq!(s.recovery_report().truncated.len(), 1);
    }
}

/// Commits one at a time through `Store::commit` (a group per commit in both modes), with
/// compactions and checkpoints, then closes; returns the commit infos and the files.
fn sequential(o: LogOptions) -> (Vec<CommitInfo>, Files) {
    let b = SimBackend::new();
    let s = open(&b, o).unwrap();
    let mut infos = Vec::new();
    let mut x = 12345u64;
    for i in 0..600u64 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let k = ((x >> 33) % 50).to_be_bytes().to_vec();
        let mut batch = Batch::new().put("instances", k, vec![(x >> 8) as u8; (x % 300) as usize]);
        if x.is_multiple_of(5) {
            batch = batch.delete("instances", ((x >> 20) % 50).to_be_bytes().to_vec());
        }
        infos.push(s.commit(batch).unwrap());
        if i % 100 == 99 {
            s.compact().unwrap();
        }
        if i % 150 == 149 {
            s.checkpoint().unwrap();
        }
    }
    s.close().unwrap();
    (infos, files(&b))
}

#[test]
fn stepped_commits_write_the_same_bytes_as_the_writer_thread() {
    let o = LogOptions {
        write_hint_on_close: true,
        ..opts()
    };
    let threaded = sequential(o.clone());
    let stepped = sequential(LogOptions {
        writer: WriterMode::Stepped,
        ..o
    });
    assert!(
        threaded.1.len() > 2,
        "rotated and compacted: {}",
        threaded.1.len()
    );
    assert_eq!(threaded.0, stepped.0);
    assert!(threaded.1 == stepped.1, "the files differ");
}

/// Every file's path and bytes, in path order.
type Files = Vec<(std::path::PathBuf, Option<Vec<u8>>)>;

fn files(b: &SimBackend) -> Files {
    b.paths()
        .into_iter()
        .map(|p| (p.clone(), b.read(&p)))
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Submit(Vec<(u8, u8, Option<Vec<u8>>)>),
    /// `Store::commit`: submit, write, sync in one call.
    Commit(Vec<(u8, u8, Option<Vec<u8>>)>),
    Write,
    Sync,
    Compact,
    Checkpoint,
    /// Close cleanly and reopen.
    Reopen,
    /// Power loss: nothing unsynced survives.
    PowerLoss,
    /// Power loss that keeps a seeded prefix of each file's unsynced bytes.
    TornPowerLoss(u64),
    /// Power loss that keeps the files' new lengths and a seeded prefix of their unsynced
    /// bytes, the rest zeros.
    ZeroFilledPowerLoss(u64),
    ProcessCrash,
}

const TABLES: [&str; 3] = ["apps", "jobs", "instances"];

fn ops() -> impl Strategy<Value = Vec<(u8, u8, Option<Vec<u8>>)>> {
    let op = (
        0u8..3,
        0u8..24,
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..300)),
    );
    prop::collection::vec(op, 1..6)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => ops().prop_map(Step::Submit),
        2 => ops().prop_map(Step::Commit),
        4 => Just(Step::Write),
        2 => Just(Step::Sync),
        1 => Just(Step::Compact),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
        1 => Just(Step::PowerLoss),
        1 => any::<u64>().prop_map(Step::TornPowerLoss),
        1 => any::<u64>().prop_map(Step::ZeroFilledPowerLoss),
        1 => Just(Step::ProcessCrash),
    ]
}

/// How a crash step builds its image.
#[derive(Debug, Clone, Copy)]
enum Crash {
    Power,
    Torn(u64),
    ZeroFilled(u64),
    Process,
}

/// The store against the model. `states[i]` is the model's state after the first `i` batches
/// of the current history (a crash cuts the history back to what survived); the first
/// `acked` batches have been acknowledged, the rest wait in `waiting`, oldest first.
struct Run {
    options: LogOptions,
    backend: SimBackend,
    store: Option<LogStore>,
    states: Vec<State>,
    acked: usize,
    waiting: std::collections::VecDeque<(CommitHandle, u64)>,
    /// Sequence number of the last batch acknowledged since open.
    last_seq: Option<u64>,
    /// What the run observed, compared between two runs of the same steps.
    trace: Vec<String>,
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', k]
}

/// A small deterministic generator for the torn lengths (SplitMix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Run {
    fn new(preallocate: bool) -> Run {
        let options = LogOptions {
            write_hint_on_close: true,
            preallocate,
            ..stepped()
        };
        let backend = SimBackend::new();
        let store = open(&backend, options.clone()).unwrap();
        Run {
            options,
            backend,
            store: Some(store),
            states: vec![State::new()],
            acked: 0,
            waiting: Default::default(),
            last_seq: None,
            trace: Vec::new(),
        }
    }

    fn store(&self) -> &LogStore {
        self.store.as_ref().unwrap()
    }

    fn submitted(&self) -> usize {
        self.acked + self.waiting.len()
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Submit(ops) => self.submit(ops, false),
            Step::Commit(ops) => self.submit(ops, true),
            Step::Write => {
                let n = self.store().write_pending().unwrap();
                self.trace.push(format!("wrote {n}"));
            }
            Step::Sync => {
                let n = self.store().sync_pending().unwrap();
                self.trace.push(format!("synced {n}"));
            }
            Step::Compact => {
                let report = self.store().compact().unwrap();
                self.trace.push(format!("{report:?}"));
            }
            Step::Checkpoint => {
                self.store().checkpoint().unwrap();
                self.poll();
                assert!(self.waiting.is_empty(), "a checkpoint flushes");
            }
            Step::Reopen => {
                self.store().close().unwrap();
                self.poll();
                assert!(self.waiting.is_empty(), "close flushes");
                drop(self.store.take());
                self.reopen(self.backend.clone());
                self.check_recovered(self.acked, self.acked);
            }
            Step::PowerLoss => self.crash(Crash::Power),
            Step::TornPowerLoss(seed) => self.crash(Crash::Torn(seed)),
            Step::ZeroFilledPowerLoss(seed) => self.crash(Crash::ZeroFilled(seed)),
            Step::ProcessCrash => self.crash(Crash::Process),
        }
        self.poll();
        self.check();
    }

    fn submit(&mut self, ops: Vec<(u8, u8, Option<Vec<u8>>)>, commit: bool) {
        let mut state = self.states.last().unwrap().clone();
        let mut b = Batch::new();
        let n = ops.len() as u64;
        for (t, k, v) in ops {
            let table = TABLES[t as usize];
            match v {
                Some(v) => {
                    state.insert((table.to_owned(), key(k)), v.clone());
                    b.push_put(table, key(k), v);
                }
                None => {
                    state.remove(&(table.to_owned(), key(k)));
                    b.push_delete(table, key(k));
                }
            }
        }
        self.states.push(state);
        let handle = if commit {
            let info = self.store().commit(b).unwrap();
            CommitHandle::ready(Ok(info))
        } else {
            self.store().submit(b)
        };
        self.waiting.push_back((handle, n));
    }

    /// Collects acknowledgements: they come in submission order, each with the sequence
    /// number of its batch's last record, and are never errors (no fault is injected).
    fn poll(&mut self) {
        while self.waiting.front().is_some_and(|(h, _)| h.is_done()) {
            let (handle, ops) = self.waiting.pop_front().unwrap();
            let info = handle.wait().unwrap();
            if let Some(prev) = self.last_seq {
                assert_eq!(info.last_seq, prev + ops, "batch {}", self.acked);
            }
            self.last_seq = Some(info.last_seq);
            self.trace.push(format!("ack {} {info:?}", self.acked));
            self.acked += 1;
        }
        assert!(
            self.waiting.iter().all(|(h, _)| !h.is_done()),
            "acknowledged out of order"
        );
    }

    /// Readers see exactly the acknowledged batches; every other batch is queued or written.
    fn check(&self) {
        let s = self.store();
        assert_eq!(dump(s), self.states[self.acked], "visible state");
        assert_eq!(
            s.queued_batches() + s.unsynced_batches(),
            self.waiting.len(),
            "queued {} unsynced {}",
            s.queued_batches(),
            s.unsynced_batches()
        );
    }

    fn crash(&mut self, how: Crash) {
        let written = self.submitted() - self.store().queued_batches();
        let mut rng = match how {
            Crash::Torn(seed) | Crash::ZeroFilled(seed) => seed,
            Crash::Power | Crash::Process => 0,
        };
        let mut tear = |_: &std::path::Path, unsynced: u64| {
            let kept = splitmix(&mut rng) % (unsynced + 1);
            match how {
                Crash::ZeroFilled(_) => Tear::ZeroFilled(kept),
                _ => Tear::Prefix(kept),
            }
        };
        let image = match how {
            Crash::Power => self.backend.crash(),
            Crash::Torn(_) | Crash::ZeroFilled(_) => self.backend.crash_torn(&mut tear),
            Crash::Process => self.backend.process_crash(),
        };
        self.store.take().unwrap().abandon();
        for (handle, _) in self.waiting.drain(..) {
            assert!(
                matches!(handle.wait(), Err(StoreError::Closed { .. })),
                "a crash acknowledges nothing more"
            );
        }
        self.reopen(image);
        match how {
            // Nothing unsynced survives, and everything synced was acknowledged.
            Crash::Power => self.check_recovered(self.acked, self.acked),
            Crash::Torn(_) | Crash::ZeroFilled(_) => self.check_recovered(self.acked, written),
            // The page cache keeps everything written.
            Crash::Process => self.check_recovered(written, written),
        }
    }

    /// Opens `backend`: every crash image opens in `RecoveryMode::Strict`.
    fn reopen(&mut self, backend: SimBackend) {
        let store =
            open(&backend, self.options.clone()).unwrap_or_else(|e| panic!("reopen failed: {e}"));
        self.trace.push(format!("{:?}", store.recovery_report()));
        self.backend = backend;
        self.store = Some(store);
        self.last_seq = None;
    }

    /// The recovered state is the model's after some `k` batches, `min <= k <= max`: never a
    /// partial batch, never fewer than the acknowledged ones. The history continues from it.
    fn check_recovered(&mut self, min: usize, max: usize) {
        let got = dump(self.store());
        let k = (min..=max)
            .find(|k| self.states[*k] == got)
            .unwrap_or_else(|| {
                panic!("recovered state is not the model's after {min}..={max} batches: {got:?}")
            });
        self.trace.push(format!("recovered {k} batches"));
        self.states.truncate(k + 1);
        self.acked = k;
    }

    /// Ends with a torn power loss, then reopens ten times without writing anything: the same
    /// state every time, and no file changes after the first recovery.
    fn finish(mut self) -> (Vec<String>, Files) {
        self.crash(Crash::Torn(7));
        let expected = dump(self.store());
        self.store.take().unwrap().abandon();
        let after_first = files(&self.backend);
        for round in 0..10 {
            let s = open(&self.backend, self.options.clone()).unwrap();
            assert_eq!(dump(&s), expected, "round {round}");
            s.abandon();
            assert_eq!(
                files(&self.backend),
                after_first,
                "round {round} changed the files"
            );
        }
        (self.trace, after_first)
    }
}

/// Runs `steps`; returns what it observed and the files it left.
fn run(steps: &[Step], preallocate: bool) -> (Vec<String>, Files) {
    let mut run = Run::new(preallocate);
    for step in steps {
        run.step(step.clone());
    }
    run.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn stepped_store_matches_a_btreemap_through_crashes_and_is_deterministic(
        steps in prop::collection::vec(step(), 1..80),
        preallocate in any::<bool>(),
    ) {
        let (trace, files) = run(&steps, preallocate);
        let (trace2, files2) = run(&steps, preallocate);
        // Same operations: same acknowledgements, sequence numbers, recoveries and bytes.
        prop_assert_eq!(trace, trace2);
        let differ: Vec<_> = files
            .iter()
            .zip(&files2)
            .filter(|(a, b)| a != b)
            .map(|((a, _), (b, _))| (a, b))
            .collect();
        prop_assert!(
            files.len() == files2.len() && differ.is_empty(),
            "the files differ between two runs: {} vs {} files, differing {:?}",
            files.len(),
            files2.len(),
            differ
        );
    }
}
