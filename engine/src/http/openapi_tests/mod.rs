//! The checks that keep `openapi.json` true to the code (see the module doc of `openapi`).
//!
//! This module holds the checks of the document as a whole: it is OpenAPI 3.1 and served,
//! its routes are the router's, its `$ref`s resolve, its enums and error codes are the Rust
//! ones. Beside it: [`validator`] (the JSON Schema subset the checks validate values with),
//! [`fixtures`] (full values of the API's types), [`requests`] (request examples, schemas and
//! query parameters against the types handlers parse), [`responses`] (real answers against
//! the response schemas) and [`history`] (the versions, rollback and audit parts).

mod fixtures;
mod history;
mod requests;
mod responses;
mod validator;

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::OPENAPI_JSON;
use crate::api::*;
use crate::http::routes::routes;
use crate::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel};
use crate::time_expression::{MisfirePolicy, TimeExpressionType};
use validator::conforms;

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

fn schema(doc: &Value, name: &str) -> Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s.clone()
}

/// Resolves a local `$ref` (`#/a/b/c`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').expect("a local $ref");
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {reference}"))
}

#[test]
fn the_document_is_an_openapi_3_1_document_and_is_served() {
    let d = doc();
    assert_eq!(d["openapi"], "3.1.0");
    let r = routes();
    assert!(r
        .table()
        .iter()
        .any(|(m, p)| m == axum::http::Method::GET && *p == "/v1/openapi.json"));
    // `/v1/openapi.json` needs no token.
    assert_eq!(d["paths"]["/v1/openapi.json"]["get"]["security"], json!([]));
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let served: BTreeSet<(String, String)> = routes()
        .table()
        .iter()
        .map(|(m, p)| (m.as_str().to_ascii_lowercase(), (*p).to_owned()))
        .collect();
    let d = doc();
    let mut documented = BTreeSet::new();
    for (path, item) in d["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes not in openapi.json: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "openapi.json names routes the router lacks: {missing:?}"
    );
    assert!(served
        .iter()
        .any(|(_, p)| p.starts_with("/v1/apps/{app}/workflow-instances")));
}

#[test]
fn every_ref_resolves_and_every_path_parameter_is_declared() {
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    resolve(doc, r);
                }
                m.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    let d = doc();
    walk(&d, &d);
    for (path, item) in d["paths"].as_object().unwrap() {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve(&d, r),
                    None => p,
                })
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, declared, "{method} {path}");
        }
    }
}

/// Every value of the enum schema `s` deserializes into `T`.
fn parses<T: DeserializeOwned>(s: &Value, name: &str) {
    let values = s["enum"].as_array();
    assert!(values.is_some_and(|v| !v.is_empty()), "{name} has no enum");
    for value in values.into_iter().flatten() {
        serde_json::from_value::<T>(value.clone())
            .unwrap_or_else(|e| panic!("{name} value {value} is not a Rust value: {e}"));
    }
}

#[test]
fn every_enum_value_of_the_document_is_a_value_of_the_rust_enum() {
    let d = doc();
    let s = &d["components"]["schemas"];
    let code = &s["ErrorBody"]["properties"]["error"]["properties"]["code"];
    parses::<ErrorCode>(code, "code");
    parses::<TimeExpressionType>(&s["TimeExpressionType"], "TimeExpressionType");
    parses::<ExecuteType>(&s["ExecuteType"], "ExecuteType");
    parses::<DispatchStrategy>(&s["DispatchStrategy"], "DispatchStrategy");
    parses::<MisfirePolicy>(&s["MisfirePolicy"], "MisfirePolicy");
    parses::<InstanceStatus>(&s["InstanceStatus"], "InstanceStatus");
    parses::<LogLevel>(&s["LogLevel"], "LogLevel");
    parses::<crate::model::LogType>(&s["LogType"], "LogType");
    parses::<FailurePolicy>(&s["FailurePolicy"], "FailurePolicy");
    parses::<NodeKind>(&s["NodeKind"], "NodeKind");
    parses::<NodeStatus>(&s["NodeStatus"], "NodeStatus");
    parses::<WorkflowInstanceStatus>(&s["WorkflowInstanceStatus"], "WorkflowInstanceStatus");
}

const ERROR_CODES: [ErrorCode; 9] = [
    ErrorCode::InvalidArgument,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::Conflict,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

#[test]
fn every_error_code_is_documented_with_its_status() {
    let d = doc();
    let s = &d["components"]["schemas"];
    let values = s["ErrorBody"]["properties"]["error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(values.len(), ERROR_CODES.len());
    for code in ERROR_CODES {
        let body = ErrorBody {
            error: ApiError::new(code, "m"),
        };
        conforms(&d, "ErrorBody", &body);
        let status = code.http_status().to_string();
        assert!(
            d["components"]["responses"][format!("E{status}")].is_object(),
            "no error response for {status}"
        );
    }
}
