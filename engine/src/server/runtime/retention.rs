//! Retention: finished instances are kept per job up to a count
//! ([`ServerConfig::keep_finished_runs`](super::ServerConfig::keep_finished_runs)) and for a
//! time ([`ServerConfig::retention_ms`](super::ServerConfig::retention_ms)), then deleted
//! with their logs. Deletion runs on a blocking thread, never on the async runtime, and each
//! round is bounded, so a slow disk delays it without delaying timers, heartbeats or the API.
//!
//! Both rules cover every kind of instance: scheduled fires, API runs, retried runs and the
//! job instances of workflow nodes. An instance is never deleted while the server holds it
//! (not final, or not yet dropped from memory), nor while the workflow instance whose node it
//! ran is still running.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

use super::driver::Runtime;

/// Instance records one sweep round examines at most.
const SWEEP_EXAMINE: usize = 50_000;
/// Instances one sweep round deletes at most.
const SWEEP_DELETE: usize = 10_000;
/// Instances one count prune deletes at most.
const PRUNE_DELETE: usize = 1000;

impl Runtime {
    /// Deletes, in the background, `job`'s finished instances beyond the newest
    /// `keep_finished_runs`.
    pub(super) fn prune_in_background(self: &Arc<Self>, job: JobId) {
        let sh = Arc::clone(self);
        let keep = self.config.keep_finished_runs;
        tokio::task::spawn_blocking(move || {
            let ids = match sh.repo.finished_beyond(job, keep, PRUNE_DELETE) {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(job = job.0, error = %e, "pruning failed");
                    return;
                }
            };
            let n = sh.delete_finished(&ids);
            if n > 0 {
                tracing::debug!(job = job.0, deleted = n, "old finished runs pruned");
            }
        });
    }

    /// Starts a round of the age sweep (instances finished before `cutoff`) on a blocking
    /// thread, unless the previous round is still deleting.
    pub(super) fn sweep_in_background(self: &Arc<Self>, cutoff: EpochMs) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let sh = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            sh.sweep(cutoff);
            sh.metrics.retention_sweeps.fetch_add(1, Ordering::Relaxed);
            sh.sweeping.store(false, Ordering::Release);
        });
    }

    /// One bounded round of the age sweep, continuing where the previous round stopped.
    fn sweep(&self, cutoff: EpochMs) {
        let from = InstanceId(self.sweep_from.load(Ordering::Acquire));
        let (ids, next) = match self
            .repo
            .finished_before(cutoff, from, SWEEP_EXAMINE, SWEEP_DELETE)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "retention sweep failed");
                return;
            }
        };
        // The next round starts from the beginning once this one reached the young tail.
        self.sweep_from
            .store(next.map_or(0, |n| n.0), Ordering::Release);
        let n = self.delete_finished(&ids);
        if n > 0 {
            self.metrics
                .retention_deleted
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::info!(
                deleted = n,
                cutoff,
                "instances past their retention deleted"
            );
        }
    }

    /// Deletes each finished instance of `ids` the server does not hold (blocking); returns
    /// how many were deleted.
    fn delete_finished(&self, ids: &[InstanceId]) -> usize {
        let mut deleted = 0;
        for &id in ids {
            if !self.core.lock().may_delete(id) {
                continue;
            }
            match self.repo.delete_instance(id, false).and_then(|c| c.wait()) {
                Ok(()) => {
                    self.log_counts.remove(&id);
                    deleted += 1;
                }
                Err(e) => tracing::debug!(instance = id.0, error = %e, "not deleted"),
            }
        }
        deleted
    }
}
