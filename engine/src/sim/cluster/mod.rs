//! The simulated cluster: several servers sharing one simulated database (`db.rs`), each with
//! its own real server core and real ownership machine ([`Ownership`]) on its own skewed
//! clock, the apps' workers (real worker cores) connected to whichever server holds their
//! app, and an API client that follows refusals to the owner. One seed decides everything.
//!
//! A server is wired as the runtime's cluster glue (`server::runtime::cluster`) wires it: a
//! grant is loaded a few milliseconds later (the repository then writes under the new
//! epoch, the shared store is read, and the core acts for the partition through
//! `on_partition_loaded`); a stop or a drain makes the repository refuse the partition's
//! writes, the core drop it (`on_partition_lost`) and its workers' connections close.
//!
//! Faults, while they last: a server paused for one to three leases (its clocks run on, what
//! reaches it waits, and when it resumes its core's due timers run before or after its
//! ownership machine notices the deadline passed, either order as a scheduler may pick), a
//! server cut from the database for a while (its lease commands, heartbeats and writes are
//! lost or fail), a server crashing and restarting with an empty memory, and connections
//! between workers and servers cut.
//!
//! Checked after every event: whenever a server's ownership machine may act for a
//! partition, the database shows that server as the unexpired owner at the same epoch, so
//! at most one server acts for a partition at any instant; a running server's core acts for
//! a partition only at the epoch its machine may act with. Checked at the database: no
//! write is taken from a server that does not hold its partition at the epoch it wrote
//! under (the fence refuses it; with fencing off, taking it is a violation), and no (job,
//! trigger time) is fired twice. At the end, once the faults stopped: every partition that
//! has apps is acted for by exactly one server, every job fired within the last seconds, and
//! every acknowledged API run is final or still pending at the server that acts for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ferrojob_store::backend::SimBackend;
use ferrojob_store::{LogOptions, LogStore, Store, WriterMode};
use ferrojob_transport::backoff::BackoffConfig;
use ferrojob_transport::message::{ErrorCode, Message, QueryInstanceStatus, SystemMetrics};
use ferrojob_transport::NotServed;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::ownership::{Command, Event as OwnEvent, Input};
use crate::cluster::{
    partition_of, Epoch, MonoUs, Ownership, OwnershipConfig, PartitionId, ServerId, PARTITION_COUNT,
};
use crate::dispatch::{
    RegistryConfig, SelectState, TrackerCounts, WorkerMetrics, WorkerRegistry, WorkerStatus,
};
use crate::ids::{AppId, InstanceId, JobId};
use crate::server::core::recover::QueryAnswer;
use crate::server::core::{AfterCreate, Awaited, Core, CoreConfig, Effect, Outgoing};
use crate::server::runtime::metrics::Metrics;
use crate::server::{Commit, InstanceRecord, JobRecord, LogRepo, Repo};
use crate::time_expression::{EpochMs, TimeExpressionType};
use crate::worker::core as wcore;
use crate::worker::processor::ProcessResult;

use super::check::Violation;
use super::world::poll_now;
use super::{SimConfig, SimReport};

mod db;
mod net;

use db::{Db, FencedRepo};

/// Virtual time the simulation starts at (2026-01-01T00:00:00Z), ms.
const START_MS: EpochMs = 1_767_225_600_000;
/// The lease, ms: short, so that a run sees many expiries and takeovers.
const LEASE_MS: i64 = 2_000;
/// How often a server heartbeats into `cluster_servers`, ms; a heartbeat lasts a lease.
const HEARTBEAT_EVERY_MS: i64 = 500;
/// The server's heartbeat interval towards its workers, ms.
const WORKER_HEARTBEAT_MS: u64 = 1000;
/// Apps, each with its own partition (most likely) and workers.
const APPS: usize = 6;
/// FIXED_RATE jobs of each app, firing every second.
const JOBS_PER_APP: usize = 2;
/// After the faults stop: time for every partition to settle and every run to finish, ms.
const CALM_MS: i64 = 30_000;
/// At the end, every job must have fired within this long, ms.
const LIVENESS_MS: i64 = 3_000;
/// How often the shared store writes and syncs what is queued, ms.
const FSYNC_MS: i64 = 2;
/// How often a failed partition load is tried again (the glue's `RELOAD_AFTER`), ms.
const RELOAD_AFTER_MS: i64 = 1_000;

fn ownership_config() -> OwnershipConfig {
    OwnershipConfig::with_lease(Duration::from_millis(LEASE_MS as u64))
}

fn core_config() -> CoreConfig {
    CoreConfig {
        heartbeat_interval_ms: WORKER_HEARTBEAT_MS,
        worker_receive_timeout_ms: 10_000,
        keep_finished_runs: 100,
        keep_finished_workflow_runs: 100,
        retention_ms: 0,
        misfire_threshold_ms: 5000,
        restart_grace_ms: 3000,
        min_period_ms: 1,
    }
}

#[derive(Debug)]
enum Ev {
    /// Server `s`'s core timers are due.
    ServerTimer(usize),
    /// Server `s`'s ownership machine is due.
    OwnTimer(usize),
    /// A lease command reaches the database.
    ToDb {
        s: usize,
        life: u64,
        cmd: Command,
    },
    /// The database's answer reaches server `s`.
    FromDb {
        s: usize,
        life: u64,
        input: Input,
    },
    /// Server `s`'s membership task heartbeats.
    Heartbeat {
        s: usize,
        life: u64,
    },
    /// The heartbeat reaches the database.
    HeartbeatAtDb {
        s: usize,
        life: u64,
    },
    /// The live servers, as the database listed them, reach server `s`.
    View {
        s: usize,
        life: u64,
        live: Vec<ServerId>,
    },
    /// Server `s`'s loading thread loads partition `p` granted at `epoch`.
    Load {
        s: usize,
        life: u64,
        p: PartitionId,
        epoch: Epoch,
    },
    /// The shared store writes and syncs; acknowledged writes resume the cores.
    StoreStep,
    ToServer {
        conn: u64,
        msg: Message,
        correlation: Option<u64>,
    },
    ToWorker {
        conn: u64,
        msg: Message,
        correlation: Option<u64>,
    },
    /// Server `s` learns that connection `conn` of worker `worker` closed.
    ServerSeesCut {
        s: usize,
        life: u64,
        conn: u64,
        worker: usize,
        gen: u64,
    },
    WorkerTimer(usize),
    WorkerConnect(usize),
    RunDone {
        worker: usize,
        life: u64,
        run: wcore::RunId,
        success: bool,
    },
    /// The API client asks for a run of `job` of app `app` (its `attempt`th try).
    ApiRun {
        job: JobId,
        app: usize,
        attempt: u32,
    },
    Fault,
    /// Paused server `s` runs again.
    Resume(usize),
    /// Server `s` reaches the database again.
    Heal(usize),
    /// Crashed server `s` starts again.
    Restart(usize),
}

/// A server process.
struct Srv {
    id: ServerId,
    /// Bumped at every crash: what was in flight to the old process is void.
    life: u64,
    /// `None` while the process is down.
    core: Option<Core>,
    own: Ownership,
    repo: Arc<Repo>,
    awaiting: VecDeque<Awaited>,
    /// API runs submitted: the commit, what follows, the job and app index.
    runs: VecDeque<(Commit<InstanceRecord>, AfterCreate, JobId, usize)>,
    /// Reconciliation queries in flight: correlation → (connection, worker, instance, app).
    queries: BTreeMap<u64, (u64, String, InstanceId, AppId)>,
    timer_at: Option<EpochMs>,
    own_timer_at: Option<EpochMs>,
    /// The glue's current grants.
    granted: [Option<Epoch>; PARTITION_COUNT as usize],
    /// Paused until then (no step runs, what reaches it waits).
    paused_until: EpochMs,
    /// Wall clock = world time + `skew_ms`.
    skew_ms: i64,
    /// Monotonic clock, µs = `mono_off_us` + world µs × (1 + `ppm`/10⁶).
    mono_off_us: i64,
    ppm: i64,
}

impl Srv {
    fn paused(&self, now: EpochMs) -> bool {
        now < self.paused_until
    }
}

struct Wk {
    app: usize,
    address: String,
    core: wcore::WorkerCore,
    life: u64,
    alive: bool,
    conn: Option<u64>,
    timer_at: Option<EpochMs>,
    connect_at: Option<EpochMs>,
    /// The server it tries next.
    hint: usize,
}

struct Conn {
    worker: usize,
    server: usize,
    gen: u64,
    last_to_server: i64,
    last_to_worker: i64,
}

struct App {
    id: AppId,
    name: Arc<str>,
    partition: PartitionId,
    jobs: Vec<JobId>,
    /// The server the API client asks next.
    hint: usize,
}

/// The cluster world.
pub(super) struct Cluster {
    config: SimConfig,
    rng: StdRng,
    now: EpochMs,
    seq: u64,
    queue: BTreeMap<(EpochMs, u64), Box<Ev>>,
    db: Arc<Mutex<Db>>,
    store: Arc<LogStore>,
    shared: Arc<LogRepo>,
    servers: Vec<Srv>,
    ids: Vec<ServerId>,
    apps: Vec<App>,
    workers: Vec<Wk>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_correlation: u64,
    store_step_armed: bool,
    faults_until: EpochMs,
    end_at: EpochMs,
    /// Acknowledged API runs and their app.
    acked: Vec<(InstanceId, usize)>,
    report: SimReport,
}

/// Runs one simulation of a cluster of `config.servers` servers.
pub(super) fn run(config: SimConfig) -> SimReport {
    let mut c = match Cluster::new(config.clone()) {
        Ok(c) => c,
        Err(e) => {
            return SimReport {
                seed: config.seed,
                servers: config.servers,
                violations: vec![Violation::new(START_MS, e)],
                ..SimReport::default()
            }
        }
    };
    c.run();
    c.finish()
}

impl Cluster {
    fn new(config: SimConfig) -> Result<Cluster, String> {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let disk = SimBackend::new();
        let options = LogOptions {
            writer: WriterMode::Stepped,
            ..LogOptions::default()
        };
        let store = Arc::new(
            LogStore::open_with(Arc::new(disk), "/db", options)
                .map_err(|e| format!("the database's store does not open: {e}"))?,
        );
        let dyn_store: Arc<dyn Store> = store.clone();
        let shared = Arc::new(LogRepo::open(dyn_store).map_err(|e| format!("repository: {e}"))?);
        let n = config.servers.max(1);
        let db = Arc::new(Mutex::new(Db::new(n, START_MS, config.fencing)));
        let ids: Vec<ServerId> = (0..n)
            .map(|i| ServerId::new(&format!("s{i}")).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut servers = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let own = Ownership::new(id.clone(), ownership_config()).map_err(|e| e.to_string())?;
            let repo = Arc::new(Repo::new(Arc::new(FencedRepo {
                inner: Arc::clone(&shared),
                server: i,
                db: Arc::clone(&db),
            })));
            servers.push(Srv {
                id: id.clone(),
                life: 0,
                core: None,
                own,
                repo,
                awaiting: VecDeque::new(),
                runs: VecDeque::new(),
                queries: BTreeMap::new(),
                timer_at: None,
                own_timer_at: None,
                granted: [None; PARTITION_COUNT as usize],
                paused_until: START_MS,
                skew_ms: rng.gen_range(-2000..=2000),
                mono_off_us: rng.gen_range(0..1i64 << 40),
                ppm: rng.gen_range(-2000..=2000),
            });
        }
        let report = SimReport {
            seed: config.seed,
            servers: n,
            ..SimReport::default()
        };
        Ok(Cluster {
            config,
            rng,
            now: START_MS,
            seq: 0,
            queue: BTreeMap::new(),
            db,
            store,
            shared,
            servers,
            ids,
            apps: Vec::new(),
            workers: Vec::new(),
            conns: HashMap::new(),
            next_conn: 1,
            next_correlation: 1,
            store_step_armed: false,
            faults_until: START_MS,
            end_at: START_MS,
            acked: Vec::new(),
            report,
        })
    }

    fn at(&mut self, t: EpochMs, e: Ev) {
        self.seq += 1;
        self.queue.insert((t.max(self.now), self.seq), Box::new(e));
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.config.trace.is_some() {
            eprintln!("[{:>9}] {}", self.now - START_MS, what());
        }
    }

    fn violation(&mut self, what: String) {
        self.report.violations.push(Violation::new(self.now, what));
    }

    /// Server `s`'s wall clock, ms.
    fn wall(&self, s: usize) -> EpochMs {
        self.now + self.servers.get(s).map_or(0, |v| v.skew_ms)
    }

    /// Server `s`'s monotonic clock.
    fn mono(&self, s: usize) -> MonoUs {
        let Some(v) = self.servers.get(s) else {
            return MonoUs(0);
        };
        let us = i128::from(self.now - START_MS) * 1000;
        let local = us * i128::from(1_000_000 + v.ppm) / 1_000_000;
        MonoUs(
            v.mono_off_us
                .saturating_add(i64::try_from(local).unwrap_or(i64::MAX)),
        )
    }

    /// The world time (ms, rounded up) at which server `s`'s monotonic clock reads `m`.
    fn world_at(&self, s: usize, m: MonoUs) -> EpochMs {
        let Some(v) = self.servers.get(s) else {
            return self.now;
        };
        let local = i128::from(m.0.saturating_sub(v.mono_off_us));
        let us =
            (local * 1_000_000 + i128::from(1_000_000 + v.ppm) - 1) / i128::from(1_000_000 + v.ppm);
        let ms = (us + 999).div_euclid(1000);
        START_MS.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn db_latency(&mut self) -> i64 {
        self.rng.gen_range(1..20)
    }

    /// Seconds of faults: the apps' jobs fire about `instances` times meanwhile.
    fn fault_ms(&self) -> i64 {
        let per_s = (APPS * JOBS_PER_APP) as u64;
        let s = (self.config.instances / per_s).clamp(20, 3600);
        i64::try_from(s).unwrap_or(3600) * 1000
    }

    fn run(&mut self) {
        if let Err(e) = self.setup() {
            self.violation(e);
            return;
        }
        for s in 0..self.servers.len() {
            self.start_server(s);
        }
        for a in 0..self.apps.len() {
            for _ in 0..self.config.workers.max(1) {
                self.spawn_worker(a, None);
            }
        }
        self.faults_until = START_MS + self.fault_ms();
        self.end_at = self.faults_until + CALM_MS;
        // API runs: about one per nine fires, spread over the faults.
        let runs = self.config.instances / 10;
        let span = self.faults_until - START_MS;
        for _ in 0..runs {
            let t = START_MS + 2000 + self.rng.gen_range(0..span.max(1));
            let app = self.rng.gen_range(0..self.apps.len());
            let Some(job) = self.apps.get(app).and_then(|a| a.jobs.first().copied()) else {
                continue;
            };
            self.at(
                t,
                Ev::ApiRun {
                    job,
                    app,
                    attempt: 0,
                },
            );
        }
        if self.config.faults {
            let t = self.now + self.rng.gen_range(1000..3000);
            self.at(t, Ev::Fault);
        }
        while let Some((&(t, _), _)) = self.queue.first_key_value() {
            if t > self.end_at {
                break;
            }
            let Some((_, e)) = self.queue.pop_first() else {
                break;
            };
            self.now = t;
            self.db.lock().now = t;
            self.report.events += 1;
            self.handle(*e);
            self.check();
            if self.report.violations.len() >= 16 {
                break;
            }
        }
        self.now = self.now.max(self.end_at);
        self.db.lock().now = self.now;
        self.report.simulated_ms = self.now - START_MS;
    }

    /// The apps and their jobs, written to the database before the servers start.
    fn setup(&mut self) -> Result<(), String> {
        for a in 0..APPS {
            let name = format!("app-{a}");
            let created = self
                .shared
                .create_app(&name, "sim-secret-sim-secret", START_MS);
            let _ = self.store.write_pending();
            let _ = self.store.sync_pending();
            let app = created
                .and_then(|c| c.wait())
                .map_err(|e| format!("create app: {e}"))?;
            self.db.lock().learn_app(app.id, &name);
            let mut jobs = Vec::new();
            for j in 0..JOBS_PER_APP {
                let mut rec = JobRecord::new(
                    app.id,
                    format!("job-{j}"),
                    TimeExpressionType::FixedRate,
                    "1000",
                    "noop",
                );
                rec.instance_retries = 2;
                rec.timeout_ms = 60_000;
                let first = START_MS + 1000 + i64::try_from(a * JOBS_PER_APP + j).unwrap_or(0);
                let created = self.shared.create_job(rec, Some(first), START_MS);
                let _ = self.store.write_pending();
                let _ = self.store.sync_pending();
                let job = created
                    .and_then(|c| c.wait())
                    .map_err(|e| format!("create job: {e}"))?;
                self.db.lock().learn_job(job.id, app.id);
                jobs.push(job.id);
            }
            let hint = self.rng.gen_range(0..self.servers.len());
            self.apps.push(App {
                id: app.id,
                partition: partition_of(&name),
                name: Arc::from(name.as_str()),
                jobs,
                hint,
            });
        }
        Ok(())
    }

    /// Whether event `e` is for a paused server, and which: it waits until the pause ends.
    fn target(&self, e: &Ev) -> Option<usize> {
        match e {
            Ev::ServerTimer(s) | Ev::OwnTimer(s) => Some(*s),
            Ev::FromDb { s, .. }
            | Ev::Heartbeat { s, .. }
            | Ev::View { s, .. }
            | Ev::Load { s, .. }
            | Ev::ServerSeesCut { s, .. } => Some(*s),
            Ev::ToServer { conn, .. } => self.conns.get(conn).map(|c| c.server),
            _ => None,
        }
    }

    fn handle(&mut self, e: Ev) {
        if let Some(s) = self.target(&e) {
            if let Some(until) = self
                .servers
                .get(s)
                .filter(|v| v.paused(self.now))
                .map(|v| v.paused_until)
            {
                self.at(until, e);
                return;
            }
        }
        match e {
            Ev::ServerTimer(s) => {
                let due = self.servers[s].timer_at.is_some_and(|t| t <= self.now);
                if due {
                    self.servers[s].timer_at = None;
                    self.step(s, |core, now| core.on_timers(now));
                }
            }
            Ev::OwnTimer(s) => {
                let due = self.servers[s].own_timer_at.is_some_and(|t| t <= self.now);
                if due {
                    self.servers[s].own_timer_at = None;
                    self.own_step(s, |own, now| own.handle_timeout(now));
                }
            }
            Ev::ToDb { s, life, cmd } => self.at_db(s, life, cmd),
            Ev::FromDb { s, life, input } => {
                if self.servers[s].life == life && !self.db.lock().cut[s] {
                    self.own_step(s, |own, now| own.handle(now, input));
                }
            }
            Ev::Heartbeat { s, life } => {
                if self.servers[s].life != life || self.servers[s].core.is_none() {
                    return;
                }
                let t = self.now + self.db_latency();
                self.at(t, Ev::HeartbeatAtDb { s, life });
                self.at(self.now + HEARTBEAT_EVERY_MS, Ev::Heartbeat { s, life });
            }
            Ev::HeartbeatAtDb { s, life } => {
                let live = {
                    let mut db = self.db.lock();
                    if db.cut[s] {
                        return;
                    }
                    db.heartbeat(s, LEASE_MS, &self.ids)
                };
                let t = self.now + self.db_latency();
                self.at(t, Ev::View { s, life, live });
            }
            Ev::View { s, life, live } => {
                if self.servers[s].life == life && !self.db.lock().cut[s] {
                    self.own_step(s, |own, now| own.handle(now, Input::Membership(live)));
                }
            }
            Ev::Load { s, life, p, epoch } => self.load(s, life, p, epoch),
            Ev::StoreStep => {
                self.store_step_armed = false;
                self.store_step();
            }
            Ev::ToServer {
                conn,
                msg,
                correlation,
            } => self.deliver_to_server(conn, msg, correlation),
            Ev::ToWorker {
                conn,
                msg,
                correlation,
            } => self.deliver_to_worker(conn, msg, correlation),
            Ev::ServerSeesCut {
                s,
                life,
                conn,
                worker,
                gen,
            } => self.server_sees_cut(s, life, conn, worker, gen),
            Ev::WorkerTimer(i) => self.worker_timer(i),
            Ev::WorkerConnect(i) => self.worker_connect(i),
            Ev::RunDone {
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
                self.drain_worker(worker);
            }
            Ev::ApiRun { job, app, attempt } => self.api_run(job, app, attempt),
            Ev::Fault => self.fault(),
            Ev::Resume(s) => self.resume(s),
            Ev::Heal(s) => {
                self.trace(|| format!("s{s} reaches the database again"));
                if let Some(c) = self.db.lock().cut.get_mut(s) {
                    *c = false;
                }
            }
            Ev::Restart(s) => self.start_server(s),
        }
    }

    // ----- servers -----

    /// Starts server `s`'s process: an empty core that acts for nothing yet, a fresh
    /// ownership machine, its membership heartbeats.
    fn start_server(&mut self, s: usize) {
        let apps = match self.shared.list_apps() {
            Ok(a) => a,
            Err(e) => {
                self.violation(format!("s{s}: apps unreadable: {e}"));
                return;
            }
        };
        let registry = match WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: WORKER_HEARTBEAT_MS,
            ..RegistryConfig::default()
        }) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                self.violation(format!("registry: {e}"));
                return;
            }
        };
        let wall = self.wall(s);
        let mono = self.mono(s);
        let select = SelectState::seeded(self.rng.gen());
        let v = &mut self.servers[s];
        let mut core = Core::new(
            core_config(),
            Arc::clone(&v.repo),
            registry,
            Arc::new(Metrics::default()),
            select,
            wall,
        );
        core.begin(wall * 1000, mono.0);
        core.start_partitioned(apps, wall);
        v.core = Some(core);
        let life = v.life;
        self.trace(|| format!("s{s} starts"));
        self.drain(s);
        self.at(self.now, Ev::Heartbeat { s, life });
    }

    /// Runs `f` as one step of server `s`'s core, then carries out its effects.
    fn step(&mut self, s: usize, f: impl FnOnce(&mut Core, EpochMs)) {
        let wall = self.wall(s);
        let mono = self.mono(s);
        let Some(core) = self.servers.get_mut(s).and_then(|v| v.core.as_mut()) else {
            return;
        };
        core.begin(wall * 1000, mono.0);
        f(core, wall);
        self.drain(s);
    }

    /// Carries out server `s`'s effects until none are left; re-arms its timer.
    fn drain(&mut self, s: usize) {
        loop {
            let Some(core) = self.servers[s].core.as_mut() else {
                return;
            };
            if !core.has_effects() {
                break;
            }
            for e in core.take_effects() {
                self.effect(s, e);
            }
        }
        let skew = self.servers[s].skew_ms;
        let next = self.servers[s]
            .core
            .as_ref()
            .and_then(|c| c.next_timer())
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX) - skew);
        if let Some(next) = next {
            let v = &mut self.servers[s];
            if v.timer_at.is_none_or(|t| t > next) {
                v.timer_at = Some(next);
                self.at(next, Ev::ServerTimer(s));
            }
        }
        self.arm_store_step();
    }

    fn effect(&mut self, s: usize, e: Effect) {
        let now = self.wall(s);
        match e {
            Effect::Await(a) => self.servers[s].awaiting.push_back(a),
            Effect::Send { app, worker, msg } => {
                let conn = self.conn_of(s, app, &worker);
                match msg {
                    Outgoing::Schedule { msg, since, .. } => match conn {
                        Some(c) => self.send_to_worker(c, Message::ScheduleJob(*msg), None),
                        None => {
                            if let Some(core) = self.servers[s].core.as_mut() {
                                core.on_send_closed(InstanceId(msg.instance_id), since, now);
                            }
                        }
                    },
                    Outgoing::Stop(stop) => {
                        if let Some(c) = conn {
                            self.send_to_worker(c, Message::StopInstance(stop), None);
                        }
                    }
                }
            }
            Effect::Query { app, worker, ids } => {
                let conn = self.conn_of(s, app, &worker);
                for id in ids {
                    match conn {
                        Some(c) => {
                            let corr = self.next_correlation;
                            self.next_correlation += 1;
                            self.servers[s]
                                .queries
                                .insert(corr, (c, worker.clone(), id, app));
                            self.send_to_worker(
                                c,
                                Message::QueryInstanceStatus(QueryInstanceStatus {
                                    instance_id: id.0,
                                }),
                                Some(corr),
                            );
                        }
                        None => {
                            if let Some(core) = self.servers[s].core.as_mut() {
                                core.on_query_answer(
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
            // Retention is not simulated in a cluster; alarms have no channel here.
            Effect::Prune(_)
            | Effect::PruneWorkflow(_)
            | Effect::Sweep { .. }
            | Effect::WakeAlarms => {}
        }
    }

    fn arm_store_step(&mut self) {
        if self.store_step_armed {
            return;
        }
        let busy = self
            .servers
            .iter()
            .any(|v| !v.awaiting.is_empty() || !v.runs.is_empty())
            || self.store.queued_batches() > 0;
        if !busy {
            return;
        }
        self.store_step_armed = true;
        self.at(self.now + FSYNC_MS, Ev::StoreStep);
    }

    /// The shared store writes and syncs; every running server's acknowledged writes resume
    /// its core in submission order (a paused one's when it resumes).
    fn store_step(&mut self) {
        if let Err(e) = self
            .store
            .write_pending()
            .and_then(|_| self.store.sync_pending())
        {
            self.violation(format!("store step failed: {e}"));
            return;
        }
        for s in 0..self.servers.len() {
            if !self.servers[s].paused(self.now) {
                self.resolve(s);
            }
        }
        self.arm_store_step();
    }

    fn resolve(&mut self, s: usize) {
        let wall = self.wall(s);
        let mono = self.mono(s);
        let v = &mut self.servers[s];
        let Some(core) = v.core.as_mut() else {
            return;
        };
        core.begin(wall * 1000, mono.0);
        let mut retries = Vec::new();
        while let Some(front) = v.awaiting.front_mut() {
            let ready = match front {
                Awaited::Write(c, _) => poll_now(c).map(|r| r.map(drop)),
                Awaited::Created(c, _) => match poll_now(c) {
                    Poll::Ready(r) => {
                        let Some(Awaited::Created(_, then)) = v.awaiting.pop_front() else {
                            break;
                        };
                        core.created(r, then, wall);
                        continue;
                    }
                    Poll::Pending => Poll::Pending,
                },
                Awaited::Detached(c) => poll_now(c).map(|r| r.map(drop)),
            };
            let Poll::Ready(r) = ready else { break };
            if let Some(Awaited::Write(_, then)) = v.awaiting.pop_front() {
                core.resume(then, r.is_ok(), wall);
            }
        }
        while let Some((c, _, _, _)) = v.runs.front_mut() {
            let Poll::Ready(r) = poll_now(c) else { break };
            let Some((_, then, job, app)) = v.runs.pop_front() else {
                break;
            };
            match r {
                Ok(rec) => {
                    self.acked.push((rec.id, app));
                    self.report.runs_acknowledged += 1;
                    core.after_create(rec, then, wall);
                }
                Err(_) => {
                    // The client sees the failure and asks again.
                    core.create_failed(then);
                    retries.push((job, app));
                }
            }
        }
        for (job, app) in retries {
            let t = self.now + 100;
            self.at(
                t,
                Ev::ApiRun {
                    job,
                    app,
                    attempt: 1,
                },
            );
        }
        self.drain(s);
    }

    // ----- ownership: the membership task and the cluster glue -----

    /// Runs `f` on server `s`'s ownership machine, then carries out its commands and events.
    fn own_step(&mut self, s: usize, f: impl FnOnce(&mut Ownership, MonoUs)) {
        if self.servers[s].core.is_none() {
            return;
        }
        let mono = self.mono(s);
        f(&mut self.servers[s].own, mono);
        loop {
            let mut any = false;
            while let Some(cmd) = self.servers[s].own.poll_command() {
                any = true;
                let life = self.servers[s].life;
                let t = self.now + self.db_latency();
                self.at(t, Ev::ToDb { s, life, cmd });
            }
            while let Some(e) = self.servers[s].own.poll_event() {
                any = true;
                match e {
                    OwnEvent::Acting { partition, epoch } => {
                        self.trace(|| format!("s{s} acts for {partition} at {epoch}"));
                        if let Some(g) = self.servers[s].granted.get_mut(partition.index()) {
                            *g = Some(epoch);
                        }
                        let life = self.servers[s].life;
                        let t = self.now + self.rng.gen_range(1..5);
                        self.at(
                            t,
                            Ev::Load {
                                s,
                                life,
                                p: partition,
                                epoch,
                            },
                        );
                    }
                    OwnEvent::Stop { partition, reason } => {
                        self.trace(|| format!("s{s} stops acting for {partition}: {reason:?}"));
                        self.stop_partition(s, partition);
                    }
                    OwnEvent::Drain { partition } => {
                        self.trace(|| format!("s{s} drains {partition}"));
                        self.stop_partition(s, partition);
                        let mono = self.mono(s);
                        self.servers[s]
                            .own
                            .handle(mono, Input::Stopped { partition });
                    }
                }
            }
            if !any {
                break;
            }
        }
        if let Some(m) = self.servers[s].own.poll_timeout() {
            let t = self.world_at(s, m).max(self.now);
            let v = &mut self.servers[s];
            if v.own_timer_at.is_none_or(|a| a > t) {
                v.own_timer_at = Some(t);
                self.at(t, Ev::OwnTimer(s));
            }
        }
    }

    /// The glue's `stop`: the repository refuses the partition's writes, the core drops it,
    /// its workers' connections close.
    fn stop_partition(&mut self, s: usize, p: PartitionId) {
        if let Some(g) = self.servers[s].granted.get_mut(p.index()) {
            *g = None;
        }
        self.db.lock().hold(s, p, None);
        self.step(s, |core, now| core.on_partition_lost(p, None, now));
        let mut closing: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.server == s
                    && self
                        .workers
                        .get(c.worker)
                        .and_then(|w| self.apps.get(w.app))
                        .is_some_and(|a| a.partition == p)
            })
            .map(|(k, _)| *k)
            .collect();
        closing.sort_unstable();
        for c in closing {
            self.cut(c);
        }
    }

    /// The glue's loading thread: the repository writes under the new epoch, the store is
    /// read, the core acts for the partition (if it is still granted).
    fn load(&mut self, s: usize, life: u64, p: PartitionId, epoch: Epoch) {
        let v = &self.servers[s];
        if v.life != life || v.core.is_none() || v.granted.get(p.index()) != Some(&Some(epoch)) {
            return;
        }
        self.db.lock().hold(s, p, Some(epoch));
        let repo = Arc::clone(&self.servers[s].repo);
        let read = repo
            .load()
            .and_then(|l| repo.load_workflows().map(|w| (l, w)));
        match read {
            Ok((loaded, workflows)) => {
                self.step(s, |core, now| {
                    core.on_partition_loaded(p, epoch, loaded, workflows, now)
                });
            }
            Err(_) => {
                let t = self.now + RELOAD_AFTER_MS;
                self.at(t, Ev::Load { s, life, p, epoch });
            }
        }
    }

    /// A lease command reaches the database (unless server `s` is cut from it).
    fn at_db(&mut self, s: usize, life: u64, cmd: Command) {
        let answer = {
            let mut db = self.db.lock();
            if db.cut[s] {
                return;
            }
            db.command(s, cmd, &self.ids)
        };
        if let Some(input) = answer {
            let t = self.now + self.db_latency();
            self.at(t, Ev::FromDb { s, life, input });
        }
    }

    // ----- the API client -----

    fn api_run(&mut self, job: JobId, app: usize, attempt: u32) {
        if attempt > 200 || self.now >= self.end_at - CALM_MS / 2 {
            return;
        }
        let n = self.servers.len();
        let Some(a) = self.apps.get(app) else { return };
        let (app_id, s) = (a.id, a.hint);
        let reachable = self
            .servers
            .get(s)
            .is_some_and(|v| v.core.is_some() && !v.paused(self.now));
        let mut ok = false;
        if reachable {
            let wall = self.wall(s);
            let mono = self.mono(s);
            let v = &mut self.servers[s];
            if let Some(core) = v.core.as_mut() {
                core.begin(wall * 1000, mono.0);
                // A refusal (not the owner, the write refused) is answered as an error.
                if let Ok((c, then)) = core.prepare_run(app_id, job, String::new(), 0, wall) {
                    v.runs.push_back((c, then, job, app));
                    ok = true;
                }
            }
            self.drain(s);
        }
        if !ok {
            // Refused (not the owner, or the write was refused) or no answer: the client
            // asks the next server a little later.
            if let Some(a) = self.apps.get_mut(app) {
                a.hint = (s + 1) % n.max(1);
            }
            let t = self.now + if reachable { 20 } else { 300 };
            self.at(
                t,
                Ev::ApiRun {
                    job,
                    app,
                    attempt: attempt + 1,
                },
            );
        }
    }

    // ----- faults -----

    fn fault(&mut self) {
        if self.now >= self.faults_until {
            return;
        }
        let n = self.servers.len();
        let s = self.rng.gen_range(0..n);
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=34 => {
                // A pause longer than a lease: a long GC, a stopped VM.
                let v = &self.servers[s];
                if v.core.is_some() && !v.paused(self.now) {
                    let d = self.rng.gen_range(LEASE_MS + LEASE_MS / 5..3 * LEASE_MS);
                    self.trace(|| format!("fault: s{s} pauses for {d} ms"));
                    self.report.pauses += 1;
                    self.servers[s].paused_until = self.now + d;
                    self.at(self.now + d, Ev::Resume(s));
                }
            }
            35..=64 => {
                // Cut from the database for a while.
                let cut = self.db.lock().cut[s];
                if !cut {
                    let d = self.rng.gen_range(LEASE_MS / 2..3 * LEASE_MS);
                    self.trace(|| format!("fault: s{s} cut from the database for {d} ms"));
                    self.report.db_cuts += 1;
                    self.db.lock().cut[s] = true;
                    self.at(self.now + d, Ev::Heal(s));
                }
            }
            65..=79 => self.crash(s),
            _ => {
                let mut open: Vec<u64> = self.conns.keys().copied().collect();
                open.sort_unstable();
                if !open.is_empty() {
                    let c = open[self.rng.gen_range(0..open.len())];
                    self.report.connections_cut += 1;
                    self.cut(c);
                }
            }
        }
        let next = self.now + self.rng.gen_range(1000..4000);
        self.at(next, Ev::Fault);
    }

    /// Paused server `s` runs again: its due core timers and its ownership machine's
    /// deadline are both due; either may run first.
    fn resume(&mut self, s: usize) {
        if self.servers[s].core.is_none() {
            return;
        }
        let core_first = self.rng.gen_ratio(1, 2);
        self.trace(|| format!("s{s} resumes (core first: {core_first})"));
        if core_first {
            self.step(s, |core, now| core.on_timers(now));
        }
        self.own_step(s, |own, now| own.handle_timeout(now));
        self.resolve(s);
        self.step(s, |core, now| core.on_timers(now));
    }

    fn crash(&mut self, s: usize) {
        let limit = self
            .config
            .max_server_crashes
            .is_some_and(|m| self.report.server_crashes >= m);
        if limit || self.servers[s].core.is_none() {
            return;
        }
        self.trace(|| format!("fault: s{s} crashes"));
        self.report.server_crashes += 1;
        let Ok(own) = Ownership::new(self.servers[s].id.clone(), ownership_config()) else {
            return;
        };
        let v = &mut self.servers[s];
        v.core = None;
        v.life += 1;
        v.own = own;
        v.awaiting.clear();
        v.runs.clear();
        v.queries.clear();
        v.timer_at = None;
        v.own_timer_at = None;
        v.granted = [None; PARTITION_COUNT as usize];
        v.paused_until = self.now;
        self.db.lock().forget(s);
        let mut closing: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.server == s)
            .map(|(k, _)| *k)
            .collect();
        closing.sort_unstable();
        for c in closing {
            self.cut(c);
        }
        let back = self.now + self.rng.gen_range(500..4000);
        self.at(back, Ev::Restart(s));
    }

    // ----- invariants -----

    /// After every event: who may act for what.
    fn check(&mut self) {
        let mut found = Vec::new();
        {
            let db = self.db.lock();
            for p in PartitionId::all() {
                let mut actor: Option<usize> = None;
                for (s, v) in self.servers.iter().enumerate() {
                    if v.core.is_none() {
                        continue;
                    }
                    let Some(epoch) = v.own.may_act(p, self.mono(s)) else {
                        continue;
                    };
                    if !db.owns(s, p, epoch) {
                        let row = db.leases.get(p.index()).copied().unwrap_or_default();
                        found.push(format!(
                            "s{s} may act for {p} at {epoch}, the database has {row:?} (now {})",
                            db.now
                        ));
                    }
                    if let Some(other) = actor.replace(s) {
                        found.push(format!("s{other} and s{s} both act for {p}"));
                    }
                }
            }
            for (s, v) in self.servers.iter().enumerate() {
                let Some(core) = v.core.as_ref() else {
                    continue;
                };
                // Between the deadline and the membership task's timer (due at this very
                // instant, not yet run) the core still acts: the fence covers that gap.
                if v.paused(self.now) || v.own_timer_at.is_some_and(|t| t <= self.now) {
                    continue;
                }
                for a in &self.apps {
                    let Some(e) = core.epoch_of(a.id) else {
                        continue;
                    };
                    if v.own.may_act(a.partition, self.mono(s)) != Some(Epoch(e)) {
                        found.push(format!(
                            "the core of s{s} acts for {} ({}) at epoch {e} without the lease",
                            a.name, a.partition
                        ));
                    }
                }
            }
        }
        for f in found {
            self.violation(f);
        }
        let db_found: Vec<(EpochMs, String)> = std::mem::take(&mut self.db.lock().violations);
        for (t, what) in db_found {
            self.report.violations.push(Violation::new(t, what));
        }
    }

    /// At the end, once the faults stopped: liveness and nothing acknowledged lost.
    fn finish(mut self) -> SimReport {
        let _ = self.store.write_pending();
        let _ = self.store.sync_pending();
        self.check();
        let (last_fire, fenced, takeovers, fires) = {
            let db = self.db.lock();
            (
                db.last_fire.clone(),
                db.fenced,
                db.takeovers,
                db.fire_count(),
            )
        };
        self.report.fenced_writes = fenced;
        self.report.takeovers = takeovers;
        let mut found = Vec::new();
        for a in &self.apps {
            let acting: Vec<usize> = (0..self.servers.len())
                .filter(|&s| {
                    let v = &self.servers[s];
                    v.core.as_ref().and_then(|c| c.epoch_of(a.id)).is_some()
                        && v.own.may_act(a.partition, self.mono(s)).is_some()
                })
                .collect();
            if acting.len() != 1 {
                found.push(format!(
                    "{} ({}) is acted for by {} servers at the end",
                    a.name,
                    a.partition,
                    acting.len()
                ));
            }
            for j in &a.jobs {
                let last = last_fire.get(j).copied().unwrap_or(i64::MIN);
                if last < self.now - LIVENESS_MS {
                    found.push(format!(
                        "{j} of {} has not fired since {} ms before the end",
                        a.name,
                        self.now.saturating_sub(last)
                    ));
                }
            }
        }
        let mut finished = 0;
        for &(id, app) in &self.acked {
            let rec = match self.shared.get_instance(id) {
                Ok(r) => r,
                Err(e) => {
                    found.push(format!("acknowledged run {id} lost: {e}"));
                    continue;
                }
            };
            if rec.status.is_final() {
                finished += 1;
                continue;
            }
            let Some(a) = self.apps.get(app) else {
                continue;
            };
            let pending = self.servers.iter().any(|v| {
                v.core
                    .as_ref()
                    .is_some_and(|c| c.epoch_of(a.id).is_some() && c.active.contains_key(&id))
            });
            if !pending {
                found.push(format!(
                    "acknowledged run {id} is {:?} and no server holds it",
                    rec.status
                ));
            }
        }
        self.report.instances = self.acked.len() as u64 + fires;
        self.report.finished = finished;
        for f in found {
            self.violation(f);
        }
        self.report
    }
}
