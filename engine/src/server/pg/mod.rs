//! [`PgRepo`]: the server's repository on PostgreSQL, the second implementation of
//! [`Repository`](super::Repository) (the first is the log store's
//! [`LogRepo`](super::LogRepo)); both pass the same conformance suite.
//!
//! # Shape
//!
//! ```text
//!  callers (server core, HTTP, retention) ── sync reads ──► read connections (2, pipelined)
//!        │ writes: Vec<Op> + Acknowledger                      ▲
//!        ▼                                                     │ own tokio runtime,
//!  bounded queue (65 536) ──► writer task: one transaction per batch, multi-row statements
//! ```
//!
//! - **Writes** are queued, not executed: the writer task folds every queued write into one
//!   transaction (`writer.rs`) and resolves each [`Commit`] after `COMMIT`. Writes commit in
//!   submission order. A full queue makes the submitter wait (back-pressure).
//! - **Reads** are synchronous, as the trait's are. They run on a small runtime the repository
//!   owns (two worker threads, the connections' tasks, the writer) and the caller blocks on
//!   the answer; on a multi-threaded tokio runtime the wait is wrapped in
//!   [`tokio::task::block_in_place`] so that the runtime moves its other tasks off the
//!   blocked worker. A read is one round trip to a server on the same host (well under a
//!   millisecond), and the server core's hot path (fires, reports) does no reads.
//! - **Ids** come from blocks reserved in the database (`ids.rs`): one atomic statement on
//!   `counters` per block (4096 instance ids, log or alarm sequence numbers, workflow or
//!   workflow instance ids; one app or job id), committed before any of its ids is used, so
//!   servers sharing the database never hand out the same id. **Trigger rows**: every job's
//!   and workflow's is cached, so a fire reads nothing.
//!
//! The tables are in `schema.rs`; they are created and upgraded by numbered migrations when
//! the repository opens (`open.rs`). The write path is `writer.rs` over the table layouts of `tables.rs`; records become rows in
//! `rows.rs`; each concern's reads and writes have a file (`apps.rs` with tokens and secret
//! rotation, `jobs.rs`, `instances.rs`, `logs.rs`, `workflows.rs`, `alarms.rs`, `calendars.rs`), and
//! `repository.rs` implements the trait by forwarding to them. `lease.rs` (public) holds the
//! cluster's membership and partition leases, for [`crate::cluster`], with the fence and the
//! session limits the writer uses once its writes are fenced.
//!
//! The driver is `tokio-postgres` (no pool crate: three connections, fixed at open); see
//! BENCHMARKS.md for the measurement that chose it.

mod alarms;
mod apps;
mod calendars;
mod fence;
mod history;
mod idempotency;
mod ids;
mod instances;
mod jobs;
pub mod lease;
mod logs;
pub mod member;
mod open;
mod repository;
mod rows;
mod schema;
mod tables;
mod workflows;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use dashmap::DashMap;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, Row};

use crate::cluster::{Epoch, PartitionId, ServerId};
use crate::ids::{AppId, InstanceId, JobId, WorkflowId};
use crate::workflow::WorkflowDef;

use super::error::RepoError;
use super::job_codec::decode_job;
use super::keys;
use super::records::{DelayedRun, TriggerRecord};
use super::repo::{Commit, LoadedJob, LoadedState, ID_BLOCK};
use fence::Fencing;
use ids::SharedIds;
use open::open_all;
use tables::{Op, Val};
use writer::Write;

pub use writer::APPLICATION_NAME as WRITER_APPLICATION_NAME;

/// Read connections (queries on one connection are pipelined).
const READERS: usize = 2;

/// Records in a row triggered within the retention window after which an age scan stops.
const AGE_SCAN_YOUNG_RUN: usize = super::instance_repo::AGE_SCAN_YOUNG_RUN;

/// A database error as text: the server's SQLSTATE and message when it sent one, else the
/// client's error with its cause.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

fn db(e: tokio_postgres::Error) -> RepoError {
    RepoError::Database(error_text(&e))
}

/// `x` as a `bigint`.
fn big(x: u64) -> Result<i64, RepoError> {
    i64::try_from(x).map_err(|_| RepoError::invalid("id", format!("{x} is beyond 2^63 - 1")))
}

/// A stored `bigint` as an id or counter.
fn unsigned(table: &'static str, x: i64) -> Result<u64, RepoError> {
    u64::try_from(x).map_err(|_| RepoError::corrupt(table, &x.to_be_bytes(), "negative id"))
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, RepoError> {
    row.try_get(idx).map_err(db)
}

/// The API name of an enum value (its serde name: `WAITING_DISPATCH`, `CRON`, ...).
fn name_of<T: serde::Serialize + std::fmt::Debug>(x: &T) -> String {
    match serde_json::to_value(x) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{x:?}"),
    }
}

fn i64s(x: Option<i64>) -> Val {
    Val::I64(x)
}

fn text(s: &str) -> Val {
    Val::Text(Some(s.to_owned()))
}

/// Cold state: app names, under a small lock.
#[derive(Debug)]
struct Cold {
    app_names: HashMap<String, AppId>,
}

/// The server's repository on PostgreSQL (see the module docs).
pub struct PgRepo {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    readers: Vec<Arc<Client>>,
    next_reader: AtomicUsize,
    queue: flume::Sender<Write>,
    cold: Mutex<Cold>,
    app_ids: SharedIds,
    job_ids: SharedIds,
    instance_ids: SharedIds,
    log_seqs: SharedIds,
    alarm_seqs: SharedIds,
    workflow_ids: SharedIds,
    wf_instance_ids: SharedIds,
    triggers: DashMap<JobId, TriggerRecord>,
    wf_triggers: DashMap<WorkflowId, TriggerRecord>,
    audit: super::history::LatestSeqs<AppId>,
    job_versions: super::history::LatestSeqs<JobId>,
    /// Set once the writes are fenced (a server of a cluster; see `fence.rs`); shared with
    /// the writer.
    fencing: Arc<OnceLock<Arc<Fencing>>>,
    /// The writer's health (see `writer.rs`).
    writer_status: tokio::sync::watch::Receiver<member::WriterStatus>,
}

impl std::fmt::Debug for PgRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRepo")
            .field("readers", &self.readers.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Drop for PgRepo {
    fn drop(&mut self) {
        // The runtime may be dropped from async code (the server shutting down): its threads
        // are left to finish in the background rather than joined here.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Blocks the calling thread on `rx`, telling a multi-threaded tokio runtime first so that it
/// moves its other tasks off this worker.
fn wait_for<T>(rx: flume::Receiver<T>) -> Option<T> {
    blocking(|| rx.recv().ok())
}

/// Runs `f`, which blocks, telling a multi-threaded tokio runtime first so that it moves its
/// other tasks off this worker.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Runs `fut` on `handle`'s runtime and waits for its output, from any thread.
fn run_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = flume::bounded(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    wait_for(rx)
}

fn closed() -> RepoError {
    RepoError::Database("the PostgreSQL repository is closed".to_owned())
}

/// How [`PgRepo`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// Most queued writes committed in one transaction (at least 1; default 4096). 1 makes
    /// every write its own transaction: the way a scheduler that writes each state change on
    /// its own uses its database (a benchmark's baseline).
    pub max_batch_writes: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_batch_writes: writer::MAX_BATCH_WRITES,
        }
    }
}

impl PgRepo {
    /// [`open_with`](PgRepo::open_with) the default options.
    pub fn open(url: &str) -> Result<PgRepo, RepoError> {
        PgRepo::open_with(url, PgOptions::default())
    }

    /// Connects to the database at `url` (`postgres://user@host:port/db`), applies the
    /// missing migrations, and reads the counters and trigger rows. Fails with
    /// [`RepoError::Database`] when the database is unreachable or its schema is newer than
    /// this build. May be called from any thread, async or not.
    pub fn open_with(url: &str, options: PgOptions) -> Result<PgRepo, RepoError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferrojob-pg")
            .enable_all()
            .build()
            .map_err(|e| RepoError::Database(format!("cannot start the database runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let opened = run_on(&handle, open_all(url.to_owned())).ok_or_else(closed)??;
        let (queue, rx) = flume::bounded(writer::QUEUE_CAPACITY);
        let fencing = Arc::new(OnceLock::new());
        let (status_tx, writer_status) = tokio::sync::watch::channel(Default::default());
        handle.spawn(writer::run(
            opened.writer,
            rx,
            options.max_batch_writes.max(1),
            writer::Shared {
                url: url.to_owned(),
                fencing: Arc::clone(&fencing),
                status: status_tx,
            },
        ));
        let meta = super::alarm_repo::NEXT_ALARM_SEQ;
        let wf_ids = super::workflow_repo::NEXT_WORKFLOW_ID;
        let wfi_ids = super::workflow_repo::NEXT_WF_INSTANCE_ID;
        Ok(PgRepo {
            cold: Mutex::new(Cold {
                app_names: opened.app_names,
            }),
            // One at a time: apps and jobs are few, and their ids stay consecutive.
            app_ids: SharedIds::new("app", keys::NEXT_APP_ID, 1),
            job_ids: SharedIds::new("job", keys::NEXT_JOB_ID, 1),
            instance_ids: SharedIds::new("instance", keys::NEXT_INSTANCE_ID, ID_BLOCK),
            log_seqs: SharedIds::new("log", keys::NEXT_LOG_SEQ, ID_BLOCK),
            alarm_seqs: SharedIds::new("alarm", meta, ID_BLOCK),
            workflow_ids: SharedIds::new("workflow", wf_ids, ID_BLOCK),
            wf_instance_ids: SharedIds::new("workflow instance", wfi_ids, ID_BLOCK),
            triggers: opened.triggers,
            wf_triggers: opened.wf_triggers,
            audit: super::history::LatestSeqs::default(),
            job_versions: super::history::LatestSeqs::default(),
            readers: opened.readers,
            fencing,
            writer_status,
            next_reader: AtomicUsize::new(0),
            queue,
            handle,
            runtime: Some(runtime),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Cold> {
        // Updated only after every fallible step, like the log store's.
        self.cold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a query on a read connection and waits for its rows.
    fn query(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Vec<Row>, RepoError> {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let Some(client) = self.readers.get(n % self.readers.len().max(1)).cloned() else {
            return Err(closed());
        };
        run_on(&self.handle, async move {
            let p: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
            client.query(sql, &p).await
        })
        .ok_or_else(closed)?
        .map_err(db)
    }

    fn query_opt(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Option<Row>, RepoError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Queues a write (waiting while the queue is full).
    fn enqueue(&self, w: Write) {
        if let Err(flume::TrySendError::Full(w)) = self.queue.try_send(w) {
            // A dropped write drops its acknowledger: its commit fails as closed.
            let _ = blocking(|| self.queue.send(w));
        }
    }

    /// Queues `ops` as one write; a write PostgreSQL cannot hold (see
    /// [`tables::refused_text`]), or one of a partition this server does not hold once its
    /// writes are fenced, fails alone, unqueued.
    fn submit<T>(&self, ops: Vec<Op>, value: T) -> Commit<T> {
        let (commit, ack) = Commit::pending(value);
        if let Some(e) = tables::refused_text(&ops) {
            let _ = ack.send(Err(e));
            return commit;
        }
        let fences = match self.fencing.get().map(|f| f.scope(&ops)) {
            None => Vec::new(),
            Some(Ok(fences)) => fences,
            Some(Err(e)) => {
                let _ = ack.send(Err(e));
                return commit;
            }
        };
        if let Some(f) = self.fencing.get() {
            f.forget(&ops);
        }
        self.enqueue(Write {
            ops,
            ack: Some(ack),
            fences,
        });
        commit
    }

    // ----- fencing (a server of a cluster) -----

    /// From now on every state write of a cluster partition commits only while `server`
    /// holds the partition's lease at the epoch the write was made under (see `fence.rs`);
    /// none is held until [`hold_partition`](Self::hold_partition). Reads which app each job
    /// and workflow belongs to. The writer's session gets the time limits of leases of
    /// `lease` ([`lease::SessionLimits::for_lease`]), and recovers from a lost session (see
    /// `writer.rs`). Called once, before the server acts for any partition; refused when
    /// the writes are fenced already.
    pub fn fence_as(&self, server: ServerId, lease: std::time::Duration) -> Result<(), RepoError> {
        let fenced_already =
            || RepoError::invalid("cluster", "this repository's writes are fenced already");
        if self.fencing.get().is_some() {
            return Err(fenced_already());
        }
        let fencing = Arc::new(Fencing::new(server, lease::SessionLimits::for_lease(lease)));
        self.learn_owners(&fencing)?;
        self.fencing.set(fencing).map_err(|_| fenced_already())
    }

    /// The writer's health: its failed transactions and new sessions since the open. In a
    /// cluster each failure makes every held partition stale (see `writer.rs`), which the
    /// membership watches.
    pub fn writer_status(&self) -> tokio::sync::watch::Receiver<member::WriterStatus> {
        self.writer_status.clone()
    }

    /// Reads every app, job and workflow's owner into `fencing` (and the apps other servers
    /// created into the name index).
    fn learn_owners(&self, fencing: &Fencing) -> Result<(), RepoError> {
        let apps = self.list_apps()?;
        let mut cold = self.lock();
        for app in &apps {
            fencing.learn_app(app.id, &app.name);
            cold.app_names.insert(app.name.clone(), app.id);
        }
        drop(cold);
        for row in self.query("SELECT id, app_id FROM jobs", vec![])? {
            fencing.learn_job(
                JobId(unsigned("jobs", get(&row, 0)?)?),
                AppId(unsigned("jobs", get(&row, 1)?)?),
            );
        }
        for row in self.query("SELECT id, app_id FROM workflows", vec![])? {
            fencing.learn_workflow(
                WorkflowId(unsigned("workflows", get(&row, 0)?)?),
                AppId(unsigned("workflows", get(&row, 1)?)?),
            );
        }
        Ok(())
    }

    /// Before [`hold_partition`](Self::hold_partition): rereads which app each job and
    /// workflow belongs to and `partition`'s trigger rows (its former owner created and moved
    /// them; this server's copies may be old). Refused when the writes are not fenced.
    pub fn prepare_partition(&self, partition: PartitionId) -> Result<(), RepoError> {
        self.prepare_partitions(&[partition])
    }

    /// [`prepare_partition`](Self::prepare_partition) for several partitions at once, with
    /// one read of each table (a server that takes over a dead one's share gets its
    /// partitions granted together).
    pub fn prepare_partitions(&self, partitions: &[PartitionId]) -> Result<(), RepoError> {
        let Some(fencing) = self.fencing.get() else {
            return Err(RepoError::invalid("cluster", "the writes are not fenced"));
        };
        self.learn_owners(fencing)?;
        let wanted = |p: Option<PartitionId>| p.is_some_and(|p| partitions.contains(&p));
        // What this server cached of the partitions (when it held them before, or wrote
        // them in a transaction that failed) goes: the rows are the truth. Nothing writes
        // them meanwhile, as they are not held.
        self.triggers
            .retain(|id, _| !wanted(fencing.job_partition(*id)));
        self.wf_triggers
            .retain(|id, _| !wanted(fencing.workflow_partition(*id)));
        self.job_versions
            .retain(|id| !wanted(fencing.job_partition(*id)));
        for row in self.query("SELECT job_id, next_trigger, runs FROM triggers", vec![])? {
            let (id, rec) = open::trigger_row("triggers", &row)?;
            if wanted(fencing.job_partition(JobId(id))) {
                self.triggers.insert(JobId(id), rec);
            }
        }
        for row in self.query(
            "SELECT workflow_id, next_trigger, runs FROM workflow_triggers",
            vec![],
        )? {
            let (id, rec) = open::trigger_row("workflow_triggers", &row)?;
            if wanted(fencing.workflow_partition(WorkflowId(id))) {
                self.wf_triggers.insert(WorkflowId(id), rec);
            }
        }
        Ok(())
    }

    /// This server acquired `partition` at `epoch`: its writes are made under that epoch from
    /// now on (a no-op when the writes are not fenced). False, and nothing held, when the
    /// epoch is stale: granted before the writer lost its session (see `fence.rs`).
    pub fn hold_partition(&self, partition: PartitionId, epoch: Epoch) -> bool {
        match self.fencing.get() {
            Some(fencing) => fencing.hold(partition, epoch),
            None => true,
        }
    }

    /// This server no longer holds `partition`: its writes are refused from now on, queued
    /// ones by their fence.
    pub fn release_partition(&self, partition: PartitionId) {
        if let Some(fencing) = self.fencing.get() {
            fencing.release(partition);
        }
    }

    /// The epoch `partition` is held at by this server's writes, if any.
    pub fn held_partition(&self, partition: PartitionId) -> Option<Epoch> {
        self.fencing.get().and_then(|f| f.held(partition))
    }

    fn alloc(&self, ids: &SharedIds, n: u64) -> Result<u64, RepoError> {
        ids.alloc(self, n)
    }

    // ----- restart -----

    fn load(&self) -> Result<LoadedState, RepoError> {
        let apps = self.list_apps()?;
        let mut jobs = Vec::new();
        for row in self.query(
            "SELECT j.id, j.record, t.next_trigger, t.runs FROM jobs j \
             LEFT JOIN triggers t ON t.job_id = j.id ORDER BY j.id",
            vec![],
        )? {
            let id = unsigned("jobs", get(&row, 0)?)?;
            let job = decode_job(&keys::id(id), &get::<Vec<u8>>(&row, 1)?)?;
            let runs: Option<i64> = get(&row, 3)?;
            let trigger = TriggerRecord {
                next_trigger: get(&row, 2)?,
                runs: runs
                    .map(|r| unsigned("triggers", r))
                    .transpose()?
                    .unwrap_or(0),
            };
            jobs.push(LoadedJob { job, trigger });
        }
        let mut delayed = Vec::new();
        for row in self.query(
            "SELECT instance_id, job_id, due FROM delayed_runs ORDER BY instance_id",
            vec![],
        )? {
            delayed.push(DelayedRun {
                instance_id: InstanceId(unsigned("delayed_runs", get(&row, 0)?)?),
                job_id: JobId(unsigned("delayed_runs", get(&row, 1)?)?),
                due: get(&row, 2)?,
            });
        }
        let active = self
            .query(
                "SELECT id, record FROM instances WHERE NOT final ORDER BY id",
                vec![],
            )?
            .iter()
            .map(|row| Self::instance_from(row, 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LoadedState {
            apps,
            jobs,
            delayed,
            active,
        })
    }

    fn flush(&self) -> Result<(), RepoError> {
        self.settle()
    }

    /// Waits until every write submitted before this call has committed; fails when one of
    /// them could not (see `writer.rs` for what the writer does then).
    fn settle(&self) -> Result<(), RepoError> {
        let commit = self.submit(Vec::new(), ());
        blocking(|| commit.wait())
    }
}

fn def_json(def: &WorkflowDef) -> Result<String, RepoError> {
    serde_json::to_string(def).map_err(|e| RepoError::invalid("workflow", e.to_string()))
}
