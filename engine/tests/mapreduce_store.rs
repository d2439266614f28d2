//! `TaskStore` against a plain in-memory model (proptest), over a `MemoryStore` and over a
//! `LogStore` reopened mid-sequence; corrupt bytes; paging of results and deletes.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrojob::mapreduce::{
    Finish, TaskCounts, TaskReport, TaskState, TaskStore, TaskStoreError, MAX_CONTENT_LEN,
    TABLE_META, TABLE_PENDING, TABLE_TASKS,
};
use ferrojob_store::{Durability, LogOptions, LogStore, MemoryStore, Store};
use proptest::prelude::*;

const MAX_RETRIES: u32 = 1;
const WORKERS: [&str; 3] = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"];

#[derive(Clone, Debug, PartialEq)]
enum MStatus {
    Pending,
    Dispatched(String),
    Succeeded(String),
    Failed(String),
}

#[derive(Clone, Debug)]
struct MTask {
    parent: Option<u64>,
    content: Vec<u8>,
    status: MStatus,
    retries: u32,
    seq: u64,
}

#[derive(Default, Debug)]
struct MInstance {
    tasks: BTreeMap<u64, MTask>,
    next_seq: u64,
}

impl MInstance {
    fn counts(&self) -> TaskCounts {
        let mut c = TaskCounts {
            total: self.tasks.len() as u64,
            ..TaskCounts::default()
        };
        for t in self.tasks.values() {
            match t.status {
                MStatus::Pending => c.pending += 1,
                MStatus::Dispatched(_) => c.running += 1,
                MStatus::Succeeded(_) => c.succeeded += 1,
                MStatus::Failed(_) => c.failed += 1,
            }
        }
        c
    }
    fn enqueue(&mut self, id: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let t = self.tasks.get_mut(&id).unwrap();
        t.status = MStatus::Pending;
        t.seq = seq;
    }
    fn pending_in_order(&self) -> Vec<u64> {
        let mut p: Vec<(u64, u64)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.status == MStatus::Pending)
            .map(|(id, t)| (t.seq, *id))
            .collect();
        p.sort();
        p.into_iter().map(|(_, id)| id).collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        instance: u64,
        parent: Option<usize>,
        n: usize,
    },
    Dispatch {
        instance: u64,
        limit: usize,
        worker: usize,
    },
    Finish {
        instance: u64,
        pick: usize,
        worker: usize,
        success: bool,
    },
    FinishMany {
        instance: u64,
        reports: Vec<(usize, usize, bool)>,
    },
    Requeue {
        instance: u64,
        worker: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let inst = 1u64..3;
    prop_oneof![
        3 => (inst.clone(), proptest::option::of(0usize..64), 0usize..5)
            .prop_map(|(instance, parent, n)| Op::Map { instance, parent, n }),
        3 => (inst.clone(), 0usize..6, 0usize..3)
            .prop_map(|(instance, limit, worker)| Op::Dispatch { instance, limit, worker }),
        4 => (inst.clone(), 0usize..64, 0usize..3, any::<bool>())
            .prop_map(|(instance, pick, worker, success)| Op::Finish { instance, pick, worker, success }),
        2 => (inst.clone(), proptest::collection::vec((0usize..64, 0usize..3, any::<bool>()), 0..8))
            .prop_map(|(instance, reports)| Op::FinishMany { instance, reports }),
        1 => (inst, 0usize..3).prop_map(|(instance, worker)| Op::Requeue { instance, worker }),
        1 => Just(Op::Reopen),
    ]
}

/// The model's answer to one report, applied to `m`.
fn model_finish(m: &mut MInstance, id: u64, w: &str, success: bool, result: String) -> Finish {
    let t = m.tasks.get_mut(&id).unwrap();
    if t.status != MStatus::Dispatched(w.to_owned()) {
        Finish::Stale
    } else if success {
        t.status = MStatus::Succeeded(result);
        Finish::Succeeded
    } else if t.retries < MAX_RETRIES {
        t.retries += 1;
        let retries = t.retries;
        m.enqueue(id);
        Finish::Retry { retries }
    } else {
        t.status = MStatus::Failed(result);
        Finish::Failed
    }
}

fn log_options() -> LogOptions {
    LogOptions {
        durability: Durability::Buffered,
        background_compaction: false,
        ..LogOptions::default()
    }
}

fn check(ts: &TaskStore, model: &BTreeMap<u64, MInstance>) {
    for (&instance, m) in model {
        assert_eq!(
            ts.counts(instance).unwrap(),
            m.counts(),
            "counts of {instance}"
        );
        for (&id, t) in &m.tasks {
            let r = ts.get(instance, id).unwrap().unwrap();
            assert_eq!(r.parent, t.parent);
            assert_eq!(r.content, t.content);
            assert_eq!(r.retries, t.retries);
            let status = match r.status {
                TaskState::Pending => MStatus::Pending,
                TaskState::Dispatched { worker, .. } => MStatus::Dispatched(worker),
                TaskState::Succeeded { result } => MStatus::Succeeded(result),
                TaskState::Failed { reason, .. } => MStatus::Failed(reason),
            };
            assert_eq!(status, t.status, "task {instance}/{id}");
        }
        let mut workers: Vec<String> = m
            .tasks
            .values()
            .filter_map(|t| match &t.status {
                MStatus::Dispatched(w) => Some(w.clone()),
                _ => None,
            })
            .collect();
        workers.sort();
        workers.dedup();
        assert_eq!(ts.dispatched_workers(instance).unwrap(), workers);
        let results: Vec<(u64, bool, String)> = ts
            .results(instance)
            .map(|r| r.unwrap())
            .map(|r| (r.task_id, r.success, r.result))
            .collect();
        let expected: Vec<(u64, bool, String)> = m
            .tasks
            .iter()
            .filter_map(|(&id, t)| match &t.status {
                MStatus::Succeeded(r) => Some((id, true, r.clone())),
                MStatus::Failed(r) => Some((id, false, r.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(results, expected);
    }
}

fn run(ops: Vec<Op>, dir: Option<&std::path::Path>) {
    let open = || -> Arc<dyn Store> {
        match dir {
            Some(d) => Arc::new(LogStore::open(d, log_options()).unwrap()),
            None => Arc::new(MemoryStore::new()),
        }
    };
    let mut ts = TaskStore::new(open());
    let mut model: BTreeMap<u64, MInstance> = BTreeMap::new();
    let mut step = 0u64;
    for op in ops {
        step += 1;
        match op {
            Op::Map {
                instance,
                parent,
                n,
            } => {
                let m = model.entry(instance).or_default();
                let parent = parent.map(|p| p as u64 % (m.tasks.len() as u64 + 1));
                let contents: Vec<Vec<u8>> =
                    (0..n).map(|i| format!("{step}-{i}").into_bytes()).collect();
                let got = ts.map(instance, parent, "stage", contents.clone());
                match parent.map(|p| m.tasks.get(&p)) {
                    Some(None) => assert!(matches!(got, Err(TaskStoreError::NoSuchTask { .. }))),
                    Some(Some(t))
                        if matches!(t.status, MStatus::Succeeded(_) | MStatus::Failed(_)) =>
                    {
                        assert!(matches!(got, Err(TaskStoreError::ParentFinal { .. })))
                    }
                    _ => {
                        let range = got.unwrap();
                        let first = m.tasks.len() as u64;
                        assert_eq!(range, first..first + n as u64);
                        for (id, content) in range.zip(contents) {
                            m.tasks.insert(
                                id,
                                MTask {
                                    parent,
                                    content,
                                    status: MStatus::Pending,
                                    retries: 0,
                                    seq: 0,
                                },
                            );
                            m.enqueue(id);
                        }
                    }
                }
            }
            Op::Dispatch {
                instance,
                limit,
                worker,
            } => {
                let m = model.entry(instance).or_default();
                let got = ts.next_pending(instance, limit).unwrap();
                let ids: Vec<u64> = got.iter().map(|r| r.task_id).collect();
                let expected: Vec<u64> = m.pending_in_order().into_iter().take(limit).collect();
                assert_eq!(ids, expected);
                let updated = ts.mark_dispatched(instance, &ids, WORKERS[worker]).unwrap();
                assert_eq!(updated.len(), ids.len());
                for id in ids {
                    m.tasks.get_mut(&id).unwrap().status =
                        MStatus::Dispatched(WORKERS[worker].to_owned());
                }
            }
            Op::Finish {
                instance,
                pick,
                worker,
                success,
            } => {
                let m = model.entry(instance).or_default();
                if m.tasks.is_empty() {
                    continue;
                }
                let id = pick as u64 % m.tasks.len() as u64;
                let w = WORKERS[worker];
                let result = format!("r{step}");
                let got = ts
                    .mark_finished(instance, id, w, success, result.clone(), MAX_RETRIES)
                    .unwrap();
                assert_eq!(got, model_finish(m, id, w, success, result));
            }
            Op::FinishMany { instance, reports } => {
                let m = model.entry(instance).or_default();
                let n = m.tasks.len() as u64;
                let reports: Vec<TaskReport> = reports
                    .into_iter()
                    .enumerate()
                    .map(|(i, (pick, worker, success))| TaskReport {
                        // One id past the end: an unknown task, Stale in a batch.
                        task_id: pick as u64 % (n + 1),
                        worker: WORKERS[worker].to_owned(),
                        dispatch: None,
                        success,
                        result: format!("r{step}.{i}"),
                    })
                    .collect();
                let got = ts
                    .mark_finished_many(instance, reports.clone(), MAX_RETRIES)
                    .unwrap();
                let expected: Vec<Finish> = reports
                    .into_iter()
                    .map(|r| {
                        if r.task_id == n {
                            Finish::Stale
                        } else {
                            model_finish(m, r.task_id, &r.worker, r.success, r.result)
                        }
                    })
                    .collect();
                assert_eq!(got, expected);
            }
            Op::Requeue { instance, worker } => {
                let m = model.entry(instance).or_default();
                let w = WORKERS[worker];
                let mut ids: Vec<u64> = m
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.status == MStatus::Dispatched(w.to_owned()))
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort();
                let n = ts.requeue_worker(instance, w).unwrap();
                assert_eq!(n, ids.len() as u64);
                for id in ids {
                    m.enqueue(id);
                }
            }
            Op::Reopen => {
                if dir.is_some() {
                    drop(ts);
                    ts = TaskStore::new(open());
                }
            }
        }
        check(&ts, &model);
    }
    let mut instances = ts.instances().unwrap();
    instances.sort();
    let expected: Vec<u64> = model
        .iter()
        .filter(|(_, m)| !m.tasks.is_empty())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(instances, expected);
    for id in expected {
        ts.delete_instance(id).unwrap();
        assert_eq!(ts.counts(id).unwrap(), TaskCounts::default());
    }
    assert!(ts.store().tables().is_empty(), "{:?}", ts.store().tables());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn memory_store_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn log_store_agrees_with_model_across_reopens(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, Some(dir.path()));
    }
}

/// Retried tasks queue behind the ones already waiting; the dispatched one reports stale
/// after a requeue; results come in task order, paged.
#[test]
fn retry_queues_at_the_tail_and_stale_reports_change_nothing() {
    let ts = TaskStore::new(Arc::new(MemoryStore::new()));
    ts.map(7, None, "ROOT", vec![vec![]]).unwrap();
    ts.map(7, Some(0), "s", vec![vec![1], vec![2]]).unwrap();
    let first = ts.next_pending(7, 1).unwrap();
    ts.mark_dispatched(7, &[first[0].task_id], "a").unwrap();
    assert_eq!(
        ts.mark_finished(7, 0, "a", false, "boom".into(), 3)
            .unwrap(),
        Finish::Retry { retries: 1 }
    );
    let order: Vec<u64> = ts
        .next_pending(7, 10)
        .unwrap()
        .iter()
        .map(|r| r.task_id)
        .collect();
    assert_eq!(order, vec![1, 2, 0]);
    let r = ts.get(7, 0).unwrap().unwrap();
    assert_eq!(r.avoid_worker.as_deref(), Some("a"));
    ts.mark_dispatched(7, &[1], "b").unwrap();
    assert_eq!(ts.requeue_worker(7, "b").unwrap(), 1);
    assert_eq!(
        ts.mark_finished(7, 1, "b", true, "late".into(), 3).unwrap(),
        Finish::Stale
    );
    assert!(matches!(
        ts.mark_dispatched(7, &[2, 2], "b"),
        Err(TaskStoreError::NotPending { .. })
    ));
    assert_eq!(ts.counts(7).unwrap().pending, 3);
}

#[test]
fn oversized_content_is_refused_and_results_are_capped() {
    let ts = TaskStore::new(Arc::new(MemoryStore::new()));
    assert!(matches!(
        ts.map(1, None, "ROOT", vec![vec![0; MAX_CONTENT_LEN + 1]]),
        Err(TaskStoreError::ContentTooLarge { .. })
    ));
    ts.map(1, None, "ROOT", vec![vec![0; MAX_CONTENT_LEN]])
        .unwrap();
    ts.mark_dispatched(1, &[0], "w").unwrap();
    ts.mark_finished(1, 0, "w", true, "x".repeat(1 << 20), 0)
        .unwrap();
    let r = ts.results(1).next().unwrap().unwrap();
    assert!(r.result.len() <= ferrojob::mapreduce::MAX_RESULT_LEN);
}

#[test]
fn a_map_past_the_task_limit_is_refused_whole_and_other_instances_go_on() {
    let ts = TaskStore::new(Arc::new(MemoryStore::new())).with_max_tasks_per_instance(10);
    ts.map(1, None, "ROOT", vec![vec![]]).unwrap();
    ts.map(1, Some(0), "s", vec![vec![]; 6]).unwrap();
    // 7 held: 4 more would make 11.
    let err = ts.map(1, Some(0), "s", vec![vec![]; 4]).unwrap_err();
    assert!(
        matches!(
            err,
            TaskStoreError::TooManyTasks {
                instance_id: 1,
                max: 10,
                held: 7,
                asked: 4
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("at most 10 tasks"), "{err}");
    // Nothing of the refused call was stored; up to the limit still maps.
    assert_eq!(ts.counts(1).unwrap().total, 7);
    assert_eq!(ts.map(1, Some(0), "s", vec![vec![]; 3]).unwrap(), 7..10);
    assert!(ts.map(1, Some(0), "s", vec![vec![]]).is_err());
    // The limit is per instance.
    ts.map(2, None, "ROOT", vec![vec![]]).unwrap();
    ts.map(2, Some(0), "s", vec![vec![]; 9]).unwrap();
    assert_eq!(ts.counts(2).unwrap().total, 10);
}

#[test]
fn results_page_through_many_tasks_with_bounded_buffer() {
    let ts = TaskStore::new(Arc::new(MemoryStore::new()));
    ts.map(3, None, "ROOT", vec![vec![]]).unwrap();
    ts.map(
        3,
        Some(0),
        "s",
        (0..2500u32).map(|i| i.to_be_bytes().to_vec()).collect(),
    )
    .unwrap();
    loop {
        let page = ts.next_pending(3, 700).unwrap();
        if page.is_empty() {
            break;
        }
        let ids: Vec<u64> = page.iter().map(|r| r.task_id).collect();
        ts.mark_dispatched(3, &ids, "w").unwrap();
        for id in ids {
            ts.mark_finished(3, id, "w", true, id.to_string(), 0)
                .unwrap();
        }
    }
    let mut results = ts.results(3);
    let mut expect = 0u64;
    while let Some(r) = results.next() {
        assert!(results.buffered() < 1000);
        let r = r.unwrap();
        assert_eq!(r.task_id, expect);
        assert_eq!(r.result, expect.to_string());
        expect += 1;
    }
    assert_eq!(expect, 2501);
    ts.delete_instance(3).unwrap();
    assert!(ts.store().tables().is_empty());
}

#[test]
fn corrupt_bytes_are_typed_errors() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let ts = TaskStore::new(store.clone());
    ts.map(5, None, "ROOT", vec![b"root".to_vec()]).unwrap();
    ts.map(5, Some(0), "s", vec![b"a".to_vec()]).unwrap();
    let key: Vec<u8> = [5u64.to_be_bytes(), 1u64.to_be_bytes()].concat();
    let good = store.get(TABLE_TASKS, &key).unwrap().unwrap();

    let mut variants: Vec<Vec<u8>> = vec![vec![], vec![9], vec![1, 2, 3]];
    let mut flipped = good.clone();
    flipped[0] = 2;
    variants.push(flipped);
    for cut in [1, good.len() / 2, good.len() - 1] {
        variants.push(good[..cut].to_vec());
    }
    for i in 1..good.len() {
        let mut v = good.clone();
        v[i] ^= 0xff;
        variants.push(v);
    }
    // Another task's (valid) record stored under this key.
    let other = store
        .get(
            TABLE_TASKS,
            &[5u64.to_be_bytes(), 0u64.to_be_bytes()].concat(),
        )
        .unwrap()
        .unwrap();
    variants.push(other);
    let mut typed = 0;
    for bad in variants {
        store.put(TABLE_TASKS, &key, &bad).unwrap();
        // Never a panic; whatever decodes must be self-consistent.
        match ts.get(5, 1) {
            Err(TaskStoreError::Corrupt { table, .. }) => {
                assert_eq!(table, TABLE_TASKS);
                typed += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(r) => {
                let r = r.unwrap();
                assert_eq!((r.instance_id, r.task_id), (5, 1));
            }
        }
        let _ = ts.next_pending(5, 10);
        let _ = ts.results(5).collect::<Vec<_>>();
    }
    assert!(typed >= 5);

    store.put(TABLE_TASKS, &key, &[]).unwrap();
    assert!(matches!(
        ts.results(5).find(|r| r.is_err()),
        Some(Err(TaskStoreError::Corrupt { .. }))
    ));
    assert!(matches!(
        ts.next_pending(5, 10),
        Err(TaskStoreError::Corrupt { .. })
    ));
    store.put(TABLE_TASKS, &key, &good).unwrap();

    store
        .put(TABLE_META, &5u64.to_be_bytes(), b"garbage")
        .unwrap();
    assert!(matches!(ts.counts(5), Err(TaskStoreError::Corrupt { .. })));
    store
        .put(
            TABLE_PENDING,
            &[5u64.to_be_bytes(), 99u64.to_be_bytes()].concat(),
            b"x",
        )
        .unwrap();
    assert!(matches!(
        ts.next_pending(5, 10),
        Err(TaskStoreError::Corrupt { .. })
    ));
}
