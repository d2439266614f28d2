//! An async Rust client of the OpenAPI ([`crate::http`]): one method per route, taking and
//! returning the same [`crate::api`] types the server uses, so the two cannot drift.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferrojob::client::ClientError> {
//! use ferrojob::api::{JobBody, RunJob};
//! use ferrojob::client::Client;
//! use ferrojob::time_expression::TimeExpressionType;
//!
//! let client = Client::new("http://127.0.0.1:7700", "fjt_..._...")?; // an API token of my-app
//! let job = JobBody::new("nightly", TimeExpressionType::Cron, "0 0 2 * * ?", "shell");
//! let created = client.create_job("my-app", &job).await?;
//! let run = client.run_job("my-app", created.id, &RunJob::default()).await?;
//! println!("{:?}", client.get_instance("my-app", run.instance_id).await?.status);
//! # Ok(())
//! # }
//! ```
//!
//! - One [`reqwest::Client`] per [`Client`]: connections are kept alive and reused; clone the
//!   [`Client`] (cheap) to share them.
//! - Every request carries `Authorization: Bearer <token>`; a non-2xx answer is
//!   [`ClientError::Api`] with the server's `{"error"}` body (or one made from the status when
//!   the body is not ours, e.g. from a proxy).
//! - `{app}` is the app's name or numeric id, sent percent-encoded as one path segment.
//! - `https://` base URLs are verified against the public roots, or against a private CA
//!   with [`Client::with_roots`] (see [`crate::https`]); a failed handshake is
//!   [`ClientError::Tls`]. The plumbing is in `request.rs`.
//!
//! Jobs as code is built on it: [`jobs_file`] (an app's jobs and workflows in a TOML or JSON
//! file, keyed by name), [`plan`] (compare with a server, apply, export) and [`powerjob`]
//! (PowerJob's job export into a jobs file).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod alarm;
mod calendar;
mod history;
pub mod jobs_file;
pub mod plan;
pub mod powerjob;
mod request;

pub use jobs_file::{Format, JobsFile, JobsFileError, NodeSpec, WorkflowSpec};
pub use plan::{AppState, Change, FieldDiff, Plan};
pub use request::{Client, ClientError, ClientOptions};

use reqwest::Method;

use crate::api::{
    AppCreated, CopyJob, CopyWorkflow, CreateApp, Created, Health, InstanceList, InstanceQuery,
    InstanceView, JobBody, JobList, JobQuery, JobView, LogQuery, LogView, RunCreated, RunJob,
    RunWorkflow, ValidateRequest, ValidateResponse, WorkerList, WorkflowDef, WorkflowInstanceList,
    WorkflowInstanceQuery, WorkflowInstanceView, WorkflowList, WorkflowQuery, WorkflowRunCreated,
    WorkflowView,
};
use crate::api::{
    AppList, AppStats, AppView, CreateToken, RotateSecret, SecretRotated, TokenCreated, TokenList,
};
use crate::ids::{InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};

impl Client {
    /// `POST /v1/apps` (admin token).
    pub async fn create_app(&self, req: &CreateApp) -> Result<AppCreated, ClientError> {
        self.post(&["v1", "apps"], req).await
    }

    /// `GET /v1/apps` (admin token): every app.
    pub async fn list_apps(&self) -> Result<AppList, ClientError> {
        self.get(&["v1", "apps"]).await
    }

    /// `GET /v1/apps/{app}`.
    pub async fn get_app(&self, app: &str) -> Result<AppView, ClientError> {
        self.get(&["v1", "apps", app]).await
    }

    /// `DELETE /v1/apps/{app}?force=` (admin token): refused (409) while the app has jobs or
    /// workflows, unless `force`, which deletes them first.
    pub async fn delete_app(&self, app: &str, force: bool) -> Result<(), ClientError> {
        let req = self
            .request(Method::DELETE, &["v1", "apps", app])?
            .query(&[("force", force)]);
        self.send(req).await.map(drop)
    }

    /// `POST /v1/apps/{app}/rotate-secret`: a new worker secret; the previous one keeps
    /// working for the overlap.
    pub async fn rotate_secret(
        &self,
        app: &str,
        req: &RotateSecret,
    ) -> Result<SecretRotated, ClientError> {
        self.post(&["v1", "apps", app, "rotate-secret"], req).await
    }

    /// `POST /v1/apps/{app}/tokens`: an API token, shown in the answer only.
    pub async fn create_token(
        &self,
        app: &str,
        req: &CreateToken,
    ) -> Result<TokenCreated, ClientError> {
        self.post(&["v1", "apps", app, "tokens"], req).await
    }

    /// `GET /v1/apps/{app}/tokens`.
    pub async fn list_tokens(&self, app: &str) -> Result<TokenList, ClientError> {
        self.get(&["v1", "apps", app, "tokens"]).await
    }

    /// `DELETE /v1/apps/{app}/tokens/{id}`.
    pub async fn revoke_token(&self, app: &str, id: u64) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &["v1", "apps", app, "tokens", &id.to_string()],
        )?;
        self.send(req).await.map(drop)
    }

    /// `POST /v1/apps/{app}/jobs`.
    pub async fn create_job(
        &self,
        app: &str,
        job: &JobBody,
    ) -> Result<Created<JobId>, ClientError> {
        self.post(&["v1", "apps", app, "jobs"], job).await
    }

    /// `GET /v1/apps/{app}/jobs?limit=&cursor=&name=&tag=&time_expression_type=&execute_type=&enabled=`:
    /// a page of the jobs matching every filter set in `query`.
    pub async fn list_jobs(&self, app: &str, query: &JobQuery) -> Result<JobList, ClientError> {
        self.get_query(&["v1", "apps", app, "jobs"], query).await
    }

    /// `POST /v1/apps/{app}/jobs/{id}/copy`: a new job like `id` under another name.
    pub async fn copy_job(
        &self,
        app: &str,
        id: JobId,
        copy: &CopyJob,
    ) -> Result<Created<JobId>, ClientError> {
        self.post(
            &["v1", "apps", app, "jobs", &id.get().to_string(), "copy"],
            copy,
        )
        .await
    }

    /// `GET /v1/apps/{app}/jobs/{id}`.
    pub async fn get_job(&self, app: &str, id: JobId) -> Result<JobView, ClientError> {
        self.get(&["v1", "apps", app, "jobs", &id.get().to_string()])
            .await
    }

    /// `PUT /v1/apps/{app}/jobs/{id}`: replaces the job's definition.
    pub async fn update_job(
        &self,
        app: &str,
        id: JobId,
        job: &JobBody,
    ) -> Result<JobView, ClientError> {
        let req = self
            .request(
                Method::PUT,
                &["v1", "apps", app, "jobs", &id.get().to_string()],
            )?
            .json(job);
        self.call(req).await
    }

    /// `DELETE /v1/apps/{app}/jobs/{id}`.
    pub async fn delete_job(&self, app: &str, id: JobId) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &["v1", "apps", app, "jobs", &id.get().to_string()],
        )?;
        self.send(req).await.map(drop)
    }

    /// `POST /v1/apps/{app}/jobs/{id}/enable`.
    pub async fn enable_job(&self, app: &str, id: JobId) -> Result<JobView, ClientError> {
        self.post_empty(&["v1", "apps", app, "jobs", &id.get().to_string(), "enable"])
            .await
    }

    /// `POST /v1/apps/{app}/jobs/{id}/disable`.
    pub async fn disable_job(&self, app: &str, id: JobId) -> Result<JobView, ClientError> {
        self.post_empty(&["v1", "apps", app, "jobs", &id.get().to_string(), "disable"])
            .await
    }

    /// `POST /v1/apps/{app}/jobs/{id}/run`.
    pub async fn run_job(
        &self,
        app: &str,
        id: JobId,
        run: &RunJob,
    ) -> Result<RunCreated, ClientError> {
        self.post(
            &["v1", "apps", app, "jobs", &id.get().to_string(), "run"],
            run,
        )
        .await
    }

    /// `POST /v1/apps/{app}/jobs/{id}/runs`: 1 to
    /// [`MAX_RUN_BATCH`](crate::api::MAX_RUN_BATCH) runs in one request and one durable
    /// write, all or none; the instance ids come back in the runs' order.
    pub async fn run_job_batch(
        &self,
        app: &str,
        id: JobId,
        runs: &crate::api::RunJobBatch,
    ) -> Result<crate::api::RunBatchCreated, ClientError> {
        self.post(
            &["v1", "apps", app, "jobs", &id.get().to_string(), "runs"],
            runs,
        )
        .await
    }

    /// `POST /v1/apps/{app}/jobs/{id}/backfill`.
    pub async fn backfill_job(
        &self,
        app: &str,
        id: JobId,
        req: &crate::api::Backfill,
    ) -> Result<crate::api::BackfillResult, ClientError> {
        self.post(
            &["v1", "apps", app, "jobs", &id.get().to_string(), "backfill"],
            req,
        )
        .await
    }

    /// `GET /v1/apps/{app}/instances/{id}`.
    pub async fn get_instance(
        &self,
        app: &str,
        id: InstanceId,
    ) -> Result<InstanceView, ClientError> {
        self.get(&["v1", "apps", app, "instances", &id.get().to_string()])
            .await
    }

    /// `GET /v1/apps/{app}/instances?job_id=&status=&trigger_from=&trigger_to=&finished_from=&finished_to=&limit=&cursor=`.
    pub async fn list_instances(
        &self,
        app: &str,
        query: &InstanceQuery,
    ) -> Result<InstanceList, ClientError> {
        self.get_query(&["v1", "apps", app, "instances"], query)
            .await
    }

    /// `DELETE /v1/apps/{app}/instances/{id}`: a finished instance with its log (409 while
    /// it runs, or while the workflow instance whose node it ran runs).
    pub async fn delete_instance(&self, app: &str, id: InstanceId) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &["v1", "apps", app, "instances", &id.get().to_string()],
        )?;
        self.send(req).await.map(drop)
    }

    async fn instance_action(
        &self,
        app: &str,
        id: InstanceId,
        action: &str,
    ) -> Result<InstanceView, ClientError> {
        self.post_empty(&[
            "v1",
            "apps",
            app,
            "instances",
            &id.get().to_string(),
            action,
        ])
        .await
    }

    /// `POST /v1/apps/{app}/instances/{id}/stop`.
    pub async fn stop_instance(
        &self,
        app: &str,
        id: InstanceId,
    ) -> Result<InstanceView, ClientError> {
        self.instance_action(app, id, "stop").await
    }

    /// `POST /v1/apps/{app}/instances/{id}/cancel`.
    pub async fn cancel_instance(
        &self,
        app: &str,
        id: InstanceId,
    ) -> Result<InstanceView, ClientError> {
        self.instance_action(app, id, "cancel").await
    }

    /// `POST /v1/apps/{app}/instances/{id}/retry`.
    pub async fn retry_instance(
        &self,
        app: &str,
        id: InstanceId,
    ) -> Result<InstanceView, ClientError> {
        self.instance_action(app, id, "retry").await
    }

    /// `GET /v1/apps/{app}/instances/{id}/log.txt`: the whole log as text, one line per log
    /// line.
    pub async fn instance_log_text(
        &self,
        app: &str,
        id: InstanceId,
    ) -> Result<String, ClientError> {
        let path = [
            "v1",
            "apps",
            app,
            "instances",
            &id.get().to_string(),
            "log.txt",
        ];
        let body = self.send(self.request(Method::GET, &path)?).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /v1/apps/{app}/instances/{id}/log?limit=&cursor=&before=`.
    pub async fn instance_log(
        &self,
        app: &str,
        id: InstanceId,
        query: LogQuery,
    ) -> Result<LogView, ClientError> {
        self.get_query(
            &["v1", "apps", app, "instances", &id.get().to_string(), "log"],
            &query,
        )
        .await
    }

    /// `GET /v1/apps/{app}/workers`.
    pub async fn list_workers(&self, app: &str) -> Result<WorkerList, ClientError> {
        self.get(&["v1", "apps", app, "workers"]).await
    }

    /// `GET /v1/apps/{app}/stats`: the app's final instances and fire lateness over the
    /// last 5 minutes, hour and day.
    pub async fn app_stats(&self, app: &str) -> Result<AppStats, ClientError> {
        self.get(&["v1", "apps", app, "stats"]).await
    }

    /// `POST /v1/apps/{app}/workflows`: creates a workflow (the server validates it: a
    /// cycle, a dangling edge or an unknown job is a 400 naming the node or edge).
    pub async fn create_workflow(
        &self,
        app: &str,
        workflow: &WorkflowDef,
    ) -> Result<Created<WorkflowId>, ClientError> {
        self.post(&["v1", "apps", app, "workflows"], workflow).await
    }

    /// `GET /v1/apps/{app}/workflows?limit=&cursor=&name=&tag=&time_expression_type=`: a
    /// page of the workflows matching every filter set in `query`.
    pub async fn list_workflows(
        &self,
        app: &str,
        query: &WorkflowQuery,
    ) -> Result<WorkflowList, ClientError> {
        self.get_query(&["v1", "apps", app, "workflows"], query)
            .await
    }

    /// `POST /v1/apps/{app}/workflows/{id}/copy`: a new workflow with `id`'s definition under
    /// another name.
    pub async fn copy_workflow(
        &self,
        app: &str,
        id: WorkflowId,
        copy: &CopyWorkflow,
    ) -> Result<Created<WorkflowId>, ClientError> {
        self.post(
            &[
                "v1",
                "apps",
                app,
                "workflows",
                &id.get().to_string(),
                "copy",
            ],
            copy,
        )
        .await
    }

    /// `GET /v1/apps/{app}/workflows/{id}`.
    pub async fn get_workflow(
        &self,
        app: &str,
        id: WorkflowId,
    ) -> Result<WorkflowView, ClientError> {
        self.get(&["v1", "apps", app, "workflows", &id.get().to_string()])
            .await
    }

    /// `PUT /v1/apps/{app}/workflows/{id}`: replaces the workflow's definition.
    pub async fn update_workflow(
        &self,
        app: &str,
        id: WorkflowId,
        workflow: &WorkflowDef,
    ) -> Result<WorkflowView, ClientError> {
        let req = self
            .request(
                Method::PUT,
                &["v1", "apps", app, "workflows", &id.get().to_string()],
            )?
            .json(workflow);
        self.call(req).await
    }

    /// `DELETE /v1/apps/{app}/workflows/{id}`.
    pub async fn delete_workflow(&self, app: &str, id: WorkflowId) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &["v1", "apps", app, "workflows", &id.get().to_string()],
        )?;
        self.send(req).await.map(drop)
    }

    /// `POST /v1/apps/{app}/workflows/{id}/run`.
    pub async fn run_workflow(
        &self,
        app: &str,
        id: WorkflowId,
        run: &RunWorkflow,
    ) -> Result<WorkflowRunCreated, ClientError> {
        self.post(
            &["v1", "apps", app, "workflows", &id.get().to_string(), "run"],
            run,
        )
        .await
    }

    /// `POST /v1/apps/{app}/workflows/{id}/backfill`.
    pub async fn backfill_workflow(
        &self,
        app: &str,
        id: WorkflowId,
        req: &crate::api::Backfill,
    ) -> Result<crate::api::WorkflowBackfillResult, ClientError> {
        self.post(
            &[
                "v1",
                "apps",
                app,
                "workflows",
                &id.get().to_string(),
                "backfill",
            ],
            req,
        )
        .await
    }

    /// `GET /v1/apps/{app}/workflow-instances/{id}`.
    pub async fn get_workflow_instance(
        &self,
        app: &str,
        id: WorkflowInstanceId,
    ) -> Result<WorkflowInstanceView, ClientError> {
        self.get(&[
            "v1",
            "apps",
            app,
            "workflow-instances",
            &id.get().to_string(),
        ])
        .await
    }

    /// `GET /v1/apps/{app}/workflow-instances?workflow_id=&limit=&cursor=`.
    pub async fn list_workflow_instances(
        &self,
        app: &str,
        query: &WorkflowInstanceQuery,
    ) -> Result<WorkflowInstanceList, ClientError> {
        self.get_query(&["v1", "apps", app, "workflow-instances"], query)
            .await
    }

    /// `DELETE /v1/apps/{app}/workflow-instances/{id}`: a finished workflow instance with the
    /// job instances of its nodes and their logs (409 while anything of it runs).
    pub async fn delete_workflow_instance(
        &self,
        app: &str,
        id: WorkflowInstanceId,
    ) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &[
                "v1",
                "apps",
                app,
                "workflow-instances",
                &id.get().to_string(),
            ],
        )?;
        self.send(req).await.map(drop)
    }

    /// `POST /v1/apps/{app}/workflow-instances/{id}/stop`.
    pub async fn stop_workflow_instance(
        &self,
        app: &str,
        id: WorkflowInstanceId,
    ) -> Result<WorkflowInstanceView, ClientError> {
        self.post_empty(&[
            "v1",
            "apps",
            app,
            "workflow-instances",
            &id.get().to_string(),
            "stop",
        ])
        .await
    }

    /// `POST /v1/apps/{app}/workflow-instances/{id}/retry`: re-runs the unsuccessful nodes of
    /// a FAILED or STOPPED workflow instance.
    pub async fn retry_workflow_instance(
        &self,
        app: &str,
        id: WorkflowInstanceId,
    ) -> Result<WorkflowInstanceView, ClientError> {
        self.post_empty(&[
            "v1",
            "apps",
            app,
            "workflow-instances",
            &id.get().to_string(),
            "retry",
        ])
        .await
    }

    /// `POST /v1/apps/{app}/workflow-instances/{id}/nodes/{node}/mark-success`.
    pub async fn mark_workflow_node_success(
        &self,
        app: &str,
        id: WorkflowInstanceId,
        node: NodeId,
    ) -> Result<WorkflowInstanceView, ClientError> {
        self.post_empty(&[
            "v1",
            "apps",
            app,
            "workflow-instances",
            &id.get().to_string(),
            "nodes",
            &node.get().to_string(),
            "mark-success",
        ])
        .await
    }

    /// `POST /v1/validate`: the next trigger times of an expression.
    pub async fn validate(&self, req: &ValidateRequest) -> Result<ValidateResponse, ClientError> {
        self.post(&["v1", "validate"], req).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(&["healthz"]).await
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let body = self.send(self.request(Method::GET, &["metrics"])?).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
