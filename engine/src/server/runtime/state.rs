//! The server core's in-memory state: apps, jobs, the active instances, connections.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use ferrojob_transport::auth::{AppSecret, AppSecrets};
use ferrojob_transport::metrics::TransportMetrics;
use ferrojob_transport::net::ConnectionHandle;
use parking_lot::{Mutex, RwLock};

use crate::dispatch::{DispatchSpec, RegistryConfig, RoundRobinCursor, WorkerRegistry};
use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::schedule::{RunningCount, Schedule};
use crate::server::{AppRecord, InstanceRecord, JobRecord, Repo, RepoError};
use crate::time_expression::{EpochMs, TimeExpression, TimeExpressionType};
use crate::wheel::TimerWheel;

use super::metrics::Metrics;
use super::ServerConfig;

/// A job's definition as the scheduler uses it: the record, its parsed expression and its
/// dispatch settings. Immutable; replaced as a whole on update.
#[derive(Debug)]
pub(crate) struct JobDef {
    pub(crate) record: JobRecord,
    pub(crate) expr: TimeExpression,
    pub(crate) spec: DispatchSpec,
}

impl JobDef {
    pub(crate) fn new(record: JobRecord) -> Result<JobDef, RepoError> {
        let expr = record.time_expression()?;
        let spec = DispatchSpec {
            execute_type: record.execute_type,
            strategy: record.dispatch_strategy,
            designated: record.designated_workers.clone(),
            min_cpu_cores: record.min_cpu_cores,
            min_memory_gb: record.min_memory_gb,
            min_disk_gb: record.min_disk_gb,
            max_worker_count: record.max_worker_count,
        };
        Ok(JobDef { record, expr, spec })
    }

    /// The job's schedule: its expression, lifecycle window and misfire policy.
    pub(crate) fn schedule(&self) -> Schedule<'_> {
        Schedule {
            expression: &self.expr,
            lifecycle: &self.record.lifecycle,
            misfire: self.record.misfire,
        }
    }

    /// The job's first trigger when (re)scheduled at `now` (created, enabled, updated,
    /// FIXED_DELAY re-armed): `None` when disabled or never firing on its own.
    pub(crate) fn initial_next(&self, now: EpochMs) -> Option<EpochMs> {
        if !self.record.enabled {
            return None;
        }
        self.schedule().first_trigger(now, now)
    }

    pub(crate) fn is_fixed_delay(&self) -> bool {
        self.record.time_expression_type == TimeExpressionType::FixedDelay
    }
}

/// One job's scheduling state.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) id: JobId,
    pub(crate) app: Arc<str>,
    pub(crate) def: RwLock<Arc<JobDef>>,
    /// Bumped whenever the schedule changes: armed wheel events of older generations are
    /// ignored.
    pub(crate) gen: AtomicU64,
    /// Instances of the job in WAITING_WORKER_RECEIVE or RUNNING (max_instances).
    pub(crate) running: RunningCount,
    pub(crate) cursor: RoundRobinCursor,
    /// Final transitions since the last prune.
    pub(crate) finished_since_prune: AtomicU32,
    pub(crate) deleted: AtomicBool,
}

impl JobState {
    pub(crate) fn new(app: Arc<str>, def: JobDef) -> JobState {
        JobState {
            id: def.record.id,
            app,
            def: RwLock::new(Arc::new(def)),
            gen: AtomicU64::new(1),
            running: RunningCount::new(),
            cursor: RoundRobinCursor::new(),
            finished_since_prune: AtomicU32::new(0),
            deleted: AtomicBool::new(false),
        }
    }

    pub(crate) fn def(&self) -> Arc<JobDef> {
        Arc::clone(&self.def.read())
    }
}

/// One non-final instance, owned by the server core.
#[derive(Debug)]
pub(crate) struct InstState {
    pub(crate) rec: InstanceRecord,
    /// When it last became WAITING_DISPATCH (dispatch latency).
    pub(crate) ready: Instant,
    /// Dispatch attempts in a row that found no eligible worker.
    pub(crate) no_worker_attempts: u32,
    /// The worker its last attempt failed on (a retry prefers another one).
    pub(crate) avoid: Option<String>,
    /// The status last submitted to the store (`None`: unknown, write every index row).
    pub(crate) persisted: Option<InstanceStatus>,
    /// MAP / MAP_REDUCE task counts as last reported (memory only).
    pub(crate) tasks: Option<crate::api::TaskProgress>,
}

impl InstState {
    /// A record as it is stored now.
    pub(crate) fn new(rec: InstanceRecord) -> InstState {
        let status = rec.status;
        InstState {
            rec,
            ready: Instant::now(),
            no_worker_attempts: 0,
            avoid: None,
            persisted: Some(status),
            tasks: None,
        }
    }
}

/// A shared, individually locked instance.
pub(crate) type Slot = Arc<Mutex<InstState>>;

/// A worker's open connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnEntry {
    pub(crate) app: AppId,
    pub(crate) handle: ConnectionHandle,
    pub(crate) gen: u64,
}

/// Open worker connections by app and worker address. A worker names its own address, so
/// workers of different apps may name the same one: each app's connection is its own entry,
/// and a worker of one app can never replace, receive the work of, or report for another
/// app's worker.
#[derive(Debug, Default)]
pub(crate) struct Conns(DashMap<String, Vec<ConnEntry>>);

impl Conns {
    /// Files `entry` under its app and `addr`; returns the connection it replaced (the same
    /// worker reconnecting before its old connection was noticed closed).
    pub(crate) fn insert(&self, addr: &str, entry: ConnEntry) -> Option<ConnEntry> {
        let mut list = self.0.entry(addr.to_owned()).or_default();
        match list.iter_mut().find(|e| e.app == entry.app) {
            Some(slot) => Some(std::mem::replace(slot, entry)),
            None => {
                list.push(entry);
                None
            }
        }
    }

    /// The connection of `app`'s worker `addr`.
    pub(crate) fn get(&self, app: AppId, addr: &str) -> Option<ConnectionHandle> {
        let list = self.0.get(addr)?;
        list.iter().find(|e| e.app == app).map(|e| e.handle.clone())
    }

    pub(crate) fn contains(&self, app: AppId, addr: &str) -> bool {
        self.0
            .get(addr)
            .is_some_and(|l| l.iter().any(|e| e.app == app))
    }

    /// Removes `app`'s connection to `addr` if it is still generation `gen`.
    pub(crate) fn remove_if_current(&self, app: AppId, addr: &str, gen: u64) -> bool {
        let mut removed = false;
        self.0.remove_if_mut(addr, |_, list| {
            let before = list.len();
            list.retain(|e| !(e.app == app && e.gen == gen));
            removed = list.len() < before;
            list.is_empty()
        });
        removed
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(|e| e.value().len()).sum()
    }

    /// Forgets every connection and returns their handles.
    pub(crate) fn take_all(&self) -> Vec<ConnectionHandle> {
        let handles = self
            .0
            .iter()
            .flat_map(|e| {
                e.value()
                    .iter()
                    .map(|c| c.handle.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        self.0.clear();
        handles
    }
}

/// A worker as the server knows it: its app and the address it announced.
pub(crate) type WorkerKey = (AppId, String);

/// What the timer wheel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEv {
    /// A job's trigger `due` (ignored unless `gen` is still the job's generation).
    Job { job: JobId, gen: u64, due: EpochMs },
    /// Try to dispatch a WAITING_DISPATCH instance (delayed run due, backoff over, retry).
    Dispatch(InstanceId),
    /// Requeue the instance if it is still WAITING_WORKER_RECEIVE since `since`.
    ReceiveCheck { id: InstanceId, since: EpochMs },
    /// Fail/retry the instance if it is still on the attempt dispatched at `since`.
    RunCheck { id: InstanceId, since: EpochMs },
    /// Worker liveness check (every heartbeat interval).
    Tick,
    /// The restart grace period is over: unreconciled instances go to the retry policy.
    GraceEnd,
    /// A round of the retention sweep (instances finished longer ago than `retention_ms`).
    Retention,
    /// A workflow's trigger `due` (ignored unless `gen` is still the workflow's generation).
    Workflow {
        wf: WorkflowId,
        gen: u64,
        due: EpochMs,
    },
    /// Start a delayed workflow instance.
    WfStart(WorkflowInstanceId),
}

/// The armed timer events and what the timer task is sleeping for.
#[derive(Debug)]
pub(crate) struct Timers {
    pub(crate) wheel: TimerWheel<TimerEv>,
    /// The tick the timer task sleeps until (`u64::MAX`: nothing armed); arming an earlier
    /// event wakes it.
    pub(crate) sleeping_until: u64,
}

/// Everything the core's tasks share.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) config: ServerConfig,
    pub(crate) repo: Repo,
    pub(crate) registry: WorkerRegistry,
    pub(crate) apps: DashMap<String, AppRecord>,
    pub(crate) app_names: DashMap<AppId, String>,
    pub(crate) jobs: DashMap<JobId, Arc<JobState>>,
    pub(crate) active: DashMap<InstanceId, Slot>,
    /// Workflows by id.
    pub(crate) workflows: DashMap<WorkflowId, Arc<super::workflow::WfState>>,
    /// Workflow instances owned by the core (unfinished ones, and ones an API call changes).
    pub(crate) wf_active: DashMap<WorkflowInstanceId, super::workflow::WfSlot>,
    /// Non-final job instances that run a workflow node.
    pub(crate) node_runs: DashMap<InstanceId, Arc<super::workflow::NodeRun>>,
    /// Open worker connections by worker address.
    pub(crate) conns: Conns,
    pub(crate) conn_gen: AtomicU64,
    /// Workers whose connection closed: (app, since) — dead if not back within the window.
    pub(crate) lost: DashMap<WorkerKey, (Arc<str>, EpochMs)>,
    /// After a restart: instances believed dispatched to each worker, to reconcile.
    pub(crate) reconcile: DashMap<WorkerKey, Vec<InstanceId>>,
    /// Per instance: (lines stored, lines dropped) since this server started.
    pub(crate) log_counts: DashMap<InstanceId, (u64, u64)>,
    /// Armed timer events, in a wheel of millisecond ticks (bounded by the jobs, instances
    /// and workflow instances that arm them).
    pub(crate) timers: Mutex<Timers>,
    /// Wakes the timer task when an event is armed before the tick it sleeps until.
    pub(crate) timer_wake: tokio::sync::Notify,
    pub(crate) metrics: Metrics,
    /// Alarm evaluation and delivery (`alarm.rs`).
    pub(crate) alarms: super::alarm::Alarms,
    pub(crate) transport_metrics: OnceLock<Arc<TransportMetrics>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) store_failed: AtomicBool,
    pub(crate) started: Instant,
    pub(crate) started_ms: EpochMs,
    /// Whether this start found stored apps (a restart): dispatch then waits for workers to
    /// reconnect during the grace period.
    pub(crate) restarted: AtomicBool,
    /// A retention sweep round is running.
    pub(crate) sweeping: AtomicBool,
    /// The instance id the next retention sweep round starts from.
    pub(crate) sweep_from: AtomicU64,
}

impl Runtime {
    pub(crate) fn new(
        config: ServerConfig,
        repo: Repo,
    ) -> Result<Arc<Runtime>, super::ServerError> {
        let registry = WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            ..RegistryConfig::default()
        })?;
        let started_ms = config.clock.now_ms();
        let timers = Mutex::new(Timers {
            wheel: TimerWheel::new(u64::try_from(started_ms).unwrap_or(0)),
            sleeping_until: u64::MAX,
        });
        Ok(Arc::new(Runtime {
            config,
            repo,
            registry,
            apps: DashMap::new(),
            app_names: DashMap::new(),
            jobs: DashMap::new(),
            active: DashMap::new(),
            workflows: DashMap::new(),
            wf_active: DashMap::new(),
            node_runs: DashMap::new(),
            conns: Conns::default(),
            conn_gen: AtomicU64::new(1),
            lost: DashMap::new(),
            reconcile: DashMap::new(),
            log_counts: DashMap::new(),
            timers,
            timer_wake: tokio::sync::Notify::new(),
            metrics: Metrics::default(),
            alarms: super::alarm::Alarms::default(),
            transport_metrics: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            store_failed: AtomicBool::new(false),
            started: Instant::now(),
            started_ms,
            restarted: AtomicBool::new(false),
            sweeping: AtomicBool::new(false),
            sweep_from: AtomicU64::new(0),
        }))
    }

    pub(crate) fn now(&self) -> EpochMs {
        self.config.clock.now_ms()
    }

    pub(crate) fn set_transport_metrics(&self, m: Arc<TransportMetrics>) {
        let _ = self.transport_metrics.set(m);
    }

    /// Arms `ev` at clock ms `at` (a time already past fires at once).
    pub(crate) fn arm(&self, at: EpochMs, ev: TimerEv) {
        let tick = u64::try_from(at).unwrap_or(0);
        let wake = {
            let mut t = self.timers.lock();
            let tick = tick.max(t.wheel.now());
            t.wheel.insert(tick, ev);
            tick < t.sleeping_until
        };
        if wake {
            self.timer_wake.notify_one();
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub(crate) async fn close_connections(&self) {
        for h in self.conns.take_all() {
            h.shutdown().await;
        }
    }

    pub(crate) fn app_name(&self, id: AppId) -> Option<String> {
        self.app_names.get(&id).map(|n| n.clone())
    }

    /// Registers an app in memory (after its creation is durable, or at load).
    pub(crate) fn add_app(&self, app: AppRecord) {
        self.app_names.insert(app.id, app.name.clone());
        self.apps.insert(app.name.clone(), app);
    }

    pub(crate) fn job(&self, id: JobId) -> Option<Arc<JobState>> {
        self.jobs.get(&id).map(|j| Arc::clone(&j))
    }

    pub(crate) fn slot(&self, id: InstanceId) -> Option<Slot> {
        self.active.get(&id).map(|s| Arc::clone(&s))
    }

    /// Accounts for an instance of `job` moving from `old` (None: created) to `new`: status
    /// gauges and counters, and the job's running count (max_instances).
    pub(crate) fn note(
        &self,
        job: Option<&JobState>,
        old: Option<InstanceStatus>,
        new: InstanceStatus,
    ) {
        if old == Some(new) {
            return;
        }
        debug_assert!(
            !(old.is_some_and(|o| o.is_final()) && new.is_final()),
            "a final status changed: {old:?} -> {new:?}"
        );
        self.metrics.transition(old, new);
        let was = old.is_some_and(is_running);
        let is = is_running(new);
        if let Some(job) = job {
            if is && !was {
                // Not through a claim (restart recovery): counted, whatever the limit.
                let _ = job.running.try_reserve(0);
            } else if was && !is {
                job.running.release();
            }
        }
    }
}

/// WAITING_WORKER_RECEIVE or RUNNING: counts against max_instances.
pub(crate) fn is_running(s: InstanceStatus) -> bool {
    matches!(
        s,
        InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running
    )
}

/// The transport's view of the app table: secrets of apps created so far, at once.
#[derive(Debug)]
pub(crate) struct AppTable(pub(crate) Arc<Runtime>);

impl AppSecrets for AppTable {
    fn secret(&self, app_name: &str) -> Option<AppSecret> {
        match self.0.apps.get(app_name) {
            Some(app) => Some(AppSecret::new(app.secret.as_bytes().to_vec())),
            None => {
                let shown: String = app_name.chars().take(64).collect();
                tracing::warn!(app = %shown, "worker refused: unknown app");
                None
            }
        }
    }
}
