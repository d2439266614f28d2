//! The timer's events: a job's trigger (fire plan, misfire policy, next trigger), the
//! receive and run checks, worker liveness and dead workers.

use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::server::InstanceRecord;
use crate::time_expression::EpochMs;

use super::report::RUN_SAFETY_MARGIN_MS;
use super::write::AfterCreate;
use super::{is_running, Awaited, Core, Effect, InstState, TimerEv};

/// How often the retention sweep runs, ms.
pub(crate) const RETENTION_SWEEP_MS: i64 = 60_000;

impl Core {
    /// Handles one expired wheel event.
    pub(crate) fn on_timer(&mut self, ev: TimerEv, now: EpochMs) {
        match ev {
            TimerEv::Job { job, gen, due } => self.on_job_due(job, gen, due, now),
            TimerEv::Dispatch(id) => self.dispatch(id, now),
            TimerEv::ReceiveCheck { id, since } => self.on_receive_check(id, since, now),
            TimerEv::RunCheck { id, since } => self.on_run_check(id, since, now),
            TimerEv::Tick => self.on_tick(now),
            TimerEv::Retention => self.on_retention(now),
            TimerEv::GraceEnd => self.on_grace_end(now),
            TimerEv::Workflow { wf, gen, due } => self.on_wf_due(wf, gen, due, now),
            TimerEv::WfStart(id) => self.wf_start(id, now),
        }
    }

    /// The age sweep's timer event: one bounded round now (in the background), the next one
    /// [`RETENTION_SWEEP_MS`] later.
    fn on_retention(&mut self, now: EpochMs) {
        let Ok(keep_ms) = i64::try_from(self.config.retention_ms) else {
            return;
        };
        if keep_ms == 0 {
            return;
        }
        self.arm(now.saturating_add(RETENTION_SWEEP_MS), TimerEv::Retention);
        self.emit(Effect::Sweep {
            cutoff: now.saturating_sub(keep_ms),
        });
    }

    /// A job's trigger came due: fire it (misfire policy when late; a trigger its calendars
    /// exclude is skipped) and arm the next one.
    pub(crate) fn on_job_due(&mut self, job_id: JobId, gen: u64, due: EpochMs, now: EpochMs) {
        let Some(job) = self.live_job(job_id) else {
            return;
        };
        if job.gen != gen {
            return;
        }
        let def = job.def();
        if !def.record.enabled {
            return;
        }
        let plan = def
            .schedule()
            .plan(self.config.misfire_threshold_ms, due, now);
        let (fires, mut next) = (plan.fires, plan.next);
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
        // Whether the trigger row, as last submitted, says `next` (a skipped last fire did
        // not write it).
        let mut next_written = !fires.is_empty();
        for (i, at) in fires.iter().enumerate() {
            if let Some(cal) =
                self.excluding_calendar(def.record.app_id, &def.record.calendars, *at)
            {
                self.count_calendar_skipped(job_id);
                tracing::info!(
                    job = job_id.0,
                    trigger = at,
                    calendar = %cal,
                    "fire skipped: the date is excluded by a calendar"
                );
                if def.is_fixed_delay() && next.is_none() {
                    // No run, so no completion to re-arm from: the delay counts from now.
                    next = def.initial_next(now);
                }
                next_written = false;
                continue;
            }
            if self.live_job(job_id).is_some_and(|j| self.skips(j)) {
                self.count_skipped(job_id);
                tracing::info!(
                    job = job_id.0,
                    trigger = at,
                    "fire skipped: max_instances running (overlap policy SKIP)"
                );
                if def.is_fixed_delay() && next.is_none() {
                    // No run, so no completion to re-arm from: the delay counts from now.
                    next = def.initial_next(now);
                }
                next_written = false;
                continue;
            }
            next_written = true;
            let next_for = fires.get(i + 1).copied().or(next);
            let mut rec = InstanceRecord::new(job_id, def.record.app_id, "", *at);
            // Dispatchable at once: the fire writes it already WAITING_WORKER_RECEIVE.
            let then = match self.dispatch_new(&mut rec, now) {
                Some(nd) => AfterCreate::Dispatched(nd),
                None => AfterCreate::Dispatch { at: None },
            };
            match self.repo.fire_if(rec, next_for, || true) {
                Ok(None) => {
                    self.create_failed(then);
                    return;
                }
                Ok(Some(c)) => {
                    let late = now.saturating_sub(*at);
                    self.metrics.fire_lateness.observe_ms(late);
                    self.stats.fired(def.record.app_id, late, now);
                    self.emit(Effect::Await(Awaited::Created(c, then)));
                }
                Err(e) => {
                    self.create_failed(then);
                    self.write_failed(&e);
                }
            }
        }
        if !next_written {
            match self.repo.set_next_trigger_if(job_id, next, || true) {
                Ok(None) => return,
                Ok(Some(c)) => self.emit(Effect::Await(Awaited::Detached(c.discard_value()))),
                Err(e) => self.write_failed(&e),
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

    pub(crate) fn on_receive_check(&mut self, id: InstanceId, since: EpochMs, now: EpochMs) {
        self.with_inst(id, |core, st| {
            if st.rec.status != InstanceStatus::WaitingWorkerReceive || st.rec.status_time != since
            {
                return;
            }
            let timeout = i64::try_from(core.config.worker_receive_timeout_ms).unwrap_or(i64::MAX);
            if core.not_yet(st, timeout, now, TimerEv::ReceiveCheck { id, since }) {
                return;
            }
            tracing::warn!(instance = id.0, worker = ?st.rec.worker, "worker did not confirm in time; requeued");
            let worker = st.rec.worker.clone();
            let app = st.rec.app_id;
            // The worker may still have the ScheduleJob (queued, or late on the wire): tell it
            // to stop before the next attempt is dispatched, so the instance never runs twice.
            // The next ScheduleJob goes out after the requeue's write, behind this stop on the
            // same connection when the same worker is picked again.
            if let Some(w) = worker {
                core.send_stop(app, &w, id);
            }
            let f = core.requeue_plain(st, now);
            core.save(st, f);
        });
    }

    pub(crate) fn on_run_check(&mut self, id: InstanceId, since: EpochMs, now: EpochMs) {
        self.with_inst(id, |core, st| {
            if !is_running(st.rec.status) || st.rec.actual_trigger_time != Some(since) {
                return;
            }
            let job_timeout = core
                .jobs
                .get(&st.rec.job_id)
                .map_or(0, |j| j.def.record.timeout_ms);
            let wait = i64::try_from(job_timeout)
                .unwrap_or(i64::MAX)
                .saturating_add(RUN_SAFETY_MARGIN_MS);
            if core.not_yet(st, wait, now, TimerEv::RunCheck { id, since }) {
                return;
            }
            let worker = st.rec.worker.clone().unwrap_or_default();
            let app = st.rec.app_id;
            let timeout = core
                .jobs
                .get(&st.rec.job_id)
                .map_or(0, |j| j.def.record.timeout_ms);
            let reason = format!(
                "no final report from worker {worker} within timeout_ms {timeout} + 30 s (server safety net)"
            );
            let old = st.rec.status;
            core.send_stop(app, &worker, id);
            let f = core.retry_policy(st, &reason, old, now, true);
            core.save(st, f);
        });
    }

    /// Whether `wait` ms have not yet passed on the monotonic clock since `st`'s attempt was
    /// handed over; if so `ev` is armed again for the rest.
    fn not_yet(&mut self, st: &InstState, wait: i64, now: EpochMs, ev: TimerEv) -> bool {
        let due = st.handed_live.saturating_add(wait);
        if st.handed_live == i64::MIN || self.live_ms >= due {
            return false;
        }
        self.arm(now.saturating_add(due - self.live_ms), ev);
        true
    }

    pub(crate) fn on_tick(&mut self, now: EpochMs) {
        let window = self.registry.config().liveness_window_ms();
        // Liveness is measured on the jump-free liveness time (see `Core::live_ms`).
        let live = self.live_ms;
        let mut expired = self.registry.expire(live);
        expired.sort();
        for (app, addr) in expired {
            let Some(app) = self.apps.get(&*app).map(|a| a.id) else {
                continue;
            };
            self.worker_gone(
                app,
                &addr,
                &format!("worker {addr} died (missed heartbeats)"),
                now,
            );
        }
        let mut gone = Vec::new();
        let conns = &self.conns;
        self.lost.retain(|key, (_name, since)| {
            if live.saturating_sub(*since) >= window && !conns.contains_key(key) {
                gone.push(key.clone());
                false
            } else {
                true
            }
        });
        gone.sort();
        for (app, addr) in gone {
            self.worker_gone(
                app,
                &addr,
                &format!("worker {addr} died (connection lost)"),
                now,
            );
        }
        self.arm(now.saturating_add(self.hb_ms()), TimerEv::Tick);
    }

    /// The non-final instances dispatched to `app`'s worker `addr` (WAITING_WORKER_RECEIVE or
    /// RUNNING there), in id order.
    pub(crate) fn dispatched_to(&self, app: AppId, addr: &str) -> Vec<InstanceId> {
        let mut ids: Vec<InstanceId> = self
            .active
            .values()
            .filter(|st| {
                is_running(st.rec.status)
                    && st.rec.app_id == app
                    && st.rec.worker.as_deref() == Some(addr)
            })
            .map(|st| st.rec.id)
            .collect();
        ids.sort_unstable_by_key(|id| id.0);
        ids
    }

    /// Every instance dispatched to `app`'s worker `addr` goes to its retry policy at once.
    pub(crate) fn worker_gone(&mut self, app: AppId, addr: &str, reason: &str, now: EpochMs) {
        let ids = self.dispatched_to(app, addr);
        if !ids.is_empty() {
            tracing::warn!(
                worker = addr,
                instances = ids.len(),
                reason,
                "worker gone; instances handed to their retry policy"
            );
        }
        for id in ids {
            self.with_inst(id, |core, st| {
                let old = st.rec.status;
                let f = core.retry_policy(st, reason, old, now, false);
                core.save(st, f);
            });
        }
    }
}
