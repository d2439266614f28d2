//! Values of the API's types with every field set, shared by the request and response checks.

use serde_json::json;

use crate::api::*;
use crate::ids::{InstanceId, JobId};
use crate::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel};
use crate::time_expression::{MisfirePolicy, TimeExpressionType};

pub(super) fn workflow_def() -> WorkflowDef {
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
        "description": "d", "tags": ["t1", "t2"], "calendars": ["holidays"]
    }))
    .unwrap()
}

pub(super) fn full_job_body() -> JobBody {
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
    body.calendars = vec!["holidays-fr".into(), "freeze".into()];
    body
}

pub(super) fn instance(status: InstanceStatus) -> InstanceView {
    InstanceView {
        id: InstanceId(7),
        job_id: JobId(3),
        status,
        result: None,
        params: String::new(),
        trigger_time: 1_700_000_000_000,
        actual_trigger_time: None,
        started_time: (status == InstanceStatus::Running).then_some(1_700_000_001_000),
        finished_time: None,
        worker: None,
        running_times: 0,
        run: 0,
        workflow_instance_id: None,
        tasks: None,
        next_retry_at: (status == InstanceStatus::WaitingDispatch).then_some(1_700_000_002_000),
    }
}
