//! An attempt's outcome: worker reports, the retry policy, final transitions (FIXED_DELAY
//! re-arm, pruning old runs).

use ferrojob_transport::message::{self as wire, ReportInstanceStatus};

use crate::ids::{AppId, InstanceId, JobId};
use crate::model::{ExecuteType, InstanceStatus};
use crate::server::{records::truncate_marked, ReportOutcome, MAX_RESULT_LEN};
use crate::time_expression::EpochMs;

use super::write::Follow;
use super::{Awaited, Core, Effect, InstState, Then, TimerEv};

/// Grace beyond the job's timeout before the server fails a silent run itself, ms.
pub(crate) const RUN_SAFETY_MARGIN_MS: i64 = 30_000;

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Yes,
    /// Dropped: stale, duplicate, out of range, or not this app's.
    No,
    /// From a worker that does not hold the instance's current attempt, or for an instance
    /// already final.
    NotItsRun,
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

impl Core {
    /// WAITING_WORKER_RECEIVE | RUNNING → WAITING_DISPATCH without consuming a retry (the
    /// worker never confirmed), dispatched again at once preferring another worker.
    pub(crate) fn requeue_plain(&mut self, st: &mut InstState, now: EpochMs) -> Follow {
        let old = st.rec.status;
        st.avoid = st.rec.worker.clone();
        if st.rec.requeue(now).is_err() {
            return Follow::Nothing;
        }
        st.ready_us = self.now_us;
        self.note(st.rec.job_id, Some(old), st.rec.status);
        Follow::Dispatch {
            id: st.rec.id,
            at: None,
        }
    }

    /// An attempt failed (`old` = the status before this operation; the record may already be
    /// FAILED by a report): requeue with `reason` when retries are left (after the job's
    /// `retry_backoff` when `backoff`, jittered by the instance id), else FAILED with
    /// `reason`.
    pub(crate) fn retry_policy(
        &mut self,
        st: &mut InstState,
        reason: &str,
        old: InstanceStatus,
        now: EpochMs,
        backoff: bool,
    ) -> Follow {
        let job = st.rec.job_id;
        let policy = self
            .live_job(job)
            .map(|j| (j.def.record.instance_retries, j.def.record.retry_backoff));
        let retries = policy.map(|p| p.0);
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
                st.ready_us = self.now_us;
                self.note(job, Some(old), st.rec.status);
                let delay_ms = match policy.filter(|_| backoff) {
                    Some((_, b)) => i64::try_from(b.delay_ms(attempts, id.0)).unwrap_or(i64::MAX),
                    None => 0,
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
                st.retry_at = at;
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

    /// Any non-final status → FAILED now, no retry.
    pub(crate) fn fail_now(&mut self, st: &mut InstState, reason: &str, now: EpochMs) -> Follow {
        let old = st.rec.status;
        if st.rec.fail(reason, now).is_err() {
            return Follow::Nothing;
        }
        self.note(st.rec.job_id, Some(old), st.rec.status);
        Follow::Final {
            id: st.rec.id,
            job: st.rec.job_id,
            run: st.rec.run,
        }
    }

    /// Applies one worker report (from the authenticated worker `source` of `app`). A
    /// report for another app's instance, or one that changes nothing, is dropped.
    pub(crate) fn on_report(
        &mut self,
        app: AppId,
        source: &str,
        r: &ReportInstanceStatus,
        now: EpochMs,
    ) {
        let id = InstanceId(r.instance_id);
        if r.source_address != source || self.epoch_of(app).is_none() {
            self.metrics.count_report_dropped();
            return;
        }
        let outcome = self.with_inst(id, |core, st| core.apply_report(app, source, st, r, now));
        match outcome {
            Some(Applied::Yes) => {}
            Some(Applied::No) => self.metrics.count_report_dropped(),
            // The worker runs an attempt the server no longer gives it (handed to another
            // worker while it was thought dead, or already ended): stop it there.
            Some(Applied::NotItsRun) | None => {
                self.metrics.count_report_dropped();
                if from_wire(&r.status) == InstanceStatus::Running {
                    self.send_stop(app, source, id);
                }
            }
        }
    }

    fn apply_report(
        &mut self,
        app: AppId,
        source: &str,
        st: &mut InstState,
        r: &ReportInstanceStatus,
        now: EpochMs,
    ) -> Applied {
        let id = st.rec.id;
        if st.rec.app_id != app {
            return Applied::No;
        }
        let old = st.rec.status;
        let status = from_wire(&r.status);
        match st
            .rec
            .apply_report(r.report_seq, source, status, r.result.as_deref(), now)
        {
            Ok(ReportOutcome::Applied) => {}
            Ok(outcome @ (ReportOutcome::Foreign | ReportOutcome::Finished)) => {
                tracing::debug!(instance = id.0, ?outcome, "report dropped");
                return Applied::NotItsRun;
            }
            Ok(outcome) => {
                tracing::debug!(instance = id.0, ?outcome, "report dropped");
                return Applied::No;
            }
            Err(e) => {
                tracing::debug!(instance = id.0, error = %e, "report refused");
                return Applied::No;
            }
        }
        // Every status a worker reports means the attempt has started there (a run may be
        // over before its RUNNING report is sent): its first report gives the start time.
        st.rec.note_started(r.start_time_ms, now);
        if st.rec.status.is_final() {
            self.wf_reported(id);
        }
        let job = st.rec.job_id;
        let mapped = self.jobs.get(&job).is_some_and(|j| {
            matches!(
                j.def.record.execute_type,
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
                self.retry_policy(st, &reason, old, now, true)
            }
            s if s.is_final() => {
                self.note(job, Some(old), s);
                Follow::Final {
                    id,
                    job,
                    run: st.rec.run,
                }
            }
            s => {
                // RUNNING (and its keepalives) stays in memory: the store keeps the
                // WAITING_WORKER_RECEIVE write, and after a restart the worker is asked
                // (QueryInstanceStatus), so nothing acknowledged depends on this write.
                self.note(job, Some(old), s);
                return Applied::Yes;
            }
        };
        // A workflow node's end: saved with the workflow's transition in one batch.
        if matches!(follow, Follow::Final { .. }) && self.wf_push_batched(st, now) {
            return Applied::Yes;
        }
        self.save(st, follow);
        Applied::Yes
    }

    /// After a final write: drop the instance from memory, re-arm a FIXED_DELAY job from this
    /// completion, prune old finished runs.
    pub(crate) fn finalize(&mut self, id: InstanceId, job_id: JobId, run: u64, now: EpochMs) {
        let done = self
            .active
            .get(&id)
            .is_some_and(|st| st.rec.status.is_final());
        if done {
            let queued = self.jobs.get_mut(&job_id).is_some_and(|j| {
                let before = j.queue.len();
                j.queue.retain(|q| *q != id);
                j.queue.len() != before
            });
            if queued {
                // It may have been the head woken for a free slot: wake the next one.
                self.wake_queue(job_id);
            }
            if let Some(st) = self.active.remove(&id) {
                let s = st.rec.status;
                self.metrics.finished(s);
                self.stats.finished(st.rec.app_id, s, now);
                if let Some(node) = self.node_runs.remove(&id) {
                    self.wf_job_final(id, node, s, st.rec.result, now);
                }
            }
        }
        let keep = self.config.keep_finished_runs;
        let Some(job) = self.jobs.get_mut(&job_id).filter(|j| !j.deleted) else {
            return;
        };
        // Keep the newest `keep_finished_runs` finished instances of the job, of every kind;
        // pruned a quarter of that count at a time, in the background.
        let every = u32::try_from(keep / 4).unwrap_or(u32::MAX).max(1);
        job.finished_since_prune += 1;
        let prune = job.finished_since_prune >= every;
        if prune {
            job.finished_since_prune = 0;
        }
        let def = job.def();
        let gen = job.gen;
        if prune {
            self.emit(Effect::Prune(job_id));
        }
        if run == 0 {
            return;
        }
        if def.is_fixed_delay()
            && def.record.enabled
            && self
                .repo
                .trigger(job_id)
                .is_some_and(|t| t.next_trigger.is_none())
        {
            if let Some(next) = def.initial_next(now) {
                match self.repo.set_next_trigger_if(job_id, Some(next), || true) {
                    Ok(None) => {}
                    Ok(Some(c)) => {
                        let c = c.discard_value();
                        let ev = TimerEv::Job {
                            job: job_id,
                            gen,
                            due: next,
                        };
                        self.emit(Effect::Await(Awaited::Write(c, Then::Arm { at: next, ev })));
                    }
                    Err(e) => self.write_failed(&e),
                }
            }
        }
    }
}
