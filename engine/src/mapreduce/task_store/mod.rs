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
//!
//! The store's operations are grouped by what they do to a task: `dispatch` (the pending
//! queue's head handed to a worker, a dead worker's tasks requeued), `finish` (a worker's
//! report applied) and `results` (the final tasks read back a page at a time); creating
//! tasks (`map`), reading counters and deleting an instance are here.

mod dispatch;
mod finish;
mod results;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use ferrojob_store::{Batch, KeyRange, Store};
use parking_lot::Mutex;

use super::error::TaskStoreError;
pub use super::task::{Finish, TaskCounts, TaskRecord, TaskReport, TaskResult, TaskState};
use super::task_codec::{
    add, decode_record, encode_record, instance_prefix, task_key, u64_at, Meta,
};

pub use results::TaskResults;

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
/// Default [`TaskStore::max_tasks_per_instance`]: tasks one instance may hold, its root task
/// included. A TaskTracker holds about 140 bytes of memory per task, so the default bounds
/// one instance at roughly 700 MiB.
pub const DEFAULT_MAX_TASKS_PER_INSTANCE: u64 = 5_000_000;

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
    max_tasks_per_instance: u64,
}

impl fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskStore")
            .field("store", &self.store)
            .finish()
    }
}

impl TaskStore {
    /// A task store over `store`, each instance limited to
    /// [`DEFAULT_MAX_TASKS_PER_INSTANCE`] tasks.
    pub fn new(store: Arc<dyn Store>) -> TaskStore {
        TaskStore {
            store,
            write: Arc::new(Mutex::new(())),
            in_flight: Arc::default(),
            max_tasks_per_instance: DEFAULT_MAX_TASKS_PER_INSTANCE,
        }
    }

    /// The same store with each instance limited to `max` tasks (at least 1: the root).
    pub fn with_max_tasks_per_instance(mut self, max: u64) -> TaskStore {
        self.max_tasks_per_instance = max.max(1);
        self
    }

    /// Tasks one instance may hold, its root included: a `map` that would go past it is
    /// refused whole with [`TaskStoreError::TooManyTasks`].
    pub fn max_tasks_per_instance(&self) -> u64 {
        self.max_tasks_per_instance
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
    /// Refused if `parent` does not exist or is final, a content is over
    /// [`MAX_CONTENT_LEN`], or the instance would hold more than
    /// [`max_tasks_per_instance`](TaskStore::max_tasks_per_instance) tasks (then nothing of
    /// the call is stored). An empty `contents` changes nothing.
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
        if meta.counts.total.saturating_add(n) > self.max_tasks_per_instance {
            return Err(TaskStoreError::TooManyTasks {
                instance_id: instance,
                max: self.max_tasks_per_instance,
                held: meta.counts.total,
                asked: n,
            });
        }
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
