//! End to end: workflows on the real `ferrojob-server` and `ferrojob-worker` binaries on
//! 127.0.0.1 (temp data dirs, ephemeral ports), driven through the Rust client.
//!
//! Real time, short jobs: every wait polls a condition with a generous deadline, and nothing
//! asserts a duration.

use std::time::Duration;

use ferrojob::api::{
    NodeStatus, RunWorkflow, WorkflowDef, WorkflowInstanceStatus, WorkflowInstanceView,
};
use ferrojob::client::Client;
use ferrojob::ids::{InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::TimeExpressionType::Workflow;
use serde_json::json;

mod common;
use common::*;

/// A WORKFLOW-only shell job running `command`.
async fn shell_job(c: &Cluster, name: &str, command: &str) -> JobId {
    c.job(body(name, Workflow, "", "shell", command)).await
}

async fn create(c: &Cluster, def: serde_json::Value) -> WorkflowId {
    let def: WorkflowDef = serde_json::from_value(def).unwrap();
    c.client.create_workflow(APP, &def).await.unwrap().id
}

async fn run(c: &Cluster, wf: WorkflowId, init: serde_json::Value) -> WorkflowInstanceId {
    c.client
        .run_workflow(
            APP,
            wf,
            &RunWorkflow {
                init_params: Some(init),
                delay_ms: 0,
            },
        )
        .await
        .unwrap()
        .workflow_instance_id
}

async fn finished(c: &Cluster, wi: WorkflowInstanceId) -> WorkflowInstanceView {
    wait_for(
        "the workflow instance to end",
        Duration::from_secs(30),
        || async {
            let v = c.client.get_workflow_instance(APP, wi).await.ok()?;
            v.status.is_finished().then_some(v)
        },
    )
    .await
}

fn node(v: &WorkflowInstanceView, id: u64) -> &ferrojob::api::WorkflowNodeView {
    v.nodes.iter().find(|n| n.id == NodeId(id)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_takes_the_right_branch_and_the_context_reaches_downstream() {
    let c = Cluster::start(2, None).await;
    let first = shell_job(&c, "first", r#"echo '{"go":"left","batch":7}'"#).await;
    let left = shell_job(&c, "left", r#"echo "left saw $FERROJOB_WORKFLOW_CONTEXT""#).await;
    let right = shell_job(&c, "right", "echo right").await;
    let wf = create(
        &c,
        json!({
            "name": "branchy",
            "time_expression_type": "API",
            "nodes": [
                {"id": 1, "job_id": first},
                {"id": 2, "type": "DECISION", "expression": "go == \"left\" && tries < 3"},
                {"id": 3, "job_id": left},
                {"id": 4, "job_id": right}
            ],
            "edges": [
                {"from": 1, "to": 2},
                {"from": 2, "to": 3, "property": "true"},
                {"from": 2, "to": 4, "property": "false"}
            ]
        }),
    )
    .await;
    let wi = run(&c, wf, json!({"tries": 1})).await;
    let v = finished(&c, wi).await;
    assert_eq!(
        v.status,
        WorkflowInstanceStatus::Succeed,
        "{v:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(node(&v, 2).status, NodeStatus::Succeed);
    assert_eq!(node(&v, 2).result.as_deref(), Some("true"));
    assert_eq!(node(&v, 3).status, NodeStatus::Succeed);
    assert_eq!(node(&v, 4).status, NodeStatus::Skipped);
    assert_eq!(
        node(&v, 4).instance_id,
        None,
        "the branch not taken never ran"
    );
    // The context holds the init params and node 1's result, and node 3 saw both.
    assert_eq!(v.context.get("tries"), Some(&json!(1)));
    assert_eq!(v.context.get("go"), Some(&json!("left")));
    let seen = node(&v, 3).result.clone().unwrap_or_default();
    assert!(seen.starts_with("left saw "), "{seen}");
    let ctx: serde_json::Value =
        serde_json::from_str(seen.trim_start_matches("left saw ")).unwrap();
    assert_eq!(ctx["batch"], json!(7));
    assert_eq!(ctx["tries"], json!(1));
    // The node's job instance knows its workflow instance.
    let inst = c
        .client
        .get_instance(APP, InstanceId(node(&v, 3).instance_id.unwrap()))
        .await
        .unwrap();
    assert_eq!(inst.workflow_instance_id, Some(wi));
    assert_eq!(inst.job_id, left);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_with_skip_when_failed_lets_the_workflow_succeed() {
    let c = Cluster::start(1, None).await;
    let flaky = shell_job(&c, "flaky", "exit 3").await;
    let after = shell_job(&c, "after", "echo after").await;
    let wf = create(
        &c,
        json!({
            "name": "tolerant",
            "time_expression_type": "API",
            "nodes": [
                {"id": 1, "job_id": flaky, "skip_when_failed": true},
                {"id": 2, "job_id": after}
            ],
            "edges": [{"from": 1, "to": 2}]
        }),
    )
    .await;
    let v = finished(&c, run(&c, wf, json!({})).await).await;
    assert_eq!(
        v.status,
        WorkflowInstanceStatus::Succeed,
        "{v:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(node(&v, 1).status, NodeStatus::Failed);
    assert_eq!(node(&v, 2).status, NodeStatus::Succeed);
    assert_eq!(node(&v, 2).result.as_deref(), Some("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_re_runs_only_the_failed_nodes() {
    let c = Cluster::start(1, None).await;
    let mark = c.dir.path().join("second-time");
    let once = shell_job(&c, "once", "echo once").await;
    // Fails the first time (leaving a mark), succeeds the next.
    let second = shell_job(
        &c,
        "second",
        &format!(
            "test -f {0} || {{ touch {0}; exit 1; }}; echo recovered",
            mark.display()
        ),
    )
    .await;
    let wf = create(
        &c,
        json!({
            "name": "retryable",
            "time_expression_type": "API",
            "nodes": [{"id": 1, "job_id": once}, {"id": 2, "job_id": second}],
            "edges": [{"from": 1, "to": 2}]
        }),
    )
    .await;
    let wi = run(&c, wf, json!({})).await;
    let failed = finished(&c, wi).await;
    assert_eq!(failed.status, WorkflowInstanceStatus::Failed, "{failed:?}");
    assert_eq!(node(&failed, 1).status, NodeStatus::Succeed);
    assert_eq!(node(&failed, 2).status, NodeStatus::Failed);
    let first_run = node(&failed, 1).instance_id.unwrap();

    c.client.retry_workflow_instance(APP, wi).await.unwrap();
    let v = finished(&c, wi).await;
    assert_eq!(
        v.status,
        WorkflowInstanceStatus::Succeed,
        "{v:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(node(&v, 2).result.as_deref(), Some("recovered"));
    // Node 1 did not run again: same instance, and its job has exactly one instance.
    assert_eq!(node(&v, 1).instance_id, Some(first_run));
    assert_eq!(c.instances(once).await.len(), 1);
    assert_eq!(c.instances(second).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_in_the_middle_of_a_workflow_loses_nothing() {
    let transport = free_port();
    let mut c = Cluster::start(1, Some(transport)).await;
    let slow = shell_job(&c, "slow", "sleep 2; echo '{\"slept\":true}'").await;
    let next = shell_job(&c, "next", r#"echo "next saw $FERROJOB_WORKFLOW_CONTEXT""#).await;
    let wf = create(
        &c,
        json!({
            "name": "survivor",
            "time_expression_type": "API",
            "nodes": [{"id": 1, "job_id": slow}, {"id": 2, "job_id": next}],
            "edges": [{"from": 1, "to": 2}]
        }),
    )
    .await;
    let wi = run(&c, wf, json!({"origin": "before the crash"})).await;
    // Kill the server while node 1 runs on the worker.
    wait_for("node 1 running", Duration::from_secs(20), || async {
        let v = c.client.get_workflow_instance(APP, wi).await.ok()?;
        let id = node(&v, 1).instance_id?;
        let i = c.client.get_instance(APP, InstanceId(id)).await.ok()?;
        (i.status == InstanceStatus::Running).then_some(())
    })
    .await;
    c.server.kill();
    let server = start_server(c.dir.path(), Some(transport), "server2");
    c.http = server.field("http").parse().unwrap();
    c.server = server;
    c.client = Client::new(&format!("http://{}", c.http), TOKEN).unwrap();
    c.wait_workers(1).await;
    let v = finished(&c, wi).await;
    assert_eq!(
        v.status,
        WorkflowInstanceStatus::Succeed,
        "{v:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(v.context.get("origin"), Some(&json!("before the crash")));
    assert_eq!(v.context.get("slept"), Some(&json!(true)));
    let seen = node(&v, 2).result.clone().unwrap_or_default();
    assert!(
        seen.contains("before the crash") && seen.contains("slept"),
        "{seen}"
    );
    // The workflow and its definition are intact too.
    assert_eq!(
        c.client.get_workflow(APP, wf).await.unwrap().body.name,
        "survivor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_backfill_from_the_cli_hands_each_past_trigger_to_its_nodes() {
    const HOUR: i64 = 3_600_000;
    let c = Cluster::start(1, None).await;
    let stamp = shell_job(
        &c,
        "stamp",
        "echo key=$FERROJOB_TRIGGER_KEY time=$FERROJOB_TRIGGER_TIME",
    )
    .await;
    let wf = create(
        &c,
        json!({
            "name": "hourly", "time_expression_type": "CRON", "time_expression": "0 0 * * * ?",
            "max_instances": 2, "nodes": [{"id": 1, "job_id": stamp}],
        }),
    )
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let hour = now - now.rem_euclid(HOUR);
    let times = [hour - 3 * HOUR, hour - 2 * HOUR];
    let (from, to) = (times[0].to_string(), (hour - HOUR).to_string());
    let id = wf.0.to_string();
    let args = [
        "workflow", "backfill", "--app", APP, &id, "--from", &from, "--to", &to,
    ];
    let rfc = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .to_rfc3339()
    };
    // (A fire of the workflow itself, should the test cross an hour, stands for another time.)
    let backfilled = || async {
        let page = c
            .client
            .list_workflow_instances(
                APP,
                &ferrojob::api::WorkflowInstanceQuery {
                    workflow_id: Some(wf),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut v: Vec<WorkflowInstanceView> = page
            .items
            .into_iter()
            .filter(|i| times.contains(&i.trigger_time))
            .collect();
        v.sort_unstable_by_key(|i| i.trigger_time);
        v
    };

    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let listed = cli(&c, &dry);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [rfc(times[0]), rfc(times[1])]
    );
    assert!(backfilled().await.is_empty(), "a dry run creates nothing");

    let mut keyed = args.to_vec();
    keyed.extend(["--idempotency-key", "fill-once"]);
    let printed = cli(&c, &keyed);
    // The same key again: the first answer, no second set of runs.
    assert_eq!(cli(&c, &keyed), printed);
    let made = backfilled().await;
    assert_eq!(
        made.iter().map(|i| i.trigger_time).collect::<Vec<_>>(),
        times
    );
    for i in &made {
        assert!(
            printed.contains(&format!(
                "{} workflow_instance={}",
                rfc(i.trigger_time),
                i.id.0
            )),
            "{printed}"
        );
        let done = finished(&c, i.id).await;
        assert_eq!(done.status, WorkflowInstanceStatus::Succeed, "{done:?}");
        let job = node(&done, 1).instance_id.unwrap();
        let view = c.client.get_instance(APP, InstanceId(job)).await.unwrap();
        assert_eq!(view.trigger_time, i.trigger_time);
        // The worker ships log lines on its own schedule: wait for the one echoed.
        let lines: Vec<String> =
            wait_for("the node's key line", Duration::from_secs(30), || async {
                let log = c
                    .client
                    .instance_log(APP, InstanceId(job), ferrojob::api::LogQuery::default())
                    .await
                    .ok()?;
                let lines: Vec<String> = log
                    .lines
                    .iter()
                    .map(|l| l.content.clone())
                    .filter(|l| l.starts_with("key="))
                    .collect();
                (!lines.is_empty()).then_some(lines)
            })
            .await;
        assert_eq!(
            lines,
            [format!(
                "key=workflow-instance-{}-node-1-attempt-1 time={}",
                i.id.0, i.trigger_time
            )]
        );
    }
}
