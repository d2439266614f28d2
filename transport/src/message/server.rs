//! Messages between the server and workers.

use super::common::{
    wire_type, AlarmConfig, ContextEntry, ExecuteType, InstanceStatus, LogConfig, LogLevel,
    ProcessorType, SystemMetrics, TimeExpressionType,
};

wire_type! {
/// Worker → server, periodically: the worker is alive, and how healthy it is.
pub struct WorkerHeartbeat {
    /// Address the worker is reached at (`host:port`).
    pub worker_address: String,
    /// App the worker belongs to.
    pub app_name: String,
    /// App id as the server assigned it.
    pub app_id: u64,
    /// Worker clock when the heartbeat was built, epoch milliseconds.
    pub heartbeat_time_ms: i64,
    /// Worker software version.
    pub version: String,
    /// Worker tag for SPECIFY dispatch, if any.
    pub tag: Option<String>,
    /// The worker asks not to be sent new instances.
    pub overloaded: bool,
    /// TaskTrackers without persistence (plain STANDALONE instances).
    pub lightweight_task_trackers: u32,
    /// TaskTrackers with persistence (MAP, MAP_REDUCE, BROADCAST, fixed rate/delay).
    pub heavy_task_trackers: u32,
    /// ProcessorTrackers running on this worker.
    pub processor_trackers: u32,
    /// Health measurements and score.
    pub metrics: SystemMetrics,
}
}

wire_type! {
/// Server → worker: run one instance of a job. The worker becomes its TaskTracker.
pub struct ScheduleJob {
    /// App the job belongs to.
    pub app_id: u64,
    /// The job.
    pub job_id: u64,
    /// This run.
    pub instance_id: u64,
    /// The workflow instance this run is a node of, if any.
    pub workflow_instance_id: Option<u64>,
    /// How the instance is split into tasks.
    pub execute_type: ExecuteType,
    /// What kind of processor runs the tasks.
    pub processor_type: ProcessorType,
    /// Which processor (a class name, a script, ...), interpreted by the processor type.
    pub processor_info: String,
    /// Parameters saved with the job.
    pub job_params: String,
    /// Parameters of this run (API runs, workflow nodes).
    pub instance_params: String,
    /// Wall-clock limit of the instance, milliseconds; 0 = none.
    pub instance_timeout_ms: u64,
    /// Threads per worker for this instance's tasks, at least 1.
    pub concurrency: u32,
    /// Times the worker re-runs a failed task.
    pub task_retry_num: u32,
    /// How the job's trigger times are described.
    pub time_expression_type: TimeExpressionType,
    /// The expression itself (cron text, period in ms, ...).
    pub time_expression: String,
    /// Concurrent instances allowed for the job; 0 = no limit.
    pub max_instance_num: u32,
    /// Every worker the instance may use (MAP, BROADCAST), `host:port`.
    pub all_worker_addresses: Vec<String>,
    /// Upper bound on workers used; 0 = no limit.
    pub max_worker_count: u32,
    /// Where the instance's log lines go.
    pub log_config: LogConfig,
    /// When failures raise an alarm.
    pub alarm_config: AlarmConfig,
    /// When the server dispatched this, epoch milliseconds.
    pub dispatch_time_ms: i64,
    /// The instance's last applied report sequence number: the worker numbers its reports
    /// of this attempt from `report_seq_base + 1`, so a re-dispatched instance's reports are
    /// never mistaken for stale ones. The server gives attempt `n` (from 1) the base
    /// `n << 32`, so `report_seq_base >> 32` is the attempt number workers stamp on log lines.
    pub report_seq_base: u64,
    /// The workflow instance's context when this node was dispatched (a JSON object as text);
    /// empty when the run is not a workflow node.
    pub workflow_context: String,
    /// What this run is for, the same for every attempt and across server restarts:
    /// `job-{job_id}-at-{trigger_time_ms}` for a scheduled fire, `instance-{instance_id}` for
    /// an API run or a backfill run; for a workflow node,
    /// `workflow-{workflow_id}-at-{trigger_time_ms}-node-{node}-attempt-{n}` (a scheduled
    /// workflow fire) or `workflow-instance-{id}-node-{node}-attempt-{n}`. Processors
    /// de-duplicate their writes by it, fenced by the attempt (`report_seq_base >> 32`).
    pub trigger_key: String,
    /// The run's logical trigger time, epoch milliseconds: when it was meant to fire (a
    /// backfill run's past instant; a workflow node's, its workflow instance's), not when it
    /// was dispatched.
    pub trigger_time_ms: i64,
    /// The sending server's fencing epoch for the app's partition (0 from a single server):
    /// a worker drops a `ScheduleJob` or `StopInstance` whose epoch is older than the
    /// highest it has seen for its app, so a server that lost the app cannot start or stop
    /// anything after a newer owner spoke.
    pub epoch: u64,
}
}

wire_type! {
/// Server → worker: stop one instance (a TaskTracker then stops its ProcessorTrackers).
pub struct StopInstance {
    /// The instance to stop.
    pub instance_id: u64,
    /// The sending server's fencing epoch for the app's partition (see
    /// [`ScheduleJob::epoch`]).
    pub epoch: u64,
}
}

wire_type! {
/// Server → worker (request): the status of one instance as its TaskTracker sees it.
/// Answered by [`InstanceStatusReply`], or an error reply with `NotFound`.
pub struct QueryInstanceStatus {
    /// The instance asked about.
    pub instance_id: u64,
}
}

wire_type! {
/// Worker → server, answer to [`QueryInstanceStatus`].
pub struct InstanceStatusReply {
    /// The instance.
    pub instance_id: u64,
    /// Its status.
    pub status: InstanceStatus,
    /// Result text, once final.
    pub result: Option<String>,
    /// Tasks created so far.
    pub total_tasks: u64,
    /// Tasks finished successfully.
    pub succeeded_tasks: u64,
    /// Tasks failed (after retries).
    pub failed_tasks: u64,
    /// Tasks running now.
    pub running_tasks: u64,
    /// When the instance started, epoch milliseconds.
    pub start_time_ms: i64,
}
}

wire_type! {
/// Worker (TaskTracker) → server: an instance's status changed or is still running.
/// `report_seq` grows by one per report of an instance from one tracker, and `source_address`
/// names the tracker, so the server drops stale and split-brain reports.
pub struct ReportInstanceStatus {
    /// App of the job.
    pub app_id: u64,
    /// The job.
    pub job_id: u64,
    /// The instance.
    pub instance_id: u64,
    /// Its workflow instance, if any.
    pub workflow_instance_id: Option<u64>,
    /// New status.
    pub status: InstanceStatus,
    /// Result text, once final.
    pub result: Option<String>,
    /// Tasks created so far.
    pub total_tasks: u64,
    /// Tasks finished successfully.
    pub succeeded_tasks: u64,
    /// Tasks failed (after retries).
    pub failed_tasks: u64,
    /// When the instance started, epoch milliseconds.
    pub start_time_ms: i64,
    /// When it ended, epoch milliseconds, once final.
    pub end_time_ms: Option<i64>,
    /// When this report was built, epoch milliseconds.
    pub report_time_ms: i64,
    /// Sequence number of this report for this instance from this tracker, from 1.
    pub report_seq: u64,
    /// Address of the reporting TaskTracker (`host:port`).
    pub source_address: String,
    /// Entries the instance appends to its workflow's context.
    pub appended_workflow_context: Vec<ContextEntry>,
    /// Whether this report should raise an alarm.
    pub alert: bool,
}
}

wire_type! {
/// One log line of an instance.
pub struct LogEntry {
    /// The instance the line belongs to.
    pub instance_id: u64,
    /// When it was logged, epoch milliseconds.
    pub time_ms: i64,
    /// Its severity.
    pub level: LogLevel,
    /// The text.
    pub content: String,
    /// Which attempt of the instance wrote it: 1 for the first dispatch, one more for each
    /// re-dispatch (the `report_seq_base >> 32` of the attempt's [`ScheduleJob`]); 0 when the
    /// worker could not tell.
    pub attempt: u32,
    /// Structured key-value fields the processor attached, in the order it gave them
    /// (senders keep at most 16 per line; keys up to 64 bytes, values up to 1 KiB).
    pub fields: Vec<LogField>,
}
}

wire_type! {
/// One structured field of a log line.
pub struct LogField {
    /// The name.
    pub key: String,
    /// The value, as text.
    pub value: String,
}
}

wire_type! {
/// Worker → server: a batch of instance log lines.
pub struct LogBatch {
    /// The worker that sends them.
    pub worker_address: String,
    /// The lines, oldest first.
    pub entries: Vec<LogEntry>,
}
}

wire_type! {
/// Worker → server (request): which workers may run tasks of this job now?
/// Answered by [`ExecutorCluster`].
pub struct QueryExecutorCluster {
    /// App of the job.
    pub app_id: u64,
    /// The job.
    pub job_id: u64,
}
}

wire_type! {
/// Server → worker, answer to [`QueryExecutorCluster`].
pub struct ExecutorCluster {
    /// Workers that may run the job's tasks, `host:port`.
    pub worker_addresses: Vec<String>,
}
}
