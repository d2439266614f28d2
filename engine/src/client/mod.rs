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
//!
//! Jobs as code is built on it: [`jobs_file`] (an app's jobs and workflows in a TOML or JSON
//! file, keyed by name), [`plan`] (compare with a server, apply, export) and [`powerjob`]
//! (PowerJob's job export into a jobs file).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::time::Duration;

mod alarm;
pub mod jobs_file;
pub mod plan;
pub mod powerjob;

pub use jobs_file::{Format, JobsFile, JobsFileError, NodeSpec, WorkflowSpec};
pub use plan::{AppState, Change, FieldDiff, Plan};

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    ApiError, AppCreated, CopyJob, CopyWorkflow, CreateApp, Created, ErrorBody, ErrorCode, Health,
    InstanceList, InstanceQuery, InstanceView, JobBody, JobList, JobQuery, JobView, LogQuery,
    LogView, RunCreated, RunJob, RunWorkflow, ValidateRequest, ValidateResponse, WorkerList,
    WorkflowDef, WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceView, WorkflowList,
    WorkflowQuery, WorkflowRunCreated, WorkflowView,
};
use crate::api::{
    AppList, AppView, CreateToken, RotateSecret, SecretRotated, TokenCreated, TokenList,
};
use crate::ids::{InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};

/// Why a [`Client`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a non-2xx status and this error.
    #[error("the server answered {status}: {error}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The `{"error"}` body (made from the status if the body was not one).
        error: ApiError,
    },
    /// The request could not be sent or its answer not received (connection refused, timeout,
    /// reset).
    #[error("HTTP request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// A 2xx answer whose body is not the expected JSON.
    #[error("cannot decode the server's answer: {0}")]
    Decode(#[source] serde_json::Error),
    /// The base URL does not parse or cannot carry a path.
    #[error("invalid base URL: {0}")]
    InvalidUrl(String),
}

impl ClientError {
    /// The API error code, if the server answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Timeouts and pooling of a [`Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for a TCP connection; default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for a whole request, from sending to the end of the answer; default 30 s.
    pub request_timeout: Duration,
    /// How long an idle kept-alive connection stays in the pool; default 90 s.
    pub pool_idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// An OpenAPI client bound to one server and one bearer token (the admin token, or an API
/// token of one app for that app's routes). Cloning shares the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The status's error code when the body is not an [`ErrorBody`].
fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let error = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            ApiError::new(code_for_status(status), format!("HTTP {status}: {text}"))
        }
    };
    ClientError::Api {
        status: status.as_u16(),
        error,
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix) with the default [`ClientOptions`].
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Client, ClientError> {
        Client::with_options(base_url, token, ClientOptions::default())
    }

    /// A client with explicit timeouts.
    pub fn with_options(
        base_url: &str,
        token: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let base = Url::parse(base_url)
            .map_err(|e| ClientError::InvalidUrl(format!("{base_url:?}: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl(format!(
                "{base_url:?}: expected http://host:port"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(options.pool_idle_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Client {
            http,
            base,
            token: token.into(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The URL of `segments` under the base (each segment percent-encoded).
    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl(format!("{}: cannot carry a path", self.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, ClientError> {
        Ok(self
            .http
            .request(method, self.url(segments)?)
            .bearer_auth(&self.token))
    }

    /// Sends `req` and answers the body of a 2xx answer.
    async fn send(req: RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let response = req.send().await.map_err(ClientError::Transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(ClientError::Transport)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(api_error(status, &body))
        }
    }

    async fn call<T: DeserializeOwned>(req: RequestBuilder) -> Result<T, ClientError> {
        let body = Client::send(req).await?;
        serde_json::from_slice(&body).map_err(ClientError::Decode)
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        Client::call(self.request(Method::GET, segments)?).await
    }

    async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        segments: &[&str],
        query: &Q,
    ) -> Result<T, ClientError> {
        Client::call(self.request(Method::GET, segments)?.query(query)).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        Client::call(self.request(Method::POST, segments)?.json(body)).await
    }

    async fn post_empty<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        Client::call(self.request(Method::POST, segments)?).await
    }

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
        Client::send(req).await.map(drop)
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
        Client::send(req).await.map(drop)
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
        Client::call(req).await
    }

    /// `DELETE /v1/apps/{app}/jobs/{id}`.
    pub async fn delete_job(&self, app: &str, id: JobId) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &["v1", "apps", app, "jobs", &id.get().to_string()],
        )?;
        Client::send(req).await.map(drop)
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
        let body = Client::send(self.request(Method::GET, &path)?).await?;
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
        Client::call(req).await
    }

    /// `DELETE /v1/apps/{app}/workflows/{id}`.
    pub async fn delete_workflow(&self, app: &str, id: WorkflowId) -> Result<(), ClientError> {
        let req = self.request(
            Method::DELETE,
            &["v1", "apps", app, "workflows", &id.get().to_string()],
        )?;
        Client::send(req).await.map(drop)
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
        let body = Client::send(self.request(Method::GET, &["metrics"])?).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_a_prefix() {
        let c = Client::new("http://127.0.0.1:7700", "t").unwrap();
        assert_eq!(
            c.url(&["v1", "apps", "a b/c", "jobs"]).unwrap().as_str(),
            "http://127.0.0.1:7700/v1/apps/a%20b%2Fc/jobs"
        );
        let c = Client::new("http://h:1/prefix/", "t").unwrap();
        assert_eq!(
            c.url(&["healthz"]).unwrap().as_str(),
            "http://h:1/prefix/healthz"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(matches!(
            Client::new("not a url", "t"),
            Err(ClientError::InvalidUrl(_))
        ));
        assert!(matches!(
            Client::new("mailto:x@y", "t"),
            Err(ClientError::InvalidUrl(_))
        ));
    }

    #[test]
    fn foreign_error_bodies_become_api_errors() {
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.code(), Some(ErrorCode::Internal));
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"job 3 does not exist"}}"#,
        );
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
    }
}
