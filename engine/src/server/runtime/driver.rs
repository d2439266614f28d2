//! The driver of the [`Core`]: the runtime's shared state, one step at a time under the
//! core's mutex, and the effects each step leaves, carried out in order.
//!
//! A step locks the core, tells it the time, runs one input (a timer, a batch of a worker's
//! messages, an API command, an acknowledged write) and then, still under the lock, hands the
//! step's messages to their connections — so that a worker receives them in decision order (a
//! StopInstance before the next attempt's ScheduleJob) — and reads the wheel's next
//! expiration. The writes' acknowledgements are awaited outside the lock, in a task per step;
//! each comes back as a step of its own ([`Core::resume`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ferrojob_transport::auth::{AppSecret, AppSecrets};
use ferrojob_transport::error::RequestError;
use ferrojob_transport::message::{ErrorCode, Message, QueryInstanceStatus};
use ferrojob_transport::metrics::TransportMetrics;
use ferrojob_transport::net::ConnectionHandle;
use parking_lot::Mutex;

use crate::dispatch::{RegistryConfig, SelectState, WorkerRegistry};
use crate::ids::{AppId, InstanceId};
use crate::server::core::recover::QueryAnswer;
use crate::server::core::{Awaited, Core, CoreConfig, Effect, Outgoing, WorkerKey};
use crate::server::{Commit, InstanceRecord, Repo, RepoError};
use crate::time_expression::EpochMs;

use super::alarm::Alarms;
use super::link::{Delivery, WorkerLink};
use super::metrics::Metrics;
use super::retention::PruneQueue;
use super::ServerConfig;

/// How long a reconciliation query waits for the worker.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the runtime's tasks share: the core behind its mutex, and the I/O around it.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) config: ServerConfig,
    pub(crate) repo: Arc<Repo>,
    pub(crate) registry: Arc<WorkerRegistry>,
    pub(crate) core: Mutex<Core>,
    /// Open worker connections: generation and handle, by worker.
    pub(crate) conns: DashMap<WorkerKey, WorkerLink>,
    pub(crate) conn_gen: AtomicU64,
    /// Per instance: (lines stored, lines dropped) since this server started.
    pub(crate) log_counts: DashMap<InstanceId, (u64, u64)>,
    /// The wheel tick the timer task sleeps until (`u64::MAX`: nothing armed).
    pub(crate) sleeping_until: AtomicU64,
    /// Wakes the timer task when a step armed an event before the tick it sleeps until.
    pub(crate) timer_wake: tokio::sync::Notify,
    pub(crate) metrics: Arc<Metrics>,
    /// Alarm delivery (`alarm.rs`).
    pub(crate) alarms: Alarms,
    pub(crate) transport_metrics: OnceLock<Arc<TransportMetrics>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) started: Instant,
    /// A retention sweep round is running.
    pub(crate) sweeping: AtomicBool,
    /// The instance id the next retention sweep round starts from.
    pub(crate) sweep_from: AtomicU64,
    /// The workflow instance id the next retention sweep round starts from.
    pub(crate) wf_sweep_from: AtomicU64,
    /// Jobs waiting for a count prune (`retention.rs`).
    pub(crate) prunes: PruneQueue<crate::ids::JobId>,
    /// Workflows waiting for a count prune.
    pub(crate) wf_prunes: PruneQueue<crate::ids::WorkflowId>,
    /// Measures the dispatch latency of a ScheduleJob sent from a connection's backlog.
    sent_late: SentLate,
    /// A server of a cluster: what its membership knows, for `/metrics`.
    #[cfg(feature = "postgres")]
    pub(crate) member:
        OnceLock<tokio::sync::watch::Receiver<crate::server::pg::member::MemberStatus>>,
}

/// Observes a ScheduleJob's dispatch latency (from when it was ready to when its connection
/// took it).
#[derive(Debug, Clone)]
struct SentLate {
    metrics: Arc<Metrics>,
    clock: Arc<dyn crate::clock::Clock>,
}

impl super::link::OnSent for SentLate {
    fn sent(&self, ready_us: i64) {
        self.observe(ready_us);
    }
}

impl SentLate {
    fn observe(&self, ready_us: i64) {
        let us = self.clock.now_us().saturating_sub(ready_us);
        self.metrics
            .dispatch_latency
            .observe(Duration::from_micros(u64::try_from(us).unwrap_or(0)));
    }
}

/// The messages of one step, carried out under the core's lock, and its writes, awaited after.
#[derive(Debug, Default)]
struct Later {
    awaits: Vec<Awaited>,
    queries: Vec<(AppId, String, Vec<InstanceId>)>,
    prunes: Vec<crate::ids::JobId>,
    wf_prunes: Vec<crate::ids::WorkflowId>,
    sweeps: Vec<EpochMs>,
    wake_alarms: bool,
}

impl Runtime {
    pub(crate) fn new(
        config: ServerConfig,
        repo: Repo,
    ) -> Result<Arc<Runtime>, super::ServerError> {
        let registry = Arc::new(WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            ..RegistryConfig::default()
        })?);
        let alarms = Alarms::new(&config.alarm_tls, &config.alarm_allow)
            .map_err(|e| super::ServerError::Config(format!("alarm HTTPS client: {e}")))?;
        let started_ms = config.clock.now_ms();
        let repo = Arc::new(repo);
        let metrics = Arc::new(Metrics::default());
        let core = Core::new(
            CoreConfig::from(&config),
            Arc::clone(&repo),
            Arc::clone(&registry),
            Arc::clone(&metrics),
            SelectState::from_entropy(),
            started_ms,
        );
        let sent_late = SentLate {
            metrics: Arc::clone(&metrics),
            clock: Arc::clone(&config.clock),
        };
        Ok(Arc::new(Runtime {
            config,
            repo,
            registry,
            core: Mutex::new(core),
            conns: DashMap::new(),
            conn_gen: AtomicU64::new(1),
            log_counts: DashMap::new(),
            sleeping_until: AtomicU64::new(u64::MAX),
            timer_wake: tokio::sync::Notify::new(),
            metrics,
            alarms,
            transport_metrics: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
            sweeping: AtomicBool::new(false),
            sweep_from: AtomicU64::new(0),
            wf_sweep_from: AtomicU64::new(0),
            prunes: PruneQueue::default(),
            wf_prunes: PruneQueue::default(),
            sent_late,
            #[cfg(feature = "postgres")]
            member: OnceLock::new(),
        }))
    }

    pub(crate) fn now(&self) -> EpochMs {
        self.config.clock.now_ms()
    }

    /// One step of the core: `f` runs under its lock with the time, then the step's effects
    /// are carried out (messages under the lock, writes awaited in a task).
    pub(crate) fn step<R>(self: &Arc<Self>, f: impl FnOnce(&mut Core, EpochMs) -> R) -> R {
        let (r, later, next) = {
            let mut core = self.core.lock();
            let now_us = self.config.clock.now_us();
            core.begin(now_us, self.config.clock.monotonic_us());
            let now = now_us.div_euclid(1000);
            let r = f(&mut core, now);
            let mut later = Later::default();
            // Carrying out a message may feed the core again (a closed connection requeues):
            // until the step leaves nothing to do.
            while core.has_effects() {
                for e in core.take_effects() {
                    self.carry_out(&mut core, e, now, &mut later);
                }
            }
            // Compared under the lock that the timer task publishes its bound under.
            let wake = core
                .next_timer()
                .is_some_and(|n| n < self.sleeping_until.load(Ordering::Acquire));
            (r, later, wake)
        };
        if next {
            self.timer_wake.notify_one();
        }
        self.run_later(later);
        r
    }

    fn carry_out(&self, core: &mut Core, e: Effect, now: EpochMs, later: &mut Later) {
        match e {
            Effect::Await(a) => later.awaits.push(a),
            Effect::Send { app, worker, msg } => self.send(core, app, worker, msg, now),
            Effect::Query { app, worker, ids } => later.queries.push((app, worker, ids)),
            Effect::Prune(job) => later.prunes.push(job),
            Effect::PruneWorkflow(wf) => later.wf_prunes.push(wf),
            Effect::Sweep { cutoff } => later.sweeps.push(cutoff),
            Effect::WakeAlarms => later.wake_alarms = true,
        }
    }

    /// Hands a message to its worker's connection without waiting (see [`WorkerLink`]); a
    /// ScheduleJob that finds the connection closed (or gone) is requeued at once, one past
    /// the connection's backlog is left to its receive timeout.
    fn send(&self, core: &mut Core, app: AppId, worker: String, msg: Outgoing, now: EpochMs) {
        let link = self.conns.get(&(app, worker)).map(|e| e.value().clone());
        let (message, ready) = match msg {
            Outgoing::Schedule {
                msg,
                ready_us,
                since,
            } => (Message::ScheduleJob(*msg), Some((ready_us, since))),
            Outgoing::Stop(stop) => (Message::StopInstance(stop), None),
        };
        let instance = match &message {
            Message::ScheduleJob(m) => InstanceId(m.instance_id),
            _ => InstanceId(0),
        };
        let delivery = match &link {
            None => Delivery::Closed,
            Some(link) => link.deliver(message, ready.map(|r| r.0), &self.sent_late),
        };
        match (delivery, ready) {
            (Delivery::Sent, Some((ready_us, _))) => self.observe_dispatch(ready_us),
            (Delivery::Sent, None) => {}
            (Delivery::Backlogged, _) => {
                self.metrics
                    .worker_send_waits
                    .fetch_add(1, Ordering::Relaxed);
            }
            (Delivery::Dropped, _) => {
                self.metrics
                    .worker_sends_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    instance = instance.0,
                    "worker's send backlog is full; the dispatch waits for its receive timeout"
                );
            }
            (Delivery::Closed, Some((_, since))) => core.on_send_closed(instance, since, now),
            (Delivery::Closed, None) => {}
        }
    }

    fn observe_dispatch(&self, ready_us: i64) {
        self.sent_late.observe(ready_us);
    }

    fn run_later(self: &Arc<Self>, later: Later) {
        let Later {
            awaits,
            queries,
            prunes,
            wf_prunes,
            sweeps,
            wake_alarms,
        } = later;
        if wake_alarms {
            self.wake_delivery();
        }
        for job in prunes {
            self.prune_in_background(job);
        }
        for wf in wf_prunes {
            self.prune_wf_in_background(wf);
        }
        for cutoff in sweeps {
            self.sweep_in_background(cutoff);
        }
        for (app, worker, ids) in queries {
            tokio::spawn(Arc::clone(self).reconcile_worker(app, worker, ids));
        }
        if !awaits.is_empty() {
            tokio::spawn(Arc::clone(self).await_all(awaits));
        }
    }

    /// Awaits a step's writes in order, then resumes the core with all of them in one step.
    async fn await_all(self: Arc<Self>, awaits: Vec<Awaited>) {
        enum Done {
            Write(crate::server::core::Then, bool),
            Created(
                Result<InstanceRecord, RepoError>,
                crate::server::core::AfterCreate,
            ),
        }
        let mut done = Vec::with_capacity(awaits.len());
        for a in awaits {
            match a {
                Awaited::Write(c, then) => {
                    let ok = self.await_commit(c).await.is_ok();
                    done.push(Done::Write(then, ok));
                }
                Awaited::Created(c, then) => {
                    let r = self.await_commit(c).await;
                    done.push(Done::Created(r, then));
                }
                Awaited::Detached(c) => {
                    let _ = self.await_commit(c).await;
                }
            }
        }
        if done.is_empty() {
            return;
        }
        self.step(|core, now| {
            for d in done {
                match d {
                    Done::Write(then, ok) => core.resume(then, ok, now),
                    Done::Created(r, then) => {
                        core.created(r, then, now);
                    }
                }
            }
        });
    }

    /// Awaits a write, measuring it; a failure is logged and counted.
    pub(crate) async fn await_commit<T: Unpin>(&self, c: Commit<T>) -> Result<T, RepoError> {
        let t = Instant::now();
        let r = c.await;
        self.metrics.store_commit.observe(t.elapsed());
        if let Err(e) = &r {
            self.metrics.store_write_failed(e);
        }
        r
    }

    /// Asks a reconnected worker about the instances it held, one at a time, feeding each
    /// answer to the core.
    async fn reconcile_worker(self: Arc<Self>, app: AppId, worker: String, ids: Vec<InstanceId>) {
        let handle = self
            .conns
            .get(&(app, worker.clone()))
            .map(|e| e.value().handle.clone());
        for id in ids {
            let answer = match &handle {
                None => QueryAnswer::Unanswered,
                Some(h) => {
                    match h
                        .request(QueryInstanceStatus { instance_id: id.0 }, QUERY_TIMEOUT)
                        .await
                    {
                        Ok(Message::InstanceStatusReply(rep)) => QueryAnswer::Status(
                            crate::server::core::report::from_wire(&rep.status),
                            rep.result,
                        ),
                        Err(RequestError::Remote {
                            code: ErrorCode::NotFound,
                            ..
                        }) => QueryAnswer::NotFound,
                        other => {
                            tracing::debug!(instance = id.0, answer = ?other, "reconciliation query unanswered");
                            QueryAnswer::Unanswered
                        }
                    }
                }
            };
            self.step(|core, now| core.on_query_answer(app, &worker, id, answer, now));
        }
    }

    pub(crate) fn set_transport_metrics(&self, m: Arc<TransportMetrics>) {
        let _ = self.transport_metrics.set(m);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.core.lock().shutting_down = true;
        self.timer_wake.notify_one();
    }

    pub(crate) async fn close_connections(&self) {
        let handles: Vec<ConnectionHandle> = self
            .conns
            .iter()
            .map(|e| e.value().handle.clone())
            .collect();
        self.conns.clear();
        for h in handles {
            h.shutdown().await;
        }
    }

    /// The app named `name`.
    /// The app named `name`. A server of a cluster that does not know the app (another
    /// server created it after this one loaded its partitions) reads it from the repository,
    /// so that its workers' secrets are checked and its commands refused as not served here
    /// (rather than as an unknown app), and learns it: known by name, acted for only while
    /// its partition is held.
    pub(crate) fn app_by_name(&self, name: &str) -> Option<crate::server::AppRecord> {
        {
            let core = self.core.lock();
            if let Some(app) = core.apps.get(name) {
                return Some(app.clone());
            }
            if !core.is_partitioned() {
                return None;
            }
        }
        let app = self.repo.get_app_by_name(name).ok()?;
        let mut core = self.core.lock();
        if !core.apps.contains_key(name) {
            tracing::info!(app = %app.name, "learned an app another server created");
            core.add_app(app.clone());
        }
        Some(app)
    }

    pub(crate) fn app_name(&self, id: AppId) -> Option<String> {
        self.core.lock().app_name(id)
    }
}

/// The timer task: it sleeps with `Clock::sleep_until` until the earliest armed event of the
/// core's wheel (one tick per millisecond on the server's clock), or until a step wakes it for
/// an earlier one, and runs the due events as one step. With a `VirtualClock` nothing fires
/// until the test advances the clock.
pub(crate) async fn timer_task(rt: Arc<Runtime>) {
    loop {
        if rt.is_shutting_down() {
            return;
        }
        let sleeping = &rt.sleeping_until;
        let (next, again) = rt.step(|core, now| {
            core.on_timers(now);
            let next = core.next_timer();
            // Published under the core's lock: a step that arms an earlier event afterwards
            // sees this bound and wakes the task (the wake-up is kept until the task waits).
            sleeping.store(next.unwrap_or(u64::MAX), Ordering::Release);
            (
                next,
                next.is_some_and(|n| n <= u64::try_from(now).unwrap_or(0)),
            )
        });
        if again {
            continue;
        }
        let sleep = next.map(|t| {
            let us = i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1000);
            rt.config.clock.sleep_until(us)
        });
        tokio::select! {
            () = rt.timer_wake.notified() => {}
            () = async {
                match sleep {
                    Some(s) => s.await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// The transport's view of the app table: secrets of apps created so far, at once.
#[derive(Debug)]
pub(crate) struct AppTable(pub(crate) Arc<Runtime>);

impl AppSecrets for AppTable {
    fn secret(&self, app_name: &str) -> Option<AppSecret> {
        match self.0.app_by_name(app_name) {
            Some(app) => Some(AppSecret::new(app.secret.as_bytes().to_vec())),
            None => {
                let shown: String = app_name.chars().take(64).collect();
                tracing::warn!(app = %shown, "worker refused: unknown app");
                None
            }
        }
    }

    fn serves(&self, app_name: &str) -> Result<(), ferrojob_transport::NotServed> {
        self.0.core.lock().serves(app_name)
    }

    fn previous_secret(&self, app_name: &str) -> Option<AppSecret> {
        let app = self.0.app_by_name(app_name)?;
        let now = self.0.now();
        match self.0.repo.previous_secret(app.id) {
            Ok(Some(p)) if now < p.until => Some(AppSecret::new(p.secret.into_bytes())),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(app = %app.name, error = %e, "cannot read an app's previous secret");
                None
            }
        }
    }
}
