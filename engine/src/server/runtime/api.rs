//! [`Api`] over the server core.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::api::{
    Api, ApiError, ApiFuture, AppCreated, AppRef, CreateApp, Created, Health, InstanceAction,
    InstanceList, InstanceQuery, InstanceView, JobBody, JobList, JobQuery, JobView, LogQuery,
    LogView, PageQuery, RunCreated, RunJob, RunWorkflow, WorkerList, WorkflowDef,
    WorkflowInstanceAction, WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceView,
    WorkflowList, WorkflowRunCreated, WorkflowView,
};
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::server::api_convert::{instance_view, job_record, job_view};
use crate::server::core::commands::check_period;
use crate::server::core::{HeldView, JobDef};
use crate::server::{InstanceFilter, InstanceRecord, JobRecord};

use super::driver::Runtime;

pub(crate) use super::pending_run::PendingRun;

/// The [`Api`] of a running server core.
#[derive(Debug)]
pub(crate) struct NodeApi(pub(crate) Arc<Runtime>);

pub(super) fn limit(l: Option<u32>, default: usize) -> usize {
    l.map_or(default, |l| usize::try_from(l).unwrap_or(usize::MAX))
}

impl NodeApi {
    /// `app`'s job `id`: its definition.
    fn job_of(&self, app: &AppRef, id: JobId) -> Result<Arc<JobDef>, ApiError> {
        Ok(self.0.core.lock().job_of(app.id, id)?.def())
    }

    /// The API view of an instance: the record plus the workflow link and, while it is in
    /// memory, its task progress.
    fn iview(&self, rec: &InstanceRecord, held: HeldView) -> InstanceView {
        let mut views = self.iviews([(rec, held)]);
        views.pop().unwrap_or_else(|| instance_view(rec))
    }

    /// The API views of instances (see [`iview`](Self::iview)), in order. The workflow links
    /// of runs the core holds come from memory, the others from the repository in one lookup
    /// made outside the core's lock: on PostgreSQL a lookup is a round trip, which neither a
    /// page of a listing nor dispatch should wait for once per instance.
    fn iviews<'a>(
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

    fn view(&self, def: &JobDef) -> JobView {
        let mut v = job_view(&def.record, self.0.repo.trigger(def.record.id));
        (v.skipped_runs, v.calendar_skipped_runs) = self.skipped(def.record.id);
        v
    }

    /// Runs of job `id` its SKIP overlap policy skipped, and scheduled triggers its calendars
    /// excluded, since the server started.
    fn skipped(&self, id: JobId) -> (u64, u64) {
        self.0
            .core
            .lock()
            .jobs
            .get(&id)
            .map_or((0, 0), |j| (j.skipped, j.calendar_skipped))
    }

    /// A bad request unless `app` has a calendar of each of `names`.
    pub(super) fn check_calendars(&self, app: &AppRef, names: &[String]) -> Result<(), ApiError> {
        match self.0.core.lock().unknown_calendar(app.id, names) {
            Some(name) => Err(ApiError::invalid(
                "calendars",
                format!("app {} has no calendar named {name:?}", app.name),
            )),
            None => Ok(()),
        }
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
    fn instance_tasks(
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

    /// Replaces a job's definition (update, enable, disable) and reschedules it.
    pub(super) async fn replace(&self, id: JobId, record: JobRecord) -> Result<JobView, ApiError> {
        let rt = &self.0;
        let (commit, r) = rt.step(|core, now| core.replace_job(id, record, now))?;
        let saved = rt.await_commit(commit).await?;
        rt.step(|core, _| core.job_replaced(saved, r))?;
        let def = self.0.core.lock().live_job(id).map(|j| j.def());
        match def {
            Some(d) => Ok(self.view(&d)),
            None => Err(ApiError::not_found("job", id.0)),
        }
    }
}

impl Api for NodeApi {
    fn token_grant(&self, id: u64) -> Result<Option<crate::api::TokenGrant>, ApiError> {
        self.token_grant_of(id)
    }

    fn create_token(
        &self,
        app: AppRef,
        req: crate::api::CreateToken,
    ) -> ApiFuture<'_, crate::api::TokenCreated> {
        Box::pin(self.create_token_of(app, req))
    }

    fn list_tokens(&self, app: AppRef) -> ApiFuture<'_, crate::api::TokenList> {
        Box::pin(async move { self.list_tokens_of(&app) })
    }

    fn revoke_token(&self, app: AppRef, id: u64) -> ApiFuture<'_, ()> {
        Box::pin(self.revoke_token_of(app, id))
    }

    fn list_apps(&self) -> ApiFuture<'_, crate::api::AppList> {
        Box::pin(async move { self.list_apps_of() })
    }

    fn get_app(&self, app: AppRef) -> ApiFuture<'_, crate::api::AppView> {
        Box::pin(async move { self.get_app_of(&app) })
    }

    fn delete_app(&self, app: AppRef, force: bool) -> ApiFuture<'_, ()> {
        Box::pin(self.delete_app_of(app, force))
    }

    fn rotate_secret(
        &self,
        app: AppRef,
        req: crate::api::RotateSecret,
    ) -> ApiFuture<'_, crate::api::SecretRotated> {
        Box::pin(self.rotate_secret_of(app, req))
    }

    fn resolve_app(&self, app: &str) -> Result<AppRef, ApiError> {
        let sh = &self.0;
        let rec = match app.parse::<u64>() {
            Ok(id) => sh.app_name(AppId(id)).and_then(|n| sh.app_by_name(&n)),
            Err(_) => sh.app_by_name(app),
        };
        let rec = rec.ok_or_else(|| {
            let shown: String = app.chars().take(64).collect();
            ApiError::not_found("app", shown)
        })?;
        Ok(AppRef {
            id: rec.id,
            name: rec.name.clone(),
            secret: rec.secret.clone(),
        })
    }

    fn create_app(&self, req: CreateApp) -> ApiFuture<'_, AppCreated> {
        Box::pin(async move {
            let sh = &self.0;
            crate::api::check_new_app(&req.name, &req.secret)?;
            let c = sh.repo.create_app(&req.name, &req.secret, sh.now())?;
            let app = sh.await_commit(c).await?;
            let out = AppCreated {
                id: app.id,
                name: app.name.clone(),
            };
            sh.step(|core, _| core.add_app(app));
            Ok(out)
        })
    }

    fn create_job(&self, app: AppRef, body: JobBody) -> ApiFuture<'_, Created<JobId>> {
        Box::pin(async move {
            let sh = &self.0;
            let record = job_record(&body, app.id)?;
            self.check_calendars(&app, &record.calendars)?;
            let def = JobDef::new(record.clone())?;
            check_period(&def.expr, sh.config.min_period_ms)?;
            let max = sh.config.max_jobs_per_app;
            let jobs = {
                let core = sh.core.lock();
                // A server of a cluster creates jobs only of the apps it acts for.
                core.acting_for(app.id)?;
                core.jobs_of(app.id)
            };
            if jobs >= max {
                return Err(ApiError::conflict(format!(
                    "app {} already has {jobs} jobs, the most this server allows per app (max_jobs_per_app {max})",
                    app.name
                )));
            }
            let now = sh.now();
            let next = def.initial_next(now);
            let saved = sh
                .await_commit(sh.repo.create_job(record, next, now)?)
                .await?;
            let id = sh.step(|core, _| core.job_created(saved, &app.name, next))?;
            Ok(Created { id })
        })
    }

    fn list_jobs(&self, app: AppRef, query: JobQuery) -> ApiFuture<'_, JobList> {
        Box::pin(async move {
            let sh = &self.0;
            let filter = crate::server::JobFilter {
                name: query.name,
                tag: query.tag,
                time_expression_type: query.time_expression_type,
                execute_type: query.execute_type,
                enabled: query.enabled,
            };
            let page = sh
                .repo
                .list_jobs(app.id, &filter, query.cursor, limit(query.limit, 100))?;
            let items = page
                .items
                .iter()
                .map(|j| {
                    let mut v = job_view(j, sh.repo.trigger(j.id));
                    (v.skipped_runs, v.calendar_skipped_runs) = self.skipped(j.id);
                    v
                })
                .collect();
            Ok(JobList {
                items,
                next_cursor: page.next_cursor,
            })
        })
    }

    fn get_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, JobView> {
        Box::pin(async move {
            let def = self.job_of(&app, id)?;
            Ok(self.view(&def))
        })
    }

    fn update_job(&self, app: AppRef, id: JobId, body: JobBody) -> ApiFuture<'_, JobView> {
        Box::pin(async move {
            self.job_of(&app, id)?;
            let record = job_record(&body, app.id)?;
            self.check_calendars(&app, &record.calendars)?;
            self.replace(id, record).await
        })
    }

    fn delete_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, ()> {
        Box::pin(async move {
            let sh = &self.0;
            let commit = sh.step(|core, _| {
                core.job_of(app.id, id)?;
                core.delete_job_begin(id)?;
                Ok::<_, ApiError>(sh.repo.delete_job(id)?)
            })?;
            sh.await_commit(commit).await?;
            sh.step(|core, _| core.job_deleted(id));
            Ok(())
        })
    }

    fn set_job_enabled(&self, app: AppRef, id: JobId, enabled: bool) -> ApiFuture<'_, JobView> {
        Box::pin(async move {
            let def = self.job_of(&app, id)?;
            let mut record = def.record.clone();
            if record.enabled == enabled {
                return Ok(self.view(&def));
            }
            record.enabled = enabled;
            self.replace(id, record).await
        })
    }

    fn run_job(&self, app: AppRef, id: JobId, req: RunJob) -> ApiFuture<'_, RunCreated> {
        Box::pin(async move {
            let rt = Arc::clone(&self.0);
            let (commit, then) =
                rt.step(|core, now| core.prepare_run(app.id, id, req.params, req.delay_ms, now))?;
            let iid = PendingRun {
                rt,
                inner: Some((commit, then)),
            }
            .finish()
            .await?;
            Ok(RunCreated { instance_id: iid })
        })
    }

    fn run_job_batch(
        &self,
        app: AppRef,
        id: JobId,
        req: crate::api::RunJobBatch,
    ) -> ApiFuture<'_, crate::api::RunBatchCreated> {
        Box::pin(super::pending_run::run_batch(
            Arc::clone(&self.0),
            app,
            id,
            req,
        ))
    }

    fn backfill_job(
        &self,
        app: AppRef,
        id: JobId,
        req: crate::api::Backfill,
    ) -> ApiFuture<'_, crate::api::BackfillResult> {
        Box::pin(super::backfill::backfill(Arc::clone(&self.0), app, id, req))
    }

    fn get_instance(&self, app: AppRef, id: InstanceId) -> ApiFuture<'_, InstanceView> {
        Box::pin(async move {
            let (rec, tasks) = self.instance_tasks(&app, id)?;
            Ok(self.iview(&rec, tasks))
        })
    }

    fn list_instances(&self, app: AppRef, query: InstanceQuery) -> ApiFuture<'_, InstanceList> {
        Box::pin(async move {
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
            let page =
                sh.repo
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
        })
    }

    fn instance_action(
        &self,
        app: AppRef,
        iid: InstanceId,
        action: InstanceAction,
    ) -> ApiFuture<'_, InstanceView> {
        Box::pin(async move {
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
        })
    }

    fn delete_instance(&self, app: AppRef, id: InstanceId) -> ApiFuture<'_, ()> {
        Box::pin(self.instance_delete(app, id))
    }

    fn delete_workflow_instance(&self, app: AppRef, id: WorkflowInstanceId) -> ApiFuture<'_, ()> {
        Box::pin(self.wf_instance_delete(app, id))
    }

    fn instance_log(&self, app: AppRef, id: InstanceId, query: LogQuery) -> ApiFuture<'_, LogView> {
        Box::pin(self.log_page(app, id, query))
    }

    fn list_workers(&self, app: AppRef) -> ApiFuture<'_, WorkerList> {
        Box::pin(self.workers_of(app))
    }

    fn create_workflow(
        &self,
        app: AppRef,
        body: WorkflowDef,
    ) -> ApiFuture<'_, Created<WorkflowId>> {
        Box::pin(self.wf_create(app, body))
    }

    fn list_workflows(
        &self,
        app: AppRef,
        query: crate::api::WorkflowQuery,
    ) -> ApiFuture<'_, WorkflowList> {
        Box::pin(self.wf_list(app, query))
    }

    fn get_workflow(&self, app: AppRef, id: WorkflowId) -> ApiFuture<'_, WorkflowView> {
        Box::pin(self.wf_get(app, id))
    }

    fn update_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        body: WorkflowDef,
    ) -> ApiFuture<'_, WorkflowView> {
        Box::pin(self.wf_update(app, id, body))
    }

    fn delete_workflow(&self, app: AppRef, id: WorkflowId) -> ApiFuture<'_, ()> {
        Box::pin(self.wf_delete(app, id))
    }

    fn run_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: RunWorkflow,
    ) -> ApiFuture<'_, WorkflowRunCreated> {
        Box::pin(self.wf_run(app, id, req))
    }

    fn backfill_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: crate::api::Backfill,
    ) -> ApiFuture<'_, crate::api::WorkflowBackfillResult> {
        Box::pin(super::backfill::backfill_workflow(
            Arc::clone(&self.0),
            app,
            id,
            req,
        ))
    }

    fn get_workflow_instance(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        Box::pin(self.wf_instance(app, id))
    }

    fn list_workflow_instances(
        &self,
        app: AppRef,
        query: WorkflowInstanceQuery,
    ) -> ApiFuture<'_, WorkflowInstanceList> {
        Box::pin(self.wf_instances(app, query))
    }

    fn workflow_instance_action(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        action: WorkflowInstanceAction,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        Box::pin(self.wf_action(app, id, action))
    }

    fn mark_workflow_node_success(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        node: NodeId,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        Box::pin(self.wf_mark_success(app, id, node))
    }

    fn put_channel(
        &self,
        app: AppRef,
        name: String,
        body: crate::api::ChannelBody,
    ) -> ApiFuture<'_, crate::api::ChannelView> {
        Box::pin(self.0.api_put_channel(app, name, body))
    }

    fn list_channels(&self, app: AppRef) -> ApiFuture<'_, crate::api::ChannelList> {
        Box::pin(async move { self.0.api_list_channels(app) })
    }

    fn delete_channel(&self, app: AppRef, name: String) -> ApiFuture<'_, ()> {
        Box::pin(self.0.api_delete_channel(app, name))
    }

    fn test_channel(
        &self,
        app: AppRef,
        name: String,
    ) -> ApiFuture<'_, crate::api::ChannelTestResult> {
        Box::pin(self.0.api_test_channel(app, name))
    }

    fn put_calendar(
        &self,
        app: AppRef,
        name: String,
        body: crate::api::CalendarBody,
    ) -> ApiFuture<'_, crate::api::CalendarView> {
        Box::pin(self.calendar_put(app, name, body))
    }

    fn get_calendar(&self, app: AppRef, name: String) -> ApiFuture<'_, crate::api::CalendarView> {
        Box::pin(async move { self.calendar_get(&app, &name) })
    }

    fn list_calendars(&self, app: AppRef) -> ApiFuture<'_, crate::api::CalendarList> {
        Box::pin(async move { self.calendar_list(&app) })
    }

    fn delete_calendar(&self, app: AppRef, name: String) -> ApiFuture<'_, ()> {
        Box::pin(self.calendar_delete(app, name))
    }

    fn list_alarms(&self, app: AppRef, query: PageQuery) -> ApiFuture<'_, crate::api::AlarmList> {
        Box::pin(async move { self.0.api_list_alarms(app, query) })
    }

    fn job_versions(
        &self,
        app: AppRef,
        id: JobId,
        query: PageQuery,
    ) -> ApiFuture<'_, crate::api::JobVersionList> {
        Box::pin(self.versions_of_job(app, id, query))
    }

    fn get_job_version(
        &self,
        app: AppRef,
        id: JobId,
        version: u64,
    ) -> ApiFuture<'_, crate::api::JobVersionView> {
        Box::pin(self.version_of_job(app, id, version))
    }

    fn rollback_job(
        &self,
        app: AppRef,
        id: JobId,
        req: crate::api::Rollback,
    ) -> ApiFuture<'_, JobView> {
        Box::pin(self.job_rollback(app, id, req))
    }

    fn workflow_versions(
        &self,
        app: AppRef,
        id: WorkflowId,
        query: PageQuery,
    ) -> ApiFuture<'_, crate::api::WorkflowVersionList> {
        Box::pin(self.versions_of_workflow(app, id, query))
    }

    fn get_workflow_version(
        &self,
        app: AppRef,
        id: WorkflowId,
        version: u64,
    ) -> ApiFuture<'_, crate::api::WorkflowVersionView> {
        Box::pin(self.version_of_workflow(app, id, version))
    }

    fn rollback_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: crate::api::Rollback,
    ) -> ApiFuture<'_, WorkflowView> {
        Box::pin(self.workflow_rollback(app, id, req))
    }

    fn record_audit(&self, app: AppRef, entry: crate::api::AuditEntry) -> ApiFuture<'_, ()> {
        Box::pin(self.audit_record(app, entry))
    }

    fn list_audit(
        &self,
        app: AppRef,
        query: crate::api::AuditQuery,
    ) -> ApiFuture<'_, crate::api::AuditList> {
        Box::pin(self.audit_list(app, query))
    }

    fn idempotency_keys(&self) -> ApiFuture<'_, Vec<crate::api::IdempotencyEntry>> {
        Box::pin(self.idempotency_load())
    }

    fn keep_idempotency(&self, entry: crate::api::IdempotencyEntry) -> ApiFuture<'_, ()> {
        Box::pin(self.idempotency_keep(entry))
    }

    fn forget_idempotency(&self, path: String, key: String) -> ApiFuture<'_, ()> {
        Box::pin(async move { self.idempotency_forget(&path, &key).await })
    }

    fn prune_idempotency(&self, before: crate::time_expression::EpochMs) -> ApiFuture<'_, usize> {
        Box::pin(self.idempotency_prune(before))
    }

    fn app_stats(&self, app: AppRef) -> ApiFuture<'_, crate::api::AppStats> {
        Box::pin(async move {
            let now = self.0.now();
            let core = self.0.core.lock();
            // A server of a cluster counts only the apps it acts for.
            core.acting_for(app.id)?;
            Ok(core.stats.read(app.id, now))
        })
    }

    fn health(&self) -> Health {
        let sh = &self.0;
        let degraded = sh.metrics.store_failed.load(Ordering::Relaxed);
        Health {
            status: if degraded { "degraded" } else { "ok" }.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            workers: sh.conns.len() as u64,
            uptime_ms: u64::try_from(sh.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let sh = &self.0;
        let snapshot = sh.transport_metrics.get().map(|m| m.snapshot());
        let protocol_errors = snapshot.as_ref().map_or(0, |s| {
            s.handshake_failures
                + s.bad_magic
                + s.bad_version
                + s.unknown_kind
                + s.bad_header
                + s.oversized_frames
                + s.invalid_archives
                + s.unexpected_messages
        });
        let mut out = sh.metrics.render(sh.conns.len(), protocol_errors);
        #[cfg(feature = "postgres")]
        if let Some(member) = sh.member.get() {
            out.push_str(&member.borrow().metrics_text());
        }
        let Some(s) = snapshot else { return out };
        // The worker port: connections established, and each limit counted when hit (see
        // `NetConfig`).
        let limits = [
            ("connections_established", "Worker-port connections that completed the handshake (a worker that reconnects counts again).", s.connections_established),
            ("handshake_failures", "Worker-port handshakes refused (unknown app, wrong secret, other protocol) or timed out.", s.handshake_failures),
            ("failed_handshakes_limited", "Connections closed on arrival because their source failed too many handshakes.", s.failed_handshakes_limited),
            ("handshake_timeouts", "Worker-port connections closed because the handshake did not complete in time.", s.handshake_timeouts),
            ("preauth_pool_full", "Handshaking connections closed to make room in the full pre-authentication pool.", s.preauth_pool_full),
            ("preauth_frames_too_large", "Connections closed for a frame over the pre-authentication size limit.", s.preauth_frames_too_large),
            ("handshakes_rate_limited", "Connections closed on arrival because their source exceeded its handshake rate.", s.handshakes_rate_limited),
            ("connections_over_limit", "Connections refused because max_connections authenticated connections were open.", s.connections_over_limit),
            ("control_queue_overflows", "Connections closed because the peer asked for pongs or refusals without reading them.", s.control_queue_overflows),
            ("peers_not_reading", "Worker-port connections closed because the peer read nothing within the write-stall timeout.", s.peers_not_reading),
        ];
        for (name, help, value) in limits {
            let _ = writeln!(
                out,
                "# HELP ferrojob_transport_{name}_total {help}\n# TYPE ferrojob_transport_{name}_total counter\nferrojob_transport_{name}_total {value}"
            );
        }
        out
    }
}
