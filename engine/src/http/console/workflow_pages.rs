//! The workflow pages' HTML (maud, so every name, expression and context value is escaped):
//! the list, a definition with its DAG, the JSON editor with its live DAG preview, and a
//! workflow instance with every node coloured by status on the same DAG.

use maud::{html, Markup};

use super::dag::{self, DagEdge, DagNode};
use super::pages::{csrf, layout, time, Tab};
use super::session::Session;
use super::workflows::Names;
use crate::api::{
    NodeKind, WorkflowDef, WorkflowInstanceStatus, WorkflowInstanceView, WorkflowView,
};
use crate::workflow::NodeStatus;

/// A workflow instance's status badge (the same classes as a job instance's).
pub(crate) fn status(s: WorkflowInstanceStatus) -> Markup {
    html! { span class={ "badge st-" (s.as_str()) } { (s.as_str()) } }
}

fn node_status(s: NodeStatus) -> Markup {
    html! { span class={ "badge st-" (s.as_str()) } { (s.as_str()) } }
}

/// What a node of `def` runs, for its box.
fn label(n: &crate::api::NodeDef, names: &Names) -> String {
    match n.kind {
        NodeKind::Job => match n.job_id {
            Some(id) => names.job(id.0),
            None => "no job".to_owned(),
        },
        NodeKind::Decision => n.expression.clone().unwrap_or_default(),
        NodeKind::NestedWorkflow => match n.workflow_id {
            Some(id) => names.workflow(id.0),
            None => "no workflow".to_owned(),
        },
    }
}

/// Where a node of a definition links: its job or its nested workflow.
fn def_href(n: &crate::api::NodeDef) -> Option<String> {
    match n.kind {
        NodeKind::Job => n.job_id.map(|id| format!("/jobs/{}", id.0)),
        NodeKind::NestedWorkflow => n.workflow_id.map(|id| format!("/workflows/{}", id.0)),
        NodeKind::Decision => None,
    }
}

/// The nodes and edges of `def` to draw (no status).
pub(crate) fn def_graph(def: &WorkflowDef, names: &Names) -> (Vec<DagNode>, Vec<DagEdge>) {
    let nodes = def
        .nodes
        .iter()
        .map(|n| DagNode {
            id: n.id.0,
            kind: n.kind.as_str(),
            label: label(n, names),
            status: None,
            disabled: !n.enabled,
            href: def_href(n),
        })
        .collect();
    (nodes, edges(def))
}

fn edges(def: &WorkflowDef) -> Vec<DagEdge> {
    def.edges
        .iter()
        .map(|e| DagEdge {
            from: e.from.0,
            to: e.to.0,
            branch: match e.property.as_deref() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            },
        })
        .collect()
}

/// The nodes of a run coloured by status on its definition's edges, and a note when the
/// definition no longer matches the run (edited or deleted since).
fn run_graph(
    run: &WorkflowInstanceView,
    def: Option<&WorkflowDef>,
    names: &Names,
) -> (Vec<DagNode>, Vec<DagEdge>, Option<&'static str>) {
    let find = |id: u64| def.and_then(|d| d.nodes.iter().find(|n| n.id.0 == id));
    let nodes: Vec<DagNode> = run
        .nodes
        .iter()
        .map(|n| {
            let d = find(n.id.0);
            let kind = d.map_or("JOB", |d| d.kind.as_str());
            let href = match (n.instance_id, d.map(|d| d.kind)) {
                (Some(i), Some(NodeKind::NestedWorkflow)) => {
                    Some(format!("/workflow-instances/{i}"))
                }
                (Some(i), _) => Some(format!("/instances/{i}")),
                (None, _) => d.and_then(def_href),
            };
            DagNode {
                id: n.id.0,
                kind,
                label: d.map_or_else(|| format!("node {}", n.id.0), |d| label(d, names)),
                status: Some(n.status.as_str()),
                disabled: d.is_some_and(|d| !d.enabled),
                href,
            }
        })
        .collect();
    let note = match def {
        None => Some("The workflow was deleted: its edges are not known, so the nodes are drawn alone."),
        Some(d)
            if d.nodes.len() != run.nodes.len()
                || d.nodes.iter().zip(&run.nodes).any(|(a, b)| a.id != b.id) =>
        {
            Some("The workflow was edited since this run: the edges drawn are the current definition's.")
        }
        Some(_) => None,
    };
    let edges = def.map(edges).unwrap_or_default();
    (nodes, edges, note)
}

/// The workflows table with its search.
pub(crate) fn list(session: &Session, q: &str, items: &[WorkflowView], truncated: bool) -> Markup {
    let body = html! {
        form.filters method="get" action="/workflows" role="search" {
            label { "Name" input name="q" value=(q) placeholder="search"; }
            button type="submit" { "Filter" }
            a.button href="/workflows/new" { "New workflow" }
            a href="/workflow-instances" { "All workflow instances" }
        }
        @if items.is_empty() { p.muted { "No workflows match." } } @else {
            table {
                thead { tr { th { "Id" } th { "Name" } th { "Time" } th { "Nodes" } th { "Next fire" } th { "Actions" } } }
                tbody {
                    @for w in items {
                        tr {
                            td { (w.id.0) }
                            td { a href={ "/workflows/" (w.id.0) } { (w.body.name) } }
                            td { (w.body.time_expression_type.as_str()) " " code { (w.body.time_expression) } }
                            td { (w.body.nodes.len()) }
                            td { (time(w.next_trigger_time)) }
                            td.actions {
                                form method="post" action={ "/workflows/" (w.id.0) "/run" } { (csrf(session)) button type="submit" { "Run now" } }
                                a href={ "/workflow-instances?workflow_id=" (w.id.0) } { "Instances" }
                            }
                        }
                    }
                }
            }
            @if truncated { p.muted { "Only the first " (items.len()) " matches are shown; narrow the search." } }
        }
    };
    layout(session, Tab::Workflows, "Workflows", body)
}

/// The DAG preview of the editor: the drawing, or what is wrong with the text.
pub(crate) fn preview(result: Result<(Vec<DagNode>, Vec<DagEdge>), String>) -> Markup {
    match result {
        Err(e) => html! { p.error role="alert" { "Definition: " (e) } },
        Ok((nodes, edges)) => html! {
            p.muted { (nodes.len()) " nodes, " (edges.len()) " edges; valid." }
            (dag::svg(&nodes, &edges, "preview of the workflow"))
        },
    }
}

/// The JSON editor of a new (`id` = None) or existing workflow, its live preview in place.
pub(crate) fn editor(
    session: &Session,
    id: Option<u64>,
    text: &str,
    error: Option<&str>,
    preview: Markup,
) -> Markup {
    let action = match id {
        Some(id) => format!("/workflows/{id}"),
        None => "/workflows".to_owned(),
    };
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        p.muted {
            "The definition as the API takes it: " code { "name" } ", " code { "time_expression_type" }
            " (API, CRON, FIXED_RATE, DAILY_TIME_INTERVAL), " code { "time_expression" } ", "
            code { "time_zone" } ", " code { "max_instances" } ", " code { "failure_policy" }
            " (FAIL_FAST, FINISH_BRANCHES), " code { "nodes" } " (" code { "id" } ", " code { "type" }
            " JOB / DECISION / NESTED_WORKFLOW, " code { "job_id" } ", " code { "expression" } ", "
            code { "workflow_id" } ", " code { "params" } ", " code { "enabled" } ", " code { "skip_when_failed" }
            ") and " code { "edges" } " (" code { "from" } ", " code { "to" } ", " code { "property" }
            " \"true\"/\"false\" leaving a decision)."
        }
        form.workflow method="post" action=(action) {
            (csrf(session))
            div.editor {
                label { "Definition (JSON)"
                    textarea #definition name="definition" rows="24" spellcheck="false" aria-describedby="dag-preview" { (text) }
                }
                div #dag-preview.dag-preview aria-live="polite" hx-post="/workflows/preview"
                    hx-trigger="load, input delay:400ms from:#definition" { (preview) }
            }
            button type="submit" { @if id.is_some() { "Save" } @else { "Create" } }
            @if let Some(id) = id { " " a href={ "/workflows/" (id) } { "Cancel" } }
        }
    };
    let title = match id {
        Some(id) => format!("Edit workflow {id}"),
        None => "New workflow".to_owned(),
    };
    layout(session, Tab::Workflows, &title, body)
}

/// A workflow: its settings, its DAG, run now, and its newest instances.
pub(crate) fn detail(
    session: &Session,
    w: &WorkflowView,
    names: &Names,
    runs: &[WorkflowInstanceView],
) -> Markup {
    let (nodes, edges) = def_graph(&w.body, names);
    let id = w.id.0;
    let body = html! {
        dl.facts {
            dt { "Name" } dd { (w.body.name) }
            dt { "Time" } dd { (w.body.time_expression_type.as_str()) " " code { (w.body.time_expression) } }
            dt { "Time zone" } dd { (w.body.time_zone.as_deref().unwrap_or("UTC")) }
            dt { "Max instances" } dd { (w.body.max_instances) }
            dt { "Failure policy" } dd { (super::form::wire(&w.body.failure_policy)) }
            dt { "Next fire" } dd { (time(w.next_trigger_time)) }
            dt { "Created" } dd { (time(Some(w.created_at))) }
            dt { "Updated" } dd { (time(Some(w.updated_at))) }
        }
        h2 { "DAG" }
        (dag::svg(&nodes, &edges, &format!("DAG of workflow {}", w.body.name)))
        p { a.button href={ "/workflows/" (id) "/edit" } { "Edit" } " "
            a.danger href={ "/workflows/" (id) "/delete" } { "Delete…" } }
        section {
            h2 { "Run now" }
            form.inline.run method="post" action={ "/workflows/" (id) "/run" } {
                (csrf(session))
                label { "Init params (a JSON object)" input name="init_params" placeholder="{\"key\": \"value\"}"; }
                label { "Delay, ms" input name="delay_ms" inputmode="numeric" value="0"; }
                button type="submit" { "Run now" }
            }
        }
        section {
            h2 { "Newest instances" }
            (runs_table(runs))
            p { a href={ "/workflow-instances?workflow_id=" (id) } { "All instances of this workflow" } }
        }
    };
    layout(session, Tab::Workflows, &format!("Workflow {id}"), body)
}

fn runs_table(runs: &[WorkflowInstanceView]) -> Markup {
    html! {
        @if runs.is_empty() { p.muted { "No instances." } } @else {
            table {
                thead { tr { th { "Id" } th { "Workflow" } th { "Status" } th { "Created" } th { "Finished" } th { "Nodes done" } } }
                tbody {
                    @for r in runs {
                        @let done = r.nodes.iter().filter(|n| !matches!(n.status, NodeStatus::Waiting | NodeStatus::Running)).count();
                        tr {
                            td { a href={ "/workflow-instances/" (r.id.0) } { (r.id.0) } }
                            td { a href={ "/workflows/" (r.workflow_id.0) } { (r.workflow_id.0) } }
                            td { (status(r.status)) }
                            td { (time(Some(r.created_at))) }
                            td { (time(r.finished_at)) }
                            td { (done) " / " (r.nodes.len()) }
                        }
                    }
                }
            }
        }
    }
}

/// Asks before deleting a workflow.
pub(crate) fn confirm_delete(session: &Session, w: &WorkflowView) -> Markup {
    let body = html! {
        p { "Delete workflow " strong { (w.body.name) } " (id " (w.id.0) ")? Its instances stay listed." }
        form.inline method="post" action={ "/workflows/" (w.id.0) "/delete" } {
            (csrf(session))
            button.danger type="submit" { "Delete" }
            a href={ "/workflows/" (w.id.0) } { "Cancel" }
        }
    };
    layout(session, Tab::Workflows, "Delete workflow", body)
}

/// The workflow instances table, one page, newest first.
pub(crate) fn runs(
    session: &Session,
    workflow_id: &str,
    items: &[WorkflowInstanceView],
    next: Option<String>,
) -> Markup {
    let body = html! {
        form.filters method="get" action="/workflow-instances" {
            label { "Workflow id" input name="workflow_id" inputmode="numeric" value=(workflow_id); }
            button type="submit" { "Filter" }
        }
        (runs_table(items))
        @if let Some(href) = next { p { a href=(href) { "Older →" } } }
    };
    layout(session, Tab::Workflows, "Workflow instances", body)
}

/// The live part of a workflow instance's page: polled every 2 s by htmx until it finishes.
pub(crate) fn run_live(
    session: &Session,
    run: &WorkflowInstanceView,
    def: Option<&WorkflowDef>,
    names: &Names,
) -> Markup {
    let id = run.id.0;
    let live = !run.status.is_finished();
    let (nodes, edges, note) = run_graph(run, def, names);
    let context = serde_json::to_string_pretty(&run.context).unwrap_or_default();
    html! {
        div #live hx-get=[live.then(|| format!("/workflow-instances/{id}/live"))]
            hx-trigger=[live.then_some("every 2s")] hx-swap="outerHTML" {
            dl.facts {
                dt { "Status" } dd { (status(run.status)) }
                dt { "Workflow" } dd { a href={ "/workflows/" (run.workflow_id.0) } {
                    (def.map_or_else(|| run.workflow_id.0.to_string(), |d| d.name.clone())) } }
                dt { "Triggered for" } dd { (time(Some(run.trigger_time))) }
                dt { "Created" } dd { (time(Some(run.created_at))) }
                dt { "Started" } dd { (time(run.started_at)) }
                dt { "Finished" } dd { (time(run.finished_at)) }
                @if let Some(p) = run.parent_instance_id {
                    dt { "Runs inside" } dd { a href={ "/workflow-instances/" (p.0) } { "workflow instance " (p.0) } }
                }
            }
            div.actions {
                @if !run.status.is_finished() {
                    form method="post" action={ "/workflow-instances/" (id) "/stop" } { (csrf(session)) button type="submit" { "Stop" } }
                }
                @if matches!(run.status, WorkflowInstanceStatus::Failed | WorkflowInstanceStatus::Stopped) {
                    form method="post" action={ "/workflow-instances/" (id) "/retry" } { (csrf(session)) button type="submit" { "Retry" } }
                }
            }
            @if let Some(n) = note { p.muted { (n) } }
            (dag::svg(&nodes, &edges, &format!("DAG of workflow instance {id}")))
            h2 { "Nodes" }
            table.nodes {
                thead { tr { th { "Node" } th { "Type" } th { "Status" } th { "Instance" } th { "Result" } th { "Actions" } } }
                tbody {
                    @for (n, d) in run.nodes.iter().zip(&nodes) {
                        tr data-node=(n.id.0) {
                            td { "#" (n.id.0) " " (d.label) }
                            td { (d.kind) }
                            td { (node_status(n.status)) }
                            td { @match (n.instance_id, d.href.as_deref()) {
                                (Some(i), Some(href)) => { a href=(href) { (i) } },
                                (Some(i), None) => { (i) },
                                _ => { span.muted { "–" } },
                            } }
                            td { pre.result { (n.result.as_deref().unwrap_or("")) } }
                            td { @if matches!(n.status, NodeStatus::Failed | NodeStatus::Stopped) && d.kind != "DECISION" {
                                form method="post" action={ "/workflow-instances/" (id) "/nodes/" (n.id.0) "/mark-success" } {
                                    (csrf(session)) button type="submit" { "Mark success" }
                                }
                            } }
                        }
                    }
                }
            }
            h2 { "Context" }
            pre.context { (context) }
        }
    }
}

/// One workflow instance's page.
pub(crate) fn run(session: &Session, id: u64, live: Markup) -> Markup {
    layout(
        session,
        Tab::Workflows,
        &format!("Workflow instance {id}"),
        live,
    )
}
