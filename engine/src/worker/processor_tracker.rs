//! The ProcessorTracker side of MAP/MAP_REDUCE: the tasks a worker runs for a TaskTracker
//! (its own one included, which reaches it through the same listener, like any peer).
//!
//! ```text
//!  TaskTracker ── StartTasks {job, [task_id, dispatch, name, content]} ──▶ serve_peer
//!                                                  queue ─▶ `concurrency` runner tasks
//!                       a task's ctx.map(name, contents) ── MapTasks (request) ──▶
//!                                    ◀── Ack once durable in the TaskTracker's store
//!  TaskTracker ◀── ReportTaskStatuses {remaining, [task_id, dispatch, success, result]}
//!                  (the flusher: as outcomes accumulate, and every STATUS_EVERY as a sign
//!                   of life even with none)
//!  TrackerStopInstance / the connection ends ──▶ queued tasks dropped, running ones cancelled
//! ```
//!
//! Admission: the first `StartTasks` of an instance on a connection is checked by
//! `admission::check_peer_task` and announces the instance; later batches must carry the same
//! header and TaskTracker. Refused tasks are not run: each fails with the refusal.
//!
//! Memory: the queue holds what the TaskTracker dispatched and not yet reported, which its
//! back-pressure bounds (`WorkerConfig::map_tasks_in_flight`); outcomes wait at most one
//! flush. Concurrency: the job's `concurrency` (1 to [`MAX_RUNNERS`]) runner tasks per
//! instance and TaskTracker connection; MAP tasks do not take the per-job slots that
//! STANDALONE and BROADCAST tasks share (the runners are that bound).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::{
    ErrorCode, MapTasks, Message, ReportTaskStatuses, StartTasks, TaskOutcome, TaskSpec,
};
use ferrojob_transport::net::ConnectionHandle;
use ferrojob_transport::RequestError;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::admission::{check_peer_task, PeerMessage, PeerTask, PeerTaskRefused};
use super::instance::{run_attempt, InstanceInfo};
use super::logs::truncate_at_char_boundary;
use super::processor::{DynMap, MapContext, MapError, Registered};
use super::state::Shared;
use crate::mapreduce::{MAX_CONTENT_LEN, MAX_RESULT_LEN};

/// Runner tasks per instance at most, whatever the job's concurrency says.
pub(crate) const MAX_RUNNERS: u32 = 64;
/// A ProcessorTracker reports at least this often, with or without outcomes.
pub(crate) const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Bytes of task contents (or results) per message at most: well under the 4 MiB frame.
pub(crate) const MESSAGE_BYTES: usize = 2 << 20;
/// Tasks (or outcomes) per message at most.
pub(crate) const MESSAGE_ITEMS: usize = 16_384;
/// How long `ctx.map` waits for the TaskTracker's answer to one request.
const MAP_TIMEOUT: Duration = Duration::from_secs(120);

/// Splits `items` into chunks whose `size` sum stays under [`MESSAGE_BYTES`] (a single
/// larger item gets a chunk of its own) and whose length stays under [`MESSAGE_ITEMS`].
pub(crate) fn split_by_size<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let n = size(&item).saturating_add(32);
        if !current.is_empty()
            && (bytes.saturating_add(n) > MESSAGE_BYTES || current.len() >= MESSAGE_ITEMS)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(n);
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// How a running task reaches its TaskTracker for `map`: the connection the task came on.
/// One per task attempt: `next_seq` numbers the attempt's map requests from 0.
pub(crate) struct Mapper {
    handle: ConnectionHandle,
    instance_id: u64,
    next_seq: tokio::sync::Mutex<u32>,
}

impl Mapper {
    pub(crate) async fn map(
        &self,
        parent: u64,
        dispatch: u32,
        name: &str,
        contents: Vec<Vec<u8>>,
    ) -> Result<(), MapError> {
        if let Some(big) = contents.iter().find(|c| c.len() > MAX_CONTENT_LEN) {
            return Err(MapError::Refused(format!(
                "a task content of {} bytes exceeds the {MAX_CONTENT_LEN}-byte limit",
                big.len()
            )));
        }
        // Held across the requests: concurrent `map` calls of one task go out one after the
        // other, each with consecutive numbers.
        let mut seq = self.next_seq.lock().await;
        for chunk in split_by_size(contents, Vec::len) {
            let map_seq = *seq;
            *seq = seq.saturating_add(1);
            let request = MapTasks {
                instance_id: self.instance_id,
                parent_task_id: parent,
                parent_dispatch: dispatch,
                map_seq,
                task_name: name.to_owned(),
                contents: chunk,
            };
            match self.handle.request(request, MAP_TIMEOUT).await {
                Ok(Message::Ack(_)) => {}
                Ok(other) => {
                    return Err(MapError::Unreachable(format!(
                        "unexpected answer {}",
                        other.kind()
                    )))
                }
                Err(RequestError::Remote { message, .. }) => {
                    return Err(MapError::Refused(message))
                }
                Err(e) => return Err(MapError::Unreachable(e.to_string())),
            }
        }
        Ok(())
    }
}

/// One instance's tasks on this worker, for one TaskTracker connection.
pub(crate) struct PtInstance {
    /// The header and TaskTracker of the instance's first batch on this connection (its
    /// `tasks` empty).
    announced: StartTasks,
    /// Why this worker refused the instance (`admission`): its tasks fail with this, unrun.
    refusal: Option<String>,
    queue: Mutex<VecDeque<TaskSpec>>,
    running: AtomicU32,
    work: Notify,
    outcomes: Mutex<Vec<TaskOutcome>>,
    flush: Notify,
    cancel: CancellationToken,
}

impl PtInstance {
    fn remaining(&self) -> u32 {
        let queued = u32::try_from(self.queue.lock().len()).unwrap_or(u32::MAX);
        queued.saturating_add(self.running.load(Ordering::Acquire))
    }

    /// Stops the instance here: queued tasks are dropped, running ones cancelled.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        self.queue.lock().clear();
    }
}

/// A `StartTasks` from the TaskTracker on `handle` (`sender`, as it authenticated): queues
/// the tasks on the instance's `PtInstance`, starting it (runners and flusher) on the first
/// batch. The first batch is checked by `admission`; a refused instance gets no runners, and
/// its tasks (and those of a later batch whose header differs) fail at once with the reason.
pub(crate) fn on_start_tasks(
    shared: &Arc<Shared>,
    sender: &str,
    handle: &ConnectionHandle,
    connection: &CancellationToken,
    instances: &mut std::collections::HashMap<u64, Arc<PtInstance>>,
    mut start: StartTasks,
) {
    let tasks = std::mem::take(&mut start.tasks);
    let instance_id = start.instance.instance_id;
    let pt = match instances.get(&instance_id) {
        Some(pt) if !pt.cancel.is_cancelled() => Arc::clone(pt),
        _ => {
            let (pt, processor) = admit(shared, sender, connection, start.clone());
            let pt = Arc::new(pt);
            instances.insert(instance_id, Arc::clone(&pt));
            if let Some(processor) = processor {
                tracing::info!(
                    instance = instance_id,
                    tracker = %start.task_tracker_address,
                    "mapreduce: running tasks for a TaskTracker"
                );
                let info = Arc::new(InstanceInfo::new(start.instance.clone()));
                let runners = info.job.concurrency.clamp(1, MAX_RUNNERS);
                for _ in 0..runners {
                    tokio::spawn(runner(
                        Arc::clone(shared),
                        Arc::clone(&info),
                        Arc::clone(&processor),
                        Arc::clone(&pt),
                        handle.clone(),
                    ));
                }
            }
            tokio::spawn(flusher(
                Arc::clone(shared),
                instance_id,
                Arc::clone(&pt),
                handle.clone(),
            ));
            pt
        }
    };
    let refusal = match &pt.refusal {
        Some(why) => Some(why.clone()),
        None if pt.announced != start => {
            let refused = PeerTaskRefused::Changed {
                instance: instance_id,
            };
            tracing::warn!(instance = instance_id, peer = sender, %refused, "peer tasks refused");
            Some(refused.to_string())
        }
        None => None,
    };
    match refusal {
        Some(why) => {
            pt.outcomes
                .lock()
                .extend(tasks.into_iter().map(|t| TaskOutcome {
                    task_id: t.task_id,
                    dispatch: t.dispatch,
                    success: false,
                    result: why.clone(),
                }));
            pt.flush.notify_one();
        }
        None => {
            pt.queue.lock().extend(tasks);
            pt.work.notify_waiters();
        }
    }
}

/// The `PtInstance` of a first batch `start` (its `tasks` taken), and the processor its
/// runners run unless it is refused.
fn admit(
    shared: &Shared,
    sender: &str,
    connection: &CancellationToken,
    start: StartTasks,
) -> (PtInstance, Option<Arc<dyn DynMap>>) {
    let job = &start.instance;
    let task = PeerTask {
        own_address: &shared.address,
        sender,
        message: PeerMessage::StartTasks,
        instance: job,
        task_tracker_address: &start.task_tracker_address,
    };
    let registered = shared.processors.get(&job.processor_info);
    let checked = check_peer_task(
        task,
        registered,
        shared.processors.keys().map(String::as_str),
    );
    let (refusal, processor) = match (checked, registered) {
        (Ok(()), Some(Registered::Map { processor, .. })) => (None, Some(Arc::clone(processor))),
        // The check accepts a StartTasks only for a MAP/MAP_REDUCE processor.
        (Ok(()), _) => (
            Some(format!(
                "processor {:?} is not a MAP/MAP_REDUCE processor on {}",
                job.processor_info, shared.address
            )),
            None,
        ),
        (Err(refused), _) => {
            tracing::warn!(instance = job.instance_id, peer = sender, processor = %job.processor_info, %refused, "peer tasks refused");
            (Some(refused.to_string()), None)
        }
    };
    let pt = PtInstance {
        announced: start,
        refusal,
        queue: Mutex::new(VecDeque::new()),
        running: AtomicU32::new(0),
        work: Notify::new(),
        outcomes: Mutex::new(Vec::new()),
        flush: Notify::new(),
        cancel: connection.child_token(),
    };
    (pt, processor)
}

/// Takes tasks from the queue and runs them until the instance stops here.
async fn runner(
    shared: Arc<Shared>,
    info: Arc<InstanceInfo>,
    processor: Arc<dyn DynMap>,
    pt: Arc<PtInstance>,
    handle: ConnectionHandle,
) {
    let logger = shared.logger(&info.job);
    loop {
        let notified = pt.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let mut q = pt.queue.lock();
            let t = q.pop_front();
            if t.is_some() {
                pt.running.fetch_add(1, Ordering::AcqRel);
            }
            t
        };
        let Some(task) = next else {
            tokio::select! {
                () = &mut notified => continue,
                () = pt.cancel.cancelled() => return,
            }
        };
        let TaskSpec {
            task_id,
            dispatch,
            name,
            content,
        } = task;
        let ctx = MapContext {
            task: info.context(
                &shared,
                &task_id.to_string(),
                dispatch,
                logger.clone(),
                pt.cancel.clone(),
            ),
            map_task_id: task_id,
            name: Arc::from(name),
            content,
            mapper: Mapper {
                handle: handle.clone(),
                instance_id: info.job.instance_id,
                next_seq: tokio::sync::Mutex::new(0),
            },
        };
        // A task cancelled here (stop, lost TaskTracker, shutdown) reports nothing, even if
        // its processor returned a failure on seeing the token: the TaskTracker re-dispatches
        // it rather than counting a failure.
        let result = tokio::select! {
            biased;
            () = pt.cancel.cancelled() => return,
            r = run_attempt(Arc::clone(&processor).call(ctx)) => r,
        };
        if pt.cancel.is_cancelled() {
            return;
        }
        let mut text = result.message;
        truncate_at_char_boundary(&mut text, MAX_RESULT_LEN);
        pt.outcomes.lock().push(TaskOutcome {
            task_id,
            dispatch,
            success: result.success,
            result: text,
        });
        pt.running.fetch_sub(1, Ordering::AcqRel);
        pt.flush.notify_one();
    }
}

/// Sends outcomes as they accumulate (whatever piled up while the previous send was under
/// way goes in the next one), and a status at least every [`STATUS_EVERY`].
async fn flusher(
    shared: Arc<Shared>,
    instance_id: u64,
    pt: Arc<PtInstance>,
    handle: ConnectionHandle,
) {
    shared.processor_trackers.fetch_add(1, Ordering::Relaxed);
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = pt.cancel.cancelled() => break,
            () = pt.flush.notified() => {}
            _ = tick.tick() => {}
        }
        let outcomes = std::mem::take(&mut *pt.outcomes.lock());
        let remaining = pt.remaining();
        let chunks = if outcomes.is_empty() {
            vec![Vec::new()]
        } else {
            split_by_size(outcomes, |o| o.result.len())
        };
        for reports in chunks {
            let message = ReportTaskStatuses {
                instance_id,
                address: shared.address.to_string(),
                remaining_tasks: remaining,
                reports,
            };
            if handle.send(message).await.is_err() {
                pt.stop();
                break;
            }
        }
    }
    shared.processor_trackers.fetch_sub(1, Ordering::Relaxed);
}

/// The refusal sent for a `MapTasks` the TaskTracker cannot take.
pub(crate) fn map_refusal(message: String) -> Message {
    ferrojob_transport::message::ErrorReply {
        code: ErrorCode::NotFound,
        message,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_size_bounds_bytes_and_items() {
        let items: Vec<Vec<u8>> = (0..10).map(|_| vec![0u8; MESSAGE_BYTES / 4]).collect();
        let chunks = split_by_size(items, Vec::len);
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 3));
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 10);
        let one_big = split_by_size(vec![vec![0u8; MESSAGE_BYTES * 2]], Vec::len);
        assert_eq!(one_big.len(), 1);
        let many: Vec<u8> = vec![0; MESSAGE_ITEMS * 2 + 1];
        let chunks = split_by_size(many, |_| 1);
        assert_eq!(chunks.len(), 3);
        assert!(split_by_size(Vec::<u8>::new(), |_| 1).is_empty());
    }
}
