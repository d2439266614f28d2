//! The workflow pages: the list with search, a definition with its DAG drawn as SVG
//! ([`super::dag`]), create and edit as JSON with a live DAG preview and the validation
//! errors shown, run now, delete with confirmation, and workflow instances with every node
//! coloured by status on the DAG (live while it runs), stop, retry and mark-success.
//!
//! The [`Api`](crate::api::Api) lists workflows a page at a time and filters nothing, so the
//! list scans at most [`MAX_PAGES`] pages and shows at most [`MAX_ROWS`] matches (and says
//! so when it stops early). Node boxes name their jobs: the names come from the same bounded
//! scan as the jobs table; a job past it is shown by id.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value as Json;

use super::routes::{api_error, html, ok, path_id, query, see_other};
use super::session::Session;
use super::workflow_pages as pages;
use super::Console;
use crate::api::{
    ApiError, ErrorCode, JobQuery, RunWorkflow, WorkflowDef, WorkflowInstanceAction,
    WorkflowInstanceQuery, WorkflowInstanceView, WorkflowView,
};
use crate::ids::{NodeId, WorkflowId, WorkflowInstanceId};

/// Pages of 1000 workflows the list reads at most.
const MAX_PAGES: usize = 10;
/// Rows the list shows at most.
pub(super) const MAX_ROWS: usize = 500;
/// Workflow instances per page of the instances table.
const RUNS_PAGE: u32 = 50;
/// Instances a workflow's page lists.
const NEWEST_RUNS: u32 = 10;

/// The names node boxes show: the app's jobs and workflows by id (as far as the bounded
/// scans reach), and whether the scans stopped early.
#[derive(Debug, Default)]
pub(crate) struct Names {
    jobs: HashMap<u64, String>,
    workflows: HashMap<u64, String>,
    truncated: bool,
}

impl Names {
    pub(crate) fn job(&self, id: u64) -> String {
        self.jobs
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("job {id}"))
    }

    pub(crate) fn workflow(&self, id: u64) -> String {
        self.workflows
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("workflow {id}"))
    }
}

/// The app's workflows `keep` accepts, in id order, at most [`MAX_ROWS`]; `true` when the
/// scan stopped before the last one.
async fn scan(
    c: &Console,
    s: &Session,
    keep: impl Fn(&WorkflowView) -> bool,
) -> Result<(Vec<WorkflowView>, bool), ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let query = crate::api::WorkflowQuery {
            limit: Some(1000),
            cursor,
            ..Default::default()
        };
        let page = c.api.list_workflows(s.app.clone(), query).await?;
        for w in page.items {
            if keep(&w) {
                if out.len() == MAX_ROWS {
                    return Ok((out, true));
                }
                out.push(w);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((out, false)),
        }
    }
    Ok((out, true))
}

async fn names(c: &Console, s: &Session) -> Result<Names, ApiError> {
    let (jobs, jobs_cut) = super::jobs::scan(c, s, &JobQuery::default(), |_| true).await?;
    let (workflows, workflows_cut) = scan(c, s, |_| true).await?;
    Ok(Names {
        jobs: jobs.into_iter().map(|j| (j.id.0, j.body.name)).collect(),
        workflows: workflows
            .into_iter()
            .map(|w| (w.id.0, w.body.name))
            .collect(),
        truncated: jobs_cut || workflows_cut,
    })
}

/// The editor's text parsed and validated as the server would (job and workflow references
/// checked against the names found; past a truncated scan, any id is let through and the
/// server decides on save), drawn.
fn check(
    text: &str,
    names: &Names,
) -> Result<(Vec<super::dag::DagNode>, Vec<super::dag::DagEdge>), String> {
    let def: WorkflowDef = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let graph = pages::def_graph(&def, names);
    def.validate(
        |id| names.truncated || names.jobs.contains_key(&id.0),
        |id| names.truncated || names.workflows.contains_key(&id.0),
    )
    .map_err(|e| e.to_string())?;
    Ok(graph)
}

/// A definition as the editor shows it: pretty JSON without the null (defaulted) fields.
fn editor_text(def: &WorkflowDef) -> String {
    fn strip(v: &mut Json) {
        match v {
            Json::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip);
            }
            Json::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(def).unwrap_or(Json::Null);
    strip(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// `GET /workflows?q`: the list.
pub(super) async fn list(State(c): State<Console>, req: Request) -> Response {
    let s = match c.session(req.headers()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let q = query(req.uri()).get("q").unwrap_or("").to_owned();
    let needle = q.to_lowercase();
    match scan(&c, &s, |w| w.body.name.to_lowercase().contains(&needle)).await {
        Ok((items, truncated)) => ok(pages::list(&s, &q, &items, truncated)),
        Err(e) => api_error(&e),
    }
}

/// `GET /workflows/new`: the editor with a one-node template.
pub(super) async fn new_form(State(c): State<Console>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let first_job = match c
        .api
        .list_jobs(
            s.app.clone(),
            crate::api::JobQuery {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
    {
        Ok(page) => page.items.first().map_or(1, |j| j.id.0),
        Err(e) => return api_error(&e),
    };
    let template = format!(
        "{{\n  \"name\": \"my workflow\",\n  \"time_expression_type\": \"API\",\n  \
         \"nodes\": [\n    {{ \"id\": 1, \"type\": \"JOB\", \"job_id\": {first_job} }}\n  ],\n  \
         \"edges\": []\n}}"
    );
    ok(pages::editor(&s, None, &template, None, maud::html! {}))
}

/// `POST /workflows/preview` (`definition`): the DAG of the text, or its error (an htmx
/// fragment; always 200 so that htmx swaps the error in too).
pub(super) async fn preview(State(c): State<Console>, req: Request) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let names = match names(&c, &s).await {
        Ok(n) => n,
        Err(e) => return api_error(&e),
    };
    ok(pages::preview(check(fields.raw("definition"), &names)))
}

/// The editor again with `e`'s message and the text as typed.
async fn refused(c: &Console, s: &Session, id: Option<u64>, text: &str, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let preview = match names(c, s).await {
        Ok(names) => pages::preview(check(text, &names)),
        Err(_) => maud::html! {},
    };
    html(
        status,
        pages::editor(s, id, text, Some(&e.message), preview),
    )
}

fn parse_def(text: &str) -> Result<WorkflowDef, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("definition: {e}")))
}

/// `POST /workflows` (`definition`) → 303 to the new workflow.
pub(super) async fn create(State(c): State<Console>, req: Request) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = fields.raw("definition");
    let def = match parse_def(text) {
        Ok(d) => d,
        Err(e) => return refused(&c, &s, None, text, &e).await,
    };
    match c.api.create_workflow(s.app.clone(), def).await {
        Ok(created) => see_other(&format!("/workflows/{}", created.id.0)),
        Err(e) if e.code == ErrorCode::InvalidArgument => refused(&c, &s, None, text, &e).await,
        Err(e) => api_error(&e),
    }
}

async fn workflow(c: &Console, s: &Session, id: &str) -> Result<WorkflowView, Response> {
    let id = WorkflowId(path_id(id)?);
    c.api
        .get_workflow(s.app.clone(), id)
        .await
        .map_err(|e| api_error(&e))
}

/// `GET /workflows/{id}`: settings, DAG, run now, newest instances.
pub(super) async fn detail(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let w = match workflow(&c, &s, &id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let query = WorkflowInstanceQuery {
        workflow_id: Some(w.id),
        limit: Some(NEWEST_RUNS),
        cursor: None,
    };
    let runs = match c.api.list_workflow_instances(s.app.clone(), query).await {
        Ok(page) => page.items,
        Err(e) => return api_error(&e),
    };
    match names(&c, &s).await {
        Ok(names) => ok(pages::detail(&s, &w, &names, &runs)),
        Err(e) => api_error(&e),
    }
}

/// `GET /workflows/{id}/edit`: the editor with the stored definition.
pub(super) async fn edit_form(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let w = match workflow(&c, &s, &id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let names = match names(&c, &s).await {
        Ok(n) => n,
        Err(e) => return api_error(&e),
    };
    let text = editor_text(&w.body);
    let preview = pages::preview(check(&text, &names));
    ok(pages::editor(&s, Some(w.id.0), &text, None, preview))
}

/// `POST /workflows/{id}` (`definition`) → 303 back to the workflow.
pub(super) async fn update(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let text = fields.raw("definition");
    let def = match parse_def(text) {
        Ok(d) => d,
        Err(e) => return refused(&c, &s, Some(id), text, &e).await,
    };
    match c
        .api
        .update_workflow(s.app.clone(), WorkflowId(id), def)
        .await
    {
        Ok(w) => see_other(&format!("/workflows/{}", w.id.0)),
        Err(e) if e.code == ErrorCode::InvalidArgument => refused(&c, &s, Some(id), text, &e).await,
        Err(e) => api_error(&e),
    }
}

/// `POST /workflows/{id}/run` (`init_params`, `delay_ms`) → 303 to the new instance.
pub(super) async fn run(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => WorkflowId(id),
        Err(r) => return r,
    };
    let bad = |msg: String| api_error(&ApiError::new(ErrorCode::InvalidArgument, msg));
    let delay_ms = match fields.number("delay_ms", 0u64) {
        Ok(d) => d,
        Err(msg) => return bad(msg),
    };
    let init_params = match fields.get("init_params") {
        None => None,
        Some(text) => match serde_json::from_str::<Json>(text) {
            Ok(v) => Some(v),
            Err(e) => return bad(format!("init_params: not JSON ({e})")),
        },
    };
    let req = RunWorkflow {
        init_params,
        delay_ms,
    };
    match c.api.run_workflow(s.app.clone(), id, req).await {
        Ok(run) => see_other(&format!(
            "/workflow-instances/{}",
            run.workflow_instance_id.0
        )),
        Err(e) => api_error(&e),
    }
}

/// `GET /workflows/{id}/delete`: asks first.
pub(super) async fn confirm_delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match workflow(&c, &s, &id).await {
        Ok(w) => ok(pages::confirm_delete(&s, &w)),
        Err(r) => r,
    }
}

/// `POST /workflows/{id}/delete` → 303 to the list.
pub(super) async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, _) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => WorkflowId(id),
        Err(r) => return r,
    };
    match c.api.delete_workflow(s.app.clone(), id).await {
        Ok(()) => see_other("/workflows"),
        Err(e) => api_error(&e),
    }
}

/// `GET /workflow-instances?workflow_id&cursor`: one page, newest first.
pub(super) async fn runs(State(c): State<Console>, req: Request) -> Response {
    let s = match c.session(req.headers()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let q = query(req.uri());
    let bad = |what: &str| api_error(&ApiError::invalid(what, "not a valid value"));
    let workflow_id = match q.get("workflow_id").map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(WorkflowId(id)),
        Some(Err(_)) => return bad("workflow_id"),
    };
    let cursor = match q.get("cursor").map(str::parse::<u64>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => return bad("cursor"),
    };
    let query = WorkflowInstanceQuery {
        workflow_id,
        limit: Some(RUNS_PAGE),
        cursor,
    };
    match c.api.list_workflow_instances(s.app.clone(), query).await {
        Ok(page) => {
            let next = page.next_cursor.map(|cursor| match workflow_id {
                Some(w) => format!("/workflow-instances?cursor={cursor}&workflow_id={}", w.0),
                None => format!("/workflow-instances?cursor={cursor}"),
            });
            let typed = workflow_id.map(|w| w.0.to_string()).unwrap_or_default();
            ok(pages::runs(&s, &typed, &page.items, next))
        }
        Err(e) => api_error(&e),
    }
}

/// A workflow instance's live part; its definition may be gone (deleted since).
async fn run_markup(
    c: &Console,
    s: &Session,
    id: &str,
) -> Result<(WorkflowInstanceView, maud::Markup), Response> {
    let id = WorkflowInstanceId(path_id(id)?);
    let run = c
        .api
        .get_workflow_instance(s.app.clone(), id)
        .await
        .map_err(|e| api_error(&e))?;
    let def = match c.api.get_workflow(s.app.clone(), run.workflow_id).await {
        Ok(w) => Some(w.body),
        Err(e) if e.code == ErrorCode::NotFound => None,
        Err(e) => return Err(api_error(&e)),
    };
    let names = names(c, s).await.map_err(|e| api_error(&e))?;
    let live = pages::run_live(s, &run, def.as_ref(), &names);
    Ok((run, live))
}

/// `GET /workflow-instances/{id}`.
pub(super) async fn run_page(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match run_markup(&c, &s, &id).await {
        Ok((run, live)) => ok(pages::run(&s, run.id.0, live)),
        Err(r) => r,
    }
}

/// `GET /workflow-instances/{id}/live`: the part of the page that changes while it runs.
pub(super) async fn run_live(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match run_markup(&c, &s, &id).await {
        Ok((_, live)) => ok(live),
        Err(r) => r,
    }
}

/// `POST /workflow-instances/{id}/{stop|retry}` → 303 back to the instance.
pub(super) async fn run_action(
    State(c): State<Console>,
    Path((id, action)): Path<(String, String)>,
    req: Request,
) -> Response {
    let action = match action.as_str() {
        "stop" => WorkflowInstanceAction::Stop,
        "retry" => WorkflowInstanceAction::Retry,
        _ => return super::routes::not_found(),
    };
    let (s, _) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => WorkflowInstanceId(id),
        Err(r) => return r,
    };
    match c
        .api
        .workflow_instance_action(s.app.clone(), id, action)
        .await
    {
        Ok(run) => see_other(&format!("/workflow-instances/{}", run.id.0)),
        Err(e) => api_error(&e),
    }
}

/// `POST /workflow-instances/{id}/nodes/{node}/mark-success` → 303 back to the instance.
pub(super) async fn mark_success(
    State(c): State<Console>,
    Path((id, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (s, _) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (id, node) = match (path_id(&id), path_id(&node)) {
        (Ok(id), Ok(node)) => (WorkflowInstanceId(id), NodeId(node)),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match c
        .api
        .mark_workflow_node_success(s.app.clone(), id, node)
        .await
    {
        Ok(run) => see_other(&format!("/workflow-instances/{}", run.id.0)),
        Err(e) => api_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            jobs: [(1, "extract".to_owned()), (2, "load".to_owned())].into(),
            workflows: HashMap::new(),
            truncated: false,
        }
    }

    #[test]
    fn the_editor_check_parses_validates_and_draws() {
        let good = r#"{"name":"w","time_expression_type":"API","nodes":[
            {"id":1,"job_id":1},{"id":2,"type":"DECISION","expression":"a == 1"},
            {"id":3,"job_id":2}],
            "edges":[{"from":1,"to":2},{"from":2,"to":3,"property":"true"}]}"#;
        let (nodes, edges) = check(good, &names()).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].label, "extract");
        assert_eq!(edges[1].branch, Some(true));
        let err = check("{", &names()).unwrap_err();
        assert!(err.contains("EOF"), "{err}");
        let cycle = r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1,"job_id":1},
            {"id":2,"job_id":2}],"edges":[{"from":1,"to":2},{"from":2,"to":1}]}"#;
        assert!(check(cycle, &names()).unwrap_err().contains("cycle"));
        let unknown = r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1,"job_id":9}]}"#;
        assert!(check(unknown, &names()).is_err());
        let mut past_the_scan = names();
        past_the_scan.truncated = true;
        assert!(check(unknown, &past_the_scan).is_ok());
    }

    #[test]
    fn the_editor_text_leaves_out_defaulted_nulls_and_reads_back() {
        let def: WorkflowDef = serde_json::from_str(
            r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1,"job_id":1}]}"#,
        )
        .unwrap();
        let text = editor_text(&def);
        assert!(!text.contains("null"), "{text}");
        assert_eq!(serde_json::from_str::<WorkflowDef>(&text).unwrap(), def);
    }
}
