//! A worker's reports applied to its tasks: success, a retry behind the queue, or failure;
//! a report that no longer matches the task's dispatch is stale and changes nothing.

use std::collections::HashMap;

use ferrojob_store::Batch;

use super::{
    Finish, TaskRecord, TaskReport, TaskState, TaskStore, MAX_RESULT_LEN, TABLE_PENDING,
    TABLE_WORKER,
};
use crate::mapreduce::error::TaskStoreError;
use crate::mapreduce::task_codec::{add, cap, sub, task_key, worker_key, Meta};

impl TaskStore {
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
}
