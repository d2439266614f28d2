//! One instance on its TaskTracker, as the core keeps it: its job, report sequence, deadline,
//! keepalive, task counts and phase.

use std::sync::Arc;

use ferrojob_transport::message::{
    ExecuteType, InstanceStatus, ReportInstanceStatus, ScheduleJob, TimeExpressionType,
};

use super::seq::ReportSeq;
use super::EpochMs;
use crate::worker::processor::TaskResult;

/// What the driver found registered under the job's processor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProcessorKind {
    /// A [`BasicProcessor`](crate::worker::BasicProcessor).
    Basic,
    /// A [`BroadcastProcessor`](crate::worker::BroadcastProcessor) (pre/post hooks).
    Broadcast,
    /// A MAP or MAP_REDUCE processor.
    Map { has_reduce: bool },
    /// Nothing usable: the instance fails with this message.
    Missing(String),
}

/// Why an instance ends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Its work finished with this result.
    Done { success: bool, message: String },
    /// The server asked (`StopInstance`).
    Stopped,
    /// Its timeout (milliseconds) elapsed.
    TimedOut(u64),
    /// The server was unreachable for longer than `server_lost_after` (fixed rate/delay only).
    ServerLost,
    /// The worker shuts down.
    Shutdown,
}

/// Task counters of one instance (STANDALONE has one task, BROADCAST one per worker, MAP what
/// its TaskTracker reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl Counts {
    pub(crate) fn running(&self) -> u64 {
        self.total
            .saturating_sub(self.succeeded.saturating_add(self.failed))
    }
}

/// One task of a BROADCAST instance (one worker of `all_worker_addresses`).
#[derive(Debug)]
pub(crate) struct BroadcastTask {
    pub address: String,
    /// The worker's own address: runs here, holding a concurrency slot.
    pub local: bool,
    /// Retries done so far (0 for the first attempt).
    pub retry: u32,
    pub state: TaskState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Queued for a concurrency slot.
    WaitingSlot,
    Running,
    Done,
}

/// Where an instance's work is.
#[derive(Debug)]
pub(crate) enum Phase {
    /// STANDALONE, queued for a concurrency slot.
    WaitingSlot,
    /// STANDALONE, an attempt runs (the run knows which).
    Standalone,
    /// BROADCAST `pre_process` runs.
    BroadcastPre,
    /// BROADCAST tasks run; `results` in task order once each is done.
    BroadcastTasks {
        tasks: Vec<BroadcastTask>,
        results: Vec<Option<TaskResult>>,
    },
    /// BROADCAST `post_process` runs.
    BroadcastPost,
    /// A MAP/MAP_REDUCE TaskTracker runs.
    Map,
}

/// An instance this worker is the TaskTracker of.
#[derive(Debug)]
pub(crate) struct Instance {
    pub job: Arc<ScheduleJob>,
    /// Told apart from an earlier run of the same instance id on this worker.
    pub generation: u64,
    pub processor: ProcessorKind,
    pub seq: ReportSeq,
    pub start_time_ms: EpochMs,
    pub deadline: Option<EpochMs>,
    pub keepalive_every: i64,
    pub next_keepalive: EpochMs,
    pub counts: Counts,
    pub phase: Phase,
    /// Reports of this instance in the transmit queue.
    pub unsent: u32,
    /// Runs started and not finished.
    pub live_runs: u32,
}

impl Instance {
    /// FIXED_RATE / FIXED_DELAY: stopped when the server is lost for too long.
    pub(crate) fn is_fixed(&self) -> bool {
        matches!(
            self.job.time_expression_type,
            TimeExpressionType::FixedRate | TimeExpressionType::FixedDelay
        )
    }

    /// A "heavy" TaskTracker in heartbeats: fixed rate/delay or BROADCAST.
    pub(crate) fn is_heavy(&self) -> bool {
        self.is_fixed() || self.job.execute_type == ExecuteType::Broadcast
    }

    /// The next report, numbered; `None` after the final one.
    pub(crate) fn report(
        &mut self,
        now: EpochMs,
        source_address: &str,
        status: InstanceStatus,
        result: Option<String>,
    ) -> Option<ReportInstanceStatus> {
        let report_seq = self.seq.next(status.is_final())?;
        let job = &self.job;
        Some(ReportInstanceStatus {
            app_id: job.app_id,
            job_id: job.job_id,
            instance_id: job.instance_id,
            workflow_instance_id: job.workflow_instance_id,
            end_time_ms: status.is_final().then_some(now),
            status,
            result,
            total_tasks: self.counts.total,
            succeeded_tasks: self.counts.succeeded,
            failed_tasks: self.counts.failed,
            start_time_ms: self.start_time_ms,
            report_time_ms: now,
            report_seq,
            source_address: source_address.to_string(),
            appended_workflow_context: Vec::new(),
            alert: false,
        })
    }
}
