//! `ferrojob bench mapreduce`: one `sum_mr` MAP_REDUCE instance of `--tasks` subtasks over
//! `--workers` real `ferrojob-worker` processes.
//!
//! Starts a server in this process (MemoryStore: the server records one instance, its store
//! is not what is measured) and `--workers` worker processes (the `ferrojob-worker` next to
//! this executable, each with its own task store dir in a temp dir, or `--memory-store`),
//! creates a MAP_REDUCE job of the built-in `sum_mr`, runs it once with
//! `{"tasks": N, "batch": B}`, waits for the final status, checks the result is exactly
//! N·(N−1)/2, and prints the elapsed time (run request to final status, polled every 10 ms),
//! tasks/s and every worker's peak RSS (`VmHWM` of `/proc/<pid>/status`). The TaskTracker is
//! whichever worker the server picks; every worker runs tasks.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{CreateApp, JobBody, RunJob};
use ferrojob::client::Client;
use ferrojob::launch::{launch, LaunchConfig};
use ferrojob::model::{ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::harness::ChildProc;

/// `ferrojob bench mapreduce` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MapReduceArgs {
    /// Subtasks the root task maps.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Subtasks per `map` call.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Workers keep task trees in memory instead of their log store.
    #[arg(long)]
    memory_store: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// One row of the report (`target/bench-reports` format: units in the names).
#[derive(Debug, Serialize)]
struct Row {
    function: &'static str,
    param: String,
    tasks: u64,
    workers: usize,
    batch: u64,
    store: &'static str,
    elapsed_s: f64,
    tasks_per_s: f64,
    worker_peak_rss_bytes: Vec<u64>,
    max_worker_peak_rss_bytes: u64,
}

/// Runs one `sum_mr` instance over `args.workers` worker processes and reports it.
pub(super) async fn mapreduce(args: &MapReduceArgs, json: bool) -> Result<()> {
    if args.workers == 0 || args.batch == 0 {
        bail!("--workers and --batch must be at least 1");
    }
    let exe = super::harness::sibling_exe("ferrojob-worker")?;
    let dir = tempfile::Builder::new()
        .prefix("ferrojob-bench-mr-")
        .tempdir()
        .context("creating a temp dir")?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let server = launch(LaunchConfig::new(None, any, any)).await?;
    let client = Client::new(
        &format!("http://{}", server.http_addr()),
        server.admin_token(),
    )?;
    let (app, secret) = ("bench-mr", "bench-mr-secret-01");
    client
        .create_app(&CreateApp {
            name: app.into(),
            secret: secret.into(),
        })
        .await?;
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let mut wargs: Vec<String> = vec![
            "--server".into(),
            server.transport_addr().to_string(),
            "--app".into(),
            app.into(),
            "--secret".into(),
            secret.into(),
            "--heartbeat-interval-ms".into(),
            "200".into(),
            "--data-dir".into(),
            dir.path().join(format!("worker{i}")).display().to_string(),
        ];
        if args.memory_store {
            wargs.push("--memory-store".into());
        }
        let mut command = Command::new(&exe);
        command
            .args(&wargs)
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::inherit());
        workers.push(ChildProc::spawn(command, "ready")?.0);
    }
    let connected = Instant::now();
    while client.list_workers(app).await?.workers.len() < args.workers {
        if connected.elapsed() > Duration::from_secs(20) {
            bail!("workers did not register within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut body = JobBody::new("sum_mr", TimeExpressionType::Api, "", "sum_mr");
    body.execute_type = ExecuteType::MapReduce;
    body.max_worker_count = u32::try_from(args.workers).unwrap_or(u32::MAX);
    let job = client.create_job(app, &body).await?.id;

    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.tasks + 1)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} tasks {pos}/{len} [{bar:40}] {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let run = client
        .run_job(
            app,
            job,
            &RunJob {
                params: format!(r#"{{"tasks": {}, "batch": {}}}"#, args.tasks, args.batch),
                delay_ms: 0,
            },
        )
        .await?;
    let deadline = Duration::from_secs(args.timeout_s);
    let mut polls = 0u64;
    let instance = loop {
        let i = client.get_instance(app, run.instance_id).await?;
        if i.status.is_final() {
            break i;
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            if let Some(t) = &i.tasks {
                bar.set_length(t.total.max(1));
                bar.set_position(t.succeeded + t.failed);
            }
            bar.set_message(format!("{:?}", i.status));
        }
        if started.elapsed() > deadline {
            bail!("{} not final after {deadline:?}", run.instance_id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let rss: Vec<u64> = workers.iter().map(|w| w.usage().peak_rss_bytes).collect();
    drop(workers);
    server.shutdown().await;
    let expected = u128::from(args.tasks) * u128::from(args.tasks.saturating_sub(1)) / 2;
    let result = instance.result.clone().unwrap_or_default();
    if instance.status != InstanceStatus::Succeed || result != expected.to_string() {
        bail!(
            "sum_mr ended {:?} with {result:?}, expected SUCCEED with {expected}",
            instance.status
        );
    }
    let row = Row {
        function: "mapreduce",
        param: format!("{}x{}", args.tasks, args.workers),
        tasks: args.tasks,
        workers: args.workers,
        batch: args.batch,
        store: if args.memory_store { "memory" } else { "log" },
        elapsed_s: elapsed.as_secs_f64(),
        tasks_per_s: args.tasks as f64 / elapsed.as_secs_f64(),
        max_worker_peak_rss_bytes: rss.iter().copied().max().unwrap_or(0),
        worker_peak_rss_bytes: rss,
    };
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "sum_mr: {} subtasks over {} worker process(es), batch {}, {} task store",
            row.tasks, row.workers, row.batch, row.store
        );
        println!("  result           {result} (exact)");
        println!(
            "  elapsed          {:.2} s ({:.0} tasks/s)",
            row.elapsed_s, row.tasks_per_s
        );
        let mib: Vec<String> = row
            .worker_peak_rss_bytes
            .iter()
            .map(|b| format!("{:.1} MiB", *b as f64 / (1024.0 * 1024.0)))
            .collect();
        println!("  worker peak RSS  {}", mib.join(", "));
    }
    Ok(())
}
