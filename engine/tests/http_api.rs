//! The OpenAPI's HTTP layer (`ferrojob::http`) and Rust client (`ferrojob::client`) against an
//! in-memory [`Api`]: every route round-trips through the client; auth rules; malformed input
//! of every kind gets a 4xx with the JSON error shape and the server keeps serving; random
//! bodies never get a 5xx; slow, idle and surplus connections and shutdown with open
//! connections, over raw sockets.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrojob::api::{
    Api, ApiError, ApiFuture, AppCreated, AppRef, CopyJob, CopyWorkflow, CreateApp, Created,
    ErrorBody, ErrorCode, Health, InstanceAction, InstanceList, InstanceQuery, InstanceView,
    JobBody, JobList, JobQuery, JobView, LogFieldView, LogLineView, LogQuery, LogView, RunCreated,
    RunJob, RunWorkflow, ValidateRequest, WorkerInfo, WorkerList, WorkflowDef,
    WorkflowInstanceAction, WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceStatus,
    WorkflowInstanceView, WorkflowList, WorkflowNodeView, WorkflowQuery, WorkflowRunCreated,
    WorkflowView,
};
use ferrojob::client::{Client, ClientError, ClientOptions};
use ferrojob::http::{ConnectionRateLimit, HttpConfig, HttpServer};
use ferrojob::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};
use ferrojob::model::InstanceStatus;
use ferrojob::model::LogLevel;
use ferrojob::server::api_convert::job_record;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::workflow::{
    Action, EdgeDef, FailurePolicy, InstanceError, NodeDef, NodeStatus, WorkflowInstance,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "admin-token-0123456789";
/// `get_job` of this id never answers (for the client's request timeout).
const HANG: u64 = u64::MAX;

// ---------------------------------------------------------------------------------------------
// The mock Api: small but real (apps, jobs, instances in a Mutex'd map).

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    apps: Vec<AppRef>,
    jobs: BTreeMap<u64, JobView>,
    /// Instance id → (app id, view).
    instances: BTreeMap<u64, (u64, InstanceView)>,
    workflows: BTreeMap<u64, WorkflowView>,
    workflow_instances: BTreeMap<u64, MockWorkflowInstance>,
    /// The last job, workflow and instance listing queries received (what crossed HTTP).
    last_job_query: Option<JobQuery>,
    last_workflow_query: Option<WorkflowQuery>,
    last_instance_query: Option<InstanceQuery>,
}

/// The mock's clock: every workflow transition happens at this time.
const NOW: i64 = 1_000;

#[derive(Debug)]
struct MockWorkflowInstance {
    app_id: u64,
    workflow_id: u64,
    instance: WorkflowInstance,
    /// Node id → the job instance of its latest attempt.
    node_instances: BTreeMap<NodeId, u64>,
}

#[derive(Debug, Default)]
struct MockApi {
    state: Mutex<State>,
}

impl MockApi {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn page_limit(limit: Option<u32>, default: u32) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    Ok(limit as usize)
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn job(&mut self, app: &AppRef, id: u64) -> Result<&mut JobView, ApiError> {
        self.jobs
            .get_mut(&id)
            .filter(|j| j.app_id == app.id)
            .ok_or_else(|| ApiError::not_found("job", id))
    }

    fn instance(&mut self, app: &AppRef, id: u64) -> Result<&mut InstanceView, ApiError> {
        match self.instances.get_mut(&id) {
            Some((a, view)) if *a == app.id.0 => Ok(view),
            _ => Err(ApiError::not_found("instance", id)),
        }
    }

    fn workflow(&mut self, app: &AppRef, id: u64) -> Result<&mut WorkflowView, ApiError> {
        self.workflows
            .get_mut(&id)
            .filter(|w| w.app_id == app.id)
            .ok_or_else(|| ApiError::not_found("workflow", id))
    }

    fn workflow_instance(
        &mut self,
        app: &AppRef,
        id: u64,
    ) -> Result<&mut MockWorkflowInstance, ApiError> {
        self.workflow_instances
            .get_mut(&id)
            .filter(|w| w.app_id == app.id.0)
            .ok_or_else(|| ApiError::not_found("workflow instance", id))
    }

    /// `WorkflowDef::validate` against this app's jobs and workflows.
    fn validate_workflow(
        &self,
        app: &AppRef,
        body: &WorkflowDef,
        updating: Option<u64>,
    ) -> Result<(), ApiError> {
        let job_exists = |id: JobId| self.jobs.get(&id.0).is_some_and(|j| j.app_id == app.id);
        let workflow_exists = |id: WorkflowId| {
            Some(id.0) != updating
                && self
                    .workflows
                    .get(&id.0)
                    .is_some_and(|w| w.app_id == app.id)
        };
        body.clone()
            .validate(job_exists, workflow_exists)
            .map(drop)
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))
    }

    fn run_workflow(
        &mut self,
        app: &AppRef,
        id: u64,
        req: RunWorkflow,
    ) -> Result<WorkflowRunCreated, ApiError> {
        let body = self.workflow(app, id)?.body.clone();
        let dag = body
            .validate(|_| true, |_| true)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let init = match req.init_params {
            None => Value::Null,
            Some(Value::String(text)) => {
                serde_json::from_str(&text).map_err(|e| ApiError::invalid("init_params", e))?
            }
            Some(v) => v,
        };
        let mut instance = WorkflowInstance::new(Arc::new(dag), init, NOW)
            .map_err(|e| ApiError::invalid("init_params", e))?;
        let actions = instance
            .start(NOW)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let wid = self.id();
        let mut mock = MockWorkflowInstance {
            app_id: app.id.0,
            workflow_id: id,
            instance,
            node_instances: BTreeMap::new(),
        };
        self.perform(wid, &mut mock, actions);
        self.workflow_instances.insert(wid, mock);
        Ok(WorkflowRunCreated {
            workflow_instance_id: WorkflowInstanceId(wid),
        })
    }

    /// Runs `f` on workflow instance `id` (which exists), performs its actions and answers
    /// the view after them; an `InstanceError` is a 404 (unknown node) or a 409.
    fn with_workflow_instance(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut WorkflowInstance) -> Result<Vec<Action>, InstanceError>,
    ) -> Result<WorkflowInstanceView, ApiError> {
        let mut mock = self
            .workflow_instances
            .remove(&id)
            .ok_or_else(|| ApiError::not_found("workflow instance", id))?;
        let r = f(&mut mock.instance);
        if let Ok(actions) = &r {
            self.perform(id, &mut mock, actions.clone());
        }
        self.workflow_instances.insert(id, mock);
        match r {
            Ok(_) => Ok(self.workflow_instance_view(id)),
            Err(InstanceError::UnknownNode(n)) => Err(ApiError::not_found("node", n.0)),
            Err(e) => Err(ApiError::conflict(e.to_string())),
        }
    }

    /// Performs a workflow instance's actions the way the class doc of the mock says.
    fn perform(&mut self, wid: u64, mock: &mut MockWorkflowInstance, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Dispatch {
                    node,
                    job_id,
                    params,
                    ..
                } => {
                    let name = self.jobs.get(&job_id.0).map(|j| j.body.name.clone());
                    let outcome = match name.as_deref() {
                        Some("hold") => None,
                        Some("fail") => Some((false, "boom".to_owned())),
                        _ => Some((true, params.clone())),
                    };
                    let instance_id = self.id();
                    let (status, result) = match &outcome {
                        None => (InstanceStatus::Running, None),
                        Some((true, r)) => (InstanceStatus::Succeed, Some(r.clone())),
                        Some((false, r)) => (InstanceStatus::Failed, Some(r.clone())),
                    };
                    let view = InstanceView {
                        id: InstanceId(instance_id),
                        job_id,
                        status,
                        result,
                        params,
                        trigger_time: NOW,
                        actual_trigger_time: Some(NOW),
                        started_time: Some(NOW),
                        finished_time: outcome.as_ref().map(|_| NOW),
                        worker: None,
                        running_times: 1,
                        run: 0,
                        workflow_instance_id: Some(WorkflowInstanceId(wid)),
                        tasks: None,
                        next_retry_at: None,
                    };
                    self.instances.insert(instance_id, (mock.app_id, view));
                    mock.node_instances.insert(node, instance_id);
                    if let Some((ok, result)) = outcome {
                        if let Ok(more) =
                            mock.instance.on_node_finished(node, ok, Some(result), NOW)
                        {
                            queue.extend(more);
                        }
                    }
                }
                Action::Cancel { node } => {
                    if let Some((_, view)) = mock
                        .node_instances
                        .get(&node)
                        .and_then(|i| self.instances.get_mut(i))
                    {
                        view.status = InstanceStatus::Stopped;
                    }
                }
                // Nested workflows stay RUNNING in the mock.
                Action::RunWorkflow { .. } | Action::Finished { .. } => {}
            }
        }
    }

    /// The view of workflow instance `id` (an unknown id gives an empty view; callers check).
    fn workflow_instance_view(&self, id: u64) -> WorkflowInstanceView {
        let Some(mock) = self.workflow_instances.get(&id) else {
            return WorkflowInstanceView {
                id: WorkflowInstanceId(id),
                workflow_id: WorkflowId(0),
                status: WorkflowInstanceStatus::Waiting,
                context: serde_json::Map::new(),
                nodes: vec![],
                parent_instance_id: None,
                trigger_time: 0,
                created_at: 0,
                started_at: None,
                finished_at: None,
            };
        };
        let wi = &mock.instance;
        WorkflowInstanceView {
            id: WorkflowInstanceId(id),
            workflow_id: WorkflowId(mock.workflow_id),
            status: wi.status(),
            context: wi.context().clone(),
            nodes: wi
                .nodes()
                .iter()
                .map(|n| WorkflowNodeView {
                    id: n.id,
                    status: n.status,
                    instance_id: mock.node_instances.get(&n.id).copied(),
                    result: n.result.clone(),
                })
                .collect(),
            parent_instance_id: None,
            trigger_time: wi.created_at(),
            created_at: wi.created_at(),
            started_at: wi.started_at(),
            finished_at: wi.finished_at(),
        }
    }
}

fn ready<'a, T: Send + 'a>(r: Result<T, ApiError>) -> ApiFuture<'a, T> {
    Box::pin(async move { r })
}

impl Api for MockApi {
    fn resolve_app(&self, app: &str) -> Result<AppRef, ApiError> {
        let st = self.lock();
        st.apps
            .iter()
            .find(|a| a.name == app || app.parse::<u64>().is_ok_and(|id| id == a.id.0))
            .cloned()
            .ok_or_else(|| ApiError::not_found("app", app))
    }

    fn create_app(&self, req: CreateApp) -> ApiFuture<'_, AppCreated> {
        let mut st = self.lock();
        if st.apps.iter().any(|a| a.name == req.name) {
            return ready(Err(ApiError::conflict(format!("app {} exists", req.name))));
        }
        let id = st.id();
        st.apps.push(AppRef {
            id: AppId(id),
            name: req.name.clone(),
            secret: req.secret,
        });
        ready(Ok(AppCreated {
            id: AppId(id),
            name: req.name,
        }))
    }

    fn create_job(&self, app: AppRef, body: JobBody) -> ApiFuture<'_, Created<JobId>> {
        if body.name == "panic" {
            panic!("the mock panics on a job named `panic`");
        }
        if let Err(e) = job_record(&body, app.id) {
            return ready(Err(e));
        }
        let mut st = self.lock();
        let id = st.id();
        let view = JobView {
            id: JobId(id),
            app_id: app.id,
            body,
            next_trigger_time: None,
            runs: 0,
            skipped_runs: 0,
            calendar_skipped_runs: 0,
            created_at: 1,
            updated_at: 1,
        };
        st.jobs.insert(id, view);
        ready(Ok(Created { id: JobId(id) }))
    }

    fn list_jobs(&self, app: AppRef, query: JobQuery) -> ApiFuture<'_, JobList> {
        let mut st = self.lock();
        st.last_job_query = Some(query.clone());
        let r = page_limit(query.limit, 100).map(|limit| {
            let after = query.cursor.unwrap_or(0);
            let mut items: Vec<JobView> = st
                .jobs
                .range(after + 1..)
                .map(|(_, j)| j)
                .filter(|j| j.app_id == app.id)
                .take(limit + 1)
                .cloned()
                .collect();
            let next_cursor = (items.len() > limit).then(|| {
                items.truncate(limit);
                items.last().map_or(0, |j| j.id.0)
            });
            JobList { items, next_cursor }
        });
        ready(r)
    }

    fn get_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, JobView> {
        let id = id.0;
        if id == HANG {
            return Box::pin(std::future::pending());
        }
        ready(self.lock().job(&app, id).map(|j| j.clone()))
    }

    fn update_job(&self, app: AppRef, id: JobId, body: JobBody) -> ApiFuture<'_, JobView> {
        let id = id.0;
        if let Err(e) = job_record(&body, app.id) {
            return ready(Err(e));
        }
        ready(self.lock().job(&app, id).map(|j| {
            j.body = body;
            j.updated_at += 1;
            j.clone()
        }))
    }

    fn delete_job(&self, app: AppRef, id: JobId) -> ApiFuture<'_, ()> {
        let id = id.0;
        let mut st = self.lock();
        let r = st.job(&app, id).map(|_| ());
        if r.is_ok() {
            st.jobs.remove(&id);
        }
        ready(r)
    }

    fn set_job_enabled(&self, app: AppRef, id: JobId, enabled: bool) -> ApiFuture<'_, JobView> {
        let id = id.0;
        ready(self.lock().job(&app, id).map(|j| {
            j.body.enabled = enabled;
            j.clone()
        }))
    }

    fn run_job(&self, app: AppRef, id: JobId, req: RunJob) -> ApiFuture<'_, RunCreated> {
        let id = id.0;
        let mut st = self.lock();
        let job_id = match st.job(&app, id) {
            Ok(j) => j.id,
            Err(e) => return ready(Err(e)),
        };
        let instance_id = st.id();
        let view = InstanceView {
            id: InstanceId(instance_id),
            job_id,
            status: InstanceStatus::WaitingDispatch,
            result: None,
            params: req.params,
            trigger_time: 1_000 + i64::try_from(req.delay_ms).unwrap_or(0),
            actual_trigger_time: None,
            started_time: None,
            finished_time: None,
            worker: None,
            running_times: 0,
            run: 0,
            workflow_instance_id: None,
            tasks: None,
            next_retry_at: None,
        };
        st.instances.insert(instance_id, (app.id.0, view));
        ready(Ok(RunCreated {
            instance_id: InstanceId(instance_id),
        }))
    }

    fn get_instance(&self, app: AppRef, id: InstanceId) -> ApiFuture<'_, InstanceView> {
        let id = id.0;
        ready(self.lock().instance(&app, id).map(|i| i.clone()))
    }

    fn list_instances(&self, app: AppRef, query: InstanceQuery) -> ApiFuture<'_, InstanceList> {
        let mut st = self.lock();
        st.last_instance_query = Some(query);
        let r = page_limit(query.limit, 100).map(|limit| {
            let before = query.cursor.unwrap_or(u64::MAX);
            let mut items: Vec<InstanceView> = st
                .instances
                .range(..before)
                .rev()
                .filter(|(_, (a, i))| {
                    *a == app.id.0
                        && query.job_id.is_none_or(|j| j == i.job_id)
                        && query.status.is_none_or(|s| s == i.status)
                })
                .take(limit + 1)
                .map(|(_, (_, i))| i.clone())
                .collect();
            let next_cursor = (items.len() > limit).then(|| {
                items.truncate(limit);
                items.last().map_or(0, |i| i.id.0)
            });
            InstanceList { items, next_cursor }
        });
        ready(r)
    }

    fn instance_action(
        &self,
        app: AppRef,
        id: InstanceId,
        action: InstanceAction,
    ) -> ApiFuture<'_, InstanceView> {
        let id = id.0;
        let mut st = self.lock();
        let r = st.instance(&app, id).and_then(|i| {
            use InstanceStatus::*;
            let next = match (action, i.status) {
                (InstanceAction::Cancel, WaitingDispatch) => Canceled,
                (InstanceAction::Stop, WaitingWorkerReceive | Running) => Stopped,
                (InstanceAction::Retry, Failed | Succeed | Canceled | Stopped) => {
                    i.running_times += 1;
                    WaitingDispatch
                }
                (action, status) => {
                    return Err(ApiError::conflict(format!(
                        "cannot {action:?} an instance in status {status:?}"
                    )))
                }
            };
            i.status = next;
            Ok(i.clone())
        });
        ready(r)
    }

    fn instance_log(&self, app: AppRef, id: InstanceId, query: LogQuery) -> ApiFuture<'_, LogView> {
        let id = id.0;
        let mut st = self.lock();
        let r = st.instance(&app, id).and_then(|i| {
            let limit = page_limit(query.limit, 1000)?;
            let after = query.cursor.unwrap_or(0);
            let lines: Vec<LogLineView> = (after + 1..=3)
                .take(limit)
                .map(|seq| LogLineView {
                    seq,
                    time_ms: 1_000 + i64::try_from(seq).unwrap_or(0),
                    level: LogLevel::Info,
                    content: format!("instance {} line {seq}", i.id.0),
                    attempt: u32::try_from(seq).unwrap_or(0),
                    fields: if seq == 2 {
                        vec![LogFieldView {
                            key: "k".into(),
                            value: "v".into(),
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            let next_cursor = lines.last().map(|l| l.seq).filter(|&s| s < 3);
            Ok(LogView {
                instance_id: i.id,
                lines,
                next_cursor,
                prev_cursor: None,
                dropped: 0,
            })
        });
        ready(r)
    }

    // Workflow routes: definitions validated with `WorkflowDef::validate` against the mock's
    // jobs and workflows, instances driven by the real `WorkflowInstance` state machine. A
    // dispatched JOB node gets a job instance (with `workflow_instance_id`) that finishes at
    // once by the job's name: `hold` keeps running, `fail` fails with "boom", any other
    // succeeds with the node's params as its result (so `{"go":"left"}` feeds a decision).
    fn create_workflow(
        &self,
        app: AppRef,
        body: WorkflowDef,
    ) -> ApiFuture<'_, Created<WorkflowId>> {
        let mut st = self.lock();
        let r = st.validate_workflow(&app, &body, None).map(|()| {
            let id = st.id();
            st.workflows.insert(
                id,
                WorkflowView {
                    id: WorkflowId(id),
                    app_id: app.id,
                    body,
                    next_trigger_time: None,
                    calendar_skipped_runs: 0,
                    created_at: 1,
                    updated_at: 1,
                },
            );
            Created { id: WorkflowId(id) }
        });
        ready(r)
    }

    fn list_workflows(&self, app: AppRef, query: WorkflowQuery) -> ApiFuture<'_, WorkflowList> {
        let mut st = self.lock();
        st.last_workflow_query = Some(query.clone());
        let r = page_limit(query.limit, 100).map(|limit| {
            let after = query.cursor.unwrap_or(0);
            let mut items: Vec<WorkflowView> = st
                .workflows
                .range(after + 1..)
                .map(|(_, w)| w)
                .filter(|w| w.app_id == app.id)
                .take(limit + 1)
                .cloned()
                .collect();
            let next_cursor = (items.len() > limit).then(|| {
                items.truncate(limit);
                items.last().map_or(0, |w| w.id.0)
            });
            WorkflowList { items, next_cursor }
        });
        ready(r)
    }

    fn get_workflow(&self, app: AppRef, id: WorkflowId) -> ApiFuture<'_, WorkflowView> {
        let id = id.0;
        ready(self.lock().workflow(&app, id).map(|w| w.clone()))
    }

    fn update_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        body: WorkflowDef,
    ) -> ApiFuture<'_, WorkflowView> {
        let id = id.0;
        let mut st = self.lock();
        let r = st
            .workflow(&app, id)
            .map(|_| ())
            .and_then(|()| st.validate_workflow(&app, &body, Some(id)))
            .and_then(|()| st.workflow(&app, id))
            .map(|w| {
                w.body = body;
                w.updated_at += 1;
                w.clone()
            });
        ready(r)
    }

    fn delete_workflow(&self, app: AppRef, id: WorkflowId) -> ApiFuture<'_, ()> {
        let id = id.0;
        let mut st = self.lock();
        let r = st.workflow(&app, id).map(|_| ()).and_then(|()| {
            let running = st.workflow_instances.values().any(|w| {
                w.workflow_id == id && w.instance.status() == WorkflowInstanceStatus::Running
            });
            if running {
                return Err(ApiError::conflict(format!(
                    "workflow {id} has a running instance; stop it first"
                )));
            }
            st.workflows.remove(&id);
            Ok(())
        });
        ready(r)
    }

    fn run_workflow(
        &self,
        app: AppRef,
        id: WorkflowId,
        req: RunWorkflow,
    ) -> ApiFuture<'_, WorkflowRunCreated> {
        let id = id.0;
        let mut st = self.lock();
        ready(st.run_workflow(&app, id, req))
    }

    fn get_workflow_instance(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        let id = id.0;
        let mut st = self.lock();
        let r = st.workflow_instance(&app, id).map(|_| ());
        ready(r.map(|()| st.workflow_instance_view(id)))
    }

    fn list_workflow_instances(
        &self,
        app: AppRef,
        query: WorkflowInstanceQuery,
    ) -> ApiFuture<'_, WorkflowInstanceList> {
        let st = self.lock();
        let r = page_limit(query.limit, 100).map(|limit| {
            let before = query.cursor.unwrap_or(u64::MAX);
            let ids: Vec<u64> = st
                .workflow_instances
                .range(..before)
                .rev()
                .filter(|(_, w)| {
                    w.app_id == app.id.0 && query.workflow_id.is_none_or(|q| q.0 == w.workflow_id)
                })
                .take(limit + 1)
                .map(|(id, _)| *id)
                .collect();
            let mut items: Vec<WorkflowInstanceView> = ids
                .iter()
                .map(|&id| st.workflow_instance_view(id))
                .collect();
            let next_cursor = (items.len() > limit).then(|| {
                items.truncate(limit);
                items.last().map_or(0, |i| i.id.0)
            });
            WorkflowInstanceList { items, next_cursor }
        });
        ready(r)
    }

    fn workflow_instance_action(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        action: WorkflowInstanceAction,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        let id = id.0;
        let mut st = self.lock();
        let r = st.workflow_instance(&app, id).map(|_| ()).and_then(|()| {
            st.with_workflow_instance(id, |wi| match action {
                WorkflowInstanceAction::Stop => Ok(wi.stop(NOW)),
                WorkflowInstanceAction::Retry => wi.retry(NOW),
            })
        });
        ready(r)
    }

    fn mark_workflow_node_success(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
        node: NodeId,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        let id = id.0;
        let mut st = self.lock();
        let r = st
            .workflow_instance(&app, id)
            .map(|_| ())
            .and_then(|()| st.with_workflow_instance(id, |wi| wi.mark_success(node, NOW)));
        ready(r)
    }

    fn list_workers(&self, _app: AppRef) -> ApiFuture<'_, WorkerList> {
        ready(Ok(WorkerList {
            workers: vec![WorkerInfo {
                address: "127.0.0.1:27777".into(),
                tags: vec!["gpu".into()],
                version: "test".into(),
                health_score: 4.5,
                cpu_cores: 2.0,
                cpu_load: Some(0.5),
                memory_used_gb: 1.0,
                memory_total_gb: 8.0,
                disk_used_gb: 10.0,
                disk_total_gb: 100.0,
                overloaded: false,
                last_heartbeat: 5,
            }],
        }))
    }

    fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            version: "test".into(),
            workers: 1,
            uptime_ms: 7,
        }
    }

    fn metrics_text(&self) -> String {
        "# TYPE ferrojob_mock_apps gauge\nferrojob_mock_apps 1\n".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Harness.

struct Harness {
    server: HttpServer,
    base: String,
    admin: Client,
    raw: reqwest::Client,
    api: Arc<MockApi>,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(HttpConfig::new(ADMIN)).await
    }

    async fn start_with(mut config: HttpConfig) -> Harness {
        // The mock has no API tokens: apps' secrets open their routes (the compatibility
        // mode; the token checks are in `http_tokens.rs`, over the real server).
        config.app_secret_tokens = true;
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let api = Arc::new(MockApi::default());
        let server = HttpServer::bind(addr, Arc::clone(&api) as Arc<dyn Api>, config)
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr());
        let admin = Client::new(&base, ADMIN).unwrap();
        Harness {
            server,
            base,
            admin,
            raw: ferrojob::https::HttpsRoots::public().client().unwrap(),
            api,
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.base, token).unwrap()
    }

    /// Creates app `name` with secret `{name}-secret`.
    async fn app(&self, name: &str) -> AppCreated {
        self.admin
            .create_app(&CreateApp {
                name: name.into(),
                secret: format!("{name}-secret"),
            })
            .await
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a raw request; answers status and body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut req = self.raw.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    async fn post_json(&self, path: &str, token: Option<&str>, body: &str) -> (u16, Vec<u8>) {
        self.send(
            reqwest::Method::POST,
            path,
            token,
            Some("application/json"),
            body.as_bytes().to_vec(),
        )
        .await
    }

    /// The server still answers.
    async fn assert_serving(&self) {
        assert_eq!(self.admin.health().await.unwrap().status, "ok");
    }
}

/// `body` is `{"error":{"code": code, ...}}`; answers the message.
#[track_caller]
fn assert_error(status: u16, body: &[u8], want_status: u16, want_code: &str) -> String {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, want_status, "body: {text}");
    let parsed: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(parsed["error"]["code"], want_code, "body: {text}");
    let err: ErrorBody = serde_json::from_value(parsed).unwrap();
    err.error.message
}

#[track_caller]
fn assert_api_error(r: Result<impl std::fmt::Debug, ClientError>, status: u16, code: ErrorCode) {
    match r {
        Err(ClientError::Api { status: s, error }) => {
            assert_eq!((s, error.code), (status, code), "{}", error.message)
        }
        other => panic!("expected a {status} {code:?}, got {other:?}"),
    }
}

fn cron_job(name: &str) -> JobBody {
    JobBody::new(name, TimeExpressionType::Cron, "0 0 2 * * ?", "shell")
}

// ---------------------------------------------------------------------------------------------
// Round trips through the client.

#[tokio::test]
async fn every_route_round_trips_through_the_client() {
    let h = Harness::start().await;
    let app = h.app("billing").await;
    assert_eq!(app.name, "billing");
    assert_api_error(
        h.admin
            .create_app(&CreateApp {
                name: "billing".into(),
                secret: "x".into(),
            })
            .await,
        409,
        ErrorCode::Conflict,
    );

    // The app's own secret opens its routes; by name and by numeric id.
    let c = h.client("billing-secret");
    let by_id = app.id.get().to_string();
    let mut body = cron_job("nightly");
    body.time_zone = Some("Asia/Shanghai".into());
    body.params = "p".into();
    let job = c.create_job("billing", &body).await.unwrap();
    let view = c.get_job(&by_id, job.id).await.unwrap();
    assert_eq!(view.body, body);
    assert_eq!(view.id, job.id);

    let second = c.create_job("billing", &cron_job("second")).await.unwrap();
    let page = c
        .list_jobs("billing", &JobQuery::page(Some(1), None))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, job.id);
    let rest = c
        .list_jobs("billing", &JobQuery::page(None, page.next_cursor))
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        [second.id]
    );
    assert_eq!(rest.next_cursor, None);

    let mut changed = body.clone();
    changed.time_expression = "0 30 3 * * ?".into();
    let updated = c.update_job("billing", job.id, &changed).await.unwrap();
    assert_eq!(updated.body.time_expression, "0 30 3 * * ?");
    assert!(!c.disable_job("billing", job.id).await.unwrap().body.enabled);
    assert!(c.enable_job("billing", job.id).await.unwrap().body.enabled);

    let run = c
        .run_job(
            "billing",
            job.id,
            &RunJob {
                params: "instance-params".into(),
                delay_ms: 5,
            },
        )
        .await
        .unwrap();
    let inst = c.get_instance("billing", run.instance_id).await.unwrap();
    assert_eq!(inst.job_id, job.id);
    assert_eq!(inst.params, "instance-params");
    assert_eq!(inst.status, InstanceStatus::WaitingDispatch);
    let other_run = c
        .run_job("billing", second.id, &RunJob::default())
        .await
        .unwrap();

    let all = c
        .list_instances("billing", &InstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        [other_run.instance_id, run.instance_id],
        "newest first"
    );
    let of_job = c
        .list_instances(
            "billing",
            &InstanceQuery {
                job_id: Some(job.id),
                status: Some(InstanceStatus::WaitingDispatch),
                limit: Some(10),
                ..InstanceQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        of_job.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        [run.instance_id]
    );

    let canceled = c.cancel_instance("billing", run.instance_id).await.unwrap();
    assert_eq!(canceled.status, InstanceStatus::Canceled);
    assert_api_error(
        c.stop_instance("billing", run.instance_id).await,
        409,
        ErrorCode::Conflict,
    );
    let retried = c.retry_instance("billing", run.instance_id).await.unwrap();
    assert_eq!(retried.status, InstanceStatus::WaitingDispatch);
    assert_eq!(retried.running_times, 1);

    let log = c
        .instance_log(
            "billing",
            run.instance_id,
            LogQuery {
                limit: Some(2),
                cursor: None,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(log.lines.len(), 2);
    assert_eq!(log.next_cursor, Some(2));
    let log = c
        .instance_log(
            "billing",
            run.instance_id,
            LogQuery {
                limit: None,
                cursor: log.next_cursor,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(log.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [3]);
    // The whole log as text: every page, one line each, attempts and fields shown.
    let text = c
        .instance_log_text("billing", run.instance_id)
        .await
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].ends_with(&format!(
            "INFO  [attempt 1] instance {} line 1",
            run.instance_id.0
        )),
        "{text}"
    );
    assert!(lines[1].ends_with("line 2 {k=v}"), "{text}");
    // `cursor` and `before` together are refused.
    let both = LogQuery {
        limit: None,
        cursor: Some(1),
        before: Some(3),
    };
    assert!(c
        .instance_log("billing", run.instance_id, both)
        .await
        .is_err());

    let workers = c.list_workers("billing").await.unwrap();
    assert_eq!(workers.workers[0].tags, ["gpu"]);

    c.delete_job("billing", job.id).await.unwrap();
    assert_api_error(c.get_job("billing", job.id).await, 404, ErrorCode::NotFound);
    assert_api_error(
        c.delete_job("billing", job.id).await,
        404,
        ErrorCode::NotFound,
    );

    // The admin token opens every app's routes too.
    assert_eq!(
        h.admin.get_job("billing", second.id).await.unwrap().id,
        second.id
    );

    let health = c.health().await.unwrap();
    assert_eq!(health.workers, 1);
    let metrics = c.metrics().await.unwrap();
    assert!(metrics.contains("ferrojob_mock_apps 1\n"), "{metrics}");
    assert!(
        metrics.contains("ferrojob_http_responses_total{class=\"2xx\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferrojob_http_responses_total{class=\"4xx\"}"),
        "{metrics}"
    );

    h.server.shutdown().await;
}

#[tokio::test]
async fn listing_filters_labels_and_copies_cross_http() {
    let h = Harness::start().await;
    h.app("a").await;
    let c = h.client("a-secret");
    let mut body = cron_job("nightly export");
    body.description = "Exports yesterday's orders.".into();
    body.tags = vec!["etl".into(), "team:data".into()];
    let job = c.create_job("a", &body).await.unwrap();
    let view = c.get_job("a", job.id).await.unwrap();
    assert_eq!(view.body.description, body.description);
    assert_eq!(view.body.tags, body.tags);

    // Every filter reaches the Api exactly as the client set it.
    let q = JobQuery {
        limit: Some(7),
        cursor: Some(3),
        name: Some("night ly&x=1".into()),
        tag: Some("team:data".into()),
        time_expression_type: Some(TimeExpressionType::Cron),
        execute_type: Some(ferrojob::model::ExecuteType::MapReduce),
        enabled: Some(false),
    };
    c.list_jobs("a", &q).await.unwrap();
    assert_eq!(h.api.lock().last_job_query.clone(), Some(q));
    let q = WorkflowQuery {
        limit: Some(2),
        cursor: None,
        name: Some("etl".into()),
        tag: Some("nightly".into()),
        time_expression_type: Some(TimeExpressionType::Api),
    };
    c.list_workflows("a", &q).await.unwrap();
    assert_eq!(h.api.lock().last_workflow_query.clone(), Some(q));
    let q = InstanceQuery {
        job_id: Some(job.id),
        status: Some(InstanceStatus::Failed),
        trigger_from: Some(-1),
        trigger_to: Some(1_000),
        finished_from: Some(10),
        finished_to: Some(20),
        limit: Some(5),
        cursor: None,
    };
    c.list_instances("a", &q).await.unwrap();
    assert_eq!(h.api.lock().last_instance_query, Some(q));
    // Bad filter values and filters a listing does not have are 400s naming them.
    for path in [
        "/v1/apps/a/jobs?enabled=maybe",
        "/v1/apps/a/jobs?execute_type=SOMETIMES",
        "/v1/apps/a/jobs?status=RUNNING",
        "/v1/apps/a/workflows?enabled=true",
        "/v1/apps/a/instances?trigger_from=yesterday",
    ] {
        let (status, body) = h
            .send(
                reqwest::Method::GET,
                path,
                Some("a-secret"),
                None,
                Vec::new(),
            )
            .await;
        assert_error(status, &body, 400, "invalid_argument");
    }

    // A copy is a new job with the source's fields under the new name.
    let copy = c
        .copy_job(
            "a",
            job.id,
            &CopyJob {
                name: "nightly export (eu)".into(),
                enabled: Some(false),
            },
        )
        .await
        .unwrap();
    assert_ne!(copy.id, job.id);
    let copied = c.get_job("a", copy.id).await.unwrap();
    let mut want = body.clone();
    want.name = "nightly export (eu)".into();
    want.enabled = false;
    assert_eq!(copied.body, want);
    let copy = c
        .copy_job(
            "a",
            job.id,
            &CopyJob {
                name: "again".into(),
                enabled: None,
            },
        )
        .await
        .unwrap();
    assert!(c.get_job("a", copy.id).await.unwrap().body.enabled);
    assert_api_error(
        c.copy_job(
            "a",
            JobId(999_999),
            &CopyJob {
                name: "x".into(),
                enabled: None,
            },
        )
        .await,
        404,
        ErrorCode::NotFound,
    );
    let path = format!("/v1/apps/a/jobs/{}/copy", job.id.0);
    for bad in ["{}", r#"{"name":"x","tags":[]}"#, "[]"] {
        let (status, body) = h.post_json(&path, Some("a-secret"), bad).await;
        assert_error(status, &body, 400, "invalid_argument");
    }
    let (status, body) = h.post_json(&path, None, r#"{"name":"x"}"#).await;
    assert_error(status, &body, 401, "unauthorized");

    let (mut def, _) = decision_workflow(&c).await;
    def.description = "left or right".into();
    def.tags = vec!["demo".into()];
    let wf = c.create_workflow("a", &def).await.unwrap();
    let copy = c
        .copy_workflow("a", wf.id, &CopyWorkflow { name: "w2".into() })
        .await
        .unwrap();
    let copied = c.get_workflow("a", copy.id).await.unwrap();
    def.name = "w2".into();
    assert_eq!(copied.body, def);
    assert_api_error(
        c.copy_workflow("a", WorkflowId(999_999), &CopyWorkflow { name: "x".into() })
            .await,
        404,
        ErrorCode::NotFound,
    );
    h.assert_serving().await;
}

#[tokio::test]
async fn app_names_travel_as_one_path_segment() {
    let h = Harness::start().await;
    for name in ["team a/b", "ünïcode", "50%", "x?y#z"] {
        h.admin
            .create_app(&CreateApp {
                name: name.into(),
                secret: "s3cret".into(),
            })
            .await
            .unwrap();
        let c = h.client("s3cret");
        let job = c.create_job(name, &cron_job("j")).await.unwrap();
        assert_eq!(c.get_job(name, job.id).await.unwrap().id, job.id, "{name}");
    }
}

#[tokio::test]
async fn concurrent_requests_share_the_client() {
    let h = Harness::start().await;
    h.app("a").await;
    let c = h.client("a-secret");
    let job = c.create_job("a", &cron_job("j")).await.unwrap();
    let calls = (0..64).map(|_| {
        let c = c.clone();
        async move { c.get_job("a", job.id).await }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().id, job.id);
    }
}

#[tokio::test]
async fn the_client_times_out_a_request_that_never_answers() {
    let h = Harness::start().await;
    h.app("a").await;
    let options = ClientOptions {
        request_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let c = Client::with_options(&h.base, "a-secret", options).unwrap();
    match c.get_job("a", JobId(HANG)).await {
        Err(ClientError::Transport(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("{other:?}"),
    }
    // Other requests are unaffected.
    h.assert_serving().await;
}

#[tokio::test]
async fn ids_of_another_app_are_not_found() {
    let h = Harness::start().await;
    h.app("a").await;
    h.app("b").await;
    let job = h
        .client("a-secret")
        .create_job("a", &cron_job("j"))
        .await
        .unwrap();
    let b = h.client("b-secret");
    assert_api_error(b.get_job("b", job.id).await, 404, ErrorCode::NotFound);
    assert_api_error(
        b.run_job("b", job.id, &RunJob::default()).await,
        404,
        ErrorCode::NotFound,
    );
    // With the admin token an unknown app is a plain 404.
    assert_api_error(
        h.admin.list_jobs("nope", &JobQuery::default()).await,
        404,
        ErrorCode::NotFound,
    );
}

#[tokio::test]
async fn invalid_values_are_400s_from_the_api() {
    let h = Harness::start().await;
    h.app("a").await;
    let c = h.client("a-secret");
    let bad = JobBody::new("j", TimeExpressionType::Cron, "0 0 25 * * ?", "shell");
    assert_api_error(
        c.create_job("a", &bad).await,
        400,
        ErrorCode::InvalidArgument,
    );
    assert_api_error(
        c.list_jobs("a", &JobQuery::page(Some(0), None)).await,
        400,
        ErrorCode::InvalidArgument,
    );
}

// ---------------------------------------------------------------------------------------------
// Workflows.

fn job_node(id: u64, job_id: JobId, params: &str) -> NodeDef {
    serde_json::from_value(json!({"id": id, "job_id": job_id, "params": params})).unwrap()
}

fn edge(from: u64, to: u64, property: Option<&str>) -> EdgeDef {
    EdgeDef {
        from: NodeId(from),
        to: NodeId(to),
        property: property.map(str::to_owned),
    }
}

/// Jobs `decide`, `left`, `right` in app `a`, and a workflow: 1 (decide, result
/// `{"go":"left"}`) → 2 (decision `go == "left" && tries < 3`) → true: 3 (left), false: 4
/// (right).
async fn decision_workflow(c: &Client) -> (WorkflowDef, [JobId; 3]) {
    let mut ids = [JobId(0); 3];
    for (slot, name) in ids.iter_mut().zip(["decide", "left", "right"]) {
        *slot = c.create_job("a", &cron_job(name)).await.unwrap().id;
    }
    let def: WorkflowDef = serde_json::from_value(json!({
        "name": "branchy",
        "time_expression_type": "API",
        "nodes": [
            {"id": 1, "job_id": ids[0], "params": r#"{"go":"left"}"#},
            {"id": 2, "type": "DECISION", "expression": r#"go == "left" && tries < 3"#},
            {"id": 3, "job_id": ids[1]},
            {"id": 4, "job_id": ids[2]}
        ],
        "edges": [
            {"from": 1, "to": 2},
            {"from": 2, "to": 3, "property": "true"},
            {"from": 2, "to": 4, "property": "false"}
        ]
    }))
    .unwrap();
    (def, ids)
}

fn node_status(view: &WorkflowInstanceView, id: u64) -> NodeStatus {
    view.nodes
        .iter()
        .find(|n| n.id == NodeId(id))
        .unwrap()
        .status
}

#[tokio::test]
async fn workflow_routes_round_trip_through_the_client() {
    let h = Harness::start().await;
    h.app("a").await;
    let c = h.client("a-secret");
    let (def, jobs) = decision_workflow(&c).await;

    let created = c.create_workflow("a", &def).await.unwrap();
    let view = c.get_workflow("a", created.id).await.unwrap();
    assert_eq!((view.id, &view.body), (created.id, &def));
    let second = c.create_workflow("a", &def).await.unwrap();
    let page = c
        .list_workflows("a", &WorkflowQuery::page(Some(1), None))
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|w| w.id).collect::<Vec<_>>(),
        [created.id]
    );
    let rest = c
        .list_workflows("a", &WorkflowQuery::page(None, page.next_cursor))
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|w| w.id).collect::<Vec<_>>(),
        [second.id]
    );
    assert_eq!(rest.next_cursor, None);

    let mut changed = def.clone();
    changed.name = "renamed".into();
    changed.failure_policy = FailurePolicy::FinishBranches;
    let updated = c.update_workflow("a", created.id, &changed).await.unwrap();
    assert_eq!(updated.body, changed);
    assert_eq!(
        c.get_workflow("a", created.id).await.unwrap().body.name,
        "renamed"
    );

    // A run with init params (an object, or a string holding one): the decision takes the
    // `true` edge, the other branch is skipped, the context has both the init params and
    // node 1's result.
    let run = c
        .run_workflow(
            "a",
            created.id,
            &RunWorkflow {
                init_params: Some(json!({"tries": 1})),
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
    let wi = c
        .get_workflow_instance("a", run.workflow_instance_id)
        .await
        .unwrap();
    assert_eq!(wi.workflow_id, created.id);
    assert_eq!(wi.status, WorkflowInstanceStatus::Succeed);
    assert_eq!(wi.context["go"], "left");
    assert_eq!(wi.context["tries"], 1);
    assert_eq!(node_status(&wi, 3), NodeStatus::Succeed);
    assert_eq!(node_status(&wi, 4), NodeStatus::Skipped);
    assert_eq!(wi.nodes[1].result.as_deref(), Some("true"));
    // The job instance of node 3 knows its workflow instance.
    let job_instance = c
        .get_instance("a", InstanceId(wi.nodes[2].instance_id.unwrap()))
        .await
        .unwrap();
    assert_eq!(job_instance.job_id, jobs[1]);
    assert_eq!(job_instance.workflow_instance_id, Some(wi.id));

    let as_string = c
        .run_workflow(
            "a",
            second.id,
            &RunWorkflow {
                init_params: Some(json!(r#"{"tries": 5}"#)),
                delay_ms: 10,
            },
        )
        .await
        .unwrap();
    let wi2 = c
        .get_workflow_instance("a", as_string.workflow_instance_id)
        .await
        .unwrap();
    assert_eq!(node_status(&wi2, 3), NodeStatus::Skipped);
    assert_eq!(node_status(&wi2, 4), NodeStatus::Succeed);

    let all = c
        .list_workflow_instances("a", &WorkflowInstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        [wi2.id, wi.id],
        "newest first"
    );
    let of_first = c
        .list_workflow_instances(
            "a",
            &WorkflowInstanceQuery {
                workflow_id: Some(created.id),
                limit: Some(10),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        of_first.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        [wi.id]
    );
    let paged = c
        .list_workflow_instances(
            "a",
            &WorkflowInstanceQuery {
                workflow_id: None,
                limit: Some(1),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(paged.next_cursor, Some(wi2.id.0));

    // A failing node: FAILED; retry re-runs it (a new job instance); mark-success passes it.
    let fail = c.create_job("a", &cron_job("fail")).await.unwrap();
    let mut failing = def.clone();
    failing.nodes[0].job_id = Some(fail.id);
    let failing = c.create_workflow("a", &failing).await.unwrap();
    let run = c
        .run_workflow("a", failing.id, &RunWorkflow::default())
        .await
        .unwrap();
    let wi = c
        .get_workflow_instance("a", run.workflow_instance_id)
        .await
        .unwrap();
    assert_eq!(wi.status, WorkflowInstanceStatus::Failed);
    assert_eq!(node_status(&wi, 1), NodeStatus::Failed);
    assert_eq!(wi.nodes[0].result.as_deref(), Some("boom"));
    let retried = c.retry_workflow_instance("a", wi.id).await.unwrap();
    assert_eq!(retried.status, WorkflowInstanceStatus::Failed);
    assert_ne!(retried.nodes[0].instance_id, wi.nodes[0].instance_id);
    let marked = c
        .mark_workflow_node_success("a", wi.id, NodeId(1))
        .await
        .unwrap();
    assert_eq!(node_status(&marked, 1), NodeStatus::Succeed);
    // Not failed any more, a decision, an unknown node: 409, 409, 404.
    assert_api_error(
        c.mark_workflow_node_success("a", wi.id, NodeId(1)).await,
        409,
        ErrorCode::Conflict,
    );
    assert_api_error(
        c.mark_workflow_node_success("a", wi.id, NodeId(2)).await,
        409,
        ErrorCode::Conflict,
    );
    assert_api_error(
        c.mark_workflow_node_success("a", wi.id, NodeId(99)).await,
        404,
        ErrorCode::NotFound,
    );

    // A node that keeps running: the workflow cannot be deleted until the instance stops.
    let hold = c.create_job("a", &cron_job("hold")).await.unwrap();
    let mut holding = def.clone();
    holding.nodes[0].job_id = Some(hold.id);
    let holding = c.create_workflow("a", &holding).await.unwrap();
    let run = c
        .run_workflow("a", holding.id, &RunWorkflow::default())
        .await
        .unwrap();
    let wi = c
        .get_workflow_instance("a", run.workflow_instance_id)
        .await
        .unwrap();
    assert_eq!(wi.status, WorkflowInstanceStatus::Running);
    assert_eq!(node_status(&wi, 1), NodeStatus::Running);
    assert_api_error(
        c.retry_workflow_instance("a", wi.id).await,
        409,
        ErrorCode::Conflict,
    );
    assert_api_error(
        c.delete_workflow("a", holding.id).await,
        409,
        ErrorCode::Conflict,
    );
    let stopped = c.stop_workflow_instance("a", wi.id).await.unwrap();
    assert_eq!(stopped.status, WorkflowInstanceStatus::Stopped);
    assert_eq!(node_status(&stopped, 1), NodeStatus::Stopped);
    let job_instance = c
        .get_instance("a", InstanceId(stopped.nodes[0].instance_id.unwrap()))
        .await
        .unwrap();
    assert_eq!(job_instance.status, InstanceStatus::Stopped);
    c.delete_workflow("a", holding.id).await.unwrap();
    assert_api_error(
        c.get_workflow("a", holding.id).await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.delete_workflow("a", holding.id).await,
        404,
        ErrorCode::NotFound,
    );
    // Its instances stay readable.
    c.get_workflow_instance("a", wi.id).await.unwrap();
    h.server.shutdown().await;
}

#[tokio::test]
async fn invalid_workflows_are_400s_naming_the_fault() {
    let h = Harness::start().await;
    h.app("a").await;
    let c = h.client("a-secret");
    let (def, _) = decision_workflow(&c).await;
    let other_apps_job = {
        h.app("b").await;
        h.client("b-secret")
            .create_job("b", &cron_job("theirs"))
            .await
            .unwrap()
            .id
    };
    let check = |change: &dyn Fn(&mut WorkflowDef), needles: &[&str]| {
        let mut bad = def.clone();
        change(&mut bad);
        let needles: Vec<String> = needles.iter().map(|n| (*n).to_owned()).collect();
        let c = c.clone();
        async move {
            for r in [
                c.create_workflow("a", &bad).await.map(drop),
                c.update_workflow("a", WorkflowId(1_000_000), &bad)
                    .await
                    .map(drop),
            ] {
                match r {
                    Err(ClientError::Api { status, error }) if status == 400 || status == 404 => {
                        if status == 400 {
                            for n in &needles {
                                assert!(error.message.contains(n.as_str()), "{}", error.message);
                            }
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    };
    // A cycle 3 → 1 → 2 → 3.
    check(&|d| d.edges.push(edge(3, 1, None)), &["cycle"]).await;
    // A dangling edge.
    check(
        &|d| d.edges.push(edge(3, 42, None)),
        &["42", "does not exist"],
    )
    .await;
    // An unknown job, and another app's job.
    check(
        &|d| d.nodes.push(job_node(9, JobId(777), "")),
        &["node 9", "job 777"],
    )
    .await;
    let theirs = other_apps_job;
    check(
        &move |d| d.nodes.push(job_node(9, theirs, "")),
        &["node 9", &format!("{theirs}")],
    )
    .await;
    // A decision edge without a property, a bad expression, a duplicate node.
    check(&|d| d.edges[1].property = None, &["property"]).await;
    check(
        &|d| d.nodes[1].expression = Some("go ==".into()),
        &["node 2"],
    )
    .await;
    check(
        &|d| d.nodes.push(job_node(1, JobId(1), "")),
        &["duplicate node id 1"],
    )
    .await;
    check(&|d| d.nodes.clear(), &["at least one node"]).await;

    // Updating an existing workflow with a bad body is a 400 (it exists: not a 404).
    let created = c.create_workflow("a", &def).await.unwrap();
    let mut cyclic = def.clone();
    cyclic.edges.push(edge(3, 1, None));
    let r = c.update_workflow("a", created.id, &cyclic).await;
    assert_api_error(r, 400, ErrorCode::InvalidArgument);
    assert_eq!(c.get_workflow("a", created.id).await.unwrap().body, def);

    // Malformed bodies over raw HTTP.
    let t = Some("a-secret");
    let path = "/v1/apps/a/workflows";
    for (body, needle) in [
        ("{", ""),
        ("[]", ""),
        (r#"{"name":"w","time_expression_type":"API"}"#, "nodes"),
        (r#"{"name":"w","nodes":[]}"#, "time_expression_type"),
        (
            r#"{"name":"w","time_expression_type":"API","nodes":[],"bogus":1}"#,
            "bogus",
        ),
        (
            r#"{"name":"w","time_expression_type":"API","nodes":[{"id":"one"}]}"#,
            "",
        ),
        (
            r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1,"type":"SCRIPT"}]}"#,
            "",
        ),
        (
            r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1,"job_id":1,"extra":1}]}"#,
            "extra",
        ),
        (
            r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1,"job_id":1}],"edges":[{"from":1}]}"#,
            "to",
        ),
        (
            r#"{"name":"w","time_expression_type":"API","failure_policy":"MAYBE","nodes":[{"id":1,"job_id":1}]}"#,
            "",
        ),
        (
            r#"{"name":"w","time_expression_type":"FIXED_DELAY","time_expression":"1000","nodes":[{"id":1,"job_id":1}]}"#,
            "FIXED_DELAY",
        ),
        (
            r#"{"name":"w","time_expression_type":"CRON","time_expression":"0 0 25 * * ?","nodes":[{"id":1,"job_id":1}]}"#,
            "",
        ),
    ] {
        let (s, b) = h.post_json(path, t, body).await;
        let message = assert_error(s, &b, 400, "invalid_argument");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let post = reqwest::Method::POST;
    let (s, b) = h.send(post.clone(), path, t, None, vec![]).await;
    assert_error(s, &b, 400, "invalid_argument");
    let minimal = format!(
        r#"{{"name":"w","time_expression_type":"API","nodes":[{{"id":1,"job_id":{}}}]}}"#,
        def.nodes[0].job_id.unwrap().get()
    );
    let (s, b) = h
        .send(
            post.clone(),
            path,
            t,
            Some("text/plain"),
            minimal.clone().into_bytes(),
        )
        .await;
    assert_error(s, &b, 400, "invalid_argument");
    let (s, b) = h.post_json(path, t, &minimal).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let id: Created<WorkflowId> = serde_json::from_slice(&b).unwrap();

    // The run body may be empty (no content type), `{}`, or a RunWorkflow; nothing else.
    let run = format!("/v1/apps/a/workflows/{}/run", id.id.get());
    let (s, b) = h.send(post.clone(), &run, t, None, vec![]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let created: WorkflowRunCreated = serde_json::from_slice(&b).unwrap();
    assert!(created.workflow_instance_id > WorkflowInstanceId(0));
    let (s, _) = h.post_json(&run, t, "{}").await;
    assert_eq!(s, 200);
    let (s, _) = h
        .post_json(&run, t, r#"{"init_params":"{\"k\":1}","delay_ms":5}"#)
        .await;
    assert_eq!(s, 200);
    for (body, needle) in [
        (r#"{"delay_ms":"soon"}"#, "delay_ms"),
        (r#"{"init_params":{},"extra":1}"#, "extra"),
        (r#"{"init_params":[1,2]}"#, "init_params"),
        (r#"{"init_params":"not json"}"#, "init_params"),
        (r#"{"init_params":7}"#, "init_params"),
    ] {
        let (s, b) = h.post_json(&run, t, body).await;
        let message = assert_error(s, &b, 400, "invalid_argument");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (s, b) = h
        .send(post.clone(), &run, t, Some("text/plain"), b"{}".to_vec())
        .await;
    assert_error(s, &b, 400, "invalid_argument");
    h.assert_serving().await;
}

#[tokio::test]
async fn workflow_routes_check_auth_ids_and_methods() {
    let h = Harness::start().await;
    h.app("a").await;
    h.app("b").await;
    let c = h.client("a-secret");
    let (def, _) = decision_workflow(&c).await;
    let wf = c.create_workflow("a", &def).await.unwrap().id;
    let wi = c
        .run_workflow("a", wf, &RunWorkflow::default())
        .await
        .unwrap()
        .workflow_instance_id
        .get();
    let wf = wf.get();

    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    let delete = reqwest::Method::DELETE;
    let body = serde_json::to_vec(&def).unwrap();
    let routes: Vec<(reqwest::Method, String, Vec<u8>)> = vec![
        (post.clone(), "/v1/apps/a/workflows".into(), body.clone()),
        (get.clone(), "/v1/apps/a/workflows".into(), vec![]),
        (get.clone(), format!("/v1/apps/a/workflows/{wf}"), vec![]),
        (
            put.clone(),
            format!("/v1/apps/a/workflows/{wf}"),
            body.clone(),
        ),
        (
            post.clone(),
            format!("/v1/apps/a/workflows/{wf}/run"),
            vec![],
        ),
        (get.clone(), "/v1/apps/a/workflow-instances".into(), vec![]),
        (
            get.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}"),
            vec![],
        ),
        (
            post.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}/stop"),
            vec![],
        ),
        (
            post.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}/retry"),
            vec![],
        ),
        (
            post.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}/nodes/1/mark-success"),
            vec![],
        ),
        (delete.clone(), format!("/v1/apps/a/workflows/{wf}"), vec![]),
    ];
    let ct = Some("application/json");
    for (method, path, body) in &routes {
        // No token, a wrong token, another app's secret: 401, before the body is read.
        for token in [None, Some("wrong"), Some("b-secret")] {
            let (s, b) = h
                .send(method.clone(), path, token, ct, b"{garbage".to_vec())
                .await;
            assert_error(s, &b, 401, "unauthorized");
        }
        // An unknown app: 401 with an app secret, 404 with the admin token.
        let elsewhere = path.replacen("/apps/a/", "/apps/nope/", 1);
        let (s, b) = h
            .send(
                method.clone(),
                &elsewhere,
                Some("a-secret"),
                ct,
                body.clone(),
            )
            .await;
        assert_error(s, &b, 401, "unauthorized");
        let (s, b) = h
            .send(method.clone(), &elsewhere, Some(ADMIN), ct, body.clone())
            .await;
        assert_error(s, &b, 404, "not_found");
        // Another app's ids: 404 (nothing leaks across apps).
        if path.matches('/').count() > 4 {
            let theirs = path.replacen("/apps/a/", "/apps/b/", 1);
            let (s, b) = h
                .send(method.clone(), &theirs, Some("b-secret"), ct, body.clone())
                .await;
            assert_error(s, &b, 404, "not_found");
        }
        // The app's secret and the admin token both open it (the last route deletes).
        for token in [ADMIN, "a-secret"] {
            let (s, b) = h
                .send(method.clone(), path, Some(token), ct, body.clone())
                .await;
            assert!(
                matches!(s, 200 | 201 | 204 | 409),
                "{method} {path}: {s} {}",
                String::from_utf8_lossy(&b)
            );
            if *method == delete {
                break;
            }
        }
    }

    // Unknown ids: 404; non-numeric ids: 400.
    assert_api_error(
        c.get_workflow("a", WorkflowId(999)).await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.update_workflow("a", WorkflowId(999), &def).await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.delete_workflow("a", WorkflowId(999)).await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.run_workflow("a", WorkflowId(999), &RunWorkflow::default())
            .await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.get_workflow_instance("a", WorkflowInstanceId(999)).await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.stop_workflow_instance("a", WorkflowInstanceId(999)).await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.retry_workflow_instance("a", WorkflowInstanceId(999))
            .await,
        404,
        ErrorCode::NotFound,
    );
    assert_api_error(
        c.mark_workflow_node_success("a", WorkflowInstanceId(999), NodeId(1))
            .await,
        404,
        ErrorCode::NotFound,
    );
    let t = Some("a-secret");
    for (method, p) in [
        (get.clone(), "/v1/apps/a/workflows/abc"),
        (get.clone(), "/v1/apps/a/workflows/-1"),
        (put.clone(), "/v1/apps/a/workflows/1.5"),
        (delete.clone(), "/v1/apps/a/workflows/x"),
        (post.clone(), "/v1/apps/a/workflows/x/run"),
        (get.clone(), "/v1/apps/a/workflow-instances/x"),
        (delete.clone(), "/v1/apps/a/workflow-instances/x"),
        (post.clone(), "/v1/apps/a/workflow-instances/x/stop"),
        (post.clone(), "/v1/apps/a/workflow-instances/x/retry"),
        (
            post.clone(),
            "/v1/apps/a/workflow-instances/1/nodes/x/mark-success",
        ),
        (
            post.clone(),
            "/v1/apps/a/workflow-instances/x/nodes/1/mark-success",
        ),
        (get.clone(), "/v1/apps/a/workflows?limit=0"),
        (get.clone(), "/v1/apps/a/workflows?bogus=1"),
        (get.clone(), "/v1/apps/a/workflow-instances?workflow_id=x"),
        (get.clone(), "/v1/apps/a/workflow-instances?status=RUNNING"),
        (get.clone(), "/v1/apps/a/workflow-instances?limit=1001"),
    ] {
        let (s, b) = h.send(method, p, t, ct, b"{}".to_vec()).await;
        assert_error(s, &b, 400, "invalid_argument");
    }
    // Blank query values are absent.
    let (s, _) = h
        .send(
            get.clone(),
            "/v1/apps/a/workflow-instances?workflow_id=&limit=&cursor=",
            t,
            None,
            vec![],
        )
        .await;
    assert_eq!(s, 200);

    // Wrong methods: 405 with Allow and our JSON error.
    for (method, p, allowed) in [
        (
            reqwest::Method::PATCH,
            format!("/v1/apps/a/workflows/{wf}"),
            "GET",
        ),
        (delete.clone(), "/v1/apps/a/workflows".to_owned(), "POST"),
        (
            get.clone(),
            format!("/v1/apps/a/workflows/{wf}/run"),
            "POST",
        ),
        (
            put.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}"),
            "DELETE",
        ),
        (
            post.clone(),
            "/v1/apps/a/workflow-instances".to_owned(),
            "GET",
        ),
        (
            get.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}/stop"),
            "POST",
        ),
        (
            get.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}/retry"),
            "POST",
        ),
        (
            get.clone(),
            format!("/v1/apps/a/workflow-instances/{wi}/nodes/1/mark-success"),
            "POST",
        ),
    ] {
        let resp = h
            .raw
            .request(method.clone(), h.url(&p))
            .bearer_auth("a-secret")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {p}");
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allow.contains(allowed), "{method} {p}: {allow}");
        let body = resp.bytes().await.unwrap();
        assert_error(405, &body, 405, "invalid_argument");
    }
    // Unknown sub-routes: 404.
    for p in [
        format!("/v1/apps/a/workflows/{wf}/explode"),
        format!("/v1/apps/a/workflow-instances/{wi}/nodes"),
        format!("/v1/apps/a/workflow-instances/{wi}/nodes/1"),
    ] {
        let (s, b) = h.send(get.clone(), &p, t, None, vec![]).await;
        assert_error(s, &b, 404, "not_found");
    }
    h.assert_serving().await;
}

// ---------------------------------------------------------------------------------------------
// Auth.

#[tokio::test]
async fn auth_rules() {
    let h = Harness::start().await;
    let a = h.app("a").await;
    h.app("b").await;
    let job = h
        .client("a-secret")
        .create_job("a", &cron_job("j"))
        .await
        .unwrap();
    let path = format!("/v1/apps/a/jobs/{}", job.id.get());
    let get = reqwest::Method::GET;

    // Missing, malformed, wrong: 401.
    let (s, b) = h.send(get.clone(), &path, None, None, vec![]).await;
    assert_error(s, &b, 401, "unauthorized");
    let resp = h
        .raw
        .get(h.url(&path))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (s, b) = h
        .send(get.clone(), &path, Some("wrong"), None, vec![])
        .await;
    assert_error(s, &b, 401, "unauthorized");
    // A prefix of the secret is not the secret.
    let (s, b) = h
        .send(get.clone(), &path, Some("a-secre"), None, vec![])
        .await;
    assert_error(s, &b, 401, "unauthorized");
    // Another app's secret: 401.
    let (s, b) = h
        .send(get.clone(), &path, Some("b-secret"), None, vec![])
        .await;
    assert_error(s, &b, 401, "unauthorized");
    // The right secret by name and by id; the admin token.
    for (p, token) in [
        (path.clone(), "a-secret"),
        (
            format!("/v1/apps/{}/jobs/{}", a.id.get(), job.id.get()),
            "a-secret",
        ),
        (path.clone(), ADMIN),
    ] {
        let (s, _) = h.send(get.clone(), &p, Some(token), None, vec![]).await;
        assert_eq!(s, 200, "{p}");
    }
    // An unknown app with a non-admin token does not reveal that it does not exist.
    let (s, b) = h
        .send(
            get.clone(),
            "/v1/apps/nope/jobs",
            Some("a-secret"),
            None,
            vec![],
        )
        .await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = h
        .send(
            get.clone(),
            "/v1/apps/nope/jobs",
            Some("wrong"),
            None,
            vec![],
        )
        .await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = h
        .send(get.clone(), "/v1/apps/nope/jobs", Some(ADMIN), None, vec![])
        .await;
    assert_error(s, &b, 404, "not_found");

    // Admin route: no token 401, an app secret 403.
    let create = r#"{"name":"c","secret":"s"}"#;
    let (s, b) = h.post_json("/v1/apps", None, create).await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = h.post_json("/v1/apps", Some("a-secret"), create).await;
    assert_error(s, &b, 403, "forbidden");
    assert_api_error(
        h.client("a-secret")
            .create_app(&CreateApp {
                name: "c".into(),
                secret: "s".into(),
            })
            .await,
        403,
        ErrorCode::Forbidden,
    );
    let (s, _) = h.post_json("/v1/apps", Some(ADMIN), create).await;
    assert_eq!(s, 201);

    // Auth comes before the body: an unauthenticated garbage body is 401, not 400.
    let (s, b) = h
        .post_json("/v1/apps/a/jobs", Some("wrong"), "{garbage")
        .await;
    assert_error(s, &b, 401, "unauthorized");

    // healthz, metrics and validate need no token.
    let (s, _) = h.send(get.clone(), "/healthz", None, None, vec![]).await;
    assert_eq!(s, 200);
    let resp = h.raw.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    let (s, _) = h
        .post_json(
            "/v1/validate",
            None,
            r#"{"type":"FIXED_RATE","expression":"1000"}"#,
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn an_empty_admin_token_opens_nothing() {
    let h = Harness::start_with(HttpConfig::new("")).await;
    let (s, b) = h
        .send(
            reqwest::Method::POST,
            "/v1/apps",
            None,
            Some("application/json"),
            br#"{"name":"a","secret":"s"}"#.to_vec(),
        )
        .await;
    assert_error(s, &b, 401, "unauthorized");
    let resp = h
        .raw
        .post(h.url("/v1/apps"))
        .header("authorization", "Bearer ")
        .json(&json!({"name":"a","secret":"s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// Malformed input.

#[tokio::test]
async fn malformed_requests_get_json_4xx_and_the_server_keeps_serving() {
    let h = Harness::start().await;
    h.app("a").await;
    let job = h
        .client("a-secret")
        .create_job("a", &cron_job("j"))
        .await
        .unwrap();
    let t = Some("a-secret");
    let jobs = "/v1/apps/a/jobs";
    let minimal = r#"{"name":"j","time_expression_type":"API","processor":"noop"}"#;
    let (s, _) = h.post_json(jobs, t, minimal).await;
    assert_eq!(s, 201, "the minimal job is accepted");

    // Malformed JSON, wrong types, unknown fields, missing required fields, wrong enums.
    for (body, needle) in [
        ("{", ""),
        ("not json", ""),
        ("[]", ""),
        ("null", ""),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop","bogus":1}"#,
            "bogus",
        ),
        (
            r#"{"name":5,"time_expression_type":"API","processor":"noop"}"#,
            "name",
        ),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop","max_instances":-1}"#,
            "max_instances",
        ),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop","max_instances":"3"}"#,
            "max_instances",
        ),
        (
            r#"{"name":"j","time_expression_type":"HOURLY","processor":"noop"}"#,
            "time_expression_type",
        ),
        (r#"{"name":"j","processor":"noop"}"#, "time_expression_type"),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop","lifecycle":{"start":"yesterday"}}"#,
            "lifecycle.start",
        ),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop","enabled":"yes"}"#,
            "enabled",
        ),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop"} trailing"#,
            "",
        ),
        (
            r#"{"name":"j","time_expression_type":"API","processor":"noop"}{}"#,
            "",
        ),
        (
            r#"{"name":"j","name":"k","time_expression_type":"API","processor":"noop"}"#,
            "name",
        ),
    ] {
        let (s, b) = h.post_json(jobs, t, body).await;
        let message = assert_error(s, &b, 400, "invalid_argument");
        assert!(message.contains(needle), "{body}: {message}");
    }

    // Deep nesting is refused by the parser's recursion limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (s, b) = h.post_json(jobs, t, &deep).await;
    assert_error(s, &b, 400, "invalid_argument");

    // Missing body, missing or wrong content type.
    let post = reqwest::Method::POST;
    let (s, b) = h.send(post.clone(), jobs, t, None, vec![]).await;
    assert_error(s, &b, 400, "invalid_argument");
    let (s, b) = h
        .send(post.clone(), jobs, t, Some("application/json"), vec![])
        .await;
    assert_error(s, &b, 400, "invalid_argument");
    let (s, b) = h
        .send(post.clone(), jobs, t, None, minimal.as_bytes().to_vec())
        .await;
    assert_error(s, &b, 400, "invalid_argument");
    let (s, b) = h
        .send(
            post.clone(),
            jobs,
            t,
            Some("text/plain"),
            minimal.as_bytes().to_vec(),
        )
        .await;
    assert_error(s, &b, 400, "invalid_argument");
    // Not UTF-8.
    let (s, b) = h
        .send(
            post.clone(),
            jobs,
            t,
            Some("application/json"),
            vec![0xff, 0xfe, b'{'],
        )
        .await;
    assert_error(s, &b, 400, "invalid_argument");

    // Bad query strings.
    let get = reqwest::Method::GET;
    for q in [
        "/v1/apps/a/jobs?limit=abc",
        "/v1/apps/a/jobs?limit=-3",
        "/v1/apps/a/jobs?bogus=1",
        "/v1/apps/a/jobs?limit=1&limit=2",
        "/v1/apps/a/instances?status=DONE",
        "/v1/apps/a/instances?job_id=x",
        "/v1/apps/a/instances/1/log?cursor=%ff",
    ] {
        let (s, b) = h.send(get.clone(), q, t, None, vec![]).await;
        assert_error(s, &b, 400, "invalid_argument");
    }
    // Blank query values are absent.
    let (s, _) = h
        .send(
            get.clone(),
            "/v1/apps/a/instances?job_id=&status=&limit=&cursor=",
            t,
            None,
            vec![],
        )
        .await;
    assert_eq!(s, 200);

    // Non-numeric and out-of-range ids.
    for p in [
        "/v1/apps/a/jobs/abc",
        "/v1/apps/a/jobs/-1",
        "/v1/apps/a/jobs/1.5",
        "/v1/apps/a/jobs/184467440737095516160",
        "/v1/apps/a/instances/x",
        "/v1/apps/a/instances/x/log",
    ] {
        let (s, b) = h.send(get.clone(), p, t, None, vec![]).await;
        assert_error(s, &b, 400, "invalid_argument");
    }
    for p in ["/v1/apps/a/jobs/abc/run", "/v1/apps/a/instances/x/stop"] {
        let (s, b) = h.send(post.clone(), p, t, None, vec![]).await;
        assert_error(s, &b, 400, "invalid_argument");
    }
    // A path segment that is not UTF-8 once decoded.
    let (s, b) = h
        .send(get.clone(), "/v1/apps/%ff/jobs", t, None, vec![])
        .await;
    assert_error(s, &b, 400, "invalid_argument");

    // Unknown ids.
    let (s, b) = h
        .send(get.clone(), "/v1/apps/a/instances/999", t, None, vec![])
        .await;
    assert_error(s, &b, 404, "not_found");

    // Unknown routes: JSON 404 (`/` is the web console); wrong methods: JSON 405 with Allow.
    for p in [
        "/v1",
        "/v2/apps",
        "/v1/apps/a/jobs/1/explode",
        "/v1/apps/a/nothing",
    ] {
        let (s, b) = h.send(get.clone(), p, t, None, vec![]).await;
        assert_error(s, &b, 404, "not_found");
    }
    let resp = h
        .raw
        .patch(h.url(&format!("/v1/apps/a/jobs/{}", job.id.get())))
        .bearer_auth("a-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
    assert!(
        allow.contains("GET") && allow.contains("PUT") && allow.contains("DELETE"),
        "{allow}"
    );
    let body = resp.bytes().await.unwrap();
    assert_error(405, &body, 405, "invalid_argument");
    let (s, b) = h
        .send(reqwest::Method::PUT, "/v1/apps", Some(ADMIN), None, vec![])
        .await;
    assert_error(s, &b, 405, "invalid_argument");

    // The run body may be empty (no content type), `{}`, or a RunJob; nothing else.
    let run = format!("/v1/apps/a/jobs/{}/run", job.id.get());
    let (s, b) = h.send(post.clone(), &run, t, None, vec![]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let created: RunCreated = serde_json::from_slice(&b).unwrap();
    assert!(created.instance_id > InstanceId(0));
    let (s, _) = h.post_json(&run, t, "{}").await;
    assert_eq!(s, 200);
    let (s, b) = h.post_json(&run, t, r#"{"delay_ms":"soon"}"#).await;
    assert!(assert_error(s, &b, 400, "invalid_argument").contains("delay_ms"));
    let (s, b) = h.post_json(&run, t, r#"{"params":"x","extra":1}"#).await;
    assert_error(s, &b, 400, "invalid_argument");
    let (s, b) = h
        .send(post.clone(), &run, t, Some("text/plain"), b"{}".to_vec())
        .await;
    assert_error(s, &b, 400, "invalid_argument");

    h.assert_serving().await;
}

/// serde reads a JSON array as a struct's fields by position; the HTTP layer takes only JSON
/// objects as bodies, so `["billing","secret"]` is not an app and `["p", 5]` is not a run.
#[tokio::test]
async fn array_bodies_are_400s_not_structs_by_position() {
    let h = Harness::start().await;
    h.app("a").await;
    let job = h
        .client("a-secret")
        .create_job("a", &cron_job("j"))
        .await
        .unwrap();
    let t = Some("a-secret");
    let run = format!("/v1/apps/a/jobs/{}/run", job.id.0);
    for (path, token, body) in [
        ("/v1/apps", Some(ADMIN), r#"["b", "b-secret-0123"]"#),
        ("/v1/validate", None, r#" ["CRON", "0 * * * * ?"]"#),
        ("/v1/apps/a/jobs", t, r#"["j", "API", "", null]"#),
        (run.as_str(), t, r#"["p", 5]"#),
        ("/v1/apps/a/workflows", t, r#"["w", "API", "", null, 1]"#),
    ] {
        let (s, b) = h.post_json(path, token, body).await;
        let message = assert_error(s, &b, 400, "invalid_argument");
        assert!(message.contains("JSON object"), "{path} {body}: {message}");
    }
    // The app was not created, and objects still work.
    let (s, _) = h.post_json(&run, t, r#" {"params":"p"}"#).await;
    assert_eq!(s, 200);
    let (s, b) = h
        .send(
            reqwest::Method::GET,
            "/v1/apps/b/jobs",
            Some(ADMIN),
            None,
            Vec::new(),
        )
        .await;
    assert_error(s, &b, 404, "not_found");
}
#[tokio::test]
async fn oversized_bodies_are_413() {
    let h = Harness::start_with(HttpConfig {
        max_body_bytes: 4096,
        ..HttpConfig::new(ADMIN)
    })
    .await;
    h.app("a").await;
    let mut body = cron_job("big");
    body.params = "x".repeat(8192);
    assert_api_error(
        h.client("a-secret").create_job("a", &body).await,
        413,
        ErrorCode::PayloadTooLarge,
    );
    // Also with a chunked body of unknown length, over a raw socket.
    let mut sock = tokio::net::TcpStream::connect(h.server.local_addr())
        .await
        .unwrap();
    let mut req = b"POST /v1/apps/a/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a-secret\r\n\
Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..10 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b' '; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it has read everything; ignore write errors.
    let _ = sock.write_all(&req).await;
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""code":"payload_too_large""#), "{text}");
    // Under the limit still works.
    body.params = "x".repeat(100);
    h.client("a-secret").create_job("a", &body).await.unwrap();
    h.assert_serving().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let h = Harness::start().await;
    h.app("a").await;
    let c = h.client("a-secret");
    assert_api_error(
        c.create_job("a", &cron_job("panic")).await,
        500,
        ErrorCode::Internal,
    );
    c.create_job("a", &cron_job("fine")).await.unwrap();
    let metrics = c.metrics().await.unwrap();
    assert!(
        metrics.contains("ferrojob_http_handler_panics_total 1\n"),
        "{metrics}"
    );
}

/// Raw bytes that are not HTTP: the connection gets a 400 (or is closed) and the server keeps
/// serving.
#[tokio::test]
async fn garbage_on_the_socket_leaves_the_server_serving() {
    let h = Harness::start().await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/apps HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(h.server.local_addr())
            .await
            .unwrap();
        s.write_all(garbage).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        // The server answers 400 or closes; either way the read ends (or is reset).
        let _ = s.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{text}"
        );
    }
    h.assert_serving().await;
}

// ---------------------------------------------------------------------------------------------
// /v1/validate.

#[tokio::test]
async fn validate_answers_times_in_the_expression_zone() {
    let h = Harness::start().await;
    let next = h
        .admin
        .validate(&ValidateRequest {
            kind: TimeExpressionType::Cron,
            expression: "0 0 2 * * ?".into(),
            time_zone: Some("Asia/Shanghai".into()),
            count: Some(3),
            excluded: Vec::new(),
        })
        .await
        .unwrap()
        .next;
    assert_eq!(next.len(), 3);
    for t in &next {
        assert!(t.ends_with("T02:00:00+08:00"), "{t}");
    }

    let bad = h
        .admin
        .validate(&ValidateRequest {
            kind: TimeExpressionType::Cron,
            expression: "0 0 25 * * ?".into(),
            time_zone: None,
            count: None,
            excluded: Vec::new(),
        })
        .await;
    match bad {
        Err(ClientError::Api { status: 400, error }) => {
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert!(
                error.message.to_lowercase().contains("hour"),
                "names the field: {}",
                error.message
            );
        }
        other => panic!("{other:?}"),
    }
    let (s, b) = h
        .post_json(
            "/v1/validate",
            None,
            r#"{"type":"CRON","expression":"0 0 2 * * ?","count":1000}"#,
        )
        .await;
    assert!(assert_error(s, &b, 400, "invalid_argument").contains("count"));
    let (s, b) = h
        .post_json(
            "/v1/validate",
            None,
            r#"{"type":"CRON","expression":"0 0 2 * * ?","time_zone":"Mars/Olympus"}"#,
        )
        .await;
    assert_error(s, &b, 400, "invalid_argument");
    let (s, b) = h
        .post_json("/v1/validate", None, r#"{"type":"CRON"}"#)
        .await;
    assert!(assert_error(s, &b, 400, "invalid_argument").contains("expression"));
}

#[tokio::test]
async fn shutdown_is_graceful_and_frees_the_port() {
    let h = Harness::start().await;
    h.assert_serving().await;
    let addr = h.server.local_addr();
    h.server.shutdown().await;
    // A new client (no pooled connection) cannot connect any more.
    let fresh = Client::new(&format!("http://{addr}"), ADMIN).unwrap();
    assert!(matches!(
        fresh.health().await,
        Err(ClientError::Transport(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Connection handling: slow clients, the connection limit, shutdown with open connections.

/// Bounds every wait on a raw socket so a regression fails the test instead of hanging it;
/// not a timing assertion (the waits end in milliseconds when things work).
const HANG_GUARD: Duration = Duration::from_secs(10);

async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Reads one answer with a `Content-Length` body from `s`; answers its status line.
async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a Content-Length header");
            if buf.len() >= end + 4 + len {
                return head.lines().next().unwrap().to_owned();
            }
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(HANG_GUARD, s.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `GET /healthz` on `s`, keeping the connection alive; answers the status line.
async fn healthz_on(s: &mut tokio::net::TcpStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_answer(s).await
}

/// The server closes `s` (EOF or reset) without sending anything more.
async fn assert_closed_by_server(s: &mut tokio::net::TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection");
    if read.is_ok() {
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_after_the_header_read_timeout() {
    let h = Harness::start_with(HttpConfig {
        // Short, but long enough for the well-behaved connections below on a loaded machine.
        header_read_timeout: Duration::from_millis(500),
        ..HttpConfig::new(ADMIN)
    })
    .await;
    let addr = h.server.local_addr();
    // Half a request line, then nothing (slowloris).
    let mut stalled = connect(addr).await;
    stalled.write_all(b"GET /healthz HT").await.unwrap();
    // Connected, never a byte.
    let mut silent = connect(addr).await;
    // One answered request, then an idle keep-alive connection.
    let mut idle = connect(addr).await;
    assert_eq!(healthz_on(&mut idle).await, "HTTP/1.1 200 OK");
    // A head sent in many small writes is served (the timeout is for the whole head).
    let mut trickle = connect(addr).await;
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" {
        trickle.write_all(&[*b]).await.unwrap();
    }
    assert_eq!(read_answer(&mut trickle).await, "HTTP/1.1 200 OK");

    assert_closed_by_server(&mut stalled).await;
    assert_closed_by_server(&mut silent).await;
    assert_closed_by_server(&mut idle).await;
    assert_closed_by_server(&mut trickle).await;
    h.assert_serving().await;
}

#[tokio::test]
async fn a_request_head_far_over_16_kib_is_a_431_and_one_under_it_is_served() {
    let h = Harness::start().await;
    let head = |fill: usize| {
        let mut r = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: ".to_vec();
        r.resize(r.len() + fill, b'a');
        r.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        r
    };
    // The parser stops reading once 16 KiB of a head arrived without its end; a read may
    // have brought more by then, so the refused head is well past the limit.
    for (fill, status) in [(12 * 1024, "200"), (256 * 1024, "431")] {
        let mut s = connect(h.server.local_addr()).await;
        // The server may answer and close before it read the whole head.
        let _ = s.write_all(&head(fill)).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut got))
            .await
            .expect("the server closed the connection");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{fill} bytes of header: {text:?}"
        );
    }
    h.assert_serving().await;
}

#[tokio::test]
async fn a_source_over_its_connection_rate_is_answered_429_on_arrival_and_others_are_served() {
    let h = Harness::start_with(HttpConfig {
        connection_rate: Some(ConnectionRateLimit {
            per_min: 1,
            burst: 3,
            max_sources: 16,
        }),
        ..HttpConfig::new(ADMIN)
    })
    .await;
    let addr = h.server.local_addr();
    let get = |from: &'static str, path: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        // The server may close a refused connection before it reads the request.
        let _ = s.write_all(request.as_bytes()).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut got))
            .await
            .expect("the server closed the connection");
        String::from_utf8_lossy(&got).into_owned()
    };
    // A burst of three from one source, then one a minute.
    for _ in 0..3 {
        let answer = get("127.0.0.1", "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    let refused = get("127.0.0.1", "/healthz").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused:?}");
    assert!(refused.contains("Retry-After: 1"), "{refused:?}");
    assert!(refused.contains(r#""code":"rate_limited""#), "{refused:?}");
    // Another source has its own allowance, and the refusal was counted.
    let metrics = get("127.0.0.2", "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics:?}");
    assert!(
        metrics.contains("ferrojob_http_connections_rate_limited_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_disconnected() {
    let h = Harness::start_with(HttpConfig {
        write_stall_timeout: Duration::from_millis(200),
        ..HttpConfig::new(ADMIN)
    })
    .await;
    let mut s = connect(h.server.local_addr()).await;
    // 300 pipelined requests for the OpenAPI document (~50 MB of answers), never read: far
    // more than the loopback socket buffers hold, so the server's writes stall.
    let request = b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let requests = 300;
    s.write_all(&request.repeat(requests)).await.unwrap();
    // Well past the stall limit, then read what was sent before the server gave up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut got))
        .await
        .expect("the server closed the connection");
    let answers = got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(
        answers < requests,
        "{answers} answers of {requests}, {} bytes, {read:?}",
        got.len()
    );
    h.assert_serving().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() {
    let h = Harness::start_with(HttpConfig {
        body_read_timeout: Duration::from_millis(200),
        ..HttpConfig::new(ADMIN)
    })
    .await;
    let mut s = connect(h.server.local_addr()).await;
    s.write_all(
        b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
Content-Length: 100\r\n\r\n{\"type\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut answer))
        .await
        .expect("an answer, then the connection closes")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"invalid_argument""#), "{text}");
    // A body that arrives in time is unaffected.
    let (status, _) = h
        .post_json(
            "/v1/validate",
            None,
            r#"{"type":"CRON","expression":"0 0 2 * * ?"}"#,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let h = Harness::start_with(HttpConfig {
        max_connections: 2,
        ..HttpConfig::new(ADMIN)
    })
    .await;
    let addr = h.server.local_addr();
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    assert_eq!(healthz_on(&mut a).await, "HTTP/1.1 200 OK");
    assert_eq!(healthz_on(&mut b).await, "HTTP/1.1 200 OK");
    // The kernel completes the handshake (listen backlog), but the server does not take the
    // connection while two are open: its request stays unanswered.
    let mut c = connect(addr).await;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.read(&mut byte))
            .await
            .is_err(),
        "a third connection was served past max_connections = 2"
    );
    // The open ones keep being served.
    assert_eq!(healthz_on(&mut b).await, "HTTP/1.1 200 OK");
    // One closes: the waiting connection is taken and answered.
    drop(a);
    assert_eq!(read_answer(&mut c).await, "HTTP/1.1 200 OK");
    assert_eq!(healthz_on(&mut b).await, "HTTP/1.1 200 OK");
    drop(b);
    drop(c);
    h.assert_serving().await;
}

#[tokio::test]
async fn shutdown_ends_idle_and_stalled_connections() {
    let h = Harness::start_with(HttpConfig {
        // Far longer than the test: only shutdown can end these connections.
        header_read_timeout: Duration::from_secs(3600),
        shutdown_grace: Duration::from_millis(100),
        ..HttpConfig::new(ADMIN)
    })
    .await;
    let addr = h.server.local_addr();
    // Stalled in its first request head: graceful shutdown waits for the request, so the
    // grace runs out and the connection task is aborted.
    let mut stalled = connect(addr).await;
    stalled.write_all(b"GET /healthz HT").await.unwrap();
    // Idle between two requests: graceful shutdown closes it at once. Accepted after
    // `stalled` (accept order), so both are being served when shutdown starts.
    let mut idle = connect(addr).await;
    assert_eq!(healthz_on(&mut idle).await, "HTTP/1.1 200 OK");

    tokio::time::timeout(HANG_GUARD, h.server.shutdown())
        .await
        .expect("shutdown completes with open connections");
    assert_closed_by_server(&mut idle).await;
    assert_closed_by_server(&mut stalled).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn out_of_range_limits_are_refused_at_bind() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for config in [
        HttpConfig {
            max_connections: 0,
            ..HttpConfig::new(ADMIN)
        },
        HttpConfig {
            header_read_timeout: Duration::ZERO,
            ..HttpConfig::new(ADMIN)
        },
        HttpConfig {
            body_read_timeout: Duration::ZERO,
            ..HttpConfig::new(ADMIN)
        },
        HttpConfig {
            write_stall_timeout: Duration::ZERO,
            ..HttpConfig::new(ADMIN)
        },
    ] {
        let r = HttpServer::bind(addr, Arc::new(MockApi::default()), config).await;
        assert!(
            matches!(r, Err(ferrojob::http::HttpError::InvalidConfig(_))),
            "{r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random bodies never get a 5xx.

const FIELDS: &[&str] = &[
    "name",
    "secret",
    "time_expression_type",
    "time_expression",
    "time_zone",
    "execute_type",
    "processor",
    "params",
    "max_instances",
    "concurrency",
    "timeout_ms",
    "dispatch_strategy",
    "designated_workers",
    "min_cpu_cores",
    "misfire",
    "lifecycle",
    "enabled",
    "delay_ms",
    "type",
    "expression",
    "count",
    "nodes",
    "edges",
    "id",
    "job_id",
    "from",
    "to",
    "property",
    "skip_when_failed",
    "failure_policy",
    "workflow_id",
    "init_params",
    "bogus",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "API",
            "CRON",
            "FIXED_RATE",
            "FIXED_DELAY",
            "DAILY_TIME_INTERVAL",
            "WORKFLOW",
            "BROADCAST",
            "0 0 2 * * ?",
            "* * * * * ? *",
            "1000",
            "0",
            "Asia/Shanghai",
            "2026-01-01T00:00:00Z",
            "JOB",
            "DECISION",
            "NESTED_WORKFLOW",
            "FAIL_FAST",
            "true",
            "go == \"left\"",
            "{\"go\":\"left\"}",
            "",
        ])
        .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), inner, 0..4)
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), json_value(), 0..12)
        .prop_map(|m| {
            let obj: serde_json::Map<String, Value> =
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
        })
}

/// Workflow definitions with a plausible shape and random structure: duplicate ids, cycles,
/// dangling edges, unknown jobs, bad expressions and properties, wrong fields per type.
fn workflow_body() -> impl Strategy<Value = Vec<u8>> {
    let node = (
        0..6u64,
        prop::sample::select(vec!["JOB", "DECISION", "NESTED_WORKFLOW", "OTHER"]),
        prop::option::of(prop::sample::select(vec![1u64, 2, 3, 777])),
        prop::option::of(prop::sample::select(vec![
            "go == \"left\"",
            "tries < 3 && go != \"x\"",
            "go ==",
            "((((",
            "",
            "1 + true",
        ])),
        prop::option::of(0..4u64),
        any::<bool>(),
    )
        .prop_map(|(id, kind, job_id, expression, workflow_id, enabled)| {
            json!({"id": id, "type": kind, "job_id": job_id, "expression": expression,
                   "workflow_id": workflow_id, "enabled": enabled})
        });
    let edge = (
        0..7u64,
        0..7u64,
        prop::option::of(prop::sample::select(vec!["true", "false", "maybe"])),
    )
        .prop_map(|(from, to, property)| json!({"from": from, "to": to, "property": property}));
    (
        prop::sample::select(vec!["API", "CRON", "FIXED_RATE", "WORKFLOW", "BOGUS"]),
        prop::sample::select(vec!["", "0 0 2 * * ?", "1000", "0"]),
        prop::collection::vec(node, 0..6),
        prop::collection::vec(edge, 0..8),
    )
        .prop_map(|(kind, expr, nodes, edges)| {
            serde_json::to_vec(&json!({
                "name": "w", "time_expression_type": kind, "time_expression": expr,
                "nodes": nodes, "edges": edges,
            }))
            .unwrap_or_default()
        })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        r#"[{}\[\]":,0-9a-zA-Z_ .\\-]{0,64}"#.prop_map(String::into_bytes),
        json_object(),
        workflow_body(),
    ]
}

#[test]
fn random_bodies_never_get_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (h, job_id, workflow_id) = rt.block_on(async {
        let h = Harness::start().await;
        h.app("a").await;
        let c = h.client("a-secret");
        let job = c.create_job("a", &cron_job("j")).await.unwrap();
        let (def, _) = decision_workflow(&c).await;
        let workflow = c.create_workflow("a", &def).await.unwrap();
        (h, job.id.get(), workflow.id.get())
    });
    let routes: Vec<(reqwest::Method, String, &str)> = vec![
        (reqwest::Method::POST, "/v1/apps".into(), ADMIN),
        (reqwest::Method::POST, "/v1/apps/a/jobs".into(), "a-secret"),
        (
            reqwest::Method::PUT,
            format!("/v1/apps/a/jobs/{job_id}"),
            "a-secret",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/apps/a/jobs/{job_id}/run"),
            "a-secret",
        ),
        (reqwest::Method::POST, "/v1/validate".into(), ADMIN),
        (
            reqwest::Method::POST,
            "/v1/apps/a/workflows".into(),
            "a-secret",
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/apps/a/workflows/{workflow_id}"),
            "a-secret",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/apps/a/workflows/{workflow_id}/run"),
            "a-secret",
        ),
    ];
    let config = ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in any_body(), route in 0..routes.len(), json_ct in any::<bool>())| {
        let (method, path, token) = &routes[route];
        let ct = json_ct.then_some("application/json");
        let (status, answer) = rt.block_on(h.send(method.clone(), path, Some(token), ct, body.clone()));
        prop_assert!(status < 500, "{status} for {}: {}", String::from_utf8_lossy(&body), String::from_utf8_lossy(&answer));
        if status >= 400 {
            let parsed: Result<ErrorBody, _> = serde_json::from_slice(&answer);
            prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&answer));
        }
    });
    rt.block_on(h.assert_serving());
}

// ---------------------------------------------------------------------------------------------
// The per-app request rate.

#[tokio::test]
async fn an_app_beyond_its_rate_gets_429_with_retry_after_and_others_keep_working() {
    use ferrojob::clock::VirtualClock;
    use ferrojob::http::ApiRateLimit;

    let clock = Arc::new(VirtualClock::new(1_000_000));
    let config = HttpConfig {
        api_rate: Some(ApiRateLimit {
            per_sec: 1,
            burst: 3,
            max_keys: 16,
        }),
        clock: clock.clone(),
        ..HttpConfig::new(ADMIN)
    };
    let h = Harness::start_with(config).await;
    h.app("shop").await;
    h.app("billing").await;
    let shop = h.client("shop-secret");
    // The burst, then 429 with the wait in whole seconds.
    for _ in 0..3 {
        shop.list_jobs("shop", &JobQuery::default()).await.unwrap();
    }
    let resp = h
        .raw
        .get(h.url("/v1/apps/shop/jobs"))
        .bearer_auth("shop-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = resp.bytes().await.unwrap();
    assert_error(429, &body, 429, "rate_limited");
    // Through the client: a typed error.
    assert_api_error(
        shop.list_jobs("shop", &JobQuery::default()).await,
        429,
        ErrorCode::RateLimited,
    );
    // The admin token on shop's routes counts against shop too.
    assert_api_error(
        h.admin.list_jobs("shop", &JobQuery::default()).await,
        429,
        ErrorCode::RateLimited,
    );
    // Another app, the admin routes and the open routes are not affected.
    let billing = h.client("billing-secret");
    billing
        .list_jobs("billing", &JobQuery::default())
        .await
        .unwrap();
    h.assert_serving().await;
    // A wrong token is refused without taking from the bucket: still 401, not 429.
    let (status, body) = h
        .send(
            reqwest::Method::GET,
            "/v1/apps/shop/jobs",
            Some("nope"),
            None,
            Vec::new(),
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");
    // A second later one more request goes through.
    clock.advance(1000);
    shop.list_jobs("shop", &JobQuery::default()).await.unwrap();
    assert_api_error(
        shop.list_jobs("shop", &JobQuery::default()).await,
        429,
        ErrorCode::RateLimited,
    );
    // Each refusal is counted in /metrics.
    let metrics = h
        .raw
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferrojob_http_rate_limited_total 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_repeated_by_16_clients_gives_one_instance() {
    let h = Arc::new(Harness::start().await);
    h.app("a").await;
    let job = h
        .client("a-secret")
        .create_job("a", &cron_job("j"))
        .await
        .unwrap();
    let run = format!("/v1/apps/a/jobs/{}/run", job.id.get());
    let post = |key: &'static str| {
        let (h, run) = (Arc::clone(&h), run.clone());
        async move {
            let resp = h
                .raw
                .post(h.url(&run))
                .bearer_auth("a-secret")
                .header("Idempotency-Key", key)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        }
    };
    let answers = futures::future::join_all((0..16).map(|_| tokio::spawn(post("k-1")))).await;
    let ids: Vec<InstanceId> = answers
        .into_iter()
        .map(|a| {
            let (s, b) = a.unwrap();
            assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
            serde_json::from_slice::<RunCreated>(&b)
                .unwrap()
                .instance_id
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let all = h
        .client("a-secret")
        .list_instances("a", &InstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "one instance for one key");
    // Another key runs again; a malformed key is refused.
    let (s, b) = post("k-2").await;
    assert_eq!(s, 200);
    assert_ne!(
        serde_json::from_slice::<RunCreated>(&b)
            .unwrap()
            .instance_id,
        ids[0]
    );
    let (s, b) = post("has space").await;
    assert_error(s, &b, 400, "invalid_argument");
}

// ---------------------------------------------------------------------------------------------
// Forwarding to an app's owner (`http::forward`): two servers over one mock, each told where
// the app is served by a routing the test sets.

const FORWARD_KEY: &str = "forward-key-0123456789abcdef0123";

/// A routing the test points where it wants.
struct RouteTo(Mutex<ferrojob::http::AppHome>);

impl ferrojob::http::AppRouting for RouteTo {
    fn home(&self, _app: &str) -> ferrojob::http::AppHome {
        self.0.lock().unwrap().clone()
    }
}

fn owner_at(server: &HttpServer) -> ferrojob::http::AppHome {
    ferrojob::http::AppHome::Owner {
        server: "owner".into(),
        url: format!("http://{}", server.local_addr()),
    }
}

/// A server named `name` over `api`, sending `home`'s apps where it says; one failed sign-in
/// per source at most.
async fn cluster_member(
    api: &Arc<MockApi>,
    name: &str,
    home: ferrojob::http::AppHome,
) -> (HttpServer, Arc<RouteTo>) {
    let route = Arc::new(RouteTo(Mutex::new(home)));
    let mut config = HttpConfig::new(ADMIN);
    config.failed_logins = Some(ferrojob::http::FailedLoginLimit {
        per_min: 1,
        burst: 1,
        max_sources: 16,
    });
    config.forwarding = Some(ferrojob::http::Forwarding {
        routing: Arc::clone(&route) as Arc<dyn ferrojob::http::AppRouting>,
        key: Arc::from(FORWARD_KEY),
        server: name.into(),
        timeout: Duration::from_secs(5),
    });
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = HttpServer::bind(addr, Arc::clone(api) as Arc<dyn Api>, config)
        .await
        .unwrap();
    (server, route)
}

/// `GET /v1/apps/a/jobs/{job}` on `server` with `token` and extra headers: status,
/// `Retry-After`, `Ferrojob-Served-By`.
async fn get_job_raw(
    server: &HttpServer,
    job: JobId,
    token: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>) {
    let mut req = ferrojob::https::HttpsRoots::public()
        .client()
        .unwrap()
        .get(format!(
            "http://{}/v1/apps/a/jobs/{}",
            server.local_addr(),
            job.0
        ))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let answer = req.send().await.unwrap();
    let header = |n: &str| {
        answer
            .headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (
        answer.status().as_u16(),
        header("retry-after"),
        header(ferrojob::http::SERVED_BY_HEADER),
    )
}

#[tokio::test]
async fn a_request_of_an_app_owned_elsewhere_is_forwarded_to_its_owner() {
    use ferrojob::http::AppHome;
    let api = Arc::new(MockApi::default());
    let (owner, _) = cluster_member(&api, "owner", AppHome::Here).await;
    let (other, _) = cluster_member(&api, "other", owner_at(&owner)).await;
    let client = Client::new(&format!("http://{}", other.local_addr()), ADMIN).unwrap();
    client
        .create_app(&CreateApp {
            name: "a".into(),
            secret: "a-secret".into(),
        })
        .await
        .unwrap();
    // A command and reads through the other server: the owner serves them.
    let job = client.create_job("a", &cron_job("j")).await.unwrap().id;
    assert_eq!(client.get_job("a", job).await.unwrap().id, job);
    let (status, _, by) = get_job_raw(&other, job, ADMIN, &[]).await;
    assert_eq!((status, by.as_deref()), (200, Some("owner")));
    let (status, _, by) = get_job_raw(&owner, job, ADMIN, &[]).await;
    assert_eq!((status, by.as_deref()), (200, Some("owner")));
    // A wrong token is refused where it arrived: the next credential from this address is
    // throttled there, not at the owner.
    assert_eq!(get_job_raw(&other, job, "nope", &[]).await.0, 401);
    assert_eq!(get_job_raw(&other, job, ADMIN, &[]).await.0, 429);
    assert_eq!(get_job_raw(&owner, job, ADMIN, &[]).await.0, 200);
}

#[tokio::test]
async fn the_forwarding_header_counts_only_with_the_cluster_s_key() {
    use ferrojob::http::AppHome;
    let api = Arc::new(MockApi::default());
    let (owner, _) = cluster_member(&api, "owner", AppHome::Here).await;
    let admin = Client::new(&format!("http://{}", owner.local_addr()), ADMIN).unwrap();
    admin
        .create_app(&CreateApp {
            name: "a".into(),
            secret: "a-secret".into(),
        })
        .await
        .unwrap();
    let job = admin.create_job("a", &cron_job("j")).await.unwrap().id;
    // With the key, a failed sign-in counts against the client the header names.
    let keyed = format!("for=192.0.2.9; key={FORWARD_KEY}");
    let marked = [(ferrojob::http::FORWARDED_HEADER, keyed.as_str())];
    assert_eq!(get_job_raw(&owner, job, "nope", &marked).await.0, 401);
    assert_eq!(get_job_raw(&owner, job, ADMIN, &marked).await.0, 429);
    assert_eq!(get_job_raw(&owner, job, ADMIN, &[]).await.0, 200);
    // Without it the header is nothing: the failure counts against the peer itself.
    let forged = [(
        ferrojob::http::FORWARDED_HEADER,
        "for=192.0.2.10; key=guess",
    )];
    assert_eq!(get_job_raw(&owner, job, "nope", &forged).await.0, 401);
    assert_eq!(get_job_raw(&owner, job, ADMIN, &[]).await.0, 429);
}

#[tokio::test]
async fn a_forwarded_request_makes_one_hop_and_an_unreachable_owner_is_a_503() {
    use ferrojob::http::AppHome;
    let api = Arc::new(MockApi::default());
    let (a, route_a) = cluster_member(&api, "a", AppHome::Here).await;
    let (b, _) = cluster_member(&api, "b", owner_at(&a)).await;
    let admin = Client::new(&format!("http://{}", a.local_addr()), ADMIN).unwrap();
    admin
        .create_app(&CreateApp {
            name: "a".into(),
            secret: "a-secret".into(),
        })
        .await
        .unwrap();
    let job = admin.create_job("a", &cron_job("j")).await.unwrap().id;
    // Each believes the other owns the app: a request sent to b is forwarded to a, which
    // serves it instead of sending it back.
    *route_a.0.lock().unwrap() = owner_at(&b);
    let (status, _, by) = get_job_raw(&b, job, ADMIN, &[]).await;
    assert_eq!((status, by.as_deref()), (200, Some("a")));
    // An owner nobody knows, or one that is gone: 503 with Retry-After, once the token
    // is checked.
    *route_a.0.lock().unwrap() = AppHome::Unknown;
    assert_eq!(
        get_job_raw(&a, job, ADMIN, &[]).await,
        (503, Some("1".into()), None)
    );
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    *route_a.0.lock().unwrap() = AppHome::Owner {
        server: "gone".into(),
        url,
    };
    assert_eq!(
        get_job_raw(&b, job, ADMIN, &[]).await.0,
        200,
        "b still forwards to a, which serves a forwarded request"
    );
    let (status, retry, _) = get_job_raw(&a, job, ADMIN, &[]).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")));
    // The token is checked before the owner is looked for.
    assert_eq!(get_job_raw(&a, job, "nope", &[]).await.0, 401);
}
