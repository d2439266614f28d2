//! Workflow storage: workflow definitions, their triggers, workflow instances, and
//! the link from a node's job instance back to its workflow instance.
//!
//! | table          | key                                  | value                   | purpose |
//! |----------------|--------------------------------------|-------------------------|---------|
//! | `workflows`    | workflow id (8)                      | [`WorkflowRecord`]      | workflows (name, current definition version) |
//! | `wf_versions`  | workflow id (8) ++ version (8)       | [`WorkflowDefRecord`]   | every definition version (instances keep the one they started with) |
//! | `app_wfs`      | app id (8) ++ workflow id (8)        | empty                   | an app's workflows, oldest first |
//! | `wf_triggers`  | workflow id (8)                      | [`TriggerRecord`]       | next trigger and run counter |
//! | `wf_insts`     | workflow instance id (8)             | [`WfInstanceRecord`] (`wf_codec.rs`, versioned) | workflow instances (snapshot, node → instance map, trigger time) |
//! | `app_wf_insts` | app id (8) ++ !wf instance id (8)    | empty                   | an app's workflow instances, newest first |
//! | `wf_wf_insts`  | workflow id (8) ++ !wf instance id (8)| empty                  | a workflow's instances, newest first |
//! | `wf_active`    | workflow instance id (8)             | empty                   | unfinished workflow instances, for restart |
//! | `node_links`   | job instance id (8)                  | [`NodeLinkRecord`]      | the workflow node a job instance runs |
//!
//! Definitions and snapshots are serde types of [`crate::workflow`]; they are stored as their
//! JSON text inside an rkyv record behind the codec's version byte, so a bad stored value is
//! [`RepoError::Corrupt`] (either layer), never a panic.
//!
//! Ids: workflow ids and workflow instance ids are reserved ahead in blocks, like instance ids
//! (`next_workflow_id` and `next_wf_instance_id` in `meta`); a node's job instance takes its id
//! from the repo's instance id blocks.
//!
//! Atomicity: one [`WfWrite`] is one batch — the workflow instance's new snapshot, the job
//! instances created for its newly dispatched nodes with their node links, the nested
//! workflow instances it starts, and (for a scheduled fire) the workflow's trigger row.

use std::ops::Bound;

use dashmap::DashMap;
use ferrojob_store::{Batch, KeyRange, Scan, Store};
use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{AppId, InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::EpochMs;
use crate::workflow::{InstanceSnapshot, WorkflowDef};

use super::codec::{decode, encode};
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::instance_repo::AGE_SCAN_YOUNG_RUN;
use super::keys;
use super::records::TriggerRecord;
use super::repo::{counter, IdBlocks, LogRepo, Page, WorkflowFilter, MAX_LIST_SCAN, MAX_PAGE};
use super::wf_codec::{decode_wf_instance, encode_wf_instance};
use super::Commit;

/// Workflows by id.
pub const WORKFLOWS: &str = "workflows";
/// Definition versions: workflow id ++ version.
pub const WF_VERSIONS: &str = "wf_versions";
/// Index: app id ++ workflow id.
pub const APP_WORKFLOWS: &str = "app_wfs";
/// Next trigger and run counter by workflow id.
pub const WF_TRIGGERS: &str = "wf_triggers";
/// Workflow instances by id.
pub const WF_INSTANCES: &str = "wf_insts";
/// Index: app id ++ !workflow instance id.
pub const APP_WF_INSTANCES: &str = "app_wf_insts";
/// Index: workflow id ++ !workflow instance id.
pub const WF_WF_INSTANCES: &str = "wf_wf_insts";
/// Index: unfinished workflow instance ids.
pub const WF_ACTIVE: &str = "wf_active";
/// Job instance id → the workflow node it runs.
pub const NODE_LINKS: &str = "node_links";

/// `meta` key of the workflow id counter (hi-lo high-water mark).
pub const NEXT_WORKFLOW_ID: &[u8] = b"next_workflow_id";
/// `meta` key of the workflow instance id counter (hi-lo high-water mark).
pub const NEXT_WF_INSTANCE_ID: &[u8] = b"next_wf_instance_id";

/// A workflow: its name and current definition version (the definition itself is in
/// `wf_versions`).
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// Assigned by [`LogRepo::create_workflow`].
    pub id: WorkflowId,
    /// Its app.
    pub app_id: AppId,
    /// The definition's name (copied for listings).
    pub name: String,
    /// The current definition version (1 at creation, +1 per update).
    pub version: u64,
    /// Creation time, ms since the epoch.
    pub created_at: EpochMs,
    /// Last update, ms since the epoch.
    pub updated_at: EpochMs,
}

/// One version of a workflow's definition: the [`WorkflowDef`] as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WorkflowDefRecord {
    /// `serde_json` of the [`WorkflowDef`] (validated when it was written).
    pub def_json: String,
}

impl WorkflowDefRecord {
    /// The definition (not re-validated; the caller validates before use).
    pub fn def(&self, key: &[u8]) -> Result<WorkflowDef, RepoError> {
        serde_json::from_str(&self.def_json)
            .map_err(|e| RepoError::corrupt(WF_VERSIONS, key, format!("definition JSON: {e}")))
    }
}

/// The NESTED_WORKFLOW node a workflow instance runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WfParent {
    /// The parent workflow instance.
    pub instance: WorkflowInstanceId,
    /// The parent's node.
    pub node: NodeId,
    /// The node's attempt.
    pub attempt: u32,
}

/// What runs a node now: a job instance (JOB) or a workflow instance (NESTED_WORKFLOW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WfNodeRun {
    /// The node id.
    pub node: NodeId,
    /// The job instance id or the nested workflow instance id of its latest attempt (a bare
    /// number: which kind `nested` says; see [`WfNodeRun::job_instance`] and
    /// [`WfNodeRun::nested_instance`]).
    pub instance: u64,
    /// Whether `instance` is a workflow instance (NESTED_WORKFLOW).
    pub nested: bool,
}

impl WfNodeRun {
    /// The job instance that runs the node (JOB nodes).
    pub fn job_instance(&self) -> Option<InstanceId> {
        (!self.nested).then_some(InstanceId(self.instance))
    }

    /// The workflow instance that runs the node (NESTED_WORKFLOW nodes).
    pub fn nested_instance(&self) -> Option<WorkflowInstanceId> {
        self.nested.then_some(WorkflowInstanceId(self.instance))
    }
}

/// A workflow instance.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WfInstanceRecord {
    /// Assigned by [`LogRepo::new_wf_instance_id`].
    pub id: WorkflowInstanceId,
    /// Its workflow.
    pub workflow_id: WorkflowId,
    /// The definition version it runs.
    pub version: u64,
    /// Its app.
    pub app_id: AppId,
    /// Set when it runs as a NESTED_WORKFLOW node.
    pub parent: Option<WfParent>,
    /// Workflow ids of its ancestors, root first (the nesting-loop guard).
    pub ancestors: Vec<WorkflowId>,
    /// `serde_json` of the [`InstanceSnapshot`].
    pub snapshot_json: String,
    /// Per dispatched node, what runs it (latest attempt).
    pub nodes: Vec<WfNodeRun>,
    /// A delayed run: not started before this time (ms since the epoch).
    pub delayed_until: Option<EpochMs>,
    /// The workflow's fire number (0 for API and nested runs).
    pub run: u64,
    /// Its logical trigger time, ms since the epoch: the trigger a scheduled fire stands for,
    /// the request time of an API run, the past instant of a backfill run, the parent's for a
    /// nested run. Its nodes' job instances carry it as their trigger time.
    pub trigger_time: EpochMs,
}

impl WfInstanceRecord {
    /// The decoded snapshot.
    pub fn snapshot(&self) -> Result<InstanceSnapshot, RepoError> {
        serde_json::from_str(&self.snapshot_json).map_err(|e| {
            RepoError::corrupt(
                WF_INSTANCES,
                &keys::id(self.id.0),
                format!("snapshot JSON: {e}"),
            )
        })
    }

    /// Stores `snap` as the snapshot.
    pub fn set_snapshot(&mut self, snap: &InstanceSnapshot) -> Result<(), RepoError> {
        self.snapshot_json = serde_json::to_string(snap)
            .map_err(|e| RepoError::invalid("snapshot", e.to_string()))?;
        Ok(())
    }

    /// What runs `node` now.
    pub fn run_of(&self, node: NodeId) -> Option<WfNodeRun> {
        self.nodes.iter().find(|n| n.node == node).copied()
    }

    /// Records what runs `node` now.
    pub fn set_run(&mut self, run: WfNodeRun) {
        match self.nodes.iter_mut().find(|n| n.node == run.node) {
            Some(n) => *n = run,
            None => self.nodes.push(run),
        }
    }
}

/// The workflow node a job instance runs.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct NodeLinkRecord {
    /// The workflow instance.
    pub wf_instance: WorkflowInstanceId,
    /// The node.
    pub node: NodeId,
    /// The node's attempt.
    pub attempt: u32,
    /// The workflow context at dispatch (JSON object text), sent with every ScheduleJob of
    /// the instance.
    pub context_json: String,
}

/// One workflow transition, written as one batch by [`LogRepo::write_wf`].
#[derive(Debug, Default)]
pub struct WfWrite {
    /// Workflow instances to put (the one that moved, nested ones it starts), each with
    /// `created` (a new record: its index rows are written too) and `finished` (it leaves
    /// the `wf_active` index; otherwise it is put there).
    pub wf_instances: Vec<(WfInstanceRecord, bool, bool)>,
    /// Job instances created for dispatched nodes (ids assigned by the caller with
    /// [`LogRepo::new_instance_id`]) with their links.
    pub job_instances: Vec<(InstanceRecord, NodeLinkRecord)>,
    /// A fire's trigger row: (workflow id, row).
    pub trigger: Option<(WorkflowId, TriggerRecord)>,
    /// Existing job instances to save with the transition (the node's instance that just
    /// reached its final status), with the status last written for each (as
    /// [`LogRepo::put_instance_from`] takes it).
    pub instances: Vec<(InstanceRecord, Option<crate::model::InstanceStatus>)>,
}

/// Workflow id allocation and trigger rows (part of [`LogRepo`]).
#[derive(Debug)]
pub struct WfCounters {
    workflow_ids: IdBlocks,
    instance_ids: IdBlocks,
    triggers: DashMap<WorkflowId, TriggerRecord>,
}

impl WfCounters {
    pub(super) fn open(store: &dyn Store) -> Result<WfCounters, RepoError> {
        let triggers = DashMap::new();
        for kv in Scan::new(store, WF_TRIGGERS, KeyRange::all()) {
            let (k, v) = kv?;
            let id = WorkflowId(keys::read_id(WF_TRIGGERS, &k)?);
            triggers.insert(id, decode::<TriggerRecord>(WF_TRIGGERS, &k, &v)?);
        }
        Ok(WfCounters {
            workflow_ids: IdBlocks::new(
                "workflow",
                NEXT_WORKFLOW_ID,
                counter(store, NEXT_WORKFLOW_ID)?,
            ),
            instance_ids: IdBlocks::new(
                "workflow instance",
                NEXT_WF_INSTANCE_ID,
                counter(store, NEXT_WF_INSTANCE_ID)?,
            ),
            triggers,
        })
    }
}

/// A stored workflow with its current definition and trigger row.
#[derive(Clone, Debug)]
pub struct LoadedWorkflow {
    /// The record.
    pub record: WorkflowRecord,
    /// Its current definition.
    pub def: WorkflowDef,
    /// Its trigger row.
    pub trigger: TriggerRecord,
}

fn def_json(def: &WorkflowDef) -> Result<String, RepoError> {
    serde_json::to_string(def).map_err(|e| RepoError::invalid("workflow", e.to_string()))
}

impl LogRepo {
    // ----- workflows -----

    /// Creates a workflow (already validated by the caller) with its first definition
    /// version, index row and trigger row, in one batch.
    pub fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        self.get_app(app)?;
        let id = WorkflowId(self.wf.workflow_ids.alloc(&**self.store(), 1)?);
        let rec = WorkflowRecord {
            id,
            app_id: app,
            name: def.name.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let trigger = TriggerRecord {
            next_trigger,
            runs: 0,
        };
        let dr = WorkflowDefRecord {
            def_json: def_json(def)?,
        };
        let batch = Batch::new()
            .put(WORKFLOWS, keys::id(id.0), encode(WORKFLOWS, &rec)?)
            .put(WF_VERSIONS, keys::pair(id.0, 1), encode(WF_VERSIONS, &dr)?)
            .put(APP_WORKFLOWS, keys::pair(app.0, id.0), Vec::new())
            .put(WF_TRIGGERS, keys::id(id.0), encode(WF_TRIGGERS, &trigger)?);
        self.wf.triggers.insert(id, trigger);
        Ok(self.submit(batch, rec))
    }

    /// The workflow `id`.
    pub fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        self.get_record(WORKFLOWS, &keys::id(id.0), "workflow", id.0)
    }

    /// Version `version` of workflow `id`'s definition.
    pub fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError> {
        let key = keys::pair(id.0, version);
        let rec: WorkflowDefRecord = self.get_record(WF_VERSIONS, &key, "workflow", id.0)?;
        rec.def(&key)
    }

    /// Replaces workflow `id`'s definition with a new version (older versions stay for the
    /// instances that run them) and sets its next trigger, keeping its run counter.
    pub fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        let mut rec = self.get_workflow(id)?;
        rec.version = rec.version.saturating_add(1);
        rec.name = def.name.clone();
        rec.updated_at = now;
        let dr = WorkflowDefRecord {
            def_json: def_json(def)?,
        };
        let mut entry = self.wf.triggers.entry(id).or_default();
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let batch = Batch::new()
            .put(WORKFLOWS, keys::id(id.0), encode(WORKFLOWS, &rec)?)
            .put(
                WF_VERSIONS,
                keys::pair(id.0, rec.version),
                encode(WF_VERSIONS, &dr)?,
            )
            .put(WF_TRIGGERS, keys::id(id.0), encode(WF_TRIGGERS, &trigger)?);
        *entry = trigger;
        Ok(self.submit(batch, rec))
    }

    /// Deletes workflow `id`, its index and trigger rows (definition versions and instances
    /// stay: history).
    pub fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError> {
        let rec = self.get_workflow(id)?;
        let batch = Batch::new()
            .delete(WORKFLOWS, keys::id(id.0))
            .delete(APP_WORKFLOWS, keys::pair(rec.app_id.0, id.0))
            .delete(WF_TRIGGERS, keys::id(id.0));
        self.wf.triggers.remove(&id);
        Ok(self.submit(batch, rec))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) workflows of `app` matching `filter`, after
    /// `cursor`, in id order. The name is matched on the record; a tag or type filter reads
    /// each candidate's current definition too. Examines at most [`MAX_LIST_SCAN`] workflows;
    /// a page may then be short but still has a cursor to continue from.
    pub fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = keys::id(app.0);
        let mut range = KeyRange::prefix(&prefix);
        if let Some(c) = cursor {
            range = range.after(&keys::pair(app.0, c));
        }
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.store().range(APP_WORKFLOWS, &range, chunk)?;
            let exhausted = rows.len() < chunk;
            for (k, _) in &rows {
                scanned += 1;
                let id = WorkflowId(keys::read_child(APP_WORKFLOWS, k)?);
                range = range.after(k);
                let w = match self.get_workflow(id) {
                    Ok(w) => w,
                    // Deleted between the index read and this one.
                    Err(RepoError::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                if !filter.name_matches(&w.name) {
                    continue;
                }
                if filter.needs_definition() {
                    match self.workflow_def(id, w.version) {
                        Ok(def) if filter.matches(&def) => {}
                        Ok(_) | Err(RepoError::NotFound { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                items.push(w);
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next_cursor: Some(id.0),
                    });
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
                    .map(|(k, _)| keys::read_child(APP_WORKFLOWS, k))
                    .transpose()?;
                return Ok(Page {
                    items,
                    next_cursor: last,
                });
            }
        }
    }

    /// Workflow `id`'s trigger row as last written.
    pub fn wf_trigger(&self, id: WorkflowId) -> Option<TriggerRecord> {
        self.wf.triggers.get(&id).map(|t| *t)
    }

    /// Moves workflow `id`'s next trigger without firing, if `still_current()` holds while
    /// its trigger row is held; `Ok(None)`: nothing written.
    pub fn wf_set_next_trigger_if(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        let Some(mut entry) = self.wf.triggers.get_mut(&id) else {
            return Err(RepoError::not_found("workflow", id.0));
        };
        if !still_current() {
            return Ok(None);
        }
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let batch = Batch::new().put(WF_TRIGGERS, keys::id(id.0), encode(WF_TRIGGERS, &trigger)?);
        *entry = trigger;
        Ok(Some(self.submit(batch, trigger)))
    }

    /// A fire of workflow `id`: bumps its run counter and moves its next trigger, if
    /// `still_current()` holds while the trigger row is held; returns the row to write in the
    /// same [`WfWrite`] as the instance it creates (`None`: the fire is stale).
    pub fn wf_fire_row(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Option<TriggerRecord> {
        let mut entry = self.wf.triggers.get_mut(&id)?;
        if !still_current() {
            return None;
        }
        entry.runs = entry.runs.saturating_add(1);
        entry.next_trigger = next_trigger;
        Some(*entry)
    }

    // ----- workflow instances -----

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

    /// Every workflow with its current definition and trigger row, and every unfinished
    /// workflow instance, in id order (restart).
    pub fn load_workflows(
        &self,
    ) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        let mut wfs = Vec::new();
        for rec in super::repo::scan_records::<WorkflowRecord>(&**self.store(), WORKFLOWS)? {
            let def = self.workflow_def(rec.id, rec.version)?;
            let trigger = self.wf_trigger(rec.id).unwrap_or_default();
            wfs.push(LoadedWorkflow {
                record: rec,
                def,
                trigger,
            });
        }
        let mut active = Vec::new();
        for kv in Scan::new(&**self.store(), WF_ACTIVE, KeyRange::all()) {
            let (k, _) = kv?;
            let id = WorkflowInstanceId(keys::read_id(WF_ACTIVE, &k)?);
            match self.get_wf_instance(id) {
                Ok(r) => active.push(r),
                Err(RepoError::NotFound { .. }) => {
                    return Err(RepoError::corrupt(
                        WF_ACTIVE,
                        &k,
                        format!("index row names missing {id}"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((wfs, active))
    }
}
