//! Path ids, query strings and JSON bodies into `api::types`; every failure is a 400
//! `invalid_argument` naming what was wrong, except a body over the limit (413) or one that
//! does not arrive in time (408).
//!
//! These are plain functions rather than axum extractors so that handlers can authorize a
//! request before they read its body.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use serde::de::DeserializeOwned;

use super::failure::Failure;
use super::guard::BodyReadTimeout;
use super::DEFAULT_BODY_READ_TIMEOUT;
use crate::api::{ApiError, ErrorCode};
use crate::ids::ParseIdError;

/// A numeric `{id}` path segment as the id type the route names (the 400 says which kind of
/// id was bad).
pub(crate) fn parse_id<I: FromStr<Err = ParseIdError>>(text: &str) -> Result<I, Failure> {
    text.parse::<I>()
        .map_err(|e| Failure::invalid(e.to_string()))
}

/// The query string of `uri` as `T` (unknown keys and repeated keys are refused by `T`). A
/// key with an empty or no value (`?job_id=&limit=10`, `?job_id&limit=10`) counts as absent,
/// so the route's template with blanks is accepted; such a key is not checked at all.
pub(crate) fn parse_query<T: DeserializeOwned + Default>(uri: &Uri) -> Result<T, Failure> {
    let Some(query) = uri.query() else {
        return Ok(T::default());
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect();
    if kept.is_empty() {
        return Ok(T::default());
    }
    // The kept pairs come from a valid URI unchanged, so this parses; refuse it anyway if not.
    let uri: Uri = format!("/?{}", kept.join("&"))
        .parse()
        .map_err(|_| Failure::invalid("invalid query string"))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(t)| t)
        .map_err(|e| Failure::invalid(format!("invalid query string: {}", e.body_text())))
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(ty, suffix)| ty.starts_with("application/") && suffix == "json")
}

/// The body of `req`, within the router's body limit (413 past it) and the body read timeout
/// the guard put in its extensions (408 past it; [`DEFAULT_BODY_READ_TIMEOUT`] if absent).
pub(crate) async fn read_body(req: Request) -> Result<Bytes, Failure> {
    let timeout = req
        .extensions()
        .get::<BodyReadTimeout>()
        .map_or(DEFAULT_BODY_READ_TIMEOUT, |t| t.0);
    let Ok(read) = tokio::time::timeout(timeout, Bytes::from_request(req, &())).await else {
        return Err(Failure {
            retry_after: None,
            login_failed: false,
            status: StatusCode::REQUEST_TIMEOUT,
            error: ApiError::new(
                ErrorCode::InvalidArgument,
                format!("the request body did not arrive within {timeout:?}"),
            ),
        });
    };
    read.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, e.body_text()).into()
        } else {
            Failure::invalid(format!(
                "could not read the request body: {}",
                e.body_text()
            ))
        }
    })
}

/// `bytes` as `T`. Every request body is a JSON object: anything else is refused before serde
/// sees it, since serde would otherwise read a JSON array as a struct's fields by position
/// (`["billing","s3cret-billing"]` as a `CreateApp`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Failure::invalid(
            "the request body must be a JSON object (`{...}`)",
        ));
    }
    Json::<T>::from_bytes(bytes)
        .map(|Json(t)| t)
        .map_err(|e| Failure::invalid(e.body_text()))
}

/// The JSON body of `req` as `T`: `Content-Type: application/json` and a non-empty body are
/// required.
pub(crate) async fn json_body<T: DeserializeOwned>(req: Request) -> Result<T, Failure> {
    if !is_json(req.headers()) {
        return Err(Failure::invalid(
            "expected a JSON body with `Content-Type: application/json`",
        ));
    }
    let bytes = read_body(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::invalid(
            "the request body is empty: expected a JSON object",
        ));
    }
    parse_json(&bytes)
}

/// Like [`json_body`], but an empty body (with or without a content type) is `T::default()`.
pub(crate) async fn optional_json_body<T: DeserializeOwned + Default>(
    req: Request,
) -> Result<T, Failure> {
    let json = is_json(req.headers());
    let bytes = read_body(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !json {
        return Err(Failure::invalid(
            "expected an empty body or a JSON body with `Content-Type: application/json`",
        ));
    }
    parse_json(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{InstanceQuery, PageQuery};
    use crate::ids::{JobId, NodeId, WorkflowInstanceId};
    use crate::model::InstanceStatus;

    fn query<T: DeserializeOwned + Default>(uri: &str) -> Result<T, Failure> {
        parse_query(&uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn query_strings() {
        let q: InstanceQuery = query("/x?job_id=7&status=RUNNING&limit=3&cursor=9").unwrap();
        assert_eq!(q.job_id, Some(JobId(7)));
        assert_eq!(q.status, Some(InstanceStatus::Running));
        assert_eq!(q.limit, Some(3));
        assert_eq!(q.cursor, Some(9));
        let q: InstanceQuery = query("/x?job_id=&status=&limit=&cursor=").unwrap();
        assert_eq!(q, InstanceQuery::default());
        let q: PageQuery = query("/x").unwrap();
        assert_eq!(q, PageQuery::default());
        assert!(query::<PageQuery>("/x?limit=abc").is_err());
        assert!(query::<PageQuery>("/x?limit=-1").is_err());
        assert!(query::<PageQuery>("/x?bogus=1").is_err());
        assert!(query::<PageQuery>("/x?limit=1&limit=2").is_err());
        assert!(query::<InstanceQuery>("/x?status=NOPE").is_err());
    }

    #[test]
    fn listing_filters() {
        use crate::api::{JobQuery, WorkflowQuery};
        use crate::model::ExecuteType;
        use crate::time_expression::TimeExpressionType;
        let q: JobQuery = query(
            "/x?name=night%20ly&tag=team%3Adata&time_expression_type=CRON&execute_type=MAP_REDUCE&enabled=false",
        )
        .unwrap();
        assert_eq!(q.name.as_deref(), Some("night ly"));
        assert_eq!(q.tag.as_deref(), Some("team:data"));
        assert_eq!(q.time_expression_type, Some(TimeExpressionType::Cron));
        assert_eq!(q.execute_type, Some(ExecuteType::MapReduce));
        assert_eq!(q.enabled, Some(false));
        let q: JobQuery = query("/x?name=&tag=&enabled=").unwrap();
        assert_eq!(q, JobQuery::default());
        assert!(query::<JobQuery>("/x?enabled=maybe").is_err());
        assert!(query::<JobQuery>("/x?execute_type=NOPE").is_err());
        assert!(query::<JobQuery>("/x?tag=a&tag=b").is_err());
        let q: WorkflowQuery = query("/x?name=etl&time_expression_type=API").unwrap();
        assert_eq!(q.name.as_deref(), Some("etl"));
        assert_eq!(q.time_expression_type, Some(TimeExpressionType::Api));
        assert!(query::<WorkflowQuery>("/x?enabled=true").is_err());
        let q: InstanceQuery =
            query("/x?trigger_from=-5&trigger_to=10&finished_from=1&finished_to=2").unwrap();
        assert_eq!((q.trigger_from, q.trigger_to), (Some(-5), Some(10)));
        assert_eq!((q.finished_from, q.finished_to), (Some(1), Some(2)));
        assert!(q.check().is_ok());
        let q: InstanceQuery = query("/x?finished_from=3&finished_to=2").unwrap();
        assert!(q.check().unwrap_err().message.contains("finished_from"));
        assert!(query::<InstanceQuery>("/x?trigger_from=yesterday").is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id::<JobId>("42").unwrap(), JobId(42));
        assert!(parse_id::<JobId>("-1").is_err());
        assert!(parse_id::<NodeId>("abc").is_err());
        assert!(parse_id::<JobId>("99999999999999999999999").is_err());
        let err = parse_id::<WorkflowInstanceId>("x1").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.error.message,
            "invalid workflow instance id: `x1` is not a non-negative integer"
        );
    }

    #[test]
    fn content_types() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, v.parse().unwrap());
            h
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("Application/JSON; charset=utf-8")));
        assert!(is_json(&h("application/merge-patch+json")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&h("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
