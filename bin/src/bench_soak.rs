//! `ferrojob bench soak`: a mixed load for `--minutes`, and the server's resources sampled
//! every `--sample-s`.
//!
//! Starts a `ferrojob-server` process (LogStore in a temp dir, retention on:
//! `--keep-finished-runs`, `--retention-ms`) and `--workers` workers in this process, then
//! keeps running at once:
//!
//! - a CRON job firing every second (`* * * * * ?`, `noop`);
//! - a FIXED_RATE job every 1000 ms (`noop`);
//! - API runs at `--api-rate` per second through the HTTP OpenAPI, of a job whose processor
//!   logs `--log-lines` lines (shipped to the server's log store);
//! - a MAP_REDUCE job (`sum_mr`, `--mr-tasks` subtasks) every 10 s;
//! - a three-node workflow (a chain of `noop` jobs) every 5 s.
//!
//! Each sample prints and records the server's resident set (`VmRSS`, and `VmHWM`), open
//! file descriptors, CPU time, the bytes of its data directory (file lengths: preallocated
//! segment room included), the log store's bytes and live keys
//! (`ferrojob_store_disk_bytes`, `ferrojob_store_keys` from `/metrics`), and the instances
//! finished and deleted by retention so far. With retention on, the store and the resident set
//! level off once runs are deleted as fast as they are made. Rows go to `--report` (default
//! `$CARGO_TARGET_DIR/bench-reports/soak.json`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ferrojob::api::{CreateApp, JobBody, RunJob, WorkflowDef};
use ferrojob::client::Client;
use ferrojob::model::ExecuteType;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{ProcessResult, TaskContext, Worker, WorkerConfig};
use serde::Serialize;

use super::harness::{self, ServerProc};

/// `ferrojob bench soak` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the load runs, minutes; 0 sets everything up, takes one sample and stops.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between samples (at least 1).
    #[arg(long, default_value_t = 60)]
    sample_s: u64,
    /// API runs per second (of the job that logs).
    #[arg(long, default_value_t = 20)]
    api_rate: u64,
    /// Lines each API run logs.
    #[arg(long, default_value_t = 20)]
    log_lines: u32,
    /// Subtasks of each MAP_REDUCE run (one every 10 s).
    #[arg(long, default_value_t = 1000)]
    mr_tasks: u64,
    /// Workers, in this process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The server's `--keep-finished-runs`: finished instances kept per job.
    #[arg(long, default_value_t = 100)]
    keep_finished_runs: usize,
    /// The server's `--retention-ms`: finished instances older than this are deleted.
    #[arg(long, default_value_t = 300_000)]
    retention_ms: u64,
    /// One more flag for the server (repeat it).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Report file; default `$CARGO_TARGET_DIR/bench-reports/soak.json` (or
    /// `target/bench-reports/soak.json`).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// One sample.
#[derive(Debug, Serialize)]
struct SampleRow {
    function: &'static str,
    param: String,
    elapsed_s: u64,
    rss_bytes: u64,
    peak_rss_bytes: u64,
    open_fds: u64,
    server_cpu_ms: u64,
    data_dir_bytes: u64,
    store_disk_bytes: u64,
    store_keys: u64,
    instances_finished: u64,
    instances_not_succeeded: u64,
    retention_deleted: u64,
    workflow_instances_finished: u64,
    api_runs: u64,
    api_run_errors: u64,
    keep_finished_runs: usize,
    retention_ms: u64,
}

/// Final statuses counted by `/metrics`: (all, not SUCCEED).
fn finals(metrics: &str) -> (u64, u64) {
    let succeed = super::succeeded_total(metrics);
    let all = super::finished_total(metrics);
    (all, all.saturating_sub(succeed))
}

/// The sum of a labelled counter's series (`name{...} v`).
fn labelled_sum(metrics: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix.as_str()))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Creates the soak's jobs and workflow in `app`; answers the API job that logs.
async fn create_load(client: &Client, app: &str, args: &SoakArgs) -> Result<ferrojob::ids::JobId> {
    client
        .create_job(
            app,
            &JobBody::new("cron-1s", TimeExpressionType::Cron, "* * * * * ?", "noop"),
        )
        .await?;
    client
        .create_job(
            app,
            &JobBody::new("rate-1s", TimeExpressionType::FixedRate, "1000", "noop"),
        )
        .await?;
    let mut mr = JobBody::new(
        "sum-mr-10s",
        TimeExpressionType::FixedRate,
        "10000",
        "sum_mr",
    );
    mr.execute_type = ExecuteType::MapReduce;
    mr.params = format!(r#"{{"tasks": {}, "batch": 100}}"#, args.mr_tasks);
    client.create_job(app, &mr).await?;
    let node = client
        .create_job(
            app,
            &JobBody::new("wf-node", TimeExpressionType::Api, "", "noop"),
        )
        .await?
        .id;
    let def: WorkflowDef = serde_json::from_value(serde_json::json!({
        "name": "chain-5s",
        "time_expression_type": "FIXED_RATE",
        "time_expression": "5000",
        "nodes": [
            {"id": 1, "job_id": node},
            {"id": 2, "job_id": node},
            {"id": 3, "job_id": node},
        ],
        "edges": [{"from": 1, "to": 2}, {"from": 2, "to": 3}],
    }))?;
    client.create_workflow(app, &def).await?;
    Ok(client
        .create_job(
            app,
            &JobBody::new("api-logs", TimeExpressionType::Api, "", "log_lines"),
        )
        .await?
        .id)
}

/// Runs `bench soak` and reports it.
pub(super) async fn soak(args: &SoakArgs, json: bool) -> Result<()> {
    if args.sample_s == 0 || args.workers == 0 {
        bail!("--sample-s and --workers must be at least 1");
    }
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-soak-")
        .tempdir()?;
    let data_dir = dir.path().join("data");
    let mut server_args = vec![
        "--keep-finished-runs".to_owned(),
        args.keep_finished_runs.to_string(),
        "--retention-ms".to_owned(),
        args.retention_ms.to_string(),
    ];
    server_args.extend(args.server_args.iter().cloned());
    let server = ServerProc::spawn(&data_dir, &dir.path().join("server.log"), &server_args)?;
    let client = Client::new(&format!("http://{}", server.http), &server.token)?;
    let (app, secret) = ("bench-soak", "bench-soak-secret-01");
    client
        .create_app(&CreateApp {
            name: app.into(),
            secret: secret.into(),
        })
        .await?;
    let mut workers = Vec::new();
    let lines = args.log_lines;
    for _ in 0..args.workers {
        let config = WorkerConfig::new(server.transport, app, secret);
        let worker = Worker::builder(config)
            .builtins()
            .basic("log_lines", move |ctx: TaskContext| async move {
                for i in 0..lines {
                    ctx.logger()
                        .info(format!("soak line {i} of {lines}: some text to store"));
                }
                ProcessResult::ok(format!("{lines} lines"))
            })
            .start()
            .await?;
        workers.push(worker);
    }
    super::wait_for_workers(&client, app, args.workers).await?;
    let api_job = create_load(&client, app, args).await?;

    // API runs, paced at `api_rate` per second, until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let (api_runs, api_errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loader = {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        let (runs, errors) = (Arc::clone(&api_runs), Arc::clone(&api_errors));
        let period = Duration::from_nanos(1_000_000_000 / args.api_rate.max(1));
        let enabled = args.api_rate > 0;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while enabled && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                match client.run_job(app, api_job, &RunJob::default()).await {
                    Ok(_) => runs.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let started = Instant::now();
    let total = Duration::from_secs(args.minutes.saturating_mul(60));
    let period = Duration::from_secs(args.sample_s);
    let mut rows = Vec::new();
    if !json {
        println!(
            "soak: {} min, samples every {} s; retention: {} runs per job, {} ms",
            args.minutes, args.sample_s, args.keep_finished_runs, args.retention_ms
        );
        println!(
            "{:>6} {:>9} {:>9} {:>6} {:>10} {:>10} {:>8} {:>9} {:>8} {:>8}",
            "t_s",
            "rss_MiB",
            "peak_MiB",
            "fds",
            "dir_MiB",
            "store_MiB",
            "keys",
            "finished",
            "deleted",
            "api_runs"
        );
    }
    let mut next = Duration::ZERO;
    loop {
        tokio::time::sleep_until((started + next).into()).await;
        let usage = server.proc.usage();
        let metrics = client.metrics().await?;
        let (finished, not_succeeded) = finals(&metrics);
        let row = SampleRow {
            function: "soak",
            param: format!("{}min/{}s", args.minutes, next.as_secs()),
            elapsed_s: next.as_secs(),
            rss_bytes: usage.rss_bytes,
            peak_rss_bytes: usage.peak_rss_bytes,
            open_fds: usage.open_fds,
            server_cpu_ms: usage.cpu_ms,
            data_dir_bytes: harness::dir_bytes(&data_dir),
            store_disk_bytes: harness::metric(&metrics, "ferrojob_store_disk_bytes") as u64,
            store_keys: harness::metric(&metrics, "ferrojob_store_keys") as u64,
            instances_finished: finished,
            instances_not_succeeded: not_succeeded,
            retention_deleted: harness::metric(&metrics, "ferrojob_retention_deleted_total") as u64,
            workflow_instances_finished: labelled_sum(
                &metrics,
                "ferrojob_workflow_instances_finished_total",
            ),
            api_runs: api_runs.load(Ordering::Relaxed),
            api_run_errors: api_errors.load(Ordering::Relaxed),
            keep_finished_runs: args.keep_finished_runs,
            retention_ms: args.retention_ms,
        };
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        if json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{:>6} {:>9.1} {:>9.1} {:>6} {:>10.1} {:>10.1} {:>8} {:>9} {:>8} {:>8}",
                row.elapsed_s,
                mib(row.rss_bytes),
                mib(row.peak_rss_bytes),
                row.open_fds,
                mib(row.data_dir_bytes),
                mib(row.store_disk_bytes),
                row.store_keys,
                row.instances_finished,
                row.retention_deleted,
                row.api_runs
            );
        }
        rows.push(serde_json::to_value(&row)?);
        if next >= total {
            break;
        }
        next = (next + period).min(total);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = loader.await;
    for w in workers {
        w.shutdown().await;
    }
    drop(server);
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| harness::default_report("soak"));
    harness::write_report(&report, &rows)?;
    if !json {
        println!("rows written to {}", report.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finals_split_succeeded_from_the_rest() {
        let text = "ferrojob_instances_finished_total{status=\"SUCCEED\"} 90\nferrojob_instances_finished_total{status=\"FAILED\"} 7\nferrojob_instances_finished_total{status=\"STOPPED\"} 3\n";
        assert_eq!(finals(text), (100, 10));
        assert_eq!(finals(""), (0, 0));
    }

    #[test]
    fn labelled_sums_add_every_series_of_one_name() {
        let text = "w_total{status=\"SUCCEED\"} 4\nw_total{status=\"FAILED\"} 1\nw_total_other{x=\"1\"} 9\n";
        assert_eq!(labelled_sum(text, "w_total"), 5);
    }
}
