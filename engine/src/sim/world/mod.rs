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
use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::server::core::recover::QueryAnswer;
use crate::server::core::workflow::Pending;
use crate::server::core::{AfterCreate, Awaited, Core, CoreConfig, Effect, Outgoing, Then};
use crate::server::runtime::metrics::Metrics;
use crate::server::{Commit, InstanceRecord, JobRecord, Repo};
use crate::time_expression::{EpochMs, TimeExpressionType};
use crate::worker::core as wcore;
use crate::worker::processor::ProcessResult;

use super::check::{Checker, Violation};

mod faults;
mod mapreduce;
mod net;
mod server;
mod workers;
mod workload;

/// The data directory on the simulated disk.
const DATA_DIR: &str = "/data";
/// Virtual time the simulation starts at (2026-01-01T00:00:00Z), ms.
const START_MS: EpochMs = 1_767_225_600_000;
/// How often the store writes and fdatasyncs what is queued, ms (a slow fsync: 20–200 ms).
const FSYNC_MS: i64 = 2;
/// The server's heartbeat interval, ms.
const HEARTBEAT_MS: u64 = 1000;
/// Finished runs kept per job (the server's default): older ones are deleted by retention.
const KEEP_FINISHED_RUNS: usize = 100;
/// Instances one retention round deletes at most (as the runtime's).
const PRUNE_DELETE: usize = 1000;

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
    /// Most server crashes to inject (`None`: no limit). Each restart loads the store's
    /// last hint and replays the log after it, so very long runs may bound them.
    pub max_server_crashes: Option<u64>,
    /// Servers: 1 simulates one server on its own store; more simulate a cluster sharing a
    /// simulated database (see `sim/cluster`), `workers` then being per app.
    pub servers: usize,
    /// In a cluster, the database refuses writes not made under the writer's current lease
    /// (on by default). Off only to show that the checker catches what the fence prevents.
    pub fencing: bool,
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
            servers: 1,
            fencing: true,
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
    /// Of them, deleted by retention once final (the newest runs of each job are kept).
    pub deleted: u64,
    /// Acknowledged API runs.
    pub runs_acknowledged: u64,
    /// Acknowledged workflow runs (each four job instances).
    pub workflow_runs_acknowledged: u64,
    /// MAP_REDUCE instances that succeeded, each with the right reduce.
    pub mapreduce_succeeded: u64,
    /// Faults injected, by kind.
    pub server_crashes: u64,
    /// Worker processes crashed (and restarted).
    pub worker_crashes: u64,
    /// Connections cut.
    pub connections_cut: u64,
    /// Of them, half-open for a while: the server noticed late.
    pub half_open: u64,
    /// Clock jumps of the server.
    pub clock_jumps: u64,
    /// Compaction rounds of the store.
    pub compactions: u64,
    /// Hints the store wrote before a crash or the end (checkpoints).
    pub checkpoints: u64,
    /// Servers simulated (0 or 1: one server).
    pub servers: usize,
    /// Cluster faults: server pauses longer than a lease.
    pub pauses: u64,
    /// Cluster faults: servers cut from the database for a while.
    pub db_cuts: u64,
    /// Leases granted to another server than the partition's previous owner.
    pub takeovers: u64,
    /// Writes the database refused by the fence.
    pub fenced_writes: u64,
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
    /// Closed on the worker's side only: the server still reads what was in flight and
    /// writes into it (lost) until it notices the close (a half-open connection).
    half_open: bool,
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
    /// The server notices that half-open connection `conn` is closed.
    ServerSeesCut(u64),
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
    /// The API client asks for a run of workflow `wf`.
    WorkflowRun(WorkflowId),
    /// A peer worker finished a task of map run `mr`.
    TaskDone {
        mr: u64,
        peer: usize,
        peer_life: u64,
        task: u64,
        dispatch: u32,
        root: bool,
        success: bool,
        result: String,
    },
    /// Map run `mr`'s periodic tick: peers' signs of life, the tracker's timeouts.
    MrTick(u64),
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
    /// The connection the server files for this worker (it differs from `conn` while a
    /// connection is half-open).
    server_conn: Option<u64>,
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
    /// Workflow runs submitted and not yet acknowledged.
    wf_runs: VecDeque<(Commit<()>, Box<Pending>, WorkflowInstanceId)>,
    /// Retention deletes submitted and not yet acknowledged.
    deletes: VecDeque<(Commit<()>, InstanceId)>,
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
    /// Boxed: the B-tree shifts its entries on every insert and removal, and an event
    /// carries a whole message.
    queue: BTreeMap<(EpochMs, u64), Box<Event>>,
    disk: SimBackend,
    server: Option<Server>,
    app: AppId,
    app_name: String,
    jobs: Vec<JobId>,
    workflows: Vec<WorkflowId>,
    /// MAP_REDUCE jobs.
    mr_jobs: Vec<JobId>,
    /// Map runs going on (their TaskTrackers), by key.
    mr_runs: BTreeMap<u64, mapreduce::MrRun>,
    next_mr: u64,
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

/// The store's settings: segments (and the garbage that warrants compaction, and the log
/// written between checkpoints) scale with the run, so that short runs compact, checkpoint and
/// crash mid-way through compacted and checkpointed data too.
fn store_options(instances: u64) -> LogOptions {
    let segment_bytes = instances.saturating_mul(256).clamp(64 << 10, 64 << 20);
    LogOptions {
        writer: WriterMode::Stepped,
        segment_bytes,
        compaction_min_garbage_bytes: segment_bytes / 2,
        checkpoint_min_bytes: segment_bytes,
        ..LogOptions::default()
    }
}

fn core_config() -> CoreConfig {
    CoreConfig {
        heartbeat_interval_ms: HEARTBEAT_MS,
        worker_receive_timeout_ms: 10_000,
        keep_finished_runs: KEEP_FINISHED_RUNS,
        keep_finished_workflow_runs: KEEP_FINISHED_RUNS,
        retention_ms: 0,
        misfire_threshold_ms: 5000,
        restart_grace_ms: 3000,
        min_period_ms: 1,
    }
}

pub(super) fn poll_now<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

/// A write the core awaited that [`resume_awaited`] resumed it with.
pub(super) enum Resumed {
    /// A creation came back: the instance it admitted, if any.
    Created(Option<InstanceId>),
    /// The final write of this instance was acknowledged.
    FinalAcknowledged(InstanceId),
}

/// Resumes `core` with the writes of `awaiting` that resolved, in submission order, stopping
/// at the first one still pending (as the runtime's driver does); `on` hears of each creation
/// and of each acknowledged final write, after the core took it. Shared by the single-server
/// world and the cluster.
pub(super) fn resume_awaited(
    core: &mut Core,
    awaiting: &mut VecDeque<Awaited>,
    now: EpochMs,
    mut on: impl FnMut(Resumed),
) {
    while let Some(front) = awaiting.front_mut() {
        let ready = match front {
            Awaited::Write(c, _) => poll_now(c).map(|r| r.map(drop)),
            Awaited::Created(c, _) => match poll_now(c) {
                Poll::Ready(r) => {
                    let Some(Awaited::Created(_, then)) = awaiting.pop_front() else {
                        break;
                    };
                    on(Resumed::Created(core.created(r, then, now)));
                    continue;
                }
                Poll::Pending => Poll::Pending,
            },
            Awaited::Detached(c) => poll_now(c).map(|r| r.map(drop)),
        };
        let Poll::Ready(r) = ready else { break };
        let ok = r.is_ok();
        if let Some(Awaited::Write(_, then)) = awaiting.pop_front() {
            let final_id = match &then {
                Then::Follow(crate::server::core::Follow::Final { id, .. }) => Some(*id),
                _ => None,
            };
            core.resume(then, ok, now);
            if let (true, Some(id)) = (ok, final_id) {
                on(Resumed::FinalAcknowledged(id));
            }
        }
    }
}

/// Runs one simulation: of one server, or of a cluster when `config.servers` is above 1.
pub fn run(config: SimConfig) -> SimReport {
    if config.servers > 1 {
        return super::cluster::run(config);
    }
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
            workflows: Vec::new(),
            mr_jobs: Vec::new(),
            mr_runs: BTreeMap::new(),
            next_mr: 1,
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
        self.queue.insert((t.max(self.now), self.seq), Box::new(e));
    }

    fn trace(&self, instance: Option<u64>, what: impl FnOnce() -> String) {
        if let Some(t) = self.config.trace {
            if instance.is_none_or(|i| i == t) {
                eprintln!("[{:>9}] {}", self.now - START_MS, what());
            }
        }
    }

    fn violation(&mut self, what: String) {
        self.report.violations.push(Violation::new(self.now, what));
    }

    fn server_now(&self) -> EpochMs {
        self.now + self.clock_offset
    }

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
        while let Some((&(t, _), _)) = self.queue.first_key_value() {
            if t > self.end_at {
                break;
            }
            let Some((_, e)) = self.queue.pop_first() else {
                break;
            };
            self.now = t;
            self.report.events += 1;
            self.handle(*e);
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
            Event::WorkflowRun(wf) => {
                self.api_runs_pending = self.api_runs_pending.saturating_sub(1);
                self.workflow_run(wf);
            }
            Event::TaskDone {
                mr,
                peer,
                peer_life,
                task,
                dispatch,
                root,
                success,
                result,
            } => self.mr_task_done(mr, peer, peer_life, task, dispatch, root, success, result),
            Event::MrTick(mr) => self.mr_tick(mr),
            Event::Fault => self.fault(),
            Event::ServerSeesCut(conn) => self.server_sees_cut(conn),
            Event::ServerRestart => {
                self.trace(None, || "server restarts".into());
                self.start_server();
                let at = self.server_now();
                self.checker.server_up(at);
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
            && s.core.wf_active.is_empty()
            && s.awaiting.is_empty()
            && s.runs.is_empty()
            && s.wf_runs.is_empty()
            && self.api_runs_pending == 0
            && self.now > self.faults_until + 2000
    }

    fn finish(mut self) -> SimReport {
        if let Some(s) = self.server.as_mut() {
            let _ = s.store.write_pending();
            let _ = s.store.sync_pending();
        }
        match self.server.as_ref() {
            Some(s) => {
                let server_now = self.now + self.clock_offset;
                let (total, finished) = self.checker.at_end(
                    &s.repo,
                    &s.core,
                    self.now,
                    server_now,
                    &mut self.report.violations,
                );
                self.report.instances = total;
                self.report.finished = finished;
                self.report.deleted = self.checker.deleted_count();
                self.report.mapreduce_succeeded = self.checker.mapreduce_succeeded;
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
        if self.servers > 1 {
            return write!(
                f,
                "seed {}: {} servers, {} events over {} s simulated; {} instances ({} API runs acknowledged, {} of them final); faults: {} pauses longer than a lease, {} cuts from the database, {} server crashes, {} connections cut; {} lease takeovers, {} writes fenced; {} violations",
                self.seed,
                self.servers,
                self.events,
                self.simulated_ms / 1000,
                self.instances,
                self.runs_acknowledged,
                self.finished,
                self.pauses,
                self.db_cuts,
                self.server_crashes,
                self.connections_cut,
                self.takeovers,
                self.fenced_writes,
                self.violations.len()
            );
        }
        write!(
            f,
            "seed {}: {} events over {} s simulated; {} instances ({} final, {} deleted by retention), {} runs and {} workflow runs acknowledged, {} MAP_REDUCE instances succeeded; faults: {} server crashes, {} worker crashes, {} connections cut ({} half-open), {} clock jumps; {} compactions, {} checkpoints; {} violations",
            self.seed,
            self.events,
            self.simulated_ms / 1000,
            self.instances,
            self.finished,
            self.deleted,
            self.runs_acknowledged,
            self.workflow_runs_acknowledged,
            self.mapreduce_succeeded,
            self.server_crashes,
            self.worker_crashes,
            self.connections_cut,
            self.half_open,
            self.clock_jumps,
            self.compactions,
            self.checkpoints,
            self.violations.len()
        )
    }
}
