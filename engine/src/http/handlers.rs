//! One function per route. Each authorizes first, then parses ids, query and body, then calls
//! the [`Api`](crate::api::Api); any failure is a [`Failure`].

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

use super::extract::{json_body, optional_json_body, parse_id, parse_query};
use super::failure::Failure;
use super::{idempotency, Shared};
use crate::api::TokenRole;
use crate::api::{
    validate_expression, ApiError, CopyJob, CreateApp, ErrorCode, InstanceAction, InstanceQuery,
    JobBody, JobQuery, LogQuery, RunJob, RunJobBatch, ValidateRequest,
};
use crate::clock::{Clock, SystemClock};

pub(super) type Answer = Result<Response, Failure>;

/// `/v1/apps/{app}/...`
#[derive(Debug, Deserialize)]
pub(crate) struct AppPath {
    pub(super) app: String,
}

/// `/v1/apps/{app}/{jobs|instances|workflows|workflow-instances}/{id}/...`; `id` is parsed after authorization.
#[derive(Debug, Deserialize)]
pub(crate) struct AppIdPath {
    pub(super) app: String,
    pub(super) id: String,
}

pub(super) fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Failure> {
    path.map(|Path(p)| p)
        .map_err(|e| Failure::invalid(format!("invalid path: {}", e.body_text())))
}

pub(super) fn ok<T: serde::Serialize>(value: T) -> Answer {
    Ok(Json(value).into_response())
}

pub(super) fn created<T: serde::Serialize>(value: T) -> Answer {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// `GET /healthz` (no auth).
pub(crate) async fn healthz(State(s): State<Shared>) -> Response {
    Json(s.api.health()).into_response()
}

/// `GET /metrics` (no auth): the [`Api`](crate::api::Api)'s metrics and the HTTP counters.
pub(crate) async fn metrics(State(s): State<Shared>) -> Response {
    let mut text = s.api.metrics_text();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&s.metrics.render());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `POST /v1/validate` (no auth: it reads no server state and its work is bounded by
/// `count` ≤ [`MAX_VALIDATE_COUNT`](crate::api::MAX_VALIDATE_COUNT) and the body limit).
pub(crate) async fn validate(req: Request) -> Answer {
    let body: ValidateRequest = json_body(req).await?;
    ok(validate_expression(&body, SystemClock.now_ms())?)
}

/// `POST /v1/apps` (admin) → 201.
pub(crate) async fn create_app(State(s): State<Shared>, req: Request) -> Answer {
    s.authorize_admin(req.headers())?;
    let body: CreateApp = json_body(req).await?;
    created(s.api.create_app(body).await?)
}

/// `POST /v1/apps/{app}/jobs` → 201.
pub(crate) async fn create_job(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let scope = idempotency::scope(&req)?;
    let api = Arc::clone(&s.api);
    let run = move || async move {
        let body: JobBody = json_body(req).await?;
        created(api.create_job(app, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `GET /v1/apps/{app}/jobs?limit=&cursor=&name=&tag=&time_expression_type=&execute_type=&enabled=`.
pub(crate) async fn list_jobs(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let query: JobQuery = parse_query(&uri)?;
    ok(s.api.list_jobs(app, query).await?)
}

/// `GET /v1/apps/{app}/jobs/{id}`.
pub(crate) async fn get_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id = parse_id(&p.id)?;
    ok(s.api.get_job(app, id).await?)
}

/// `PUT /v1/apps/{app}/jobs/{id}`.
pub(crate) async fn update_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    let body: JobBody = json_body(req).await?;
    ok(s.api.update_job(app, id, body).await?)
}

/// `DELETE /v1/apps/{app}/jobs/{id}` → 204, empty body.
pub(crate) async fn delete_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    s.api.delete_job(app, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_enabled(
    s: Shared,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
    enabled: bool,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    ok(s.api.set_job_enabled(app, id, enabled).await?)
}

/// `POST /v1/apps/{app}/jobs/{id}/enable` → the job (any body is ignored).
pub(crate) async fn enable_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    set_enabled(s, p, headers, true).await
}

/// `POST /v1/apps/{app}/jobs/{id}/disable` → the job (any body is ignored).
pub(crate) async fn disable_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    set_enabled(s, p, headers, false).await
}

/// `POST /v1/apps/{app}/jobs/{id}/run` → 200 `{"instance_id"}`; an empty body is `{}`.
pub(crate) async fn run_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    let scope = idempotency::scope(&req)?;
    let api = Arc::clone(&s.api);
    let run = move || async move {
        let body: RunJob = optional_json_body(req).await?;
        ok(api.run_job(app, id, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `POST /v1/apps/{app}/jobs/{id}/runs` `{"runs":[{"params","delay_ms"}, ...]}` → 200
/// `{"instance_ids"}` in the runs' order (operate; honours `Idempotency-Key`). Every run
/// takes a token of the app's rate: the request's own, and the rest once the body is read.
pub(crate) async fn run_job_batch(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    let scope = idempotency::scope(&req)?;
    let shared = s.clone();
    let run = move || async move {
        let body: RunJobBatch = json_body(req).await?;
        body.check()?;
        let more = u64::try_from(body.runs.len().saturating_sub(1)).unwrap_or(u64::MAX);
        shared.admit_more(&app.name, more)?;
        ok(shared.api.run_job_batch(app, id, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `POST /v1/apps/{app}/jobs/{id}/backfill` `{"from","to","dry_run"}` → the trigger times and
/// the runs created (operate; honours `Idempotency-Key`).
pub(crate) async fn backfill_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    let scope = idempotency::scope(&req)?;
    let api = Arc::clone(&s.api);
    let run = move || async move {
        let body: crate::api::Backfill = json_body(req).await?;
        ok(api.backfill_job(app, id, body).await?)
    };
    s.idempotency
        .answer(&s.api, scope, s.clock.now_ms(), run)
        .await
}

/// `POST /v1/apps/{app}/jobs/{id}/copy` → 201 `{"id"}` of the copy.
pub(crate) async fn copy_job(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    let body: CopyJob = json_body(req).await?;
    created(s.api.copy_job(app, id, body).await?)
}

/// `GET /v1/apps/{app}/instances?job_id=&status=&trigger_from=&trigger_to=&finished_from=&finished_to=&limit=&cursor=`.
pub(crate) async fn list_instances(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let query: InstanceQuery = parse_query(&uri)?;
    ok(s.api.list_instances(app, query).await?)
}

/// `GET /v1/apps/{app}/instances/{id}`.
pub(crate) async fn get_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id = parse_id(&p.id)?;
    ok(s.api.get_instance(app, id).await?)
}

/// `DELETE /v1/apps/{app}/instances/{id}` → 204, empty body: a finished instance with its
/// log (409 while it runs, or while the workflow instance whose node it ran runs).
pub(crate) async fn delete_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    let id = parse_id(&p.id)?;
    s.api.delete_instance(app, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn action(
    s: Shared,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
    action: InstanceAction,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Operate)?;
    let id = parse_id(&p.id)?;
    ok(s.api.instance_action(app, id, action).await?)
}

/// `POST /v1/apps/{app}/instances/{id}/stop` → the instance (any body is ignored).
pub(crate) async fn stop_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    action(s, p, headers, InstanceAction::Stop).await
}

/// `POST /v1/apps/{app}/instances/{id}/cancel` → the instance (any body is ignored).
pub(crate) async fn cancel_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    action(s, p, headers, InstanceAction::Cancel).await
}

/// `POST /v1/apps/{app}/instances/{id}/retry` → the instance (any body is ignored).
pub(crate) async fn retry_instance(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    action(s, p, headers, InstanceAction::Retry).await
}

/// `GET /v1/apps/{app}/instances/{id}/log?limit=&cursor=&before=`.
pub(crate) async fn instance_log(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id = parse_id(&p.id)?;
    let query: LogQuery = parse_query(&uri)?;
    query.validate()?;
    ok(s.api.instance_log(app, id, query).await?)
}

/// Most bytes `GET .../log.txt` answers; a longer log ends with a line saying where it was
/// cut (page the rest with `GET .../log?cursor=`).
pub(crate) const MAX_LOG_TEXT_BYTES: usize = 32 << 20;

/// `GET /v1/apps/{app}/instances/{id}/log.txt`: the whole log as text, oldest line first,
/// one line per log line ([`LogLineView::to_text`](crate::api::LogLineView::to_text)).
pub(crate) async fn instance_log_text(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let id = parse_id(&p.id)?;
    let mut text = String::new();
    let mut cursor = None;
    loop {
        let query = LogQuery {
            limit: None,
            cursor,
            before: None,
        };
        let page = s.api.instance_log(app.clone(), id, query).await?;
        for line in &page.lines {
            if text.len() >= MAX_LOG_TEXT_BYTES {
                text.push_str(&format!(
                    "ferrojob: log cut at {MAX_LOG_TEXT_BYTES} bytes; page on from cursor {}\n",
                    cursor.unwrap_or(0)
                ));
                return Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
            }
            text.push_str(&line.to_text());
            text.push('\n');
            cursor = Some(line.seq);
        }
        if page.next_cursor.is_none() || page.lines.is_empty() {
            break;
        }
    }
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /v1/apps/{app}/workers`.
pub(crate) async fn list_workers(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    ok(s.api.list_workers(app).await?)
}

/// `GET /v1/apps/{app}/stats`.
pub(crate) async fn app_stats(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    ok(s.api.app_stats(app).await?)
}

/// Any path without a route: 404 `not_found`.
pub(crate) async fn not_found(method: Method, uri: Uri) -> Failure {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
    .into()
}

/// A route's path with a method it does not have: 405 (axum adds the `Allow` header) with
/// code `invalid_argument`, since [`ErrorCode`] has no 405 kind.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Failure {
    Failure {
        retry_after: None,
        login_failed: false,
        status: StatusCode::METHOD_NOT_ALLOWED,
        error: ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "method {method} is not allowed on {}; the Allow header lists the methods that are",
                uri.path()
            ),
        ),
    }
}
