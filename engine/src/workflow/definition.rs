//! Workflow definitions: the JSON body of `POST /v1/apps/{app}/workflows` ([`WorkflowDef`]) and
//! its validation into a [`ValidDag`], the only input a [`super::WorkflowInstance`] accepts.
//!
//! Validation checks, in this order (the first failure is returned): name, time expression
//! (type API, CRON, FIXED_RATE or DAILY_TIME_INTERVAL, and the expression parses), max
//! instances, size caps ([`MAX_NODES`], [`MAX_EDGES`], [`MAX_PARAMS_LEN`]), duplicate node ids,
//! per-node fields (JOB needs an existing `job_id`, NESTED_WORKFLOW an existing `workflow_id`,
//! DECISION an expression that parses; fields of another type are refused), dangling and
//! duplicate edges, edge properties (exactly `"true"`/`"false"` leaving a decision, none
//! elsewhere), and cycles (Kahn's algorithm; the error names a node on the cycle).
//!
//! Invariants of a [`ValidDag`]: node ids are unique; every edge joins two existing nodes;
//! the graph is acyclic and `topo_order` is a topological order; every DECISION node has a
//! parsed expression; every edge leaving a decision has a branch (`Some(bool)`), every other
//! edge `None`. Validation is O(nodes + edges) and allocates O(nodes + edges).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::error::WorkflowError;
use super::expr::Expr;
use crate::ids::{JobId, NodeId, WorkflowId};
use crate::time_expression::{TimeExpression, TimeExpressionType};

/// Most nodes a workflow may have.
pub const MAX_NODES: usize = 1000;
/// Most edges a workflow may have.
pub const MAX_EDGES: usize = 10_000;
/// Longest node params, in bytes.
pub const MAX_PARAMS_LEN: usize = 64 * 1024;
/// Longest workflow name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// What a workflow instance does when a node fails (without `skip_when_failed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailurePolicy {
    /// Cancel the running nodes and fail the instance at once (the default).
    #[default]
    FailFast,
    /// Let every branch that does not depend on the failed node run to its end, then fail.
    FinishBranches,
}

/// The type of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeKind {
    /// Runs a job (the default).
    #[default]
    Job,
    /// Evaluates an expression over the context and takes the `true` or `false` edges.
    Decision,
    /// Runs another workflow.
    NestedWorkflow,
}

impl NodeKind {
    /// The wire name, e.g. `NESTED_WORKFLOW`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Job => "JOB",
            NodeKind::Decision => "DECISION",
            NodeKind::NestedWorkflow => "NESTED_WORKFLOW",
        }
    }
}

/// The workflow body of the OpenAPI (`POST`/`PUT /v1/apps/{app}/workflows`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    /// 1 to [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// `API`, `CRON`, `FIXED_RATE` or `DAILY_TIME_INTERVAL`.
    pub time_expression_type: TimeExpressionType,
    /// As for jobs; empty (the default) for API.
    #[serde(default)]
    pub time_expression: String,
    /// IANA zone for CRON and DAILY_TIME_INTERVAL; default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Most instances of this workflow running at once; 0 = unlimited (as for a job);
    /// default 1.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Default `FAIL_FAST`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The nodes, 1 to [`MAX_NODES`].
    pub nodes: Vec<NodeDef>,
    /// The edges, at most [`MAX_EDGES`]; default none.
    #[serde(default)]
    pub edges: Vec<EdgeDef>,
    /// Free text for people; default empty (omitted when empty). Checked with the tags by
    /// [`crate::model::check_labels`] where the server accepts a definition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels the workflow listing filters on; default none (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Names of the app's calendars whose excluded dates the workflow does not fire on
    /// (see [`crate::calendar`]); default none (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendars: Vec<String>,
}

fn default_max_instances() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

/// One node of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    /// Unique within the workflow.
    pub id: NodeId,
    /// Default `JOB`.
    #[serde(rename = "type", default)]
    pub kind: NodeKind,
    /// The job a JOB node runs (required there, refused elsewhere).
    #[serde(default)]
    pub job_id: Option<JobId>,
    /// Handed to the job (or nested workflow) instead of its own params; default empty.
    #[serde(default)]
    pub params: String,
    /// A disabled node is not run; it counts as done for its successors. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// If the node fails, the workflow goes on as if it had succeeded. Default false.
    #[serde(default)]
    pub skip_when_failed: bool,
    /// A DECISION node's expression (required there, refused elsewhere); see
    /// [`super::expr`].
    #[serde(default)]
    pub expression: Option<String>,
    /// The workflow a NESTED_WORKFLOW node runs (required there, refused elsewhere).
    #[serde(default)]
    pub workflow_id: Option<WorkflowId>,
}

/// One edge: `to` runs after `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeDef {
    /// Source node id.
    pub from: NodeId,
    /// Target node id.
    pub to: NodeId,
    /// `"true"` or `"false"` on edges leaving a DECISION node, absent elsewhere.
    #[serde(default)]
    pub property: Option<String>,
}

/// An edge of a [`ValidDag`], by node index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DagEdge {
    /// Source node index.
    pub from: usize,
    /// Target node index.
    pub to: usize,
    /// For an edge leaving a decision: the decision value that takes it.
    pub branch: Option<bool>,
}

/// A validated workflow (see the module doc for its invariants). Nodes are addressed by index
/// (their position in `def().nodes`) internally and by id at the API.
#[derive(Clone, Debug)]
pub struct ValidDag {
    def: WorkflowDef,
    time_expression: TimeExpression,
    index: HashMap<NodeId, usize>,
    edges: Vec<DagEdge>,
    /// Per node: indices into `edges` of its out-edges.
    out_edges: Vec<Vec<usize>>,
    /// Per node: indices into `edges` of its in-edges.
    in_edges: Vec<Vec<usize>>,
    exprs: Vec<Option<Expr>>,
    topo: Vec<usize>,
}

impl ValidDag {
    /// The definition it was built from.
    pub fn def(&self) -> &WorkflowDef {
        &self.def
    }
    /// The parsed time expression.
    pub fn time_expression(&self) -> &TimeExpression {
        &self.time_expression
    }
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.def.nodes.len()
    }
    /// Always false (a valid workflow has a node); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.def.nodes.is_empty()
    }
    /// Index of the node with this id.
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.index.get(&id).copied()
    }
    /// The node at this index.
    pub fn node(&self, index: usize) -> Option<&NodeDef> {
        self.def.nodes.get(index)
    }
    /// Every edge, by index.
    pub fn edges(&self) -> &[DagEdge] {
        &self.edges
    }
    /// Edge indices leaving node `index` (empty for an unknown index).
    pub fn out_edges(&self, index: usize) -> &[usize] {
        self.out_edges.get(index).map_or(&[], Vec::as_slice)
    }
    /// Edge indices entering node `index` (empty for an unknown index).
    pub fn in_edges(&self, index: usize) -> &[usize] {
        self.in_edges.get(index).map_or(&[], Vec::as_slice)
    }
    /// The parsed expression of a DECISION node.
    pub fn expression(&self, index: usize) -> Option<&Expr> {
        self.exprs.get(index).and_then(Option::as_ref)
    }
    /// Node indices in a topological order.
    pub fn topo_order(&self) -> &[usize] {
        &self.topo
    }
}

impl WorkflowDef {
    /// Validates the definition; `job_exists`/`workflow_exists` answer whether a referenced
    /// job/workflow exists (in the caller's app). See the module doc for what is checked.
    pub fn validate(
        self,
        job_exists: impl Fn(JobId) -> bool,
        workflow_exists: impl Fn(WorkflowId) -> bool,
    ) -> Result<ValidDag, WorkflowError> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(WorkflowError::BadName {
                len: self.name.len(),
                max: MAX_NAME_LEN,
            });
        }
        match self.time_expression_type {
            TimeExpressionType::Api
            | TimeExpressionType::Cron
            | TimeExpressionType::FixedRate
            | TimeExpressionType::DailyTimeInterval => {}
            other => return Err(WorkflowError::TimeExpressionTypeNotAllowed(other)),
        }
        let time_expression = TimeExpression::parse(
            self.time_expression_type,
            &self.time_expression,
            self.time_zone.as_deref(),
        )?;
        if self.nodes.is_empty() {
            return Err(WorkflowError::Empty);
        }
        if self.nodes.len() > MAX_NODES {
            return Err(WorkflowError::TooManyNodes {
                count: self.nodes.len(),
                max: MAX_NODES,
            });
        }
        if self.edges.len() > MAX_EDGES {
            return Err(WorkflowError::TooManyEdges {
                count: self.edges.len(),
                max: MAX_EDGES,
            });
        }
        let mut index = HashMap::with_capacity(self.nodes.len());
        let mut exprs = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            if index.insert(n.id, i).is_some() {
                return Err(WorkflowError::DuplicateNode(n.id));
            }
            exprs.push(check_node(n, &job_exists, &workflow_exists)?);
        }
        let n = self.nodes.len();
        let mut edges = Vec::with_capacity(self.edges.len());
        let mut out_edges = vec![Vec::new(); n];
        let mut in_edges = vec![Vec::new(); n];
        let mut seen = HashSet::with_capacity(self.edges.len());
        for e in &self.edges {
            let dangling = |missing| WorkflowError::DanglingEdge {
                from: e.from,
                to: e.to,
                missing,
            };
            let from = *index.get(&e.from).ok_or_else(|| dangling(e.from))?;
            let to = *index.get(&e.to).ok_or_else(|| dangling(e.to))?;
            if !seen.insert((e.from, e.to)) {
                return Err(WorkflowError::DuplicateEdge {
                    from: e.from,
                    to: e.to,
                });
            }
            let from_kind = self.nodes.get(from).map(|n| n.kind);
            let branch = if from_kind == Some(NodeKind::Decision) {
                match e.property.as_deref() {
                    Some("true") => Some(true),
                    Some("false") => Some(false),
                    _ => {
                        return Err(WorkflowError::DecisionEdgeProperty {
                            from: e.from,
                            to: e.to,
                            property: e.property.clone(),
                        })
                    }
                }
            } else {
                if e.property.is_some() {
                    return Err(WorkflowError::UnexpectedEdgeProperty {
                        from: e.from,
                        to: e.to,
                    });
                }
                None
            };
            let k = edges.len();
            edges.push(DagEdge { from, to, branch });
            if let Some(v) = out_edges.get_mut(from) {
                v.push(k);
            }
            if let Some(v) = in_edges.get_mut(to) {
                v.push(k);
            }
        }
        let topo = topo_sort(&self.nodes, &edges, &out_edges, &in_edges)?;
        Ok(ValidDag {
            def: self,
            time_expression,
            index,
            edges,
            out_edges,
            in_edges,
            exprs,
            topo,
        })
    }
}

fn check_node(
    n: &NodeDef,
    job_exists: &impl Fn(JobId) -> bool,
    workflow_exists: &impl Fn(WorkflowId) -> bool,
) -> Result<Option<Expr>, WorkflowError> {
    if n.params.len() > MAX_PARAMS_LEN {
        return Err(WorkflowError::ParamsTooLong {
            node: n.id,
            len: n.params.len(),
            max: MAX_PARAMS_LEN,
        });
    }
    let not_allowed = |field| WorkflowError::FieldNotAllowed {
        node: n.id,
        field,
        kind: n.kind.as_str(),
    };
    if n.kind != NodeKind::Job && n.job_id.is_some() {
        return Err(not_allowed("job_id"));
    }
    if n.kind != NodeKind::NestedWorkflow && n.workflow_id.is_some() {
        return Err(not_allowed("workflow_id"));
    }
    if n.kind != NodeKind::Decision && n.expression.is_some() {
        return Err(not_allowed("expression"));
    }
    match n.kind {
        NodeKind::Job => {
            let job_id = n.job_id.ok_or(WorkflowError::MissingJobId(n.id))?;
            if !job_exists(job_id) {
                return Err(WorkflowError::UnknownJob { node: n.id, job_id });
            }
            Ok(None)
        }
        NodeKind::NestedWorkflow => {
            let workflow_id = n
                .workflow_id
                .ok_or(WorkflowError::MissingWorkflowId(n.id))?;
            if !workflow_exists(workflow_id) {
                return Err(WorkflowError::UnknownWorkflow {
                    node: n.id,
                    workflow_id,
                });
            }
            Ok(None)
        }
        NodeKind::Decision => {
            let src = n
                .expression
                .as_deref()
                .ok_or(WorkflowError::MissingExpression(n.id))?;
            Expr::parse(src)
                .map(Some)
                .map_err(|error| WorkflowError::BadExpression { node: n.id, error })
        }
    }
}

/// Kahn's algorithm. On a cycle, walks back from a leftover node along leftover predecessors
/// (every leftover node has one) for `n` steps, which must land on a cycle, and names it.
fn topo_sort(
    nodes: &[NodeDef],
    edges: &[DagEdge],
    out_edges: &[Vec<usize>],
    in_edges: &[Vec<usize>],
) -> Result<Vec<usize>, WorkflowError> {
    let n = nodes.len();
    let mut indeg: Vec<usize> = in_edges.iter().map(Vec::len).collect();
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| indeg.get(i) == Some(&0)).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &k in out_edges.get(i).map_or(&[][..], Vec::as_slice) {
            if let Some(e) = edges.get(k) {
                if let Some(d) = indeg.get_mut(e.to) {
                    *d -= 1;
                    if *d == 0 {
                        queue.push_back(e.to);
                    }
                }
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    let left = |i: usize| indeg.get(i).is_some_and(|&d| d > 0);
    let mut cur = (0..n).find(|&i| left(i)).unwrap_or(0);
    for _ in 0..n {
        let pred = in_edges
            .get(cur)
            .into_iter()
            .flatten()
            .filter_map(|&k| edges.get(k))
            .map(|e| e.from)
            .find(|&p| left(p));
        match pred {
            Some(p) => cur = p,
            None => break,
        }
    }
    Err(WorkflowError::Cycle {
        node: nodes.get(cur).map_or(NodeId(0), |n| n.id),
    })
}
