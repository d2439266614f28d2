//! Versions, rollback and the audit trail over the server core: reads go to the repository;
//! a rollback is an update with a stored definition (so it is validated, rescheduled and
//! stored as a new version like any update); an audit record is durable before the call
//! answers.

use crate::api::{
    ApiError, AppRef, AuditEntry, AuditList, AuditQuery, AuditView, JobVersionList, JobVersionView,
    JobView, PageQuery, Rollback, WorkflowVersionList, WorkflowVersionView, WorkflowView,
};
use crate::ids::{JobId, WorkflowId};
use crate::server::api_convert::job_body;
use crate::server::history::{AuditRecord, JobVersion, WorkflowVersion};
use crate::server::RepoError;

use super::api::NodeApi;

/// Default page size of the version and audit listings.
const DEFAULT_PAGE: usize = 100;

fn page_limit(l: Option<u32>) -> usize {
    l.map_or(DEFAULT_PAGE, |l| usize::try_from(l).unwrap_or(usize::MAX))
}

fn job_version_view(v: JobVersion) -> JobVersionView {
    JobVersionView {
        version: v.version,
        updated_at: v.job.updated_at,
        job: job_body(&v.job),
    }
}

fn workflow_version_view(v: WorkflowVersion) -> WorkflowVersionView {
    WorkflowVersionView {
        version: v.version,
        definition: v.def,
    }
}

fn audit_view(r: AuditRecord) -> AuditView {
    AuditView {
        seq: r.seq,
        time: r.time,
        entry: AuditEntry {
            actor: r.actor,
            token_id: r.token_id,
            role: r.role,
            peer: r.peer,
            action: r.action,
            target: r.target,
            summary: r.summary,
        },
    }
}

impl NodeApi {
    /// `app`'s job `id` exists (deleted jobs have no versions).
    fn check_job(&self, app: &AppRef, id: JobId) -> Result<(), ApiError> {
        self.0.core.lock().job_of(app.id, id).map(drop)
    }

    pub(super) async fn versions_of_job(
        &self,
        app: AppRef,
        id: JobId,
        query: PageQuery,
    ) -> Result<JobVersionList, ApiError> {
        self.check_job(&app, id)?;
        let page = self
            .0
            .repo
            .list_job_versions(id, query.cursor, page_limit(query.limit))?;
        Ok(JobVersionList {
            items: page.items.into_iter().map(job_version_view).collect(),
            next_cursor: page.next_cursor,
        })
    }

    pub(super) async fn version_of_job(
        &self,
        app: AppRef,
        id: JobId,
        version: u64,
    ) -> Result<JobVersionView, ApiError> {
        self.check_job(&app, id)?;
        let job = self.0.repo.get_job_version(id, version)?;
        Ok(job_version_view(JobVersion { version, job }))
    }

    pub(super) async fn job_rollback(
        &self,
        app: AppRef,
        id: JobId,
        req: Rollback,
    ) -> Result<JobView, ApiError> {
        self.check_job(&app, id)?;
        let record = self.0.repo.get_job_version(id, req.version)?;
        if record.app_id != app.id {
            return Err(ApiError::not_found("job version", req.version));
        }
        self.replace(id, record).await
    }

    pub(super) async fn versions_of_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        query: PageQuery,
    ) -> Result<WorkflowVersionList, ApiError> {
        self.wf_get(app, id).await?;
        let page = self
            .0
            .repo
            .list_workflow_versions(id, query.cursor, page_limit(query.limit))?;
        Ok(WorkflowVersionList {
            items: page.items.into_iter().map(workflow_version_view).collect(),
            next_cursor: page.next_cursor,
        })
    }

    pub(super) async fn version_of_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        version: u64,
    ) -> Result<WorkflowVersionView, ApiError> {
        self.wf_get(app, id).await?;
        let def = match self.0.repo.workflow_def(id, version) {
            Err(RepoError::NotFound { .. }) => {
                return Err(ApiError::not_found("workflow version", version))
            }
            other => other?,
        };
        Ok(WorkflowVersionView {
            version,
            definition: def,
        })
    }

    pub(super) async fn workflow_rollback(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: Rollback,
    ) -> Result<WorkflowView, ApiError> {
        let def = self
            .version_of_workflow(app.clone(), id, req.version)
            .await?;
        self.wf_update(app, id, def.definition).await
    }

    pub(super) async fn audit_record(
        &self,
        app: AppRef,
        entry: AuditEntry,
    ) -> Result<(), ApiError> {
        let rt = &self.0;
        let record = AuditRecord {
            app_id: app.id,
            seq: 0,
            time: rt.now(),
            actor: entry.actor,
            token_id: entry.token_id,
            role: entry.role,
            peer: entry.peer,
            action: entry.action,
            target: entry.target,
            summary: entry.summary,
        };
        let commit = rt.repo.append_audit(record)?;
        rt.await_commit(commit).await?;
        Ok(())
    }

    pub(super) async fn audit_list(
        &self,
        app: AppRef,
        query: AuditQuery,
    ) -> Result<AuditList, ApiError> {
        let page = self.0.repo.list_audit(
            app.id,
            query.target.as_deref(),
            query.cursor,
            page_limit(query.limit),
        )?;
        Ok(AuditList {
            items: page.items.into_iter().map(audit_view).collect(),
            next_cursor: page.next_cursor,
        })
    }
}
