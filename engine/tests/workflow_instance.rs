//! The workflow instance state machine: decisions and branches, failure policies, retry,
//! mark-success, stop, and the context.

use std::sync::Arc;

use ferrojob::ids::{JobId, NodeId, WorkflowId};
use ferrojob::workflow::instance::MAX_CONTEXT_BYTES;
use ferrojob::workflow::{
    Action, InstanceError, InstanceStatus, NodeStatus, ValidDag, WorkflowDef, WorkflowInstance,
};
use serde_json::{json, Value as Json};

const T0: i64 = 1_767_225_600_000;

fn dag(nodes: Json, edges: Json, policy: &str) -> Arc<ValidDag> {
    let d: WorkflowDef = serde_json::from_value(json!({
        "name": "wf", "time_expression_type": "API", "failure_policy": policy,
        "nodes": nodes, "edges": edges,
    }))
    .unwrap();
    Arc::new(d.validate(|_| true, |_| true).unwrap())
}

fn job(id: u64) -> Json {
    json!({"id": id, "job_id": 100 + id, "params": format!("p{id}")})
}

fn dispatched(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch { node, .. } | Action::RunWorkflow { node, .. } => Some(node.get()),
            _ => None,
        })
        .collect()
}

fn finished(actions: &[Action]) -> Option<InstanceStatus> {
    actions.iter().find_map(|a| match a {
        Action::Finished { status } => Some(*status),
        _ => None,
    })
}

fn status(wi: &WorkflowInstance, id: u64) -> NodeStatus {
    wi.node(NodeId(id)).unwrap().status
}

/// Decision 2 after node 1; true → 3 → 5, false → 4 → 5; 5 also needs 1.
fn decision_dag() -> Arc<ValidDag> {
    dag(
        json!([job(1), {"id": 2, "type": "DECISION", "expression": "go == \"left\" && tries < 3"}, job(3), job(4), job(5)]),
        json!([
            {"from": 1, "to": 2},
            {"from": 2, "to": 3, "property": "true"},
            {"from": 2, "to": 4, "property": "false"},
            {"from": 3, "to": 5}, {"from": 4, "to": 5}, {"from": 1, "to": 5}
        ]),
        "FAIL_FAST",
    )
}

#[test]
fn a_decision_takes_the_right_branch_and_the_context_reaches_downstream_nodes() {
    let mut wi = WorkflowInstance::new(decision_dag(), json!({"tries": 1}), T0).unwrap();
    let a = wi.start(T0).unwrap();
    assert_eq!(dispatched(&a), vec![1]);
    match &a[0] {
        Action::Dispatch {
            node,
            job_id,
            params,
            attempt,
            context,
        } => {
            assert_eq!(
                (*node, *job_id, params.as_str(), *attempt),
                (NodeId(1), JobId(101), "p1", 0)
            );
            assert_eq!(context.get("tries"), Some(&json!(1)));
        }
        other => panic!("{other:?}"),
    }
    // Node 1's result (a JSON object) merges into the context; the decision runs at once.
    let a = wi
        .on_node_finished(NodeId(1), true, Some(r#"{"go": "left"}"#.into()), T0 + 1)
        .unwrap();
    assert_eq!(dispatched(&a), vec![3]);
    assert_eq!(status(&wi, 2), NodeStatus::Succeed);
    assert_eq!(wi.node(NodeId(2)).unwrap().result.as_deref(), Some("true"));
    assert_eq!(status(&wi, 4), NodeStatus::Skipped);
    match &a[0] {
        Action::Dispatch { context, .. } => {
            assert_eq!(context.get("go"), Some(&json!("left")));
            assert_eq!(context.get("tries"), Some(&json!(1)));
        }
        other => panic!("{other:?}"),
    }
    // A non-object result is stored under the node id.
    let a = wi
        .on_node_finished(NodeId(3), true, Some("42".into()), T0 + 2)
        .unwrap();
    assert_eq!(dispatched(&a), vec![5]);
    assert_eq!(wi.context().get("3"), Some(&json!(42)));
    let a = wi
        .on_node_finished(NodeId(5), true, Some("done".into()), T0 + 3)
        .unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Succeed));
    assert_eq!(wi.status(), InstanceStatus::Succeed);
    assert_eq!(wi.context().get("5"), Some(&json!("done")));
    assert_eq!(wi.finished_at(), Some(T0 + 3));
}

#[test]
fn the_false_branch_skips_everything_only_reachable_through_the_true_edge() {
    // 1 → D(2); true → 3 → 6; false → 4; 3 → 7 ← 4 (7 reachable from both).
    let d = dag(
        json!([job(1), {"id": 2, "type": "DECISION", "expression": "go == \"left\""}, job(3), job(4), job(6), job(7)]),
        json!([
            {"from": 1, "to": 2},
            {"from": 2, "to": 3, "property": "true"},
            {"from": 2, "to": 4, "property": "false"},
            {"from": 3, "to": 6}, {"from": 3, "to": 7}, {"from": 4, "to": 7}
        ]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({"go": "right"}), T0).unwrap();
    wi.start(T0).unwrap();
    let a = wi.on_node_finished(NodeId(1), true, None, T0).unwrap();
    assert_eq!(dispatched(&a), vec![4]);
    assert_eq!(status(&wi, 3), NodeStatus::Skipped);
    assert_eq!(status(&wi, 6), NodeStatus::Skipped);
    let a = wi.on_node_finished(NodeId(4), true, None, T0).unwrap();
    assert_eq!(dispatched(&a), vec![7]);
    let a = wi.on_node_finished(NodeId(7), true, None, T0).unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Succeed));
}

#[test]
fn a_failing_decision_fails_the_instance_and_names_the_error() {
    let mut wi = WorkflowInstance::new(decision_dag(), json!({}), T0).unwrap();
    wi.start(T0).unwrap();
    let a = wi.on_node_finished(NodeId(1), true, None, T0).unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Failed));
    assert_eq!(status(&wi, 2), NodeStatus::Failed);
    assert!(wi
        .node(NodeId(2))
        .unwrap()
        .result
        .as_deref()
        .unwrap()
        .contains("unknown identifier `go`"));
    assert_eq!(
        wi.mark_success(NodeId(2), T0),
        Err(InstanceError::DecisionMarkSuccess(NodeId(2)))
    );
}

#[test]
fn a_failed_node_with_skip_when_failed_lets_the_workflow_succeed() {
    let d = dag(
        json!([job(1), {"id": 2, "job_id": 102, "skip_when_failed": true}, job(3)]),
        json!([{"from": 1, "to": 2}, {"from": 2, "to": 3}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, Json::Null, T0).unwrap();
    wi.start(T0).unwrap();
    wi.on_node_finished(NodeId(1), true, None, T0).unwrap();
    let a = wi
        .on_node_finished(NodeId(2), false, Some("boom".into()), T0)
        .unwrap();
    assert_eq!(dispatched(&a), vec![3]);
    assert_eq!(status(&wi, 2), NodeStatus::Failed);
    let a = wi.on_node_finished(NodeId(3), true, None, T0).unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Succeed));
    // A failed result is not appended to the context.
    assert!(wi.context().is_empty());
}

#[test]
fn retry_re_runs_only_the_failed_nodes() {
    // 1 → 2, 1 → 3, {2,3} → 4; FINISH_BRANCHES so 3 finishes while 2 has failed.
    let d = dag(
        json!([job(1), job(2), job(3), job(4)]),
        json!([{"from": 1, "to": 2}, {"from": 1, "to": 3}, {"from": 2, "to": 4}, {"from": 3, "to": 4}]),
        "FINISH_BRANCHES",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    wi.start(T0).unwrap();
    let a = wi
        .on_node_finished(NodeId(1), true, Some(r#"{"k": 1}"#.into()), T0)
        .unwrap();
    assert_eq!(dispatched(&a), vec![2, 3]);
    let a = wi
        .on_node_finished(NodeId(2), false, Some("err".into()), T0)
        .unwrap();
    assert!(a.is_empty(), "{a:?}");
    let a = wi.on_node_finished(NodeId(3), true, None, T0).unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Failed));
    assert_eq!(status(&wi, 4), NodeStatus::Waiting);

    let a = wi.retry(T0 + 10).unwrap();
    assert_eq!(dispatched(&a), vec![2]);
    assert_eq!(wi.node(NodeId(2)).unwrap().attempt, 1);
    assert_eq!(wi.node(NodeId(3)).unwrap().attempt, 0);
    assert_eq!(
        wi.context().get("k"),
        Some(&json!(1)),
        "the context survives a retry"
    );
    let a = wi.on_node_finished(NodeId(2), true, None, T0 + 11).unwrap();
    assert_eq!(dispatched(&a), vec![4]);
    let a = wi.on_node_finished(NodeId(4), true, None, T0 + 12).unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Succeed));
    assert_eq!(wi.retry(T0), Err(InstanceError::NotRetriable("SUCCEED")));
}

#[test]
fn fail_fast_cancels_running_nodes_and_fails_at_once() {
    // Two independent chains 1 → 2 and 3 → 4.
    let d = dag(
        json!([job(1), job(2), job(3), job(4)]),
        json!([{"from": 1, "to": 2}, {"from": 3, "to": 4}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    assert_eq!(dispatched(&wi.start(T0).unwrap()), vec![1, 3]);
    let a = wi.on_node_finished(NodeId(1), false, None, T0).unwrap();
    assert_eq!(
        a,
        vec![
            Action::Cancel { node: NodeId(3) },
            Action::Finished {
                status: InstanceStatus::Failed
            }
        ]
    );
    assert_eq!(status(&wi, 3), NodeStatus::Stopped);
    assert_eq!(status(&wi, 2), NodeStatus::Waiting);
    // The cancelled node's late report is refused.
    assert_eq!(
        wi.on_node_finished(NodeId(3), true, None, T0),
        Err(InstanceError::NodeNotRunning(NodeId(3)))
    );
    // Retry re-runs the failed and the stopped node.
    let a = wi.retry(T0).unwrap();
    assert_eq!(dispatched(&a), vec![1, 3]);
}

#[test]
fn finish_branches_runs_independent_branches_to_their_end() {
    let d = dag(
        json!([job(1), job(2), job(3), job(4)]),
        json!([{"from": 1, "to": 2}, {"from": 3, "to": 4}]),
        "FINISH_BRANCHES",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    wi.start(T0).unwrap();
    let a = wi.on_node_finished(NodeId(1), false, None, T0).unwrap();
    assert!(a.is_empty(), "{a:?}");
    let a = wi.on_node_finished(NodeId(3), true, None, T0).unwrap();
    assert_eq!(dispatched(&a), vec![4]);
    let a = wi.on_node_finished(NodeId(4), true, None, T0).unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Failed));
    assert_eq!(status(&wi, 2), NodeStatus::Waiting);
}

#[test]
fn mark_success_releases_successors_on_a_running_instance() {
    let d = dag(
        json!([job(1), job(2), job(3)]),
        json!([{"from": 1, "to": 2}]),
        "FINISH_BRANCHES",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    wi.start(T0).unwrap();
    wi.on_node_finished(NodeId(1), false, None, T0).unwrap();
    assert_eq!(
        wi.mark_success(NodeId(3), T0),
        Err(InstanceError::NodeNotFailed(NodeId(3)))
    );
    assert_eq!(
        wi.mark_success(NodeId(9), T0),
        Err(InstanceError::UnknownNode(NodeId(9)))
    );
    let a = wi.mark_success(NodeId(1), T0).unwrap();
    assert_eq!(dispatched(&a), vec![2]);
    wi.on_node_finished(NodeId(2), true, None, T0).unwrap();
    let a = wi.on_node_finished(NodeId(3), true, None, T0).unwrap();
    assert_eq!(
        finished(&a),
        Some(InstanceStatus::Succeed),
        "the only failure was marked successful"
    );
}

#[test]
fn mark_success_on_a_failed_instance_then_retry_continues_from_it() {
    let d = dag(
        json!([job(1), job(2)]),
        json!([{"from": 1, "to": 2}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    wi.start(T0).unwrap();
    wi.on_node_finished(NodeId(1), false, None, T0).unwrap();
    assert_eq!(wi.mark_success(NodeId(1), T0).unwrap(), vec![]);
    assert_eq!(wi.status(), InstanceStatus::Failed);
    let a = wi.retry(T0).unwrap();
    assert_eq!(dispatched(&a), vec![2], "node 1 is not re-run");
}

#[test]
fn stop_cancels_and_can_be_retried() {
    let d = dag(
        json!([job(1), job(2)]),
        json!([{"from": 1, "to": 2}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    wi.start(T0).unwrap();
    let a = wi.stop(T0);
    assert_eq!(
        a,
        vec![
            Action::Cancel { node: NodeId(1) },
            Action::Finished {
                status: InstanceStatus::Stopped
            }
        ]
    );
    assert!(wi.stop(T0).is_empty(), "stop is idempotent");
    assert_eq!(wi.start(T0), Err(InstanceError::AlreadyStarted));
    let a = wi.retry(T0).unwrap();
    assert_eq!(dispatched(&a), vec![1]);
}

#[test]
fn disabled_nodes_are_passed_over_and_nested_workflows_are_run() {
    let d = dag(
        json!([{"id": 1, "job_id": 1, "enabled": false}, {"id": 2, "type": "NESTED_WORKFLOW", "workflow_id": 5, "params": "n"},
               {"id": 3, "type": "DECISION", "expression": "false", "enabled": false}, job(4), job(5)]),
        json!([{"from": 1, "to": 2}, {"from": 2, "to": 3}, {"from": 3, "to": 4, "property": "true"}, {"from": 3, "to": 5, "property": "false"}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    let a = wi.start(T0).unwrap();
    assert_eq!(status(&wi, 1), NodeStatus::Disabled);
    assert!(
        matches!(
            &a[..],
            [Action::RunWorkflow {
                node: NodeId(2),
                workflow_id: WorkflowId(5),
                ..
            }]
        ),
        "{a:?}"
    );
    // A disabled decision takes no decision: both branches run.
    let a = wi.on_node_finished(NodeId(2), true, None, T0).unwrap();
    assert_eq!(dispatched(&a), vec![4, 5]);
    assert_eq!(status(&wi, 3), NodeStatus::Disabled);
}

#[test]
fn all_disabled_finishes_at_start() {
    let d = dag(
        json!([{"id": 1, "job_id": 1, "enabled": false}]),
        json!([]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    assert_eq!(
        wi.start(T0).unwrap(),
        vec![Action::Finished {
            status: InstanceStatus::Succeed
        }]
    );
}

#[test]
fn the_context_is_capped() {
    let d = dag(
        json!([job(1), job(2)]),
        json!([{"from": 1, "to": 2}]),
        "FAIL_FAST",
    );
    assert_eq!(
        WorkflowInstance::new(d.clone(), json!([1]), T0).err(),
        Some(InstanceError::InitParamsNotObject)
    );
    let big = "x".repeat(MAX_CONTEXT_BYTES);
    assert!(matches!(
        WorkflowInstance::new(d.clone(), json!({"a": big}), T0),
        Err(InstanceError::ContextTooLarge { .. })
    ));
    let mut wi =
        WorkflowInstance::new(d, json!({"a": "x".repeat(MAX_CONTEXT_BYTES - 100)}), T0).unwrap();
    wi.start(T0).unwrap();
    let result = json!({"b": "y".repeat(200)}).to_string();
    let a = wi
        .on_node_finished(NodeId(1), true, Some(result), T0)
        .unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Failed));
    assert!(wi
        .node(NodeId(1))
        .unwrap()
        .result
        .as_deref()
        .unwrap()
        .starts_with("context limit"));
    assert!(wi.context_bytes() <= MAX_CONTEXT_BYTES);
    assert!(!wi.context().contains_key("b"));
    // Overwriting a key frees its old size.
    let d = dag(json!([job(1)]), json!([]), "FAIL_FAST");
    let mut wi =
        WorkflowInstance::new(d, json!({"a": "x".repeat(MAX_CONTEXT_BYTES - 100)}), T0).unwrap();
    wi.start(T0).unwrap();
    let a = wi
        .on_node_finished(NodeId(1), true, Some(json!({"a": "short"}).to_string()), T0)
        .unwrap();
    assert_eq!(finished(&a), Some(InstanceStatus::Succeed));
    assert_eq!(wi.context_bytes(), "a".len() + "\"short\"".len());
}

#[test]
fn reports_for_unknown_or_idle_nodes_are_refused() {
    let d = dag(
        json!([job(1), job(2)]),
        json!([{"from": 1, "to": 2}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    assert_eq!(
        wi.on_node_finished(NodeId(1), true, None, T0),
        Err(InstanceError::NodeNotRunning(NodeId(1)))
    );
    wi.start(T0).unwrap();
    assert_eq!(
        wi.on_node_finished(NodeId(2), true, None, T0),
        Err(InstanceError::NodeNotRunning(NodeId(2)))
    );
    assert_eq!(
        wi.on_node_finished(NodeId(7), true, None, T0),
        Err(InstanceError::UnknownNode(NodeId(7)))
    );
    wi.on_node_finished(NodeId(1), true, None, T0).unwrap();
    assert_eq!(
        wi.on_node_finished(NodeId(1), true, None, T0),
        Err(InstanceError::NodeNotRunning(NodeId(1)))
    );
}

#[test]
fn a_hundred_node_chain_hands_off_one_node_per_report() {
    let nodes: Vec<_> = (0..100).map(job).collect();
    let edges: Vec<_> = (0..99).map(|i| json!({"from": i, "to": i + 1})).collect();
    let d = dag(json!(nodes), json!(edges), "FAIL_FAST");
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    let mut a = wi.start(T0).unwrap();
    for i in 0..100u64 {
        assert_eq!(dispatched(&a), vec![i]);
        a = wi
            .on_node_finished(NodeId(i), true, None, T0 + i as i64)
            .unwrap();
    }
    assert_eq!(finished(&a), Some(InstanceStatus::Succeed));
}

#[test]
fn a_snapshot_restores_mid_run_and_refuses_another_workflow() {
    let mut wi = WorkflowInstance::new(decision_dag(), json!({"tries": 1}), T0).unwrap();
    wi.start(T0).unwrap();
    wi.on_node_finished(NodeId(1), true, Some(r#"{"go": "left"}"#.into()), T0 + 1)
        .unwrap();
    let json = serde_json::to_string(&wi.snapshot()).unwrap();
    let (mut back, due) =
        WorkflowInstance::restore(decision_dag(), serde_json::from_str(&json).unwrap(), T0 + 5)
            .unwrap();
    assert!(due.is_empty());
    assert_eq!(back.running(), 1);
    assert_eq!(status(&back, 4), NodeStatus::Skipped);
    assert_eq!(back.context().get("go"), Some(&json!("left")));
    let a = back
        .on_node_finished(NodeId(3), true, None, T0 + 6)
        .unwrap();
    assert_eq!(dispatched(&a), vec![5]);

    let other = dag(json!([job(1)]), json!([]), "FAIL_FAST");
    let snap = serde_json::from_str(&json).unwrap();
    assert_eq!(
        WorkflowInstance::restore(other, snap, T0).err(),
        Some(InstanceError::SnapshotMismatch)
    );
}

#[test]
fn a_failed_decision_with_skip_when_failed_takes_neither_branch() {
    let d = dag(
        json!([{"id": 1, "type": "DECISION", "expression": "missing == 1", "skip_when_failed": true}, job(2), job(3), job(4)]),
        json!([{"from": 1, "to": 2, "property": "true"}, {"from": 1, "to": 3, "property": "false"}, {"from": 1, "to": 4, "property": "false"}, {"from": 2, "to": 4}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d, json!({}), T0).unwrap();
    let a = wi.start(T0).unwrap();
    assert_eq!(
        a,
        vec![Action::Finished {
            status: InstanceStatus::Succeed
        }]
    );
    assert_eq!(status(&wi, 1), NodeStatus::Failed);
    for n in 2..=4 {
        assert_eq!(status(&wi, n), NodeStatus::Skipped, "node {n}");
    }
}

#[test]
fn a_decision_over_init_params_runs_at_start() {
    let d = dag(
        json!([{"id": 1, "type": "DECISION", "expression": "n >= 10"}, job(2), job(3)]),
        json!([{"from": 1, "to": 2, "property": "true"}, {"from": 1, "to": 3, "property": "false"}]),
        "FAIL_FAST",
    );
    let mut wi = WorkflowInstance::new(d.clone(), json!({"n": 10}), T0).unwrap();
    assert_eq!(dispatched(&wi.start(T0).unwrap()), vec![2]);
    let mut wi = WorkflowInstance::new(d, json!({"n": 9.5}), T0).unwrap();
    assert_eq!(dispatched(&wi.start(T0).unwrap()), vec![3]);
}
