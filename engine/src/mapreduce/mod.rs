//! MAP / MAP_REDUCE: the TaskTracker's persistent task tree and its
//! scheduling core.
//!
//! Neither part opens a socket, spawns a task or reads a clock: the worker (`worker::task_tracker`)
//! feeds the core events and time, and ships what it returns.
//!
//! ```text
//!   ScheduleJob (MAP/MAP_REDUCE) ─▶ TaskTrackerCore::new ─▶ root task 0 in the TaskStore
//!   MapTasks from a task ─────────▶ TaskTrackerCore::map ─▶ TaskStore::map (pending, in order)
//!   ReportTaskStatuses.remaining ─▶ on_worker_status     ─▶ back-pressure, liveness
//!   every tick (now) ─────────────▶ poll_dispatch(now)   ─▶ [(worker, [TaskRecord])] → StartTasks
//!   ReportTaskStatuses.reports ───▶ on_task_reports      ─▶ Succeeded | Retry | Failed | Stale
//!   worker gone ──────────────────▶ on_worker_dead       ─▶ its tasks back to pending
//!   all tasks final ──────────────▶ poll_action()        ─▶ Action::Reduce / Action::Complete
//! ```
//!
//! - [`task_store`] holds [`TaskStore`]: the task tree of every instance in a
//!   `ferrojob_store::Store`, with a FIFO pending queue, a per-worker index and counters;
//!   `task.rs` holds the task's types and `task_codec.rs` their keys and encoding.
//! - [`tracker`] holds [`TaskTrackerCore`]: which pending task goes to which worker, retries,
//!   dead workers, completion and the reduce trigger.
//! - [`error`] holds [`TaskStoreError`].

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod error;
mod task;
mod task_codec;
pub mod task_store;
pub mod tracker;

pub use error::TaskStoreError;
pub use task_store::{
    Finish, TaskCounts, TaskRecord, TaskReport, TaskResult, TaskResults, TaskState, TaskStore,
    DEFAULT_MAX_TASKS_PER_INSTANCE, MAX_CONTENT_LEN, MAX_RESULT_LEN, TABLE_META, TABLE_PENDING,
    TABLE_TASKS, TABLE_WORKER,
};
pub use tracker::{Action, Dispatch, MapKind, TaskTrackerCore, TrackerConfig, ROOT_TASK_NAME};
