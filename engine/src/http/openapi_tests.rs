//! The checks that keep `openapi.json` true to the code (see the module doc of `openapi`).

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::OPENAPI_JSON;
use crate::api::*;
use crate::http::routes::routes;
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel};
use crate::time_expression::{MisfirePolicy, TimeExpressionType};

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

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// The subset of JSON Schema the document uses: `$ref`, `type` (one or a list), `enum`,
/// `properties`, `required`, `additionalProperties: false`, `items`, `minimum`, `maximum`,
/// `minLength`. Returns the first violation, with the JSON path of the value.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return validate(doc, resolve(doc, r), v, at);
    }
    if let Some(ty) = schema.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), v)),
            _ => panic!("bad type in schema at {at}"),
        };
        if !ok {
            return Err(format!("{at}: {v} is not of type {ty}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            return Err(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{at}: {v} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{at}: {v} > maximum {max}"));
            }
        }
    }
    if let (Some(s), Some(min)) = (v.as_str(), schema.get("minLength").and_then(Value::as_u64)) {
        if (s.chars().count() as u64) < min {
            return Err(format!("{at}: {v} shorter than {min}"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(doc, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(object) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = required.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}: required `{key}` is missing"));
            }
        }
        for (key, value) in object {
            match props.and_then(|p| p.get(key)) {
                Some(s) => validate(doc, s, value, &format!("{at}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: `{key}` is not in the schema"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

fn conforms<T: Serialize>(doc: &Value, name: &str, value: &T) {
    let v = serde_json::to_value(value).unwrap();
    if let Err(e) = validate(doc, &schema(doc, name), &v, name) {
        panic!("a real {name} does not match its schema: {e}\n{v:#}");
    }
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
fn request_matches<T: DeserializeOwned + Serialize>(
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

fn workflow_def() -> WorkflowDef {
    serde_json::from_value(json!({
        "name": "w", "time_expression_type": "CRON", "time_expression": "0 * * * * ?",
        "time_zone": "UTC", "max_instances": 2, "failure_policy": "FINISH_BRANCHES",
        "nodes": [
            {"id": 1, "type": "JOB", "job_id": 4, "params": "p", "enabled": false,
             "skip_when_failed": true},
            {"id": 2, "type": "DECISION", "expression": "a == 1"},
            {"id": 3, "type": "NESTED_WORKFLOW", "workflow_id": 9}
        ],
        "edges": [{"from": 1, "to": 2}, {"from": 2, "to": 3, "property": "true"}],
        "description": "d", "tags": ["t1", "t2"]
    }))
    .unwrap()
}

fn full_job_body() -> JobBody {
    let mut body = JobBody::new("j", TimeExpressionType::Cron, "0 * * * * ?", "shell");
    body.time_zone = Some("Asia/Shanghai".into());
    body.execute_type = ExecuteType::MapReduce;
    body.dispatch_strategy = DispatchStrategy::Specify;
    body.designated_workers = vec!["blue".into()];
    body.min_cpu_cores = 0.5;
    body.misfire = MisfirePolicy::Skip;
    body.lifecycle = LifecycleJson {
        start: Some("2026-01-01T00:00:00Z".into()),
        end: Some("2027-01-01T00:00:00Z".into()),
    };
    body.alarm = serde_json::from_value(json!({
        "failures": {"threshold": 3, "window_ms": 60000, "silence_ms": 600000},
        "late_start_ms": 5000, "overrun_ms": 60000, "dead_man_ms": 3600000,
        "recovered": true, "channels": ["ops"]
    }))
    .unwrap();
    body.description = "nightly".into();
    body.tags = vec!["etl".into(), "team:data".into()];
    body.log_type = crate::model::LogType::Local;
    body.log_level = LogLevel::Warn;
    body.retry_backoff = serde_json::from_value(json!({
        "shape": "EXPONENTIAL", "initial_delay_ms": 500, "factor": 1.5,
        "max_delay_ms": 60000, "jitter": 0.2
    }))
    .unwrap();
    body.overlap_policy = crate::policy::OverlapPolicy::Queue;
    body
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
    let backfill = crate::api::Backfill {
        from: 1,
        to: 2,
        dry_run: true,
    };
    let path = "/v1/apps/{app}/jobs/{id}/backfill";
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
    };
    request_matches(&d, "post", "/v1/validate", "ValidateRequest", &v);
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

fn instance(status: InstanceStatus) -> InstanceView {
    InstanceView {
        id: InstanceId(7),
        job_id: JobId(3),
        status,
        result: None,
        params: String::new(),
        trigger_time: 1_700_000_000_000,
        actual_trigger_time: None,
        finished_time: None,
        worker: None,
        running_times: 0,
        run: 0,
        workflow_instance_id: None,
        tasks: None,
        next_retry_at: (status == InstanceStatus::WaitingDispatch).then_some(1_700_000_002_000),
    }
}

#[test]
fn real_answers_match_the_response_schemas() {
    let d = doc();
    conforms(
        &d,
        "AppCreated",
        &AppCreated {
            id: AppId(1),
            name: "a".into(),
        },
    );
    conforms(
        &d,
        "Created",
        &Created {
            id: JobId(u64::MAX),
        },
    );
    conforms(&d, "Created", &Created { id: WorkflowId(0) });
    let view = TokenView {
        id: 7,
        name: "ci".into(),
        role: TokenRole::Admin,
        created_at: 1,
        expires_at: Some(2),
    };
    conforms(&d, "TokenView", &view);
    conforms(
        &d,
        "TokenList",
        &TokenList {
            items: vec![view.clone()],
        },
    );
    conforms(
        &d,
        "TokenCreated",
        &TokenCreated {
            view,
            token: "fjt_7_x".into(),
        },
    );
    let app = AppView {
        id: AppId(3),
        name: "a".into(),
        created_at: 1,
        previous_secret_until: Some(5),
    };
    conforms(&d, "AppView", &app);
    conforms(&d, "AppList", &AppList { items: vec![app] });
    conforms(
        &d,
        "SecretRotated",
        &SecretRotated {
            secret: "s".repeat(16),
            previous_secret_until: 9,
        },
    );
    let minimal = JobBody::new("j", TimeExpressionType::Api, "", "noop");
    for (body, next) in [(minimal, None), (full_job_body(), Some(-5))] {
        let job = JobView {
            id: JobId(1),
            app_id: AppId(2),
            body,
            next_trigger_time: next,
            runs: 3,
            skipped_runs: 6,
            created_at: 4,
            updated_at: 5,
        };
        conforms(&d, "Job", &job);
        let list = JobList {
            items: vec![job],
            next_cursor: Some(1),
        };
        conforms(&d, "JobList", &list);
    }
    conforms(
        &d,
        "JobList",
        &JobList {
            items: Vec::new(),
            next_cursor: None,
        },
    );
    conforms(
        &d,
        "RunCreated",
        &RunCreated {
            instance_id: InstanceId(9),
        },
    );
    conforms(
        &d,
        "BackfillResult",
        &crate::api::BackfillResult {
            runs: vec![
                crate::api::BackfillRun {
                    trigger_time: -1,
                    instance_id: Some(InstanceId(9)),
                },
                crate::api::BackfillRun {
                    trigger_time: 2,
                    instance_id: None,
                },
            ],
            dry_run: false,
        },
    );
    let bare = instance(InstanceStatus::WaitingDispatch);
    let mut full = instance(InstanceStatus::Succeed);
    full.result = Some("ok".into());
    full.actual_trigger_time = Some(1);
    full.finished_time = Some(2);
    full.worker = Some("127.0.0.1:1".into());
    full.workflow_instance_id = Some(WorkflowInstanceId(4));
    full.tasks = Some(TaskProgress {
        total: 3,
        succeeded: 2,
        failed: 1,
    });
    conforms(&d, "Instance", &bare);
    conforms(&d, "Instance", &full);
    conforms(
        &d,
        "InstanceList",
        &InstanceList {
            items: vec![bare, full],
            next_cursor: None,
        },
    );
    conforms(
        &d,
        "Log",
        &LogView {
            instance_id: InstanceId(7),
            lines: vec![LogLineView {
                seq: 0,
                time_ms: 1,
                level: LogLevel::Warn,
                content: "line".into(),
                attempt: 2,
                fields: vec![crate::api::LogFieldView {
                    key: "rows".into(),
                    value: "12".into(),
                }],
            }],
            next_cursor: Some(1),
            prev_cursor: None,
            dropped: 2,
        },
    );
    let worker = |cpu_load| WorkerInfo {
        address: "127.0.0.1:2".into(),
        tags: vec!["blue".into()],
        version: "1".into(),
        health_score: 1.5,
        cpu_cores: 2.0,
        cpu_load,
        memory_used_gb: 1.0,
        memory_total_gb: 2.0,
        disk_used_gb: 1.0,
        disk_total_gb: 2.0,
        overloaded: false,
        last_heartbeat: 9,
    };
    conforms(
        &d,
        "WorkerList",
        &WorkerList {
            workers: vec![worker(None), worker(Some(0.5))],
        },
    );
    let wf = WorkflowView {
        id: WorkflowId(1),
        app_id: AppId(1),
        body: workflow_def(),
        next_trigger_time: None,
        created_at: 1,
        updated_at: 2,
    };
    conforms(&d, "Workflow", &wf);
    conforms(
        &d,
        "WorkflowList",
        &WorkflowList {
            items: vec![wf],
            next_cursor: Some(2),
        },
    );
    conforms(
        &d,
        "WorkflowRunCreated",
        &WorkflowRunCreated {
            workflow_instance_id: WorkflowInstanceId(3),
        },
    );
    let mut context = Map::new();
    context.insert("go".into(), json!("left"));
    let wfi = WorkflowInstanceView {
        id: WorkflowInstanceId(3),
        workflow_id: WorkflowId(1),
        status: WorkflowInstanceStatus::Running,
        context,
        nodes: vec![
            WorkflowNodeView {
                id: NodeId(1),
                status: NodeStatus::Succeed,
                instance_id: Some(7),
                result: Some("true".into()),
            },
            WorkflowNodeView {
                id: NodeId(2),
                status: NodeStatus::Waiting,
                instance_id: None,
                result: None,
            },
        ],
        parent_instance_id: Some(WorkflowInstanceId(1)),
        created_at: 1,
        started_at: Some(2),
        finished_at: None,
    };
    conforms(&d, "WorkflowInstance", &wfi);
    conforms(
        &d,
        "WorkflowInstanceList",
        &WorkflowInstanceList {
            items: vec![wfi],
            next_cursor: None,
        },
    );
    conforms(
        &d,
        "Health",
        &Health {
            status: "ok".into(),
            version: "1".into(),
            workers: 0,
            uptime_ms: 1,
        },
    );
    let req = ValidateRequest {
        kind: TimeExpressionType::FixedRate,
        expression: "1000".into(),
        time_zone: None,
        count: Some(3),
    };
    conforms(
        &d,
        "ValidateResponse",
        &validate_expression(&req, 0).unwrap(),
    );
}

#[test]
fn the_validator_refuses_what_it_should() {
    let d = doc();
    let s = schema(&d, "Instance");
    let mut v = serde_json::to_value(instance(InstanceStatus::Running)).unwrap();
    assert!(validate(&d, &s, &v, "i").is_ok());
    v["extra"] = json!(1);
    assert!(validate(&d, &s, &v, "i").is_err());
    let mut v = serde_json::to_value(instance(InstanceStatus::Running)).unwrap();
    v["status"] = json!("NOPE");
    assert!(validate(&d, &s, &v, "i").is_err());
    v.as_object_mut().unwrap().remove("status");
    assert!(validate(&d, &s, &v, "i").is_err());
    let mut v = serde_json::to_value(instance(InstanceStatus::Running)).unwrap();
    v["id"] = json!(-1);
    assert!(validate(&d, &s, &v, "i").is_err());
    v["id"] = json!("1");
    assert!(validate(&d, &s, &v, "i").is_err());
}

/// The query parameters of `GET path`, resolved, without the path parameters.
fn query_parameters(d: &Value, path: &str) -> BTreeSet<String> {
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

fn field_names<T: Serialize>(full: &T) -> BTreeSet<String> {
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
