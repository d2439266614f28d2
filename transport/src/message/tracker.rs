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
    /// When this report was built, epoch milliseconds.
    pub report_time_ms: i64,
    /// Entries the task appends to its workflow's context.
    pub appended_workflow_context: Vec<ContextEntry>,
}
}

wire_type! {
/// How busy a ProcessorTracker is.
pub enum ProcessorTrackerLoad {
    /// No task queued or running.
    Idle,
    /// Tasks queued or running.
    Load,
}
}

wire_type! {
/// ProcessorTracker → TaskTracker, periodically: its load, so the TaskTracker dispatches
/// to idle trackers and notices dead ones.
pub struct ProcessorTrackerStatus {
    /// The instance.
    pub instance_id: u64,
    /// Idle or loaded.
    pub load: ProcessorTrackerLoad,
    /// Tasks queued or running on this tracker.
    pub remaining_tasks: u32,
    /// The tracker's worker address (`host:port`).
    pub address: String,
    /// When this was built, epoch milliseconds.
    pub time_ms: i64,
}
}

wire_type! {
/// One task created by `map`.
pub struct SubTask {
    /// Task id, unique within the instance.
    pub task_id: String,
    /// Opaque payload handed to the processor.
    pub content: Vec<u8>,
}
}

wire_type! {
/// ProcessorTracker → TaskTracker (request): persist and dispatch these new tasks.
/// Answered by `Ack`, or an error reply.
pub struct MapSubtasks {
    /// The instance.
    pub instance_id: u64,
    /// The sub-instance, or 0.
    pub sub_instance_id: u64,
    /// Name of the map stage the tasks belong to.
    pub task_name: String,
    /// The new tasks.
    pub sub_tasks: Vec<SubTask>,
}
}
