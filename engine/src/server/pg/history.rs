//! Job definition versions and the audit trail in PostgreSQL (`job_versions`, `audit`), with
//! the log store's contract (`server/history.rs`): a job's versions are written in the
//! write of its change, the newest [`MAX_JOB_VERSIONS`] kept; an app's audit records are
//! numbered per app, the newest [`MAX_AUDIT_RECORDS`] kept.

use crate::ids::{AppId, JobId, WorkflowId};
use crate::server::error::RepoError;
use crate::server::history::{
    audit_falling_out, kept_versions, next_number, version_falling_out, workflow_versions_page,
    AuditRecord, JobVersion, WorkflowVersion, MAX_AUDIT_RECORDS, MAX_JOB_VERSIONS,
};
use crate::server::job_codec::{decode_job, encode_job};
use crate::server::keys;
use crate::server::records::JobRecord;
use crate::server::repo::{Commit, Page, MAX_PAGE};

use super::tables::{Op, Table, Val};
use super::{big, get, i64s, text, unsigned, PgRepo};

impl PgRepo {
    fn job_version_op(job: &JobRecord, version: u64) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::JobVersions,
            vec![
                i64s(Some(big(job.id.0)?)),
                i64s(Some(big(version)?)),
                i64s(Some(job.updated_at)),
                Val::Bytes(encode_job(job)?),
            ],
        ))
    }

    fn job_version_key(id: JobId, version: u64) -> Result<Op, RepoError> {
        Ok(Op::Delete(
            Table::JobVersions,
            vec![i64s(Some(big(id.0)?)), i64s(Some(big(version)?))],
        ))
    }

    /// The ops that store `job` as its next version (and `old`, the definition it replaces,
    /// as version 1 when none is stored), deleting the version falling out.
    pub(super) fn job_version_ops(
        &self,
        job: &JobRecord,
        old: Option<&JobRecord>,
    ) -> Result<Vec<Op>, RepoError> {
        let stored = || {
            if old.is_none() {
                return Ok(0);
            }
            // Read once per job after opening; every earlier write of it committed first.
            self.settle()?;
            let row = self.query_opt(
                "SELECT coalesce(max(version), 0) FROM job_versions WHERE job_id = $1",
                vec![Box::new(big(job.id.0)?)],
            )?;
            match row {
                Some(r) => unsigned("job_versions", get(&r, 0)?),
                None => Ok(0),
            }
        };
        self.job_versions.advance(job.id, stored, |mut last| {
            let mut ops = Vec::new();
            if let (0, Some(old)) = (last, old) {
                last = 1;
                ops.push(Self::job_version_op(old, 1)?);
            }
            let version = next_number(last, "job versions")?;
            ops.push(Self::job_version_op(job, version)?);
            if let Some(gone) = version_falling_out(version) {
                ops.push(Self::job_version_key(job.id, gone)?);
            }
            Ok((ops, version))
        })
    }

    /// The ops that delete every version of job `id`.
    pub(super) fn job_versions_delete_ops(&self, id: JobId) -> Result<Vec<Op>, RepoError> {
        self.settle()?;
        let rows = self.query(
            "SELECT version FROM job_versions WHERE job_id = $1 ORDER BY version DESC LIMIT $2",
            vec![
                Box::new(big(id.0)?),
                Box::new(big(MAX_JOB_VERSIONS.saturating_mul(2))?),
            ],
        )?;
        let mut ops = rows
            .iter()
            .map(|r| Self::job_version_key(id, unsigned("job_versions", get(r, 0)?)?))
            .collect::<Result<Vec<_>, _>>()?;
        for v in kept_versions(self.job_versions.forget(id)) {
            ops.push(Self::job_version_key(id, v)?);
        }
        Ok(ops)
    }

    pub(super) fn list_job_versions(
        &self,
        id: JobId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobVersion>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT version, record FROM job_versions WHERE job_id = $1 AND version < $2 \
             ORDER BY version DESC LIMIT $3",
            vec![
                Box::new(big(id.0)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(i64::MAX)),
                Box::new(big(limit as u64 + 1)?),
            ],
        )?;
        let mut items = Vec::new();
        for r in rows.iter().take(limit) {
            let version = unsigned("job_versions", get(r, 0)?)?;
            let key = keys::newest_first(id.0, version);
            items.push(JobVersion {
                version,
                job: decode_job(&key, &get::<Vec<u8>>(r, 1)?)?,
            });
        }
        let next_cursor = if rows.len() > limit {
            items.last().map(|v| v.version)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(super) fn get_job_version(&self, id: JobId, version: u64) -> Result<JobRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM job_versions WHERE job_id = $1 AND version = $2",
            vec![Box::new(big(id.0)?), Box::new(big(version)?)],
        )? {
            Some(r) => decode_job(&keys::newest_first(id.0, version), &get::<Vec<u8>>(&r, 0)?),
            None => Err(RepoError::not_found("job version", version)),
        }
    }

    pub(super) fn list_workflow_versions(
        &self,
        id: WorkflowId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowVersion>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let current = self.get_workflow(id)?.version;
        let start = cursor.map_or(current, |c| c.saturating_sub(1).min(current));
        workflow_versions_page(start, limit, |v| self.workflow_def(id, v))
    }

    pub(super) fn append_audit(
        &self,
        record: AuditRecord,
    ) -> Result<Commit<AuditRecord>, RepoError> {
        let mut record = record.normalized();
        let app = record.app_id;
        self.get_app(app)?;
        let app_id = big(app.0)?;
        self.audit.advance(
            app,
            || {
                self.settle()?;
                let row = self.query_opt(
                    "SELECT coalesce(max(seq), 0) FROM audit WHERE app_id = $1",
                    vec![Box::new(app_id)],
                )?;
                match row {
                    Some(r) => unsigned("audit", get(&r, 0)?),
                    None => Ok(0),
                }
            },
            |last| {
                let seq = next_number(last, "audit sequence numbers")?;
                record.seq = seq;
                let mut ops = vec![Op::Put(
                    Table::Audit,
                    vec![
                        i64s(Some(app_id)),
                        i64s(Some(big(seq)?)),
                        i64s(Some(record.time)),
                        text(&record.actor),
                        i64s(record.token_id.map(big).transpose()?),
                        text(&record.role),
                        text(&record.peer),
                        text(&record.action),
                        text(&record.target),
                        text(&record.summary),
                    ],
                )];
                if let Some(gone) = audit_falling_out(seq) {
                    ops.push(Op::Delete(
                        Table::Audit,
                        vec![i64s(Some(app_id)), i64s(Some(big(gone)?))],
                    ));
                }
                Ok((self.submit(ops, record.clone()), seq))
            },
        )
    }

    pub(super) fn list_audit(
        &self,
        app: AppId,
        target: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT seq, time, actor, token_id, role, peer, action, target, summary FROM audit \
             WHERE app_id = $1 AND seq < $2 AND ($3::text IS NULL OR target = $3) \
             ORDER BY seq DESC LIMIT $4",
            vec![
                Box::new(big(app.0)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(i64::MAX)),
                Box::new(target.map(str::to_owned)),
                Box::new(big(limit as u64 + 1)?),
            ],
        )?;
        let mut items = Vec::new();
        for r in rows.iter().take(limit) {
            let token_id: Option<i64> = get(r, 3)?;
            items.push(AuditRecord {
                app_id: app,
                seq: unsigned("audit", get(r, 0)?)?,
                time: get(r, 1)?,
                actor: get(r, 2)?,
                token_id: token_id.map(|t| unsigned("audit", t)).transpose()?,
                role: get(r, 4)?,
                peer: get(r, 5)?,
                action: get(r, 6)?,
                target: get(r, 7)?,
                summary: get(r, 8)?,
            });
        }
        let next_cursor = if rows.len() > limit {
            items.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The ops that delete `app`'s audit trail (the app is being deleted).
    pub(super) fn audit_delete_ops(&self, app: AppId) -> Result<Vec<Op>, RepoError> {
        let app_id = big(app.0)?;
        let rows = self.query(
            "SELECT seq FROM audit WHERE app_id = $1 ORDER BY seq DESC LIMIT $2",
            vec![
                Box::new(app_id),
                Box::new(big(MAX_AUDIT_RECORDS.saturating_mul(2))?),
            ],
        )?;
        self.audit.forget(app);
        rows.iter()
            .map(|r| {
                Ok(Op::Delete(
                    Table::Audit,
                    vec![i64s(Some(app_id)), i64s(Some(get(r, 0)?))],
                ))
            })
            .collect()
    }
}
