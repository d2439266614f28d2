//! Workflows in the server core (issue 6): scheduling, the push from a finished node to its
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
use crate::model::{InstanceId, InstanceStatus, JobId};
use crate::server::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfNodeRun, WfParent, WfWrite, WorkflowRecord,
};
use crate::server::{AppId, Commit, InstanceRecord, RepoError, TriggerRecord};
use crate::time_expression::{EpochMs, Lifecycle, TimeExpression};
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
    pub(crate) id: u64,
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
    pub(crate) wf_instance: u64,
    pub(crate) node: u64,
    pub(crate) attempt: u32,
    /// The context at dispatch, JSON object text (ScheduleJob.workflow_context).
    pub(crate) context: Arc<str>,
    /// When the final report of this instance arrived (handoff start).
    pub(crate) reported: Mutex<Option<Instant>>,
    /// When the final report of the predecessor that released this node arrived.
    pub(crate) handoff_from: Mutex<Option<Instant>>,
}

/// A node end found at restart: (workflow instance, node, attempt, job instance, ok, result).
type Push = (u64, u64, u32, Option<u64>, bool, Option<String>);

/// What [`Shared::recover_workflows`] leaves to [`Shared::resume_workflows`].
#[derive(Debug)]
pub(crate) struct WfRecovery {
    replays: Vec<(u64, Vec<Action>)>,
    pushes: Vec<Push>,
}

/// What to do once a workflow transition's write is acknowledged.
#[derive(Debug, Default)]
struct Pending {
    commit: Option<Commit<()>>,
    jobs: Vec<(InstanceRecord, AfterCreate)>,
    children: Vec<u64>,
    cancels: Vec<WfNodeRun>,
    finished: Option<(WfStatus, Option<WfParent>, Option<String>)>,
    wf_instance: u64,
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
    match dag.time_expression() {
        TimeExpression::Api | TimeExpression::Workflow => None,
        e => e.next_within(&Lifecycle::default(), now, now),
    }
}

/// `init_params`: a JSON object, a string holding one, or absent/null = `{}`.
fn init_params(v: Option<Json>) -> Result<Map<String, Json>, ApiError> {
    match v {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(m)) => Ok(m),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Json::String(s)) => match serde_json::from_str::<Json>(&s) {
            Ok(Json::Object(m)) => Ok(m),
            _ => Err(ApiError::invalid(
                "init_params",
                "a string init_params must hold a JSON object",
            )),
        },
        Some(_) => Err(ApiError::invalid(
            "init_params",
            "must be a JSON object or a string holding one",
        )),
    }
}

fn view_of(rec: &WfInstanceRecord, m: &WorkflowInstance) -> WorkflowInstanceView {
    WorkflowInstanceView {
        id: rec.id,
        workflow_id: rec.workflow_id,
        status: m.status(),
        context: m.context().clone(),
        nodes: m
            .nodes()
            .iter()
            .map(|n| WorkflowNodeView {
                id: n.id,
                status: n.status,
                instance_id: rec.run_of(n.id).map(|r| r.instance),
                result: n.result.clone(),
            })
            .collect(),
        parent_instance_id: rec.parent.map(|p| p.instance),
        created_at: m.created_at(),
        started_at: m.started_at(),
        finished_at: m.finished_at(),
    }
}

fn view_of_stored(rec: &WfInstanceRecord) -> Result<WorkflowInstanceView, RepoError> {
    let s = rec.snapshot()?;
    Ok(WorkflowInstanceView {
        id: rec.id,
        workflow_id: rec.workflow_id,
        status: s.status,
        context: s.context,
        nodes: s
            .nodes
            .iter()
            .map(|n| WorkflowNodeView {
                id: n.id,
                status: n.status,
                instance_id: rec.run_of(n.id).map(|r| r.instance),
                result: n.result.clone(),
            })
            .collect(),
        parent_instance_id: rec.parent.map(|p| p.instance),
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
    })
}

impl Shared {
    pub(crate) fn workflow(&self, id: u64) -> Option<Arc<WfState>> {
        self.workflows.get(&id).map(|w| Arc::clone(&w))
    }

    fn wf_slot(&self, id: u64) -> Option<WfSlot> {
        self.wf_active.get(&id).map(|s| Arc::clone(&s))
    }

    /// Fills a ScheduleJob's workflow fields when its instance runs a workflow node.
    pub(crate) fn wf_fill(&self, msg: &mut ferrojob_transport::message::ScheduleJob) {
        if let Some(run) = self.node_runs.get(&InstanceId(msg.instance_id)) {
            msg.workflow_instance_id = Some(run.wf_instance);
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
    pub(crate) fn wf_instance_of(&self, id: InstanceId) -> Option<u64> {
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
    pub(crate) fn job_referenced(&self, job: JobId) -> Option<u64> {
        self.workflows.iter().find_map(|w| {
            (!w.deleted.load(Ordering::Acquire)
                && w.cur()
                    .dag
                    .def()
                    .nodes
                    .iter()
                    .any(|n| n.kind == NodeKind::Job && n.job_id == Some(job.0)))
            .then_some(w.id)
        })
    }

    // ----- transitions -----

    /// Fails RUNNING node `node` at once (a dispatch that could not even be created).
    fn fail_node(w: &mut WfInst, node: u64, reason: String, now: EpochMs) -> Vec<Action> {
        tracing::warn!(wf_instance = w.rec.id, node, %reason, "workflow node failed");
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
        trigger: Option<(u64, TriggerRecord)>,
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
        trigger: Option<(u64, TriggerRecord)>,
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
                        .job(JobId(job_id))
                        .filter(|j| !j.deleted.load(Ordering::Acquire))
                        .filter(|j| j.def().record.app_id == w.rec.app_id);
                    let Some(job) = job else {
                        let reason = format!("job {job_id} does not exist (deleted?)");
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
                        let reason = format!(
                            "nesting loop refused: workflow {workflow_id} already runs in the ancestor chain {chain:?}"
                        );
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    }
                    if chain.len() > MAX_NESTING {
                        let reason = format!(
                            "nesting refused: deeper than {MAX_NESTING} levels (ancestor chain {chain:?})"
                        );
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    }
                    let wf = self
                        .workflow(workflow_id)
                        .filter(|x| !x.deleted.load(Ordering::Acquire) && x.app == w.rec.app_id);
                    let Some(wf) = wf else {
                        let reason = format!("workflow {workflow_id} does not exist (deleted?)");
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
                        instance: id,
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
                        s => Some(format!("workflow instance {} {}", w.rec.id, s.as_str())),
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
                tokio::spawn(async move { sh.wf_stop(c.instance).await });
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
                wf_instance = p.wf_instance,
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
                        Some(child),
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
    fn wf_settle(&self, id: u64) {
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
        wf_instance: u64,
        node: u64,
        attempt: u32,
        instance: Option<u64>,
        ok: bool,
        result: Option<String>,
        reported: Option<Instant>,
    ) {
        let Some(slot) = self.wf_slot(wf_instance) else {
            tracing::debug!(
                wf_instance,
                node,
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
                tracing::debug!(wf_instance, node, "late node end ignored");
                return;
            }
            let actions = match w.machine.on_node_finished(node, ok, result, now) {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(wf_instance, node, error = %e, "node end refused");
                    return;
                }
            };
            self.advance(&mut w, actions, now, false, None, reported)
        };
        self.complete(pending).await;
    }

    /// Starts a WAITING workflow instance (created, delayed run due, nested run).
    pub(crate) async fn wf_start(self: &Arc<Self>, id: u64) {
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
                    tracing::debug!(wf_instance = id, error = %e, "start refused");
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
    pub(crate) async fn wf_stop(self: &Arc<Self>, id: u64) -> Result<(), ApiError> {
        let Some(slot) = self.wf_slot(id) else {
            return Err(ApiError::conflict(format!(
                "workflow instance {id} is not running"
            )));
        };
        let now = self.now();
        let pending = {
            let mut w = slot.lock();
            if w.machine.status().is_finished() {
                return Err(ApiError::conflict(format!(
                    "workflow instance {id} already finished ({})",
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
        trigger: Option<(u64, TriggerRecord)>,
        run: u64,
        now: EpochMs,
    ) -> Result<u64, ApiError> {
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
                "too many instances: workflow {} allows {max} at once (max_instances)",
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
    pub(crate) fn on_wf_due(self: &Arc<Self>, wf_id: u64, gen: u64, due: EpochMs, now: EpochMs) {
        let Some(wf) = self.workflow(wf_id) else {
            return;
        };
        if wf.gen.load(Ordering::Acquire) != gen || wf.deleted.load(Ordering::Acquire) {
            return;
        }
        let cur = wf.cur();
        let threshold = i64::try_from(self.config.misfire_threshold_ms).unwrap_or(i64::MAX);
        let expr = cur.dag.time_expression();
        let lc = Lifecycle::default();
        // FIRE_ONCE (the jobs' default): a late trigger fires once, the next is after now.
        let next = if now.saturating_sub(due) <= threshold {
            expr.next_within(&lc, due, due)
        } else {
            tracing::warn!(
                workflow = wf_id,
                late_ms = now.saturating_sub(due),
                "workflow misfire: fired once"
            );
            expr.next_within(&lc, due, now)
        };
        let current = || wf.gen.load(Ordering::Acquire) == gen;
        let full = wf.running.load(Ordering::Acquire) >= cur.dag.def().max_instances;
        if full {
            tracing::warn!(
                workflow = wf_id,
                "fire skipped: max_instances instances are running"
            );
            match self.repo.wf_set_next_trigger_if(wf_id, next, current) {
                Ok(Some(c)) => drop(c),
                Ok(None) => return,
                Err(e) => self.store_write_failed(&e),
            }
        } else {
            let Some(row) = self.repo.wf_fire_row(wf_id, next, current) else {
                return;
            };
            let sh = Arc::clone(self);
            let wf2 = Arc::clone(&wf);
            tokio::spawn(async move {
                if let Err(e) = sh
                    .wf_create_instance(&wf2, Map::new(), None, Some((wf_id, row)), row.runs, now)
                    .await
                {
                    tracing::warn!(workflow = wf_id, error = %e, "workflow fire failed");
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

    // ----- restart -----

    /// Rebuilds the workflows and their unfinished instances from the store (before the job
    /// instances are recovered, so that every node's job instance finds its link).
    pub(crate) fn recover_workflows(
        self: &Arc<Self>,
        loaded: &crate::server::LoadedState,
        wfs: Vec<LoadedWorkflow>,
        active: Vec<WfInstanceRecord>,
    ) -> WfRecovery {
        let now = self.now();
        let ids: std::collections::HashSet<u64> = wfs.iter().map(|w| w.record.id).collect();
        let jobs: std::collections::HashSet<u64> = loaded.jobs.iter().map(|j| j.job.id.0).collect();
        for lw in wfs {
            let id = lw.record.id;
            let dag = match lw.def.validate(|j| jobs.contains(&j), |w| ids.contains(&w)) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    tracing::error!(workflow = id, error = %e, "stored workflow no longer valid; not scheduled");
                    continue;
                }
            };
            let state = Arc::new(WfState::new(WfVersion {
                record: lw.record,
                dag,
            }));
            self.workflows.insert(id, state);
            if let Some(t) = lw.trigger.next_trigger {
                self.arm(
                    t,
                    TimerEv::Workflow {
                        wf: id,
                        gen: 1,
                        due: t,
                    },
                );
            }
        }
        let mut dags: HashMap<(u64, u64), Arc<ValidDag>> = HashMap::new();
        let mut pushes: Vec<Push> = Vec::new();
        let mut replays = Vec::new();
        let active_ids: std::collections::HashSet<u64> = active.iter().map(|r| r.id).collect();
        for rec in active {
            let key = (rec.workflow_id, rec.version);
            let dag = match dags.get(&key) {
                Some(d) => Arc::clone(d),
                None => {
                    let cur = self
                        .workflow(rec.workflow_id)
                        .map(|w| w.cur())
                        .filter(|c| c.record.version == rec.version)
                        .map(|c| Arc::clone(&c.dag));
                    let d = match cur {
                        Some(d) => d,
                        None => match self
                            .repo
                            .workflow_def(rec.workflow_id, rec.version)
                            .map_err(|e| e.to_string())
                            .and_then(|d| d.validate(|_| true, |_| true).map_err(|e| e.to_string()))
                        {
                            Ok(d) => Arc::new(d),
                            Err(e) => {
                                tracing::error!(wf_instance = rec.id, error = %e, "workflow instance not restored");
                                continue;
                            }
                        },
                    };
                    dags.insert(key, Arc::clone(&d));
                    d
                }
            };
            let snap = match rec.snapshot() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(wf_instance = rec.id, error = %e, "workflow instance not restored");
                    continue;
                }
            };
            let (machine, actions) = match WorkflowInstance::restore(dag, snap, now) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(wf_instance = rec.id, error = %e, "workflow instance not restored");
                    continue;
                }
            };
            if let Some(wf) = self.workflow(rec.workflow_id) {
                wf.running.fetch_add(1, Ordering::AcqRel);
            }
            let id = rec.id;
            if machine.status() == WfStatus::Waiting {
                self.arm(
                    rec.delayed_until.unwrap_or(now).max(now),
                    TimerEv::WfStart(id),
                );
            }
            for n in machine
                .nodes()
                .iter()
                .filter(|n| n.status == NodeStatus::Running)
            {
                let Some(run) = rec.run_of(n.id) else {
                    pushes.push((
                        id,
                        n.id,
                        n.attempt,
                        None,
                        false,
                        Some("node run lost".to_owned()),
                    ));
                    continue;
                };
                if run.nested {
                    if active_ids.contains(&run.instance) {
                        continue;
                    }
                    match self
                        .repo
                        .get_wf_instance(run.instance)
                        .and_then(|c| c.snapshot())
                    {
                        Ok(s) if s.status.is_finished() => {
                            let ok = s.status == WfStatus::Succeed;
                            let result = if ok {
                                serde_json::to_string(&s.context).ok()
                            } else {
                                Some(format!(
                                    "workflow instance {} {}",
                                    run.instance,
                                    s.status.as_str()
                                ))
                            };
                            pushes.push((id, n.id, n.attempt, Some(run.instance), ok, result));
                        }
                        Ok(_) => {}
                        Err(e) => pushes.push((
                            id,
                            n.id,
                            n.attempt,
                            Some(run.instance),
                            false,
                            Some(e.to_string()),
                        )),
                    }
                    continue;
                }
                let iid = InstanceId(run.instance);
                match self.repo.get_instance(iid) {
                    Ok(inst) if inst.status.is_final() => pushes.push((
                        id,
                        n.id,
                        n.attempt,
                        Some(run.instance),
                        inst.status == InstanceStatus::Succeed,
                        inst.result.clone(),
                    )),
                    Ok(_) => {
                        let link = self.repo.node_link(iid).ok().flatten();
                        let context = link.map_or_else(|| "{}".to_owned(), |l| l.context_json);
                        self.node_runs.insert(
                            iid,
                            Arc::new(NodeRun {
                                wf_instance: id,
                                node: n.id,
                                attempt: n.attempt,
                                context: Arc::from(context.as_str()),
                                reported: Mutex::new(None),
                                handoff_from: Mutex::new(None),
                            }),
                        );
                    }
                    Err(e) => pushes.push((id, n.id, n.attempt, None, false, Some(e.to_string()))),
                }
            }
            self.wf_active.insert(
                id,
                Arc::new(Mutex::new(WfInst {
                    rec,
                    machine,
                    counted: true,
                })),
            );
            if !actions.is_empty() {
                replays.push((id, actions));
            }
        }
        WfRecovery { replays, pushes }
    }

    /// Runs what [`recover_workflows`](Shared::recover_workflows) found due, once the jobs
    /// and their instances are recovered too.
    pub(crate) fn resume_workflows(self: &Arc<Self>, r: WfRecovery) {
        let WfRecovery { replays, pushes } = r;
        let sh = Arc::clone(self);
        tokio::spawn(async move {
            for (id, actions) in replays {
                let Some(slot) = sh.wf_slot(id) else { continue };
                let p = {
                    let mut w = slot.lock();
                    sh.advance(&mut w, actions, sh.now(), false, None, None)
                };
                sh.complete(p).await;
            }
            for (wfi, node, attempt, inst, ok, result) in pushes {
                tracing::info!(
                    wf_instance = wfi,
                    node,
                    "node finished while the server was down; pushed"
                );
                sh.wf_node_done(wfi, node, attempt, inst, ok, result, None)
                    .await;
            }
        });
    }
}

// ----- the API -----

impl NodeApi {
    fn wf_of(&self, app: &AppRef, id: u64) -> Result<Arc<WfState>, ApiError> {
        match self.0.workflow(id) {
            Some(w) if !w.deleted.load(Ordering::Acquire) && w.app == app.id => Ok(w),
            _ => Err(ApiError::not_found("workflow", id)),
        }
    }

    fn validate(&self, app: &AppRef, body: WorkflowDef) -> Result<ValidDag, ApiError> {
        let sh = &self.0;
        body.validate(
            |j| {
                sh.job(JobId(j)).is_some_and(|j| {
                    !j.deleted.load(Ordering::Acquire) && j.def().record.app_id == app.id
                })
            },
            |w| {
                sh.workflow(w)
                    .is_some_and(|w| !w.deleted.load(Ordering::Acquire) && w.app == app.id)
            },
        )
        .map_err(wf_error)
    }

    fn wf_view(&self, wf: &WfState) -> WorkflowView {
        let cur = wf.cur();
        WorkflowView {
            id: wf.id,
            app_id: wf.app.0,
            body: cur.dag.def().clone(),
            next_trigger_time: self.0.repo.wf_trigger(wf.id).and_then(|t| t.next_trigger),
            created_at: cur.record.created_at,
            updated_at: cur.record.updated_at,
        }
    }

    fn wf_instance_view(&self, app: &AppRef, id: u64) -> Result<WorkflowInstanceView, ApiError> {
        if let Some(slot) = self.0.wf_slot(id) {
            let w = slot.lock();
            if w.rec.app_id != app.id {
                return Err(ApiError::not_found("workflow instance", id));
            }
            return Ok(view_of(&w.rec, &w.machine));
        }
        let rec = self.0.repo.get_wf_instance(id)?;
        if rec.app_id != app.id {
            return Err(ApiError::not_found("workflow instance", id));
        }
        Ok(view_of_stored(&rec)?)
    }

    /// The slot of workflow instance `id` (loaded from the store when it is finished).
    fn wf_slot_loaded(&self, app: &AppRef, id: u64) -> Result<WfSlot, ApiError> {
        let sh = &self.0;
        if let Some(slot) = sh.wf_slot(id) {
            if slot.lock().rec.app_id != app.id {
                return Err(ApiError::not_found("workflow instance", id));
            }
            return Ok(slot);
        }
        let rec = sh.repo.get_wf_instance(id)?;
        if rec.app_id != app.id {
            return Err(ApiError::not_found("workflow instance", id));
        }
        let wf = sh
            .workflow(rec.workflow_id)
            .filter(|w| !w.deleted.load(Ordering::Acquire));
        let Some(wf) = wf else {
            return Err(ApiError::conflict(format!(
                "workflow {} of instance {id} was deleted",
                rec.workflow_id
            )));
        };
        let cur = wf.cur();
        let dag = if cur.record.version == rec.version {
            Arc::clone(&cur.dag)
        } else {
            let def = sh.repo.workflow_def(rec.workflow_id, rec.version)?;
            Arc::new(def.validate(|_| true, |_| true).map_err(wf_error)?)
        };
        let snap = rec.snapshot()?;
        let (machine, _) = WorkflowInstance::restore(dag, snap, sh.now())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let slot: WfSlot = Arc::new(Mutex::new(WfInst {
            rec,
            machine,
            counted: false,
        }));
        let entry = sh.wf_active.entry(id).or_insert_with(|| Arc::clone(&slot));
        Ok(Arc::clone(&entry))
    }

    pub(crate) async fn wf_create(
        &self,
        app: AppRef,
        body: WorkflowDef,
    ) -> Result<Created, ApiError> {
        let sh = &self.0;
        let dag = self.validate(&app, body)?;
        let now = sh.now();
        let next = initial_next(&dag, now);
        let rec = sh
            .await_commit(sh.repo.create_workflow(app.id, dag.def(), next, now)?)
            .await?;
        let id = rec.id;
        let state = Arc::new(WfState::new(WfVersion {
            record: rec,
            dag: Arc::new(dag),
        }));
        sh.workflows.insert(id, state);
        if let Some(n) = next {
            sh.arm(
                n,
                TimerEv::Workflow {
                    wf: id,
                    gen: 1,
                    due: n,
                },
            );
        }
        Ok(Created { id })
    }

    pub(crate) async fn wf_list(
        &self,
        app: AppRef,
        q: PageQuery,
    ) -> Result<WorkflowList, ApiError> {
        let sh = &self.0;
        let limit = q
            .limit
            .map_or(100, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let page = sh.repo.list_workflows(app.id, q.cursor, limit)?;
        let items = page
            .items
            .iter()
            .filter_map(|r| sh.workflow(r.id))
            .filter(|w| !w.deleted.load(Ordering::Acquire))
            .map(|w| self.wf_view(&w))
            .collect();
        Ok(WorkflowList {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub(crate) async fn wf_get(&self, app: AppRef, id: u64) -> Result<WorkflowView, ApiError> {
        let wf = self.wf_of(&app, id)?;
        Ok(self.wf_view(&wf))
    }

    pub(crate) async fn wf_update(
        &self,
        app: AppRef,
        id: u64,
        body: WorkflowDef,
    ) -> Result<WorkflowView, ApiError> {
        let sh = &self.0;
        let wf = self.wf_of(&app, id)?;
        let dag = self.validate(&app, body)?;
        // A nested reference to itself (directly) is a loop: refuse it here already.
        if dag
            .def()
            .nodes
            .iter()
            .any(|n| n.kind == NodeKind::NestedWorkflow && n.workflow_id == Some(id))
        {
            return Err(ApiError::invalid(
                "nodes",
                format!("workflow {id} cannot nest itself"),
            ));
        }
        let now = sh.now();
        let next = initial_next(&dag, now);
        let gen = wf.gen.fetch_add(1, Ordering::AcqRel) + 1;
        let rec = sh
            .await_commit(sh.repo.update_workflow(id, dag.def(), next, now)?)
            .await?;
        *wf.cur.write() = Arc::new(WfVersion {
            record: rec,
            dag: Arc::new(dag),
        });
        if let Some(n) = next {
            sh.arm(
                n,
                TimerEv::Workflow {
                    wf: id,
                    gen,
                    due: n,
                },
            );
        }
        Ok(self.wf_view(&wf))
    }

    pub(crate) async fn wf_delete(&self, app: AppRef, id: u64) -> Result<(), ApiError> {
        let sh = &self.0;
        let wf = self.wf_of(&app, id)?;
        // Slots are collected first: no instance mutex is taken under the map's locks.
        let slots: Vec<WfSlot> = sh.wf_active.iter().map(|e| Arc::clone(e.value())).collect();
        let running = slots.iter().any(|s| {
            let w = s.lock();
            w.rec.workflow_id == id && !w.machine.status().is_finished()
        });
        if running {
            return Err(ApiError::conflict(format!(
                "workflow {id} has an instance running; stop it first"
            )));
        }
        let nester = sh.workflows.iter().find_map(|w| {
            (w.id != id
                && !w.deleted.load(Ordering::Acquire)
                && w.cur()
                    .dag
                    .def()
                    .nodes
                    .iter()
                    .any(|n| n.kind == NodeKind::NestedWorkflow && n.workflow_id == Some(id)))
            .then_some(w.id)
        });
        if let Some(other) = nester {
            return Err(ApiError::conflict(format!(
                "workflow {id} is nested by workflow {other}"
            )));
        }
        wf.gen.fetch_add(1, Ordering::AcqRel);
        sh.await_commit(sh.repo.delete_workflow(id)?).await?;
        wf.deleted.store(true, Ordering::Release);
        sh.workflows.remove(&id);
        Ok(())
    }

    pub(crate) async fn wf_run(
        &self,
        app: AppRef,
        id: u64,
        r: RunWorkflow,
    ) -> Result<WorkflowRunCreated, ApiError> {
        let sh = &self.0;
        let wf = self.wf_of(&app, id)?;
        if r.delay_ms > MAX_DELAY_MS {
            return Err(ApiError::invalid(
                "delay_ms",
                format!("at most {MAX_DELAY_MS}, got {}", r.delay_ms),
            ));
        }
        let init = init_params(r.init_params)?;
        let now = sh.now();
        let delay = i64::try_from(r.delay_ms).unwrap_or(0);
        let due = (delay > 0).then(|| now.saturating_add(delay));
        let id = sh.wf_create_instance(&wf, init, due, None, 0, now).await?;
        Ok(WorkflowRunCreated {
            workflow_instance_id: id,
        })
    }

    pub(crate) async fn wf_instance(
        &self,
        app: AppRef,
        id: u64,
    ) -> Result<WorkflowInstanceView, ApiError> {
        self.wf_instance_view(&app, id)
    }

    pub(crate) async fn wf_instances(
        &self,
        app: AppRef,
        q: WorkflowInstanceQuery,
    ) -> Result<WorkflowInstanceList, ApiError> {
        let sh = &self.0;
        let limit = q
            .limit
            .map_or(100, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let page = sh
            .repo
            .list_wf_instances(app.id, q.workflow_id, q.cursor, limit)?;
        let mut items = Vec::with_capacity(page.items.len());
        for rec in &page.items {
            match sh.wf_slot(rec.id) {
                Some(slot) => {
                    let w = slot.lock();
                    items.push(view_of(&w.rec, &w.machine));
                }
                None => items.push(view_of_stored(rec).map_err(to_api)?),
            }
        }
        Ok(WorkflowInstanceList {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub(crate) async fn wf_action(
        &self,
        app: AppRef,
        id: u64,
        a: WorkflowInstanceAction,
    ) -> Result<WorkflowInstanceView, ApiError> {
        let sh = &self.0;
        match a {
            WorkflowInstanceAction::Stop => {
                self.wf_instance_view(&app, id)?;
                sh.wf_stop(id).await?;
            }
            WorkflowInstanceAction::Retry => {
                let slot = self.wf_slot_loaded(&app, id)?;
                let now = sh.now();
                let pending = {
                    let mut w = slot.lock();
                    let actions = match w.machine.retry(now) {
                        Ok(a) => a,
                        Err(e) => {
                            drop(w);
                            sh.wf_settle(id);
                            return Err(ApiError::conflict(e.to_string()));
                        }
                    };
                    if !w.counted {
                        if let Some(wf) = sh.workflow(w.rec.workflow_id) {
                            wf.running.fetch_add(1, Ordering::AcqRel);
                        }
                        w.counted = true;
                    }
                    sh.metrics.wf_started.fetch_add(1, Ordering::Relaxed);
                    sh.advance(&mut w, actions, now, false, None, None)
                };
                if pending.commit.is_none() {
                    return Err(ApiError::unavailable("the store refuses writes"));
                }
                sh.complete(pending).await;
            }
        }
        self.wf_instance_view(&app, id)
    }

    pub(crate) async fn wf_mark_success(
        &self,
        app: AppRef,
        id: u64,
        node: u64,
    ) -> Result<WorkflowInstanceView, ApiError> {
        let sh = &self.0;
        let slot = self.wf_slot_loaded(&app, id)?;
        let now = sh.now();
        let pending = {
            let mut w = slot.lock();
            let actions = match w.machine.mark_success(node, now) {
                Ok(a) => a,
                Err(e) => {
                    drop(w);
                    sh.wf_settle(id);
                    return Err(match e {
                        crate::workflow::InstanceError::UnknownNode(n) => {
                            ApiError::not_found("node", n)
                        }
                        e => ApiError::conflict(e.to_string()),
                    });
                }
            };
            sh.advance(&mut w, actions, now, false, None, None)
        };
        if pending.commit.is_none() {
            sh.wf_settle(id);
            return Err(ApiError::unavailable("the store refuses writes"));
        }
        sh.complete(pending).await;
        self.wf_instance_view(&app, id)
    }
}
