//! Processor runs: what the core's `Effect::StartRun` turns into. A run is one spawned task
//! per attempt (STANDALONE), per broadcast hook or task attempt, or per MAP/MAP_REDUCE
//! instance (its TaskTracker, `task_tracker`); it ends by feeding `Input::RunFinished`.
//!
//! ```text
//!  core: StartRun { job, kind } ─▶ spawn_run ─▶ select { biased;
//!                                                  instance token fired → "cancelled",
//!                                                  run_work(kind) → result }
//!                                               ─▶ drive(RunFinished { run, result })
//!  run_work: Standalone     → processor.process(ctx "0", attempt)
//!            BroadcastPre   → pre_process(ctx "pre")    BroadcastPost → post_process(results)
//!            BroadcastTask  → here: broadcast::run_local_task │ else broadcast::remote_attempt
//!            Map            → task_tracker::run (its own thread and links)
//! ```
//!
//! The token fires before the future is dropped, so a processor sees the cancellation;
//! dropping the future then stops what it owns (child processes, peer links). Which run comes
//! next, retries, slots, reports and timeouts are the core's (`core`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::{ScheduleJob, StartTask};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::admission::processor_unavailable;
use super::broadcast;
use super::core::{Input, ProcessorKind, Run, RunKind};
use super::driver::InstanceHandle;
use super::logs::InstanceLogger;
use super::processor::{summarise, ProcessResult, Registered, TaskContext};
use super::state::Shared;
use super::task_tracker;

/// What every task of one instance shares.
#[derive(Debug)]
pub(crate) struct InstanceInfo {
    pub job: ScheduleJob,
    pub job_params: Arc<str>,
    pub instance_params: Arc<str>,
    pub workflow_context: Arc<str>,
    pub trigger_key: Arc<str>,
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
            trigger_key: Arc::from(job.trigger_key.as_str()),
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
            trigger_key: Arc::clone(&self.trigger_key),
            trigger_time: self.job.trigger_time_ms,
            dispatch_attempt: super::state::attempt_of(&self.job),
            worker_address: Arc::clone(&shared.address),
            timeout: self.timeout,
            logger,
            cancel,
        }
    }
}

/// What is registered under `job`'s processor name, for the core.
pub(crate) fn processor_kind(shared: &Shared, job: &ScheduleJob) -> ProcessorKind {
    match shared.processors.get(&job.processor_info) {
        None => ProcessorKind::Missing(unknown_processor(shared, &job.processor_info).message),
        Some(Registered::Basic(_)) => ProcessorKind::Basic,
        Some(Registered::Broadcast(_)) => ProcessorKind::Broadcast,
        Some(Registered::Map { has_reduce, .. }) => ProcessorKind::Map {
            has_reduce: *has_reduce,
        },
    }
}

/// Spawns `run` on the runtime: its token is the instance's, so a cancelled instance drops
/// the run's future (after firing the token the processor sees); the result goes back to the
/// core either way.
pub(crate) fn spawn_run(shared: &Arc<Shared>, handle: &InstanceHandle, run: Run) {
    let shared = Arc::clone(shared);
    let info = Arc::clone(&handle.info);
    let cancel = handle.cancel.clone();
    let logger = handle.logger.clone();
    let runtime = shared.runtime.clone();
    runtime.spawn(async move {
        let work = run_work(&shared, info, &cancel, logger, run.kind);
        let result = tokio::select! {
            biased;
            // Cancellation first: a processor that returns because it saw the token must not
            // turn a STOPPED instance into a FAILED one (the core ignores this result anyway).
            () = cancel.cancelled() => ProcessResult::fail("cancelled"),
            r = work => r,
        };
        shared.drive(Input::RunFinished {
            run: run.id,
            result,
        });
    });
}

/// The future of one run, by kind.
fn run_work(
    shared: &Arc<Shared>,
    info: Arc<InstanceInfo>,
    cancel: &CancellationToken,
    logger: InstanceLogger,
    kind: RunKind,
) -> BoxFuture<'static, ProcessResult> {
    let job = &info.job;
    let Some(processor) = shared.processors.get(&job.processor_info).cloned() else {
        return ready(unknown_processor(shared, &job.processor_info));
    };
    match kind {
        RunKind::Standalone { attempt } => {
            let ctx = info.context(shared, "0", attempt, logger, cancel.child_token());
            run_attempt(processor.process(ctx))
        }
        RunKind::BroadcastPre => match &processor {
            Registered::Broadcast(p) => {
                let ctx = info.context(shared, "pre", 1, logger, cancel.child_token());
                run_attempt(Arc::clone(p).pre(ctx))
            }
            _ => ready(ProcessResult::ok("")),
        },
        RunKind::BroadcastTask {
            index,
            address,
            retry,
            local,
        } => {
            let start = StartTask {
                instance: info.job.clone(),
                task_tracker_address: shared.address.to_string(),
                sub_instance_id: 0,
                task_id: index.to_string(),
                task_name: "broadcast".to_string(),
                task_content: Vec::new(),
                current_retry: retry,
            };
            let shared = Arc::clone(shared);
            let cancel = cancel.clone();
            if local {
                Box::pin(async move {
                    broadcast::run_local_task(&shared, &start, logger, cancel.child_token()).await
                })
            } else {
                Box::pin(async move {
                    broadcast::remote_attempt(&shared, &address, start, cancel).await
                })
            }
        }
        RunKind::BroadcastPost { results } => match &processor {
            Registered::Broadcast(p) => {
                let ctx = info.context(shared, "post", 1, logger, cancel.child_token());
                run_attempt(Arc::clone(p).post(ctx, results))
            }
            _ => ready(summarise(&results)),
        },
        RunKind::Map { has_reduce } => match processor {
            Registered::Map { processor, .. } => Box::pin(task_tracker::run(
                Arc::clone(shared),
                info,
                processor,
                has_reduce,
                cancel.clone(),
                logger,
            )),
            _ => ready(ProcessResult::fail("not a MAP/MAP_REDUCE processor")),
        },
    }
}

fn ready(r: ProcessResult) -> BoxFuture<'static, ProcessResult> {
    Box::pin(std::future::ready(r))
}

/// The failure for a processor name this worker does not have (unknown, or a dangerous
/// built-in the operator did not allow).
pub(crate) fn unknown_processor(shared: &Shared, name: &str) -> ProcessResult {
    let why = processor_unavailable(
        shared.processors.keys().map(String::as_str),
        name,
        &shared.address,
    );
    ProcessResult::fail(why.to_string())
}

/// Runs one processor call; a panic becomes a failure ("processor panicked: ...").
pub(crate) fn run_attempt(
    call: BoxFuture<'static, ProcessResult>,
) -> BoxFuture<'static, ProcessResult> {
    Box::pin(async move {
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
    })
}
