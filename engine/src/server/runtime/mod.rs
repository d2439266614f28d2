//! The server runtime: the I/O around the server core (`server::core::Core`) — the store, the
//! worker port, the timer, the API — behind the [`Api`](crate::api::Api) trait.
//!
//! ```text
//!   Api (HTTP, client) ──► api.rs ──┐   (with app_api.rs, workflow_api.rs, log_api.rs,
//!                                   │    workers_api.rs, history_api.rs: versions, audit,
//!                                   │    backfill.rs; pending_run.rs: a run written, then started)
//!   timer task (driver.rs) ─────────┼──► Runtime::step: Core under its mutex ──► effects:
//!   conn.rs: worker connections ────┘      writes awaited (driver.rs) ──► Core::resume
//!                                          messages to connections, reconciliation queries
//!   alarm.rs: the outbox's delivery task ──► channels
//!   retention.rs: pruning and the age sweep, on blocking threads (delete_api.rs: the API's)
//!   metrics.rs: gauges, counters, histograms, Prometheus text
//! ```
//!
//! The decisions, their invariants and policies are the core's (see its module docs); this
//! module only turns sockets, timers, commits and API calls into the core's inputs and
//! carries out its effects.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod alarm;
mod api;
mod app_api;
mod backfill;
mod calendar_api;
#[cfg(feature = "postgres")]
mod cluster;
mod conn;
mod delete_api;
pub(crate) mod driver;
mod history_api;
mod idempotency_api;
mod instance_api;
mod job_api;
mod link;
mod log_api;
pub(crate) mod metrics;
mod pending_run;
mod retention;
mod workers_api;
mod workflow_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferrojob_store::{LogOptions, LogStore, MemoryStore, RecoveryMode, StoreError};
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
    /// PostgreSQL (`postgres://user@host:port/db`): the schema is created or upgraded at
    /// start; see `server::pg`.
    #[cfg(feature = "postgres")]
    Postgres {
        /// The connection URL (may hold a password: never logged).
        url: String,
        /// How it writes.
        options: crate::server::pg::PgOptions,
    },
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
    /// Finished workflow instances kept per workflow (default 100); older ones are deleted
    /// with their node instances and those instances' logs.
    pub keep_finished_workflow_runs: usize,
    /// How long a finished instance or workflow instance is kept, ms (default 7 days,
    /// PowerJob's `instanceinfo.retention`; 0 keeps them until `keep_finished_runs` and
    /// `keep_finished_workflow_runs` prune them). The sweep runs every minute in the
    /// background.
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
    /// The CAs `https://` alarm channels are verified against (default: the public roots;
    /// `--alarm-tls-ca` adds a private CA to them).
    pub alarm_tls: crate::https::HttpsRoots,
    /// The loopback, link-local, private and other internal destinations alarm webhooks may
    /// reach after all (default none: public addresses only; see
    /// [`crate::https::destination`]). `--alarm-allow`.
    pub alarm_allow: Vec<crate::https::destination::AllowedDestination>,
    /// With a PostgreSQL store: run as one server of a cluster sharing the database (default
    /// `None`: the only server, acting for every app). The server then acts only for the
    /// partitions its membership holds, and its writes are fenced by their leases (see
    /// `server::pg::member` and `server::pg`'s fencing). Empty `addresses` announce the
    /// worker port's address.
    #[cfg(feature = "postgres")]
    pub cluster: Option<crate::server::pg::member::MemberConfig>,
}

/// The shortest transport heartbeat a server of a cluster sends its workers at (see
/// [`ServerCore::start`]).
#[cfg(feature = "postgres")]
const CLUSTER_MIN_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(250);

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
            keep_finished_workflow_runs: 100,
            retention_ms: 7 * 24 * 3600 * 1000,
            misfire_threshold_ms: 5000,
            max_log_lines_per_instance: 100_000,
            restart_grace_ms: 3000,
            recovery: RecoveryMode::Strict,
            max_jobs_per_app: 10_000,
            min_period_ms: 1000,
            net: ferrojob_transport::net::NetConfig::default(),
            alarm_tls: crate::https::HttpsRoots::public(),
            alarm_allow: Vec::new(),
            #[cfg(feature = "postgres")]
            cluster: None,
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
    /// The cluster membership could not start (database unreachable, bad lease timings).
    #[cfg(feature = "postgres")]
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] crate::server::pg::member::MemberError),
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
    shared: Arc<driver::Runtime>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    log_store: Option<Arc<LogStore>>,
    /// A server of a cluster: its membership.
    #[cfg(feature = "postgres")]
    member: Option<crate::server::pg::member::Member>,
}

/// How long a server of a cluster waits, when it shuts down, for its partitions to be
/// handed over before it leaves them to expire.
#[cfg(feature = "postgres")]
const LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
        // A server of a cluster: its membership's settings, the database and its repository.
        #[cfg(feature = "postgres")]
        let mut cluster: Option<(
            crate::server::pg::member::MemberConfig,
            String,
            Arc<crate::server::PgRepo>,
        )> = None;
        let (repo, log_store): (Repo, Option<Arc<LogStore>>) = match &config.store {
            StoreChoice::Memory => (Repo::open(Arc::new(MemoryStore::new()))?, None),
            #[cfg(feature = "postgres")]
            StoreChoice::Postgres { url, options } => {
                let (open_url, options) = (url.clone(), *options);
                let fence_as = config
                    .cluster
                    .as_ref()
                    .map(|m| (m.server.clone(), m.ownership.lease));
                let pg = tokio::task::spawn_blocking(move || {
                    let pg = crate::server::PgRepo::open_with(&open_url, options)?;
                    if let Some((server, lease)) = fence_as {
                        pg.fence_as(server, lease)?;
                    }
                    Ok::<_, RepoError>(Arc::new(pg))
                })
                .await
                .map_err(|e| ServerError::Config(format!("store open task failed: {e}")))??;
                if let Some(member) = &config.cluster {
                    cluster = Some((member.clone(), url.clone(), Arc::clone(&pg)));
                }
                (Repo::new(pg), None)
            }
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
                (Repo::open(log.clone())?, Some(log))
            }
        };
        #[cfg(feature = "postgres")]
        let clustered = cluster.is_some();
        #[cfg(not(feature = "postgres"))]
        let clustered = false;
        // A server of a cluster loads each partition when it is granted; the only server
        // loads everything now.
        let recovered = if clustered {
            None
        } else {
            let loaded = repo.load()?;
            Some((loaded, repo.load_workflows()?))
        };
        let apps = if clustered {
            repo.list_apps()?
        } else {
            Vec::new()
        };
        let shared = driver::Runtime::new(config, repo)?;
        if let Some(log) = &log_store {
            let _ = shared.metrics.log_store.set(Arc::downgrade(log));
        }
        let secrets: Arc<dyn ferrojob_transport::auth::AppSecrets> =
            Arc::new(driver::AppTable(Arc::clone(&shared)));
        #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
        let mut net = shared.config.net.clone();
        // A worker gives its server up after a few of the server's heartbeats (the transport
        // client follows the interval the handshake announces): in a cluster, a server paused
        // or frozen is then left within about a lease, and its workers find the server that
        // took their app over before that server's reconnection grace runs out.
        #[cfg(feature = "postgres")]
        if let Some(member) = &shared.config.cluster {
            let beat = (member.ownership.lease / 4).max(CLUSTER_MIN_HEARTBEAT);
            net.connection.heartbeat_interval = net.connection.heartbeat_interval.min(beat);
        }
        let listener =
            ferrojob_transport::net::Listener::bind(shared.config.listen, net, secrets).await?;
        let addr = listener.local_addr();
        shared.set_transport_metrics(Arc::clone(listener.metrics()));
        let mut tasks = Vec::new();
        shared.step(|core, now| match recovered {
            Some((loaded, (workflows, wf_active))) => {
                let wf_recovery = core.recover_workflows(&loaded, workflows, wf_active, now);
                core.recover(loaded, now);
                core.resume_workflows(wf_recovery, now);
            }
            None => core.start_partitioned(apps, now),
        });
        #[cfg(feature = "postgres")]
        let member = match cluster {
            None => None,
            Some((mut member, url, pg)) => {
                if member.addresses.is_empty() {
                    member.addresses = vec![addr.to_string()];
                }
                let glue = cluster::ClusterGlue::start(
                    Arc::clone(&shared),
                    pg,
                    tokio::runtime::Handle::current(),
                )
                .map_err(|e| ServerError::Config(format!("cannot start a thread: {e}")))?;
                tracing::info!(server = %member.server, "joining the cluster");
                let m = crate::server::pg::member::Member::start(
                    &url,
                    member,
                    Arc::clone(&shared.config.clock),
                    glue,
                )
                .await?;
                let _ = shared.member.set(m.watch());
                Some(m)
            }
        };
        tasks.push(tokio::spawn(driver::timer_task(Arc::clone(&shared))));
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
            #[cfg(feature = "postgres")]
            member,
        })
    }

    /// The transport address workers connect to.
    pub fn transport_addr(&self) -> SocketAddr {
        self.addr
    }

    /// On a server of a cluster: how its HTTP API forwards the requests of the apps other
    /// servers own (see `crate::http`'s forwarding). `None` for the only server.
    #[cfg(all(feature = "postgres", feature = "http"))]
    pub fn forwarding(&self) -> Option<crate::http::Forwarding> {
        let member = self.member.as_ref()?;
        let homes = cluster::AppHomes {
            runtime: Arc::clone(&self.shared),
            homes: member.homes(),
            me: member.server().clone(),
        };
        Some(crate::http::Forwarding {
            routing: Arc::new(homes),
            key: member.forward_key(),
            server: member.server().to_string(),
            timeout: crate::http::DEFAULT_FORWARD_TIMEOUT,
        })
    }

    /// The OpenAPI implementation over this server.
    pub fn api(&self) -> Arc<dyn crate::api::Api> {
        Arc::new(api::NodeApi(Arc::clone(&self.shared)))
    }

    /// Stops accepting workers, stops scheduling, closes every worker connection (flushing
    /// what was queued) and flushes the store.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        // A server of a cluster commits what it wrote under its leases, then hands its
        // partitions over (each stopped here first) and leaves.
        #[cfg(feature = "postgres")]
        if let Some(member) = self.member.take() {
            let shared = Arc::clone(&self.shared);
            let flushed = tokio::task::spawn_blocking(move || shared.repo.flush()).await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!(error = %e, "store flush before leaving the cluster failed");
            }
            member.leave(LEAVE_TIMEOUT).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        self.shared.close_connections().await;
        if let Err(e) = self.shared.repo.flush() {
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
        // Like a crash for the membership too: the leases expire.
        #[cfg(feature = "postgres")]
        if let Some(member) = self.member.take() {
            member.abandon();
        }
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
