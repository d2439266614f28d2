//! The API's commands as the core sees them: each is a step that decides and submits its
//! write, and — for those the caller waits on — a second step once the write is
//! acknowledged.

use std::sync::Arc;

use crate::api::{ApiError, InstanceAction};
use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::server::{Commit, InstanceRecord, JobRecord};
use crate::time_expression::{EpochMs, TimeExpression};

use super::write::{AfterCreate, Follow};
use super::{Core, InstState, JobDef, JobState, TimerEv};

/// Backfill runs whose creation time the core tracks before it drops those no longer held.
const MAX_BACKFILL_TRACKED: usize = 10_000;

/// Longest `delay_ms` of an API run (about 10 years).
pub(crate) const MAX_DELAY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// Refuses a FIXED_RATE period or FIXED_DELAY delay below the server's `min_period_ms`.
pub(crate) fn check_period(expr: &TimeExpression, min_ms: u64) -> Result<(), ApiError> {
    let period = match expr {
        TimeExpression::FixedRate { period_ms } => *period_ms,
        TimeExpression::FixedDelay { delay_ms } => *delay_ms,
        _ => return Ok(()),
    };
    if period < min_ms {
        return Err(ApiError::invalid(
            "time_expression",
            format!("at least {min_ms} ms on this server (min_period_ms), got {period}"),
        ));
    }
    Ok(())
}

/// A job's change, submitted: what [`Core::job_replaced`] needs once it is acknowledged.
#[derive(Debug)]
pub(crate) struct Replacing {
    pub(crate) job: JobId,
    pub(crate) gen: u64,
    pub(crate) next: Option<EpochMs>,
}

/// An instance command's write, what follows it, and the record it wrote.
pub(crate) type CommandWrite = (Commit<()>, Commanded, InstanceRecord);

/// An instance command, submitted: what follows it once it is acknowledged.
#[derive(Debug)]
pub(crate) struct Commanded {
    pub(crate) app: AppId,
    pub(crate) id: InstanceId,
    pub(crate) stop_on: Option<String>,
    pub(crate) follow: Follow,
}

impl Core {
    /// `app`'s live job `id`.
    /// `app`'s live job `id` (refused with [`NotOwner`](super::partitions::NotOwner) when
    /// this server does not act for `app`).
    pub(crate) fn job_of(&self, app: AppId, id: JobId) -> Result<&JobState, ApiError> {
        self.acting_for(app)?;
        self.live_job(id)
            .filter(|j| j.def.record.app_id == app)
            .ok_or_else(|| ApiError::not_found("job", id.0))
    }

    /// Jobs `app` has.
    pub(crate) fn jobs_of(&self, app: AppId) -> usize {
        self.jobs
            .values()
            .filter(|j| !j.deleted && j.def.record.app_id == app)
            .count()
    }

    /// Replaces job `id`'s definition (update, enable, disable): the write, submitted. Armed
    /// triggers of the old definition are void from here on.
    pub(crate) fn replace_job(
        &mut self,
        id: JobId,
        mut record: JobRecord,
        now: EpochMs,
    ) -> Result<(Commit<JobRecord>, Replacing), ApiError> {
        record.id = id;
        self.acting_for(record.app_id)?;
        let def = JobDef::new(record.clone())?;
        check_period(&def.expr, self.config.min_period_ms)?;
        let next = def.initial_next(now);
        let commit = self.repo.update_job(record, next, now)?;
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(ApiError::not_found("job", id.0));
        };
        job.gen += 1;
        Ok((
            commit,
            Replacing {
                job: id,
                gen: job.gen,
                next,
            },
        ))
    }

    /// A job's change is acknowledged: its new definition schedules from now on (unless a
    /// later change was made meanwhile).
    pub(crate) fn job_replaced(&mut self, saved: JobRecord, r: Replacing) -> Result<(), ApiError> {
        let def = JobDef::new(saved)?;
        let Some(job) = self.jobs.get_mut(&r.job) else {
            return Ok(());
        };
        if job.gen != r.gen {
            return Ok(());
        }
        job.def = Arc::new(def);
        // A raised `max_instances` has room for queued runs now.
        self.wake_queue(r.job);
        if let Some(n) = r.next {
            self.arm(
                n,
                TimerEv::Job {
                    job: r.job,
                    gen: r.gen,
                    due: n,
                },
            );
        }
        Ok(())
    }

    /// A job's creation is acknowledged: schedule it.
    pub(crate) fn job_created(
        &mut self,
        saved: JobRecord,
        app_name: &str,
        next: Option<EpochMs>,
    ) -> Result<JobId, ApiError> {
        let id = saved.id;
        // Stored already: the owner of its app's partition loads it with the partition.
        self.acting_for(saved.app_id)?;
        let state = JobState::new(Arc::from(app_name), JobDef::new(saved)?);
        let gen = state.gen;
        self.jobs.insert(id, state);
        if let Some(n) = next {
            self.arm(
                n,
                TimerEv::Job {
                    job: id,
                    gen,
                    due: n,
                },
            );
        }
        Ok(id)
    }

    /// Starts deleting job `id`: refused while a workflow references it; its armed triggers
    /// are void from here on.
    pub(crate) fn delete_job_begin(&mut self, id: JobId) -> Result<(), ApiError> {
        if let Some(wf) = self.job_referenced(id) {
            return Err(ApiError::conflict(format!(
                "{id} is referenced by {wf}; remove it from the workflow first"
            )));
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            job.gen += 1;
        }
        Ok(())
    }

    /// A job's deletion is acknowledged: forget it.
    pub(crate) fn job_deleted(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.deleted = true;
        }
        if let Some(job) = self.jobs.remove(&id) {
            // Its queued runs are dispatched, which fails them: the job is gone.
            let now = self.now_us.div_euclid(1000);
            for q in job.queue {
                self.arm(now, TimerEv::Dispatch(q));
            }
        }
        self.alarm_books.remove(&id);
    }

    /// A run of `app`'s job `id` with `params`, `delay_ms` from now: its creation, submitted.
    /// Dispatchable at once, it is written once, already WAITING_WORKER_RECEIVE (the answer
    /// still waits for that write, and ScheduleJob goes out after it); otherwise it is
    /// written WAITING_DISPATCH and dispatched as usual.
    pub(crate) fn prepare_run(
        &mut self,
        app: AppId,
        id: JobId,
        params: String,
        delay_ms: u64,
        now: EpochMs,
    ) -> Result<(Commit<InstanceRecord>, AfterCreate), ApiError> {
        let job = self.job_of(app, id)?;
        if delay_ms == 0 && self.skips(job) {
            let max = job.def.record.max_instances;
            self.count_skipped(id);
            return Err(ApiError::conflict(format!(
                "run skipped: job {} allows {max} at once (max_instances) and its overlap policy is SKIP",
                id.0
            )));
        }
        if delay_ms > MAX_DELAY_MS {
            return Err(ApiError::invalid(
                "delay_ms",
                format!("at most {MAX_DELAY_MS}, got {delay_ms}"),
            ));
        }
        let (rec, delayed, then) = self.planned_run(app, id, params, delay_ms, now);
        match self.repo.create_instance(rec, delayed) {
            Ok(c) => Ok((c, then)),
            Err(e) => {
                self.create_failed(then);
                Err(e.into())
            }
        }
    }

    /// The record of one API run of `app`'s job `id` (checked by the caller), its due time
    /// when delayed, and what follows its creation: dispatched now (a worker is claimed for
    /// it) or later.
    fn planned_run(
        &mut self,
        app: AppId,
        id: JobId,
        params: String,
        delay_ms: u64,
        now: EpochMs,
    ) -> (InstanceRecord, Option<EpochMs>, AfterCreate) {
        let delay = i64::try_from(delay_ms).unwrap_or(0);
        let due = now.saturating_add(delay);
        let delayed = (delay > 0).then_some(due);
        let mut rec = InstanceRecord::new(id, app, params, due);
        let then = match delayed {
            None => match self.dispatch_new(&mut rec, now) {
                Some(nd) => AfterCreate::Dispatched(nd),
                None => AfterCreate::Dispatch { at: None },
            },
            Some(at) => AfterCreate::Dispatch { at: Some(at) },
        };
        (rec, delayed, then)
    }

    /// A batch of runs of `app`'s job `id`, each `(params, delay_ms)`: their creation,
    /// submitted as one write. Each run is prepared as [`prepare_run`](Core::prepare_run)
    /// prepares one, in order; the batch is all or none, so a run that would be refused
    /// (a delay too long, the overlap policy SKIP at `max_instances`) refuses the batch and
    /// releases what the runs before it reserved. The follow-ups are in the runs' order.
    pub(crate) fn prepare_runs(
        &mut self,
        app: AppId,
        id: JobId,
        runs: Vec<(String, u64)>,
        now: EpochMs,
    ) -> Result<(Commit<Vec<InstanceRecord>>, Vec<AfterCreate>), ApiError> {
        self.job_of(app, id)?;
        if let Some((i, (_, d))) = runs
            .iter()
            .enumerate()
            .find(|(_, (_, d))| *d > MAX_DELAY_MS)
        {
            return Err(ApiError::invalid(
                &format!("runs[{i}].delay_ms"),
                format!("at most {MAX_DELAY_MS}, got {d}"),
            ));
        }
        let n = runs.len();
        let mut records = Vec::with_capacity(n);
        let mut thens = Vec::with_capacity(n);
        for (i, (params, delay_ms)) in runs.into_iter().enumerate() {
            let job = self.job_of(app, id)?;
            if delay_ms == 0 && self.skips(job) {
                let max = job.def.record.max_instances;
                for then in thens.drain(..) {
                    self.create_failed(then);
                }
                for _ in 0..n {
                    self.count_skipped(id);
                }
                return Err(ApiError::conflict(format!(
                    "batch skipped: its run {i} would exceed job {}'s {max} at once (max_instances) and its overlap policy is SKIP; no run was created",
                    id.0
                )));
            }
            let (rec, delayed, then) = self.planned_run(app, id, params, delay_ms, now);
            records.push((rec, delayed));
            thens.push(then);
        }
        match self.repo.create_instances(records) {
            Ok(c) => Ok((c, thens)),
            Err(e) => {
                for then in thens {
                    self.create_failed(then);
                }
                Err(e.into())
            }
        }
    }

    /// The trigger times of `app`'s job `id` in `[from, to)`: what a backfill of the range
    /// runs (see [`Schedule::backfill_times`](crate::schedule::Schedule::backfill_times)).
    pub(crate) fn backfill_times(
        &self,
        app: AppId,
        id: JobId,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<Vec<(EpochMs, Option<String>)>, ApiError> {
        let job = self.job_of(app, id)?;
        let times = job
            .def
            .schedule()
            .backfill_times(from, to, crate::schedule::MAX_BACKFILL_RUNS)
            .map_err(|e| match e {
                crate::schedule::BackfillError::EmptyRange { .. } => {
                    ApiError::invalid("from", e.to_string())
                }
                _ => ApiError::invalid("to", e.to_string()),
            })?;
        let calendars = &job.def.record.calendars;
        Ok(times
            .into_iter()
            .map(|t| (t, self.excluding_calendar(app, calendars, t)))
            .collect())
    }

    /// One backfill run of `app`'s job `id` for the past trigger time `trigger_time`: like an
    /// API run without delay (the overlap policy applies, SKIP answers Conflict), but the
    /// instance carries the trigger time it stands for. Its creation, submitted.
    pub(crate) fn prepare_backfill_run(
        &mut self,
        app: AppId,
        id: JobId,
        trigger_time: EpochMs,
        now: EpochMs,
    ) -> Result<(Commit<InstanceRecord>, AfterCreate), ApiError> {
        let job = self.job_of(app, id)?;
        if self.skips(job) {
            self.count_skipped(id);
            return Err(ApiError::conflict(format!(
                "backfill run at {trigger_time} skipped: job {} is at max_instances and its overlap policy is SKIP",
                id.0
            )));
        }
        let mut rec = InstanceRecord::new(id, app, "", trigger_time);
        // Its status dates from now: the checkers' clocks start at creation, not in the past.
        rec.status_time = now;
        let then = match self.dispatch_new(&mut rec, now) {
            Some(nd) => AfterCreate::Dispatched(nd),
            None => AfterCreate::Dispatch { at: None },
        };
        match self.repo.create_instance(rec, None) {
            Ok(c) => {
                if let Some(created) = c.value() {
                    if self.backfill_created.len() >= MAX_BACKFILL_TRACKED {
                        // Entries of runs whose creation failed: the live ones are held.
                        let active = &self.active;
                        self.backfill_created
                            .retain(|id, _| active.contains_key(id));
                    }
                    self.backfill_created.insert(created.id, now);
                }
                Ok((c, then))
            }
            Err(e) => {
                self.create_failed(then);
                Err(e.into())
            }
        }
    }

    /// Stop, cancel or retry `app`'s instance `iid`, which the core holds: the transition's
    /// write, submitted.
    pub(crate) fn command_held(
        &mut self,
        app: AppId,
        iid: InstanceId,
        action: InstanceAction,
        now: EpochMs,
    ) -> Option<Result<CommandWrite, ApiError>> {
        if let Err(e) = self.acting_for(app) {
            return Some(Err(e.into()));
        }
        self.with_inst(iid, |core, st| {
            if st.rec.app_id != app {
                return Err(ApiError::not_found("instance", iid.0));
            }
            let old = st.rec.status;
            let follow = match action {
                InstanceAction::Stop => {
                    st.rec.stop(now)?;
                    Follow::Final {
                        id: iid,
                        job: st.rec.job_id,
                        run: st.rec.run,
                    }
                }
                InstanceAction::Cancel => {
                    st.rec.cancel(now)?;
                    Follow::Final {
                        id: iid,
                        job: st.rec.job_id,
                        run: st.rec.run,
                    }
                }
                InstanceAction::Retry => {
                    // Final but not yet dropped from memory.
                    st.rec.retry(now)?;
                    st.no_worker_attempts = 0;
                    st.ready_us = core.now_us;
                    Follow::Dispatch { id: iid, at: None }
                }
            };
            core.note(st.rec.job_id, Some(old), st.rec.status);
            let stop_on = (action == InstanceAction::Stop)
                .then(|| st.rec.worker.clone())
                .flatten();
            let commit = core
                .persist(st)
                .ok_or_else(|| ApiError::unavailable("the store refuses writes"))?;
            Ok((
                commit,
                Commanded {
                    app,
                    id: iid,
                    stop_on,
                    follow,
                },
                st.rec.clone(),
            ))
        })
    }

    /// Retries finished instance `rec` (read from the store; the core no longer holds it):
    /// the core owns it again, WAITING_DISPATCH; the write, submitted.
    pub(crate) fn retry_finished(
        &mut self,
        mut rec: InstanceRecord,
        now: EpochMs,
    ) -> Result<(Commit<()>, InstanceRecord), ApiError> {
        let id = rec.id;
        self.acting_for(rec.app_id)?;
        if self.active.contains_key(&id) {
            return Err(ApiError::conflict(format!(
                "instance {} changed; try again",
                id.0
            )));
        }
        if self.deleting.contains(&id) {
            return Err(ApiError::conflict(format!(
                "instance {} is being deleted",
                id.0
            )));
        }
        if !self.jobs.contains_key(&rec.job_id) {
            return Err(ApiError::conflict(format!(
                "instance {} cannot be retried: job {} was deleted",
                id.0, rec.job_id.0
            )));
        }
        let status = rec.status;
        rec.retry(now)?;
        let mut st = InstState::new(rec, self.now_us);
        st.persisted = Some(status);
        self.metrics
            .transition(Some(status), InstanceStatus::WaitingDispatch);
        let commit = self.persist(&mut st);
        let rec = st.rec.clone();
        self.active.insert(id, st);
        let commit = commit.ok_or_else(|| ApiError::unavailable("the store refuses writes"))?;
        Ok((commit, rec))
    }

    /// An instance command's write is acknowledged: stop the worker's run, follow up.
    pub(crate) fn commanded(&mut self, c: Commanded, now: EpochMs) {
        if let Some(w) = c.stop_on {
            self.send_stop(c.app, &w, c.id);
        }
        self.follow(c.follow, now);
    }
}
