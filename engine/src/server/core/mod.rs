//! The server core: a sans-IO state machine that makes every scheduling decision of the
//! server — triggers, dispatch, reports, retries, checks, worker liveness, restart recovery,
//! workflows — as a function of its state, its inputs and the `now` it is given.
//!
//! It owns plain maps (jobs, the non-final instances, workflows and their unfinished
//! instances, the workers connected and lost) and the timer wheel; it reads no clock, spawns
//! nothing, awaits nothing and touches no socket. Its own state takes no lock; the two shared
//! structures it calls — the worker registry and the repository, which the API's listings
//! also read — synchronise inside. The runtime ([`super::runtime`]) holds it behind one mutex
//! and drives it:
//!
//! ```text
//!   timer task ──► Core::on_timers(now)          conn task ──► Core::on_report / on_heartbeat
//!   API ─────────► Core::run_job / replace / …   commit acknowledged ──► Core::resume(then)
//!        every step leaves Effects: Await(commit, then) · Send(app, worker, msg) ·
//!        Query(app, worker, ids) · Prune(job) · WakeAlarms; the wheel's next expiration
//! ```
//!
//! Writes: the core builds each batch through the [`Repo`] and submits it (a non-blocking
//! hand-off to the store; submitting inside the core is what keeps an instance's writes in
//! transition order), and hands the commit out as an [`Effect::Await`] with what to do once it
//! is acknowledged ([`Then`]). Nothing that depends on a write happens before its
//! acknowledgement comes back as an input.
//!
//! Files: `fire.rs` triggers, the receive and run checks, worker liveness; `dispatch.rs`
//! claim → hand-over; `report.rs` reports, the retry policy, final transitions; `write.rs`
//! writes and their follow-ups; `recover.rs` restart recovery and reconciliation;
//! `workers.rs` connections; `alarms.rs` alarm evaluation; `calendars.rs` the calendars'
//! excluded dates; `stats.rs` per-app counts over the last day; `workflow/` workflows;
//! `partitions.rs` which apps it acts for; `state.rs` what it holds per job and instance.
//!
//! Acting: a single server's core acts for every app, and its messages carry epoch 0. A
//! server of a cluster ([`Core::start_partitioned`]) acts only for the apps of the partitions
//! it is told it holds: [`Core::on_partition_loaded`] takes a partition's state through
//! the restart-recovery path (filtered to its apps: jobs, delayed runs, queued and running
//! instances, workflows; running instances are reconciled with their workers as after a
//! restart), [`Core::on_partition_lost`] drops it from memory in the same step without
//! writing anything. Commands, reports, heartbeats and handshakes of an app the core does
//! not act for are refused or dropped (`partitions::NotOwner`, `AppSecrets::serves`). Every
//! `ScheduleJob` and `StopInstance` carries the epoch of its app's partition, and workers
//! drop those of an older epoch. Jobs and workflows loaded by a later holding start at a
//! higher schedule generation, so triggers an earlier holding armed never fire twice.
//!
//! Invariants (`debug_assert!`ed where they are cheap):
//!
//! - Every non-final instance is in `active`; every transition goes through
//!   [`InstanceRecord`]'s lifecycle methods and is submitted to the store in the same step,
//!   so the store sees an instance's writes in transition order. A final status never
//!   changes to another final status.
//! - A ScheduleJob is sent only after the WAITING_WORKER_RECEIVE write is acknowledged; an
//!   API answer (create, run) only after its write is acknowledged. RUNNING is kept in memory
//!   only: after a restart the worker is asked (`QueryInstanceStatus`).
//! - A scheduled fire and the job's next trigger are one atomic batch (`Repo::fire_if`); a
//!   job has at most one armed trigger of its current generation.
//! - A worker is known by its app and the address it announced: a connection, a report or a
//!   log line of one app never reaches another app's instances.
//! - The core holds state (jobs, instances, workflows) only of apps it acts for, and sends
//!   nothing for any other app.
//!
//! Policies:
//!
//! - No eligible worker: 5 attempts 500 ms apart, then FAILED naming what excluded each
//!   worker. Attempts during the restart grace do not count.
//! - A failed attempt is retried after the job's `retry_backoff` (by default 1 s, 2 s, 4 s …
//!   at most 30 s; jitter derived from the instance id and attempt), preferring another
//!   worker, while the job's `instance_retries` allow.
//! - A scheduled trigger (a job's or a workflow's, a misfire's catch-up included) whose date
//!   one of its calendars excludes is skipped: no instance, counted, the next trigger armed.
//!   Runs asked for through the API are not affected.
//! - A run that finds the job's `max_instances` running follows its overlap policy: FAILED
//!   (FAIL), not created or CANCELED (SKIP, counted), held WAITING_DISPATCH in the job's FIFO
//!   queue of at most [`MAX_QUEUED_RUNS`] until a slot frees (QUEUE), or the oldest running
//!   instance stopped first (REPLACE). A queued instance is durable: WAITING_DISPATCH on disk,
//!   queued again (in id order) when a restart recovers it.
//! - No confirmation within `worker_receive_timeout_ms`: the worker that had it is told to
//!   stop, and the instance is dispatched again without using a retry.
//! - No final report within the job's `timeout_ms` + 30 s: `StopInstance` and the retry policy.
//! - A dead worker (3 missed heartbeats, or a connection not back within that window): its
//!   instances go to the retry policy at once.
//! - After a restart, instances on workers that have not reconnected within
//!   `restart_grace_ms` go to the retry policy; a worker that reconnects is asked about every
//!   instance it holds.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub(crate) mod alarms;
pub(crate) mod calendars;
pub(crate) mod commands;
pub(crate) mod delete;
pub(crate) mod dispatch;
pub(crate) mod fire;
pub(crate) mod partitions;
pub(crate) mod recover;
pub(crate) mod report;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod workers;
pub(crate) mod workflow;
pub(crate) mod write;

#[cfg(test)]
mod calendar_tests;
#[cfg(test)]
mod partitions_tests;
#[cfg(test)]
mod retry_overlap_tests;
#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferrojob_transport::message::{ScheduleJob, StopInstance};

use crate::dispatch::{SelectState, WorkerRegistry};
use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::policy::OverlapPolicy;
use crate::server::{AppRecord, Commit, InstanceRecord, Repo, RepoError};
use crate::time_expression::EpochMs;
use crate::wheel::{Expired, TimerWheel};

use super::runtime::metrics::Metrics;

pub(crate) use dispatch::Claim;
pub(crate) use state::{HeldView, InstState, JobDef, JobState};
pub(crate) use write::{AfterCreate, Follow};

/// Most runs of one job waiting in its QUEUE overlap policy's queue; a run beyond it is
/// FAILED.
pub(crate) const MAX_QUEUED_RUNS: usize = 256;

/// The core's settings (the numbers of [`ServerConfig`](super::ServerConfig)).
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) worker_receive_timeout_ms: u64,
    pub(crate) keep_finished_runs: usize,
    pub(crate) keep_finished_workflow_runs: usize,
    pub(crate) retention_ms: u64,
    pub(crate) misfire_threshold_ms: u64,
    pub(crate) restart_grace_ms: u64,
    pub(crate) min_period_ms: u64,
}

impl From<&super::ServerConfig> for CoreConfig {
    fn from(c: &super::ServerConfig) -> Self {
        CoreConfig {
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            worker_receive_timeout_ms: c.worker_receive_timeout_ms,
            keep_finished_runs: c.keep_finished_runs,
            keep_finished_workflow_runs: c.keep_finished_workflow_runs,
            retention_ms: c.retention_ms,
            misfire_threshold_ms: c.misfire_threshold_ms,
            restart_grace_ms: c.restart_grace_ms,
            min_period_ms: c.min_period_ms,
        }
    }
}

/// A worker as the server knows it: its app and the address it announced.
pub(crate) type WorkerKey = (AppId, String);

/// What the timer wheel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEv {
    /// A job's trigger `due` (ignored unless `gen` is still the job's generation).
    Job { job: JobId, gen: u64, due: EpochMs },
    /// Try to dispatch a WAITING_DISPATCH instance (delayed run due, backoff over, retry).
    Dispatch(InstanceId),
    /// Requeue the instance if it is still WAITING_WORKER_RECEIVE since `since`.
    ReceiveCheck { id: InstanceId, since: EpochMs },
    /// Fail/retry the instance if it is still on the attempt dispatched at `since`.
    RunCheck { id: InstanceId, since: EpochMs },
    /// Worker liveness check (every heartbeat interval).
    Tick,
    /// The restart grace period is over: unreconciled instances go to the retry policy.
    GraceEnd,
    /// A round of the retention sweep (instances finished longer ago than `retention_ms`).
    Retention,
    /// A workflow's trigger `due` (ignored unless `gen` is still the workflow's generation).
    Workflow {
        wf: WorkflowId,
        gen: u64,
        due: EpochMs,
    },
    /// Start a delayed workflow instance.
    WfStart(WorkflowInstanceId),
}

/// A message for a worker.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// An attempt's ScheduleJob: when its connection turns out closed, the attempt is
    /// requeued ([`Core::on_send_closed`]).
    Schedule {
        msg: Box<ScheduleJob>,
        /// When the instance became ready, clock µs (dispatch latency).
        ready_us: i64,
        /// The attempt's dispatch time (its identity).
        since: EpochMs,
    },
    /// Stop an instance.
    Stop(StopInstance),
}

/// What the core asks of the world.
// Effects live for one step only: boxing the large write variant would
// cost an allocation per write on the dispatch path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Effect {
    /// Await a write, then resume the core with what follows it.
    Await(Awaited),
    /// Send a message to `app`'s worker `worker` (dropped when it is not connected).
    Send {
        app: AppId,
        worker: String,
        msg: Outgoing,
    },
    /// Ask a reconnected worker about the instances it held before a restart; the answers
    /// come back through [`Core::on_query_answer`].
    Query {
        app: AppId,
        worker: String,
        ids: Vec<InstanceId>,
    },
    /// Delete the job's finished runs beyond `keep_finished_runs` (in the background).
    Prune(JobId),
    /// Delete the workflow's finished instances beyond `keep_finished_workflow_runs` (in the
    /// background).
    PruneWorkflow(WorkflowId),
    /// Start a round of the retention sweep for instances finished before `cutoff`.
    Sweep { cutoff: EpochMs },
    /// Alarms were submitted to the outbox: wake the delivery task.
    WakeAlarms,
}

/// A submitted write and what follows its acknowledgement.
#[derive(Debug)]
pub(crate) enum Awaited {
    /// A transition's write.
    Write(Commit<()>, Then),
    /// A created instance (a fire, a workflow-less run): the record with its id.
    Created(Commit<InstanceRecord>, AfterCreate),
    /// A write nothing waits for (counted when it fails).
    Detached(Commit<()>),
}

/// What follows an acknowledged write.
#[derive(Debug)]
pub(crate) enum Then {
    /// An instance's follow-up.
    Follow(Follow),
    /// The WAITING_WORKER_RECEIVE write of a claimed instance: hand it over.
    HandOver { id: InstanceId, claim: Claim },
    /// A workflow transition: start what it created.
    Workflow(Box<workflow::Pending>),
    /// A FIXED_DELAY job's next trigger: arm it.
    Arm { at: EpochMs, ev: TimerEv },
}

/// The core's state (see the module docs).
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: CoreConfig,
    pub(crate) repo: Arc<Repo>,
    pub(crate) registry: Arc<WorkerRegistry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) apps: HashMap<String, AppRecord>,
    pub(crate) app_names: HashMap<AppId, String>,
    pub(crate) jobs: HashMap<JobId, JobState>,
    pub(crate) active: HashMap<InstanceId, InstState>,
    pub(crate) workflows: HashMap<WorkflowId, workflow::WfState>,
    /// Workflow instances owned by the core (unfinished ones, and ones an API call changes).
    pub(crate) wf_active: HashMap<WorkflowInstanceId, workflow::WfInst>,
    /// Non-final job instances that run a workflow node.
    pub(crate) node_runs: HashMap<InstanceId, workflow::NodeRun>,
    /// Instances whose WAITING_WORKER_RECEIVE write is under way: once it is acknowledged
    /// their `ScheduleJob` goes to the worker (at most one per held instance).
    pub(crate) handing_over: HashSet<InstanceId>,
    /// Per app: runs created already dispatched ([`Core::dispatch_new`]: written
    /// WAITING_WORKER_RECEIVE on the worker they claimed) whose creation is neither
    /// acknowledged nor failed yet. Their `ScheduleJob` too goes out only once the write is
    /// acknowledged, so a stop waits for them as for `handing_over`.
    pub(crate) creating_dispatched: HashMap<AppId, u32>,
    /// Finished job instances whose deletion is being written (`delete.rs`; at most
    /// [`delete::MAX_DELETING`] with `wf_deleting`).
    pub(crate) deleting: HashSet<InstanceId>,
    /// Finished workflow instances whose deletion is being written.
    pub(crate) wf_deleting: HashSet<WorkflowInstanceId>,
    /// Non-final backfill runs, with when each was created: a backfill run stands for a past
    /// trigger time, so its start is late counted from its creation (memory only: after a
    /// restart its trigger time counts again). Removed at its final transition; at most one
    /// entry per held instance.
    pub(crate) backfill_created: HashMap<InstanceId, EpochMs>,
    /// Open worker connections, by worker, with their generation.
    pub(crate) conns: HashMap<WorkerKey, u64>,
    /// Workers whose connection closed: (app name, since) — dead if not back within the
    /// window.
    pub(crate) lost: HashMap<WorkerKey, (Arc<str>, EpochMs)>,
    /// After a restart: instances believed dispatched to each worker, to reconcile.
    pub(crate) reconcile: HashMap<WorkerKey, Vec<InstanceId>>,
    /// Alarm evaluation state per job with rules.
    pub(crate) alarm_books: HashMap<JobId, crate::alarm::JobAlarms>,
    /// The apps' calendars (at most `MAX_CALENDARS_PER_APP` per app).
    pub(crate) calendars: HashMap<AppId, calendars::AppCalendars>,
    /// Per app, final instances and fire lateness over the last day (`stats.rs`).
    pub(crate) stats: stats::Stats,
    /// Armed timer events, in a wheel of millisecond ticks.
    pub(crate) wheel: TimerWheel<TimerEv>,
    /// Worker selection scratch space and rng.
    pub(crate) select: SelectState,
    pub(crate) shutting_down: bool,
    /// Whether this start found stored apps (a restart): dispatch then waits for workers to
    /// reconnect during the grace period.
    pub(crate) restarted: bool,
    /// Worker liveness time, ms: the monotonic clock ([`Clock::monotonic_us`]), so that a
    /// wall clock stepped forward never makes live workers look as if they missed their
    /// heartbeats.
    ///
    /// [`Clock::monotonic_us`]: crate::clock::Clock::monotonic_us
    pub(crate) live_ms: EpochMs,
    /// After a restart, the liveness time the grace period ends at.
    pub(crate) grace_until: EpochMs,
    /// The clock at the start of the current step, µs (latency stamps only).
    pub(crate) now_us: i64,
    /// The apps the core acts for: all of them, or those of the partitions it holds.
    pub(crate) acting: partitions::Acting,
    /// Partition loads so far: the generation recovered jobs and workflows start at is
    /// above every generation an earlier holding of theirs armed.
    pub(crate) loads: u64,
    /// Effects of the current step.
    effects: Vec<Effect>,
    expired: Vec<Expired<TimerEv>>,
}

impl Core {
    pub(crate) fn new(
        config: CoreConfig,
        repo: Arc<Repo>,
        registry: Arc<WorkerRegistry>,
        metrics: Arc<Metrics>,
        select: SelectState,
        started_ms: EpochMs,
    ) -> Core {
        Core {
            config,
            repo,
            registry,
            metrics,
            apps: HashMap::new(),
            app_names: HashMap::new(),
            jobs: HashMap::new(),
            active: HashMap::new(),
            workflows: HashMap::new(),
            wf_active: HashMap::new(),
            node_runs: HashMap::new(),
            handing_over: HashSet::new(),
            creating_dispatched: HashMap::new(),
            deleting: HashSet::new(),
            wf_deleting: HashSet::new(),
            backfill_created: HashMap::new(),
            conns: HashMap::new(),
            lost: HashMap::new(),
            reconcile: HashMap::new(),
            alarm_books: HashMap::new(),
            calendars: HashMap::new(),
            stats: stats::Stats::new(started_ms),
            wheel: TimerWheel::new(u64::try_from(started_ms).unwrap_or(0)),
            select,
            shutting_down: false,
            restarted: false,
            live_ms: i64::MIN,
            grace_until: i64::MIN,
            now_us: started_ms.saturating_mul(1000),
            acting: partitions::Acting::AllApps,
            loads: 0,
            effects: Vec::new(),
            expired: Vec::new(),
        }
    }

    /// Starts a step at wall clock `now_us` and monotonic clock `mono_us`.
    pub(crate) fn begin(&mut self, now_us: i64, mono_us: i64) {
        self.now_us = now_us;
        self.live_ms = self.live_ms.max(mono_us.div_euclid(1000));
    }

    /// The effects of the step so far (the caller carries them out in order).
    pub(crate) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub(crate) fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    pub(crate) fn emit(&mut self, e: Effect) {
        self.effects.push(e);
    }

    /// Whether retention may delete finished instance `id`, whose node link names workflow
    /// instance `wf` (`None`: a run of no workflow): the core no longer holds it, the API is
    /// not deleting it, and that workflow instance is not still going nor being deleted.
    /// The caller reads the link before taking the core's lock (on PostgreSQL a read is a
    /// round trip, and a finished run's link no longer changes).
    pub(crate) fn may_delete(&self, id: InstanceId, wf: Option<WorkflowInstanceId>) -> bool {
        if self.active.contains_key(&id)
            || self.node_runs.contains_key(&id)
            || self.deleting.contains(&id)
        {
            return false;
        }
        wf.is_none_or(|wf| !self.wf_active.contains_key(&wf) && !self.wf_deleting.contains(&wf))
    }

    /// The earliest armed timer, in clock ms.
    pub(crate) fn next_timer(&self) -> Option<u64> {
        self.wheel.next_expiration()
    }

    /// Handles every timer due at `now`.
    pub(crate) fn on_timers(&mut self, now: EpochMs) {
        let now_tick = u64::try_from(now).unwrap_or(0).max(self.wheel.now());
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.drain_expired(now_tick, &mut expired);
        for e in expired.drain(..) {
            self.on_timer(e.value, now);
        }
        self.expired = expired;
    }

    /// Arms `ev` at clock ms `at` (a time already past fires at the next step).
    pub(crate) fn arm(&mut self, at: EpochMs, ev: TimerEv) {
        let tick = u64::try_from(at).unwrap_or(0).max(self.wheel.now());
        self.wheel.insert(tick, ev);
    }

    pub(crate) fn app_name(&self, id: AppId) -> Option<String> {
        self.app_names.get(&id).cloned()
    }

    /// Registers an app (after its creation is durable, or at load).
    pub(crate) fn add_app(&mut self, app: AppRecord) {
        self.place_app(&app);
        self.app_names.insert(app.id, app.name.clone());
        self.apps.insert(app.name.clone(), app);
    }

    /// Forgets an app (after its deletion was submitted): its name resolves no more and
    /// its workers' handshakes are refused.
    pub(crate) fn remove_app(&mut self, id: AppId) {
        self.unplace_app(id);
        self.stats.remove(id);
        if let Some(name) = self.app_names.remove(&id) {
            self.apps.remove(&name);
        }
    }

    /// A live (not being deleted) job.
    pub(crate) fn live_job(&self, id: JobId) -> Option<&JobState> {
        self.jobs.get(&id).filter(|j| !j.deleted)
    }

    /// Runs `f` on instance `id` taken out of the active map (so that `f` may use the rest of
    /// the core), then puts it back; `None` when the core does not hold it.
    pub(crate) fn with_inst<R>(
        &mut self,
        id: InstanceId,
        f: impl FnOnce(&mut Core, &mut InstState) -> R,
    ) -> Option<R> {
        let mut st = self.active.remove(&id)?;
        let r = f(self, &mut st);
        self.active.insert(id, st);
        Some(r)
    }

    /// Accounts for an instance of `job` moving from `old` (None: created) to `new`: status
    /// gauges and counters, and the job's running count (max_instances).
    pub(crate) fn note(&mut self, job: JobId, old: Option<InstanceStatus>, new: InstanceStatus) {
        if old == Some(new) {
            return;
        }
        debug_assert!(
            !(old.is_some_and(|o| o.is_final()) && new.is_final()),
            "a final status changed: {old:?} -> {new:?}"
        );
        self.metrics.transition(old, new);
        let was = old.is_some_and(is_running);
        let is = is_running(new);
        let job_id = job;
        if let Some(job) = self.jobs.get(&job) {
            if is && !was {
                // Not through a claim (restart recovery): counted, whatever the limit.
                let _ = job.running.try_reserve(0);
            } else if was && !is {
                job.running.release();
                self.wake_queue(job_id);
            }
        }
    }

    /// Whether a new run of `job` is to be skipped: its overlap policy is SKIP and its
    /// `max_instances` are running.
    pub(crate) fn skips(&self, job: &JobState) -> bool {
        let max = job.def.record.max_instances;
        job.def.record.overlap_policy == OverlapPolicy::Skip
            && max != 0
            && job.running.count() >= max
    }

    /// Counts a run of `job` the SKIP overlap policy skipped.
    pub(crate) fn count_skipped(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.skipped = j.skipped.saturating_add(1);
        }
        self.metrics.count_overlap(OverlapPolicy::Skip);
    }

    /// A slot of `job` may have freed: the head of its queue (if any, and if the limit now
    /// allows) is dispatched at the next step. Queued instances no longer WAITING_DISPATCH
    /// are dropped from the queue first (one that reached a final status left it in
    /// `finalize`; one missing from `active` is the instance a step holds in hand).
    pub(crate) fn wake_queue(&mut self, job_id: JobId) {
        let active = &self.active;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        while let Some(head) = job.queue.front() {
            let moved_on = active
                .get(head)
                .is_some_and(|st| st.rec.status != InstanceStatus::WaitingDispatch);
            if !moved_on {
                break;
            }
            job.queue.pop_front();
        }
        let max = job.def.record.max_instances;
        let room = max == 0 || job.running.count() < max;
        if let (Some(&head), true) = (job.queue.front(), room) {
            let now = self.now_us.div_euclid(1000);
            self.arm(now, TimerEv::Dispatch(head));
        }
    }

    /// The first schedule generation of a job or workflow recovered by the current load:
    /// 1 at a restart, above any generation an earlier holding of its partition armed
    /// after that.
    pub(crate) fn load_gen(&self) -> u64 {
        (self.loads << 32) | 1
    }

    pub(crate) fn hb_ms(&self) -> i64 {
        i64::try_from(self.config.heartbeat_interval_ms).unwrap_or(i64::MAX)
    }

    /// Counts and logs a write the store refused.
    pub(crate) fn write_failed(&self, e: &RepoError) {
        self.metrics.store_write_failed(e);
    }
}

/// WAITING_WORKER_RECEIVE or RUNNING: counts against max_instances.
pub(crate) fn is_running(s: InstanceStatus) -> bool {
    matches!(
        s,
        InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running
    )
}
