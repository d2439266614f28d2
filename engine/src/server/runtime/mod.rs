//! The server core runtime: apps, jobs, the timing wheel, dispatch, worker connections,
//! reports, logs, restart recovery and metrics, behind the [`Api`](crate::api::Api) trait.
//!
//! ```text
//!   Api (HTTP, client) ──► api.rs ──► Repo (durable) ──► active map + timer commands
//!   timer.rs (TimerWheel on the Clock) ──► fire / delayed run / retry / checks / tick
//!   fire.rs: a trigger (schedule::Schedule::plan), receive/run checks, worker liveness
//!   dispatch.rs: claim ──► hand_over (ScheduleJob on the TaskTracker's connection)
//!   report.rs: reports, retry policy, final transitions (prune, FIXED_DELAY re-arm)
//!   write.rs: a transition's write ──► acknowledged ──► its follow-up
//!   recover.rs: restart recovery, grace period, reconciliation with reconnected workers
//!   conn.rs: transport Listener ──► per-connection task: heartbeats, reports, logs, queries
//!   workflow/: workflows — a node's final report ──► its workflow instance's state machine
//!              ──► one batch (node final + snapshot + successors' instances) ──► dispatch
//!   metrics.rs: gauges, counters, histograms, Prometheus text
//!   alarm.rs: a final transition's alarms (in its batch) ──► delivery task ──► channels
//! ```
//!
//! Invariants:
//!
//! - Every non-final instance lives in memory in the `active` map, one mutex per instance;
//!   every transition is made under that mutex through `InstanceRecord`'s lifecycle methods
//!   and submitted to the store before it is released, so the store sees an instance's writes
//!   in transition order. Nothing on the path wheel → select → socket takes a lock shared by
//!   all instances or jobs.
//! - A ScheduleJob is sent only after the WAITING_WORKER_RECEIVE write is acknowledged; an
//!   API answer (create, run) only after its write is acknowledged. RUNNING is kept in memory
//!   only: after a restart the worker is asked (`QueryInstanceStatus`).
//! - A scheduled fire and the job's next trigger are one atomic batch (`Repo::fire_if`).
//! - A worker is known by its app and the address it announced (`state::Conns`): a
//!   connection, a report or a log line of one app never reaches another app's instances.
//!
//! Policies:
//!
//! - No eligible worker: 5 attempts 500 ms apart, then FAILED naming what excluded each
//!   worker. Attempts during the restart grace do not count.
//! - A failed attempt is retried after 1 s, 2 s, 4 s … (at most 30 s), preferring another
//!   worker, while the job's `instance_retries` allow.
//! - No confirmation within `worker_receive_timeout_ms`: the worker that had it is told to
//!   stop, and the instance is dispatched again without using a retry.
//! - No final report within the job's `timeout_ms` + 30 s: `StopInstance` and the retry policy.
//! - A dead worker (3 missed heartbeats, or a connection not back within that window): its
//!   instances go to the retry policy at once.
//! - After a restart, instances on workers that have not reconnected within
//!   `restart_grace_ms` go to the retry policy; a worker that reconnects is asked about every
//!   instance it holds.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod alarm;
mod api;
mod conn;
mod dispatch;
mod fire;
mod metrics;
mod recover;
mod report;
mod retention;
mod state;
mod timer;
mod workflow;
mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferrojob_store::{LogOptions, LogStore, MemoryStore, RecoveryMode, Store, StoreError};
use ferrojob_transport::error::TransportError;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::dispatch::DispatchError;

use super::{Repo, RepoError};

/// Where the server keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// The crash-safe log store in `dir` (default durability: acknowledged = fsynced, group
    /// commit).
    Log {
        /// The data directory (created if missing; locked while the server runs).
        dir: PathBuf,
    },
    /// The in-memory store: everything is lost when the process ends.
    Memory,
}

/// The server core's settings; [`ServerConfig::new`] holds every default.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where state is kept.
    pub store: StoreChoice,
    /// Transport address workers connect to (port 0: any free port).
    pub listen: SocketAddr,
    /// The clock (default [`SystemClock`]); tests use a `VirtualClock`.
    pub clock: Arc<dyn Clock>,
    /// Worker heartbeat interval, ms (default 1000); a worker is dead after 3 missed.
    pub heartbeat_interval_ms: u64,
    /// An instance WAITING_WORKER_RECEIVE longer than this (ms, default 10 000) is requeued.
    pub worker_receive_timeout_ms: u64,
    /// Finished instances kept per job, of every kind (scheduled, API, retried, workflow
    /// node; default 100); older ones are deleted with their logs.
    pub keep_finished_runs: usize,
    /// How long a finished instance is kept, ms (default 7 days, PowerJob's
    /// `instanceinfo.retention`; 0 keeps them until `keep_finished_runs` prunes them). The
    /// sweep runs every minute in the background.
    pub retention_ms: u64,
    /// A trigger later than this (ms, default 5000) is a misfire and follows the job's policy.
    pub misfire_threshold_ms: u64,
    /// Log lines stored per instance (default 100 000); beyond, lines are counted as dropped.
    pub max_log_lines_per_instance: u64,
    /// After a start, how long (ms) to wait for workers to reconnect before their
    /// dispatched or running instances go to the retry policy (default 3000). It must cover
    /// the workers' reconnect delay: a worker tries again at most
    /// [`MAX_RECONNECT_DELAY`](crate::worker::MAX_RECONNECT_DELAY) (1 s) after a failed attempt.
    pub restart_grace_ms: u64,
    /// What opening the log store does with damage in the middle of the log (default
    /// `Strict`: refuse to start; `Salvage` keeps every intact record and moves the damaged
    /// part aside, see [`RecoveryMode`]).
    pub recovery: RecoveryMode,
    /// Jobs an app may have (default 10 000); creating one more is refused (409).
    pub max_jobs_per_app: usize,
    /// Shortest FIXED_RATE period or FIXED_DELAY delay a job or workflow may have, ms
    /// (default 1000): a tenant cannot saturate the commit writer with 1 ms schedules.
    pub min_period_ms: u64,
    /// The worker port's connection limits and sizes: authenticated connections, the
    /// pre-authentication pool, per-source handshake rate, frame sizes, timeouts and queues
    /// (see [`NetConfig`](ferrojob_transport::net::NetConfig); its defaults by default).
    pub net: ferrojob_transport::net::NetConfig,
}

impl ServerConfig {
    /// The defaults, with `store` and `listen`.
    pub fn new(store: StoreChoice, listen: SocketAddr) -> Self {
        ServerConfig {
            store,
            listen,
            clock: Arc::new(SystemClock),
            heartbeat_interval_ms: 1000,
            worker_receive_timeout_ms: 10_000,
            keep_finished_runs: 100,
            retention_ms: 7 * 24 * 3600 * 1000,
            misfire_threshold_ms: 5000,
            max_log_lines_per_instance: 100_000,
            restart_grace_ms: 3000,
            recovery: RecoveryMode::Strict,
            max_jobs_per_app: 10_000,
            min_period_ms: 1000,
            net: ferrojob_transport::net::NetConfig::default(),
        }
    }
}

/// Why the server core could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened (locked by another server, I/O, corruption).
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The stored state could not be read.
    #[error("cannot load the stored state: {0}")]
    Repo(#[from] RepoError),
    /// The transport address could not be bound.
    #[error("cannot listen for workers: {0}")]
    Transport(#[from] TransportError),
    /// A setting is unusable.
    #[error("invalid server config: {0}")]
    Config(String),
}

impl From<DispatchError> for ServerError {
    fn from(e: DispatchError) -> Self {
        ServerError::Config(e.to_string())
    }
}

/// A running server core (see the module docs). Drop it or call
/// [`shutdown`](ServerCore::shutdown) to stop it.
#[derive(Debug)]
pub struct ServerCore {
    shared: Arc<state::Runtime>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    log_store: Option<Arc<LogStore>>,
}

/// Logs what opening the store changed: torn tails cut off, damaged data moved aside.
fn log_recovery(log: &LogStore) {
    let report = log.recovery_report();
    for (path, len) in &report.truncated {
        tracing::info!(path = %path.display(), len, "store: cut off a torn tail (an unfinished write)");
    }
    if !report.moved_aside.is_empty() {
        tracing::warn!(
            moved_aside = ?report.moved_aside,
            batches_kept = report.batches_replayed,
            keys = report.keys,
            "store salvaged: every intact record kept, the damaged part moved aside (nothing deleted)"
        );
    }
}

impl ServerCore {
    /// Opens the store, loads and reconciles the stored state, binds the transport listener
    /// and starts the timer and connection tasks. Must be called on a tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<ServerCore, ServerError> {
        if config.heartbeat_interval_ms == 0 {
            return Err(ServerError::Config(
                "heartbeat_interval_ms must be >= 1".into(),
            ));
        }
        let (store, log_store): (Arc<dyn Store>, Option<Arc<LogStore>>) = match &config.store {
            StoreChoice::Memory => (Arc::new(MemoryStore::new()), None),
            StoreChoice::Log { dir } => {
                let dir = dir.clone();
                let options = LogOptions {
                    recovery: config.recovery,
                    ..LogOptions::default()
                };
                let log = tokio::task::spawn_blocking(move || LogStore::open(dir, options))
                    .await
                    .map_err(|e| ServerError::Config(format!("store open task failed: {e}")))??;
                log_recovery(&log);
                let log = Arc::new(log);
                (log.clone(), Some(log))
            }
        };
        let repo = Repo::open(store)?;
        let loaded = repo.load()?;
        let (workflows, wf_active) = repo.load_workflows()?;
        let shared = state::Runtime::new(config, repo)?;
        if let Some(log) = &log_store {
            let _ = shared.metrics.log_store.set(Arc::downgrade(log));
        }
        let secrets: Arc<dyn ferrojob_transport::auth::AppSecrets> =
            Arc::new(state::AppTable(Arc::clone(&shared)));
        let listener = ferrojob_transport::net::Listener::bind(
            shared.config.listen,
            shared.config.net.clone(),
            secrets,
        )
        .await?;
        let addr = listener.local_addr();
        shared.set_transport_metrics(Arc::clone(listener.metrics()));
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(timer::run(Arc::clone(&shared))));
        let wf_recovery = shared.recover_workflows(&loaded, workflows, wf_active);
        shared.recover(loaded);
        shared.resume_workflows(wf_recovery);
        tasks.push(tokio::spawn(alarm::run(Arc::clone(&shared))));
        tasks.push(tokio::spawn(conn::accept_loop(
            Arc::clone(&shared),
            listener,
        )));
        tracing::info!(%addr, "server core started");
        Ok(ServerCore {
            shared,
            addr,
            tasks,
            log_store,
        })
    }

    /// The transport address workers connect to.
    pub fn transport_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAPI implementation over this server.
    pub fn api(&self) -> Arc<dyn crate::api::Api> {
        Arc::new(api::NodeApi(Arc::clone(&self.shared)))
    }

    /// Stops accepting workers, stops scheduling, closes every worker connection (flushing
    /// what was queued) and flushes the store.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        self.shared.close_connections().await;
        if let Err(e) = self.shared.repo.store().flush() {
            tracing::warn!(error = %e, "store flush at shutdown failed");
        }
        if let Some(log) = self.log_store.take() {
            if let Err(e) = log.close() {
                tracing::warn!(error = %e, "store close at shutdown failed");
            }
        }
        tracing::info!("server core stopped");
    }
}

impl Drop for ServerCore {
    fn drop(&mut self) {
        // Like a crash for the timer and the listener; acknowledged writes are durable.
        self.shared.begin_shutdown();
        for t in &self.tasks {
            t.abort();
        }
        // Close the worker connections too, so that their tasks end and release the store.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(&self.shared);
            rt.spawn(async move { shared.close_connections().await });
        }
    }
}
