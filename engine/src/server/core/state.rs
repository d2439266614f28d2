//! What the core holds per job and per job instance: [`JobDef`] (the parsed definition),
//! [`JobState`] (the definition with its scheduling state), [`InstState`] (a non-final
//! instance in memory) and [`HeldView`] (what the API shows of it beyond the record).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::dispatch::{DispatchSpec, RoundRobinCursor};
use crate::ids::{InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::schedule::{RunningCount, Schedule};
use crate::server::{InstanceRecord, JobRecord, RepoError};
use crate::time_expression::{EpochMs, TimeExpression, TimeExpressionType};

/// A job's definition as the scheduler uses it: the record, its parsed expression and its
/// dispatch settings. Immutable; replaced as a whole on update.
#[derive(Debug)]
pub(crate) struct JobDef {
    pub(crate) record: JobRecord,
    pub(crate) expr: TimeExpression,
    pub(crate) spec: DispatchSpec,
}

impl JobDef {
    pub(crate) fn new(record: JobRecord) -> Result<JobDef, RepoError> {
        let expr = record.time_expression()?;
        let spec = DispatchSpec {
            execute_type: record.execute_type,
            strategy: record.dispatch_strategy,
            designated: record.designated_workers.clone(),
            min_cpu_cores: record.min_cpu_cores,
            min_memory_gb: record.min_memory_gb,
            min_disk_gb: record.min_disk_gb,
            max_worker_count: record.max_worker_count,
        };
        Ok(JobDef { record, expr, spec })
    }

    /// The job's schedule: its expression, lifecycle window and misfire policy.
    pub(crate) fn schedule(&self) -> Schedule<'_> {
        Schedule {
            expression: &self.expr,
            lifecycle: &self.record.lifecycle,
            misfire: self.record.misfire,
        }
    }

    /// The job's first trigger when (re)scheduled at `now` (created, enabled, updated,
    /// FIXED_DELAY re-armed): `None` when disabled or never firing on its own.
    pub(crate) fn initial_next(&self, now: EpochMs) -> Option<EpochMs> {
        if !self.record.enabled {
            return None;
        }
        self.schedule().first_trigger(now, now)
    }

    pub(crate) fn is_fixed_delay(&self) -> bool {
        self.record.time_expression_type == TimeExpressionType::FixedDelay
    }
}

/// One job's scheduling state.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) id: JobId,
    pub(crate) app: Arc<str>,
    pub(crate) def: Arc<JobDef>,
    /// Bumped whenever the schedule changes: armed wheel events of older generations are
    /// ignored.
    pub(crate) gen: u64,
    /// Instances of the job in WAITING_WORKER_RECEIVE or RUNNING (max_instances).
    pub(crate) running: RunningCount,
    pub(crate) cursor: RoundRobinCursor,
    /// Final transitions since the last prune.
    pub(crate) finished_since_prune: u32,
    /// Its deletion is being written: nothing new starts for it.
    pub(crate) deleted: bool,
    /// WAITING_DISPATCH instances held by the QUEUE overlap policy, oldest first (at most
    /// [`MAX_QUEUED_RUNS`]).
    pub(crate) queue: VecDeque<InstanceId>,
    /// Runs the SKIP overlap policy skipped since the server started.
    pub(crate) skipped: u64,
    /// Scheduled triggers its calendars excluded since the server started.
    pub(crate) calendar_skipped: u64,
}

impl JobState {
    pub(crate) fn new(app: Arc<str>, def: JobDef) -> JobState {
        JobState {
            id: def.record.id,
            app,
            def: Arc::new(def),
            gen: 1,
            running: RunningCount::new(),
            cursor: RoundRobinCursor::new(),
            finished_since_prune: 0,
            deleted: false,
            queue: VecDeque::new(),
            skipped: 0,
            calendar_skipped: 0,
        }
    }

    pub(crate) fn def(&self) -> Arc<JobDef> {
        Arc::clone(&self.def)
    }
}

/// One non-final instance, owned by the core.
#[derive(Debug)]
pub(crate) struct InstState {
    pub(crate) rec: InstanceRecord,
    /// When it last became WAITING_DISPATCH, clock µs (dispatch latency).
    pub(crate) ready_us: i64,
    /// Dispatch attempts in a row that found no eligible worker.
    pub(crate) no_worker_attempts: u32,
    /// The worker its last attempt failed on (a retry prefers another one).
    pub(crate) avoid: Option<String>,
    /// The status last submitted to the store (`None`: unknown, write every index row).
    pub(crate) persisted: Option<InstanceStatus>,
    /// MAP / MAP_REDUCE task counts as last reported (memory only).
    pub(crate) tasks: Option<crate::api::TaskProgress>,
    /// The liveness time its current attempt was handed over at: its receive and run checks
    /// count from here on the monotonic clock (a wall clock stepped forward fires their
    /// timers early; they then wait for the rest).
    pub(crate) handed_live: EpochMs,
    /// When its next attempt is due after a failed one (the retry backoff), clock ms.
    pub(crate) retry_at: Option<EpochMs>,
}

/// What the API shows of a held instance that its record does not hold.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeldView {
    /// MAP / MAP_REDUCE task counts as last reported.
    pub(crate) tasks: Option<crate::api::TaskProgress>,
    /// When its next attempt is due after a failed one.
    pub(crate) next_retry_at: Option<EpochMs>,
}

impl InstState {
    /// A record as it is stored now, ready at `now_us`.
    pub(crate) fn new(rec: InstanceRecord, now_us: i64) -> InstState {
        let status = rec.status;
        InstState {
            rec,
            ready_us: now_us,
            no_worker_attempts: 0,
            avoid: None,
            persisted: Some(status),
            tasks: None,
            handed_live: i64::MIN,
            retry_at: None,
        }
    }

    /// What the API shows of it beyond its record.
    pub(crate) fn held_view(&self) -> HeldView {
        HeldView {
            tasks: self.tasks,
            next_retry_at: self
                .retry_at
                .filter(|_| self.rec.status == InstanceStatus::WaitingDispatch),
        }
    }
}
