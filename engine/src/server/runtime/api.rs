//! [`Api`] over the server core: [`NodeApi`], whose methods hand most calls to the
//! `*_api.rs` file of their subject (jobs, instances, workflows, apps, ...).

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

use super::driver::Runtime;

pub(crate) use super::pending_run::PendingRun;

/// The [`Api`] of a running server core.
#[derive(Debug)]
pub(crate) struct NodeApi(pub(crate) Arc<Runtime>);

pub(super) fn limit(l: Option<u32>, default: usize) -> usize {
    l.map_or(default, |l| usize::try_from(l).unwrap_or(usize::MAX))
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
        Box::pin(self.job_create(app, body))
    }

    fn list_jobs(&self, app: AppRef, query: JobQuery) -> ApiFuture<'_, JobList> {
        Box::pin(self.job_list(app, query))
    }

    fn get_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, JobView> {
        Box::pin(self.job_get(app, id))
    }

    fn update_job(&self, app: AppRef, id: JobId, body: JobBody) -> ApiFuture<'_, JobView> {
        Box::pin(self.job_update(app, id, body))
    }

    fn delete_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, ()> {
        Box::pin(self.job_delete(app, id))
    }

    fn set_job_enabled(&self, app: AppRef, id: JobId, enabled: bool) -> ApiFuture<'_, JobView> {
        Box::pin(self.job_set_enabled(app, id, enabled))
    }

    fn run_job(&self, app: AppRef, id: JobId, req: RunJob) -> ApiFuture<'_, RunCreated> {
        Box::pin(self.job_run(app, id, req))
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
        Box::pin(self.instance_get(app, id))
    }

    fn list_instances(&self, app: AppRef, query: InstanceQuery) -> ApiFuture<'_, InstanceList> {
        Box::pin(self.instance_list(app, query))
    }

    fn instance_action(
        &self,
        app: AppRef,
        iid: InstanceId,
        action: InstanceAction,
    ) -> ApiFuture<'_, InstanceView> {
        Box::pin(self.instance_act(app, iid, action))
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
