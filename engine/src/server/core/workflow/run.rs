//! Starting, stopping and firing workflow instances, and a node's end pushed to its
//! workflow instance.

use serde_json::{Map, Value as Json};

use crate::api::ApiError;
use crate::ids::{InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::schedule::Schedule;
use crate::server::workflow_repo::{WfInstanceRecord, WfWrite};
use crate::server::TriggerRecord;
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy};
use crate::workflow::{InstanceStatus as WfStatus, NodeStatus, WorkflowInstance};

use super::{NodeRun, Transition, WfInst};
use crate::server::core::{Awaited, Core, Effect, TimerEv};

impl Core {
    /// A job instance that runs a workflow node reached its final status (its final write is
    /// acknowledged): push it to its workflow instance.
    pub(crate) fn wf_job_final(
        &mut self,
        id: InstanceId,
        run: NodeRun,
        status: InstanceStatus,
        result: Option<String>,
        now: EpochMs,
    ) {
        self.wf_node_done(
            run.wf_instance,
            run.node,
            run.attempt,
            Some(id.0),
            status == InstanceStatus::Succeed,
            result,
            run.reported_us,
            now,
        );
    }

    /// Node `node` (attempt `attempt`, run by `instance` if known) of workflow instance
    /// `wf_instance` ended.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn wf_node_done(
        &mut self,
        wf_instance: WorkflowInstanceId,
        node: NodeId,
        attempt: u32,
        instance: Option<u64>,
        ok: bool,
        result: Option<String>,
        reported_us: Option<i64>,
        now: EpochMs,
    ) {
        let t = self.with_wf(wf_instance, |core, w| {
            let current = w.machine.node(node).map(|n| (n.status, n.attempt));
            let same_run =
                instance.is_none_or(|i| w.rec.run_of(node).is_some_and(|r| r.instance == i));
            if current != Some((NodeStatus::Running, attempt)) || !same_run {
                tracing::debug!(
                    wf_instance = wf_instance.0,
                    node = node.0,
                    "late node end ignored"
                );
                return None;
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
                    return None;
                }
            };
            core.advance(w, actions, now, false, None, reported_us)
        });
        match t {
            None => tracing::debug!(
                wf_instance = wf_instance.0,
                node = node.0,
                "node end for a workflow instance not running"
            ),
            Some(t) => {
                self.emit_transition(t);
            }
        }
    }

    /// Starts a WAITING workflow instance (created, delayed run due, nested run).
    pub(crate) fn wf_start(&mut self, id: WorkflowInstanceId, now: EpochMs) {
        let t = self.with_wf(id, |core, w| {
            if w.machine.status() != WfStatus::Waiting {
                return None;
            }
            if w.rec.delayed_until.is_some_and(|d| d > now) {
                return None;
            }
            w.rec.delayed_until = None;
            let actions = match w.machine.start(now) {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(wf_instance = id.0, error = %e, "start refused");
                    return None;
                }
            };
            core.metrics.count_wf_started();
            core.advance(w, actions, now, false, None, None)
        });
        if let Some(t) = t {
            self.emit_transition(t);
        }
    }

    /// Stops workflow instance `id` (user stop, FAIL_FAST of a parent): the transition,
    /// submitted. Conflict when it is already finished or not running.
    pub(crate) fn wf_stop_transition(
        &mut self,
        id: WorkflowInstanceId,
        now: EpochMs,
    ) -> Result<Transition, ApiError> {
        let t = self.with_wf(id, |core, w| {
            if w.machine.status().is_finished() {
                return Err(ApiError::conflict(format!(
                    "{id} already finished ({})",
                    w.machine.status().as_str()
                )));
            }
            let actions = w.machine.stop(now);
            core.advance(w, actions, now, false, None, None)
                .ok_or_else(|| ApiError::unavailable("the store refuses writes"))
        });
        t.unwrap_or_else(|| Err(ApiError::conflict(format!("{id} is not running"))))
    }

    /// [`wf_stop_transition`](Core::wf_stop_transition), its follow-up emitted.
    pub(crate) fn wf_stop(&mut self, id: WorkflowInstanceId, now: EpochMs) -> Result<(), ApiError> {
        let t = self.wf_stop_transition(id, now)?;
        self.emit_transition(Some(t));
        Ok(())
    }

    /// Creates a workflow instance of `wf` (an API run, whose logical trigger time is `now`)
    /// and starts it unless delayed: the transition that writes it, submitted.
    pub(crate) fn wf_create_instance(
        &mut self,
        wf: WorkflowId,
        init: Map<String, Json>,
        delay_until: Option<EpochMs>,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        run: u64,
        now: EpochMs,
    ) -> Result<(WorkflowInstanceId, Transition), ApiError> {
        self.wf_create_instance_at(wf, init, delay_until, trigger, run, now, now)
    }

    /// Creates a workflow instance of `wf` (a run, a fire, a backfill run) standing for
    /// `trigger_time` and starts it unless delayed: the transition that writes it, submitted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn wf_create_instance_at(
        &mut self,
        wf: WorkflowId,
        init: Map<String, Json>,
        delay_until: Option<EpochMs>,
        trigger: Option<(WorkflowId, TriggerRecord)>,
        run: u64,
        trigger_time: EpochMs,
        now: EpochMs,
    ) -> Result<(WorkflowInstanceId, Transition), ApiError> {
        let Some(state) = self.workflows.get_mut(&wf).filter(|w| !w.deleted) else {
            return Err(ApiError::not_found("workflow", wf.0));
        };
        let cur = state.cur();
        let app = state.app;
        let max = cur.dag.def().max_instances;
        if max != 0 && state.running >= max {
            if let Some(t) = trigger {
                // The fire is refused, but its trigger row (moved on) is still written.
                let write = WfWrite {
                    trigger: Some(t),
                    ..WfWrite::default()
                };
                match self.repo.write_wf(&write) {
                    Ok(c) => self.emit(Effect::Await(Awaited::Detached(c))),
                    Err(e) => self.write_failed(&e),
                }
            }
            return Err(ApiError::conflict(format!(
                "too many instances: {wf} allows {max} at once (max_instances)"
            )));
        }
        state.running += 1;
        let machine =
            match WorkflowInstance::new(std::sync::Arc::clone(&cur.dag), Json::Object(init), now) {
                Ok(m) => m,
                Err(e) => {
                    self.unrun(wf);
                    return Err(ApiError::invalid("init_params", e));
                }
            };
        let id = match self.repo.new_wf_instance_id() {
            Ok(id) => id,
            Err(e) => {
                self.unrun(wf);
                return Err(e.into());
            }
        };
        let rec = WfInstanceRecord {
            id,
            workflow_id: wf,
            version: cur.record.version,
            app_id: app,
            parent: None,
            ancestors: Vec::new(),
            snapshot_json: String::new(),
            nodes: Vec::new(),
            delayed_until: delay_until,
            run,
            trigger_time,
        };
        let mut w = WfInst {
            rec,
            machine,
            counted: true,
        };
        let actions = if delay_until.is_none() {
            self.metrics.count_wf_started();
            w.machine.start(now).unwrap_or_default()
        } else {
            Vec::new()
        };
        let t = self.advance(&mut w, actions, now, true, trigger, None);
        let Some(t) = t else {
            self.unrun(wf);
            return Err(ApiError::unavailable("the store refuses writes"));
        };
        self.wf_active.insert(id, w);
        if let Some(due) = delay_until {
            self.arm(due, TimerEv::WfStart(id));
        }
        Ok((id, t))
    }

    /// A workflow's trigger came due: fire it and arm the next one.
    pub(crate) fn on_wf_due(&mut self, wf_id: WorkflowId, gen: u64, due: EpochMs, now: EpochMs) {
        let Some(wf) = self.workflow(wf_id) else {
            return;
        };
        if wf.gen != gen {
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
        // Room under max_instances, taken once: the instances of this plan are counted only
        // when they are created.
        let max = cur.dag.def().max_instances;
        let (app, calendars) = (wf.app, cur.dag.def().calendars.clone());
        let mut room = if max == 0 {
            u32::MAX
        } else {
            max.saturating_sub(wf.running)
        };
        if plan.fires.is_empty() {
            match self.repo.wf_set_next_trigger_if(wf_id, next, || true) {
                Ok(Some(c)) => self.emit(Effect::Await(Awaited::Detached(c.discard_value()))),
                Ok(None) => return,
                Err(e) => self.write_failed(&e),
            }
        }
        for (i, at) in plan.fires.iter().enumerate() {
            let next_for = plan.fires.get(i + 1).copied().or(next);
            let excluded = self.excluding_calendar(app, &calendars, *at);
            if room == 0 || excluded.is_some() {
                if let Some(cal) = excluded {
                    self.metrics.count_calendar_skip();
                    if let Some(w) = self.workflows.get_mut(&wf_id) {
                        w.calendar_skipped = w.calendar_skipped.saturating_add(1);
                    }
                    tracing::info!(
                        workflow = wf_id.0,
                        trigger = at,
                        calendar = %cal,
                        "fire skipped: the date is excluded by a calendar"
                    );
                } else {
                    tracing::warn!(
                        workflow = wf_id.0,
                        "fire skipped: max_instances instances are running"
                    );
                }
                match self.repo.wf_set_next_trigger_if(wf_id, next_for, || true) {
                    Ok(Some(c)) => self.emit(Effect::Await(Awaited::Detached(c.discard_value()))),
                    Ok(None) => return,
                    Err(e) => self.write_failed(&e),
                }
                continue;
            }
            room -= 1;
            let Some(row) = self.repo.wf_fire_row(wf_id, next_for, || true) else {
                return;
            };
            match self.wf_create_instance_at(
                wf_id,
                Map::new(),
                None,
                Some((wf_id, row)),
                row.runs,
                *at,
                now,
            ) {
                Ok((_, t)) => {
                    self.emit_transition(Some(t));
                }
                Err(e) => {
                    tracing::warn!(workflow = wf_id.0, error = %e, "workflow fire failed");
                }
            }
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
