//! One instance on its TaskTracker (the worker that received the `ScheduleJob`): accept,
//! RUNNING report, run with retries, timeout and stop, keepalives, exactly one final report.
//!
//! ```text
//!  ScheduleJob ─ accept(): insert into the running set (duplicates ignored) ─ spawn ─┐
//!  run_instance: RUNNING (seq base+1); MAP/MAP_REDUCE: task_tracker::run, progress ≤ 1 s                                                ▼
//!     select { work done │ token cancelled (stop/server lost/shutdown) │ timeout │ every
//!              keepalive_interval: RUNNING (next seq) }
//!     the token fires, then the work future is dropped (cancellation is real)
//!     final report (next seq) ─ finished cache ─ leave the running set
//! ```
//!
//! Concurrency: `ScheduleJob::concurrency` bounds the tasks of one *job* running at once on this
//! worker (a semaphore per job id, across its instances; broadcast tasks run for other
//! TaskTrackers included). An instance waiting for a slot is already RUNNING and its timeout
//! runs.
//!
//! Invariants: one task per instance owns its reports, so `report_seq` is strictly increasing
//! from `report_seq_base + 1` and there is exactly one final report, always the last; the final
//! report is queued before the instance leaves the running set (shutdown waits for that set to
//! empty, then flushes the queue).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::{
    ExecuteType, InstanceStatus, ProcessorType, ReportInstanceStatus, ScheduleJob,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::broadcast;
use super::epoch_ms;
use super::logs::{truncate_at_char_boundary, InstanceLogger};
use super::processor::{ProcessResult, Registered, TaskContext};
use super::state::{CancelReason, Finished, RunningInstance, Shared};
use super::task_tracker;

/// Result texts are cut to this many bytes (the server caps them again).
pub(crate) const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Results kept in the finished cache are cut to this many bytes, so that the cache's
/// 10 000 entries stay within ~40 MiB whatever processors return.
pub(crate) const MAX_CACHED_RESULT_BYTES: usize = 4 * 1024;

/// A MAP/MAP_REDUCE instance reports its task counts at least this often.
pub(crate) const MAP_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What every task of one instance shares.
#[derive(Debug)]
pub(crate) struct InstanceInfo {
    pub job: ScheduleJob,
    pub job_params: Arc<str>,
    pub instance_params: Arc<str>,
    pub workflow_context: Arc<str>,
    pub timeout: Option<Duration>,
}

impl InstanceInfo {
    pub(crate) fn new(job: ScheduleJob) -> Self {
        let timeout =
            (job.instance_timeout_ms > 0).then(|| Duration::from_millis(job.instance_timeout_ms));
        InstanceInfo {
            job_params: Arc::from(job.job_params.as_str()),
            instance_params: Arc::from(job.instance_params.as_str()),
            workflow_context: Arc::from(job.workflow_context.as_str()),
            timeout,
            job,
        }
    }

    /// A context for one attempt of task `task_id`.
    pub(crate) fn context(
        &self,
        shared: &Shared,
        task_id: &str,
        attempt: u32,
        logger: InstanceLogger,
        cancel: CancellationToken,
    ) -> TaskContext {
        TaskContext {
            instance_id: self.job.instance_id,
            job_id: self.job.job_id,
            job_params: Arc::clone(&self.job_params),
            instance_params: Arc::clone(&self.instance_params),
            workflow_instance_id: self.job.workflow_instance_id,
            workflow_context: Arc::clone(&self.workflow_context),
            task_id: Arc::from(task_id),
            attempt,
            worker_address: Arc::clone(&shared.address),
            timeout: self.timeout,
            logger,
            cancel,
        }
    }
}

/// Takes a `ScheduleJob` from the server: starts its instance unless it already runs here or
/// the worker shuts down.
pub(crate) fn accept(shared: &Arc<Shared>, job: ScheduleJob) {
    let id = job.instance_id;
    if shared.closing.load(Ordering::Acquire) {
        tracing::warn!(instance = id, "worker shutting down: ScheduleJob ignored");
        return;
    }
    let entry = Arc::new(RunningInstance::new(&job, shared.tasks_root.child_token()));
    {
        let mut running = shared.instances.lock();
        if running.contains_key(&id) {
            // A re-sent ScheduleJob for an instance already running here: the running
            // attempt keeps reporting; a second one would break the sequence.
            tracing::debug!(instance = id, "instance already running here: ignored");
            return;
        }
        running.insert(id, Arc::clone(&entry));
    }
    shared.finished.lock().remove(id);
    tokio::spawn(run_instance(Arc::clone(shared), job, entry));
}

/// The sequence numbers of one instance's reports (sans-IO): `base + 1`, `base + 2`, ...,
/// and nothing after the final report. A number handed out for a report that was not sent
/// (a skipped keepalive) can be given back, so the numbers the server sees have no gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportSeq {
    last: u64,
    finished: bool,
}

impl ReportSeq {
    pub(crate) fn new(base: u64) -> Self {
        ReportSeq {
            last: base,
            finished: false,
        }
    }

    /// The number of the next report; `None` once the final report has been numbered (and
    /// when the sequence would overflow, which a server never asks for).
    pub(crate) fn next(&mut self, is_final: bool) -> Option<u64> {
        if self.finished {
            return None;
        }
        self.last = self.last.checked_add(1)?;
        self.finished = is_final;
        Some(self.last)
    }

    /// Gives back `seq`, the last number handed out, if it was not final (a report not sent).
    pub(crate) fn give_back(&mut self, seq: u64) {
        if !self.finished && seq == self.last {
            self.last -= 1;
        }
    }
}

/// Numbers and sends one instance's reports.
struct Reporter {
    shared: Arc<Shared>,
    seq: ReportSeq,
}

impl Reporter {
    /// The next report, or `None` after the final one (see [`ReportSeq`]).
    fn report(
        &mut self,
        job: &ScheduleJob,
        entry: &RunningInstance,
        status: InstanceStatus,
        result: Option<String>,
    ) -> Option<ReportInstanceStatus> {
        let report_seq = self.seq.next(status.is_final())?;
        let (total, ok, failed, _) = entry.tasks.snapshot();
        let now = epoch_ms();
        Some(ReportInstanceStatus {
            app_id: job.app_id,
            job_id: job.job_id,
            instance_id: job.instance_id,
            workflow_instance_id: job.workflow_instance_id,
            end_time_ms: status.is_final().then_some(now),
            status,
            result,
            total_tasks: total,
            succeeded_tasks: ok,
            failed_tasks: failed,
            start_time_ms: entry.start_time_ms,
            report_time_ms: now,
            report_seq,
            source_address: self.shared.address.to_string(),
            appended_workflow_context: Vec::new(),
            alert: false,
        })
    }

    /// Queues a report, waiting while the outbound queue is full.
    async fn send(&self, report: Option<ReportInstanceStatus>) {
        let Some(report) = report else {
            return;
        };
        if self.shared.outbound.send(report.into()).await.is_err() {
            tracing::warn!("outbound queue closed: report dropped");
        }
    }
}

/// How the instance's work ended.
enum Outcome {
    Done(ProcessResult),
    Cancelled(CancelReason),
}

async fn run_instance(shared: Arc<Shared>, job: ScheduleJob, entry: Arc<RunningInstance>) {
    let mut reporter = Reporter {
        shared: Arc::clone(&shared),
        seq: ReportSeq::new(job.report_seq_base),
    };
    let running = reporter.report(&job, &entry, InstanceStatus::Running, None);
    reporter.send(running).await;

    let info = Arc::new(InstanceInfo::new(job));
    let logger = shared.logger(info.job.instance_id);
    let mut work = execute(
        Arc::clone(&shared),
        Arc::clone(&info),
        Arc::clone(&entry),
        logger.clone(),
    );
    // The timeout comes from the network: one too large to represent means "none".
    let now = tokio::time::Instant::now();
    let deadline = info.timeout.and_then(|t| now.checked_add(t));
    // A MAP/MAP_REDUCE instance's RUNNING reports carry its task counts: at least every
    // second, so that the server shows progress.
    let is_map = matches!(
        info.job.execute_type,
        ExecuteType::Map | ExecuteType::MapReduce
    );
    let mut keepalive_every = shared
        .config
        .keepalive_interval
        .clamp(Duration::from_millis(1), Duration::from_secs(86_400));
    if is_map {
        keepalive_every = keepalive_every.min(MAP_PROGRESS_EVERY);
    }
    let mut keepalive = tokio::time::interval_at(now + keepalive_every, keepalive_every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);

    let outcome = loop {
        tokio::select! {
            biased;
            // Cancellation first: a processor that returns because it saw the token must not
            // turn a STOPPED instance into a FAILED one.
            () = entry.cancel.cancelled() => break Outcome::Cancelled(entry.reason()),
            result = &mut work => break Outcome::Done(result),
            () = &mut timeout => {
                let ms = info.job.instance_timeout_ms;
                entry.cancel(CancelReason::TimedOut(ms));
                break Outcome::Cancelled(entry.reason());
            }
            _ = keepalive.tick() => {
                // A keepalive is worth nothing if it waits behind a full queue: skip it then.
                if let Some(r) = reporter.report(&info.job, &entry, InstanceStatus::Running, None) {
                    let seq = r.report_seq;
                    if shared.outbound.try_send(r.into()).is_err() {
                        reporter.seq.give_back(seq);
                    }
                }
            }
        }
    };
    // The token has fired (if cancelled); now the work really stops: its future is dropped,
    // and with it every processor future and child process it owns.
    drop(work);

    let (status, mut message) = match outcome {
        Outcome::Done(r) if r.success => (InstanceStatus::Succeed, r.message),
        Outcome::Done(r) => (InstanceStatus::Failed, r.message),
        Outcome::Cancelled(CancelReason::Stopped) => {
            (InstanceStatus::Stopped, "stopped by request".to_string())
        }
        Outcome::Cancelled(CancelReason::TimedOut(ms)) => {
            (InstanceStatus::Failed, format!("timed out after {ms} ms"))
        }
        Outcome::Cancelled(CancelReason::ServerLost) => (
            InstanceStatus::Failed,
            format!(
                "stopped: server unreachable for more than {:?} (fixed rate/delay work stops)",
                shared.config.server_lost_after
            ),
        ),
        Outcome::Cancelled(CancelReason::Shutdown) => {
            (InstanceStatus::Failed, "worker shut down".to_string())
        }
    };
    truncate_at_char_boundary(&mut message, MAX_RESULT_BYTES);
    if status != InstanceStatus::Succeed {
        logger.warn(format!("instance ended {status:?}: {message}"));
    }
    let id = info.job.instance_id;
    let final_report = reporter.report(&info.job, &entry, status.clone(), Some(message.clone()));
    reporter.send(final_report).await;
    let (total, ok, failed, _) = entry.tasks.snapshot();
    truncate_at_char_boundary(&mut message, MAX_CACHED_RESULT_BYTES);
    shared.finished.lock().insert(
        id,
        Finished {
            status,
            result: Some(message),
            start_time_ms: entry.start_time_ms,
            counts: (total, ok, failed),
        },
    );
    shared.instances.lock().remove(&id);
    shared.release_job_slot(entry.job_id);
    shared.instance_done.notify_waiters();
}

/// The instance's work, by execute type.
fn execute(
    shared: Arc<Shared>,
    info: Arc<InstanceInfo>,
    entry: Arc<RunningInstance>,
    logger: InstanceLogger,
) -> BoxFuture<'static, ProcessResult> {
    let job = &info.job;
    if job.processor_type == ProcessorType::External {
        return ready(ProcessResult::fail(
            "external processors are not supported by this worker",
        ));
    }
    let Some(processor) = shared.processors.get(&job.processor_info).cloned() else {
        return ready(unknown_processor(&shared, &job.processor_info));
    };
    match (&job.execute_type, processor) {
        (
            ExecuteType::Map | ExecuteType::MapReduce,
            Registered::Map {
                processor,
                has_reduce,
            },
        ) => Box::pin(task_tracker::run(
            shared, info, processor, has_reduce, entry, logger,
        )),
        (ExecuteType::Map | ExecuteType::MapReduce, _) => ready(ProcessResult::fail(format!(
            "processor {:?} is not a MAP/MAP_REDUCE processor (register it with map or map_reduce)",
            job.processor_info
        ))),
        (ExecuteType::Broadcast, processor) => {
            Box::pin(broadcast::run(shared, info, processor, entry, logger))
        }
        (_, processor) => Box::pin(run_standalone(shared, info, processor, entry, logger)),
    }
}

fn ready(r: ProcessResult) -> BoxFuture<'static, ProcessResult> {
    Box::pin(std::future::ready(r))
}

/// The failure for a processor name this worker does not have.
pub(crate) fn unknown_processor(shared: &Shared, name: &str) -> ProcessResult {
    let mut known: Vec<&str> = shared.processors.keys().map(String::as_str).collect();
    known.sort_unstable();
    ProcessResult::fail(format!(
        "unknown processor {name:?} (this worker has: {})",
        known.join(", ")
    ))
}

async fn run_standalone(
    shared: Arc<Shared>,
    info: Arc<InstanceInfo>,
    processor: Registered,
    entry: Arc<RunningInstance>,
    logger: InstanceLogger,
) -> ProcessResult {
    entry.tasks.total.store(1, Ordering::Relaxed);
    let slot = shared.job_slot(info.job.job_id, info.job.concurrency);
    let Ok(_permit) = slot.acquire_owned().await else {
        return ProcessResult::fail("worker shut down");
    };
    let retries = info.job.task_retry_num;
    let mut attempt = 1u32;
    let result = loop {
        let ctx = info.context(
            &shared,
            "0",
            attempt,
            logger.clone(),
            entry.cancel.child_token(),
        );
        let r = run_attempt(processor.process(ctx)).await;
        if r.success || attempt > retries {
            break r;
        }
        logger.warn(format!(
            "attempt {attempt} failed: {}; retrying ({} of {retries} retries left)",
            r.message,
            retries + 1 - attempt
        ));
        attempt += 1;
    };
    let counter = if result.success {
        &entry.tasks.succeeded
    } else {
        &entry.tasks.failed
    };
    counter.store(1, Ordering::Relaxed);
    result
}

/// Runs one processor call; a panic becomes a failure ("processor panicked: ...").
pub(crate) async fn run_attempt(call: BoxFuture<'static, ProcessResult>) -> ProcessResult {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            ProcessResult::fail(format!("processor panicked: {what}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_seq_counts_from_base_and_stops_after_the_final_report() {
        let mut s = ReportSeq::new(7);
        assert_eq!(s.next(false), Some(8));
        assert_eq!(s.next(false), Some(9));
        s.give_back(9); // a keepalive that was not sent
        assert_eq!(s.next(false), Some(9));
        s.give_back(3); // not the last one: ignored
        assert_eq!(s.next(true), Some(10));
        s.give_back(10); // final: never given back
        assert_eq!(s.next(false), None);
        assert_eq!(s.next(true), None);
        let mut top = ReportSeq::new(u64::MAX);
        assert_eq!(top.next(false), None);
    }
}
