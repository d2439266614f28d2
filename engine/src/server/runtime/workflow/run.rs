//! Starting, stopping and firing workflow instances, and a node's end pushed to its
//! workflow instance.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{Map, Value as Json};

use crate::api::ApiError;
use crate::ids::{InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::schedule::Schedule;
use crate::server::workflow_repo::{WfInstanceRecord, WfWrite};
use crate::server::TriggerRecord;
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy};
use crate::workflow::{InstanceStatus as WfStatus, NodeStatus, WorkflowInstance};

use super::{NodeRun, WfInst, WfSlot, WfState};
use crate::server::runtime::state::{Runtime, TimerEv};

impl Runtime {
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
    pub(super) async fn wf_create_instance(
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
