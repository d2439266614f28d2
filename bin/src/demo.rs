//! `ferrojob demo`: a real server (LogStore under `./ferrojob-data`, OpenAPI, transport) and
//! two real workers connected over loopback TCP, sample jobs of every time expression type and
//! both execution types (STANDALONE, BROADCAST), and every instance's state changes shown live.
//! Ctrl-C (or `--duration-secs`) stops the workers, then the server, and prints a summary.
//!
//! Run it again and it picks up where it stopped: same app, same jobs (found by name), their
//! run counters and instances, from the data dir.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrojob::api::{ApiError, CreateApp, ErrorCode, InstanceQuery, JobBody, PageQuery, RunJob};
use ferrojob::client::{Client, ClientError};
use ferrojob::launch::{launch, LaunchConfig, LaunchError, RunningServer};
use ferrojob::model::{DispatchStrategy, ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use ferrojob_bin::fmt_ms;

use crate::remote::status_name;

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

const SAMPLES: [Sample; 7] = [
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
        params: "echo api run without params",
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
];

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

async fn ensure_jobs(client: &Client) -> Result<BTreeMap<u64, &'static str>> {
    let mut existing: HashMap<String, u64> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_jobs(
                APP,
                PageQuery {
                    limit: Some(1000),
                    cursor,
                },
            )
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
    println!("  transport {}", server.transport_addr());
    println!("  data dir  {}", args.data_dir.display());
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
    let mut workers = Vec::new();
    for tag in ["blue", "green"] {
        let mut config = WorkerConfig::new(server.transport_addr(), APP, SECRET);
        config.tags = vec![tag.to_owned()];
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
    println!();
    println!("try: cargo run --release --bin ferrojob -- --url {url} job list --app {APP}");
    println!();

    let mut seen: HashMap<u64, InstanceStatus> = HashMap::new();
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
                // For `shell`, an API run's params are the command.
                params: format!("echo api run from demo tick {ticks}"),
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
            println!(
                "{}  #{:<6} {:<28} {:<22} {:<21} {} {}",
                fmt_ms(i.trigger_time),
                i.id,
                name,
                status_name(i.status),
                i.worker.as_deref().unwrap_or("-"),
                lateness,
                i.result
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or(""),
            );
            if i.status.is_final() {
                *totals.entry(status_name(i.status)).or_default() += 1;
            }
        }
    }
    println!();
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
