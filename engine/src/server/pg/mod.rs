//! [`PgRepo`]: the server's repository on PostgreSQL, the second implementation of
//! [`Repository`] (the first is the log store's [`LogRepo`](super::LogRepo)); both pass the
//! same conformance suite.
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
//! - **Ids and trigger rows** work as in [`LogRepo`](super::LogRepo): instance ids, log
//!   sequence numbers, alarm sequence numbers, workflow and workflow instance ids come from
//!   hi-lo blocks whose high-water marks (`counters`) are queued before any write that uses
//!   them; app and job counters are written with the row that uses them; every job's and
//!   workflow's trigger row is cached, so a fire reads nothing.
//!
//! The tables are in `schema.rs`; they are created and upgraded by numbered migrations when
//! the repository opens.
//!
//! The driver is `tokio-postgres` (no pool crate: three connections, fixed at open); see
//! BENCHMARKS.md for the measurement that chose it.

mod schema;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, NoTls, Row};

use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::model::{InstanceStatus, LogLevel};
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::alarm_repo::{AlarmRecord, ChannelRecord, DeliveryStatus, MAX_CHANNELS_PER_APP};
use super::codec::{decode, encode};
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::job_codec::{decode_job, encode_job};
use super::keys;
use super::records::{
    truncate_marked, AppRecord, DelayedRun, JobRecord, LogLine, TriggerRecord, MAX_LOG_LINE_LEN,
    MAX_NAME_LEN,
};
use super::repo::{
    alloc, Commit, IdBlocks, InstanceFilter, JobFilter, LoadedJob, LoadedState, LogAppend,
    LogEntry, Page, WorkflowFilter, MAX_LIST_SCAN, MAX_LOG_APPEND, MAX_PAGE,
};
use super::repository::Repository;
use super::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfWrite, WorkflowRecord,
};
use writer::{Op, Table, Val, Write};

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

/// Cold state: app and job counters and app names, under a small lock.
#[derive(Debug)]
struct Cold {
    next_app: u64,
    next_job: u64,
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
    instance_ids: IdBlocks,
    log_seqs: IdBlocks,
    alarm_seqs: IdBlocks,
    workflow_ids: IdBlocks,
    wf_instance_ids: IdBlocks,
    triggers: DashMap<JobId, TriggerRecord>,
    wf_triggers: DashMap<WorkflowId, TriggerRecord>,
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
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(|| rx.recv().ok())
    } else {
        rx.recv().ok()
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

/// Everything read at open.
struct Opened {
    readers: Vec<Arc<Client>>,
    writer: Client,
    counters: HashMap<String, u64>,
    app_names: HashMap<String, AppId>,
    triggers: DashMap<JobId, TriggerRecord>,
    wf_triggers: DashMap<WorkflowId, TriggerRecord>,
}

async fn connect(url: String) -> Result<Client, RepoError> {
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %error_text(&e), "postgres connection ended");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut Client) -> Result<(), RepoError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                version integer PRIMARY KEY, \
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
        .await
        .map_err(db)?;
    let current: Option<i32> = tx
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let current = current.unwrap_or(0);
    if current > schema::LATEST {
        return Err(RepoError::Database(format!(
            "the database's schema is version {current}, newer than this ferrojob's ({}): \
             upgrade ferrojob",
            schema::LATEST
        )));
    }
    for (version, sql) in schema::MIGRATIONS {
        if *version <= current {
            continue;
        }
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db)?;
        tracing::info!(version, "postgres schema migrated");
    }
    tx.commit().await.map_err(db)
}

async fn open_all(url: String) -> Result<Opened, RepoError> {
    let mut writer = connect(url.clone()).await?;
    migrate(&mut writer).await?;
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        readers.push(Arc::new(connect(url.clone()).await?));
    }
    let mut counters = HashMap::new();
    for row in writer
        .query("SELECT name, next FROM counters", &[])
        .await
        .map_err(db)?
    {
        let name: String = get(&row, 0)?;
        let next: i64 = get(&row, 1)?;
        counters.insert(name, unsigned("counters", next)?);
    }
    let mut app_names = HashMap::new();
    for row in writer
        .query("SELECT id, name FROM apps", &[])
        .await
        .map_err(db)?
    {
        let id: i64 = get(&row, 0)?;
        app_names.insert(get::<String>(&row, 1)?, AppId(unsigned("apps", id)?));
    }
    let triggers = DashMap::new();
    for row in writer
        .query("SELECT job_id, next_trigger, runs FROM triggers", &[])
        .await
        .map_err(db)?
    {
        let (id, rec) = trigger_row("triggers", &row)?;
        triggers.insert(JobId(id), rec);
    }
    let wf_triggers = DashMap::new();
    for row in writer
        .query(
            "SELECT workflow_id, next_trigger, runs FROM workflow_triggers",
            &[],
        )
        .await
        .map_err(db)?
    {
        let (id, rec) = trigger_row("workflow_triggers", &row)?;
        wf_triggers.insert(WorkflowId(id), rec);
    }
    Ok(Opened {
        readers,
        writer,
        counters,
        app_names,
        triggers,
        wf_triggers,
    })
}

fn trigger_row(table: &'static str, row: &Row) -> Result<(u64, TriggerRecord), RepoError> {
    let id: i64 = get(row, 0)?;
    let next: Option<i64> = get(row, 1)?;
    let runs: i64 = get(row, 2)?;
    Ok((
        unsigned(table, id)?,
        TriggerRecord {
            next_trigger: next,
            runs: unsigned(table, runs)?,
        },
    ))
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
        handle.spawn(writer::run(
            opened.writer,
            rx,
            options.max_batch_writes.max(1),
        ));
        let counter = |key: &[u8]| -> u64 {
            let name = String::from_utf8_lossy(key);
            opened.counters.get(&*name).copied().unwrap_or(1).max(1)
        };
        let meta = super::alarm_repo::NEXT_ALARM_SEQ;
        let wf_ids = super::workflow_repo::NEXT_WORKFLOW_ID;
        let wfi_ids = super::workflow_repo::NEXT_WF_INSTANCE_ID;
        Ok(PgRepo {
            cold: Mutex::new(Cold {
                next_app: counter(keys::NEXT_APP_ID),
                next_job: counter(keys::NEXT_JOB_ID),
                app_names: opened.app_names,
            }),
            instance_ids: IdBlocks::new(
                "instance",
                keys::NEXT_INSTANCE_ID,
                counter(keys::NEXT_INSTANCE_ID),
            ),
            log_seqs: IdBlocks::new("log", keys::NEXT_LOG_SEQ, counter(keys::NEXT_LOG_SEQ)),
            alarm_seqs: IdBlocks::new("alarm", meta, counter(meta)),
            workflow_ids: IdBlocks::new("workflow", wf_ids, counter(wf_ids)),
            wf_instance_ids: IdBlocks::new("workflow instance", wfi_ids, counter(wfi_ids)),
            triggers: opened.triggers,
            wf_triggers: opened.wf_triggers,
            readers: opened.readers,
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
            let queue = self.queue.clone();
            let on_worker = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            // A dropped write drops its acknowledger: its commit fails as closed.
            if on_worker {
                let _ = tokio::task::block_in_place(|| queue.send(w));
            } else {
                let _ = queue.send(w);
            }
        }
    }

    fn submit<T>(&self, ops: Vec<Op>, value: T) -> Commit<T> {
        let (commit, ack) = Commit::pending(value);
        self.enqueue(Write {
            ops,
            ack: Some(ack),
        });
        commit
    }

    fn alloc(&self, blocks: &IdBlocks, n: u64) -> Result<u64, RepoError> {
        blocks.alloc_with(n, |key, hi| {
            let name = String::from_utf8_lossy(key).into_owned();
            let hi = i64::try_from(hi).unwrap_or(i64::MAX);
            self.enqueue(Write {
                ops: vec![counter_op(&name, hi)],
                ack: None,
            });
        })
    }

    // ----- rows -----

    fn instance_row(inst: &InstanceRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Instances,
            vec![
                i64s(Some(big(inst.id.0)?)),
                i64s(Some(big(inst.app_id.0)?)),
                i64s(Some(big(inst.job_id.0)?)),
                i64s(Some(big(inst.run)?)),
                text(&name_of(&inst.status)),
                Val::Bool(inst.status.is_final()),
                i64s(Some(inst.trigger_time)),
                i64s(inst.finished_time),
                Val::Text(inst.worker.clone()),
                Val::Bytes(encode("instances", inst)?),
            ],
        ))
    }

    fn instance_put_ops(
        ops: &mut Vec<Op>,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<(), RepoError> {
        instance.validate()?;
        ops.push(Self::instance_row(instance)?);
        let left_waiting = instance.status != InstanceStatus::WaitingDispatch
            && prev.is_none_or(|p| p == InstanceStatus::WaitingDispatch);
        if left_waiting {
            ops.push(Op::Delete(
                Table::DelayedRuns,
                vec![i64s(Some(big(instance.id.0)?))],
            ));
        }
        Ok(())
    }

    fn trigger_op(table: Table, id: u64, t: &TriggerRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            table,
            vec![
                i64s(Some(big(id)?)),
                i64s(t.next_trigger),
                i64s(Some(big(t.runs)?)),
            ],
        ))
    }

    fn alarm_op(alarm: &AlarmRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Alarms,
            vec![
                i64s(Some(big(alarm.app_id.0)?)),
                i64s(Some(big(alarm.seq)?)),
                Val::Bool(alarm.status == DeliveryStatus::Pending),
                text(&alarm.id),
                i64s(Some(big(alarm.job_id.0)?)),
                i64s(alarm.instance_id.map(|i| big(i.0)).transpose()?),
                text(&name_of(&alarm.kind)),
                i64s(Some(alarm.raised_at)),
                text(match alarm.status {
                    DeliveryStatus::Pending => "PENDING",
                    DeliveryStatus::Delivered => "DELIVERED",
                    DeliveryStatus::Failed => "FAILED",
                    DeliveryStatus::Recorded => "RECORDED",
                }),
                Val::Bytes(encode("alarms", alarm)?),
            ],
        ))
    }

    fn wf_instance_op(rec: &WfInstanceRecord, finished: bool) -> Result<Op, RepoError> {
        // The snapshot column is for people; the record is the source of truth.
        let snapshot = if serde_json::from_str::<serde_json::Value>(&rec.snapshot_json).is_ok() {
            rec.snapshot_json.clone()
        } else {
            "null".to_owned()
        };
        Ok(Op::Put(
            Table::WorkflowInstances,
            vec![
                i64s(Some(big(rec.id.0)?)),
                i64s(Some(big(rec.app_id.0)?)),
                i64s(Some(big(rec.workflow_id.0)?)),
                i64s(Some(big(rec.version)?)),
                i64s(Some(big(rec.run)?)),
                Val::Bool(finished),
                i64s(rec.delayed_until),
                Val::Text(Some(snapshot)),
                Val::Bytes(encode("workflow_instances", rec)?),
            ],
        ))
    }

    fn workflow_op(rec: &WorkflowRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Workflows,
            vec![
                i64s(Some(big(rec.id.0)?)),
                i64s(Some(big(rec.app_id.0)?)),
                text(&rec.name),
                i64s(Some(big(rec.version)?)),
                i64s(Some(rec.created_at)),
                i64s(Some(rec.updated_at)),
            ],
        ))
    }

    fn job_op(job: &JobRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Jobs,
            vec![
                i64s(Some(big(job.id.0)?)),
                i64s(Some(big(job.app_id.0)?)),
                text(&job.name),
                Val::Bool(job.enabled),
                text(&name_of(&job.time_expression_type)),
                text(&job.time_expression),
                text(&name_of(&job.execute_type)),
                text(&job.processor),
                i64s(Some(job.created_at)),
                i64s(Some(job.updated_at)),
                Val::Bytes(encode_job(job)?),
            ],
        ))
    }

    fn app_from(row: &Row) -> Result<AppRecord, RepoError> {
        Ok(AppRecord {
            id: AppId(unsigned("apps", get(row, 0)?)?),
            name: get(row, 1)?,
            secret: get(row, 2)?,
            created_at: get(row, 3)?,
        })
    }

    fn workflow_from(row: &Row) -> Result<WorkflowRecord, RepoError> {
        Ok(WorkflowRecord {
            id: WorkflowId(unsigned("workflows", get(row, 0)?)?),
            app_id: AppId(unsigned("workflows", get(row, 1)?)?),
            name: get(row, 2)?,
            version: unsigned("workflows", get(row, 3)?)?,
            created_at: get(row, 4)?,
            updated_at: get(row, 5)?,
        })
    }

    fn instance_from(row: &Row, col: usize) -> Result<InstanceRecord, RepoError> {
        let bytes: Vec<u8> = get(row, col)?;
        let id: i64 = get(row, 0)?;
        decode("instances", &id.to_be_bytes(), &bytes)
    }

    // ----- apps -----

    fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        let mut app = AppRecord {
            id: AppId(0),
            name: name.to_owned(),
            secret: secret.to_owned(),
            created_at: now,
        };
        app.validate()?;
        let mut inner = self.lock();
        if inner.app_names.contains_key(name) {
            return Err(RepoError::Conflict {
                what: "app",
                name: name.to_owned(),
            });
        }
        let mut next = inner.next_app;
        app.id = AppId(alloc(&mut next, "app")?);
        let ops = vec![
            Op::Put(
                Table::Apps,
                vec![
                    i64s(Some(big(app.id.0)?)),
                    text(&app.name),
                    text(&app.secret),
                    i64s(Some(app.created_at)),
                ],
            ),
            counter_op("next_app_id", big(next)?),
        ];
        inner.next_app = next;
        inner.app_names.insert(name.to_owned(), app.id);
        Ok(self.submit(ops, app))
    }

    fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        match self.query_opt(
            "SELECT id, name, secret, created_at FROM apps WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => Self::app_from(&row),
            None => Err(RepoError::not_found("app", id.0)),
        }
    }

    fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        if name.len() > MAX_NAME_LEN {
            let shown: String = name.chars().take(32).collect();
            return Err(RepoError::not_found("app", format!("{shown}...")));
        }
        match self.query_opt(
            "SELECT id, name, secret, created_at FROM apps WHERE name = $1",
            vec![Box::new(name.to_owned())],
        )? {
            Some(row) => Self::app_from(&row),
            None => Err(RepoError::not_found("app", name)),
        }
    }

    fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        self.query(
            "SELECT id, name, secret, created_at FROM apps ORDER BY id",
            vec![],
        )?
        .iter()
        .map(Self::app_from)
        .collect()
    }

    // ----- jobs -----

    fn create_job(
        &self,
        mut job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        job.validate()?;
        self.get_app(job.app_id)?;
        job.created_at = now;
        job.updated_at = now;
        let mut inner = self.lock();
        let mut next = inner.next_job;
        job.id = JobId(alloc(&mut next, "job")?);
        let trigger = TriggerRecord {
            next_trigger,
            runs: 0,
        };
        let ops = vec![
            Self::job_op(&job)?,
            Self::trigger_op(Table::Triggers, job.id.0, &trigger)?,
            counter_op("next_job_id", big(next)?),
        ];
        inner.next_job = next;
        self.triggers.insert(job.id, trigger);
        Ok(self.submit(ops, job))
    }

    fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM jobs WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => decode_job(&keys::id(id.0), &get::<Vec<u8>>(&row, 0)?),
            None => Err(RepoError::not_found("job", id.0)),
        }
    }

    fn update_job(
        &self,
        mut job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        job.validate()?;
        let old = self.get_job(job.id)?;
        if old.app_id != job.app_id {
            return Err(RepoError::invalid(
                "app_id",
                format!("{} belongs to {}, not {}", job.id, old.app_id, job.app_id),
            ));
        }
        job.created_at = old.created_at;
        job.updated_at = now;
        let mut entry = self.triggers.entry(job.id).or_default();
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let ops = vec![
            Self::job_op(&job)?,
            Self::trigger_op(Table::Triggers, job.id.0, &trigger)?,
        ];
        *entry = trigger;
        let commit = self.submit(ops, job);
        drop(entry);
        Ok(commit)
    }

    fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        let job = self.get_job(id)?;
        let key = vec![i64s(Some(big(id.0)?))];
        let ops = vec![
            Op::Delete(Table::Jobs, key.clone()),
            Op::Delete(Table::Triggers, key),
        ];
        self.triggers.remove(&id);
        Ok(self.submit(ops, job))
    }

    fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let app_id = big(app.0)?;
        let mut after = cursor.map(big).transpose()?.unwrap_or(0);
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.query(
                "SELECT id, record FROM jobs WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                vec![
                    Box::new(app_id),
                    Box::new(after),
                    Box::new(i64::try_from(chunk).unwrap_or(i64::MAX)),
                ],
            )?;
            let exhausted = rows.len() < chunk;
            for row in &rows {
                scanned += 1;
                let raw: i64 = get(row, 0)?;
                after = raw;
                let id = unsigned("jobs", raw)?;
                let job = decode_job(&keys::id(id), &get::<Vec<u8>>(row, 1)?)?;
                if filter.matches(&job) {
                    items.push(job);
                    if items.len() == limit {
                        return Ok(Page {
                            items,
                            next_cursor: Some(id),
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if scanned >= MAX_LIST_SCAN {
                return Ok(Page {
                    items,
                    next_cursor: Some(unsigned("jobs", after)?),
                });
            }
        }
    }

    fn set_next_trigger_when(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        let Some(mut entry) = self.triggers.get_mut(&id) else {
            return Err(RepoError::not_found("job", id.0));
        };
        if !still_current() {
            return Ok(None);
        }
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let ops = vec![Self::trigger_op(Table::Triggers, id.0, &trigger)?];
        *entry = trigger;
        Ok(Some(self.submit(ops, trigger)))
    }

    // ----- instances -----

    fn fire_when(
        &self,
        mut instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError> {
        instance.validate()?;
        let Some(mut entry) = self.triggers.get_mut(&instance.job_id) else {
            return Err(RepoError::not_found("job", instance.job_id.0));
        };
        if !still_current() {
            return Ok(None);
        }
        let mut trigger = *entry;
        trigger.runs = trigger.runs.saturating_add(1);
        trigger.next_trigger = next_trigger;
        instance.run = trigger.runs;
        instance.id = InstanceId(self.alloc(&self.instance_ids, 1)?);
        let ops = vec![
            Self::instance_row(&instance)?,
            Self::trigger_op(Table::Triggers, instance.job_id.0, &trigger)?,
        ];
        let commit = self.submit(ops, instance);
        *entry = trigger;
        Ok(Some(commit))
    }

    fn create_instance(
        &self,
        mut instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        instance.validate()?;
        if !self.triggers.contains_key(&instance.job_id) {
            return Err(RepoError::not_found("job", instance.job_id.0));
        }
        instance.id = InstanceId(self.alloc(&self.instance_ids, 1)?);
        let mut ops = vec![Self::instance_row(&instance)?];
        if let Some(due) = delayed_until {
            ops.push(Op::Put(
                Table::DelayedRuns,
                vec![
                    i64s(Some(big(instance.id.0)?)),
                    i64s(Some(big(instance.job_id.0)?)),
                    i64s(Some(due)),
                ],
            ));
        }
        Ok(self.submit(ops, instance))
    }

    fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        match self.query_opt(
            "SELECT id, record FROM instances WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => Self::instance_from(&row, 1),
            None => Err(RepoError::not_found("instance", id.0)),
        }
    }

    fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        let mut ops = Vec::with_capacity(2);
        Self::instance_put_ops(&mut ops, instance, prev)?;
        Ok(self.submit(ops, ()))
    }

    fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        instance.validate()?;
        let old = self.get_instance(instance.id)?;
        if old.job_id != instance.job_id || old.app_id != instance.app_id {
            return Err(RepoError::invalid(
                "job_id",
                format!("{} belongs to {}", instance.id, old.job_id),
            ));
        }
        self.put_instance_from(instance, None)
    }

    fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (sql, parent): (&'static str, u64) = match filter.job {
            Some(job) => (
                "SELECT id, record FROM instances WHERE job_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                job.0,
            ),
            None => (
                "SELECT id, record FROM instances WHERE app_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                app.0,
            ),
        };
        let parent = big(parent)?;
        let mut before = cursor.map(big).transpose()?.unwrap_or(i64::MAX);
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.query(
                sql,
                vec![
                    Box::new(parent),
                    Box::new(before),
                    Box::new(i64::try_from(chunk).unwrap_or(i64::MAX)),
                ],
            )?;
            let exhausted = rows.len() < chunk;
            for row in &rows {
                scanned += 1;
                before = get(row, 0)?;
                let inst = Self::instance_from(row, 1)?;
                if inst.app_id == app && filter.matches(&inst) {
                    let id = inst.id.0;
                    items.push(inst);
                    if items.len() == limit {
                        return Ok(Page {
                            items,
                            next_cursor: Some(id),
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if scanned >= MAX_LIST_SCAN {
                return Ok(Page {
                    items,
                    next_cursor: Some(unsigned("instances", before)?),
                });
            }
        }
    }

    fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError> {
        let inst = self.get_instance(id)?;
        if !force && !inst.status.is_final() {
            return Err(RepoError::IllegalTransition {
                instance: id.0,
                from: inst.status,
                action: "be deleted",
            });
        }
        let key = big(id.0)?;
        let ops = vec![
            Op::DeleteLogsOf(key),
            Op::Delete(Table::Instances, vec![i64s(Some(key))]),
            Op::Delete(Table::DelayedRuns, vec![i64s(Some(key))]),
        ];
        Ok(self.submit(ops, ()))
    }

    fn finished_beyond_where(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
        fires_only: bool,
    ) -> Result<Vec<InstanceId>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let job = big(job.0)?;
        let mut before = i64::MAX;
        let mut finished = 0usize;
        let mut scanned = 0usize;
        let mut out = Vec::new();
        while scanned < MAX_LIST_SCAN {
            let rows = self.query(
                "SELECT id, final, run FROM instances WHERE job_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT 256",
                vec![Box::new(job), Box::new(before)],
            )?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                scanned += 1;
                before = get(row, 0)?;
                let is_final: bool = get(row, 1)?;
                let run: i64 = get(row, 2)?;
                if is_final && (!fires_only || run > 0) {
                    finished += 1;
                    if finished > keep {
                        out.push(InstanceId(unsigned("instances", before)?));
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError> {
        let mut start = big(from.0)?;
        let mut out = Vec::new();
        let mut examined = 0usize;
        let mut young_run = 0usize;
        loop {
            let rows = self.query(
                "SELECT id, trigger_time, final, finished_time FROM instances WHERE id >= $1 \
                 ORDER BY id LIMIT 256",
                vec![Box::new(start)],
            )?;
            if rows.is_empty() {
                return Ok((out, None));
            }
            for row in &rows {
                examined += 1;
                let raw: i64 = get(row, 0)?;
                start = raw.saturating_add(1);
                let id = unsigned("instances", raw)?;
                let trigger_time: i64 = get(row, 1)?;
                let is_final: bool = get(row, 2)?;
                let finished_time: Option<i64> = get(row, 3)?;
                if trigger_time >= cutoff {
                    young_run += 1;
                    if young_run >= AGE_SCAN_YOUNG_RUN {
                        return Ok((out, None));
                    }
                } else {
                    young_run = 0;
                }
                if is_final && finished_time.is_some_and(|t| t < cutoff) {
                    out.push(InstanceId(id));
                }
                if out.len() >= limit || examined >= max_examine {
                    return Ok((out, id.checked_add(1).map(InstanceId)));
                }
            }
        }
    }

    // ----- logs -----

    fn append_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        let mut out = LogAppend {
            stored: 0,
            dropped: 0,
            truncated: 0,
        };
        let mut kept = Vec::new();
        for mut line in lines {
            if kept.len() == MAX_LOG_APPEND {
                out.dropped += 1;
                continue;
            }
            if line.content.len() > MAX_LOG_LINE_LEN {
                line.content = truncate_marked(&line.content, MAX_LOG_LINE_LEN);
                out.truncated += 1;
            }
            kept.push(line);
        }
        let mut ops = Vec::with_capacity(kept.len());
        if !kept.is_empty() {
            // At most MAX_LOG_APPEND lines: the cast is lossless.
            let first = self.alloc(&self.log_seqs, kept.len() as u64)?;
            let instance = big(id.0)?;
            for (seq, line) in (first..).zip(&kept) {
                ops.push(Op::Put(
                    Table::Logs,
                    vec![
                        i64s(Some(instance)),
                        i64s(Some(big(seq)?)),
                        i64s(Some(line.time)),
                        text(&name_of(&line.level)),
                        text(&line.content),
                    ],
                ));
                out.stored += 1;
            }
        }
        Ok(self.submit(ops, out))
    }

    fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT seq, time, level, content FROM logs WHERE instance_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
            vec![
                Box::new(big(id.0)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(-1)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq = unsigned("logs", get(row, 0)?)?;
            let level: String = get(row, 2)?;
            let level: LogLevel = serde_json::from_value(serde_json::Value::String(level))
                .map_err(|e| RepoError::corrupt("logs", &keys::pair(id.0, seq), e.to_string()))?;
            items.push(LogEntry {
                seq,
                line: LogLine {
                    time: get(row, 1)?,
                    level,
                    content: get(row, 3)?,
                },
            });
        }
        let next_cursor = match items.last() {
            Some(e) if items.len() == limit => Some(e.seq),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    // ----- workflows -----

    fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        self.get_app(app)?;
        let id = WorkflowId(self.alloc(&self.workflow_ids, 1)?);
        let rec = WorkflowRecord {
            id,
            app_id: app,
            name: def.name.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let trigger = TriggerRecord {
            next_trigger,
            runs: 0,
        };
        let ops = vec![
            Self::workflow_op(&rec)?,
            Op::Put(
                Table::WorkflowVersions,
                vec![
                    i64s(Some(big(id.0)?)),
                    i64s(Some(1)),
                    Val::Text(Some(def_json(def)?)),
                ],
            ),
            Self::trigger_op(Table::WorkflowTriggers, id.0, &trigger)?,
        ];
        self.wf_triggers.insert(id, trigger);
        Ok(self.submit(ops, rec))
    }

    fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        match self.query_opt(
            "SELECT id, app_id, name, version, created_at, updated_at FROM workflows \
             WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => Self::workflow_from(&row),
            None => Err(RepoError::not_found("workflow", id.0)),
        }
    }

    fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError> {
        match self.query_opt(
            "SELECT definition::text FROM workflow_versions WHERE workflow_id = $1 \
             AND version = $2",
            vec![Box::new(big(id.0)?), Box::new(big(version)?)],
        )? {
            Some(row) => {
                let json: String = get(&row, 0)?;
                serde_json::from_str(&json).map_err(|e| {
                    RepoError::corrupt(
                        "workflow_versions",
                        &keys::pair(id.0, version),
                        format!("definition JSON: {e}"),
                    )
                })
            }
            None => Err(RepoError::not_found("workflow", id.0)),
        }
    }

    fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        let mut rec = self.get_workflow(id)?;
        rec.version = rec.version.saturating_add(1);
        rec.name = def.name.clone();
        rec.updated_at = now;
        let mut entry = self.wf_triggers.entry(id).or_default();
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let ops = vec![
            Self::workflow_op(&rec)?,
            Op::Put(
                Table::WorkflowVersions,
                vec![
                    i64s(Some(big(id.0)?)),
                    i64s(Some(big(rec.version)?)),
                    Val::Text(Some(def_json(def)?)),
                ],
            ),
            Self::trigger_op(Table::WorkflowTriggers, id.0, &trigger)?,
        ];
        *entry = trigger;
        let commit = self.submit(ops, rec);
        drop(entry);
        Ok(commit)
    }

    fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError> {
        let rec = self.get_workflow(id)?;
        let key = vec![i64s(Some(big(id.0)?))];
        let ops = vec![
            Op::Delete(Table::Workflows, key.clone()),
            Op::Delete(Table::WorkflowTriggers, key),
        ];
        self.wf_triggers.remove(&id);
        Ok(self.submit(ops, rec))
    }

    fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let app_id = big(app.0)?;
        let mut after = cursor.map(big).transpose()?.unwrap_or(0);
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.query(
                "SELECT id, app_id, name, version, created_at, updated_at FROM workflows \
                 WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                vec![
                    Box::new(app_id),
                    Box::new(after),
                    Box::new(i64::try_from(chunk).unwrap_or(i64::MAX)),
                ],
            )?;
            let exhausted = rows.len() < chunk;
            for row in &rows {
                scanned += 1;
                let w = Self::workflow_from(row)?;
                after = big(w.id.0)?;
                if !filter.name_matches(&w.name) {
                    continue;
                }
                if filter.needs_definition() {
                    match self.workflow_def(w.id, w.version) {
                        Ok(def) if filter.matches(&def) => {}
                        Ok(_) | Err(RepoError::NotFound { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let id = w.id.0;
                items.push(w);
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next_cursor: Some(id),
                    });
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if scanned >= MAX_LIST_SCAN {
                return Ok(Page {
                    items,
                    next_cursor: Some(unsigned("workflows", after)?),
                });
            }
        }
    }

    fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        let Some(mut entry) = self.wf_triggers.get_mut(&id) else {
            return Err(RepoError::not_found("workflow", id.0));
        };
        if !still_current() {
            return Ok(None);
        }
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let ops = vec![Self::trigger_op(Table::WorkflowTriggers, id.0, &trigger)?];
        *entry = trigger;
        Ok(Some(self.submit(ops, trigger)))
    }

    fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord> {
        let mut entry = self.wf_triggers.get_mut(&id)?;
        if !still_current() {
            return None;
        }
        entry.runs = entry.runs.saturating_add(1);
        entry.next_trigger = next_trigger;
        Some(*entry)
    }

    fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        let mut ops = Vec::new();
        for (inst, prev) in &w.instances {
            Self::instance_put_ops(&mut ops, inst, *prev)?;
        }
        for (rec, _created, finished) in &w.wf_instances {
            ops.push(Self::wf_instance_op(rec, *finished)?);
        }
        for (inst, link) in &w.job_instances {
            inst.validate()?;
            ops.push(Self::instance_row(inst)?);
            ops.push(Op::Put(
                Table::NodeLinks,
                vec![
                    i64s(Some(big(inst.id.0)?)),
                    i64s(Some(big(link.wf_instance.0)?)),
                    i64s(Some(big(link.node.0)?)),
                    i64s(Some(i64::from(link.attempt))),
                    text(&link.context_json),
                ],
            ));
        }
        if let Some((id, row)) = &w.trigger {
            ops.push(Self::trigger_op(Table::WorkflowTriggers, id.0, row)?);
        }
        Ok(self.submit(ops, ()))
    }

    fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM workflow_instances WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => decode(
                "workflow_instances",
                &keys::id(id.0),
                &get::<Vec<u8>>(&row, 0)?,
            ),
            None => Err(RepoError::not_found("workflow instance", id.0)),
        }
    }

    fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        let Some(row) = self.query_opt(
            "SELECT workflow_instance_id, node, attempt, context FROM node_links \
             WHERE instance_id = $1",
            vec![Box::new(big(id.0)?)],
        )?
        else {
            return Ok(None);
        };
        let attempt: i64 = get(&row, 2)?;
        Ok(Some(NodeLinkRecord {
            wf_instance: WorkflowInstanceId(unsigned("node_links", get(&row, 0)?)?),
            node: NodeId(unsigned("node_links", get(&row, 1)?)?),
            attempt: u32::try_from(attempt).map_err(|_| {
                RepoError::corrupt("node_links", &keys::id(id.0), "attempt out of range")
            })?,
            context_json: get(&row, 3)?,
        }))
    }

    fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (sql, parent): (&'static str, u64) = match workflow {
            Some(w) => (
                "SELECT id, record FROM workflow_instances WHERE workflow_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                w.0,
            ),
            None => (
                "SELECT id, record FROM workflow_instances WHERE app_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                app.0,
            ),
        };
        let rows = self.query(
            sql,
            vec![
                Box::new(big(parent)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(i64::MAX)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            let id: i64 = get(row, 0)?;
            last = Some(unsigned("workflow_instances", id)?);
            let rec: WfInstanceRecord = decode(
                "workflow_instances",
                &id.to_be_bytes(),
                &get::<Vec<u8>>(row, 1)?,
            )?;
            if rec.app_id == app {
                items.push(rec);
            }
        }
        let next_cursor = if rows.len() == limit { last } else { None };
        Ok(Page { items, next_cursor })
    }

    fn load_workflows(&self) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        let mut wfs = Vec::new();
        for row in self.query(
            "SELECT id, app_id, name, version, created_at, updated_at FROM workflows ORDER BY id",
            vec![],
        )? {
            let rec = Self::workflow_from(&row)?;
            let def = self.workflow_def(rec.id, rec.version)?;
            let trigger = self
                .wf_triggers
                .get(&rec.id)
                .map(|t| *t)
                .unwrap_or_default();
            wfs.push(LoadedWorkflow {
                record: rec,
                def,
                trigger,
            });
        }
        let mut active = Vec::new();
        for row in self.query(
            "SELECT id, record FROM workflow_instances WHERE NOT finished ORDER BY id",
            vec![],
        )? {
            let id: i64 = get(&row, 0)?;
            active.push(decode(
                "workflow_instances",
                &id.to_be_bytes(),
                &get::<Vec<u8>>(&row, 1)?,
            )?);
        }
        Ok((wfs, active))
    }

    // ----- alarms and channels -----

    fn alarms_ops(&self, ops: &mut Vec<Op>, alarms: &mut [AlarmRecord]) -> Result<(), RepoError> {
        if !alarms.is_empty() {
            let n = u64::try_from(alarms.len()).unwrap_or(u64::MAX);
            let first = self.alloc(&self.alarm_seqs, n)?;
            for (seq, alarm) in (first..).zip(alarms.iter_mut()) {
                alarm.seq = seq;
                ops.push(Self::alarm_op(alarm)?);
            }
        }
        Ok(())
    }

    fn alarm_from(row: &Row) -> Result<AlarmRecord, RepoError> {
        let app: i64 = get(row, 0)?;
        let seq: i64 = get(row, 1)?;
        let mut key = app.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        decode("alarms", &key, &get::<Vec<u8>>(row, 2)?)
    }

    fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (app, seq) = match after {
            Some((a, s)) => (big(a.0)?, big(s)?),
            None => (-1, -1),
        };
        self.query(
            "SELECT app_id, seq, record FROM alarms WHERE pending AND (app_id, seq) > ($1, $2) \
             ORDER BY app_id, seq LIMIT $3",
            vec![
                Box::new(app),
                Box::new(seq),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?
        .iter()
        .map(Self::alarm_from)
        .collect()
    }

    fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT app_id, seq, record FROM alarms WHERE app_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3",
            vec![
                Box::new(big(app.0)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(i64::MAX)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let items = rows
            .iter()
            .map(Self::alarm_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match items.last() {
            Some(a) if rows.len() == limit => Some(a.seq),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let app_id = big(app.0)?;
        let rows = self.query(
            "SELECT seq, pending FROM alarms WHERE app_id = $1 ORDER BY seq DESC LIMIT $2",
            vec![
                Box::new(app_id),
                Box::new(i64::try_from(keep.saturating_add(limit)).unwrap_or(i64::MAX)),
            ],
        )?;
        let mut ops = Vec::new();
        for row in rows.iter().skip(keep) {
            let seq: i64 = get(row, 0)?;
            let pending: bool = get(row, 1)?;
            if !pending {
                ops.push(Op::Delete(
                    Table::Alarms,
                    vec![i64s(Some(app_id)), i64s(Some(seq))],
                ));
            }
        }
        let n = ops.len();
        Ok(self.submit(ops, n))
    }

    fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        channel.validate()?;
        self.get_app(channel.app_id)?;
        let app_id = big(channel.app_id.0)?;
        let exists = self
            .query_opt(
                "SELECT 1 FROM channels WHERE app_id = $1 AND name = $2",
                vec![Box::new(app_id), Box::new(channel.name.clone())],
            )?
            .is_some();
        if !exists && self.list_channels(channel.app_id)?.len() >= MAX_CHANNELS_PER_APP {
            return Err(RepoError::invalid(
                "name",
                format!("an app has at most {MAX_CHANNELS_PER_APP} channels"),
            ));
        }
        let ops = vec![Op::Put(
            Table::Channels,
            vec![
                i64s(Some(app_id)),
                text(&channel.name),
                text(&name_of(&channel.kind)),
                text(&channel.url),
                Val::Bytes(encode("channels", channel)?),
            ],
        )];
        Ok(self.submit(ops, ()))
    }

    fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM channels WHERE app_id = $1 AND name = $2",
            vec![Box::new(big(app.0)?), Box::new(name.to_owned())],
        )? {
            Some(row) => decode("channels", name.as_bytes(), &get::<Vec<u8>>(&row, 0)?),
            None => Err(RepoError::NotFound {
                what: "channel",
                id: name
                    .chars()
                    .take(super::alarm_repo::MAX_CHANNEL_NAME_LEN)
                    .collect(),
            }),
        }
    }

    fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.get_channel(app, name)?;
        let ops = vec![Op::Delete(
            Table::Channels,
            vec![i64s(Some(big(app.0)?)), text(name)],
        )];
        Ok(self.submit(ops, ()))
    }

    fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        let rows = self.query(
            "SELECT name, record FROM channels WHERE app_id = $1 ORDER BY name LIMIT $2",
            vec![
                Box::new(big(app.0)?),
                Box::new(i64::try_from(MAX_CHANNELS_PER_APP + 1).unwrap_or(i64::MAX)),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, 0)?;
                decode("channels", name.as_bytes(), &get::<Vec<u8>>(row, 1)?)
            })
            .collect()
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
        self.submit(Vec::new(), ()).wait()
    }
}

fn counter_op(name: &str, next: i64) -> Op {
    Op::Put(Table::Counters, vec![text(name), i64s(Some(next))])
}

fn def_json(def: &WorkflowDef) -> Result<String, RepoError> {
    serde_json::to_string(def).map_err(|e| RepoError::invalid("workflow", e.to_string()))
}

impl Repository for PgRepo {
    fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        PgRepo::create_app(self, name, secret, now)
    }
    fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        PgRepo::get_app(self, id)
    }
    fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        PgRepo::get_app_by_name(self, name)
    }
    fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        PgRepo::list_apps(self)
    }
    fn create_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        PgRepo::create_job(self, job, next_trigger, now)
    }
    fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        PgRepo::get_job(self, id)
    }
    fn update_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        PgRepo::update_job(self, job, next_trigger, now)
    }
    fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        PgRepo::delete_job(self, id)
    }
    fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError> {
        PgRepo::list_jobs(self, app, filter, cursor, limit)
    }
    fn trigger(&self, id: JobId) -> Option<TriggerRecord> {
        self.triggers.get(&id).map(|t| *t)
    }
    fn set_next_trigger(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<TriggerRecord>, RepoError> {
        PgRepo::set_next_trigger_when(self, id, next_trigger, &mut || true)?
            .ok_or_else(|| RepoError::not_found("job", id.0))
    }
    fn set_next_trigger_when(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        PgRepo::set_next_trigger_when(self, id, next_trigger, still_current)
    }
    fn fire(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        let job = instance.job_id;
        PgRepo::fire_when(self, instance, next_trigger, &mut || true)?
            .ok_or_else(|| RepoError::not_found("job", job.0))
    }
    fn fire_when(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError> {
        PgRepo::fire_when(self, instance, next_trigger, still_current)
    }
    fn create_instance(
        &self,
        instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        PgRepo::create_instance(self, instance, delayed_until)
    }
    fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        PgRepo::get_instance(self, id)
    }
    fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::update_instance(self, instance)
    }
    fn put_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::put_instance_from(self, instance, None)
    }
    fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        PgRepo::put_instance_from(self, instance, prev)
    }
    fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        PgRepo::list_instances(self, app, filter, cursor, limit)
    }
    fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_instance(self, id, force)
    }
    fn finished_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        PgRepo::finished_beyond_where(self, job, keep, limit, false)
    }
    fn finished_fires_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        PgRepo::finished_beyond_where(self, job, keep, limit, true)
    }
    fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError> {
        PgRepo::finished_before(self, cutoff, from, max_examine, limit)
    }
    fn append_log_lines(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        PgRepo::get_instance(self, id)?;
        PgRepo::append_live(self, id, lines)
    }
    fn append_log_lines_of_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        PgRepo::append_live(self, id, lines)
    }
    fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        PgRepo::read_logs(self, id, cursor, limit)
    }
    fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        PgRepo::create_workflow(self, app, def, next_trigger, now)
    }
    fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        PgRepo::get_workflow(self, id)
    }
    fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError> {
        PgRepo::workflow_def(self, id, version)
    }
    fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        PgRepo::update_workflow(self, id, def, next_trigger, now)
    }
    fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError> {
        PgRepo::delete_workflow(self, id)
    }
    fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        PgRepo::list_workflows(self, app, filter, cursor, limit)
    }
    fn wf_trigger(&self, id: WorkflowId) -> Option<TriggerRecord> {
        self.wf_triggers.get(&id).map(|t| *t)
    }
    fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        PgRepo::wf_set_next_trigger_when(self, id, next_trigger, still_current)
    }
    fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord> {
        PgRepo::wf_fire_row_when(self, id, next_trigger, still_current)
    }
    fn new_wf_instance_id(&self) -> Result<WorkflowInstanceId, RepoError> {
        Ok(WorkflowInstanceId(self.alloc(&self.wf_instance_ids, 1)?))
    }
    fn new_instance_id(&self) -> Result<InstanceId, RepoError> {
        Ok(InstanceId(self.alloc(&self.instance_ids, 1)?))
    }
    fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        PgRepo::write_wf(self, w)
    }
    fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError> {
        PgRepo::get_wf_instance(self, id)
    }
    fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        PgRepo::node_link(self, id)
    }
    fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        PgRepo::list_wf_instances(self, app, workflow, cursor, limit)
    }
    fn load_workflows(&self) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        PgRepo::load_workflows(self)
    }
    fn put_instance_with_alarms(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
        mut alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        let mut ops = Vec::new();
        Self::instance_put_ops(&mut ops, instance, prev)?;
        self.alarms_ops(&mut ops, &mut alarms)?;
        Ok(self.submit(ops, alarms))
    }
    fn insert_alarms(
        &self,
        mut alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        let mut ops = Vec::new();
        self.alarms_ops(&mut ops, &mut alarms)?;
        Ok(self.submit(ops, alarms))
    }
    fn update_alarm(&self, alarm: &AlarmRecord) -> Result<Commit<()>, RepoError> {
        Ok(self.submit(vec![Self::alarm_op(alarm)?], ()))
    }
    fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        PgRepo::pending_alarms(self, after, limit)
    }
    fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        PgRepo::list_alarms(self, app, cursor, limit)
    }
    fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        PgRepo::prune_alarms(self, app, keep, limit)
    }
    fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::put_channel(self, channel)
    }
    fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        PgRepo::get_channel(self, app, name)
    }
    fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_channel(self, app, name)
    }
    fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        PgRepo::list_channels(self, app)
    }
    fn load(&self) -> Result<LoadedState, RepoError> {
        PgRepo::load(self)
    }
    fn flush(&self) -> Result<(), RepoError> {
        PgRepo::flush(self)
    }
}
