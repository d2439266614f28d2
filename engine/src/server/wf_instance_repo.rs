//! The repository's workflow instances: id allocation, the one-batch [`WfWrite`] of a
//! transition, reads, node links, listings, deletion and the finished ones beyond a count
//! or before a time (the tables are in [`workflow_repo`](super::workflow_repo)'s docs).

use std::ops::Bound;

use ferrojob_store::{Batch, KeyRange};

use crate::ids::{AppId, InstanceId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::EpochMs;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::instance_repo::AGE_SCAN_YOUNG_RUN;
use super::keys;
use super::repo::{LogRepo, Page, MAX_LIST_SCAN, MAX_PAGE};
use super::wf_codec::{decode_wf_instance, encode_wf_instance};
use super::workflow_repo::{
    NodeLinkRecord, WfInstanceRecord, WfWrite, APP_WF_INSTANCES, NODE_LINKS, WF_ACTIVE,
    WF_INSTANCES, WF_TRIGGERS, WF_WF_INSTANCES,
};
use super::Commit;

impl LogRepo {
    /// A fresh workflow instance id (covered by a persisted reservation).
    pub fn new_wf_instance_id(&self) -> Result<WorkflowInstanceId, RepoError> {
        Ok(WorkflowInstanceId(
            self.wf.instance_ids.alloc(&**self.store(), 1)?,
        ))
    }

    /// A fresh job instance id (covered by a persisted reservation).
    pub fn new_instance_id(&self) -> Result<InstanceId, RepoError> {
        Ok(InstanceId(self.instance_ids.alloc(&**self.store(), 1)?))
    }

    /// Submits one workflow transition as one batch (see [`WfWrite`]).
    pub fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        let mut batch = Batch::new();
        for (inst, prev) in &w.instances {
            Self::instance_put_ops(&mut batch, inst, *prev)?;
        }
        for (rec, created, finished) in &w.wf_instances {
            let key = keys::id(rec.id.0);
            batch.push_put(WF_INSTANCES, key, encode_wf_instance(WF_INSTANCES, rec)?);
            if *created {
                batch.push_put(
                    APP_WF_INSTANCES,
                    keys::newest_first(rec.app_id.0, rec.id.0),
                    Vec::new(),
                );
                batch.push_put(
                    WF_WF_INSTANCES,
                    keys::newest_first(rec.workflow_id.0, rec.id.0),
                    Vec::new(),
                );
            }
            if *finished {
                batch.push_delete(WF_ACTIVE, key);
            } else {
                batch.push_put(WF_ACTIVE, key, Vec::new());
            }
        }
        for (inst, link) in &w.job_instances {
            inst.validate()?;
            Self::insert_instance_ops(&mut batch, inst)?;
            batch.push_put(NODE_LINKS, keys::id(inst.id.0), encode(NODE_LINKS, link)?);
        }
        if let Some((id, row)) = &w.trigger {
            batch.push_put(WF_TRIGGERS, keys::id(id.0), encode(WF_TRIGGERS, row)?);
        }
        Ok(self.submit(batch, ()))
    }

    /// The workflow instance `id`.
    pub fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError> {
        let key = keys::id(id.0);
        match self.store().get(WF_INSTANCES, &key)? {
            None => Err(RepoError::not_found("workflow instance", id.0)),
            Some(v) => decode_wf_instance(WF_INSTANCES, &key, &v),
        }
    }

    /// The node job instance `id` runs, if it runs one.
    pub fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        let key = keys::id(id.0);
        match self.store().get(NODE_LINKS, &key)? {
            None => Ok(None),
            Some(v) => decode(NODE_LINKS, &key, &v).map(Some),
        }
    }

    /// Deletes workflow instance `id` (retention, the API's delete): its record and index
    /// rows, and the job instance of each JOB node's latest attempt with its index rows, node
    /// link and log ([`delete_instance`](LogRepo::delete_instance)'s rows). Node instances
    /// gone already are skipped. The instances of a NESTED_WORKFLOW node are workflow
    /// instances of their own workflow and stay; so do the job instances of earlier attempts
    /// of a retried node, which their job's retention deletes. Long logs are deleted first
    /// in batches of their own (a crash part-way leaves shorter logs); the rest is one batch.
    /// Refuses an unfinished workflow instance, or one with a node instance not final,
    /// unless `force`.
    pub fn delete_wf_instance(
        &self,
        id: WorkflowInstanceId,
        force: bool,
    ) -> Result<Commit<()>, RepoError> {
        let rec = self.get_wf_instance(id)?;
        if !force && !rec.snapshot()?.status.is_finished() {
            return Err(RepoError::Unfinished {
                what: "workflow instance",
                id: id.0,
            });
        }
        let mut insts = Vec::new();
        for run in &rec.nodes {
            let Some(iid) = run.job_instance() else {
                continue;
            };
            match self.get_instance(iid) {
                Ok(inst) if !force && !inst.status.is_final() => {
                    return Err(RepoError::IllegalTransition {
                        instance: iid.0,
                        from: inst.status,
                        action: "be deleted",
                    })
                }
                Ok(inst) => insts.push(inst),
                Err(RepoError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut batch = Batch::new();
        let mut log_room = super::repo::MAX_DELETE_BATCH;
        for inst in &insts {
            self.push_instance_delete(&mut batch, &mut log_room, inst)?;
        }
        let key = keys::id(id.0);
        batch.push_delete(WF_INSTANCES, key);
        batch.push_delete(APP_WF_INSTANCES, keys::newest_first(rec.app_id.0, id.0));
        batch.push_delete(WF_WF_INSTANCES, keys::newest_first(rec.workflow_id.0, id.0));
        batch.push_delete(WF_ACTIVE, key);
        Ok(self.submit(batch, ()))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) finished instances of workflow `workflow` beyond
    /// its newest `keep` finished ones, newest first: what retention by count deletes (with
    /// [`delete_wf_instance`](LogRepo::delete_wf_instance)). Examines at most
    /// [`MAX_LIST_SCAN`] workflow instances per call.
    pub fn wf_finished_beyond(
        &self,
        workflow: WorkflowId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<WorkflowInstanceId>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut range = KeyRange::prefix(&keys::id(workflow.0));
        let mut finished = 0usize;
        let mut scanned = 0usize;
        let mut out = Vec::new();
        while scanned < MAX_LIST_SCAN {
            let rows = self.store().range(WF_WF_INSTANCES, &range, 256)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            range = range.after(last);
            for (k, _) in &rows {
                scanned += 1;
                let id = WorkflowInstanceId(keys::read_newest_first(WF_WF_INSTANCES, k)?);
                let rec = match self.get_wf_instance(id) {
                    Ok(rec) => rec,
                    // Deleted between the index read and this one.
                    Err(RepoError::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                if rec.snapshot()?.status.is_finished() {
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

    /// Up to `limit` finished workflow instances that finished before `cutoff`, oldest id
    /// first, examining records in id (creation) order from `from`: what retention by age
    /// deletes. As [`finished_before`](LogRepo::finished_before) for job instances, the scan
    /// stops after `AGE_SCAN_YOUNG_RUN` records in a row created at or after `cutoff`, or
    /// after `max_examine` records. Returns the candidates and the id to continue from
    /// (`None`: the scan reached the young tail or the end).
    pub fn wf_finished_before(
        &self,
        cutoff: EpochMs,
        from: WorkflowInstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowInstanceId>, Option<WorkflowInstanceId>), RepoError> {
        let start = keys::id(from.0);
        let mut range = KeyRange::new(Bound::Included(&start[..]), Bound::Unbounded);
        let mut out = Vec::new();
        let mut examined = 0usize;
        let mut young_run = 0usize;
        loop {
            let rows = self.store().range(WF_INSTANCES, &range, 256)?;
            let Some((last, _)) = rows.last() else {
                return Ok((out, None));
            };
            range = range.after(last);
            for (k, v) in &rows {
                examined += 1;
                let rec = decode_wf_instance(WF_INSTANCES, k, v)?;
                let snap = rec.snapshot()?;
                if snap.created_at >= cutoff {
                    young_run += 1;
                    if young_run >= AGE_SCAN_YOUNG_RUN {
                        return Ok((out, None));
                    }
                } else {
                    young_run = 0;
                }
                if snap.status.is_finished() && snap.finished_at.is_some_and(|t| t < cutoff) {
                    out.push(rec.id);
                }
                if out.len() >= limit || examined >= max_examine {
                    let next = rec.id.0.checked_add(1).map(WorkflowInstanceId);
                    return Ok((out, next));
                }
            }
        }
    }

    /// Up to `limit` workflow instances of `app` (or of one workflow), newest first, after
    /// `cursor`.
    pub fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (table, parent) = match workflow {
            Some(w) => (WF_WF_INSTANCES, w.0),
            None => (APP_WF_INSTANCES, app.0),
        };
        let mut range = KeyRange::prefix(&keys::id(parent));
        if let Some(c) = cursor {
            range = range.after(&keys::newest_first(parent, c));
        }
        let rows = self.store().range(table, &range, limit)?;
        let mut items = Vec::with_capacity(rows.len());
        for (k, _) in &rows {
            let id = WorkflowInstanceId(keys::read_newest_first(table, k)?);
            let rec = match self.get_wf_instance(id) {
                Ok(rec) => rec,
                // Deleted between the index read and this one (see `Repo::list_instances`).
                Err(RepoError::NotFound { .. }) if self.store().get(table, k)?.is_none() => {
                    continue
                }
                Err(RepoError::NotFound { .. }) => {
                    return Err(RepoError::corrupt(
                        table,
                        k,
                        format!("index row names missing workflow instance {id}"),
                    ))
                }
                Err(e) => return Err(e),
            };
            if rec.app_id == app {
                items.push(rec);
            }
        }
        let next_cursor = match rows.last() {
            Some((k, _)) if rows.len() == limit => Some(keys::read_newest_first(table, k)?),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }
}
