//! The timer's events: a job's trigger (fire plan, misfire policy, next trigger), the
//! receive and run checks, worker liveness and dead workers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::server::InstanceRecord;
use crate::time_expression::EpochMs;

use super::state::{is_running, Runtime, Slot, TimerEv};
use super::write::AfterCreate;

impl Runtime {
    /// Handles one expired wheel event (on the timer task: no waiting here).
    pub(crate) fn on_timer(self: &Arc<Self>, ev: TimerEv, now: EpochMs) {
        match ev {
            TimerEv::Job { job, gen, due } => self.on_job_due(job, gen, due, now),
            TimerEv::Dispatch(id) => {
                tokio::spawn(Arc::clone(self).dispatch(id));
            }
            TimerEv::ReceiveCheck { id, since } => self.on_receive_check(id, since, now),
            TimerEv::RunCheck { id, since } => self.on_run_check(id, since, now),
            TimerEv::Tick => self.on_tick(now),
            TimerEv::Retention => self.on_retention(now),
            TimerEv::GraceEnd => self.on_grace_end(now),
            TimerEv::Workflow { wf, gen, due } => self.on_wf_due(wf, gen, due, now),
            TimerEv::WfStart(id) => {
                let sh = Arc::clone(self);
                tokio::spawn(async move { sh.wf_start(id).await });
            }
        }
    }

    /// A job's trigger came due: fire it (misfire policy when late) and arm the next one.
    pub(super) fn on_job_due(
        self: &Arc<Self>,
        job_id: JobId,
        gen: u64,
        due: EpochMs,
        now: EpochMs,
    ) {
        let Some(job) = self.job(job_id) else { return };
        if job.gen.load(Ordering::Acquire) != gen || job.deleted.load(Ordering::Acquire) {
            return;
        }
        let def = job.def();
        if !def.record.enabled {
            return;
        }
        let plan = def
            .schedule()
            .plan(self.config.misfire_threshold_ms, due, now);
        let (fires, next) = (plan.fires, plan.next);
        if plan.dropped > 0 || plan.truncated {
            tracing::warn!(
                job = job_id.0,
                late_ms = now.saturating_sub(due),
                policy = %def.record.misfire,
                running = fires.len(),
                dropped = plan.dropped,
                truncated = plan.truncated,
                "misfire"
            );
        }
        for (i, at) in fires.iter().enumerate() {
            let next_for = fires.get(i + 1).copied().or(next);
            let mut rec = InstanceRecord::new(job_id, def.record.app_id, "", *at);
            // Dispatchable at once: the fire writes it already WAITING_WORKER_RECEIVE.
            let then = match self.dispatch_new(&job, &mut rec, now) {
                Some(nd) => AfterCreate::Dispatched(nd),
                None => AfterCreate::Dispatch { at: None },
            };
            // Checked under the job's trigger row: an update that bumped the generation
            // after the check at the top must not have its next trigger overwritten.
            let current = || job.gen.load(Ordering::Acquire) == gen;
            match self.repo.fire_if(rec, next_for, current) {
                Ok(None) => {
                    self.create_failed(then);
                    return;
                }
                Ok(Some(c)) => {
                    self.metrics
                        .fire_lateness
                        .observe_ms(now.saturating_sub(*at));
                    let sh = Arc::clone(self);
                    tokio::spawn(async move {
                        match sh.await_commit(c).await {
                            Ok(rec) => sh.after_create(rec, then),
                            Err(_) => sh.create_failed(then),
                        }
                    });
                }
                Err(e) => {
                    self.create_failed(then);
                    self.store_write_failed(&e);
                }
            }
        }
        if fires.is_empty() {
            let current = || job.gen.load(Ordering::Acquire) == gen;
            match self.repo.set_next_trigger_if(job_id, next, current) {
                Ok(None) => return,
                Ok(Some(c)) => {
                    let sh = Arc::clone(self);
                    tokio::spawn(async move {
                        let _ = sh.await_commit(c).await;
                    });
                }
                Err(e) => self.store_write_failed(&e),
            }
        }
        if let Some(n) = next {
            self.arm(
                n,
                TimerEv::Job {
                    job: job_id,
                    gen,
                    due: n,
                },
            );
        }
    }

    pub(super) fn on_receive_check(self: &Arc<Self>, id: InstanceId, since: EpochMs, now: EpochMs) {
        let Some(slot) = self.slot(id) else { return };
        let mut st = slot.lock();
        if st.rec.status != InstanceStatus::WaitingWorkerReceive || st.rec.status_time != since {
            return;
        }
        tracing::warn!(instance = id.0, worker = ?st.rec.worker, "worker did not confirm in time; requeued");
        let worker = st.rec.worker.clone();
        let app = st.rec.app_id;
        let job = self.job(st.rec.job_id);
        let f = self.requeue_plain(&mut st, job.as_deref(), now);
        let (c, f) = self.persist_follow(&mut st, f);
        drop(st);
        // The worker may still have the ScheduleJob (queued, or late on the wire): tell it to
        // stop before the next attempt is dispatched, so the instance never runs twice. The
        // next ScheduleJob goes out after the requeue's write, behind this stop on the same
        // connection when the same worker is picked again.
        if let Some(w) = worker {
            self.send_stop(app, &w, id);
        }
        self.after_write(c, f);
    }

    pub(super) fn on_run_check(self: &Arc<Self>, id: InstanceId, since: EpochMs, now: EpochMs) {
        let Some(slot) = self.slot(id) else { return };
        let mut st = slot.lock();
        if !is_running(st.rec.status) || st.rec.actual_trigger_time != Some(since) {
            return;
        }
        let worker = st.rec.worker.clone().unwrap_or_default();
        let app = st.rec.app_id;
        let job = self.job(st.rec.job_id);
        let timeout = job.as_ref().map_or(0, |j| j.def().record.timeout_ms);
        let reason = format!(
            "no final report from worker {worker} within timeout_ms {timeout} + 30 s (server safety net)"
        );
        let old = st.rec.status;
        let f = self.retry_policy(&mut st, job.as_deref(), &reason, old, now, true);
        let (c, f) = self.persist_follow(&mut st, f);
        drop(st);
        self.send_stop(app, &worker, id);
        self.after_write(c, f);
    }

    pub(super) fn on_tick(self: &Arc<Self>, now: EpochMs) {
        let window = self.registry.config().liveness_window_ms();
        for (app, addr) in self.registry.expire(now) {
            let Some(app) = self.apps.get(&*app).map(|a| a.id) else {
                continue;
            };
            self.worker_gone(
                app,
                &addr,
                &format!("worker {addr} died (missed heartbeats)"),
            );
        }
        let mut gone = Vec::new();
        self.lost.retain(|(app, addr), (_name, since)| {
            if now.saturating_sub(*since) >= window && !self.conns.contains(*app, addr) {
                gone.push((*app, addr.clone()));
                false
            } else {
                true
            }
        });
        for (app, addr) in gone {
            self.worker_gone(app, &addr, &format!("worker {addr} died (connection lost)"));
        }
        self.arm(now.saturating_add(self.hb_ms()), TimerEv::Tick);
    }

    /// The non-final instances dispatched to `app`'s worker `addr` (WAITING_WORKER_RECEIVE or
    /// RUNNING there).
    pub(crate) fn dispatched_to(&self, app: AppId, addr: &str) -> Vec<InstanceId> {
        let slots: Vec<Slot> = self.active.iter().map(|e| Arc::clone(e.value())).collect();
        slots
            .iter()
            .filter_map(|slot| {
                let st = slot.lock();
                (is_running(st.rec.status)
                    && st.rec.app_id == app
                    && st.rec.worker.as_deref() == Some(addr))
                .then_some(st.rec.id)
            })
            .collect()
    }

    /// Every instance dispatched to `app`'s worker `addr` goes to its retry policy at once.
    pub(crate) fn worker_gone(self: &Arc<Self>, app: AppId, addr: &str, reason: &str) {
        let now = self.now();
        let slots: Vec<Slot> = self.active.iter().map(|e| Arc::clone(e.value())).collect();
        let mut writes = Vec::new();
        for slot in slots {
            let mut st = slot.lock();
            if !is_running(st.rec.status)
                || st.rec.app_id != app
                || st.rec.worker.as_deref() != Some(addr)
            {
                continue;
            }
            let job = self.job(st.rec.job_id);
            let old = st.rec.status;
            let f = self.retry_policy(&mut st, job.as_deref(), reason, old, now, false);
            writes.push(self.persist_follow(&mut st, f));
        }
        if !writes.is_empty() {
            tracing::warn!(
                worker = addr,
                instances = writes.len(),
                reason,
                "worker gone; instances handed to their retry policy"
            );
        }
        self.after_writes(writes);
    }
}
