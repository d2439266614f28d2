//! The version, rollback and audit routes: `GET .../jobs/{id}/versions[/{version}]`,
//! `POST .../jobs/{id}/rollback` (admin), the same for workflows, and
//! `GET /v1/apps/{app}/audit` (admin: the trail names tokens and peer addresses).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;

use super::extract::{json_body, parse_id, parse_query};
use super::failure::Failure;
use super::handlers::{ok, path, Answer, AppIdPath, AppPath};
use super::Shared;
use crate::api::{AuditQuery, PageQuery, Rollback, TokenRole};
use crate::ids::{JobId, WorkflowId};

/// `/v1/apps/{app}/{jobs|workflows}/{id}/versions/{version}`.
#[derive(Debug, Deserialize)]
pub(crate) struct VersionPath {
    app: String,
    id: String,
    version: String,
}

fn parse_version(text: &str) -> Result<u64, Failure> {
    text.parse::<u64>()
        .map_err(|_| Failure::invalid(format!("invalid version {text:?}: expected a number")))
}

/// `GET /v1/apps/{app}/jobs/{id}/versions?limit=&cursor=`.
pub(crate) async fn job_versions(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id: JobId = parse_id(&p.id)?;
    let query: PageQuery = parse_query(&uri)?;
    ok(s.api.job_versions(app, id, query).await?)
}

/// `GET /v1/apps/{app}/jobs/{id}/versions/{version}`.
pub(crate) async fn job_version(
    State(s): State<Shared>,
    p: Result<Path<VersionPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id: JobId = parse_id(&p.id)?;
    let version = parse_version(&p.version)?;
    ok(s.api.get_job_version(app, id, version).await?)
}

/// `POST /v1/apps/{app}/jobs/{id}/rollback {"version"}` → the job.
pub(crate) async fn rollback_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let id: JobId = parse_id(&p.id)?;
    let body: Rollback = json_body(req).await?;
    ok(s.api.rollback_job(app, id, body).await?)
}

/// `GET /v1/apps/{app}/workflows/{id}/versions?limit=&cursor=`.
pub(crate) async fn workflow_versions(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id: WorkflowId = parse_id(&p.id)?;
    let query: PageQuery = parse_query(&uri)?;
    ok(s.api.workflow_versions(app, id, query).await?)
}

/// `GET /v1/apps/{app}/workflows/{id}/versions/{version}`.
pub(crate) async fn workflow_version(
    State(s): State<Shared>,
    p: Result<Path<VersionPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id: WorkflowId = parse_id(&p.id)?;
    let version = parse_version(&p.version)?;
    ok(s.api.get_workflow_version(app, id, version).await?)
}

/// `POST /v1/apps/{app}/workflows/{id}/rollback {"version"}` → the workflow.
pub(crate) async fn rollback_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let id: WorkflowId = parse_id(&p.id)?;
    let body: Rollback = json_body(req).await?;
    ok(s.api.rollback_workflow(app, id, body).await?)
}

/// `GET /v1/apps/{app}/audit?limit=&cursor=&target=`.
pub(crate) async fn list_audit(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    let query: AuditQuery = parse_query(&uri)?;
    ok(s.api.list_audit(app, query).await?)
}
