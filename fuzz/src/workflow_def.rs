//! Fuzz target `workflow_def`: any bytes as a workflow definition (the JSON body of
//! `POST /v1/apps/{app}/workflows`) and as a decision expression. Parsing and validation fail
//! with a typed error or succeed, never panic; a definition that validates is then run as an
//! instance to its end (nodes finish in dispatch order, even job ids fail, one retry with every
//! node succeeding), which must finish exactly once per attempt; after every report the
//! instance is replaced by one restored from its snapshot, which must need no action.

use std::sync::Arc;

use ferrojob::ids::NodeId;
use ferrojob::workflow::{Action, Expr, InstanceStatus, WorkflowDef, WorkflowInstance};

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Ok(e) = Expr::parse(src) {
            let _ = e.eval(&serde_json::Map::new());
        }
    }
    let Ok(def) = serde_json::from_slice::<WorkflowDef>(data) else {
        return;
    };
    let Ok(dag) = def.validate(|job| job.get() % 7 != 6, |wf| wf.get() % 7 != 6) else {
        return;
    };
    let dag = Arc::new(dag);
    let Ok(mut wi) = WorkflowInstance::new(Arc::clone(&dag), serde_json::json!({"x": 1}), 0) else {
        return;
    };
    let Ok(first) = wi.start(0) else {
        panic!("a new instance must start")
    };
    let mut queue: std::collections::VecDeque<(NodeId, u64)> = Default::default();
    let mut finishes = take(first, &mut queue);
    let mut now = 0i64;
    while let Some((node, id)) = queue.pop_front() {
        now += 1;
        if let Ok(actions) = wi.on_node_finished(node, id % 2 == 1, None, now) {
            finishes += take(actions, &mut queue);
        }
        // A snapshot restores to the same state and needs no action.
        let snap = wi.snapshot();
        match WorkflowInstance::restore(Arc::clone(&dag), snap.clone(), now) {
            Ok((back, due)) => {
                assert!(due.is_empty(), "{due:?}");
                assert_eq!(back.snapshot(), snap);
                wi = back;
            }
            Err(e) => panic!("restore failed: {e}"),
        }
    }
    assert_eq!(finishes, 1, "one Finished per attempt");
    if wi.status() == InstanceStatus::Failed {
        let Ok(actions) = wi.retry(now) else {
            panic!("a FAILED instance must be retriable")
        };
        let mut finishes = take(actions, &mut queue);
        while let Some((node, _)) = queue.pop_front() {
            now += 1;
            if let Ok(actions) = wi.on_node_finished(node, true, None, now) {
                finishes += take(actions, &mut queue);
            }
        }
        assert_eq!(finishes, 1, "one Finished per retry");
        // Decisions may fail (e.g. an unknown identifier), so only jobs are sure to pass.
        assert!(wi.status().is_finished());
    }
}

/// Queues dispatched nodes (node id, job or workflow id); counts `Finished`.
fn take(actions: Vec<Action>, queue: &mut std::collections::VecDeque<(NodeId, u64)>) -> usize {
    let mut finishes = 0;
    for a in actions {
        match a {
            Action::Dispatch { node, job_id, .. } => queue.push_back((node, job_id.get())),
            Action::RunWorkflow {
                node, workflow_id, ..
            } => queue.push_back((node, workflow_id.get())),
            Action::Cancel { node } => queue.retain(|(n, _)| *n != node),
            Action::Finished { .. } => finishes += 1,
        }
    }
    finishes
}
