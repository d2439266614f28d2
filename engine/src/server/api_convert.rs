//! The boundary between the server's records and the API's contract types: a job body into a
//! record and back, records into the views the API answers, and repository errors into API
//! errors. The contract types (`crate::api`) know nothing of records; every conversion is here,
//! on the server's side, so that the HTTP layer and the Rust client compile without a server.
//!
//! | from | to | function |
//! |---|---|---|
//! | [`JobBody`] (a create or update) | [`JobRecord`] | [`job_record`] |
//! | [`JobRecord`] | [`JobBody`] | [`job_body`] |
//! | [`JobRecord`] + [`TriggerRecord`] | [`JobView`] | [`job_view`] |
//! | [`InstanceRecord`] | [`InstanceView`] | [`instance_view`] |
//! | [`WorkflowRecord`] + its [`WorkflowDef`] + [`TriggerRecord`] | [`WorkflowView`] | [`workflow_view`] |
//! | [`WfInstanceRecord`] + [`InstanceSnapshot`] | [`WorkflowInstanceView`] | [`workflow_instance_view`] |
//! | [`RepoError`] | [`ApiError`] | `From` |

use crate::api::{
    ApiError, ErrorCode, InstanceView, JobBody, JobView, LifecycleJson, WorkflowInstanceView,
    WorkflowNodeView, WorkflowView,
};
use crate::ids::AppId;
use crate::workflow::{InstanceSnapshot, WorkflowDef};

use super::alarm_repo::{AlarmRecord, ChannelRecord, DeliveryStatus};
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::records::{JobRecord, LogSettings, TriggerRecord};
use super::workflow_repo::{WfInstanceRecord, WorkflowRecord};

/// The record `body` describes for app `app_id` (id 0: the repo assigns it), checked: the
/// time expression parses in its zone, the lifecycle is ordered, and every field is in range
/// (a bad one is InvalidArgument naming it).
pub fn job_record(body: &JobBody, app_id: AppId) -> Result<JobRecord, ApiError> {
    let mut job = JobRecord::new(
        app_id,
        body.name.clone(),
        body.time_expression_type,
        body.time_expression.clone(),
        body.processor.clone(),
    );
    job.time_zone = body
        .time_zone
        .as_ref()
        .filter(|z| !z.trim().is_empty())
        .cloned();
    job.execute_type = body.execute_type;
    job.params = body.params.clone();
    job.max_instances = body.max_instances;
    job.concurrency = body.concurrency;
    job.timeout_ms = body.timeout_ms;
    job.instance_retries = body.instance_retries;
    job.retry_backoff = body.retry_backoff;
    job.overlap_policy = body.overlap_policy;
    job.task_retries = body.task_retries;
    job.dispatch_strategy = body.dispatch_strategy;
    job.designated_workers = body.designated_workers.clone();
    job.min_cpu_cores = body.min_cpu_cores;
    job.min_memory_gb = body.min_memory_gb;
    job.min_disk_gb = body.min_disk_gb;
    job.max_worker_count = body.max_worker_count;
    job.misfire = body.misfire;
    job.lifecycle = body.lifecycle.to_lifecycle()?;
    job.enabled = body.enabled;
    job.alarm = body.alarm.clone();
    job.description = body.description.clone();
    job.tags = body.tags.clone();
    job.log = LogSettings {
        log_type: body.log_type,
        level: body.log_level,
    };
    job.calendars = body.calendars.clone();
    job.validate()?;
    Ok(job)
}

/// The body that describes `job`.
pub fn job_body(job: &JobRecord) -> JobBody {
    JobBody {
        name: job.name.clone(),
        time_expression_type: job.time_expression_type,
        time_expression: job.time_expression.clone(),
        time_zone: job.time_zone.clone(),
        execute_type: job.execute_type,
        processor: job.processor.clone(),
        params: job.params.clone(),
        max_instances: job.max_instances,
        concurrency: job.concurrency,
        timeout_ms: job.timeout_ms,
        instance_retries: job.instance_retries,
        retry_backoff: job.retry_backoff,
        overlap_policy: job.overlap_policy,
        task_retries: job.task_retries,
        dispatch_strategy: job.dispatch_strategy,
        designated_workers: job.designated_workers.clone(),
        min_cpu_cores: job.min_cpu_cores,
        min_memory_gb: job.min_memory_gb,
        min_disk_gb: job.min_disk_gb,
        max_worker_count: job.max_worker_count,
        misfire: job.misfire,
        lifecycle: LifecycleJson::from_lifecycle(&job.lifecycle),
        enabled: job.enabled,
        alarm: job.alarm.clone(),
        description: job.description.clone(),
        tags: job.tags.clone(),
        log_type: job.log.log_type,
        log_level: job.log.level,
        calendars: job.calendars.clone(),
    }
}

/// The view of `job` with its trigger state (none: not scheduled, never fired). The skip
/// count is not in the record: the caller fills it in.
pub fn job_view(job: &JobRecord, trigger: Option<TriggerRecord>) -> JobView {
    JobView {
        id: job.id,
        app_id: job.app_id,
        body: job_body(job),
        next_trigger_time: trigger.and_then(|t| t.next_trigger),
        runs: trigger.map_or(0, |t| t.runs),
        skipped_runs: 0,
        calendar_skipped_runs: 0,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }
}

/// The view of an instance record. The workflow link, the task progress and the next retry
/// time are not in the record: the caller fills them in when it knows them.
pub fn instance_view(r: &InstanceRecord) -> InstanceView {
    InstanceView {
        id: r.id,
        job_id: r.job_id,
        status: r.status,
        result: r.result.clone(),
        params: r.params.clone(),
        trigger_time: r.trigger_time,
        actual_trigger_time: r.actual_trigger_time,
        started_time: r.started_time,
        finished_time: r.finished_time,
        worker: r.worker.clone(),
        running_times: r.running_times,
        run: r.run,
        workflow_instance_id: None,
        tasks: None,
        next_retry_at: None,
    }
}

/// The view of a workflow from its record, its current definition (the record holds only its
/// version) and its trigger row (none: not scheduled).
pub fn workflow_view(
    rec: &WorkflowRecord,
    def: WorkflowDef,
    trigger: Option<TriggerRecord>,
) -> WorkflowView {
    WorkflowView {
        id: rec.id,
        app_id: rec.app_id,
        body: def,
        next_trigger_time: trigger.and_then(|t| t.next_trigger),
        calendar_skipped_runs: 0,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
    }
}

/// The view of a workflow instance from its record and a snapshot of its state machine (the
/// stored one, or `WorkflowInstance::snapshot` of a live one). A node's `instance_id` is what
/// runs its latest attempt, when it has been dispatched.
pub fn workflow_instance_view(
    rec: &WfInstanceRecord,
    snap: InstanceSnapshot,
) -> WorkflowInstanceView {
    WorkflowInstanceView {
        id: rec.id,
        workflow_id: rec.workflow_id,
        status: snap.status,
        context: snap.context,
        nodes: snap
            .nodes
            .into_iter()
            .map(|n| WorkflowNodeView {
                id: n.id,
                status: n.status,
                instance_id: rec.run_of(n.id).map(|r| r.instance),
                result: n.result,
            })
            .collect(),
        parent_instance_id: rec.parent.map(|p| p.instance),
        trigger_time: rec.trigger_time,
        created_at: snap.created_at,
        started_at: snap.started_at,
        finished_at: snap.finished_at,
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> ApiError {
        let code = match &e {
            RepoError::NotFound { .. } => ErrorCode::NotFound,
            RepoError::Conflict { .. }
            | RepoError::IllegalTransition { .. }
            | RepoError::Unfinished { .. } => ErrorCode::Conflict,
            RepoError::Invalid { .. } => ErrorCode::InvalidArgument,
            RepoError::Store(_) | RepoError::Fenced { .. } => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The record of channel `name` of app `app_id` as `body` describes it, checked.
pub fn channel_record(
    body: crate::api::ChannelBody,
    app_id: AppId,
    name: String,
) -> Result<ChannelRecord, ApiError> {
    let record = ChannelRecord {
        app_id,
        name,
        kind: body.kind,
        url: body.url,
        secret: body.secret,
    };
    record.validate()?;
    Ok(record)
}

/// The view of a channel (without its secret).
pub fn channel_view(c: &ChannelRecord) -> crate::api::ChannelView {
    crate::api::ChannelView {
        name: c.name.clone(),
        kind: c.kind,
        url: c.url.clone(),
        signed: c.secret.is_some(),
    }
}

/// The view of an alarm with its delivery history.
pub fn alarm_view(a: &AlarmRecord) -> crate::api::AlarmView {
    let status = match a.status {
        DeliveryStatus::Pending => "PENDING",
        DeliveryStatus::Delivered => "DELIVERED",
        DeliveryStatus::Failed => "FAILED",
        DeliveryStatus::Recorded => "RECORDED",
    };
    crate::api::AlarmView {
        seq: a.seq,
        id: a.id.clone(),
        job_id: a.job_id,
        instance_id: a.instance_id,
        kind: a.kind,
        raised_at: a.raised_at,
        message: a.message.clone(),
        status: status.to_owned(),
        channels: a.channels.clone(),
        delivered_to: a.delivered_to.clone(),
        attempt_count: a.attempt_count,
        next_attempt_at: a.next_attempt_at,
        attempts: a
            .attempts
            .iter()
            .map(|t| crate::api::AlarmAttemptView {
                at: t.at,
                channel: t.channel.clone(),
                ok: t.ok,
                detail: t.detail.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time_expression::TimeExpressionType;

    /// `JobBody::new` and `JobRecord::new` document the same defaults; they must not drift.
    #[test]
    fn the_body_and_the_record_have_the_same_defaults() {
        let body = JobBody::new("j", TimeExpressionType::Cron, "0 0 2 * * ?", "shell");
        let record = JobRecord::new(
            AppId(3),
            "j",
            TimeExpressionType::Cron,
            "0 0 2 * * ?",
            "shell",
        );
        assert_eq!(job_body(&record), body);
        assert_eq!(job_record(&body, AppId(3)).unwrap(), record);
    }

    /// A body without `alarm` (every client before alarm rules) still parses, and a job with
    /// no rules prints no `alarm` key; rules round-trip through the record.
    #[test]
    fn alarm_rules_are_optional_and_round_trip() {
        let old = r#"{"name":"j","time_expression_type":"API","processor":"shell"}"#;
        let body: JobBody = serde_json::from_str(old).unwrap();
        assert_eq!(body.alarm, crate::alarm::AlarmRules::default());
        assert!(!serde_json::to_string(&body).unwrap().contains("alarm"));
        let with: JobBody = serde_json::from_str(
            r#"{"name":"j","time_expression_type":"API","processor":"shell",
                "alarm":{"failures":{"threshold":2,"window_ms":60000},"recovered":true,"channels":["ops"]}}"#,
        )
        .unwrap();
        let record = job_record(&with, AppId(1)).unwrap();
        assert_eq!(record.alarm.failures.unwrap().threshold, 2);
        assert_eq!(job_body(&record), with);
        let mut bad = with;
        bad.alarm.failures = Some(crate::alarm::FailureRule {
            threshold: 0,
            window_ms: 0,
            silence_ms: 0,
        });
        let e = job_record(&bad, AppId(1)).unwrap_err();
        assert!(e.message.contains("alarm.failures.threshold"), "{e}");
    }

    #[test]
    fn a_bad_body_names_its_field() {
        let mut body = JobBody::new("j", TimeExpressionType::Cron, "0 0 25 * * ?", "shell");
        let e = job_record(&body, AppId(1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("time_expression"), "{e}");
        body.time_expression = "0 0 2 * * ?".into();
        body.concurrency = 0;
        let e = job_record(&body, AppId(1)).unwrap_err();
        assert!(e.message.contains("concurrency"), "{e}");
    }

    #[test]
    fn a_workflow_instance_view_names_what_runs_each_node() {
        use crate::ids::{NodeId, WorkflowId, WorkflowInstanceId};
        use crate::server::workflow_repo::{WfNodeRun, WfParent};
        use crate::workflow::{InstanceStatus, NodeState, NodeStatus};

        let node = |id, status| NodeState {
            id: NodeId(id),
            status,
            result: None,
            attempt: 0,
            started_at: None,
            finished_at: None,
        };
        let snap = InstanceSnapshot {
            status: InstanceStatus::Running,
            nodes: vec![node(1, NodeStatus::Succeed), node(2, NodeStatus::Waiting)],
            decisions: Vec::new(),
            context: serde_json::Map::new(),
            failed: false,
            created_at: 5,
            started_at: Some(6),
            finished_at: None,
        };
        let rec = WfInstanceRecord {
            id: WorkflowInstanceId(9),
            workflow_id: WorkflowId(3),
            version: 1,
            app_id: AppId(1),
            parent: Some(WfParent {
                instance: WorkflowInstanceId(8),
                node: NodeId(4),
                attempt: 0,
            }),
            ancestors: vec![WorkflowId(2)],
            snapshot_json: String::new(),
            nodes: vec![WfNodeRun {
                node: NodeId(1),
                instance: 77,
                nested: false,
            }],
            delayed_until: None,
            run: 0,
            trigger_time: 4,
        };
        let v = workflow_instance_view(&rec, snap);
        assert_eq!(
            (v.id, v.workflow_id),
            (WorkflowInstanceId(9), WorkflowId(3))
        );
        assert_eq!(v.parent_instance_id, Some(WorkflowInstanceId(8)));
        let runs: Vec<_> = v.nodes.iter().map(|n| (n.id, n.instance_id)).collect();
        assert_eq!(runs, [(NodeId(1), Some(77)), (NodeId(2), None)]);
        assert_eq!(
            (v.trigger_time, v.created_at, v.started_at),
            (4, 5, Some(6))
        );
    }

    #[test]
    fn repo_errors_keep_their_kind() {
        let cases = [
            (RepoError::not_found("job", 7), ErrorCode::NotFound),
            (
                RepoError::invalid("name", "empty"),
                ErrorCode::InvalidArgument,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(ApiError::from(e).code, code);
        }
    }
}
