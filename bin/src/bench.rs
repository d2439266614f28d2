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
//! `--store postgres://… --servers N` (or `--cluster`) starts N servers of a cluster sharing
//! the database, all in this process, waits until every partition sits with its rendezvous
//! owner, and spreads the runs round robin over `--apps` apps named so that their
//! partitions prefer the servers in turn; each run goes to its app's owner, and the counters
//! and histograms are summed over the servers.
//!
//! Workers run in this process (own tasks, own connections): on a 2-core machine the server,
//! the workers and the load generator share the cores, as they would on one box.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob::api::{Api, AppRef, CreateApp, InstanceQuery, JobBody, RunJob};
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
#[path = "bench_cluster.rs"]
mod cluster;
#[path = "bench_cpu.rs"]
mod cpu;
#[path = "bench_failover.rs"]
mod failover;
#[path = "bench_flood.rs"]
mod flood;
#[path = "bench_flood_attack.rs"]
mod flood_attack;
#[path = "bench_forward.rs"]
mod forward;
#[path = "bench_fsync.rs"]
mod fsync;
#[path = "bench_harness.rs"]
mod harness;
#[path = "bench_http.rs"]
mod http;
#[path = "bench_mapreduce.rs"]
mod mapreduce;
#[path = "bench_soak.rs"]
mod soak;

/// `ferrojob bench ...`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Durable instances per second through server, store and workers; dispatch latency.
    Dispatch(DispatchArgs),
    /// The fdatasync latency (p50/p99/p999) of the disk the LogStore writes to: the floor
    /// under the durable dispatch latency.
    Fsync(fsync::FsyncArgs),
    /// Workflow handoff (a node's completion → the next node's dispatch) on a chain.
    Workflow(bench_workflow::WorkflowArgs),
    /// One sum_mr MAP_REDUCE instance over worker processes: tasks/s, peak RSS per worker.
    Mapreduce(mapreduce::MapReduceArgs),
    /// Dispatch quiet and under an attack on both ports (pre-auth connections, oversized
    /// frames and headers, wrong-secret handshakes, slow readers): throughput, p99, server
    /// RSS, worker reconnects.
    Flood(flood::FloodArgs),
    /// The attacker of `bench flood`, as a process of its own.
    #[command(hide = true)]
    FloodAttack(flood_attack::AttackArgs),
    /// A cluster on PostgreSQL: `kill -9` of an app's owner until the first run another
    /// server dispatches, repeated; p50/p99/max.
    Failover(failover::FailoverArgs),
    /// A cluster on PostgreSQL: a request sent to a server that forwards it to the app's
    /// owner, against the same request sent to the owner; p50/p99 of both.
    Forward(forward::ForwardArgs),
    /// The control of `bench flood`: takes CPU and does nothing else.
    #[command(hide = true)]
    FloodBurn(flood_attack::BurnArgs),
    /// A mixed load (CRON, FIXED_RATE, API runs with logs, MAP_REDUCE, a workflow) for N
    /// minutes with retention on: the server's RSS, open files, store size and keys each
    /// minute.
    Soak(soak::SoakArgs),
    /// API runs over HTTP (single-run and batch routes) against an axum ceiling, the load
    /// generator in a process of its own.
    #[command(subcommand)]
    Http(http::HttpCmd),
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
    /// With `--store`: start this many servers of a cluster sharing the database, all in
    /// this process (each with its own ports, membership and leases; implies `--cluster`).
    /// The runs are spread over `--apps` apps, each sent to the server that owns it.
    #[arg(long, default_value_t = 1, requires = "store")]
    servers: usize,
    /// With `--store`: run the server(s) as members of a cluster (leases, fenced writes)
    /// even when there is one.
    #[arg(long, requires = "store")]
    cluster: bool,
    /// Apps the runs are spread over, round robin (default: one per server). Their names are
    /// chosen so that their partitions prefer the servers in turn; each app has its own job
    /// and `--workers` workers, connected to the server that owns it.
    #[arg(long)]
    apps: Option<usize>,
    /// With a cluster: the partitions' lease, ms.
    #[arg(long, default_value_t = ferrojob_bin::server_config::DEFAULT_LEASE_MS)]
    lease_ms: u64,
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
    /// Workers per app.
    workers: usize,
    /// Servers (of a cluster when `cluster`).
    servers: usize,
    apps: usize,
    cluster: bool,
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
    /// CPU µs per durable instance of this process (server, workers and load generator
    /// when they run here); absent when not measurable.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_instance: Option<f64>,
    /// CPU µs per durable instance of the PostgreSQL backends serving the run's database,
    /// when it runs on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    db_cpu_us_per_instance: Option<f64>,
}

/// Runs a bench; `conn` gives the global `--url`, `--token` and `--json`.
pub fn run(cmd: &BenchCmd, conn: &Conn) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cmd {
        BenchCmd::Dispatch(args) => runtime.block_on(dispatch(args, conn)),
        BenchCmd::Fsync(args) => fsync::fsync(args, conn.json()),
        BenchCmd::Workflow(args) => runtime.block_on(bench_workflow::bench(args, conn.json())),
        BenchCmd::Mapreduce(args) => runtime.block_on(mapreduce::mapreduce(args, conn.json())),
        BenchCmd::Flood(args) => runtime.block_on(flood::flood(args, conn.json())),
        BenchCmd::Failover(args) => runtime.block_on(failover::failover(args, conn.json())),
        BenchCmd::Forward(args) => runtime.block_on(forward::forward(args)),
        BenchCmd::FloodAttack(args) => runtime.block_on(flood_attack::attack(args)),
        BenchCmd::FloodBurn(args) => flood_attack::burn(args),
        BenchCmd::Soak(args) => runtime.block_on(soak::soak(args, conn.json())),
        BenchCmd::Http(cmd) => runtime.block_on(http::run(cmd, conn.json())),
    }
}

/// Where `bench dispatch` sends its load.
struct Deployment {
    /// Servers started here (none with `--connect`), stopped at the end.
    servers: Vec<ferrojob::launch::RunningServer>,
    /// Their data dirs: removed after the servers stopped.
    dirs: Vec<tempfile::TempDir>,
    /// One API client per server.
    clients: Vec<Client>,
    /// Each server's worker address.
    transports: Vec<SocketAddr>,
    /// The apps: (name, worker secret, index of the server that acts for it).
    apps: Vec<(String, String, usize)>,
}

/// Starts the server(s) `args` asks for (or finds the one `--connect` names) and names the
/// apps the load goes to.
async fn deploy(
    args: &DispatchArgs,
    conn: &Conn,
    pki: Option<&ferrojob_bin::self_signed::SelfSigned>,
) -> Result<Deployment> {
    let apps = args.apps.unwrap_or(args.servers);
    if let (true, Some(transport)) = (args.connect, args.transport) {
        if args.via == Via::Api {
            bail!("--via api needs the server in this process: drop --connect");
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        return Ok(Deployment {
            servers: Vec::new(),
            dirs: Vec::new(),
            clients: vec![conn.client()?],
            transports: vec![transport],
            apps: (0..apps)
                .map(|i| {
                    (
                        format!("bench-{stamp}-{i}"),
                        format!("bench-secret-{stamp}"),
                        0,
                    )
                })
                .collect(),
        });
    }
    let secret = "bench-secret-0123".to_owned();
    if let (Some(url), true) = (&args.store, args.cluster || args.servers > 1) {
        if pki.is_some() {
            bail!("--tls is not wired into the cluster servers here: drop it or --servers");
        }
        let mut deployment = Deployment {
            servers: Vec::new(),
            dirs: Vec::new(),
            clients: Vec::new(),
            transports: Vec::new(),
            apps: Vec::new(),
        };
        let ids = (0..args.servers)
            .map(|i| ferrojob::cluster::ServerId::new(&format!("bench-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let started = async {
            for id in &ids {
                let dir = tempfile::Builder::new()
                    .prefix("ferrojob-bench-")
                    .tempdir()
                    .context("creating a temp data dir")?;
                let server = cluster::start_member(
                    url,
                    id.as_str(),
                    dir.path(),
                    args.lease_ms,
                    args.transaction_per_write,
                )
                .await?;
                deployment.clients.push(Client::new(
                    &format!("http://{}", server.http_addr()),
                    cluster::TOKEN,
                )?);
                deployment.transports.push(server.transport_addr());
                deployment.servers.push(server);
                deployment.dirs.push(dir);
            }
            let members: Vec<(&Client, &ferrojob::cluster::ServerId)> =
                deployment.clients.iter().zip(&ids).collect();
            cluster::wait_settled(&members, Duration::from_secs(60)).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = started {
            for s in deployment.servers {
                s.shutdown().await;
            }
            return Err(e);
        }
        deployment.apps = cluster::spread_apps(&ids, apps)?
            .into_iter()
            .map(|(name, owner)| (name, secret.clone(), owner))
            .collect();
        return Ok(deployment);
    }
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
    // The bench measures dispatch: its run requests and its client's connections are not
    // rate limited.
    config.api_rate = None;
    config.http_connection_rate = None;
    if let Some(pki) = pki {
        config.core.net.server_tls = Some(pki.server()?);
    }
    let server = launch(config).await?;
    let client = Client::new(
        &format!("http://{}", server.http_addr()),
        server.admin_token(),
    )?;
    Ok(Deployment {
        clients: vec![client],
        transports: vec![server.transport_addr()],
        servers: vec![server],
        dirs: vec![dir],
        apps: (0..apps)
            .map(|i| {
                let name = if i == 0 {
                    "bench".to_owned()
                } else {
                    format!("bench-{i}")
                };
                (name, secret.clone(), 0)
            })
            .collect(),
    })
}

async fn dispatch(args: &DispatchArgs, conn: &Conn) -> Result<()> {
    let json = conn.json();
    let apps = args.apps.unwrap_or(args.servers);
    if args.instances == 0
        || args.workers == 0
        || args.in_flight == 0
        || args.servers == 0
        || apps == 0
    {
        bail!("--instances, --workers, --in-flight, --servers and --apps must be at least 1");
    }
    let clustered = args.store.is_some() && (args.cluster || args.servers > 1);
    let pki = if args.tls {
        Some(ferrojob_bin::self_signed::SelfSigned::generate()?)
    } else {
        None
    };
    let deployment = deploy(args, conn, pki.as_ref()).await?;
    // Whatever fails, the workers and the servers stop before the servers' data dirs are
    // removed (a store writing into a deleted directory fails in confusing ways).
    let mut workers = Vec::new();
    let measured = async {
        let mut targets = Vec::new();
        for (app, secret, owner) in &deployment.apps {
            let (client, transport) = deployment
                .clients
                .get(*owner)
                .zip(deployment.transports.get(*owner))
                .context("an app without a server")?;
            create_app(client, app, secret).await?;
            let job = client
                .create_job(
                    app,
                    &JobBody::new("noop", TimeExpressionType::Api, "", "noop"),
                )
                .await?
                .id;
            for _ in 0..args.workers {
                let mut config = WorkerConfig::new(*transport, app, secret);
                if let Some(pki) = &pki {
                    config.net.client_tls = Some(pki.client()?);
                    config.net.server_tls = Some(pki.server()?);
                }
                workers.push(Worker::builder(config).builtins().start().await?);
            }
            wait_for_workers(client, app, args.workers).await?;
            let in_process = match (args.via, deployment.servers.get(*owner)) {
                (Via::Api, Some(server)) => {
                    let api = server.api();
                    let app_ref = api.resolve_app(app)?;
                    Some((api, app_ref))
                }
                _ => None,
            };
            targets.push(Target {
                client: client.clone(),
                in_process,
                app: app.clone(),
                job,
            });
        }

        let bar = progress_bar(args.instances, json);
        let load = Load {
            instances: args.instances,
            in_flight: args.in_flight,
            rate: args.rate,
            read_back: true,
            cpu: cpu::CpuClock::new(args.store.as_deref().filter(|_| !args.connect)),
        };
        let measured = measure_spread(&deployment.clients, targets, load, &bar).await?;
        bar.finish_and_clear();
        anyhow::Ok(measured)
    }
    .await;
    for w in workers {
        w.shutdown().await;
    }
    for server in deployment.servers {
        server.shutdown().await;
    }
    drop(deployment.dirs);
    let measured = measured?;
    let failed = measured.failed;
    let row = Row {
        function: "dispatch",
        param: if clustered {
            format!(
                "{}x{}x{}servers",
                args.instances, args.workers, args.servers
            )
        } else {
            format!("{}x{}", args.instances, args.workers)
        },
        instances: args.instances,
        workers: args.workers,
        servers: args.servers,
        apps,
        cluster: clustered,
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
        trigger_per_s: measured.trigger_per_s,
        durable_instances_per_s: measured.durable_instances_per_s,
        elapsed_s: measured.elapsed_s,
        dispatch_p50_us: measured.dispatch_p50_us,
        dispatch_p99_us: measured.dispatch_p99_us,
        dispatch_max_us: measured.dispatch_max_us,
        failed,
        cpu_us_per_instance: measured.cpu_us_per_instance,
        db_cpu_us_per_instance: measured.db_cpu_us_per_instance,
    };
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{} instances over {} worker(s) per app, {} app(s), {} store{}{}",
            row.instances,
            row.workers,
            row.apps,
            row.store,
            if clustered {
                format!(", a cluster of {} server(s)", args.servers)
            } else {
                String::new()
            },
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
            "  dispatch latency p50 {} µs, p99 {} µs (interpolated in the servers' histograms), max ≤ {} µs (its bucket bound)",
            row.dispatch_p50_us, row.dispatch_p99_us, row.dispatch_max_us
        );
        if let Some(us) = row.cpu_us_per_instance {
            let db = row.db_cpu_us_per_instance.map_or(String::new(), |d| {
                format!(", the database's backends {d:.1} µs")
            });
            println!("  CPU per instance: this process {us:.1} µs{db}");
        }
        if failed > 0 {
            println!("  NOT SUCCEED: {failed}");
        }
    }
    Ok(())
}

/// Creates `app`; a server of a cluster may still be loading the app's partition for a
/// moment after it was granted, so a refusal is retried for 10 s.
async fn create_app(client: &Client, app: &str, secret: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let created = client
            .create_app(&CreateApp {
                name: app.into(),
                secret: secret.into(),
            })
            .await;
        match created {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > Duration::from_secs(10) => {
                return Err(e).with_context(|| format!("creating app {app}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Where one share of the runs goes: an API job of an app, through the HTTP `client` of
/// the server that acts for the app, or through its in-process `Api` when given.
#[derive(Clone)]
struct Target {
    client: Client,
    in_process: Option<(Arc<dyn Api>, AppRef)>,
    app: String,
    job: JobId,
}

/// How one measured batch of runs is offered.
#[derive(Debug, Clone)]
struct Load {
    /// Runs to trigger (at least 1).
    instances: u64,
    /// Run requests outstanding at once (at least 1).
    in_flight: usize,
    /// Runs per second to pace at; 0 = as fast as possible.
    rate: u64,
    /// Read every instance back through the API (checks the count, adds the exact max
    /// latency); needs a server that keeps them all (`keep_finished_runs`).
    read_back: bool,
    /// Whose CPU time the batch is charged with.
    cpu: cpu::CpuClock,
}

/// What one measured batch of runs gave.
#[derive(Debug, Clone, Copy, Serialize)]
struct Measured {
    trigger_per_s: f64,
    durable_instances_per_s: f64,
    elapsed_s: f64,
    dispatch_p50_us: u64,
    dispatch_p99_us: u64,
    dispatch_max_us: u64,
    failed: u64,
    /// CPU µs per instance of this process (see [`cpu`]).
    cpu_us_per_instance: Option<f64>,
    /// CPU µs per instance of the database's backends (see [`cpu`]).
    db_cpu_us_per_instance: Option<f64>,
}

/// A progress bar of `len` steps, hidden when the output is JSON.
fn progress_bar(len: u64, json: bool) -> ProgressBar {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} durable {pos}/{len} [{bar:40}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Waits (10 s at most) until `workers` workers of `app` are registered with the server.
async fn wait_for_workers(client: &Client, app: &str, workers: usize) -> Result<()> {
    let connected = Instant::now();
    while client.list_workers(app).await?.workers.len() < workers {
        if connected.elapsed() > Duration::from_secs(10) {
            bail!("workers did not register within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Triggers `load.instances` runs of the API job `job` (through the HTTP `client`, or the
/// in-process `Api` when given) with `load.in_flight` requests outstanding, waits until the
/// server has durably recorded that many more final statuses, reads every instance of `job`
/// back, and measures: trigger and durable rates, and the dispatch latency from the server's
/// histogram (differences over this batch, so `job` should be the only one running).
async fn measure(
    client: &Client,
    in_process: Option<(Arc<dyn Api>, AppRef)>,
    app: &str,
    job: JobId,
    load: Load,
    bar: &ProgressBar,
) -> Result<Measured> {
    let target = Target {
        client: client.clone(),
        in_process,
        app: app.to_owned(),
        job,
    };
    measure_spread(std::slice::from_ref(client), vec![target], load, bar).await
}

/// The `/metrics` text of every server.
async fn metrics_of(servers: &[Client]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(servers.len());
    for s in servers {
        out.push(s.metrics().await?);
    }
    Ok(out)
}

/// The dispatch histograms of several servers added bucket by bucket (they share bounds).
fn summed_histogram(metrics: &[String]) -> Vec<(f64, u64)> {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    for m in metrics {
        for (bound, count) in dispatch_histogram(m) {
            match sum.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, c)) => *c += count,
                None => sum.push((bound, count)),
            }
        }
    }
    sum
}

/// [`measure`] over several targets and servers: the n-th run goes to
/// `targets[n % targets.len()]`; the counters and histograms are summed over `servers`
/// (each server once, whatever number of targets it serves).
async fn measure_spread(
    servers: &[Client],
    targets: Vec<Target>,
    load: Load,
    bar: &ProgressBar,
) -> Result<Measured> {
    if load.instances == 0 || load.in_flight == 0 || targets.is_empty() || servers.is_empty() {
        bail!("a measured batch needs at least one instance, one request in flight, one target and one server");
    }
    // A server that already ran has counted finals and latencies before us.
    let metrics_before = metrics_of(servers).await?;
    let finished_before: u64 = metrics_before.iter().map(|m| finished_total(m)).sum();
    let succeeded_before: u64 = metrics_before.iter().map(|m| succeeded_total(m)).sum();
    let histogram_before = summed_histogram(&metrics_before);
    let targets = Arc::new(targets);
    let cpu_before = load.cpu.sample();
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let triggered_count = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load
        .in_flight
        .min(usize::try_from(load.instances).unwrap_or(usize::MAX))
    {
        let targets = Arc::clone(&targets);
        let next = Arc::clone(&next);
        let triggered_count = Arc::clone(&triggered_count);
        let (total, rate) = (load.instances, load.rate);
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
                let which = usize::try_from(n % targets.len() as u64).unwrap_or(0);
                let target = targets.get(which).context("no target")?;
                match &target.in_process {
                    Some((api, app_ref)) => {
                        api.run_job(app_ref.clone(), target.job, RunJob::default())
                            .await?;
                    }
                    None => {
                        target
                            .client
                            .run_job(&target.app, target.job, &RunJob::default())
                            .await?;
                    }
                }
                triggered_count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Progress from the servers' counters of final statuses durably recorded.
    let mut triggered = Duration::ZERO;
    let (finished, cpu_after) = loop {
        while let Some(done) = tasks.try_join_next() {
            let at = done.context("a load task panicked")??;
            triggered = triggered.max(at.duration_since(started));
        }
        let done = metrics_of(servers)
            .await?
            .iter()
            .map(|m| finished_total(m))
            .sum::<u64>()
            .saturating_sub(finished_before);
        bar.set_position(done);
        bar.set_message(format!(
            "triggered {}",
            triggered_count.load(Ordering::Relaxed)
        ));
        if done >= load.instances && tasks.is_empty() {
            break (started.elapsed(), load.cpu.sample());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{done} of {} instances finished within 600 s",
                load.instances
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (cpu_us_per_instance, db_cpu_us_per_instance) =
        cpu::per_instance(cpu_before, cpu_after, load.instances);
    let metrics_after = metrics_of(servers).await?;
    let finished_after: u64 = metrics_after.iter().map(|m| finished_total(m)).sum();
    let succeeded_after: u64 = metrics_after.iter().map(|m| succeeded_total(m)).sum();
    let mut failed = finished_after
        .saturating_sub(finished_before)
        .saturating_sub(succeeded_after.saturating_sub(succeeded_before));
    let mut latency_max = 0;
    if load.read_back {
        let mut instances = Vec::new();
        for t in targets.iter() {
            instances.extend(read_all(&t.client, &t.app, t.job).await?);
        }
        if (instances.len() as u64) < load.instances {
            bail!(
                "the servers counted {} final instances but list {}",
                load.instances,
                instances.len()
            );
        }
        // What the store lists is what was committed: it has the last word.
        failed = instances
            .iter()
            .filter(|i| i.0 != InstanceStatus::Succeed)
            .count() as u64;
        latency_max = instances.iter().map(|i| i.1).max().unwrap_or(0);
    }
    let histogram: Vec<(f64, u64)> = summed_histogram(&metrics_after)
        .into_iter()
        .map(|(bound, count)| {
            let before = histogram_before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c);
            (bound, count.saturating_sub(before))
        })
        .collect();
    Ok(Measured {
        trigger_per_s: load.instances as f64 / triggered.as_secs_f64(),
        durable_instances_per_s: load.instances as f64 / finished.as_secs_f64(),
        elapsed_s: finished.as_secs_f64(),
        dispatch_p50_us: histogram_quantile(&histogram, 0.50),
        dispatch_p99_us: histogram_quantile(&histogram, 0.99),
        dispatch_max_us: histogram_max(&histogram).max(latency_max),
        failed,
        cpu_us_per_instance,
        db_cpu_us_per_instance,
    })
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

/// Instances durably recorded SUCCEED since the server started.
fn succeeded_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("ferrojob_instances_finished_total{status=\"SUCCEED\"} ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
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
