//! [`LogRepo`]: the server's durable state over any [`Store`], with no clock and no network;
//! the embedded implementation of [`Repository`](super::Repository).
//!
//! Every write builds one [`Batch`] — the record, its index rows and the id counter it used —
//! and submits it: a write is atomic, and an id is never handed out twice, even across a crash
//! (the counter is durable exactly when the row that used it is).
//!
//! Writes return a [`Commit`]: the value is final once the store acknowledges the batch.
//! `commit.await` (it is a runtime-agnostic `Future`) or `commit.wait()` (blocking). The wait
//! happens outside any lock, so many writes share one group commit of the log store.
//!
//! # No global lock on the hot path
//!
//! Instance ids and log sequence numbers come from `IdBlocks`: an atomic counter, and a
//! high-water mark persisted *ahead* of use in blocks of [`ID_BLOCK`] (hi-lo). The thread whose
//! id crosses the reserved mark submits the next reservation (under a lock taken once per
//! block) *before* publishing the new mark; every batch that uses an id below the mark is
//! submitted after that reservation, and both stores commit in submission order, so an
//! acknowledged id is always below the persisted mark: after a crash the counter restarts at
//! the mark and no id is handed out twice (ids skipped by a crash leave gaps). Trigger rows
//! live in a sharded `DashMap`; [`LogRepo::fire`] holds only its job's shard entry while it
//! submits, so fires of one job are submitted in the order their run counters were taken.
//! App and job ids (rare, cold) keep exact counters under a small lock of their own.
//!
//! Reads validate every stored value (see `codec.rs`): a corrupt value is
//! [`RepoError::Corrupt`] naming the table and key.
//!
//! Ordering: app and job batches are submitted under the cold lock in the order their ids were
//! allocated, so those counters never move backwards. If a commit fails (the log store then
//! refuses every further write until reopened), the in-memory counters, reserved app names and
//! trigger rows may be ahead of the store; reopening the repo rereads them from the store.
//!
//! Concurrency contract: the repo makes id allocation and the trigger rows safe. Read-modify-
//! write of one job or instance (`update_job`, `update_instance`) is the caller's to
//! serialize — the server core owns each job and instance on one task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;

use ferrojob_store::{Batch, KeyRange, Scan, Store};

use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::job_codec::{decode_job, encode_job};
use super::keys::{self, *};
use super::records::{AppRecord, DelayedRun, JobRecord, LogLine, TriggerRecord};
use crate::ids::AppId;

pub use super::commit::Commit;
pub use super::filters::{InstanceFilter, JobFilter, TimeRange, WorkflowFilter};

/// Largest page of a listing; a larger `limit` is clamped to it.
pub const MAX_PAGE: usize = 1000;
/// Most index rows one filtered listing (jobs, workflows, instances) examines; the page then
/// ends early with a cursor to continue from.
pub const MAX_LIST_SCAN: usize = 10_000;
/// Most log lines one [`LogRepo::append_logs`] stores; the rest are counted as dropped.
pub const MAX_LOG_APPEND: usize = 4096;
/// Most log lines [`LogRepo::delete_instance`] deletes per batch.
pub const MAX_DELETE_BATCH: usize = 10_000;

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Pass it back as the cursor to get the next page; `None` when the listing is exhausted.
    pub next_cursor: Option<u64>,
}

/// A stored log line and its position in the instance's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Position (cursor) of the line; grows in append order.
    pub seq: u64,
    /// The line.
    pub line: LogLine,
}

/// What [`LogRepo::append_logs`] stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogAppend {
    /// Lines stored.
    pub stored: usize,
    /// Lines dropped (beyond [`MAX_LOG_APPEND`]).
    pub dropped: usize,
    /// Lines whose content was cut to [`MAX_LOG_LINE_LEN`](super::MAX_LOG_LINE_LEN).
    pub truncated: usize,
}

/// A job with its schedule state, as [`LogRepo::load`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedJob {
    /// The job.
    pub job: JobRecord,
    /// Its next trigger and run counter.
    pub trigger: TriggerRecord,
}

/// Everything a restarting server needs to resume, in id order.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedState {
    /// Every app.
    pub apps: Vec<AppRecord>,
    /// Every job with its next trigger.
    pub jobs: Vec<LoadedJob>,
    /// Pending delayed API runs.
    pub delayed: Vec<DelayedRun>,
    /// Every instance not in a final status.
    pub active: Vec<InstanceRecord>,
}

/// Ids reserved per persisted high-water mark (hi-lo allocation, see the module docs).
pub const ID_BLOCK: u64 = 4096;

/// Lock-free id allocation with a persisted high-water mark (hi-lo); see the module docs.
#[derive(Debug)]
pub(super) struct IdBlocks {
    what: &'static str,
    key: &'static [u8],
    /// Next id to hand out.
    next: AtomicU64,
    /// Ids below this are covered by a submitted reservation.
    reserved: AtomicU64,
    /// Taken only to submit a reservation (once per [`ID_BLOCK`] ids).
    reserving: Mutex<()>,
}

impl IdBlocks {
    pub(super) fn new(what: &'static str, key: &'static [u8], start: u64) -> IdBlocks {
        IdBlocks {
            what,
            key,
            next: AtomicU64::new(start),
            reserved: AtomicU64::new(start),
            reserving: Mutex::new(()),
        }
    }

    /// `n` consecutive fresh ids (the first one returned), covered by a submitted reservation.
    pub(super) fn alloc(&self, store: &dyn Store, n: u64) -> Result<u64, RepoError> {
        self.alloc_with(n, |key, hi| {
            drop(store.submit(Batch::new().put(META, key, keys::id(hi))));
        })
    }

    /// [`alloc`](IdBlocks::alloc) for any backend: `reserve(key, hi)` submits the new
    /// high-water mark `hi` of counter `key`; it is called, under the reservation lock, before
    /// the mark is published, and the backend must commit it before any write submitted after
    /// it.
    pub(super) fn alloc_with(
        &self,
        n: u64,
        reserve: impl FnOnce(&'static [u8], u64),
    ) -> Result<u64, RepoError> {
        let first = self.next.fetch_add(n, Ordering::Relaxed);
        let end = first
            .checked_add(n)
            .filter(|e| *e < u64::MAX - 2 * ID_BLOCK)
            .ok_or_else(|| RepoError::invalid("id", format!("{} ids are exhausted", self.what)))?;
        if end > self.reserved.load(Ordering::Acquire) {
            let _g = self
                .reserving
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut hi = self.reserved.load(Ordering::Acquire);
            if end > hi {
                while hi < end {
                    hi = hi.saturating_add(ID_BLOCK);
                }
                // Submitted before the mark is published: every batch using an id below `hi`
                // is submitted after it (commit order = submission order).
                reserve(self.key, hi);
                self.reserved.store(hi, Ordering::Release);
            }
        }
        Ok(first)
    }
}

/// App and job counters and app names: cold state under a small lock of its own.
#[derive(Debug)]
pub(super) struct Cold {
    next_app: u64,
    next_job: u64,
    /// Every app name, including those submitted but not yet acknowledged (uniqueness).
    app_names: HashMap<String, AppId>,
}

/// The server's repository over a [`Store`] (see the module docs).
#[derive(Debug)]
pub struct LogRepo {
    pub(super) store: Arc<dyn Store>,
    cold: Mutex<Cold>,
    pub(super) instance_ids: IdBlocks,
    pub(super) log_seqs: IdBlocks,
    /// Every job's trigger row as last submitted (fire reads and bumps the run counter).
    pub(super) triggers: DashMap<JobId, TriggerRecord>,
    /// Workflow ids, workflow instance ids and workflow trigger rows.
    pub(super) wf: super::workflow_repo::WfCounters,
    /// Alarm sequence numbers (`alarm_repo.rs`).
    pub(super) alarm_seqs: IdBlocks,
    /// Audit sequence numbers per app (`history.rs`).
    pub(super) audit: super::history::LatestSeqs<AppId>,
    /// Newest version number per job (`history.rs`).
    pub(super) job_versions: super::history::LatestSeqs<JobId>,
}

pub(super) fn counter(store: &dyn Store, key: &[u8]) -> Result<u64, RepoError> {
    match store.get(META, key)? {
        None => Ok(1),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| RepoError::corrupt(META, key, "counter is not 8 bytes"))?;
            Ok(u64::from_be_bytes(bytes).max(1))
        }
    }
}

pub(super) fn alloc(next: &mut u64, what: &'static str) -> Result<u64, RepoError> {
    let id = *next;
    *next = next
        .checked_add(1)
        .ok_or_else(|| RepoError::invalid("id", format!("{what} ids are exhausted")))?;
    Ok(id)
}

impl LogRepo {
    /// Opens the repository over `store`: reads the id counters, app names and trigger rows.
    pub fn open(store: Arc<dyn Store>) -> Result<LogRepo, RepoError> {
        let mut app_names = HashMap::new();
        for kv in Scan::new(&*store, APP_NAMES, KeyRange::all()) {
            let (k, v) = kv?;
            let name = String::from_utf8(k.clone())
                .map_err(|_| RepoError::corrupt(APP_NAMES, &k, "name is not UTF-8"))?;
            app_names.insert(name, AppId(keys::read_id(APP_NAMES, &v)?));
        }
        let triggers = DashMap::new();
        for kv in Scan::new(&*store, TRIGGERS, KeyRange::all()) {
            let (k, v) = kv?;
            let job = JobId(keys::read_id(TRIGGERS, &k)?);
            triggers.insert(job, decode::<TriggerRecord>(TRIGGERS, &k, &v)?);
        }
        let cold = Cold {
            next_app: counter(&*store, NEXT_APP_ID)?,
            next_job: counter(&*store, NEXT_JOB_ID)?,
            app_names,
        };
        let instance_ids = IdBlocks::new(
            "instance",
            NEXT_INSTANCE_ID,
            counter(&*store, NEXT_INSTANCE_ID)?,
        );
        let log_seqs = IdBlocks::new("log", NEXT_LOG_SEQ, counter(&*store, NEXT_LOG_SEQ)?);
        let wf = super::workflow_repo::WfCounters::open(&*store)?;
        let alarm_seqs = IdBlocks::new(
            "alarm",
            super::alarm_repo::NEXT_ALARM_SEQ,
            counter(&*store, super::alarm_repo::NEXT_ALARM_SEQ)?,
        );
        Ok(LogRepo {
            audit: super::history::LatestSeqs::default(),
            job_versions: super::history::LatestSeqs::default(),
            wf,
            alarm_seqs,
            store,
            cold: Mutex::new(cold),
            instance_ids,
            log_seqs,
            triggers,
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Cold> {
        // The lock guards plain counters and maps that are updated only after every fallible
        // step, so a panic elsewhere cannot leave them half-written.
        self.cold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn submit<T>(&self, batch: Batch, value: T) -> Commit<T> {
        Commit::of_store(value, self.store.submit(batch))
    }

    pub(super) fn get_record<T>(
        &self,
        table: &'static str,
        key: &[u8],
        what: &'static str,
        id: u64,
    ) -> Result<T, RepoError>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
    {
        match self.store.get(table, key)? {
            None => Err(RepoError::not_found(what, id)),
            Some(v) => decode(table, key, &v),
        }
    }

    // ----- apps -----

    /// Creates an app with a unique `name`. Fails with [`RepoError::Conflict`] when the name
    /// is taken (also by a creation not yet acknowledged).
    pub fn create_app(
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
        let batch = Batch::new()
            .put(APPS, keys::id(app.id.0), encode(APPS, &app)?)
            .put(APP_NAMES, name.as_bytes(), keys::id(app.id.0))
            .put(META, NEXT_APP_ID, keys::id(next));
        inner.next_app = next;
        inner.app_names.insert(name.to_owned(), app.id);
        Ok(self.submit(batch, app))
    }

    /// Frees `name` for a new app (its app's deletion was submitted).
    pub(super) fn forget_app_name(&self, name: &str) {
        self.lock().app_names.remove(name);
    }

    /// The app `id`.
    pub fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        self.get_record(APPS, &keys::id(id.0), "app", id.0)
    }

    /// The app named `name`.
    pub fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        if name.len() > super::records::MAX_NAME_LEN {
            let shown: String = name.chars().take(32).collect();
            return Err(RepoError::not_found("app", format!("{shown}...")));
        }
        let id = match self.store.get(APP_NAMES, name.as_bytes())? {
            None => return Err(RepoError::not_found("app", name)),
            Some(v) => keys::read_id(APP_NAMES, &v)?,
        };
        self.get_app(AppId(id))
    }

    /// Every app, by id.
    pub fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        scan_records(&*self.store, APPS)
    }

    // ----- jobs -----

    /// Validates `job` and creates it in its app with a fresh id, `created_at = updated_at =
    /// now`, and its trigger row (`next_trigger`, run counter 0), in one batch.
    pub fn create_job(
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
        let batch = Batch::new()
            .put(JOBS, keys::id(job.id.0), encode_job(&job)?)
            .put(APP_JOBS, keys::pair(job.app_id.0, job.id.0), Vec::new())
            .put(TRIGGERS, keys::id(job.id.0), encode(TRIGGERS, &trigger)?)
            .put(META, NEXT_JOB_ID, keys::id(next));
        let batch = self.with_job_version(batch, &job, None)?;
        inner.next_job = next;
        self.triggers.insert(job.id, trigger);
        Ok(self.submit(batch, job))
    }

    /// The job `id`.
    pub fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        let key = keys::id(id.0);
        match self.store.get(JOBS, &key)? {
            None => Err(RepoError::not_found("job", id.0)),
            Some(v) => decode_job(&key, &v),
        }
    }

    /// Replaces job `job.id` (validated; its app cannot change; `created_at` is kept,
    /// `updated_at = now`) and sets its next trigger, keeping its run counter; the new
    /// definition is stored as the job's next version (`history.rs`).
    pub fn update_job(
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
        let batch = Batch::new()
            .put(JOBS, keys::id(job.id.0), encode_job(&job)?)
            .put(TRIGGERS, keys::id(job.id.0), encode(TRIGGERS, &trigger)?);
        let batch = self.with_job_version(batch, &job, Some(&old))?;
        *entry = trigger;
        Ok(self.submit(batch, job))
    }

    /// Deletes job `id`, its index row, its trigger row and its versions. Its instances and their logs stay
    /// (history); a running instance of it finishes normally.
    pub fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        let job = self.get_job(id)?;
        let batch = Batch::new()
            .delete(JOBS, keys::id(id.0))
            .delete(APP_JOBS, keys::pair(job.app_id.0, id.0))
            .delete(TRIGGERS, keys::id(id.0));
        let batch = self.without_job_versions(batch, id)?;
        // Removed before the delete is submitted: a fire after this point finds no job.
        self.triggers.remove(&id);
        Ok(self.submit(batch, job))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) jobs of `app` matching `filter`, after `cursor` (a
    /// job id), oldest first. Examines at most [`MAX_LIST_SCAN`] jobs; a page may then be short
    /// but still has a cursor to continue from.
    pub fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = keys::id(app.0);
        let mut range = KeyRange::prefix(&prefix);
        if let Some(c) = cursor {
            range = range.after(&keys::pair(app.0, c));
        }
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.store.range(APP_JOBS, &range, chunk)?;
            let exhausted = rows.len() < chunk;
            for (k, _) in &rows {
                scanned += 1;
                let id = keys::read_child(APP_JOBS, k)?;
                range = range.after(k);
                match self.get_job(JobId(id)) {
                    Ok(job) if filter.matches(&job) => {
                        items.push(job);
                        if items.len() == limit {
                            return Ok(Page {
                                items,
                                next_cursor: Some(id),
                            });
                        }
                    }
                    Ok(_) => {}
                    // Deleted between the index read and this one.
                    Err(RepoError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if scanned >= MAX_LIST_SCAN {
                let last = rows
                    .last()
                    .map(|(k, _)| keys::read_child(APP_JOBS, k))
                    .transpose()?;
                return Ok(Page {
                    items,
                    next_cursor: last,
                });
            }
        }
    }

    /// Job `id`'s trigger row as last written (including writes not yet acknowledged).
    pub fn trigger(&self, id: JobId) -> Option<TriggerRecord> {
        self.triggers.get(&id).map(|t| *t)
    }

    /// Moves job `id`'s next trigger without firing (FIXED_DELAY after a completion, enable,
    /// disable, a misfire skip), keeping its run counter.
    pub fn set_next_trigger(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<TriggerRecord>, RepoError> {
        self.set_next_trigger_if(id, next_trigger, || true)?
            .ok_or_else(|| RepoError::not_found("job", id.0))
    }

    /// [`set_next_trigger`](LogRepo::set_next_trigger), but only if `still_current()` holds while
    /// the job's trigger row is held (see [`fire_if`](LogRepo::fire_if)); `Ok(None)`: nothing
    /// was written.
    pub fn set_next_trigger_if(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        let Some(mut entry) = self.triggers.get_mut(&id) else {
            return Err(RepoError::not_found("job", id.0));
        };
        if !still_current() {
            return Ok(None);
        }
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let batch = Batch::new().put(TRIGGERS, keys::id(id.0), encode(TRIGGERS, &trigger)?);
        *entry = trigger;
        Ok(Some(self.submit(batch, trigger)))
    }

    // ----- restart -----

    /// Everything a restarting server resumes from: apps, jobs with their trigger rows,
    /// pending delayed runs and non-final instances, each in id order.
    pub fn load(&self) -> Result<LoadedState, RepoError> {
        let apps = self.list_apps()?;
        let mut jobs = Vec::new();
        let mut stored_jobs = Vec::new();
        for kv in Scan::new(&*self.store, JOBS, KeyRange::all()) {
            let (k, v) = kv?;
            stored_jobs.push(decode_job(&k, &v)?);
        }
        for job in stored_jobs {
            let trigger = match self.store.get(TRIGGERS, &keys::id(job.id.0))? {
                Some(v) => decode(TRIGGERS, &keys::id(job.id.0), &v)?,
                None => TriggerRecord::default(),
            };
            jobs.push(LoadedJob { job, trigger });
        }
        let delayed = scan_records(&*self.store, DELAYED)?;
        let mut active = Vec::new();
        for kv in Scan::new(&*self.store, ACTIVE, KeyRange::all()) {
            let (k, _) = kv?;
            let id = keys::read_id(ACTIVE, &k)?;
            match self.get_instance(InstanceId(id)) {
                Ok(inst) => active.push(inst),
                Err(RepoError::NotFound { .. }) => {
                    return Err(RepoError::corrupt(
                        ACTIVE,
                        &k,
                        format!("index row names missing instance {id}"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(LoadedState {
            apps,
            jobs,
            delayed,
            active,
        })
    }
}

/// Every record of `table`, in key order.
pub(super) fn scan_records<T>(store: &dyn Store, table: &'static str) -> Result<Vec<T>, RepoError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
{
    let mut out = Vec::new();
    for kv in Scan::new(store, table, KeyRange::all()) {
        let (k, v) = kv?;
        out.push(decode(table, &k, &v)?);
    }
    Ok(out)
}
