//! MAP_REDUCE instances in the world. A worker's map run drives the real
//! [`TaskTrackerCore`] on an in-memory task store: the root task maps [`CHILDREN`] children,
//! peer workers run them (each fails one time in ten, retried twice), a peer that crashes
//! loses what it held (the tracker learns it as the transport would tell it, and requeues),
//! and reduce sums the children's results. A run that succeeds has exactly one result per
//! child in its reduce, so its result is [`EXPECTED_RESULT`] whatever the faults did.

use std::sync::Arc;

use ferrojob_store::MemoryStore;

use crate::mapreduce::{
    Action, MapKind, TaskReport, TaskStore, TaskTrackerCore, TrackerConfig, ROOT_TASK_NAME,
};

use super::*;

/// Children the root task maps.
const CHILDREN: u64 = 10;
/// Peer workers a tracker sends tasks to.
const PEERS: usize = 3;
/// Tasks a peer holds at once.
const PEER_CAPACITY: u32 = 4;
/// What reduce returns when every child succeeded once: the sum of 0..CHILDREN.
pub(super) const EXPECTED_RESULT: &str = "45";

/// One worker's map run: its TaskTracker.
pub(super) struct MrRun {
    worker: usize,
    life: u64,
    run: wcore::RunId,
    instance: u64,
    tracker: TaskTrackerCore,
}

impl World {
    /// Worker `i` starts map run `run` of `instance`: its tracker, with peers to send to.
    pub(super) fn mr_start(&mut self, i: usize, run: wcore::RunId, instance: u64) {
        let Some(w) = self.workers.get(i) else {
            return;
        };
        let mut config = TrackerConfig::new(w.address.clone(), MapKind::MapReduce);
        config.coordinator_only = true;
        config.task_retries = 2;
        config.worker_timeout_ms = Some(10_000);
        let store = TaskStore::new(Arc::new(MemoryStore::new()));
        let tracker = match TaskTrackerCore::new(store, instance, config, b"root".to_vec()) {
            Ok(t) => t,
            Err(e) => {
                self.violation(format!("instance {instance}: task tracker: {e}"));
                return;
            }
        };
        let key = self.next_mr;
        self.next_mr += 1;
        let life = w.life;
        self.mr_runs.insert(
            key,
            MrRun {
                worker: i,
                life,
                run,
                instance,
                tracker,
            },
        );
        self.mr_add_peers(key);
        self.mr_pump(key);
        self.at(self.now + 1000, Event::MrTick(key));
    }

    /// Tops the tracker's peers up to [`PEERS`] live workers other than its own.
    fn mr_add_peers(&mut self, key: u64) {
        let now = u64::try_from(self.now).unwrap_or(0);
        let n = self.workers.len();
        let Some(mr) = self.mr_runs.get_mut(&key) else {
            return;
        };
        let have = mr.tracker.workers().count();
        for _ in have..PEERS {
            // A few draws: a small world may not have enough live workers.
            for _ in 0..4 {
                let p = self.rng.gen_range(0..n.max(1));
                let Some(w) = self.workers.get(p).filter(|w| w.alive && p != mr.worker) else {
                    continue;
                };
                if mr.tracker.set_worker(&w.address, PEER_CAPACITY, now) {
                    break;
                }
            }
        }
    }

    /// Sends what the tracker dispatches, and carries out its reduce and completion.
    fn mr_pump(&mut self, key: u64) {
        let now = u64::try_from(self.now).unwrap_or(0);
        let Some(mr) = self.mr_runs.get_mut(&key) else {
            return;
        };
        let dispatches = match mr.tracker.poll_dispatch(now) {
            Ok(d) => d,
            Err(e) => {
                let what = format!("instance {}: dispatching tasks: {e}", mr.instance);
                self.violation(what);
                return;
            }
        };
        for d in dispatches {
            let Some(peer) = self.worker_index(&d.worker) else {
                continue;
            };
            let peer_life = self.workers[peer].life;
            for t in d.tasks {
                let duration = self.rng.gen_range(5..300) + self.latency();
                let success = self.rng.gen_ratio(9, 10);
                let result = if t.name == ROOT_TASK_NAME {
                    String::new()
                } else {
                    String::from_utf8_lossy(&t.content).into_owned()
                };
                self.at(
                    self.now + duration,
                    Event::TaskDone {
                        mr: key,
                        peer,
                        peer_life,
                        task: t.task_id,
                        dispatch: t.dispatches,
                        root: t.name == ROOT_TASK_NAME,
                        success,
                        result,
                    },
                );
            }
        }
        loop {
            let Some(mr) = self.mr_runs.get_mut(&key) else {
                return;
            };
            match mr.tracker.poll_action() {
                Some(Action::Reduce) => {
                    let (ok, result) = reduce(&mr.tracker, mr.instance);
                    mr.tracker.on_reduce_finished(ok, result);
                }
                Some(Action::Complete { success, result }) => {
                    let Some(mr) = self.mr_runs.remove(&key) else {
                        return;
                    };
                    let Some(w) = self.workers.get_mut(mr.worker) else {
                        return;
                    };
                    if !w.alive || w.life != mr.life {
                        return;
                    }
                    let result = if success {
                        ProcessResult::ok(result)
                    } else {
                        ProcessResult::fail(result)
                    };
                    w.core.handle(
                        self.now,
                        wcore::Input::RunFinished {
                            run: mr.run,
                            result,
                        },
                    );
                    self.checker.run_ended(mr.worker, mr.run);
                    self.drain_worker(mr.worker);
                    return;
                }
                None => return,
            }
        }
    }

    /// A peer finished a task (if it is still the process that received it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mr_task_done(
        &mut self,
        key: u64,
        peer: usize,
        peer_life: u64,
        task: u64,
        dispatch: u32,
        root: bool,
        success: bool,
        result: String,
    ) {
        let now = u64::try_from(self.now).unwrap_or(0);
        let Some(w) = self
            .workers
            .get(peer)
            .filter(|w| w.alive && w.life == peer_life)
        else {
            return;
        };
        let address = w.address.clone();
        let Some(mr) = self.mr_runs.get_mut(&key) else {
            return;
        };
        if root && success {
            // The root maps its children before it reports, as a processor does.
            let children = (0..CHILDREN).map(|k| k.to_string().into_bytes()).collect();
            if let Err(e) = mr.tracker.map(task, "child", children) {
                let what = format!("instance {}: mapping children: {e}", mr.instance);
                self.violation(what);
                return;
            }
        }
        mr.tracker.on_worker_status(&address, 0, now);
        let report = TaskReport {
            task_id: task,
            worker: address,
            dispatch: Some(dispatch),
            success,
            result,
        };
        if let Err(e) = mr.tracker.on_task_reports(vec![report]) {
            let what = format!("instance {}: task report: {e}", mr.instance);
            self.violation(what);
            return;
        }
        self.mr_pump(key);
    }

    /// Live peers say they are alive; lost ones are replaced; the tracker's timeouts run.
    pub(super) fn mr_tick(&mut self, key: u64) {
        let now = u64::try_from(self.now).unwrap_or(0);
        let Some(mr) = self.mr_runs.get(&key) else {
            return;
        };
        let alive: Vec<String> = mr
            .tracker
            .workers()
            .filter(|p| {
                self.worker_index(p)
                    .and_then(|i| self.workers.get(i))
                    .is_some_and(|w| w.alive)
            })
            .map(str::to_owned)
            .collect();
        if let Some(mr) = self.mr_runs.get_mut(&key) {
            for p in alive {
                mr.tracker.on_worker_status(&p, 0, now);
            }
        }
        self.mr_add_peers(key);
        self.mr_pump(key);
        if self.mr_runs.contains_key(&key) {
            self.at(self.now + 1000, Event::MrTick(key));
        }
    }

    /// Worker `i`'s process died: its own trackers die with it, and the trackers it served
    /// learn it from the transport.
    pub(super) fn mr_worker_crashed(&mut self, i: usize) {
        self.mr_runs.retain(|_, mr| mr.worker != i);
        let Some(address) = self.workers.get(i).map(|w| w.address.clone()) else {
            return;
        };
        let keys: Vec<u64> = self.mr_runs.keys().copied().collect();
        for key in keys {
            let Some(mr) = self.mr_runs.get_mut(&key) else {
                continue;
            };
            if mr.tracker.workers().any(|w| w == address) {
                if let Err(e) = mr.tracker.on_worker_dead(&address) {
                    let what = format!("instance {}: requeueing tasks: {e}", mr.instance);
                    self.violation(what);
                }
                self.mr_pump(key);
            }
        }
    }

    /// Worker `i` cancelled `instance` (stopped, timed out): its tracker goes.
    pub(super) fn mr_cancelled(&mut self, i: usize, instance: u64) {
        self.mr_runs
            .retain(|_, mr| !(mr.worker == i && mr.instance == instance));
    }
}

/// Reduce: the sum of the children's results, if every task (the root too) succeeded.
fn reduce(tracker: &TaskTrackerCore, instance: u64) -> (bool, String) {
    let mut sum = 0u64;
    for r in tracker.store().results(instance) {
        let r = match r {
            Ok(r) => r,
            Err(e) => return (false, format!("reading results: {e}")),
        };
        if !r.success {
            return (false, format!("task {} failed: {}", r.task_id, r.result));
        }
        if r.parent.is_none() {
            continue;
        }
        match r.result.parse::<u64>() {
            Ok(v) => sum += v,
            Err(_) => {
                return (
                    false,
                    format!("task {}: bad result {:?}", r.task_id, r.result),
                )
            }
        }
    }
    (true, sum.to_string())
}
