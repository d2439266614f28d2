//! Organising jobs on a real server on 127.0.0.1, through the HTTP client: description and
//! tags stored and validated, job and workflow listings filtered by name, tag, type, execute
//! type and enabled, instance listings filtered by trigger and finish time, and copies of jobs
//! and workflows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ferrojob::api::{
    CopyJob, CopyWorkflow, CreateApp, ErrorCode, InstanceQuery, JobBody, JobQuery, RunJob,
    WorkflowDef, WorkflowQuery,
};
use ferrojob::client::{Client, ClientError};
use ferrojob::ids::{JobId, WorkflowId};
use ferrojob::launch::{launch, LaunchConfig, RunningServer};
use ferrojob::model::{ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType as T;
use serde_json::json;

const APP: &str = "ops";

/// Name, tags, time expression type and text, execute type, enabled.
type JobSpec = (
    &'static str,
    &'static [&'static str],
    T,
    &'static str,
    ExecuteType,
    bool,
);

async fn server() -> (RunningServer, Client) {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = launch(LaunchConfig::new(None, any, any)).await.unwrap();
    let client = Client::new(
        &format!("http://{}", server.http_addr()),
        server.admin_token(),
    )
    .unwrap();
    client
        .create_app(&CreateApp {
            name: APP.into(),
            secret: "ops-secret-01234".into(),
        })
        .await
        .unwrap();
    (server, client)
}

fn invalid_field(r: Result<impl std::fmt::Debug, ClientError>, field: &str) {
    match r {
        Err(ClientError::Api { status, error }) => {
            assert_eq!((status, error.code), (400, ErrorCode::InvalidArgument));
            assert!(
                error.message.starts_with(&format!("invalid {field}")),
                "{}",
                error.message
            );
        }
        other => panic!("expected a 400 naming {field}, got {other:?}"),
    }
}

async fn job_names(c: &Client, q: JobQuery) -> Vec<String> {
    // One job per page: the filter and the cursor work together.
    let mut out = Vec::new();
    let mut q = JobQuery {
        limit: Some(1),
        ..q
    };
    loop {
        let page = c.list_jobs(APP, &q).await.unwrap();
        out.extend(page.items.into_iter().map(|j| j.body.name));
        match page.next_cursor {
            Some(next) => q.cursor = Some(next),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_workflows_are_tagged_filtered_and_copied() {
    let (server, c) = server().await;
    let specs: &[JobSpec] = &[
        (
            "Nightly Export",
            &["etl", "team:data"],
            T::Cron,
            "0 0 2 * * ?",
            ExecuteType::Standalone,
            true,
        ),
        (
            "export-orders",
            &["etl"],
            T::FixedRate,
            "60000",
            ExecuteType::Map,
            true,
        ),
        (
            "cleanup",
            &["ops"],
            T::Cron,
            "0 0 3 * * ?",
            ExecuteType::Broadcast,
            false,
        ),
        ("adhoc", &[], T::Api, "", ExecuteType::Standalone, true),
    ];
    let mut ids = Vec::new();
    for (name, tags, kind, expr, exec, enabled) in specs {
        let mut body = JobBody::new(*name, *kind, *expr, "noop");
        body.description = format!("the {name} job");
        body.tags = tags.iter().map(|t| t.to_string()).collect();
        body.execute_type = *exec;
        body.enabled = *enabled;
        ids.push(c.create_job(APP, &body).await.unwrap().id);
    }
    let got = c.get_job(APP, ids[0]).await.unwrap();
    assert_eq!(got.body.description, "the Nightly Export job");
    assert_eq!(got.body.tags, ["etl", "team:data"]);

    let q = JobQuery::default;
    let cases: Vec<(JobQuery, &[&str])> = vec![
        (
            q(),
            &["Nightly Export", "export-orders", "cleanup", "adhoc"],
        ),
        (
            JobQuery {
                name: Some("EXPORT".into()),
                ..q()
            },
            &["Nightly Export", "export-orders"],
        ),
        (
            JobQuery {
                tag: Some("etl".into()),
                ..q()
            },
            &["Nightly Export", "export-orders"],
        ),
        (
            JobQuery {
                time_expression_type: Some(T::Cron),
                ..q()
            },
            &["Nightly Export", "cleanup"],
        ),
        (
            JobQuery {
                execute_type: Some(ExecuteType::Map),
                ..q()
            },
            &["export-orders"],
        ),
        (
            JobQuery {
                enabled: Some(false),
                ..q()
            },
            &["cleanup"],
        ),
        (
            JobQuery {
                tag: Some("etl".into()),
                time_expression_type: Some(T::Cron),
                enabled: Some(true),
                ..q()
            },
            &["Nightly Export"],
        ),
    ];
    for (query, want) in cases {
        assert_eq!(job_names(&c, query.clone()).await, *want, "{query:?}");
    }

    // Bad labels are 400s naming the field.
    let mut bad = JobBody::new("x", T::Api, "", "noop");
    bad.tags = vec!["a,b".into()];
    invalid_field(c.create_job(APP, &bad).await, "tags");
    bad.tags = vec!["dup".into(), "dup".into()];
    invalid_field(c.update_job(APP, ids[3], &bad).await, "tags");
    bad.tags = Vec::new();
    bad.description = "d".repeat(5000);
    invalid_field(c.create_job(APP, &bad).await, "description");

    // A copy: every field of the source, a new name, enabled as asked.
    let copy = c
        .copy_job(
            APP,
            ids[0],
            &CopyJob {
                name: "Nightly Export (eu)".into(),
                enabled: Some(false),
            },
        )
        .await
        .unwrap();
    let copied = c.get_job(APP, copy.id).await.unwrap();
    let mut want = got.body.clone();
    want.name = "Nightly Export (eu)".into();
    want.enabled = false;
    assert_eq!(copied.body, want);
    assert_eq!(
        copied.next_trigger_time, None,
        "a disabled copy is not scheduled"
    );
    let names = job_names(
        &c,
        JobQuery {
            tag: Some("team:data".into()),
            ..q()
        },
    )
    .await;
    assert_eq!(names, ["Nightly Export", "Nightly Export (eu)"]);
    invalid_field(
        c.copy_job(
            APP,
            ids[0],
            &CopyJob {
                name: String::new(),
                enabled: None,
            },
        )
        .await,
        "name",
    );
    assert!(matches!(
        c.copy_job(
            APP,
            JobId(999_999),
            &CopyJob {
                name: "x".into(),
                enabled: None
            }
        )
        .await,
        Err(ClientError::Api { status: 404, .. })
    ));

    // Workflows: labels, filters and copies.
    let wf = |name: &str, kind: &str, expr: &str, tags: &[&str]| -> WorkflowDef {
        serde_json::from_value(json!({
            "name": name, "time_expression_type": kind, "time_expression": expr,
            "description": format!("the {name} flow"), "tags": tags,
            "nodes": [{"id": 1, "job_id": ids[3].get()}],
        }))
        .unwrap()
    };
    let w1 = c
        .create_workflow(APP, &wf("Nightly ETL", "CRON", "0 0 4 * * ?", &["etl"]))
        .await
        .unwrap()
        .id;
    c.create_workflow(APP, &wf("by hand", "API", "", &["manual"]))
        .await
        .unwrap();
    invalid_field(
        c.create_workflow(APP, &wf("bad", "API", "", &[" etl"]))
            .await,
        "tags",
    );
    let wf_names = |q: WorkflowQuery| {
        let c = &c;
        async move {
            let page = c.list_workflows(APP, &q).await.unwrap();
            page.items
                .into_iter()
                .map(|w| w.body.name)
                .collect::<Vec<_>>()
        }
    };
    let wq = WorkflowQuery::default;
    assert_eq!(wf_names(wq()).await, ["Nightly ETL", "by hand"]);
    let by_tag = WorkflowQuery {
        tag: Some("etl".into()),
        ..wq()
    };
    assert_eq!(wf_names(by_tag.clone()).await, ["Nightly ETL"]);
    let by_type = WorkflowQuery {
        time_expression_type: Some(T::Api),
        ..wq()
    };
    assert_eq!(wf_names(by_type).await, ["by hand"]);
    let by_name = WorkflowQuery {
        name: Some("etl".into()),
        ..wq()
    };
    assert_eq!(wf_names(by_name).await, ["Nightly ETL"]);
    let copy = c
        .copy_workflow(
            APP,
            w1,
            &CopyWorkflow {
                name: "Nightly ETL 2".into(),
            },
        )
        .await
        .unwrap();
    let copied = c.get_workflow(APP, copy.id).await.unwrap();
    let mut want = c.get_workflow(APP, w1).await.unwrap().body;
    want.name = "Nightly ETL 2".into();
    assert_eq!(copied.body, want);
    assert!(copied.next_trigger_time.is_some(), "the copy is scheduled");
    assert_eq!(wf_names(by_tag).await, ["Nightly ETL", "Nightly ETL 2"]);
    assert!(matches!(
        c.copy_workflow(APP, WorkflowId(999_999), &CopyWorkflow { name: "x".into() })
            .await,
        Err(ClientError::Api { status: 404, .. })
    ));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_filtered_by_trigger_and_finish_time() {
    let (server, c) = server().await;
    let job = c
        .create_job(APP, &JobBody::new("later", T::Api, "", "noop"))
        .await
        .unwrap()
        .id;
    // Delayed runs: their trigger times are known, far from now and from each other.
    let hour = 3_600_000;
    let mut runs = Vec::new();
    for delay in [hour, 2 * hour, 3 * hour] {
        let run = RunJob {
            params: String::new(),
            delay_ms: delay,
        };
        let id = c.run_job(APP, job, &run).await.unwrap().instance_id;
        runs.push(c.get_instance(APP, id).await.unwrap());
    }
    let canceled = c.cancel_instance(APP, runs[0].id).await.unwrap();
    assert_eq!(canceled.status, InstanceStatus::Canceled);
    let done = canceled.finished_time.unwrap();
    let ids = |q: InstanceQuery| {
        let c = &c;
        async move {
            let page = c.list_instances(APP, &q).await.unwrap();
            page.items.into_iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    let t = |i: usize| runs[i].trigger_time;
    let cases = [
        (
            None,
            None,
            None,
            None,
            vec![runs[2].id, runs[1].id, runs[0].id],
        ),
        (Some(t(1)), None, None, None, vec![runs[2].id, runs[1].id]),
        (Some(t(1)), Some(t(2)), None, None, vec![runs[1].id]),
        (None, Some(t(0)), None, None, vec![]),
        (None, None, Some(done), Some(done + 1), vec![runs[0].id]),
        (None, None, Some(done + 1), None, vec![]),
        (Some(t(1)), None, Some(0), None, vec![]),
    ];
    for (trigger_from, trigger_to, finished_from, finished_to, want) in cases {
        let q = InstanceQuery {
            job_id: Some(job),
            trigger_from,
            trigger_to,
            finished_from,
            finished_to,
            ..InstanceQuery::default()
        };
        assert_eq!(ids(q).await, want, "{q:?}");
    }
    // With a status: the non-final ones are listed from memory, filtered the same way.
    let waiting = InstanceQuery {
        status: Some(InstanceStatus::WaitingDispatch),
        trigger_from: Some(t(2)),
        ..InstanceQuery::default()
    };
    assert_eq!(ids(waiting).await, vec![runs[2].id]);
    let waiting_finished = InstanceQuery {
        status: Some(InstanceStatus::WaitingDispatch),
        finished_from: Some(0),
        ..InstanceQuery::default()
    };
    assert_eq!(ids(waiting_finished).await, vec![]);
    // A range that ends before it starts is a 400 naming it.
    let backwards = InstanceQuery {
        trigger_from: Some(10),
        trigger_to: Some(5),
        ..InstanceQuery::default()
    };
    invalid_field(c.list_instances(APP, &backwards).await, "trigger_from");
    server.shutdown().await;
}
