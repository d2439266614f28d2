//! `ferrojob demo`: a real server (LogStore under `./ferrojob-data`, OpenAPI, transport) and
//! two real workers connected over loopback TCP, sample jobs of every time expression type and
//! every execution type (STANDALONE, BROADCAST, MAP_REDUCE with the built-in `sum_mr`), a
//! small workflow with a decision node (run once at start and on a CRON), and every job and
//! workflow instance's state changes shown live. Ctrl-C (or `--duration-secs`) stops the
//! workers, then the server, and prints a summary.
//!
//! Run it again and it picks up where it stopped: same app, same jobs and workflow (found by
//! name), their run counters and instances, from the data dir.
//!
//! A failure of the workflow routes (e.g. a server without workflows) is reported once and the
//! rest of the demo goes on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrojob::alarm::{AlarmRules, FailureRule};
use ferrojob::api::{
    ApiError, CreateApp, ErrorCode, InstanceQuery, JobBody, JobQuery, PageQuery, RunJob,
    RunWorkflow, WorkflowDef, WorkflowInstanceQuery, WorkflowInstanceView, WorkflowQuery,
};
use ferrojob::client::{Client, ClientError};
use ferrojob::ids::{InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use ferrojob::launch::{launch, LaunchConfig, LaunchError, RunningServer};
use ferrojob::model::{DispatchStrategy, ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{DangerousBuiltin, Worker, WorkerConfig};
use ferrojob_bin::fmt_ms;

use crate::remote::{status_name, tasks_text};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Run the embedded scheduler instead (one process, no server, no network).
    #[arg(long)]
    embedded: bool,
    /// Data directory of the demo's server.
    #[arg(long, default_value = "ferrojob-data")]
    data_dir: PathBuf,
    /// OpenAPI address (a free port is used if it is taken).
    #[arg(long, default_value = "127.0.0.1:7700")]
    http: SocketAddr,
    /// Transport address (a free port is used if it is taken).
    #[arg(long, default_value = "127.0.0.1:10086")]
    listen: SocketAddr,
}

const APP: &str = "demo";
const SECRET: &str = "demo-secret-change-me";

struct Sample {
    name: &'static str,
    strategy: DispatchStrategy,
    designated: &'static [&'static str],
    kind: TimeExpressionType,
    expr: &'static str,
    tz: Option<&'static str>,
    execute: ExecuteType,
    processor: &'static str,
    params: &'static str,
}

/// The MAP_REDUCE sample's subtask count (`sum_mr` maps `0..SUM_MR_TASKS`).
const SUM_MR_TASKS: u64 = 10_000;

/// The MAP_REDUCE sample's name; its result must be `SUM_MR_TASKS·(SUM_MR_TASKS−1)/2`.
const SUM_MR_NAME: &str = "map-reduce sum_mr 10k / 20s";

/// The workflow's name (found by name on a second run).
const WORKFLOW_NAME: &str = "decide left or right";

/// The jobs of the workflow's nodes (WORKFLOW jobs: they never run on their own).
const WF_DECIDE: &str = "wf decide";
const WF_LEFT: &str = "wf left branch";
const WF_RIGHT: &str = "wf right branch";

/// The sample whose alarm fires: it fails in every third second (no retry), raising a
/// failures alarm, and the next success a recovery notice; both show in `ferrojob alarm list`.
const ALARM_SAMPLE: &str = "fixed-rate 1s, fails every 3rd second";

const SAMPLES: [Sample; 12] = [
    Sample {
        name: "cron */2s Asia/Shanghai",
        strategy: DispatchStrategy::Specify,
        designated: &["green"],
        kind: TimeExpressionType::Cron,
        expr: "*/2 * * * * ?",
        tz: Some("Asia/Shanghai"),
        execute: ExecuteType::Standalone,
        processor: "shell",
        params: "echo hello from cron; date -u +%T.%N",
    },
    Sample {
        name: "fixed-rate 1s",
        strategy: DispatchStrategy::RoundRobin,
        designated: &[],
        kind: TimeExpressionType::FixedRate,
        expr: "1000",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "sleep",
        params: "150",
    },
    Sample {
        name: "fixed-delay 1.5s",
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::FixedDelay,
        expr: "1500",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "sleep",
        params: "400",
    },
    Sample {
        name: "daily-interval 3s",
        strategy: DispatchStrategy::Random,
        designated: &[],
        kind: TimeExpressionType::DailyTimeInterval,
        expr: r#"{"interval": 3, "unit": "SECONDS"}"#,
        tz: Some("Europe/Berlin"),
        execute: ExecuteType::Standalone,
        processor: "noop",
        params: "",
    },
    Sample {
        name: "broadcast every 4s",
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::FixedRate,
        expr: "4000",
        tz: None,
        execute: ExecuteType::Broadcast,
        processor: "shell",
        params: "echo broadcast reached $(hostname) pid $$",
    },
    Sample {
        name: "api (run by the demo)",
        strategy: DispatchStrategy::RoundRobin,
        designated: &[],
        kind: TimeExpressionType::Api,
        expr: "",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "shell",
        // A run's params never replace a shell job's command: they arrive as a variable.
        params: r#"echo "api run: ${FERROJOB_INSTANCE_PARAMS:-no params}""#,
    },
    Sample {
        name: "workflow node (never alone)",
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::Workflow,
        expr: "",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "noop",
        params: "",
    },
    Sample {
        name: SUM_MR_NAME,
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::FixedRate,
        expr: "20000",
        tz: None,
        execute: ExecuteType::MapReduce,
        processor: "sum_mr",
        params: r#"{"tasks": 10000, "batch": 1000}"#,
    },
    // The workflow's nodes. `shell` answers its last stdout line, so node 1's result is the
    // JSON object the decision reads from the workflow context.
    Sample {
        name: WF_DECIDE,
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::Workflow,
        expr: "",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "shell",
        params: r#"echo '{"go":"left"}'"#,
    },
    Sample {
        name: WF_LEFT,
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::Workflow,
        expr: "",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "shell",
        params: "echo went left",
    },
    Sample {
        name: WF_RIGHT,
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::Workflow,
        expr: "",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "shell",
        params: "echo went right",
    },
    Sample {
        name: ALARM_SAMPLE,
        strategy: DispatchStrategy::HealthFirst,
        designated: &[],
        kind: TimeExpressionType::FixedRate,
        expr: "1000",
        tz: None,
        execute: ExecuteType::Standalone,
        processor: "shell",
        params: "s=$(date +%s); if [ $((s % 3)) -eq 0 ]; then echo \"failing on purpose at $s\"; exit 1; fi; echo \"ok at $s\"",
    },
];

/// The demo workflow over the jobs `jobs` (id → name): node 1 runs [`WF_DECIDE`], decision 2
/// reads `go == "left"`, node 3 ([`WF_LEFT`]) is on its `true` edge and node 4
/// ([`WF_RIGHT`]) on its `false` edge, so only node 3 runs. CRON every 15 s, plus one API run
/// at start.
fn demo_workflow(jobs: &BTreeMap<JobId, &'static str>) -> Result<WorkflowDef> {
    let id = |name: &str| {
        jobs.iter()
            .find(|(_, n)| **n == name)
            .map(|(id, _)| *id)
            .with_context(|| format!("the demo job {name:?} is missing"))
    };
    let (decide, left, right) = (id(WF_DECIDE)?, id(WF_LEFT)?, id(WF_RIGHT)?);
    // Each node also carries its job's command as its params, so the workflow runs the same
    // whether a server hands empty node params to the job as "use the job's own" or as-is.
    let params = |name: &str| {
        SAMPLES
            .iter()
            .find(|s| s.name == name)
            .map_or("", |s| s.params)
    };
    let def = serde_json::json!({
        "name": WORKFLOW_NAME,
        "time_expression_type": "CRON",
        "time_expression": "*/15 * * * * ?",
        "max_instances": 2,
        "nodes": [
            {"id": 1, "job_id": decide, "params": params(WF_DECIDE)},
            {"id": 2, "type": "DECISION", "expression": r#"go == "left""#},
            {"id": 3, "job_id": left, "params": params(WF_LEFT)},
            {"id": 4, "job_id": right, "params": params(WF_RIGHT)}
        ],
        "edges": [
            {"from": 1, "to": 2},
            {"from": 2, "to": 3, "property": "true"},
            {"from": 2, "to": 4, "property": "false"}
        ]
    });
    serde_json::from_value(def).context("building the demo workflow")
}

/// The demo workflow's id: found by name, else created.
async fn ensure_workflow(
    client: &Client,
    jobs: &BTreeMap<JobId, &'static str>,
) -> Result<WorkflowId> {
    let mut cursor = None;
    loop {
        let page = client
            .list_workflows(APP, &WorkflowQuery::page(Some(1000), cursor))
            .await?;
        if let Some(w) = page.items.iter().find(|w| w.body.name == WORKFLOW_NAME) {
            return Ok(w.id);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(client.create_workflow(APP, &demo_workflow(jobs)?).await?.id)
}

/// A workflow instance's nodes in one line: `1=SUCCEED 2=SUCCEED(true) 3=RUNNING 4=SKIPPED`.
fn workflow_nodes_text(w: &WorkflowInstanceView) -> String {
    w.nodes
        .iter()
        .map(|n| {
            let status = serde_json::to_value(n.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            match n.result.as_deref() {
                Some(r @ ("true" | "false")) => format!("{}={status}({r})", n.id.get()),
                _ => format!("{}={status}", n.id.get()),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `✓` or what was expected, for a finished `sum_mr` result.
fn sum_mr_check(result: &str) -> String {
    let want = SUM_MR_TASKS * (SUM_MR_TASKS - 1) / 2;
    match result.trim().parse::<u64>() {
        Ok(got) if got == want => format!("(= N(N-1)/2 for N={SUM_MR_TASKS} ✓)"),
        _ => format!("(expected {want})"),
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.embedded {
        return crate::embedded_demo::run(args.duration_secs);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(demo(args))
}

async fn start_server(args: &Args) -> Result<RunningServer> {
    let config = LaunchConfig::new(Some(args.data_dir.clone()), args.http, args.listen);
    match launch(config).await {
        Ok(s) => Ok(s),
        Err(LaunchError::Core(_) | LaunchError::Http(_)) => {
            // Most likely a port in use (another demo, another server): take free ports.
            let any: SocketAddr = "127.0.0.1:0".parse()?;
            let config = LaunchConfig::new(Some(args.data_dir.clone()), any, any);
            launch(config)
                .await
                .context("starting the demo server on free ports")
        }
        Err(e) => Err(e).context("starting the demo server"),
    }
}

fn is_conflict(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Api {
            error: ApiError {
                code: ErrorCode::Conflict,
                ..
            },
            ..
        }
    )
}

async fn ensure_jobs(client: &Client) -> Result<BTreeMap<JobId, &'static str>> {
    let mut existing: HashMap<String, JobId> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_jobs(APP, &JobQuery::page(Some(1000), cursor))
            .await?;
        for j in &page.items {
            existing.insert(j.body.name.clone(), j.id);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut jobs = BTreeMap::new();
    for s in &SAMPLES {
        let id = match existing.get(s.name) {
            Some(id) => *id,
            None => {
                let mut body = JobBody::new(s.name, s.kind, s.expr, s.processor);
                body.time_zone = s.tz.map(str::to_owned);
                body.execute_type = s.execute;
                body.params = s.params.to_owned();
                body.timeout_ms = 10_000;
                body.instance_retries = 1;
                body.dispatch_strategy = s.strategy;
                body.designated_workers = s.designated.iter().map(|d| d.to_string()).collect();
                if s.name == ALARM_SAMPLE {
                    body.instance_retries = 0;
                    body.alarm = AlarmRules {
                        failures: Some(FailureRule {
                            threshold: 1,
                            window_ms: 0,
                            silence_ms: 0,
                        }),
                        recovered: true,
                        ..AlarmRules::default()
                    };
                }
                client.create_job(APP, &body).await?.id
            }
        };
        jobs.insert(id, s.name);
    }
    Ok(jobs)
}

async fn demo(args: &Args) -> Result<()> {
    let server = start_server(args).await?;
    let url = format!("http://{}", server.http_addr());
    println!("ferrojob demo");
    println!(
        "  OpenAPI   {url}   (admin token in {})",
        server
            .token_file()
            .map_or("memory".into(), |p| p.display().to_string())
    );
    let client = Client::new(&url, server.admin_token())?;
    match client
        .create_app(&CreateApp {
            name: APP.to_owned(),
            secret: SECRET.to_owned(),
        })
        .await
    {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(e).context("creating the demo app"),
    }
    // The console signs in with an API token of the app (the worker secret is no token);
    // the one a previous run on this data dir printed is revoked.
    for old in client.list_tokens(APP).await?.items {
        if old.name == "demo console" {
            client.revoke_token(APP, old.id).await?;
        }
    }
    let token = client
        .create_token(
            APP,
            &ferrojob::api::CreateToken {
                name: "demo console".to_owned(),
                role: ferrojob::api::TokenRole::Admin,
                expires_in_secs: Some(24 * 3600),
            },
        )
        .await
        .context("creating the demo's API token")?
        .token;
    println!("  console   {url}/   (sign in: app {APP}, token {token})");
    println!("  transport {}", server.transport_addr());
    println!("  data dir  {}", args.data_dir.display());
    let mut workers = Vec::new();
    for tag in ["blue", "green"] {
        let mut config = WorkerConfig::new(server.transport_addr(), APP, SECRET);
        config.tags = vec![tag.to_owned()];
        // The samples run `shell` jobs (STANDALONE, BROADCAST, workflow nodes).
        config.allow_processors = [DangerousBuiltin::Shell].into();
        let worker = Worker::builder(config).builtins().start().await?;
        println!("  worker    {} (tag {tag})", worker.address());
        workers.push(worker);
    }
    let jobs = ensure_jobs(&client).await?;
    let api_job = jobs
        .iter()
        .find(|(_, n)| n.starts_with("api"))
        .map(|(id, _)| *id);
    println!("  jobs      {}", jobs.len());
    // The MAP_REDUCE sample runs every 20 s; run it once now too so it shows at once.
    if let Some((&id, _)) = jobs.iter().find(|(_, n)| **n == SUM_MR_NAME) {
        if let Err(e) = client.run_job(APP, id, &RunJob::default()).await {
            println!("  map-reduce run failed: {e}");
        }
    }
    let workflow = match ensure_workflow(&client, &jobs).await {
        Ok(id) => {
            println!(
                "  workflow  {} {WORKFLOW_NAME:?} (CRON */15s, and one run now)",
                id.get()
            );
            let run = RunWorkflow {
                init_params: Some(serde_json::json!({"from": "demo start"})),
                delay_ms: 0,
            };
            if let Err(e) = client.run_workflow(APP, id, &run).await {
                println!("  workflow  run failed: {e}");
            }
            Some(id)
        }
        Err(e) => {
            println!("  workflow  unavailable: {e:#}");
            None
        }
    };
    println!();
    println!("try: cargo run --release --bin ferrojob -- --url {url} job list --app {APP}");
    println!("     cargo run --release --bin ferrojob -- --url {url} alarm list --app {APP}");
    if workflow.is_some() {
        println!(
            "     cargo run --release --bin ferrojob -- --url {url} workflow instances --app {APP}"
        );
    }
    println!();

    let mut seen: HashMap<InstanceId, InstanceStatus> = HashMap::new();
    let mut seen_workflows: HashMap<WorkflowInstanceId, String> = HashMap::new();
    let mut workflow_error: Option<String> = None;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let start = std::time::Instant::now();
    let deadline = args.duration_secs.map(Duration::from_secs);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut ticks = 0u64;
    let ctrl_c = ferrojob_bin::shutdown_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {}
        }
        if deadline.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        ticks += 1;
        if let (Some(job), true) = (api_job, ticks % 10 == 1) {
            let run = RunJob {
                // `shell` hands them to the job's command as FERROJOB_INSTANCE_PARAMS.
                params: format!("from demo tick {ticks}"),
                delay_ms: 500,
            };
            if let Err(e) = client.run_job(APP, job, &run).await {
                eprintln!("api run failed: {e}");
            }
        }
        let page = match client
            .list_instances(
                APP,
                &InstanceQuery {
                    limit: Some(50),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("listing instances failed: {e}");
                continue;
            }
        };
        for i in page.items.iter().rev() {
            if seen.get(&i.id) == Some(&i.status) {
                continue;
            }
            seen.insert(i.id, i.status);
            let name = jobs.get(&i.job_id).copied().unwrap_or("?");
            let lateness = i
                .actual_trigger_time
                .map(|a| format!("dispatched +{}ms", a - i.trigger_time))
                .unwrap_or_default();
            let result = i
                .result
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            let check = if name == SUM_MR_NAME && i.status == InstanceStatus::Succeed {
                sum_mr_check(result)
            } else {
                String::new()
            };
            println!(
                "{}  #{:<6} {:<28} {:<22} {:<21} {}{}{} {} {}",
                fmt_ms(i.trigger_time),
                i.id.get(),
                name,
                status_name(i.status),
                i.worker.as_deref().unwrap_or("-"),
                lateness,
                i.tasks.map_or(String::new(), |t| tasks_text(&t)),
                i.workflow_instance_id
                    .map_or(String::new(), |w| format!(" wf#{}", w.get())),
                result,
                check,
            );
            if i.status.is_final() {
                *totals.entry(status_name(i.status)).or_default() += 1;
            }
        }
        if workflow.is_some() {
            let query = WorkflowInstanceQuery {
                limit: Some(20),
                ..Default::default()
            };
            match client.list_workflow_instances(APP, &query).await {
                Ok(page) => {
                    workflow_error = None;
                    for w in page.items.iter().rev() {
                        let status = serde_json::to_value(w.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        let state = format!("{status:<8} nodes {}", workflow_nodes_text(w));
                        if seen_workflows.get(&w.id) == Some(&state) {
                            continue;
                        }
                        seen_workflows.insert(w.id, state.clone());
                        println!(
                            "{}  wf#{:<5} {:<28} {}",
                            fmt_ms(w.started_at.unwrap_or(w.created_at)),
                            w.id.get(),
                            WORKFLOW_NAME,
                            state,
                        );
                        if w.status.is_finished() {
                            *totals.entry(format!("workflow {status}")).or_default() += 1;
                        }
                    }
                }
                Err(e) => {
                    // Said once per kind of failure, not every tick.
                    let text = e.to_string();
                    if workflow_error.as_ref() != Some(&text) {
                        eprintln!("listing workflow instances failed: {text}");
                        workflow_error = Some(text);
                    }
                }
            }
        }
    }
    println!();
    let alarms = PageQuery {
        limit: Some(1000),
        cursor: None,
    };
    match client.list_alarms(APP, alarms).await {
        Ok(page) => println!(
            "  alarms    {} in the history (ferrojob alarm list --app {APP})",
            page.items.len()
        ),
        Err(e) => println!("  alarms    unavailable: {e}"),
    }
    println!("stopping workers and server ...");
    for w in workers {
        w.shutdown().await;
    }
    server.shutdown().await;
    println!("instances finished while the demo watched:");
    for (status, n) in &totals {
        println!("  {status:<10} {n}");
    }
    println!(
        "state is kept in {}; run the demo again to continue",
        args.data_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrojob::ids::NodeId;
    use ferrojob::workflow::{Action, InstanceStatus as WfStatus, NodeStatus, WorkflowInstance};

    use super::*;

    /// The demo's jobs with made-up ids, as `ensure_jobs` answers them.
    fn jobs() -> BTreeMap<JobId, &'static str> {
        SAMPLES
            .iter()
            .enumerate()
            .map(|(i, s)| (JobId(i as u64 + 1), s.name))
            .collect()
    }

    #[test]
    fn the_demo_workflow_is_valid_and_takes_the_left_branch() {
        let jobs = jobs();
        let def = demo_workflow(&jobs).unwrap();
        let dag = def
            .validate(|id| jobs.contains_key(&id), |_| false)
            .unwrap();
        let mut wi = WorkflowInstance::new(Arc::new(dag), serde_json::json!({}), 0).unwrap();
        // Each dispatched node answers what its `shell` command prints.
        let mut pending = wi.start(0).unwrap();
        while let Some(action) = pending.pop() {
            if let Action::Dispatch { node, job_id, .. } = action {
                let printed = match jobs[&job_id] {
                    WF_DECIDE => r#"{"go":"left"}"#,
                    WF_LEFT => "went left",
                    other => panic!("{other} must not run"),
                };
                pending.extend(
                    wi.on_node_finished(node, true, Some(printed.into()), 1)
                        .unwrap(),
                );
            }
        }
        assert_eq!(wi.status(), WfStatus::Succeed);
        assert_eq!(wi.node(NodeId(3)).unwrap().status, NodeStatus::Succeed);
        assert_eq!(wi.node(NodeId(4)).unwrap().status, NodeStatus::Skipped);
        assert_eq!(wi.context()["go"], "left");
    }

    #[test]
    fn the_map_reduce_sample_and_its_check() {
        let s = SAMPLES.iter().find(|s| s.name == SUM_MR_NAME).unwrap();
        assert_eq!(s.execute, ExecuteType::MapReduce);
        assert_eq!(s.processor, "sum_mr");
        let params: serde_json::Value = serde_json::from_str(s.params).unwrap();
        assert_eq!(params["tasks"], SUM_MR_TASKS);
        assert!(sum_mr_check("49995000").contains('✓'));
        assert!(sum_mr_check(" 49995000\n").contains('✓'));
        assert!(sum_mr_check("49994999").contains("expected 49995000"));
        assert!(sum_mr_check("").contains("expected"));
    }

    #[test]
    fn sample_names_are_unique() {
        let mut names: Vec<&str> = SAMPLES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SAMPLES.len());
    }
}
