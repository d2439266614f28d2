//! A workflow's backfill in the core: the trigger times of a past range, and one workflow
//! instance per time standing for it. The job backfill's twin (`commands.rs`): the same cap
//! ([`MAX_BACKFILL_RUNS`]), the same grid for FIXED_RATE and FIXED_DELAY, the same calendar
//! rule (an excluded time gets no run and is listed with its calendar). Where a job's
//! overlap policy SKIP refuses a run, a workflow's `max_instances` does (Conflict).

use serde_json::Map;

use crate::api::ApiError;
use crate::ids::{AppId, WorkflowId, WorkflowInstanceId};
use crate::schedule::{BackfillError, Schedule, MAX_BACKFILL_RUNS};
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy};

use super::{Transition, WfState};
use crate::server::core::Core;

impl Core {
    /// `app`'s live workflow `id`.
    fn wf_of_app(&self, app: AppId, id: WorkflowId) -> Result<&WfState, ApiError> {
        self.acting_for(app)?;
        self.workflow(id)
            .filter(|w| w.app == app)
            .ok_or_else(|| ApiError::not_found("workflow", id.0))
    }

    /// The trigger times of `app`'s workflow `id` in `[from, to)`, each with the calendar
    /// that excludes it: what a backfill of the range runs (see
    /// [`Schedule::backfill_times`]). Workflows follow the default lifecycle, as their fires
    /// do.
    pub(crate) fn wf_backfill_times(
        &self,
        app: AppId,
        id: WorkflowId,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<Vec<(EpochMs, Option<String>)>, ApiError> {
        let cur = self.wf_of_app(app, id)?.cur();
        let lifecycle = Lifecycle::default();
        let times = Schedule {
            expression: cur.dag.time_expression(),
            lifecycle: &lifecycle,
            misfire: MisfirePolicy::FireOnce,
        }
        .backfill_times(from, to, MAX_BACKFILL_RUNS)
        .map_err(|e| match e {
            BackfillError::EmptyRange { .. } => ApiError::invalid("from", e.to_string()),
            BackfillError::NoTriggers => ApiError::invalid(
                "to",
                format!("{id} runs only through the API: its time expression has no trigger times to backfill"),
            ),
            _ => ApiError::invalid("to", e.to_string()),
        })?;
        let calendars = &cur.dag.def().calendars;
        Ok(times
            .into_iter()
            .map(|t| (t, self.excluding_calendar(app, calendars, t)))
            .collect())
    }

    /// One backfill run of `app`'s workflow `id` for the past trigger time `trigger_time`:
    /// like an API run without delay or init params (Conflict at `max_instances`), but the
    /// workflow instance stands for `trigger_time`. Its creation, submitted.
    pub(crate) fn wf_prepare_backfill_run(
        &mut self,
        app: AppId,
        id: WorkflowId,
        trigger_time: EpochMs,
        now: EpochMs,
    ) -> Result<(WorkflowInstanceId, Transition), ApiError> {
        self.wf_of_app(app, id)?;
        self.wf_create_instance_at(id, Map::new(), None, None, 0, trigger_time, now)
            .map_err(|mut e| {
                if e.code == crate::api::ErrorCode::Conflict {
                    e.message = format!("backfill run at {trigger_time} skipped: {}", e.message);
                }
                e
            })
    }
}
