//! [`Failure`]: an [`ApiError`] on its way out as `{"error": {"code", "message"}}` with its
//! status.

use axum::http::StatusCode;
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
}

impl Failure {
    /// 400 `invalid_argument` with `message`.
    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        ApiError::new(ErrorCode::InvalidArgument, message).into()
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
        Failure { status, error }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.error })).into_response()
    }
}
