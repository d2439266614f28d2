//! The alarm routes, one function per route, like the job routes in `handlers`: authorize
//! first, then parse the query and body, then call the [`Api`](crate::api::Api).
//!
//! | route | handler |
//! |---|---|
//! | `PUT /v1/apps/{app}/alarm-channels/{name}` | [`put_channel`] |
//! | `GET /v1/apps/{app}/alarm-channels` | [`list_channels`] |
//! | `DELETE /v1/apps/{app}/alarm-channels/{name}` → 204 | [`delete_channel`] |
//! | `POST /v1/apps/{app}/alarm-channels/{name}/test` | [`test_channel`] |
//! | `GET /v1/apps/{app}/alarms?limit=&cursor=` | [`list_alarms`] |

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::extract::{json_body, parse_query};
use super::handlers::{ok, path, Answer, AppPath};
use super::Shared;
use crate::api::TokenRole;
use crate::api::{ChannelBody, PageQuery};

/// `/v1/apps/{app}/alarm-channels/{name}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AppChannelPath {
    app: String,
    name: String,
}

/// `PUT /v1/apps/{app}/alarm-channels/{name}`.
pub(crate) async fn put_channel(
    State(s): State<Shared>,
    p: Result<Path<AppChannelPath>, PathRejection>,
    req: Request,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(req.headers(), &p.app, TokenRole::Admin)?;
    let body: ChannelBody = json_body(req).await?;
    ok(s.api.put_channel(app, p.name, body).await?)
}

/// `GET /v1/apps/{app}/alarm-channels`.
pub(crate) async fn list_channels(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    ok(s.api.list_channels(app).await?)
}

/// `DELETE /v1/apps/{app}/alarm-channels/{name}` → 204.
pub(crate) async fn delete_channel(
    State(s): State<Shared>,
    p: Result<Path<AppChannelPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Admin)?;
    s.api.delete_channel(app, p.name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/apps/{app}/alarm-channels/{name}/test` (no body).
pub(crate) async fn test_channel(
    State(s): State<Shared>,
    p: Result<Path<AppChannelPath>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Operate)?;
    ok(s.api.test_channel(app, p.name).await?)
}

/// `GET /v1/apps/{app}/alarms?limit=&cursor=`.
pub(crate) async fn list_alarms(
    State(s): State<Shared>,
    p: Result<Path<AppPath>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer {
    let p = path(p)?;
    let app = s.authorize_app(&headers, &p.app, TokenRole::Read)?;
    let query: PageQuery = parse_query(&uri)?;
    ok(s.api.list_alarms(app, query).await?)
}
