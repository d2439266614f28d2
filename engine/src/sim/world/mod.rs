//! The simulated world: the event queue, the server (core, repository, stepped log store on a
//! simulated disk), the workers (worker cores and their processor runs), the network between
//! them, the API client, and the fault schedule.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ferrojob_store::backend::{SimBackend, Tear};
use ferrojob_store::{LogOptions, LogStore, Store, WriterMode};
use ferrojob_transport::backoff::BackoffConfig;
use ferrojob_transport::message::{ErrorCode, Message, QueryInstanceStatus, SystemMetrics};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dispatch::{
    RegistryConfig, SelectState, TrackerCounts, WorkerMetrics, WorkerRegistry, WorkerStatus,
};
use crate::ids::{AppId, InstanceId, JobId};
use crate::server::core::recover::QueryAnswer;
use crate::server::core::{AfterCreate, Awaited, Core, CoreConfig, Effect, Outgoing, Then};
use crate::server::runtime::metrics::Metrics;
use crate::server::{Commit, InstanceRecord, JobRecord, Repo};
use crate::time_expression::{EpochMs, TimeExpressionType};
use crate::worker::core as wcore;
use crate::worker::processor::ProcessResult;

use super::check::{Checker, Violation};

/// The data directory on the simulated disk.
const DATA_DIR: &str = "/data";
/// Virtual time the simulation starts at (2026-01-01T00:00:00Z), ms.
const START_MS: EpochMs = 1_767_225_600_000;
/// How often the store writes and fdatasyncs what is queued, ms (a slow fsync: 20–200 ms).
const FSYNC_MS: i64 = 2;
/// The server's heartbeat interval, ms.
const HEARTBEAT_MS: u64 = 1000;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Decides everything.
    pub seed: u64,
    /// Job instances to create (scheduled fires and API runs, about 9 to 1).
    pub instances: u64,
    /// Workers of the one app.
    pub workers: usize,
    /// Inject faults (on by default).
    pub faults: bool,
    /// Print the events of this instance, and every fault, to stderr.
    pub trace: Option<u64>,
    /// Most server crashes to inject (`None`: no limit). Each restart reads the whole log
    /// back, so very long runs bound them.
    pub max_server_crashes: Option<u64>,
}

impl SimConfig {
    /// `instances` over `workers` with faults, seeded by `seed`.
    pub fn new(seed: u64, instances: u64, workers: usize) -> SimConfig {
        SimConfig {
            seed,
            instances,
            workers,
            faults: true,
            trace: None,
            max_server_crashes: None,
        }
    }
}

/// What a simulation did and found.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, ms.
    pub simulated_ms: i64,
    /// Job instances the store holds at the end.
    pub instances: u64,
    /// Of them, final.
    pub finished: u64,
    /// Acknowledged API runs.
    pub runs_acknowledged: u64,
    /// Faults injected, by kind.
    pub server_crashes: u64,
    /// Worker processes crashed (and restarted).
    pub worker_crashes: u64,
    /// Connections cut.
    pub connections_cut: u64,
    /// Clock jumps of the server.
    pub clock_jumps: u64,
    /// Every invariant violation found (empty: the run passed).
    pub violations: Vec<Violation>,
}

/// A connection between a worker and the server.
#[derive(Debug)]
struct Conn {
    worker: usize,
    /// The server's generation for it.
    gen: u64,
    open: bool,
    /// Delivery times are kept increasing per direction (TCP keeps order).
    last_to_server: i64,
    last_to_worker: i64,
}

#[derive(Debug)]
enum Event {
    /// The server's wheel is due.
    ServerTimer,
    /// The store writes and syncs what is queued, then acknowledged writes resume the core.
    StoreStep,
    /// A message reaches the server on connection `conn`.
    ToServer {
        conn: u64,
        msg: Message,
        correlation: Option<u64>,
    },
    /// A message reaches a worker on connection `conn`.
    ToWorker {
        conn: u64,
        msg: Message,
        correlation: Option<u64>,
    },
    /// A worker's timer.
    WorkerTimer(usize),
    /// A worker tries to connect.
    WorkerConnect(usize),
    /// A processor run of a worker returns.
    RunDone {
        worker: usize,
        life: u64,
        run: wcore::RunId,
        success: bool,
    },
    /// The API client asks for a run of `job`.
    ApiRun(JobId),
    /// A fault.
    Fault,
    /// The server comes back after a crash.
    ServerRestart,
    /// A crashed worker process comes back.
    WorkerRestart(usize),
}

struct Worker {
    address: String,
    core: wcore::WorkerCore,
    /// Bumped when the process crashes: its runs' completions are void.
    life: u64,
    alive: bool,
    conn: Option<u64>,
    /// Armed timer (to avoid queueing one per step).
    timer_at: Option<EpochMs>,
    connect_at: Option<EpochMs>,
}

/// The server process.
struct Server {
    core: Core,
    repo: Arc<Repo>,
    store: Arc<LogStore>,
    /// Writes submitted and not yet acknowledged, in submission order.
    awaiting: VecDeque<Awaited>,
    /// Run requests submitted and not yet acknowledged.
    runs: VecDeque<(Commit<InstanceRecord>, AfterCreate)>,
    /// Reconciliation queries in flight: correlation → (worker address, instance).
    queries: HashMap<u64, (u64, String, InstanceId)>,
    timer_at: Option<EpochMs>,
}

/// The whole world.
struct World {
    config: SimConfig,
    rng: StdRng,
    now: EpochMs,
    /// Added to the server's clock (clock jumps).
    clock_offset: i64,
    seq: u64,
    queue: BTreeMap<(EpochMs, u64), Event>,
    disk: SimBackend,
    server: Option<Server>,
    app: AppId,
    app_name: String,
    jobs: Vec<JobId>,
    workers: Vec<Worker>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_correlation: u64,
    faults_until: EpochMs,
    end_at: EpochMs,
    checker: Checker,
    report: SimReport,
    store_step_armed: bool,
    /// API runs still to come.
    api_runs_pending: u64,
}

fn store_options() -> LogOptions {
    LogOptions {
        writer: WriterMode::Stepped,
        ..LogOptions::default()
    }
}

fn core_config() -> CoreConfig {
    CoreConfig {
        heartbeat_interval_ms: HEARTBEAT_MS,
        worker_receive_timeout_ms: 10_000,
        keep_finished_runs: usize::MAX / 8,
        retention_ms: 0,
        misfire_threshold_ms: 5000,
        restart_grace_ms: 3000,
        min_period_ms: 1,
    }
}

fn poll_now<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

/// Runs one simulation.
pub fn run(config: SimConfig) -> SimReport {
    let mut w = World::new(config);
    w.run();
    w.finish()
}

impl World {
    fn new(config: SimConfig) -> World {
        let rng = StdRng::seed_from_u64(config.seed);
        let report = SimReport {
            seed: config.seed,
            ..SimReport::default()
        };
        World {
            rng,
            now: START_MS,
            clock_offset: 0,
            seq: 0,
            queue: BTreeMap::new(),
            disk: SimBackend::new(),
            server: None,
            app: AppId(0),
            app_name: "sim".into(),
            jobs: Vec::new(),
            workers: Vec::new(),
            conns: HashMap::new(),
            next_conn: 1,
            next_correlation: 1,
            faults_until: START_MS,
            end_at: START_MS,
            checker: Checker::default(),
            report,
            store_step_armed: false,
            api_runs_pending: 0,
            config,
        }
    }

    fn at(&mut self, t: EpochMs, e: Event) {
        self.seq += 1;
        self.queue.insert((t.max(self.now), self.seq), e);
    }

    fn trace(&self, instance: Option<u64>, what: impl FnOnce() -> String) {
        if let Some(t) = self.config.trace {
            if instance.is_none_or(|i| i == t) {
                eprintln!("[{:>9}] {}", self.now - START_MS, what());
            }
        }
    }

    fn server_now(&self) -> EpochMs {
        self.now + self.clock_offset
    }

    // ----- setup -----

    fn run(&mut self) {
        self.start_server();
        self.setup_workload();
        for i in 0..self.config.workers {
            self.spawn_worker(i);
        }
        // Fires at 1 per job per second: the jobs and the duration give the instance count.
        let seconds = self.duration_s();
        self.faults_until = START_MS + seconds * 1000;
        self.end_at = self.faults_until + 120_000;
        if self.config.faults {
            let t = self.now + self.rng.gen_range(200..2000);
            self.at(t, Event::Fault);
        }
        while let Some((&(t, s), _)) = self.queue.iter().next() {
            if t > self.end_at {
                break;
            }
            let Some(e) = self.queue.remove(&(t, s)) else {
                break;
            };
            self.now = t;
            self.report.events += 1;
            self.handle(e);
            if self.report.violations.len() >= 16 {
                break;
            }
            if self.now >= self.faults_until && self.quiet() {
                break;
            }
        }
        self.report.simulated_ms = self.now - START_MS;
    }

    /// Seconds of scheduled firing.
    fn duration_s(&self) -> i64 {
        let jobs = self.jobs.len().max(1) as i64;
        let per_job = i64::try_from(self.config.instances).unwrap_or(i64::MAX) / jobs;
        (per_job * 10 / 9).clamp(5, 3600)
    }

    fn setup_workload(&mut self) {
        // Jobs first known: about one per 600 instances, each firing every second.
        let jobs = (self.config.instances / 600).clamp(1, 20_000);
        let per_job = i64::try_from(self.config.instances / jobs).unwrap_or(i64::MAX);
        let end = START_MS + (per_job * 10 / 9).clamp(5, 3600) * 1000;
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let now = self.now + self.clock_offset;
        let app = match s
            .repo
            .create_app(&self.app_name, "sim-secret-sim-secret", now)
        {
            Ok(c) => c,
            Err(e) => {
                self.report
                    .violations
                    .push(Violation::new(self.now, format!("create app: {e}")));
                return;
            }
        };
        let _ = s.store.write_pending();
        let _ = s.store.sync_pending();
        let app = match app.wait() {
            Ok(a) => a,
            Err(e) => {
                self.report
                    .violations
                    .push(Violation::new(self.now, format!("create app: {e}")));
                return;
            }
        };
        self.app = app.id;
        s.core.add_app(app);
        for i in 0..jobs {
            let mut rec = JobRecord::new(
                self.app,
                format!("job-{i}"),
                TimeExpressionType::FixedRate,
                "1000",
                "noop",
            );
            rec.instance_retries = 2;
            rec.timeout_ms = 60_000;
            // Firing stops with the faults: then every instance must finish.
            rec.lifecycle.end = Some(end);
            let first = now + 1000 + i64::try_from(i % 1000).unwrap_or(0);
            let c = match s.repo.create_job(rec, Some(first), now) {
                Ok(c) => c,
                Err(e) => {
                    self.report
                        .violations
                        .push(Violation::new(self.now, format!("create job: {e}")));
                    return;
                }
            };
            let _ = s.store.write_pending();
            let _ = s.store.sync_pending();
            match c.wait() {
                Ok(saved) => {
                    let id = saved.id;
                    if let Err(e) = s.core.job_created(saved, &self.app_name, Some(first)) {
                        self.report
                            .violations
                            .push(Violation::new(self.now, format!("job: {e}")));
                    }
                    self.jobs.push(id);
                    self.checker.job_created(id);
                }
                Err(e) => {
                    self.report
                        .violations
                        .push(Violation::new(self.now, format!("create job: {e}")));
                    return;
                }
            }
        }
        self.server_timer();
        // API runs: about one per nine fires, spread over the firing period.
        let runs = self.config.instances / 10;
        let span = self.duration_s() * 1000;
        for _ in 0..runs {
            let t = START_MS + self.rng.gen_range(0..span.max(1));
            let job = self.jobs[self.rng.gen_range(0..self.jobs.len())];
            self.at(t, Event::ApiRun(job));
            self.api_runs_pending += 1;
        }
    }

    fn start_server(&mut self) {
        let store =
            match LogStore::open_with(Arc::new(self.disk.clone()), DATA_DIR, store_options()) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    self.report.violations.push(Violation::new(
                        self.now,
                        format!("the store does not open after a crash: {e}"),
                    ));
                    return;
                }
            };
        let dyn_store: Arc<dyn Store> = store.clone();
        let opened = Repo::open(dyn_store).and_then(|r| {
            let loaded = r.load()?;
            let wf = r.load_workflows()?;
            Ok((r, loaded, wf))
        });
        let (repo, loaded, (workflows, wf_active)) = match opened {
            Ok(x) => x,
            Err(e) => {
                self.report.violations.push(Violation::new(
                    self.now,
                    format!("the stored state does not load after a crash: {e}"),
                ));
                return;
            }
        };
        self.checker
            .after_restart(&repo, &loaded, self.now, &mut self.report.violations);
        let repo = Arc::new(repo);
        let registry = match WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: HEARTBEAT_MS,
            ..RegistryConfig::default()
        }) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                self.report
                    .violations
                    .push(Violation::new(self.now, format!("registry: {e}")));
                return;
            }
        };
        let now = self.server_now();
        let mut core = Core::new(
            core_config(),
            Arc::clone(&repo),
            registry,
            Arc::new(Metrics::default()),
            SelectState::seeded(self.rng.gen()),
            now,
        );
        let mono = self.now;
        core.begin(now * 1000, mono * 1000);
        let wf = core.recover_workflows(&loaded, workflows, wf_active, now);
        core.recover(loaded, now);
        core.resume_workflows(wf, now);
        if let Some(app) = core.apps.values().next() {
            self.app = app.id;
        }
        self.server = Some(Server {
            core,
            repo,
            store,
            awaiting: VecDeque::new(),
            runs: VecDeque::new(),
            queries: HashMap::new(),
            timer_at: None,
        });
        self.drain_server();
    }

    fn spawn_worker(&mut self, i: usize) {
        let address = format!("w{i}:7000");
        let core = self.worker_core(&address);
        let w = Worker {
            address,
            core,
            life: 0,
            alive: true,
            conn: None,
            timer_at: None,
            connect_at: None,
        };
        if i < self.workers.len() {
            let life = self.workers[i].life + 1;
            self.workers[i] = w;
            self.workers[i].life = life;
        } else {
            self.workers.push(w);
        }
        let t = self.now + self.rng.gen_range(0..50);
        self.at(t, Event::WorkerConnect(i));
        self.workers[i].connect_at = Some(t);
    }

    fn worker_core(&mut self, address: &str) -> wcore::WorkerCore {
        let config = wcore::CoreConfig {
            address: address.to_owned(),
            app: self.app_name.clone(),
            tag: None,
            heartbeat_interval_ms: i64::try_from(HEARTBEAT_MS).unwrap_or(1000),
            keepalive_interval_ms: 10_000,
            server_lost_after: Duration::from_secs(3600),
            max_running_instances: 0,
            finished_cache: 10_000,
            default_instance_timeout_ms: 0,
            backoff: BackoffConfig::default(),
            seed: self.rng.gen(),
            metrics: SystemMetrics {
                cpu_cores: 4,
                cpu_load: 0.5,
                memory_used_bytes: 1 << 30,
                memory_max_bytes: 8 << 30,
                disk_used_bytes: 10 << 30,
                disk_total_bytes: 100 << 30,
                score: 0,
            },
        };
        wcore::WorkerCore::new(config, self.now)
    }

    // ----- the event loop -----

    fn handle(&mut self, e: Event) {
        match e {
            Event::ServerTimer => {
                if let Some(s) = self.server.as_mut() {
                    s.timer_at = None;
                }
                let now = self.server_now();
                self.server_step(|core| core.on_timers(now));
            }
            Event::StoreStep => {
                self.store_step_armed = false;
                self.store_step();
            }
            Event::ToServer {
                conn,
                msg,
                correlation,
            } => self.deliver_to_server(conn, msg, correlation),
            Event::ToWorker {
                conn,
                msg,
                correlation,
            } => self.deliver_to_worker(conn, msg, correlation),
            Event::WorkerTimer(i) => {
                if let Some(w) = self.workers.get_mut(i) {
                    if w.timer_at.is_some_and(|t| t <= self.now) {
                        w.timer_at = None;
                        let now = self.now;
                        // The load the next heartbeat carries follows the runs going on, so
                        // that HEALTH_FIRST spreads the work as it does on real hosts.
                        let mut metrics = w.core.metrics().clone();
                        metrics.cpu_load = w.core.running() as f64 / 4.0;
                        w.core.handle(
                            now,
                            wcore::Input::Metrics {
                                metrics,
                                processor_trackers: 0,
                            },
                        );
                        w.core.handle(now, wcore::Input::Timer);
                        self.drain_worker(i);
                    }
                }
            }
            Event::WorkerConnect(i) => self.worker_connect(i),
            Event::RunDone {
                worker,
                life,
                run,
                success,
            } => {
                let Some(w) = self.workers.get_mut(worker) else {
                    return;
                };
                if !w.alive || w.life != life {
                    return;
                }
                let result = if success {
                    ProcessResult::ok("ok")
                } else {
                    ProcessResult::fail("simulated failure")
                };
                w.core
                    .handle(self.now, wcore::Input::RunFinished { run, result });
                self.checker.run_ended(worker, run);
                self.drain_worker(worker);
            }
            Event::ApiRun(job) => {
                self.api_runs_pending = self.api_runs_pending.saturating_sub(1);
                self.api_run(job);
            }
            Event::Fault => self.fault(),
            Event::ServerRestart => {
                self.trace(None, || "server restarts".into());
                self.start_server();
                self.server_timer();
                self.arm_store_step();
            }
            Event::WorkerRestart(i) => self.spawn_worker(i),
        }
    }

    /// Nothing left to do: every instance final and nothing queued but periodic timers.
    fn quiet(&self) -> bool {
        let Some(s) = self.server.as_ref() else {
            return false;
        };
        s.core.active.is_empty()
            && s.awaiting.is_empty()
            && s.runs.is_empty()
            && self.api_runs_pending == 0
            && self.now > self.faults_until + 2000
    }

    // ----- the server -----

    fn server_step(&mut self, f: impl FnOnce(&mut Core)) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let now = self.now + self.clock_offset;
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        f(&mut s.core);
        self.drain_server();
    }

    /// Carries out the server's effects until none are left, then re-arms its timer.
    fn drain_server(&mut self) {
        loop {
            let Some(s) = self.server.as_mut() else {
                return;
            };
            if !s.core.has_effects() {
                break;
            }
            let effects = s.core.take_effects();
            for e in effects {
                self.server_effect(e);
            }
        }
        self.server_timer();
        self.arm_store_step();
    }

    fn server_effect(&mut self, e: Effect) {
        let now = self.server_now();
        match e {
            Effect::Await(a) => {
                if let Some(s) = self.server.as_mut() {
                    s.awaiting.push_back(a);
                }
            }
            Effect::Send { app, worker, msg } => {
                let conn = self.server_conn(app, &worker);
                match msg {
                    Outgoing::Schedule { msg, since, .. } => {
                        let id = InstanceId(msg.instance_id);
                        self.trace(Some(id.0), || {
                            format!(
                                "server: ScheduleJob to {worker} (attempt {}, conn {conn:?})",
                                msg.report_seq_base >> 32
                            )
                        });
                        match conn {
                            Some(c) => self.send_to_worker(c, Message::ScheduleJob(*msg), None),
                            None => {
                                if let Some(s) = self.server.as_mut() {
                                    s.core.on_send_closed(id, since, now);
                                }
                            }
                        }
                    }
                    Outgoing::Stop(stop) => {
                        self.trace(Some(stop.instance_id), || {
                            format!("server: StopInstance to {worker} (conn {conn:?})")
                        });
                        if let Some(c) = conn {
                            self.send_to_worker(c, Message::StopInstance(stop), None);
                        }
                    }
                }
            }
            Effect::Query {
                app: _,
                worker,
                ids,
            } => {
                let conn = self
                    .worker_index(&worker)
                    .and_then(|i| self.workers[i].conn);
                for id in ids {
                    match conn {
                        Some(c) => {
                            let corr = self.next_correlation;
                            self.next_correlation += 1;
                            if let Some(s) = self.server.as_mut() {
                                s.queries.insert(corr, (c, worker.clone(), id));
                            }
                            self.send_to_worker(
                                c,
                                Message::QueryInstanceStatus(QueryInstanceStatus {
                                    instance_id: id.0,
                                }),
                                Some(corr),
                            );
                        }
                        None => {
                            let app = self.app;
                            if let Some(s) = self.server.as_mut() {
                                s.core.on_query_answer(
                                    app,
                                    &worker,
                                    id,
                                    QueryAnswer::Unanswered,
                                    now,
                                );
                            }
                        }
                    }
                }
            }
            Effect::Prune(_) | Effect::Sweep { .. } | Effect::WakeAlarms => {}
        }
    }

    fn server_timer(&mut self) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let Some(next) = s.core.next_timer() else {
            return;
        };
        let next = i64::try_from(next).unwrap_or(i64::MAX) - self.clock_offset;
        if s.timer_at.is_some_and(|t| t <= next) {
            return;
        }
        s.timer_at = Some(next);
        self.at(next, Event::ServerTimer);
    }

    fn arm_store_step(&mut self) {
        if self.store_step_armed {
            return;
        }
        let Some(s) = self.server.as_ref() else {
            return;
        };
        if s.awaiting.is_empty() && s.runs.is_empty() && s.store.queued_batches() == 0 {
            return;
        }
        self.store_step_armed = true;
        let slow = self.config.faults && self.now < self.faults_until && self.rng.gen_ratio(1, 200);
        let delay = if slow {
            self.rng.gen_range(20..200)
        } else {
            FSYNC_MS
        };
        self.at(self.now + delay, Event::StoreStep);
    }

    /// The store writes and syncs what is queued; the acknowledged writes resume the core in
    /// submission order.
    fn store_step(&mut self) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        if let Err(e) = s.store.write_pending().and_then(|_| s.store.sync_pending()) {
            self.report
                .violations
                .push(Violation::new(self.now, format!("store step failed: {e}")));
            return;
        }
        let now = self.now + self.clock_offset;
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        // Writes resolve in submission order: stop at the first one still pending.
        while let Some(front) = s.awaiting.front_mut() {
            let ready = match front {
                Awaited::Write(c, _) => poll_now(c).map(|r| r.map(drop)),
                Awaited::Created(c, _) => match poll_now(c) {
                    Poll::Ready(r) => {
                        let Some(Awaited::Created(_, then)) = s.awaiting.pop_front() else {
                            break;
                        };
                        let id = s.core.created(r, then, now);
                        if let Some(id) = id {
                            self.checker.instance_admitted(id);
                        }
                        continue;
                    }
                    Poll::Pending => Poll::Pending,
                },
                Awaited::Detached(c) => poll_now(c).map(|r| r.map(drop)),
            };
            let Poll::Ready(r) = ready else { break };
            let ok = r.is_ok();
            match s.awaiting.pop_front() {
                Some(Awaited::Write(_, then)) => {
                    let final_id = match &then {
                        Then::Follow(crate::server::core::Follow::Final { id, .. }) => Some(*id),
                        _ => None,
                    };
                    s.core.resume(then, ok, now);
                    if let (true, Some(id)) = (ok, final_id) {
                        self.checker.final_acknowledged(
                            &s.repo,
                            id,
                            self.now,
                            &mut self.report.violations,
                        );
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        while let Some((c, _)) = s.runs.front_mut() {
            let Poll::Ready(r) = poll_now(c) else { break };
            let Some((_, then)) = s.runs.pop_front() else {
                break;
            };
            match r {
                Ok(rec) => {
                    let id = rec.id;
                    s.core.after_create(rec, then, now);
                    self.checker.run_acknowledged(id);
                    self.report.runs_acknowledged += 1;
                }
                Err(_) => s.core.create_failed(then),
            }
        }
        self.drain_server();
    }

    fn api_run(&mut self, job: JobId) {
        let app = self.app;
        let now = self.server_now();
        let Some(s) = self.server.as_mut() else {
            // The server is down: the client's request fails, nothing is acknowledged.
            return;
        };
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        match s.core.prepare_run(app, job, String::new(), 0, now) {
            Ok(pair) => s.runs.push_back(pair),
            Err(e) => {
                self.report
                    .violations
                    .push(Violation::new(self.now, format!("run refused: {e}")));
            }
        }
        self.drain_server();
    }

    fn server_conn(&self, app: AppId, worker: &str) -> Option<u64> {
        if app != self.app {
            return None;
        }
        let i = self.worker_index(worker)?;
        let c = self.workers[i].conn?;
        self.conns.get(&c).filter(|c| c.open).map(|_| c)
    }

    fn worker_index(&self, address: &str) -> Option<usize> {
        let n = address
            .strip_prefix('w')?
            .split(':')
            .next()?
            .parse::<usize>()
            .ok()?;
        (n < self.workers.len()).then_some(n)
    }

    fn latency(&mut self) -> i64 {
        if self.config.faults && self.now < self.faults_until && self.rng.gen_ratio(1, 50) {
            self.rng.gen_range(50..2000)
        } else {
            self.rng.gen_range(0..3)
        }
    }

    fn send_to_worker(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let t = (self.now + lat).max(c.last_to_worker);
        c.last_to_worker = t;
        self.at(
            t,
            Event::ToWorker {
                conn,
                msg,
                correlation,
            },
        );
    }

    fn send_to_server(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let t = (self.now + lat).max(c.last_to_server);
        c.last_to_server = t;
        self.at(
            t,
            Event::ToServer {
                conn,
                msg,
                correlation,
            },
        );
    }

    fn deliver_to_server(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open || self.server.is_none() {
            return;
        }
        let worker = c.worker;
        let address = self.workers[worker].address.clone();
        let app = self.app;
        let app_name: Arc<str> = Arc::from(self.app_name.as_str());
        let now = self.server_now();
        match msg {
            Message::WorkerHeartbeat(hb) => {
                let status = WorkerStatus {
                    address: address.clone(),
                    tags: Vec::new(),
                    version: hb.version.clone(),
                    overloaded: hb.overloaded,
                    trackers: TrackerCounts {
                        lightweight_task_trackers: hb.lightweight_task_trackers,
                        heavy_task_trackers: hb.heavy_task_trackers,
                        processor_trackers: hb.processor_trackers,
                    },
                };
                let metrics = WorkerMetrics::from(&hb.metrics);
                self.server_step(|core| core.on_heartbeat(&app_name, &status, metrics));
            }
            Message::ReportInstanceStatus(r) => {
                self.trace(Some(r.instance_id), || {
                    format!(
                        "server: report {:?} seq {:#x} from {address}",
                        r.status, r.report_seq
                    )
                });
                // Reorder and duplicate faults: a report delivered twice must change nothing
                // the second time.
                let dup = self.config.faults
                    && self.now < self.faults_until
                    && self.rng.gen_ratio(1, 100);
                self.server_step(|core| {
                    core.on_report(app, &address, &r, now);
                    if dup {
                        core.on_report(app, &address, &r, now);
                    }
                });
            }
            Message::InstanceStatusReply(rep) => {
                self.query_answered(
                    correlation,
                    QueryAnswer::Status(
                        crate::server::core::report::from_wire(&rep.status),
                        rep.result,
                    ),
                );
            }
            Message::ErrorReply(e) => {
                let answer = if e.code == ErrorCode::NotFound {
                    QueryAnswer::NotFound
                } else {
                    QueryAnswer::Unanswered
                };
                self.query_answered(correlation, answer);
            }
            _ => {}
        }
    }

    fn query_answered(&mut self, correlation: Option<u64>, answer: QueryAnswer) {
        let Some(corr) = correlation else { return };
        let app = self.app;
        let now = self.server_now();
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let Some((_, worker, id)) = s.queries.remove(&corr) else {
            return;
        };
        self.server_step(|core| core.on_query_answer(app, &worker, id, answer, now));
    }

    // ----- workers -----

    fn worker_connect(&mut self, i: usize) {
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if !w.alive || w.conn.is_some() || w.connect_at.is_none_or(|t| t > self.now) {
            return;
        }
        w.connect_at = None;
        if self.server.is_none() {
            w.core.handle(self.now, wcore::Input::ConnectFailed);
            self.drain_worker(i);
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let gen = id;
        self.conns.insert(
            id,
            Conn {
                worker: i,
                gen,
                open: true,
                last_to_server: self.now,
                last_to_worker: self.now,
            },
        );
        let address = self.workers[i].address.clone();
        self.trace(None, || format!("worker {i} connects (conn {id})"));
        self.workers[i].conn = Some(id);
        let app = self.app;
        // The server files the connection first (as the runtime does), then the worker
        // learns that it is up.
        let mut replaced = None;
        self.server_step(|core| replaced = core.worker_connected(app, &address, gen));
        let _ = replaced;
        let now = self.now;
        self.workers[i].core.handle(now, wcore::Input::Connected);
        self.drain_worker(i);
    }

    /// Carries out a worker's effects and transmits, and re-arms its timers.
    fn drain_worker(&mut self, i: usize) {
        loop {
            let Some(w) = self.workers.get_mut(i) else {
                return;
            };
            let Some(e) = w.core.poll_effect() else { break };
            match e {
                wcore::Effect::StartRun(run) => {
                    let life = w.life;
                    let instance = run.job.instance_id;
                    let long = self.rng.gen_ratio(1, 20);
                    let d = if long {
                        self.rng.gen_range(1000..20_000)
                    } else {
                        self.rng.gen_range(5..500)
                    };
                    let success = self.rng.gen_ratio(9, 10);
                    self.trace(Some(instance), || {
                        format!("worker {i}: run {} starts ({d} ms)", run.id.0)
                    });
                    let workers = &self.workers;
                    let connected =
                        |w: usize| workers.get(w).is_some_and(|w| w.alive && w.conn.is_some());
                    self.checker.run_started(
                        i,
                        run.id,
                        instance,
                        connected,
                        self.now,
                        &mut self.report.violations,
                    );
                    self.at(
                        self.now + d,
                        Event::RunDone {
                            worker: i,
                            life,
                            run: run.id,
                            success,
                        },
                    );
                }
                wcore::Effect::CancelInstance { instance_id } => {
                    self.checker.stop_received(i, instance_id);
                }
                wcore::Effect::InstanceDone { .. }
                | wcore::Effect::PeerTask { .. }
                | wcore::Effect::Log { .. } => {}
            }
        }
        let conn = self.workers[i].conn;
        loop {
            let Some(w) = self.workers.get_mut(i) else {
                return;
            };
            if conn.is_none() || !w.core.is_connected() {
                break;
            }
            let Some(t) = w.core.poll_transmit() else {
                break;
            };
            let Some(c) = conn else { break };
            match t {
                wcore::Transmit::Send(m) => self.send_to_server(c, m, None),
                wcore::Transmit::Reply {
                    correlation,
                    message,
                } => self.send_to_server(c, message, Some(correlation)),
            }
        }
        let w = &mut self.workers[i];
        if let Some(t) = w.core.poll_timeout() {
            if w.timer_at.is_none_or(|a| a > t) {
                w.timer_at = Some(t);
                self.at(t, Event::WorkerTimer(i));
            }
        }
        let w = &mut self.workers[i];
        if w.conn.is_none() {
            if let Some(t) = w.core.next_connect_at() {
                if w.connect_at.is_none_or(|a| a > t) {
                    w.connect_at = Some(t);
                    self.at(t, Event::WorkerConnect(i));
                }
            }
        }
    }

    fn deliver_to_worker(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let i = c.worker;
        let now = self.now;
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if !w.alive {
            return;
        }
        let input = match msg {
            Message::ScheduleJob(job) => wcore::Input::ScheduleJob {
                job: Box::new(job),
                processor: wcore::ProcessorKind::Basic,
            },
            Message::StopInstance(s) => wcore::Input::StopInstance {
                instance_id: s.instance_id,
            },
            Message::QueryInstanceStatus(q) => match correlation {
                Some(correlation) => wcore::Input::QueryInstanceStatus {
                    correlation,
                    instance_id: q.instance_id,
                },
                None => return,
            },
            _ => return,
        };
        match &input {
            wcore::Input::ScheduleJob { job, .. } => self.trace(Some(job.instance_id), || {
                format!("worker {i}: ScheduleJob arrives")
            }),
            wcore::Input::StopInstance { instance_id } => self.trace(Some(*instance_id), || {
                format!("worker {i}: StopInstance arrives")
            }),
            _ => {}
        }
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if let wcore::Input::StopInstance { instance_id } = &input {
            self.checker.stop_received(i, *instance_id);
        }
        w.core.handle(now, input);
        self.drain_worker(i);
    }

    /// Cuts connection `conn`: both ends learn it; what was in flight is lost.
    fn cut(&mut self, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let (i, gen) = (c.worker, c.gen);
        self.trace(None, || {
            format!("fault: connection {conn} of worker {i} cut")
        });
        self.report.connections_cut += 1;
        // In-flight queries of this connection are unanswered.
        let lost: Vec<(u64, String, InstanceId)> = match self.server.as_mut() {
            Some(s) => {
                let mut ks: Vec<u64> = s
                    .queries
                    .iter()
                    .filter(|(_, q)| q.0 == conn)
                    .map(|(k, _)| *k)
                    .collect();
                ks.sort_unstable();
                ks.into_iter()
                    .filter_map(|k| s.queries.remove(&k))
                    .collect()
            }
            None => Vec::new(),
        };
        let app = self.app;
        let app_name: Arc<str> = Arc::from(self.app_name.as_str());
        let address = self.workers[i].address.clone();
        let now = self.server_now();
        self.server_step(|core| {
            for (_, worker, id) in &lost {
                core.on_query_answer(app, worker, *id, QueryAnswer::Unanswered, now);
            }
            core.worker_disconnected(&app_name, app, &address, gen);
        });
        let w = &mut self.workers[i];
        if w.conn == Some(conn) {
            w.conn = None;
            if w.alive {
                let t = self.now;
                w.core.handle(t, wcore::Input::ConnectionLost);
                self.drain_worker(i);
            }
        }
    }

    // ----- faults -----

    fn fault(&mut self) {
        if self.now >= self.faults_until {
            return;
        }
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=39 => {
                // Cut a random open connection.
                let mut open: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.open)
                    .map(|(k, _)| *k)
                    .collect();
                open.sort_unstable();
                if !open.is_empty() {
                    let c = open[self.rng.gen_range(0..open.len())];
                    self.cut(c);
                }
            }
            40..=69 => {
                // A worker process crashes; it comes back later as a new process.
                let i = self.rng.gen_range(0..self.workers.len().max(1));
                if self.workers.get(i).is_some_and(|w| w.alive) {
                    self.report.worker_crashes += 1;
                    self.trace(None, || format!("fault: worker {i} crashes"));
                    if let Some(c) = self.workers[i].conn {
                        self.cut(c);
                    }
                    self.workers[i].alive = false;
                    self.checker.worker_crashed(i);
                    let back = self.now + self.rng.gen_range(500..8000);
                    self.at(back, Event::WorkerRestart(i));
                }
            }
            70..=84 => self.crash_server(),
            _ => {
                // The server's clock jumps forward.
                self.clock_offset += self.rng.gen_range(100..5000);
                self.trace(None, || {
                    format!("fault: server clock jumps to +{} ms", self.clock_offset)
                });
                self.report.clock_jumps += 1;
                self.server_timer();
            }
        }
        let next = self.now + self.rng.gen_range(500..5000);
        self.at(next, Event::Fault);
    }

    fn crash_server(&mut self) {
        if self
            .config
            .max_server_crashes
            .is_some_and(|m| self.report.server_crashes >= m)
        {
            return;
        }
        let Some(s) = self.server.take() else { return };
        self.report.server_crashes += 1;
        self.trace(None, || "fault: server crashes".into());
        // The disk as the crash leaves it: power loss (unsynced writes gone, or torn), or a
        // process crash (everything written stays).
        let image = match self.rng.gen_range(0..3) {
            0 => self.disk.crash(),
            1 => {
                let mut rng = StdRng::seed_from_u64(self.rng.gen());
                self.disk.crash_torn(|_p: &Path, unsynced| {
                    let n = if unsynced == 0 {
                        0
                    } else {
                        rng.gen_range(0..=unsynced)
                    };
                    if rng.gen_ratio(1, 2) {
                        Tear::Prefix(n)
                    } else {
                        Tear::ZeroFilled(n)
                    }
                })
            }
            _ => {
                let _ = s.store.write_pending();
                self.disk.process_crash()
            }
        };
        drop(s);
        self.disk = image;
        // Every connection ends with the process.
        let mut open: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(k, _)| *k)
            .collect();
        open.sort_unstable();
        for c in open {
            if let Some(conn) = self.conns.remove(&c) {
                let i = conn.worker;
                let w = &mut self.workers[i];
                if w.conn == Some(c) {
                    w.conn = None;
                    if w.alive {
                        let t = self.now;
                        w.core.handle(t, wcore::Input::ConnectionLost);
                        self.drain_worker(i);
                    }
                }
            }
        }
        self.store_step_armed = false;
        let back = self.now + self.rng.gen_range(100..3000);
        self.at(back, Event::ServerRestart);
    }

    fn finish(mut self) -> SimReport {
        if let Some(s) = self.server.as_mut() {
            let _ = s.store.write_pending();
            let _ = s.store.sync_pending();
        }
        match self.server.as_ref() {
            Some(s) => {
                let (total, finished) =
                    self.checker
                        .at_end(&s.repo, &s.core, self.now, &mut self.report.violations);
                self.report.instances = total;
                self.report.finished = finished;
            }
            None => self.report.violations.push(Violation::new(
                self.now,
                "the server is down at the end".into(),
            )),
        }
        self.report
    }
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} events over {} s simulated; {} instances ({} final), {} runs acknowledged; faults: {} server crashes, {} worker crashes, {} connections cut, {} clock jumps; {} violations",
            self.seed,
            self.events,
            self.simulated_ms / 1000,
            self.instances,
            self.finished,
            self.runs_acknowledged,
            self.server_crashes,
            self.worker_crashes,
            self.connections_cut,
            self.clock_jumps,
            self.violations.len()
        )
    }
}
