//! Deleting finished job instances and workflow instances: the checks the API's delete and
//! retention make before the repository deletes the records, and the marks that keep a
//! retry, a mark-success or a second deletion away while the deletion is written.
//!
//! A record may be deleted when nothing of it is still going: a job instance is final and
//! the core no longer holds it, and the workflow instance whose node it ran (if any) is not
//! held (running, or being changed by the API); a workflow instance is finished and not
//! held, its parent (a nested run's) is not held, and none of its node instances or nested
//! runs is held. Anything else is a conflict: stop it first. The deletion itself runs off
//! the core (its log may take several batches); the marks (`deleting`, `wf_deleting`) say
//! which records it concerns until it is acknowledged or failed.

use crate::api::ApiError;
use crate::ids::{AppId, InstanceId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::workflow_repo::WfInstanceRecord;

use super::Core;

/// Most records marked as being deleted at once (a workflow instance counts with its node
/// instances); a deletion beyond it is refused as unavailable, to be tried again.
pub(crate) const MAX_DELETING: usize = 65_536;

impl Core {
    /// Checks that `app`'s job instance `id` may be deleted now (see the module docs) and
    /// marks it as being deleted. NotFound for an unknown instance or one of another app;
    /// Conflict while it, or the workflow instance whose node it ran, is going.
    pub(crate) fn delete_instance_begin(
        &mut self,
        app: AppId,
        id: InstanceId,
    ) -> Result<(), ApiError> {
        self.acting_for(app)?;
        if let Some(st) = self.active.get(&id) {
            if st.rec.app_id != app {
                return Err(ApiError::not_found("instance", id.0));
            }
            return Err(ApiError::conflict(format!(
                "instance {} is {}; stop it first",
                id.0,
                status_name(st.rec.status)
            )));
        }
        let rec = self.repo.get_instance(id)?;
        if rec.app_id != app {
            return Err(ApiError::not_found("instance", id.0));
        }
        self.instance_deletable(id)?;
        if !rec.status.is_final() {
            return Err(ApiError::conflict(format!(
                "instance {} is {}; stop it first",
                id.0,
                status_name(rec.status)
            )));
        }
        self.mark_deleting(None, &[id])
    }

    /// The API's deletion of job instance `id` is over (acknowledged or failed).
    pub(crate) fn delete_instance_end(&mut self, id: InstanceId) {
        self.deleting.remove(&id);
    }

    /// Checks that `app`'s workflow instance `id` may be deleted now (see the module docs)
    /// and marks it and its node instances as being deleted; returns those node instances.
    pub(crate) fn delete_wf_instance_begin(
        &mut self,
        app: AppId,
        id: WorkflowInstanceId,
    ) -> Result<Vec<InstanceId>, ApiError> {
        self.acting_for(app)?;
        if let Some(w) = self.wf_active.get(&id) {
            if w.rec.app_id != app {
                return Err(ApiError::not_found("workflow instance", id.0));
            }
        }
        let rec = match self.wf_active.get(&id) {
            Some(w) => w.rec.clone(),
            None => self.repo.get_wf_instance(id)?,
        };
        if rec.app_id != app {
            return Err(ApiError::not_found("workflow instance", id.0));
        }
        let nodes = self.wf_instance_deletable(&rec)?;
        self.mark_deleting(Some(id), &nodes)?;
        Ok(nodes)
    }

    /// The deletion of workflow instance `id` with its node instances `nodes` is over.
    pub(crate) fn delete_wf_instance_end(&mut self, id: WorkflowInstanceId, nodes: &[InstanceId]) {
        self.wf_deleting.remove(&id);
        for n in nodes {
            self.deleting.remove(n);
        }
    }

    /// Retention's check of workflow instance `id` (see the module docs): when it may be
    /// deleted, marks it as being deleted and returns its node instances (end the deletion
    /// with [`delete_wf_instance_end`](Core::delete_wf_instance_end)); `None` keeps it.
    pub(crate) fn retention_wf_begin(&mut self, id: WorkflowInstanceId) -> Option<Vec<InstanceId>> {
        let rec = self.repo.get_wf_instance(id).ok()?;
        if self.acting_for(rec.app_id).is_err() {
            // Another server's app: its owner knows whether the instance is held.
            return None;
        }
        let nodes = self.wf_instance_deletable(&rec).ok()?;
        self.mark_deleting(Some(id), &nodes).ok()?;
        Some(nodes)
    }

    /// Whether anything of job instance `id` is still going: held, being deleted, or the
    /// node of a held workflow instance.
    fn instance_deletable(&self, id: InstanceId) -> Result<(), ApiError> {
        if self.active.contains_key(&id) || self.node_runs.contains_key(&id) {
            return Err(ApiError::conflict(format!(
                "instance {} is running; stop it first",
                id.0
            )));
        }
        if self.deleting.contains(&id) {
            return Err(ApiError::conflict(format!(
                "instance {} is being deleted",
                id.0
            )));
        }
        if let Some(link) = self.repo.node_link(id)? {
            if self.wf_active.contains_key(&link.wf_instance)
                || self.wf_deleting.contains(&link.wf_instance)
            {
                return Err(ApiError::conflict(format!(
                    "instance {} runs node {} of workflow instance {}, which is running or changing; stop it first or delete the workflow instance",
                    id.0, link.node.0, link.wf_instance.0
                )));
            }
        }
        Ok(())
    }

    /// The node instances of `rec` when nothing of it is still going, else why not.
    fn wf_instance_deletable(&self, rec: &WfInstanceRecord) -> Result<Vec<InstanceId>, ApiError> {
        let id = rec.id;
        if let Some(w) = self.wf_active.get(&id) {
            let status = w.machine.status();
            return Err(ApiError::conflict(if status.is_finished() {
                format!("workflow instance {} is being changed; try again", id.0)
            } else {
                format!(
                    "workflow instance {} is {}; stop it first",
                    id.0,
                    status.as_str()
                )
            }));
        }
        if self.wf_deleting.contains(&id) {
            return Err(ApiError::conflict(format!(
                "workflow instance {} is being deleted",
                id.0
            )));
        }
        let status = rec.snapshot()?.status;
        if !status.is_finished() {
            return Err(ApiError::conflict(format!(
                "workflow instance {} is {}; stop it first",
                id.0,
                status.as_str()
            )));
        }
        if let Some(p) = rec.parent {
            if self.wf_active.contains_key(&p.instance) {
                return Err(ApiError::conflict(format!(
                    "workflow instance {} runs node {} of workflow instance {}, which is running; stop it first",
                    id.0, p.node.0, p.instance.0
                )));
            }
        }
        let mut nodes = Vec::with_capacity(rec.nodes.len());
        for run in &rec.nodes {
            if let Some(child) = run.nested_instance() {
                if self.wf_active.contains_key(&child) {
                    return Err(ApiError::conflict(format!(
                        "workflow instance {} still runs its nested workflow instance {}; stop it first",
                        id.0, child.0
                    )));
                }
            }
            if let Some(iid) = run.job_instance() {
                if self.active.contains_key(&iid)
                    || self.node_runs.contains_key(&iid)
                    || self.deleting.contains(&iid)
                {
                    return Err(ApiError::conflict(format!(
                        "instance {} of workflow instance {} is running or being deleted; stop it first",
                        iid.0, id.0
                    )));
                }
                nodes.push(iid);
            }
        }
        Ok(nodes)
    }

    /// Marks workflow instance `wf` (if any) and job instances `ids` as being deleted.
    fn mark_deleting(
        &mut self,
        wf: Option<WorkflowInstanceId>,
        ids: &[InstanceId],
    ) -> Result<(), ApiError> {
        let marked = self.deleting.len() + self.wf_deleting.len();
        if marked.saturating_add(ids.len()).saturating_add(1) > MAX_DELETING {
            return Err(ApiError::unavailable(format!(
                "{marked} records are being deleted already; try again"
            )));
        }
        if let Some(w) = wf {
            self.wf_deleting.insert(w);
        }
        self.deleting.extend(ids.iter().copied());
        Ok(())
    }
}

/// The API name of `s` (`WAITING_DISPATCH`), for messages.
fn status_name(s: InstanceStatus) -> String {
    match serde_json::to_value(s) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{s:?}"),
    }
}
