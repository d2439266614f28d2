//! The worker library: connect to a ferrojob server, run the instances it dispatches with
//! registered processors, report their status, ship their logs, and take part in BROADCAST
//! instances with other workers of the same app (the worker side of
//! `ferrojob_transport::message`).
//!
//! ```text
//!  Worker::builder(config).basic("name", p).broadcast(..).map_reduce(..).builtins().start()
//!
//!   WorkerCore (sans-IO, behind the driver's one lock): instances, report seqs, retries,
//!   │  timeouts, stop, concurrency slots, finished cache, heartbeats, reconnect backoff
//!   │  ▲ Shared::drive(Input)                  │ effects, transmits, timeouts
//!   │  │                                       ▼
//!   ├─ session task (server)  ── ScheduleJob / StopInstance / QueryInstanceStatus ─▶ core
//!   │    connects when the core says (backoff ≤ MAX_RECONNECT_DELAY), Connected / Lost ─▶ core
//!   │    writer: core.poll_transmit first (reports, heartbeats, answers), then one log batch
//!   ├─ timer task             ── Input::Timer at core.poll_timeout (keepalives, timeouts,
//!   │                            heartbeats, server lost)
//!   ├─ run tasks (instance)   ◀─ Effect::StartRun: a STANDALONE attempt, a BROADCAST hook or
//!   │                            task attempt (here or on a peer), a MAP/MAP_REDUCE instance
//!   │                            (task_tracker::run + its thread) ── RunFinished ─▶ core
//!   ├─ sampler task           ── metrics (sysinfo, spawn_blocking) ─▶ core (for heartbeats)
//!   ├─ Listener (config.listen) ── peers' StartTask ─▶ broadcast::serve_peer (slot from core)
//!   │                              peers' StartTasks ─▶ processor_tracker (MAP tasks)
//!   └─ log shipper task       ◀── InstanceLogger lines (bounded) ─▶ log batches (bounded)
//! ```
//!
//! - [`processor`]: [`BasicProcessor`], [`BroadcastProcessor`], [`MapProcessor`],
//!   [`MapReduceProcessor`], [`TaskContext`], [`MapContext`],
//!   [`ProcessResult`].
//! - `core`: the sans-IO worker core (`WorkerCore`): every rule about the instances this
//!   worker is the TaskTracker of, its concurrency slots and its server connection.
//! - `driver`: feeds the core with the wall clock and carries out its effects; the timer task.
//! - `instance`: the processor runs the core starts.
//! - `broadcast`: BROADCAST task attempts on peers, and the ProcessorTracker side for peers.
//! - `task_tracker`: a MAP/MAP_REDUCE instance on its TaskTracker (the task tree in the
//!   worker's task store, dispatch to ProcessorTrackers, retries, dead workers, reduce), over
//!   `mapreduce::TaskTrackerCore`.
//! - `processor_tracker`: the MAP/MAP_REDUCE tasks a worker runs for a TaskTracker.
//! - `session`: the server connection (reader, control-first writer) and the metrics sampler.
//! - `logs`: [`InstanceLogger`] and the log shipper.
//! - [`builtin`]: `noop`, `sleep`, `sum_mr`, and `shell`, `http` when allowed.
//! - `admission`: what the worker runs for whom: a disabled or unknown processor
//!   ([`ProcessorUnavailable`]), and the checks on a peer's `StartTask`/`StartTasks` before
//!   any of its tasks runs.
//!
//! Trust: the server and every worker of an app prove the same app secret, so the worker
//! trusts what arrives on its server connection and checks what arrives on its listener (see
//! `admission`). `shell` and `http` run what jobs name, so they are registered only when
//! [`WorkerConfig::allow_processors`] names them; `shell` takes its command from the job's
//! params, never from a run's, and starts it with a clean environment (see [`builtin`]).
//!
//! Invariants: per instance dispatch, reports are numbered from `report_seq_base + 1` and
//! strictly increase, and exactly one final report is sent, last (the core's); reports,
//! heartbeats and query answers never wait behind log batches; every queue is bounded (the
//! core's control queue, log lines, log batches, the finished-instance cache, peer tasks, peer
//! connections via the listener's limit); a processor's panic fails its task, never the worker.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod admission;
mod broadcast;
pub mod builtin;
pub(crate) mod core;
mod driver;
mod instance;
mod local_log;
mod logs;
mod metrics;
pub mod processor;
mod processor_tracker;
mod servers;
mod session;
mod state;
mod task_tracker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::SystemMetrics;
use ferrojob_transport::net::{Listener, NetConfig};
use ferrojob_transport::Role;
use ferrojob_transport::{AppSecret, AppSecrets, ClientIdentity, TransportError, TransportMetrics};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use admission::ProcessorUnavailable;
pub use builtin::DangerousBuiltin;
/// The level of a line an [`InstanceLogger`] writes (the protocol's, as it travels to the
/// server).
pub use ferrojob_transport::message::LogLevel;
pub use local_log::{read_local_log, LocalLogConfig, LOCAL_LOG_FILE, MIN_LOCAL_LOG_FILE_BYTES};
pub use logs::{
    InstanceLogger, MAX_LOG_FIELDS, MAX_LOG_FIELD_KEY_BYTES, MAX_LOG_FIELD_VALUE_BYTES,
};
pub use processor::{
    summarise, BasicProcessor, BroadcastProcessor, MapContext, MapError, MapProcessor,
    MapReduceProcessor, MapTaskResult, ProcessResult, ReduceResults, TaskContext, TaskResult,
};

pub use self::core::{MAX_HANDOFF_DELAY, MAX_RECONNECT_DELAY};

use self::core::{CoreConfig, Input, WorkerCore};
use driver::Driven;
use processor::Registered;
use state::Shared;

/// Control messages (reports, heartbeats, query answers) queued for the server past which
/// keepalives and heartbeats are skipped and new instances refused; final reports are always
/// queued (at most one per running instance). Log batches have their own, smaller queue and go
/// out only when no control message waits.
pub const OUTBOUND_QUEUE: usize = 65_536;

/// A worker's settings. Build with [`WorkerConfig::new`] and adjust the public fields.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The server's transport address.
    pub server: SocketAddr,
    /// The other servers of a cluster (default none): when the current server cannot be
    /// reached, or does not serve the app (another server of the cluster owns it), the
    /// worker tries the owner it names when that is one of these, else the next one in turn.
    pub other_servers: Vec<SocketAddr>,
    /// The app this worker serves.
    pub app: String,
    /// The app's secret (proved in the handshake, never sent).
    pub secret: String,
    /// Tags for SPECIFY dispatch; the first one also goes into heartbeats.
    pub tags: Vec<String>,
    /// Where the worker-to-worker Listener binds (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// `host:port` other workers and the server know this worker by; default: the listener's
    /// bound address (loopback when `listen` is unspecified, e.g. `0.0.0.0`: set this when
    /// workers run on several machines). It is the worker's identity everywhere.
    pub advertise: Option<String>,
    /// Heartbeat period (default 1 s).
    pub heartbeat_interval: Duration,
    /// After the server has been unreachable for longer than this, FIXED_RATE / FIXED_DELAY
    /// instances are stopped, as PowerJob's workers do (default 30 s).
    pub server_lost_after: Duration,
    /// Log lines queued for shipping at most (default 10 000); more are dropped and counted.
    pub log_queue: usize,
    /// Instances running at once before heartbeats say `overloaded`; 0 = no limit (default).
    pub max_running_instances: usize,
    /// A running instance repeats its RUNNING report this often (default 10 s).
    pub keepalive_interval: Duration,
    /// Finished instances remembered for `QueryInstanceStatus` (default 10 000).
    pub finished_cache: usize,
    /// Transport settings (timeouts, queues, reconnect backoff) for the server and peers.
    /// TLS: `net.client_tls` (the CA that signed the server's and the peers' certificates,
    /// and the server's name) secures the connection to the server and to other workers;
    /// `net.server_tls` (this worker's certificate, naming the host of its advertised
    /// address) secures its worker-to-worker listener. Either both or neither: a worker
    /// that reaches the server over TLS reaches its peers over TLS too. `net.role` is set by
    /// the worker itself (the server for its session, a worker for its peers).
    pub net: NetConfig,
    /// Where this worker keeps the task trees of the MAP/MAP_REDUCE instances it tracks
    /// (default: in memory; the bundled worker defaults to a log store in its data dir).
    pub task_store: TaskStoreConfig,
    /// True: as a MAP/MAP_REDUCE TaskTracker this worker runs no task itself, it only
    /// coordinates the other workers of the instance (default false).
    pub coordinator_only: bool,
    /// MAP/MAP_REDUCE tasks a TaskTracker keeps dispatched to one ProcessorTracker at once
    /// (back-pressure; default 4096).
    pub map_tasks_in_flight: u32,
    /// A ProcessorTracker silent for this long is dead for its TaskTracker, which re-dispatches
    /// its tasks (default 15 s; a closed connection counts at once).
    pub map_worker_timeout: Duration,
    /// Tasks one MAP/MAP_REDUCE instance this worker tracks may hold, its root task included
    /// (default [`DEFAULT_MAX_TASKS_PER_INSTANCE`](crate::mapreduce::DEFAULT_MAX_TASKS_PER_INSTANCE)).
    /// A `map` call that would go past it is refused whole: the mapping task gets the error
    /// and fails, so a mapping loop cannot fill the TaskTracker's memory or disk.
    pub max_tasks_per_instance: u64,
    /// The built-ins that act beyond the worker which [`WorkerBuilder::builtins`] registers
    /// (`shell`, `http`; default none). A job naming one that is not allowed fails with
    /// [`ProcessorUnavailable::NotAllowed`].
    pub allow_processors: std::collections::BTreeSet<DangerousBuiltin>,
    /// The timeout of an instance whose job sets none (`instance_timeout_ms` 0): such a run
    /// is stopped and fails after this long, as if the job had set it (default
    /// [`DEFAULT_INSTANCE_TIMEOUT`], 24 h; `Duration::ZERO` = no timeout).
    pub default_instance_timeout: Duration,
    /// Bounds on each output stream of a `shell` run (default [`builtin::OutputLimits`]'s:
    /// lines cut at 8000 bytes, 8 MiB logged per stream and run).
    pub shell_output: builtin::OutputLimits,
    /// The rotating files of jobs that log LOCAL (default: no directory, LOCAL lines are
    /// dropped; the bundled worker uses `DATA_DIR/logs`). Read them with [`read_local_log`].
    pub local_log: LocalLogConfig,
    /// The CAs the `http` processor verifies `https://` URLs against (default: the public
    /// roots; the bundled worker's `--http-tls-ca` adds a private CA to them).
    pub http_tls: crate::https::HttpsRoots,
    /// The loopback, link-local, private and other internal destinations the `http`
    /// processor may reach after all (default none: it reaches public addresses only; see
    /// [`builtin::destination`]). The bundled worker's `--http-allow`.
    pub http_allow: Vec<builtin::AllowedDestination>,
}

/// Default [`WorkerConfig::default_instance_timeout`]: a day. A run that has gone on that
/// long without its job asking for it is almost always stuck; a job that runs longer says so
/// with its own timeout.
pub const DEFAULT_INSTANCE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Where a worker keeps MAP/MAP_REDUCE task trees (see [`WorkerConfig::task_store`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskStoreConfig {
    /// In memory: fastest, but pending tasks take RAM.
    Memory,
    /// A `LogStore` in `dir` (created if missing; one directory per worker): pending tasks
    /// live on disk, only their keys in RAM. Opened at the first MAP instance; what a previous
    /// run of the worker left there is deleted then (the server re-dispatches those instances).
    Log {
        /// The directory.
        dir: std::path::PathBuf,
    },
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("server", &self.server)
            .field("other_servers", &self.other_servers)
            .field("app", &self.app)
            .field("secret", &"..")
            .field("tags", &self.tags)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("server_lost_after", &self.server_lost_after)
            .field("log_queue", &self.log_queue)
            .field("max_running_instances", &self.max_running_instances)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("finished_cache", &self.finished_cache)
            .field("task_store", &self.task_store)
            .field("coordinator_only", &self.coordinator_only)
            .field("map_tasks_in_flight", &self.map_tasks_in_flight)
            .field("map_worker_timeout", &self.map_worker_timeout)
            .field("max_tasks_per_instance", &self.max_tasks_per_instance)
            .field("allow_processors", &self.allow_processors)
            .field("default_instance_timeout", &self.default_instance_timeout)
            .field("shell_output", &self.shell_output)
            .field("local_log", &self.local_log)
            .field("http_tls", &self.http_tls)
            .field("http_allow", &self.http_allow)
            .finish_non_exhaustive()
    }
}

impl WorkerConfig {
    /// Defaults for a worker of `app` talking to `server`.
    pub fn new(server: SocketAddr, app: impl Into<String>, secret: impl Into<String>) -> Self {
        WorkerConfig {
            server,
            other_servers: Vec::new(),
            app: app.into(),
            secret: secret.into(),
            tags: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            heartbeat_interval: Duration::from_secs(1),
            server_lost_after: Duration::from_secs(30),
            log_queue: 10_000,
            max_running_instances: 0,
            keepalive_interval: Duration::from_secs(10),
            finished_cache: 10_000,
            net: NetConfig::default(),
            task_store: TaskStoreConfig::Memory,
            coordinator_only: false,
            map_tasks_in_flight: 4096,
            map_worker_timeout: Duration::from_secs(15),
            max_tasks_per_instance: crate::mapreduce::DEFAULT_MAX_TASKS_PER_INSTANCE,
            allow_processors: std::collections::BTreeSet::new(),
            default_instance_timeout: DEFAULT_INSTANCE_TIMEOUT,
            shell_output: builtin::OutputLimits::default(),
            local_log: LocalLogConfig::default(),
            http_tls: crate::https::HttpsRoots::public(),
            http_allow: Vec::new(),
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The worker-to-worker listener could not bind.
    #[error("cannot listen on {addr} for other workers: {source}")]
    Listen {
        /// The configured `listen` address.
        addr: SocketAddr,
        /// Why.
        source: TransportError,
    },
    /// A setting is unusable.
    #[error("invalid worker config: {0}")]
    Config(String),
}

/// Registers processors, then starts a [`Worker`].
pub struct WorkerBuilder {
    config: WorkerConfig,
    processors: HashMap<String, Registered>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.processors.keys().collect();
        names.sort();
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("processors", &names)
            .finish()
    }
}

impl WorkerBuilder {
    /// Registers a basic processor under `name` (the job's `processor`); a later registration
    /// of the same name replaces it.
    pub fn basic(mut self, name: impl Into<String>, p: impl BasicProcessor) -> Self {
        self.processors
            .insert(name.into(), Registered::Basic(Arc::new(p)));
        self
    }

    /// Registers a broadcast processor under `name`.
    pub fn broadcast(mut self, name: impl Into<String>, p: impl BroadcastProcessor) -> Self {
        self.processors
            .insert(name.into(), Registered::Broadcast(Arc::new(p)));
        self
    }

    /// Registers a MAP processor under `name` (for jobs of execute type MAP).
    pub fn map(mut self, name: impl Into<String>, p: impl MapProcessor) -> Self {
        self.processors.insert(
            name.into(),
            Registered::Map {
                processor: Arc::new(processor::MapOnly(p)),
                has_reduce: false,
            },
        );
        self
    }

    /// Registers a MAP_REDUCE processor under `name` (for jobs of execute type MAP_REDUCE;
    /// a MAP job may use it too, without the reduce).
    pub fn map_reduce(mut self, name: impl Into<String>, p: impl MapReduceProcessor) -> Self {
        self.processors.insert(
            name.into(),
            Registered::Map {
                processor: Arc::new(processor::WithReduce(p)),
                has_reduce: true,
            },
        );
        self
    }

    /// Registers the built-in processors `noop`, `sleep` and `sum_mr`, and those of `shell`
    /// and `http` that [`WorkerConfig::allow_processors`] names.
    pub fn builtins(self) -> Self {
        let allowed = self.config.allow_processors.clone();
        let shell_output = self.config.shell_output;
        let http_tls = self.config.http_tls.clone();
        let http_policy = builtin::DestinationPolicy::new(self.config.http_allow.clone());
        let mut builder = self
            .basic("noop", builtin::NoopProcessor)
            .basic("sleep", builtin::SleepProcessor)
            .map_reduce("sum_mr", builtin::SumMrProcessor);
        for processor in allowed {
            builder = match processor {
                DangerousBuiltin::Shell => {
                    builder.basic("shell", builtin::ShellProcessor::with_limits(shell_output))
                }
                DangerousBuiltin::Http => builder.basic(
                    "http",
                    builtin::HttpProcessor::new(&http_tls, http_policy.clone()),
                ),
            };
        }
        builder
    }

    /// Binds the worker-to-worker listener and starts connecting to the server in the
    /// background (it does not wait for the server to be up). Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Worker, WorkerError> {
        let WorkerBuilder { config, processors } = self;
        if config.app.is_empty() {
            return Err(WorkerError::Config("the app name is empty".into()));
        }
        if config.net.client_tls.is_some() != config.net.server_tls.is_some() {
            return Err(WorkerError::Config(
                "TLS needs both the CA to trust (`net.client_tls`) and this worker's own \
                 certificate for its peer listener (`net.server_tls`), or neither"
                    .into(),
            ));
        }
        let secret = AppSecret::new(config.secret.as_bytes());
        let mut secrets: HashMap<String, AppSecret> = HashMap::new();
        secrets.insert(config.app.clone(), secret.clone());
        let secrets: Arc<dyn AppSecrets> = Arc::new(secrets);
        let mut peer_listener = config.net.clone();
        peer_listener.role = Role::Worker;
        let listener = Listener::bind(config.listen, peer_listener, secrets)
            .await
            .map_err(|source| WorkerError::Listen {
                addr: config.listen,
                source,
            })?;
        let address: Arc<str> = match &config.advertise {
            Some(a) if a.trim().is_empty() => {
                return Err(WorkerError::Config("advertise is empty".into()))
            }
            Some(a) => Arc::from(a.as_str()),
            None => {
                let mut bound = listener.local_addr();
                if bound.ip().is_unspecified() {
                    // 0.0.0.0 is no address to reach anyone at: loopback works on one machine;
                    // across machines, `advertise` must name the real one.
                    tracing::warn!(listen = %bound, "listening on an unspecified address without `advertise`: advertising loopback");
                    bound.set_ip(if bound.is_ipv4() {
                        std::net::IpAddr::from([127, 0, 0, 1])
                    } else {
                        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                    });
                }
                Arc::from(bound.to_string().as_str())
            }
        };
        let identity = ClientIdentity {
            app_name: config.app.clone(),
            worker_address: address.to_string(),
            tags: config.tags.clone(),
            client_version: concat!("ferrojob-worker ", env!("CARGO_PKG_VERSION")).to_string(),
            secret,
        };
        let (log_batch_tx, log_batch_rx) = mpsc::channel(logs::LOG_BATCH_QUEUE);
        let (log_tx, log_rx) = mpsc::channel(config.log_queue.max(1));
        let mut sampler = metrics::Sampler::new();
        let (sampler, first_metrics) = tokio::task::spawn_blocking(move || {
            let m = sampler.sample();
            (sampler, m)
        })
        .await
        .map_err(|e| WorkerError::Config(format!("metrics sampling failed: {e}")))?;
        let core = WorkerCore::new(
            CoreConfig {
                address: address.to_string(),
                app: config.app.clone(),
                tag: config.tags.first().cloned(),
                heartbeat_interval_ms: millis(config.heartbeat_interval).max(10),
                keepalive_interval_ms: millis(config.keepalive_interval),
                default_instance_timeout_ms: u64::try_from(
                    config.default_instance_timeout.as_millis(),
                )
                .unwrap_or(u64::MAX),
                server_lost_after: config.server_lost_after,
                max_running_instances: config.max_running_instances,
                finished_cache: config.finished_cache,
                backoff: config.net.backoff.clone(),
                seed: rand::thread_rng().gen(),
                metrics: first_metrics,
            },
            epoch_ms(),
        );
        let stops = Stops::default();
        let shared = Arc::new(Shared {
            address: Arc::clone(&address),
            identity,
            processors,
            driven: Mutex::new(Driven::new(core)),
            runtime: tokio::runtime::Handle::current(),
            transmit_ready: Notify::new(),
            timer_changed: Notify::new(),
            instance_done: Notify::new(),
            log_outputs: logs::LogOutputs {
                online: log_tx,
                local: local_log::LocalWriter::start(
                    config.local_log.clone(),
                    config.log_queue.max(1),
                )
                .map_err(|e| {
                    WorkerError::Config(format!("cannot start the local log writer: {e}"))
                })?,
            },
            log_stats: Arc::default(),
            tasks_root: CancellationToken::new(),
            processor_trackers: AtomicU32::new(0),
            next_ticket: AtomicU64::new(0),
            transport_metrics: Arc::new(TransportMetrics::default()),
            task_store: tokio::sync::OnceCell::new(),
            config,
        });
        let session = tokio::spawn(session::run(
            Arc::clone(&shared),
            log_batch_rx,
            stops.session.clone(),
        ));
        let heartbeat = tokio::spawn(session::sample_metrics(
            Arc::clone(&shared),
            sampler,
            stops.background.clone(),
        ));
        let timers = tokio::spawn(driver::timers(Arc::clone(&shared), stops.session.clone()));
        let shipper = tokio::spawn(logs::ship(
            log_rx,
            log_batch_tx,
            address.to_string(),
            stops.logs.clone(),
        ));
        let peers = tokio::spawn(broadcast::accept_peers(
            Arc::clone(&shared),
            listener,
            stops.background.clone(),
        ));
        tracing::info!(address = %address, server = %shared.config.server, app = %shared.config.app, "worker started");
        Ok(Worker {
            shared,
            stops,
            tasks: Some(Tasks {
                session,
                heartbeat,
                timers,
                shipper,
                peers,
            }),
        })
    }
}

#[derive(Debug, Default)]
struct Stops {
    session: CancellationToken,
    logs: CancellationToken,
    background: CancellationToken,
}

/// A running worker. [`Worker::shutdown`] stops it gracefully; dropping it instead stops its
/// tasks abruptly (instances are cancelled, the connection just ends: final reports and logs
/// still queued are lost).
pub struct Worker {
    shared: Arc<Shared>,
    stops: Stops,
    /// `None` once `shutdown` took them.
    tasks: Option<Tasks>,
}

#[derive(Debug)]
struct Tasks {
    session: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    timers: JoinHandle<()>,
    shipper: JoinHandle<()>,
    peers: JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            // The core ends every instance ("worker shut down") before their runs see the
            // cancellation, so no run's "cancelled" result is taken for a failed attempt.
            self.shared.drive(Input::Shutdown);
            self.shared.tasks_root.cancel();
            self.stops.background.cancel();
            self.stops.logs.cancel();
            self.stops.session.cancel();
            tasks.session.abort();
            tasks.heartbeat.abort();
            tasks.timers.abort();
            tasks.shipper.abort();
            tasks.peers.abort();
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("address", &self.shared.address)
            .field("connected", &self.is_connected())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

/// How long shutdown waits for cancelled instances to report, and for the last messages to be
/// written.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Worker {
    /// A builder for a worker with `config`.
    pub fn builder(config: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder {
            config,
            processors: HashMap::new(),
        }
    }

    /// The `host:port` this worker is known by (its listener's, or the advertised one).
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// Whether the worker is connected to the server now.
    pub fn is_connected(&self) -> bool {
        self.shared.driven.lock().core.is_connected()
    }

    /// Instances this worker runs now (as their TaskTracker).
    pub fn running(&self) -> usize {
        self.shared.running()
    }

    /// Broadcast tasks this worker runs now for TaskTrackers (its own instances' included).
    pub fn processor_trackers(&self) -> u32 {
        self.shared.processor_trackers.load(Ordering::Relaxed)
    }

    /// Log lines dropped because the log queue was full, over the worker's life.
    pub fn log_lines_dropped(&self) -> u64 {
        self.shared.log_stats.dropped.load(Ordering::Relaxed)
    }

    /// The latest health measurements (as the next heartbeat carries them).
    pub fn metrics(&self) -> SystemMetrics {
        self.shared.driven.lock().core.metrics().clone()
    }

    /// Stops the worker: refuses new instances, cancels the running ones (each reports FAILED
    /// "worker shut down"), ships the queued logs and reports, closes the server connection.
    /// Bounded: gives up waiting after a few seconds.
    pub async fn shutdown(mut self) {
        let Some(Tasks {
            mut session,
            heartbeat,
            timers,
            mut shipper,
            peers,
        }) = self.tasks.take()
        else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let stops = &self.stops;
        stops.background.cancel();
        shared.drive(Input::Shutdown);
        shared.tasks_root.cancel();
        let drained = async {
            loop {
                let done = shared.instance_done.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                if shared.running() == 0 {
                    break;
                }
                done.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!(
                running = shared.running(),
                "instances did not finish in time; their final reports are lost"
            );
        }
        stops.logs.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut shipper)
            .await
            .is_err()
        {
            shipper.abort();
        }
        stops.session.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut session)
            .await
            .is_err()
        {
            tracing::warn!("server connection did not close in time");
            session.abort();
        }
        heartbeat.abort();
        timers.abort();
        peers.abort();
        tracing::info!(address = %shared.address, "worker stopped");
    }
}

/// `d` in milliseconds, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Now, epoch milliseconds (0 before 1970, saturating).
pub(crate) fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
