//! Real answers of every type the API returns, optional fields present and absent, against
//! the response schemas.

use serde_json::{json, Map};

use super::doc;
use super::fixtures::{full_job_body, instance, workflow_def};
use super::validator::conforms;
use crate::api::*;
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::{InstanceStatus, LogLevel};
use crate::time_expression::TimeExpressionType;

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
            calendar_skipped_runs: 7,
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
        "RunBatchCreated",
        &RunBatchCreated {
            instance_ids: vec![InstanceId(9), InstanceId(10)],
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
                    excluded_by: None,
                },
                crate::api::BackfillRun {
                    trigger_time: 2,
                    instance_id: None,
                    excluded_by: Some("holidays".into()),
                },
            ],
            dry_run: false,
        },
    );
    conforms(
        &d,
        "WorkflowBackfillResult",
        &crate::api::WorkflowBackfillResult {
            runs: vec![
                crate::api::WorkflowBackfillRun {
                    trigger_time: -1,
                    workflow_instance_id: Some(WorkflowInstanceId(9)),
                    excluded_by: None,
                },
                crate::api::WorkflowBackfillRun {
                    trigger_time: 2,
                    workflow_instance_id: None,
                    excluded_by: Some("holidays".into()),
                },
            ],
            dry_run: true,
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
    let busy = StatsWindow {
        from: -5,
        finished: u64::MAX,
        succeeded: 7,
        failed: 1,
        fires: 9,
        lateness_p50_ms: Some(0),
        lateness_p99_ms: Some(i64::MAX),
    };
    conforms(
        &d,
        "AppStats",
        &AppStats {
            as_of: 10,
            since: 1,
            last_5_minutes: StatsWindow::default(),
            last_hour: busy,
            last_day: busy,
        },
    );
    let wf = WorkflowView {
        id: WorkflowId(1),
        app_id: AppId(1),
        body: workflow_def(),
        next_trigger_time: None,
        calendar_skipped_runs: 3,
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
        trigger_time: 1,
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
    let mut req = ValidateRequest {
        kind: TimeExpressionType::FixedRate,
        expression: "1000".into(),
        time_zone: None,
        count: Some(3),
        excluded: Vec::new(),
    };
    conforms(
        &d,
        "ValidateResponse",
        &validate_expression(&req, 0).unwrap(),
    );
    let calendar = CalendarView {
        name: "holidays-fr".into(),
        time_zone: "Europe/Paris".into(),
        excluded: vec!["2026-12-25".into(), "2026-12-30..2027-01-01".into()],
        description: "French holidays".into(),
        updated_at: 5,
    };
    let bare = CalendarView {
        description: String::new(),
        excluded: Vec::new(),
        ..calendar.clone()
    };
    conforms(&d, "CalendarView", &calendar);
    conforms(
        &d,
        "CalendarList",
        &CalendarList {
            items: vec![calendar, bare],
        },
    );
    // With an excluded date: the skipped times are listed too.
    req.excluded = vec!["1970-01-01".into()];
    req.expression = "43200000".into();
    let with_skips = validate_expression(&req, 0).unwrap();
    assert!(!with_skips.skipped.is_empty());
    conforms(&d, "ValidateResponse", &with_skips);
}
