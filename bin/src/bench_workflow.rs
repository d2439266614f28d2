//! `ferrojob bench workflow`: the push from one workflow node's completion to the next node's
//! dispatch.
//!
//! Starts a server in this process (LogStore in a temp dir with durable group-committed
//! writes, or `--ephemeral` for the MemoryStore) and `--workers` in-process workers with the
//! `noop` built-in, creates one API job and a workflow that is a chain of `--nodes` JOB nodes
//! running it, and runs the workflow `--runs` times one after the other through the in-process
//! `Api` (no HTTP). It reports:
//!
//! - the **handoff**: from the server receiving the final report of a node's job instance to
//!   the next node's ScheduleJob handed to the worker connection, from the server's
//!   `ferrojob_workflow_handoff_seconds` histogram (p50/p99 interpolated in its buckets, max
//!   exact from `ferrojob_workflow_handoff_max_seconds`);
//! - the **chain wall time** per run (run request → the workflow instance is SUCCEED, observed
//!   by polling the API every 200 µs), and the **scheduling overhead per node**: wall time
//!   divided by the nodes. The noop processor runs in microseconds, so this is what one node
//!   costs end to end: its instance's durable write, ScheduleJob, the worker's reports, the
//!   final write, and the handoff.
//!
//! It also prints the store's commit latency (`ferrojob_store_commit_seconds`, submit →
//! acknowledged): on the LogStore every handoff contains one group-committed fsync (the
//! node's final record, the workflow snapshot and the next node's instance are one batch), so
//! the handoff is bounded below by it.
//!
//! `--json` prints one row with units in the names.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{CreateApp, JobBody, RunWorkflow, WorkflowDef, WorkflowInstanceStatus};
use ferrojob::launch::{launch, LaunchConfig};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use serde::Serialize;

/// `ferrojob bench workflow` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkflowArgs {
    /// JOB nodes in the chain.
    #[arg(long, default_value_t = 100)]
    nodes: u64,
    /// Runs of the chain, one after the other.
    #[arg(long, default_value_t = 5)]
    runs: u64,
    /// Workers (noop processor).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Use the MemoryStore instead of the LogStore (nothing durable: for comparison).
    #[arg(long)]
    ephemeral: bool,
}

/// One row of the report (units in the names).
#[derive(Debug, Serialize)]
struct Row {
    function: &'static str,
    param: String,
    nodes: u64,
    runs: u64,
    workers: usize,
    store: &'static str,
    handoffs: u64,
    handoff_p50_us: u64,
    handoff_p99_us: u64,
    handoff_max_us: u64,
    chain_wall_ms_median: f64,
    chain_wall_ms_max: f64,
    per_node_overhead_us: f64,
    store_commit_p50_us: u64,
    store_commit_p99_us: u64,
    failed_runs: u64,
}

/// `ferrojob_store_commit_seconds`: every write of the core, submit → acknowledged.
fn histogram_of_commits(metrics: &str) -> Vec<(f64, u64)> {
    super::histogram(metrics, "ferrojob_store_commit_seconds")
}

/// Runs `args.runs` chains of `args.nodes` nodes and reports the handoffs.
pub(super) async fn bench(args: &WorkflowArgs, json: bool) -> Result<()> {
    if args.nodes == 0 || args.runs == 0 || args.workers == 0 {
        bail!("--nodes, --runs and --workers must be at least 1");
    }
    if args.nodes > 1000 {
        bail!("--nodes: a workflow has at most 1000 nodes");
    }
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-wf-")
        .tempdir()
        .context("creating a temp data dir")?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let config = LaunchConfig::new(
        (!args.ephemeral).then(|| dir.path().to_path_buf()),
        any,
        any,
    );
    let server = launch(config).await?;
    let api = server.api();
    let (app, secret) = ("bench-wf", "bench-wf-secret-01");
    api.create_app(CreateApp {
        name: app.into(),
        secret: secret.into(),
    })
    .await?;
    let app_ref = api.resolve_app(app)?;
    let job = api
        .create_job(
            app_ref.clone(),
            JobBody::new("noop", TimeExpressionType::Api, "", "noop"),
        )
        .await?
        .id;
    let nodes: Vec<serde_json::Value> = (1..=args.nodes)
        .map(|i| serde_json::json!({"id": i, "job_id": job}))
        .collect();
    let edges: Vec<serde_json::Value> = (1..args.nodes)
        .map(|i| serde_json::json!({"from": i, "to": i + 1}))
        .collect();
    let def: WorkflowDef = serde_json::from_value(serde_json::json!({
        "name": "chain", "time_expression_type": "API", "nodes": nodes, "edges": edges,
    }))?;
    let wf = api.create_workflow(app_ref.clone(), def).await?.id;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let config = WorkerConfig::new(server.transport_addr(), app, secret);
        workers.push(Worker::builder(config).builtins().start().await?);
    }
    let connected = Instant::now();
    while api.list_workers(app_ref.clone()).await?.workers.len() < args.workers {
        if connected.elapsed() > Duration::from_secs(10) {
            bail!("workers did not register within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut walls = Vec::new();
    let mut failed_runs = 0u64;
    for run in 0..args.runs {
        let started = Instant::now();
        let id = api
            .run_workflow(app_ref.clone(), wf, RunWorkflow::default())
            .await?
            .workflow_instance_id;
        let status = loop {
            let v = api.get_workflow_instance(app_ref.clone(), id).await?;
            if v.status.is_finished() {
                break v.status;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("run {run}: the chain did not finish within 120 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let wall = started.elapsed();
        if status != WorkflowInstanceStatus::Succeed {
            failed_runs += 1;
        }
        if !json {
            println!(
                "run {run}: {} in {:.1} ms",
                status.as_str(),
                wall.as_secs_f64() * 1e3
            );
        }
        walls.push(wall.as_secs_f64() * 1e3);
    }
    let metrics = api.metrics_text();
    let histogram = super::histogram(&metrics, "ferrojob_workflow_handoff_seconds");
    let commits = histogram_of_commits(&metrics);
    let handoffs = histogram.last().map_or(0, |(_, c)| *c);
    walls.sort_by(f64::total_cmp);
    let median = walls.get(walls.len() / 2).copied().unwrap_or(0.0);
    let row = Row {
        function: "workflow",
        param: format!("{}x{}", args.nodes, args.runs),
        nodes: args.nodes,
        runs: args.runs,
        workers: args.workers,
        store: if args.ephemeral { "memory" } else { "log" },
        handoffs,
        handoff_p50_us: super::histogram_quantile(&histogram, 0.50),
        handoff_p99_us: super::histogram_quantile(&histogram, 0.99),
        handoff_max_us: (super::harness::metric(&metrics, "ferrojob_workflow_handoff_max_seconds")
            * 1e6) as u64,
        chain_wall_ms_median: median,
        chain_wall_ms_max: walls.last().copied().unwrap_or(0.0),
        per_node_overhead_us: median * 1e3 / args.nodes as f64,
        store_commit_p50_us: super::histogram_quantile(&commits, 0.50),
        store_commit_p99_us: super::histogram_quantile(&commits, 0.99),
        failed_runs,
    };
    for w in workers {
        w.shutdown().await;
    }
    server.shutdown().await;
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{}-node chain × {} run(s), {} worker(s), {} store",
            row.nodes, row.runs, row.workers, row.store
        );
        println!(
            "  handoff (final report → next ScheduleJob) over {} handoffs: p50 {} µs, p99 {} µs (interpolated in the server's histogram), max {} µs",
            row.handoffs, row.handoff_p50_us, row.handoff_p99_us, row.handoff_max_us
        );
        println!(
            "  chain wall time: median {:.1} ms, max {:.1} ms; {:.0} µs per node end to end",
            row.chain_wall_ms_median, row.chain_wall_ms_max, row.per_node_overhead_us
        );
        println!(
            "  store commits (submit → durable ack, all writes of the core): p50 {} µs, p99 {} µs",
            row.store_commit_p50_us, row.store_commit_p99_us
        );
        if failed_runs > 0 {
            println!("  NOT SUCCEED: {failed_runs} run(s)");
        }
    }
    Ok(())
}
