//! The client's version, rollback and audit routes.

use super::{Client, ClientError};
use crate::api::{
    AuditList, AuditQuery, JobVersionList, JobVersionView, JobView, PageQuery, Rollback,
    WorkflowVersionList, WorkflowVersionView, WorkflowView,
};
use crate::ids::{JobId, WorkflowId};

impl Client {
    /// `GET /v1/apps/{app}/jobs/{id}/versions`: the job's stored definitions, newest first.
    pub async fn job_versions(
        &self,
        app: &str,
        id: JobId,
        query: PageQuery,
    ) -> Result<JobVersionList, ClientError> {
        let id = id.get().to_string();
        self.get_query(&["v1", "apps", app, "jobs", &id, "versions"], &query)
            .await
    }

    /// `GET /v1/apps/{app}/jobs/{id}/versions/{version}`.
    pub async fn job_version(
        &self,
        app: &str,
        id: JobId,
        version: u64,
    ) -> Result<JobVersionView, ClientError> {
        let (id, v) = (id.get().to_string(), version.to_string());
        self.get(&["v1", "apps", app, "jobs", &id, "versions", &v])
            .await
    }

    /// `POST /v1/apps/{app}/jobs/{id}/rollback`: makes `version` current again (as a new
    /// version); answers the job.
    pub async fn rollback_job(
        &self,
        app: &str,
        id: JobId,
        version: u64,
    ) -> Result<JobView, ClientError> {
        let id = id.get().to_string();
        self.post(
            &["v1", "apps", app, "jobs", &id, "rollback"],
            &Rollback { version },
        )
        .await
    }

    /// `GET /v1/apps/{app}/workflows/{id}/versions`: the workflow's definitions, newest
    /// first.
    pub async fn workflow_versions(
        &self,
        app: &str,
        id: WorkflowId,
        query: PageQuery,
    ) -> Result<WorkflowVersionList, ClientError> {
        let id = id.get().to_string();
        self.get_query(&["v1", "apps", app, "workflows", &id, "versions"], &query)
            .await
    }

    /// `GET /v1/apps/{app}/workflows/{id}/versions/{version}`.
    pub async fn workflow_version(
        &self,
        app: &str,
        id: WorkflowId,
        version: u64,
    ) -> Result<WorkflowVersionView, ClientError> {
        let (id, v) = (id.get().to_string(), version.to_string());
        self.get(&["v1", "apps", app, "workflows", &id, "versions", &v])
            .await
    }

    /// `POST /v1/apps/{app}/workflows/{id}/rollback`: makes `version` current again (as a
    /// new version); answers the workflow.
    pub async fn rollback_workflow(
        &self,
        app: &str,
        id: WorkflowId,
        version: u64,
    ) -> Result<WorkflowView, ClientError> {
        let id = id.get().to_string();
        self.post(
            &["v1", "apps", app, "workflows", &id, "rollback"],
            &Rollback { version },
        )
        .await
    }

    /// `GET /v1/apps/{app}/audit`: the app's audit records, newest first.
    pub async fn list_audit(
        &self,
        app: &str,
        query: &AuditQuery,
    ) -> Result<AuditList, ClientError> {
        self.get_query(&["v1", "apps", app, "audit"], query).await
    }
}
