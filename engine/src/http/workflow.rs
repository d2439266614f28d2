//! The workflow routes, one function per route, exactly like the job routes in
//! `handlers`: authorize first, then parse ids, query and body, then call the
//! [`Api`](crate::api::Api); any failure is a `Failure`.
//!
//! | route | handler |
//! |---|---|
//! | `POST /v1/apps/{app}/workflows` → 201 | [`create_workflow`] |
//! | `GET /v1/apps/{app}/workflows?limit=&cursor=&name=&tag=&time_expression_type=` | [`list_workflows`] |
//! | `GET /v1/apps/{app}/workflows/{id}` | [`get_workflow`] |
//! | `PUT /v1/apps/{app}/workflows/{id}` | [`update_workflow`] |
//! | `DELETE /v1/apps/{app}/workflows/{id}` → 204 | [`delete_workflow`] |
//! | `POST /v1/apps/{app}/workflows/{id}/run` (empty body or `{}` allowed) | [`run_workflow`] |
//! | `POST /v1/apps/{app}/workflows/{id}/backfill` | [`backfill_workflow`] |
//! | `POST /v1/apps/{app}/workflows/{id}/copy` → 201 | [`copy_workflow`] |
//! | `GET /v1/apps/{app}/workflow-instances?workflow_id=&limit=&cursor=` | [`list_workflow_instances`] |
//! | `GET /v1/apps/{app}/workflow-instances/{id}` | [`get_workflow_instance`] |
//! | `DELETE /v1/apps/{app}/workflow-instances/{id}` → 204 | [`delete_workflow_instance`] |
//! | `POST /v1/apps/{app}/workflow-instances/{id}/stop`, `/retry` | [`stop_workflow_instance`], [`retry_workflow_instance`] |
//! | `POST /v1/apps/{app}/workflow-instances/{id}/nodes/{node}/mark-success` | [`mark_workflow_node_success`] |

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::extract::{json_body, optional_json_body, parse_id, parse_query};
use super::handlers::{created, ok, path, Answer, AppIdPath, AppPath};
use super::{idempotency, Shared};
use crate::api::TokenRole;
use crate::api::{
    CopyWorkflow, RunWorkflow, WorkflowDef, WorkflowInstanceAction, WorkflowInstanceQuery,
    WorkflowQuery,
};

/// `/v1/apps/{app}/workflow-instances/{id}/nodes/{node}/...`; the ids are parsed after
/// authorization.
#[derive(Debug, Deserialize)]
pub(crate) struct AppIdNodePath {
    app: String,
    id: String,
    node: String,
}

/// `POST /v1/apps/{app}/workflows` → 201 `{"id"}`.
pub(crate) async fn create_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let scope = idempotency::scope(&req)?;
    let api = std::sync::Arc::clone(&s.api);
    let run = move || async move {
        let body: WorkflowDef = json_body(req).await?;
        created(api.create_workflow(app, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `GET /v1/apps/{app}/workflows?limit=&cursor=&name=&tag=&time_expression_type=`.
pub(crate) async fn list_workflows(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let query: WorkflowQuery = parse_query(&uri)?;
    ok(s.api.list_workflows(app, query).await?)
}

/// `POST /v1/apps/{app}/workflows/{id}/copy` → 201 `{"id"}` of the copy.
pub(crate) async fn copy_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    let body: CopyWorkflow = json_body(req).await?;
    created(s.api.copy_workflow(app, id, body).await?)
}

/// `GET /v1/apps/{app}/workflows/{id}`.
pub(crate) async fn get_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id = parse_id(&p.id)?;
    ok(s.api.get_workflow(app, id).await?)
}

/// `PUT /v1/apps/{app}/workflows/{id}`.
pub(crate) async fn update_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    let body: WorkflowDef = json_body(req).await?;
    ok(s.api.update_workflow(app, id, body).await?)
}

/// `DELETE /v1/apps/{app}/workflows/{id}` → 204, empty body.
pub(crate) async fn delete_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    s.api.delete_workflow(app, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/apps/{app}/workflows/{id}/run` → 200 `{"workflow_instance_id"}`; an empty body
/// is `{}`.
pub(crate) async fn run_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    let scope = idempotency::scope(&req)?;
    let api = std::sync::Arc::clone(&s.api);
    let run = move || async move {
        let body: RunWorkflow = optional_json_body(req).await?;
        ok(api.run_workflow(app, id, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `POST /v1/apps/{app}/workflows/{id}/backfill` `{"from","to","dry_run"}` → the trigger
/// times and the workflow instances created (operate; honours `Idempotency-Key`).
pub(crate) async fn backfill_workflow(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    let scope = idempotency::scope(&req)?;
    let api = std::sync::Arc::clone(&s.api);
    let run = move || async move {
        let body: crate::api::Backfill = json_body(req).await?;
        ok(api.backfill_workflow(app, id, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `GET /v1/apps/{app}/workflow-instances?workflow_id=&limit=&cursor=`.
pub(crate) async fn list_workflow_instances(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let query: WorkflowInstanceQuery = parse_query(&uri)?;
    ok(s.api.list_workflow_instances(app, query).await?)
}

/// `GET /v1/apps/{app}/workflow-instances/{id}`.
pub(crate) async fn get_workflow_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id = parse_id(&p.id)?;
    ok(s.api.get_workflow_instance(app, id).await?)
}

async fn action(
    s: Shared,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
    action: WorkflowInstanceAction,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    ok(s.api.workflow_instance_action(app, id, action).await?)
}

/// `DELETE /v1/apps/{app}/workflow-instances/{id}` → 204, empty body: a finished workflow
/// instance with its node instances and their logs (409 while anything of it runs).
pub(crate) async fn delete_workflow_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    s.api.delete_workflow_instance(app, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/apps/{app}/workflow-instances/{id}/stop` → the workflow instance (any body is
/// ignored).
pub(crate) async fn stop_workflow_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    action(s, p, headers, WorkflowInstanceAction::Stop).await
}

/// `POST /v1/apps/{app}/workflow-instances/{id}/retry` → the workflow instance (any body is
/// ignored).
pub(crate) async fn retry_workflow_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    action(s, p, headers, WorkflowInstanceAction::Retry).await
}

/// `POST /v1/apps/{app}/workflow-instances/{id}/nodes/{node}/mark-success` → the workflow
/// instance (any body is ignored).
pub(crate) async fn mark_workflow_node_success(
    State(s): State<Shared>,
    p: Result<Path<AppIdNodePath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p: AppIdNodePath = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    let node = parse_id(&p.node)?;
    ok(s.api.mark_workflow_node_success(app, id, node).await?)
}
