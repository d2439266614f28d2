//! Restart: rebuilding memory from the store, the grace period for workers to come back,
//! and asking a reconnected worker about the instances it held.

use std::sync::Arc;

use crate::ids::{AppId, InstanceId};
use crate::model::InstanceStatus;
use crate::policy::OverlapPolicy;
use crate::server::LoadedState;
use crate::time_expression::EpochMs;

use super::fire::RETENTION_SWEEP_MS;
use super::write::Follow;
use super::{
    is_running, Awaited, Core, Effect, JobDef, JobState, TimerEv, WorkerKey, MAX_QUEUED_RUNS,
};

/// A worker's answer about an instance it held before the server restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryAnswer {
    /// Its status there (and result, when final).
    Status(InstanceStatus, Option<String>),
    /// The worker does not know the instance.
    NotFound,
    /// No usable answer (timeout, closed connection): asked again when it reconnects, or
    /// handed to the retry policy at the end of the grace period.
    Unanswered,
}

impl Core {
    /// Rebuilds the in-memory state from the store and arms everything that was pending.
    pub(crate) fn recover(&mut self, loaded: LoadedState, now: EpochMs) {
        self.restarted = !loaded.apps.is_empty();
        self.recover_apps(loaded, now);
        self.arm_periodic(now);
    }

    /// Arms the core's own periodic timers: worker liveness and the retention sweep.
    pub(crate) fn arm_periodic(&mut self, now: EpochMs) {
        self.arm(now.saturating_add(self.hb_ms()), TimerEv::Tick);
        self.arm(now.saturating_add(RETENTION_SWEEP_MS), TimerEv::Retention);
    }

    /// Rebuilds the state of `loaded`'s apps (every app at a restart, a partition's when it
    /// is acquired) and arms what was pending; running instances wait for their workers
    /// through the grace period.
    pub(crate) fn recover_apps(&mut self, loaded: LoadedState, now: EpochMs) {
        let gen = self.load_gen();
        for app in loaded.apps {
            match self.repo.list_calendars(app.id) {
                Ok(cals) => cals.iter().for_each(|c| self.calendar_put(c)),
                Err(e) => {
                    tracing::error!(app = %app.name, error = %e, "calendars not loaded; they exclude nothing until changed");
                }
            }
            self.add_app(app);
        }
        let mut recovered = Vec::with_capacity(loaded.jobs.len());
        for lj in loaded.jobs {
            let Some(app) = self.app_name(lj.job.app_id) else {
                tracing::error!(job = lj.job.id.0, "job of an unknown app skipped");
                continue;
            };
            let def = match JobDef::new(lj.job) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "stored job no longer valid; not scheduled");
                    continue;
                }
            };
            let enabled = def.record.enabled;
            let mut state = JobState::new(Arc::from(app.as_str()), def);
            state.gen = gen;
            let id = state.id;
            self.jobs.insert(id, state);
            recovered.push(id);
            if let (true, Some(t)) = (enabled, lj.trigger.next_trigger) {
                self.arm(
                    t,
                    TimerEv::Job {
                        job: id,
                        gen,
                        due: t,
                    },
                );
            }
        }
        let delayed: std::collections::HashMap<InstanceId, EpochMs> = loaded
            .delayed
            .iter()
            .map(|d| (d.instance_id, d.due))
            .collect();
        let mut fixed_delay_busy = std::collections::HashSet::new();
        let mut requeued = std::collections::BTreeSet::new();
        for rec in loaded.active {
            let id = rec.id;
            if rec.run > 0 {
                fixed_delay_busy.insert(rec.job_id);
            }
            let status = rec.status;
            let worker = rec.worker.clone();
            let app = rec.app_id;
            let job = rec.job_id;
            self.admit(rec);
            match status {
                InstanceStatus::WaitingDispatch => {
                    // A QUEUE job's waiting runs queue again in id order (their order of
                    // arrival), whatever order the wheel would dispatch them in.
                    let queue = match self.jobs.get_mut(&job) {
                        Some(j)
                            if !delayed.contains_key(&id)
                                && j.def.record.overlap_policy == OverlapPolicy::Queue
                                && j.def.record.max_instances != 0
                                && j.queue.len() < MAX_QUEUED_RUNS =>
                        {
                            Some(&mut j.queue)
                        }
                        _ => None,
                    };
                    match queue {
                        Some(q) => {
                            q.push_back(id);
                            requeued.insert(job);
                        }
                        None => {
                            let at = delayed.get(&id).copied().unwrap_or(now);
                            self.arm(at, TimerEv::Dispatch(id));
                        }
                    }
                }
                _ => match worker {
                    Some(w) => self.reconcile.entry((app, w)).or_default().push(id),
                    None => {
                        self.with_inst(id, |core, st| {
                            let f = core.requeue_plain(st, now);
                            core.save(st, f);
                        });
                    }
                },
            }
        }
        // Every slot taken by a recovered running instance is counted by now.
        for job in requeued {
            self.wake_queue(job);
        }
        let mut rearm = Vec::new();
        // Only the jobs loaded here: another partition's FIXED_DELAY job may be running.
        for job in recovered.iter().filter_map(|id| self.jobs.get(id)) {
            let def = job.def();
            if def.is_fixed_delay()
                && def.record.enabled
                && !fixed_delay_busy.contains(&job.id)
                && self
                    .repo
                    .trigger(job.id)
                    .is_some_and(|t| t.next_trigger.is_none())
            {
                if let Some(next) = def.initial_next(now) {
                    rearm.push((job.id, next));
                }
            }
        }
        rearm.sort_unstable_by_key(|(j, _)| j.0);
        for (job, next) in rearm {
            match self.repo.set_next_trigger(job, Some(next)) {
                Ok(c) => self.emit(Effect::Await(Awaited::Detached(c.discard_value()))),
                Err(e) => self.write_failed(&e),
            }
            self.arm(
                next,
                TimerEv::Job {
                    job,
                    gen,
                    due: next,
                },
            );
        }
        // The grace is measured on the monotonic clock: a wall clock stepped forward must not
        // cut it short (the wheel's event only looks; `on_grace_end` re-arms if early).
        let grace = i64::try_from(self.config.restart_grace_ms).unwrap_or(i64::MAX);
        self.grace_until = self.grace_until.max(self.live_ms.saturating_add(grace));
        if !self.reconcile.is_empty() {
            self.arm(now.saturating_add(grace), TimerEv::GraceEnd);
        }
    }

    pub(crate) fn in_grace(&self) -> bool {
        self.restarted && self.live_ms < self.grace_until
    }

    pub(crate) fn on_grace_end(&mut self, now: EpochMs) {
        if self.live_ms < self.grace_until {
            let left = self.grace_until.saturating_sub(self.live_ms);
            self.arm(now.saturating_add(left), TimerEv::GraceEnd);
            return;
        }
        let mut workers: Vec<WorkerKey> = self.reconcile.keys().cloned().collect();
        workers.sort();
        for key in workers {
            let Some(ids) = self.reconcile.remove(&key) else {
                continue;
            };
            let (app, addr) = key;
            let reason = format!(
                "worker {addr} did not come back within {} ms of the server restart",
                self.config.restart_grace_ms
            );
            for id in ids {
                self.with_inst(id, |core, st| {
                    if !is_running(st.rec.status)
                        || st.rec.app_id != app
                        || st.rec.worker.as_deref() != Some(addr.as_str())
                    {
                        return;
                    }
                    let old = st.rec.status;
                    let f = core.retry_policy(st, &reason, old, now, false);
                    core.save(st, f);
                });
            }
        }
    }

    /// A reconnected worker's answer about instance `id`, which it held before the server
    /// restarted.
    pub(crate) fn on_query_answer(
        &mut self,
        app: AppId,
        addr: &str,
        id: InstanceId,
        answer: QueryAnswer,
        now: EpochMs,
    ) {
        let unresolved = self.with_inst(id, |core, st| {
            if !is_running(st.rec.status)
                || st.rec.app_id != app
                || st.rec.worker.as_deref() != Some(addr)
            {
                return false;
            }
            let job = st.rec.job_id;
            let old = st.rec.status;
            let follow = match answer {
                QueryAnswer::Status(status, result) => match status {
                    s @ (InstanceStatus::Running
                    | InstanceStatus::Succeed
                    | InstanceStatus::Stopped
                    | InstanceStatus::Failed)
                        if st.rec.apply_answer(s, result.as_deref(), now).is_err() =>
                    {
                        return false
                    }
                    InstanceStatus::Running => {
                        core.note(job, Some(old), InstanceStatus::Running);
                        Follow::Nothing
                    }
                    s @ (InstanceStatus::Succeed | InstanceStatus::Stopped) => {
                        core.note(job, Some(old), s);
                        Follow::Final {
                            id,
                            job,
                            run: st.rec.run,
                        }
                    }
                    InstanceStatus::Failed => {
                        let reason = format!(
                            "attempt {} on {addr} failed: {}",
                            st.rec.running_times,
                            result.as_deref().unwrap_or("")
                        );
                        core.retry_policy(st, &reason, old, now, true)
                    }
                    _ => return false,
                },
                QueryAnswer::NotFound => {
                    // RUNNING is not persisted, so a dispatched instance the worker does not
                    // know may have run and been lost: the retry policy decides.
                    let reason =
                        format!("worker {addr} no longer knows the instance (server restart)");
                    core.retry_policy(st, &reason, old, now, false)
                }
                QueryAnswer::Unanswered => {
                    tracing::debug!(instance = id.0, "reconciliation query unanswered");
                    return true;
                }
            };
            core.save(st, follow);
            false
        });
        if unresolved == Some(true) {
            self.reconcile
                .entry((app, addr.to_owned()))
                .or_default()
                .push(id);
        }
    }
}
