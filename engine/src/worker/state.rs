//! The worker's shared state: processors, the running set, the recently-finished cache,
//! per-job concurrency slots and the handles every task needs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferrojob_transport::message::{
    ExecuteType, InstanceStatus, InstanceStatusReply, LogEntry, Message, ScheduleJob,
    SystemMetrics, TimeExpressionType, WorkerHeartbeat,
};
use ferrojob_transport::net::ConnectionHandle;
use ferrojob_transport::{ClientIdentity, TransportMetrics};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::logs::{InstanceLogger, LogStats};
use super::processor::Registered;
use super::TaskStoreConfig;
use super::{epoch_ms, WorkerConfig};
use crate::mapreduce::TaskStore;
use ferrojob_store::LogStore;

/// Why an instance was cancelled (the first reason wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// The server asked (`StopInstance`).
    Stopped,
    /// The instance's timeout elapsed (milliseconds).
    TimedOut(u64),
    /// The server was unreachable for longer than `server_lost_after` (fixed rate/delay only).
    ServerLost,
    /// The worker shuts down.
    Shutdown,
}

/// Task counters of one instance (BROADCAST has one task per worker, STANDALONE one).
#[derive(Debug, Default)]
pub(crate) struct TaskCounts {
    pub total: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

impl TaskCounts {
    /// `(total, succeeded, failed, running)`; Relaxed: independent tallies for reports only.
    pub(crate) fn snapshot(&self) -> (u64, u64, u64, u64) {
        let total = self.total.load(Ordering::Relaxed);
        let ok = self.succeeded.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        (total, ok, failed, total.saturating_sub(ok + failed))
    }
}

/// An instance this worker is the TaskTracker of.
#[derive(Debug)]
pub(crate) struct RunningInstance {
    pub job_id: u64,
    pub start_time_ms: i64,
    pub time_expression_type: TimeExpressionType,
    /// BROADCAST (a "heavy" TaskTracker in heartbeats, as are fixed rate/delay instances).
    pub broadcast: bool,
    /// Fired on stop, timeout, server loss or shutdown; every task's token is a child.
    pub cancel: CancellationToken,
    reason: Mutex<Option<CancelReason>>,
    pub tasks: TaskCounts,
}

impl RunningInstance {
    pub(crate) fn new(job: &ScheduleJob, cancel: CancellationToken) -> Self {
        RunningInstance {
            job_id: job.job_id,
            start_time_ms: epoch_ms(),
            time_expression_type: job.time_expression_type.clone(),
            broadcast: job.execute_type == ExecuteType::Broadcast,
            cancel,
            reason: Mutex::new(None),
            tasks: TaskCounts::default(),
        }
    }

    /// Records `reason` (unless another came first) and fires the token.
    pub(crate) fn cancel(&self, reason: CancelReason) {
        {
            let mut r = self.reason.lock();
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.cancel.cancel();
    }

    /// The recorded reason; `Shutdown` when the token fired through its parent (shutdown).
    pub(crate) fn reason(&self) -> CancelReason {
        self.reason.lock().unwrap_or(CancelReason::Shutdown)
    }
}

/// What the worker remembers of a finished instance, for `QueryInstanceStatus`.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub status: InstanceStatus,
    pub result: Option<String>,
    pub start_time_ms: i64,
    pub counts: (u64, u64, u64),
}

/// The last `capacity` finished instances (FIFO eviction).
#[derive(Debug)]
pub(crate) struct FinishedCache {
    capacity: usize,
    map: HashMap<u64, Finished>,
    order: VecDeque<u64>,
}

impl FinishedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        FinishedCache {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: u64, f: Finished) {
        if self.map.insert(id, f).is_none() {
            self.order.push_back(id);
        }
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Finished> {
        self.map.get(&id)
    }

    /// Forgets `id` (it runs again). Its slot in `order` stays until it reaches the front, so
    /// `order` holds at most `capacity` + (re-runs since) ids; eviction skips absent ones.
    pub(crate) fn remove(&mut self, id: u64) {
        if self.map.remove(&id).is_some() {
            self.order.retain(|x| *x != id);
        }
    }
}

/// Everything the worker's tasks share.
pub(crate) struct Shared {
    pub config: WorkerConfig,
    /// `host:port` peers and the server know this worker by.
    pub address: Arc<str>,
    pub identity: ClientIdentity,
    pub processors: HashMap<String, Registered>,
    /// Reports and log batches to the server, in order (bounded; the session drains it).
    pub outbound: mpsc::Sender<Message>,
    /// The current server connection, if connected (heartbeats go straight to it).
    pub server: Mutex<Option<ConnectionHandle>>,
    pub connected: AtomicBool,
    /// Since when the server is unreachable (`None` while connected).
    pub disconnected_since: Mutex<Option<Instant>>,
    pub instances: Mutex<HashMap<u64, Arc<RunningInstance>>>,
    /// Notified whenever an instance leaves `instances`.
    pub instance_done: Notify,
    pub finished: Mutex<FinishedCache>,
    /// Per job: (concurrency, its semaphore).
    pub job_slots: Mutex<HashMap<u64, (u32, Arc<Semaphore>)>>,
    pub log_tx: mpsc::Sender<LogEntry>,
    pub log_stats: Arc<LogStats>,
    /// Parent of every instance's and every peer task's token: fired by shutdown.
    pub tasks_root: CancellationToken,
    /// Set by shutdown: new instances are refused.
    pub closing: AtomicBool,
    /// Broadcast tasks this worker runs for TaskTrackers (its own included).
    pub processor_trackers: AtomicU32,
    pub transport_metrics: Arc<TransportMetrics>,
    pub latest_metrics: Mutex<SystemMetrics>,
    /// The MAP/MAP_REDUCE task store, opened at the first MAP instance.
    pub task_store: tokio::sync::OnceCell<WorkerTaskStore>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("address", &self.address)
            .field("app", &self.config.app)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A logger for `instance_id` writing to the worker's log queue.
    pub(crate) fn logger(&self, instance_id: u64) -> InstanceLogger {
        InstanceLogger::new(
            instance_id,
            self.log_tx.clone(),
            Arc::clone(&self.log_stats),
        )
    }

    /// The semaphore limiting concurrent tasks of `job_id` on this worker to `concurrency`
    /// (at least 1). A changed concurrency replaces the semaphore for new tasks.
    pub(crate) fn job_slot(&self, job_id: u64, concurrency: u32) -> Arc<Semaphore> {
        let concurrency = concurrency.max(1);
        let mut slots = self.job_slots.lock();
        match slots.get(&job_id) {
            Some((c, s)) if *c == concurrency => Arc::clone(s),
            _ => {
                let permits = usize::try_from(concurrency).unwrap_or(Semaphore::MAX_PERMITS);
                let s = Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS)));
                slots.insert(job_id, (concurrency, Arc::clone(&s)));
                s
            }
        }
    }

    /// Drops `job_id`'s semaphore if nobody holds it (keeps the map bounded by live jobs).
    pub(crate) fn release_job_slot(&self, job_id: u64) {
        let mut slots = self.job_slots.lock();
        if slots
            .get(&job_id)
            .is_some_and(|(_, s)| Arc::strong_count(s) == 1)
        {
            slots.remove(&job_id);
        }
    }

    /// The answer to `QueryInstanceStatus`, if this worker knows the instance.
    pub(crate) fn instance_status(&self, instance_id: u64) -> Option<InstanceStatusReply> {
        if let Some(r) = self.instances.lock().get(&instance_id) {
            let (total, ok, failed, running) = r.tasks.snapshot();
            return Some(InstanceStatusReply {
                instance_id,
                status: InstanceStatus::Running,
                result: None,
                total_tasks: total,
                succeeded_tasks: ok,
                failed_tasks: failed,
                running_tasks: running,
                start_time_ms: r.start_time_ms,
            });
        }
        self.finished
            .lock()
            .get(instance_id)
            .map(|f| InstanceStatusReply {
                instance_id,
                status: f.status.clone(),
                result: f.result.clone(),
                total_tasks: f.counts.0,
                succeeded_tasks: f.counts.1,
                failed_tasks: f.counts.2,
                running_tasks: 0,
                start_time_ms: f.start_time_ms,
            })
    }

    /// The task store, opened (off the runtime's threads) on first use: a `LogStore` with
    /// `Durability::Buffered`, cleared of what an earlier run left.
    ///
    /// Background compaction is off; see [`WorkerTaskStore::compact`].
    ///
    /// Buffered, not Sync: the task tree only has to outlive this process's instance, not a
    /// crash. If the TaskTracker's process dies the server re-dispatches the instance, and a
    /// restarted worker deletes the old tree anyway, so an fsync per commit would buy nothing;
    /// the log store is there to keep pending tasks out of RAM.
    pub(crate) async fn task_store(&self) -> Result<WorkerTaskStore, String> {
        let config = self.config.task_store.clone();
        self.task_store
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || open_task_store(&config))
                    .await
                    .map_err(|e| format!("task store: {e}"))?
            })
            .await
            .cloned()
    }

    /// Instances running now.
    pub(crate) fn running(&self) -> usize {
        self.instances.lock().len()
    }

    /// The heartbeat to send now, from the latest metrics sample.
    pub(crate) fn heartbeat(&self) -> WorkerHeartbeat {
        let (light, heavy) = {
            let instances = self.instances.lock();
            let heavy = instances
                .values()
                .filter(|r| {
                    matches!(
                        r.time_expression_type,
                        TimeExpressionType::FixedRate | TimeExpressionType::FixedDelay
                    ) || r.broadcast
                })
                .count();
            (instances.len().saturating_sub(heavy), heavy)
        };
        let max = self.config.max_running_instances;
        WorkerHeartbeat {
            worker_address: self.address.to_string(),
            app_name: self.config.app.clone(),
            app_id: 0,
            heartbeat_time_ms: epoch_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            tag: self.config.tags.first().cloned(),
            overloaded: max > 0 && light + heavy >= max,
            lightweight_task_trackers: u32::try_from(light).unwrap_or(u32::MAX),
            heavy_task_trackers: u32::try_from(heavy).unwrap_or(u32::MAX),
            processor_trackers: self.processor_trackers.load(Ordering::Relaxed),
            metrics: self.latest_metrics.lock().clone(),
        }
    }
}

fn open_task_store(config: &TaskStoreConfig) -> Result<WorkerTaskStore, String> {
    use ferrojob_store::{Durability, LogOptions, MemoryStore, Store};
    let mut log = None;
    let store: Arc<dyn Store> = match config {
        TaskStoreConfig::Memory => Arc::new(MemoryStore::new()),
        TaskStoreConfig::Log { dir } => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create task store dir {}: {e}", dir.display()))?;
            let options = LogOptions {
                durability: Durability::Buffered,
                // Compaction runs after each instance's tasks are deleted (see
                // `compact_task_store`), never during a run: compacting while an instance
                // rewrites its records cost ~240 MB of peak RSS and ~20 % of the time at 1M
                // tasks (measured).
                background_compaction: false,
                ..LogOptions::default()
            };
            let store = LogStore::open(dir, options)
                .map_err(|e| format!("cannot open task store in {}: {e}", dir.display()))?;
            let store = Arc::new(store);
            log = Some(Arc::clone(&store));
            store
        }
    };
    let tasks = TaskStore::new(store);
    let stale = tasks.instances().map_err(|e| e.to_string())?;
    for instance in stale {
        tracing::info!(
            instance,
            "deleting the task tree an earlier run of this worker left"
        );
        tasks.delete_instance(instance).map_err(|e| e.to_string())?;
    }
    let store = WorkerTaskStore { tasks, log };
    store.compact();
    Ok(store)
}

/// The worker's MAP/MAP_REDUCE task store, and its log store if it has one.
#[derive(Clone, Debug)]
pub(crate) struct WorkerTaskStore {
    pub tasks: TaskStore,
    log: Option<Arc<LogStore>>,
}

impl WorkerTaskStore {
    /// Compacts the log store if garbage warrants it (blocking: call it off the runtime).
    /// Called once an instance's tasks are deleted, when what is live is small.
    pub(crate) fn compact(&self) {
        if let Some(log) = &self.log {
            if log.needs_compaction() {
                match log.compact() {
                    Ok(r) => tracing::debug!(?r, "task store compacted"),
                    Err(e) => tracing::warn!(error = %e, "task store compaction failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(result: &str) -> Finished {
        Finished {
            status: InstanceStatus::Succeed,
            result: Some(result.into()),
            start_time_ms: 0,
            counts: (1, 1, 0),
        }
    }

    #[test]
    fn finished_cache_keeps_the_last_capacity_entries() {
        let mut c = FinishedCache::new(3);
        for id in 1..=5 {
            c.insert(id, done(&id.to_string()));
        }
        assert!(c.get(1).is_none() && c.get(2).is_none());
        assert_eq!(c.get(5).unwrap().result.as_deref(), Some("5"));
        // A re-run forgets its entry; its next finish is the newest.
        c.remove(3);
        assert!(c.get(3).is_none());
        c.insert(6, done("6"));
        c.insert(3, done("3 again"));
        assert!(c.get(4).is_none());
        assert_eq!(c.get(3).unwrap().result.as_deref(), Some("3 again"));
        assert!(c.get(5).is_some() && c.get(6).is_some());
        assert_eq!(c.map.len(), 3);
        assert_eq!(c.order.len(), 3);
    }
}
