//! Errors of the task store and the tracker core.

use ferrojob_store::StoreError;

/// What can go wrong reading or changing an instance's task tree.
#[derive(Debug, thiserror::Error)]
pub enum TaskStoreError {
    /// The underlying store failed.
    #[error("task store: {0}")]
    Store(#[from] StoreError),
    /// Stored bytes do not decode: a corrupt or foreign value.
    #[error("corrupt {table} value at key {key:02x?}: {reason}")]
    Corrupt {
        /// Table holding the value.
        table: &'static str,
        /// Its key.
        key: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },
    /// A task's content is larger than [`MAX_CONTENT_LEN`](super::MAX_CONTENT_LEN).
    #[error("task content of {len} bytes exceeds the {max}-byte limit")]
    ContentTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A task named by the caller does not exist.
    #[error("instance {instance_id} has no task {task_id}")]
    NoSuchTask {
        /// The instance.
        instance_id: u64,
        /// The task.
        task_id: u64,
    },
    /// `map` from a task that already finished: its children could arrive after completion.
    #[error("task {task_id} of instance {instance_id} is final and cannot map subtasks")]
    ParentFinal {
        /// The instance.
        instance_id: u64,
        /// The parent task.
        task_id: u64,
    },
    /// `mark_dispatched` on a task that is not pending.
    #[error("task {task_id} of instance {instance_id} is not pending")]
    NotPending {
        /// The instance.
        instance_id: u64,
        /// The task.
        task_id: u64,
    },
    /// `map` would take the instance past its task limit
    /// ([`TaskStore::max_tasks_per_instance`](super::TaskStore::max_tasks_per_instance)).
    #[error(
        "instance {instance_id} may hold at most {max} tasks: it holds {held} and {asked} more \
         were mapped (the worker's --max-tasks-per-instance)"
    )]
    TooManyTasks {
        /// The instance.
        instance_id: u64,
        /// The limit.
        max: u64,
        /// Tasks the instance holds.
        held: u64,
        /// Tasks the refused call mapped.
        asked: u64,
    },
    /// A worker address longer than 65 535 bytes (it is length-prefixed in keys).
    #[error("worker address of {0} bytes is too long")]
    WorkerTooLong(usize),
    /// A counter would overflow or underflow: the counters disagree with the tasks.
    #[error("task counters of instance {0} are inconsistent")]
    Counters(u64),
}

impl TaskStoreError {
    pub(crate) fn corrupt(table: &'static str, key: &[u8], reason: impl Into<String>) -> Self {
        TaskStoreError::Corrupt {
            table,
            key: key.to_vec(),
            reason: reason.into(),
        }
    }
}
