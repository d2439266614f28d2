//! A MAP/MAP_REDUCE instance on its TaskTracker (the worker that received the `ScheduleJob`).
//!
//! ```text
//!  run() (async, the instance's work future)
//!   ├─ one link task per worker of all_worker_addresses (the own one too, unless
//!   │  coordinator-only: it is reached through its own listener like any peer)
//!   │    connect ─ StartTasks batches ─▶ ProcessorTracker
//!   │    ◀─ ReportTaskStatuses ─▶ Event::Reports        ◀─ MapTasks ─▶ Event::Map (→ Ack)
//!   │    connection lost / refused ─▶ Event::Dead
//!   └─ the tracker thread (std::thread, owns TaskTrackerCore + its TaskStore)
//!        loop: drain events (≤ TICK wait) → maps (one store batch each, then the Ack)
//!              → all reports of the round in one store batch (on_task_reports)
//!              → poll_dispatch → StartTasks to the links → publish counts
//!              → Reduce: stream TaskStore::results into ReduceResults (bounded channel)
//!              → Complete: Output::Done; delete the instance's tasks; exit
//! ```
//!
//! Why a thread: every `TaskStore` call blocks until its batch is committed, so the core runs
//! off the async runtime, and a single owner needs no lock. Batching: a round applies every
//! report that arrived while the previous round committed, so the commit rate stays flat
//! however fast the ProcessorTrackers report.
//!
//! Invariants: the thread is the only writer of the instance's tasks; a map is acknowledged
//! only after its batch is committed and only while its parent runs as the dispatch that asks
//! (so a parent's report, which follows its acknowledged maps on the same connection, can
//! never precede its children); a re-run parent's map requests are matched to the earlier
//! attempts' by their number (`MapTasks::map_seq`), so the ones already stored are
//! acknowledged, not stored twice (a deterministic parent maps each subtask once); a report is applied only if it answers the task's current
//! dispatch (`TaskReport::dispatch`); the instance's tasks are deleted when the thread ends,
//! whatever the outcome (dropping `run`'s future stops the thread).

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrojob_transport::message::{
    Ack, ExecuteType, Message, StartTasks, TaskOutcome, TaskSpec, TrackerStopInstance,
};
use ferrojob_transport::net::{connect, Connected, Incoming};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::core::Input;
use super::instance::{run_attempt, InstanceInfo};
use super::logs::InstanceLogger;
use super::processor::{DynMap, MapTaskResult, ProcessResult, ReduceResults};
use super::processor_tracker::{map_refusal, split_by_size};
use super::state::{Shared, WorkerTaskStore};
use crate::mapreduce::{
    Action, Finish, MapKind, TaskRecord, TaskReport, TaskState, TaskStore, TaskTrackerCore,
    TrackerConfig,
};

/// The tracker thread waits at most this long for an event before it polls anyway (dead
/// worker timeouts, dispatch after a requeue).
const TICK: Duration = Duration::from_millis(10);
/// Task records read from the store per dispatch round at most.
const DISPATCH_PAGE: usize = 8192;
/// Results buffered between the store and `reduce`.
const REDUCE_BUFFER: usize = 1024;
/// Events handled per round at most (the rest wait for the next round).
const EVENTS_PER_ROUND: usize = 4096;

/// What the links and the async side tell the tracker thread.
pub(crate) enum Event {
    /// Outcomes (possibly none) and the load of `worker`'s ProcessorTracker.
    Reports {
        worker: String,
        remaining: u32,
        outcomes: Vec<TaskOutcome>,
    },
    /// A running task maps subtasks; answered once committed.
    Map {
        worker: String,
        parent: u64,
        dispatch: u32,
        seq: u32,
        name: String,
        contents: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// `worker`'s connection is gone (or never came up).
    Dead(String),
    /// `reduce` returned.
    ReduceFinished(ProcessResult),
    /// The instance was stopped (its work future dropped).
    Stop,
}

/// What the tracker thread tells the async side.
enum Output {
    /// Run reduce over these results, then send `Event::ReduceFinished`.
    Reduce(ReduceResults),
    /// The instance's outcome.
    Done(ProcessResult),
}

/// Stops the thread and the links when `run`'s future is dropped (stop, timeout, shutdown)
/// or returns.
struct StopGuard {
    events: std_mpsc::Sender<Event>,
    links: CancellationToken,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Stop);
        self.links.cancel();
    }
}

/// Runs a MAP/MAP_REDUCE instance on its TaskTracker; the result is the instance's.
pub(crate) async fn run(
    shared: Arc<Shared>,
    info: Arc<InstanceInfo>,
    processor: Arc<dyn DynMap>,
    has_reduce: bool,
    cancel: CancellationToken,
    logger: InstanceLogger,
) -> ProcessResult {
    let job = &info.job;
    let kind = match job.execute_type {
        ExecuteType::MapReduce if !has_reduce => {
            return ProcessResult::fail(format!(
            "processor {:?} has no reduce (register it with map_reduce) but the job is MAP_REDUCE",
            job.processor_info
        ))
        }
        ExecuteType::MapReduce => MapKind::MapReduce,
        _ => MapKind::Map,
    };
    let own = shared.address.to_string();
    let coordinator_only = shared.config.coordinator_only;
    let mut addresses: BTreeSet<String> = job.all_worker_addresses.iter().cloned().collect();
    if addresses.is_empty() {
        addresses.insert(own.clone());
    }
    if coordinator_only {
        addresses.remove(&own);
    }
    if addresses.is_empty() {
        return ProcessResult::fail(
            "coordinator-only TaskTracker: the instance has no other worker to run its tasks",
        );
    }
    let store = match shared.task_store().await {
        Ok(s) => s,
        Err(e) => return ProcessResult::fail(e),
    };
    let config = TrackerConfig {
        own_address: own.clone(),
        coordinator_only,
        task_retries: job.task_retry_num,
        dispatch_page: DISPATCH_PAGE,
        worker_timeout_ms: Some(
            u64::try_from(shared.config.map_worker_timeout.as_millis()).unwrap_or(u64::MAX),
        ),
        kind,
    };
    let (events, events_rx) = std_mpsc::channel::<Event>();
    let (outputs, mut outputs_rx) = mpsc::unbounded_channel::<Output>();
    let links_token = cancel.child_token();
    let _guard = StopGuard {
        events: events.clone(),
        links: links_token.clone(),
    };
    let mut links = HashMap::new();
    for address in &addresses {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<TaskRecord>>();
        links.insert(address.clone(), tx);
        tokio::spawn(link(
            Arc::clone(&shared),
            Arc::clone(&info),
            address.clone(),
            rx,
            events.clone(),
            links_token.clone(),
        ));
    }
    let thread = TrackerThread {
        store: store.tasks.clone(),
        worker_store: store,
        instance: job.instance_id,
        config,
        capacity: shared.config.map_tasks_in_flight.max(1),
        addresses: addresses.into_iter().collect(),
        events: events_rx,
        outputs,
        links,
        shared: Arc::clone(&shared),
        published: std::cell::Cell::new(None),
        logger: logger.clone(),
    };
    let spawned = std::thread::Builder::new()
        .name(format!("ferrojob-tt-{}", job.instance_id))
        .spawn(move || thread.run());
    if let Err(e) = spawned {
        return ProcessResult::fail(format!("cannot start the TaskTracker thread: {e}"));
    }
    while let Some(output) = outputs_rx.recv().await {
        match output {
            Output::Reduce(results) => {
                let ctx = info.context(&shared, "reduce", 1, logger.clone(), cancel.child_token());
                let r = match Arc::clone(&processor).reduce(ctx, results) {
                    Some(f) => run_attempt(f).await,
                    None => ProcessResult::fail("no reduce"),
                };
                let _ = events.send(Event::ReduceFinished(r));
            }
            Output::Done(r) => return r,
        }
    }
    ProcessResult::fail("the TaskTracker thread ended without an outcome")
}

/// The connection to one worker's ProcessorTracker.
async fn link(
    shared: Arc<Shared>,
    info: Arc<InstanceInfo>,
    address: String,
    mut records: mpsc::UnboundedReceiver<Vec<TaskRecord>>,
    events: std_mpsc::Sender<Event>,
    cancel: CancellationToken,
) {
    let instance_id = info.job.instance_id;
    let connected = async {
        let socket = tokio::net::lookup_host(address.as_str())
            .await
            .map_err(|e| format!("cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| "address resolves to nothing".to_string())?;
        connect(
            socket,
            shared.peer_net(&address),
            shared.identity.clone(),
            Arc::clone(&shared.transport_metrics),
        )
        .await
        .map_err(|e| e.to_string())
    };
    let Connected {
        handle,
        mut incoming,
        ..
    } = tokio::select! {
        c = connected => match c {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(instance = instance_id, worker = %address, %why, "mapreduce: worker unreachable");
                let _ = events.send(Event::Dead(address));
                return;
            }
        },
        () = cancel.cancelled() => return,
    };
    let tracker_address = shared.address.to_string();
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = handle.send(TrackerStopInstance { instance_id }).await;
                handle.shutdown().await;
                return;
            }
            batch = records.recv() => {
                let Some(batch) = batch else {
                    handle.shutdown().await;
                    return;
                };
                let specs: Vec<TaskSpec> = batch
                    .into_iter()
                    .map(|r| TaskSpec {
                        task_id: r.task_id,
                        dispatch: r.dispatches,
                        name: r.name,
                        content: r.content,
                    })
                    .collect();
                for tasks in split_by_size(specs, |t| t.content.len() + t.name.len()) {
                    let start = StartTasks {
                        instance: info.job.clone(),
                        task_tracker_address: tracker_address.clone(),
                        tasks,
                    };
                    if handle.send(start).await.is_err() {
                        let _ = events.send(Event::Dead(address));
                        return;
                    }
                }
            }
            m = incoming.recv() => match m {
                None => {
                    tracing::warn!(instance = instance_id, worker = %address, "mapreduce: connection to the worker lost");
                    let _ = events.send(Event::Dead(address));
                    return;
                }
                Some(Incoming { message: Message::ReportTaskStatuses(r), .. }) if r.instance_id == instance_id => {
                    let _ = events.send(Event::Reports {
                        worker: address.clone(),
                        remaining: r.remaining_tasks,
                        outcomes: r.reports,
                    });
                }
                Some(Incoming { correlation: Some(c), message: Message::MapTasks(m) }) => {
                    if m.instance_id != instance_id {
                        let refusal = map_refusal(format!("this connection tracks instance {instance_id}, not {}", m.instance_id));
                        let _ = handle.respond(c, refusal).await;
                        continue;
                    }
                    let (reply, answer) = oneshot::channel();
                    let _ = events.send(Event::Map {
                        worker: address.clone(),
                        parent: m.parent_task_id,
                        dispatch: m.parent_dispatch,
                        seq: m.map_seq,
                        name: m.task_name,
                        contents: m.contents,
                        reply,
                    });
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        let message: Message = match answer.await {
                            Ok(Ok(())) => Ack {}.into(),
                            Ok(Err(why)) => map_refusal(why),
                            Err(_) => map_refusal("the TaskTracker stopped".to_string()),
                        };
                        let _ = handle.respond(c, message).await;
                    });
                }
                Some(other) => {
                    tracing::debug!(worker = %address, kind = %other.message.kind(), "mapreduce: ignored message");
                }
            },
        }
    }
}

/// Who asks for a map, and which request of theirs it is.
struct MapCall<'a> {
    worker: &'a str,
    parent: u64,
    dispatch: u32,
    seq: u32,
}

/// The tracker thread's state (see the module doc).
struct TrackerThread {
    store: TaskStore,
    worker_store: WorkerTaskStore,
    instance: u64,
    config: TrackerConfig,
    capacity: u32,
    addresses: Vec<String>,
    events: std_mpsc::Receiver<Event>,
    outputs: mpsc::UnboundedSender<Output>,
    links: HashMap<String, mpsc::UnboundedSender<Vec<TaskRecord>>>,
    /// Where progress goes (the worker's core).
    shared: Arc<Shared>,
    /// The counts last handed to the core.
    published: std::cell::Cell<Option<(u64, u64, u64)>>,
    logger: InstanceLogger,
}

impl TrackerThread {
    fn run(self) {
        let store = self.worker_store.clone();
        let instance = self.instance;
        let outputs = self.outputs.clone();
        let outcome = self.drive();
        // The outcome first: deleting a million tasks takes a while and the instance is over.
        if let Some(r) = outcome {
            let _ = outputs.send(Output::Done(r));
        }
        match store.tasks.delete_instance(instance) {
            Ok(()) => store.compact(),
            Err(e) => {
                tracing::error!(instance, error = %e, "mapreduce: cannot delete the instance's tasks");
            }
        }
    }

    /// Runs the instance to its end; `None` when stopped.
    fn drive(mut self) -> Option<ProcessResult> {
        let started = Instant::now();
        let now_ms = move || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let instance = self.instance;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(instance, error = %e, "mapreduce: {what}");
            Some(ProcessResult::fail(format!(
                "task store failed ({what}): {e}"
            )))
        };
        let mut core = match TaskTrackerCore::new(
            self.store.clone(),
            self.instance,
            self.config.clone(),
            Vec::new(),
        ) {
            Ok(c) => c,
            Err(e) => return fail("creating the root task", &e),
        };
        for address in &self.addresses {
            core.set_worker(address, self.capacity, now_ms());
        }
        let mut stream_failed: Option<String> = None;
        // Per task that mapped and is not final yet: map requests stored (across its
        // attempts). Bounded by the tasks in flight and pending retries.
        let mut map_calls: HashMap<u64, u32> = HashMap::new();
        loop {
            let mut batch = Vec::new();
            match self.events.recv_timeout(TICK) {
                Ok(e) => batch.push(e),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return None,
            }
            while batch.len() < EVENTS_PER_ROUND {
                match self.events.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let mut reports: Vec<TaskReport> = Vec::new();
            for event in batch {
                match event {
                    Event::Reports {
                        worker,
                        remaining,
                        outcomes,
                    } => {
                        core.on_worker_status(&worker, remaining, now_ms());
                        reports.extend(outcomes.into_iter().map(|o| TaskReport {
                            task_id: o.task_id,
                            worker: worker.clone(),
                            dispatch: Some(o.dispatch),
                            success: o.success,
                            result: o.result,
                        }));
                    }
                    Event::Map {
                        worker,
                        parent,
                        dispatch,
                        seq,
                        name,
                        contents,
                        reply,
                    } => {
                        let call = MapCall {
                            worker: &worker,
                            parent,
                            dispatch,
                            seq,
                        };
                        let r = self.map(&mut core, &mut map_calls, call, &name, contents);
                        let _ = reply.send(r);
                    }
                    Event::Dead(worker) => {
                        if let Err(e) = core.on_task_reports(std::mem::take(&mut reports)) {
                            return fail("applying reports", &e);
                        }
                        self.links.remove(&worker);
                        match core.on_worker_dead(&worker) {
                            Ok(n) if n > 0 => self.logger.warn(format!(
                                "worker {worker} is gone: {n} of its tasks go to other workers"
                            )),
                            Ok(_) => {}
                            Err(e) => return fail("requeueing a dead worker's tasks", &e),
                        }
                    }
                    Event::ReduceFinished(r) => core.on_reduce_finished(r.success, r.message),
                    Event::Stop => return None,
                }
            }
            if !reports.is_empty() {
                let ids: Vec<u64> = reports.iter().map(|r| r.task_id).collect();
                match core.on_task_reports(reports) {
                    Ok(finishes) => {
                        if !map_calls.is_empty() {
                            for (id, f) in ids.iter().zip(finishes) {
                                if matches!(f, Finish::Succeeded | Finish::Failed) {
                                    map_calls.remove(id);
                                }
                            }
                        }
                    }
                    Err(e) => return fail("applying reports", &e),
                }
            }
            match core.poll_dispatch(now_ms()) {
                Ok(dispatches) => {
                    for d in dispatches {
                        match self.links.get(&d.worker) {
                            Some(link) if link.send(d.tasks).is_ok() => {}
                            // The link ended: its Dead event is queued and will requeue these.
                            _ => {}
                        }
                    }
                }
                Err(e) => return fail("dispatching", &e),
            }
            self.publish(&core);
            while let Some(action) = core.poll_action() {
                match action {
                    Action::Reduce => {
                        if let Err(e) = self.stream_results() {
                            stream_failed = Some(e);
                        }
                    }
                    Action::Complete { success, result } => {
                        self.publish(&core);
                        if let Some(why) = stream_failed {
                            return Some(ProcessResult::fail(format!(
                                "reading the task results for reduce failed: {why}"
                            )));
                        }
                        return Some(ProcessResult {
                            success,
                            message: result,
                        });
                    }
                }
            }
            if !core.is_done() && core.workers().next().is_none() {
                let (total, ok, failed) = core.progress().unwrap_or_default();
                return Some(ProcessResult::fail(format!(
                    "no worker left to run tasks ({ok} of {total} tasks succeeded, {failed} failed)"
                )));
            }
        }
    }

    /// A `MapTasks`: refused unless `parent` runs on `worker` as dispatch `dispatch`; a request
    /// an earlier attempt of `parent` already had stored (`seq` below the count) is
    /// acknowledged without storing it again.
    fn map(
        &self,
        core: &mut TaskTrackerCore,
        map_calls: &mut HashMap<u64, u32>,
        call: MapCall<'_>,
        name: &str,
        contents: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        let MapCall {
            worker,
            parent,
            dispatch,
            seq,
        } = call;
        let record = self
            .store
            .get(self.instance, parent)
            .map_err(|e| e.to_string())?;
        let running_here = matches!(
            record.as_ref().map(|r| &r.status),
            Some(TaskState::Dispatched { worker: w, attempt }) if w == worker && *attempt == dispatch
        );
        if !running_here {
            return Err(format!(
                "task {parent} (dispatch {dispatch}) is not running on {worker} any more"
            ));
        }
        let stored = map_calls.get(&parent).copied().unwrap_or(0);
        if seq < stored {
            tracing::debug!(
                instance = self.instance,
                parent,
                seq,
                "mapreduce: map request already stored by an earlier attempt"
            );
            return Ok(());
        }
        if seq > stored {
            return Err(format!(
                "map request {seq} of task {parent} arrived before request {stored}"
            ));
        }
        core.map(parent, name, contents)
            .map_err(|e| e.to_string())?;
        map_calls.insert(parent, stored.saturating_add(1));
        Ok(())
    }

    /// Streams every final task into a `ReduceResults` for the async side's reduce.
    fn stream_results(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel(REDUCE_BUFFER);
        if self
            .outputs
            .send(Output::Reduce(ReduceResults { rx }))
            .is_err()
        {
            return Err("the instance stopped".into());
        }
        for r in self.store.results(self.instance) {
            let r = r.map_err(|e| e.to_string())?;
            let item = MapTaskResult {
                task_id: r.task_id,
                name: r.name,
                success: r.success,
                result: r.result,
            };
            if tx.blocking_send(item).is_err() {
                // reduce returned without reading everything: its choice.
                break;
            }
        }
        Ok(())
    }

    /// Hands the counters to the worker's core, for progress reports.
    fn publish(&self, core: &TaskTrackerCore) {
        if let Ok((total, succeeded, failed)) = core.progress() {
            if self.published.replace(Some((total, succeeded, failed)))
                == Some((total, succeeded, failed))
            {
                return;
            }
            self.shared.drive(Input::Progress {
                instance_id: self.instance,
                total,
                succeeded,
                failed,
            });
        }
    }
}
