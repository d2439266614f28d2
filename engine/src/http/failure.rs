//! [`Failure`]: an [`ApiError`] on its way out as `{"error": {"code", "message"}}` with its
//! status.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ApiError, ErrorBody, ErrorCode};

/// An error response. The status is the code's [`ErrorCode::http_status`] except for 405 and
/// 408 (a body that did not arrive in time), which have no code of their own (they travel as
/// `invalid_argument`).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) error: ApiError,
    /// Seconds for a `Retry-After` header (429 answers).
    pub(crate) retry_after: Option<u64>,
}

impl Failure {
    /// 400 `invalid_argument` with `message`.
    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        ApiError::new(ErrorCode::InvalidArgument, message).into()
    }

    /// 429 `rate_limited`, to be retried after `secs`.
    pub(crate) fn rate_limited(secs: u64) -> Failure {
        Failure {
            retry_after: Some(secs),
            ..ApiError::new(
                ErrorCode::RateLimited,
                format!("too many requests: retry after {secs} s"),
            )
            .into()
        }
    }

    /// 401 `unauthorized` with `message`.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Failure {
        ApiError::new(ErrorCode::Unauthorized, message).into()
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        let status = StatusCode::from_u16(error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure {
            status,
            error,
            retry_after: None,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.error })).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
