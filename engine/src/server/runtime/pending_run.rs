//! A run's creation between its write and its start: the piece that makes sure a written
//! instance is always started, even when the request that asked for it goes away.

use std::sync::Arc;

use crate::ids::InstanceId;
use crate::server::core::AfterCreate;
use crate::server::{Commit, InstanceRecord, RepoError};

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
