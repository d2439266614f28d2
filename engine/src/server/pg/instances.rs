//! Instances: fires, runs, listings and the retention scans.

use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::server::error::RepoError;
use crate::server::instance::InstanceRecord;
use crate::server::repo::{Commit, InstanceFilter, Page, MAX_LIST_SCAN, MAX_PAGE};
use crate::time_expression::EpochMs;

use super::tables::{Op, Table};
use super::{big, get, i64s, unsigned, PgRepo, AGE_SCAN_YOUNG_RUN};

impl PgRepo {
    pub(super) fn fire_when(
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

    pub(super) fn create_instance(
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

    pub(super) fn create_instances(
        &self,
        runs: Vec<(InstanceRecord, Option<EpochMs>)>,
    ) -> Result<Commit<Vec<InstanceRecord>>, RepoError> {
        let job = crate::server::instance_repo::check_one_job(&runs)?;
        if !self.triggers.contains_key(&job) {
            return Err(RepoError::not_found("job", job.0));
        }
        let first = self.alloc(&self.instance_ids, runs.len() as u64)?;
        let mut ops = Vec::with_capacity(runs.len().saturating_mul(2));
        let mut out = Vec::with_capacity(runs.len());
        for (id, (mut instance, delayed_until)) in (first..).zip(runs) {
            instance.id = InstanceId(id);
            ops.push(Self::instance_row(&instance)?);
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
            out.push(instance);
        }
        Ok(self.submit(ops, out))
    }

    pub(super) fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        match self.query_opt(
            "SELECT id, record FROM instances WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => Self::instance_from(&row, 1),
            None => Err(RepoError::not_found("instance", id.0)),
        }
    }

    pub(super) fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        let mut ops = Vec::with_capacity(2);
        Self::instance_put_ops(&mut ops, instance, prev)?;
        Ok(self.submit(ops, ()))
    }

    pub(super) fn update_instance(
        &self,
        instance: &InstanceRecord,
    ) -> Result<Commit<()>, RepoError> {
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

    pub(super) fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // The time ranges are applied by the database too (a null bound is no bound; a null
        // `finished_time` fails a bounded finish range), so they narrow what is scanned;
        // `filter.matches` below still decides.
        let (sql, parent): (&'static str, u64) = match filter.job {
            Some(job) => (
                "SELECT id, record FROM instances WHERE job_id = $1 AND id < $2 \
                 AND ($4::bigint IS NULL OR trigger_time >= $4) \
                 AND ($5::bigint IS NULL OR trigger_time < $5) \
                 AND ($6::bigint IS NULL OR finished_time >= $6) \
                 AND ($7::bigint IS NULL OR finished_time < $7) \
                 ORDER BY id DESC LIMIT $3",
                job.0,
            ),
            None => (
                "SELECT id, record FROM instances WHERE app_id = $1 AND id < $2 \
                 AND ($4::bigint IS NULL OR trigger_time >= $4) \
                 AND ($5::bigint IS NULL OR trigger_time < $5) \
                 AND ($6::bigint IS NULL OR finished_time >= $6) \
                 AND ($7::bigint IS NULL OR finished_time < $7) \
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
                    Box::new(filter.trigger.from),
                    Box::new(filter.trigger.to),
                    Box::new(filter.finished.from),
                    Box::new(filter.finished.to),
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

    pub(super) fn delete_instance(
        &self,
        id: InstanceId,
        force: bool,
    ) -> Result<Commit<()>, RepoError> {
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
            Op::Delete(Table::NodeLinks, vec![i64s(Some(key))]),
        ];
        Ok(self.submit(ops, ()))
    }

    pub(super) fn finished_beyond_where(
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

    pub(super) fn finished_before(
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
}
