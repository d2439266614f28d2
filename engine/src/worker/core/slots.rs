//! Per-job concurrency slots: `ScheduleJob::concurrency` bounds the processor runs of one job
//! on this worker at once, across its instances (and the broadcast tasks this worker runs for
//! other TaskTrackers). Waiters are served first come, first served.

use std::collections::{HashMap, VecDeque};

/// Who holds or waits for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The only task of a STANDALONE instance (held across its retries).
    Standalone { instance_id: u64 },
    /// One attempt of a BROADCAST instance's task on this worker, for its own TaskTracker.
    BroadcastTask { instance_id: u64, index: usize },
    /// A broadcast task another worker's TaskTracker asked this worker to run.
    Peer { ticket: u64 },
}

#[derive(Debug)]
struct Job {
    /// The latest concurrency seen for the job (at least 1).
    limit: u32,
    used: u32,
    waiting: VecDeque<Holder>,
}

/// The slots of every job with a run or a waiter on this worker; a job with neither is
/// forgotten, so the map is bounded by the live jobs.
#[derive(Debug, Default)]
pub(crate) struct JobSlots {
    jobs: HashMap<u64, Job>,
}

impl JobSlots {
    /// Queues `holder` for a slot of `job_id` (whose limit becomes `concurrency`, at least 1)
    /// and returns every holder granted a slot now, in queue order (possibly `holder`).
    pub(crate) fn acquire(&mut self, job_id: u64, concurrency: u32, holder: Holder) -> Vec<Holder> {
        let job = self.jobs.entry(job_id).or_insert_with(|| Job {
            limit: 1,
            used: 0,
            waiting: VecDeque::new(),
        });
        job.limit = concurrency.max(1);
        job.waiting.push_back(holder);
        Self::pump(job)
    }

    /// Frees one slot of `job_id` and returns the holders granted one now.
    pub(crate) fn release(&mut self, job_id: u64) -> Vec<Holder> {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            debug_assert!(false, "release of a job without slots");
            return Vec::new();
        };
        debug_assert!(job.used > 0, "release without a held slot");
        job.used = job.used.saturating_sub(1);
        let granted = Self::pump(job);
        self.forget_if_idle(job_id);
        granted
    }

    /// Removes `holder` from `job_id`'s waiters; `true` if it was waiting.
    pub(crate) fn withdraw(&mut self, job_id: u64, holder: Holder) -> bool {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        let before = job.waiting.len();
        job.waiting.retain(|h| *h != holder);
        let removed = job.waiting.len() != before;
        self.forget_if_idle(job_id);
        removed
    }

    /// Slots of `job_id` in use.
    pub(crate) fn used(&self, job_id: u64) -> u32 {
        self.jobs.get(&job_id).map_or(0, |j| j.used)
    }

    /// Jobs with a run or a waiter.
    #[cfg(test)]
    pub(crate) fn jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Holders waiting, over every job.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.jobs.values().map(|j| j.waiting.len()).sum()
    }

    fn pump(job: &mut Job) -> Vec<Holder> {
        let mut granted = Vec::new();
        while job.used < job.limit {
            let Some(h) = job.waiting.pop_front() else {
                break;
            };
            job.used += 1;
            granted.push(h);
        }
        granted
    }

    fn forget_if_idle(&mut self, job_id: u64) {
        if self
            .jobs
            .get(&job_id)
            .is_some_and(|j| j.used == 0 && j.waiting.is_empty())
        {
            self.jobs.remove(&job_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(instance_id: u64) -> Holder {
        Holder::Standalone { instance_id }
    }

    #[test]
    fn grants_up_to_the_limit_then_first_come_first_served() {
        let mut s = JobSlots::default();
        assert_eq!(s.acquire(1, 2, sa(1)), [sa(1)]);
        assert_eq!(s.acquire(1, 2, sa(2)), [sa(2)]);
        assert!(s.acquire(1, 2, sa(3)).is_empty());
        assert!(s.acquire(1, 2, sa(4)).is_empty());
        assert_eq!(s.used(1), 2);
        assert_eq!(s.release(1), [sa(3)]);
        assert!(s.withdraw(1, sa(4)));
        assert!(!s.withdraw(1, sa(4)));
        assert!(s.release(1).is_empty());
        assert!(s.release(1).is_empty());
        assert_eq!(s.jobs(), 0, "an idle job is forgotten");
    }

    #[test]
    fn a_lower_limit_applies_to_new_grants_and_a_higher_one_wakes_waiters() {
        let mut s = JobSlots::default();
        assert_eq!(s.acquire(1, 2, sa(1)), [sa(1)]);
        assert_eq!(s.acquire(1, 2, sa(2)), [sa(2)]);
        // The limit drops to 1: nobody new until both are back.
        assert!(s.acquire(1, 1, sa(3)).is_empty());
        assert!(s.release(1).is_empty());
        assert_eq!(s.release(1), [sa(3)]);
        // The limit rises to 3: the queue is served at once.
        assert!(s.acquire(1, 1, sa(4)).is_empty());
        assert_eq!(s.acquire(1, 3, sa(5)), [sa(4), sa(5)]);
        assert_eq!(s.used(1), 3);
        assert_eq!(s.waiting(), 0);
    }
}
