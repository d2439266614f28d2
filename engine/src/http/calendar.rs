//! The calendar routes, one function per route, like the alarm channel routes: authorize
//! first (`read` to look, `admin` to change), then parse the body, then call the
//! [`Api`](crate::api::Api).
//!
//! | route | handler |
//! |---|---|
//! | `GET /v1/apps/{app}/calendars` | [`list_calendars`] |
//! | `GET /v1/apps/{app}/calendars/{name}` | [`get_calendar`] |
//! | `PUT /v1/apps/{app}/calendars/{name}` | [`put_calendar`] |
//! | `DELETE /v1/apps/{app}/calendars/{name}` → 204 (409 while a job or workflow names it) | [`delete_calendar`] |

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::extract::json_body;
use super::handlers::{ok, path, Answer, AppPath};
use super::Shared;
use crate::api::{CalendarBody, TokenRole};

/// `/v1/apps/{app}/calendars/{name}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AppCalendarPath {
    app: String,
    name: String,
}

/// `GET /v1/apps/{app}/calendars`.
pub(crate) async fn list_calendars(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    ok(s.api.list_calendars(app).await?)
}

/// `GET /v1/apps/{app}/calendars/{name}`.
pub(crate) async fn get_calendar(
    State(s): State<Shared>,
    p: Result<Path<AppCalendarPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    ok(s.api.get_calendar(app, p.name).await?)
}

/// `PUT /v1/apps/{app}/calendars/{name}`.
pub(crate) async fn put_calendar(
    State(s): State<Shared>,
    p: Result<Path<AppCalendarPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let body: CalendarBody = json_body(req).await?;
    ok(s.api.put_calendar(app, p.name, body).await?)
}

/// `DELETE /v1/apps/{app}/calendars/{name}` → 204.
pub(crate) async fn delete_calendar(
    State(s): State<Shared>,
    p: Result<Path<AppCalendarPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    s.api.delete_calendar(app, p.name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
