//! `TaskTrackerCore` driven by an in-process simulation of ProcessorTrackers: the `sum_mr`
//! shape (root maps N subtasks, each returns its index, reduce sums), a worker dying mid-way,
//! retries, coordinator-only mode, timeouts, resume, and bounded memory at 1,000,000 tasks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ferrojob::mapreduce::{
    Action, Finish, MapKind, TaskRecord, TaskReport, TaskStore, TaskStoreError, TaskTrackerCore,
    TrackerConfig, ROOT_TASK_NAME,
};
use ferrojob_store::MemoryStore;

/// One final report, as the TaskTracker feeds a `ReportTaskStatuses` with one outcome.
fn report(
    core: &mut TaskTrackerCore,
    task_id: u64,
    worker: &str,
    success: bool,
    result: String,
) -> Result<Finish, TaskStoreError> {
    let finishes = core.on_task_reports(vec![TaskReport {
        task_id,
        worker: worker.to_owned(),
        dispatch: None,
        success,
        result,
    }])?;
    Ok(finishes.into_iter().next().unwrap_or(Finish::Stale))
}

const OWN: &str = "127.0.0.1:9000";
const W: [&str; 3] = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"];

/// xorshift64*, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn store() -> TaskStore {
    TaskStore::new(Arc::new(MemoryStore::new()))
}

fn root_content(tasks: u64, batch: u64) -> Vec<u8> {
    [tasks.to_be_bytes(), batch.to_be_bytes()].concat()
}

fn u64_of(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Runs one task the way `sum_mr` would: the root maps `tasks` subtasks in batches, each
/// subtask returns its index. `fail` decides whether a subtask attempt fails.
fn run_task(
    core: &mut TaskTrackerCore,
    task: &TaskRecord,
    fail: &mut dyn FnMut(u64) -> bool,
) -> (bool, String) {
    if task.name == ROOT_TASK_NAME {
        let (n, b) = (u64_of(&task.content, 0), u64_of(&task.content, 8));
        let mut start = 0;
        while start < n {
            let end = (start + b).min(n);
            let contents = (start..end).map(|i| i.to_be_bytes().to_vec()).collect();
            core.map(task.task_id, "sum", contents).unwrap();
            start = end;
        }
        (true, "mapped".into())
    } else {
        let index = u64_of(&task.content, 0);
        if fail(index) {
            (false, format!("index {index} failed"))
        } else {
            (true, index.to_string())
        }
    }
}

/// Streams the results the way reduce does: the sum of every succeeded subtask's result.
fn reduce_sum(core: &TaskTrackerCore) -> u64 {
    let mut sum = 0u64;
    for r in core.store().results(core.instance()) {
        let r = r.unwrap();
        if r.parent.is_some() && r.success {
            sum += r.result.parse::<u64>().unwrap();
        }
    }
    sum
}

struct Sim {
    core: TaskTrackerCore,
    queues: BTreeMap<String, VecDeque<TaskRecord>>,
    succeeded: Vec<u32>,
    now: u64,
    rng: Rng,
}

impl Sim {
    fn new(core: TaskTrackerCore, workers: &[(&str, u32)], seed: u64) -> Sim {
        let mut sim = Sim {
            core,
            queues: BTreeMap::new(),
            succeeded: Vec::new(),
            now: 0,
            rng: Rng(seed),
        };
        for (w, cap) in workers {
            sim.core.set_worker(w, *cap, 0);
            sim.queues.insert((*w).to_owned(), VecDeque::new());
        }
        sim
    }

    fn dispatch(&mut self) {
        for d in self.core.poll_dispatch(self.now).unwrap() {
            for t in &d.tasks {
                assert!(
                    matches!(&t.status, ferrojob::mapreduce::TaskState::Dispatched { worker, .. } if *worker == d.worker)
                );
            }
            let held = d.tasks.len();
            let q = self
                .queues
                .get_mut(&d.worker)
                .expect("dispatch to a known worker");
            q.extend(d.tasks);
            assert!(held <= 1000);
        }
    }

    /// One worker runs the head of its queue and reports. Returns false if no queue has work.
    fn step(&mut self, fail: &mut dyn FnMut(u64) -> bool) -> bool {
        let busy: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(w, _)| w.clone())
            .collect();
        if busy.is_empty() {
            return false;
        }
        let w = busy[self.rng.below(busy.len() as u64) as usize].clone();
        let task = self.queues.get_mut(&w).unwrap().pop_front().unwrap();
        let (ok, result) = run_task(&mut self.core, &task, fail);
        let finish = report(&mut self.core, task.task_id, &w, ok, result).unwrap();
        if finish == Finish::Succeeded {
            let i = task.task_id as usize;
            if self.succeeded.len() <= i {
                self.succeeded.resize(i + 1, 0);
            }
            self.succeeded[i] += 1;
        }
        self.now += 1;
        if self.rng.below(50) == 0 {
            for (w, q) in &self.queues {
                self.core.on_worker_status(w, q.len() as u32, self.now);
            }
        }
        true
    }
}

#[test]
fn sum_over_three_workers_with_one_dying_is_exact_and_exactly_once() {
    const N: u64 = 20_000;
    let mut config = TrackerConfig::new(OWN, MapKind::MapReduce);
    config.dispatch_page = 500;
    let core = TaskTrackerCore::new(store(), 42, config, root_content(N, 1000)).unwrap();
    let mut sim = Sim::new(core, &[(W[0], 64), (W[1], 16), (W[2], 200)], 7);
    let mut no_fail = |_| false;
    let mut reports = 0u64;
    let mut lost: VecDeque<TaskRecord> = VecDeque::new();
    loop {
        sim.dispatch();
        if !sim.step(&mut no_fail) {
            if sim.core.is_done() {
                break;
            }
            continue;
        }
        reports += 1;
        if reports == N / 3 {
            // W[2] dies with its queue: those tasks were dispatched and never reported.
            lost = sim.queues.remove(W[2]).unwrap();
            assert!(!lost.is_empty());
            let requeued = sim.core.on_worker_dead(W[2]).unwrap();
            assert_eq!(requeued, lost.len() as u64);
            assert!(!sim.core.workers().any(|w| w == W[2]));
        }
        if reports == N / 2 {
            // A late report from the dead worker changes nothing.
            let t = lost.pop_front().unwrap();
            let f = report(&mut sim.core, t.task_id, W[2], true, "late".into()).unwrap();
            assert_eq!(f, Finish::Stale);
        }
    }
    assert_eq!(sim.core.poll_action(), Some(Action::Reduce));
    assert_eq!(sim.core.poll_action(), None);
    assert!(sim.core.poll_dispatch(sim.now).unwrap().is_empty());
    let sum = reduce_sum(&sim.core);
    assert_eq!(sum, N * (N - 1) / 2);
    sim.core.on_reduce_finished(true, sum.to_string());
    assert_eq!(
        sim.core.poll_action(),
        Some(Action::Complete {
            success: true,
            result: sum.to_string()
        })
    );
    assert_eq!(sim.succeeded.len() as u64, N + 1);
    assert!(
        sim.succeeded.iter().all(|&n| n == 1),
        "every task succeeds exactly once"
    );
    assert_eq!(sim.core.progress().unwrap(), (N + 1, N + 1, 0));
    assert!(sim.core.peak_held() <= 500);
}

#[test]
fn exhausted_retries_fail_tasks_and_retries_move_to_another_worker() {
    const N: u64 = 1000;
    let mut config = TrackerConfig::new(OWN, MapKind::Map);
    config.task_retries = 2;
    let core = TaskTrackerCore::new(store(), 1, config, root_content(N, 100)).unwrap();
    let mut sim = Sim::new(core, &[(W[0], 8), (W[1], 8)], 99);
    // Multiples of 10 always fail; multiples of 7 (not 10) fail on their first attempt only.
    let mut attempts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut fail = |i: u64| {
        let a = attempts.entry(i).or_default();
        *a += 1;
        i.is_multiple_of(10) || (i.is_multiple_of(7) && *a == 1)
    };
    let mut retried_elsewhere = 0;
    loop {
        for d in sim.core.poll_dispatch(sim.now).unwrap() {
            for t in &d.tasks {
                if let Some(avoid) = &t.avoid_worker {
                    if *avoid != d.worker {
                        retried_elsewhere += 1;
                    }
                }
            }
            sim.queues.get_mut(&d.worker).unwrap().extend(d.tasks);
        }
        if !sim.step(&mut fail) {
            break;
        }
    }
    assert!(sim.core.is_done());
    let failed = N.div_ceil(10);
    let (total, succeeded, f) = sim.core.progress().unwrap();
    assert_eq!((total, succeeded, f), (N + 1, N + 1 - failed, failed));
    assert!(retried_elsewhere > 0);
    match sim.core.poll_action() {
        Some(Action::Complete { success, result }) => {
            assert!(!success);
            assert_eq!(
                result,
                format!(
                    "total:{},succeeded:{},failed:{failed}",
                    N + 1,
                    N + 1 - failed
                )
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    for r in sim.core.store().results(1) {
        let r = r.unwrap();
        if !r.success {
            let rec = sim.core.store().get(1, r.task_id).unwrap().unwrap();
            assert_eq!(rec.retries, 2);
            assert!(matches!(
                rec.status,
                ferrojob::mapreduce::TaskState::Failed { attempts: 3, .. }
            ));
        }
    }
}

#[test]
fn retry_prefers_another_worker_only_when_one_has_room() {
    let mut config = TrackerConfig::new(OWN, MapKind::Map);
    config.task_retries = 1;
    let mut core = TaskTrackerCore::new(store(), 2, config, vec![]).unwrap();
    core.set_worker(W[0], 1, 0);
    core.set_worker(W[1], 1, 0);
    let d = core.poll_dispatch(0).unwrap();
    assert_eq!(d.len(), 1);
    let first = d[0].worker.clone();
    assert_eq!(
        report(&mut core, 0, &first, false, "x".into()).unwrap(),
        Finish::Retry { retries: 1 }
    );
    let d = core.poll_dispatch(1).unwrap();
    assert_ne!(d[0].worker, first);
    // Only the failed-on worker has room: it gets the retry rather than waiting.
    let mut config = TrackerConfig::new(OWN, MapKind::Map);
    config.task_retries = 1;
    let mut core = TaskTrackerCore::new(store(), 3, config, vec![]).unwrap();
    core.set_worker(W[0], 1, 0);
    core.poll_dispatch(0).unwrap();
    report(&mut core, 0, W[0], false, "x".into()).unwrap();
    let d = core.poll_dispatch(1).unwrap();
    assert_eq!(d[0].worker, W[0]);
    assert_eq!(d[0].tasks[0].retries, 1);
}

#[test]
fn coordinator_only_never_gives_the_tracker_tasks() {
    const N: u64 = 500;
    let mut config = TrackerConfig::new(OWN, MapKind::MapReduce);
    config.coordinator_only = true;
    let mut core = TaskTrackerCore::new(store(), 3, config, root_content(N, 50)).unwrap();
    assert!(!core.set_worker(OWN, 100, 0));
    assert!(
        core.poll_dispatch(0).unwrap().is_empty(),
        "no candidate but the tracker"
    );
    let mut sim = Sim::new(core, &[(W[0], 10), (W[1], 10)], 3);
    assert!(!sim.core.set_worker(OWN, 100, 0));
    loop {
        for d in sim.core.poll_dispatch(sim.now).unwrap() {
            assert_ne!(d.worker, OWN);
            sim.queues.get_mut(&d.worker).unwrap().extend(d.tasks);
        }
        if !sim.step(&mut |_| false) {
            break;
        }
    }
    assert_eq!(sim.core.poll_action(), Some(Action::Reduce));
    assert_eq!(reduce_sum(&sim.core), N * (N - 1) / 2);

    // Not coordinator-only: the tracker's own address is an ordinary candidate.
    let mut core =
        TaskTrackerCore::new(store(), 4, TrackerConfig::new(OWN, MapKind::Map), vec![]).unwrap();
    assert!(core.set_worker(OWN, 1, 0));
    assert_eq!(core.poll_dispatch(0).unwrap()[0].worker, OWN);
}

#[test]
fn back_pressure_and_silent_workers_time_out() {
    let mut config = TrackerConfig::new(OWN, MapKind::Map);
    config.worker_timeout_ms = Some(1000);
    let mut core = TaskTrackerCore::new(store(), 5, config, vec![]).unwrap();
    core.set_worker(W[0], 3, 0);
    core.set_worker(W[1], 3, 0);
    let root = core.poll_dispatch(0).unwrap();
    let root_worker = root[0].worker.clone();
    core.map(
        0,
        "s",
        (0..20u64).map(|i| i.to_be_bytes().to_vec()).collect(),
    )
    .unwrap();
    // Capacity 3 each, the root holds one slot: 2 + 3 more.
    let d = core.poll_dispatch(10).unwrap();
    let sent: usize = d.iter().map(|d| d.tasks.len()).sum();
    assert_eq!(sent, 5);
    assert!(
        core.poll_dispatch(20).unwrap().is_empty(),
        "all slots taken"
    );
    // A worker that says it still holds 3 tasks gets nothing even after a report.
    let other = if root_worker == W[0] { W[1] } else { W[0] };
    let t = d.iter().find(|d| d.worker == other).unwrap().tasks[0].task_id;
    core.on_worker_status(other, 3, 30);
    report(&mut core, t, other, true, "1".into()).unwrap();
    assert!(core.poll_dispatch(40).unwrap().is_empty());
    core.on_worker_status(other, 2, 50);
    assert_eq!(core.poll_dispatch(60).unwrap()[0].tasks.len(), 1);
    // The root's worker goes silent: after the timeout its tasks (root included) go to `other`.
    core.on_worker_status(other, 0, 1500);
    let d = core.poll_dispatch(1500).unwrap();
    assert!(core.workers().all(|w| w == other));
    assert!(d.iter().all(|d| d.worker == other));
    assert_eq!(core.counts().unwrap().running, 3);
    assert!(!core.is_done());
}

#[test]
fn a_new_core_resumes_the_stored_tree() {
    let ts = store();
    let mut core = TaskTrackerCore::new(
        ts.clone(),
        6,
        TrackerConfig::new(OWN, MapKind::MapReduce),
        vec![],
    )
    .unwrap();
    core.set_worker(W[0], 10, 0);
    core.poll_dispatch(0).unwrap();
    core.map(0, "s", vec![vec![1], vec![2]]).unwrap();
    drop(core);
    let mut core = TaskTrackerCore::new(
        ts.clone(),
        6,
        TrackerConfig::new(OWN, MapKind::MapReduce),
        vec![],
    )
    .unwrap();
    assert_eq!(core.progress().unwrap(), (3, 0, 0));
    // The previous life's dispatches are found in the store: declare that worker dead.
    assert_eq!(
        core.store().dispatched_workers(6).unwrap(),
        vec![W[0].to_owned()]
    );
    assert_eq!(core.on_worker_dead(W[0]).unwrap(), 1);
    assert!(core.store().dispatched_workers(6).unwrap().is_empty());
    core.set_worker(W[1], 10, 0);
    let d = core.poll_dispatch(0).unwrap();
    assert_eq!(d[0].tasks.len(), 3);
    for t in &d[0].tasks {
        report(&mut core, t.task_id, W[1], true, "0".into()).unwrap();
    }
    assert_eq!(core.poll_action(), Some(Action::Reduce));
    // Resuming a finished MAP_REDUCE instance asks for reduce again at once.
    let mut again =
        TaskTrackerCore::new(ts, 6, TrackerConfig::new(OWN, MapKind::MapReduce), vec![]).unwrap();
    assert!(again.is_done());
    assert_eq!(again.poll_action(), Some(Action::Reduce));
}

/// 1,000,000 subtasks: the core never holds more than one page of records, and the sum comes
/// out exact from the streamed results. Slow in a debug build: run with `--release
/// -- --ignored`. `million_tasks_bounded` below runs the same at 100,000 by default.
#[test]
#[ignore = "1M tasks: run in release"]
fn million_tasks_bounded_memory() {
    bounded(1_000_000, store());
}

/// The same over a `LogStore` with `Durability::Sync` in a temp dir (every batch fsynced).
#[test]
#[ignore = "1M tasks on disk: run in release"]
fn million_tasks_bounded_memory_log_store() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        ferrojob_store::LogStore::open(dir.path(), ferrojob_store::LogOptions::default()).unwrap();
    bounded(1_000_000, TaskStore::new(Arc::new(log)));
}

#[test]
fn hundred_thousand_tasks_bounded_memory() {
    bounded(100_000, store());
}

fn bounded(n: u64, ts: TaskStore) {
    let mut config = TrackerConfig::new(OWN, MapKind::MapReduce);
    config.dispatch_page = 1000;
    let mut core = TaskTrackerCore::new(ts, 9, config, root_content(n, 10_000)).unwrap();
    core.set_worker(W[0], 5000, 0);
    core.set_worker(W[1], 5000, 0);
    let root = core.poll_dispatch(0).unwrap();
    let (ok, result) = run_task(&mut core, &root[0].tasks[0], &mut |_| false);
    assert_eq!(core.counts().unwrap().pending, n);
    report(&mut core, 0, &root[0].worker, ok, result).unwrap();
    let mut now = 1;
    while !core.is_done() {
        let batch = core.poll_dispatch(now).unwrap();
        let held: usize = batch.iter().map(|d| d.tasks.len()).sum();
        assert!(held <= 1000 && held > 0, "held {held}");
        // Each worker's reports arrive as one batch (one store commit).
        for d in batch {
            let reports: Vec<TaskReport> = d
                .tasks
                .iter()
                .map(|t| TaskReport {
                    task_id: t.task_id,
                    worker: d.worker.clone(),
                    dispatch: None,
                    success: true,
                    result: u64_of(&t.content, 0).to_string(),
                })
                .collect();
            let finishes = core.on_task_reports(reports).unwrap();
            assert!(finishes.iter().all(|f| *f == Finish::Succeeded));
        }
        now += 1;
    }
    assert!(core.peak_held() <= 1000);
    assert_eq!(core.poll_action(), Some(Action::Reduce));
    assert_eq!(reduce_sum(&core), n * (n - 1) / 2);
    assert_eq!(core.progress().unwrap(), (n + 1, n + 1, 0));
}

/// Many seeds: random capacities, random transient failures (retried), a random worker dying
/// at a random point and coming back later: the sum stays exact, every task succeeds once.
#[test]
fn random_schedules_keep_the_sum_exact() {
    for seed in 1..=24u64 {
        const N: u64 = 2000;
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut config = TrackerConfig::new(OWN, MapKind::MapReduce);
        config.task_retries = 3;
        config.dispatch_page = 1 + rng.below(300) as usize;
        let core = TaskTrackerCore::new(store(), seed, config, root_content(N, 1 + rng.below(500)))
            .unwrap();
        let caps: Vec<(&str, u32)> = W.iter().map(|w| (*w, 1 + rng.below(100) as u32)).collect();
        let mut sim = Sim::new(core, &caps, seed);
        let victim = W[rng.below(3) as usize];
        let kill_at = rng.below(N);
        let back_at = kill_at + rng.below(N);
        let mut fail_rng = Rng(seed + 1);
        // Transient: an attempt fails with probability 1/8, at most twice per index (fewer
        // than the 3 retries), so every task ends up succeeding.
        let mut failures: BTreeMap<u64, u32> = BTreeMap::new();
        let mut fail = |i: u64| {
            let f = failures.entry(i).or_default();
            if *f < 2 && fail_rng.below(8) == 0 {
                *f += 1;
                true
            } else {
                false
            }
        };
        let mut steps = 0u64;
        loop {
            sim.dispatch();
            if !sim.step(&mut fail) {
                break;
            }
            steps += 1;
            if steps == kill_at {
                sim.queues.get_mut(victim).unwrap().clear();
                sim.core.on_worker_dead(victim).unwrap();
            }
            if steps == back_at {
                let cap = caps.iter().find(|(w, _)| *w == victim).unwrap().1;
                sim.core.set_worker(victim, cap, sim.now);
            }
        }
        assert!(sim.core.is_done(), "seed {seed}");
        assert_eq!(sim.core.poll_action(), Some(Action::Reduce));
        assert_eq!(reduce_sum(&sim.core), N * (N - 1) / 2, "seed {seed}");
        assert!(sim.succeeded.iter().all(|&n| n == 1), "seed {seed}");
        assert_eq!(
            sim.core.progress().unwrap(),
            (N + 1, N + 1, 0),
            "seed {seed}"
        );
    }
}

#[test]
fn root_only_map_completes_and_a_failed_root_fails_the_instance() {
    let mut core =
        TaskTrackerCore::new(store(), 10, TrackerConfig::new(OWN, MapKind::Map), vec![]).unwrap();
    core.set_worker(W[0], 1, 0);
    assert!(core.poll_dispatch(0).unwrap().len() == 1);
    assert!(!core.is_done());
    report(&mut core, 0, W[0], true, "ok".into()).unwrap();
    assert_eq!(
        core.poll_action(),
        Some(Action::Complete {
            success: true,
            result: "total:1,succeeded:1,failed:0".into()
        })
    );
    // A report after completion is stale and queues nothing.
    assert_eq!(
        report(&mut core, 0, W[0], false, "late".into()).unwrap(),
        Finish::Stale
    );
    assert_eq!(core.poll_action(), None);
    // Mapping from the finished root is refused.
    assert!(core.map(0, "s", vec![vec![1]]).is_err());

    let mut core =
        TaskTrackerCore::new(store(), 11, TrackerConfig::new(OWN, MapKind::Map), vec![]).unwrap();
    core.set_worker(W[0], 1, 0);
    core.poll_dispatch(0).unwrap();
    assert_eq!(
        report(&mut core, 0, W[0], false, "boom".into()).unwrap(),
        Finish::Failed
    );
    assert!(matches!(
        core.poll_action(),
        Some(Action::Complete { success: false, .. })
    ));
    // A report on a task the instance never had changes nothing.
    assert_eq!(
        report(&mut core, 99, W[0], true, String::new()).unwrap(),
        Finish::Stale
    );
}
