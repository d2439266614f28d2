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
//!
//! Finished workflow instances follow the same two rules: per workflow the newest
//! [`ServerConfig::keep_finished_workflow_runs`](super::ServerConfig::keep_finished_workflow_runs)
//! are kept, and none longer than `retention_ms`. A workflow instance is deleted with the job
//! instances of its nodes and their logs, never while it, its parent (a nested run's) or any
//! of its node instances or nested runs is still going (`core/delete.rs`). A round deletes
//! at most [`NODE_DELETE`] node instances with their workflow instances, so workflows of a
//! thousand nodes cannot make a round unbounded.
//!
//! Count prunes go through one queue of jobs ([`PruneQueue`]) served by at most one blocking
//! thread at a time, and a job is in the queue at most once: a job that finishes runs faster
//! than the disk deletes them gets one prune that deletes everything beyond its count, not
//! one thread per request all scanning and deleting the same instances. Each prune submits
//! its deletions first and then waits for them, so they share the store's group commits.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use std::hash::Hash;

use crate::ids::{InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::EpochMs;

use super::driver::Runtime;

/// Instance records one sweep round examines at most.
const SWEEP_EXAMINE: usize = 50_000;
/// Instances one sweep round deletes at most.
const SWEEP_DELETE: usize = 10_000;
/// Instances one count prune deletes at most.
const PRUNE_DELETE: usize = 1000;
/// Workflow instance records one sweep round examines at most (each one's snapshot is
/// decoded).
const WF_SWEEP_EXAMINE: usize = 10_000;
/// Workflow instances one sweep round deletes at most.
const WF_SWEEP_DELETE: usize = 1000;
/// Workflow instances one count prune deletes at most.
const WF_PRUNE_DELETE: usize = 100;
/// Node instances one round (a sweep's or a count prune's) deletes with their workflow
/// instances at most; the round stops at the first workflow instance past it, and the next
/// round continues from there.
const NODE_DELETE: usize = 10_000;
/// Jobs (or workflows) waiting for a count prune at most. A request beyond it is dropped:
/// the job asks again after its next quarter of `keep_finished_runs` finished runs.
const MAX_QUEUED_PRUNES: usize = 65_536;

/// Jobs (or workflows) waiting for a count prune, each at most once, and whether a thread
/// serves them.
#[derive(Debug)]
pub(crate) struct PruneQueue<K> {
    state: Mutex<PruneState<K>>,
}

impl<K> Default for PruneQueue<K> {
    fn default() -> Self {
        PruneQueue {
            state: Mutex::new(PruneState {
                jobs: VecDeque::new(),
                queued: HashSet::new(),
                serving: false,
            }),
        }
    }
}

#[derive(Debug)]
struct PruneState<K> {
    jobs: VecDeque<K>,
    queued: HashSet<K>,
    serving: bool,
}

impl<K: Copy + Eq + Hash> PruneQueue<K> {
    /// Queues `job` (unless it waits already or the queue is full); true when the caller
    /// must start the thread that serves the queue.
    fn push(&self, job: K) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.queued.len() < MAX_QUEUED_PRUNES && st.queued.insert(job) {
            st.jobs.push_back(job);
        }
        if st.serving || st.jobs.is_empty() {
            return false;
        }
        st.serving = true;
        true
    }

    /// The next job to prune; `None` (and the queue no longer served) when it is empty. A
    /// job taken may be queued again at once: its new finishes need a new prune.
    fn next(&self) -> Option<K> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match st.jobs.pop_front() {
            Some(job) => {
                st.queued.remove(&job);
                Some(job)
            }
            None => {
                st.serving = false;
                None
            }
        }
    }
}

impl Runtime {
    /// Deletes, in the background, `job`'s finished instances beyond the newest
    /// `keep_finished_runs`.
    pub(super) fn prune_in_background(self: &Arc<Self>, job: JobId) {
        if !self.prunes.push(job) {
            return;
        }
        let sh = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            while let Some(job) = sh.prunes.next() {
                sh.prune(job);
            }
        });
    }

    /// One count prune of `job` (blocking).
    fn prune(&self, job: JobId) {
        let keep = self.config.keep_finished_runs;
        let ids = match self.repo.finished_beyond(job, keep, PRUNE_DELETE) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(job = job.0, error = %e, "pruning failed");
                return;
            }
        };
        let n = self.delete_finished(&ids);
        if n > 0 {
            self.metrics
                .retention_pruned
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(job = job.0, deleted = n, "old finished runs pruned");
        }
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
            sh.sweep_workflows(cutoff);
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

    /// Deletes, in the background, workflow `wf`'s finished instances beyond the newest
    /// `keep_finished_workflow_runs`.
    pub(super) fn prune_wf_in_background(self: &Arc<Self>, wf: WorkflowId) {
        if !self.wf_prunes.push(wf) {
            return;
        }
        let sh = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            while let Some(wf) = sh.wf_prunes.next() {
                sh.prune_wf(wf);
            }
        });
    }

    /// One count prune of workflow `wf` (blocking).
    fn prune_wf(&self, wf: WorkflowId) {
        let keep = self.config.keep_finished_workflow_runs;
        let ids = match self.repo.wf_finished_beyond(wf, keep, WF_PRUNE_DELETE) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(workflow = wf.0, error = %e, "pruning failed");
                return;
            }
        };
        let (n, _) = self.delete_wf_finished(&ids);
        if n > 0 {
            self.metrics
                .retention_wf_pruned
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(
                workflow = wf.0,
                deleted = n,
                "old workflow instances pruned"
            );
        }
    }

    /// One bounded round of the age sweep of workflow instances, continuing where the
    /// previous round stopped.
    fn sweep_workflows(&self, cutoff: EpochMs) {
        let from = WorkflowInstanceId(self.wf_sweep_from.load(Ordering::Acquire));
        let (ids, next) =
            match self
                .repo
                .wf_finished_before(cutoff, from, WF_SWEEP_EXAMINE, WF_SWEEP_DELETE)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep of workflow instances failed");
                    return;
                }
            };
        let (n, stopped) = self.delete_wf_finished(&ids);
        // A round stopped by its node budget continues from the first workflow instance it
        // left; one that reached the young tail starts from the beginning.
        let next = stopped.or(next);
        self.wf_sweep_from
            .store(next.map_or(0, |n| n.0), Ordering::Release);
        if n > 0 {
            self.metrics
                .retention_wf_deleted
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::info!(
                deleted = n,
                cutoff,
                "workflow instances past their retention deleted"
            );
        }
    }

    /// Deletes each finished workflow instance of `ids` that nothing of is still going, with
    /// its node instances (blocking), up to [`NODE_DELETE`] node instances; returns how many
    /// were deleted and the first one left for the node budget.
    fn delete_wf_finished(
        &self,
        ids: &[WorkflowInstanceId],
    ) -> (usize, Option<WorkflowInstanceId>) {
        let mut submitted = Vec::with_capacity(ids.len());
        let mut nodes_submitted = 0usize;
        let mut stopped = None;
        for &id in ids {
            if nodes_submitted >= NODE_DELETE {
                stopped = Some(id);
                break;
            }
            let Some(nodes) = self.core.lock().retention_wf_begin(id) else {
                continue;
            };
            match self.repo.delete_wf_instance(id, false) {
                Ok(commit) => {
                    nodes_submitted += nodes.len();
                    submitted.push((id, nodes, commit));
                }
                Err(e) => {
                    self.core.lock().delete_wf_instance_end(id, &nodes);
                    tracing::debug!(wf_instance = id.0, error = %e, "not deleted");
                }
            }
        }
        let mut deleted = 0;
        for (id, nodes, commit) in submitted {
            let r = commit.wait();
            self.core.lock().delete_wf_instance_end(id, &nodes);
            match r {
                Ok(()) => {
                    for n in &nodes {
                        self.log_counts.remove(n);
                    }
                    deleted += 1;
                }
                Err(e) => tracing::debug!(wf_instance = id.0, error = %e, "not deleted"),
            }
        }
        (deleted, stopped)
    }

    /// Deletes each finished instance of `ids` the server does not hold (blocking); returns
    /// how many were deleted.
    fn delete_finished(&self, ids: &[InstanceId]) -> usize {
        // Every deletion is submitted before any is waited for: they share group commits.
        let mut submitted = Vec::with_capacity(ids.len());
        // The workflow links of all of them in one read, before the core's lock is taken;
        // an unreadable link keeps the instances.
        let links = match self.repo.workflow_instances_of(ids) {
            Ok(links) => links,
            Err(e) => {
                tracing::debug!(error = %e, "workflow links not read; nothing deleted");
                return 0;
            }
        };
        for (&id, wf) in ids.iter().zip(links) {
            if !self.core.lock().may_delete(id, wf) {
                continue;
            }
            match self.repo.delete_instance(id, false) {
                Ok(commit) => submitted.push((id, commit)),
                Err(e) => tracing::debug!(instance = id.0, error = %e, "not deleted"),
            }
        }
        let mut deleted = 0;
        for (id, commit) in submitted {
            match commit.wait() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_for_a_prune_at_most_once_and_one_thread_serves_the_queue() {
        let q = PruneQueue::<JobId>::default();
        assert!(q.push(JobId(1)), "the first request starts the thread");
        assert!(!q.push(JobId(1)), "a queued job is not queued twice");
        assert!(!q.push(JobId(2)), "the thread runs already");
        assert_eq!(q.next(), Some(JobId(1)));
        // Taken: its new finishes queue it again, behind the others.
        assert!(!q.push(JobId(1)));
        assert_eq!(q.next(), Some(JobId(2)));
        assert_eq!(q.next(), Some(JobId(1)));
        assert_eq!(q.next(), None);
        assert!(q.push(JobId(3)), "an empty queue is no longer served");
    }

    #[test]
    fn the_prune_queue_is_bounded() {
        let q = PruneQueue::<JobId>::default();
        for j in 0..MAX_QUEUED_PRUNES as u64 + 10 {
            q.push(JobId(j));
        }
        let mut n = 0;
        while q.next().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_QUEUED_PRUNES);
    }
}
