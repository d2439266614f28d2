//! Request examples and schemas against the types the handlers parse, and listing query
//! parameters against the query types.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::fixtures::{full_job_body, workflow_def};
use super::validator::{conforms, validate};
use super::{doc, resolve, schema};
use crate::api::*;
use crate::ids::JobId;
use crate::model::{ExecuteType, InstanceStatus};
use crate::time_expression::TimeExpressionType;

/// The request schema of `method path` and its example.
fn request(doc: &Value, method: &str, path: &str) -> (String, Value) {
    let content = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
    let name = content["schema"]["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_else(|| panic!("{method} {path} has no request schema"));
    let example = content["example"].clone();
    assert!(example.is_object(), "{method} {path} has no example");
    (name.to_owned(), example)
}

/// The example of `method path` deserializes into `T` (whose schema is `schema`) and
/// validates against the schema; the schema's properties are exactly `T`'s fields as `full`
/// (a value with every field set) serializes them.
pub(super) fn request_matches<T: DeserializeOwned + Serialize>(
    d: &Value,
    method: &str,
    path: &str,
    schema_name: &str,
    full: &T,
) {
    let (name, example) = request(d, method, path);
    assert_eq!(name, schema_name, "{method} {path}");
    let parsed: T = serde_json::from_value(example.clone())
        .unwrap_or_else(|e| panic!("the example of {method} {path} does not parse: {e}"));
    validate(d, &schema(d, &name), &example, &name).unwrap();
    conforms(d, &name, &parsed);
    let fields: BTreeSet<String> = serde_json::to_value(full)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let props: BTreeSet<String> = schema(d, &name)["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(fields, props, "fields of {name}");
}

#[test]
fn request_examples_parse_into_the_real_types_and_schemas_name_their_fields() {
    let d = doc();
    let job = full_job_body();
    request_matches(&d, "post", "/v1/apps/{app}/jobs", "JobBody", &job);
    request_matches(&d, "put", "/v1/apps/{app}/jobs/{id}", "JobBody", &job);
    let run = RunJob {
        params: "x".into(),
        delay_ms: 1,
    };
    request_matches(&d, "post", "/v1/apps/{app}/jobs/{id}/run", "RunJob", &run);
    let batch = RunJobBatch { runs: vec![run] };
    let path = "/v1/apps/{app}/jobs/{id}/runs";
    request_matches(&d, "post", path, "RunJobBatch", &batch);
    let backfill = crate::api::Backfill {
        from: 1,
        to: 2,
        dry_run: true,
    };
    let path = "/v1/apps/{app}/jobs/{id}/backfill";
    request_matches(&d, "post", path, "Backfill", &backfill);
    let path = "/v1/apps/{app}/workflows/{id}/backfill";
    request_matches(&d, "post", path, "Backfill", &backfill);
    let copy = CopyJob {
        name: "c".into(),
        enabled: Some(false),
    };
    request_matches(
        &d,
        "post",
        "/v1/apps/{app}/jobs/{id}/copy",
        "CopyJob",
        &copy,
    );
    let copy = CopyWorkflow { name: "c".into() };
    let path = "/v1/apps/{app}/workflows/{id}/copy";
    request_matches(&d, "post", path, "CopyWorkflow", &copy);
    let wf = workflow_def();
    request_matches(&d, "post", "/v1/apps/{app}/workflows", "WorkflowBody", &wf);
    request_matches(
        &d,
        "put",
        "/v1/apps/{app}/workflows/{id}",
        "WorkflowBody",
        &wf,
    );
    let run = RunWorkflow {
        init_params: Some(json!({"a": 1})),
        delay_ms: 1,
    };
    let path = "/v1/apps/{app}/workflows/{id}/run";
    request_matches(&d, "post", path, "RunWorkflow", &run);
    let app = CreateApp {
        name: "a".into(),
        secret: "s".repeat(16),
    };
    request_matches(&d, "post", "/v1/apps", "CreateApp", &app);
    let token = CreateToken {
        name: "t".into(),
        role: TokenRole::Operate,
        expires_in_secs: Some(60),
    };
    let path = "/v1/apps/{app}/tokens";
    request_matches(&d, "post", path, "CreateToken", &token);
    let rotate = RotateSecret {
        secret: Some("s".repeat(16)),
        overlap_secs: Some(60),
    };
    let path = "/v1/apps/{app}/rotate-secret";
    request_matches(&d, "post", path, "RotateSecret", &rotate);
    let v = ValidateRequest {
        kind: TimeExpressionType::Cron,
        expression: "0 * * * * ?".into(),
        time_zone: Some("UTC".into()),
        count: Some(2),
        excluded: vec!["2026-12-25".into(), "2026-12-30..2027-01-01".into()],
    };
    request_matches(&d, "post", "/v1/validate", "ValidateRequest", &v);
    let calendar = crate::api::CalendarBody {
        time_zone: Some("Europe/Paris".into()),
        excluded: vec!["2026-12-25".into(), "2026-12-30..2027-01-01".into()],
        description: "French holidays".into(),
    };
    let path = "/v1/apps/{app}/calendars/{name}";
    request_matches(&d, "put", path, "CalendarBody", &calendar);
    let channel = crate::api::ChannelBody {
        kind: crate::alarm::channel::ChannelKind::Webhook,
        url: "http://h:1/x".into(),
        secret: Some("k".into()),
    };
    let path = "/v1/apps/{app}/alarm-channels/{name}";
    request_matches(&d, "put", path, "ChannelBody", &channel);
    // The workflow node and edge schemas name exactly the fields of NodeDef and EdgeDef.
    let node = serde_json::to_value(&wf.nodes[0]).unwrap();
    let edge = serde_json::to_value(&wf.edges[1]).unwrap();
    for (name, value) in [("WorkflowNode", node), ("WorkflowEdge", edge)] {
        let keys: BTreeSet<&String> = value.as_object().unwrap().keys().collect();
        let schema = schema(&d, name);
        let props: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, props, "fields of {name}");
    }
}

/// The query parameters of `GET path`, resolved, without the path parameters.
pub(super) fn query_parameters(d: &Value, path: &str) -> BTreeSet<String> {
    d["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path} has no parameters"))
        .iter()
        .map(|p| match p.get("$ref").and_then(Value::as_str) {
            Some(r) => resolve(d, r).clone(),
            None => p.clone(),
        })
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

pub(super) fn field_names<T: Serialize>(full: &T) -> BTreeSet<String> {
    serde_json::to_value(full)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn listing_query_parameters_are_exactly_the_query_types_fields() {
    let d = doc();
    let jobs = JobQuery {
        limit: Some(1),
        cursor: Some(2),
        name: Some("n".into()),
        tag: Some("t".into()),
        time_expression_type: Some(TimeExpressionType::Cron),
        execute_type: Some(ExecuteType::Map),
        enabled: Some(true),
    };
    let workflows = WorkflowQuery {
        limit: Some(1),
        cursor: Some(2),
        name: Some("n".into()),
        tag: Some("t".into()),
        time_expression_type: Some(TimeExpressionType::Api),
    };
    let instances = InstanceQuery {
        job_id: Some(JobId(1)),
        status: Some(InstanceStatus::Failed),
        trigger_from: Some(1),
        trigger_to: Some(2),
        finished_from: Some(3),
        finished_to: Some(4),
        limit: Some(5),
        cursor: Some(6),
    };
    let cases = [
        ("/v1/apps/{app}/jobs", field_names(&jobs)),
        ("/v1/apps/{app}/workflows", field_names(&workflows)),
        ("/v1/apps/{app}/instances", field_names(&instances)),
    ];
    for (path, fields) in cases {
        assert_eq!(query_parameters(&d, path), fields, "GET {path}");
    }
}
