//! A job's definition versions and an app's audit trail, in the log store.
//!
//! | table          | key                          | value                        | purpose |
//! |----------------|------------------------------|------------------------------|---------|
//! | `job_versions` | job id (8) ++ !version (8)   | the job record (job codec)   | a job's newest [`MAX_JOB_VERSIONS`] definitions, newest first |
//! | `audit`        | app id (8) ++ !seq (8)       | [`AuditRecord`]              | an app's newest [`MAX_AUDIT_RECORDS`] changes and commands, newest first |
//!
//! A job's versions are written in the batch of the change that makes them: `create_job`
//! stores version 1, every `update_job` the next one (a job created before versions were
//! kept gets its stored definition as version 1 on its first update, so the previous
//! definition is never lost) and deletes the one that falls out of the newest
//! [`MAX_JOB_VERSIONS`]; `delete_job` deletes them all. A version is stored with the job
//! record's own codec, so it reads back like the job of its time.
//!
//! Workflow versions are the `wf_versions` rows the workflow store already keeps for its
//! instances (`workflow_repo.rs`); they are listed here, newest first, and stay after the
//! workflow is deleted (its instances still read them).
//!
//! Version numbers count per job and audit sequence numbers per app from 1, kept in memory
//! as last submitted (`LatestSeqs`, read from the store once per job or app after opening),
//! so the row that falls out of the newest [`MAX_JOB_VERSIONS`] or [`MAX_AUDIT_RECORDS`] is
//! known exactly and deleted in the batch that adds the new one. Deleting an app deletes its
//! audit trail.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ferrojob_store::{Batch, KeyRange, Scan};
use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{AppId, JobId, WorkflowId};
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::job_codec::{decode_job, encode_job};
use super::keys;
use super::records::JobRecord;
use super::repo::{Commit, LogRepo, Page, MAX_LIST_SCAN, MAX_PAGE};

/// Job definition versions: job id ++ !version.
pub const JOB_VERSIONS: &str = "job_versions";
/// Audit records: app id ++ !seq.
pub const AUDIT: &str = "audit";

/// Definitions kept per job (the newest ones; the current definition is the newest).
pub const MAX_JOB_VERSIONS: u64 = 50;
/// Audit records kept per app (the newest ones).
pub const MAX_AUDIT_RECORDS: u64 = 10_000;

/// Longest `actor`, `role` and `action` of an audit record, bytes (longer text is cut).
pub const MAX_AUDIT_WORD_LEN: usize = 64;
/// Longest `peer` and `target`, bytes.
pub const MAX_AUDIT_TARGET_LEN: usize = 256;
/// Longest `summary`, bytes.
pub const MAX_AUDIT_SUMMARY_LEN: usize = 512;

/// One stored definition of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobVersion {
    /// 1 for the definition the job was created with, +1 per change.
    pub version: u64,
    /// The definition (its `updated_at` is when this version was made).
    pub job: JobRecord,
}

/// One stored definition of a workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowVersion {
    /// 1 for the definition the workflow was created with, +1 per change.
    pub version: u64,
    /// The definition.
    pub def: WorkflowDef,
}

/// One change or command made through the API.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The app it changed.
    pub app_id: AppId,
    /// Assigned by [`LogRepo::append_audit`]: 1, 2, ... per app.
    pub seq: u64,
    /// When, ms since the epoch.
    pub time: EpochMs,
    /// Who: `admin` (the admin token), `token` (an API token, see `token_id`) or
    /// `app-secret` (the app's worker secret in compatibility mode).
    pub actor: String,
    /// The API token's id when `actor` is `token`.
    pub token_id: Option<u64>,
    /// The role the request had: `read`, `operate` or `admin`.
    pub role: String,
    /// The peer address the request came from (`ip:port`), empty when unknown.
    pub peer: String,
    /// What was done, e.g. `job.update`, `instance.stop`.
    pub action: String,
    /// What it was done to, e.g. `job/12`, `instance/40`, `channel/ops`.
    pub target: String,
    /// A short description (the request line and what it created).
    pub summary: String,
}

impl AuditRecord {
    /// Cuts every text field to its limit (on a character boundary).
    fn clamp(&mut self) {
        cut(&mut self.actor, MAX_AUDIT_WORD_LEN);
        cut(&mut self.role, MAX_AUDIT_WORD_LEN);
        cut(&mut self.action, MAX_AUDIT_WORD_LEN);
        cut(&mut self.peer, MAX_AUDIT_TARGET_LEN);
        cut(&mut self.target, MAX_AUDIT_TARGET_LEN);
        cut(&mut self.summary, MAX_AUDIT_SUMMARY_LEN);
    }

    /// The record as stored: text cut to its limits, NUL characters (which PostgreSQL text
    /// cannot hold) replaced.
    pub fn normalized(mut self) -> AuditRecord {
        for s in [
            &mut self.actor,
            &mut self.role,
            &mut self.peer,
            &mut self.action,
            &mut self.target,
            &mut self.summary,
        ] {
            if s.contains('\0') {
                *s = s.replace('\0', "\u{FFFD}");
            }
        }
        self.clamp();
        self
    }
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The newest number handed out per key (an app's audit sequence, a job's version) since the
/// repository opened, as last submitted: a write not yet acknowledged is not visible to a
/// read of the store, so the next number comes from here. The lock also orders the writes of
/// one key. Bounded by the number of apps and jobs; a deleted one is forgotten.
#[derive(Debug)]
pub(crate) struct LatestSeqs<K>(Mutex<HashMap<K, u64>>);

impl<K> Default for LatestSeqs<K> {
    fn default() -> Self {
        LatestSeqs(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq + Copy> LatestSeqs<K> {
    /// Runs `write(last)` under the lock, where `last` is the newest number of `key` (read
    /// by `stored()` when `key` has none since the repository opened); `write` answers its
    /// value and the new newest number, kept only if it succeeds.
    pub(crate) fn advance<T>(
        &self,
        key: K,
        stored: impl FnOnce() -> Result<u64, RepoError>,
        write: impl FnOnce(u64) -> Result<(T, u64), RepoError>,
    ) -> Result<T, RepoError> {
        let mut seqs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let last = match seqs.get(&key) {
            Some(s) => *s,
            None => stored()?,
        };
        let (out, newest) = write(last)?;
        seqs.insert(key, newest);
        Ok(out)
    }

    /// Forgets every key `keep` refuses: its next number is read from the store again.
    #[cfg(feature = "postgres")]
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep(k));
    }

    /// Forgets `key` (deleted); answers its newest number, if it had one since opening.
    pub(crate) fn forget(&self, key: K) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key)
    }
}

/// `last + 1`, or Invalid when the numbers of `what` are exhausted.
pub(crate) fn next_number(last: u64, what: &str) -> Result<u64, RepoError> {
    last.checked_add(1)
        .ok_or_else(|| RepoError::invalid("version", format!("{what} are exhausted")))
}

/// The version numbers kept when `newest` is the newest (none when unknown).
pub(crate) fn kept_versions(newest: Option<u64>) -> impl Iterator<Item = u64> {
    newest
        .filter(|n| *n > 0)
        .map(|n| n.saturating_sub(MAX_JOB_VERSIONS - 1).max(1)..=n)
        .into_iter()
        .flatten()
}

/// The version to delete when version `new` is added, if one falls out of the newest
/// [`MAX_JOB_VERSIONS`].
pub(crate) fn version_falling_out(new: u64) -> Option<u64> {
    new.checked_sub(MAX_JOB_VERSIONS).filter(|v| *v > 0)
}

/// The audit record to delete when `new` is added, if one falls out of the newest
/// [`MAX_AUDIT_RECORDS`].
pub(crate) fn audit_falling_out(new: u64) -> Option<u64> {
    new.checked_sub(MAX_AUDIT_RECORDS).filter(|v| *v > 0)
}

impl LogRepo {
    /// The newest stored version number of job `id` (0: none).
    fn latest_job_version(&self, id: JobId) -> Result<u64, RepoError> {
        let prefix = keys::id(id.0);
        let rows = self
            .store
            .range(JOB_VERSIONS, &KeyRange::prefix(&prefix), 1)?;
        match rows.first() {
            Some((k, _)) => keys::read_newest_first(JOB_VERSIONS, k),
            None => Ok(0),
        }
    }

    /// Adds `job` as its next version to `batch` (and `old`, the definition it replaces, as
    /// version 1 when the job has none stored); deletes the version falling out.
    pub(super) fn with_job_version(
        &self,
        batch: Batch,
        job: &JobRecord,
        old: Option<&JobRecord>,
    ) -> Result<Batch, RepoError> {
        let stored = || match old {
            None => Ok(0),
            Some(_) => self.latest_job_version(job.id),
        };
        self.job_versions.advance(job.id, stored, |mut last| {
            let mut batch = batch;
            if let (0, Some(old)) = (last, old) {
                last = 1;
                batch = batch.put(
                    JOB_VERSIONS,
                    keys::newest_first(job.id.0, last),
                    encode_job(old)?,
                );
            }
            let version = next_number(last, "job versions")?;
            batch = batch.put(
                JOB_VERSIONS,
                keys::newest_first(job.id.0, version),
                encode_job(job)?,
            );
            if let Some(gone) = version_falling_out(version) {
                batch = batch.delete(JOB_VERSIONS, keys::newest_first(job.id.0, gone).to_vec());
            }
            Ok((batch, version))
        })
    }

    /// Adds the deletion of every version of job `id` to `batch`.
    pub(super) fn without_job_versions(
        &self,
        mut batch: Batch,
        id: JobId,
    ) -> Result<Batch, RepoError> {
        let prefix = keys::id(id.0);
        for kv in Scan::new(&*self.store, JOB_VERSIONS, KeyRange::prefix(&prefix)) {
            let (k, _) = kv?;
            batch = batch.delete(JOB_VERSIONS, k);
        }
        // Versions submitted but not yet committed are not in the scan: their numbers are.
        for v in kept_versions(self.job_versions.forget(id)) {
            batch = batch.delete(JOB_VERSIONS, keys::newest_first(id.0, v).to_vec());
        }
        Ok(batch)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) stored versions of job `id`, newest first, older
    /// than version `cursor` when given. The cursor of the next page is the last version.
    pub fn list_job_versions(
        &self,
        id: JobId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobVersion>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = keys::id(id.0);
        let mut range = KeyRange::prefix(&prefix);
        if let Some(c) = cursor {
            range = range.after(&keys::newest_first(id.0, c));
        }
        let rows = self.store.range(JOB_VERSIONS, &range, limit + 1)?;
        let mut items = Vec::with_capacity(limit.min(rows.len()));
        for (k, v) in rows.iter().take(limit) {
            items.push(JobVersion {
                version: keys::read_newest_first(JOB_VERSIONS, k)?,
                job: decode_job(k, v)?,
            });
        }
        let next_cursor = if rows.len() > limit {
            items.last().map(|v| v.version)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Version `version` of job `id`; NotFound when it is not stored (never made, fallen
    /// out of the newest [`MAX_JOB_VERSIONS`], or the job deleted).
    pub fn get_job_version(&self, id: JobId, version: u64) -> Result<JobRecord, RepoError> {
        let key = keys::newest_first(id.0, version);
        match self.store.get(JOB_VERSIONS, &key)? {
            None => Err(RepoError::not_found("job version", version)),
            Some(v) => decode_job(&key, &v),
        }
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) versions of workflow `id`, newest first, older
    /// than version `cursor` when given.
    pub fn list_workflow_versions(
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

    /// Stores `record` (its text cut to the limits) as `app`'s next audit record, deleting
    /// the one that falls out of the newest [`MAX_AUDIT_RECORDS`]; answers it with its
    /// sequence number.
    pub fn append_audit(&self, record: AuditRecord) -> Result<Commit<AuditRecord>, RepoError> {
        let mut record = record.normalized();
        let app = record.app_id;
        self.get_app(app)?;
        self.audit.advance(
            app,
            || {
                let prefix = keys::id(app.0);
                let rows = self.store.range(AUDIT, &KeyRange::prefix(&prefix), 1)?;
                match rows.first() {
                    Some((k, _)) => keys::read_newest_first(AUDIT, k),
                    None => Ok(0),
                }
            },
            |last| {
                let seq = next_number(last, "audit sequence numbers")?;
                record.seq = seq;
                let mut batch = Batch::new().put(
                    AUDIT,
                    keys::newest_first(app.0, seq),
                    encode(AUDIT, &record)?,
                );
                if let Some(gone) = audit_falling_out(seq) {
                    batch = batch.delete(AUDIT, keys::newest_first(app.0, gone).to_vec());
                }
                Ok((self.submit(batch, record.clone()), seq))
            },
        )
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) of `app`'s audit records, newest first, older
    /// than `cursor` (a sequence number) when given, only those whose target is `target`
    /// when given. Examines at most [`MAX_LIST_SCAN`] records; a page may then be short but
    /// still has a cursor to continue from.
    pub fn list_audit(
        &self,
        app: AppId,
        target: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = keys::id(app.0);
        let mut range = KeyRange::prefix(&prefix);
        if let Some(c) = cursor {
            range = range.after(&keys::newest_first(app.0, c));
        }
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len() + 1)
                .max(16)
                .min(MAX_LIST_SCAN - scanned);
            let rows = self.store.range(AUDIT, &range, chunk)?;
            let exhausted = rows.len() < chunk;
            for (k, v) in &rows {
                if items.len() == limit {
                    // One more match exists past the page: continue after the last item.
                    return Ok(Page {
                        next_cursor: items.last().map(|r: &AuditRecord| r.seq),
                        items,
                    });
                }
                scanned += 1;
                range = range.after(k);
                let rec: AuditRecord = decode(AUDIT, k, v)?;
                if target.is_none_or(|t| rec.target == t) {
                    items.push(rec);
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
                    .map(|(k, _)| keys::read_newest_first(AUDIT, k))
                    .transpose()?;
                return Ok(Page {
                    items,
                    next_cursor: last,
                });
            }
        }
    }

    /// Adds the deletion of `app`'s audit trail to `batch` (the app is being deleted).
    pub(super) fn without_audit(&self, mut batch: Batch, app: AppId) -> Result<Batch, RepoError> {
        let prefix = keys::id(app.0);
        for kv in Scan::new(&*self.store, AUDIT, KeyRange::prefix(&prefix)) {
            let (k, _) = kv?;
            batch = batch.delete(AUDIT, k);
        }
        self.audit.forget(app);
        Ok(batch)
    }
}

/// Versions `start`, `start - 1`, ... down to 1, at most `limit` of them, read by `def`
/// (a version not found is skipped); the cursor is the last version when older ones remain.
pub(crate) fn workflow_versions_page(
    start: u64,
    limit: usize,
    mut def: impl FnMut(u64) -> Result<WorkflowDef, RepoError>,
) -> Result<Page<WorkflowVersion>, RepoError> {
    let mut items = Vec::new();
    let mut v = start;
    while v > 0 && items.len() < limit {
        match def(v) {
            Ok(d) => items.push(WorkflowVersion { version: v, def: d }),
            Err(RepoError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        v -= 1;
    }
    let next_cursor = (v > 0).then(|| v + 1);
    Ok(Page { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_version_and_record_fall_out_exactly() {
        assert_eq!(version_falling_out(1), None);
        assert_eq!(version_falling_out(MAX_JOB_VERSIONS), None);
        assert_eq!(version_falling_out(MAX_JOB_VERSIONS + 1), Some(1));
        assert_eq!(audit_falling_out(MAX_AUDIT_RECORDS + 7), Some(7));
        assert_eq!(audit_falling_out(3), None);
        assert_eq!(kept_versions(Some(3)).collect::<Vec<_>>(), vec![1, 2, 3]);
        let many: Vec<u64> = kept_versions(Some(MAX_JOB_VERSIONS + 5)).collect();
        assert_eq!(many.first(), Some(&6));
        assert_eq!(many.len() as u64, MAX_JOB_VERSIONS);
        assert_eq!(kept_versions(None).count(), 0);
    }

    #[test]
    fn audit_text_is_cut_on_a_character_boundary() {
        let rec = AuditRecord {
            app_id: AppId(1),
            seq: 0,
            time: 0,
            actor: "é".repeat(MAX_AUDIT_WORD_LEN),
            token_id: None,
            role: "admin".into(),
            peer: "\0".into(),
            action: "job.update".into(),
            target: "job/1".into(),
            summary: "x".repeat(MAX_AUDIT_SUMMARY_LEN + 5),
        }
        .normalized();
        assert_eq!(rec.actor.len(), MAX_AUDIT_WORD_LEN);
        assert_eq!(rec.summary.len(), MAX_AUDIT_SUMMARY_LEN);
        assert!(!rec.peer.contains('\0'));
    }
}
