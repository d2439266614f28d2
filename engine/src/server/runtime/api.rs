//! [`Api`] over the server core.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::api::{
    Api, ApiError, ApiFuture, AppCreated, AppRef, CreateApp, Created, Health, InstanceAction,
    InstanceList, InstanceQuery, InstanceView, JobBody, JobList, JobQuery, JobView, LogLineView,
    LogQuery, LogView, PageQuery, RunCreated, RunJob, RunWorkflow, WorkerInfo, WorkerList,
    WorkflowDef, WorkflowInstanceAction, WorkflowInstanceList, WorkflowInstanceQuery,
    WorkflowInstanceView, WorkflowList, WorkflowRunCreated, WorkflowView,
};
use crate::dispatch::GIB;
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::api_convert::{instance_view, job_record, job_view};
use crate::server::{InstanceFilter, InstanceRecord, JobRecord};
use crate::time_expression::TimeExpression;

use super::state::{InstState, JobDef, JobState, Runtime, Slot, TimerEv};
use super::write::{AfterCreate, Follow, PendingRun};

/// Longest `delay_ms` of an API run (about 10 years).
const MAX_DELAY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// The [`Api`] of a running server core.
#[derive(Debug)]
pub(crate) struct NodeApi(pub(crate) Arc<Runtime>);

fn limit(l: Option<u32>, default: usize) -> usize {
    l.map_or(default, |l| usize::try_from(l).unwrap_or(usize::MAX))
}

/// Refuses a FIXED_RATE period or FIXED_DELAY delay below the server's `min_period_ms`.
pub(super) fn check_period(expr: &TimeExpression, min_ms: u64) -> Result<(), ApiError> {
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

impl NodeApi {
    fn job_of(&self, app: &AppRef, id: JobId) -> Result<Arc<JobState>, ApiError> {
        match self.0.job(id) {
            Some(j) if !j.deleted.load(Ordering::Acquire) && j.def().record.app_id == app.id => {
                Ok(j)
            }
            _ => Err(ApiError::not_found("job", id.0)),
        }
    }

    /// The API view of an instance: the record plus the workflow link and, while it is in
    /// memory, its task progress.
    fn iview(&self, rec: &InstanceRecord, tasks: Option<crate::api::TaskProgress>) -> InstanceView {
        let mut v = instance_view(rec);
        v.workflow_instance_id = self.0.wf_instance_of(rec.id);
        v.tasks = tasks;
        v
    }

    fn view(&self, job: &JobState) -> JobView {
        job_view(&job.def().record, self.0.repo.trigger(job.id))
    }

    /// The instance as the core knows it now (memory for non-final ones, else the store),
    /// NotFound unless it belongs to `app`.
    fn instance(&self, app: &AppRef, id: InstanceId) -> Result<InstanceRecord, ApiError> {
        Ok(self.instance_tasks(app, id)?.0)
    }

    /// [`instance`](Self::instance) with the task progress kept in memory.
    fn instance_tasks(
        &self,
        app: &AppRef,
        id: InstanceId,
    ) -> Result<(InstanceRecord, Option<crate::api::TaskProgress>), ApiError> {
        let (rec, tasks) = match self.0.slot(id) {
            Some(s) => {
                let st = s.lock();
                (st.rec.clone(), st.tasks)
            }
            None => (self.0.repo.get_instance(id)?, None),
        };
        if rec.app_id != app.id {
            return Err(ApiError::not_found("instance", id.0));
        }
        Ok((rec, tasks))
    }

    /// Replaces a job's definition (update, enable, disable) and reschedules it.
    async fn replace(
        &self,
        job: Arc<JobState>,
        mut record: JobRecord,
    ) -> Result<JobView, ApiError> {
        let sh = &self.0;
        record.id = job.id;
        let def = JobDef::new(record.clone())?;
        check_period(&def.expr, sh.config.min_period_ms)?;
        let now = sh.now();
        let next = def.initial_next(now);
        let gen = job.gen.fetch_add(1, Ordering::AcqRel) + 1;
        let saved = sh
            .await_commit(sh.repo.update_job(record, next, now)?)
            .await?;
        let def = JobDef::new(saved)?;
        *job.def.write() = Arc::new(def);
        if let Some(n) = next {
            sh.arm(
                n,
                TimerEv::Job {
                    job: job.id,
                    gen,
                    due: n,
                },
            );
        }
        Ok(self.view(&job))
    }
}

impl Api for NodeApi {
    fn resolve_app(&self, app: &str) -> Result<AppRef, ApiError> {
        let sh = &self.0;
        let rec = match app.parse::<u64>() {
            Ok(id) => sh
                .app_name(AppId(id))
                .and_then(|n| sh.apps.get(&n).map(|a| a.clone())),
            Err(_) => sh.apps.get(app).map(|a| a.clone()),
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
            let c = sh.repo.create_app(&req.name, &req.secret, sh.now())?;
            let app = sh.await_commit(c).await?;
            let out = AppCreated {
                id: app.id,
                name: app.name.clone(),
            };
            sh.add_app(app);
            Ok(out)
        })
    }

    fn create_job(&self, app: AppRef, body: JobBody) -> ApiFuture<'_, Created<JobId>> {
        Box::pin(async move {
            let sh = &self.0;
            let record = job_record(&body, app.id)?;
            let def = JobDef::new(record.clone())?;
            check_period(&def.expr, sh.config.min_period_ms)?;
            let max = sh.config.max_jobs_per_app;
            let jobs = sh
                .jobs
                .iter()
                .filter(|j| !j.deleted.load(Ordering::Acquire) && j.def().record.app_id == app.id)
                .count();
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
            let id = saved.id;
            let state = Arc::new(JobState::new(
                Arc::from(app.name.as_str()),
                JobDef::new(saved)?,
            ));
            let gen = state.gen.load(Ordering::Acquire);
            sh.jobs.insert(id, state);
            if let Some(n) = next {
                sh.arm(
                    n,
                    TimerEv::Job {
                        job: id,
                        gen,
                        due: n,
                    },
                );
            }
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
                .map(|j| job_view(j, sh.repo.trigger(j.id)))
                .collect();
            Ok(JobList {
                items,
                next_cursor: page.next_cursor,
            })
        })
    }

    fn get_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, JobView> {
        Box::pin(async move {
            let job = self.job_of(&app, id)?;
            Ok(self.view(&job))
        })
    }

    fn update_job(&self, app: AppRef, id: JobId, body: JobBody) -> ApiFuture<'_, JobView> {
        Box::pin(async move {
            let job = self.job_of(&app, id)?;
            let record = job_record(&body, app.id)?;
            self.replace(job, record).await
        })
    }

    fn delete_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, ()> {
        Box::pin(async move {
            let sh = &self.0;
            let job = self.job_of(&app, id)?;
            if let Some(wf) = sh.job_referenced(job.id) {
                return Err(ApiError::conflict(format!(
                    "{id} is referenced by {wf}; remove it from the workflow first"
                )));
            }
            job.gen.fetch_add(1, Ordering::AcqRel);
            sh.await_commit(sh.repo.delete_job(job.id)?).await?;
            job.deleted.store(true, Ordering::Release);
            sh.jobs.remove(&job.id);
            Ok(())
        })
    }

    fn set_job_enabled(&self, app: AppRef, id: JobId, enabled: bool) -> ApiFuture<'_, JobView> {
        Box::pin(async move {
            let job = self.job_of(&app, id)?;
            let mut record = job.def().record.clone();
            if record.enabled == enabled {
                return Ok(self.view(&job));
            }
            record.enabled = enabled;
            self.replace(job, record).await
        })
    }

    fn run_job(&self, app: AppRef, id: JobId, req: RunJob) -> ApiFuture<'_, RunCreated> {
        Box::pin(async move {
            let sh = &self.0;
            let job = self.job_of(&app, id)?;
            if req.delay_ms > MAX_DELAY_MS {
                return Err(ApiError::invalid(
                    "delay_ms",
                    format!("at most {MAX_DELAY_MS}, got {}", req.delay_ms),
                ));
            }
            let now = sh.now();
            let delay = i64::try_from(req.delay_ms).unwrap_or(0);
            let due = now.saturating_add(delay);
            let mut rec = InstanceRecord::new(job.id, app.id, req.params, due);
            // Dispatchable at once: written once, already WAITING_WORKER_RECEIVE (the answer
            // still waits for that write, and ScheduleJob goes out after it). Otherwise
            // written WAITING_DISPATCH and dispatched as usual.
            let then = match (delay == 0).then(|| sh.dispatch_new(&job, &mut rec, now)) {
                Some(Some(nd)) => AfterCreate::Dispatched(nd),
                _ => AfterCreate::Dispatch {
                    at: (delay > 0).then_some(due),
                },
            };
            let commit = match sh.repo.create_instance(rec, (delay > 0).then_some(due)) {
                Ok(c) => c,
                Err(e) => {
                    sh.create_failed(then);
                    return Err(e.into());
                }
            };
            let iid = PendingRun::new(Arc::clone(sh), commit, then)
                .finish()
                .await?;
            Ok(RunCreated { instance_id: iid })
        })
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
                let mut items: Vec<InstanceView> = sh
                    .active
                    .iter()
                    .filter(|e| query.cursor.is_none_or(|c| e.key().0 < c))
                    .filter_map(|e| {
                        let st = e.value().lock();
                        let r = &st.rec;
                        (r.app_id == app.id && filter.matches(r)).then(|| self.iview(r, st.tasks))
                    })
                    .collect();
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
            let items = page
                .items
                .iter()
                .map(|r| match sh.slot(r.id) {
                    Some(s) => {
                        let st = s.lock();
                        self.iview(&st.rec, st.tasks)
                    }
                    None => self.iview(r, None),
                })
                .collect();
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
            let sh = &self.0;
            let id = iid.0;
            let now = sh.now();
            let slot: Slot = match sh.slot(iid) {
                Some(s) => s,
                None => {
                    let mut rec = self.instance(&app, iid)?;
                    if action != InstanceAction::Retry {
                        // Final (not owned by the core): stop and cancel are illegal.
                        let err = match action {
                            InstanceAction::Stop => rec.stop(now),
                            _ => rec.cancel(now),
                        };
                        err?;
                        return Err(ApiError::conflict(format!(
                            "instance {id} changed; try again"
                        )));
                    }
                    if sh.job(rec.job_id).is_none() {
                        return Err(ApiError::conflict(format!(
                            "instance {id} cannot be retried: job {} was deleted",
                            rec.job_id.0
                        )));
                    }
                    let status = rec.status;
                    rec.retry(now)?;
                    let mut st = InstState::new(rec);
                    st.persisted = Some(status);
                    let slot: Slot = Arc::new(parking_lot::Mutex::new(st));
                    let entry = sh.active.entry(iid).or_insert_with(|| Arc::clone(&slot));
                    if !Arc::ptr_eq(&entry, &slot) {
                        return Err(ApiError::conflict(format!(
                            "instance {id} changed; try again"
                        )));
                    }
                    drop(entry);
                    sh.metrics
                        .transition(Some(status), InstanceStatus::WaitingDispatch);
                    let c = {
                        let mut st = slot.lock();
                        sh.persist(&mut st)
                    };
                    let c = c.ok_or_else(|| ApiError::unavailable("the store refuses writes"))?;
                    sh.await_commit(c).await?;
                    let view = self.iview(&slot.lock().rec, None);
                    tokio::spawn(Arc::clone(sh).dispatch(iid));
                    return Ok(view);
                }
            };
            let (commit, follow, worker, view) = {
                let mut st = slot.lock();
                if st.rec.app_id != app.id {
                    return Err(ApiError::not_found("instance", id));
                }
                let old = st.rec.status;
                let job = sh.job(st.rec.job_id);
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
                        st.ready = std::time::Instant::now();
                        Follow::Dispatch { id: iid, at: None }
                    }
                };
                sh.note(job.as_deref(), Some(old), st.rec.status);
                let worker = (action == InstanceAction::Stop)
                    .then(|| st.rec.worker.clone())
                    .flatten();
                (
                    sh.persist(&mut st),
                    follow,
                    worker,
                    self.iview(&st.rec, st.tasks),
                )
            };
            let commit = commit.ok_or_else(|| ApiError::unavailable("the store refuses writes"))?;
            sh.await_commit(commit).await?;
            if let Some(w) = worker {
                sh.send_stop(app.id, &w, iid);
            }
            sh.after_write(None, follow);
            Ok(view)
        })
    }

    fn instance_log(&self, app: AppRef, id: InstanceId, query: LogQuery) -> ApiFuture<'_, LogView> {
        Box::pin(async move {
            let sh = &self.0;
            self.instance(&app, id)?;
            let page = sh
                .repo
                .read_logs(id, query.cursor, limit(query.limit, 1000))?;
            let dropped = sh.log_counts.get(&id).map_or(0, |c| c.1);
            Ok(LogView {
                instance_id: id,
                lines: page
                    .items
                    .into_iter()
                    .map(|e| LogLineView {
                        seq: e.seq,
                        time_ms: e.line.time,
                        level: e.line.level,
                        content: e.line.content,
                    })
                    .collect(),
                next_cursor: page.next_cursor,
                dropped,
            })
        })
    }

    fn list_workers(&self, app: AppRef) -> ApiFuture<'_, WorkerList> {
        Box::pin(async move {
            let gb = |b: u64| b as f64 / GIB as f64;
            let workers = self
                .0
                .registry
                .workers(&app.name)
                .into_iter()
                .map(|w| WorkerInfo {
                    address: w.address.to_string(),
                    tags: w.tags.iter().map(|t| t.to_string()).collect(),
                    version: w.version.clone(),
                    health_score: w.health_score as f64 / 1000.0,
                    cpu_cores: f64::from(w.metrics.cpu_cores),
                    cpu_load: w.metrics.known_load(),
                    memory_used_gb: gb(w.metrics.memory_used_bytes),
                    memory_total_gb: gb(w.metrics.memory_max_bytes),
                    disk_used_gb: gb(w.metrics.disk_used_bytes),
                    disk_total_gb: gb(w.metrics.disk_total_bytes),
                    overloaded: w.overloaded,
                    last_heartbeat: w.last_heartbeat_ms,
                })
                .collect();
            Ok(WorkerList { workers })
        })
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

    fn list_alarms(&self, app: AppRef, query: PageQuery) -> ApiFuture<'_, crate::api::AlarmList> {
        Box::pin(async move { self.0.api_list_alarms(app, query) })
    }

    fn health(&self) -> Health {
        let sh = &self.0;
        let degraded = sh.store_failed.load(Ordering::Relaxed);
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
        let Some(s) = snapshot else { return out };
        // The worker port's limits, each counted when hit (see `NetConfig`).
        let limits = [
            ("handshake_timeouts", "Worker-port connections closed because the handshake did not complete in time.", s.handshake_timeouts),
            ("preauth_pool_full", "Handshaking connections closed to make room in the full pre-authentication pool.", s.preauth_pool_full),
            ("preauth_frames_too_large", "Connections closed for a frame over the pre-authentication size limit.", s.preauth_frames_too_large),
            ("handshakes_rate_limited", "Connections closed on arrival because their source exceeded its handshake rate.", s.handshakes_rate_limited),
            ("connections_over_limit", "Connections refused because max_connections authenticated connections were open.", s.connections_over_limit),
            ("control_queue_overflows", "Connections closed because the peer asked for pongs or refusals without reading them.", s.control_queue_overflows),
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
