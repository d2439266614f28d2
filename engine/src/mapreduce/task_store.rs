//! [`TaskStore`]: every MAP/MAP_REDUCE instance's task tree, kept in a `ferrojob_store::Store`
//! so that memory does not grow with the number of tasks.
//!
//! # Key layout
//!
//! All integers are big-endian, so byte order is numeric order and one instance's keys are a
//! contiguous prefix range.
//!
//! ```text
//!   table       key                                         value
//!   mr.task     instance u64 | task_id u64                  version u8 | rkyv TaskRecord
//!   mr.pending  instance u64 | pending_seq u64              task_id u64
//!   mr.worker   instance u64 | len u16 | worker | task u64  (empty)
//!   mr.meta     instance u64                                version u8 | 7 × u64 counters
//! ```
//!
//! - `mr.pending` is the FIFO queue of pending tasks: a task gets a fresh `pending_seq` each
//!   time it becomes pending (mapped, retried, requeued), so a retried task queues behind the
//!   tasks already waiting and [`TaskStore::next_pending`] reads the queue's head only.
//! - `mr.worker` indexes the dispatched tasks by worker, for [`TaskStore::requeue_worker`].
//! - `mr.meta` holds `next_task_id, next_pending_seq, total, pending, running, succeeded,
//!   failed`, updated in the same batch as the tasks they count, so [`TaskStore::counts`] is
//!   one read.
//!
//! # Invariants
//!
//! - Every call that changes tasks commits one store batch (the paged calls `requeue_worker`
//!   and `delete_instance` commit one batch per page, each consistent on its own): a reader
//!   never sees counters that disagree with the tasks.
//! - A task is in `mr.pending` iff it is `Pending`, and in `mr.worker` under `w` iff it is
//!   `Dispatched { worker: w, .. }`.
//! - A task leaves `Dispatched` only through a report from the worker it was dispatched to, or
//!   a requeue of that worker: a stale report (the task was requeued or already finished) is
//!   [`Finish::Stale`] and changes nothing, so each task reaches `Succeeded` or `Failed` once.
//! - `map` is refused from a final parent, so once every task is final no task can appear.
//! - Nothing read from the store is trusted: a value that does not decode is
//!   [`TaskStoreError::Corrupt`], never a panic.
//!
//! Writers are serialised by a mutex inside the `TaskStore` (clones share it): two
//! `TaskStore`s over the same store must not write the same instance.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use ferrojob_store::{Batch, KeyRange, KeyValue, Store};
use parking_lot::Mutex;

use super::error::TaskStoreError;
pub use super::task::{Finish, TaskCounts, TaskRecord, TaskReport, TaskResult, TaskState};
use super::task_codec::{
    add, cap, decode_record, encode_record, instance_prefix, sub, task_key, u64_at, worker_key,
    worker_prefix, Meta,
};

/// Table of task records.
pub const TABLE_TASKS: &str = "mr.task";
/// Table of the pending queue.
pub const TABLE_PENDING: &str = "mr.pending";
/// Table of dispatched tasks by worker.
pub const TABLE_WORKER: &str = "mr.worker";
/// Table of per-instance counters.
pub const TABLE_META: &str = "mr.meta";

/// Largest task content `map` accepts (64 KiB).
pub const MAX_CONTENT_LEN: usize = 64 * 1024;
/// Longest result or failure reason kept; longer ones are cut on a character boundary.
pub const MAX_RESULT_LEN: usize = 8 * 1024;

/// Format version in front of every task record.
pub(super) const RECORD_VERSION: u8 = 1;
/// Format version in front of every counters value.
pub(super) const META_VERSION: u8 = 1;
pub(super) const META_LEN: usize = 1 + 7 * 8;
/// Page size of the paged scans (requeue, results, delete).
const PAGE: usize = 1000;

/// The task trees of MAP/MAP_REDUCE instances over a shared `Store` (a `MemoryStore` or a
/// `LogStore`). Cheap to clone; clones share the writer lock. See the module doc for the key
/// layout and the invariants.
///
/// Every method blocks until its batch is committed (`Store::commit`; an fsync under
/// `Durability::Sync`): call it from a blocking context (`spawn_blocking`, a dedicated thread),
/// not from an async runtime's worker thread.
#[derive(Clone)]
pub struct TaskStore {
    store: Arc<dyn Store>,
    write: Arc<Mutex<()>>,
    /// Write-through copies of the dispatched tasks' records (derived; bounded by the tasks
    /// in flight): a report is applied without reading its task back from the store. An
    /// entry is inserted after its dispatch commits and removed whenever the task leaves
    /// `Dispatched` (report, requeue, delete), so it never differs from the store.
    in_flight: Arc<Mutex<HashMap<(u64, u64), TaskRecord>>>,
}

impl fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskStore")
            .field("store", &self.store)
            .finish()
    }
}

impl TaskStore {
    /// A task store over `store`.
    pub fn new(store: Arc<dyn Store>) -> TaskStore {
        TaskStore {
            store,
            write: Arc::new(Mutex::new(())),
            in_flight: Arc::default(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn meta(&self, instance: u64) -> Result<Meta, TaskStoreError> {
        let key = instance_prefix(instance);
        match self.store.get(TABLE_META, &key)? {
            None => Ok(Meta::default()),
            Some(bytes) => Meta::decode(&key, &bytes),
        }
    }

    fn put_meta(batch: &mut Batch, instance: u64, meta: &Meta) {
        batch.push_put(
            TABLE_META,
            instance_prefix(instance).to_vec(),
            meta.encode(),
        );
    }

    fn put_record(batch: &mut Batch, record: &TaskRecord) -> Result<(), TaskStoreError> {
        batch.push_put(
            TABLE_TASKS,
            task_key(record.instance_id, record.task_id),
            encode_record(record)?,
        );
        Ok(())
    }

    /// One task, if it exists.
    pub fn get(&self, instance: u64, task_id: u64) -> Result<Option<TaskRecord>, TaskStoreError> {
        let key = task_key(instance, task_id);
        match self.store.get(TABLE_TASKS, &key)? {
            None => Ok(None),
            Some(bytes) => decode_record(&key, &bytes).map(Some),
        }
    }

    fn must_get(&self, instance: u64, task_id: u64) -> Result<TaskRecord, TaskStoreError> {
        self.get(instance, task_id)?
            .ok_or(TaskStoreError::NoSuchTask {
                instance_id: instance,
                task_id,
            })
    }

    /// The instance's counters (zero for an unknown instance). One read, no scan.
    pub fn counts(&self, instance: u64) -> Result<TaskCounts, TaskStoreError> {
        Ok(self.meta(instance)?.counts)
    }

    /// Ids of the instances that have tasks, ascending (for recovery after a restart).
    pub fn instances(&self) -> Result<Vec<u64>, TaskStoreError> {
        let mut out = Vec::new();
        let mut range = KeyRange::all();
        loop {
            let page = self.store.range(TABLE_META, &range, PAGE)?;
            for (key, _) in &page {
                let id = u64_at(key, 0)
                    .filter(|_| key.len() == 8)
                    .ok_or_else(|| TaskStoreError::corrupt(TABLE_META, key, "bad key"))?;
                out.push(id);
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => range = range.after(last),
                _ => return Ok(out),
            }
        }
    }

    /// Appends `contents.len()` pending tasks named `name` under `parent` (`None`: root tasks),
    /// in one batch, and returns their ids (consecutive, in `contents` order).
    ///
    /// Refused if `parent` does not exist or is final, or a content is over
    /// [`MAX_CONTENT_LEN`]. An empty `contents` changes nothing.
    pub fn map(
        &self,
        instance: u64,
        parent: Option<u64>,
        name: &str,
        contents: Vec<Vec<u8>>,
    ) -> Result<Range<u64>, TaskStoreError> {
        if let Some(big) = contents.iter().find(|c| c.len() > MAX_CONTENT_LEN) {
            return Err(TaskStoreError::ContentTooLarge {
                len: big.len(),
                max: MAX_CONTENT_LEN,
            });
        }
        let _guard = self.write.lock();
        if let Some(parent) = parent {
            if self.must_get(instance, parent)?.status.is_final() {
                return Err(TaskStoreError::ParentFinal {
                    instance_id: instance,
                    task_id: parent,
                });
            }
        }
        let mut meta = self.meta(instance)?;
        let first = meta.next_task_id;
        if contents.is_empty() {
            return Ok(first..first);
        }
        let n = contents.len() as u64;
        let mut batch = Batch::new();
        for (content, task_id) in contents.into_iter().zip(first..) {
            let pending_seq = meta.next_pending_seq;
            meta.next_pending_seq = add(pending_seq, 1, instance)?;
            let record = TaskRecord {
                instance_id: instance,
                task_id,
                parent,
                name: name.to_owned(),
                content,
                status: TaskState::Pending,
                retries: 0,
                dispatches: 0,
                pending_seq,
                avoid_worker: None,
            };
            Self::put_record(&mut batch, &record)?;
            batch.push_put(
                TABLE_PENDING,
                task_key(instance, pending_seq),
                task_id.to_be_bytes().to_vec(),
            );
        }
        meta.next_task_id = add(first, n, instance)?;
        meta.counts.total = add(meta.counts.total, n, instance)?;
        meta.counts.pending = add(meta.counts.pending, n, instance)?;
        Self::put_meta(&mut batch, instance, &meta);
        self.store.commit(batch)?;
        Ok(first..meta.next_task_id)
    }

    /// Up to `limit` pending tasks from the head of the queue (oldest first), read from the
    /// store: memory is bounded by `limit`, not by the number of pending tasks.
    pub fn next_pending(
        &self,
        instance: u64,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, TaskStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let page = self.store.range(
            TABLE_PENDING,
            &KeyRange::prefix(&instance_prefix(instance)),
            limit,
        )?;
        let mut out = Vec::with_capacity(page.len());
        for (key, value) in page {
            let task_id = u64_at(&value, 0)
                .filter(|_| value.len() == 8)
                .ok_or_else(|| TaskStoreError::corrupt(TABLE_PENDING, &key, "bad value"))?;
            let record = self.get(instance, task_id)?.ok_or_else(|| {
                TaskStoreError::corrupt(TABLE_PENDING, &key, "queued task does not exist")
            })?;
            if record.status != TaskState::Pending || task_key(instance, record.pending_seq) != key
            {
                return Err(TaskStoreError::corrupt(
                    TABLE_PENDING,
                    &key,
                    "queued task is not pending at this position",
                ));
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Marks pending tasks dispatched to `worker`, in one batch, and returns them updated.
    /// Fails (changing nothing) if any is not pending or is named twice.
    pub fn mark_dispatched(
        &self,
        instance: u64,
        task_ids: &[u64],
        worker: &str,
    ) -> Result<Vec<TaskRecord>, TaskStoreError> {
        let _guard = self.write.lock();
        let mut records = Vec::with_capacity(task_ids.len());
        for &task_id in task_ids {
            records.push(self.must_get(instance, task_id)?);
        }
        self.dispatch_locked(instance, records, worker)
    }

    /// [`mark_dispatched`](Self::mark_dispatched) for records the caller just read with
    /// [`next_pending`](Self::next_pending), saving a second read of each. The caller must be
    /// the instance's only writer and must not have changed the instance in between (the
    /// records are taken as current); they are still checked to be pending and distinct.
    pub fn dispatch_records(
        &self,
        instance: u64,
        records: Vec<TaskRecord>,
        worker: &str,
    ) -> Result<Vec<TaskRecord>, TaskStoreError> {
        let _guard = self.write.lock();
        self.dispatch_locked(instance, records, worker)
    }

    fn dispatch_locked(
        &self,
        instance: u64,
        records: Vec<TaskRecord>,
        worker: &str,
    ) -> Result<Vec<TaskRecord>, TaskStoreError> {
        let mut meta = self.meta(instance)?;
        let mut batch = Batch::new();
        let mut seen = HashSet::with_capacity(records.len());
        let mut out = Vec::with_capacity(records.len());
        for mut record in records {
            let task_id = record.task_id;
            if record.instance_id != instance
                || record.status != TaskState::Pending
                || !seen.insert(task_id)
            {
                return Err(TaskStoreError::NotPending {
                    instance_id: instance,
                    task_id,
                });
            }
            record.dispatches = record.dispatches.saturating_add(1);
            let attempt = record.dispatches;
            batch.push_delete(TABLE_PENDING, task_key(instance, record.pending_seq));
            batch.push_put(
                TABLE_WORKER,
                worker_key(instance, worker, task_id)?,
                Vec::new(),
            );
            record.status = TaskState::Dispatched {
                worker: worker.to_owned(),
                attempt,
            };
            Self::put_record(&mut batch, &record)?;
            out.push(record);
        }
        let n = out.len() as u64;
        meta.counts.pending = sub(meta.counts.pending, n, instance)?;
        meta.counts.running = add(meta.counts.running, n, instance)?;
        if n > 0 {
            Self::put_meta(&mut batch, instance, &meta);
            self.store.commit(batch)?;
            let mut cache = self.in_flight.lock();
            for record in &out {
                cache.insert((instance, record.task_id), record.clone());
            }
        }
        Ok(out)
    }

    /// Applies `worker`'s report on a task: success → `Succeeded`; failure → back to pending
    /// (avoiding `worker` next time) while `retries < max_retries`, else `Failed`. A report that
    /// does not match the task's current dispatch is [`Finish::Stale`] and changes nothing.
    pub fn mark_finished(
        &self,
        instance: u64,
        task_id: u64,
        worker: &str,
        success: bool,
        result: String,
        max_retries: u32,
    ) -> Result<Finish, TaskStoreError> {
        let _guard = self.write.lock();
        let mut meta = self.meta(instance)?;
        let mut batch = Batch::new();
        let mut overlay = HashMap::new();
        let report = TaskReport {
            task_id,
            worker: worker.to_owned(),
            dispatch: None,
            success,
            result,
        };
        let finish = self.finish_into(
            instance,
            &mut meta,
            &mut batch,
            &mut overlay,
            report,
            max_retries,
        )?;
        if !batch.is_empty() {
            Self::put_meta(&mut batch, instance, &meta);
            self.store.commit(batch)?;
        }
        Ok(finish)
    }

    /// [`mark_finished`](Self::mark_finished) for many reports in one batch (one commit, so
    /// one fsync under `Durability::Sync`), applied in order: a later report on the same task
    /// sees the earlier one's effect. A report on a task the instance never had is
    /// [`Finish::Stale`] here (it changes nothing), not an error.
    pub fn mark_finished_many(
        &self,
        instance: u64,
        reports: Vec<TaskReport>,
        max_retries: u32,
    ) -> Result<Vec<Finish>, TaskStoreError> {
        let _guard = self.write.lock();
        let mut meta = self.meta(instance)?;
        let mut batch = Batch::new();
        let mut overlay = HashMap::with_capacity(reports.len());
        let mut out = Vec::with_capacity(reports.len());
        for report in reports {
            let finish = match self.finish_into(
                instance,
                &mut meta,
                &mut batch,
                &mut overlay,
                report,
                max_retries,
            ) {
                Err(TaskStoreError::NoSuchTask { .. }) => Finish::Stale,
                other => other?,
            };
            out.push(finish);
        }
        if !batch.is_empty() {
            Self::put_meta(&mut batch, instance, &meta);
            self.store.commit(batch)?;
        }
        Ok(out)
    }

    /// Applies one report to `meta`, `batch` and `overlay` (the records already changed in
    /// this batch, which the store does not show yet).
    fn finish_into(
        &self,
        instance: u64,
        meta: &mut Meta,
        batch: &mut Batch,
        overlay: &mut HashMap<u64, TaskRecord>,
        report: TaskReport,
        max_retries: u32,
    ) -> Result<Finish, TaskStoreError> {
        let TaskReport {
            task_id,
            worker,
            dispatch,
            success,
            result,
        } = report;
        let cached = self.in_flight.lock().remove(&(instance, task_id));
        let mut record = match overlay.remove(&task_id).or(cached) {
            Some(r) => r,
            None => self.must_get(instance, task_id)?,
        };
        let attempt = match &record.status {
            TaskState::Dispatched { worker: w, attempt }
                if *w == worker && dispatch.is_none_or(|d| d == *attempt) =>
            {
                *attempt
            }
            _ => {
                if matches!(record.status, TaskState::Dispatched { .. }) {
                    self.in_flight
                        .lock()
                        .insert((instance, task_id), record.clone());
                }
                overlay.insert(task_id, record);
                return Ok(Finish::Stale);
            }
        };
        batch.push_delete(TABLE_WORKER, worker_key(instance, &worker, task_id)?);
        meta.counts.running = sub(meta.counts.running, 1, instance)?;
        let result = cap(result, MAX_RESULT_LEN);
        let finish = if success {
            record.status = TaskState::Succeeded { result };
            meta.counts.succeeded = add(meta.counts.succeeded, 1, instance)?;
            Finish::Succeeded
        } else if record.retries < max_retries {
            record.retries = record.retries.saturating_add(1);
            record.status = TaskState::Pending;
            record.avoid_worker = Some(worker);
            record.pending_seq = meta.next_pending_seq;
            meta.next_pending_seq = add(meta.next_pending_seq, 1, instance)?;
            batch.push_put(
                TABLE_PENDING,
                task_key(instance, record.pending_seq),
                task_id.to_be_bytes().to_vec(),
            );
            meta.counts.pending = add(meta.counts.pending, 1, instance)?;
            Finish::Retry {
                retries: record.retries,
            }
        } else {
            record.status = TaskState::Failed {
                reason: result,
                attempts: attempt,
            };
            meta.counts.failed = add(meta.counts.failed, 1, instance)?;
            Finish::Failed
        };
        Self::put_record(batch, &record)?;
        overlay.insert(task_id, record);
        Ok(finish)
    }

    /// Puts every task dispatched to `worker` back at the tail of the pending queue (a dead
    /// worker's tasks; this is not a retry: `retries` is unchanged). Pages of at most 1000
    /// tasks, one batch each. Returns how many tasks were requeued.
    pub fn requeue_worker(&self, instance: u64, worker: &str) -> Result<u64, TaskStoreError> {
        let _guard = self.write.lock();
        let prefix = worker_prefix(instance, worker)?;
        let range = KeyRange::prefix(&prefix);
        let mut requeued = 0u64;
        loop {
            let page = self.store.range(TABLE_WORKER, &range, PAGE)?;
            if page.is_empty() {
                return Ok(requeued);
            }
            let mut meta = self.meta(instance)?;
            let mut batch = Batch::new();
            for (key, _) in page {
                let task_id = key
                    .get(prefix.len()..)
                    .filter(|rest| rest.len() == 8)
                    .and_then(|rest| u64_at(rest, 0))
                    .ok_or_else(|| TaskStoreError::corrupt(TABLE_WORKER, &key, "bad key"))?;
                batch.push_delete(TABLE_WORKER, key.clone());
                self.in_flight.lock().remove(&(instance, task_id));
                let mut record = self.must_get(instance, task_id)?;
                if !matches!(&record.status, TaskState::Dispatched { worker: w, .. } if w == worker)
                {
                    return Err(TaskStoreError::corrupt(
                        TABLE_WORKER,
                        &key,
                        "indexed task is not dispatched to this worker",
                    ));
                }
                record.status = TaskState::Pending;
                record.pending_seq = meta.next_pending_seq;
                meta.next_pending_seq = add(meta.next_pending_seq, 1, instance)?;
                batch.push_put(
                    TABLE_PENDING,
                    task_key(instance, record.pending_seq),
                    task_id.to_be_bytes().to_vec(),
                );
                Self::put_record(&mut batch, &record)?;
                meta.counts.running = sub(meta.counts.running, 1, instance)?;
                meta.counts.pending = add(meta.counts.pending, 1, instance)?;
                requeued = add(requeued, 1, instance)?;
            }
            Self::put_meta(&mut batch, instance, &meta);
            self.store.commit(batch)?;
        }
    }

    /// The distinct workers that hold dispatched tasks of `instance`, in key order: after a
    /// TaskTracker restart, the workers to ask about (or declare dead). One read per worker,
    /// skipping over each worker's tasks, so memory is bounded by the number of workers.
    pub fn dispatched_workers(&self, instance: u64) -> Result<Vec<String>, TaskStoreError> {
        let mut out = Vec::new();
        let mut range = KeyRange::prefix(&instance_prefix(instance));
        loop {
            let page = self.store.range(TABLE_WORKER, &range, 1)?;
            let Some((key, _)) = page.into_iter().next() else {
                return Ok(out);
            };
            let bad = || TaskStoreError::corrupt(TABLE_WORKER, &key, "bad key");
            let len = match key.get(8..10) {
                Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                _ => return Err(bad()),
            };
            let worker = key
                .get(10..10 + len)
                .filter(|_| key.len() == 10 + len + 8)
                .ok_or_else(bad)?;
            let worker = String::from_utf8(worker.to_vec()).map_err(|_| bad())?;
            // Past every task of this worker: its prefix followed by the largest task id.
            let mut last = worker_prefix(instance, &worker)?;
            last.extend_from_slice(&u64::MAX.to_be_bytes());
            range = range.after(&last);
            out.push(worker);
        }
    }

    /// The instance's final tasks in task-id order, read a page at a time: memory is bounded by
    /// the page (1000 records), however many tasks there are. Non-final tasks are skipped.
    pub fn results(&self, instance: u64) -> TaskResults {
        TaskResults {
            store: self.store.clone(),
            range: Some(KeyRange::prefix(&instance_prefix(instance))),
            page: Vec::new().into_iter(),
        }
    }

    /// Deletes everything of `instance`, a page of at most 1000 keys per batch; the counters
    /// go last, so an interrupted delete is resumed by calling it again.
    pub fn delete_instance(&self, instance: u64) -> Result<(), TaskStoreError> {
        let _guard = self.write.lock();
        self.in_flight.lock().retain(|(i, _), _| *i != instance);
        let prefix = instance_prefix(instance);
        let range = KeyRange::prefix(&prefix);
        for table in [TABLE_PENDING, TABLE_WORKER, TABLE_TASKS] {
            loop {
                let page = self.store.range(table, &range, PAGE)?;
                if page.is_empty() {
                    break;
                }
                let mut batch = Batch::new();
                for (key, _) in page {
                    batch.push_delete(table, key);
                }
                self.store.commit(batch)?;
            }
        }
        self.store.delete(TABLE_META, &prefix)?;
        Ok(())
    }
}

/// Iterator over an instance's final tasks, from [`TaskStore::results`].
pub struct TaskResults {
    store: Arc<dyn Store>,
    range: Option<KeyRange>,
    page: std::vec::IntoIter<KeyValue>,
}

impl fmt::Debug for TaskResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskResults")
            .field("buffered", &self.page.len())
            .finish()
    }
}

impl TaskResults {
    /// Records currently buffered (at most one page).
    pub fn buffered(&self) -> usize {
        self.page.len()
    }
}

impl Iterator for TaskResults {
    type Item = Result<TaskResult, TaskStoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, value)) = self.page.next() {
                let record = match decode_record(&key, &value) {
                    Ok(r) => r,
                    Err(e) => {
                        self.range = None;
                        self.page = Vec::new().into_iter();
                        return Some(Err(e));
                    }
                };
                let (success, result) = match record.status {
                    TaskState::Succeeded { result } => (true, result),
                    TaskState::Failed { reason, .. } => (false, reason),
                    _ => continue,
                };
                return Some(Ok(TaskResult {
                    task_id: record.task_id,
                    parent: record.parent,
                    name: record.name,
                    success,
                    result,
                }));
            }
            let range = self.range.take()?;
            match self.store.range(TABLE_TASKS, &range, PAGE) {
                Err(e) => return Some(Err(e.into())),
                Ok(page) => {
                    if page.len() == PAGE {
                        if let Some((last, _)) = page.last() {
                            self.range = Some(range.after(last));
                        }
                    }
                    self.page = page.into_iter();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_on_a_char_boundary() {
        let s = "é".repeat(10);
        assert_eq!(cap(s, 5), "éé");
    }

    #[test]
    fn meta_roundtrips_and_rejects_garbage() {
        let m = Meta {
            next_task_id: 9,
            next_pending_seq: 12,
            counts: TaskCounts {
                total: 9,
                pending: 2,
                running: 3,
                succeeded: 3,
                failed: 1,
            },
        };
        assert_eq!(Meta::decode(b"k", &m.encode()).unwrap(), m);
        assert!(Meta::decode(b"k", &[]).is_err());
        let mut bad = m.encode();
        bad[1 + 8 * 3] ^= 1;
        assert!(Meta::decode(b"k", &bad).is_err());
    }
}
