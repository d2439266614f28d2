//! Handler tests of the console's pages: the console's router driven in process, one
//! request at a time (no socket), over a fake [`Api`] that can hold what a real server makes
//! slow or hard to reach: a busy app past the scans' bounds, a run of a workflow edited
//! since, an Api that fails. The workflow pages' tests are here, the job form's and the jobs
//! page's in [`jobs`], the job preview's in [`preview`], and every page's (with the overview
//! and the workers) in [`pages`].

mod jobs;
mod pages;
mod preview;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use hyper::service::Service;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use serde_json::json;

use crate::api::*;
use crate::ids::{AppId, InstanceId, JobId, NodeId, WorkflowId, WorkflowInstanceId};

#[derive(Debug, Default)]
struct State {
    workflows: Vec<WorkflowView>,
    runs: Vec<WorkflowInstanceView>,
    /// The instances listing says there is an older page.
    more_runs: bool,
    /// `list_workflows` answers Unavailable.
    fail: bool,
    /// Every query the instances page sent.
    instance_queries: Vec<InstanceQuery>,
    /// The app's jobs (`get_job` finds them by id; listings ignore filters but the page size).
    jobs: Vec<JobView>,
    /// Every query the jobs listing got.
    job_queries: Vec<JobQuery>,
    /// Every body `update_job` got.
    updates: Vec<JobBody>,
    /// The app's instances, newest first (listings ignore filters but the page size).
    instances: Vec<InstanceView>,
    /// Every instance's log.
    log: Vec<LogLineView>,
    /// The app's live workers.
    workers: Vec<WorkerInfo>,
    /// The app's calendars.
    calendars: Vec<CalendarView>,
    /// What `app_stats` answers (none: zero counts holding for the whole day).
    stats: Option<AppStats>,
}

#[derive(Debug, Default)]
struct Fake(Mutex<State>);

fn unavailable<'a, T: Send + 'a>() -> ApiFuture<'a, T> {
    Box::pin(async { Err(ApiError::unavailable("not in this fake")) })
}

fn ready<'a, T: Send + 'a>(v: Result<T, ApiError>) -> ApiFuture<'a, T> {
    Box::pin(async move { v })
}

fn app() -> AppRef {
    AppRef {
        id: AppId(1),
        name: "fake".into(),
        secret: "fake-secret".into(),
    }
}

impl Api for Fake {
    fn resolve_app(&self, name: &str) -> Result<AppRef, ApiError> {
        if name == "fake" {
            Ok(app())
        } else {
            Err(ApiError::new(ErrorCode::NotFound, "no such app"))
        }
    }
    fn create_app(&self, _: CreateApp) -> ApiFuture<'_, AppCreated> {
        unavailable()
    }
    fn create_job(&self, _: AppRef, _: JobBody) -> ApiFuture<'_, Created<JobId>> {
        unavailable()
    }
    fn list_jobs(&self, _: AppRef, q: JobQuery) -> ApiFuture<'_, JobList> {
        let mut st = self.0.lock();
        let from = q.cursor.map_or(0, |c| {
            st.jobs
                .iter()
                .position(|j| j.id.0 == c)
                .map_or(0, |i| i + 1)
        });
        let to = (from + q.limit.unwrap_or(100) as usize).min(st.jobs.len());
        let items = st.jobs.get(from..to).unwrap_or_default().to_vec();
        let next_cursor = (to < st.jobs.len())
            .then(|| items.last().map(|j| j.id.0))
            .flatten();
        st.job_queries.push(q);
        ready(Ok(JobList { items, next_cursor }))
    }
    fn get_job(&self, _: AppRef, id: JobId) -> ApiFuture<'_, JobView> {
        let st = self.0.lock();
        let found = st.jobs.iter().find(|j| j.id == id).cloned();
        ready(found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such job")))
    }
    fn update_job(&self, _: AppRef, id: JobId, body: JobBody) -> ApiFuture<'_, JobView> {
        let mut st = self.0.lock();
        st.updates.push(body.clone());
        let found = st.jobs.iter_mut().find(|j| j.id == id).map(|j| {
            j.body = body;
            j.clone()
        });
        ready(found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such job")))
    }
    fn delete_job(&self, _: AppRef, _: JobId) -> ApiFuture<'_, ()> {
        unavailable()
    }
    fn set_job_enabled(&self, _: AppRef, _: JobId, _: bool) -> ApiFuture<'_, JobView> {
        unavailable()
    }
    fn run_job(&self, _: AppRef, _: JobId, _: RunJob) -> ApiFuture<'_, RunCreated> {
        unavailable()
    }
    fn get_instance(&self, _: AppRef, id: InstanceId) -> ApiFuture<'_, InstanceView> {
        let st = self.0.lock();
        let found = st.instances.iter().find(|i| i.id == id).cloned();
        ready(found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such instance")))
    }
    fn app_stats(&self, _: AppRef) -> ApiFuture<'_, AppStats> {
        let stats = self.0.lock().stats.clone().unwrap_or_else(|| {
            let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
            let window = |ms: i64| StatsWindow {
                from: now - ms,
                ..StatsWindow::default()
            };
            AppStats {
                as_of: now,
                since: now - 2 * 86_400_000,
                last_5_minutes: window(300_000),
                last_hour: window(3_600_000),
                last_day: window(86_400_000),
            }
        });
        ready(Ok(stats))
    }
    fn list_instances(&self, _: AppRef, q: InstanceQuery) -> ApiFuture<'_, InstanceList> {
        let mut st = self.0.lock();
        let limit = q.limit.unwrap_or(100) as usize;
        st.instance_queries.push(q);
        let items: Vec<InstanceView> = st.instances.iter().take(limit).cloned().collect();
        let more = st.more_runs || st.instances.len() > limit;
        ready(Ok(InstanceList {
            items,
            next_cursor: more.then_some(41),
        }))
    }
    fn instance_action(
        &self,
        _: AppRef,
        _: InstanceId,
        _: InstanceAction,
    ) -> ApiFuture<'_, InstanceView> {
        unavailable()
    }
    fn instance_log(&self, _: AppRef, id: InstanceId, _: LogQuery) -> ApiFuture<'_, LogView> {
        let st = self.0.lock();
        ready(Ok(LogView {
            instance_id: id,
            lines: st.log.clone(),
            next_cursor: None,
            prev_cursor: None,
            dropped: 0,
        }))
    }
    fn list_workers(&self, _: AppRef) -> ApiFuture<'_, WorkerList> {
        let workers = self.0.lock().workers.clone();
        ready(Ok(WorkerList { workers }))
    }
    fn get_calendar(&self, _: AppRef, name: String) -> ApiFuture<'_, CalendarView> {
        let found = self
            .0
            .lock()
            .calendars
            .iter()
            .find(|c| c.name == name)
            .cloned();
        ready(found.ok_or_else(|| ApiError::not_found("calendar", name)))
    }
    fn create_workflow(&self, _: AppRef, _: WorkflowDef) -> ApiFuture<'_, Created<WorkflowId>> {
        unavailable()
    }
    fn list_workflows(
        &self,
        _: AppRef,
        q: crate::api::WorkflowQuery,
    ) -> ApiFuture<'_, WorkflowList> {
        let st = self.0.lock();
        if st.fail {
            return ready(Err(ApiError::unavailable("the store refuses reads")));
        }
        let from = q.cursor.unwrap_or(0) as usize;
        let to = (from + q.limit.unwrap_or(100) as usize).min(st.workflows.len());
        let items = st.workflows.get(from..to).unwrap_or_default().to_vec();
        let next_cursor = (to < st.workflows.len()).then_some(to as u64);
        ready(Ok(WorkflowList { items, next_cursor }))
    }
    fn get_workflow(&self, _: AppRef, id: WorkflowId) -> ApiFuture<'_, WorkflowView> {
        let st = self.0.lock();
        let found = st.workflows.iter().find(|w| w.id == id).cloned();
        ready(found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such workflow")))
    }
    fn update_workflow(
        &self,
        _: AppRef,
        _: WorkflowId,
        _: WorkflowDef,
    ) -> ApiFuture<'_, WorkflowView> {
        unavailable()
    }
    fn delete_workflow(&self, _: AppRef, _: WorkflowId) -> ApiFuture<'_, ()> {
        unavailable()
    }
    fn run_workflow(
        &self,
        _: AppRef,
        _: WorkflowId,
        _: RunWorkflow,
    ) -> ApiFuture<'_, WorkflowRunCreated> {
        unavailable()
    }
    fn get_workflow_instance(
        &self,
        _: AppRef,
        id: WorkflowInstanceId,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        let st = self.0.lock();
        let found = st.runs.iter().find(|r| r.id == id).cloned();
        ready(found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such instance")))
    }
    fn list_workflow_instances(
        &self,
        _: AppRef,
        q: WorkflowInstanceQuery,
    ) -> ApiFuture<'_, WorkflowInstanceList> {
        let st = self.0.lock();
        let items = st
            .runs
            .iter()
            .filter(|r| q.workflow_id.is_none_or(|w| r.workflow_id == w))
            .cloned()
            .collect();
        let next_cursor = st.more_runs.then_some(41);
        ready(Ok(WorkflowInstanceList { items, next_cursor }))
    }
    fn workflow_instance_action(
        &self,
        _: AppRef,
        _: WorkflowInstanceId,
        _: WorkflowInstanceAction,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        unavailable()
    }
    fn mark_workflow_node_success(
        &self,
        _: AppRef,
        _: WorkflowInstanceId,
        _: NodeId,
    ) -> ApiFuture<'_, WorkflowInstanceView> {
        unavailable()
    }
    fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            version: "0".into(),
            workers: 0,
            uptime_ms: 0,
        }
    }
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// Text that must render as text, never as markup.
const SCRIPT: &str = "<script>alert(1)</script>";

/// A job of the busy app.
fn job(id: u64, body: JobBody) -> JobView {
    JobView {
        id: JobId(id),
        app_id: AppId(1),
        body,
        next_trigger_time: Some(1_800_000_000_000 + id as i64),
        runs: 0,
        skipped_runs: 0,
        calendar_skipped_runs: 0,
        created_at: 0,
        updated_at: 0,
    }
}

fn workflow(id: u64, name: &str, def: serde_json::Value) -> WorkflowView {
    let mut body = json!({ "name": name, "time_expression_type": "API" });
    if let (Some(b), Some(d)) = (body.as_object_mut(), def.as_object()) {
        b.extend(d.clone());
    }
    WorkflowView {
        id: WorkflowId(id),
        app_id: AppId(1),
        body: serde_json::from_value(body).unwrap(),
        next_trigger_time: None,
        calendar_skipped_runs: 0,
        created_at: 0,
        updated_at: 0,
    }
}

fn one_node() -> serde_json::Value {
    json!({ "nodes": [{ "id": 1, "job_id": 1 }] })
}

/// The console over `fake`, and a signed-in session's cookie.
struct Client {
    app: Router,
    cookie: String,
    /// The session's CSRF token.
    csrf: String,
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<String>, String) {
    let resp = TowerToHyperService::new(app.clone())
        .call(req)
        .await
        .unwrap();
    let status = resp.status();
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, cookies, String::from_utf8(body.to_vec()).unwrap())
}

fn csrf_in(page: &str) -> String {
    let marker = r#"name="_csrf" value=""#;
    let start = page.find(marker).unwrap() + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

impl Client {
    async fn sign_in(fake: Arc<Fake>) -> Client {
        // Signs in with the app's secret: the compatibility mode.
        let credentials = crate::http::auth::Credentials {
            admin_token: Arc::from("admin-token"),
            app_secret_tokens: true,
        };
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let app: Router = super::router(fake, credentials, clock, false);
        let get = Request::get("/login").body(Body::empty()).unwrap();
        let (status, cookies, page) = send(&app, get).await;
        assert_eq!(status, StatusCode::OK);
        let body = format!("_csrf={}&app=fake&token=fake-secret", csrf_in(&page));
        let post = Request::post("/login")
            .header(header::COOKIE, &cookies[0])
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (status, cookies, _) = send(&app, post).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let cookie = cookies
            .into_iter()
            .find(|c| c.starts_with("ferrojob_session="))
            .unwrap();
        let mut client = Client {
            app,
            cookie,
            csrf: String::new(),
        };
        let (status, page) = client.get("/").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        client.csrf = csrf_in(&page);
        client
    }

    /// POSTs `fields` as a form of the session (its CSRF token added).
    async fn post(&self, path: &str, fields: &[(String, String)]) -> (StatusCode, String, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("_csrf", &self.csrf)
            .extend_pairs(fields)
            .finish();
        let req = Request::post(path)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let resp = TowerToHyperService::new(self.app.clone())
            .call(req)
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, location, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&self.app, req).await;
        (status, body)
    }
}

#[tokio::test]
async fn the_workflow_pages_render_for_an_empty_and_a_busy_app() {
    let fake = Arc::new(Fake::default());
    let c = Client::sign_in(fake.clone()).await;
    let (status, page) = c.get("/workflows").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No workflows match."), "{page}");
    let (_, page) = c.get("/workflow-instances").await;
    assert!(
        page.contains("No instances.") && !page.contains("Older"),
        "{page}"
    );
    let (status, page) = c.get("/workflows/new").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("&quot;job_id&quot;: 1"),
        "the template names a job: {page}"
    );

    // Busy: 1200 workflows over two pages of the Api; the list stops at its bound.
    {
        let mut st = fake.0.lock();
        st.workflows = (1..=1200)
            .map(|i| workflow(i, &format!("wf-{i}"), one_node()))
            .collect();
        st.runs = vec![run(5, 7, WorkflowInstanceStatus::Succeed, &[])];
        st.more_runs = true;
    }
    let (_, page) = c.get("/workflows").await;
    assert_eq!(page.matches("<tr>").count(), 1 + super::workflows::MAX_ROWS);
    assert!(
        page.contains("Only the first 500 matches are shown"),
        "{page}"
    );
    let (_, page) = c.get("/workflows?q=wf-1199").await;
    assert!(page.contains("/workflows/1199\"") && !page.contains("Only the first"));
    let (_, page) = c.get("/workflow-instances?workflow_id=7").await;
    assert!(page.contains("/workflow-instances/5\""), "{page}");
    assert!(
        page.contains("/workflow-instances?cursor=41&amp;workflow_id=7"),
        "{page}"
    );
}

fn run(
    id: u64,
    workflow: u64,
    status: WorkflowInstanceStatus,
    nodes: &[(u64, NodeStatus, Option<u64>, Option<&str>)],
) -> WorkflowInstanceView {
    WorkflowInstanceView {
        id: WorkflowInstanceId(id),
        workflow_id: WorkflowId(workflow),
        status,
        context: serde_json::from_value(json!({ "<script>": "x</pre>" })).unwrap(),
        nodes: nodes
            .iter()
            .map(|&(id, status, instance_id, result)| WorkflowNodeView {
                id: NodeId(id),
                status,
                instance_id,
                result: result.map(str::to_owned),
            })
            .collect(),
        parent_instance_id: Some(WorkflowInstanceId(2)),
        trigger_time: 0,
        created_at: 0,
        started_at: Some(1),
        finished_at: None,
    }
}

#[tokio::test]
async fn a_run_is_coloured_linked_and_noted_when_its_workflow_changed() {
    let fake = Arc::new(Fake::default());
    {
        let mut st = fake.0.lock();
        let def = json!({
            "nodes": [{ "id": 1, "job_id": 1 }, { "id": 2, "type": "NESTED_WORKFLOW", "workflow_id": 9 }],
            "edges": [{ "from": 1, "to": 2 }],
        });
        st.workflows = vec![
            workflow(7, "etl", def),
            workflow(9, "inner <i>", one_node()),
        ];
        st.runs = vec![run(
            5,
            7,
            WorkflowInstanceStatus::Running,
            &[
                (1, NodeStatus::Succeed, Some(77), None),
                (2, NodeStatus::Running, Some(6), None),
                (3, NodeStatus::Failed, Some(78), Some("<b>boom</b>")),
            ],
        )];
    }
    let c = Client::sign_in(fake.clone()).await;
    let (status, page) = c.get("/workflow-instances/5").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // Node 3 is not in the definition any more: the drawing says so.
    assert!(page.contains("edited since this run"), "{page}");
    assert!(
        page.contains(
            r#"<a href="/instances/77"><g class="node kind-JOB st-SUCCEED" data-node="1">"#
        ),
        "{page}"
    );
    assert!(page.contains(r#"<a href="/workflow-instances/6"><g class="node kind-NESTED_WORKFLOW st-RUNNING" data-node="2">"#), "{page}");
    assert!(
        page.contains("inner &lt;i&gt;") && !page.contains("inner <i>"),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;boom&lt;/b&gt;") && !page.contains("<b>boom"),
        "{page}"
    );
    assert!(
        page.contains("&quot;&lt;script&gt;&quot;: &quot;x&lt;/pre&gt;&quot;"),
        "{page}"
    );
    assert!(
        page.contains("/workflow-instances/5/nodes/3/mark-success"),
        "{page}"
    );
    assert!(!page.contains("/nodes/1/mark-success"), "{page}");
    assert!(
        page.contains("/workflow-instances/5/stop") && !page.contains("/5/retry"),
        "{page}"
    );
    assert!(
        page.contains(r#"hx-get="/workflow-instances/5/live""#),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/workflow-instances/2""#),
        "the parent run: {page}"
    );

    // Deleted: nodes alone, no edge.
    fake.0.lock().workflows.retain(|w| w.id != WorkflowId(7));
    let (status, live) = c.get("/workflow-instances/5/live").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        live.contains("The workflow was deleted") && !live.contains("class=\"edge"),
        "{live}"
    );
    assert!(!live.contains("<html"), "a fragment: {live}");
}

#[tokio::test]
async fn bad_ids_and_api_failures_get_error_pages_not_panics() {
    let fake = Arc::new(Fake::default());
    let c = Client::sign_in(fake.clone()).await;
    for (path, want) in [
        ("/workflows/abc", StatusCode::NOT_FOUND),
        ("/workflows/99999999999999999999", StatusCode::NOT_FOUND),
        ("/workflows/3", StatusCode::NOT_FOUND),
        ("/workflows/3/edit", StatusCode::NOT_FOUND),
        ("/workflow-instances/x/live", StatusCode::NOT_FOUND),
        (
            "/workflow-instances?workflow_id=-1",
            StatusCode::BAD_REQUEST,
        ),
        ("/workflow-instances?cursor=soon", StatusCode::BAD_REQUEST),
    ] {
        let (status, page) = c.get(path).await;
        assert_eq!(status, want, "{path}: {page}");
        assert!(page.contains("role=\"alert\""), "{path}: {page}");
    }
    fake.0.lock().fail = true;
    let (status, page) = c.get("/workflows").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(page.contains("the store refuses reads"), "{page}");
    let (status, page) = c.get("/workers").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("No worker is connected.") && page.contains("No worker was lost."));
}

#[tokio::test]
async fn the_instances_page_filters_by_a_time_range_and_pages_with_it() {
    let fake = Arc::new(Fake::default());
    fake.0.lock().more_runs = true;
    let c = Client::sign_in(fake.clone()).await;
    let (status, page) = c
        .get("/instances?job_id=3&time=finished&from=2025-12-07T00%3A00&to=1765152000000")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("name=\"from\"") && page.contains("2025-12-07T00:00"),
        "{page}"
    );
    assert!(
        page.contains(
            "/instances?cursor=41&amp;job_id=3&amp;time=finished&amp;from=1765065600000&amp;to=1765152000000"
        ),
        "{page}"
    );
    let sent = fake.0.lock().instance_queries.pop().unwrap();
    assert_eq!(sent.job_id, Some(JobId(3)));
    assert_eq!(
        (sent.finished_from, sent.finished_to),
        (Some(1_765_065_600_000), Some(1_765_152_000_000))
    );
    assert_eq!((sent.trigger_from, sent.trigger_to), (None, None));
    let (status, page) = c.get("/instances?from=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("from"), "{page}");
}
