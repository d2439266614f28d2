//! The one dispatch path: `claim` (job, `max_instances` slot, worker selection, connection)
//! then `hand_over` (the ScheduleJob on the TaskTracker's connection), and what happens when
//! no worker is eligible.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferrojob_transport::error::SendError;
use ferrojob_transport::message::{self as wire, ScheduleJob, StopInstance};
use ferrojob_transport::net::ConnectionHandle;

use crate::dispatch::{DispatchError, SelectState};
use crate::ids::{AppId, InstanceId};
use crate::model::{ExecuteType, InstanceStatus};
use crate::server::instance::attempt_base;
use crate::server::{InstanceRecord, JobRecord};
use crate::time_expression::{EpochMs, TimeExpressionType};

use super::report::RUN_SAFETY_MARGIN_MS;
use super::state::{InstState, JobDef, JobState, Runtime, Slot, TimerEv};

/// Dispatch attempts that find no eligible worker before the instance is FAILED.
pub(crate) const NO_WORKER_ATTEMPTS: u32 = 5;

/// Pause between those attempts, ms (so the window is about 2 s).
pub(crate) const NO_WORKER_RETRY_MS: i64 = 500;

thread_local! {
    /// Selection scratch space and rng, one per thread: selection takes no lock of ours.
    static SELECT_STATE: std::cell::RefCell<SelectState> =
        std::cell::RefCell::new(SelectState::from_entropy());
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

/// An instance handed to a worker before its WAITING_WORKER_RECEIVE write (see
/// `Runtime::claim`): its job, the selected workers (the TaskTracker first) and the
/// TaskTracker's connection. It holds one of the job's running slots (`max_instances`):
/// [`Runtime::hand_over`] keeps it, [`Runtime::abandon`] gives it back.
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

impl Runtime {
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
        let Some(conn) = self.conns.get(def.record.app_id, &tracker) else {
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

    /// Dispatches a WAITING_DISPATCH instance the core owns: [`claim`](Runtime::claim) (a
    /// refusal fails it, or retries shortly when no worker is eligible), the
    /// WAITING_WORKER_RECEIVE write, then [`hand_over`](Runtime::hand_over).
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
    pub(super) fn arm_checks(&self, id: InstanceId, now: EpochMs, timeout_ms: u64) {
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
    /// WAITING_WORKER_RECEIVE. It is [`claim`](Runtime::claim), the same rule as for owned
    /// instances: on success the caller writes `rec` and then calls
    /// [`start_dispatched`](Runtime::start_dispatched) once the write is acknowledged, or
    /// [`abandon`](Runtime::abandon) if it failed. `None`: nothing changed; the caller writes
    /// it WAITING_DISPATCH and [`dispatch`](Runtime::dispatch)es it, which handles every
    /// refusal (FAILED, no-worker retries).
    pub(crate) fn dispatch_new(
        &self,
        job: &Arc<JobState>,
        rec: &mut InstanceRecord,
        now: EpochMs,
    ) -> Option<Claim> {
        self.claim(Some(Arc::clone(job)), rec, None, now).ok()
    }

    /// The write of a [`dispatch_new`](Runtime::dispatch_new)ed instance is acknowledged:
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
    pub(super) fn hand_over(self: &Arc<Self>, slot: &Slot, claim: Claim) {
        let current = |st: &InstState| {
            st.rec.status == InstanceStatus::WaitingWorkerReceive && st.rec.status_time == claim.now
        };
        let (id, mut msg) = {
            let st = slot.lock();
            if !current(&st) {
                return;
            }
            let msg = schedule_msg(&claim.def.record, &st.rec, &claim.workers, claim.now);
            // The attempt's reports are numbered in its own range (see `attempt_base`).
            debug_assert!(
                msg.report_seq_base >= attempt_base(st.rec.running_times)
                    && msg.report_seq_base < attempt_base(st.rec.running_times.saturating_add(1)),
                "report base outside attempt {}",
                st.rec.running_times
            );
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

    /// The write of a claimed instance failed: give its running slot back (nothing else was
    /// changed).
    pub(crate) fn abandon(&self, claim: Claim) {
        claim.job.running.release();
    }

    /// Selects the TaskTracker and the workers; a retried instance prefers a worker other
    /// than `avoid` (up to 3 more tries with RANDOM among the eligible ones).
    pub(super) fn select(
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
    pub(super) fn no_worker(
        self: &Arc<Self>,
        st: &mut InstState,
        job: &JobState,
        why: &str,
        now: EpochMs,
    ) {
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

    /// Tells `app`'s worker `worker` to stop instance `id` (if it is connected).
    pub(crate) fn send_stop(&self, app: AppId, worker: &str, id: InstanceId) {
        if let Some(handle) = self.conns.get(app, worker) {
            if handle.try_send(StopInstance { instance_id: id.0 }).is_err() {
                tokio::spawn(async move {
                    let _ = handle.send(StopInstance { instance_id: id.0 }).await;
                });
            }
        }
    }
}
