//! `ferrojob workflow ...`: workflows (DAGs of jobs and decisions) and their instances,
//! through the Rust client. Output is a short human form, or the API's JSON with `--json`
//! (global flags as for `ferrojob job ...`, see [`crate::remote::Conn`]).
//!
//! ```text
//! ferrojob workflow create --app A --file def.json      # or --body '{"name":...}', - = stdin
//! ferrojob workflow run --app A 3 --init-params '{"tries":1}'
//! ferrojob workflow backfill --app A 3 --from 2026-12-01T00:00:00Z --to 2026-12-03T00:00:00Z --dry-run
//! ferrojob workflow list --app A --tag etl --type CRON
//! ferrojob workflow copy --app A 3 --name "nightly (eu)"
//! ferrojob workflow instance --app A 17                  # the node table
//! ```

use anyhow::{bail, Context, Result};
use ferrojob::api::{
    CopyWorkflow, RunWorkflow, WorkflowDef, WorkflowInstanceQuery, WorkflowInstanceView,
    WorkflowQuery, WorkflowView,
};
use ferrojob::client::Client;
use ferrojob::ids::{NodeId, WorkflowId, WorkflowInstanceId};
use ferrojob::workflow::NodeKind;

use crate::fmt_ms;
use crate::remote::{print_json, print_page, runtime, truncate, AppArg, Conn};

/// Where a workflow definition comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct DefSource {
    /// A file holding the definition as JSON (`-` for stdin).
    #[arg(long, conflicts_with = "body")]
    file: Option<String>,
    /// The definition as JSON text.
    #[arg(long)]
    body: Option<String>,
}

impl DefSource {
    /// The definition, parsed (the server validates it).
    fn read(&self) -> Result<WorkflowDef> {
        let (text, from) = match (&self.file, &self.body) {
            (Some(path), _) if path == "-" => (
                std::io::read_to_string(std::io::stdin())
                    .context("reading the definition from stdin")?,
                "stdin".to_owned(),
            ),
            (Some(path), _) => (
                std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
                path.clone(),
            ),
            (None, Some(body)) => (body.clone(), "--body".to_owned()),
            (None, None) => bail!("give the definition with --file PATH or --body JSON"),
        };
        serde_json::from_str(&text)
            .with_context(|| format!("{from} is not a valid workflow definition"))
    }
}

/// `ferrojob workflow ...`
#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCmd {
    /// Create a workflow; prints its id.
    Create {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        def: DefSource,
    },
    /// List the app's workflows (filtered by any of the flags).
    List {
        #[command(flatten)]
        app: AppArg,
        /// Only workflows whose name contains this (ignoring case).
        #[arg(long)]
        name: Option<String>,
        /// Only workflows carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only workflows of this time expression type (API, CRON, ...).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
        /// Cursor from the previous page.
        #[arg(long)]
        cursor: Option<u64>,
    },
    /// Copy a workflow (its nodes, jobs and edges) under a new name; prints the copy's id.
    Copy {
        #[command(flatten)]
        app: AppArg,
        /// The workflow to copy.
        id: WorkflowId,
        /// The copy's name.
        #[arg(long)]
        name: String,
    },
    /// Show one workflow (its definition as JSON).
    Get {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
    },
    /// Replace a workflow's definition (running instances keep theirs).
    Update {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
        #[command(flatten)]
        def: DefSource,
    },
    /// Delete a workflow (refused while one of its instances runs).
    Delete {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
    },
    /// The workflow's definitions, newest first.
    Versions {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
        #[command(flatten)]
        args: crate::history_cmd::VersionsArgs,
    },
    /// Make a stored definition the workflow's current one again (as a new version).
    Rollback {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
        /// The version to restore (see `ferrojob workflow versions`).
        #[arg(long)]
        version: u64,
    },
    /// Run a workflow now (or after --delay-ms); prints the workflow instance id.
    Run {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
        /// Seeds the workflow context: a JSON object, e.g. '{"tries":1}'.
        #[arg(long)]
        init_params: Option<String>,
        /// Delay, ms.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Send the run with this `Idempotency-Key` (see `job run`).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Run a workflow once per trigger time of its schedule in a past range [from, to) (at
    /// most 1000); prints the trigger times and the workflow instances created.
    Backfill {
        #[command(flatten)]
        app: AppArg,
        /// Workflow id.
        id: WorkflowId,
        /// Start of the range, inclusive (RFC 3339 or epoch ms).
        #[arg(long)]
        from: String,
        /// End of the range, exclusive, not in the future (RFC 3339 or epoch ms).
        #[arg(long)]
        to: String,
        /// Only list the trigger times.
        #[arg(long)]
        dry_run: bool,
        /// Send the backfill with this `Idempotency-Key` (see `job run`).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List workflow instances, newest first.
    Instances {
        #[command(flatten)]
        app: AppArg,
        /// Only this workflow's.
        #[arg(long)]
        workflow: Option<WorkflowId>,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
        /// Cursor from the previous page.
        #[arg(long)]
        cursor: Option<u64>,
    },
    /// Show one workflow instance: its status, context and node table.
    Instance {
        #[command(flatten)]
        app: AppArg,
        /// Workflow instance id.
        id: WorkflowInstanceId,
    },
    /// Stop a workflow instance (its running nodes are stopped).
    Stop {
        #[command(flatten)]
        app: AppArg,
        /// Workflow instance id.
        id: WorkflowInstanceId,
    },
    /// Retry a FAILED or STOPPED workflow instance (only its unsuccessful nodes run again).
    Retry {
        #[command(flatten)]
        app: AppArg,
        /// Workflow instance id.
        id: WorkflowInstanceId,
    },
    /// Delete a finished workflow instance with its nodes' job instances and their logs
    /// (refused while anything of it runs: stop it first).
    DeleteInstance {
        #[command(flatten)]
        app: AppArg,
        /// Workflow instance id.
        id: WorkflowInstanceId,
    },
    /// Mark a FAILED or STOPPED node successful; its successors then run.
    MarkSuccess {
        #[command(flatten)]
        app: AppArg,
        /// Workflow instance id.
        id: WorkflowInstanceId,
        /// Node id (as in the definition).
        node: NodeId,
    },
}

/// The API name of a serde enum value (`SUCCEED`, `FAIL_FAST`).
fn api_name<T: serde::Serialize + std::fmt::Debug>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{value:?}"))
}

/// One workflow on one line.
fn workflow_line(w: &WorkflowView) -> String {
    let b = &w.body;
    // As `job list` shows a job's: the calendars, and the triggers they skipped.
    let mut skipped = String::new();
    if !b.calendars.is_empty() {
        skipped.push_str(&format!(" calendars={}", b.calendars.join(",")));
    }
    if w.calendar_skipped_runs > 0 {
        skipped.push_str(&format!(" calendar_skipped={}", w.calendar_skipped_runs));
    }
    format!(
        "{:>6}  {:<24} {:<20} {:<16} nodes={:<3} edges={:<3} {:<15} next={}{skipped}",
        w.id.get(),
        truncate(&b.name, 24),
        api_name(&b.time_expression_type),
        truncate(&b.time_expression, 16),
        b.nodes.len(),
        b.edges.len(),
        api_name(&b.failure_policy),
        w.next_trigger_time.map_or("-".to_owned(), fmt_ms),
    )
}

/// One workflow instance on one line: id, workflow, status, node counts by status.
pub(crate) fn workflow_instance_line(i: &WorkflowInstanceView) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for n in &i.nodes {
        let name = api_name(&n.status);
        match counts.iter_mut().find(|(s, _)| *s == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(s, c)| format!("{s}={c}")).collect();
    format!(
        "{:>8}  workflow={:<6} {:<8} created={} finished={} nodes: {}",
        i.id.get(),
        i.workflow_id.get(),
        api_name(&i.status),
        fmt_ms(i.created_at),
        i.finished_at.map_or("-".to_owned(), fmt_ms),
        counts.join(" "),
    )
}

/// What a node is, from the definition (when it is still there): `JOB 5`, `DECISION go == 1`.
fn node_kind(def: Option<&WorkflowDef>, id: NodeId) -> String {
    let Some(node) = def.and_then(|d| d.nodes.iter().find(|n| n.id == id)) else {
        return "-".to_owned();
    };
    match node.kind {
        NodeKind::Job => format!("JOB {}", node.job_id.unwrap_or_default().get()),
        NodeKind::Decision => format!(
            "DECISION {}",
            truncate(node.expression.as_deref().unwrap_or(""), 28)
        ),
        NodeKind::NestedWorkflow => {
            format!("WORKFLOW {}", node.workflow_id.unwrap_or_default().get())
        }
    }
}

/// A workflow instance as a header, its context and a node table (id, what it runs, status,
/// job instance, result).
pub(crate) fn workflow_instance_table(
    i: &WorkflowInstanceView,
    def: Option<&WorkflowDef>,
) -> String {
    let mut out = format!(
        "{}  workflow={}  {}  trigger={} created={} started={} finished={}\n",
        i.id,
        i.workflow_id.get(),
        api_name(&i.status),
        fmt_ms(i.trigger_time),
        fmt_ms(i.created_at),
        i.started_at.map_or("-".to_owned(), fmt_ms),
        i.finished_at.map_or("-".to_owned(), fmt_ms),
    );
    if let Some(parent) = i.parent_instance_id {
        out.push_str(&format!("nested in {parent}\n"));
    }
    let context = serde_json::to_string(&i.context).unwrap_or_default();
    out.push_str(&format!("context: {}\n", truncate(&context, 200)));
    out.push_str(&format!(
        "{:>6}  {:<32} {:<9} {:>9}  RESULT\n",
        "NODE", "RUNS", "STATUS", "INSTANCE"
    ));
    for n in &i.nodes {
        out.push_str(&format!(
            "{:>6}  {:<32} {:<9} {:>9}  {}\n",
            n.id.get(),
            node_kind(def, n.id),
            api_name(&n.status),
            n.instance_id.map_or("-".to_owned(), |id| id.to_string()),
            truncate(n.result.as_deref().unwrap_or(""), 60),
        ));
    }
    out
}

/// Parses `--init-params`: a JSON object (the server refuses anything else with a 400 too).
fn init_params(text: Option<&str>) -> Result<Option<serde_json::Value>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .with_context(|| format!("--init-params is not JSON: {text:?}"))?;
    if !value.is_object() {
        bail!("--init-params must be a JSON object, e.g. '{{\"tries\":1}}'");
    }
    Ok(Some(value))
}

/// Prints a workflow instance (the node table, or JSON).
async fn show_instance(
    client: &Client,
    app: &str,
    view: &WorkflowInstanceView,
    json: bool,
) -> Result<()> {
    if json {
        return print_json(view);
    }
    // The definition labels the nodes; the instance is still shown without it (e.g. the
    // workflow was deleted since).
    let def = client
        .get_workflow(app, view.workflow_id)
        .await
        .ok()
        .map(|w| w.body);
    print!("{}", workflow_instance_table(view, def.as_ref()));
    Ok(())
}

/// Runs `ferrojob workflow ...`.
pub fn workflow(conn: &Conn, cmd: &WorkflowCmd) -> Result<()> {
    let client = conn.client()?;
    let json = conn.json();
    runtime()?.block_on(async {
        match cmd {
            WorkflowCmd::Create { app, def } => {
                let created = client.create_workflow(&app.app, &def.read()?).await?;
                if json {
                    print_json(&created)
                } else {
                    println!("{}", created.id.get());
                    Ok(())
                }
            }
            WorkflowCmd::List {
                app,
                name,
                tag,
                kind,
                limit,
                cursor,
            } => {
                let query = WorkflowQuery {
                    limit: *limit,
                    cursor: *cursor,
                    name: name.clone(),
                    tag: tag.clone(),
                    time_expression_type: match kind {
                        Some(k) => Some(k.parse().with_context(|| format!("--type {k}"))?),
                        None => None,
                    },
                };
                let page = client.list_workflows(&app.app, &query).await?;
                print_page(json, &page, &page.items, page.next_cursor, workflow_line)
            }
            WorkflowCmd::Get { app, id } => print_json(&client.get_workflow(&app.app, *id).await?),
            WorkflowCmd::Copy { app, id, name } => {
                let copy = CopyWorkflow { name: name.clone() };
                let created = client.copy_workflow(&app.app, *id, &copy).await?;
                if json {
                    print_json(&created)
                } else {
                    println!("{}", created.id.get());
                    Ok(())
                }
            }
            WorkflowCmd::Update { app, id, def } => {
                let view = client.update_workflow(&app.app, *id, &def.read()?).await?;
                if json {
                    print_json(&view)
                } else {
                    println!("{}", workflow_line(&view));
                    Ok(())
                }
            }
            WorkflowCmd::Delete { app, id } => {
                client.delete_workflow(&app.app, *id).await?;
                if !json {
                    println!("{id} deleted");
                }
                Ok(())
            }
            WorkflowCmd::Versions { app, id, args } => {
                crate::history_cmd::workflow_versions(&client, json, app, *id, args).await
            }
            WorkflowCmd::Rollback { app, id, version } => {
                crate::history_cmd::workflow_rollback(&client, json, app, *id, *version).await
            }
            WorkflowCmd::Run {
                app,
                id,
                init_params: params,
                delay_ms,
                idempotency_key,
            } => {
                let run = RunWorkflow {
                    init_params: init_params(params.as_deref())?,
                    delay_ms: *delay_ms,
                };
                let created = crate::remote::keyed(&client, idempotency_key.as_deref())
                    .run_workflow(&app.app, *id, &run)
                    .await?;
                if json {
                    print_json(&created)
                } else {
                    println!("{}", created.workflow_instance_id.get());
                    Ok(())
                }
            }
            WorkflowCmd::Backfill {
                app,
                id,
                from,
                to,
                dry_run,
                idempotency_key,
            } => {
                let req = ferrojob::api::Backfill {
                    from: crate::remote::instant("--from", from)?,
                    to: crate::remote::instant("--to", to)?,
                    dry_run: *dry_run,
                };
                let done = crate::remote::keyed(&client, idempotency_key.as_deref())
                    .backfill_workflow(&app.app, *id, &req)
                    .await?;
                if json {
                    return print_json(&done);
                }
                crate::remote::print_backfill(
                    done.dry_run,
                    done.runs.iter().map(|r| {
                        (
                            r.trigger_time,
                            r.workflow_instance_id.map(|i| i.get()),
                            r.excluded_by.as_deref(),
                        )
                    }),
                    "workflow_instance",
                    "max_instances running",
                );
                Ok(())
            }
            WorkflowCmd::Instances {
                app,
                workflow,
                limit,
                cursor,
            } => {
                let page = client
                    .list_workflow_instances(
                        &app.app,
                        &WorkflowInstanceQuery {
                            workflow_id: *workflow,
                            limit: *limit,
                            cursor: *cursor,
                        },
                    )
                    .await?;
                print_page(
                    json,
                    &page,
                    &page.items,
                    page.next_cursor,
                    workflow_instance_line,
                )
            }
            WorkflowCmd::Instance { app, id } => {
                let view = client.get_workflow_instance(&app.app, *id).await?;
                show_instance(&client, &app.app, &view, json).await
            }
            WorkflowCmd::Stop { app, id } => {
                let view = client.stop_workflow_instance(&app.app, *id).await?;
                show_instance(&client, &app.app, &view, json).await
            }
            WorkflowCmd::Retry { app, id } => {
                let view = client.retry_workflow_instance(&app.app, *id).await?;
                show_instance(&client, &app.app, &view, json).await
            }
            WorkflowCmd::DeleteInstance { app, id } => {
                client.delete_workflow_instance(&app.app, *id).await?;
                if !json {
                    println!("{id} deleted");
                }
                Ok(())
            }
            WorkflowCmd::MarkSuccess { app, id, node } => {
                let view = client
                    .mark_workflow_node_success(&app.app, *id, *node)
                    .await?;
                show_instance(&client, &app.app, &view, json).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrojob::api::{WorkflowInstanceStatus, WorkflowNodeView};
    use ferrojob::workflow::NodeStatus;

    #[test]
    fn init_params_must_be_an_object() {
        assert_eq!(init_params(None).unwrap(), None);
        assert_eq!(
            init_params(Some(r#"{"tries":1}"#)).unwrap(),
            Some(serde_json::json!({"tries": 1}))
        );
        assert!(init_params(Some("[1]")).is_err());
        assert!(init_params(Some("{")).is_err());
    }

    #[test]
    fn the_node_table_names_what_each_node_runs() {
        let def: WorkflowDef = serde_json::from_value(serde_json::json!({
            "name": "w", "time_expression_type": "API",
            "nodes": [{"id": 1, "job_id": 5}, {"id": 2, "type": "DECISION", "expression": "go == \"left\""}],
            "edges": [{"from": 1, "to": 2}]
        }))
        .unwrap();
        let view = WorkflowInstanceView {
            id: WorkflowInstanceId(9),
            workflow_id: WorkflowId(3),
            status: WorkflowInstanceStatus::Succeed,
            context: serde_json::from_str(r#"{"go":"left"}"#).unwrap(),
            nodes: vec![
                WorkflowNodeView {
                    id: NodeId(1),
                    status: NodeStatus::Succeed,
                    instance_id: Some(44),
                    result: Some(r#"{"go":"left"}"#.into()),
                },
                WorkflowNodeView {
                    id: NodeId(2),
                    status: NodeStatus::Succeed,
                    instance_id: None,
                    result: Some("true".into()),
                },
            ],
            parent_instance_id: None,
            trigger_time: 0,
            created_at: 0,
            started_at: Some(0),
            finished_at: Some(1),
        };
        let table = workflow_instance_table(&view, Some(&def));
        assert!(table.contains("SUCCEED"), "{table}");
        assert!(table.contains("context: {\"go\":\"left\"}"), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[3].contains("JOB 5") && lines[3].contains("44"),
            "{table}"
        );
        assert!(lines[4].contains("DECISION go == \"left\""), "{table}");
        assert!(workflow_instance_line(&view).contains("SUCCEED=2"));
        // Without the definition the table still shows every node.
        assert!(workflow_instance_table(&view, None).lines().count() == 5);
    }
}
