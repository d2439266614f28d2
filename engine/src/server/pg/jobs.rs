//! Jobs and their trigger rows.

use crate::ids::{AppId, JobId};
use crate::server::error::RepoError;
use crate::server::job_codec::decode_job;
use crate::server::keys;
use crate::server::records::{JobRecord, TriggerRecord};
use crate::server::repo::{Commit, JobFilter, Page, MAX_LIST_SCAN, MAX_PAGE};
use crate::time_expression::EpochMs;

use super::tables::{self, Op, Table};
use super::{big, get, i64s, unsigned, PgRepo};

impl PgRepo {
    pub(super) fn create_job(
        &self,
        mut job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        job.validate()?;
        self.get_app(job.app_id)?;
        job.created_at = now;
        job.updated_at = now;
        job.id = JobId(self.alloc(&self.job_ids, 1)?);
        let trigger = TriggerRecord {
            next_trigger,
            runs: 0,
        };
        let mut ops = vec![
            Self::job_op(&job)?,
            Self::trigger_op(Table::Triggers, job.id.0, &trigger)?,
        ];
        ops.extend(self.job_version_ops(&job, None)?);
        tables::check_text(&ops)?;
        self.triggers.insert(job.id, trigger);
        Ok(self.submit(ops, job))
    }

    pub(super) fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM jobs WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => decode_job(&keys::id(id.0), &get::<Vec<u8>>(&row, 0)?),
            None => Err(RepoError::not_found("job", id.0)),
        }
    }

    pub(super) fn update_job(
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
        // Before the trigger row is held: the first change of a job since opening waits for
        // earlier writes to commit to read its newest version.
        let versions = self.job_version_ops(&job, Some(&old))?;
        let mut entry = self.triggers.entry(job.id).or_default();
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let mut ops = vec![
            Self::job_op(&job)?,
            Self::trigger_op(Table::Triggers, job.id.0, &trigger)?,
        ];
        ops.extend(versions);
        tables::check_text(&ops)?;
        *entry = trigger;
        let commit = self.submit(ops, job);
        drop(entry);
        Ok(commit)
    }

    pub(super) fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        let job = self.get_job(id)?;
        let key = vec![i64s(Some(big(id.0)?))];
        let mut ops = vec![
            Op::Delete(Table::Jobs, key.clone()),
            Op::Delete(Table::Triggers, key),
        ];
        ops.extend(self.job_versions_delete_ops(id)?);
        self.triggers.remove(&id);
        Ok(self.submit(ops, job))
    }

    pub(super) fn list_jobs(
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

    pub(super) fn set_next_trigger_when(
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
}
