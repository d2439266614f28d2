//! [`InstanceRecord`]: one run of a job, and its lifecycle as methods that refuse illegal
//! transitions.
//!
//! ```text
//!                 dispatch                 report RUNNING          report SUCCEED/FAILED
//!  WAITING_DISPATCH ─────► WAITING_WORKER_RECEIVE ─────► RUNNING ──────────────► SUCCEED | FAILED
//!     │   ▲   │                   │      │                │   │
//!     │   │   │ fail              │      └─ requeue ──┐   │   └─ stop ─► STOPPED
//!     │   │   └──────► FAILED     └─ stop ─► STOPPED  │   └─ requeue ─┐
//!     │   └────────────── requeue (receive timeout, dead worker) ◄────┘
//!     └─ cancel ─► CANCELED
//!   any final status ── retry ──► WAITING_DISPATCH
//! ```
//!
//! Worker reports carry a sequence number and their source (the worker's address).
//! [`InstanceRecord::apply_report`] drops a report from any worker but the instance's current
//! one (split brain), one with a sequence number below the last applied (stale), and makes one
//! with the same sequence number a no-op (duplicate), so a report delivered twice never makes
//! a second transition.
//!
//! Each attempt numbers its reports in a range of its own: [`InstanceRecord::dispatch`] moves
//! `report_seq` to the attempt's base, `attempt << 32`, which the server hands to the worker
//! to count from. A late report of an earlier attempt (even from the same worker) is then below
//! the base and stale; a report numbered beyond its attempt's range is refused
//! ([`ReportOutcome::OutOfRange`]), so one report with a huge number cannot make every later
//! attempt's reports stale.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

use super::error::RepoError;
use super::records::{truncate_marked, MAX_PARAMS_LEN};
use crate::ids::AppId;

/// Largest stored result, in bytes (64 KiB). A longer result is cut at a char boundary and
/// marked `...[N bytes truncated]`, so it is at most `MAX_RESULT_LEN + 32` bytes.
pub const MAX_RESULT_LEN: usize = 64 << 10;

/// One run of a job.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Assigned by the repo when the instance is inserted.
    pub id: InstanceId,
    /// Its job.
    pub job_id: JobId,
    /// Its job's app.
    pub app_id: AppId,
    /// Where it is in its life.
    pub status: InstanceStatus,
    /// The processor's result or the failure reason; at most [`MAX_RESULT_LEN`] (+ marker).
    pub result: Option<String>,
    /// Instance params (API runs), at most [`MAX_PARAMS_LEN`] bytes.
    pub params: String,
    /// When it was meant to fire, ms since the epoch.
    pub trigger_time: EpochMs,
    /// When it was last dispatched, ms since the epoch.
    pub actual_trigger_time: Option<EpochMs>,
    /// When it reached a final status, ms since the epoch.
    pub finished_time: Option<EpochMs>,
    /// The worker (address) it was last dispatched to.
    pub worker: Option<String>,
    /// How many times it has been dispatched (attempts so far).
    pub running_times: u32,
    /// Sequence number of the last applied report (0 = none yet).
    pub report_seq: u64,
    /// When the last report was applied, ms since the epoch.
    pub last_report_time: Option<EpochMs>,
    /// When the status last changed, ms since the epoch (the server's checkers use it:
    /// stuck in WAITING_DISPATCH, WAITING_WORKER_RECEIVE, RUNNING without reports).
    pub status_time: EpochMs,
    /// The job's fire number this instance was created by (1-based; 0 for API and retried
    /// runs not created by [`Repo::fire`](super::Repository::fire)).
    pub run: u64,
    /// When its current attempt started running on its worker, ms since the epoch (see
    /// [`InstanceRecord::note_started`]); `None` until the worker says so, and again from each
    /// dispatch on.
    pub started_time: Option<EpochMs>,
}

/// What [`InstanceRecord::apply_report`] did with a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportOutcome {
    /// The report was applied (the record changed and must be saved).
    Applied,
    /// Same sequence number as the last applied report: nothing changed.
    Duplicate,
    /// Sequence number below the last applied report: dropped.
    Stale,
    /// From a worker other than the instance's current one: dropped.
    Foreign,
    /// The instance already reached a final status: dropped.
    Finished,
    /// Numbered beyond the current attempt's range (see the module docs): dropped.
    OutOfRange,
}

/// The first report sequence number of attempt `attempt` is `attempt_base(attempt) + 1`.
pub fn attempt_base(attempt: u32) -> u64 {
    u64::from(attempt) << 32
}

impl InstanceRecord {
    /// What this run is for, the same for every attempt and across restarts (processors
    /// de-duplicate by it): `job-{job}-at-{trigger_time}` for a scheduled fire (`run > 0`:
    /// one instance per job and trigger time), `instance-{id}` for every other run (API,
    /// backfill, workflow node), whose instance is its only identity.
    pub fn trigger_key(&self) -> String {
        if self.run > 0 {
            format!("job-{}-at-{}", self.job_id.0, self.trigger_time)
        } else {
            format!("instance-{}", self.id.0)
        }
    }

    /// A new WAITING_DISPATCH instance of `job_id` meant to fire at `trigger_time`
    /// (`status_time` = `trigger_time`; the id is assigned on insert).
    pub fn new(
        job_id: JobId,
        app_id: AppId,
        params: impl Into<String>,
        trigger_time: EpochMs,
    ) -> InstanceRecord {
        InstanceRecord {
            id: InstanceId(0),
            job_id,
            app_id,
            status: InstanceStatus::WaitingDispatch,
            result: None,
            params: params.into(),
            trigger_time,
            actual_trigger_time: None,
            finished_time: None,
            worker: None,
            running_times: 0,
            report_seq: 0,
            last_report_time: None,
            status_time: trigger_time,
            run: 0,
            started_time: None,
        }
    }

    /// Checks the sizes of user-fed fields.
    pub fn validate(&self) -> Result<(), RepoError> {
        if self.params.len() > MAX_PARAMS_LEN {
            return Err(RepoError::invalid(
                "params",
                format!("at most {MAX_PARAMS_LEN} bytes, got {}", self.params.len()),
            ));
        }
        if let Some(r) = &self.result {
            if r.len() > MAX_RESULT_LEN + 32 {
                return Err(RepoError::invalid("result", "exceeds the result cap"));
            }
        }
        Ok(())
    }

    fn illegal(&self, action: &'static str) -> RepoError {
        RepoError::IllegalTransition {
            instance: self.id.0,
            from: self.status,
            action,
        }
    }

    fn set_status(&mut self, status: InstanceStatus, now: EpochMs) {
        self.status = status;
        self.status_time = now;
        if status.is_final() {
            self.finished_time = Some(now);
        }
    }

    /// WAITING_DISPATCH → WAITING_WORKER_RECEIVE: handed to `worker`; counts an attempt and
    /// moves `report_seq` to the attempt's base (the worker counts its reports from there).
    pub fn dispatch(&mut self, worker: &str, now: EpochMs) -> Result<(), RepoError> {
        if self.status != InstanceStatus::WaitingDispatch {
            return Err(self.illegal("dispatch"));
        }
        if self.running_times == u32::MAX {
            return Err(self.illegal("dispatch (attempts exhausted)"));
        }
        self.worker = Some(worker.to_owned());
        self.running_times += 1;
        self.report_seq = self.report_seq.max(attempt_base(self.running_times));
        self.actual_trigger_time = Some(now);
        self.started_time = None;
        self.set_status(InstanceStatus::WaitingWorkerReceive, now);
        Ok(())
    }

    /// Notes that the current attempt started running on its worker at `reported` (the
    /// worker's wall clock, from a report or an answer of the attempt's worker) as the server
    /// saw it at `now`. The first start of an attempt is kept; later ones are ignored.
    ///
    /// The worker's clock is another machine's: the time is kept as reported but never
    /// earlier than the attempt's dispatch nor later than `now` on the server's clock, so
    /// trigger ≤ dispatch ≤ start ≤ finish holds on the server's timeline (a worker clock
    /// running behind or ahead by up to the attempt's run time still shows as reported).
    pub fn note_started(&mut self, reported: EpochMs, now: EpochMs) {
        let (None, Some(dispatched)) = (self.started_time, self.actual_trigger_time) else {
            return;
        };
        self.started_time = Some(reported.min(now).max(dispatched));
    }

    /// Applies a worker's status report (see the module docs for what is dropped).
    ///
    /// `status` may be RUNNING, SUCCEED, FAILED or STOPPED (a worker confirming a stop);
    /// anything else is an illegal transition. `result` is capped at [`MAX_RESULT_LEN`].
    pub fn apply_report(
        &mut self,
        seq: u64,
        source: &str,
        status: InstanceStatus,
        result: Option<&str>,
        now: EpochMs,
    ) -> Result<ReportOutcome, RepoError> {
        if self.status.is_final() {
            return Ok(ReportOutcome::Finished);
        }
        if self.worker.as_deref() != Some(source) {
            return Ok(ReportOutcome::Foreign);
        }
        if seq >= attempt_base(self.running_times.saturating_add(1)) {
            return Ok(ReportOutcome::OutOfRange);
        }
        if seq < self.report_seq {
            return Ok(ReportOutcome::Stale);
        }
        if seq == self.report_seq {
            return Ok(ReportOutcome::Duplicate);
        }
        match (self.status, status) {
            (
                InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running,
                InstanceStatus::Running
                | InstanceStatus::Succeed
                | InstanceStatus::Failed
                | InstanceStatus::Stopped,
            ) => {}
            (_, InstanceStatus::Running) => return Err(self.illegal("report RUNNING")),
            (_, InstanceStatus::Succeed) => return Err(self.illegal("report SUCCEED")),
            (_, InstanceStatus::Failed) => return Err(self.illegal("report FAILED")),
            (_, InstanceStatus::Stopped) => return Err(self.illegal("report STOPPED")),
            _ => return Err(self.illegal("report a status workers do not report")),
        }
        self.report_seq = seq;
        self.last_report_time = Some(now);
        if let Some(r) = result {
            self.result = Some(truncate_marked(r, MAX_RESULT_LEN));
        }
        if status != self.status {
            self.set_status(status, now);
        }
        Ok(ReportOutcome::Applied)
    }

    /// Applies a worker's answer to a status query about the attempt it holds (restart or
    /// reconnection reconciliation; answers carry no sequence number): RUNNING confirms a
    /// WAITING_WORKER_RECEIVE instance, SUCCEED, FAILED and STOPPED end it (a result is capped
    /// like a report's). Only from WAITING_WORKER_RECEIVE or RUNNING.
    pub fn apply_answer(
        &mut self,
        status: InstanceStatus,
        result: Option<&str>,
        now: EpochMs,
    ) -> Result<(), RepoError> {
        let from_dispatched = matches!(
            self.status,
            InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running
        );
        match status {
            InstanceStatus::Running if from_dispatched => {
                if self.status != InstanceStatus::Running {
                    self.set_status(InstanceStatus::Running, now);
                }
            }
            InstanceStatus::Succeed | InstanceStatus::Failed | InstanceStatus::Stopped
                if from_dispatched =>
            {
                if let Some(r) = result {
                    self.result = Some(truncate_marked(r, MAX_RESULT_LEN));
                }
                self.set_status(status, now);
            }
            _ => return Err(self.illegal("apply a worker's answer")),
        }
        Ok(())
    }

    /// WAITING_DISPATCH → CANCELED (the API's cancel; only before dispatch).
    pub fn cancel(&mut self, now: EpochMs) -> Result<(), RepoError> {
        if self.status != InstanceStatus::WaitingDispatch {
            return Err(self.illegal("cancel"));
        }
        self.set_status(InstanceStatus::Canceled, now);
        Ok(())
    }

    /// WAITING_WORKER_RECEIVE | RUNNING → STOPPED (the API's stop).
    pub fn stop(&mut self, now: EpochMs) -> Result<(), RepoError> {
        if !matches!(
            self.status,
            InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running
        ) {
            return Err(self.illegal("stop"));
        }
        self.set_status(InstanceStatus::Stopped, now);
        Ok(())
    }

    /// Any non-final status → FAILED, with `reason` as the result (no eligible worker, too
    /// many instances, timeout, retries exhausted).
    pub fn fail(&mut self, reason: &str, now: EpochMs) -> Result<(), RepoError> {
        if self.status.is_final() {
            return Err(self.illegal("fail"));
        }
        self.result = Some(truncate_marked(reason, MAX_RESULT_LEN));
        self.set_status(InstanceStatus::Failed, now);
        Ok(())
    }

    /// WAITING_WORKER_RECEIVE | RUNNING → WAITING_DISPATCH: the worker never confirmed, died,
    /// or the run is retried by the instance retry policy. The worker is forgotten, so its late
    /// reports are foreign; `report_seq` is kept.
    pub fn requeue(&mut self, now: EpochMs) -> Result<(), RepoError> {
        if !matches!(
            self.status,
            InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running
        ) {
            return Err(self.illegal("requeue"));
        }
        self.worker = None;
        self.set_status(InstanceStatus::WaitingDispatch, now);
        Ok(())
    }

    /// Any final status → WAITING_DISPATCH (the API's retry): result and finish time cleared.
    pub fn retry(&mut self, now: EpochMs) -> Result<(), RepoError> {
        if !self.status.is_final() {
            return Err(self.illegal("retry"));
        }
        self.worker = None;
        self.result = None;
        self.finished_time = None;
        self.set_status(InstanceStatus::WaitingDispatch, now);
        Ok(())
    }
}
