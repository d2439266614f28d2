//! What a worker runs: [`BasicProcessor`], [`BroadcastProcessor`], [`MapProcessor`] and
//! [`MapReduceProcessor`], the [`TaskContext`] / [`MapContext`] they receive and the
//! [`ProcessResult`] they return.
//!
//! The public traits use `impl Future` returns (no boxing for implementors); the worker stores
//! them as `Arc<dyn DynBasic>` / `Arc<dyn DynBroadcast>` whose futures are boxed and `'static`
//! (the `Arc` travels into the future), so one processor serves any number of concurrent tasks.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::processor_tracker::Mapper;

use super::logs::InstanceLogger;

/// The outcome of one processor call: success or failure, and a message that becomes the
/// task's (or instance's) result text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessResult {
    /// Whether the call succeeded.
    pub success: bool,
    /// The result text (success) or the reason (failure).
    pub message: String,
}

impl ProcessResult {
    /// A success with `message` as its result.
    pub fn ok(message: impl Into<String>) -> Self {
        ProcessResult {
            success: true,
            message: message.into(),
        }
    }

    /// A failure with `message` as its reason.
    pub fn fail(message: impl Into<String>) -> Self {
        ProcessResult {
            success: false,
            message: message.into(),
        }
    }
}

/// The outcome of one broadcast task, as `post_process` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// Address of the worker that ran (or should have run) the task.
    pub worker: String,
    /// The task's id (its index in the instance's worker list, as decimal).
    pub task_id: String,
    /// Whether the task succeeded (after its retries).
    pub success: bool,
    /// The task's result text or failure reason.
    pub message: String,
}

/// Everything a processor knows about the task it runs. Cheap to clone (shared strings).
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) instance_id: u64,
    pub(crate) job_id: u64,
    pub(crate) job_params: Arc<str>,
    pub(crate) instance_params: Arc<str>,
    pub(crate) workflow_instance_id: Option<u64>,
    pub(crate) workflow_context: Arc<str>,
    pub(crate) task_id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) trigger_key: Arc<str>,
    pub(crate) trigger_time: i64,
    pub(crate) dispatch_attempt: u32,
    pub(crate) worker_address: Arc<str>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) logger: InstanceLogger,
    pub(crate) cancel: CancellationToken,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("instance_id", &self.instance_id)
            .field("job_id", &self.job_id)
            .field("task_id", &self.task_id)
            .field("attempt", &self.attempt)
            .field("trigger_key", &self.trigger_key)
            .field("dispatch_attempt", &self.dispatch_attempt)
            .field("worker_address", &self.worker_address)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// The job instance this task belongs to.
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The job.
    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    /// The parameters saved with the job.
    pub fn job_params(&self) -> &str {
        &self.job_params
    }

    /// The parameters of this run (API runs); empty when none were given.
    pub fn instance_params(&self) -> &str {
        &self.instance_params
    }

    /// The workflow instance this run is a node of, if any.
    pub fn workflow_instance_id(&self) -> Option<u64> {
        self.workflow_instance_id
    }

    /// The workflow instance's context when this node was dispatched: a JSON object as text
    /// (the run's init params plus what earlier nodes appended); empty when the run is not a
    /// workflow node. A node appends to it by returning a JSON object as its result.
    pub fn workflow_context(&self) -> &str {
        &self.workflow_context
    }

    /// The instance parameters if non-empty, else the job parameters: what most processors
    /// should act on.
    pub fn params(&self) -> &str {
        if self.instance_params.is_empty() {
            &self.job_params
        } else {
            &self.instance_params
        }
    }

    /// The task's id within the instance: `"0"` for a STANDALONE instance, the worker's index
    /// for a BROADCAST task, `"pre"`/`"post"` for the broadcast hooks.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// 1 for the first attempt of this task, 2 for its first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// What this run is for, the same for every attempt of it and across server restarts:
    /// `job-{job}-at-{trigger_time}` for a scheduled fire, `instance-{id}` for an API run or a
    /// backfill run; a workflow node's names its workflow run, node and node attempt
    /// (`workflow-{wf}-at-{trigger_time}-node-{node}-attempt-{n}` for a scheduled workflow
    /// fire, `workflow-instance-{id}-node-{node}-attempt-{n}` otherwise). A processor whose
    /// writes must happen once per run
    /// keys them by this, fenced by [`dispatch_attempt`](Self::dispatch_attempt).
    pub fn trigger_key(&self) -> &str {
        &self.trigger_key
    }

    /// The run's logical trigger time, ms since the epoch: when it was meant to fire (for a
    /// backfill run, the past instant it stands for; for a workflow node, its workflow
    /// instance's), not when it started.
    pub fn trigger_time(&self) -> i64 {
        self.trigger_time
    }

    /// The instance's dispatch number: 1 for the first dispatch, one more for each
    /// re-dispatch (an instance retry, a retry from the API, a worker lost). It only grows
    /// for a [`trigger_key`](Self::trigger_key), across server restarts too, so a
    /// downstream store that keeps the highest attempt it has seen per key can refuse the
    /// late write of an attempt it has already moved past (a fence). Task retries within one
    /// dispatch share it; [`attempt`](Self::attempt) tells them apart.
    pub fn dispatch_attempt(&self) -> u32 {
        self.dispatch_attempt
    }

    /// The address (`host:port`) of the worker running this task.
    pub fn worker_address(&self) -> &str {
        &self.worker_address
    }

    /// The instance's time limit, if it has one. The worker enforces it (the task's future is
    /// dropped); it is here so that processors can pass it on (e.g. to a child's own timeout).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The instance log: lines logged here are shipped to the server.
    pub fn logger(&self) -> &InstanceLogger {
        &self.logger
    }

    /// The cancellation signal: fired on stop, timeout, loss of the server (fixed rate/delay)
    /// and worker shutdown, just before the task's future is dropped.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the task has been cancelled. Processors that block a thread (instead of
    /// awaiting) should poll this.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes once the task is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// Processes one task of a STANDALONE instance (or every task of a BROADCAST instance whose
/// processor has no hooks).
///
/// Implemented for every `Fn(TaskContext) -> impl Future<Output = ProcessResult>`, so an async
/// closure is a processor. Cancellation is real: on stop or timeout the context's token fires
/// and then the future is dropped at its next `.await`.
pub trait BasicProcessor: Send + Sync + 'static {
    /// Runs one attempt of a task.
    fn process(&self, ctx: TaskContext) -> impl Future<Output = ProcessResult> + Send;
}

impl<F, Fut> BasicProcessor for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send,
{
    fn process(&self, ctx: TaskContext) -> impl Future<Output = ProcessResult> + Send {
        self(ctx)
    }
}

/// Processes a BROADCAST instance: `pre_process` once on the TaskTracker (the worker that
/// received the instance), `process` on every selected worker, `post_process` once on the
/// TaskTracker with every task's result; `post_process` decides the instance's outcome.
pub trait BroadcastProcessor: Send + Sync + 'static {
    /// Runs once before any task; a failure fails the instance and no task runs.
    fn pre_process(&self, ctx: TaskContext) -> impl Future<Output = ProcessResult> + Send {
        let _ = ctx;
        async { ProcessResult::ok("") }
    }

    /// Runs on every worker of the instance.
    fn process(&self, ctx: TaskContext) -> impl Future<Output = ProcessResult> + Send;

    /// Runs once after every task finished (after its retries); its result is the instance's.
    /// The default succeeds iff every task succeeded ([`summarise`]).
    fn post_process(
        &self,
        ctx: TaskContext,
        results: Vec<TaskResult>,
    ) -> impl Future<Output = ProcessResult> + Send {
        let _ = ctx;
        async move { summarise(&results) }
    }
}

/// The default broadcast post-processing: success iff every task succeeded; the message says
/// how many did and names the failed ones (`"2/3 tasks succeeded; failed: 1@host:port: why"`).
pub fn summarise(results: &[TaskResult]) -> ProcessResult {
    let ok = results.iter().filter(|r| r.success).count();
    let mut message = format!("{ok}/{} tasks succeeded", results.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.success)
        .map(|r| format!("{}@{}: {}", r.task_id, r.worker, r.message))
        .collect();
    if !failed.is_empty() {
        message.push_str("; failed: ");
        message.push_str(&failed.join("; "));
    }
    ProcessResult {
        success: ok == results.len(),
        message,
    }
}

/// Object-safe form of [`BasicProcessor`].
pub(crate) trait DynBasic: Send + Sync + 'static {
    fn call(self: Arc<Self>, ctx: TaskContext) -> BoxFuture<'static, ProcessResult>;
}

impl<P: BasicProcessor> DynBasic for P {
    fn call(self: Arc<Self>, ctx: TaskContext) -> BoxFuture<'static, ProcessResult> {
        Box::pin(async move { self.process(ctx).await })
    }
}

/// Object-safe form of [`BroadcastProcessor`].
pub(crate) trait DynBroadcast: Send + Sync + 'static {
    fn pre(self: Arc<Self>, ctx: TaskContext) -> BoxFuture<'static, ProcessResult>;
    fn call(self: Arc<Self>, ctx: TaskContext) -> BoxFuture<'static, ProcessResult>;
    fn post(
        self: Arc<Self>,
        ctx: TaskContext,
        results: Vec<TaskResult>,
    ) -> BoxFuture<'static, ProcessResult>;
}

impl<P: BroadcastProcessor> DynBroadcast for P {
    fn pre(self: Arc<Self>, ctx: TaskContext) -> BoxFuture<'static, ProcessResult> {
        Box::pin(async move { self.pre_process(ctx).await })
    }
    fn call(self: Arc<Self>, ctx: TaskContext) -> BoxFuture<'static, ProcessResult> {
        Box::pin(async move { self.process(ctx).await })
    }
    fn post(
        self: Arc<Self>,
        ctx: TaskContext,
        results: Vec<TaskResult>,
    ) -> BoxFuture<'static, ProcessResult> {
        Box::pin(async move { self.post_process(ctx, results).await })
    }
}

/// Why [`MapContext::map`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The TaskTracker refused the subtasks (the parent task is no longer running there, a
    /// content is over 64 KiB, its store failed): the message says which.
    #[error("the TaskTracker refused the subtasks: {0}")]
    Refused(String),
    /// The TaskTracker could not be reached or did not answer in time.
    #[error("the TaskTracker is unreachable: {0}")]
    Unreachable(String),
}

/// What a MAP/MAP_REDUCE task receives: the [`TaskContext`] (through `Deref`: params, logger,
/// cancellation) plus the task's name and content and the way to map subtasks.
///
/// For a MAP task, [`TaskContext::attempt`] is the task's dispatch number: 1 for the first,
/// and one more for each retry or re-dispatch after its worker died.
pub struct MapContext {
    pub(crate) task: TaskContext,
    pub(crate) map_task_id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) content: Vec<u8>,
    pub(crate) mapper: Mapper,
}

impl fmt::Debug for MapContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapContext")
            .field("task", &self.task)
            .field("name", &self.name)
            .field("content_len", &self.content.len())
            .finish_non_exhaustive()
    }
}

impl Deref for MapContext {
    type Target = TaskContext;
    fn deref(&self) -> &TaskContext {
        &self.task
    }
}

impl MapContext {
    /// True for the root task (id 0, named [`crate::mapreduce::ROOT_TASK_NAME`]), the one task
    /// the TaskTracker creates itself; every other task was mapped by a task.
    pub fn is_root(&self) -> bool {
        self.map_task_id == 0
    }

    /// The task's numeric id within the instance (0 for the root; ids grow in `map` order).
    /// [`TaskContext::task_id`] is the same number as text.
    pub fn map_task_id(&self) -> u64 {
        self.map_task_id
    }

    /// The task's name: `ROOT_TASK` for the root, else the name given to `map`.
    pub fn task_name(&self) -> &str {
        &self.name
    }

    /// The task's payload, as given to `map` (empty for the root).
    pub fn task_content(&self) -> &[u8] {
        &self.content
    }

    /// The underlying task context.
    pub fn task(&self) -> &TaskContext {
        &self.task
    }

    /// Creates one subtask named `name` per payload in `contents` (each at most 64 KiB).
    /// Returns once the TaskTracker has stored them all (committed to its task store), so a
    /// task that maps and then finishes can never be seen finished without its children.
    /// Large batches are sent in several requests, in order; an error leaves the ones before
    /// it mapped. Call it only while the task runs (the TaskTracker refuses a finished parent).
    ///
    /// Re-runs: a task that runs again (a retry, or its worker died) numbers its map requests
    /// from the start again, and the TaskTracker skips those an earlier attempt already had
    /// stored. So a task that maps the same subtasks in the same order every time creates
    /// each of them once; a task whose maps differ between attempts should not rely on it.
    /// Concurrent `map` calls of one task are sent one after the other.
    pub async fn map(&self, name: &str, contents: Vec<Vec<u8>>) -> Result<(), MapError> {
        self.mapper
            .map(self.map_task_id, self.task.attempt, name, contents)
            .await
    }
}

/// Processes the tasks of a MAP instance: the root task and every task mapped from it run
/// [`process`](MapProcessor::process), anywhere among the instance's workers; a task maps
/// subtasks with [`MapContext::map`]. The instance succeeds iff no task failed (after its
/// retries).
///
/// Implemented for every `Fn(MapContext) -> impl Future<Output = ProcessResult>`.
pub trait MapProcessor: Send + Sync + 'static {
    /// Runs one attempt of a task.
    fn process(&self, ctx: MapContext) -> impl Future<Output = ProcessResult> + Send;
}

impl<F, Fut> MapProcessor for F
where
    F: Fn(MapContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProcessResult> + Send,
{
    fn process(&self, ctx: MapContext) -> impl Future<Output = ProcessResult> + Send {
        self(ctx)
    }
}

/// A MAP processor with a reduce step: once every task is final, `reduce` runs once on the
/// TaskTracker with every task's outcome (streamed from its store, never all in memory), and
/// its result is the instance's.
pub trait MapReduceProcessor: MapProcessor {
    /// Reduces the outcomes of all tasks (the root's included, in task id order).
    fn reduce(
        &self,
        ctx: TaskContext,
        results: ReduceResults,
    ) -> impl Future<Output = ProcessResult> + Send;
}

/// The final outcome of one MAP task, as [`ReduceResults`] streams them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTaskResult {
    /// The task's id (0 is the root).
    pub task_id: u64,
    /// Its name.
    pub name: String,
    /// Whether it succeeded (after its retries).
    pub success: bool,
    /// Its result, or its last failure's reason (at most 8 KiB).
    pub result: String,
}

/// The outcomes of every task of an instance, in task id order, streamed from the
/// TaskTracker's store a page at a time: memory stays bounded whatever the task count.
/// Use [`next`](ReduceResults::next) or it as a `futures::Stream`. If the store fails while
/// streaming, the stream ends early and the instance fails whatever `reduce` returns.
#[derive(Debug)]
pub struct ReduceResults {
    pub(crate) rx: mpsc::Receiver<MapTaskResult>,
}

impl ReduceResults {
    /// The next outcome, or `None` at the end.
    pub async fn next(&mut self) -> Option<MapTaskResult> {
        self.rx.recv().await
    }
}

impl futures::Stream for ReduceResults {
    type Item = MapTaskResult;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MapTaskResult>> {
        self.rx.poll_recv(cx)
    }
}

/// Object-safe form of [`MapProcessor`] / [`MapReduceProcessor`]; `reduce` is `None` for a
/// MAP-only processor.
pub(crate) trait DynMap: Send + Sync + 'static {
    fn call(self: Arc<Self>, ctx: MapContext) -> BoxFuture<'static, ProcessResult>;
    fn reduce(
        self: Arc<Self>,
        ctx: TaskContext,
        results: ReduceResults,
    ) -> Option<BoxFuture<'static, ProcessResult>>;
}

/// A [`MapProcessor`] registered without reduce.
pub(crate) struct MapOnly<P>(pub P);

impl<P: MapProcessor> DynMap for MapOnly<P> {
    fn call(self: Arc<Self>, ctx: MapContext) -> BoxFuture<'static, ProcessResult> {
        Box::pin(async move { self.0.process(ctx).await })
    }
    fn reduce(
        self: Arc<Self>,
        _ctx: TaskContext,
        _results: ReduceResults,
    ) -> Option<BoxFuture<'static, ProcessResult>> {
        None
    }
}

/// A [`MapReduceProcessor`].
pub(crate) struct WithReduce<P>(pub P);

impl<P: MapReduceProcessor> DynMap for WithReduce<P> {
    fn call(self: Arc<Self>, ctx: MapContext) -> BoxFuture<'static, ProcessResult> {
        Box::pin(async move { self.0.process(ctx).await })
    }
    fn reduce(
        self: Arc<Self>,
        ctx: TaskContext,
        results: ReduceResults,
    ) -> Option<BoxFuture<'static, ProcessResult>> {
        Some(Box::pin(async move { self.0.reduce(ctx, results).await }))
    }
}

/// A registered processor.
#[derive(Clone)]
pub(crate) enum Registered {
    Basic(Arc<dyn DynBasic>),
    Broadcast(Arc<dyn DynBroadcast>),
    /// MAP (`has_reduce` false) or MAP_REDUCE.
    Map {
        processor: Arc<dyn DynMap>,
        has_reduce: bool,
    },
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Registered::Basic(_) => f.write_str("Basic"),
            Registered::Broadcast(_) => f.write_str("Broadcast"),
            Registered::Map {
                has_reduce: false, ..
            } => f.write_str("Map"),
            Registered::Map {
                has_reduce: true, ..
            } => f.write_str("MapReduce"),
        }
    }
}

impl Registered {
    /// Runs the per-task step (`process`) of a basic or broadcast processor; a MAP processor
    /// cannot run a STANDALONE or BROADCAST task (it needs a task tree) and fails.
    pub(crate) fn process(&self, ctx: TaskContext) -> BoxFuture<'static, ProcessResult> {
        match self {
            Registered::Basic(p) => Arc::clone(p).call(ctx),
            Registered::Broadcast(p) => Arc::clone(p).call(ctx),
            Registered::Map { .. } => Box::pin(std::future::ready(ProcessResult::fail(
                "this is a MAP/MAP_REDUCE processor: the job's execute type must be MAP or MAP_REDUCE",
            ))),
        }
    }
}
