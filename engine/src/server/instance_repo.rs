//! The repository's job instances: the fire batch, creation, updates with their index rows,
//! listings by app, job, status and trigger or finish time, deletion and the finished runs
//! beyond a count.

use std::ops::Bound;

use ferrojob_store::{Batch, KeyRange};

use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

use super::codec::encode;
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::instance_codec::{decode_instance, encode_instance};
use super::keys::{self, *};
use super::records::DelayedRun;
use super::repo::{
    Commit, InstanceFilter, LogRepo, Page, MAX_DELETE_BATCH, MAX_LIST_SCAN, MAX_PAGE,
};

/// Records in a row triggered within the retention window after which an age scan stops.
pub(crate) const AGE_SCAN_YOUNG_RUN: usize = 1024;

impl LogRepo {
    pub(super) fn insert_instance_ops(
        batch: &mut Batch,
        inst: &InstanceRecord,
    ) -> Result<(), RepoError> {
        let id = inst.id.0;
        batch.push_put(INSTANCES, keys::id(id), encode_instance(INSTANCES, inst)?);
        batch.push_put(
            APP_INSTANCES,
            keys::newest_first(inst.app_id.0, id),
            Vec::new(),
        );
        batch.push_put(
            JOB_INSTANCES,
            keys::newest_first(inst.job_id.0, id),
            Vec::new(),
        );
        if !inst.status.is_final() {
            batch.push_put(ACTIVE, keys::id(id), Vec::new());
        }
        Ok(())
    }

    /// Fires job `instance.job_id`: in **one atomic batch**, inserts `instance` (with a fresh
    /// id and `run` = the job's run counter + 1) and its index rows, and moves the job's next
    /// trigger to `next_trigger`. After a crash either both are there or neither.
    pub fn fire(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        let job = instance.job_id;
        self.fire_if(instance, next_trigger, || true)?
            .ok_or_else(|| RepoError::not_found("job", job.0))
    }

    /// [`fire`](LogRepo::fire), but only if `still_current()` holds, checked while the job's
    /// trigger row is held (the row [`update_job`](LogRepo::update_job) and
    /// [`set_next_trigger`](LogRepo::set_next_trigger) write under the same hold). `Ok(None)`:
    /// nothing was written. The server passes "the job's schedule generation is unchanged" so
    /// that a fire computed from a definition an update just replaced never overwrites the
    /// update's next trigger.
    pub fn fire_if(
        &self,
        mut instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
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
        instance.id = InstanceId(self.instance_ids.alloc(&*self.store, 1)?);
        let mut batch = Batch::new();
        Self::insert_instance_ops(&mut batch, &instance)?;
        batch.push_put(
            TRIGGERS,
            keys::id(instance.job_id.0).to_vec(),
            encode(TRIGGERS, &trigger)?,
        );
        let commit = self.submit(batch, instance);
        *entry = trigger;
        Ok(Some(commit))
    }

    /// Inserts an instance that is not a scheduled fire (an API run, a workflow node): with a
    /// fresh id, its index rows, and — when `delayed_until` is set — a pending delayed-run row
    /// that [`load`](LogRepo::load) returns until the instance leaves WAITING_DISPATCH.
    pub fn create_instance(
        &self,
        mut instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        instance.validate()?;
        if !self.triggers.contains_key(&instance.job_id) {
            return Err(RepoError::not_found("job", instance.job_id.0));
        }
        instance.id = InstanceId(self.instance_ids.alloc(&*self.store, 1)?);
        let mut batch = Batch::new();
        Self::insert_instance_ops(&mut batch, &instance)?;
        if let Some(due) = delayed_until {
            let run = DelayedRun {
                instance_id: instance.id,
                job_id: instance.job_id,
                due,
            };
            batch.push_put(DELAYED, keys::id(instance.id.0), encode(DELAYED, &run)?);
        }
        Ok(self.submit(batch, instance))
    }

    /// [`create_instance`](LogRepo::create_instance) for many instances of one job, in one
    /// batch: each `(instance, delayed_until)` gets a fresh id (consecutive, in order), its
    /// index rows and its delayed-run row. All are durable when the one commit resolves, or
    /// none is. Refuses an empty list, and instances of different jobs.
    pub fn create_instances(
        &self,
        runs: Vec<(InstanceRecord, Option<EpochMs>)>,
    ) -> Result<Commit<Vec<InstanceRecord>>, RepoError> {
        let job = check_one_job(&runs)?;
        if !self.triggers.contains_key(&job) {
            return Err(RepoError::not_found("job", job.0));
        }
        let n = runs.len() as u64;
        let first = self.instance_ids.alloc(&*self.store, n)?;
        let mut batch = Batch::new();
        let mut out = Vec::with_capacity(runs.len());
        for (id, (mut instance, delayed_until)) in (first..).zip(runs) {
            instance.id = InstanceId(id);
            Self::insert_instance_ops(&mut batch, &instance)?;
            if let Some(due) = delayed_until {
                let run = DelayedRun {
                    instance_id: instance.id,
                    job_id: instance.job_id,
                    due,
                };
                batch.push_put(DELAYED, keys::id(instance.id.0), encode(DELAYED, &run)?);
            }
            out.push(instance);
        }
        Ok(self.submit(batch, out))
    }

    /// The instance `id`.
    pub fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        let key = keys::id(id.0);
        match self.store.get(INSTANCES, &key)? {
            None => Err(RepoError::not_found("instance", id.0)),
            Some(v) => decode_instance(INSTANCES, &key, &v),
        }
    }

    /// Saves `instance` (after a transition). It must exist with the same job and app. Keeps
    /// the non-final index in step and drops its delayed-run row once it left
    /// WAITING_DISPATCH.
    pub fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        instance.validate()?;
        let old = self.get_instance(instance.id)?;
        if old.job_id != instance.job_id || old.app_id != instance.app_id {
            return Err(RepoError::invalid(
                "job_id",
                format!("{} belongs to {}", instance.id, old.job_id),
            ));
        }
        self.put_instance(instance)
    }

    /// [`update_instance`](LogRepo::update_instance) without re-reading the stored record: for
    /// the server core, which owns every non-final instance in memory and so already knows
    /// that it exists with the same job and app. Validates the record.
    pub fn put_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        self.put_instance_from(instance, None)
    }

    /// [`put_instance`](LogRepo::put_instance) knowing the status last written for the
    /// instance (`prev`): index rows are then touched only when they change (the non-final
    /// index when the instance becomes final or leaves a final status, the delayed-run row
    /// when it leaves WAITING_DISPATCH), so most transitions are one put. `None` = unknown:
    /// every index row is written.
    pub fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        let mut batch = Batch::new();
        Self::instance_put_ops(&mut batch, instance, prev)?;
        Ok(self.submit(batch, ()))
    }

    /// The operations of [`put_instance_from`](LogRepo::put_instance_from), appended to `batch`
    /// (a workflow transition writes a node's final instance in its own batch).
    pub(super) fn instance_put_ops(
        batch: &mut Batch,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<(), RepoError> {
        instance.validate()?;
        let key = keys::id(instance.id.0);
        batch.push_put(INSTANCES, key, encode_instance(INSTANCES, instance)?);
        let now_final = instance.status.is_final();
        let was_final = prev.map(InstanceStatus::is_final);
        if now_final && was_final != Some(true) {
            batch.push_delete(ACTIVE, key);
        } else if !now_final && was_final != Some(false) {
            batch.push_put(ACTIVE, key, Vec::new());
        }
        let left_waiting = instance.status != InstanceStatus::WaitingDispatch
            && prev.is_none_or(|p| p == InstanceStatus::WaitingDispatch);
        if left_waiting {
            batch.push_delete(DELAYED, key);
        }
        Ok(())
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) instances of `app`, newest first, matching
    /// `filter`, after `cursor` (the last instance id of the previous page). Examines at most
    /// [`MAX_LIST_SCAN`] index rows; a page may then be short but still has a cursor. A time
    /// range is a filter over the newest-first index, not an index of its own: ids follow
    /// creation, while trigger times move with delays and misfires and finish times with run
    /// lengths, so no row order can end the scan early.
    pub fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (table, parent) = match filter.job {
            Some(job) => (JOB_INSTANCES, job.0),
            None => (APP_INSTANCES, app.0),
        };
        let mut range = KeyRange::prefix(&keys::id(parent));
        if let Some(c) = cursor {
            range = range.after(&keys::newest_first(parent, c));
        }
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.store.range(table, &range, chunk)?;
            let exhausted = rows.len() < chunk;
            for (k, _) in &rows {
                scanned += 1;
                let id = keys::read_newest_first(table, k)?;
                range = range.after(k);
                let Some(inst) = self.indexed_instance(table, k, id)? else {
                    continue;
                };
                let matches = inst.app_id == app && filter.matches(&inst);
                if matches {
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
                let last = rows
                    .last()
                    .map(|(k, _)| keys::read_newest_first(table, k))
                    .transpose()?;
                return Ok(Page {
                    items,
                    next_cursor: last,
                });
            }
        }
    }

    /// The instance an index row of `table` (key `key`) names. Reading the index and then the
    /// record is two reads, not a snapshot: a prune committed between them deletes both, so a
    /// missing record whose index row is gone too was deleted meanwhile (`None`, skip it). A
    /// missing record whose index row is still there is corruption.
    fn indexed_instance(
        &self,
        table: &'static str,
        key: &[u8],
        id: u64,
    ) -> Result<Option<InstanceRecord>, RepoError> {
        match self.get_instance(InstanceId(id)) {
            Ok(inst) => Ok(Some(inst)),
            Err(RepoError::NotFound { .. }) => match self.store.get(table, key)? {
                None => Ok(None),
                Some(_) => Err(RepoError::corrupt(
                    table,
                    key,
                    format!("index row names missing instance {id}"),
                )),
            },
            Err(e) => Err(e),
        }
    }

    /// Deletes instance `id` with its index rows, its delayed-run row, its workflow node
    /// link and its log (retention, the API's delete). A log longer than
    /// [`MAX_DELETE_BATCH`] lines is deleted in earlier batches first, so a crash part-way
    /// leaves the instance with a shorter log, never log lines without their instance.
    /// Refuses a non-final instance unless `force`.
    pub fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError> {
        let inst = self.get_instance(id)?;
        if !force && !inst.status.is_final() {
            return Err(RepoError::IllegalTransition {
                instance: id.0,
                from: inst.status,
                action: "be deleted",
            });
        }
        let mut batch = Batch::new();
        let mut log_room = MAX_DELETE_BATCH;
        self.push_instance_delete(&mut batch, &mut log_room, &inst)?;
        Ok(self.submit(batch, ()))
    }

    /// Adds to `batch` the deletion of `inst` with its index rows, delayed-run row, node link
    /// and log. `batch` takes at most `log_room` more log lines: a longer log is deleted
    /// first, in batches of its own of up to [`MAX_DELETE_BATCH`] lines, each waited for.
    pub(super) fn push_instance_delete(
        &self,
        batch: &mut Batch,
        log_room: &mut usize,
        inst: &InstanceRecord,
    ) -> Result<(), RepoError> {
        let id = inst.id;
        let log_range = KeyRange::prefix(&keys::id(id.0));
        loop {
            let rows = self.store.range(LOGS, &log_range, MAX_DELETE_BATCH)?;
            if rows.len() < MAX_DELETE_BATCH && rows.len() <= *log_room {
                *log_room -= rows.len();
                for (k, _) in rows {
                    batch.push_delete(LOGS, k);
                }
                break;
            }
            let mut early = Batch::new();
            for (k, _) in rows {
                early.push_delete(LOGS, k);
            }
            self.store.submit(early).wait()?;
        }
        let key = keys::id(id.0);
        batch.push_delete(INSTANCES, key);
        batch.push_delete(APP_INSTANCES, keys::newest_first(inst.app_id.0, id.0));
        batch.push_delete(JOB_INSTANCES, keys::newest_first(inst.job_id.0, id.0));
        batch.push_delete(ACTIVE, key);
        batch.push_delete(DELAYED, key);
        batch.push_delete(super::workflow_repo::NODE_LINKS, key);
        Ok(())
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) finished instances of `job` beyond its newest
    /// `keep` finished ones, newest first: what pruning to "keep the last `keep` runs"
    /// deletes (with [`delete_instance`](LogRepo::delete_instance)). Examines at most
    /// [`MAX_LIST_SCAN`] index rows per call.
    pub fn finished_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        self.finished_beyond_where(job, keep, limit, false)
    }

    /// [`finished_beyond`](LogRepo::finished_beyond) counting only scheduled fires (instances
    /// with `run > 0`, created by [`fire`](LogRepo::fire)): API runs and retried runs are never
    /// pruned by the server.
    pub fn finished_fires_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        self.finished_beyond_where(job, keep, limit, true)
    }

    fn finished_beyond_where(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
        fires_only: bool,
    ) -> Result<Vec<InstanceId>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut range = KeyRange::prefix(&keys::id(job.0));
        let mut finished = 0usize;
        let mut scanned = 0usize;
        let mut out = Vec::new();
        while scanned < MAX_LIST_SCAN {
            let rows = self.store.range(JOB_INSTANCES, &range, 256)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            range = range.after(last);
            for (k, _) in &rows {
                scanned += 1;
                let id = InstanceId(keys::read_newest_first(JOB_INSTANCES, k)?);
                let Some(inst) = self.indexed_instance(JOB_INSTANCES, k, id.0)? else {
                    continue;
                };
                if inst.status.is_final() && (!fires_only || inst.run > 0) {
                    finished += 1;
                    if finished > keep {
                        out.push(id);
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` finished instances whose `finished_time` is before `cutoff`, oldest id
    /// first, examining instance records in id (creation) order from `from`: what retention
    /// by age deletes. Ids grow with creation time and a trigger never precedes its
    /// instance's creation by more than a delayed run's delay, so the scan stops after
    /// `AGE_SCAN_YOUNG_RUN` (1024) records in a row triggered at or after `cutoff` (a younger tail
    /// holds nothing to delete), or after `max_examine` records. Returns the candidates and
    /// the id to continue from (`None`: the scan reached the young tail or the end).
    pub fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError> {
        let start = keys::id(from.0);
        let mut range = KeyRange::new(Bound::Included(&start[..]), Bound::Unbounded);
        let mut out = Vec::new();
        let mut examined = 0usize;
        let mut young_run = 0usize;
        loop {
            let rows = self.store.range(INSTANCES, &range, 256)?;
            let Some((last, _)) = rows.last() else {
                return Ok((out, None));
            };
            range = range.after(last);
            for (k, v) in &rows {
                examined += 1;
                let inst = decode_instance(INSTANCES, k, v)?;
                if inst.trigger_time >= cutoff {
                    young_run += 1;
                    if young_run >= AGE_SCAN_YOUNG_RUN {
                        return Ok((out, None));
                    }
                } else {
                    young_run = 0;
                }
                if inst.status.is_final() && inst.finished_time.is_some_and(|t| t < cutoff) {
                    out.push(inst.id);
                }
                if out.len() >= limit || examined >= max_examine {
                    let next = inst.id.0.checked_add(1).map(InstanceId);
                    return Ok((out, next));
                }
            }
        }
    }
}

/// The one job every instance of `runs` belongs to, each validated; refuses an empty list
/// and a list that mixes jobs.
pub(crate) fn check_one_job(
    runs: &[(InstanceRecord, Option<EpochMs>)],
) -> Result<JobId, RepoError> {
    let Some((first, _)) = runs.first() else {
        return Err(RepoError::invalid("instances", "at least one"));
    };
    for (instance, _) in runs {
        instance.validate()?;
        if instance.job_id != first.job_id {
            return Err(RepoError::invalid(
                "job_id",
                format!(
                    "one batch holds runs of one job: {} and {}",
                    first.job_id, instance.job_id
                ),
            ));
        }
    }
    Ok(first.job_id)
}
