//! Typed errors of the workflow module: [`ExprError`] (decision expressions), [`WorkflowError`]
//! (definition validation) and [`InstanceError`] (calls a workflow instance refuses).

use thiserror::Error;

use crate::ids::{JobId, NodeId, WorkflowId};

use crate::time_expression::{TimeExpressionError, TimeExpressionType};

/// A decision expression failed to parse or to evaluate.
#[derive(Clone, Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum ExprError {
    /// The source is longer than the limit.
    #[error("expression is {len} bytes; the limit is {max}")]
    TooLong {
        /// Source length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Parentheses or unary operators nest deeper than the limit.
    #[error("expression nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The source is not in the grammar.
    #[error("syntax error at byte {at}: {msg}")]
    Syntax {
        /// Byte offset of the offending token.
        at: usize,
        /// What was expected.
        msg: String,
    },
    /// The context has no such key.
    #[error("unknown identifier `{0}` (no such key in the workflow context)")]
    UnknownIdentifier(String),
    /// The context key holds null, an array, an object or an unrepresentable number.
    #[error(
        "context key `{0}` holds a value expressions cannot use (only strings, numbers, booleans)"
    )]
    UnsupportedValue(String),
    /// An operator got operands of the wrong types.
    #[error("`{op}` cannot take {left}{}", right.map(|r| format!(" and {r}")).unwrap_or_default())]
    TypeMismatch {
        /// The operator.
        op: String,
        /// Type of the (left) operand.
        left: &'static str,
        /// Type of the right operand, for binary operators.
        right: Option<&'static str>,
    },
    /// A decision's expression evaluated to a non-boolean.
    #[error("a decision must evaluate to a boolean, not a {0}")]
    NotBoolean(&'static str),
}

/// A workflow definition is invalid. Every variant names the node or edge at fault.
#[derive(Clone, Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The name is empty or too long.
    #[error("workflow name must be 1 to {max} bytes, got {len}")]
    BadName {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The time expression type is not one a workflow may have.
    #[error("time_expression_type {0} is not allowed for a workflow (API, CRON, FIXED_RATE or DAILY_TIME_INTERVAL)")]
    TimeExpressionTypeNotAllowed(TimeExpressionType),
    /// The time expression does not parse.
    #[error("time expression: {0}")]
    TimeExpression(#[from] TimeExpressionError),
    /// No nodes.
    #[error("a workflow needs at least one node")]
    Empty,
    /// Too many nodes.
    #[error("{count} nodes; the limit is {max}")]
    TooManyNodes {
        /// Node count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many edges.
    #[error("{count} edges; the limit is {max}")]
    TooManyEdges {
        /// Edge count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two nodes share an id.
    #[error("duplicate node id {}", .0.0)]
    DuplicateNode(NodeId),
    /// A node's params are longer than the limit.
    #[error("{node}: params are {len} bytes; the limit is {max}")]
    ParamsTooLong {
        /// The node.
        node: NodeId,
        /// Their length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An edge names a node that does not exist.
    #[error("edge {} -> {}: {missing} does not exist", .from.0, .to.0)]
    DanglingEdge {
        /// Edge source.
        from: NodeId,
        /// Edge target.
        to: NodeId,
        /// The missing end.
        missing: NodeId,
    },
    /// The same edge appears twice.
    #[error("edge {} -> {} appears twice", .from.0, .to.0)]
    DuplicateEdge {
        /// Edge source.
        from: NodeId,
        /// Edge target.
        to: NodeId,
    },
    /// The graph has a cycle through this node (a self-loop included).
    #[error("the graph has a cycle through {node}")]
    Cycle {
        /// A node on the cycle.
        node: NodeId,
    },
    /// A JOB node without `job_id`.
    #[error("{0}: a JOB node needs job_id")]
    MissingJobId(NodeId),
    /// A JOB node references a job that does not exist.
    #[error("{node}: {job_id} does not exist")]
    UnknownJob {
        /// The node.
        node: NodeId,
        /// The job it references.
        job_id: JobId,
    },
    /// A NESTED_WORKFLOW node without `workflow_id`.
    #[error("{0}: a NESTED_WORKFLOW node needs workflow_id")]
    MissingWorkflowId(NodeId),
    /// A NESTED_WORKFLOW node references a workflow that does not exist.
    #[error("{node}: {workflow_id} does not exist")]
    UnknownWorkflow {
        /// The node.
        node: NodeId,
        /// The workflow it references.
        workflow_id: WorkflowId,
    },
    /// A field that does not belong to the node's type is set.
    #[error("{node}: `{field}` is not allowed on a {kind} node")]
    FieldNotAllowed {
        /// The node.
        node: NodeId,
        /// The field.
        field: &'static str,
        /// The node type.
        kind: &'static str,
    },
    /// A DECISION node without an expression.
    #[error("{0}: a DECISION node needs an expression")]
    MissingExpression(NodeId),
    /// A DECISION node's expression does not parse.
    #[error("{node}: bad expression: {error}")]
    BadExpression {
        /// The node.
        node: NodeId,
        /// Why.
        error: ExprError,
    },
    /// An edge leaving a decision lacks `"property": "true"|"false"`.
    #[error("edge {} -> {} leaves a DECISION node and needs \"property\": \"true\" or \"false\", got {property:?}", .from.0, .to.0)]
    DecisionEdgeProperty {
        /// Edge source (the decision).
        from: NodeId,
        /// Edge target.
        to: NodeId,
        /// What it has.
        property: Option<String>,
    },
    /// An edge leaving a non-decision node has a property.
    #[error("edge {} -> {}: only edges leaving a DECISION node carry a property", .from.0, .to.0)]
    UnexpectedEdgeProperty {
        /// Edge source.
        from: NodeId,
        /// Edge target.
        to: NodeId,
    },
}

/// A call a [`super::WorkflowInstance`] refused; the instance is unchanged.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceError {
    /// The instance has no such node.
    #[error("no {0} in this workflow")]
    UnknownNode(NodeId),
    /// A report for a node that is not running (a late or duplicate report).
    #[error("{0} is not running")]
    NodeNotRunning(NodeId),
    /// Only FAILED and STOPPED nodes can be marked successful.
    #[error("{0} is neither FAILED nor STOPPED")]
    NodeNotFailed(NodeId),
    /// A decision has no value to propagate; fix the context and retry instead.
    #[error("{0} is a DECISION; it cannot be marked successful")]
    DecisionMarkSuccess(NodeId),
    /// `start` on an instance that already started.
    #[error("the instance already started")]
    AlreadyStarted,
    /// `retry` on an instance that is not FAILED or STOPPED.
    #[error("only a FAILED or STOPPED instance can be retried (it is {0})")]
    NotRetriable(&'static str),
    /// The init params are not a JSON object (or null).
    #[error("init_params must be a JSON object")]
    InitParamsNotObject,
    /// A snapshot does not belong to this workflow (different nodes) or is inconsistent.
    #[error("the snapshot does not match the workflow definition")]
    SnapshotMismatch,
    /// The init params exceed the context cap.
    #[error("init_params are {len} bytes; the context limit is {max}")]
    ContextTooLarge {
        /// Their size.
        len: usize,
        /// The limit.
        max: usize,
    },
}
