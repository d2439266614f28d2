//! The workflow methods of [`NodeApi`]: definitions, runs, instances, stop, retry,
//! mark-success.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::api::{
    ApiError, AppRef, Created, RunWorkflow, WorkflowDef, WorkflowInstanceAction,
    WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceView, WorkflowList,
    WorkflowNodeView, WorkflowRunCreated, WorkflowView,
};
use crate::ids::{NodeId, WorkflowId, WorkflowInstanceId};
use crate::server::core::commands::{check_period, MAX_DELAY_MS};
use crate::server::core::workflow::{
    initial_next, to_api, wf_error, Transition, WfInst, WfState, WfVersion,
};
use crate::server::core::Core;
use crate::server::workflow_repo::WfInstanceRecord;
use crate::server::RepoError;
use crate::workflow::{NodeKind, ValidDag, WorkflowInstance};

use super::api::NodeApi;

/// `init_params`: a JSON object, a string holding one, or absent/null = `{}`.
fn init_params(v: Option<Json>) -> Result<Map<String, Json>, ApiError> {
    match v {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(m)) => Ok(m),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Json::String(s)) => match serde_json::from_str::<Json>(&s) {
            Ok(Json::Object(m)) => Ok(m),
            _ => Err(ApiError::invalid(
                "init_params",
                "a string init_params must hold a JSON object",
            )),
        },
        Some(_) => Err(ApiError::invalid(
            "init_params",
            "must be a JSON object or a string holding one",
        )),
    }
}

fn view_of(rec: &WfInstanceRecord, m: &WorkflowInstance) -> WorkflowInstanceView {
    WorkflowInstanceView {
        id: rec.id,
        workflow_id: rec.workflow_id,
        status: m.status(),
        context: m.context().clone(),
        nodes: m
            .nodes()
            .iter()
            .map(|n| WorkflowNodeView {
                id: n.id,
                status: n.status,
                instance_id: rec.run_of(n.id).map(|r| r.instance),
                result: n.result.clone(),
            })
            .collect(),
        parent_instance_id: rec.parent.map(|p| p.instance),
        trigger_time: rec.trigger_time,
        created_at: m.created_at(),
        started_at: m.started_at(),
        finished_at: m.finished_at(),
    }
}

fn view_of_stored(rec: &WfInstanceRecord) -> Result<WorkflowInstanceView, RepoError> {
    let s = rec.snapshot()?;
    Ok(WorkflowInstanceView {
        id: rec.id,
        workflow_id: rec.workflow_id,
        status: s.status,
        context: s.context,
        nodes: s
            .nodes
            .iter()
            .map(|n| WorkflowNodeView {
                id: n.id,
                status: n.status,
                instance_id: rec.run_of(n.id).map(|r| r.instance),
                result: n.result.clone(),
            })
            .collect(),
        parent_instance_id: rec.parent.map(|p| p.instance),
        trigger_time: rec.trigger_time,
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
    })
}

// ----- the API -----

impl NodeApi {
    /// `app`'s live workflow `id`: its current version.
    fn wf_of(&self, app: &AppRef, id: WorkflowId) -> Result<Arc<WfVersion>, ApiError> {
        self.0
            .core
            .lock()
            .workflow(id)
            .filter(|w| w.app == app.id)
            .map(WfState::cur)
            .ok_or_else(|| ApiError::not_found("workflow", id.0))
    }

    fn validate(&self, app: &AppRef, body: WorkflowDef) -> Result<ValidDag, ApiError> {
        let sh = &self.0;
        crate::model::check_labels(&body.description, &body.tags)
            .map_err(|(field, msg)| ApiError::invalid(field, msg))?;
        crate::calendar::check_calendar_names(&body.calendars)
            .map_err(|e| ApiError::invalid("calendars", e))?;
        self.check_calendars(app, &body.calendars)?;
        let dag = {
            let core = sh.core.lock();
            body.validate(
                |j| core.job_of(app.id, j).is_ok(),
                |w| core.workflow(w).is_some_and(|w| w.app == app.id),
            )
            .map_err(wf_error)?
        };
        check_period(dag.time_expression(), sh.config.min_period_ms)?;
        Ok(dag)
    }

    fn wf_view(&self, cur: &WfVersion) -> WorkflowView {
        let id = cur.record.id;
        WorkflowView {
            id,
            app_id: cur.record.app_id,
            body: cur.dag.def().clone(),
            next_trigger_time: self.0.repo.wf_trigger(id).and_then(|t| t.next_trigger),
            calendar_skipped_runs: self
                .0
                .core
                .lock()
                .workflows
                .get(&id)
                .map_or(0, |w| w.calendar_skipped),
            created_at: cur.record.created_at,
            updated_at: cur.record.updated_at,
        }
    }

    fn wf_instance_view(
        &self,
        app: &AppRef,
        id: WorkflowInstanceId,
    ) -> Result<WorkflowInstanceView, ApiError> {
        let held = self
            .0
            .core
            .lock()
            .wf_active
            .get(&id)
            .map(|w| (w.rec.app_id, view_of(&w.rec, &w.machine)));
        if let Some((owner, view)) = held {
            if owner != app.id {
                return Err(ApiError::not_found("workflow instance", id.0));
            }
            return Ok(view);
        }
        let rec = self.0.repo.get_wf_instance(id)?;
        if rec.app_id != app.id {
            return Err(ApiError::not_found("workflow instance", id.0));
        }
        Ok(view_of_stored(&rec)?)
    }

    /// Makes the core hold workflow instance `id` (loaded from the store when it is
    /// finished), for a command on it.
    fn hold_wf_instance(
        core: &mut Core,
        app: &AppRef,
        id: WorkflowInstanceId,
        now: crate::time_expression::EpochMs,
    ) -> Result<(), ApiError> {
        if let Some(w) = core.wf_active.get(&id) {
            if w.rec.app_id != app.id {
                return Err(ApiError::not_found("workflow instance", id.0));
            }
            return Ok(());
        }
        if core.wf_deleting.contains(&id) {
            return Err(ApiError::conflict(format!(
                "workflow instance {} is being deleted",
                id.0
            )));
        }
        let rec = core.repo.get_wf_instance(id)?;
        if rec.app_id != app.id {
            return Err(ApiError::not_found("workflow instance", id.0));
        }
        let Some(cur) = core.workflow(rec.workflow_id).map(WfState::cur) else {
            return Err(ApiError::conflict(format!(
                "{} of instance {} was deleted",
                rec.workflow_id, id.0
            )));
        };
        let dag = if cur.record.version == rec.version {
            Arc::clone(&cur.dag)
        } else {
            let def = core.repo.workflow_def(rec.workflow_id, rec.version)?;
            Arc::new(def.validate(|_| true, |_| true).map_err(wf_error)?)
        };
        let snap = rec.snapshot()?;
        let (machine, _) = WorkflowInstance::restore(dag, snap, now)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        core.wf_active.insert(
            id,
            WfInst {
                rec,
                machine,
                counted: false,
            },
        );
        Ok(())
    }

    /// Awaits a transition's write in a task of its own (its follow-up happens even if the
    /// caller goes away), then starts what it created.
    async fn finish(&self, t: Transition) -> Result<(), ApiError> {
        let rt = Arc::clone(&self.0);
        let (commit, pending) = t;
        let task = tokio::spawn(async move {
            let r = rt.await_commit(commit).await;
            let ok = r.is_ok();
            rt.step(|core, now| core.complete(pending, ok, now));
            r
        });
        match task.await {
            Ok(r) => Ok(r?),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    pub(crate) async fn wf_create(
        &self,
        app: AppRef,
        body: WorkflowDef,
    ) -> Result<Created<WorkflowId>, ApiError> {
        let sh = &self.0;
        let dag = self.validate(&app, body)?;
        // A server of a cluster creates workflows only of the apps it acts for.
        sh.core.lock().acting_for(app.id)?;
        let now = sh.now();
        let next = initial_next(&dag, now);
        let rec = sh
            .await_commit(sh.repo.create_workflow(app.id, dag.def(), next, now)?)
            .await?;
        let id = rec.id;
        sh.step(|core, _| core.workflow_created(rec, dag, next));
        Ok(Created { id })
    }

    pub(crate) async fn wf_list(
        &self,
        app: AppRef,
        q: crate::api::WorkflowQuery,
    ) -> Result<WorkflowList, ApiError> {
        let sh = &self.0;
        let limit = q
            .limit
            .map_or(100, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let filter = crate::server::WorkflowFilter {
            name: q.name,
            tag: q.tag,
            time_expression_type: q.time_expression_type,
        };
        let page = sh.repo.list_workflows(app.id, &filter, q.cursor, limit)?;
        let curs: Vec<Arc<WfVersion>> = {
            let core = sh.core.lock();
            page.items
                .iter()
                .filter_map(|r| core.workflow(r.id).map(WfState::cur))
                .collect()
        };
        let items = curs.iter().map(|c| self.wf_view(c)).collect();
        Ok(WorkflowList {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub(crate) async fn wf_get(
        &self,
        app: AppRef,
        id: WorkflowId,
    ) -> Result<WorkflowView, ApiError> {
        let cur = self.wf_of(&app, id)?;
        Ok(self.wf_view(&cur))
    }

    pub(crate) async fn wf_update(
        &self,
        app: AppRef,
        id: WorkflowId,
        body: WorkflowDef,
    ) -> Result<WorkflowView, ApiError> {
        let sh = &self.0;
        self.wf_of(&app, id)?;
        let dag = self.validate(&app, body)?;
        // A nested reference to itself (directly) is a loop: refuse it here already.
        if dag
            .def()
            .nodes
            .iter()
            .any(|n| n.kind == NodeKind::NestedWorkflow && n.workflow_id == Some(id))
        {
            return Err(ApiError::invalid(
                "nodes",
                format!("{id} cannot nest itself"),
            ));
        }
        let (commit, gen, next) = sh.step(|core, now| {
            let next = initial_next(&dag, now);
            let commit = core.repo.update_workflow(id, dag.def(), next, now)?;
            let gen = match core.workflows.get_mut(&id) {
                Some(w) => {
                    w.gen += 1;
                    w.gen
                }
                None => 0,
            };
            Ok::<_, ApiError>((commit, gen, next))
        })?;
        let rec = sh.await_commit(commit).await?;
        let cur = Arc::new(WfVersion {
            record: rec,
            dag: Arc::new(dag),
        });
        sh.step(|core, _| {
            if let Some(w) = core.workflows.get_mut(&id).filter(|w| w.gen == gen) {
                w.cur = Arc::clone(&cur);
                if let Some(n) = next {
                    core.arm(
                        n,
                        crate::server::core::TimerEv::Workflow {
                            wf: id,
                            gen,
                            due: n,
                        },
                    );
                }
            }
        });
        Ok(self.wf_view(&cur))
    }

    pub(crate) async fn wf_delete(&self, app: AppRef, id: WorkflowId) -> Result<(), ApiError> {
        let sh = &self.0;
        self.wf_of(&app, id)?;
        let commit = sh.step(|core, _| {
            let running = core
                .wf_active
                .values()
                .any(|w| w.rec.workflow_id == id && !w.machine.status().is_finished());
            if running {
                return Err(ApiError::conflict(format!(
                    "{id} has an instance running; stop it first"
                )));
            }
            let mut nesters: Vec<WorkflowId> = core
                .workflows
                .values()
                .filter(|w| {
                    w.id != id
                        && !w.deleted
                        && w.cur.dag.def().nodes.iter().any(|n| {
                            n.kind == NodeKind::NestedWorkflow && n.workflow_id == Some(id)
                        })
                })
                .map(|w| w.id)
                .collect();
            nesters.sort_unstable_by_key(|w| w.0);
            if let Some(other) = nesters.first() {
                return Err(ApiError::conflict(format!("{id} is nested by {other}")));
            }
            let commit = core.repo.delete_workflow(id)?;
            if let Some(w) = core.workflows.get_mut(&id) {
                w.gen += 1;
            }
            Ok(commit)
        })?;
        sh.await_commit(commit).await?;
        sh.step(|core, _| {
            if let Some(w) = core.workflows.get_mut(&id) {
                w.deleted = true;
            }
            core.workflows.remove(&id);
        });
        Ok(())
    }

    pub(crate) async fn wf_run(
        &self,
        app: AppRef,
        id: WorkflowId,
        r: RunWorkflow,
    ) -> Result<WorkflowRunCreated, ApiError> {
        let sh = &self.0;
        self.wf_of(&app, id)?;
        if r.delay_ms > MAX_DELAY_MS {
            return Err(ApiError::invalid(
                "delay_ms",
                format!("at most {MAX_DELAY_MS}, got {}", r.delay_ms),
            ));
        }
        let init = init_params(r.init_params)?;
        let delay = i64::try_from(r.delay_ms).unwrap_or(0);
        let (wfi, t) = sh.step(|core, now| {
            let due = (delay > 0).then(|| now.saturating_add(delay));
            core.wf_create_instance(id, init, due, None, 0, now)
        })?;
        self.finish(t).await?;
        Ok(WorkflowRunCreated {
            workflow_instance_id: wfi,
        })
    }

    pub(crate) async fn wf_instance(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
    ) -> Result<WorkflowInstanceView, ApiError> {
        self.wf_instance_view(&app, id)
    }

    pub(crate) async fn wf_instances(
        &self,
        app: AppRef,
        q: WorkflowInstanceQuery,
    ) -> Result<WorkflowInstanceList, ApiError> {
        let sh = &self.0;
        let limit = q
            .limit
            .map_or(100, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let page = sh
            .repo
            .list_wf_instances(app.id, q.workflow_id, q.cursor, limit)?;
        let held: Vec<Option<WorkflowInstanceView>> = {
            let core = sh.core.lock();
            page.items
                .iter()
                .map(|r| {
                    core.wf_active
                        .get(&r.id)
                        .map(|w| view_of(&w.rec, &w.machine))
                })
                .collect()
        };
        let mut items = Vec::with_capacity(page.items.len());
        for (rec, h) in page.items.iter().zip(held) {
            match h {
                Some(v) => items.push(v),
                None => items.push(view_of_stored(rec).map_err(to_api)?),
            }
        }
        Ok(WorkflowInstanceList {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub(crate) async fn wf_action(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        a: WorkflowInstanceAction,
    ) -> Result<WorkflowInstanceView, ApiError> {
        let sh = &self.0;
        match a {
            WorkflowInstanceAction::Stop => {
                self.wf_instance_view(&app, id)?;
                let t = sh.step(|core, now| core.wf_stop_transition(id, now))?;
                self.finish(t).await?;
            }
            WorkflowInstanceAction::Retry => {
                let t = sh.step(|core, now| {
                    Self::hold_wf_instance(core, &app, id, now)?;
                    let r = core.with_wf(id, |core, w| {
                        let actions = w
                            .machine
                            .retry(now)
                            .map_err(|e| ApiError::conflict(e.to_string()))?;
                        if !w.counted {
                            if let Some(wf) = core.workflows.get_mut(&w.rec.workflow_id) {
                                wf.running += 1;
                            }
                            w.counted = true;
                        }
                        core.metrics.count_wf_started();
                        core.advance(w, actions, now, false, None, None)
                            .ok_or_else(|| ApiError::unavailable("the store refuses writes"))
                    });
                    let r =
                        r.unwrap_or_else(|| Err(ApiError::not_found("workflow instance", id.0)));
                    if r.is_err() {
                        core.wf_settle(id);
                    }
                    r
                })?;
                self.finish(t).await?;
            }
        }
        self.wf_instance_view(&app, id)
    }

    pub(crate) async fn wf_mark_success(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        node: NodeId,
    ) -> Result<WorkflowInstanceView, ApiError> {
        let sh = &self.0;
        let t = sh.step(|core, now| {
            Self::hold_wf_instance(core, &app, id, now)?;
            let r = core.with_wf(id, |core, w| {
                let actions = w.machine.mark_success(node, now).map_err(|e| match e {
                    crate::workflow::InstanceError::UnknownNode(n) => {
                        ApiError::not_found("node", n.0)
                    }
                    e => ApiError::conflict(e.to_string()),
                })?;
                core.advance(w, actions, now, false, None, None)
                    .ok_or_else(|| ApiError::unavailable("the store refuses writes"))
            });
            let r = r.unwrap_or_else(|| Err(ApiError::not_found("workflow instance", id.0)));
            if r.is_err() {
                core.wf_settle(id);
            }
            r
        })?;
        self.finish(t).await?;
        self.wf_instance_view(&app, id)
    }
}
