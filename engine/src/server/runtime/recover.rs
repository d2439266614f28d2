//! Restart: rebuilding memory from the store, the grace period for workers to come back,
//! and asking a reconnected worker about the instances it held.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::error::RequestError;
use ferrojob_transport::message::{ErrorCode, Message, QueryInstanceStatus};

use crate::ids::InstanceId;
use crate::model::InstanceStatus;
use crate::server::LoadedState;
use crate::time_expression::EpochMs;

use super::report::from_wire;
use super::state::{is_running, JobDef, JobState, Runtime, TimerEv, WorkerKey};
use super::write::Follow;

/// How long a reconciliation query waits for the worker.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

impl Runtime {
    /// Rebuilds the in-memory state from the store and arms everything that was pending.
    pub(crate) fn recover(self: &Arc<Self>, loaded: LoadedState) {
        let now = self.now();
        self.restarted
            .store(!loaded.apps.is_empty(), Ordering::Release);
        for app in loaded.apps {
            self.add_app(app);
        }
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
            let state = Arc::new(JobState::new(Arc::from(app.as_str()), def));
            self.jobs.insert(state.id, Arc::clone(&state));
            if let (true, Some(t)) = (enabled, lj.trigger.next_trigger) {
                self.arm(
                    t,
                    TimerEv::Job {
                        job: state.id,
                        gen: 1,
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
        let mut writes = Vec::new();
        for rec in loaded.active {
            let id = rec.id;
            if rec.run > 0 {
                fixed_delay_busy.insert(rec.job_id);
            }
            let status = rec.status;
            let worker = rec.worker.clone();
            let app = rec.app_id;
            let slot = self.admit(rec);
            match status {
                InstanceStatus::WaitingDispatch => {
                    let at = delayed.get(&id).copied().unwrap_or(now);
                    self.arm(at, TimerEv::Dispatch(id));
                }
                _ => match worker {
                    Some(w) => self.reconcile.entry((app, w)).or_default().push(id),
                    None => {
                        let mut st = slot.lock();
                        let job = self.job(st.rec.job_id);
                        let f = self.requeue_plain(&mut st, job.as_deref(), now);
                        writes.push(self.persist_follow(&mut st, f));
                    }
                },
            }
        }
        for job in self.jobs.iter() {
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
                    match self.repo.set_next_trigger(job.id, Some(next)) {
                        Ok(c) => drop(c),
                        Err(e) => self.store_write_failed(&e),
                    }
                    self.arm(
                        next,
                        TimerEv::Job {
                            job: job.id,
                            gen: 1,
                            due: next,
                        },
                    );
                }
            }
        }
        self.after_writes(writes);
        if !self.reconcile.is_empty() {
            let grace = i64::try_from(self.config.restart_grace_ms).unwrap_or(i64::MAX);
            self.arm(now.saturating_add(grace), TimerEv::GraceEnd);
        }
        self.arm(now.saturating_add(self.hb_ms()), TimerEv::Tick);
        self.arm(
            now.saturating_add(super::retention::RETENTION_SWEEP_MS),
            TimerEv::Retention,
        );
    }

    pub(crate) fn hb_ms(&self) -> i64 {
        i64::try_from(self.config.heartbeat_interval_ms).unwrap_or(i64::MAX)
    }

    pub(super) fn in_grace(&self, now: EpochMs) -> bool {
        if !self.restarted.load(Ordering::Acquire) {
            return false;
        }
        let grace = i64::try_from(self.config.restart_grace_ms).unwrap_or(i64::MAX);
        now < self.started_ms.saturating_add(grace)
    }

    pub(super) fn on_grace_end(self: &Arc<Self>, now: EpochMs) {
        let workers: Vec<WorkerKey> = self.reconcile.iter().map(|e| e.key().clone()).collect();
        let mut writes = Vec::new();
        for key in workers {
            let Some(((app, addr), ids)) = self.reconcile.remove(&key) else {
                continue;
            };
            let reason = format!(
                "worker {addr} did not come back within {} ms of the server restart",
                self.config.restart_grace_ms
            );
            for id in ids {
                let Some(slot) = self.slot(id) else { continue };
                let mut st = slot.lock();
                if !is_running(st.rec.status)
                    || st.rec.app_id != app
                    || st.rec.worker.as_deref() != Some(addr.as_str())
                {
                    continue;
                }
                let job = self.job(st.rec.job_id);
                let old = st.rec.status;
                let f = self.retry_policy(&mut st, job.as_deref(), &reason, old, now, false);
                writes.push(self.persist_follow(&mut st, f));
            }
        }
        self.after_writes(writes);
    }

    /// Asks a reconnected worker about the instances it had before the server restarted.
    pub(crate) async fn reconcile_worker(
        self: Arc<Self>,
        key: WorkerKey,
        handle: ferrojob_transport::net::ConnectionHandle,
        ids: Vec<InstanceId>,
    ) {
        let (app, addr) = &key;
        let mut unresolved = Vec::new();
        for id in ids {
            let answer = handle
                .request(QueryInstanceStatus { instance_id: id.0 }, QUERY_TIMEOUT)
                .await;
            let Some(slot) = self.slot(id) else { continue };
            let now = self.now();
            let mut st = slot.lock();
            if !is_running(st.rec.status)
                || st.rec.app_id != *app
                || st.rec.worker.as_deref() != Some(addr.as_str())
            {
                continue;
            }
            let job = self.job(st.rec.job_id);
            let old = st.rec.status;
            let follow = match answer {
                Ok(Message::InstanceStatusReply(rep)) => match from_wire(&rep.status) {
                    s @ (InstanceStatus::Running
                    | InstanceStatus::Succeed
                    | InstanceStatus::Stopped
                    | InstanceStatus::Failed)
                        if st.rec.apply_answer(s, rep.result.as_deref(), now).is_err() =>
                    {
                        continue
                    }
                    InstanceStatus::Running => {
                        self.note(job.as_deref(), Some(old), InstanceStatus::Running);
                        Follow::Nothing
                    }
                    s @ (InstanceStatus::Succeed | InstanceStatus::Stopped) => {
                        self.note(job.as_deref(), Some(old), s);
                        Follow::Final {
                            id,
                            job: st.rec.job_id,
                            run: st.rec.run,
                        }
                    }
                    InstanceStatus::Failed => {
                        let reason = format!(
                            "attempt {} on {addr} failed: {}",
                            st.rec.running_times,
                            rep.result.as_deref().unwrap_or("")
                        );
                        self.retry_policy(&mut st, job.as_deref(), &reason, old, now, true)
                    }
                    _ => continue,
                },
                Err(RequestError::Remote {
                    code: ErrorCode::NotFound,
                    ..
                }) => {
                    // RUNNING is not persisted, so a dispatched instance the worker does not
                    // know may have run and been lost: the retry policy decides.
                    let reason =
                        format!("worker {addr} no longer knows the instance (server restart)");
                    self.retry_policy(&mut st, job.as_deref(), &reason, old, now, false)
                }
                other => {
                    tracing::debug!(instance = id.0, answer = ?other, "reconciliation query unanswered");
                    unresolved.push(id);
                    continue;
                }
            };
            let (c, follow) = self.persist_follow(&mut st, follow);
            drop(st);
            self.after_write(c, follow);
        }
        if !unresolved.is_empty() {
            self.reconcile.entry(key).or_default().extend(unresolved);
        }
    }
}
