//! The one dispatch path: `claim` (job, `max_instances` slot, worker selection, connection)
//! then `hand_over` (the ScheduleJob to the TaskTracker), and what happens when no worker is
//! eligible.

use std::sync::Arc;

use ferrojob_transport::message::{self as wire, ScheduleJob, StopInstance};

use crate::dispatch::DispatchError;
use crate::ids::{AppId, InstanceId, JobId};
use crate::model::{ExecuteType, InstanceStatus, LogLevel, LogType};
use crate::policy::OverlapPolicy;
use crate::server::instance::attempt_base;
use crate::server::{InstanceRecord, JobRecord};
use crate::time_expression::{EpochMs, TimeExpressionType};

use super::report::RUN_SAFETY_MARGIN_MS;
use super::write::Follow;
use super::{
    is_running, Awaited, Core, Effect, InstState, JobDef, Outgoing, Then, TimerEv, MAX_QUEUED_RUNS,
};

/// Dispatch attempts that find no eligible worker before the instance is FAILED.
pub(crate) const NO_WORKER_ATTEMPTS: u32 = 5;

/// Pause between those attempts, ms (so the window is about 2 s).
pub(crate) const NO_WORKER_RETRY_MS: i64 = 500;

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
            log_type: match r.log.log_type {
                LogType::Online => wire::LogType::Online,
                LogType::Local => wire::LogType::Local,
                LogType::Stdout => wire::LogType::Stdout,
                LogType::Null => wire::LogType::Null,
            },
            level: match r.log.level {
                LogLevel::Debug => wire::LogLevel::Debug,
                LogLevel::Info => wire::LogLevel::Info,
                LogLevel::Warn => wire::LogLevel::Warn,
                LogLevel::Error => wire::LogLevel::Error,
            },
        },
        alarm_config: wire::AlarmConfig {
            threshold: 0,
            statistic_window_s: 0,
            silence_window_s: 0,
        },
        dispatch_time_ms: now,
        report_seq_base: rec.report_seq,
        workflow_context: String::new(),
        trigger_key: rec.trigger_key(),
        trigger_time_ms: rec.trigger_time,
        epoch: 0,
    }
}

/// An instance claimed for a worker before its WAITING_WORKER_RECEIVE write (see
/// [`Core::claim`]): its job, the selected workers (the TaskTracker first). It holds one of
/// the job's running slots (`max_instances`): [`Core::hand_over`] keeps it,
/// [`Core::abandon`] gives it back.
#[derive(Debug)]
pub(crate) struct Claim {
    job: JobId,
    def: Arc<JobDef>,
    tracker: Arc<str>,
    workers: Vec<Arc<str>>,
    ready_us: i64,
    now: EpochMs,
}

/// Why an instance cannot be handed to a worker now.
#[derive(Debug)]
enum Refusal {
    /// No eligible or connected worker: try again shortly.
    NoWorker(String),
    /// The job's `max_instances` are running (or its queue is ahead of this run): the
    /// job's overlap policy decides.
    Full(String),
    /// The instance cannot run (job deleted, invalid settings): FAILED.
    Fail(String),
    /// The instance is not WAITING_DISPATCH, or the server is stopping: nothing to do.
    Nothing,
}

impl Core {
    /// The one dispatch rule, for instances the core owns and new ones alike: the job must
    /// still exist, a `max_instances` slot is reserved, the TaskTracker and the workers are
    /// selected (a retried instance prefers another worker than `avoid`) and must be
    /// connected, and `rec` moves to WAITING_WORKER_RECEIVE. On a refusal nothing changed.
    fn claim(
        &mut self,
        rec: &mut InstanceRecord,
        avoid: Option<&str>,
        now: EpochMs,
    ) -> Result<Claim, Refusal> {
        if self.shutting_down || rec.status != InstanceStatus::WaitingDispatch {
            return Err(Refusal::Nothing);
        }
        let Some(job) = self.live_job(rec.job_id) else {
            return Err(Refusal::Fail(format!("job {} was deleted", rec.job_id.0)));
        };
        let def = job.def();
        let max = def.record.max_instances;
        // A QUEUE job's runs start in their order of arrival: none overtakes the queue.
        let head = job.queue.front().copied();
        if def.record.overlap_policy == OverlapPolicy::Queue && head.is_some_and(|h| h != rec.id) {
            return Err(Refusal::Full(format!(
                "job {} has {} runs queued ahead (overlap policy QUEUE)",
                job.id.0,
                job.queue.len()
            )));
        }
        // Every dispatched instance holds a running slot (counted even without a limit, so
        // that the count is right when a limit is set later).
        if !job.running.try_reserve(max) {
            return Err(Refusal::Full(format!(
                "too many instances: job {} allows {max} at once (max_instances)",
                job.id.0
            )));
        }
        let job_id = job.id;
        let release = |core: &Core| {
            if let Some(j) = core.jobs.get(&job_id) {
                j.running.release();
            }
        };
        let (tracker, workers) = match self.select_workers(job_id, &def, avoid) {
            Ok(sel) => sel,
            Err(DispatchError::NoEligibleWorker { app, exclusions }) => {
                release(self);
                return Err(Refusal::NoWorker(format!(
                    "no eligible worker for app {app}: {exclusions}"
                )));
            }
            Err(e) => {
                release(self);
                return Err(Refusal::Fail(e.to_string()));
            }
        };
        if !self
            .conns
            .contains_key(&(def.record.app_id, tracker.to_string()))
        {
            release(self);
            return Err(Refusal::NoWorker(format!(
                "worker {tracker} is not connected"
            )));
        }
        if rec.dispatch(&tracker, now).is_err() {
            release(self);
            return Err(Refusal::Nothing);
        }
        if head == Some(rec.id) {
            if let Some(j) = self.jobs.get_mut(&job_id) {
                j.queue.pop_front();
            }
            // More room (a raised limit, several slots freed at once): the next one too.
            self.wake_queue(job_id);
        }
        Ok(Claim {
            job: job_id,
            def,
            tracker,
            workers,
            ready_us: self.now_us,
            now,
        })
    }

    /// Dispatches a WAITING_DISPATCH instance the core owns: [`claim`](Core::claim) (a
    /// refusal fails it, or retries shortly when no worker is eligible), the
    /// WAITING_WORKER_RECEIVE write, then [`hand_over`](Core::hand_over) once it is
    /// acknowledged.
    pub(crate) fn dispatch(&mut self, id: InstanceId, now: EpochMs) {
        self.with_inst(id, |core, st| core.dispatch_held(st, now, true));
    }

    /// [`dispatch`](Core::dispatch) of the instance in hand; `may_replace`: whether the
    /// REPLACE overlap policy may still stop a running instance for it.
    fn dispatch_held(&mut self, st: &mut InstState, now: EpochMs, may_replace: bool) {
        let id = st.rec.id;
        let avoid = st.avoid.clone();
        match self.claim(&mut st.rec, avoid.as_deref(), now) {
            Ok(claim) => {
                st.retry_at = None;
                st.no_worker_attempts = 0;
                st.ready_us = claim.ready_us;
                // The running count was taken by the claim.
                self.metrics.transition(
                    Some(InstanceStatus::WaitingDispatch),
                    InstanceStatus::WaitingWorkerReceive,
                );
                // Without a submitted write the instance stays WAITING_WORKER_RECEIVE in
                // memory, holding the claim's slot: the receive check requeues it.
                if let Some(c) = self.persist(st) {
                    self.handing_over.insert(id);
                    self.emit(Effect::Await(Awaited::Write(
                        c,
                        Then::HandOver { id, claim },
                    )));
                }
            }
            Err(Refusal::Nothing) => {}
            Err(Refusal::NoWorker(why)) => {
                if self.jobs.contains_key(&st.rec.job_id) {
                    self.no_worker(st, &why, now);
                }
            }
            Err(Refusal::Full(reason)) => self.overlap(st, &reason, now, may_replace),
            Err(Refusal::Fail(reason)) => {
                let f = self.fail_now(st, &reason, now);
                self.save(st, f);
            }
        }
    }

    /// The job of the instance in hand has its `max_instances` running: its overlap policy
    /// decides (see the module docs of the core).
    fn overlap(&mut self, st: &mut InstState, reason: &str, now: EpochMs, may_replace: bool) {
        let id = st.rec.id;
        let job_id = st.rec.job_id;
        let policy = self
            .live_job(job_id)
            .map_or(OverlapPolicy::Fail, |j| j.def.record.overlap_policy);
        match policy {
            OverlapPolicy::Skip => {
                let old = st.rec.status;
                let reason = format!("skipped: {reason} (overlap policy SKIP)");
                if st.rec.cancel(now).is_err() {
                    return;
                }
                st.rec.result = Some(reason);
                self.count_skipped(job_id);
                self.note(job_id, Some(old), st.rec.status);
                tracing::info!(
                    instance = id.0,
                    job = job_id.0,
                    "run skipped (overlap policy SKIP)"
                );
                let f = Follow::Final {
                    id,
                    job: job_id,
                    run: st.rec.run,
                };
                self.save(st, f);
            }
            OverlapPolicy::Queue => {
                let Some(job) = self.jobs.get_mut(&job_id) else {
                    return;
                };
                if job.queue.contains(&id) {
                    return;
                }
                if job.queue.len() >= MAX_QUEUED_RUNS {
                    let reason = format!(
                        "{reason}, and {MAX_QUEUED_RUNS} runs are already queued (overlap policy QUEUE)"
                    );
                    let f = self.fail_now(st, &reason, now);
                    self.save(st, f);
                    return;
                }
                job.queue.push_back(id);
                let queued = job.queue.len();
                st.retry_at = None;
                self.metrics.count_overlap(OverlapPolicy::Queue);
                tracing::info!(
                    instance = id.0,
                    job = job_id.0,
                    queued,
                    "run queued (overlap policy QUEUE)"
                );
                // A slot may have freed between the refusal and now (a claim abandoned).
                self.wake_queue(job_id);
            }
            OverlapPolicy::Replace if may_replace => {
                if self.replace_oldest(job_id, id, now) {
                    self.dispatch_held(st, now, false);
                } else {
                    let reason =
                        format!("{reason}, and none of its runs can be stopped yet (overlap policy REPLACE)");
                    let f = self.fail_now(st, &reason, now);
                    self.save(st, f);
                }
            }
            _ => {
                let f = self.fail_now(st, reason, now);
                self.save(st, f);
            }
        }
    }

    /// Stops the oldest running instance of `job` to make room for instance `by`: STOPPED
    /// (its slot is free at once), `StopInstance` to its worker. Whether there was one.
    fn replace_oldest(&mut self, job: JobId, by: InstanceId, now: EpochMs) -> bool {
        let victim = self
            .active
            .values()
            .filter(|v| v.rec.job_id == job && is_running(v.rec.status))
            .map(|v| v.rec.id)
            .min_by_key(|id| id.0);
        let Some(victim) = victim else {
            return false;
        };
        self.with_inst(victim, |core, v| {
            let old = v.rec.status;
            if v.rec.stop(now).is_err() {
                return false;
            }
            v.rec.result = Some(format!(
                "stopped to make room for instance {} (overlap policy REPLACE)",
                by.0
            ));
            core.note(job, Some(old), v.rec.status);
            core.metrics.count_overlap(OverlapPolicy::Replace);
            tracing::info!(
                instance = victim.0,
                by = by.0,
                "run replaced (overlap policy REPLACE)"
            );
            if let Some(w) = v.rec.worker.clone() {
                core.send_stop(v.rec.app_id, &w, victim);
            }
            let f = Follow::Final {
                id: victim,
                job,
                run: v.rec.run,
            };
            core.save(v, f);
            true
        })
        .unwrap_or(false)
    }

    /// Arms the receive check and (with a timeout) the run-timeout safety net of the attempt
    /// dispatched at `now`.
    pub(crate) fn arm_checks(&mut self, id: InstanceId, now: EpochMs, timeout_ms: u64) {
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

    /// Tries to dispatch a new instance (a run or a fire) before its first write, so it is
    /// written once, already WAITING_WORKER_RECEIVE, instead of WAITING_DISPATCH and then
    /// WAITING_WORKER_RECEIVE. It is [`claim`](Core::claim), the same rule as for owned
    /// instances: on success the caller writes `rec` and then calls
    /// [`start_dispatched`](Core::start_dispatched) once the write is acknowledged, or
    /// [`abandon`](Core::abandon) if it failed. `None`: nothing changed; the caller writes
    /// it WAITING_DISPATCH and [`dispatch`](Core::dispatch)es it, which handles every
    /// refusal (FAILED, no-worker retries).
    pub(crate) fn dispatch_new(&mut self, rec: &mut InstanceRecord, now: EpochMs) -> Option<Claim> {
        let claim = self.claim(rec, None, now).ok()?;
        debug_assert_eq!(
            claim.def.record.app_id, rec.app_id,
            "a claim of another app's job"
        );
        // Until the creation is acknowledged ([`Core::after_create`]) or has failed
        // ([`Core::create_failed`]), exactly one of which every claim reaches.
        *self.creating_dispatched.entry(rec.app_id).or_default() += 1;
        Some(claim)
    }

    /// A creation of [`dispatch_new`](Core::dispatch_new) came back (acknowledged or failed).
    pub(crate) fn creation_resolved(&mut self, claim: &Claim) {
        let app = claim.def.record.app_id;
        if let Some(n) = self.creating_dispatched.get_mut(&app) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.creating_dispatched.remove(&app);
            }
        }
    }

    /// The write of a [`dispatch_new`](Core::dispatch_new)ed instance is acknowledged: the
    /// core owns it (WAITING_WORKER_RECEIVE) and hands it over.
    pub(crate) fn start_dispatched(&mut self, rec: InstanceRecord, claim: Claim, now: EpochMs) {
        let id = rec.id;
        let status = rec.status;
        let mut st = InstState::new(rec, claim.ready_us);
        st.ready_us = claim.ready_us;
        let before = self.active.insert(id, st);
        debug_assert!(before.is_none(), "instance {} owned twice", id.0);
        // The running count was taken by the claim.
        self.metrics.transition(None, status);
        self.hand_over(id, claim, now);
    }

    /// The WAITING_WORKER_RECEIVE write of a claimed instance is acknowledged: its checks
    /// are armed and ScheduleJob goes to the TaskTracker (unless the attempt was superseded
    /// meanwhile). A connection found closed requeues it at once
    /// ([`on_send_closed`](Core::on_send_closed)) rather than at the receive check.
    pub(crate) fn hand_over(&mut self, id: InstanceId, claim: Claim, _now: EpochMs) {
        let Some(st) = self.active.get(&id) else {
            return;
        };
        if st.rec.status != InstanceStatus::WaitingWorkerReceive || st.rec.status_time != claim.now
        {
            return;
        }
        let mut msg = schedule_msg(&claim.def.record, &st.rec, &claim.workers, claim.now);
        // The attempt's reports are numbered in its own range (see `attempt_base`).
        debug_assert!(
            msg.report_seq_base >= attempt_base(st.rec.running_times)
                && msg.report_seq_base < attempt_base(st.rec.running_times.saturating_add(1)),
            "report base outside attempt {}",
            st.rec.running_times
        );
        let app = st.rec.app_id;
        let Some(epoch) = self.epoch_of(app) else {
            return;
        };
        msg.epoch = epoch;
        self.wf_fill(&mut msg);
        self.arm_checks(id, claim.now, claim.def.record.timeout_ms);
        let live = self.live_ms;
        if let Some(st) = self.active.get_mut(&id) {
            st.handed_live = live;
        }
        self.wf_sent(id);
        self.emit(Effect::Send {
            app,
            worker: claim.tracker.to_string(),
            msg: Outgoing::Schedule {
                msg: Box::new(msg),
                ready_us: claim.ready_us,
                since: claim.now,
            },
        });
    }

    /// The ScheduleJob of instance `id`'s attempt dispatched at `since` could not be handed
    /// to its connection (closed, or gone): requeued at once if it is still that attempt.
    pub(crate) fn on_send_closed(&mut self, id: InstanceId, since: EpochMs, now: EpochMs) {
        self.with_inst(id, |core, st| {
            if st.rec.status != InstanceStatus::WaitingWorkerReceive || st.rec.status_time != since
            {
                return;
            }
            tracing::warn!(
                instance = id.0,
                "worker connection closed during dispatch; requeued"
            );
            let f = core.requeue_plain(st, now);
            core.save(st, f);
        });
    }

    /// The write of a claimed instance failed: give its running slot back (nothing else was
    /// changed).
    pub(crate) fn abandon(&mut self, claim: Claim) {
        if let Some(j) = self.jobs.get(&claim.job) {
            j.running.release();
        }
        self.wake_queue(claim.job);
    }

    /// Selects the TaskTracker and the workers; a retried instance prefers a worker other
    /// than `avoid` (up to 8 more tries with RANDOM among the eligible ones).
    fn select_workers(
        &mut self,
        job: JobId,
        def: &JobDef,
        avoid: Option<&str>,
    ) -> Result<(Arc<str>, Vec<Arc<str>>), DispatchError> {
        let Some(j) = self.jobs.get(&job) else {
            return Err(DispatchError::InvalidSpec {
                field: "job",
                reason: format!("job {} was deleted", job.0),
            });
        };
        let live = self.live_ms;
        let sel = self
            .registry
            .select(&j.app, &def.spec, &j.cursor, &mut self.select, live)?;
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
                            .select(&j.app, &spec, &j.cursor, &mut self.select, live)?;
                    if &*other.task_tracker != avoid {
                        return Ok((other.task_tracker, other.workers));
                    }
                }
            }
        }
        Ok((sel.task_tracker, sel.workers))
    }

    /// No eligible (connected) worker: try again shortly, or FAILED after
    /// [`NO_WORKER_ATTEMPTS`] (attempts during the restart grace period do not count).
    pub(crate) fn no_worker(&mut self, st: &mut InstState, why: &str, now: EpochMs) {
        self.metrics.count_no_worker();
        if !self.in_grace() {
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
        let f = self.fail_now(st, &reason, now);
        self.save(st, f);
    }

    /// Tells `app`'s worker `worker` to stop instance `id` (if it is connected).
    /// Nothing is sent for an app the core does not act for.
    pub(crate) fn send_stop(&mut self, app: AppId, worker: &str, id: InstanceId) {
        let Some(epoch) = self.epoch_of(app) else {
            return;
        };
        self.emit(Effect::Send {
            app,
            worker: worker.to_owned(),
            msg: Outgoing::Stop(StopInstance {
                instance_id: id.0,
                epoch,
            }),
        });
    }
}
