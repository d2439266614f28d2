//! A BROADCAST instance on its TaskTracker, as the core runs it: one task per worker of
//! `all_worker_addresses` (this worker's own task runs here and holds a concurrency slot; the
//! others are remote attempts), each with its retries, then `post_process` or the default
//! summary.

use ferrojob_transport::message::LogLevel;

use super::instance::{BroadcastTask, Phase, TaskState};
use super::slots::Holder;
use super::{
    lifecycle::done, Effect, EpochMs, ProcessResult, ProcessorKind, RunKind, RunWhat, WorkerCore,
};
use crate::worker::processor::{summarise, TaskResult};

impl WorkerCore {
    pub(super) fn start_broadcast_tasks(&mut self, id: u64) {
        let own = self.config.address.clone();
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let mut addresses = i.job.all_worker_addresses.clone();
        if addresses.is_empty() {
            addresses.push(own.clone());
        }
        i.counts.total = addresses.len() as u64;
        let tasks: Vec<BroadcastTask> = addresses
            .into_iter()
            .map(|address| BroadcastTask {
                local: address == own,
                address,
                retry: 0,
                state: TaskState::WaitingSlot,
            })
            .collect();
        let n = tasks.len();
        i.phase = Phase::BroadcastTasks {
            tasks,
            results: vec![None; n],
        };
        for index in 0..n {
            self.start_broadcast_attempt(id, index);
        }
    }

    /// Starts (or queues for a slot) the next attempt of broadcast task `index`.
    pub(super) fn start_broadcast_attempt(&mut self, id: u64, index: usize) {
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let (job_id, concurrency) = (i.job.job_id, i.job.concurrency);
        let Phase::BroadcastTasks { tasks, .. } = &mut i.phase else {
            return;
        };
        let Some(task) = tasks.get_mut(index) else {
            return;
        };
        if task.local {
            task.state = TaskState::WaitingSlot;
            let holder = Holder::BroadcastTask {
                instance_id: id,
                index,
            };
            let granted = self.slots.acquire(job_id, concurrency, holder);
            self.on_granted(granted);
        } else {
            task.state = TaskState::Running;
            let kind = RunKind::BroadcastTask {
                index,
                address: task.address.clone(),
                retry: task.retry,
                local: false,
            };
            self.start_run(id, None, RunWhat::Task { index }, kind);
        }
    }

    /// Starts what the holders granted a slot were waiting to run.
    pub(super) fn on_task_finished(
        &mut self,
        now: EpochMs,
        slot: Option<u64>,
        id: u64,
        index: usize,
        result: ProcessResult,
    ) {
        self.release_slot(slot);
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let retries = i.job.task_retry_num;
        let Phase::BroadcastTasks { tasks, results } = &mut i.phase else {
            debug_assert!(false, "a broadcast task outside the task phase");
            return;
        };
        let Some(task) = tasks.get_mut(index) else {
            return;
        };
        if !result.success && task.retry < retries {
            self.effects.push_back(Effect::Log {
                instance_id: id,
                level: LogLevel::Warn,
                line: format!(
                    "broadcast task {index} on {} failed (retry {} of {retries}): {}",
                    task.address, task.retry, result.message
                ),
            });
            task.retry += 1;
            self.start_broadcast_attempt(id, index);
            return;
        }
        task.state = TaskState::Done;
        if result.success {
            i.counts.succeeded += 1;
        } else {
            i.counts.failed += 1;
        }
        if let Some(r) = results.get_mut(index) {
            *r = Some(TaskResult {
                worker: task.address.clone(),
                task_id: index.to_string(),
                success: result.success,
                message: result.message,
            });
        }
        if tasks.iter().any(|t| t.state != TaskState::Done) {
            return;
        }
        let results: Vec<TaskResult> = std::mem::take(results).into_iter().flatten().collect();
        if i.processor == ProcessorKind::Broadcast {
            i.phase = Phase::BroadcastPost;
            self.start_run(id, None, RunWhat::Post, RunKind::BroadcastPost { results });
        } else {
            let summary = summarise(&results);
            self.finish(now, id, done(summary));
        }
    }
}
