//! How a node's end propagates through the DAG: which edges pass, which nodes become ready,
//! failure policies, cancelling and finishing the instance, and the shared context.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value as Json;

use super::{entry_bytes, Action, InstanceStatus, NodeStatus, WorkflowInstance, MAX_CONTEXT_BYTES};
use crate::ids::NodeId;
use crate::time_expression::EpochMs;
use crate::workflow::definition::{FailurePolicy, NodeKind};

impl WorkflowInstance {
    pub(super) fn status_of(&self, i: usize) -> Option<NodeStatus> {
        self.nodes.get(i).map(|s| s.status)
    }

    /// Whether node `i` passed (its successors may go on).
    pub(super) fn passes(&self, i: usize) -> bool {
        match self.status_of(i) {
            Some(NodeStatus::Succeed | NodeStatus::Disabled | NodeStatus::Skipped) => true,
            Some(NodeStatus::Failed) => self.dag.node(i).is_some_and(|d| d.skip_when_failed),
            _ => false,
        }
    }

    /// Resolves the out-edges of passing node `i`; pushes successors that became ready.
    pub(super) fn resolve_out(&mut self, i: usize, ready: &mut Vec<usize>) {
        let skipped = self.status_of(i) == Some(NodeStatus::Skipped);
        let is_decision = self
            .dag
            .node(i)
            .is_some_and(|d| d.kind == NodeKind::Decision)
            && self.status_of(i) != Some(NodeStatus::Disabled);
        let value = self.decision.get(i).copied().flatten();
        let dag = Arc::clone(&self.dag);
        for &k in dag.out_edges(i) {
            let Some(e) = dag.edges().get(k) else {
                continue;
            };
            let live = !skipped && (!is_decision || (value.is_some() && e.branch == value));
            if let Some(slot) = self.edge_live.get_mut(k) {
                if slot.is_some() {
                    continue;
                }
                *slot = Some(live);
            }
            if live {
                if let Some(c) = self.live_in.get_mut(e.to) {
                    *c += 1;
                }
            }
            if let Some(p) = self.pending.get_mut(e.to) {
                *p = p.saturating_sub(1);
                if *p == 0 && self.nodes.get(e.to).map(|s| s.status) == Some(NodeStatus::Waiting) {
                    ready.push(e.to);
                }
            }
        }
    }

    /// Node `i` just became FAILED.
    pub(super) fn on_failure(
        &mut self,
        i: usize,
        ready: &mut Vec<usize>,
        now: EpochMs,
        actions: &mut Vec<Action>,
    ) {
        if self.passes(i) {
            self.resolve_out(i, ready);
            return;
        }
        self.failed = true;
        if self.dag.def().failure_policy == FailurePolicy::FailFast {
            ready.clear();
            self.cancel_running(now, actions);
            self.finish(InstanceStatus::Failed, now, actions);
        }
    }

    pub(super) fn cancel_running(&mut self, now: EpochMs, actions: &mut Vec<Action>) {
        for st in &mut self.nodes {
            if st.status == NodeStatus::Running {
                st.status = NodeStatus::Stopped;
                st.finished_at = Some(now);
                actions.push(Action::Cancel { node: st.id });
            }
        }
        self.running = 0;
    }

    pub(super) fn finish(
        &mut self,
        status: InstanceStatus,
        now: EpochMs,
        actions: &mut Vec<Action>,
    ) {
        self.status = status;
        self.finished_at = Some(now);
        actions.push(Action::Finished { status });
    }

    /// Handles ready nodes (first in, first out) until none is left, then finishes the
    /// instance if nothing runs.
    pub(super) fn process(&mut self, ready: Vec<usize>, now: EpochMs, actions: &mut Vec<Action>) {
        let mut queue: VecDeque<usize> = ready.into();
        let mut newly = Vec::new();
        while let Some(i) = queue.pop_front() {
            if self.status != InstanceStatus::Running {
                return;
            }
            if self.status_of(i) != Some(NodeStatus::Waiting) {
                continue;
            }
            self.handle_ready(i, now, &mut newly, actions);
            queue.extend(newly.drain(..));
        }
        if self.status == InstanceStatus::Running && self.running == 0 {
            let status = if !self.failed && (0..self.nodes.len()).all(|i| self.passes(i)) {
                InstanceStatus::Succeed
            } else {
                InstanceStatus::Failed
            };
            self.finish(status, now, actions);
        }
    }

    /// Node `i` is WAITING with every in-edge resolved.
    pub(super) fn handle_ready(
        &mut self,
        i: usize,
        now: EpochMs,
        newly: &mut Vec<usize>,
        actions: &mut Vec<Action>,
    ) {
        let Some(def) = self.dag.node(i).cloned() else {
            return;
        };
        let has_in = !self.dag.in_edges(i).is_empty();
        let live_in = self.live_in.get(i).copied().unwrap_or(0);
        let passed_over = if has_in && live_in == 0 {
            Some(NodeStatus::Skipped)
        } else if !def.enabled {
            Some(NodeStatus::Disabled)
        } else {
            None
        };
        if let Some(status) = passed_over {
            if let Some(st) = self.nodes.get_mut(i) {
                st.status = status;
                st.started_at = Some(now);
                st.finished_at = Some(now);
            }
            self.resolve_out(i, newly);
            return;
        }
        let attempt = self.nodes.get(i).map_or(0, |s| s.attempt);
        let context = Arc::clone(&self.context);
        let action = match def.kind {
            NodeKind::Decision => {
                let outcome = match self.dag.expression(i) {
                    Some(e) => e.eval_bool(&self.context).map_err(|e| e.to_string()),
                    None => Err("decision without an expression".to_owned()),
                };
                if let Some(d) = self.decision.get_mut(i) {
                    *d = outcome.as_ref().ok().copied();
                }
                let (status, result) = match &outcome {
                    Ok(v) => (NodeStatus::Succeed, v.to_string()),
                    Err(msg) => (NodeStatus::Failed, msg.clone()),
                };
                if let Some(st) = self.nodes.get_mut(i) {
                    st.status = status;
                    st.result = Some(result);
                    st.started_at = Some(now);
                    st.finished_at = Some(now);
                }
                if outcome.is_ok() {
                    self.resolve_out(i, newly);
                } else {
                    tracing::debug!(node = def.id.0, "decision failed: {:?}", outcome);
                    self.on_failure(i, newly, now, actions);
                }
                return;
            }
            NodeKind::Job => def.job_id.map(|job_id| Action::Dispatch {
                node: def.id,
                job_id,
                params: def.params,
                attempt,
                context,
            }),
            NodeKind::NestedWorkflow => def.workflow_id.map(|workflow_id| Action::RunWorkflow {
                node: def.id,
                workflow_id,
                params: def.params,
                attempt,
                context,
            }),
        };
        match action {
            Some(action) => {
                if let Some(st) = self.nodes.get_mut(i) {
                    st.status = NodeStatus::Running;
                    st.result = None;
                    st.started_at = Some(now);
                    st.finished_at = None;
                }
                self.running += 1;
                actions.push(action);
            }
            // Impossible for a ValidDag (validation requires the id); fail rather than panic.
            None => {
                if let Some(st) = self.nodes.get_mut(i) {
                    st.status = NodeStatus::Failed;
                    st.result = Some("node has no job_id/workflow_id".into());
                    st.finished_at = Some(now);
                }
                self.on_failure(i, newly, now, actions);
            }
        }
    }

    /// Appends a successful node's result to the context, or says why it would exceed the cap.
    pub(super) fn append_context(&mut self, node: NodeId, result: &str) -> Result<(), String> {
        if result.trim().is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, Json)> = match serde_json::from_str::<Json>(result) {
            Ok(Json::Object(m)) => m.into_iter().collect(),
            Ok(v) => vec![(node.get().to_string(), v)],
            Err(_) => vec![(node.get().to_string(), Json::String(result.to_owned()))],
        };
        let mut total = self.context_bytes;
        for (k, v) in &entries {
            if let Some(old) = self.context.get(k) {
                total = total.saturating_sub(entry_bytes(k, old));
            }
            total = total.saturating_add(entry_bytes(k, v));
        }
        if total > MAX_CONTEXT_BYTES {
            return Err(format!(
                "context limit: appending this result would make the context {total} bytes; the limit is {MAX_CONTEXT_BYTES}"
            ));
        }
        let ctx = Arc::make_mut(&mut self.context);
        for (k, v) in entries {
            ctx.insert(k, v);
        }
        self.context_bytes = total;
        Ok(())
    }
}
