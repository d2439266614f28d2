//! Model-based property test of the workflow instance: random DAGs (jobs, constant and
//! context decisions, disabled nodes, skip_when_failed), random outcomes, random completion
//! order, both failure policies, retries until success.
//!
//! Checked: a node is dispatched at most once per attempt and only when every predecessor has
//! passed; exactly one `Finished` per start/retry and nothing dispatched after it; the RUNNING
//! count matches; and once the instance succeeds, the nodes that ran are exactly those a simple
//! model (topological pass over the graph) says are reachable through taken edges. Every other
//! step the instance is replaced by one restored from a JSON snapshot of it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ferrojob::ids::NodeId;
use ferrojob::workflow::{Action, InstanceStatus, NodeStatus, WorkflowDef, WorkflowInstance};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

#[derive(Clone, Debug)]
struct Node {
    decision: Option<u8>, // 0: "true", 1: "false", 2: "x == 1"
    enabled: bool,
    skip: bool,
}

#[derive(Clone, Debug)]
struct Case {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize, bool)>,
    finish_branches: bool,
    x: i64,
    outcomes: Vec<bool>,
    order: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=9).prop_flat_map(|n| {
        let node = (
            prop_oneof![3 => Just(None), 1 => (0u8..3).prop_map(Some)],
            prop::bool::weighted(0.85),
            any::<bool>(),
        )
            .prop_map(|(decision, enabled, skip)| Node {
                decision,
                enabled,
                skip,
            });
        let pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .collect();
        let edges = prop::collection::vec((prop::bool::weighted(0.4), any::<bool>()), pairs.len())
            .prop_map(move |picks| {
                pairs
                    .iter()
                    .zip(picks)
                    .filter(|(_, (keep, _))| *keep)
                    .map(|(&(i, j), (_, b))| (i, j, b))
                    .collect::<Vec<_>>()
            });
        (
            prop::collection::vec(node, n),
            edges,
            any::<bool>(),
            0i64..2,
            prop::collection::vec(prop::bool::weighted(0.7), 64),
            prop::collection::vec(0usize..16, 64),
        )
            .prop_map(|(nodes, edges, finish_branches, x, outcomes, order)| Case {
                nodes,
                edges,
                finish_branches,
                x,
                outcomes,
                order,
            })
    })
}

fn build(c: &Case) -> Arc<ferrojob::workflow::ValidDag> {
    let nodes: Vec<Json> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n.decision {
            Some(d) => {
                let expression = ["true", "false", "x == 1"][d as usize];
                json!({"id": i, "type": "DECISION", "enabled": n.enabled, "skip_when_failed": n.skip,
                    "expression": expression})
            }
            None => json!({"id": i, "job_id": i, "enabled": n.enabled, "skip_when_failed": n.skip}),
        })
        .collect();
    let edges: Vec<Json> = c
        .edges
        .iter()
        .map(|&(i, j, b)| {
            if c.nodes[i].decision.is_some() {
                json!({"from": i, "to": j, "property": b.to_string()})
            } else {
                json!({"from": i, "to": j})
            }
        })
        .collect();
    let def: WorkflowDef = serde_json::from_value(json!({
        "name": "prop", "time_expression_type": "API",
        "failure_policy": if c.finish_branches { "FINISH_BRANCHES" } else { "FAIL_FAST" },
        "nodes": nodes, "edges": edges,
    }))
    .unwrap();
    Arc::new(def.validate(|_| true, |_| true).unwrap())
}

/// The model: which job nodes run and which nodes are skipped, once everything passes.
fn model(c: &Case) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let n = c.nodes.len();
    let mut skipped = vec![false; n];
    let mut ran = BTreeSet::new();
    for j in 0..n {
        let ins: Vec<_> = c.edges.iter().filter(|e| e.1 == j).collect();
        let live = ins.iter().any(|&&(i, _, b)| {
            if skipped[i] {
                return false;
            }
            match c.nodes[i].decision {
                Some(d) if c.nodes[i].enabled => {
                    let v = match d {
                        0 => true,
                        1 => false,
                        _ => c.x == 1,
                    };
                    v == b
                }
                _ => true,
            }
        });
        if !ins.is_empty() && !live {
            skipped[j] = true;
        } else if c.nodes[j].enabled && c.nodes[j].decision.is_none() {
            ran.insert(j);
        }
    }
    (ran, (0..n).filter(|&j| skipped[j]).collect())
}

fn passes(wi: &WorkflowInstance, c: &Case, id: usize) -> bool {
    match wi.node(NodeId(id as u64)).unwrap().status {
        NodeStatus::Succeed | NodeStatus::Disabled | NodeStatus::Skipped => true,
        NodeStatus::Failed => c.nodes[id].skip,
        _ => false,
    }
}

/// Applies `actions`; checks the per-action invariants. Returns how many `Finished` it saw.
fn apply(
    wi: &WorkflowInstance,
    c: &Case,
    actions: &[Action],
    running: &mut Vec<u64>,
    dispatched: &mut HashMap<(u64, u32), u32>,
) -> usize {
    let mut finished = 0;
    for a in actions {
        assert_eq!(finished, 0, "an action after Finished: {actions:?}");
        match a {
            Action::Dispatch { node, attempt, .. } => {
                let count = dispatched.entry((node.get(), *attempt)).or_default();
                *count += 1;
                assert_eq!(
                    *count, 1,
                    "node {node} dispatched twice in attempt {attempt}"
                );
                for &(i, j, _) in &c.edges {
                    if j as u64 == node.get() {
                        assert!(
                            passes(wi, c, i),
                            "node {node} dispatched before predecessor {i} passed"
                        );
                    }
                }
                running.push(node.get());
            }
            Action::Cancel { node } => running.retain(|n| *n != node.get()),
            Action::Finished { .. } => finished += 1,
            Action::RunWorkflow { .. } => panic!("no nested workflows here"),
        }
    }
    if finished > 0 {
        assert!(
            running.is_empty(),
            "finished with nodes running: {running:?}"
        );
    }
    finished
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn instance_matches_the_model(c in case()) {
        let dag = build(&c);
        let mut wi = WorkflowInstance::new(dag, json!({"x": c.x}), 0).unwrap();
        let mut running = Vec::new();
        let mut dispatched = HashMap::new();
        let mut step = 0usize;
        let mut attempts = 0;
        let a = wi.start(0).unwrap();
        let mut finishes = apply(&wi, &c, &a, &mut running, &mut dispatched);
        loop {
            while let Some(idx) = (!running.is_empty()).then(|| c.order[step % c.order.len()] % running.len()) {
                prop_assert_eq!(finishes, 0);
                let node = running.remove(idx);
                // After the first attempt every node succeeds, so retries converge.
                let ok = attempts > 0 || c.outcomes[step % c.outcomes.len()];
                step += 1;
                let a = wi.on_node_finished(NodeId(node), ok, Some(format!("{{\"n{node}\": {step}}}")), step as i64).unwrap();
                finishes += apply(&wi, &c, &a, &mut running, &mut dispatched);
                // Every other step, carry on with an instance restored from a JSON snapshot:
                // the restored instance must need no action and behave the same from here.
                if step.is_multiple_of(2) {
                    let json = serde_json::to_string(&wi.snapshot()).unwrap();
                    let snap = serde_json::from_str(&json).unwrap();
                    let (restored, due) = WorkflowInstance::restore(wi.dag().clone(), snap, step as i64).unwrap();
                    prop_assert!(due.is_empty(), "{:?}", due);
                    prop_assert_eq!(restored.snapshot(), wi.snapshot());
                    wi = restored;
                }
                let really_running = wi.nodes().iter().filter(|n| n.status == NodeStatus::Running).count();
                prop_assert_eq!(wi.running(), really_running);
                prop_assert_eq!(running.len(), really_running);
            }
            prop_assert_eq!(finishes, 1, "exactly one Finished per attempt");
            prop_assert!(wi.status().is_finished());
            if wi.status() == InstanceStatus::Succeed {
                break;
            }
            prop_assert_eq!(wi.status(), InstanceStatus::Failed);
            attempts += 1;
            prop_assert!(attempts <= 1, "a retry where everything succeeds must succeed");
            let a = wi.retry(step as i64).unwrap();
            finishes = apply(&wi, &c, &a, &mut running, &mut dispatched);
        }
        let (ran, skipped) = model(&c);
        let got_ran: BTreeSet<usize> = (0..c.nodes.len())
            .filter(|&i| c.nodes[i].decision.is_none() && matches!(wi.node(NodeId(i as u64)).unwrap().status, NodeStatus::Succeed | NodeStatus::Failed))
            .collect();
        let got_skipped: BTreeSet<usize> = (0..c.nodes.len())
            .filter(|&i| wi.node(NodeId(i as u64)).unwrap().status == NodeStatus::Skipped)
            .collect();
        prop_assert_eq!(got_ran, ran.clone());
        prop_assert_eq!(got_skipped, skipped);
        for i in 0..c.nodes.len() {
            prop_assert!(passes(&wi, &c, i), "node {} does not pass in a SUCCEED instance", i);
        }
        // Every job node that ran was dispatched once per attempt it needed; none that the
        // model says must not run was ever dispatched.
        for (node, _) in dispatched.keys() {
            prop_assert!(ran.contains(&(*node as usize)), "node {} dispatched but not in the model", node);
        }
    }
}
