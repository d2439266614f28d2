//! Workflows in the server core: scheduling, the push from a finished node to its
//! successors, nested runs, restart recovery.
//!
//! ```text
//!   job instance final (report, stop, timeout, dead worker; retries exhausted)
//!     └─ finalize (after its final write is acknowledged)
//!          └─ node_runs[instance] ─► wf_node_done(wf instance, node, attempt, ok, result)
//!               └─ lock the workflow instance ─► WorkflowInstance::on_node_finished
//!                    └─ advance(actions): Dispatch ─► new job instance (dispatch_new: written
//!                       already WAITING_WORKER_RECEIVE) + node link; RunWorkflow ─► child
//!                       workflow instance; Cancel ─► stop path; Finished ─► parent push
//!                    └─ ONE batch: snapshot + new job instances + links + children (+ trigger)
//!               └─ acknowledged ─► ScheduleJob of each successor handed to its connection
//! ```
//!
//! Files: this one holds the state (workflows, workflow instances, node runs);
//! `advance.rs` a transition's batch and what follows it (the push from a node's final
//! report); `run.rs` start, stop, fire and a node's end; `recover.rs` the restart; `api.rs`
//! the [`NodeApi`](super::api::NodeApi) methods.
//!
//! Invariants:
//! - a workflow instance's transitions are made under its mutex and submitted before it is
//!   released, so the store sees them in order;
//! - a node's job instance and the snapshot that marks the node RUNNING are one batch: after
//!   a crash either both exist or neither;
//! - the job instance's final write and the workflow's push are two batches; `recover` closes
//!   the gap (a RUNNING node whose job instance is final in the store is pushed again);
//! - a push is applied only for the node's current run (instance id and attempt match);
//! - nesting is refused at runtime when the ancestor chain holds the workflow or is
//!   [`MAX_NESTING`] deep: the node fails with a reason saying so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value as Json};

use crate::api::{
    ApiError, AppRef, Created, RunWorkflow, WorkflowDef, WorkflowInstanceAction,
    WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceView, WorkflowList,
    WorkflowNodeView, WorkflowRunCreated, WorkflowView,
};
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::schedule::Schedule;
use crate::server::workflow_repo::{
    LoadedWorkflow, WfInstanceRecord, WfNodeRun, WfParent, WorkflowRecord,
};
use crate::server::{Commit, InstanceRecord, RepoError};
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy};
use crate::workflow::{
    Action, InstanceStatus as WfStatus, NodeKind, NodeStatus, ValidDag, WorkflowError,
    WorkflowInstance,
};

use super::api::NodeApi;
use super::state::{Runtime, TimerEv};
use super::write::AfterCreate;

/// Deepest nesting of NESTED_WORKFLOW runs (a root instance has depth 0).
pub(crate) const MAX_NESTING: usize = 8;
/// Longest `delay_ms` of a workflow run (about 10 years).
const MAX_DELAY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// A workflow's definition version as the scheduler uses it. Immutable.
#[derive(Debug)]
pub(crate) struct WfVersion {
    pub(crate) record: WorkflowRecord,
    pub(crate) dag: Arc<ValidDag>,
}

/// One workflow's scheduling state.
#[derive(Debug)]
pub(crate) struct WfState {
    pub(crate) id: WorkflowId,
    pub(crate) app: AppId,
    pub(crate) cur: RwLock<Arc<WfVersion>>,
    /// Bumped when the schedule changes: armed fires of older generations are ignored.
    pub(crate) gen: AtomicU64,
    /// Unfinished instances (max_instances).
    pub(crate) running: AtomicU32,
    pub(crate) deleted: AtomicBool,
}

impl WfState {
    fn new(v: WfVersion) -> WfState {
        WfState {
            id: v.record.id,
            app: v.record.app_id,
            cur: RwLock::new(Arc::new(v)),
            gen: AtomicU64::new(1),
            running: AtomicU32::new(0),
            deleted: AtomicBool::new(false),
        }
    }

    pub(crate) fn cur(&self) -> Arc<WfVersion> {
        Arc::clone(&self.cur.read())
    }

    fn unrun(&self) {
        let _ = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

/// One workflow instance owned by the core (unfinished, or being changed by the API).
#[derive(Debug)]
pub(crate) struct WfInst {
    pub(crate) rec: WfInstanceRecord,
    pub(crate) machine: WorkflowInstance,
    /// Whether it counts in its workflow's `running`.
    counted: bool,
}

/// A shared, individually locked workflow instance.
pub(crate) type WfSlot = Arc<Mutex<WfInst>>;

/// The workflow node a job instance runs (in memory while the instance is not final).
#[derive(Debug)]
pub(crate) struct NodeRun {
    pub(crate) wf_instance: WorkflowInstanceId,
    pub(crate) node: NodeId,
    pub(crate) attempt: u32,
    /// The context at dispatch, JSON object text (ScheduleJob.workflow_context).
    pub(crate) context: Arc<str>,
    /// When the final report of this instance arrived (handoff start).
    pub(crate) reported: Mutex<Option<Instant>>,
    /// When the final report of the predecessor that released this node arrived.
    pub(crate) handoff_from: Mutex<Option<Instant>>,
}

/// What to do once a workflow transition's write is acknowledged.
#[derive(Debug, Default)]
struct Pending {
    commit: Option<Commit<()>>,
    jobs: Vec<(InstanceRecord, AfterCreate)>,
    children: Vec<WorkflowInstanceId>,
    cancels: Vec<WfNodeRun>,
    finished: Option<(WfStatus, Option<WfParent>, Option<String>)>,
    wf_instance: WorkflowInstanceId,
    /// A node's job instance saved final by this transition: finalize it once acknowledged.
    finalize: Option<(InstanceId, JobId, u64)>,
}

/// A workflow validation error as the API's InvalidArgument, naming the field.
pub(crate) fn wf_error(e: WorkflowError) -> ApiError {
    let field = match &e {
        WorkflowError::BadName { .. } => "name",
        WorkflowError::TimeExpressionTypeNotAllowed(_) => "time_expression_type",
        WorkflowError::TimeExpression(_) => "time_expression",
        WorkflowError::ZeroMaxInstances => "max_instances",
        WorkflowError::TooManyEdges { .. }
        | WorkflowError::DanglingEdge { .. }
        | WorkflowError::DuplicateEdge { .. }
        | WorkflowError::DecisionEdgeProperty { .. }
        | WorkflowError::UnexpectedEdgeProperty { .. } => "edges",
        _ => "nodes",
    };
    ApiError::invalid(field, e)
}

fn to_api(e: RepoError) -> ApiError {
    e.into()
}

/// The first trigger of a workflow scheduled at `now` (None for API).
fn initial_next(dag: &ValidDag, now: EpochMs) -> Option<EpochMs> {
    Schedule {
        expression: dag.time_expression(),
        lifecycle: &Lifecycle::default(),
        misfire: MisfirePolicy::FireOnce,
    }
    .first_trigger(now, now)
}

mod advance;
mod api;
mod recover;
mod run;

impl Runtime {
    pub(crate) fn workflow(&self, id: WorkflowId) -> Option<Arc<WfState>> {
        self.workflows.get(&id).map(|w| Arc::clone(&w))
    }

    fn wf_slot(&self, id: WorkflowInstanceId) -> Option<WfSlot> {
        self.wf_active.get(&id).map(|s| Arc::clone(&s))
    }

    /// Fills a ScheduleJob's workflow fields when its instance runs a workflow node.
    pub(crate) fn wf_fill(&self, msg: &mut ferrojob_transport::message::ScheduleJob) {
        if let Some(run) = self.node_runs.get(&InstanceId(msg.instance_id)) {
            msg.workflow_instance_id = Some(run.wf_instance.0);
            msg.workflow_context = run.context.to_string();
        }
    }

    /// The ScheduleJob of instance `id` was handed to its connection: the handoff from its
    /// predecessor's final report ends here.
    pub(crate) fn wf_sent(&self, id: InstanceId) {
        if let Some(run) = self.node_runs.get(&id) {
            if let Some(t) = run.handoff_from.lock().take() {
                self.metrics.observe_handoff(t.elapsed());
            }
        }
    }

    /// A final report arrived for instance `id`: start of a possible handoff.
    pub(crate) fn wf_reported(&self, id: InstanceId) {
        if let Some(run) = self.node_runs.get(&id) {
            *run.reported.lock() = Some(Instant::now());
        }
    }

    /// The workflow instance (node) `id` runs as, for InstanceView.
    pub(crate) fn wf_instance_of(&self, id: InstanceId) -> Option<WorkflowInstanceId> {
        if let Some(r) = self.node_runs.get(&id) {
            return Some(r.wf_instance);
        }
        self.repo
            .node_link(id)
            .ok()
            .flatten()
            .map(|l| l.wf_instance)
    }

    /// Whether a live workflow references job `job` (a JOB node).
    pub(crate) fn job_referenced(&self, job: JobId) -> Option<WorkflowId> {
        self.workflows.iter().find_map(|w| {
            (!w.deleted.load(Ordering::Acquire)
                && w.cur()
                    .dag
                    .def()
                    .nodes
                    .iter()
                    .any(|n| n.kind == NodeKind::Job && n.job_id == Some(job)))
            .then_some(w.id)
        })
    }
}
