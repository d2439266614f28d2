//! The app and token routes, one function per route, like the job routes in `handlers`.
//!
//! | route | token | handler |
//! |---|---|---|
//! | `GET /v1/apps` | admin token | [`list_apps`] |
//! | `GET /v1/apps/{app}` | `read` | [`get_app`] |
//! | `DELETE /v1/apps/{app}?force=` → 204 | admin token | [`delete_app`] |
//! | `POST /v1/apps/{app}/rotate-secret` (empty body or `{}` allowed) | `admin` | [`rotate_secret`] |
//! | `POST /v1/apps/{app}/tokens` → 201 | `admin` | [`create_token`] |
//! | `GET /v1/apps/{app}/tokens` | `admin` | [`list_tokens`] |
//! | `DELETE /v1/apps/{app}/tokens/{id}` → 204 | `admin` | [`revoke_token`] |

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

use super::extract::{json_body, optional_json_body, parse_query};
use super::failure::Failure;
use super::handlers::{created, ok, path, Answer, AppIdPath, AppPath};
use super::Shared;
use crate::api::{CreateToken, DeleteAppQuery, RotateSecret, TokenRole};

/// `GET /v1/apps` (admin): every app, by id.
pub(crate) async fn list_apps(State(s): State<Shared>, headers: HeaderMap) -> Answer {
    s.authorize_admin(&headers)?;
    ok(s.api.list_apps().await?)
}

/// `GET /v1/apps/{app}`.
pub(crate) async fn get_app(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    ok(s.api.get_app(app).await?)
}

/// `DELETE /v1/apps/{app}?force=` (admin) → 204.
pub(crate) async fn delete_app(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    s.authorize_admin(&headers)?;
    let query: DeleteAppQuery = parse_query(&uri)?;
    let app = s.api.resolve_app(&p.app).map_err(Failure::from)?;
    s.api.delete_app(app, query.force.unwrap_or(false)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/apps/{app}/rotate-secret` → the new secret and the end of the overlap.
pub(crate) async fn rotate_secret(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let body: RotateSecret = optional_json_body(req).await?;
    ok(s.api.rotate_secret(app, body).await?)
}

/// `POST /v1/apps/{app}/tokens` → 201 with the token (shown this once).
pub(crate) async fn create_token(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let body: CreateToken = json_body(req).await?;
    created(s.api.create_token(app, body).await?)
}

/// `GET /v1/apps/{app}/tokens`.
pub(crate) async fn list_tokens(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    ok(s.api.list_tokens(app).await?)
}

/// `DELETE /v1/apps/{app}/tokens/{id}` → 204.
pub(crate) async fn revoke_token(
    State(s): State<Shared>,
    p: Result<Path<AppIdPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    let id: u64 =
        p.id.parse()
            .map_err(|_| Failure::invalid(format!("invalid token id: `{}`", p.id)))?;
    s.api.revoke_token(app, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
