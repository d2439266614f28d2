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
//! Files: this one holds the state (workflows, workflow instances, node runs) and the
//! transitions (push, start, stop, fire); `recover.rs` the restart; `api.rs` the
//! [`NodeApi`] methods.
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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value as Json};

use crate::api::{
    ApiError, AppRef, Created, PageQuery, RunWorkflow, WorkflowDef, WorkflowInstanceAction,
    WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceView, WorkflowList,
    WorkflowNodeView, WorkflowRunCreated, WorkflowView,
};
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::schedule::Schedule;
use crate::server::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfNodeRun, WfParent, WfWrite, WorkflowRecord,
};
use crate::server::{Commit, InstanceRecord, RepoError, TriggerRecord};
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy};
use crate::workflow::{
    Action, InstanceStatus as WfStatus, NodeKind, NodeStatus, ValidDag, WorkflowError,
    WorkflowInstance,
};

use super::api::NodeApi;
use super::engine::{AfterCreate, Follow};
use super::state::{InstState, Shared, TimerEv};

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

mod api;
mod recover;

impl Shared {
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

    // ----- transitions -----

    /// Fails RUNNING node `node` at once (a dispatch that could not even be created).
    fn fail_node(w: &mut WfInst, node: NodeId, reason: String, now: EpochMs) -> Vec<Action> {
        tracing::warn!(wf_instance = w.rec.id.0, node = node.0, %reason, "workflow node failed");
        w.machine
            .on_node_finished(node, false, Some(reason), now)
            .unwrap_or_default()
    }

    /// Performs `actions` of workflow instance `w` (under its lock) and submits the
    /// transition as one batch. `handoff`: when the final report that caused it arrived.
    fn advance(
        &self,
        w: &mut WfInst,
        actions: Vec<Action>,
        now: EpochMs,
        created: bool,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        handoff: Option<Instant>,
    ) -> Pending {
        self.advance_with(w, actions, now, created, trigger, handoff, None)
    }

    /// [`advance`](Shared::advance), also saving `node_final` (a node's job instance that
    /// just reached its final status, and the status last written for it) in the same batch.
    #[allow(clippy::too_many_arguments)]
    fn advance_with(
        &self,
        w: &mut WfInst,
        actions: Vec<Action>,
        now: EpochMs,
        created: bool,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        handoff: Option<Instant>,
        node_final: Option<(InstanceRecord, Option<InstanceStatus>)>,
    ) -> Pending {
        let mut queue: VecDeque<Action> = actions.into();
        let mut write = WfWrite {
            instances: node_final.into_iter().collect(),
            ..WfWrite::default()
        };
        let mut p = Pending {
            wf_instance: w.rec.id,
            ..Pending::default()
        };
        let mut children = Vec::new();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Dispatch {
                    node,
                    job_id,
                    params,
                    attempt,
                    context,
                } => {
                    let job = self
                        .job(job_id)
                        .filter(|j| !j.deleted.load(Ordering::Acquire))
                        .filter(|j| j.def().record.app_id == w.rec.app_id);
                    let Some(job) = job else {
                        let reason = format!("{job_id} does not exist (deleted?)");
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    };
                    let id = match self.repo.new_instance_id() {
                        Ok(id) => id,
                        Err(e) => {
                            queue.extend(Self::fail_node(w, node, e.to_string(), now));
                            continue;
                        }
                    };
                    let context_json =
                        serde_json::to_string(&*context).unwrap_or_else(|_| "{}".into());
                    let mut rec = InstanceRecord::new(job.id, w.rec.app_id, params, now);
                    rec.id = id;
                    if let Err(e) = rec.validate() {
                        queue.extend(Self::fail_node(w, node, e.to_string(), now));
                        continue;
                    }
                    let then = match self.dispatch_new(&job, &mut rec, now) {
                        Some(nd) => AfterCreate::Dispatched(nd),
                        None => AfterCreate::Dispatch { at: None },
                    };
                    let run = NodeRun {
                        wf_instance: w.rec.id,
                        node,
                        attempt,
                        context: Arc::from(context_json.as_str()),
                        reported: Mutex::new(None),
                        handoff_from: Mutex::new(handoff),
                    };
                    self.node_runs.insert(id, Arc::new(run));
                    w.rec.set_run(WfNodeRun {
                        node,
                        instance: id.0,
                        nested: false,
                    });
                    write.job_instances.push((
                        rec.clone(),
                        NodeLinkRecord {
                            wf_instance: w.rec.id,
                            node,
                            attempt,
                            context_json,
                        },
                    ));
                    p.jobs.push((rec, then));
                }
                Action::RunWorkflow {
                    node,
                    workflow_id,
                    params,
                    attempt,
                    context,
                } => {
                    let mut chain = w.rec.ancestors.clone();
                    chain.push(w.rec.workflow_id);
                    if chain.contains(&workflow_id) {
                        let ids: Vec<u64> = chain.iter().map(|w| w.0).collect();
                        let reason = format!(
                            "nesting loop refused: {workflow_id} already runs in the ancestor chain {ids:?}"
                        );
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    }
                    if chain.len() > MAX_NESTING {
                        let ids: Vec<u64> = chain.iter().map(|w| w.0).collect();
                        let reason = format!(
                            "nesting refused: deeper than {MAX_NESTING} levels (ancestor chain {ids:?})"
                        );
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    }
                    let wf = self
                        .workflow(workflow_id)
                        .filter(|x| !x.deleted.load(Ordering::Acquire) && x.app == w.rec.app_id);
                    let Some(wf) = wf else {
                        let reason = format!("{workflow_id} does not exist (deleted?)");
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    };
                    let mut init = (*context).clone();
                    if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(&params) {
                        init.extend(m);
                    }
                    let cur = wf.cur();
                    let machine = match WorkflowInstance::new(
                        Arc::clone(&cur.dag),
                        Json::Object(init),
                        now,
                    ) {
                        Ok(m) => m,
                        Err(e) => {
                            queue.extend(Self::fail_node(w, node, e.to_string(), now));
                            continue;
                        }
                    };
                    let id = match self.repo.new_wf_instance_id() {
                        Ok(id) => id,
                        Err(e) => {
                            queue.extend(Self::fail_node(w, node, e.to_string(), now));
                            continue;
                        }
                    };
                    let mut rec = WfInstanceRecord {
                        id,
                        workflow_id,
                        version: cur.record.version,
                        app_id: w.rec.app_id,
                        parent: Some(WfParent {
                            instance: w.rec.id,
                            node,
                            attempt,
                        }),
                        ancestors: chain,
                        snapshot_json: String::new(),
                        nodes: Vec::new(),
                        delayed_until: None,
                        run: 0,
                    };
                    if let Err(e) = rec.set_snapshot(&machine.snapshot()) {
                        queue.extend(Self::fail_node(w, node, e.to_string(), now));
                        continue;
                    }
                    wf.running.fetch_add(1, Ordering::AcqRel);
                    write.wf_instances.push((rec.clone(), true, false));
                    w.rec.set_run(WfNodeRun {
                        node,
                        instance: id.0,
                        nested: true,
                    });
                    children.push((
                        id,
                        WfInst {
                            rec,
                            machine,
                            counted: true,
                        },
                    ));
                }
                Action::Cancel { node } => {
                    if let Some(r) = w.rec.run_of(node) {
                        p.cancels.push(r);
                    }
                }
                Action::Finished { status } => {
                    let result = match status {
                        WfStatus::Succeed => serde_json::to_string(w.machine.context()).ok(),
                        s => Some(format!("{} {}", w.rec.id, s.as_str())),
                    };
                    p.finished = Some((status, w.rec.parent, result));
                }
            }
        }
        let finished = w.machine.status().is_finished();
        if finished && w.counted {
            // Released when the transition is made (not when it is acknowledged): an API
            // client that sees the instance finished may run the workflow again at once.
            w.counted = false;
            if let Some(wf) = self.workflow(w.rec.workflow_id) {
                wf.unrun();
            }
        }
        if let Err(e) = w.rec.set_snapshot(&w.machine.snapshot()) {
            self.store_write_failed(&e);
        }
        write
            .wf_instances
            .insert(0, (w.rec.clone(), created, finished));
        write.trigger = trigger;
        match self.repo.write_wf(&write) {
            Ok(c) => p.commit = Some(c),
            Err(e) => {
                self.store_write_failed(&e);
                // Nothing was submitted: undo the in-memory preparations.
                for (rec, then) in p.jobs.drain(..) {
                    self.node_runs.remove(&rec.id);
                    self.create_failed(then);
                }
                for (_, child) in children {
                    if let Some(wf) = self.workflow(child.rec.workflow_id) {
                        wf.unrun();
                    }
                }
                p.cancels.clear();
                p.finished = None;
                return p;
            }
        }
        for (id, inst) in children {
            self.wf_active.insert(id, Arc::new(Mutex::new(inst)));
            p.children.push(id);
        }
        p
    }

    /// Awaits a transition's write, then starts what it created and reports what ended.
    /// (Boxed with an explicit `Send`: it spawns tasks that call it again.)
    fn complete(
        self: &Arc<Self>,
        p: Pending,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let sh = Arc::clone(self);
        Box::pin(async move { sh.complete_now(p).await })
    }

    async fn complete_now(self: &Arc<Self>, p: Pending) {
        let Some(commit) = p.commit else {
            return;
        };
        if self.await_commit(commit).await.is_err() {
            for (rec, then) in p.jobs {
                self.node_runs.remove(&rec.id);
                self.create_failed(then);
            }
            return;
        }
        for (rec, then) in p.jobs {
            let id = rec.id;
            self.after_create(rec, then);
            // A later transition may have cancelled the node before this one's instance was
            // owned (its Cancel then found nothing to stop): stop it now.
            if !self.wf_still_wanted(id) {
                self.stop_node_instance(id);
            }
        }
        for child in p.children {
            let sh = Arc::clone(self);
            tokio::spawn(async move { sh.wf_start(child).await });
        }
        for c in p.cancels {
            if c.nested {
                let sh = Arc::clone(self);
                tokio::spawn(async move { sh.wf_stop(WorkflowInstanceId(c.instance)).await });
            } else {
                self.stop_node_instance(InstanceId(c.instance));
            }
        }
        self.wf_settle(p.wf_instance);
        if let Some((id, job, run)) = p.finalize {
            self.finalize(id, job, run).await;
        }
        if let Some((status, parent, result)) = p.finished {
            self.metrics.wf_finished(status);
            tracing::info!(
                wf_instance = p.wf_instance.0,
                status = status.as_str(),
                "workflow instance finished"
            );
            if let Some(parent) = parent {
                let sh = Arc::clone(self);
                let ok = status == WfStatus::Succeed;
                let child = p.wf_instance;
                tokio::spawn(async move {
                    sh.wf_node_done(
                        parent.instance,
                        parent.node,
                        parent.attempt,
                        Some(child.0),
                        ok,
                        result,
                        None,
                    )
                    .await;
                });
            }
        }
    }

    /// Whether job instance `id` still runs its workflow node's current attempt.
    fn wf_still_wanted(&self, id: InstanceId) -> bool {
        let Some(run) = self.node_runs.get(&id).map(|r| Arc::clone(&r)) else {
            // Already final and pushed.
            return true;
        };
        let Some(slot) = self.wf_slot(run.wf_instance) else {
            return false;
        };
        let w = slot.lock();
        let running = w
            .machine
            .node(run.node)
            .is_some_and(|n| n.status == NodeStatus::Running && n.attempt == run.attempt);
        running && w.rec.run_of(run.node).is_some_and(|r| r.instance == id.0)
    }

    /// Drops a finished workflow instance from memory (its `max_instances` slot was released
    /// by the transition that finished it).
    fn wf_settle(&self, id: WorkflowInstanceId) {
        // `try_lock`: never wait for an instance's mutex under the map's shard lock (a
        // transition holds its mutex while it inserts nested instances into the map). A
        // contended instance is being changed; that change settles it again when it ends.
        self.wf_active.remove_if(&id, |_, s| {
            let Some(mut w) = s.try_lock() else {
                return false;
            };
            let done = w.machine.status().is_finished();
            if done && w.counted {
                w.counted = false;
                if let Some(wf) = self.workflow(w.rec.workflow_id) {
                    wf.unrun();
                }
            }
            done
        });
    }

    /// Stops a node's job instance (FAIL_FAST, workflow stop) through the usual stop path.
    fn stop_node_instance(self: &Arc<Self>, id: InstanceId) {
        let Some(slot) = self.slot(id) else { return };
        let now = self.now();
        let (commit, follow, worker) = {
            let mut st = slot.lock();
            let old = st.rec.status;
            if old.is_final() {
                return;
            }
            let job = self.job(st.rec.job_id);
            let moved = if old == InstanceStatus::WaitingDispatch {
                st.rec.cancel(now)
            } else {
                st.rec.stop(now)
            };
            if moved.is_err() {
                return;
            }
            self.note(job.as_deref(), Some(old), st.rec.status);
            let worker = (old != InstanceStatus::WaitingDispatch)
                .then(|| st.rec.worker.clone())
                .flatten();
            let follow = Follow::Final {
                id,
                job: st.rec.job_id,
                run: st.rec.run,
            };
            let (c, f) = self.persist_follow(&mut st, follow);
            (c, f, worker)
        };
        if let Some(w) = worker {
            self.send_stop(&w, id);
        }
        self.after_write(commit, follow);
    }

    /// Under the lock of job instance `st`, which a worker report just made final: if it runs
    /// a workflow node that is waiting for it, makes the workflow transition now and submits
    /// the instance's final record, the new snapshot and the successors' new job instances
    /// as ONE batch; the successors are dispatched as soon as it is acknowledged. `false`:
    /// not a node, or a late one; the caller saves the instance as usual.
    pub(crate) fn wf_push_batched(self: &Arc<Self>, st: &mut InstState, now: EpochMs) -> bool {
        let id = st.rec.id;
        let Some(run) = self.node_runs.get(&id).map(|r| Arc::clone(&r)) else {
            return false;
        };
        let Some(slot) = self.wf_slot(run.wf_instance) else {
            return false;
        };
        let pending = {
            let mut w = slot.lock();
            let current = w.machine.node(run.node).map(|n| (n.status, n.attempt));
            let same_run = w
                .rec
                .run_of(run.node)
                .is_some_and(|r| !r.nested && r.instance == id.0);
            if current != Some((NodeStatus::Running, run.attempt)) || !same_run {
                return false;
            }
            let ok = st.rec.status == InstanceStatus::Succeed;
            let actions = match w
                .machine
                .on_node_finished(run.node, ok, st.rec.result.clone(), now)
            {
                Ok(a) => a,
                Err(_) => return false,
            };
            let node_final = Some((st.rec.clone(), st.persisted.take()));
            self.advance_with(
                &mut w,
                actions,
                now,
                false,
                None,
                Some(Instant::now()),
                node_final,
            )
        };
        self.node_runs.remove(&id);
        let mut pending = pending;
        if pending.commit.is_some() {
            st.persisted = Some(st.rec.status);
            pending.finalize = Some((id, st.rec.job_id, st.rec.run));
        }
        tokio::spawn(self.complete(pending));
        true
    }

    /// A job instance that runs a workflow node reached its final status (its final write is
    /// acknowledged): push it to its workflow instance.
    pub(crate) async fn wf_job_final(
        self: &Arc<Self>,
        id: InstanceId,
        run: Arc<NodeRun>,
        status: InstanceStatus,
        result: Option<String>,
    ) {
        let reported = *run.reported.lock();
        self.wf_node_done(
            run.wf_instance,
            run.node,
            run.attempt,
            Some(id.0),
            status == InstanceStatus::Succeed,
            result,
            reported,
        )
        .await;
    }

    /// Node `node` (attempt `attempt`, run by `instance` if known) of workflow instance
    /// `wf_instance` ended.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn wf_node_done(
        self: &Arc<Self>,
        wf_instance: WorkflowInstanceId,
        node: NodeId,
        attempt: u32,
        instance: Option<u64>,
        ok: bool,
        result: Option<String>,
        reported: Option<Instant>,
    ) {
        let Some(slot) = self.wf_slot(wf_instance) else {
            tracing::debug!(
                wf_instance = wf_instance.0,
                node = node.0,
                "node end for a workflow instance not running"
            );
            return;
        };
        let now = self.now();
        let pending = {
            let mut w = slot.lock();
            let current = w.machine.node(node).map(|n| (n.status, n.attempt));
            let same_run =
                instance.is_none_or(|i| w.rec.run_of(node).is_some_and(|r| r.instance == i));
            if current != Some((NodeStatus::Running, attempt)) || !same_run {
                tracing::debug!(
                    wf_instance = wf_instance.0,
                    node = node.0,
                    "late node end ignored"
                );
                return;
            }
            let actions = match w.machine.on_node_finished(node, ok, result, now) {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(
                        wf_instance = wf_instance.0,
                        node = node.0,
                        error = %e,
                        "node end refused"
                    );
                    return;
                }
            };
            self.advance(&mut w, actions, now, false, None, reported)
        };
        self.complete(pending).await;
    }

    /// Starts a WAITING workflow instance (created, delayed run due, nested run).
    pub(crate) async fn wf_start(self: &Arc<Self>, id: WorkflowInstanceId) {
        let Some(slot) = self.wf_slot(id) else { return };
        let now = self.now();
        let pending = {
            let mut w = slot.lock();
            if w.machine.status() != WfStatus::Waiting {
                return;
            }
            if w.rec.delayed_until.is_some_and(|d| d > now) {
                return;
            }
            w.rec.delayed_until = None;
            let actions = match w.machine.start(now) {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(wf_instance = id.0, error = %e, "start refused");
                    return;
                }
            };
            self.metrics.wf_started.fetch_add(1, Ordering::Relaxed);
            self.advance(&mut w, actions, now, false, None, None)
        };
        self.complete(pending).await;
    }

    /// Stops workflow instance `id` (user stop, FAIL_FAST of a parent). Conflict when it is
    /// already finished.
    pub(crate) async fn wf_stop(self: &Arc<Self>, id: WorkflowInstanceId) -> Result<(), ApiError> {
        let Some(slot) = self.wf_slot(id) else {
            return Err(ApiError::conflict(format!("{id} is not running")));
        };
        let now = self.now();
        let pending = {
            let mut w = slot.lock();
            if w.machine.status().is_finished() {
                return Err(ApiError::conflict(format!(
                    "{id} already finished ({})",
                    w.machine.status().as_str()
                )));
            }
            let actions = w.machine.stop(now);
            self.advance(&mut w, actions, now, false, None, None)
        };
        let ok = pending.commit.is_some();
        self.complete(pending).await;
        if ok {
            Ok(())
        } else {
            Err(ApiError::unavailable("the store refuses writes"))
        }
    }

    /// Creates a workflow instance of `wf` (an API run, a fire) and starts it unless delayed.
    /// The answer waits for the write.
    async fn wf_create_instance(
        self: &Arc<Self>,
        wf: &Arc<WfState>,
        init: Map<String, Json>,
        delay_until: Option<EpochMs>,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        run: u64,
        now: EpochMs,
    ) -> Result<WorkflowInstanceId, ApiError> {
        let cur = wf.cur();
        let max = cur.dag.def().max_instances;
        let reserved = wf
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            if let Some(t) = trigger {
                // The fire is refused, but its trigger row (moved on) is still written.
                let write = WfWrite {
                    trigger: Some(t),
                    ..WfWrite::default()
                };
                match self.repo.write_wf(&write) {
                    Ok(c) => drop(c),
                    Err(e) => self.store_write_failed(&e),
                }
            }
            return Err(ApiError::conflict(format!(
                "too many instances: {} allows {max} at once (max_instances)",
                wf.id
            )));
        }
        let machine = match WorkflowInstance::new(Arc::clone(&cur.dag), Json::Object(init), now) {
            Ok(m) => m,
            Err(e) => {
                wf.unrun();
                return Err(ApiError::invalid("init_params", e));
            }
        };
        let id = match self.repo.new_wf_instance_id() {
            Ok(id) => id,
            Err(e) => {
                wf.unrun();
                return Err(e.into());
            }
        };
        let rec = WfInstanceRecord {
            id,
            workflow_id: wf.id,
            version: cur.record.version,
            app_id: wf.app,
            parent: None,
            ancestors: Vec::new(),
            snapshot_json: String::new(),
            nodes: Vec::new(),
            delayed_until: delay_until,
            run,
        };
        let mut w = WfInst {
            rec,
            machine,
            counted: true,
        };
        let actions = if delay_until.is_none() {
            self.metrics.wf_started.fetch_add(1, Ordering::Relaxed);
            w.machine.start(now).unwrap_or_default()
        } else {
            Vec::new()
        };
        let slot: WfSlot = Arc::new(Mutex::new(w));
        // In memory before the write: a node that finishes at once finds its instance.
        self.wf_active.insert(id, Arc::clone(&slot));
        let pending = {
            let mut w = slot.lock();
            self.advance(&mut w, actions, now, true, trigger, None)
        };
        if pending.commit.is_none() {
            self.wf_active.remove(&id);
            wf.unrun();
            return Err(ApiError::unavailable("the store refuses writes"));
        }
        self.complete(pending).await;
        if let Some(due) = delay_until {
            self.arm(due, TimerEv::WfStart(id));
        }
        Ok(id)
    }

    /// A workflow's trigger came due (on the timer task): fire it and arm the next one.
    pub(crate) fn on_wf_due(
        self: &Arc<Self>,
        wf_id: WorkflowId,
        gen: u64,
        due: EpochMs,
        now: EpochMs,
    ) {
        let Some(wf) = self.workflow(wf_id) else {
            return;
        };
        if wf.gen.load(Ordering::Acquire) != gen || wf.deleted.load(Ordering::Acquire) {
            return;
        }
        let cur = wf.cur();
        // Workflows follow FIRE_ONCE (the jobs' default): a late trigger fires once.
        let lifecycle = Lifecycle::default();
        let plan = Schedule {
            expression: cur.dag.time_expression(),
            lifecycle: &lifecycle,
            misfire: MisfirePolicy::FireOnce,
        }
        .plan(self.config.misfire_threshold_ms, due, now);
        if plan.dropped > 0 {
            tracing::warn!(
                workflow = wf_id.0,
                late_ms = now.saturating_sub(due),
                dropped = plan.dropped,
                "workflow misfire: fired once"
            );
        }
        let next = plan.next;
        let current = || wf.gen.load(Ordering::Acquire) == gen;
        // Room under max_instances, taken once: the instances of this plan are counted only
        // when they are created.
        let mut room = cur
            .dag
            .def()
            .max_instances
            .saturating_sub(wf.running.load(Ordering::Acquire));
        if plan.fires.is_empty() {
            match self.repo.wf_set_next_trigger_if(wf_id, next, current) {
                Ok(Some(c)) => drop(c),
                Ok(None) => return,
                Err(e) => self.store_write_failed(&e),
            }
        }
        for (i, _) in plan.fires.iter().enumerate() {
            let next_for = plan.fires.get(i + 1).copied().or(next);
            if room == 0 {
                tracing::warn!(
                    workflow = wf_id.0,
                    "fire skipped: max_instances instances are running"
                );
                match self.repo.wf_set_next_trigger_if(wf_id, next_for, current) {
                    Ok(Some(c)) => drop(c),
                    Ok(None) => return,
                    Err(e) => self.store_write_failed(&e),
                }
                continue;
            }
            room -= 1;
            let Some(row) = self.repo.wf_fire_row(wf_id, next_for, current) else {
                return;
            };
            let sh = Arc::clone(self);
            let wf2 = Arc::clone(&wf);
            tokio::spawn(async move {
                if let Err(e) = sh
                    .wf_create_instance(&wf2, Map::new(), None, Some((wf_id, row)), row.runs, now)
                    .await
                {
                    tracing::warn!(workflow = wf_id.0, error = %e, "workflow fire failed");
                }
            });
        }
        if let Some(n) = next {
            self.arm(
                n,
                TimerEv::Workflow {
                    wf: wf_id,
                    gen,
                    due: n,
                },
            );
        }
    }
}
