//! Enumerations and small records shared by several messages.
//!
//! Every enum here is a closed set on the wire: a value outside it fails archive validation
//! (bytecheck checks enum discriminants), so a peer cannot smuggle in an unknown status.

/// Derives for every wire type: rkyv for the wire, serde for tools, tests and peers' formats.
macro_rules! wire_type {
    ($item:item) => {
        #[derive(
            rkyv::Archive,
            rkyv::Serialize,
            rkyv::Deserialize,
            serde::Serialize,
            serde::Deserialize,
            Debug,
            Clone,
            PartialEq,
        )]
        $item
    };
}
pub(crate) use wire_type;

wire_type! {
/// How an instance is split into tasks (PowerJob's `ExecuteType`).
pub enum ExecuteType {
    /// One task on one worker.
    Standalone,
    /// One task on every selected worker.
    Broadcast,
    /// Tasks the processor creates with `map`.
    Map,
    /// `Map`, then one reduce task over all results.
    MapReduce,
}
}

wire_type! {
/// How a job's trigger times are described (PowerJob's `TimeExpressionType`).
pub enum TimeExpressionType {
    /// Run only when asked through the API.
    Api,
    /// A Quartz cron expression with a seconds field and an optional time zone.
    Cron,
    /// Every `n` milliseconds from the previous start.
    FixedRate,
    /// `n` milliseconds after the previous end.
    FixedDelay,
    /// An interval within a daily window on chosen days of the week.
    DailyTimeInterval,
    /// Started as a node of a workflow.
    Workflow,
}
}

wire_type! {
/// What kind of processor runs the tasks of a job.
pub enum ProcessorType {
    /// A processor compiled into the worker, looked up by `processor_info`.
    BuiltIn,
    /// A processor loaded from outside the worker (a script, a container, a plugin).
    External,
}
}

wire_type! {
/// The lifecycle of a job instance; the numbers are PowerJob's.
#[repr(u8)]
pub enum InstanceStatus {
    /// Created, waiting for the dispatcher.
    WaitingDispatch = 1,
    /// Sent to a worker, not yet acknowledged.
    WaitingWorkerReceive = 2,
    /// A worker runs it.
    Running = 3,
    /// Finished unsuccessfully.
    Failed = 4,
    /// Finished successfully.
    Succeed = 5,
    /// Cancelled before dispatch.
    Canceled = 9,
    /// Stopped by a user while running.
    Stopped = 10,
}
}

impl InstanceStatus {
    /// Whether the instance can no longer change state.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            InstanceStatus::Failed
                | InstanceStatus::Succeed
                | InstanceStatus::Canceled
                | InstanceStatus::Stopped
        )
    }
}

wire_type! {
/// The lifecycle of one task inside an instance.
pub enum TaskStatus {
    /// Created by the TaskTracker, not yet sent.
    WaitingDispatch,
    /// Sent to a ProcessorTracker, not yet acknowledged.
    DispatchedUnacknowledged,
    /// Acknowledged by the ProcessorTracker, queued on its pool.
    WorkerReceived,
    /// A processor thread runs it.
    WorkerProcessing,
    /// The processor returned failure.
    WorkerProcessFailed,
    /// The processor returned success.
    WorkerProcessSucceed,
}
}

wire_type! {
/// Severity of a log line.
pub enum LogLevel {
    /// Fine-grained diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the job survived.
    Warn,
    /// A failure.
    Error,
}
}

wire_type! {
/// Where a job's log lines go.
pub enum LogType {
    /// Shipped to the server in log batches.
    Online,
    /// Kept in the worker's local log.
    Local,
    /// Printed on the worker's standard output.
    Stdout,
    /// Dropped.
    Null,
}
}

wire_type! {
/// A job's logging configuration.
pub struct LogConfig {
    /// Destination of the job's log lines.
    pub log_type: LogType,
    /// Lines below this level are dropped at the source.
    pub level: LogLevel,
}
}

wire_type! {
/// When a job's failures raise an alarm.
pub struct AlarmConfig {
    /// Failures within `statistic_window_s` that raise an alarm; 0 = alarm on every failure.
    pub threshold: u32,
    /// Counting window, seconds.
    pub statistic_window_s: u32,
    /// After an alarm, no other alarm for this job for this many seconds.
    pub silence_window_s: u32,
}
}

wire_type! {
/// One entry of a workflow's context, appended by a task or an instance.
pub struct ContextEntry {
    /// Key, unique within a workflow instance's context.
    pub key: String,
    /// Value (free text; JSON by convention).
    pub value: String,
}
}

wire_type! {
/// A worker's health as measured by the worker itself.
pub struct SystemMetrics {
    /// Logical CPU cores available to the worker.
    pub cpu_cores: u32,
    /// One-minute load average.
    pub cpu_load: f64,
    /// Memory in use by the worker process, bytes.
    pub memory_used_bytes: u64,
    /// Memory the worker process may use, bytes.
    pub memory_max_bytes: u64,
    /// Disk in use on the worker's data volume, bytes.
    pub disk_used_bytes: u64,
    /// Size of the worker's data volume, bytes.
    pub disk_total_bytes: u64,
    /// Health score the worker computed (higher = healthier); used by HEALTH_FIRST dispatch.
    pub score: i32,
}
}

wire_type! {
/// Why a peer refused a request or closed a connection.
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or message was malformed.
    Malformed,
    /// The handshake failed: unknown app, wrong secret or wrong protocol version.
    AuthFailed,
    /// The protocol version is not supported by this peer.
    UnsupportedVersion,
    /// The message kind is not valid in this state or direction.
    UnexpectedMessage,
    /// The id named in the request is unknown (instance, job, app).
    NotFound,
    /// The peer is overloaded; retry later or elsewhere.
    Overloaded,
    /// The peer failed while handling the request.
    Internal,
    /// The peer shuts down.
    ShuttingDown,
    /// Nothing arrived for longer than the idle timeout.
    IdleTimeout,
    /// A frame was started but not finished within the frame timeout.
    SlowPeer,
    /// A frame was larger than the receiver's maximum.
    FrameTooLarge,
    /// This server of a cluster does not serve the app the handshake named: the message
    /// names the server that does, or says that it is not known; ask again elsewhere.
    NotOwner,
}
}
