//! `ferrojob bench dispatch`: the whole server under load.
//!
//! Starts a server in this process (LogStore with group-committed durable writes in a temp dir,
//! or `--ephemeral`) and `--workers` workers with the `noop` processor connected over loopback
//! TCP, creates an API job, triggers `--instances` runs through the HTTP OpenAPI with
//! `--in-flight` requests outstanding (optionally paced at `--rate` runs/s), waits until every
//! instance is SUCCEED (read back through the API, which reads the store: what it returns was
//! committed), and prints the rate of durable instances and the dispatch latency
//! (`actual_trigger_time - trigger_time` of every instance, server clock, millisecond
//! resolution). `--json` prints one row in the bench-report format.
//!
//! `--connect --transport ADDR` (with the global `--url` and admin `--token`) uses a server
//! that already runs instead (a
//! `ferrojob-server` process): a fresh app is created on it, and the counters the bench reads
//! (`ferrojob_instances_finished_total`, the dispatch histogram) are taken as differences.
//!
//! Workers run in this process (own tasks, own connections): on a 2-core machine the server,
//! the workers and the load generator share the cores, as they would on one box.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{CreateApp, InstanceQuery, JobBody, RunJob};
use ferrojob::client::Client;
use ferrojob::ids::JobId;
use ferrojob::launch::{launch, LaunchConfig};
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::remote::Conn;
use serde::Serialize;

#[path = "bench_workflow.rs"]
mod bench_workflow;
#[path = "bench_mapreduce.rs"]
mod mapreduce;

/// `ferrojob bench ...`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Durable instances per second through server, store and workers; dispatch latency.
    Dispatch(DispatchArgs),
    /// Workflow handoff (a node's completion → the next node's dispatch) on a chain.
    Workflow(bench_workflow::WorkflowArgs),
    /// One sum_mr MAP_REDUCE instance over worker processes: tasks/s, peak RSS per worker.
    Mapreduce(mapreduce::MapReduceArgs),
}

/// `ferrojob bench dispatch` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DispatchArgs {
    /// API runs to trigger.
    #[arg(long, default_value_t = 100_000)]
    instances: u64,
    /// Workers (noop processor).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Run requests outstanding at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Pace the runs at this many per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Use the MemoryStore instead of the LogStore (nothing durable: for comparison).
    #[arg(long)]
    ephemeral: bool,
    /// Keep the server's state in this PostgreSQL database (`postgres://…`) instead of the
    /// LogStore.
    #[arg(long, conflicts_with_all = ["ephemeral", "connect"])]
    store: Option<String>,
    /// With `--store`: commit every write in a transaction of its own (the baseline of a
    /// scheduler that writes each state change on its own) instead of batching.
    #[arg(long, requires = "store")]
    transaction_per_write: bool,
    /// How runs are triggered: `http` (the OpenAPI's run route, through the Rust client) or
    /// `api` (the same `Api::run_job` the route calls, in process: the server core without
    /// HTTP).
    #[arg(long, value_enum, default_value_t = Via::Http)]
    via: Via,
    /// Load the server that runs at the global `--url` (with the admin `--token`) instead of
    /// starting one; needs `--transport`. Workers still start here and connect to it.
    #[arg(long, requires = "transport")]
    connect: bool,
    /// Worker transport address of the server `--connect` uses.
    #[arg(long)]
    transport: Option<SocketAddr>,
    /// TLS on the worker port: a CA and certificate made at start, the workers trust the
    /// CA (the OpenAPI stays plain HTTP: the bench's HTTP client has no TLS).
    #[arg(long, conflicts_with = "connect")]
    tls: bool,
}

/// How `bench dispatch` triggers runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// `POST /v1/apps/{app}/jobs/{id}/run` through `ferrojob::client::Client`.
    Http,
    /// `Api::run_job` in process.
    Api,
}

/// One row of the report (`target/bench-reports` format: units in the names).
#[derive(Debug, Serialize)]
struct Row {
    function: &'static str,
    param: String,
    instances: u64,
    workers: usize,
    store: &'static str,
    via: &'static str,
    /// The worker port: `tcp` or `tls`.
    transport: &'static str,
    offered_per_s: u64,
    trigger_per_s: f64,
    durable_instances_per_s: f64,
    elapsed_s: f64,
    dispatch_p50_us: u64,
    dispatch_p99_us: u64,
    dispatch_max_us: u64,
    failed: u64,
}

/// Runs a bench; `conn` gives the global `--url`, `--token` and `--json`.
pub fn run(cmd: &BenchCmd, conn: &Conn) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cmd {
        BenchCmd::Dispatch(args) => runtime.block_on(dispatch(args, conn)),
        BenchCmd::Workflow(args) => runtime.block_on(bench_workflow::bench(args, conn.json())),
        BenchCmd::Mapreduce(args) => runtime.block_on(mapreduce::mapreduce(args, conn.json())),
    }
}

async fn dispatch(args: &DispatchArgs, conn: &Conn) -> Result<()> {
    let json = conn.json();
    if args.instances == 0 || args.workers == 0 || args.in_flight == 0 {
        bail!("--instances, --workers and --in-flight must be at least 1");
    }
    let pki = if args.tls {
        Some(ferrojob_bin::self_signed::SelfSigned::generate()?)
    } else {
        None
    };
    // A server of our own (in this process), or one that runs elsewhere (`--url`).
    let (server, _dir, client, transport, app, secret) =
        match args.connect.then_some(args.transport).flatten() {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("ferrojob-bench-")
                    .tempdir()
                    .context("creating a temp data dir")?;
                let any: SocketAddr = "127.0.0.1:0".parse()?;
                let mut config = LaunchConfig::new(
                    (!args.ephemeral).then(|| dir.path().to_path_buf()),
                    any,
                    any,
                );
                if let Some(url) = &args.store {
                    let mut options = ferrojob::server::PgOptions::default();
                    if args.transaction_per_write {
                        options.max_batch_writes = 1;
                    }
                    config.core.store = ferrojob::server::StoreChoice::Postgres {
                        url: url.clone(),
                        options,
                    };
                }
                // Keep every instance: the bench reads them all back.
                config.core.keep_finished_runs = usize::MAX;
                // The bench measures dispatch: its run requests are not rate limited.
                config.api_rate = None;
                if let Some(pki) = &pki {
                    config.core.net.server_tls = Some(pki.server()?);
                }
                let server = launch(config).await?;
                let url = format!("http://{}", server.http_addr());
                let client = Client::new(&url, server.admin_token())?;
                let transport = server.transport_addr();
                (
                    Some(server),
                    Some(dir),
                    client,
                    transport,
                    "bench".to_owned(),
                    "bench-secret-0123".to_owned(),
                )
            }
            Some(transport) => {
                if args.via == Via::Api {
                    bail!("--via api needs the server in this process: drop --connect");
                }
                let client = conn.client()?;
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let app = format!("bench-{stamp}");
                (
                    None,
                    None,
                    client,
                    transport,
                    app,
                    format!("bench-secret-{stamp}"),
                )
            }
        };
    let app = app.as_str();
    let secret = secret.as_str();
    client
        .create_app(&CreateApp {
            name: app.into(),
            secret: secret.into(),
        })
        .await?;
    // A server that already ran has counted finals and latencies before us.
    let metrics_before = client.metrics().await?;
    let finished_before = finished_total(&metrics_before);
    let histogram_before = dispatch_histogram(&metrics_before);
    let job = client
        .create_job(
            app,
            &JobBody::new("noop", TimeExpressionType::Api, "", "noop"),
        )
        .await?
        .id;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let mut config = WorkerConfig::new(transport, app, secret);
        if let Some(pki) = &pki {
            config.net.client_tls = Some(pki.client()?);
            config.net.server_tls = Some(pki.server()?);
        }
        workers.push(Worker::builder(config).builtins().start().await?);
    }
    let connected = Instant::now();
    while client.list_workers(app).await?.workers.len() < args.workers {
        if connected.elapsed() > Duration::from_secs(10) {
            bail!("workers did not register within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.instances)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} durable {pos}/{len} [{bar:40}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let triggered_count = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let api = server.as_ref().map(|s| s.api());
    let app_ref = match &api {
        Some(api) => Some(api.resolve_app(app)?),
        None => None,
    };
    let via = args.via;
    for _ in 0..args.in_flight.min(args.instances as usize) {
        let client = client.clone();
        let api = api.clone();
        let app_ref = app_ref.clone();
        let app = app.to_owned();
        let next = Arc::clone(&next);
        let triggered_count = Arc::clone(&triggered_count);
        let (total, rate) = (args.instances, args.rate);
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<Instant, anyhow::Error>(Instant::now());
                }
                if let Some(offset) = n.saturating_mul(1_000_000_000).checked_div(rate) {
                    let due = started + Duration::from_nanos(offset);
                    tokio::time::sleep_until(due.into()).await;
                }
                match (via, &api, &app_ref) {
                    (Via::Api, Some(api), Some(app_ref)) => {
                        api.run_job(app_ref.clone(), job, RunJob::default()).await?;
                    }
                    _ => {
                        client.run_job(&app, job, &RunJob::default()).await?;
                    }
                }
                triggered_count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Progress from the server's counter of final statuses durably recorded.
    let mut triggered = Duration::ZERO;
    let finished = loop {
        while let Some(done) = tasks.try_join_next() {
            let at = done.context("a load task panicked")??;
            triggered = triggered.max(at.duration_since(started));
        }
        let done = finished_total(&client.metrics().await?).saturating_sub(finished_before);
        bar.set_position(done);
        bar.set_message(format!(
            "triggered {}",
            triggered_count.load(Ordering::Relaxed)
        ));
        if done >= args.instances && tasks.is_empty() {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{done} of {} instances finished within 600 s",
                args.instances
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let instances = read_all(&client, app, job).await?;
    if (instances.len() as u64) < args.instances {
        bail!(
            "the server counted {} final instances but lists {}",
            args.instances,
            instances.len()
        );
    }
    bar.finish_and_clear();
    let failed = instances
        .iter()
        .filter(|i| i.0 != InstanceStatus::Succeed)
        .count() as u64;
    let mut latency: Vec<u64> = instances.iter().map(|i| i.1).collect();
    latency.sort_unstable();
    let histogram: Vec<(f64, u64)> = dispatch_histogram(&client.metrics().await?)
        .into_iter()
        .map(|(bound, count)| {
            let before = histogram_before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c);
            (bound, count.saturating_sub(before))
        })
        .collect();
    let row = Row {
        function: "dispatch",
        param: format!("{}x{}", args.instances, args.workers),
        instances: args.instances,
        workers: args.workers,
        store: match (args.connect, args.ephemeral, &args.store) {
            (true, _, _) => "remote",
            (false, true, _) => "memory",
            (false, false, Some(_)) if args.transaction_per_write => "postgres-per-write",
            (false, false, Some(_)) => "postgres",
            (false, false, None) => "log",
        },
        via: match args.via {
            Via::Http => "http",
            Via::Api => "api",
        },
        transport: if args.tls { "tls" } else { "tcp" },
        offered_per_s: args.rate,
        trigger_per_s: args.instances as f64 / triggered.as_secs_f64(),
        durable_instances_per_s: args.instances as f64 / finished.as_secs_f64(),
        elapsed_s: finished.as_secs_f64(),
        dispatch_p50_us: histogram_quantile(&histogram, 0.50),
        dispatch_p99_us: histogram_quantile(&histogram, 0.99),
        dispatch_max_us: histogram_max(&histogram).max(latency.last().copied().unwrap_or(0)),
        failed,
    };
    for w in workers {
        w.shutdown().await;
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{} instances over {} worker(s), {} store{}",
            row.instances,
            row.workers,
            row.store,
            if args.rate > 0 {
                format!(", offered {} runs/s", args.rate)
            } else {
                String::new()
            }
        );
        println!("  triggered        {:>10.0} runs/s", row.trigger_per_s);
        println!(
            "  durable SUCCEED  {:>10.0} instances/s ({:.2} s)",
            row.durable_instances_per_s, row.elapsed_s
        );
        println!(
            "  dispatch latency p50 {} µs, p99 {} µs (interpolated in the server's histogram), max ≤ {} µs (its bucket bound)",
            row.dispatch_p50_us, row.dispatch_p99_us, row.dispatch_max_us
        );
        if failed > 0 {
            println!("  NOT SUCCEED: {failed}");
        }
    }
    Ok(())
}

/// The cumulative buckets of `ferrojob_dispatch_latency_seconds`: (upper bound in s, count).
fn dispatch_histogram(metrics: &str) -> Vec<(f64, u64)> {
    histogram(metrics, "ferrojob_dispatch_latency_seconds")
}

/// The cumulative buckets of histogram `name` in Prometheus text: (upper bound in s, count).
fn histogram(metrics: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of a cumulative histogram in µs, interpolated linearly inside its bucket
/// (as Prometheus' `histogram_quantile` does); the last finite bound if it falls in +Inf.
fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> u64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0;
    };
    if total == 0 {
        return 0;
    }
    let rank = q * total as f64;
    let mut prev = (0.0f64, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return (prev.0 * 1e6) as u64;
            }
            let inside = (count - prev.1) as f64;
            let frac = if inside > 0.0 {
                (rank - prev.1 as f64) / inside
            } else {
                1.0
            };
            return ((prev.0 + (bound - prev.0) * frac) * 1e6) as u64;
        }
        prev = (bound, count);
    }
    (prev.0 * 1e6) as u64
}

/// The upper bound (µs) of the highest non-empty bucket: the max, to bucket precision.
fn histogram_max(buckets: &[(f64, u64)]) -> u64 {
    let mut max = 0.0f64;
    let mut prev = 0u64;
    for &(bound, count) in buckets {
        if count > prev && bound.is_finite() {
            max = bound;
        }
        prev = count;
    }
    (max * 1e6) as u64
}

/// Final statuses durably recorded since the server started
/// (`ferrojob_instances_finished_total`, summed over statuses).
fn finished_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ferrojob_instances_finished_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every instance of `job`: (status, dispatch latency in µs).
async fn read_all(client: &Client, app: &str, job: JobId) -> Result<Vec<(InstanceStatus, u64)>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_instances(
                app,
                &InstanceQuery {
                    job_id: Some(job),
                    limit: Some(1000),
                    cursor,
                    ..InstanceQuery::default()
                },
            )
            .await?;
        for i in &page.items {
            let latency_ms = i
                .actual_trigger_time
                .map_or(0, |a| (a - i.trigger_time).max(0) as u64);
            out.push((i.status, latency_ms * 1000));
        }
        match page.next_cursor {
            Some(c) if !page.items.is_empty() => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}
