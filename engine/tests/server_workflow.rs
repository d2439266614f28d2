//! Workflows in the server core: a fake worker over the real transport holds every
//! node's job instance and the test reports its end, so each step is explicit. Time is a
//! `VirtualClock`: nothing fires unless a test advances it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::sync::Arc;

use ferrojob::api::{
    Api, AppRef, ErrorCode, NodeStatus as NS, RunWorkflow, WorkflowDef,
    WorkflowInstanceAction as A, WorkflowInstanceQuery, WorkflowInstanceStatus as WS,
    WorkflowInstanceView,
};
use ferrojob::clock::VirtualClock;
use ferrojob::ids::{InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::{ServerCore, StoreChoice};
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::{InstanceStatus as W, ScheduleJob};
use serde_json::{json, Value};
use server_runtime_support::*;

fn def(name: &str, nodes: Value, edges: Value) -> WorkflowDef {
    serde_json::from_value(json!({
        "name": name, "time_expression_type": "API", "nodes": nodes, "edges": edges,
    }))
    .unwrap()
}

/// A server on a virtual clock, an app, a registered holding worker and `n` API jobs.
struct Env {
    server: ServerCore,
    api: Arc<dyn Api>,
    app: AppRef,
    w: FakeWorker,
    jobs: Vec<JobId>,
    clock: VirtualClock,
}

async fn env_on(store: StoreChoice, n: usize) -> Env {
    let clock = VirtualClock::new(T0);
    let server = start(config(store, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, T0).await;
    let mut jobs = Vec::new();
    for _ in 0..n {
        jobs.push(
            api.create_job(app.clone(), job(T::Api, ""))
                .await
                .unwrap()
                .id,
        );
    }
    Env {
        server,
        api,
        app,
        w,
        jobs,
        clock,
    }
}

async fn env(n: usize) -> Env {
    env_on(StoreChoice::Memory, n).await
}

impl Env {
    async fn create(&self, d: WorkflowDef) -> WorkflowId {
        self.api
            .create_workflow(self.app.clone(), d)
            .await
            .unwrap()
            .id
    }

    async fn run(&self, wf: WorkflowId, init: Value) -> WorkflowInstanceId {
        self.api
            .run_workflow(
                self.app.clone(),
                wf,
                RunWorkflow {
                    init_params: Some(init),
                    delay_ms: 0,
                },
            )
            .await
            .unwrap()
            .workflow_instance_id
    }

    async fn wfi(&self, id: WorkflowInstanceId) -> WorkflowInstanceView {
        self.api
            .get_workflow_instance(self.app.clone(), id)
            .await
            .unwrap()
    }

    async fn wf_status(&self, id: WorkflowInstanceId, s: WS) -> WorkflowInstanceView {
        until(&format!("{id} {s:?}"), || async {
            let v = self.wfi(id).await;
            (v.status == s).then_some(v)
        })
        .await
    }

    /// The next ScheduleJob; ends it with `status` and `result`.
    async fn finish_next(&mut self, status: W, result: &str) -> ScheduleJob {
        let s = self.w.next_schedule().await;
        self.w.r().report(s.instance_id, status, Some(result)).await;
        s
    }
}

fn node_status(v: &WorkflowInstanceView, node: u64) -> NS {
    v.nodes
        .iter()
        .find(|n| n.id == NodeId(node))
        .unwrap()
        .status
}

fn ctx(s: &ScheduleJob) -> Value {
    serde_json::from_str(&s.workflow_context).unwrap()
}

#[tokio::test]
async fn chain_runs_in_order_and_the_context_reaches_downstream() {
    let mut e = env(3).await;
    let (j1, j2, j3) = (e.jobs[0], e.jobs[1], e.jobs[2]);
    let wf = e
        .create(def(
            "chain",
            json!([{"id": 1, "job_id": j1}, {"id": 2, "job_id": j2, "params": "p2"}, {"id": 3, "job_id": j3}]),
            json!([{"from": 1, "to": 2}, {"from": 2, "to": 3}]),
        ))
        .await;
    // init_params as a string holding an object (PowerJob's form).
    let wfi = e.run(wf, json!("{\"seed\": 7}")).await;
    let s1 = e.finish_next(W::Succeed, r#"{"a": 1}"#).await;
    assert_eq!(s1.job_id, j1.0);
    assert_eq!(s1.workflow_instance_id, Some(wfi.0));
    // A node's run is keyed by its workflow instance, node and node run, the same for every
    // dispatch of its job instance.
    assert_eq!(
        s1.trigger_key,
        format!("workflow-instance-{}-node-1-attempt-1", wfi.0)
    );
    assert_eq!(ctx(&s1), json!({"seed": 7}));
    let s2 = e.finish_next(W::Succeed, "plain text").await;
    assert_eq!(s2.job_id, j2.0);
    assert_eq!(s2.instance_params, "p2");
    assert_eq!(ctx(&s2), json!({"seed": 7, "a": 1}));
    let s3 = e.finish_next(W::Succeed, "{}").await;
    assert_eq!(s3.job_id, j3.0);
    assert_eq!(ctx(&s3), json!({"seed": 7, "a": 1, "2": "plain text"}));
    let v = e.wf_status(wfi, WS::Succeed).await;
    assert!(v.nodes.iter().all(|n| n.status == NS::Succeed));
    assert_eq!(v.nodes[0].instance_id, Some(s1.instance_id));
    let iv = e
        .api
        .get_instance(e.app.clone(), InstanceId(s2.instance_id))
        .await
        .unwrap();
    assert_eq!(iv.workflow_instance_id, Some(wfi));
    assert_eq!(iv.status, S::Succeed);
    assert!(
        iv.tasks.is_none(),
        "STANDALONE instances have no task progress"
    );
    let metrics = e.api.metrics_text();
    assert!(
        metrics.contains("ferrojob_workflow_handoff_seconds_count 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ferrojob_workflow_instances_finished_total{status=\"SUCCEED\"} 1"));
}

#[tokio::test]
async fn a_decision_takes_the_right_branch_and_skips_the_other() {
    let mut e = env(3).await;
    let (j1, left, right) = (e.jobs[0], e.jobs[1], e.jobs[2]);
    let wf = e
        .create(def(
            "decide",
            json!([
                {"id": 1, "job_id": j1},
                {"id": 2, "type": "DECISION", "expression": "go == \"left\" && tries < 3"},
                {"id": 3, "job_id": left},
                {"id": 4, "job_id": right},
            ]),
            json!([
                {"from": 1, "to": 2},
                {"from": 2, "to": 3, "property": "true"},
                {"from": 2, "to": 4, "property": "false"},
            ]),
        ))
        .await;
    let wfi = e.run(wf, json!({"tries": 1})).await;
    e.finish_next(W::Succeed, r#"{"go": "left"}"#).await;
    let s = e.finish_next(W::Succeed, "").await;
    assert_eq!(s.job_id, left.0);
    let v = e.wf_status(wfi, WS::Succeed).await;
    assert_eq!(node_status(&v, 2), NS::Succeed);
    assert_eq!(v.nodes[1].result.as_deref(), Some("true"));
    assert_eq!(node_status(&v, 4), NS::Skipped);
    assert!(e.w.no_schedule_pending());
}

#[tokio::test]
async fn skip_when_failed_lets_the_workflow_succeed() {
    let mut e = env(2).await;
    let wf = e
        .create(def(
            "skip",
            json!([{"id": 1, "job_id": e.jobs[0], "skip_when_failed": true}, {"id": 2, "job_id": e.jobs[1]}]),
            json!([{"from": 1, "to": 2}]),
        ))
        .await;
    let wfi = e.run(wf, Value::Null).await;
    e.finish_next(W::Failed, "boom").await;
    let s = e.finish_next(W::Succeed, "").await;
    assert_eq!(s.job_id, e.jobs[1].0);
    let v = e.wf_status(wfi, WS::Succeed).await;
    assert_eq!(node_status(&v, 1), NS::Failed);
}

/// Two independent branches: 1 → 3 and 2; node 1 fails while 2 runs.
async fn branches(policy: &str) -> (Env, WorkflowInstanceId, ScheduleJob, ScheduleJob) {
    let mut e = env(3).await;
    let mut d = def(
        "branches",
        json!([{"id": 1, "job_id": e.jobs[0]}, {"id": 2, "job_id": e.jobs[1]}, {"id": 3, "job_id": e.jobs[2]}]),
        json!([{"from": 1, "to": 3}]),
    );
    d.failure_policy = serde_json::from_value(json!(policy)).unwrap();
    let wf = e.create(d).await;
    let wfi = e.run(wf, json!({})).await;
    let a = e.w.next_schedule().await;
    let b = e.w.next_schedule().await;
    let (one, two) = if a.job_id == e.jobs[0].0 {
        (a, b)
    } else {
        (b, a)
    };
    e.w.r()
        .report(one.instance_id, W::Failed, Some("boom"))
        .await;
    (e, wfi, one, two)
}

#[tokio::test]
async fn fail_fast_stops_the_other_branch() {
    let (mut e, wfi, _one, two) = branches("FAIL_FAST").await;
    let v = e.wf_status(WorkflowInstanceId(wfi.0), WS::Failed).await;
    assert_eq!(node_status(&v, 2), NS::Stopped);
    assert_eq!(node_status(&v, 3), NS::Waiting);
    assert_eq!(e.w.next_stop().await, two.instance_id);
    status_is(&e.api, &e.app, InstanceId(two.instance_id), S::Stopped).await;
}

#[tokio::test]
async fn finish_branches_lets_the_other_branch_end() {
    let (e, wfi, _one, two) = branches("FINISH_BRANCHES").await;
    // Still running: node 2 has not ended.
    until("node 1 failed", || async {
        (node_status(&e.wfi(WorkflowInstanceId(wfi.0)).await, 1) == NS::Failed).then_some(())
    })
    .await;
    assert_eq!(e.wfi(WorkflowInstanceId(wfi.0)).await.status, WS::Running);
    e.w.r().report(two.instance_id, W::Succeed, Some("")).await;
    let v = e.wf_status(WorkflowInstanceId(wfi.0), WS::Failed).await;
    assert_eq!(node_status(&v, 2), NS::Succeed);
    assert_eq!(node_status(&v, 3), NS::Waiting);
}

#[tokio::test]
async fn retry_reruns_only_the_failed_nodes_and_mark_success_releases_successors() {
    let mut e = env(3).await;
    let wf = e
        .create(def(
            "retry",
            json!([{"id": 1, "job_id": e.jobs[0]}, {"id": 2, "job_id": e.jobs[1]}, {"id": 3, "job_id": e.jobs[2]}]),
            json!([{"from": 1, "to": 2}, {"from": 2, "to": 3}]),
        ))
        .await;
    let wfi = e.run(wf, json!({})).await;
    let s1 = e.finish_next(W::Succeed, "").await;
    e.finish_next(W::Failed, "boom").await;
    let v = e.wf_status(wfi, WS::Failed).await;
    assert_eq!(node_status(&v, 2), NS::Failed);
    // Retry: only node 2 runs again; it fails again.
    let r = e
        .api
        .workflow_instance_action(e.app.clone(), wfi, A::Retry)
        .await
        .unwrap();
    assert_eq!(r.status, WS::Running);
    let s2 = e.finish_next(W::Failed, "boom again").await;
    assert_eq!(s2.job_id, e.jobs[1].0);
    // The re-run is a new job instance with a key of its own (node run 2).
    assert_eq!(
        s2.trigger_key,
        format!("workflow-instance-{}-node-2-attempt-2", wfi.0)
    );
    e.wf_status(wfi, WS::Failed).await;
    // Mark node 2 successful: the instance stays FAILED until retried; then node 3 runs.
    let m = e
        .api
        .mark_workflow_node_success(e.app.clone(), wfi, NodeId(2))
        .await
        .unwrap();
    assert_eq!(node_status(&m, 2), NS::Succeed);
    assert_eq!(m.status, WS::Failed);
    let err = e
        .api
        .mark_workflow_node_success(e.app.clone(), wfi, NodeId(1))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    e.api
        .workflow_instance_action(e.app.clone(), wfi, A::Retry)
        .await
        .unwrap();
    let s3 = e.finish_next(W::Succeed, "").await;
    assert_eq!(s3.job_id, e.jobs[2].0);
    let v = e.wf_status(wfi, WS::Succeed).await;
    assert_eq!(
        v.nodes[0].instance_id,
        Some(s1.instance_id),
        "node 1 was not re-run"
    );
    let err = e
        .api
        .workflow_instance_action(e.app.clone(), wfi, A::Retry)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
}

#[tokio::test]
async fn stop_stops_the_running_node() {
    let mut e = env(1).await;
    let wf = e
        .create(def(
            "stop",
            json!([{"id": 1, "job_id": e.jobs[0]}]),
            json!([]),
        ))
        .await;
    let wfi = e.run(wf, json!({})).await;
    let s = e.w.next_schedule().await;
    let v = e
        .api
        .workflow_instance_action(e.app.clone(), wfi, A::Stop)
        .await
        .unwrap();
    assert_eq!(v.status, WS::Stopped);
    assert_eq!(node_status(&v, 1), NS::Stopped);
    assert_eq!(e.w.next_stop().await, s.instance_id);
    status_is(&e.api, &e.app, InstanceId(s.instance_id), S::Stopped).await;
    let err = e
        .api
        .workflow_instance_action(e.app.clone(), wfi, A::Stop)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
}

#[tokio::test]
async fn a_nested_workflow_runs_as_a_node() {
    let mut e = env(2).await;
    let inner = e
        .create(def(
            "inner",
            json!([{"id": 1, "job_id": e.jobs[0]}]),
            json!([]),
        ))
        .await;
    let outer = e
        .create(def(
            "outer",
            json!([{"id": 1, "type": "NESTED_WORKFLOW", "workflow_id": inner}, {"id": 2, "job_id": e.jobs[1]}]),
            json!([{"from": 1, "to": 2}]),
        ))
        .await;
    let wfi = e.run(outer, json!({"k": "v"})).await;
    let s = e.finish_next(W::Succeed, r#"{"x": 5}"#).await;
    assert_eq!(s.job_id, e.jobs[0].0);
    let child = s.workflow_instance_id.unwrap();
    assert_ne!(child, wfi.0);
    assert_eq!(
        ctx(&s),
        json!({"k": "v"}),
        "the child is seeded from the parent's context"
    );
    let s2 = e.finish_next(W::Succeed, "").await;
    assert_eq!(s2.job_id, e.jobs[1].0);
    assert_eq!(
        ctx(&s2)["x"],
        json!(5),
        "the child's context reaches the parent"
    );
    let v = e.wf_status(wfi, WS::Succeed).await;
    assert_eq!(v.nodes[0].instance_id, Some(child));
    let c = e.wf_status(WorkflowInstanceId(child), WS::Succeed).await;
    assert_eq!(c.parent_instance_id, Some(wfi));
    // Nesting is visible in the listing of the inner workflow.
    let l = e
        .api
        .list_workflow_instances(
            e.app.clone(),
            WorkflowInstanceQuery {
                workflow_id: Some(inner),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    // Deleting a nested workflow or a referenced job is refused.
    let err = e
        .api
        .delete_workflow(e.app.clone(), inner)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    let err = e
        .api
        .delete_job(e.app.clone(), e.jobs[1])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    e.api.delete_workflow(e.app.clone(), outer).await.unwrap();
    e.api.delete_workflow(e.app.clone(), inner).await.unwrap();
    e.api.delete_job(e.app.clone(), e.jobs[1]).await.unwrap();
}

#[tokio::test]
async fn a_nesting_loop_is_refused_at_runtime() {
    let e = env(1).await;
    let a = e
        .create(def("a", json!([{"id": 1, "job_id": e.jobs[0]}]), json!([])))
        .await;
    let b = e
        .create(def(
            "b",
            json!([{"id": 1, "type": "NESTED_WORKFLOW", "workflow_id": a}]),
            json!([]),
        ))
        .await;
    // A now nests B, which nests A.
    e.api
        .update_workflow(
            e.app.clone(),
            a,
            def(
                "a",
                json!([{"id": 1, "type": "NESTED_WORKFLOW", "workflow_id": b}]),
                json!([]),
            ),
        )
        .await
        .unwrap();
    let wfi = e.run(a, json!({})).await;
    let v = e.wf_status(wfi, WS::Failed).await;
    let child = v.nodes[0].instance_id.unwrap();
    let c = e.wf_status(WorkflowInstanceId(child), WS::Failed).await;
    let why = c.nodes[0].result.clone().unwrap();
    assert!(why.contains("nesting loop"), "{why}");
}

#[tokio::test]
async fn invalid_definitions_and_bad_requests_are_refused() {
    let e = env(1).await;
    let j = e.jobs[0];
    let err = e
        .api
        .create_workflow(
            e.app.clone(),
            def(
                "cyc",
                json!([{"id": 1, "job_id": j}, {"id": 2, "job_id": j}]),
                json!([{"from": 1, "to": 2}, {"from": 2, "to": 1}]),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("cycle"), "{}", err.message);
    let err = e
        .api
        .create_workflow(
            e.app.clone(),
            def("u", json!([{"id": 1, "job_id": 999}]), json!([])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("999"), "{}", err.message);
    let wf = e
        .create(def("ok", json!([{"id": 1, "job_id": j}]), json!([])))
        .await;
    let err = e
        .api
        .run_workflow(
            e.app.clone(),
            wf,
            RunWorkflow {
                init_params: Some(json!(5)),
                delay_ms: 0,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let err = e
        .api
        .get_workflow(e.app.clone(), WorkflowId(12345))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = e
        .api
        .get_workflow_instance(e.app.clone(), WorkflowInstanceId(12345))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = e
        .api
        .mark_workflow_node_success(e.app.clone(), WorkflowInstanceId(12345), NodeId(1))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_cron_workflow_fires_on_the_clock_within_max_instances() {
    let mut e = env(1).await;
    let mut d = def("cron", json!([{"id": 1, "job_id": e.jobs[0]}]), json!([]));
    d.time_expression_type = T::Cron;
    d.time_expression = "0/10 * * * * ?".into();
    let wf = e.create(d).await;
    let view = e.api.get_workflow(e.app.clone(), wf).await.unwrap();
    assert_eq!(view.next_trigger_time, Some(T0 + 10_000));
    e.clock.advance(10_000);
    let s = e.w.next_schedule().await;
    let wfi = s.workflow_instance_id.unwrap();
    // RUNNING before the clock moves on (else the receive check would requeue it).
    status_is(&e.api, &e.app, InstanceId(s.instance_id), S::Running).await;
    // max_instances = 1: the next fire is skipped while this one runs.
    e.clock.advance(10_000);
    until("trigger moved on", || async {
        let v = e.api.get_workflow(e.app.clone(), wf).await.unwrap();
        (v.next_trigger_time == Some(T0 + 30_000)).then_some(())
    })
    .await;
    assert!(e.w.no_schedule_pending());
    let err = e
        .api
        .run_workflow(e.app.clone(), wf, RunWorkflow::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    e.w.r().report(s.instance_id, W::Succeed, Some("")).await;
    e.wf_status(WorkflowInstanceId(wfi), WS::Succeed).await;
    e.clock.advance(10_000);
    let s2 = e.w.next_schedule().await;
    assert_ne!(s2.workflow_instance_id, Some(wfi));
}

#[tokio::test]
async fn a_workflow_trigger_on_a_date_its_calendar_excludes_is_skipped() {
    use ferrojob::api::CalendarBody;
    let mut e = env(1).await;
    // T0 is 2030-01-01T00:00Z, still 2029-12-31 in New York: excluded there.
    let ny = |excluded: &[&str]| CalendarBody {
        time_zone: Some("America/New_York".into()),
        excluded: excluded.iter().map(|d| (*d).to_owned()).collect(),
        description: String::new(),
    };
    e.api
        .put_calendar(e.app.clone(), "ny".into(), ny(&["2029-12-31"]))
        .await
        .unwrap();
    let mut d = def("cron", json!([{"id": 1, "job_id": e.jobs[0]}]), json!([]));
    d.time_expression_type = T::Cron;
    d.time_expression = "0/10 * * * * ?".into();
    d.calendars = vec!["ny".into()];
    let wf = e.create(d).await;
    e.clock.advance(10_000);
    until("trigger moved on", || async {
        let v = e.api.get_workflow(e.app.clone(), wf).await.unwrap();
        (v.next_trigger_time == Some(T0 + 20_000)).then_some(())
    })
    .await;
    assert!(
        e.w.no_schedule_pending(),
        "the excluded trigger started a run"
    );
    let listed = e
        .api
        .list_workflow_instances(e.app.clone(), Default::default())
        .await
        .unwrap();
    assert!(
        listed.items.is_empty(),
        "an excluded trigger creates no instance"
    );
    let view = e.api.get_workflow(e.app.clone(), wf).await.unwrap();
    assert_eq!(view.calendar_skipped_runs, 1, "counted like a job's");
    // The calendar changed: the next trigger fires.
    e.api
        .put_calendar(e.app.clone(), "ny".into(), ny(&["2030-07-04"]))
        .await
        .unwrap();
    e.clock.advance(10_000);
    let s = e.w.next_schedule().await;
    assert!(s.workflow_instance_id.is_some());
}

/// A CRON workflow backfilled over three past days: one workflow instance per trigger time
/// but the one its calendar excludes (listed with the calendar), each standing for its
/// time and handing it to both nodes' job instances; a dry run creates nothing.
#[tokio::test]
async fn a_backfill_runs_a_cron_workflow_once_per_past_trigger_with_its_time() {
    use ferrojob::api::{Backfill, CalendarBody};
    const DAY: i64 = 86_400_000;
    let mut e = env(2).await;
    let utc = CalendarBody {
        time_zone: Some("UTC".into()),
        excluded: vec!["2029-12-30".into()],
        description: String::new(),
    };
    e.api
        .put_calendar(e.app.clone(), "freeze".into(), utc)
        .await
        .unwrap();
    let mut d = def(
        "nightly",
        json!([{"id": 1, "job_id": e.jobs[0]}, {"id": 2, "job_id": e.jobs[1]}]),
        json!([{"from": 1, "to": 2}]),
    );
    d.time_expression_type = T::Cron;
    d.time_expression = "0 0 2 * * ?".into();
    d.calendars = vec!["freeze".into()];
    d.max_instances = 3;
    let wf = e.create(d).await;
    // 2029-12-29, -30 and -31 at 02:00 UTC; T0 is 2030-01-01T00:00Z.
    let times = [
        T0 - 3 * DAY + 7_200_000,
        T0 - 2 * DAY + 7_200_000,
        T0 - DAY + 7_200_000,
    ];
    let req = Backfill {
        from: T0 - 3 * DAY,
        to: T0,
        dry_run: true,
    };
    let dry = e
        .api
        .backfill_workflow(e.app.clone(), wf, req)
        .await
        .unwrap();
    assert!(dry.dry_run);
    let listed: Vec<_> = dry
        .runs
        .iter()
        .map(|r| {
            (
                r.trigger_time,
                r.workflow_instance_id,
                r.excluded_by.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (times[0], None, None),
            (times[1], None, Some("freeze")),
            (times[2], None, None)
        ]
    );
    let none = e
        .api
        .list_workflow_instances(e.app.clone(), Default::default())
        .await
        .unwrap();
    assert!(none.items.is_empty(), "a dry run creates nothing");
    assert!(e.w.no_schedule_pending());

    let req = Backfill {
        dry_run: false,
        ..req
    };
    let done = e
        .api
        .backfill_workflow(e.app.clone(), wf, req)
        .await
        .unwrap();
    assert!(!done.dry_run);
    assert_eq!(done.runs.len(), 3);
    assert_eq!(done.runs[1].excluded_by.as_deref(), Some("freeze"));
    assert_eq!(done.runs[1].workflow_instance_id, None);
    let made: Vec<(i64, WorkflowInstanceId)> = done
        .runs
        .iter()
        .filter_map(|r| Some((r.trigger_time, r.workflow_instance_id?)))
        .collect();
    assert_eq!(
        made.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [times[0], times[2]]
    );
    for (t, wfi) in &made {
        assert_eq!(e.wfi(*wfi).await.trigger_time, *t);
    }
    // Every node's job instance carries its workflow instance's time: node 1 of both, then
    // node 2 of each as node 1 ends.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let s = e.finish_next(W::Succeed, "").await;
        let wfi = WorkflowInstanceId(s.workflow_instance_id.unwrap());
        let (t, _) = made.iter().find(|(_, w)| *w == wfi).unwrap();
        assert_eq!(s.trigger_time_ms, *t, "{s:?}");
        let job = e
            .api
            .get_instance(e.app.clone(), InstanceId(s.instance_id))
            .await
            .unwrap();
        assert_eq!(job.trigger_time, *t);
        assert!(s
            .trigger_key
            .starts_with(&format!("workflow-instance-{}-node-", wfi.0)));
        seen.push((wfi, s.job_id));
    }
    seen.sort_unstable_by_key(|(w, j)| (w.0, *j));
    let jobs = [e.jobs[0].0, e.jobs[1].0];
    let want: Vec<_> = made
        .iter()
        .flat_map(|(_, w)| jobs.iter().map(move |j| (*w, *j)))
        .collect();
    assert_eq!(seen, want);
    for (_, wfi) in &made {
        e.wf_status(*wfi, WS::Succeed).await;
    }
    // The backfill is not a fire: the schedule is where it was.
    let view = e.api.get_workflow(e.app.clone(), wf).await.unwrap();
    assert_eq!(view.next_trigger_time, Some(T0 + 7_200_000));
}

fn log(dir: &tempfile::TempDir) -> StoreChoice {
    StoreChoice::Log {
        dir: dir.path().to_path_buf(),
    }
}

#[tokio::test]
async fn a_restart_mid_workflow_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wfi, delayed, s2, jobs) = {
        let mut e = env_on(log(&dir), 3).await;
        let jobs = e.jobs.clone();
        let wf = e
            .create(def(
                "chain",
                json!([{"id": 1, "job_id": jobs[0]}, {"id": 2, "job_id": jobs[1]}, {"id": 3, "job_id": jobs[2]}]),
                json!([{"from": 1, "to": 2}, {"from": 2, "to": 3}]),
            ))
            .await;
        let mut d = def("later", json!([{"id": 1, "job_id": jobs[0]}]), json!([]));
        d.max_instances = 5;
        let later = e.create(d).await;
        let delayed = e
            .api
            .run_workflow(
                e.app.clone(),
                later,
                RunWorkflow {
                    init_params: Some(json!({"d": 1})),
                    delay_ms: 60_000,
                },
            )
            .await
            .unwrap()
            .workflow_instance_id;
        let wfi = e.run(wf, json!({"seed": 1})).await;
        e.finish_next(W::Succeed, r#"{"a": 1}"#).await;
        let s2 = e.w.next_schedule().await;
        assert_eq!(s2.job_id, jobs[1].0);
        // Node 2 is dispatched and held; the server dies (no shutdown).
        drop(e.w);
        drop(e.server);
        (wfi, delayed, s2, jobs)
    };
    let clock = VirtualClock::new(T0 + 1000);
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    let v = api.get_workflow_instance(app.clone(), wfi).await.unwrap();
    assert_eq!(v.status, WS::Running);
    assert_eq!(node_status(&v, 1), NS::Succeed);
    assert_eq!(node_status(&v, 2), NS::Running);
    // The worker comes back having finished node 2 meanwhile: reconciliation pushes it.
    let mut w = FakeWorker::connect_knowing(
        server.transport_addr(),
        "a",
        "w1:1",
        Mode::Hold,
        s2.instance_id,
        W::Succeed,
        r#"{"b": 2}"#,
    )
    .await;
    w.register(&api, &app, 8, T0 + 1000).await;
    let s3 = w.next_schedule().await;
    assert_eq!(s3.job_id, jobs[2].0);
    assert_eq!(s3.workflow_instance_id, Some(wfi.0));
    assert_eq!(ctx(&s3), json!({"seed": 1, "a": 1, "b": 2}));
    w.r().report(s3.instance_id, W::Succeed, Some("")).await;
    until("workflow finished", || async {
        let v = api.get_workflow_instance(app.clone(), wfi).await.unwrap();
        (v.status == WS::Succeed).then_some(())
    })
    .await;
    // The delayed run survived and starts when due.
    let d = api
        .get_workflow_instance(app.clone(), delayed)
        .await
        .unwrap();
    assert_eq!(d.status, WS::Waiting);
    clock.advance(60_000);
    let s = w.next_schedule().await;
    assert_eq!(s.workflow_instance_id, Some(delayed.0));
    assert_eq!(ctx(&s), json!({"d": 1}));
}

#[tokio::test]
async fn a_node_instance_retries_before_its_node_fails_and_updates_spare_running_instances() {
    let mut e = env(1).await;
    let mut body = job(T::Api, "");
    body.instance_retries = 1;
    let retried = e.api.create_job(e.app.clone(), body).await.unwrap().id;
    let wf = e
        .create(def(
            "retries",
            json!([{"id": 1, "job_id": retried}, {"id": 2, "job_id": e.jobs[0]}]),
            json!([{"from": 1, "to": 2}]),
        ))
        .await;
    let wfi = e.run(wf, json!({})).await;
    // The workflow definition changes while the instance runs: it keeps its own.
    e.api
        .update_workflow(
            e.app.clone(),
            wf,
            def(
                "retries",
                json!([{"id": 9, "job_id": e.jobs[0]}]),
                json!([]),
            ),
        )
        .await
        .unwrap();
    let first = e.finish_next(W::Failed, "flaky").await;
    // The server retries the instance itself (after its backoff); the node stays RUNNING.
    status_is(
        &e.api,
        &e.app,
        InstanceId(first.instance_id),
        S::WaitingDispatch,
    )
    .await;
    assert_eq!(node_status(&e.wfi(wfi).await, 1), NS::Running);
    e.clock.advance(1000);
    let again = e.finish_next(W::Succeed, r#"{"second": true}"#).await;
    assert_eq!(again.instance_id, first.instance_id);
    assert_eq!(again.workflow_instance_id, Some(wfi.0));
    let s2 = e.finish_next(W::Succeed, "").await;
    assert_eq!(ctx(&s2)["second"], json!(true));
    let v = e.wf_status(wfi, WS::Succeed).await;
    assert_eq!(
        v.nodes.len(),
        2,
        "the instance kept the definition it started with"
    );
    let view = e.api.get_workflow(e.app.clone(), wf).await.unwrap();
    assert_eq!(view.body.nodes.len(), 1);
}

#[tokio::test]
async fn map_instances_show_their_task_progress() {
    let mut e = env(0).await;
    let mut body = job(T::Api, "");
    body.execute_type = ferrojob::model::ExecuteType::Map;
    let j = e.api.create_job(e.app.clone(), body).await.unwrap().id;
    let id = run(&e.api, &e.app, j).await;
    e.w.next_schedule().await;
    // The fake worker's RUNNING report carries total_tasks = 1.
    let v = status_is(&e.api, &e.app, id, S::Running).await;
    let t = v.tasks.expect("MAP instances carry task counts");
    assert_eq!((t.total, t.succeeded, t.failed), (1, 0, 0));
    assert!(v.workflow_instance_id.is_none());
}

/// The next ScheduleJob, advancing the clock 500 ms (the no-worker retry pause) while none
/// comes.
async fn next_schedule_advancing(w: &mut FakeWorker, clock: &VirtualClock) -> ScheduleJob {
    for _ in 0..200 {
        match tokio::time::timeout(std::time::Duration::from_millis(50), w.seen.recv()).await {
            Ok(Some(Seen::Schedule(j))) => return *j,
            Ok(Some(_)) => {}
            Ok(None) => panic!("worker gone"),
            Err(_) => clock.advance(500),
        }
    }
    panic!("no ScheduleJob")
}

/// Opens the store the server left (waiting for its lock).
async fn reopen(dir: &tempfile::TempDir) -> Arc<ferrojob_store::LogStore> {
    for _ in 0..400 {
        match ferrojob_store::LogStore::open(dir.path(), ferrojob_store::LogOptions::default()) {
            Ok(s) => return Arc::new(s),
            Err(ferrojob_store::StoreError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await
            }
            Err(e) => panic!("open: {e}"),
        }
    }
    panic!("store stayed locked")
}

#[tokio::test]
async fn a_node_that_finished_while_its_push_was_in_flight_is_pushed_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (wfi, s1, jobs) = {
        let mut e = env_on(log(&dir), 2).await;
        let jobs = e.jobs.clone();
        let mut d = def(
            "chain",
            json!([{"id": 1, "job_id": jobs[0]}, {"id": 2, "job_id": jobs[1]}]),
            json!([{"from": 1, "to": 2}]),
        );
        d.time_expression_type = T::FixedRate;
        d.time_expression = "3600000".into();
        let wf = e.create(d).await;
        let wfi = e.run(wf, json!({})).await;
        let s1 = e.w.next_schedule().await;
        status_is(&e.api, &e.app, InstanceId(s1.instance_id), S::Running).await;
        drop(e.w);
        e.server.shutdown().await;
        (wfi, s1, jobs)
    };
    // The crash image: the node's job instance is final in the store, but the workflow's
    // transition (its push) never made it.
    {
        let store = reopen(&dir).await;
        let repo = ferrojob::server::Repo::open(store.clone()).unwrap();
        let mut rec = repo.get_instance(InstanceId(s1.instance_id)).unwrap();
        rec.status = S::Succeed;
        rec.result = Some(r#"{"late": 1}"#.into());
        rec.finished_time = Some(T0);
        repo.update_instance(&rec).unwrap().wait().unwrap();
        store.close().unwrap();
    }
    let clock = VirtualClock::new(T0 + 1000);
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, T0 + 1000).await;
    // The push may have found no worker yet: its dispatch then retries on the clock.
    let s2 = next_schedule_advancing(&mut w, &clock).await;
    assert_eq!(s2.job_id, jobs[1].0);
    assert_eq!(s2.workflow_instance_id, Some(wfi.0));
    assert_eq!(ctx(&s2), json!({"late": 1}));
    // The workflow's trigger was re-armed too: it fires on the hour.
    w.r().report(s2.instance_id, W::Succeed, Some("")).await;
    until("workflow finished", || async {
        let v = api.get_workflow_instance(app.clone(), wfi).await.unwrap();
        (v.status == WS::Succeed).then_some(())
    })
    .await;
    clock.advance(3_600_000);
    let fired = w.next_schedule().await;
    assert_eq!(fired.job_id, jobs[0].0);
    assert_ne!(fired.workflow_instance_id, Some(wfi.0));
}

/// Real in-process workers: each node's processor reads the workflow context from its
/// TaskContext and appends to it; a decision routes on what the nodes wrote.
#[tokio::test]
async fn real_workers_see_the_context_and_a_decision_routes_on_it() {
    use ferrojob::worker::{ProcessResult, TaskContext, Worker, WorkerConfig};
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let count = |ctx: TaskContext| async move {
        let c: Value = serde_json::from_str(ctx.workflow_context()).unwrap_or(json!({}));
        let n = c["n"].as_u64().unwrap_or(0);
        assert!(ctx.workflow_instance_id().is_some());
        ProcessResult::ok(json!({"n": n + 1, "last": ctx.instance_params()}).to_string())
    };
    let worker = Worker::builder(WorkerConfig::new(server.transport_addr(), "a", SECRET))
        .basic("count", count)
        .start()
        .await
        .unwrap();
    until("worker registered", || async {
        (!api
            .list_workers(app.clone())
            .await
            .unwrap()
            .workers
            .is_empty())
        .then_some(())
    })
    .await;
    let j = api
        .create_job(
            app.clone(),
            ferrojob::api::JobBody::new("c", T::Api, "", "count"),
        )
        .await
        .unwrap()
        .id;
    let wf = api
        .create_workflow(
            app.clone(),
            def(
                "real",
                json!([
                    {"id": 1, "job_id": j, "params": "one"},
                    {"id": 2, "job_id": j, "params": "two"},
                    {"id": 3, "type": "DECISION", "expression": "n == 2"},
                    {"id": 4, "job_id": j, "params": "yes"},
                    {"id": 5, "job_id": j, "params": "no"},
                ]),
                json!([
                    {"from": 1, "to": 2}, {"from": 2, "to": 3},
                    {"from": 3, "to": 4, "property": "true"},
                    {"from": 3, "to": 5, "property": "false"},
                ]),
            ),
        )
        .await
        .unwrap()
        .id;
    let wfi = api
        .run_workflow(app.clone(), wf, RunWorkflow::default())
        .await
        .unwrap()
        .workflow_instance_id;
    let v = until("workflow finished", || async {
        let v = api.get_workflow_instance(app.clone(), wfi).await.unwrap();
        v.status.is_finished().then_some(v)
    })
    .await;
    assert_eq!(v.status, WS::Succeed, "{v:?}");
    assert_eq!(node_status(&v, 4), NS::Succeed);
    assert_eq!(node_status(&v, 5), NS::Skipped);
    assert_eq!(v.context["n"], json!(3));
    assert_eq!(v.context["last"], json!("yes"));
    worker.shutdown().await;
}

/// Fan-out / fan-in under concurrency: 20 parallel nodes between a source and a sink, five
/// instances at once, a worker that succeeds at once — every push races the others.
#[tokio::test]
async fn fan_out_and_in_with_concurrent_instances() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    // Every node instance is checked at the end: none pruned.
    cfg.keep_finished_runs = 1000;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let mut nodes = vec![
        json!({"id": 1, "job_id": j}),
        json!({"id": 100, "job_id": j}),
    ];
    let mut edges = Vec::new();
    for k in 2..=21 {
        nodes.push(json!({"id": k, "job_id": j}));
        edges.push(json!({"from": 1, "to": k}));
        edges.push(json!({"from": k, "to": 100}));
    }
    let mut d = def("fan", json!(nodes), json!(edges));
    d.max_instances = 5;
    let wf = api.create_workflow(app.clone(), d).await.unwrap().id;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            api.run_workflow(app.clone(), wf, RunWorkflow::default())
                .await
                .unwrap()
                .workflow_instance_id,
        );
    }
    for id in ids {
        let v = until("instance finished", || async {
            let v = api.get_workflow_instance(app.clone(), id).await.unwrap();
            v.status.is_finished().then_some(v)
        })
        .await;
        assert_eq!(v.status, WS::Succeed);
        assert!(v.nodes.iter().all(|n| n.status == NS::Succeed));
        // "ok" is not JSON: each node stored it under its id.
        assert_eq!(v.context.len(), 22);
    }
    let all = instances(&api, &app, j).await;
    assert_eq!(all.len(), 5 * 22);
    assert!(all.iter().all(|i| i.status == S::Succeed));
}

/// The value of counter `name` in the server's metrics text.
fn metric(api: &Arc<dyn Api>, name: &str) -> u64 {
    api.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A server whose worker succeeds at once, with a one-node workflow; `tweak` sets retention.
async fn retention_env(
    tweak: impl FnOnce(&mut ferrojob::server::ServerConfig),
) -> (
    ServerCore,
    Arc<dyn Api>,
    AppRef,
    FakeWorker,
    WorkflowId,
    VirtualClock,
) {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    tweak(&mut cfg);
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let wf = api
        .create_workflow(
            app.clone(),
            def("one", json!([{"id": 1, "job_id": j}]), json!([])),
        )
        .await
        .unwrap()
        .id;
    (server, api, app, w, wf, clock)
}

/// Runs `wf` to its end; answers the workflow instance and its node's job instance.
async fn run_to_end(
    api: &Arc<dyn Api>,
    app: &AppRef,
    wf: WorkflowId,
) -> (WorkflowInstanceId, InstanceId) {
    let id = api
        .run_workflow(app.clone(), wf, RunWorkflow::default())
        .await
        .unwrap()
        .workflow_instance_id;
    let v = until(&format!("{id} succeeded"), || async {
        let v = api.get_workflow_instance(app.clone(), id).await.unwrap();
        (v.status == WS::Succeed).then_some(v)
    })
    .await;
    let node = InstanceId(v.nodes[0].instance_id.unwrap());
    (id, node)
}

async fn wf_instances(api: &Arc<dyn Api>, app: &AppRef) -> Vec<WorkflowInstanceId> {
    api.list_workflow_instances(app.clone(), WorkflowInstanceQuery::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|v| v.id)
        .collect()
}

#[tokio::test]
async fn finished_workflow_instances_beyond_the_keep_count_are_deleted_with_their_nodes() {
    let (server, api, app, _w, wf, _clock) = retention_env(|c| {
        c.keep_finished_workflow_runs = 2;
        c.retention_ms = 0;
    })
    .await;
    let mut runs = Vec::new();
    for _ in 0..6 {
        runs.push(run_to_end(&api, &app, wf).await);
    }
    let left = until("pruned to the newest two", || async {
        let v = wf_instances(&api, &app).await;
        (v.len() == 2).then_some(v)
    })
    .await;
    // Newest first: the last two runs stay, with their node instances.
    assert_eq!(left, vec![runs[5].0, runs[4].0]);
    for (wi, node) in &runs[4..] {
        api.get_workflow_instance(app.clone(), *wi).await.unwrap();
        api.get_instance(app.clone(), *node).await.unwrap();
    }
    for (wi, node) in &runs[..4] {
        let e = api
            .get_workflow_instance(app.clone(), *wi)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = api.get_instance(app.clone(), *node).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound, "{node} outlived {wi}");
    }
    until("pruning counted", || async {
        (metric(&api, "ferrojob_retention_workflow_instances_pruned_total") == 4).then_some(())
    })
    .await;
    assert_eq!(
        metric(&api, "ferrojob_retention_workflow_instances_deleted_total"),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn finished_workflow_instances_older_than_the_retention_period_are_deleted() {
    let (server, api, app, _w, wf, clock) = retention_env(|c| c.retention_ms = 60_000).await;
    let old = [
        run_to_end(&api, &app, wf).await,
        run_to_end(&api, &app, wf).await,
    ];
    // First sweep: finished exactly one retention period ago is not older than it.
    clock.advance(60_000);
    until("the first sweep", || async {
        (metric(&api, "ferrojob_retention_sweeps_total") >= 1).then_some(())
    })
    .await;
    assert_eq!(wf_instances(&api, &app).await.len(), 2);
    // A run finished within the period survives the next sweep.
    let young = run_to_end(&api, &app, wf).await;
    clock.advance(60_000);
    let left = until("old workflow instances deleted", || async {
        let v = wf_instances(&api, &app).await;
        (v.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(left, vec![young.0]);
    api.get_instance(app.clone(), young.1).await.unwrap();
    for (wi, node) in old {
        assert!(api.get_workflow_instance(app.clone(), wi).await.is_err());
        assert!(api.get_instance(app.clone(), node).await.is_err());
    }
    until("the sweep counted", || async {
        (metric(&api, "ferrojob_retention_workflow_instances_deleted_total") == 2).then_some(())
    })
    .await;
    server.shutdown().await;
}
