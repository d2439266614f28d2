//! A workflow instance's transition: performing the state machine's actions (new node
//! instances, nested runs, cancels) as one batch, then starting what it created once the
//! batch is acknowledged; the push from a node's final report.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::ids::{InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::workflow_repo::{
    NodeLinkRecord, WfInstanceRecord, WfNodeRun, WfParent, WfWrite,
};
use crate::server::{InstanceRecord, TriggerRecord};
use crate::time_expression::EpochMs;
use crate::workflow::{Action, InstanceStatus as WfStatus, NodeStatus, WorkflowInstance};

use super::{node_trigger_key, NodeRun, Pending, Transition, WfInst, MAX_NESTING};
use crate::server::core::write::{AfterCreate, Follow};
use crate::server::core::{Core, Effect, InstState};

impl Core {
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
    pub(crate) fn advance(
        &mut self,
        w: &mut WfInst,
        actions: Vec<Action>,
        now: EpochMs,
        created: bool,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        handoff_us: Option<i64>,
    ) -> Option<Transition> {
        self.advance_with(w, actions, now, created, trigger, handoff_us, None)
    }

    /// [`advance`](Core::advance), also saving `node_final` (a node's job instance that
    /// just reached its final status, and the status last written for it) in the same batch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn advance_with(
        &mut self,
        w: &mut WfInst,
        actions: Vec<Action>,
        now: EpochMs,
        created: bool,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        handoff_us: Option<i64>,
        node_final: Option<(InstanceRecord, Option<InstanceStatus>)>,
    ) -> Option<Transition> {
        let mut queue: VecDeque<Action> = actions.into();
        let mut write = WfWrite {
            instances: node_final.into_iter().collect(),
            ..WfWrite::default()
        };
        let mut p = Pending {
            wf_instance: w.rec.id,
            created,
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
                        .live_job(job_id)
                        .filter(|j| j.def.record.app_id == w.rec.app_id)
                        .map(|j| j.id);
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
                    // The node runs for its workflow instance's logical trigger time; its
                    // status dates from now, so the checkers' clocks start at creation.
                    let mut rec =
                        InstanceRecord::new(job, w.rec.app_id, params, w.rec.trigger_time);
                    rec.status_time = now;
                    rec.id = id;
                    if let Err(e) = rec.validate() {
                        queue.extend(Self::fail_node(w, node, e.to_string(), now));
                        continue;
                    }
                    let then = match self.dispatch_new(&mut rec, now) {
                        Some(nd) => AfterCreate::Dispatched(nd),
                        None => AfterCreate::Dispatch { at: None },
                    };
                    let run = NodeRun {
                        wf_instance: w.rec.id,
                        node,
                        attempt,
                        context: Arc::from(context_json.as_str()),
                        trigger_key: Arc::from(node_trigger_key(&w.rec, node, attempt)),
                        created_at: Some(now),
                        reported_us: None,
                        handoff_from_us: handoff_us,
                    };
                    self.node_runs.insert(id, run);
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
                    let cur = self
                        .workflow(workflow_id)
                        .filter(|x| x.app == w.rec.app_id)
                        .map(|x| x.cur());
                    let Some(cur) = cur else {
                        let reason = format!("{workflow_id} does not exist (deleted?)");
                        queue.extend(Self::fail_node(w, node, reason, now));
                        continue;
                    };
                    let mut init = (*context).clone();
                    if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(&params) {
                        init.extend(m);
                    }
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
                        // A nested run stands for its parent's trigger.
                        trigger_time: w.rec.trigger_time,
                    };
                    if let Err(e) = rec.set_snapshot(&machine.snapshot()) {
                        queue.extend(Self::fail_node(w, node, e.to_string(), now));
                        continue;
                    }
                    if let Some(wf) = self.workflows.get_mut(&workflow_id) {
                        wf.running += 1;
                    }
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
            self.unrun(w.rec.workflow_id);
        }
        if let Err(e) = w.rec.set_snapshot(&w.machine.snapshot()) {
            self.write_failed(&e);
        }
        write
            .wf_instances
            .insert(0, (w.rec.clone(), created, finished));
        write.trigger = trigger;
        let commit = match self.repo.write_wf(&write) {
            Ok(c) => c,
            Err(e) => {
                self.write_failed(&e);
                // Nothing was submitted: undo the in-memory preparations.
                for (rec, then) in p.jobs.drain(..) {
                    self.node_runs.remove(&rec.id);
                    self.create_failed(then);
                }
                for (_, child) in children {
                    self.unrun(child.rec.workflow_id);
                }
                return None;
            }
        };
        for (id, inst) in children {
            self.wf_active.insert(id, inst);
            p.children.push(id);
        }
        Some((commit, p))
    }

    /// A transition's write came back (`ok`: acknowledged): start what it created and report
    /// what ended.
    pub(crate) fn complete(&mut self, p: Pending, ok: bool, now: EpochMs) {
        if !ok {
            for (rec, then) in p.jobs {
                self.node_runs.remove(&rec.id);
                self.create_failed(then);
            }
            if p.created {
                if let Some(w) = self.wf_active.remove(&p.wf_instance) {
                    if w.counted {
                        self.unrun(w.rec.workflow_id);
                    }
                }
            }
            return;
        }
        for (rec, then) in p.jobs {
            let id = rec.id;
            self.after_create(rec, then, now);
            // A later transition may have cancelled the node before this one's instance was
            // owned (its Cancel then found nothing to stop): stop it now.
            if !self.wf_still_wanted(id) {
                self.stop_node_instance(id, now);
            }
        }
        for child in p.children {
            self.wf_start(child, now);
        }
        for c in p.cancels {
            if c.nested {
                let _ = self.wf_stop(WorkflowInstanceId(c.instance), now);
            } else {
                self.stop_node_instance(InstanceId(c.instance), now);
            }
        }
        let workflow = self
            .wf_active
            .get(&p.wf_instance)
            .map(|w| w.rec.workflow_id);
        self.wf_settle(p.wf_instance);
        if let Some((id, job, run)) = p.finalize {
            self.finalize(id, job, run, now);
        }
        if let Some((status, parent, result)) = p.finished {
            self.metrics.wf_finished(status);
            if let Some(wf) = workflow {
                self.count_wf_finished(wf);
            }
            tracing::info!(
                wf_instance = p.wf_instance.0,
                status = status.as_str(),
                "workflow instance finished"
            );
            if let Some(parent) = parent {
                let ok = status == WfStatus::Succeed;
                self.wf_node_done(
                    parent.instance,
                    parent.node,
                    parent.attempt,
                    Some(p.wf_instance.0),
                    ok,
                    result,
                    None,
                    now,
                );
            }
        }
    }

    /// Whether job instance `id` still runs its workflow node's current attempt.
    pub(crate) fn wf_still_wanted(&self, id: InstanceId) -> bool {
        let Some(run) = self.node_runs.get(&id) else {
            // Already final and pushed.
            return true;
        };
        let Some(w) = self.wf_active.get(&run.wf_instance) else {
            return false;
        };
        let running = w
            .machine
            .node(run.node)
            .is_some_and(|n| n.status == NodeStatus::Running && n.attempt == run.attempt);
        running && w.rec.run_of(run.node).is_some_and(|r| r.instance == id.0)
    }

    /// Counts a finished instance of workflow `wf`: every quarter of
    /// `keep_finished_workflow_runs` finishes, its finished instances beyond that count are
    /// deleted in the background (as a job's finished runs are, `report.rs`).
    fn count_wf_finished(&mut self, wf: WorkflowId) {
        let keep = self.config.keep_finished_workflow_runs;
        let every = u32::try_from(keep / 4).unwrap_or(u32::MAX).max(1);
        let Some(w) = self.workflows.get_mut(&wf).filter(|w| !w.deleted) else {
            return;
        };
        w.finished_since_prune += 1;
        if w.finished_since_prune >= every {
            w.finished_since_prune = 0;
            self.emit(Effect::PruneWorkflow(wf));
        }
    }

    /// Drops a finished workflow instance from memory (its `max_instances` slot was released
    /// by the transition that finished it).
    pub(crate) fn wf_settle(&mut self, id: WorkflowInstanceId) {
        let done = self
            .wf_active
            .get(&id)
            .is_some_and(|w| w.machine.status().is_finished());
        if !done {
            return;
        }
        if let Some(w) = self.wf_active.remove(&id) {
            if w.counted {
                self.unrun(w.rec.workflow_id);
            }
        }
    }

    /// Stops a node's job instance (FAIL_FAST, workflow stop) through the usual stop path.
    pub(crate) fn stop_node_instance(&mut self, id: InstanceId, now: EpochMs) {
        self.with_inst(id, |core, st| {
            let old = st.rec.status;
            if old.is_final() {
                return;
            }
            let moved = if old == InstanceStatus::WaitingDispatch {
                st.rec.cancel(now)
            } else {
                st.rec.stop(now)
            };
            if moved.is_err() {
                return;
            }
            core.note(st.rec.job_id, Some(old), st.rec.status);
            if old != InstanceStatus::WaitingDispatch {
                if let Some(w) = st.rec.worker.clone() {
                    core.send_stop(st.rec.app_id, &w, id);
                }
            }
            let follow = Follow::Final {
                id,
                job: st.rec.job_id,
                run: st.rec.run,
            };
            core.save(st, follow);
        });
    }

    /// With job instance `st` (taken out of the core), which a worker report just made final:
    /// if it runs a workflow node that is waiting for it, makes the workflow transition now
    /// and submits the instance's final record, the new snapshot and the successors' new job
    /// instances as ONE batch; the successors are dispatched as soon as it is acknowledged.
    /// `false`: not a node, or a late one; the caller saves the instance as usual.
    pub(crate) fn wf_push_batched(&mut self, st: &mut InstState, now: EpochMs) -> bool {
        let id = st.rec.id;
        let Some(run) = self.node_runs.get(&id) else {
            return false;
        };
        let (wfi, node, attempt) = (run.wf_instance, run.node, run.attempt);
        let reported = self.now_us;
        let t = self.with_wf(wfi, |core, w| {
            let current = w.machine.node(node).map(|n| (n.status, n.attempt));
            let same_run = w
                .rec
                .run_of(node)
                .is_some_and(|r| !r.nested && r.instance == id.0);
            if current != Some((NodeStatus::Running, attempt)) || !same_run {
                return None;
            }
            let ok = st.rec.status == InstanceStatus::Succeed;
            let actions = w
                .machine
                .on_node_finished(node, ok, st.rec.result.clone(), now)
                .ok()?;
            let node_final = Some((st.rec.clone(), st.persisted.take()));
            Some(core.advance_with(w, actions, now, false, None, Some(reported), node_final))
        });
        let Some(Some(t)) = t else {
            return false;
        };
        self.node_runs.remove(&id);
        if let Some((c, mut p)) = t {
            st.persisted = Some(st.rec.status);
            p.finalize = Some((id, st.rec.job_id, st.rec.run));
            self.emit_transition(Some((c, p)));
        }
        true
    }
}
