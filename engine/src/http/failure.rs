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
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub(crate) retry_after: Option<u64>,
    /// A credential was presented and refused: the answer carries [`LoginFailed`], which the
    /// guard counts against the source address. Every 401 is one; so is a 403 for a token
    /// that is not the admin token on an admin route.
    pub(crate) login_failed: bool,
}

/// `Retry-After` of a 503 answer, seconds.
pub(crate) const UNAVAILABLE_RETRY_SECS: u64 = 1;

/// Marks a response to a refused credential (in its extensions), for the guard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginFailed;

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

    /// 403 `forbidden` for a token that is not the admin token on an admin route.
    pub(crate) fn not_admin() -> Failure {
        Failure {
            login_failed: true,
            ..ApiError::new(ErrorCode::Forbidden, "this route needs the admin token").into()
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
            login_failed: error.code == ErrorCode::Unauthorized,
            // A 503 passes: the store is back, or the app's new owner is known, within about
            // a second or a lease.
            retry_after: (error.code == ErrorCode::Unavailable).then_some(UNAVAILABLE_RETRY_SECS),
            status,
            error,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.error })).into_response();
        if self.login_failed {
            response.extensions_mut().insert(LoginFailed);
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
