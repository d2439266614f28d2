//! The OpenAPI 3.1 document of the HTTP API, `openapi.json` beside this file, embedded in the
//! binary and served at `GET /v1/openapi.json` (no auth: it describes the routes, it holds no
//! data).
//!
//! The document is written by hand and kept honest by the tests below, which fail when it
//! drifts from the code:
//!
//! - its operations are exactly the `(method, path)` pairs of the router's route table
//!   ([`super::routes`]), both ways;
//! - every request body example deserializes into the Rust type the handler parses, and every
//!   request schema names exactly the fields of that type;
//! - real values of every answer type (built by the Rust types, with optional fields both
//!   present and absent) validate against the response schemas, `additionalProperties: false`
//!   included, and every enum value in the document deserializes into its Rust enum;
//! - every [`ErrorCode`](crate::api::ErrorCode) is in the error schema, and its status is a
//!   documented error response.
//!
//! From outside, `engine/tests/schemathesis/run.sh` runs schemathesis against a live
//! `ferrojob-server` with this document: no 5xx and every answer conforming to its schema.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// The OpenAPI 3.1 document (JSON) of the HTTP API, as `GET /v1/openapi.json` serves it.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json` (no auth).
pub(crate) async fn document() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

#[cfg(test)]
#[path = "openapi_tests/mod.rs"]
mod tests;
