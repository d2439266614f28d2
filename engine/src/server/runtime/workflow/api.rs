//! The workflow methods of [`NodeApi`]: definitions, runs, instances, stop, retry,
//! mark-success.

use super::*;

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
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
    })
}

// ----- the API -----

impl NodeApi {
    fn wf_of(&self, app: &AppRef, id: WorkflowId) -> Result<Arc<WfState>, ApiError> {
        match self.0.workflow(id) {
            Some(w) if !w.deleted.load(Ordering::Acquire) && w.app == app.id => Ok(w),
            _ => Err(ApiError::not_found("workflow", id.0)),
        }
    }

    fn validate(&self, app: &AppRef, body: WorkflowDef) -> Result<ValidDag, ApiError> {
        let sh = &self.0;
        crate::model::check_labels(&body.description, &body.tags)
            .map_err(|(field, msg)| ApiError::invalid(field, msg))?;
        body.validate(
            |j| {
                sh.job(j).is_some_and(|j| {
                    !j.deleted.load(Ordering::Acquire) && j.def().record.app_id == app.id
                })
            },
            |w| {
                sh.workflow(w)
                    .is_some_and(|w| !w.deleted.load(Ordering::Acquire) && w.app == app.id)
            },
        )
        .map_err(wf_error)
        .and_then(|dag| {
            super::super::api::check_period(dag.time_expression(), sh.config.min_period_ms)?;
            Ok(dag)
        })
    }

    fn wf_view(&self, wf: &WfState) -> WorkflowView {
        let cur = wf.cur();
        WorkflowView {
            id: wf.id,
            app_id: wf.app,
            body: cur.dag.def().clone(),
            next_trigger_time: self.0.repo.wf_trigger(wf.id).and_then(|t| t.next_trigger),
            created_at: cur.record.created_at,
            updated_at: cur.record.updated_at,
        }
    }

    fn wf_instance_view(
        &self,
        app: &AppRef,
        id: WorkflowInstanceId,
    ) -> Result<WorkflowInstanceView, ApiError> {
        if let Some(slot) = self.0.wf_slot(id) {
            let w = slot.lock();
            if w.rec.app_id != app.id {
                return Err(ApiError::not_found("workflow instance", id.0));
            }
            return Ok(view_of(&w.rec, &w.machine));
        }
        let rec = self.0.repo.get_wf_instance(id)?;
        if rec.app_id != app.id {
            return Err(ApiError::not_found("workflow instance", id.0));
        }
        Ok(view_of_stored(&rec)?)
    }

    /// The slot of workflow instance `id` (loaded from the store when it is finished).
    fn wf_slot_loaded(&self, app: &AppRef, id: WorkflowInstanceId) -> Result<WfSlot, ApiError> {
        let sh = &self.0;
        if let Some(slot) = sh.wf_slot(id) {
            if slot.lock().rec.app_id != app.id {
                return Err(ApiError::not_found("workflow instance", id.0));
            }
            return Ok(slot);
        }
        let rec = sh.repo.get_wf_instance(id)?;
        if rec.app_id != app.id {
            return Err(ApiError::not_found("workflow instance", id.0));
        }
        let wf = sh
            .workflow(rec.workflow_id)
            .filter(|w| !w.deleted.load(Ordering::Acquire));
        let Some(wf) = wf else {
            return Err(ApiError::conflict(format!(
                "{} of instance {} was deleted",
                rec.workflow_id, id.0
            )));
        };
        let cur = wf.cur();
        let dag = if cur.record.version == rec.version {
            Arc::clone(&cur.dag)
        } else {
            let def = sh.repo.workflow_def(rec.workflow_id, rec.version)?;
            Arc::new(def.validate(|_| true, |_| true).map_err(wf_error)?)
        };
        let snap = rec.snapshot()?;
        let (machine, _) = WorkflowInstance::restore(dag, snap, sh.now())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let slot: WfSlot = Arc::new(Mutex::new(WfInst {
            rec,
            machine,
            counted: false,
        }));
        let entry = sh.wf_active.entry(id).or_insert_with(|| Arc::clone(&slot));
        Ok(Arc::clone(&entry))
    }

    pub(crate) async fn wf_create(
        &self,
        app: AppRef,
        body: WorkflowDef,
    ) -> Result<Created<WorkflowId>, ApiError> {
        let sh = &self.0;
        let dag = self.validate(&app, body)?;
        let now = sh.now();
        let next = initial_next(&dag, now);
        let rec = sh
            .await_commit(sh.repo.create_workflow(app.id, dag.def(), next, now)?)
            .await?;
        let id = rec.id;
        let state = Arc::new(WfState::new(WfVersion {
            record: rec,
            dag: Arc::new(dag),
        }));
        sh.workflows.insert(id, state);
        if let Some(n) = next {
            sh.arm(
                n,
                TimerEv::Workflow {
                    wf: id,
                    gen: 1,
                    due: n,
                },
            );
        }
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
        let items = page
            .items
            .iter()
            .filter_map(|r| sh.workflow(r.id))
            .filter(|w| !w.deleted.load(Ordering::Acquire))
            .map(|w| self.wf_view(&w))
            .collect();
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
        let wf = self.wf_of(&app, id)?;
        Ok(self.wf_view(&wf))
    }

    pub(crate) async fn wf_update(
        &self,
        app: AppRef,
        id: WorkflowId,
        body: WorkflowDef,
    ) -> Result<WorkflowView, ApiError> {
        let sh = &self.0;
        let wf = self.wf_of(&app, id)?;
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
        let now = sh.now();
        let next = initial_next(&dag, now);
        let gen = wf.gen.fetch_add(1, Ordering::AcqRel) + 1;
        let rec = sh
            .await_commit(sh.repo.update_workflow(id, dag.def(), next, now)?)
            .await?;
        *wf.cur.write() = Arc::new(WfVersion {
            record: rec,
            dag: Arc::new(dag),
        });
        if let Some(n) = next {
            sh.arm(
                n,
                TimerEv::Workflow {
                    wf: id,
                    gen,
                    due: n,
                },
            );
        }
        Ok(self.wf_view(&wf))
    }

    pub(crate) async fn wf_delete(&self, app: AppRef, id: WorkflowId) -> Result<(), ApiError> {
        let sh = &self.0;
        let wf = self.wf_of(&app, id)?;
        // Slots are collected first: no instance mutex is taken under the map's locks.
        let slots: Vec<WfSlot> = sh.wf_active.iter().map(|e| Arc::clone(e.value())).collect();
        let running = slots.iter().any(|s| {
            let w = s.lock();
            w.rec.workflow_id == id && !w.machine.status().is_finished()
        });
        if running {
            return Err(ApiError::conflict(format!(
                "{id} has an instance running; stop it first"
            )));
        }
        let nester = sh.workflows.iter().find_map(|w| {
            (w.id != id
                && !w.deleted.load(Ordering::Acquire)
                && w.cur()
                    .dag
                    .def()
                    .nodes
                    .iter()
                    .any(|n| n.kind == NodeKind::NestedWorkflow && n.workflow_id == Some(id)))
            .then_some(w.id)
        });
        if let Some(other) = nester {
            return Err(ApiError::conflict(format!("{id} is nested by {other}")));
        }
        wf.gen.fetch_add(1, Ordering::AcqRel);
        sh.await_commit(sh.repo.delete_workflow(id)?).await?;
        wf.deleted.store(true, Ordering::Release);
        sh.workflows.remove(&id);
        Ok(())
    }

    pub(crate) async fn wf_run(
        &self,
        app: AppRef,
        id: WorkflowId,
        r: RunWorkflow,
    ) -> Result<WorkflowRunCreated, ApiError> {
        let sh = &self.0;
        let wf = self.wf_of(&app, id)?;
        if r.delay_ms > MAX_DELAY_MS {
            return Err(ApiError::invalid(
                "delay_ms",
                format!("at most {MAX_DELAY_MS}, got {}", r.delay_ms),
            ));
        }
        let init = init_params(r.init_params)?;
        let now = sh.now();
        let delay = i64::try_from(r.delay_ms).unwrap_or(0);
        let due = (delay > 0).then(|| now.saturating_add(delay));
        let id = sh.wf_create_instance(&wf, init, due, None, 0, now).await?;
        Ok(WorkflowRunCreated {
            workflow_instance_id: id,
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
        let mut items = Vec::with_capacity(page.items.len());
        for rec in &page.items {
            match sh.wf_slot(rec.id) {
                Some(slot) => {
                    let w = slot.lock();
                    items.push(view_of(&w.rec, &w.machine));
                }
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
                sh.wf_stop(id).await?;
            }
            WorkflowInstanceAction::Retry => {
                let slot = self.wf_slot_loaded(&app, id)?;
                let now = sh.now();
                let pending = {
                    let mut w = slot.lock();
                    let actions = match w.machine.retry(now) {
                        Ok(a) => a,
                        Err(e) => {
                            drop(w);
                            sh.wf_settle(id);
                            return Err(ApiError::conflict(e.to_string()));
                        }
                    };
                    if !w.counted {
                        if let Some(wf) = sh.workflow(w.rec.workflow_id) {
                            wf.running.fetch_add(1, Ordering::AcqRel);
                        }
                        w.counted = true;
                    }
                    sh.metrics.wf_started.fetch_add(1, Ordering::Relaxed);
                    sh.advance(&mut w, actions, now, false, None, None)
                };
                if pending.commit.is_none() {
                    return Err(ApiError::unavailable("the store refuses writes"));
                }
                sh.complete(pending).await;
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
        let slot = self.wf_slot_loaded(&app, id)?;
        let now = sh.now();
        let pending = {
            let mut w = slot.lock();
            let actions = match w.machine.mark_success(node, now) {
                Ok(a) => a,
                Err(e) => {
                    drop(w);
                    sh.wf_settle(id);
                    return Err(match e {
                        crate::workflow::InstanceError::UnknownNode(n) => {
                            ApiError::not_found("node", n.0)
                        }
                        e => ApiError::conflict(e.to_string()),
                    });
                }
            };
            sh.advance(&mut w, actions, now, false, None, None)
        };
        if pending.commit.is_none() {
            sh.wf_settle(id);
            return Err(ApiError::unavailable("the store refuses writes"));
        }
        sh.complete(pending).await;
        self.wf_instance_view(&app, id)
    }
}
