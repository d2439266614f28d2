//! [`Api::backfill_job`](crate::api::Api::backfill_job) and
//! [`Api::backfill_workflow`](crate::api::Api::backfill_workflow): the trigger times of a
//! past range from the job's or workflow's schedule, then one run per time, each written
//! like an API run but standing for its time. Every run's write is submitted before any is
//! awaited, so they share the store's group commits.

use std::sync::Arc;

use crate::api::{
    ApiError, AppRef, Backfill, BackfillResult, BackfillRun, ErrorCode, WorkflowBackfillResult,
    WorkflowBackfillRun,
};
use crate::ids::{JobId, WorkflowId, WorkflowInstanceId};

use super::api::PendingRun;
use super::driver::Runtime;

/// Lists the range's trigger times and, unless it is a dry run, creates their runs: every
/// run's write is submitted first, then all are awaited (they share the store's group
/// commits). A time one of the job's calendars excludes gets no run (it is listed with the
/// calendar, dry run or not). A run the overlap policy SKIP refuses is counted, not an error; another error
/// stops the backfill there (the runs already submitted still start) and is the answer.
pub(super) async fn backfill(
    rt: Arc<Runtime>,
    app: AppRef,
    id: JobId,
    req: Backfill,
) -> Result<BackfillResult, ApiError> {
    req.check(rt.now())?;
    let trigger_times = rt
        .core
        .lock()
        .backfill_times(app.id, id, req.from, req.to)?;
    if req.dry_run {
        return Ok(BackfillResult {
            runs: trigger_times
                .into_iter()
                .map(|(trigger_time, excluded_by)| BackfillRun {
                    trigger_time,
                    instance_id: None,
                    excluded_by,
                })
                .collect(),
            dry_run: true,
        });
    }
    // Per trigger time, its run's pending write (`None`: skipped) and the calendar that
    // excludes it.
    let mut pending = Vec::with_capacity(trigger_times.len());
    let mut failed = None;
    for (at, excluded_by) in trigger_times {
        if excluded_by.is_some() {
            pending.push((at, None, excluded_by));
            continue;
        }
        match rt.step(|core, now| core.prepare_backfill_run(app.id, id, at, now)) {
            Ok(submitted) => pending.push((
                at,
                Some(PendingRun {
                    rt: Arc::clone(&rt),
                    inner: Some(submitted),
                }),
                None,
            )),
            Err(e) if e.code == ErrorCode::Conflict => pending.push((at, None, None)),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut runs = Vec::with_capacity(pending.len());
    for (trigger_time, run, excluded_by) in pending {
        let instance_id = match run {
            None => None,
            Some(run) => match run.finish().await {
                Ok(iid) => Some(iid),
                Err(e) => {
                    failed.get_or_insert(e.into());
                    None
                }
            },
        };
        runs.push(BackfillRun {
            trigger_time,
            instance_id,
            excluded_by,
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    tracing::info!(
        job = id.0,
        from = req.from,
        to = req.to,
        runs = runs.iter().filter(|r| r.instance_id.is_some()).count(),
        skipped = runs.iter().filter(|r| r.instance_id.is_none()).count(),
        excluded = runs.iter().filter(|r| r.excluded_by.is_some()).count(),
        "backfill"
    );
    Ok(BackfillResult {
        runs,
        dry_run: false,
    })
}

/// The workflow's twin of [`backfill`]: a time a calendar of the workflow excludes gets no
/// workflow instance (listed with the calendar); one `max_instances` refuses is skipped
/// (Conflict, counted, not an error); another error stops the backfill there (the
/// instances already submitted still start) and is the answer. Each transition is awaited
/// in a task of its own, so what it created starts even if the caller goes away.
pub(super) async fn backfill_workflow(
    rt: Arc<Runtime>,
    app: AppRef,
    id: WorkflowId,
    req: Backfill,
) -> Result<WorkflowBackfillResult, ApiError> {
    req.check(rt.now())?;
    let trigger_times = rt
        .core
        .lock()
        .wf_backfill_times(app.id, id, req.from, req.to)?;
    if req.dry_run {
        return Ok(WorkflowBackfillResult {
            runs: trigger_times
                .into_iter()
                .map(|(trigger_time, excluded_by)| WorkflowBackfillRun {
                    trigger_time,
                    workflow_instance_id: None,
                    excluded_by,
                })
                .collect(),
            dry_run: true,
        });
    }
    type Started = tokio::task::JoinHandle<Result<WorkflowInstanceId, ApiError>>;
    // Per trigger time, its workflow instance's pending write (`None`: skipped) and the
    // calendar that excludes it.
    let mut pending: Vec<(i64, Option<Started>, Option<String>)> =
        Vec::with_capacity(trigger_times.len());
    let mut failed = None;
    for (at, excluded_by) in trigger_times {
        if excluded_by.is_some() {
            pending.push((at, None, excluded_by));
            continue;
        }
        match rt.step(|core, now| core.wf_prepare_backfill_run(app.id, id, at, now)) {
            Ok((wfi, (commit, follow))) => {
                let rt = Arc::clone(&rt);
                let started = tokio::spawn(async move {
                    let r = rt.await_commit(commit).await;
                    let ok = r.is_ok();
                    rt.step(|core, now| core.complete(follow, ok, now));
                    r.map(|()| wfi).map_err(ApiError::from)
                });
                pending.push((at, Some(started), None));
            }
            Err(e) if e.code == ErrorCode::Conflict => pending.push((at, None, None)),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut runs = Vec::with_capacity(pending.len());
    for (trigger_time, started, excluded_by) in pending {
        let workflow_instance_id = match started {
            None => None,
            Some(task) => match task.await {
                Ok(Ok(wfi)) => Some(wfi),
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                    None
                }
                Err(e) => {
                    failed.get_or_insert(ApiError::internal(e.to_string()));
                    None
                }
            },
        };
        runs.push(WorkflowBackfillRun {
            trigger_time,
            workflow_instance_id,
            excluded_by,
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    tracing::info!(
        workflow = id.0,
        from = req.from,
        to = req.to,
        runs = runs
            .iter()
            .filter(|r| r.workflow_instance_id.is_some())
            .count(),
        skipped = runs
            .iter()
            .filter(|r| r.workflow_instance_id.is_none())
            .count(),
        excluded = runs.iter().filter(|r| r.excluded_by.is_some()).count(),
        "workflow backfill"
    );
    Ok(WorkflowBackfillResult {
        runs,
        dry_run: false,
    })
}
