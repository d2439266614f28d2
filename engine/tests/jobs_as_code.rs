//! Jobs as code (`ferrojob::client::{jobs_file, plan, powerjob}`): table tests of the plan
//! (pure, on a hand-made server state); plan → apply → plan → export → apply round trips
//! against a real server on 127.0.0.1 (TOML and JSON); the PowerJob import of a sample export
//! written from PowerJob's `SaveJobInfoRequest` fields, checked field by field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use ferrojob::api::{CreateApp, JobBody, JobView, LifecycleJson, WorkflowDef, WorkflowView};
use ferrojob::client::plan::{apply, diff_values, export, fetch_state, plan};
use ferrojob::client::powerjob::{import, ImportOptions};
use ferrojob::client::{AppState, Change, Client, Format, JobsFile};
use ferrojob::ids::{AppId, JobId, WorkflowId};
use ferrojob::launch::{launch, LaunchConfig, RunningServer};
use ferrojob::model::{DispatchStrategy, ExecuteType};
use ferrojob::time_expression::{TimeExpression, TimeExpressionType};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Plan, pure.

fn view(id: u64, toml_body: &str) -> JobView {
    let body: JobBody = toml::from_str(toml_body).unwrap();
    JobView {
        id: JobId(id),
        app_id: AppId(1),
        body,
        next_trigger_time: None,
        runs: 0,
        skipped_runs: 0,
        calendar_skipped_runs: 0,
        created_at: 0,
        updated_at: 0,
    }
}

fn wf_view(id: u64, def: Value) -> WorkflowView {
    let body: WorkflowDef = serde_json::from_value(def).unwrap();
    WorkflowView {
        id: WorkflowId(id),
        app_id: AppId(1),
        body,
        next_trigger_time: None,
        calendar_skipped_runs: 0,
        created_at: 0,
        updated_at: 0,
    }
}

/// The server of the table tests: jobs 1 "a" (API noop), 2 "b" (CRON shell), and workflow 10
/// "w" running a then b.
fn state() -> AppState {
    AppState {
        jobs: vec![
            view(
                1,
                "name = 'a'\ntime_expression_type = 'API'\nprocessor = 'noop'",
            ),
            view(
                2,
                "name = 'b'\ntime_expression_type = 'CRON'\ntime_expression = '0 0 2 * * ?'\n\
                 processor = 'shell'\nparams = 'echo b'",
            ),
        ],
        workflows: vec![wf_view(
            10,
            json!({"name": "w", "time_expression_type": "API",
                   "nodes": [{"id": 1, "job_id": 1}, {"id": 2, "job_id": 2}],
                   "edges": [{"from": 1, "to": 2}]}),
        )],
        calendars: Vec::new(),
    }
}

const SAME: &str = "
[[jobs]]
name = 'a'
time_expression_type = 'API'
processor = 'noop'

[[jobs]]
name = 'b'
time_expression_type = 'CRON'
time_expression = '0 0 2 * * ?'
processor = 'shell'
params = 'echo b'

[[workflows]]
name = 'w'
time_expression_type = 'API'
nodes = [{ id = 1, job = 'a' }, { id = 2, job = 'b' }]
edges = [{ from = 1, to = 2 }]
";

/// Plans the TOML `file` against [`state`] and compares the plan's human form.
fn check(file: &str, prune: bool, expected: &str) {
    let file = JobsFile::parse(file, Format::Toml).unwrap();
    let got = plan(&file, &state(), prune).unwrap().to_string();
    assert_eq!(got.trim(), expected.trim(), "\n{got}");
}

fn check_err(file: &str, prune: bool, needle: &str) {
    let file = JobsFile::parse(file, Format::Toml).unwrap();
    let err = plan(&file, &state(), prune).unwrap_err().to_string();
    assert!(err.contains(needle), "{err:?} does not contain {needle:?}");
}

#[test]
fn plan_table() {
    // The same definitions: nothing to do, with or without prune.
    check(
        SAME,
        false,
        "0 to create, 0 to change, 0 to delete, 3 unchanged",
    );
    check(
        SAME,
        true,
        "0 to create, 0 to change, 0 to delete, 3 unchanged",
    );
    // Only a: b and w are left alone without prune, deleted (w first) with it.
    let only_a = "[[jobs]]\nname = 'a'\ntime_expression_type = 'API'\nprocessor = 'noop'";
    check(
        only_a,
        false,
        "0 to create, 0 to change, 0 to delete, 1 unchanged",
    );
    check(
        only_a,
        true,
        "- workflow \"w\" (workflow 10)\n- job \"b\" (job 2)\n\
         0 to create, 0 to change, 2 to delete, 1 unchanged",
    );
    // An empty file with prune deletes everything, workflows before jobs.
    check(
        "",
        true,
        "- workflow \"w\" (workflow 10)\n- job \"a\" (job 1)\n- job \"b\" (job 2)\n\
         0 to create, 0 to change, 3 to delete, 0 unchanged",
    );
    // Field by field: a changed expression, a new field, a field back to its default.
    check(
        &SAME
            .replace("'0 0 2 * * ?'", "'0 0 3 * * ?'\ntime_zone = 'Europe/Paris'")
            .replace("params = 'echo b'", ""),
        false,
        "~ job \"b\" (job 2)\n    params: \"echo b\" -> \"\"\n    \
         time_expression: \"0 0 2 * * ?\" -> \"0 0 3 * * ?\"\n    \
         time_zone: null -> \"Europe/Paris\"\n\
         0 to create, 1 to change, 0 to delete, 2 unchanged",
    );
    // A new job, and the workflow's node pointed at it: the job is created first.
    check(
        &format!(
            "{}\n[[jobs]]\nname = 'c'\ntime_expression_type = 'API'\nprocessor = 'noop'\n",
            SAME.replace("{ id = 2, job = 'b' }", "{ id = 2, job = 'c' }")
        ),
        false,
        "+ job \"c\"\n~ workflow \"w\" (workflow 10)\n    nodes[1].job: \"b\" -> \"c\"\n\
         1 to create, 1 to change, 0 to delete, 2 unchanged",
    );
    // The same instant written with an offset is no change (the server keeps UTC).
    check(
        "[[jobs]]\nname = 'a'\ntime_expression_type = 'API'\nprocessor = 'noop'\n\
         lifecycle = { start = '2030-01-01T08:00:00+08:00' }",
        false,
        "~ job \"a\" (job 1)\n    lifecycle.start: (absent) -> \"2030-01-01T00:00:00Z\"\n\
         0 to create, 1 to change, 0 to delete, 0 unchanged",
    );
    // A disabled job.
    check(
        "[[jobs]]\nname = 'a'\ntime_expression_type = 'API'\nprocessor = 'noop'\nenabled = false",
        false,
        "~ job \"a\" (job 1)\n    enabled: true -> false\n\
         0 to create, 1 to change, 0 to delete, 0 unchanged",
    );
}

#[test]
fn plan_refusals() {
    let dup = "[[jobs]]\nname = 'a'\ntime_expression_type = 'API'\nprocessor = 'noop'\n";
    check_err(
        &format!("{dup}{dup}"),
        false,
        "two jobs of the file are named \"a\"",
    );
    check_err(
        "[[workflows]]\nname = 'x'\ntime_expression_type = 'API'\nnodes = [{ id = 1, job = 'zz' }]",
        false,
        "names job \"zz\", which neither the file nor the server has",
    );
    // Without prune a node may name a job only the server has; with prune it would be deleted.
    let uses_a =
        "[[workflows]]\nname = 'x'\ntime_expression_type = 'API'\nnodes = [{ id = 1, job = 'a' }]";
    let file = JobsFile::parse(uses_a, Format::Toml).unwrap();
    assert!(plan(&file, &state(), false).is_ok());
    check_err(uses_a, true, "--prune would delete");
    // A time expression that does not parse stops the plan.
    check_err(
        &SAME.replace("'0 0 2 * * ?'", "'0 0 25 * * ?'"),
        false,
        "job \"b\": ",
    );
    check_err(
        &SAME.replace(
            "name = 'w'\ntime_expression_type = 'API'",
            "name = 'w'\ntime_expression_type = 'CRON'\ntime_expression = 'often'",
        ),
        false,
        "workflow \"w\": ",
    );
    // Nested workflows in a cycle cannot be created in any order.
    check_err(
        "[[workflows]]\nname = 'p'\ntime_expression_type = 'API'\n\
         nodes = [{ id = 1, type = 'NESTED_WORKFLOW', workflow = 'q' }]\n\
         [[workflows]]\nname = 'q'\ntime_expression_type = 'API'\n\
         nodes = [{ id = 1, type = 'NESTED_WORKFLOW', workflow = 'p' }]",
        false,
        "cycle of nested workflows",
    );
    // Two server jobs with the name the file uses: either could be meant.
    let mut s = state();
    s.jobs.push(view(
        3,
        "name = 'a'\ntime_expression_type = 'API'\nprocessor = 'noop'",
    ));
    let err = plan(&JobsFile::parse(dup, Format::Toml).unwrap(), &s, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 jobs named \"a\" (job 1, job 3)"),
        "{err}"
    );
    assert!(export("app", &s).is_err());
}

#[test]
fn nested_workflows_are_created_after_what_they_nest() {
    let file = JobsFile::parse(
        "[[workflows]]\nname = 'outer'\ntime_expression_type = 'API'\n\
         nodes = [{ id = 1, type = 'NESTED_WORKFLOW', workflow = 'inner' }]\n\
         [[workflows]]\nname = 'inner'\ntime_expression_type = 'API'\n\
         nodes = [{ id = 1, job = 'a' }]",
        Format::Toml,
    )
    .unwrap();
    let p = plan(&file, &state(), false).unwrap();
    let names: Vec<&str> = p
        .changes
        .iter()
        .map(|c| match c {
            Change::CreateWorkflow { name, .. } => name.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(names, ["inner", "outer"]);
}

#[test]
fn diff_table() {
    let check = |before: Value, after: Value, expected: &[(&str, Option<&str>, Option<&str>)]| {
        let got: Vec<(String, Option<String>, Option<String>)> = diff_values(&before, &after)
            .into_iter()
            .map(|d| (d.field, d.before, d.after))
            .collect();
        let expected: Vec<(String, Option<String>, Option<String>)> = expected
            .iter()
            .map(|(f, b, a)| ((*f).to_owned(), b.map(str::to_owned), a.map(str::to_owned)))
            .collect();
        assert_eq!(got, expected, "{before} vs {after}");
    };
    check(json!({"a": 1}), json!({"a": 1}), &[]);
    check(
        json!({"a": 1}),
        json!({"a": 2}),
        &[("a", Some("1"), Some("2"))],
    );
    check(json!({"a": null}), json!({}), &[]);
    check(json!({}), json!({"a": 1}), &[("a", None, Some("1"))]);
    check(
        json!({"l": {"start": "x"}}),
        json!({"l": {}}),
        &[("l.start", Some("\"x\""), None)],
    );
    check(
        json!({"n": [{"p": 1}, {"p": 2}]}),
        json!({"n": [{"p": 1}, {"p": 3}]}),
        &[("n[1].p", Some("2"), Some("3"))],
    );
    check(
        json!({"n": [1]}),
        json!({"n": [1, 2]}),
        &[("n", Some("[1]"), Some("[1,2]"))],
    );
}

#[test]
fn render_then_parse_gives_the_same_file() {
    let mut file = JobsFile::parse(SAME, Format::Toml).unwrap();
    file.app = Some("billing".into());
    let mut b = file.jobs[1].clone();
    b.name = "everything".into();
    b.time_zone = Some("Asia/Tokyo".into());
    b.execute_type = ExecuteType::MapReduce;
    b.max_instances = 3;
    b.concurrency = 1;
    b.timeout_ms = 9_000;
    b.instance_retries = 2;
    b.task_retries = 4;
    b.dispatch_strategy = DispatchStrategy::Specify;
    b.designated_workers = vec!["gpu".into(), "10.0.0.1:7701".into()];
    b.min_cpu_cores = 0.25;
    b.min_memory_gb = 1.5;
    b.min_disk_gb = 100.0;
    b.max_worker_count = 7;
    b.lifecycle = LifecycleJson {
        start: Some("2030-01-01T00:00:00Z".into()),
        end: None,
    };
    b.enabled = false;
    file.jobs.push(b);
    for format in [Format::Toml, Format::Json] {
        let text = file.render(format).unwrap();
        assert_eq!(JobsFile::parse(&text, format).unwrap(), file, "{text}");
    }
    // Defaults are left out: the API job is three lines.
    let text = file.render(Format::Toml).unwrap();
    assert!(
        text.contains(
            "[[jobs]]\nname = \"a\"\ntime_expression_type = \"API\"\nprocessor = \"noop\"\n\n"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Against a real server.

const APP: &str = "billing";

async fn server() -> (RunningServer, Client) {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = launch(LaunchConfig::new(None, any, any)).await.unwrap();
    let client = Client::new(
        &format!("http://{}", server.http_addr()),
        server.admin_token(),
    )
    .unwrap();
    client
        .create_app(&CreateApp {
            name: APP.into(),
            secret: "billing-secret-0123".into(),
        })
        .await
        .unwrap();
    (server, client)
}

async fn plan_of(client: &Client, file: &JobsFile, prune: bool) -> ferrojob::client::Plan {
    let state = fetch_state(client, APP).await.unwrap();
    plan(file, &state, prune).unwrap()
}

async fn apply_file(client: &Client, file: &JobsFile, prune: bool) -> usize {
    let state = fetch_state(client, APP).await.unwrap();
    let p = plan(file, &state, prune).unwrap();
    apply(client, APP, &p, &state).await.unwrap()
}

const FULL: &str = r#"
app = "billing"

[[jobs]]
name = "extract"
description = "Pulls the day's orders"
tags = ["etl", "nightly"]
time_expression_type = "CRON"
time_expression = "0 0 2 * * ?"
time_zone = "Europe/Paris"
processor = "shell"
params = "echo extract"
instance_retries = 2
lifecycle = { end = "2040-01-01T00:00:00+01:00" }

[[jobs]]
name = "load"
time_expression_type = "WORKFLOW"
processor = "noop"
execute_type = "BROADCAST"
designated_workers = ["etl"]

[[jobs]]
name = "ping"
time_expression_type = "DAILY_TIME_INTERVAL"
time_expression = '{"interval":15,"unit":"MINUTES","startTimeOfDay":"09:00","endTimeOfDay":"18:00","daysOfWeek":[2,3,4,5,6]}'
processor = "http"
params = "http://127.0.0.1:9/ping"
enabled = false

[[workflows]]
name = "nightly"
description = "The nightly chain"
tags = ["etl"]
time_expression_type = "CRON"
time_expression = "0 30 2 * * ?"
failure_policy = "FINISH_BRANCHES"
nodes = [
  { id = 1, job = "extract" },
  { id = 2, type = "DECISION", expression = "go == true" },
  { id = 3, job = "load", params = "fast", skip_when_failed = true },
  { id = 4, type = "NESTED_WORKFLOW", workflow = "cleanup" },
]
edges = [
  { from = 1, to = 2 },
  { from = 2, to = 3, property = "true" },
  { from = 2, to = 4, property = "false" },
]

[[workflows]]
name = "cleanup"
time_expression_type = "API"
nodes = [{ id = 1, job = "load", enabled = false }]
"#;

const WITH_CALENDAR: &str = r#"
[[jobs]]
name = "extract"
time_expression_type = "CRON"
time_expression = "0 0 2 * * ?"
processor = "noop"
calendars = ["holidays"]

[[workflows]]
name = "nightly"
time_expression_type = "CRON"
time_expression = "0 30 2 * * ?"
calendars = ["holidays"]
nodes = [{ id = 1, job = "extract" }]

[[calendars]]
name = "holidays"
time_zone = "Europe/Paris"
excluded = ["2026-12-25", "2026-12-31..2027-01-01"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendars_plan_apply_and_export_with_the_jobs_that_name_them() {
    let (server, client) = server().await;
    let file = JobsFile::parse(WITH_CALENDAR, Format::Toml).unwrap();
    // The calendar is created before the job and the workflow that name it.
    let first = plan_of(&client, &file, false).await;
    assert!(
        matches!(first.changes[0], Change::CreateCalendar { .. }),
        "{first}"
    );
    assert_eq!(first.counts(), (3, 0, 0), "{first}");
    assert_eq!(apply_file(&client, &file, false).await, 3);
    let again = plan_of(&client, &file, true).await;
    assert!(again.is_empty(), "{again}");
    // Export → parse → plan: no change.
    let state = fetch_state(&client, APP).await.unwrap();
    assert_eq!(state.calendars[0].excluded.len(), 2);
    for format in [Format::Toml, Format::Json] {
        let text = export(APP, &state).unwrap().render(format).unwrap();
        let exported = JobsFile::parse(&text, format).unwrap();
        let p = plan_of(&client, &exported, true).await;
        assert!(p.is_empty(), "{format:?}: {p}\n{text}");
    }
    // An entry changed: one update, field by field.
    let mut changed = file.clone();
    changed.calendars[0].excluded.push("2027-05-01".into());
    let p = plan_of(&client, &changed, false).await;
    assert_eq!(p.counts(), (0, 1, 0), "{p}");
    assert!(p.to_string().contains("~ calendar \"holidays\""), "{p}");
    // Dropped from the file and from the job and workflow: with prune, the calendar goes
    // last, after the definitions that named it changed (no conflict).
    let mut dropped = file.clone();
    dropped.calendars.clear();
    dropped.jobs[0].calendars.clear();
    dropped.workflows[0].calendars.clear();
    let p = plan_of(&client, &dropped, true).await;
    assert!(
        matches!(p.changes.last(), Some(Change::DeleteCalendar { .. })),
        "{p}"
    );
    assert_eq!(apply_file(&client, &dropped, true).await, 3);
    assert!(client.list_calendars(APP).await.unwrap().items.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_export_round_trip_on_a_real_server() {
    let (server, client) = server().await;
    let file = JobsFile::parse(FULL, Format::Toml).unwrap();

    // First apply creates everything, the nested workflow before its parent.
    let first = plan_of(&client, &file, false).await;
    assert_eq!(first.counts(), (5, 0, 0), "{first}");
    assert_eq!(apply_file(&client, &file, false).await, 5);
    // Idempotent: a second plan is empty and a second apply changes nothing.
    let again = plan_of(&client, &file, false).await;
    assert!(again.is_empty(), "{again}");
    assert_eq!(again.unchanged, 5);
    assert_eq!(apply_file(&client, &file, true).await, 0);

    // The server holds what the file says, ids resolved from names.
    let state = fetch_state(&client, APP).await.unwrap();
    let id_of = |name: &str| state.jobs.iter().find(|j| j.body.name == name).unwrap().id;
    let nightly = state
        .workflows
        .iter()
        .find(|w| w.body.name == "nightly")
        .unwrap();
    let cleanup = state
        .workflows
        .iter()
        .find(|w| w.body.name == "cleanup")
        .unwrap();
    assert_eq!(nightly.body.nodes[0].job_id, Some(id_of("extract")));
    assert_eq!(nightly.body.nodes[2].job_id, Some(id_of("load")));
    assert_eq!(nightly.body.nodes[3].workflow_id, Some(cleanup.id));
    let ping = state.jobs.iter().find(|j| j.body.name == "ping").unwrap();
    assert!(!ping.body.enabled);
    let extract = state
        .jobs
        .iter()
        .find(|j| j.body.name == "extract")
        .unwrap();
    assert_eq!(extract.body.description, "Pulls the day's orders");
    assert_eq!(extract.body.tags, ["etl", "nightly"]);
    assert_eq!(nightly.body.description, "The nightly chain");
    assert_eq!(nightly.body.tags, ["etl"]);

    // Export → apply: no change, in both formats; the export parses to the same definitions.
    for format in [Format::Toml, Format::Json] {
        let text = export(APP, &state).unwrap().render(format).unwrap();
        let exported = JobsFile::parse(&text, format).unwrap();
        let p = plan_of(&client, &exported, true).await;
        assert!(p.is_empty(), "{format:?}: {p}\n{text}");
        assert_eq!(apply_file(&client, &exported, true).await, 0);
    }

    // A change field by field, then prune: the edited job is updated in place (same id),
    // the workflow that names a removed job is deleted before it.
    let edited = FULL
        .replace("params = \"echo extract\"", "params = \"echo v2\"")
        .replace(
            "tags = [\"etl\", \"nightly\"]",
            "tags = [\"etl\", \"daily\"]",
        )
        .replace(
            &FULL[FULL.find("[[workflows]]").unwrap()..],
            "[[workflows]]\nname = \"cleanup\"\ntime_expression_type = \"API\"\n\
             nodes = [{ id = 1, job = \"extract\" }]\n",
        )
        .replace(
            &FULL[FULL.find("[[jobs]]\nname = \"load\"").unwrap()
                ..FULL.find("[[jobs]]\nname = \"ping\"").unwrap()],
            "",
        );
    let edited = JobsFile::parse(&edited, Format::Toml).unwrap();
    let p = plan_of(&client, &edited, true).await;
    let text = p.to_string();
    assert!(
        text.contains(&format!(
            "~ job \"extract\" ({})\n    params: \"echo extract\" -> \"echo v2\"",
            id_of("extract")
        )),
        "{text}"
    );
    assert!(text.contains("nodes[0].enabled: false -> true"), "{text}");
    assert!(text.contains("tags[1]: \"nightly\" -> \"daily\""), "{text}");
    let delete_nightly = text.find("- workflow \"nightly\"").unwrap();
    let delete_load = text.find("- job \"load\"").unwrap();
    assert!(delete_nightly < delete_load, "{text}");
    assert_eq!(p.counts(), (0, 2, 2), "{text}");
    assert_eq!(apply_file(&client, &edited, true).await, 4);
    assert!(plan_of(&client, &edited, true).await.is_empty());
    let after = fetch_state(&client, APP).await.unwrap();
    let extract = after
        .jobs
        .iter()
        .find(|j| j.body.name == "extract")
        .unwrap();
    assert_eq!(extract.id, id_of("extract"));
    assert_eq!(extract.body.params, "echo v2");
    assert_eq!(extract.body.tags, ["etl", "daily"]);
    assert_eq!(after.jobs.len(), 2);
    assert_eq!(after.workflows.len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_stops_apply_and_says_how_far_it_got() {
    let (server, client) = server().await;
    // The server refuses what the plan does not check: a concurrency of 0.
    let file = JobsFile::parse(
        "[[jobs]]\nname = 'ok'\ntime_expression_type = 'API'\nprocessor = 'noop'\n\
         [[jobs]]\nname = 'bad'\ntime_expression_type = 'API'\nconcurrency = 0\n\
         processor = 'noop'\n",
        Format::Toml,
    )
    .unwrap();
    let state = fetch_state(&client, APP).await.unwrap();
    let p = plan(&file, &state, false).unwrap();
    let err = apply(&client, APP, &p, &state)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("creating job \"bad\" failed after 1 applied"),
        "{err}"
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// PowerJob import.

fn sample() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/powerjob_export.json"
    ))
    .unwrap()
}

#[test]
fn powerjob_export_is_imported_field_by_field() {
    let imported = import(&sample(), &ImportOptions::default()).unwrap();
    let names: Vec<&str> = imported.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["nightly-report", "office-hours-ping", "on-demand"]);

    let r = &imported.jobs[0];
    assert_eq!(r.time_expression_type, TimeExpressionType::Cron);
    assert_eq!(r.time_expression, "0 0 2 * * ?");
    assert_eq!(r.time_zone, None);
    assert_eq!(r.execute_type, ExecuteType::Standalone);
    assert_eq!(r.processor, "shell");
    assert_eq!(r.params, "echo report");
    assert_eq!(r.max_instances, 1);
    assert_eq!(r.concurrency, 8);
    assert_eq!(r.timeout_ms, 600_000);
    assert_eq!(r.instance_retries, 2);
    assert_eq!(r.task_retries, 1);
    assert_eq!(r.min_cpu_cores, 0.5);
    assert_eq!(r.min_memory_gb, 1.5);
    assert_eq!(r.min_disk_gb, 10.0);
    assert!(!r.enabled);
    assert_eq!(r.designated_workers, ["10.0.0.1:27777", "10.0.0.2:27777"]);
    assert_eq!(r.max_worker_count, 2);
    assert_eq!(r.dispatch_strategy, DispatchStrategy::Random);
    assert_eq!(
        r.lifecycle,
        LifecycleJson {
            start: Some("2030-01-01T00:00:00Z".into()),
            end: Some("2031-01-01T00:00:00Z".into()),
        }
    );
    let notes_of = |job: &str| -> BTreeMap<String, String> {
        imported
            .notes
            .iter()
            .filter(|n| n.job == job)
            .map(|n| (n.field.clone(), n.note.clone()))
            .collect()
    };
    let notes = notes_of("nightly-report");
    let fields: Vec<&str> = notes.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        ["alarmConfig", "extra", "jobName", "notifyUserIds",]
    );
    // logConfig {type 2, level 3}: LOCAL from WARN.
    assert_eq!(r.log_type, ferrojob::model::LogType::Local);
    assert_eq!(r.log_level, ferrojob::model::LogLevel::Warn);
    assert_eq!(r.description, "the daily sales report");
    assert_eq!(r.tags, ["reports"]);
    assert!(notes["jobName"].contains("_EXPORT_1717171717171"));

    // DAILY_TIME_INTERVAL: Monday to Friday in PowerJob's numbers (1-5) are 2-6 in Quartz's.
    let p = &imported.jobs[1];
    assert_eq!(
        p.time_expression_type,
        TimeExpressionType::DailyTimeInterval
    );
    let expr: Value = serde_json::from_str(&p.time_expression).unwrap();
    assert_eq!(expr["daysOfWeek"], json!([2, 3, 4, 5, 6]));
    assert_eq!(expr["interval"], 15);
    assert_eq!(expr["intervalUnit"], "MINUTES");
    // 2030-01-05 is a Saturday: the next fire is Monday 2030-01-07 09:00 UTC.
    let parsed = TimeExpression::parse(p.time_expression_type, &p.time_expression, None).unwrap();
    let sat = 1_893_801_600_000; // 2030-01-05T00:00:00Z
    assert_eq!(parsed.next_after(sat, sat), Some(1_894_006_800_000));
    assert_eq!(p.execute_type, ExecuteType::Broadcast);
    assert_eq!(p.processor, "http");
    let http: Value = serde_json::from_str(&p.params).unwrap();
    assert_eq!(
        http,
        json!({"url": "http://127.0.0.1:8080/ping", "method": "POST",
               "body": "{\"source\":\"powerjob\"}",
               "headers": {"Content-Type": "application/json"}, "timeout_ms": 10_000})
    );
    assert_eq!(p.dispatch_strategy, DispatchStrategy::HealthFirst);
    assert!(p.designated_workers.is_empty());
    assert!(p.enabled);
    assert_eq!(p.lifecycle, LifecycleJson::default());

    // Numeric codes: API, MAP, SPECIFY; an unknown field is noted.
    let o = &imported.jobs[2];
    assert_eq!(o.time_expression_type, TimeExpressionType::Api);
    assert_eq!(o.time_expression, "");
    assert_eq!(o.execute_type, ExecuteType::Map);
    assert_eq!(o.dispatch_strategy, DispatchStrategy::Specify);
    assert_eq!(o.designated_workers, ["batch"]);
    assert!(notes_of("on-demand").contains_key("advancedRuntimeConfig"));

    // Processors without an equivalent are listed, not guessed.
    let skipped: Vec<(&str, &str)> = imported
        .skipped
        .iter()
        .map(|s| (s.job.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, "weekend-sweep");
    assert!(skipped[0].1.contains("FileCleanupProcessor"), "{skipped:?}");
    assert_eq!(skipped[1].0, "reconcile");
    assert!(
        skipped[1].1.contains("com.acme.jobs.ReconcileProcessor"),
        "{skipped:?}"
    );
}

#[test]
fn powerjob_processors_can_be_mapped_and_zones_set() {
    let options = ImportOptions {
        time_zone: Some("Asia/Shanghai".into()),
        processors: BTreeMap::from([(
            "com.acme.jobs.ReconcileProcessor".to_owned(),
            "reconcile".to_owned(),
        )]),
    };
    let imported = import(&sample(), &options).unwrap();
    let r = imported
        .jobs
        .iter()
        .find(|j| j.name == "reconcile")
        .unwrap();
    assert_eq!(r.processor, "reconcile");
    assert_eq!(r.params, "{\"batch\":500}");
    assert_eq!(r.time_expression_type, TimeExpressionType::FixedRate);
    assert_eq!(r.time_expression, "60000");
    assert_eq!(r.execute_type, ExecuteType::MapReduce);
    assert_eq!(r.time_zone, None, "a FIXED_RATE job has no zone");
    let cron = imported
        .jobs
        .iter()
        .find(|j| j.name == "nightly-report")
        .unwrap();
    assert_eq!(cron.time_zone.as_deref(), Some("Asia/Shanghai"));
    assert_eq!(imported.skipped.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_powerjob_jobs_apply_to_a_real_server() {
    let (server, client) = server().await;
    let imported = import(&sample(), &ImportOptions::default()).unwrap();
    let file = imported.to_file(Some(APP.into()));
    // Through the file format, as the CLI does it.
    let file = JobsFile::parse(&file.render(Format::Toml).unwrap(), Format::Toml).unwrap();
    assert_eq!(apply_file(&client, &file, false).await, 3);
    assert!(plan_of(&client, &file, false).await.is_empty());
    server.shutdown().await;
}

#[test]
fn powerjob_descriptions_and_tags_are_carried_or_the_job_is_skipped() {
    let job = |description: &str, tag: Value| {
        json!({
            "jobName": "j", "timeExpressionType": "API", "executeType": "STANDALONE",
            "processorType": "BUILT_IN", "processorInfo": "tech.powerjob.official.processors.impl.script.ShellProcessor",
            "jobDescription": description, "tag": tag,
        })
    };
    let cases: [(Value, Option<&[&str]>); 5] = [
        (job("d", json!(null)), Some(&[])),
        (job("d", json!("")), Some(&[])),
        (
            job("d", json!("etl, team:data ,etl,")),
            Some(&["etl", "team:data"]),
        ),
        (job("d", json!("x".repeat(65))), None),
        (job(&"d".repeat(4097), json!("etl")), None),
    ];
    for (input, want) in cases {
        let imported = import(&input.to_string(), &ImportOptions::default()).unwrap();
        match want {
            Some(tags) => {
                let j = &imported.jobs[0];
                assert_eq!(j.tags, tags, "{input}");
                assert_eq!(j.description, "d");
                assert!(imported.notes.iter().all(|n| n.field != "tag"));
            }
            None => {
                assert!(imported.jobs.is_empty(), "{input}");
                let reason = &imported.skipped[0].reason;
                assert!(
                    reason.starts_with("tag:") || reason.starts_with("jobDescription:"),
                    "{reason}"
                );
            }
        }
    }
}
