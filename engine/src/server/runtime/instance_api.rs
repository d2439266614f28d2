//! The job instance methods of [`NodeApi`]: the API views of instances (task progress, the
//! workflow link read outside the core's lock), get, list, and stop, cancel and retry.

use std::sync::Arc;

use crate::api::{ApiError, AppRef, InstanceAction, InstanceList, InstanceQuery, InstanceView};
use crate::ids::{InstanceId, WorkflowInstanceId};
use crate::server::api_convert::instance_view;
use crate::server::core::HeldView;
use crate::server::{InstanceFilter, InstanceRecord};

use super::api::{limit, NodeApi};

impl NodeApi {
    /// The API view of an instance: the record plus the workflow link and, while it is in
    /// memory, its task progress.
    pub(super) fn iview(&self, rec: &InstanceRecord, held: HeldView) -> InstanceView {
        let mut views = self.iviews([(rec, held)]);
        views.pop().unwrap_or_else(|| instance_view(rec))
    }

    /// The API views of instances (see [`iview`](Self::iview)), in order. The workflow links
    /// of runs the core holds come from memory, the others from the repository in one lookup
    /// made outside the core's lock: on PostgreSQL a lookup is a round trip, which neither a
    /// page of a listing nor dispatch should wait for once per instance.
    pub(super) fn iviews<'a>(
        &self,
        recs: impl IntoIterator<Item = (&'a InstanceRecord, HeldView)>,
    ) -> Vec<InstanceView> {
        let mut views: Vec<InstanceView> = recs
            .into_iter()
            .map(|(rec, held)| {
                let mut v = instance_view(rec);
                v.tasks = held.tasks;
                v.next_retry_at = held.next_retry_at;
                v
            })
            .collect();
        let in_memory: Vec<Option<WorkflowInstanceId>> = {
            let core = self.0.core.lock();
            views.iter().map(|v| core.node_run_of(v.id)).collect()
        };
        let stored_ids: Vec<InstanceId> = views
            .iter()
            .zip(&in_memory)
            .filter(|(_, wf)| wf.is_none())
            .map(|(v, _)| v.id)
            .collect();
        // An unreadable link leaves the field empty, as a run of no workflow.
        let stored = self
            .0
            .repo
            .workflow_instances_of(&stored_ids)
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "workflow links of instances not read");
                Vec::new()
            });
        let mut stored = stored.into_iter();
        for (v, wf) in views.iter_mut().zip(in_memory) {
            v.workflow_instance_id = match wf {
                Some(wf) => Some(wf),
                None => stored.next().flatten(),
            };
        }
        views
    }

    /// The instance as the core knows it now (memory for non-final ones, else the store),
    /// NotFound unless it belongs to `app`.
    pub(super) fn instance(
        &self,
        app: &AppRef,
        id: InstanceId,
    ) -> Result<InstanceRecord, ApiError> {
        Ok(self.instance_tasks(app, id)?.0)
    }

    /// [`instance`](Self::instance) with the task progress kept in memory.
    pub(super) fn instance_tasks(
        &self,
        app: &AppRef,
        id: InstanceId,
    ) -> Result<(InstanceRecord, HeldView), ApiError> {
        let held = self
            .0
            .core
            .lock()
            .active
            .get(&id)
            .map(|st| (st.rec.clone(), st.held_view()));
        let (rec, tasks) = match held {
            Some(x) => x,
            None => (self.0.repo.get_instance(id)?, HeldView::default()),
        };
        if rec.app_id != app.id {
            return Err(ApiError::not_found("instance", id.0));
        }
        Ok((rec, tasks))
    }

    pub(super) async fn instance_get(
        &self,
        app: AppRef,
        id: InstanceId,
    ) -> Result<InstanceView, ApiError> {
        let (rec, tasks) = self.instance_tasks(&app, id)?;
        Ok(self.iview(&rec, tasks))
    }

    pub(super) async fn instance_list(
        &self,
        app: AppRef,
        query: InstanceQuery,
    ) -> Result<InstanceList, ApiError> {
        let sh = &self.0;
        query.check()?;
        let filter = InstanceFilter {
            job: query.job_id,
            status: query.status,
            trigger: crate::server::TimeRange {
                from: query.trigger_from,
                to: query.trigger_to,
            },
            finished: crate::server::TimeRange {
                from: query.finished_from,
                to: query.finished_to,
            },
        };
        let limit_n = limit(query.limit, 100).clamp(1, crate::server::MAX_PAGE);
        if query.status.is_some_and(|s| !s.is_final()) {
            // Non-final instances all live in memory, which is ahead of the store (RUNNING
            // is never written): list them from there, newest first.
            let held: Vec<(InstanceRecord, HeldView)> = sh
                .core
                .lock()
                .active
                .iter()
                .filter(|(k, _)| query.cursor.is_none_or(|c| k.0 < c))
                .filter(|(_, st)| st.rec.app_id == app.id && filter.matches(&st.rec))
                .map(|(_, st)| (st.rec.clone(), st.held_view()))
                .collect();
            let mut items: Vec<InstanceView> = self.iviews(held.iter().map(|(r, t)| (r, *t)));
            items.sort_unstable_by_key(|v| std::cmp::Reverse(v.id));
            let next_cursor = (items.len() > limit_n)
                .then(|| items.get(limit_n - 1).map(|v| v.id.0))
                .flatten();
            items.truncate(limit_n);
            return Ok(InstanceList { items, next_cursor });
        }
        let page = sh
            .repo
            .list_instances(app.id, filter, query.cursor, limit(query.limit, 100))?;
        let held: Vec<Option<(InstanceRecord, HeldView)>> = {
            let core = sh.core.lock();
            page.items
                .iter()
                .map(|r| {
                    core.active
                        .get(&r.id)
                        .map(|st| (st.rec.clone(), st.held_view()))
                })
                .collect()
        };
        let recs: Vec<(InstanceRecord, HeldView)> = page
            .items
            .iter()
            .zip(held)
            .map(|(r, h)| h.unwrap_or_else(|| (r.clone(), HeldView::default())))
            .collect();
        let items = self.iviews(recs.iter().map(|(r, t)| (r, *t)));
        Ok(InstanceList {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub(super) async fn instance_act(
        &self,
        app: AppRef,
        iid: InstanceId,
        action: InstanceAction,
    ) -> Result<InstanceView, ApiError> {
        let rt = Arc::clone(&self.0);
        let held = rt.step(|core, now| core.command_held(app.id, iid, action, now));
        match held {
            Some(r) => {
                let (commit, commanded, rec) = r?;
                let view = self.iview(&rec, HeldView::default());
                // Awaited in a task of its own: the follow-up happens even if the caller
                // goes away.
                let task = tokio::spawn(async move {
                    let r = rt.await_commit(commit).await;
                    if r.is_ok() {
                        rt.step(|core, now| core.commanded(commanded, now));
                    }
                    r
                });
                match task.await {
                    Ok(r) => r?,
                    Err(e) => return Err(ApiError::internal(e.to_string())),
                }
                Ok(view)
            }
            None => {
                let mut rec = self.instance(&app, iid)?;
                if action != InstanceAction::Retry {
                    // Final (not owned by the core): stop and cancel are illegal.
                    let now = rt.now();
                    let err = match action {
                        InstanceAction::Stop => rec.stop(now),
                        _ => rec.cancel(now),
                    };
                    err?;
                    return Err(ApiError::conflict(format!(
                        "instance {} changed; try again",
                        iid.0
                    )));
                }
                let (commit, rec) = rt.step(|core, now| core.retry_finished(rec, now))?;
                let view = self.iview(&rec, HeldView::default());
                let task = tokio::spawn(async move {
                    let r = rt.await_commit(commit).await;
                    if r.is_ok() {
                        rt.step(|core, now| core.dispatch(iid, now));
                    }
                    r
                });
                match task.await {
                    Ok(r) => r?,
                    Err(e) => return Err(ApiError::internal(e.to_string())),
                }
                Ok(view)
            }
        }
    }
}
