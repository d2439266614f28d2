//! BROADCAST: the TaskTracker (the worker that received the `ScheduleJob`) and the
//! ProcessorTracker (every worker of the instance, the TaskTracker included), worker to worker
//! over transport connections (`ferrojob_transport::message`, kinds 32–34).
//!
//! ```text
//!  TaskTracker (the core decides; these are its runs)  ProcessorTracker (peer's Listener)
//!   pre_process once (fails → instance FAILED)
//!   for each address i (task_id = i), concurrently, with task retries:
//!     own address → in-process (slot from the core) ─▶ run_local_task
//!     other       → connect(app, secret) ── StartTask ──▶ serve_peer → slot from the core
//!                                                                    → run_local_task
//!                   ◀──────────────────── ReportTaskStatus (succeed/failed, result)
//!                   connection lost / refused → "worker <addr> unreachable"
//!                   instance cancelled → TrackerStopInstance, close
//!   post_process(results) → the instance's final status and result
//! ```
//!
//! MAP/MAP_REDUCE tasks arrive on the same Listener (`StartTasks`, see `processor_tracker`).
//! Nothing on the Listener comes from the server: a peer's task runs only once
//! `admission::check_peer_task` accepted it (the rules and what they cannot catch are in
//! `admission`); a refused task fails with the refusal as its result.
//!
//! Each remote attempt runs in its own spawned task holding the instance's token: when the
//! instance is stopped or times out, that task (not the dropped tracker future) tells the
//! peer to stop. A peer stops a connection's tasks when the connection ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferrojob_transport::message::{
    ErrorCode, ErrorReply, Message, ReportTaskStatus, StartTask, TaskStatus, TrackerStopInstance,
};
use ferrojob_transport::net::{connect, Accepted, Connected, Incoming, Listener};
use ferrojob_transport::PeerInfo;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::admission::{check_peer_task, PeerMessage, PeerTask};
use super::epoch_ms;
use super::instance::{run_attempt, unknown_processor, InstanceInfo};
use super::logs::InstanceLogger;
use super::processor::ProcessResult;
use super::processor_tracker;
use super::state::Shared;

/// Runs one attempt of a broadcast task on this worker (for its own TaskTracker, which holds
/// the concurrency slot, or for a peer's, see [`serve_peer`]).
pub(crate) async fn run_local_task(
    shared: &Arc<Shared>,
    start: &StartTask,
    logger: InstanceLogger,
    cancel: CancellationToken,
) -> ProcessResult {
    let job = &start.instance;
    let Some(processor) = shared.processors.get(&job.processor_info).cloned() else {
        return unknown_processor(shared, &job.processor_info);
    };
    let _counted = ProcessorTrackerGuard::new(shared);
    let info = InstanceInfo::new(job.clone());
    let ctx = info.context(
        shared,
        &start.task_id,
        start.current_retry.saturating_add(1),
        logger,
        cancel.clone(),
    );
    tokio::select! {
        r = run_attempt(processor.process(ctx)) => r,
        () = cancel.cancelled() => ProcessResult::fail("cancelled"),
    }
}

/// Runs a broadcast task a peer's TaskTracker (`sender`, as it authenticated) asked for,
/// once `admission` accepted it and the core granted it a concurrency slot of its job.
async fn run_peer_task(
    shared: &Arc<Shared>,
    sender: &str,
    start: &StartTask,
    logger: InstanceLogger,
    cancel: CancellationToken,
) -> ProcessResult {
    let job = &start.instance;
    let task = PeerTask {
        own_address: &shared.address,
        sender,
        message: PeerMessage::StartTask,
        instance: job,
        task_tracker_address: &start.task_tracker_address,
    };
    let processor = shared.processors.get(&job.processor_info);
    if let Err(refused) = check_peer_task(
        task,
        processor,
        shared.processors.keys().map(String::as_str),
    ) {
        tracing::warn!(instance = job.instance_id, peer = sender, processor = %job.processor_info, %refused, "peer task refused");
        return ProcessResult::fail(refused.to_string());
    }
    let Some(_slot) = shared.peer_slot(job.job_id, job.concurrency, &cancel).await else {
        return ProcessResult::fail(if cancel.is_cancelled() {
            "cancelled"
        } else {
            "worker full or shutting down"
        });
    };
    run_local_task(shared, start, logger, cancel).await
}

/// Counts a running broadcast task in `Shared::processor_trackers` for as long as it lives
/// (also when its future is dropped by a stop or timeout).
struct ProcessorTrackerGuard(Arc<Shared>);

impl ProcessorTrackerGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.processor_trackers.fetch_add(1, Ordering::Relaxed);
        ProcessorTrackerGuard(Arc::clone(shared))
    }
}

impl Drop for ProcessorTrackerGuard {
    fn drop(&mut self) {
        self.0.processor_trackers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One attempt on a peer, in its own task (see the module doc). The answer arrives through a
/// oneshot; a dropped sender (the task died) counts as unreachable.
pub(crate) async fn remote_attempt(
    shared: &Arc<Shared>,
    address: &str,
    start: StartTask,
    cancel: CancellationToken,
) -> ProcessResult {
    let (tx, rx) = oneshot::channel();
    let shared2 = Arc::clone(shared);
    let addr = address.to_string();
    tokio::spawn(async move {
        let r = talk_to_peer(&shared2, &addr, start, cancel).await;
        let _ = tx.send(r.unwrap_or_else(|why| {
            ProcessResult::fail(format!("worker {addr} unreachable ({why})"))
        }));
    });
    rx.await
        .unwrap_or_else(|_| ProcessResult::fail(format!("worker {address} unreachable")))
}

/// `Err(why)` when the peer cannot be reached or the connection drops before the answer.
async fn talk_to_peer(
    shared: &Arc<Shared>,
    address: &str,
    start: StartTask,
    cancel: CancellationToken,
) -> Result<ProcessResult, String> {
    let socket = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "address resolves to nothing".to_string())?;
    let connecting = connect(
        socket,
        shared.peer_net(address),
        shared.identity.clone(),
        Arc::clone(&shared.transport_metrics),
    );
    let Connected {
        handle,
        mut incoming,
        ..
    } = tokio::select! {
        c = connecting => c.map_err(|e| e.to_string())?,
        () = cancel.cancelled() => return Ok(ProcessResult::fail("cancelled")),
    };
    let instance_id = start.instance.instance_id;
    let task_id = start.task_id.clone();
    let attempt = start.current_retry.saturating_add(1);
    handle
        .send(start)
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let result = loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = handle.send(TrackerStopInstance { instance_id }).await;
                break Ok(ProcessResult::fail("cancelled"));
            }
            m = incoming.recv() => match m {
                None => break Err("connection lost".to_string()),
                Some(Incoming { message: Message::ReportTaskStatus(r), .. })
                    if r.instance_id == instance_id && r.task_id == task_id
                        && r.attempt == attempt =>
                {
                    let message = r.result.unwrap_or_default();
                    match r.status {
                        TaskStatus::WorkerProcessSucceed => break Ok(ProcessResult::ok(message)),
                        TaskStatus::WorkerProcessFailed => break Ok(ProcessResult::fail(message)),
                        _ => {}
                    }
                }
                Some(other) => {
                    tracing::debug!(peer = address, kind = %other.message.kind(), "ignored");
                }
            },
        }
    };
    handle.shutdown().await;
    result
}

/// Accepts peers (TaskTrackers of the same app) on the worker's Listener until `stop` fires.
pub(crate) async fn accept_peers(
    shared: Arc<Shared>,
    mut listener: Listener,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok(a) => {
                tokio::spawn(serve_peer(Arc::clone(&shared), a));
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker listener stopped");
                return;
            }
        }
    }
}

/// The ProcessorTracker side of one TaskTracker connection.
async fn serve_peer(shared: Arc<Shared>, accepted: Accepted) {
    let Accepted {
        handle,
        mut incoming,
        addr,
        peer,
    } = accepted;
    // The address the peer proved the app secret under; the listener only accepts workers.
    let sender: Arc<str> = match peer {
        PeerInfo::Worker { worker_address, .. } => Arc::from(worker_address),
        _ => return,
    };
    let connection = shared.tasks_root.child_token();
    let per_instance: Arc<Mutex<HashMap<u64, CancellationToken>>> = Arc::default();
    let mut map_instances: HashMap<u64, Arc<processor_tracker::PtInstance>> = HashMap::new();
    // A TaskTracker opens one connection per instance (per task attempt for BROADCAST): the
    // first task message names the connection's instance, and one for another closes it.
    let mut instance_of_connection: Option<u64> = None;
    loop {
        let m = tokio::select! {
            m = incoming.recv() => m,
            () = connection.cancelled() => break,
        };
        let Some(Incoming {
            correlation,
            message,
        }) = m
        else {
            break;
        };
        let named = match &message {
            Message::StartTask(m) => Some(m.instance.instance_id),
            Message::StartTasks(m) => Some(m.instance.instance_id),
            _ => None,
        };
        if let Some(id) = named {
            match instance_of_connection {
                None => instance_of_connection = Some(id),
                Some(first) if first != id => {
                    tracing::warn!(peer = %sender, first, instance = id, "a peer sent tasks of a second instance on one connection: closing it");
                    break;
                }
                Some(_) => {}
            }
        }
        match message {
            Message::StartTask(start) => {
                let instance_id = start.instance.instance_id;
                let cancel = per_instance
                    .lock()
                    .entry(instance_id)
                    .or_insert_with(|| connection.child_token())
                    .clone();
                let shared = Arc::clone(&shared);
                let handle = handle.clone();
                let sender = Arc::clone(&sender);
                tokio::spawn(async move {
                    let logger = shared.logger(&start.instance);
                    let work = run_peer_task(&shared, &sender, &start, logger, cancel);
                    // Safety net: the TaskTracker enforces the timeout and stops us, but a
                    // lost TaskTracker must not leave the task running forever.
                    let r = match start.instance.instance_timeout_ms {
                        0 => work.await,
                        ms => tokio::time::timeout(std::time::Duration::from_millis(ms), work)
                            .await
                            .unwrap_or_else(|_| {
                                ProcessResult::fail(format!("timed out after {ms} ms"))
                            }),
                    };
                    let report = ReportTaskStatus {
                        instance_id,
                        sub_instance_id: start.sub_instance_id,
                        task_id: start.task_id,
                        status: if r.success {
                            TaskStatus::WorkerProcessSucceed
                        } else {
                            TaskStatus::WorkerProcessFailed
                        },
                        result: Some(r.message),
                        attempt: start.current_retry.saturating_add(1),
                        report_time_ms: epoch_ms(),
                        appended_workflow_context: Vec::new(),
                    };
                    let _ = handle.send(report).await;
                });
            }
            Message::StartTasks(start) => processor_tracker::on_start_tasks(
                &shared,
                &sender,
                &handle,
                &connection,
                &mut map_instances,
                start,
            ),
            Message::TrackerStopInstance(TrackerStopInstance { instance_id }) => {
                if let Some(t) = per_instance.lock().remove(&instance_id) {
                    t.cancel();
                }
                if let Some(pt) = map_instances.remove(&instance_id) {
                    pt.stop();
                }
            }
            other => {
                tracing::debug!(peer = %addr, kind = %other.kind(), "unexpected message from peer");
                if let Some(c) = correlation {
                    let refusal = ErrorReply {
                        code: ErrorCode::UnexpectedMessage,
                        message: format!("{} is not handled by a worker", other.kind()),
                    };
                    let _ = handle.respond(c, refusal).await;
                }
            }
        }
    }
    // Nobody will hear these tasks' results: stop them.
    connection.cancel();
}
