//! The OpenAPI's contract in Rust: the [`Api`] trait every route calls, its JSON bodies
//! ([`types`]) and its error ([`ApiError`]).
//!
//! ```text
//!   HTTP (crate::http, axum) ──▶ Arc<dyn Api> ◀── crate::server (the real server)
//!   Rust client (crate::client) ──HTTP/JSON──▶ same routes, same types
//! ```
//!
//! The HTTP layer owns transport concerns (routing, auth, JSON parsing and size limits, status
//! codes); an [`Api`] implementation owns meaning (apps, jobs, instances, workers). Routes
//! name an app by its numeric id or its name; [`Api::resolve_app`] turns either into an
//! [`AppRef`], and [`Api::token_grant`] hands the HTTP layer a stored token's hash and role
//! to check the bearer token against ([`token`]).
//!
//! | route | method |
//! |---|---|
//! | `POST /v1/apps` (admin) | [`Api::create_app`] (secret of [`MIN_NEW_SECRET_LEN`] bytes, name not all digits) |
//! | `POST /v1/apps/{app}/jobs` | [`Api::create_job`] |
//! | `GET /v1/apps/{app}/jobs` | [`Api::list_jobs`] |
//! | `GET /v1/apps/{app}/jobs/{id}` | [`Api::get_job`] |
//! | `PUT /v1/apps/{app}/jobs/{id}` | [`Api::update_job`] |
//! | `DELETE /v1/apps/{app}/jobs/{id}` | [`Api::delete_job`] |
//! | `POST /v1/apps/{app}/jobs/{id}/enable`, `.../disable` | [`Api::set_job_enabled`] |
//! | `POST /v1/apps/{app}/jobs/{id}/run` | [`Api::run_job`] |
//! | `POST /v1/apps/{app}/jobs/{id}/runs` (1 to [`MAX_RUN_BATCH`] runs, one durable batch) | [`Api::run_job_batch`] ([`run_batch`]) |
//! | `POST /v1/apps/{app}/jobs/{id}/copy` | [`Api::copy_job`] |
//! | `POST /v1/apps/{app}/jobs/{id}/backfill` | [`Api::backfill_job`] ([`backfill`]) |
//! | `GET /v1/apps/{app}/jobs/{id}/versions[/{version}]`, `POST .../jobs/{id}/rollback` | [`Api::job_versions`], [`Api::get_job_version`], [`Api::rollback_job`] ([`history`]) |
//! | `POST /v1/apps/{app}/workflows/{id}/backfill` | [`Api::backfill_workflow`] ([`backfill`]) |
//! | `GET /v1/apps/{app}/workflows/{id}/versions[/{version}]`, `POST .../workflows/{id}/rollback` | [`Api::workflow_versions`], [`Api::get_workflow_version`], [`Api::rollback_workflow`] |
//! | `GET /v1/apps/{app}/audit` | [`Api::list_audit`] (records written by the HTTP layer through [`Api::record_audit`]) |
//! | `GET /v1/apps/{app}/instances/{id}` | [`Api::get_instance`] |
//! | `GET /v1/apps/{app}/instances` | [`Api::list_instances`] |
//! | `DELETE /v1/apps/{app}/instances/{id}` | [`Api::delete_instance`] |
//! | `POST /v1/apps/{app}/instances/{id}/stop`, `/cancel`, `/retry` | [`Api::instance_action`] |
//! | `GET /v1/apps/{app}/instances/{id}/log`, `.../log.txt` (whole log as text) | [`Api::instance_log`] |
//! | `GET /v1/apps/{app}/workers` | [`Api::list_workers`] |
//! | `GET /v1/apps/{app}/stats` | [`Api::app_stats`] |
//! | `POST/GET /v1/apps/{app}/workflows`, `GET/PUT/DELETE .../workflows/{id}`, `POST .../workflows/{id}/run`, `/copy` | workflow methods ([`workflow`]) |
//! | `GET /v1/apps/{app}/workflow-instances[/{id}]`, `POST .../{id}/stop`, `/retry`, `.../nodes/{node}/mark-success` | workflow instance methods ([`workflow`]) |
//! | `DELETE /v1/apps/{app}/workflow-instances/{id}` | [`Api::delete_workflow_instance`] |
//! | `PUT/GET/DELETE /v1/apps/{app}/alarm-channels[/{name}]`, `POST .../{name}/test` | alarm channel methods ([`alarm`]) |
//! | `GET /v1/apps/{app}/alarms` | [`Api::list_alarms`] |
//! | `PUT/GET/DELETE /v1/apps/{app}/calendars/{name}`, `GET /v1/apps/{app}/calendars` | calendar methods ([`calendar`]) |
//! | `GET /v1/apps` (admin), `GET/DELETE /v1/apps/{app}`, `POST .../rotate-secret` | [`Api::list_apps`], [`Api::get_app`], [`Api::delete_app`], [`Api::rotate_secret`] |
//! | `POST/GET /v1/apps/{app}/tokens`, `DELETE .../tokens/{id}` | [`Api::create_token`], [`Api::list_tokens`], [`Api::revoke_token`] ([`token`]) |
//! | `POST /v1/validate` | [`types::validate_expression`] (no server state) |
//! | `GET /healthz` (no auth) | [`Api::health`] |
//! | `GET /metrics` (no auth) | [`Api::metrics_text`] |

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod alarm;
pub mod backfill;
pub mod calendar;
pub mod error;
pub mod history;
pub mod instance_log;
pub mod run_batch;
pub mod token;
pub mod types;
pub mod workflow;

use std::future::Future;
use std::pin::Pin;

use crate::ids::{InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::EpochMs;
pub use alarm::*;
pub use backfill::*;
pub use calendar::*;
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use history::*;
pub use instance_log::*;
pub use run_batch::*;
pub use token::*;
pub use types::*;
pub use workflow::*;

/// The future an [`Api`] method returns (boxed: the trait is used as `dyn Api`).
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// What an instance action route asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstanceAction {
    /// `POST .../instances/{id}/stop`: stop a dispatched or running instance (its worker is
    /// told to cancel it); STOPPED.
    Stop,
    /// `POST .../instances/{id}/cancel`: cancel an instance not yet dispatched (a pending
    /// delayed run, or one waiting for a worker); CANCELED.
    Cancel,
    /// `POST .../instances/{id}/retry`: run a finished instance again (same id, attempts + 1).
    Retry,
}

/// Every operation of the OpenAPI, as the HTTP layer calls it. Implementations must never
/// panic on any input: unknown ids are [`ErrorCode::NotFound`], bad values
/// [`ErrorCode::InvalidArgument`], illegal transitions [`ErrorCode::Conflict`].
///
/// Every method that names an app takes the [`AppRef`] from [`Api::resolve_app`]; an id of
/// another app's job or instance is NotFound (never leaks across apps).
pub trait Api: Send + Sync + std::fmt::Debug + 'static {
    /// The app named by `app` (its numeric id, or its name). NotFound if there is none.
    fn resolve_app(&self, app: &str) -> Result<AppRef, ApiError>;
    /// Creates an app; Conflict if the name is taken.
    fn create_app(&self, req: CreateApp) -> ApiFuture<'_, AppCreated>;
    /// Creates a job (durable when the future resolves) and schedules it.
    fn create_job(&self, app: AppRef, body: JobBody) -> ApiFuture<'_, Created<JobId>>;
    /// A page of the app's jobs matching the query's filters, in id order.
    fn list_jobs(&self, app: AppRef, query: JobQuery) -> ApiFuture<'_, JobList>;
    /// One job.
    fn get_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, JobView>;
    /// Replaces a job's definition and reschedules it.
    fn update_job(&self, app: AppRef, id: JobId, body: JobBody) -> ApiFuture<'_, JobView>;
    /// Deletes a job and unschedules it (its instances stay, listable).
    fn delete_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, ()>;
    /// Enables or disables a job.
    fn set_job_enabled(&self, app: AppRef, id: JobId, enabled: bool) -> ApiFuture<'_, JobView>;
    /// Creates an API run now or after `delay_ms`; the instance is durable when this resolves.
    fn run_job(&self, app: AppRef, id: JobId, req: RunJob) -> ApiFuture<'_, RunCreated>;
    /// Creates the batch's API runs, all or none, in one durable write; answers their
    /// instance ids in the order of the runs (see [`run_batch`]).
    fn run_job_batch(
        &self,
        app: AppRef,
        id: JobId,
        req: RunJobBatch,
    ) -> ApiFuture<'_, RunBatchCreated> {
        let _ = (app, id, req);
        Box::pin(async { Err(ApiError::unavailable("this server has no batch runs")) })
    }
    /// Creates a copy of job `id` under a new name (every other field as the source's unless
    /// `req` says otherwise); answers the new job's id. Built on [`Api::get_job`] and
    /// [`Api::create_job`], so the copy is validated and scheduled like any new job.
    fn copy_job(&self, app: AppRef, id: JobId, req: CopyJob) -> ApiFuture<'_, Created<JobId>> {
        Box::pin(async move {
            let mut body = self.get_job(app.clone(), id).await?.body;
            body.name = req.name;
            if let Some(enabled) = req.enabled {
                body.enabled = enabled;
            }
            self.create_job(app, body).await
        })
    }
    /// Runs job `id` once per trigger time of its time expression in `req`'s past range
    /// (refused past [`MAX_BACKFILL_RUNS`]), each run carrying its trigger time; a dry run
    /// only lists the times. The runs are durable when this resolves.
    fn backfill_job(&self, app: AppRef, id: JobId, req: Backfill) -> ApiFuture<'_, BackfillResult> {
        let _ = (app, id, req);
        Box::pin(async { Err(ApiError::unavailable("this server has no backfill")) })
    }
    /// One instance.
    fn get_instance(&self, app: AppRef, id: InstanceId) -> ApiFuture<'_, InstanceView>;
    /// A page of the app's (or a job's) instances, newest first.
    fn list_instances(&self, app: AppRef, query: InstanceQuery) -> ApiFuture<'_, InstanceList>;
    /// Stop, cancel or retry an instance; answers the instance after the change.
    fn instance_action(
        &self,
        app: AppRef,
        id: InstanceId,
        action: InstanceAction,
    ) -> ApiFuture<'_, InstanceView>;
    /// Deletes a finished instance with its log; durable when this resolves. Conflict while
    /// it is not final, or while the workflow instance whose node it ran is running: stop it
    /// first (a deletion never stops anything).
    fn delete_instance(&self, app: AppRef, id: InstanceId) -> ApiFuture<'_, ()> {
        let _ = (app, id);
        Box::pin(async { Err(ApiError::unavailable("this server cannot delete instances")) })
    }
    /// A page of an instance's log.
    fn instance_log(&self, app: AppRef, id: InstanceId, query: LogQuery) -> ApiFuture<'_, LogView>;
    /// The app's live workers.
    fn list_workers(&self, app: AppRef) -> ApiFuture<'_, WorkerList>;
    /// Creates a workflow (validated: cycles, dangling edges, unknown jobs or workflows of
    /// this app are InvalidArgument naming the problem), durable when the future resolves,
    /// and schedules it.
    fn create_workflow(&self, app: AppRef, body: WorkflowDef)
        -> ApiFuture<'_, Created<WorkflowId>>;
    /// A page of the app's workflows matching the query's filters, in id order.
    fn list_workflows(&self, app: AppRef, query: WorkflowQuery) -> ApiFuture<'_, WorkflowList>;
    /// One workflow.
    fn get_workflow(&self, app: AppRef, id: WorkflowId) -> ApiFuture<'_, WorkflowView>;
    /// Replaces a workflow's definition and reschedules it; running instances keep the
    /// definition they started with.
    fn update_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        body: WorkflowDef,
    ) -> ApiFuture<'_, WorkflowView>;
    /// Deletes a workflow and unschedules it; Conflict while one of its instances runs or
    /// another workflow nests it.
    fn delete_workflow(&self, app: AppRef, id: WorkflowId) -> ApiFuture<'_, ()>;
    /// Creates a workflow run now or after `delay_ms`; durable when this resolves.
    fn run_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: RunWorkflow,
    ) -> ApiFuture<'_, WorkflowRunCreated>;
    /// Runs workflow `id` once per trigger time of its time expression in `req`'s past range
    /// (refused past [`MAX_BACKFILL_RUNS`]), each workflow instance carrying its trigger time
    /// and handing it to its nodes' job instances; a dry run only lists the times. The
    /// workflow instances are durable when this resolves.
    fn backfill_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: Backfill,
    ) -> ApiFuture<'_, WorkflowBackfillResult> {
        let _ = (app, id, req);
        Box::pin(async { Err(ApiError::unavailable("this server has no backfill")) })
    }
    /// Creates a copy of workflow `id` under a new name; answers the new workflow's id. Built
    /// on [`Api::get_workflow`] and [`Api::create_workflow`], so the copy is validated and
    /// scheduled like any new workflow.
    fn copy_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: CopyWorkflow,
    ) -> ApiFuture<'_, Created<WorkflowId>> {
        Box::pin(async move {
            let mut body = self.get_workflow(app.clone(), id).await?.body;
            body.name = req.name;
            self.create_workflow(app, body).await
        })
    }
    /// One workflow instance.
    fn get_workflow_instance(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
    ) -> ApiFuture<'_, WorkflowInstanceView>;
    /// A page of the app's (or a workflow's) instances, newest first.
    fn list_workflow_instances(
        &self,
        app: AppRef,
        query: WorkflowInstanceQuery,
    ) -> ApiFuture<'_, WorkflowInstanceList>;
    /// Stops or retries a workflow instance; answers it after the change.
    fn workflow_instance_action(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        action: WorkflowInstanceAction,
    ) -> ApiFuture<'_, WorkflowInstanceView>;
    /// Deletes a finished workflow instance with the job instances of its nodes and their
    /// logs; durable when this resolves. Conflict while it, its parent (a nested run's) or
    /// one of its node instances or nested runs is running: stop it first.
    fn delete_workflow_instance(&self, app: AppRef, id: WorkflowInstanceId) -> ApiFuture<'_, ()> {
        let _ = (app, id);
        Box::pin(async {
            Err(ApiError::unavailable(
                "this server cannot delete workflow instances",
            ))
        })
    }
    /// Marks a FAILED node successful (its successors then run as if it had succeeded);
    /// answers the instance after the change.
    fn mark_workflow_node_success(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        node: NodeId,
    ) -> ApiFuture<'_, WorkflowInstanceView>;
    /// Creates or replaces the app's alarm channel `name`.
    fn put_channel(
        &self,
        app: AppRef,
        name: String,
        body: ChannelBody,
    ) -> ApiFuture<'_, ChannelView> {
        let _ = (app, name, body);
        alarms_unavailable()
    }
    /// The app's alarm channels.
    fn list_channels(&self, app: AppRef) -> ApiFuture<'_, ChannelList> {
        let _ = app;
        alarms_unavailable()
    }
    /// Deletes the app's alarm channel `name`.
    fn delete_channel(&self, app: AppRef, name: String) -> ApiFuture<'_, ()> {
        let _ = (app, name);
        alarms_unavailable()
    }
    /// Sends a test alarm to channel `name` at once and says how it went.
    fn test_channel(&self, app: AppRef, name: String) -> ApiFuture<'_, ChannelTestResult> {
        let _ = (app, name);
        alarms_unavailable()
    }
    /// Creates or replaces the app's calendar `name`.
    fn put_calendar(
        &self,
        app: AppRef,
        name: String,
        body: CalendarBody,
    ) -> ApiFuture<'_, CalendarView> {
        let _ = (app, name, body);
        calendars_unavailable()
    }
    /// The app's calendar `name`.
    fn get_calendar(&self, app: AppRef, name: String) -> ApiFuture<'_, CalendarView> {
        let _ = (app, name);
        calendars_unavailable()
    }
    /// The app's calendars, by name.
    fn list_calendars(&self, app: AppRef) -> ApiFuture<'_, CalendarList> {
        let _ = app;
        calendars_unavailable()
    }
    /// Deletes the app's calendar `name`; a conflict while a job or workflow names it.
    fn delete_calendar(&self, app: AppRef, name: String) -> ApiFuture<'_, ()> {
        let _ = (app, name);
        calendars_unavailable()
    }
    /// The app's alarms with their delivery history, newest first.
    fn list_alarms(&self, app: AppRef, query: PageQuery) -> ApiFuture<'_, AlarmList> {
        let _ = (app, query);
        alarms_unavailable()
    }
    /// The stored token `id` (its hash, app, role and expiry), `None` if there is none (never
    /// issued, or revoked). The HTTP layer compares the hash.
    fn token_grant(&self, id: u64) -> Result<Option<TokenGrant>, ApiError> {
        let _ = id;
        Ok(None)
    }
    /// Creates an API token for the app; Conflict past [`MAX_TOKENS_PER_APP`].
    fn create_token(&self, app: AppRef, req: CreateToken) -> ApiFuture<'_, TokenCreated> {
        let _ = (app, req);
        tokens_unavailable()
    }
    /// The app's live tokens (without the tokens themselves).
    fn list_tokens(&self, app: AppRef) -> ApiFuture<'_, TokenList> {
        let _ = app;
        tokens_unavailable()
    }
    /// Revokes token `id` of the app (NotFound if the app has no such token).
    fn revoke_token(&self, app: AppRef, id: u64) -> ApiFuture<'_, ()> {
        let _ = (app, id);
        tokens_unavailable()
    }
    /// Every app.
    fn list_apps(&self) -> ApiFuture<'_, AppList> {
        tokens_unavailable()
    }
    /// One app.
    fn get_app(&self, app: AppRef) -> ApiFuture<'_, AppView> {
        let _ = app;
        tokens_unavailable()
    }
    /// Deletes the app with its tokens; Conflict while it has jobs or workflows, unless
    /// `force` (which deletes them first).
    fn delete_app(&self, app: AppRef, force: bool) -> ApiFuture<'_, ()> {
        let _ = (app, force);
        tokens_unavailable()
    }
    /// Replaces the app's worker secret; the previous one keeps working for the overlap.
    fn rotate_secret(&self, app: AppRef, req: RotateSecret) -> ApiFuture<'_, SecretRotated> {
        let _ = (app, req);
        tokens_unavailable()
    }
    /// A page of job `id`'s stored definitions, newest first.
    fn job_versions(
        &self,
        app: AppRef,
        id: JobId,
        query: PageQuery,
    ) -> ApiFuture<'_, JobVersionList> {
        let _ = (app, id, query);
        history_unavailable()
    }
    /// One stored definition of job `id`; NotFound when it is not kept.
    fn get_job_version(
        &self,
        app: AppRef,
        id: JobId,
        version: u64,
    ) -> ApiFuture<'_, JobVersionView> {
        let _ = (app, id, version);
        history_unavailable()
    }
    /// Makes a stored definition of job `id` current again, as a new version.
    fn rollback_job(&self, app: AppRef, id: JobId, req: Rollback) -> ApiFuture<'_, JobView> {
        let _ = (app, id, req);
        history_unavailable()
    }
    /// A page of workflow `id`'s definitions, newest first.
    fn workflow_versions(
        &self,
        app: AppRef,
        id: WorkflowId,
        query: PageQuery,
    ) -> ApiFuture<'_, WorkflowVersionList> {
        let _ = (app, id, query);
        history_unavailable()
    }
    /// One definition of workflow `id`.
    fn get_workflow_version(
        &self,
        app: AppRef,
        id: WorkflowId,
        version: u64,
    ) -> ApiFuture<'_, WorkflowVersionView> {
        let _ = (app, id, version);
        history_unavailable()
    }
    /// Makes a definition of workflow `id` current again, as a new version.
    fn rollback_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: Rollback,
    ) -> ApiFuture<'_, WorkflowView> {
        let _ = (app, id, req);
        history_unavailable()
    }
    /// Stores an audit record of the app (durable when the future resolves).
    fn record_audit(&self, app: AppRef, entry: AuditEntry) -> ApiFuture<'_, ()> {
        let _ = (app, entry);
        history_unavailable()
    }
    /// A page of the app's audit records, newest first.
    fn list_audit(&self, app: AppRef, query: AuditQuery) -> ApiFuture<'_, AuditList> {
        let _ = (app, query);
        history_unavailable()
    }
    /// The `Idempotency-Key`s kept durable, read once by the HTTP layer before it answers its
    /// first key. An API that keeps none answers none (the keys then live in the HTTP
    /// layer's memory only and a restart forgets them).
    fn idempotency_keys(&self) -> ApiFuture<'_, Vec<IdempotencyEntry>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Keeps `entry` (replacing the key's earlier state); resolves once it is durable.
    fn keep_idempotency(&self, entry: IdempotencyEntry) -> ApiFuture<'_, ()> {
        let _ = entry;
        Box::pin(async { Ok(()) })
    }
    /// Forgets `key` on `path`; resolves once durable.
    fn forget_idempotency(&self, path: String, key: String) -> ApiFuture<'_, ()> {
        let _ = (path, key);
        Box::pin(async { Ok(()) })
    }
    /// Forgets every key taken or answered before `before` (epoch ms); resolves to how many,
    /// once durable. A key kept concurrently with a later time stays.
    fn prune_idempotency(&self, before: EpochMs) -> ApiFuture<'_, usize> {
        let _ = before;
        Box::pin(async { Ok(0) })
    }
    /// The app's counts of final instances and fire lateness over trailing windows.
    fn app_stats(&self, app: AppRef) -> ApiFuture<'_, AppStats> {
        let _ = app;
        Box::pin(async { Err(ApiError::unavailable("this server keeps no counts")) })
    }
    /// Liveness and a summary.
    fn health(&self) -> Health;
    /// Prometheus text exposition (version 0.0.4) of the server's metrics.
    fn metrics_text(&self) -> String;
}

/// The answer of an [`Api`] without tokens and app management.
fn tokens_unavailable<'a, T: Send + 'a>() -> ApiFuture<'a, T> {
    Box::pin(async { Err(ApiError::unavailable("this server has no app management")) })
}

/// The answer of an [`Api`] without versions and audit.
fn history_unavailable<'a, T: Send + 'a>() -> ApiFuture<'a, T> {
    Box::pin(async {
        Err(ApiError::unavailable(
            "this server keeps no versions or audit",
        ))
    })
}

/// The answer of an [`Api`] without alarms.
fn calendars_unavailable<'a, T: Send + 'a>() -> ApiFuture<'a, T> {
    Box::pin(async { Err(ApiError::unavailable("this server has no calendars")) })
}

fn alarms_unavailable<'a, T: Send + 'a>() -> ApiFuture<'a, T> {
    Box::pin(async { Err(ApiError::unavailable("this server has no alarms")) })
}
