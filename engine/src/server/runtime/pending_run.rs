//! A run's creation between its write and its start: the piece that makes sure a written
//! instance is always started, even when the request that asked for it goes away. A batch
//! of runs ([`PendingRuns`]) is one write and starts all its instances in one step.

use std::sync::Arc;

use crate::api::{ApiError, AppRef, RunBatchCreated, RunJobBatch};
use crate::ids::{InstanceId, JobId};
use crate::server::core::{AfterCreate, Core};
use crate::server::{Commit, InstanceRecord, RepoError};
use crate::time_expression::EpochMs;

use super::driver::Runtime;

/// A run's creation, submitted: [`finish`](PendingRun::finish) awaits the write and then
/// starts the instance. If the caller goes away before the write is acknowledged (an HTTP
/// client that disconnects drops the request's future), `Drop` finishes it in a task of its
/// own, so a written instance is never left unowned (or a `max_instances` slot reserved).
#[derive(Debug)]
pub(crate) struct PendingRun {
    pub(super) rt: Arc<Runtime>,
    pub(super) inner: Option<(Commit<InstanceRecord>, AfterCreate)>,
}

impl PendingRun {
    /// Awaits the write; once acknowledged the instance is started and its id returned.
    pub(super) async fn finish(mut self) -> Result<InstanceId, RepoError> {
        let t = std::time::Instant::now();
        let result = match self.inner.as_mut() {
            Some((commit, _)) => (&mut *commit).await,
            None => return Err(RepoError::not_found("pending run", 0)),
        };
        self.rt.metrics.store_commit.observe(t.elapsed());
        let Some((_, then)) = self.inner.take() else {
            return Err(RepoError::not_found("pending run", 0));
        };
        match result {
            Ok(rec) => {
                let id = rec.id;
                self.rt.step(|core, now| core.after_create(rec, then, now));
                Ok(id)
            }
            Err(e) => {
                self.rt.metrics.store_write_failed(&e);
                self.rt.step(|core, _| core.create_failed(then));
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
        let rt = Arc::clone(&self.rt);
        // Without a runtime (the process is ending) there is nothing left to start.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let result = rt.await_commit(commit).await;
                rt.step(|core, now| core.created(result, then, now));
            });
        }
    }
}

/// A batch of runs' creation, submitted as one write: [`PendingRun`] for many runs. The
/// follow-ups are in the order of the write's records.
#[derive(Debug)]
pub(crate) struct PendingRuns {
    pub(super) rt: Arc<Runtime>,
    pub(super) inner: Option<(Commit<Vec<InstanceRecord>>, Vec<AfterCreate>)>,
}

impl PendingRuns {
    /// Awaits the one write; once acknowledged every instance is started (in one step) and
    /// the ids are returned in order.
    pub(super) async fn finish(mut self) -> Result<Vec<InstanceId>, RepoError> {
        let t = std::time::Instant::now();
        let result = match self.inner.as_mut() {
            Some((commit, _)) => (&mut *commit).await,
            None => return Err(RepoError::not_found("pending runs", 0)),
        };
        self.rt.metrics.store_commit.observe(t.elapsed());
        let Some((_, thens)) = self.inner.take() else {
            return Err(RepoError::not_found("pending runs", 0));
        };
        if let Err(e) = &result {
            self.rt.metrics.store_write_failed(e);
        }
        self.rt
            .step(|core, now| start_all(core, result, thens, now))
    }
}

impl Drop for PendingRuns {
    fn drop(&mut self) {
        let Some((commit, thens)) = self.inner.take() else {
            return;
        };
        let rt = Arc::clone(&self.rt);
        // Without a runtime (the process is ending) there is nothing left to start.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let result = rt.await_commit(commit).await;
                // The ids have no one to go to: the instances start all the same.
                let _ = rt.step(|core, now| start_all(core, result, thens, now));
            });
        }
    }
}

/// A batch's write came back: every instance is started, or (the write failed) what each
/// run reserved is released.
fn start_all(
    core: &mut Core,
    result: Result<Vec<InstanceRecord>, RepoError>,
    thens: Vec<AfterCreate>,
    now: EpochMs,
) -> Result<Vec<InstanceId>, RepoError> {
    match result {
        Ok(records) => {
            debug_assert_eq!(records.len(), thens.len(), "one follow-up per run");
            let mut ids = Vec::with_capacity(records.len());
            let mut thens = thens.into_iter();
            for rec in records {
                ids.push(rec.id);
                match thens.next() {
                    Some(then) => core.after_create(rec, then, now),
                    None => core.after_create(rec, AfterCreate::Dispatch { at: None }, now),
                }
            }
            for then in thens {
                core.create_failed(then);
            }
            Ok(ids)
        }
        Err(e) => {
            for then in thens {
                core.create_failed(then);
            }
            Err(e)
        }
    }
}

/// [`Api::run_job_batch`](crate::api::Api::run_job_batch): the batch checked, its runs
/// prepared and written in one step and one write, then started once it is acknowledged.
pub(super) async fn run_batch(
    rt: Arc<Runtime>,
    app: AppRef,
    id: JobId,
    req: RunJobBatch,
) -> Result<RunBatchCreated, ApiError> {
    req.check()?;
    let runs = req
        .runs
        .into_iter()
        .map(|r| (r.params, r.delay_ms))
        .collect();
    let submitted = rt.step(|core, now| core.prepare_runs(app.id, id, runs, now))?;
    let instance_ids = PendingRuns {
        rt,
        inner: Some(submitted),
    }
    .finish()
    .await?;
    Ok(RunBatchCreated { instance_ids })
}
