//! Workflows in the server core: scheduling, the push from a finished node to its
//! successors, nested runs, restart recovery.
//!
//! ```text
//!   job instance final (report, stop, timeout, dead worker; retries exhausted)
//!     └─ finalize (after its final write is acknowledged)
//!          └─ node_runs[instance] ─► wf_node_done(wf instance, node, attempt, ok, result)
//!               └─ the workflow instance ─► WorkflowInstance::on_node_finished
//!                    └─ advance(actions): Dispatch ─► new job instance (dispatch_new: written
//!                       already WAITING_WORKER_RECEIVE) + node link; RunWorkflow ─► child
//!                       workflow instance; Cancel ─► stop path; Finished ─► parent push
//!                    └─ ONE batch: snapshot + new job instances + links + children (+ trigger)
//!               └─ acknowledged (Core::complete) ─► ScheduleJob of each successor sent
//! ```
//!
//! Files: this one holds the state (workflows, workflow instances, node runs);
//! `advance.rs` a transition's batch and what follows it (the push from a node's final
//! report); `run.rs` start, stop, fire and a node's end; `backfill.rs` a past range's runs;
//! `recover.rs` the restart. The API's
//! workflow methods are the runtime's (`runtime/workflow_api.rs`).
//!
//! Invariants:
//! - a workflow instance's transitions are made in one core step each and submitted in it, so
//!   the store sees them in order;
//! - a node's job instance and the snapshot that marks the node RUNNING are one batch: after
//!   a crash either both exist or neither;
//! - the job instance's final write and the workflow's push are two batches; `recover` closes
//!   the gap (a RUNNING node whose job instance is final in the store is pushed again);
//! - a push is applied only for the node's current run (instance id and attempt match);
//! - nesting is refused at runtime when the ancestor chain holds the workflow or is
//!   [`MAX_NESTING`] deep: the node fails with a reason saying so.
//!
//! Logical trigger time and trigger key. A workflow instance stands for one trigger time
//! (`WfInstanceRecord::trigger_time`): a scheduled fire's trigger, an API run's request
//! time, a backfill run's past instant (`backfill.rs`), a nested run's parent's. Every job
//! instance it creates for a node carries that time as its own `trigger_time` (its status
//! clock still starts at creation), so a processor sees the day the workflow runs for, not
//! the moment the node happened to start. The node's trigger key — what a processor
//! de-duplicates its writes by, fenced by `dispatch_attempt` — is
//! `workflow-{wf}-at-{trigger_time}-node-{node}-attempt-{n}` for a scheduled fire (one
//! workflow instance per workflow and trigger time, like a job's `job-{job}-at-{time}`) and
//! `workflow-instance-{id}-node-{node}-attempt-{n}` for every other run (API, backfill,
//! nested), whose workflow instance is its only identity, as `instance-{id}` is a job API
//! run's. It is the same for every dispatch of the node's job instance (the job's
//! `instance_retries` included) and across restarts. `n` counts the node's runs from 1: a
//! workflow instance retry re-runs a failed node as a new job instance, whose
//! `dispatch_attempt` counts from 1 again, so under one key for both runs the fence would
//! refuse the new run's writes or admit the old one's; with `n` in the key each run is
//! fenced on its own.

use std::sync::Arc;

use crate::api::ApiError;
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

use super::write::AfterCreate;
use super::{Awaited, Core, Effect, Then, TimerEv};

/// Deepest nesting of NESTED_WORKFLOW runs (a root instance has depth 0).
pub(crate) const MAX_NESTING: usize = 8;

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
    pub(crate) cur: Arc<WfVersion>,
    /// Bumped when the schedule changes: armed fires of older generations are ignored.
    pub(crate) gen: u64,
    /// Unfinished instances (max_instances).
    pub(crate) running: u32,
    /// Instances finished since the last count prune.
    pub(crate) finished_since_prune: u32,
    /// Its deletion is being written: nothing new starts for it.
    pub(crate) deleted: bool,
    /// Scheduled triggers a calendar excluded since the server started.
    pub(crate) calendar_skipped: u64,
}

impl WfState {
    pub(crate) fn new(v: WfVersion) -> WfState {
        WfState {
            id: v.record.id,
            app: v.record.app_id,
            cur: Arc::new(v),
            gen: 1,
            running: 0,
            finished_since_prune: 0,
            deleted: false,
            calendar_skipped: 0,
        }
    }

    pub(crate) fn cur(&self) -> Arc<WfVersion> {
        Arc::clone(&self.cur)
    }

    fn unrun(&mut self) {
        self.running = self.running.saturating_sub(1);
    }
}

/// One workflow instance owned by the core (unfinished, or being changed by the API).
#[derive(Debug)]
pub(crate) struct WfInst {
    pub(crate) rec: WfInstanceRecord,
    pub(crate) machine: WorkflowInstance,
    /// Whether it counts in its workflow's `running`.
    pub(crate) counted: bool,
}

/// The workflow node a job instance runs (in memory while the instance is not final).
#[derive(Debug)]
pub(crate) struct NodeRun {
    pub(crate) wf_instance: WorkflowInstanceId,
    pub(crate) node: NodeId,
    pub(crate) attempt: u32,
    /// The context at dispatch, JSON object text (ScheduleJob.workflow_context).
    pub(crate) context: Arc<str>,
    /// What the node's run is for (ScheduleJob.trigger_key, see [`node_trigger_key`]).
    pub(crate) trigger_key: Arc<str>,
    /// When its job instance was created, ms (unknown after a restart): a node's late start
    /// counts from here, not from its workflow's trigger time, which it carries.
    pub(crate) created_at: Option<EpochMs>,
    /// When the final report of this instance arrived, clock µs (handoff start).
    pub(crate) reported_us: Option<i64>,
    /// When the final report of the predecessor that released this node arrived, clock µs.
    pub(crate) handoff_from_us: Option<i64>,
}

/// What to do once a workflow transition's write is acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    jobs: Vec<(InstanceRecord, AfterCreate)>,
    children: Vec<WorkflowInstanceId>,
    cancels: Vec<WfNodeRun>,
    finished: Option<(WfStatus, Option<WfParent>, Option<String>)>,
    wf_instance: WorkflowInstanceId,
    /// The transition created the workflow instance: a failed write forgets it.
    created: bool,
    /// A node's job instance saved final by this transition: finalize it once acknowledged.
    finalize: Option<(InstanceId, JobId, u64)>,
}

/// A submitted workflow transition: its write and what follows it.
pub(crate) type Transition = (Commit<()>, Pending);

/// A workflow validation error as the API's InvalidArgument, naming the field.
pub(crate) fn wf_error(e: WorkflowError) -> ApiError {
    let field = match &e {
        WorkflowError::BadName { .. } => "name",
        WorkflowError::TimeExpressionTypeNotAllowed(_) => "time_expression_type",
        WorkflowError::TimeExpression(_) => "time_expression",
        WorkflowError::TooManyEdges { .. }
        | WorkflowError::DanglingEdge { .. }
        | WorkflowError::DuplicateEdge { .. }
        | WorkflowError::DecisionEdgeProperty { .. }
        | WorkflowError::UnexpectedEdgeProperty { .. } => "edges",
        _ => "nodes",
    };
    ApiError::invalid(field, e)
}

pub(crate) fn to_api(e: RepoError) -> ApiError {
    e.into()
}

/// What attempt `attempt` of node `node` of workflow instance `rec` runs for: its job
/// instance's trigger key (see the module docs), derived from stored fields only, so it is
/// the same after a restart.
pub(crate) fn node_trigger_key(rec: &WfInstanceRecord, node: NodeId, attempt: u32) -> String {
    // The node's attempts count from 0; the key's, like `dispatch_attempt`, from 1.
    let n = u64::from(attempt) + 1;
    if rec.run > 0 && rec.parent.is_none() {
        format!(
            "workflow-{}-at-{}-node-{}-attempt-{n}",
            rec.workflow_id.0, rec.trigger_time, node.0
        )
    } else {
        format!("workflow-instance-{}-node-{}-attempt-{n}", rec.id.0, node.0)
    }
}

/// The first trigger of a workflow scheduled at `now` (None for API).
pub(crate) fn initial_next(dag: &ValidDag, now: EpochMs) -> Option<EpochMs> {
    Schedule {
        expression: dag.time_expression(),
        lifecycle: &Lifecycle::default(),
        misfire: MisfirePolicy::FireOnce,
    }
    .first_trigger(now, now)
}

mod advance;
mod backfill;
mod recover;
mod run;
#[cfg(test)]
mod tests;

impl Core {
    pub(crate) fn workflow(&self, id: WorkflowId) -> Option<&WfState> {
        self.workflows.get(&id).filter(|w| !w.deleted)
    }

    /// Runs `f` on workflow instance `id` taken out of the map (so that `f` may use the rest
    /// of the core), then puts it back; `None` when the core does not hold it.
    pub(crate) fn with_wf<R>(
        &mut self,
        id: WorkflowInstanceId,
        f: impl FnOnce(&mut Core, &mut WfInst) -> R,
    ) -> Option<R> {
        let mut w = self.wf_active.remove(&id)?;
        let r = f(self, &mut w);
        self.wf_active.insert(id, w);
        Some(r)
    }

    /// Releases workflow `wf`'s `max_instances` slot held by one instance.
    fn unrun(&mut self, wf: WorkflowId) {
        if let Some(w) = self.workflows.get_mut(&wf) {
            w.unrun();
        }
    }

    /// Emits a submitted transition's await (`false` when nothing was submitted).
    /// A workflow's creation was acknowledged: it is scheduled from `next` (its first fire).
    pub(crate) fn workflow_created(
        &mut self,
        record: WorkflowRecord,
        dag: ValidDag,
        next: Option<EpochMs>,
    ) {
        let id = record.id;
        let state = WfState::new(WfVersion {
            record,
            dag: Arc::new(dag),
        });
        self.workflows.insert(id, state);
        if let Some(due) = next {
            self.arm(
                due,
                TimerEv::Workflow {
                    wf: id,
                    gen: 1,
                    due,
                },
            );
        }
    }

    pub(crate) fn emit_transition(&mut self, t: Option<Transition>) -> bool {
        match t {
            Some((c, p)) => {
                self.emit(Effect::Await(Awaited::Write(
                    c,
                    Then::Workflow(Box::new(p)),
                )));
                true
            }
            None => false,
        }
    }

    /// Fills a ScheduleJob's workflow fields when its instance runs a workflow node.
    pub(crate) fn wf_fill(&self, msg: &mut ferrojob_transport::message::ScheduleJob) {
        if let Some(run) = self.node_runs.get(&InstanceId(msg.instance_id)) {
            msg.workflow_instance_id = Some(run.wf_instance.0);
            msg.workflow_context = run.context.to_string();
            msg.trigger_key = run.trigger_key.to_string();
        }
    }

    /// The ScheduleJob of instance `id` was handed out: the handoff from its predecessor's
    /// final report ends here.
    pub(crate) fn wf_sent(&mut self, id: InstanceId) {
        let now_us = self.now_us;
        if let Some(run) = self.node_runs.get_mut(&id) {
            if let Some(t) = run.handoff_from_us.take() {
                let us = u64::try_from(now_us.saturating_sub(t)).unwrap_or(0);
                self.metrics
                    .observe_handoff(std::time::Duration::from_micros(us));
            }
        }
    }

    /// A final report arrived for instance `id`: start of a possible handoff.
    pub(crate) fn wf_reported(&mut self, id: InstanceId) {
        let now_us = self.now_us;
        if let Some(run) = self.node_runs.get_mut(&id) {
            run.reported_us = Some(now_us);
        }
    }

    /// The workflow instance whose node `id` runs, while the core holds that run (the
    /// repository's node links know the others).
    pub(crate) fn node_run_of(&self, id: InstanceId) -> Option<WorkflowInstanceId> {
        self.node_runs.get(&id).map(|r| r.wf_instance)
    }

    /// Whether a live workflow references job `job` (a JOB node).
    pub(crate) fn job_referenced(&self, job: JobId) -> Option<WorkflowId> {
        let mut ids: Vec<WorkflowId> = self
            .workflows
            .values()
            .filter(|w| {
                !w.deleted
                    && w.cur
                        .dag
                        .def()
                        .nodes
                        .iter()
                        .any(|n| n.kind == NodeKind::Job && n.job_id == Some(job))
            })
            .map(|w| w.id)
            .collect();
        ids.sort_unstable_by_key(|w| w.0);
        ids.first().copied()
    }
}
