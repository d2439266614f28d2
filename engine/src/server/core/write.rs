//! Instance writes and what follows their acknowledgement: submitting a record in the step
//! that changed it, then — once the store acknowledged it — the follow-up (dispatch,
//! finalize); creations of new instances.

use crate::ids::{InstanceId, JobId};
use crate::server::{Commit, InstanceRecord, RepoError};
use crate::time_expression::EpochMs;

use super::dispatch::Claim;
use super::{Awaited, Core, Effect, InstState, Then, TimerEv};

/// What to do once an instance's write is acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Follow {
    /// Nothing.
    Nothing,
    /// It reached a final status: drop it from memory, re-arm FIXED_DELAY, prune.
    Final {
        id: InstanceId,
        job: JobId,
        run: u64,
    },
    /// It is WAITING_DISPATCH again: dispatch it at `at` (clock ms; `None` = at once). The
    /// time is fixed when the transition is made, not when its write is acknowledged.
    Dispatch { id: InstanceId, at: Option<EpochMs> },
}

/// What follows the acknowledged creation of a run.
#[derive(Debug)]
pub(crate) enum AfterCreate {
    /// It was written WAITING_WORKER_RECEIVE ([`Core::dispatch_new`]): hand it over.
    Dispatched(Claim),
    /// It was written WAITING_DISPATCH: own it and dispatch it at `at` (`None` = at once).
    Dispatch { at: Option<EpochMs> },
}

impl Core {
    /// Submits the instance's current record. A final transition's alarms go into the same
    /// batch (the outbox).
    pub(crate) fn persist(&mut self, st: &mut InstState) -> Option<Commit<()>> {
        let prev = st.persisted.take();
        let becomes_final = st.rec.status.is_final() && !prev.is_some_and(|p| p.is_final());
        let now = self.now_us / 1000;
        let alarms = if becomes_final {
            self.alarms_on_final(&st.rec, now)
        } else {
            Vec::new()
        };
        let written = if alarms.is_empty() {
            self.repo.put_instance_from(&st.rec, prev)
        } else {
            let commit = self.repo.put_instance_with_alarms(&st.rec, prev, alarms);
            self.emit(Effect::WakeAlarms);
            commit.map(Commit::discard_value)
        };
        match written {
            Ok(c) => {
                st.persisted = Some(st.rec.status);
                Some(c)
            }
            Err(e) => {
                self.write_failed(&e);
                None
            }
        }
    }

    /// Submits the record and follows up with `f` once it is acknowledged; when the write
    /// could not even be submitted the follow-up is dropped (the store is failing; a restart
    /// reconciles).
    pub(crate) fn save(&mut self, st: &mut InstState, f: Follow) {
        if let Some(c) = self.persist(st) {
            self.emit(Effect::Await(Awaited::Write(c, Then::Follow(f))));
        }
    }

    /// A write came back: `ok` when the store acknowledged it.
    pub(crate) fn resume(&mut self, then: Then, ok: bool, now: EpochMs) {
        match then {
            Then::Follow(f) => {
                if ok {
                    self.follow(f, now);
                }
            }
            Then::HandOver { id, claim } => {
                self.handing_over.remove(&id);
                if ok {
                    self.hand_over(id, claim, now);
                }
                // A failed write leaves the instance WAITING_WORKER_RECEIVE in memory: the
                // receive check requeues it.
            }
            Then::Workflow(p) => self.complete(*p, ok, now),
            Then::Arm { at, ev } => {
                if ok {
                    self.arm(at, ev);
                }
            }
        }
    }

    /// A creation came back (the record with its id, or why it failed).
    pub(crate) fn created(
        &mut self,
        result: Result<InstanceRecord, RepoError>,
        then: AfterCreate,
        now: EpochMs,
    ) -> Option<InstanceId> {
        match result {
            Ok(rec) => {
                let id = rec.id;
                self.after_create(rec, then, now);
                Some(id)
            }
            Err(_) => {
                self.create_failed(then);
                None
            }
        }
    }

    pub(crate) fn follow(&mut self, follow: Follow, now: EpochMs) {
        match follow {
            Follow::Nothing => {}
            Follow::Final { id, job, run } => self.finalize(id, job, run, now),
            Follow::Dispatch { id, at } => match at {
                None => self.dispatch(id, now),
                Some(at) => self.arm(at, TimerEv::Dispatch(id)),
            },
        }
    }

    /// Puts a freshly created (durable) instance under the core's ownership.
    pub(crate) fn admit(&mut self, rec: InstanceRecord) {
        let id = rec.id;
        let job = rec.job_id;
        let status = rec.status;
        let before = self.active.insert(id, InstState::new(rec, self.now_us));
        debug_assert!(before.is_none(), "instance {} owned twice", id.0);
        self.note(job, None, status);
    }

    /// A run's creation is acknowledged: start it.
    pub(crate) fn after_create(&mut self, rec: InstanceRecord, then: AfterCreate, now: EpochMs) {
        if self.epoch_of(rec.app_id).is_none() {
            // Its partition was lost while it was written: the new owner loads it.
            self.create_failed(then);
            return;
        }
        match then {
            AfterCreate::Dispatched(claim) => {
                self.creation_resolved(&claim);
                self.start_dispatched(rec, claim, now);
            }
            AfterCreate::Dispatch { at } => {
                let id = rec.id;
                self.admit(rec);
                match at {
                    Some(at) => self.arm(at, TimerEv::Dispatch(id)),
                    None => self.dispatch(id, now),
                }
            }
        }
    }

    /// A run's creation failed: undo what was prepared for it.
    pub(crate) fn create_failed(&mut self, then: AfterCreate) {
        if let AfterCreate::Dispatched(claim) = then {
            self.creation_resolved(&claim);
            self.abandon(claim);
        }
    }
}
