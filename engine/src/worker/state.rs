//! The worker's shared state: processors, the core (behind the driver's one lock) and the
//! handles every task needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

use ferrojob_transport::message::ScheduleJob;
use ferrojob_transport::net::NetConfig;
use ferrojob_transport::{ClientIdentity, Role, TransportMetrics};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::driver::Driven;
use super::logs::{InstanceLogger, LogOutputs, LogStats};
use super::processor::Registered;
use super::TaskStoreConfig;
use super::WorkerConfig;
use crate::mapreduce::TaskStore;
use ferrojob_store::LogStore;

/// Everything the worker's tasks share.
pub(crate) struct Shared {
    pub config: WorkerConfig,
    /// `host:port` peers and the server know this worker by.
    pub address: Arc<str>,
    pub identity: ClientIdentity,
    pub processors: HashMap<String, Registered>,
    /// The core and what the driver keeps per instance; see `driver`.
    pub driven: Mutex<Driven>,
    /// Where runs are spawned (effects may be carried out on a non-runtime thread).
    pub runtime: tokio::runtime::Handle,
    /// Notified when the core has control messages to transmit (the session's writer).
    pub transmit_ready: Notify,
    /// Notified when the core's next timeout changed (the timer task).
    pub timer_changed: Notify,
    /// Notified whenever an instance leaves the running set.
    pub instance_done: Notify,
    /// Where instance loggers send their lines (ONLINE, LOCAL, STDOUT).
    pub log_outputs: LogOutputs,
    pub log_stats: Arc<LogStats>,
    /// Parent of every instance's and every peer task's token: fired by shutdown.
    pub tasks_root: CancellationToken,
    /// Broadcast tasks and MAP instances this worker runs for TaskTrackers (its own included).
    pub processor_trackers: AtomicU32,
    /// Tickets of peer tasks asking the core for a concurrency slot.
    pub next_ticket: AtomicU64,
    pub transport_metrics: Arc<TransportMetrics>,
    /// The MAP/MAP_REDUCE task store, opened at the first MAP instance.
    pub task_store: tokio::sync::OnceCell<WorkerTaskStore>,
}

impl Shared {
    /// Transport settings for a connection to the worker at `address` (`host:port`): the
    /// worker role, and over TLS the peer's certificate must name `host`.
    pub fn peer_net(&self, address: &str) -> NetConfig {
        let mut net = self.config.net.clone();
        net.role = Role::Worker;
        net.client_tls = net.client_tls.map(|tls| {
            let host = peer_host(address);
            match tls.clone().with_server_name(host) {
                Ok(named) => named,
                // Not a name a certificate can carry: check the address connected to.
                Err(_) => tls.without_server_name(),
            }
        });
        net
    }

    /// The session's settings: the server role, and the server's name from the config.
    pub fn server_net(&self) -> NetConfig {
        let mut net = self.config.net.clone();
        net.role = Role::Server;
        net
    }
}

/// The dispatch attempt of `job` (1 for the first): the server bases attempt `n`'s report
/// numbers at `n << 32` (see `ScheduleJob::report_seq_base`).
pub(crate) fn attempt_of(job: &ScheduleJob) -> u32 {
    u32::try_from(job.report_seq_base >> 32).unwrap_or(u32::MAX)
}

/// The host of `host:port` (`[v6]:port` included).
fn peer_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
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
    /// A logger for the attempt of `job`'s instance, honouring the job's log settings.
    pub(crate) fn logger(&self, job: &ScheduleJob) -> InstanceLogger {
        InstanceLogger::with_config(
            job.instance_id,
            attempt_of(job),
            &job.log_config,
            &self.log_outputs,
            Arc::clone(&self.log_stats),
        )
    }

    /// A logger for an instance this worker holds no settings for any more: ONLINE, every
    /// level, attempt 0 (unknown).
    pub(crate) fn default_logger(&self, instance_id: u64) -> InstanceLogger {
        InstanceLogger::new(
            instance_id,
            self.log_outputs.online.clone(),
            Arc::clone(&self.log_stats),
        )
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
        let max_tasks = self.config.max_tasks_per_instance;
        self.task_store
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || open_task_store(&config, max_tasks))
                    .await
                    .map_err(|e| format!("task store: {e}"))?
            })
            .await
            .cloned()
    }
}

fn open_task_store(
    config: &TaskStoreConfig,
    max_tasks_per_instance: u64,
) -> Result<WorkerTaskStore, String> {
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
    let tasks = TaskStore::new(store).with_max_tasks_per_instance(max_tasks_per_instance);
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
    #[test]
    fn the_peer_host_is_the_address_without_its_port() {
        assert_eq!(super::peer_host("10.0.0.5:27777"), "10.0.0.5");
        assert_eq!(super::peer_host("worker-3.internal:1"), "worker-3.internal");
        assert_eq!(super::peer_host("[::1]:80"), "::1");
        assert_eq!(super::peer_host("nohost"), "nohost");
    }
}
