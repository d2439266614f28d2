//! What the embedded scheduler tells its subscribers after every run.

use crate::clock::EpochUs;
use crate::ids::{InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

/// The end of one run (or of a trigger that did not run), as sent to
/// [`Scheduler::subscribe`](super::Scheduler::subscribe)rs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The job.
    pub job_id: JobId,
    /// The run.
    pub instance_id: InstanceId,
    /// The trigger time the run served (ms since the epoch).
    pub scheduled_at: EpochMs,
    /// When the scheduler fired it (µs since the epoch).
    pub fired_at_us: EpochUs,
    /// When the run ended (µs since the epoch).
    pub finished_at_us: EpochUs,
    /// Attempts made (0 when the run was skipped).
    pub attempts: u32,
    /// How it ended.
    pub outcome: RunOutcome,
}

impl RunReport {
    /// The instance status this report puts the run in.
    pub fn status(&self) -> InstanceStatus {
        match self.outcome {
            RunOutcome::Succeeded { .. } => InstanceStatus::Succeed,
            RunOutcome::Failed { .. } | RunOutcome::TimedOut | RunOutcome::Skipped { .. } => {
                InstanceStatus::Failed
            }
            RunOutcome::Cancelled => InstanceStatus::Stopped,
        }
    }

    /// How late the fire was: `fired_at_us - scheduled_at · 1000`, in microseconds.
    pub fn lateness_us(&self) -> i64 {
        self.fired_at_us - self.scheduled_at.saturating_mul(1000)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The processor returned `Ok(result)`.
    Succeeded {
        /// The processor's result text.
        result: String,
    },
    /// The last attempt returned an error (or panicked).
    Failed {
        /// The error's text.
        error: String,
    },
    /// The last attempt exceeded the job's timeout and was cancelled.
    TimedOut,
    /// The scheduler shut down while the run was in progress.
    Cancelled,
    /// The trigger did not run.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
}

/// Why a trigger did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The job already had `max_instances` runs in progress.
    TooManyInstances,
    /// The job was removed before its delayed manual trigger came due.
    JobRemoved,
    /// The trigger was missed by more than the misfire threshold and the job's policy is
    /// `SKIP` (or `FIRE_ALL` beyond its bound); `missed` counts the triggers dropped.
    Misfired {
        /// How many triggers were dropped.
        missed: u64,
    },
}
