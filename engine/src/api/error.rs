//! [`ApiError`]: what every OpenAPI operation fails with, and its HTTP form
//! `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// The machine-readable kind of an [`ApiError`]; its `snake_case` name is the JSON `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: malformed JSON, a field of the wrong type, an unknown field, an invalid value or
    /// expression.
    InvalidArgument,
    /// 401: no `Authorization: Bearer` token, or a token that is neither the admin token nor
    /// the app's secret.
    Unauthorized,
    /// 403: a valid app secret used on an admin route.
    Forbidden,
    /// 404: unknown app, job, instance or route.
    NotFound,
    /// 409: the name is taken, or the instance cannot make that transition in its status.
    Conflict,
    /// 413: the request body is larger than the server accepts.
    PayloadTooLarge,
    /// 429: the app (or the admin) sent more requests than its rate allows; the answer's
    /// `Retry-After` header says when to try again.
    RateLimited,
    /// 503: the server is shutting down or its store refuses writes.
    Unavailable,
    /// 500: a bug or a corrupt record; the message says which.
    Internal,
}

impl ErrorCode {
    /// The HTTP status code of this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The JSON name (`"invalid_argument"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An OpenAPI operation's failure: a kind and a human-readable message naming what was wrong
/// (the field, the id).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// The kind.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// The JSON body of every error response: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

impl ApiError {
    /// An error of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 400 about `field`.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("invalid {field}: {reason}"),
        )
    }

    /// 404 for `what` `id`.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} {id} does not exist"))
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unavailable, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }
}

impl From<crate::time_expression::TimeExpressionError> for ApiError {
    fn from(e: crate::time_expression::TimeExpressionError) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, e.to_string())
    }
}
