//! `POST /v1/apps/{app}/jobs/{id}/backfill` and `POST /v1/apps/{app}/workflows/{id}/backfill`:
//! runs a job or a workflow once per trigger time of its time expression in a past range,
//! each run carrying its logical trigger time. Both take the same [`Backfill`] request and
//! apply the same cap, dry run and calendars; a job's answer names job instances
//! ([`BackfillResult`]), a workflow's names workflow instances ([`WorkflowBackfillResult`]).

use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::ids::{InstanceId, WorkflowInstanceId};
use crate::time_expression::EpochMs;

pub use crate::schedule::MAX_BACKFILL_RUNS;

/// `POST /v1/apps/{app}/jobs/{id}/backfill` and `.../workflows/{id}/backfill` body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backfill {
    /// Start of the range, epoch ms (inclusive).
    pub from: EpochMs,
    /// End of the range, epoch ms (exclusive); not after the server's now.
    pub to: EpochMs,
    /// List the trigger times without creating any run.
    #[serde(default)]
    pub dry_run: bool,
}

impl Backfill {
    /// Refuses a range that ends in the future: a backfill fills the past, the schedule does
    /// the rest.
    pub fn check(&self, now: EpochMs) -> Result<(), ApiError> {
        if self.to > now {
            return Err(ApiError::invalid(
                "to",
                format!(
                    "{} is in the future (now is {now}); a backfill covers the past",
                    self.to
                ),
            ));
        }
        Ok(())
    }
}

/// `POST /v1/apps/{app}/jobs/{id}/backfill` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillResult {
    /// One entry per trigger time of the range, ascending (at most [`MAX_BACKFILL_RUNS`]).
    pub runs: Vec<BackfillRun>,
    /// Whether this was a dry run (no run was created).
    pub dry_run: bool,
}

/// One trigger time of a backfill and its run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillRun {
    /// The trigger time the run stands for, epoch ms.
    pub trigger_time: EpochMs,
    /// The run created; null on a dry run, when the job's overlap policy SKIP skipped it
    /// (`max_instances` running), or when a calendar excludes the time.
    pub instance_id: Option<InstanceId>,
    /// The job's calendar that excludes this trigger time (no run is created for it, dry run
    /// or not); omitted when none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<String>,
}

/// `POST /v1/apps/{app}/workflows/{id}/backfill` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowBackfillResult {
    /// One entry per trigger time of the range, ascending (at most [`MAX_BACKFILL_RUNS`]).
    pub runs: Vec<WorkflowBackfillRun>,
    /// Whether this was a dry run (no workflow instance was created).
    pub dry_run: bool,
}

/// One trigger time of a workflow backfill and its workflow instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowBackfillRun {
    /// The trigger time the workflow instance stands for, epoch ms.
    pub trigger_time: EpochMs,
    /// The workflow instance created; null on a dry run, when the workflow's
    /// `max_instances` instances were running, or when a calendar excludes the time.
    pub workflow_instance_id: Option<WorkflowInstanceId>,
    /// The workflow's calendar that excludes this trigger time (no instance is created for
    /// it, dry run or not); omitted when none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<String>,
}
