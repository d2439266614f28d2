//! A MAP/MAP_REDUCE task as the [`TaskStore`](super::TaskStore) keeps it: its state, record,
//! result, the per-instance counts and a worker's report.

use rkyv::{Archive, Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting in the pending queue.
    Pending,
    /// Sent to `worker`; `attempt` counts dispatches, this one included.
    Dispatched {
        /// Address of the ProcessorTracker's worker.
        worker: String,
        /// 1 for the first dispatch.
        attempt: u32,
    },
    /// Finished well.
    Succeeded {
        /// The processor's result (capped to [`MAX_RESULT_LEN`](super::MAX_RESULT_LEN)).
        result: String,
    },
    /// Failed for good: retries exhausted.
    Failed {
        /// The last failure's message (capped to [`MAX_RESULT_LEN`](super::MAX_RESULT_LEN)).
        reason: String,
        /// Dispatches made.
        attempts: u32,
    },
}

impl TaskState {
    /// True for `Succeeded` and `Failed`.
    pub fn is_final(&self) -> bool {
        matches!(self, TaskState::Succeeded { .. } | TaskState::Failed { .. })
    }
}

/// One task of an instance, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The instance.
    pub instance_id: u64,
    /// Task id, assigned from 0 in `map` order.
    pub task_id: u64,
    /// The task that mapped this one; `None` for the root.
    pub parent: Option<u64>,
    /// The name the processor branches on (`ROOT_TASK`, a map stage).
    pub name: String,
    /// Opaque payload, at most [`MAX_CONTENT_LEN`](super::MAX_CONTENT_LEN) bytes.
    pub content: Vec<u8>,
    /// Where the task is.
    pub status: TaskState,
    /// Failed attempts retried so far.
    pub retries: u32,
    /// Dispatches made so far (retries and requeues of a dead worker's tasks included).
    pub dispatches: u32,
    /// Position in the pending queue while `Pending`.
    pub pending_seq: u64,
    /// The worker whose failure caused the last retry: the next dispatch avoids it if it can.
    pub avoid_worker: Option<String>,
}

/// One final task, as [`TaskStore::results`](super::TaskStore::results) streams them for reduce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskResult {
    /// The task.
    pub task_id: u64,
    /// Its parent; `None` for the root.
    pub parent: Option<u64>,
    /// Its name.
    pub name: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Its result, or its failure reason.
    pub result: String,
}

/// An instance's task counters (`total = pending + running + succeeded + failed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Tasks ever mapped.
    pub total: u64,
    /// Waiting in the queue.
    pub pending: u64,
    /// Dispatched, not reported yet.
    pub running: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
}

impl TaskCounts {
    /// True when there are tasks and every one is final.
    pub fn all_final(&self) -> bool {
        self.total > 0 && self.pending == 0 && self.running == 0
    }
}

/// A ProcessorTracker's final report on a task, for [`TaskStore::mark_finished_many`](super::TaskStore::mark_finished_many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskReport {
    /// The task.
    pub task_id: u64,
    /// The reporting worker's address.
    pub worker: String,
    /// The dispatch the report answers (`TaskRecord::dispatches` when it was sent); `None`
    /// skips that check. A report for another dispatch is [`Finish::Stale`].
    pub dispatch: Option<u32>,
    /// Whether the task succeeded.
    pub success: bool,
    /// Its result, or its failure message.
    pub result: String,
}

/// What [`TaskStore::mark_finished`](super::TaskStore::mark_finished) did with a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The task succeeded.
    Succeeded,
    /// The task failed and went back to the pending queue (`retries` is its new count).
    Retry {
        /// Retries so far, this one included.
        retries: u32,
    },
    /// The task failed for good.
    Failed,
    /// The report does not match the task's current dispatch (requeued, already final): ignored.
    Stale,
}
