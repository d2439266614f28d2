//! Instance writes and what follows their acknowledgement: persisting a record under its
//! lock, awaiting the commit, then the follow-up (dispatch, finalize); API runs' creation.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::ids::{InstanceId, JobId};
use crate::server::{Commit, InstanceRecord, RepoError};
use crate::time_expression::EpochMs;

use super::dispatch::Claim;
use super::state::{InstState, Runtime, Slot, TimerEv};

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

/// What follows the acknowledged creation of an API run.
#[derive(Debug)]
pub(crate) enum AfterCreate {
    /// It was written WAITING_WORKER_RECEIVE ([`Runtime::dispatch_new`]): hand it over.
    Dispatched(Claim),
    /// It was written WAITING_DISPATCH: own it and dispatch it at `at` (`None` = at once).
    Dispatch { at: Option<EpochMs> },
}

/// An API run's creation, submitted: [`finish`](PendingRun::finish) awaits the write and
/// then starts the instance. If the caller goes away before the write is acknowledged (an
/// HTTP client that disconnects drops the request's future), `Drop` finishes it in a task of
/// its own, so a written instance is never left unowned (or a `max_instances` slot
/// reserved).
#[derive(Debug)]
pub(crate) struct PendingRun {
    sh: Arc<Runtime>,
    inner: Option<(Commit<InstanceRecord>, AfterCreate)>,
}

impl PendingRun {
    pub(crate) fn new(sh: Arc<Runtime>, commit: Commit<InstanceRecord>, then: AfterCreate) -> Self {
        PendingRun {
            sh,
            inner: Some((commit, then)),
        }
    }

    /// Awaits the write; once acknowledged the instance is started and its id returned.
    pub(crate) async fn finish(mut self) -> Result<InstanceId, RepoError> {
        let t = Instant::now();
        let result = match self.inner.as_mut() {
            Some((commit, _)) => commit.await,
            None => return Err(RepoError::not_found("pending run", 0)),
        };
        let Some((_, then)) = self.inner.take() else {
            return Err(RepoError::not_found("pending run", 0));
        };
        self.sh.metrics.store_commit.observe(t.elapsed());
        match result {
            Ok(rec) => {
                let id = rec.id;
                self.sh.after_create(rec, then);
                Ok(id)
            }
            Err(e) => {
                self.sh.store_write_failed(&e);
                self.sh.create_failed(then);
                Err(e)
            }
        }
    }
}

impl Drop for PendingRun {
    fn drop(&mut self) {
        let Some((commit, then)) = self.inner.take() else {
            return;
        };
        let sh = Arc::clone(&self.sh);
        // Without a runtime (the process is ending) there is nothing left to start.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match sh.await_commit(commit).await {
                    Ok(rec) => sh.after_create(rec, then),
                    Err(_) => sh.create_failed(then),
                }
            });
        }
    }
}

impl Runtime {
    /// Awaits a write, measuring it; a failure is logged and counted.
    pub(crate) async fn await_commit<T: Unpin>(&self, c: Commit<T>) -> Result<T, RepoError> {
        let t = Instant::now();
        let r = c.await;
        self.metrics.store_commit.observe(t.elapsed());
        if let Err(e) = &r {
            self.store_write_failed(e);
        }
        r
    }

    pub(crate) fn store_write_failed(&self, e: &RepoError) {
        self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        if matches!(e, RepoError::Store(_)) {
            self.store_failed.store(true, Ordering::Relaxed);
        }
        tracing::error!(error = %e, "store write failed");
    }

    /// Submits the instance's current record (under its lock, so writes keep their order).
    /// A final transition's alarms go into the same batch (the outbox).
    pub(crate) fn persist(&self, st: &mut InstState) -> Option<Commit<()>> {
        let prev = st.persisted.take();
        let becomes_final = st.rec.status.is_final() && !prev.is_some_and(|p| p.is_final());
        let alarms = if becomes_final {
            self.alarms_on_final(&st.rec, self.now())
        } else {
            Vec::new()
        };
        let written = if alarms.is_empty() {
            self.repo.put_instance_from(&st.rec, prev)
        } else {
            let commit = self.repo.put_instance_with_alarms(&st.rec, prev, alarms);
            self.wake_delivery();
            commit.map(Commit::discard_value)
        };
        match written {
            Ok(c) => {
                st.persisted = Some(st.rec.status);
                Some(c)
            }
            Err(e) => {
                self.store_write_failed(&e);
                None
            }
        }
    }

    /// Submits the record and pairs the write with its follow-up; when the write could not
    /// even be submitted the follow-up is dropped (the store is failing; a restart
    /// reconciles).
    pub(crate) fn persist_follow(
        &self,
        st: &mut InstState,
        f: Follow,
    ) -> (Option<Commit<()>>, Follow) {
        match self.persist(st) {
            Some(c) => (Some(c), f),
            None => (None, Follow::Nothing),
        }
    }

    /// Awaits `writes` in a task of their own, then runs each one's follow-up.
    pub(crate) fn after_writes(self: &Arc<Self>, writes: Vec<(Option<Commit<()>>, Follow)>) {
        if writes.is_empty() {
            return;
        }
        let sh = Arc::clone(self);
        tokio::spawn(async move {
            for (commit, follow) in writes {
                if let Some(c) = commit {
                    if sh.await_commit(c).await.is_err() {
                        continue;
                    }
                }
                sh.follow(follow).await;
            }
        });
    }

    pub(crate) fn after_write(self: &Arc<Self>, commit: Option<Commit<()>>, follow: Follow) {
        self.after_writes(vec![(commit, follow)]);
    }

    pub(crate) async fn follow(self: &Arc<Self>, follow: Follow) {
        match follow {
            Follow::Nothing => {}
            Follow::Final { id, job, run } => self.finalize(id, job, run).await,
            Follow::Dispatch { id, at } => match at {
                None => Arc::clone(self).dispatch(id).await,
                Some(at) => self.arm(at, TimerEv::Dispatch(id)),
            },
        }
    }

    /// Puts a freshly created (durable) WAITING_DISPATCH instance under the core's ownership.
    pub(crate) fn admit(&self, rec: InstanceRecord) -> Slot {
        let id = rec.id;
        let job = self.job(rec.job_id);
        let status = rec.status;
        let slot: Slot = Arc::new(parking_lot::Mutex::new(InstState::new(rec)));
        let before = self.active.insert(id, Arc::clone(&slot));
        debug_assert!(before.is_none(), "instance {} owned twice", id.0);
        self.note(job.as_deref(), None, status);
        slot
    }

    /// A run's creation is acknowledged: start it.
    pub(crate) fn after_create(self: &Arc<Self>, rec: InstanceRecord, then: AfterCreate) {
        match then {
            AfterCreate::Dispatched(claim) => self.start_dispatched(rec, claim),
            AfterCreate::Dispatch { at } => {
                let id = rec.id;
                self.admit(rec);
                match at {
                    Some(at) => self.arm(at, TimerEv::Dispatch(id)),
                    None => {
                        tokio::spawn(Arc::clone(self).dispatch(id));
                    }
                }
            }
        }
    }

    /// A run's creation failed: undo what was prepared for it.
    pub(crate) fn create_failed(&self, then: AfterCreate) {
        if let AfterCreate::Dispatched(claim) = then {
            self.abandon(claim);
        }
    }
}
