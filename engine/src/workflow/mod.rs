//! Workflows: definitions, the decision expression language and the
//! workflow instance state machine — a pure, sans-IO library the server wires in.
//!
//! ```text
//!   JSON body ──serde──▶ WorkflowDef ──validate(job_exists, workflow_exists)──▶ ValidDag
//!                                                                                  │
//!   init params (JSON object) ──▶ WorkflowInstance::new(Arc<ValidDag>, params, now)
//!                                      │ start(now)                    ──▶ Vec<Action>
//!   node report ──────────────────────▶│ on_node_finished(node, ok, result, now) ──▶ Vec<Action>
//!   user ─────────────────────────────▶│ retry(now) / mark_success(node, now) / stop(now)
//!   store ◀── snapshot() ──────────────│ restore(dag, snapshot, now) after a restart
//!                                      ▼
//!        Action::{Dispatch, RunWorkflow, Cancel, Finished}  (the caller performs them)
//! ```
//!
//! - [`definition`]: [`WorkflowDef`] (the OpenAPI body), validation into a [`ValidDag`].
//! - [`expr`]: the decision expression language ([`Expr`]).
//! - [`instance`]: [`WorkflowInstance`], node and instance states, [`Action`].
//! - [`error`]: [`WorkflowError`], [`ExprError`], [`InstanceError`].
//!
//! Nothing here reads a clock, touches a socket or a file, or spawns a task: time comes in as
//! an argument and every effect goes out as an [`Action`], so the same inputs give the same
//! outputs.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod definition;
pub mod error;
pub mod expr;
pub mod instance;

pub use definition::{EdgeDef, FailurePolicy, NodeDef, NodeKind, ValidDag, WorkflowDef};
pub use error::{ExprError, InstanceError, WorkflowError};
pub use expr::Expr;
pub use instance::{
    Action, InstanceSnapshot, InstanceStatus, NodeState, NodeStatus, WorkflowInstance,
};
