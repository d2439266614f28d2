//! Workflow definitions: JSON shape and the validation table.

use ferrojob::ids::{JobId, NodeId, WorkflowId};
use ferrojob::workflow::{ExprError, FailurePolicy, NodeKind, WorkflowDef, WorkflowError};
use serde_json::json;

fn def(v: serde_json::Value) -> WorkflowDef {
    serde_json::from_value(v).unwrap()
}

fn validate(v: serde_json::Value) -> Result<(), WorkflowError> {
    def(v)
        .validate(|j| j < JobId(100), |w| w < WorkflowId(10))
        .map(|_| ())
}

fn base(nodes: serde_json::Value, edges: serde_json::Value) -> serde_json::Value {
    json!({"name": "wf", "time_expression_type": "API", "nodes": nodes, "edges": edges})
}

#[test]
fn parses_the_openapi_body_with_defaults() {
    let d = def(json!({
        "name": "etl", "time_expression_type": "CRON", "time_expression": "0 0 * * * ?",
        "time_zone": "Europe/Berlin", "max_instances": 2, "failure_policy": "FINISH_BRANCHES",
        "nodes": [
            {"id": 1, "type": "JOB", "job_id": 7, "params": "x", "enabled": true, "skip_when_failed": true},
            {"id": 2, "type": "DECISION", "expression": "go == \"left\""},
            {"id": 3, "type": "NESTED_WORKFLOW", "workflow_id": 4},
            {"id": 4, "job_id": 8}
        ],
        "edges": [{"from": 1, "to": 2}, {"from": 2, "to": 3, "property": "true"}, {"from": 2, "to": 4, "property": "false"}]
    }));
    assert_eq!(d.failure_policy, FailurePolicy::FinishBranches);
    assert_eq!(d.nodes[3].kind, NodeKind::Job);
    assert!(d.nodes[3].enabled);
    assert!(!d.nodes[3].skip_when_failed);
    let dag = d.clone().validate(|_| true, |_| true).unwrap();
    assert_eq!(dag.len(), 4);
    assert_eq!(dag.topo_order().len(), 4);
    // Round trip through JSON.
    let again: WorkflowDef = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(again, d);

    let minimal =
        def(json!({"name": "m", "time_expression_type": "API", "nodes": [{"id": 1, "job_id": 1}]}));
    assert_eq!(minimal.failure_policy, FailurePolicy::FailFast);
    assert_eq!(minimal.max_instances, 1);
    assert!(minimal.edges.is_empty());
    // 0 means unlimited, as for a job.
    let unlimited = json!({"name": "u", "time_expression_type": "API", "max_instances": 0, "nodes": [{"id": 1, "job_id": 1}]});
    assert_eq!(def(unlimited.clone()).max_instances, 0);
    assert!(validate(unlimited).is_ok());
}

#[test]
fn unknown_fields_are_refused() {
    let r: Result<WorkflowDef, _> = serde_json::from_value(json!({
        "name": "m", "time_expression_type": "API", "nodes": [{"id": 1, "job_id": 1, "color": "red"}]
    }));
    assert!(r.unwrap_err().to_string().contains("color"));
    let r: Result<WorkflowDef, _> = serde_json::from_value(json!({
        "name": "m", "time_expression_type": "API", "nodes": [], "extra": 1
    }));
    assert!(r.is_err());
}

#[test]
fn validation_table() {
    use WorkflowError as E;
    let j = |id: u64| json!({"id": id, "job_id": 1});
    let cases: Vec<(&str, serde_json::Value, E)> = vec![
        (
            "empty name",
            json!({"name": "", "time_expression_type": "API", "nodes": [j(1)]}),
            E::BadName { len: 0, max: 128 },
        ),
        (
            "fixed delay",
            json!({"name": "w", "time_expression_type": "FIXED_DELAY", "time_expression": "1000", "nodes": [j(1)]}),
            E::TimeExpressionTypeNotAllowed(
                ferrojob::time_expression::TimeExpressionType::FixedDelay,
            ),
        ),
        (
            "workflow type",
            json!({"name": "w", "time_expression_type": "WORKFLOW", "nodes": [j(1)]}),
            E::TimeExpressionTypeNotAllowed(
                ferrojob::time_expression::TimeExpressionType::Workflow,
            ),
        ),
        ("no nodes", base(json!([]), json!([])), E::Empty),
        (
            "duplicate node",
            base(json!([j(1), j(1)]), json!([])),
            E::DuplicateNode(NodeId(1)),
        ),
        (
            "dangling to",
            base(json!([j(1)]), json!([{"from": 1, "to": 9}])),
            E::DanglingEdge {
                from: NodeId(1),
                to: NodeId(9),
                missing: NodeId(9),
            },
        ),
        (
            "dangling from",
            base(json!([j(1)]), json!([{"from": 8, "to": 1}])),
            E::DanglingEdge {
                from: NodeId(8),
                to: NodeId(1),
                missing: NodeId(8),
            },
        ),
        (
            "duplicate edge",
            base(
                json!([j(1), j(2)]),
                json!([{"from": 1, "to": 2}, {"from": 1, "to": 2}]),
            ),
            E::DuplicateEdge {
                from: NodeId(1),
                to: NodeId(2),
            },
        ),
        (
            "self loop",
            base(json!([j(1)]), json!([{"from": 1, "to": 1}])),
            E::Cycle { node: NodeId(1) },
        ),
        (
            "unknown job",
            base(json!([{"id": 1, "job_id": 100}]), json!([])),
            E::UnknownJob {
                node: NodeId(1),
                job_id: JobId(100),
            },
        ),
        (
            "missing job id",
            base(json!([{"id": 1}]), json!([])),
            E::MissingJobId(NodeId(1)),
        ),
        (
            "unknown workflow",
            base(
                json!([{"id": 1, "type": "NESTED_WORKFLOW", "workflow_id": 10}]),
                json!([]),
            ),
            E::UnknownWorkflow {
                node: NodeId(1),
                workflow_id: WorkflowId(10),
            },
        ),
        (
            "missing workflow id",
            base(json!([{"id": 1, "type": "NESTED_WORKFLOW"}]), json!([])),
            E::MissingWorkflowId(NodeId(1)),
        ),
        (
            "expression on job",
            base(
                json!([{"id": 1, "job_id": 1, "expression": "true"}]),
                json!([]),
            ),
            E::FieldNotAllowed {
                node: NodeId(1),
                field: "expression",
                kind: "JOB",
            },
        ),
        (
            "job id on decision",
            base(
                json!([{"id": 1, "type": "DECISION", "job_id": 1, "expression": "true"}]),
                json!([]),
            ),
            E::FieldNotAllowed {
                node: NodeId(1),
                field: "job_id",
                kind: "DECISION",
            },
        ),
        (
            "decision without expression",
            base(json!([{"id": 1, "type": "DECISION"}]), json!([])),
            E::MissingExpression(NodeId(1)),
        ),
        (
            "decision bad expression",
            base(
                json!([{"id": 1, "type": "DECISION", "expression": "a == "}]),
                json!([]),
            ),
            E::BadExpression {
                node: NodeId(1),
                error: ExprError::Syntax {
                    at: 5,
                    msg: "unexpected end of expression".into(),
                },
            },
        ),
        (
            "decision edge without property",
            base(
                json!([{"id": 1, "type": "DECISION", "expression": "true"}, j(2)]),
                json!([{"from": 1, "to": 2}]),
            ),
            E::DecisionEdgeProperty {
                from: NodeId(1),
                to: NodeId(2),
                property: None,
            },
        ),
        (
            "decision edge bad property",
            base(
                json!([{"id": 1, "type": "DECISION", "expression": "true"}, j(2)]),
                json!([{"from": 1, "to": 2, "property": "yes"}]),
            ),
            E::DecisionEdgeProperty {
                from: NodeId(1),
                to: NodeId(2),
                property: Some("yes".into()),
            },
        ),
        (
            "property on job edge",
            base(
                json!([j(1), j(2)]),
                json!([{"from": 1, "to": 2, "property": "true"}]),
            ),
            E::UnexpectedEdgeProperty {
                from: NodeId(1),
                to: NodeId(2),
            },
        ),
    ];
    for (name, body, want) in cases {
        let got = validate(body).err();
        assert_eq!(got.as_ref(), Some(&want), "{name}: {got:?}");
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn a_bad_cron_is_a_time_expression_error() {
    let r = validate(
        json!({"name": "w", "time_expression_type": "CRON", "time_expression": "nope", "nodes": [{"id": 1, "job_id": 1}]}),
    );
    assert!(matches!(r, Err(WorkflowError::TimeExpression(_))), "{r:?}");
}

#[test]
fn the_cycle_error_names_a_node_on_the_cycle() {
    // 1 -> 2 -> 3 -> 4 -> 2, plus 5 -> 1 hanging off: the named node must be 2, 3 or 4.
    let nodes: Vec<_> = (1..=5).map(|i| json!({"id": i, "job_id": 1})).collect();
    let edges = json!([{"from": 5, "to": 1}, {"from": 1, "to": 2}, {"from": 2, "to": 3}, {"from": 3, "to": 4}, {"from": 4, "to": 2}]);
    match validate(base(json!(nodes), edges)) {
        Err(WorkflowError::Cycle { node }) => assert!((2..=4).contains(&node.get()), "{node}"),
        other => panic!("{other:?}"),
    }
    // A node downstream of the cycle is not on it; the error still names one that is.
    let nodes: Vec<_> = (1..=4).map(|i| json!({"id": i, "job_id": 1})).collect();
    let edges = json!([{"from": 1, "to": 2}, {"from": 2, "to": 1}, {"from": 2, "to": 3}, {"from": 3, "to": 4}]);
    match validate(base(json!(nodes), edges)) {
        Err(WorkflowError::Cycle { node }) => {
            assert!(node == NodeId(1) || node == NodeId(2), "{node}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn size_caps() {
    let nodes: Vec<_> = (0..1001).map(|i| json!({"id": i, "job_id": 1})).collect();
    assert_eq!(
        validate(base(json!(nodes), json!([]))),
        Err(WorkflowError::TooManyNodes {
            count: 1001,
            max: 1000
        })
    );
    let nodes: Vec<_> = (0..1000).map(|i| json!({"id": i, "job_id": 1})).collect();
    // A 1000-node chain is fine.
    let edges: Vec<_> = (0..999).map(|i| json!({"from": i, "to": i + 1})).collect();
    assert_eq!(validate(base(json!(nodes.clone()), json!(edges))), Ok(()));
    let edges: Vec<_> = (0..10_001)
        .map(|i| json!({"from": i % 1000, "to": (i + 1) % 1000}))
        .collect();
    assert_eq!(
        validate(base(json!(nodes), json!(edges))),
        Err(WorkflowError::TooManyEdges {
            count: 10_001,
            max: 10_000
        })
    );
    let long = "x".repeat(64 * 1024 + 1);
    assert!(matches!(
        validate(base(
            json!([{"id": 1, "job_id": 1, "params": long}]),
            json!([])
        )),
        Err(WorkflowError::ParamsTooLong {
            node: NodeId(1),
            ..
        })
    ));
}
