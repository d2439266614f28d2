//! The workflow instance state machine, sans-IO: the caller feeds it events with the current
//! time and performs the [`Action`]s it returns.
//!
//! ```text
//!  node states                                          instance states
//!
//!            ┌──────────── retry ───────────────┐        WAITING ─start─▶ RUNNING ──▶ SUCCEED
//!            ▼                                  │                          │  ▲  │
//!  WAITING ──ready──▶ RUNNING ──ok──▶ SUCCEED   │                          │  │  └──▶ STOPPED (stop)
//!     │  │    (JOB,     │  │                    │                     fails│  │retry      │
//!     │  │   NESTED)    │  └──fail──▶ FAILED ───┤                          ▼  │           │
//!     │  │              │   (cancel) ─▶ STOPPED ┘                        FAILED ◀──retry──┘
//!     │  ├─ready, DECISION: evaluated at once ─▶ SUCCEED (true/false) │ FAILED (error)
//!     │  ├─ready, enabled = false ─────────────▶ DISABLED
//!     │  └─ready, every in-edge dead ──────────▶ SKIPPED
//!     └─ mark_success (FAILED/STOPPED only) ───▶ SUCCEED
//! ```
//!
//! **Readiness (push, not poll).** Each edge is *unresolved*, *live* or *dead*. When a node
//! *passes* — SUCCEED, DISABLED, SKIPPED, or FAILED with `skip_when_failed` — each of its
//! out-edges resolves: live, except out-edges of a SKIPPED node, and edges of a decision whose
//! branch (`"true"`/`"false"`) differs from the value (a failed decision takes neither branch).
//! A WAITING node whose in-edges are all resolved is *ready* and is handled in the same call:
//! if it has in-edges and none is live it becomes SKIPPED (so everything reachable only through
//! the edges a decision did not take is skipped, transitively); else if it is disabled in the
//! definition it becomes DISABLED (a disabled decision takes no decision: all its out-edges are
//! live); else a DECISION is evaluated on the spot, and a JOB or NESTED_WORKFLOW becomes
//! RUNNING with an [`Action::Dispatch`] or [`Action::RunWorkflow`]. Nodes with no in-edges are
//! ready at `start`. A FAILED node (without `skip_when_failed`) never resolves its out-edges.
//!
//! **Failure policies.** `FAIL_FAST`: at the first failure every RUNNING node becomes STOPPED
//! with an [`Action::Cancel`] and the instance fails at once (late reports from cancelled nodes
//! are refused with [`InstanceError::NodeNotRunning`]). `FINISH_BRANCHES`: dispatching goes on
//! for every node that does not depend on a failed one; when nothing is running the instance
//! fails.
//!
//! **Context.** A JSON object seeded from the init params. When a node SUCCEEDs with a
//! non-empty result: a result that is a JSON object merges its keys (later nodes overwrite);
//! any other result is stored under the node id as a decimal string key (`"3"`), as its JSON
//! value if it parses as JSON, else as a JSON string. Decisions read the context (`ctx["3"]`
//! reads a node-id key). The context's size — the sum over keys of key length plus the
//! compact JSON length of the value — never exceeds [`MAX_CONTEXT_BYTES`]; a result that would
//! push it over fails its node instead (result `context limit ...`), so the cap is visible and
//! the failure policy applies. Dispatches carry a cheap snapshot (`Arc`) of the context.
//!
//! **Retry** (FAILED or STOPPED instance): FAILED and STOPPED nodes go back to WAITING with
//! their attempt incremented, passing nodes keep their state and the context is kept; edges are
//! re-resolved from the passing nodes and the ready nodes run. A FAILED node with
//! `skip_when_failed` passed, so it is not re-run.
//!
//! **Mark success** of a FAILED or STOPPED (non-decision) node: it becomes SUCCEED (appending
//! nothing to the context). On a RUNNING instance (FINISH_BRANCHES) its successors are released
//! at once; on a finished instance nothing runs until `retry`.
//!
//! **Durability.** [`WorkflowInstance::snapshot`] is the whole durable state
//! ([`InstanceSnapshot`], serde); [`WorkflowInstance::restore`] rebuilds the derived state
//! (edges, readiness, the RUNNING count) from it.
//!
//! Invariants (checked by the tests, including a model-based proptest):
//! - a node is dispatched at most once per attempt, and only when every predecessor passed
//!   or its edge from a predecessor is dead;
//! - exactly one [`Action::Finished`] per start or retry; no action after it except those of a
//!   later `retry`;
//! - a SUCCEED instance has every node passing;
//! - `running` equals the number of RUNNING nodes;
//! - `restore(snapshot())` gives the same snapshot and no action;
//! - no clock is read: every timestamp is the `now` passed in.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

mod propagate;

use super::definition::{NodeKind, ValidDag};
use super::error::InstanceError;
use crate::ids::{JobId, NodeId, WorkflowId};
use crate::time_expression::EpochMs;

/// The cap on the context's size (see the module doc for how it is measured).
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Node results longer than this are stored truncated (on a char boundary).
pub const MAX_RESULT_LEN: usize = 16 * 1024;

/// The state of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Not yet ready (or never reached).
    Waiting,
    /// Dispatched; waiting for its report.
    Running,
    /// Succeeded (or a decision evaluated, or marked successful).
    Succeed,
    /// Failed.
    Failed,
    /// Cancelled by FAIL_FAST or `stop` while running.
    Stopped,
    /// Disabled in the definition; passed over.
    Disabled,
    /// On a branch a decision did not take; passed over.
    Skipped,
}

impl NodeStatus {
    /// The wire name, e.g. `SUCCEED`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Waiting => "WAITING",
            NodeStatus::Running => "RUNNING",
            NodeStatus::Succeed => "SUCCEED",
            NodeStatus::Failed => "FAILED",
            NodeStatus::Stopped => "STOPPED",
            NodeStatus::Disabled => "DISABLED",
            NodeStatus::Skipped => "SKIPPED",
        }
    }
}

/// The state of a workflow instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Created, not started.
    Waiting,
    /// Started; some node may still run.
    Running,
    /// Every node passed.
    Succeed,
    /// A node failed (and did not have `skip_when_failed`).
    Failed,
    /// Stopped by the user.
    Stopped,
}

impl InstanceStatus {
    /// The wire name, e.g. `RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Waiting => "WAITING",
            InstanceStatus::Running => "RUNNING",
            InstanceStatus::Succeed => "SUCCEED",
            InstanceStatus::Failed => "FAILED",
            InstanceStatus::Stopped => "STOPPED",
        }
    }
    /// SUCCEED, FAILED or STOPPED.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            InstanceStatus::Succeed | InstanceStatus::Failed | InstanceStatus::Stopped
        )
    }
}

/// The observable state of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node id.
    pub id: NodeId,
    /// Its state.
    pub status: NodeStatus,
    /// The last result (a job's result, a decision's `"true"`/`"false"` or its error),
    /// at most [`MAX_RESULT_LEN`] bytes.
    pub result: Option<String>,
    /// 0 for the first run, +1 per `retry` that re-ran it.
    pub attempt: u32,
    /// When it last became RUNNING (or was evaluated/passed over).
    pub started_at: Option<EpochMs>,
    /// When it last left RUNNING (or was evaluated/passed over).
    pub finished_at: Option<EpochMs>,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run job `job_id` as node `node` with `params`; report with
    /// [`WorkflowInstance::on_node_finished`].
    Dispatch {
        /// The node id.
        node: NodeId,
        /// The job to run.
        job_id: JobId,
        /// The node's params.
        params: String,
        /// The node's attempt (to tell a retry's run from a late report of an earlier one).
        attempt: u32,
        /// The context at dispatch time.
        context: Arc<Map<String, Json>>,
    },
    /// Run workflow `workflow_id` as node `node`; report its end with
    /// [`WorkflowInstance::on_node_finished`].
    RunWorkflow {
        /// The node id.
        node: NodeId,
        /// The workflow to run.
        workflow_id: WorkflowId,
        /// The node's params.
        params: String,
        /// The node's attempt.
        attempt: u32,
        /// The context at dispatch time (a natural seed for the nested run's init params).
        context: Arc<Map<String, Json>>,
    },
    /// Cancel the running job (or nested workflow) of node `node`; its report will be refused.
    Cancel {
        /// The node id.
        node: NodeId,
    },
    /// The instance finished (once per start or retry).
    Finished {
        /// SUCCEED, FAILED or STOPPED.
        status: InstanceStatus,
    },
}

/// The durable state of a [`WorkflowInstance`] (serde), everything else is derived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSnapshot {
    /// The instance state.
    pub status: InstanceStatus,
    /// Every node's state, in definition order.
    pub nodes: Vec<NodeState>,
    /// (decision node id, value) of the decisions that evaluated.
    pub decisions: Vec<(NodeId, bool)>,
    /// The context.
    pub context: Map<String, Json>,
    /// A node failed without `skip_when_failed` in the current attempt.
    pub failed: bool,
    /// When it was created.
    pub created_at: EpochMs,
    /// When it (last) started.
    pub started_at: Option<EpochMs>,
    /// When it (last) finished.
    pub finished_at: Option<EpochMs>,
}

/// One run of a workflow (see the module doc).
#[derive(Clone, Debug)]
pub struct WorkflowInstance {
    dag: Arc<ValidDag>,
    status: InstanceStatus,
    nodes: Vec<NodeState>,
    /// Per edge: `None` unresolved, `Some(live)`.
    edge_live: Vec<Option<bool>>,
    /// Per node: its in-edges not yet resolved.
    pending: Vec<usize>,
    /// Per node: its resolved live in-edges.
    live_in: Vec<usize>,
    /// Per decision node: the value it evaluated to.
    decision: Vec<Option<bool>>,
    running: usize,
    /// A node failed without `skip_when_failed` in the current attempt (FINISH_BRANCHES).
    failed: bool,
    context: Arc<Map<String, Json>>,
    context_bytes: usize,
    created_at: EpochMs,
    started_at: Option<EpochMs>,
    finished_at: Option<EpochMs>,
}

fn entry_bytes(key: &str, v: &Json) -> usize {
    key.len()
        .saturating_add(serde_json::to_string(v).map_or(usize::MAX / 4, |s| s.len()))
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_RESULT_LEN {
        let mut cut = MAX_RESULT_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl WorkflowInstance {
    /// A new, not yet started instance. `init_params` must be a JSON object (or null, read as
    /// `{}`) of at most [`MAX_CONTEXT_BYTES`].
    pub fn new(dag: Arc<ValidDag>, init_params: Json, now: EpochMs) -> Result<Self, InstanceError> {
        let context = match init_params {
            Json::Object(m) => m,
            Json::Null => Map::new(),
            _ => return Err(InstanceError::InitParamsNotObject),
        };
        let context_bytes = context
            .iter()
            .fold(0usize, |a, (k, v)| a.saturating_add(entry_bytes(k, v)));
        if context_bytes > MAX_CONTEXT_BYTES {
            return Err(InstanceError::ContextTooLarge {
                len: context_bytes,
                max: MAX_CONTEXT_BYTES,
            });
        }
        let n = dag.len();
        let nodes = dag
            .def()
            .nodes
            .iter()
            .map(|d| NodeState {
                id: d.id,
                status: NodeStatus::Waiting,
                result: None,
                attempt: 0,
                started_at: None,
                finished_at: None,
            })
            .collect();
        Ok(WorkflowInstance {
            edge_live: vec![None; dag.edges().len()],
            pending: (0..n).map(|i| dag.in_edges(i).len()).collect(),
            live_in: vec![0; n],
            decision: vec![None; n],
            dag,
            status: InstanceStatus::Waiting,
            nodes,
            running: 0,
            failed: false,
            context: Arc::new(context),
            context_bytes,
            created_at: now,
            started_at: None,
            finished_at: None,
        })
    }

    /// The workflow.
    pub fn dag(&self) -> &Arc<ValidDag> {
        &self.dag
    }
    /// The instance state.
    pub fn status(&self) -> InstanceStatus {
        self.status
    }
    /// Every node's state, in definition order.
    pub fn nodes(&self) -> &[NodeState] {
        &self.nodes
    }
    /// One node's state.
    pub fn node(&self, id: NodeId) -> Option<&NodeState> {
        self.dag.index_of(id).and_then(|i| self.nodes.get(i))
    }
    /// The context.
    pub fn context(&self) -> &Map<String, Json> {
        &self.context
    }
    /// The context's size as counted against [`MAX_CONTEXT_BYTES`].
    pub fn context_bytes(&self) -> usize {
        self.context_bytes
    }
    /// Number of RUNNING nodes.
    pub fn running(&self) -> usize {
        self.running
    }
    /// When it was created.
    pub fn created_at(&self) -> EpochMs {
        self.created_at
    }
    /// When it (last) started.
    pub fn started_at(&self) -> Option<EpochMs> {
        self.started_at
    }
    /// When it (last) finished.
    pub fn finished_at(&self) -> Option<EpochMs> {
        self.finished_at
    }

    /// Starts the instance: every node without in-edges is ready.
    pub fn start(&mut self, now: EpochMs) -> Result<Vec<Action>, InstanceError> {
        if self.status != InstanceStatus::Waiting {
            return Err(InstanceError::AlreadyStarted);
        }
        self.status = InstanceStatus::Running;
        self.started_at = Some(now);
        let ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.dag.in_edges(i).is_empty())
            .collect();
        let mut actions = Vec::new();
        self.process(ready, now, &mut actions);
        Ok(actions)
    }

    /// A RUNNING node's job (or nested workflow) ended. `result` is its result text, if any.
    pub fn on_node_finished(
        &mut self,
        node: NodeId,
        success: bool,
        result: Option<String>,
        now: EpochMs,
    ) -> Result<Vec<Action>, InstanceError> {
        let i = self
            .dag
            .index_of(node)
            .ok_or(InstanceError::UnknownNode(node))?;
        if self.status != InstanceStatus::Running || self.status_of(i) != Some(NodeStatus::Running)
        {
            return Err(InstanceError::NodeNotRunning(node));
        }
        self.running = self.running.saturating_sub(1);
        let mut actions = Vec::new();
        let mut ok = success;
        let mut result = result.map(truncate);
        if success {
            if let Some(r) = result.as_deref() {
                if let Err(msg) = self.append_context(node, r) {
                    tracing::warn!(node = node.0, "{msg}");
                    ok = false;
                    result = Some(msg);
                }
            }
        }
        if let Some(st) = self.nodes.get_mut(i) {
            st.status = if ok {
                NodeStatus::Succeed
            } else {
                NodeStatus::Failed
            };
            st.result = result;
            st.finished_at = Some(now);
        }
        let mut ready = Vec::new();
        if ok {
            self.resolve_out(i, &mut ready);
        } else {
            self.on_failure(i, &mut ready, now, &mut actions);
        }
        self.process(ready, now, &mut actions);
        Ok(actions)
    }

    /// Retries a FAILED or STOPPED instance: only unsuccessful nodes re-run (see the module
    /// doc).
    pub fn retry(&mut self, now: EpochMs) -> Result<Vec<Action>, InstanceError> {
        if !matches!(
            self.status,
            InstanceStatus::Failed | InstanceStatus::Stopped
        ) {
            return Err(InstanceError::NotRetriable(self.status.as_str()));
        }
        // FAILED nodes with skip_when_failed passed: they are not re-run.
        let dag = Arc::clone(&self.dag);
        for (i, st) in self.nodes.iter_mut().enumerate() {
            let skip = dag.node(i).is_some_and(|d| d.skip_when_failed);
            let rerun = match st.status {
                NodeStatus::Stopped => true,
                NodeStatus::Failed => !skip,
                _ => false,
            };
            if rerun {
                st.status = NodeStatus::Waiting;
                st.attempt = st.attempt.saturating_add(1);
            }
        }
        self.status = InstanceStatus::Running;
        self.failed = false;
        self.running = 0;
        self.finished_at = None;
        let ready = self.rebuild_edges();
        let mut actions = Vec::new();
        self.process(ready, now, &mut actions);
        Ok(actions)
    }

    /// Recomputes every edge, `pending` and `live_in` from the node states (the passing nodes
    /// resolve their out-edges); returns the WAITING nodes that are ready.
    fn rebuild_edges(&mut self) -> Vec<usize> {
        self.edge_live.iter_mut().for_each(|e| *e = None);
        self.live_in.iter_mut().for_each(|c| *c = 0);
        for (i, p) in self.pending.iter_mut().enumerate() {
            *p = self.dag.in_edges(i).len();
        }
        let mut ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.dag.in_edges(i).is_empty() && self.status_of(i) == Some(NodeStatus::Waiting)
            })
            .collect();
        let topo = self.dag.topo_order().to_vec();
        for i in topo {
            if self.passes(i) {
                self.resolve_out(i, &mut ready);
            }
        }
        ready
    }

    /// The durable state, to persist after every call (see [`WorkflowInstance::restore`]).
    pub fn snapshot(&self) -> InstanceSnapshot {
        InstanceSnapshot {
            status: self.status,
            nodes: self.nodes.clone(),
            decisions: self
                .nodes
                .iter()
                .zip(&self.decision)
                .filter_map(|(n, d)| d.map(|d| (n.id, d)))
                .collect(),
            context: (*self.context).clone(),
            failed: self.failed,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }

    /// Rebuilds an instance from a [`snapshot`](WorkflowInstance::snapshot) of the same
    /// workflow (e.g. after a server restart). Derived state (edges, readiness, the RUNNING
    /// count) is recomputed from the node states. Returns the actions due if the snapshot was
    /// taken mid-call — normally none; a RUNNING snapshot with nothing running and nothing
    /// ready finishes. RUNNING nodes stay RUNNING: the caller reconciles them with their job
    /// instances and reports their ends as usual.
    pub fn restore(
        dag: Arc<ValidDag>,
        snap: InstanceSnapshot,
        now: EpochMs,
    ) -> Result<(Self, Vec<Action>), InstanceError> {
        let same_nodes = snap.nodes.len() == dag.len()
            && snap
                .nodes
                .iter()
                .zip(&dag.def().nodes)
                .all(|(s, d)| s.id == d.id);
        if !same_nodes {
            return Err(InstanceError::SnapshotMismatch);
        }
        let running = snap
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Running)
            .count();
        if running > 0 && snap.status != InstanceStatus::Running {
            return Err(InstanceError::SnapshotMismatch);
        }
        let mut wi = WorkflowInstance::new(dag, Json::Object(snap.context), snap.created_at)?;
        for (id, value) in snap.decisions {
            let i = wi.dag.index_of(id).ok_or(InstanceError::SnapshotMismatch)?;
            if let Some(d) = wi.decision.get_mut(i) {
                *d = Some(value);
            }
        }
        wi.status = snap.status;
        wi.nodes = snap.nodes;
        wi.failed = snap.failed;
        wi.running = running;
        wi.started_at = snap.started_at;
        wi.finished_at = snap.finished_at;
        let ready = wi.rebuild_edges();
        let mut actions = Vec::new();
        if wi.status == InstanceStatus::Running {
            wi.process(ready, now, &mut actions);
        }
        Ok((wi, actions))
    }

    /// Marks a FAILED or STOPPED node successful (see the module doc).
    pub fn mark_success(
        &mut self,
        node: NodeId,
        now: EpochMs,
    ) -> Result<Vec<Action>, InstanceError> {
        let i = self
            .dag
            .index_of(node)
            .ok_or(InstanceError::UnknownNode(node))?;
        if !matches!(
            self.status_of(i),
            Some(NodeStatus::Failed | NodeStatus::Stopped)
        ) {
            return Err(InstanceError::NodeNotFailed(node));
        }
        if self
            .dag
            .node(i)
            .is_some_and(|d| d.kind == NodeKind::Decision)
        {
            return Err(InstanceError::DecisionMarkSuccess(node));
        }
        let already_passed = self.passes(i);
        if let Some(st) = self.nodes.get_mut(i) {
            st.status = NodeStatus::Succeed;
            st.finished_at = Some(now);
        }
        let mut actions = Vec::new();
        if self.status == InstanceStatus::Running && !already_passed {
            self.failed = (0..self.nodes.len())
                .any(|j| self.status_of(j) == Some(NodeStatus::Failed) && !self.passes(j));
            let mut ready = Vec::new();
            self.resolve_out(i, &mut ready);
            self.process(ready, now, &mut actions);
        }
        Ok(actions)
    }

    /// Stops the instance: RUNNING nodes become STOPPED (with [`Action::Cancel`]), the
    /// instance STOPPED. A no-op (no actions) on a finished instance.
    pub fn stop(&mut self, now: EpochMs) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status.is_finished() {
            return actions;
        }
        self.cancel_running(now, &mut actions);
        self.finish(InstanceStatus::Stopped, now, &mut actions);
        actions
    }
}
