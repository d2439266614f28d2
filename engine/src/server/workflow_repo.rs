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

use dashmap::DashMap;
use ferrojob_store::{Batch, KeyRange, Scan, Store};
use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{AppId, InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::EpochMs;
use crate::workflow::{InstanceSnapshot, WorkflowDef};

use super::codec::{decode, encode};
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::keys;
use super::records::TriggerRecord;
use super::repo::{counter, IdBlocks, LogRepo, Page, WorkflowFilter, MAX_LIST_SCAN, MAX_PAGE};
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
    pub(super) instance_ids: IdBlocks,
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
