//! The server core's behaviour: restart recovery, firing, dispatch, the retry policy, worker
//! reports, final transitions, dead workers and restart reconciliation.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrojob_transport::error::{RequestError, SendError};
use ferrojob_transport::message::{
    self as wire, ErrorCode, Message, QueryInstanceStatus, ReportInstanceStatus, ScheduleJob,
    StopInstance,
};
use ferrojob_transport::net::ConnectionHandle;

use crate::dispatch::{DispatchError, SelectState};
use crate::ids::{InstanceId, JobId};
use crate::model::{ExecuteType, InstanceStatus};
use crate::server::{
    records::truncate_marked, Commit, InstanceRecord, JobRecord, LoadedState, RepoError,
    MAX_RESULT_LEN,
};
use crate::time_expression::{EpochMs, TimeExpressionType};

use super::state::{is_running, InstState, JobDef, JobState, Shared, Slot, TimerEv};

/// Dispatch attempts that find no eligible worker before the instance is FAILED.
pub(crate) const NO_WORKER_ATTEMPTS: u32 = 5;
/// Pause between those attempts, ms (so the window is about 2 s).
pub(crate) const NO_WORKER_RETRY_MS: i64 = 500;
/// First retry backoff after a failed attempt, ms; doubles per attempt up to the cap.
pub(crate) const RETRY_BACKOFF_MS: i64 = 1000;
/// Largest retry backoff, ms.
pub(crate) const RETRY_BACKOFF_CAP_MS: i64 = 30_000;
/// Grace beyond the job's timeout before the server fails a silent run itself, ms.
pub(crate) const RUN_SAFETY_MARGIN_MS: i64 = 30_000;
/// How long a reconciliation query waits for the worker.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// Selection scratch space and rng, one per thread: selection takes no lock of ours.
    static SELECT_STATE: std::cell::RefCell<SelectState> =
        std::cell::RefCell::new(SelectState::from_entropy());
}

/// What to do once an instance's write is acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Follow {
    /// Nothing.
    Nothing,
    /// It reached a final status: drop it from memory, re-arm FIXED_DELAY, prune.
    Final {
        id: InstanceId,
        job: JobId,
        run: u64,
    },
    /// It is WAITING_DISPATCH again: dispatch it at `at` (clock ms; `None` = at once). The
    /// time is fixed when the transition is made, not when its write is acknowledged.
    Dispatch { id: InstanceId, at: Option<EpochMs> },
}

/// Model status of a wire status.
pub(crate) fn from_wire(s: &wire::InstanceStatus) -> InstanceStatus {
    match s {
        wire::InstanceStatus::WaitingDispatch => InstanceStatus::WaitingDispatch,
        wire::InstanceStatus::WaitingWorkerReceive => InstanceStatus::WaitingWorkerReceive,
        wire::InstanceStatus::Running => InstanceStatus::Running,
        wire::InstanceStatus::Failed => InstanceStatus::Failed,
        wire::InstanceStatus::Succeed => InstanceStatus::Succeed,
        wire::InstanceStatus::Canceled => InstanceStatus::Canceled,
        wire::InstanceStatus::Stopped => InstanceStatus::Stopped,
    }
}

fn wire_execute(e: ExecuteType) -> wire::ExecuteType {
    match e {
        ExecuteType::Standalone => wire::ExecuteType::Standalone,
        ExecuteType::Broadcast => wire::ExecuteType::Broadcast,
        ExecuteType::Map => wire::ExecuteType::Map,
        ExecuteType::MapReduce => wire::ExecuteType::MapReduce,
    }
}

fn wire_time(t: TimeExpressionType) -> wire::TimeExpressionType {
    match t {
        TimeExpressionType::Api => wire::TimeExpressionType::Api,
        TimeExpressionType::Cron => wire::TimeExpressionType::Cron,
        TimeExpressionType::FixedRate => wire::TimeExpressionType::FixedRate,
        TimeExpressionType::FixedDelay => wire::TimeExpressionType::FixedDelay,
        TimeExpressionType::DailyTimeInterval => wire::TimeExpressionType::DailyTimeInterval,
        TimeExpressionType::Workflow => wire::TimeExpressionType::Workflow,
    }
}

/// What follows the acknowledged creation of an API run.
#[derive(Debug)]
pub(crate) enum AfterCreate {
    /// It was written WAITING_WORKER_RECEIVE ([`Shared::dispatch_new`]): hand it over.
    Dispatched(Claim),
    /// It was written WAITING_DISPATCH: own it and dispatch it at `at` (`None` = at once).
    Dispatch { at: Option<EpochMs> },
}

/// An API run's creation, submitted: [`finish`](PendingRun::finish) awaits the write and
/// then starts the instance. If the caller goes away before the write is acknowledged (an
/// HTTP client that disconnects drops the request's future), `Drop` finishes it in a task of
/// its own, so a written instance is never left unowned (or a `max_instances` slot
/// reserved).
#[derive(Debug)]
pub(crate) struct PendingRun {
    sh: Arc<Shared>,
    inner: Option<(Commit<InstanceRecord>, AfterCreate)>,
}

impl PendingRun {
    pub(crate) fn new(sh: Arc<Shared>, commit: Commit<InstanceRecord>, then: AfterCreate) -> Self {
        PendingRun {
            sh,
            inner: Some((commit, then)),
        }
    }

    /// Awaits the write; once acknowledged the instance is started and its id returned.
    pub(crate) async fn finish(mut self) -> Result<InstanceId, RepoError> {
        let t = Instant::now();
        let result = match self.inner.as_mut() {
            Some((commit, _)) => commit.await,
            None => return Err(RepoError::not_found("pending run", 0)),
        };
        let Some((_, then)) = self.inner.take() else {
            return Err(RepoError::not_found("pending run", 0));
        };
        self.sh.metrics.store_commit.observe(t.elapsed());
        match result {
            Ok(rec) => {
                let id = rec.id;
                self.sh.after_create(rec, then);
                Ok(id)
            }
            Err(e) => {
                self.sh.store_write_failed(&e);
                self.sh.create_failed(then);
                Err(e)
            }
        }
    }
}

impl Drop for PendingRun {
    fn drop(&mut self) {
        let Some((commit, then)) = self.inner.take() else {
            return;
        };
        let sh = Arc::clone(&self.sh);
        // Without a runtime (the process is ending) there is nothing left to start.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match sh.await_commit(commit).await {
                    Ok(rec) => sh.after_create(rec, then),
                    Err(_) => sh.create_failed(then),
                }
            });
        }
    }
}

/// An instance handed to a worker before its WAITING_WORKER_RECEIVE write (see
/// `Shared::claim`): its job, the selected workers (the TaskTracker first) and the
/// TaskTracker's connection. It holds one of the job's running slots (`max_instances`):
/// [`Shared::hand_over`] keeps it, [`Shared::abandon`] gives it back.
#[derive(Debug)]
pub(crate) struct Claim {
    job: Arc<JobState>,
    def: Arc<JobDef>,
    workers: Vec<Arc<str>>,
    conn: ConnectionHandle,
    ready: Instant,
    now: EpochMs,
}

/// Why an instance cannot be handed to a worker now.
#[derive(Debug)]
enum Refusal {
    /// No eligible or connected worker: try again shortly.
    NoWorker(String),
    /// The instance cannot run (job deleted, too many instances, invalid settings): FAILED.
    Fail(String),
    /// The instance is not WAITING_DISPATCH, or the server is stopping: nothing to do.
    Nothing,
}

/// The ScheduleJob of `rec`'s current attempt (dispatched at `now` to `workers`, the
/// TaskTracker first).
fn schedule_msg(
    r: &JobRecord,
    rec: &InstanceRecord,
    workers: &[Arc<str>],
    now: EpochMs,
) -> ScheduleJob {
    ScheduleJob {
        app_id: r.app_id.0,
        job_id: r.id.0,
        instance_id: rec.id.0,
        workflow_instance_id: None,
        execute_type: wire_execute(r.execute_type),
        processor_type: wire::ProcessorType::BuiltIn,
        processor_info: r.processor.clone(),
        job_params: r.params.clone(),
        instance_params: rec.params.clone(),
        instance_timeout_ms: r.timeout_ms,
        concurrency: r.concurrency,
        task_retry_num: r.task_retries,
        time_expression_type: wire_time(r.time_expression_type),
        time_expression: r.time_expression.clone(),
        max_instance_num: r.max_instances,
        all_worker_addresses: workers.iter().map(|w| w.to_string()).collect(),
        max_worker_count: r.max_worker_count,
        log_config: wire::LogConfig {
            log_type: wire::LogType::Online,
            level: wire::LogLevel::Info,
        },
        alarm_config: wire::AlarmConfig {
            threshold: 0,
            statistic_window_s: 0,
            silence_window_s: 0,
        },
        dispatch_time_ms: now,
        report_seq_base: rec.report_seq,
        workflow_context: String::new(),
    }
}

impl Shared {
    // ----- writes -----

    /// Awaits a write, measuring it; a failure is logged and counted.
    pub(crate) async fn await_commit<T: Unpin>(&self, c: Commit<T>) -> Result<T, RepoError> {
        let t = Instant::now();
        let r = c.await;
        self.metrics.store_commit.observe(t.elapsed());
        if let Err(e) = &r {
            self.store_write_failed(e);
        }
        r
    }

    pub(crate) fn store_write_failed(&self, e: &RepoError) {
        self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        if matches!(e, RepoError::Store(_)) {
            self.store_failed.store(true, Ordering::Relaxed);
        }
        tracing::error!(error = %e, "store write failed");
    }

    /// Submits the instance's current record (under its lock, so writes keep their order).
    pub(crate) fn persist(&self, st: &mut InstState) -> Option<Commit<()>> {
        let prev = st.persisted.take();
        match self.repo.put_instance_from(&st.rec, prev) {
            Ok(c) => {
                st.persisted = Some(st.rec.status);
                Some(c)
            }
            Err(e) => {
                self.store_write_failed(&e);
                None
            }
        }
    }

    /// Submits the record and pairs the write with its follow-up; when the write could not
    /// even be submitted the follow-up is dropped (the store is failing; a restart
    /// reconciles).
    pub(crate) fn persist_follow(
        &self,
        st: &mut InstState,
        f: Follow,
    ) -> (Option<Commit<()>>, Follow) {
        match self.persist(st) {
            Some(c) => (Some(c), f),
            None => (None, Follow::Nothing),
        }
    }

    /// Awaits `writes` in a task of their own, then runs each one's follow-up.
    pub(crate) fn after_writes(self: &Arc<Self>, writes: Vec<(Option<Commit<()>>, Follow)>) {
        if writes.is_empty() {
            return;
        }
        let sh = Arc::clone(self);
        tokio::spawn(async move {
            for (commit, follow) in writes {
                if let Some(c) = commit {
                    if sh.await_commit(c).await.is_err() {
                        continue;
                    }
                }
                sh.follow(follow).await;
            }
        });
    }

    pub(crate) fn after_write(self: &Arc<Self>, commit: Option<Commit<()>>, follow: Follow) {
        self.after_writes(vec![(commit, follow)]);
    }

    pub(crate) async fn follow(self: &Arc<Self>, follow: Follow) {
        match follow {
            Follow::Nothing => {}
            Follow::Final { id, job, run } => self.finalize(id, job, run).await,
            Follow::Dispatch { id, at } => match at {
                None => Arc::clone(self).dispatch(id).await,
                Some(at) => self.arm(at, TimerEv::Dispatch(id)),
            },
        }
    }

    /// Puts a freshly created (durable) WAITING_DISPATCH instance under the core's ownership.
    pub(crate) fn admit(&self, rec: InstanceRecord) -> Slot {
        let id = rec.id;
        let job = self.job(rec.job_id);
        let status = rec.status;
        let slot: Slot = Arc::new(parking_lot::Mutex::new(InstState::new(rec)));
        self.active.insert(id, Arc::clone(&slot));
        self.note(job.as_deref(), None, status);
        slot
    }

    // ----- restart -----

    /// Rebuilds the in-memory state from the store and arms everything that was pending.
    pub(crate) fn recover(self: &Arc<Self>, loaded: LoadedState) {
        let now = self.now();
        self.restarted
            .store(!loaded.apps.is_empty(), Ordering::Release);
        for app in loaded.apps {
            self.add_app(app);
        }
        for lj in loaded.jobs {
            let Some(app) = self.app_name(lj.job.app_id) else {
                tracing::error!(job = lj.job.id.0, "job of an unknown app skipped");
                continue;
            };
            let def = match JobDef::new(lj.job) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "stored job no longer valid; not scheduled");
                    continue;
                }
            };
            let enabled = def.record.enabled;
            let state = Arc::new(JobState::new(Arc::from(app.as_str()), def));
            self.jobs.insert(state.id, Arc::clone(&state));
            if let (true, Some(t)) = (enabled, lj.trigger.next_trigger) {
                self.arm(
                    t,
                    TimerEv::Job {
                        job: state.id,
                        gen: 1,
                        due: t,
                    },
                );
            }
        }
        let delayed: std::collections::HashMap<InstanceId, EpochMs> = loaded
            .delayed
            .iter()
            .map(|d| (d.instance_id, d.due))
            .collect();
        let mut fixed_delay_busy = std::collections::HashSet::new();
        let mut writes = Vec::new();
        for rec in loaded.active {
            let id = rec.id;
            if rec.run > 0 {
                fixed_delay_busy.insert(rec.job_id);
            }
            let status = rec.status;
            let worker = rec.worker.clone();
            let slot = self.admit(rec);
            match status {
                InstanceStatus::WaitingDispatch => {
                    let at = delayed.get(&id).copied().unwrap_or(now);
                    self.arm(at, TimerEv::Dispatch(id));
                }
                _ => match worker {
                    Some(w) => self.reconcile.entry(w).or_default().push(id),
                    None => {
                        let mut st = slot.lock();
                        let job = self.job(st.rec.job_id);
                        let f = self.requeue_plain(&mut st, job.as_deref(), now);
                        writes.push(self.persist_follow(&mut st, f));
                    }
                },
            }
        }
        for job in self.jobs.iter() {
            let def = job.def();
            if def.is_fixed_delay()
                && def.record.enabled
                && !fixed_delay_busy.contains(&job.id)
                && self
                    .repo
                    .trigger(job.id)
                    .is_some_and(|t| t.next_trigger.is_none())
            {
                if let Some(next) = def.initial_next(now) {
                    match self.repo.set_next_trigger(job.id, Some(next)) {
                        Ok(c) => drop(c),
                        Err(e) => self.store_write_failed(&e),
                    }
                    self.arm(
                        next,
                        TimerEv::Job {
                            job: job.id,
                            gen: 1,
                            due: next,
                        },
                    );
                }
            }
        }
        self.after_writes(writes);
        if !self.reconcile.is_empty() {
            let grace = i64::try_from(self.config.restart_grace_ms).unwrap_or(i64::MAX);
            self.arm(now.saturating_add(grace), TimerEv::GraceEnd);
        }
        self.arm(now.saturating_add(self.hb_ms()), TimerEv::Tick);
    }

    pub(crate) fn hb_ms(&self) -> i64 {
        i64::try_from(self.config.heartbeat_interval_ms).unwrap_or(i64::MAX)
    }

    fn in_grace(&self, now: EpochMs) -> bool {
        if !self.restarted.load(Ordering::Acquire) {
            return false;
        }
        let grace = i64::try_from(self.config.restart_grace_ms).unwrap_or(i64::MAX);
        now < self.started_ms.saturating_add(grace)
    }

    // ----- timer -----

    /// Handles one expired wheel event (on the timer task: no waiting here).
    pub(crate) fn on_timer(self: &Arc<Self>, ev: TimerEv, now: EpochMs) {
        match ev {
            TimerEv::Job { job, gen, due } => self.on_job_due(job, gen, due, now),
            TimerEv::Dispatch(id) => {
                tokio::spawn(Arc::clone(self).dispatch(id));
            }
            TimerEv::ReceiveCheck { id, since } => self.on_receive_check(id, since, now),
            TimerEv::RunCheck { id, since } => self.on_run_check(id, since, now),
            TimerEv::Tick => self.on_tick(now),
            TimerEv::GraceEnd => self.on_grace_end(now),
            TimerEv::Workflow { wf, gen, due } => self.on_wf_due(wf, gen, due, now),
            TimerEv::WfStart(id) => {
                let sh = Arc::clone(self);
                tokio::spawn(async move { sh.wf_start(id).await });
            }
        }
    }

    /// A job's trigger came due: fire it (misfire policy when late) and arm the next one.
    fn on_job_due(self: &Arc<Self>, job_id: JobId, gen: u64, due: EpochMs, now: EpochMs) {
        let Some(job) = self.job(job_id) else { return };
        if job.gen.load(Ordering::Acquire) != gen || job.deleted.load(Ordering::Acquire) {
            return;
        }
        let def = job.def();
        if !def.record.enabled {
            return;
        }
        let plan = def
            .schedule()
            .plan(self.config.misfire_threshold_ms, due, now);
        let (fires, next) = (plan.fires, plan.next);
        if plan.dropped > 0 || plan.truncated {
            tracing::warn!(
                job = job_id.0,
                late_ms = now.saturating_sub(due),
                policy = %def.record.misfire,
                running = fires.len(),
                dropped = plan.dropped,
                truncated = plan.truncated,
                "misfire"
            );
        }
        for (i, at) in fires.iter().enumerate() {
            let next_for = fires.get(i + 1).copied().or(next);
            let mut rec = InstanceRecord::new(job_id, def.record.app_id, "", *at);
            // Dispatchable at once: the fire writes it already WAITING_WORKER_RECEIVE.
            let then = match self.dispatch_new(&job, &mut rec, now) {
                Some(nd) => AfterCreate::Dispatched(nd),
                None => AfterCreate::Dispatch { at: None },
            };
            // Checked under the job's trigger row: an update that bumped the generation
            // after the check at the top must not have its next trigger overwritten.
            let current = || job.gen.load(Ordering::Acquire) == gen;
            match self.repo.fire_if(rec, next_for, current) {
                Ok(None) => {
                    self.create_failed(then);
                    return;
                }
                Ok(Some(c)) => {
                    self.metrics
                        .fire_lateness
                        .observe_ms(now.saturating_sub(*at));
                    let sh = Arc::clone(self);
                    tokio::spawn(async move {
                        match sh.await_commit(c).await {
                            Ok(rec) => sh.after_create(rec, then),
                            Err(_) => sh.create_failed(then),
                        }
                    });
                }
                Err(e) => {
                    self.create_failed(then);
                    self.store_write_failed(&e);
                }
            }
        }
        if fires.is_empty() {
            let current = || job.gen.load(Ordering::Acquire) == gen;
            match self.repo.set_next_trigger_if(job_id, next, current) {
                Ok(None) => return,
                Ok(Some(c)) => {
                    let sh = Arc::clone(self);
                    tokio::spawn(async move {
                        let _ = sh.await_commit(c).await;
                    });
                }
                Err(e) => self.store_write_failed(&e),
            }
        }
        if let Some(n) = next {
            self.arm(
                n,
                TimerEv::Job {
                    job: job_id,
                    gen,
                    due: n,
                },
            );
        }
    }

    fn on_receive_check(self: &Arc<Self>, id: InstanceId, since: EpochMs, now: EpochMs) {
        let Some(slot) = self.slot(id) else { return };
        let mut st = slot.lock();
        if st.rec.status != InstanceStatus::WaitingWorkerReceive || st.rec.status_time != since {
            return;
        }
        tracing::warn!(instance = id.0, worker = ?st.rec.worker, "worker did not confirm in time; requeued");
        let worker = st.rec.worker.clone();
        let job = self.job(st.rec.job_id);
        let f = self.requeue_plain(&mut st, job.as_deref(), now);
        let (c, f) = self.persist_follow(&mut st, f);
        drop(st);
        // The worker may still have the ScheduleJob (queued, or late on the wire): tell it to
        // stop before the next attempt is dispatched, so the instance never runs twice. The
        // next ScheduleJob goes out after the requeue's write, behind this stop on the same
        // connection when the same worker is picked again.
        if let Some(w) = worker {
            self.send_stop(&w, id);
        }
        self.after_write(c, f);
    }

    fn on_run_check(self: &Arc<Self>, id: InstanceId, since: EpochMs, now: EpochMs) {
        let Some(slot) = self.slot(id) else { return };
        let mut st = slot.lock();
        if !is_running(st.rec.status) || st.rec.actual_trigger_time != Some(since) {
            return;
        }
        let worker = st.rec.worker.clone().unwrap_or_default();
        let job = self.job(st.rec.job_id);
        let timeout = job.as_ref().map_or(0, |j| j.def().record.timeout_ms);
        let reason = format!(
            "no final report from worker {worker} within timeout_ms {timeout} + 30 s (server safety net)"
        );
        let old = st.rec.status;
        let f = self.retry_policy(&mut st, job.as_deref(), &reason, old, now, true);
        let (c, f) = self.persist_follow(&mut st, f);
        drop(st);
        self.send_stop(&worker, id);
        self.after_write(c, f);
    }

    fn on_tick(self: &Arc<Self>, now: EpochMs) {
        let window = self.registry.config().liveness_window_ms();
        for (_app, addr) in self.registry.expire(now) {
            self.worker_gone(&addr, &format!("worker {addr} died (missed heartbeats)"));
        }
        let mut gone = Vec::new();
        self.lost.retain(|addr, (_app, since)| {
            if now.saturating_sub(*since) >= window && !self.conns.contains_key(addr) {
                gone.push(addr.clone());
                false
            } else {
                true
            }
        });
        for addr in gone {
            self.worker_gone(&addr, &format!("worker {addr} died (connection lost)"));
        }
        self.arm(now.saturating_add(self.hb_ms()), TimerEv::Tick);
    }

    fn on_grace_end(self: &Arc<Self>, now: EpochMs) {
        let workers: Vec<String> = self.reconcile.iter().map(|e| e.key().clone()).collect();
        let mut writes = Vec::new();
        for addr in workers {
            let Some((_, ids)) = self.reconcile.remove(&addr) else {
                continue;
            };
            let reason = format!(
                "worker {addr} did not come back within {} ms of the server restart",
                self.config.restart_grace_ms
            );
            for id in ids {
                let Some(slot) = self.slot(id) else { continue };
                let mut st = slot.lock();
                if !is_running(st.rec.status) || st.rec.worker.as_deref() != Some(addr.as_str()) {
                    continue;
                }
                let job = self.job(st.rec.job_id);
                let old = st.rec.status;
                let f = self.retry_policy(&mut st, job.as_deref(), &reason, old, now, false);
                writes.push(self.persist_follow(&mut st, f));
            }
        }
        self.after_writes(writes);
    }

    /// Every instance dispatched to `addr` goes to its retry policy at once.
    /// The non-final instances dispatched to `addr` (WAITING_WORKER_RECEIVE or RUNNING there).
    pub(crate) fn dispatched_to(&self, addr: &str) -> Vec<InstanceId> {
        let slots: Vec<Slot> = self.active.iter().map(|e| Arc::clone(e.value())).collect();
        slots
            .iter()
            .filter_map(|slot| {
                let st = slot.lock();
                (is_running(st.rec.status) && st.rec.worker.as_deref() == Some(addr))
                    .then_some(st.rec.id)
            })
            .collect()
    }

    pub(crate) fn worker_gone(self: &Arc<Self>, addr: &str, reason: &str) {
        let now = self.now();
        let slots: Vec<Slot> = self.active.iter().map(|e| Arc::clone(e.value())).collect();
        let mut writes = Vec::new();
        for slot in slots {
            let mut st = slot.lock();
            if !is_running(st.rec.status) || st.rec.worker.as_deref() != Some(addr) {
                continue;
            }
            let job = self.job(st.rec.job_id);
            let old = st.rec.status;
            let f = self.retry_policy(&mut st, job.as_deref(), reason, old, now, false);
            writes.push(self.persist_follow(&mut st, f));
        }
        if !writes.is_empty() {
            tracing::warn!(
                worker = addr,
                instances = writes.len(),
                reason,
                "worker gone; instances handed to their retry policy"
            );
        }
        self.after_writes(writes);
    }

    // ----- retry policy -----

    /// WAITING_WORKER_RECEIVE | RUNNING → WAITING_DISPATCH without consuming a retry (the
    /// worker never confirmed), dispatched again at once preferring another worker.
    pub(crate) fn requeue_plain(
        &self,
        st: &mut InstState,
        job: Option<&JobState>,
        now: EpochMs,
    ) -> Follow {
        let old = st.rec.status;
        st.avoid = st.rec.worker.clone();
        if st.rec.requeue(now).is_err() {
            return Follow::Nothing;
        }
        st.ready = Instant::now();
        self.note(job, Some(old), st.rec.status);
        Follow::Dispatch {
            id: st.rec.id,
            at: None,
        }
    }

    /// An attempt failed (`old` = the status before this operation; the record may already be
    /// FAILED by a report): requeue with `reason` when retries are left (after a backoff of
    /// 1 s, 2 s, 4 s ... capped at 30 s when `backoff`), else FAILED with `reason`.
    pub(crate) fn retry_policy(
        &self,
        st: &mut InstState,
        job: Option<&JobState>,
        reason: &str,
        old: InstanceStatus,
        now: EpochMs,
        backoff: bool,
    ) -> Follow {
        let retries = job
            .filter(|j| !j.deleted.load(Ordering::Acquire))
            .map(|j| j.def().record.instance_retries);
        let attempts = st.rec.running_times;
        let id = st.rec.id;
        if let Some(retries) = retries.filter(|r| attempts <= *r) {
            st.avoid = st.rec.worker.clone();
            let moved = if st.rec.status.is_final() {
                st.rec.retry(now)
            } else {
                st.rec.requeue(now)
            };
            if moved.is_ok() {
                st.rec.result = Some(truncate_marked(reason, MAX_RESULT_LEN));
                st.ready = Instant::now();
                self.note(job, Some(old), st.rec.status);
                let delay_ms = if backoff {
                    let shift = attempts.saturating_sub(1).min(16);
                    (RETRY_BACKOFF_MS << shift).min(RETRY_BACKOFF_CAP_MS)
                } else {
                    0
                };
                tracing::info!(
                    instance = id.0,
                    attempt = attempts,
                    retries,
                    delay_ms,
                    reason,
                    "instance retried"
                );
                let at = (delay_ms > 0).then(|| now.saturating_add(delay_ms));
                return Follow::Dispatch { id, at };
            }
        }
        if !st.rec.status.is_final() {
            let _ = st.rec.fail(reason, now);
        }
        self.note(job, Some(old), st.rec.status);
        Follow::Final {
            id,
            job: st.rec.job_id,
            run: st.rec.run,
        }
    }

    // ----- dispatch -----

    /// The one dispatch rule, for instances the core owns and new ones alike: the job must
    /// still exist, a `max_instances` slot is reserved, the TaskTracker and the workers are
    /// selected (a retried instance prefers another worker than `avoid`) and must be
    /// connected, and `rec` moves to WAITING_WORKER_RECEIVE. On a refusal nothing changed.
    fn claim(
        &self,
        job: Option<Arc<JobState>>,
        rec: &mut InstanceRecord,
        avoid: Option<&str>,
        now: EpochMs,
    ) -> Result<Claim, Refusal> {
        if self.is_shutting_down() || rec.status != InstanceStatus::WaitingDispatch {
            return Err(Refusal::Nothing);
        }
        let job = match job {
            Some(j) if !j.deleted.load(Ordering::Acquire) => j,
            _ => return Err(Refusal::Fail(format!("job {} was deleted", rec.job_id.0))),
        };
        let def = job.def();
        let max = def.record.max_instances;
        // Every dispatched instance holds a running slot (counted even without a limit, so
        // that the count is right when a limit is set later).
        if !job.running.try_reserve(max) {
            return Err(Refusal::Fail(format!(
                "too many instances: job {} allows {max} at once (max_instances)",
                job.id.0
            )));
        }
        let release = |job: &JobState| job.running.release();
        let (tracker, workers) = match self.select(&job, &def, avoid, now) {
            Ok(sel) => sel,
            Err(DispatchError::NoEligibleWorker { app, exclusions }) => {
                release(&job);
                return Err(Refusal::NoWorker(format!(
                    "no eligible worker for app {app}: {exclusions}"
                )));
            }
            Err(e) => {
                release(&job);
                return Err(Refusal::Fail(e.to_string()));
            }
        };
        let Some(conn) = self.conns.get(&*tracker).map(|c| c.handle.clone()) else {
            release(&job);
            return Err(Refusal::NoWorker(format!(
                "worker {tracker} is not connected"
            )));
        };
        if rec.dispatch(&tracker, now).is_err() {
            release(&job);
            return Err(Refusal::Nothing);
        }
        Ok(Claim {
            job,
            def,
            workers,
            conn,
            ready: Instant::now(),
            now,
        })
    }

    /// Dispatches a WAITING_DISPATCH instance the core owns: [`claim`](Shared::claim) (a
    /// refusal fails it, or retries shortly when no worker is eligible), the
    /// WAITING_WORKER_RECEIVE write, then [`hand_over`](Shared::hand_over).
    pub(crate) async fn dispatch(self: Arc<Self>, id: InstanceId) {
        let Some(slot) = self.slot(id) else { return };
        let now = self.now();
        let (commit, claim) = {
            let mut guard = slot.lock();
            // Reborrowed through the guard once, so that `rec` and `avoid` borrow apart.
            let st = &mut *guard;
            let job = self.job(st.rec.job_id);
            match self.claim(job.clone(), &mut st.rec, st.avoid.as_deref(), now) {
                Ok(claim) => {
                    st.no_worker_attempts = 0;
                    st.ready = claim.ready;
                    // The running count was taken by the claim.
                    self.metrics.transition(
                        Some(InstanceStatus::WaitingDispatch),
                        InstanceStatus::WaitingWorkerReceive,
                    );
                    (self.persist(st), claim)
                }
                Err(Refusal::Nothing) => return,
                Err(Refusal::NoWorker(why)) => {
                    if let Some(job) = job {
                        self.no_worker(st, &job, &why, now);
                    }
                    return;
                }
                Err(Refusal::Fail(reason)) => {
                    let f = self.fail_now(st, job.as_deref(), &reason, now);
                    let (c, f) = self.persist_follow(st, f);
                    drop(guard);
                    self.after_write(c, f);
                    return;
                }
            }
        };
        let Some(commit) = commit else { return };
        if self.await_commit(commit).await.is_err() {
            return;
        }
        self.hand_over(&slot, claim);
    }

    /// Arms the receive check and (with a timeout) the run-timeout safety net of the attempt
    /// dispatched at `now`.
    fn arm_checks(&self, id: InstanceId, now: EpochMs, timeout_ms: u64) {
        let receive = i64::try_from(self.config.worker_receive_timeout_ms).unwrap_or(i64::MAX);
        self.arm(
            now.saturating_add(receive),
            TimerEv::ReceiveCheck { id, since: now },
        );
        if timeout_ms > 0 {
            let t = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
            self.arm(
                now.saturating_add(t).saturating_add(RUN_SAFETY_MARGIN_MS),
                TimerEv::RunCheck { id, since: now },
            );
        }
    }

    /// Tries to dispatch a new instance (an API run or a fire) before its first write, so it
    /// is written once, already WAITING_WORKER_RECEIVE, instead of WAITING_DISPATCH and then
    /// WAITING_WORKER_RECEIVE. It is [`claim`](Shared::claim), the same rule as for owned
    /// instances: on success the caller writes `rec` and then calls
    /// [`start_dispatched`](Shared::start_dispatched) once the write is acknowledged, or
    /// [`abandon`](Shared::abandon) if it failed. `None`: nothing changed; the caller writes
    /// it WAITING_DISPATCH and [`dispatch`](Shared::dispatch)es it, which handles every
    /// refusal (FAILED, no-worker retries).
    pub(crate) fn dispatch_new(
        &self,
        job: &Arc<JobState>,
        rec: &mut InstanceRecord,
        now: EpochMs,
    ) -> Option<Claim> {
        self.claim(Some(Arc::clone(job)), rec, None, now).ok()
    }

    /// The write of a [`dispatch_new`](Shared::dispatch_new)ed instance is acknowledged:
    /// the core owns it (WAITING_WORKER_RECEIVE) and hands it over.
    pub(crate) fn start_dispatched(self: &Arc<Self>, rec: InstanceRecord, claim: Claim) {
        let id = rec.id;
        let status = rec.status;
        let mut st = InstState::new(rec);
        st.ready = claim.ready;
        let slot: Slot = Arc::new(parking_lot::Mutex::new(st));
        self.active.insert(id, Arc::clone(&slot));
        // The running count was taken by the claim.
        self.metrics.transition(None, status);
        self.hand_over(&slot, claim);
    }

    /// The WAITING_WORKER_RECEIVE write of a claimed instance is acknowledged: its checks
    /// are armed and ScheduleJob goes to the TaskTracker's connection (in a task of its own
    /// when the connection's queue is full, unless the attempt was superseded meanwhile). A
    /// connection that closed while the write was in flight (its worker may have been
    /// declared gone before the instance was owned) requeues it at once rather than at the
    /// receive check.
    fn hand_over(self: &Arc<Self>, slot: &Slot, claim: Claim) {
        let current = |st: &InstState| {
            st.rec.status == InstanceStatus::WaitingWorkerReceive && st.rec.status_time == claim.now
        };
        let (id, mut msg) = {
            let st = slot.lock();
            if !current(&st) {
                return;
            }
            let msg = schedule_msg(&claim.def.record, &st.rec, &claim.workers, claim.now);
            (st.rec.id, msg)
        };
        self.wf_fill(&mut msg);
        self.arm_checks(id, claim.now, claim.def.record.timeout_ms);
        match claim.conn.try_send(msg) {
            Ok(()) => {
                self.metrics.dispatch_latency.observe(claim.ready.elapsed());
                self.wf_sent(id);
            }
            Err(SendError::Full { .. }) => {
                let msg = {
                    let st = slot.lock();
                    current(&st).then(|| {
                        schedule_msg(&claim.def.record, &st.rec, &claim.workers, claim.now)
                    })
                };
                let Some(mut msg) = msg else { return };
                self.wf_fill(&mut msg);
                let sh = Arc::clone(self);
                tokio::spawn(async move {
                    if claim.conn.send(msg).await.is_ok() {
                        sh.metrics.dispatch_latency.observe(claim.ready.elapsed());
                        sh.wf_sent(id);
                    }
                });
            }
            Err(_) => {
                tracing::warn!(
                    instance = id.0,
                    "worker connection closed during dispatch; requeued"
                );
                let mut st = slot.lock();
                if current(&st) {
                    let f = self.requeue_plain(&mut st, Some(&claim.job), self.now());
                    let (c, f) = self.persist_follow(&mut st, f);
                    drop(st);
                    self.after_write(c, f);
                }
            }
        }
    }

    /// A run's creation is acknowledged: start it.
    pub(crate) fn after_create(self: &Arc<Self>, rec: InstanceRecord, then: AfterCreate) {
        match then {
            AfterCreate::Dispatched(claim) => self.start_dispatched(rec, claim),
            AfterCreate::Dispatch { at } => {
                let id = rec.id;
                self.admit(rec);
                match at {
                    Some(at) => self.arm(at, TimerEv::Dispatch(id)),
                    None => {
                        tokio::spawn(Arc::clone(self).dispatch(id));
                    }
                }
            }
        }
    }

    /// A run's creation failed: undo what was prepared for it.
    pub(crate) fn create_failed(&self, then: AfterCreate) {
        if let AfterCreate::Dispatched(claim) = then {
            self.abandon(claim);
        }
    }

    /// The write of a claimed instance failed: give its running slot back (nothing else was
    /// changed).
    pub(crate) fn abandon(&self, claim: Claim) {
        claim.job.running.release();
    }

    /// Selects the TaskTracker and the workers; a retried instance prefers a worker other
    /// than `avoid` (up to 3 more tries with RANDOM among the eligible ones).
    fn select(
        &self,
        job: &JobState,
        def: &JobDef,
        avoid: Option<&str>,
        now: EpochMs,
    ) -> Result<(Arc<str>, Vec<Arc<str>>), DispatchError> {
        SELECT_STATE.with(|cell| {
            let mut st = cell.borrow_mut();
            let sel = self
                .registry
                .select(&job.app, &def.spec, &job.cursor, &mut st, now)?;
            if let Some(avoid) = avoid {
                if &*sel.task_tracker == avoid
                    && sel.eligible > 1
                    && def.record.execute_type == ExecuteType::Standalone
                {
                    let mut spec = def.spec.clone();
                    spec.strategy = crate::model::DispatchStrategy::Random;
                    for _ in 0..8 {
                        let other =
                            self.registry
                                .select(&job.app, &spec, &job.cursor, &mut st, now)?;
                        if &*other.task_tracker != avoid {
                            return Ok((other.task_tracker, other.workers));
                        }
                    }
                }
            }
            Ok((sel.task_tracker, sel.workers))
        })
    }

    /// No eligible (connected) worker: try again shortly, or FAILED after
    /// [`NO_WORKER_ATTEMPTS`] (attempts during the restart grace period do not count).
    fn no_worker(self: &Arc<Self>, st: &mut InstState, job: &JobState, why: &str, now: EpochMs) {
        self.metrics.no_worker.fetch_add(1, Ordering::Relaxed);
        if !self.in_grace(now) {
            st.no_worker_attempts += 1;
        }
        let id = st.rec.id;
        if st.no_worker_attempts < NO_WORKER_ATTEMPTS {
            tracing::debug!(instance = id.0, why, "no worker yet; dispatch retried");
            self.arm(
                now.saturating_add(NO_WORKER_RETRY_MS),
                TimerEv::Dispatch(id),
            );
            return;
        }
        let reason = format!(
            "dispatch failed after {NO_WORKER_ATTEMPTS} attempts over {} ms: {why}",
            i64::from(NO_WORKER_ATTEMPTS - 1) * NO_WORKER_RETRY_MS
        );
        tracing::warn!(instance = id.0, %reason, "instance failed");
        let f = self.fail_now(st, Some(job), &reason, now);
        let (c, f) = self.persist_follow(st, f);
        self.after_write(c, f);
    }

    /// Any non-final status → FAILED now, no retry.
    fn fail_now(
        &self,
        st: &mut InstState,
        job: Option<&JobState>,
        reason: &str,
        now: EpochMs,
    ) -> Follow {
        let old = st.rec.status;
        if st.rec.fail(reason, now).is_err() {
            return Follow::Nothing;
        }
        self.note(job, Some(old), st.rec.status);
        Follow::Final {
            id: st.rec.id,
            job: st.rec.job_id,
            run: st.rec.run,
        }
    }

    pub(crate) fn send_stop(&self, worker: &str, id: InstanceId) {
        if let Some(c) = self.conns.get(worker) {
            if c.handle
                .try_send(StopInstance { instance_id: id.0 })
                .is_err()
            {
                let handle = c.handle.clone();
                tokio::spawn(async move {
                    let _ = handle.send(StopInstance { instance_id: id.0 }).await;
                });
            }
        }
    }

    // ----- reports -----

    /// Applies one worker report (from the authenticated worker `source`); returns the write
    /// to await, if the report changed the instance.
    pub(crate) fn on_report(
        self: &Arc<Self>,
        source: &str,
        r: &ReportInstanceStatus,
        now: EpochMs,
    ) -> Option<(Option<Commit<()>>, Follow)> {
        let id = InstanceId(r.instance_id);
        let dropped = || {
            self.metrics.reports_dropped.fetch_add(1, Ordering::Relaxed);
            None
        };
        if r.source_address != source {
            return dropped();
        }
        let Some(slot) = self.slot(id) else {
            return dropped();
        };
        let mut st = slot.lock();
        let old = st.rec.status;
        let status = from_wire(&r.status);
        match st
            .rec
            .apply_report(r.report_seq, source, status, r.result.as_deref(), now)
        {
            Ok(crate::server::ReportOutcome::Applied) => {}
            Ok(outcome) => {
                tracing::debug!(instance = id.0, ?outcome, "report dropped");
                return dropped();
            }
            Err(e) => {
                tracing::debug!(instance = id.0, error = %e, "report refused");
                return dropped();
            }
        }
        if st.rec.status.is_final() {
            self.wf_reported(id);
        }
        let job = self.job(st.rec.job_id);
        let mapped = job.as_ref().is_some_and(|j| {
            matches!(
                j.def().record.execute_type,
                ExecuteType::Map | ExecuteType::MapReduce
            )
        });
        if mapped {
            st.tasks = Some(crate::api::TaskProgress {
                total: r.total_tasks,
                succeeded: r.succeeded_tasks,
                failed: r.failed_tasks,
            });
        }
        let follow = match st.rec.status {
            InstanceStatus::Failed => {
                let reason = format!(
                    "attempt {} on {source} failed: {}",
                    st.rec.running_times,
                    st.rec.result.as_deref().unwrap_or("")
                );
                self.retry_policy(&mut st, job.as_deref(), &reason, old, now, true)
            }
            s if s.is_final() => {
                self.note(job.as_deref(), Some(old), s);
                Follow::Final {
                    id,
                    job: st.rec.job_id,
                    run: st.rec.run,
                }
            }
            s => {
                // RUNNING (and its keepalives) stays in memory: the store keeps the
                // WAITING_WORKER_RECEIVE write, and after a restart the worker is asked
                // (QueryInstanceStatus), so nothing acknowledged depends on this write.
                self.note(job.as_deref(), Some(old), s);
                return None;
            }
        };
        // A workflow node's end: saved with the workflow's transition in one batch.
        if matches!(follow, Follow::Final { .. }) && self.wf_push_batched(&mut st, now) {
            return None;
        }
        Some(self.persist_follow(&mut st, follow))
    }

    /// After a final write: drop the instance from memory, re-arm a FIXED_DELAY job from this
    /// completion, prune old finished runs.
    pub(crate) async fn finalize(self: &Arc<Self>, id: InstanceId, job_id: JobId, run: u64) {
        let mut status = None;
        let mut result = None;
        self.active.remove_if(&id, |_, s| {
            let st = s.lock();
            status = Some(st.rec.status);
            if st.rec.status.is_final() {
                result = st.rec.result.clone();
            }
            st.rec.status.is_final()
        });
        if let Some(s) = status.filter(|s| s.is_final()) {
            self.metrics.finished(s);
            if let Some((_, node)) = self.node_runs.remove(&id) {
                self.wf_job_final(id, node, s, result).await;
            }
        }
        if run == 0 {
            return;
        }
        let Some(job) = self.job(job_id) else { return };
        if job.deleted.load(Ordering::Acquire) {
            return;
        }
        let def = job.def();
        if def.is_fixed_delay()
            && def.record.enabled
            && self
                .repo
                .trigger(job_id)
                .is_some_and(|t| t.next_trigger.is_none())
        {
            let now = self.now();
            if let Some(next) = def.initial_next(now) {
                let gen = job.gen.load(Ordering::Acquire);
                let current = || job.gen.load(Ordering::Acquire) == gen;
                match self.repo.set_next_trigger_if(job_id, Some(next), current) {
                    Ok(None) => {}
                    Ok(Some(c)) => {
                        if self.await_commit(c).await.is_ok() {
                            self.arm(
                                next,
                                TimerEv::Job {
                                    job: job_id,
                                    gen,
                                    due: next,
                                },
                            );
                        }
                    }
                    Err(e) => self.store_write_failed(&e),
                }
            }
        }
        let keep = self.config.keep_finished_runs;
        let every = u32::try_from(keep / 4).unwrap_or(u32::MAX).max(1);
        if job.finished_since_prune.fetch_add(1, Ordering::AcqRel) + 1 >= every {
            job.finished_since_prune.store(0, Ordering::Release);
            self.prune(job_id, keep).await;
        }
    }

    async fn prune(&self, job: JobId, keep: usize) {
        let ids = match self.repo.finished_fires_beyond(job, keep, 1000) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(job = job.0, error = %e, "pruning failed");
                return;
            }
        };
        for id in ids {
            if self.active.contains_key(&id) {
                continue;
            }
            match self.repo.delete_instance(id, false) {
                Ok(c) => {
                    let _ = self.await_commit(c).await;
                    self.log_counts.remove(&id);
                }
                Err(e) => tracing::debug!(instance = id.0, error = %e, "not pruned"),
            }
        }
    }

    // ----- reconciliation -----

    /// Asks a reconnected worker about the instances it had before the server restarted.
    pub(crate) async fn reconcile_worker(
        self: Arc<Self>,
        addr: String,
        handle: ferrojob_transport::net::ConnectionHandle,
        ids: Vec<InstanceId>,
    ) {
        let mut unresolved = Vec::new();
        for id in ids {
            let answer = handle
                .request(QueryInstanceStatus { instance_id: id.0 }, QUERY_TIMEOUT)
                .await;
            let Some(slot) = self.slot(id) else { continue };
            let now = self.now();
            let mut st = slot.lock();
            if !is_running(st.rec.status) || st.rec.worker.as_deref() != Some(addr.as_str()) {
                continue;
            }
            let job = self.job(st.rec.job_id);
            let old = st.rec.status;
            let follow = match answer {
                Ok(Message::InstanceStatusReply(rep)) => match from_wire(&rep.status) {
                    s @ (InstanceStatus::Running
                    | InstanceStatus::Succeed
                    | InstanceStatus::Stopped
                    | InstanceStatus::Failed)
                        if st.rec.apply_answer(s, rep.result.as_deref(), now).is_err() =>
                    {
                        continue
                    }
                    InstanceStatus::Running => {
                        self.note(job.as_deref(), Some(old), InstanceStatus::Running);
                        Follow::Nothing
                    }
                    s @ (InstanceStatus::Succeed | InstanceStatus::Stopped) => {
                        self.note(job.as_deref(), Some(old), s);
                        Follow::Final {
                            id,
                            job: st.rec.job_id,
                            run: st.rec.run,
                        }
                    }
                    InstanceStatus::Failed => {
                        let reason = format!(
                            "attempt {} on {addr} failed: {}",
                            st.rec.running_times,
                            rep.result.as_deref().unwrap_or("")
                        );
                        self.retry_policy(&mut st, job.as_deref(), &reason, old, now, true)
                    }
                    _ => continue,
                },
                Err(RequestError::Remote {
                    code: ErrorCode::NotFound,
                    ..
                }) => {
                    // RUNNING is not persisted, so a dispatched instance the worker does not
                    // know may have run and been lost: the retry policy decides.
                    let reason =
                        format!("worker {addr} no longer knows the instance (server restart)");
                    self.retry_policy(&mut st, job.as_deref(), &reason, old, now, false)
                }
                other => {
                    tracing::debug!(instance = id.0, answer = ?other, "reconciliation query unanswered");
                    unresolved.push(id);
                    continue;
                }
            };
            let (c, follow) = self.persist_follow(&mut st, follow);
            drop(st);
            self.after_write(c, follow);
        }
        if !unresolved.is_empty() {
            self.reconcile.entry(addr).or_default().extend(unresolved);
        }
    }
}
