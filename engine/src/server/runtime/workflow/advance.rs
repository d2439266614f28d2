//! A workflow instance's transition: performing the state machine's actions (new node
//! instances, nested runs, cancels) as one batch, then starting what it created once the
//! batch is acknowledged; the push from a node's final report.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::Value as Json;

use crate::ids::{InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::workflow_repo::{
    NodeLinkRecord, WfInstanceRecord, WfNodeRun, WfParent, WfWrite,
};
use crate::server::{InstanceRecord, TriggerRecord};
use crate::time_expression::EpochMs;
use crate::workflow::{Action, InstanceStatus as WfStatus, NodeStatus, WorkflowInstance};

use super::{NodeRun, Pending, WfInst, MAX_NESTING};
use crate::server::runtime::state::{InstState, Runtime};
use crate::server::runtime::write::{AfterCreate, Follow};

impl Runtime {
    /// Fails RUNNING node `node` at once (a dispatch that could not even be created).
    pub(super) fn fail_node(
        w: &mut WfInst,
        node: NodeId,
        reason: String,
        now: EpochMs,
    ) -> Vec<Action> {
        tracing::warn!(wf_instance = w.rec.id.0, node = node.0, %reason, "workflow node failed");
        w.machine
            .on_node_finished(node, false, Some(reason), now)
            .unwrap_or_default()
    }

    /// Performs `actions` of workflow instance `w` (under its lock) and submits the
    /// transition as one batch. `handoff`: when the final report that caused it arrived.
    pub(super) fn advance(
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

    /// [`advance`](Runtime::advance), also saving `node_final` (a node's job instance that
    /// just reached its final status, and the status last written for it) in the same batch.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn advance_with(
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
    pub(super) fn complete(
        self: &Arc<Self>,
        p: Pending,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let sh = Arc::clone(self);
        Box::pin(async move { sh.complete_now(p).await })
    }

    pub(super) async fn complete_now(self: &Arc<Self>, p: Pending) {
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
    pub(super) fn wf_still_wanted(&self, id: InstanceId) -> bool {
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
    pub(super) fn wf_settle(&self, id: WorkflowInstanceId) {
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
    pub(super) fn stop_node_instance(self: &Arc<Self>, id: InstanceId) {
        let Some(slot) = self.slot(id) else { return };
        let now = self.now();
        let (commit, follow, worker, app) = {
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
            (c, f, worker, st.rec.app_id)
        };
        if let Some(w) = worker {
            self.send_stop(app, &w, id);
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
}
