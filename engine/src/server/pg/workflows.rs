//! Workflows, their versions and trigger rows, workflow instances and node links.

use std::collections::HashMap;

use crate::ids::{AppId, InstanceId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::server::error::RepoError;
use crate::server::keys;
use crate::server::records::TriggerRecord;
use crate::server::repo::{Commit, Page, WorkflowFilter, MAX_LIST_SCAN, MAX_PAGE};
use crate::server::wf_codec::decode_wf_instance;
use crate::server::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfWrite, WorkflowRecord,
};
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::tables::{self, Op, Table, Val};
use super::{big, def_json, get, i64s, text, unsigned, PgRepo};

impl PgRepo {
    pub(super) fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        self.get_app(app)?;
        let id = WorkflowId(self.alloc(&self.workflow_ids, 1)?);
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
        let ops = vec![
            Self::workflow_op(&rec)?,
            Op::Put(
                Table::WorkflowVersions,
                vec![
                    i64s(Some(big(id.0)?)),
                    i64s(Some(1)),
                    Val::Text(Some(def_json(def)?)),
                ],
            ),
            Self::trigger_op(Table::WorkflowTriggers, id.0, &trigger)?,
        ];
        tables::check_text(&ops)?;
        self.wf_triggers.insert(id, trigger);
        Ok(self.submit(ops, rec))
    }

    pub(super) fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        match self.query_opt(
            "SELECT id, app_id, name, version, created_at, updated_at FROM workflows \
             WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => Self::workflow_from(&row),
            None => Err(RepoError::not_found("workflow", id.0)),
        }
    }

    pub(super) fn workflow_def(
        &self,
        id: WorkflowId,
        version: u64,
    ) -> Result<WorkflowDef, RepoError> {
        match self.query_opt(
            "SELECT definition::text FROM workflow_versions WHERE workflow_id = $1 \
             AND version = $2",
            vec![Box::new(big(id.0)?), Box::new(big(version)?)],
        )? {
            Some(row) => {
                let json: String = get(&row, 0)?;
                serde_json::from_str(&json).map_err(|e| {
                    RepoError::corrupt(
                        "workflow_versions",
                        &keys::pair(id.0, version),
                        format!("definition JSON: {e}"),
                    )
                })
            }
            None => Err(RepoError::not_found("workflow", id.0)),
        }
    }

    pub(super) fn update_workflow(
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
        let mut entry = self.wf_triggers.entry(id).or_default();
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let ops = vec![
            Self::workflow_op(&rec)?,
            Op::Put(
                Table::WorkflowVersions,
                vec![
                    i64s(Some(big(id.0)?)),
                    i64s(Some(big(rec.version)?)),
                    Val::Text(Some(def_json(def)?)),
                ],
            ),
            Self::trigger_op(Table::WorkflowTriggers, id.0, &trigger)?,
        ];
        tables::check_text(&ops)?;
        *entry = trigger;
        let commit = self.submit(ops, rec);
        drop(entry);
        Ok(commit)
    }

    pub(super) fn delete_workflow(
        &self,
        id: WorkflowId,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        let rec = self.get_workflow(id)?;
        let key = vec![i64s(Some(big(id.0)?))];
        let ops = vec![
            Op::Delete(Table::Workflows, key.clone()),
            Op::Delete(Table::WorkflowTriggers, key),
        ];
        self.wf_triggers.remove(&id);
        Ok(self.submit(ops, rec))
    }

    pub(super) fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let app_id = big(app.0)?;
        let mut after = cursor.map(big).transpose()?.unwrap_or(0);
        let mut items = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (limit - items.len()).max(16).min(MAX_LIST_SCAN - scanned);
            let rows = self.query(
                "SELECT id, app_id, name, version, created_at, updated_at FROM workflows \
                 WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                vec![
                    Box::new(app_id),
                    Box::new(after),
                    Box::new(i64::try_from(chunk).unwrap_or(i64::MAX)),
                ],
            )?;
            let exhausted = rows.len() < chunk;
            for row in &rows {
                scanned += 1;
                let w = Self::workflow_from(row)?;
                after = big(w.id.0)?;
                if !filter.name_matches(&w.name) {
                    continue;
                }
                if filter.needs_definition() {
                    match self.workflow_def(w.id, w.version) {
                        Ok(def) if filter.matches(&def) => {}
                        Ok(_) | Err(RepoError::NotFound { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let id = w.id.0;
                items.push(w);
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next_cursor: Some(id),
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
                return Ok(Page {
                    items,
                    next_cursor: Some(unsigned("workflows", after)?),
                });
            }
        }
    }

    pub(super) fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        let Some(mut entry) = self.wf_triggers.get_mut(&id) else {
            return Err(RepoError::not_found("workflow", id.0));
        };
        if !still_current() {
            return Ok(None);
        }
        let mut trigger = *entry;
        trigger.next_trigger = next_trigger;
        let ops = vec![Self::trigger_op(Table::WorkflowTriggers, id.0, &trigger)?];
        *entry = trigger;
        Ok(Some(self.submit(ops, trigger)))
    }

    pub(super) fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord> {
        let mut entry = self.wf_triggers.get_mut(&id)?;
        if !still_current() {
            return None;
        }
        entry.runs = entry.runs.saturating_add(1);
        entry.next_trigger = next_trigger;
        Some(*entry)
    }

    pub(super) fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        let mut ops = Vec::new();
        for (inst, prev) in &w.instances {
            Self::instance_put_ops(&mut ops, inst, *prev)?;
        }
        for (rec, _created, finished) in &w.wf_instances {
            ops.push(Self::wf_instance_op(rec, *finished)?);
        }
        for (inst, link) in &w.job_instances {
            inst.validate()?;
            ops.push(Self::instance_row(inst)?);
            ops.push(Op::Put(
                Table::NodeLinks,
                vec![
                    i64s(Some(big(inst.id.0)?)),
                    i64s(Some(big(link.wf_instance.0)?)),
                    i64s(Some(big(link.node.0)?)),
                    i64s(Some(i64::from(link.attempt))),
                    text(&link.context_json),
                ],
            ));
        }
        if let Some((id, row)) = &w.trigger {
            ops.push(Self::trigger_op(Table::WorkflowTriggers, id.0, row)?);
        }
        Ok(self.submit(ops, ()))
    }

    pub(super) fn get_wf_instance(
        &self,
        id: WorkflowInstanceId,
    ) -> Result<WfInstanceRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM workflow_instances WHERE id = $1",
            vec![Box::new(big(id.0)?)],
        )? {
            Some(row) => decode_wf_instance(
                "workflow_instances",
                &keys::id(id.0),
                &get::<Vec<u8>>(&row, 0)?,
            ),
            None => Err(RepoError::not_found("workflow instance", id.0)),
        }
    }

    pub(super) fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        let Some(row) = self.query_opt(
            "SELECT workflow_instance_id, node, attempt, context FROM node_links \
             WHERE instance_id = $1",
            vec![Box::new(big(id.0)?)],
        )?
        else {
            return Ok(None);
        };
        let attempt: i64 = get(&row, 2)?;
        Ok(Some(NodeLinkRecord {
            wf_instance: WorkflowInstanceId(unsigned("node_links", get(&row, 0)?)?),
            node: NodeId(unsigned("node_links", get(&row, 1)?)?),
            attempt: u32::try_from(attempt).map_err(|_| {
                RepoError::corrupt("node_links", &keys::id(id.0), "attempt out of range")
            })?,
            context_json: get(&row, 3)?,
        }))
    }

    /// The workflow instance each of `ids` ran a node of, in the order of `ids`, in one query.
    pub(super) fn workflow_instances_of(
        &self,
        ids: &[InstanceId],
    ) -> Result<Vec<Option<WorkflowInstanceId>>, RepoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids
            .iter()
            .map(|id| big(id.0))
            .collect::<Result<Vec<i64>, _>>()?;
        let rows = self.query(
            "SELECT instance_id, workflow_instance_id FROM node_links \
             WHERE instance_id = ANY($1::bigint[])",
            vec![Box::new(keys)],
        )?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = get(row, 0)?;
            let wf = unsigned("node_links", get(row, 1)?)?;
            found.insert(id, WorkflowInstanceId(wf));
        }
        ids.iter()
            .map(|id| Ok(found.get(&big(id.0)?).copied()))
            .collect()
    }

    pub(super) fn delete_wf_instance(
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
        let mut node_ids = Vec::new();
        for run in &rec.nodes {
            if let Some(iid) = run.job_instance() {
                node_ids.push(big(iid.0)?);
            }
        }
        let mut ops = Vec::new();
        if !node_ids.is_empty() {
            // Node instances gone already (their job's retention) are not found: skipped.
            let rows = self.query(
                "SELECT id, final FROM instances WHERE id = ANY($1) ORDER BY id",
                vec![Box::new(node_ids)],
            )?;
            for row in &rows {
                let key: i64 = get(row, 0)?;
                let is_final: bool = get(row, 1)?;
                if !force && !is_final {
                    let inst = self.get_instance(InstanceId(unsigned("instances", key)?))?;
                    return Err(RepoError::IllegalTransition {
                        instance: inst.id.0,
                        from: inst.status,
                        action: "be deleted",
                    });
                }
                ops.push(Op::DeleteLogsOf(key));
                ops.push(Op::Delete(Table::Instances, vec![i64s(Some(key))]));
                ops.push(Op::Delete(Table::DelayedRuns, vec![i64s(Some(key))]));
                ops.push(Op::Delete(Table::NodeLinks, vec![i64s(Some(key))]));
            }
        }
        ops.push(Op::Delete(
            Table::WorkflowInstances,
            vec![i64s(Some(big(id.0)?))],
        ));
        Ok(self.submit(ops, ()))
    }

    pub(super) fn wf_finished_beyond(
        &self,
        workflow: WorkflowId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<WorkflowInstanceId>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let workflow = big(workflow.0)?;
        let mut before = i64::MAX;
        let mut finished = 0usize;
        let mut scanned = 0usize;
        let mut out = Vec::new();
        while scanned < MAX_LIST_SCAN {
            let rows = self.query(
                "SELECT id, finished FROM workflow_instances WHERE workflow_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT 256",
                vec![Box::new(workflow), Box::new(before)],
            )?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                scanned += 1;
                before = get(row, 0)?;
                let is_finished: bool = get(row, 1)?;
                if is_finished {
                    finished += 1;
                    if finished > keep {
                        out.push(WorkflowInstanceId(unsigned("workflow_instances", before)?));
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub(super) fn wf_finished_before(
        &self,
        cutoff: EpochMs,
        from: WorkflowInstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowInstanceId>, Option<WorkflowInstanceId>), RepoError> {
        let mut start = big(from.0)?;
        let mut out = Vec::new();
        let mut examined = 0usize;
        let mut young_run = 0usize;
        loop {
            let rows = self.query(
                "SELECT id, record FROM workflow_instances WHERE id >= $1 ORDER BY id LIMIT 256",
                vec![Box::new(start)],
            )?;
            if rows.is_empty() {
                return Ok((out, None));
            }
            for row in &rows {
                examined += 1;
                let raw: i64 = get(row, 0)?;
                start = raw.saturating_add(1);
                let id = unsigned("workflow_instances", raw)?;
                let rec = decode_wf_instance(
                    "workflow_instances",
                    &raw.to_be_bytes(),
                    &get::<Vec<u8>>(row, 1)?,
                )?;
                let snap = rec.snapshot()?;
                if snap.created_at >= cutoff {
                    young_run += 1;
                    if young_run >= super::AGE_SCAN_YOUNG_RUN {
                        return Ok((out, None));
                    }
                } else {
                    young_run = 0;
                }
                if snap.status.is_finished() && snap.finished_at.is_some_and(|t| t < cutoff) {
                    out.push(WorkflowInstanceId(id));
                }
                if out.len() >= limit || examined >= max_examine {
                    return Ok((out, id.checked_add(1).map(WorkflowInstanceId)));
                }
            }
        }
    }

    pub(super) fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (sql, parent): (&'static str, u64) = match workflow {
            Some(w) => (
                "SELECT id, record FROM workflow_instances WHERE workflow_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                w.0,
            ),
            None => (
                "SELECT id, record FROM workflow_instances WHERE app_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3",
                app.0,
            ),
        };
        let rows = self.query(
            sql,
            vec![
                Box::new(big(parent)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(i64::MAX)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            let id: i64 = get(row, 0)?;
            last = Some(unsigned("workflow_instances", id)?);
            let rec: WfInstanceRecord = decode_wf_instance(
                "workflow_instances",
                &id.to_be_bytes(),
                &get::<Vec<u8>>(row, 1)?,
            )?;
            if rec.app_id == app {
                items.push(rec);
            }
        }
        let next_cursor = if rows.len() == limit { last } else { None };
        Ok(Page { items, next_cursor })
    }

    pub(super) fn load_workflows(
        &self,
    ) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        let mut wfs = Vec::new();
        for row in self.query(
            "SELECT id, app_id, name, version, created_at, updated_at FROM workflows ORDER BY id",
            vec![],
        )? {
            let rec = Self::workflow_from(&row)?;
            let def = self.workflow_def(rec.id, rec.version)?;
            let trigger = self
                .wf_triggers
                .get(&rec.id)
                .map(|t| *t)
                .unwrap_or_default();
            wfs.push(LoadedWorkflow {
                record: rec,
                def,
                trigger,
            });
        }
        let mut active = Vec::new();
        for row in self.query(
            "SELECT id, record FROM workflow_instances WHERE NOT finished ORDER BY id",
            vec![],
        )? {
            let id: i64 = get(&row, 0)?;
            active.push(decode_wf_instance(
                "workflow_instances",
                &id.to_be_bytes(),
                &get::<Vec<u8>>(&row, 1)?,
            )?);
        }
        Ok((wfs, active))
    }
}
