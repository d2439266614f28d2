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
//!
//! Files: this one the world, its clocks and the event loop; `event.rs` the events and their
//! handling; `server.rs` a server process and the shared store's rounds; `glue.rs` the
//! membership task and the cluster glue; `net.rs` the workers and their connections;
//! `client.rs` the API client; `faults.rs` the faults; `invariants.rs` the checks; `db.rs`
//! the simulated database (`db/fenced_repo.rs` each server's fenced repository).

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
use super::world::{poll_now, resume_awaited};
use super::{SimConfig, SimReport};

mod client;
mod db;
mod event;
mod faults;
mod glue;
mod invariants;
mod net;
mod server;

use db::{Db, FencedRepo};
use event::Ev;

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
}
