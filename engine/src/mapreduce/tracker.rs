//! [`TaskTrackerCore`]: the sans-IO scheduling core of a MAP/MAP_REDUCE instance's TaskTracker.
//!
//! It owns no socket, spawns nothing and reads no clock: time comes in as `now_ms` arguments.
//! Its only effects are [`TaskStore`] calls, which block until committed: drive it from a
//! blocking context.
//! Its state is the instance's [`TaskStore`] (durable) plus a small table of candidate workers
//! (derived: capacity, tasks in flight, last sign of life).
//!
//! # Call order
//!
//! ```text
//!   new(store, instance, config, root_content)      root task 0 created (or resumed)
//!   set_worker(addr, capacity, now)*                 candidate workers from the ScheduleJob
//!   loop {
//!     map(parent, name, contents)                    a running task's MapTasks (ack after)
//!     on_worker_status(addr, remaining, now)         a ReportTaskStatuses' remaining count
//!     on_task_reports([TaskReport])                  its final outcomes, in one store batch
//!     on_worker_dead(addr)                           the transport lost the worker
//!     poll_dispatch(now) -> [Dispatch]               send each worker its records (StartTasks)
//!     poll_action() -> Action                        Reduce (run it, then on_reduce_finished)
//!   }                                                or Complete: report the instance
//! ```
//!
//! # Rules
//!
//! - Back-pressure: a worker gets at most `capacity − max(in flight, reported remaining)` new
//!   tasks per poll, where "in flight" counts tasks dispatched to it and not reported yet and
//!   "reported remaining" is the `remaining_tasks` of its last `ReportTaskStatuses`. A
//!   poll reads at most `dispatch_page` records from the store, so the core holds at most
//!   that many records at once ([`TaskTrackerCore::peak_held`]).
//! - Coordinator only: the tracker's own address is never a candidate.
//! - A failed task is retried up to `task_retries` times; the retry goes to another worker
//!   with free capacity if there is one, else to the same one.
//! - A dead worker (reported by `on_worker_dead`, or silent for `worker_timeout_ms`) is
//!   dropped and its tasks go back to pending (not counted as retries).
//! - Done: every task is final. Because the store refuses `map` from a final task, no task can
//!   appear after that. MAP then completes with success iff no task failed; MAP_REDUCE emits
//!   [`Action::Reduce`] once, and completes with the reduce's outcome.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use super::error::TaskStoreError;
use super::task_store::{Finish, TaskCounts, TaskRecord, TaskReport, TaskStore};

/// Name of the root task, as PowerJob calls it.
pub const ROOT_TASK_NAME: &str = "ROOT_TASK";

/// Which processor kind the instance runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// MAP: no reduce.
    Map,
    /// MAP_REDUCE: reduce over every result once all tasks are final.
    MapReduce,
}

/// The tracker's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// This worker's address (the TaskTracker's).
    pub own_address: String,
    /// True: the own address never receives tasks.
    pub coordinator_only: bool,
    /// Retries of a failed task (0: a failure is final).
    pub task_retries: u32,
    /// Maximum tasks read from the store per `poll_dispatch`.
    pub dispatch_page: usize,
    /// A worker with no sign of life for this long is dead; `None`: only `on_worker_dead`.
    pub worker_timeout_ms: Option<u64>,
    /// MAP or MAP_REDUCE.
    pub kind: MapKind,
}

impl TrackerConfig {
    /// Defaults: not coordinator-only, no retries, pages of 1000, no timeout.
    pub fn new(own_address: impl Into<String>, kind: MapKind) -> Self {
        TrackerConfig {
            own_address: own_address.into(),
            coordinator_only: false,
            task_retries: 0,
            dispatch_page: 1000,
            worker_timeout_ms: None,
            kind,
        }
    }
}

/// Tasks to send to one worker (in `StartTasks` batches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// The worker's address.
    pub worker: String,
    /// The tasks, already marked dispatched to it in the store.
    pub tasks: Vec<TaskRecord>,
}

/// What the tracker's driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run reduce over [`TaskStore::results`], then call
    /// [`TaskTrackerCore::on_reduce_finished`].
    Reduce,
    /// The instance is finished: report it to the server.
    Complete {
        /// Whether it succeeded.
        success: bool,
        /// Its result.
        result: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Reducing,
    Done,
}

#[derive(Clone, Debug)]
struct WorkerSlot {
    capacity: u32,
    in_flight: u32,
    reported_remaining: u32,
    last_seen_ms: u64,
}

impl WorkerSlot {
    fn free(&self) -> u32 {
        self.capacity
            .saturating_sub(self.in_flight.max(self.reported_remaining))
    }
}

/// The scheduling core of one instance's TaskTracker. See the module doc for the call order
/// and the rules.
#[derive(Debug)]
pub struct TaskTrackerCore {
    store: TaskStore,
    instance: u64,
    config: TrackerConfig,
    workers: BTreeMap<String, WorkerSlot>,
    phase: Phase,
    actions: VecDeque<Action>,
    peak_held: usize,
}

impl TaskTrackerCore {
    /// The core for `instance`: creates the root task (id 0, [`ROOT_TASK_NAME`], content
    /// `root_content`) if the instance has no task yet, else resumes the stored tree.
    pub fn new(
        store: TaskStore,
        instance: u64,
        config: TrackerConfig,
        root_content: Vec<u8>,
    ) -> Result<Self, TaskStoreError> {
        if store.counts(instance)?.total == 0 {
            store.map(instance, None, ROOT_TASK_NAME, vec![root_content])?;
        }
        let mut core = TaskTrackerCore {
            store,
            instance,
            config,
            workers: BTreeMap::new(),
            phase: Phase::Running,
            actions: VecDeque::new(),
            peak_held: 0,
        };
        core.check_done()?;
        Ok(core)
    }

    /// The instance id.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The task store.
    pub fn store(&self) -> &TaskStore {
        &self.store
    }

    /// Adds a candidate worker, or changes its capacity (tasks it may hold at once). Returns
    /// false (and ignores it) for the own address in coordinator-only mode.
    pub fn set_worker(&mut self, address: &str, capacity: u32, now_ms: u64) -> bool {
        if self.config.coordinator_only && address == self.config.own_address {
            return false;
        }
        let slot = self
            .workers
            .entry(address.to_owned())
            .or_insert(WorkerSlot {
                capacity,
                in_flight: 0,
                reported_remaining: 0,
                last_seen_ms: now_ms,
            });
        slot.capacity = capacity;
        slot.last_seen_ms = slot.last_seen_ms.max(now_ms);
        true
    }

    /// Candidate workers, by address.
    pub fn workers(&self) -> impl Iterator<Item = &str> {
        self.workers.keys().map(String::as_str)
    }

    /// A `ReportTaskStatuses` (with or without outcomes): the worker is alive and holds
    /// `remaining` tasks.
    /// Ignored for a worker that is not a candidate.
    pub fn on_worker_status(&mut self, address: &str, remaining: u32, now_ms: u64) {
        if let Some(slot) = self.workers.get_mut(address) {
            slot.reported_remaining = remaining;
            slot.last_seen_ms = slot.last_seen_ms.max(now_ms);
        }
    }

    /// The worker is gone: it stops being a candidate and its tasks go back to pending.
    /// Returns how many were requeued.
    pub fn on_worker_dead(&mut self, address: &str) -> Result<u64, TaskStoreError> {
        self.workers.remove(address);
        let n = self.store.requeue_worker(self.instance, address)?;
        tracing::info!(
            instance = self.instance,
            worker = address,
            requeued = n,
            "mapreduce: worker dead, tasks requeued"
        );
        Ok(n)
    }

    /// Appends subtasks mapped by the running task `parent` (see [`TaskStore::map`]). The
    /// driver acknowledges the `MapTasks` only after this returns, and so before `parent`
    /// can report: that is what makes completion detection sound.
    pub fn map(
        &mut self,
        parent: u64,
        name: &str,
        contents: Vec<Vec<u8>>,
    ) -> Result<Range<u64>, TaskStoreError> {
        self.store.map(self.instance, Some(parent), name, contents)
    }

    /// Decides which pending tasks go to which worker, marks them dispatched and returns them.
    /// Expires silent workers first (requeueing their tasks). Empty once all tasks are final.
    pub fn poll_dispatch(&mut self, now_ms: u64) -> Result<Vec<Dispatch>, TaskStoreError> {
        if self.phase != Phase::Running {
            return Ok(Vec::new());
        }
        if let Some(timeout) = self.config.worker_timeout_ms {
            let dead: Vec<String> = self
                .workers
                .iter()
                .filter(|(_, s)| now_ms.saturating_sub(s.last_seen_ms) > timeout)
                .map(|(a, _)| a.clone())
                .collect();
            for address in dead {
                self.on_worker_dead(&address)?;
            }
        }
        let mut free: Vec<(String, u32)> = self
            .workers
            .iter()
            .map(|(a, s)| (a.clone(), s.free()))
            .filter(|(_, f)| *f > 0)
            .collect();
        let total_free: u64 = free.iter().map(|(_, f)| u64::from(*f)).sum();
        let limit = usize::try_from(total_free)
            .unwrap_or(usize::MAX)
            .min(self.config.dispatch_page);
        let tasks = self.store.next_pending(self.instance, limit)?;
        self.peak_held = self.peak_held.max(tasks.len());
        let mut by_worker: BTreeMap<String, Vec<TaskRecord>> = BTreeMap::new();
        for task in tasks {
            let avoid = task.avoid_worker.as_deref();
            // The worker with the most free slots, preferring one the task did not fail on.
            let pick = free
                .iter_mut()
                .filter(|(_, f)| *f > 0)
                .max_by_key(|(a, f)| (Some(a.as_str()) != avoid, *f));
            let Some((address, slots)) = pick else {
                break;
            };
            *slots -= 1;
            by_worker.entry(address.clone()).or_default().push(task);
        }
        let mut out = Vec::with_capacity(by_worker.len());
        for (worker, records) in by_worker {
            // The records were just read and nothing changed since: no second read.
            let records = self
                .store
                .dispatch_records(self.instance, records, &worker)?;
            if let Some(slot) = self.workers.get_mut(&worker) {
                let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
                slot.in_flight = slot.in_flight.saturating_add(n);
            }
            out.push(Dispatch {
                worker,
                tasks: records,
            });
        }
        Ok(out)
    }

    /// Final reports from workers, in one store batch (see [`TaskStore::mark_finished_many`]):
    /// one commit for a whole `ReportTaskStatuses`, which keeps up with a fast ProcessorTracker
    /// when the store fsyncs every commit. A failure is retried while the task has retries
    /// left; a report that does not match the task's current dispatch, or on a task the
    /// instance never had, is [`Finish::Stale`] and changes nothing.
    pub fn on_task_reports(
        &mut self,
        reports: Vec<TaskReport>,
    ) -> Result<Vec<Finish>, TaskStoreError> {
        let workers: Vec<String> = reports.iter().map(|r| r.worker.clone()).collect();
        let finishes =
            self.store
                .mark_finished_many(self.instance, reports, self.config.task_retries)?;
        for (worker, finish) in workers.iter().zip(&finishes) {
            if *finish != Finish::Stale {
                if let Some(slot) = self.workers.get_mut(worker) {
                    slot.in_flight = slot.in_flight.saturating_sub(1);
                }
            }
        }
        self.check_done()?;
        Ok(finishes)
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The reduce asked by [`Action::Reduce`] finished; queues [`Action::Complete`]. Ignored
    /// outside the reduce phase.
    pub fn on_reduce_finished(&mut self, success: bool, result: String) {
        if self.phase == Phase::Reducing {
            self.phase = Phase::Done;
            self.actions.push_back(Action::Complete { success, result });
        }
    }

    /// True once every task is final (no task can be mapped any more).
    pub fn is_done(&self) -> bool {
        self.phase != Phase::Running
    }

    /// `(total, succeeded, failed)` task counts, for progress reports to the server.
    pub fn progress(&self) -> Result<(u64, u64, u64), TaskStoreError> {
        let c = self.store.counts(self.instance)?;
        Ok((c.total, c.succeeded, c.failed))
    }

    /// All counters of the instance.
    pub fn counts(&self) -> Result<TaskCounts, TaskStoreError> {
        self.store.counts(self.instance)
    }

    /// The most task records the core has held at once (one poll's page): bounded by
    /// `dispatch_page`, whatever the number of tasks.
    pub fn peak_held(&self) -> usize {
        self.peak_held
    }

    fn check_done(&mut self) -> Result<(), TaskStoreError> {
        if self.phase != Phase::Running {
            return Ok(());
        }
        let counts = self.store.counts(self.instance)?;
        if !counts.all_final() {
            return Ok(());
        }
        match self.config.kind {
            MapKind::MapReduce => {
                self.phase = Phase::Reducing;
                self.actions.push_back(Action::Reduce);
            }
            MapKind::Map => {
                self.phase = Phase::Done;
                self.actions.push_back(Action::Complete {
                    success: counts.failed == 0,
                    result: format!(
                        "total:{},succeeded:{},failed:{}",
                        counts.total, counts.succeeded, counts.failed
                    ),
                });
            }
        }
        Ok(())
    }
}
