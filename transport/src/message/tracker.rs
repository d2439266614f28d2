//! Messages between an instance's TaskTracker and its ProcessorTrackers on other workers.

use super::common::{wire_type, ContextEntry, TaskStatus};
use super::server::ScheduleJob;

wire_type! {
/// TaskTracker → ProcessorTracker: run one task.
pub struct StartTask {
    /// The instance the task belongs to, as the server dispatched it.
    pub instance: ScheduleJob,
    /// Address of the TaskTracker to report to.
    pub task_tracker_address: String,
    /// Sub-instance (a fixed-rate run, a workflow retry), or 0.
    pub sub_instance_id: u64,
    /// Task id, unique within the instance (PowerJob uses paths like `0.1.2`).
    pub task_id: String,
    /// Task name the processor branches on (`ROOT_TASK`, a map stage name, ...).
    pub task_name: String,
    /// Opaque task payload produced by `map`.
    pub task_content: Vec<u8>,
    /// How many times this task has been retried already.
    pub current_retry: u32,
}
}

wire_type! {
/// TaskTracker → ProcessorTracker: stop all tasks of an instance.
pub struct TrackerStopInstance {
    /// The instance.
    pub instance_id: u64,
}
}

wire_type! {
/// ProcessorTracker → TaskTracker: a task's status changed.
pub struct ReportTaskStatus {
    /// The instance.
    pub instance_id: u64,
    /// The sub-instance, or 0.
    pub sub_instance_id: u64,
    /// The task.
    pub task_id: String,
    /// Its new status.
    pub status: TaskStatus,
    /// Result text, once final.
    pub result: Option<String>,
    /// The attempt this report is about (1 for the first): a TaskTracker ignores a report
    /// whose attempt is not the task's current one (a late answer to an earlier attempt).
    pub attempt: u32,
    /// When this report was built, epoch milliseconds.
    pub report_time_ms: i64,
    /// Entries the task appends to its workflow's context.
    pub appended_workflow_context: Vec<ContextEntry>,
}
}

wire_type! {
/// One task of a [`StartTasks`] batch.
pub struct TaskSpec {
    /// Task id, unique within the instance (0 is the root task).
    pub task_id: u64,
    /// Dispatch number of this attempt (1 for the first dispatch); echoed in its
    /// [`TaskOutcome`] so that a late report of an earlier dispatch is recognised and ignored.
    pub dispatch: u32,
    /// Task name the processor branches on (`ROOT_TASK`, a map stage name).
    pub name: String,
    /// Opaque payload produced by `map` (at most 64 KiB).
    pub content: Vec<u8>,
}
}

wire_type! {
/// TaskTracker → ProcessorTracker: run these tasks of a MAP/MAP_REDUCE instance. The
/// instance header travels once per batch, not once per task; a batch fits one frame
/// (senders split by size).
pub struct StartTasks {
    /// The instance, as the server dispatched it to the TaskTracker.
    pub instance: ScheduleJob,
    /// Address of the TaskTracker.
    pub task_tracker_address: String,
    /// The tasks, in dispatch order.
    pub tasks: Vec<TaskSpec>,
}
}

wire_type! {
/// The final outcome of one task, in a [`ReportTaskStatuses`] batch.
pub struct TaskOutcome {
    /// The task.
    pub task_id: u64,
    /// The dispatch it answers ([`TaskSpec::dispatch`]).
    pub dispatch: u32,
    /// Whether the processor succeeded.
    pub success: bool,
    /// Its result, or its failure reason.
    pub result: String,
}
}

wire_type! {
/// ProcessorTracker → TaskTracker: final outcomes of tasks of a MAP/MAP_REDUCE instance, and
/// the tracker's load. Also sent with no outcome, periodically, as a sign of life.
pub struct ReportTaskStatuses {
    /// The instance.
    pub instance_id: u64,
    /// The ProcessorTracker's worker address (`host:port`).
    pub address: String,
    /// Tasks queued or running on this ProcessorTracker after these outcomes.
    pub remaining_tasks: u32,
    /// The outcomes.
    pub reports: Vec<TaskOutcome>,
}
}

wire_type! {
/// ProcessorTracker → TaskTracker (request): a running task maps subtasks. Answered by `Ack`
/// once they are durable in the TaskTracker's store, or by an error reply (the parent is
/// unknown or already final, a content is too large, the store failed).
pub struct MapTasks {
    /// The instance.
    pub instance_id: u64,
    /// The running task that maps.
    pub parent_task_id: u64,
    /// The parent's dispatch number.
    pub parent_dispatch: u32,
    /// This request's number among the parent attempt's map requests, from 0. A re-run of
    /// the parent numbers its requests from 0 again, and the TaskTracker acknowledges the
    /// ones an earlier attempt already had stored without storing them twice: a parent that
    /// maps the same way every time maps each subtask once.
    pub map_seq: u32,
    /// Name of the new tasks.
    pub task_name: String,
    /// One payload per new task, in order (ids are assigned consecutively).
    pub contents: Vec<Vec<u8>>,
}
}
