//! Handing pending tasks to workers: the queue's head read and dispatched (the record, the
//! worker index and the in-flight copy written together), and a dead worker's tasks put
//! back at the tail of the queue.

use std::collections::HashSet;

use ferrojob_store::{Batch, KeyRange};

use super::{TaskRecord, TaskState, TaskStore, PAGE, TABLE_PENDING, TABLE_WORKER};
use crate::mapreduce::error::TaskStoreError;
use crate::mapreduce::task_codec::{
    add, instance_prefix, sub, task_key, u64_at, worker_key, worker_prefix,
};

impl TaskStore {
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
}
